//! The real binary killed with SIGKILL in the middle of writes, then
//! restarted on the same database: every acknowledged write is there, and the
//! outbox is contiguous with exactly one event per state change. Two loads:
//! contracts and payments, and concurrent LogTime (batched by group commit).
//! Runs on SQLite, and on PostgreSQL when `TEST_POSTGRES_URL` is set
//! (required when `REQUIRE_POSTGRES` is).

mod support;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use shared::proto::contract::v1 as pb;
use shared::proto::contract::v1::contract_service_client::ContractServiceClient;
use shared::testing::{
    TestBackend, as_service, as_user, channel, create_contract, free_addr, payments_of,
    usd_contract, watch_outbox,
};
use support::{connect, fixed_price, start};
use tonic::transport::Channel;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sigkill_mid_write_leaves_consistent_state_and_a_contiguous_outbox() {
    for backend in TestBackend::all() {
        sigkill_then_restart(&backend.fresh_database_url().await).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sigkill_during_concurrent_log_time_loses_no_acknowledged_entry_or_event() {
    for backend in TestBackend::all() {
        sigkill_during_log_time(&backend.fresh_database_url().await).await;
    }
}

/// Contracts in the LogTime test; two loggers share each, so their writes
/// contend for its diary.
const DIARIES: usize = 12;

async fn sigkill_during_log_time(url: &str) {
    use shared::proto::testing::v1 as tpb;
    use shared::proto::testing::v1::test_clock_service_client::TestClockServiceClient;
    // Friday 23:50 UTC: the whole billing week is open for time.
    let now = chrono::DateTime::parse_from_rfc3339("2026-11-20T23:50:00Z")
        .expect("time")
        .with_timezone(&chrono::Utc);
    let monday = now - chrono::Duration::minutes(4 * 24 * 60 + 23 * 60 + 50);
    let addr = free_addr();
    let mut child = start(addr, url, &["--test-clock"]);
    TestClockServiceClient::new(channel(addr).await)
        .set_time(as_service(
            "crash-test",
            &["admin"],
            tpb::SetTimeRequest {
                now: Some(shared::time::to_proto(now)),
            },
        ))
        .await
        .expect("set the clock");
    let client = connect(addr).await;
    let mut contracts = Vec::new();
    for k in 0..DIARIES {
        let hourly = pb::CreateContractRequest {
            hourly_rate_minor: 5_000,
            weekly_limit_minutes: 2_400,
            start_time: Some(shared::time::to_proto(now - chrono::Duration::days(30))),
            ..usd_contract(
                pb::ContractType::Hourly,
                format!("client-{k}"),
                format!("free-{k}"),
                "crash",
            )
        };
        let created = create_contract(&client, hourly).await.expect("create");
        contracts.push(created.id);
    }
    let contracts = Arc::new(contracts);
    let stop = Arc::new(AtomicBool::new(false));
    let progress = Arc::new(AtomicUsize::new(0));
    // 24 loggers: logger w writes even or odd segments of diary w % 12.
    let loggers: Vec<_> = (0..2 * DIARIES)
        .map(|w| {
            let (mut client, stop, contracts) = (client.clone(), stop.clone(), contracts.clone());
            let progress = progress.clone();
            tokio::spawn(async move {
                let diary = w % DIARIES;
                let mut acked: Vec<(usize, String)> = Vec::new();
                for i in 0..350_i64 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let segment = 2 * i + (w / DIARIES) as i64;
                    let log = pb::LogTimeRequest {
                        contract_id: contracts[diary].clone(),
                        start_time: Some(shared::time::to_proto(
                            monday + chrono::Duration::minutes(10 * segment),
                        )),
                        minutes: 10,
                        request_id: format!("log-{w}-{i}"),
                        ..Default::default()
                    };
                    let Ok(logged) = client
                        .log_time(as_user(&format!("free-{diary}"), log))
                        .await
                    else {
                        break;
                    };
                    let entry = logged.into_inner().time_entry.expect("entry");
                    acked.push((diary, entry.id));
                    progress.fetch_add(1, Ordering::Relaxed);
                }
                acked
            })
        })
        .collect();
    // Mid-load: once well over the asserted minimum is acknowledged (the
    // service may be slow to take its first writes on a loaded machine).
    mid_load(&progress, 10 * DIARIES).await;
    child.kill().await.expect("SIGKILL");
    stop.store(true, Ordering::Relaxed);
    let mut acked = Vec::new();
    for logger in loggers {
        acked.extend(logger.await.expect("join"));
    }
    assert!(
        acked.len() > 2 * DIARIES,
        "entries were acknowledged before the kill ({url}): {}",
        acked.len()
    );

    let mut child = start(addr, url, &[]);
    let mut client = connect(addr).await;
    let mut stored = HashSet::new();
    for (k, contract) in contracts.iter().enumerate() {
        let diary = client
            .get_work_diary(as_user(
                &format!("free-{k}"),
                pb::GetWorkDiaryRequest {
                    contract_id: contract.clone(),
                    week_time: Some(shared::time::to_proto(now)),
                },
            ))
            .await
            .expect("diary")
            .into_inner();
        stored.extend(diary.time_entries.into_iter().map(|e| e.id));
    }
    for (diary, entry) in &acked {
        assert!(
            stored.contains(entry),
            "acknowledged entry {entry} of diary {diary} lost ({url})"
        );
    }

    // One ContractCreated per contract and one TimeLogged per stored entry,
    // sequenced 1..=N without a gap.
    let events = watch_outbox(&client)
        .await
        .whole(DIARIES + stored.len(), url)
        .await;
    let logged: HashSet<String> = events
        .iter()
        .filter_map(|e| match &e.payload {
            Some(pb::event::Payload::TimeLogged(t)) => t.time_entry.as_ref().map(|t| t.id.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(logged, stored, "one TimeLogged per stored entry ({url})");
    child.kill().await.expect("stop");
}

async fn sigkill_then_restart(url: &str) {
    let addr = free_addr();
    let mut child = start(addr, url, &[]);
    let client = connect(addr).await;
    let stop = Arc::new(AtomicBool::new(false));
    let progress = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let (mut client, stop) = (client.clone(), stop.clone());
            let progress = progress.clone();
            tokio::spawn(async move {
                let mut acked: Vec<(String, Option<String>)> = Vec::new();
                for i in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let create = fixed_price(
                        format!("client-{w}"),
                        format!("free-{i}"),
                        "crash",
                        format!("c-{w}-{i}"),
                    );
                    let Ok(created) = create_contract(&client, create).await else {
                        break;
                    };
                    let id = created.id;
                    acked.push((id.clone(), None));
                    progress.fetch_add(1, Ordering::Relaxed);
                    let pay = pb::RecordPaymentRequest {
                        billing_week_time: None,
                        contract_id: id,
                        kind: pb::PaymentKind::FixedPrice as i32,
                        amount: Some(pb::Money {
                            currency_code: "USD".into(),
                            amount_minor: 1_000,
                        }),
                        paid_time: Some(shared::time::to_proto(
                            chrono::Utc::now() - chrono::Duration::seconds(5),
                        )),
                        memo: String::new(),
                        request_id: format!("p-{w}-{i}"),
                    };
                    let Ok(paid) = client
                        .record_payment(as_service("crash-test", &["payments:write"], pay))
                        .await
                    else {
                        break;
                    };
                    if let Some(last) = acked.last_mut() {
                        last.1 = Some(paid.into_inner().payment.expect("payment").id);
                    }
                }
                acked
            })
        })
        .collect();
    mid_load(&progress, 40).await;
    child.kill().await.expect("SIGKILL");
    stop.store(true, Ordering::Relaxed);
    let mut acked = Vec::new();
    for writer in writers {
        acked.extend(writer.await.expect("join"));
    }
    assert!(
        !acked.is_empty(),
        "writes were acknowledged before the kill ({url})"
    );

    let mut child = start(addr, url, &[]);
    let mut client = connect(addr).await;
    // Every acknowledged contract and payment survived.
    let mut stored_contracts = 0;
    let mut stored_payments = 0;
    let mut token = String::new();
    let mut all_ids = HashSet::new();
    loop {
        let page = client
            .list_contracts(as_service(
                "crash-test",
                &["contracts:read"],
                pb::ListContractsRequest {
                    page_size: 500,
                    page_token: token.clone(),
                    ..Default::default()
                },
            ))
            .await
            .expect("list")
            .into_inner();
        for contract in &page.contracts {
            all_ids.insert(contract.id.clone());
            stored_contracts += 1;
            stored_payments += payments(&client, &contract.id).await.len();
        }
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    for (contract, payment) in &acked {
        assert!(
            all_ids.contains(contract),
            "acknowledged contract {contract} lost ({url})"
        );
        if let Some(payment) = payment {
            let payments = payments(&client, contract).await;
            assert!(
                payments.iter().any(|p| &p.id == payment),
                "acknowledged payment {payment} lost ({url})"
            );
        }
    }

    // The outbox: one event per state change, sequences 1..=N without gaps.
    let events = watch_outbox(&client)
        .await
        .whole(stored_contracts + stored_payments, url)
        .await;
    let created = events
        .iter()
        .filter(|e| matches!(e.payload, Some(pb::event::Payload::ContractCreated(_))))
        .count();
    assert_eq!(
        created, stored_contracts,
        "one ContractCreated per contract ({url})"
    );
    child.kill().await.expect("stop");
}

/// The payments stored on `contract_id`, as read by an auditing service.
async fn payments(client: &ContractServiceClient<Channel>, contract_id: &str) -> Vec<pb::Payment> {
    payments_of(client, contract_id, |r| {
        as_service("crash-test", &["contracts:read"], r)
    })
    .await
}

/// Waits until `count` writes are acknowledged (at most 20 s), then a little
/// longer, so the kill lands in the middle of the load.
async fn mid_load(progress: &AtomicUsize, count: usize) {
    for _ in 0..400 {
        if progress.load(Ordering::Relaxed) >= count {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
}
