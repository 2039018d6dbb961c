//! The real binary killed with SIGKILL in the middle of writes, then
//! restarted on the same database: every acknowledged write is there, and the
//! outbox is contiguous with exactly one event per state change. Runs on
//! SQLite, and on PostgreSQL when `TEST_POSTGRES_URL` is set (required when
//! `REQUIRE_POSTGRES` is).

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
    let token = mint_dev(&TokenSpec::service("crash-test", scopes)).expect("mint");
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
    Command::new(env!("CARGO_BIN_EXE_contract-service"))
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
    for _ in 0..100 {
        if let Ok(channel) = Channel::from_shared(format!("http://127.0.0.1:{port}"))
            .expect("uri")
            .connect()
            .await
        {
            return ContractServiceClient::new(channel);
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
    use tokio_stream::StreamExt;
    let expected = stored_contracts + stored_payments;
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
    let created = events
        .iter()
        .filter(|e| matches!(e.payload, Some(pb::event::Payload::ContractCreated(_))))
        .count();
    assert_eq!(
        created, stored_contracts,
        "one ContractCreated per contract ({url})"
    );
    let extra = tokio::time::timeout(Duration::from_millis(800), stream.next()).await;
    assert!(extra.is_err(), "no event beyond the state changes ({url})");
    child.kill().await.expect("stop");
}
