//! The real binary killed with SIGKILL in the middle of writes, then
//! restarted on the same database: every acknowledged write is there, and the
//! outbox is contiguous with exactly one event per state change. Two loads:
//! contracts and payments, and concurrent LogTime (batched by group commit).
//! Runs on SQLite, and on PostgreSQL when `TEST_POSTGRES_URL` is set
//! (required when `REQUIRE_POSTGRES` is).

use std::collections::HashSet;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use shared::auth::{TokenSpec, mint_dev};
use shared::proto::contract::v1 as pb;
use shared::proto::contract::v1::contract_service_client::ContractServiceClient;
use tokio::process::{Child, Command};
use tonic::transport::Channel;

fn authorized<T>(scopes: &[&str], message: T) -> tonic::Request<T> {
    as_token(
        &mint_dev(&TokenSpec::service("crash-test", scopes)).expect("mint"),
        message,
    )
}

fn as_user<T>(user: &str, message: T) -> tonic::Request<T> {
    as_token(&mint_dev(&TokenSpec::user(user)).expect("mint"), message)
}

fn as_token<T>(token: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("ascii"),
    );
    request
}

async fn fresh_database() -> Vec<String> {
    let name = format!("mkt_crash_{}", uuid::Uuid::now_v7().simple());
    let dir = std::env::temp_dir().join("marketplace-tests");
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut urls = vec![format!("sqlite://{}/{name}.db", dir.display())];
    match std::env::var("TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => {
            use sqlx::Executor;
            sqlx::any::install_default_drivers();
            let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&url)
                .await
                .expect("connect to TEST_POSTGRES_URL");
            conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .await
                .expect("create database");
            let (base, _) = url.rsplit_once('/').expect("a database in the URL");
            urls.push(format!("{base}/{name}"));
        }
        _ => assert!(
            std::env::var_os("REQUIRE_POSTGRES").is_none(),
            "REQUIRE_POSTGRES is set but TEST_POSTGRES_URL is not"
        ),
    }
    urls
}

fn start(port: u16, database_url: &str) -> Child {
    start_with(port, database_url, &[])
}

fn start_with(port: u16, database_url: &str, extra: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_contract-service"))
        .args(extra)
        .args([
            "--dev",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--metrics-listen",
            "127.0.0.1:0",
            "--database-url",
            database_url,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start contract-service")
}

async fn connect(port: u16) -> ContractServiceClient<Channel> {
    ContractServiceClient::new(channel(port).await)
}

async fn channel(port: u16) -> Channel {
    for _ in 0..100 {
        if let Ok(channel) = Channel::from_shared(format!("http://127.0.0.1:{port}"))
            .expect("uri")
            .connect()
            .await
        {
            return channel;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("contract-service did not come up on port {port}");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sigkill_mid_write_leaves_consistent_state_and_a_contiguous_outbox() {
    for url in fresh_database().await {
        sigkill_then_restart(&url).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sigkill_during_concurrent_log_time_loses_no_acknowledged_entry_or_event() {
    for url in fresh_database().await {
        sigkill_during_log_time(&url).await;
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
    let port = free_port();
    let mut child = start_with(port, url, &["--test-clock"]);
    TestClockServiceClient::new(channel(port).await)
        .set_time(authorized(
            &["admin"],
            tpb::SetTimeRequest {
                now: Some(shared::time::to_proto(now)),
            },
        ))
        .await
        .expect("set the clock");
    let mut client = connect(port).await;
    let mut contracts = Vec::new();
    for k in 0..DIARIES {
        let created = client
            .create_contract(authorized(
                &["contracts:write"],
                pb::CreateContractRequest {
                    client_id: format!("client-{k}"),
                    freelancer_id: format!("free-{k}"),
                    title: "crash".into(),
                    r#type: pb::ContractType::Hourly as i32,
                    currency_code: "USD".into(),
                    hourly_rate_minor: 5_000,
                    weekly_limit_minutes: 2_400,
                    start_time: Some(shared::time::to_proto(now - chrono::Duration::days(30))),
                    ..Default::default()
                },
            ))
            .await
            .expect("create")
            .into_inner()
            .contract
            .expect("contract");
        contracts.push(created.id);
    }
    let contracts = Arc::new(contracts);
    let stop = Arc::new(AtomicBool::new(false));
    // 24 loggers: logger w writes even or odd segments of diary w % 12.
    let loggers: Vec<_> = (0..2 * DIARIES)
        .map(|w| {
            let (mut client, stop, contracts) = (client.clone(), stop.clone(), contracts.clone());
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
                }
                acked
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(700)).await;
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

    let mut child = start(port, url);
    let mut client = connect(port).await;
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
    let events = whole_outbox(&mut client, DIARIES + stored.len(), url).await;
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
    let port = free_port();
    let mut child = start(port, url);
    let client = connect(port).await;
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let (mut client, stop) = (client.clone(), stop.clone());
            tokio::spawn(async move {
                let mut acked: Vec<(String, Option<String>)> = Vec::new();
                for i in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let create = pb::CreateContractRequest {
                        client_id: format!("client-{w}"),
                        freelancer_id: format!("free-{i}"),
                        title: "crash".into(),
                        r#type: pb::ContractType::FixedPrice as i32,
                        currency_code: "USD".into(),
                        start_time: Some(shared::time::to_proto(
                            chrono::Utc::now() - chrono::Duration::days(1),
                        )),
                        request_id: format!("c-{w}-{i}"),
                        ..Default::default()
                    };
                    let Ok(created) = client
                        .create_contract(authorized(&["contracts:write"], create))
                        .await
                    else {
                        break;
                    };
                    let id = created.into_inner().contract.expect("contract").id;
                    acked.push((id.clone(), None));
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
                        .record_payment(authorized(&["payments:write"], pay))
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
    tokio::time::sleep(Duration::from_millis(600)).await;
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

    let mut child = start(port, url);
    let mut client = connect(port).await;
    // Every acknowledged contract and payment survived.
    let mut stored_contracts = 0;
    let mut stored_payments = 0;
    let mut token = String::new();
    let mut all_ids = HashSet::new();
    loop {
        let page = client
            .list_contracts(authorized(
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
            let payments = client
                .list_payments(authorized(
                    &["contracts:read"],
                    pb::ListPaymentsRequest {
                        contract_id: contract.id.clone(),
                        ..Default::default()
                    },
                ))
                .await
                .expect("payments")
                .into_inner()
                .payments;
            stored_payments += payments.len();
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
            let payments = client
                .list_payments(authorized(
                    &["contracts:read"],
                    pb::ListPaymentsRequest {
                        contract_id: contract.clone(),
                        ..Default::default()
                    },
                ))
                .await
                .expect("payments")
                .into_inner()
                .payments;
            assert!(
                payments.iter().any(|p| &p.id == payment),
                "acknowledged payment {payment} lost ({url})"
            );
        }
    }

    // The outbox: one event per state change, sequences 1..=N without gaps.
    let events = whole_outbox(&mut client, stored_contracts + stored_payments, url).await;
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

/// The whole outbox, which must hold exactly `expected` events, sequenced
/// 1..=N without a gap or a reorder, with no event id twice.
async fn whole_outbox(
    client: &mut ContractServiceClient<Channel>,
    expected: usize,
    url: &str,
) -> Vec<pb::Event> {
    use tokio_stream::StreamExt;
    let mut stream = client
        .watch_events(authorized(
            &["events:read"],
            pb::WatchEventsRequest { after_sequence: 0 },
        ))
        .await
        .expect("watch")
        .into_inner();
    let mut events = Vec::new();
    while events.len() < expected {
        let next = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("every event arrives")
            .expect("stream open")
            .expect("event");
        events.push(next.event.expect("event"));
    }
    let sequences: Vec<i64> = events.iter().map(|e| e.sequence).collect();
    let contiguous: Vec<i64> = (1..=i64::try_from(expected).expect("small")).collect();
    assert_eq!(
        sequences, contiguous,
        "a gap or a reorder in the outbox ({url})"
    );
    let unique: HashSet<_> = events.iter().map(|e| e.event_id.clone()).collect();
    assert_eq!(unique.len(), events.len(), "duplicate event ids ({url})");
    let extra = tokio::time::timeout(Duration::from_millis(800), stream.next()).await;
    assert!(extra.is_err(), "no event beyond the state changes ({url})");
    events
}
