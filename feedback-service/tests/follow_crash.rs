//! The real feedback-service binary is SIGKILLed, and contract-service
//! restarted, in the middle of a burst of contract endings: afterwards every
//! ended contract has prompted each party exactly once on each channel —
//! nothing lost, nothing applied twice. (contract-service runs in this
//! process and is stopped and started again on the same port and database;
//! its own SIGKILL safety is contract-service/tests/crash.rs.) Runs on
//! SQLite, and on PostgreSQL when `TEST_POSTGRES_URL` is set (required when
//! `REQUIRE_POSTGRES` is).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use shared::auth::{TokenSpec, mint_dev};
use shared::proto::contract::v1 as cpb;
use shared::proto::contract::v1::contract_service_client::ContractServiceClient;
use shared::proto::feedback::v1 as fpb;
use shared::proto::feedback::v1::feedback_service_client::FeedbackServiceClient;
use tokio::process::{Child, Command};
use tokio_stream::StreamExt;
use tonic::transport::Channel;

const CONTRACTS: usize = 48;

fn token_request<T>(spec: &TokenSpec, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let token = mint_dev(spec).expect("mint");
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("ascii"),
    );
    request
}

/// (contract-service URL, feedback-service URL) per backend.
async fn fresh_databases() -> Vec<(String, String)> {
    let dir = std::env::temp_dir().join("marketplace-tests");
    std::fs::create_dir_all(&dir).expect("temp dir");
    let name = |side: &str| format!("mkt_follow_{side}_{}", uuid::Uuid::now_v7().simple());
    let mut urls = vec![(
        format!("sqlite://{}/{}.db", dir.display(), name("c")),
        format!("sqlite://{}/{}.db", dir.display(), name("f")),
    )];
    match std::env::var("TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => {
            use sqlx::Executor;
            sqlx::any::install_default_drivers();
            let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&url)
                .await
                .expect("connect to TEST_POSTGRES_URL");
            let (base, _) = url.rsplit_once('/').expect("a database in the URL");
            let (c, f) = (name("c"), name("f"));
            for db in [&c, &f] {
                conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}")))
                    .await
                    .expect("create database");
            }
            urls.push((format!("{base}/{c}"), format!("{base}/{f}")));
        }
        _ => assert!(
            std::env::var_os("REQUIRE_POSTGRES").is_none(),
            "REQUIRE_POSTGRES is set but TEST_POSTGRES_URL is not"
        ),
    }
    urls
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

type Running = (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<anyhow::Result<()>>,
);

/// contract-service in this process; the sender stops it (draining).
async fn start_contracts(addr: SocketAddr, url: &str) -> Running {
    let mut config = contract_service::Config::dev(addr, url);
    config.service.serve.drain_timeout_secs = 1;
    let clock: shared::clock::SharedClock = Arc::new(shared::clock::SystemClock);
    let mut app = None;
    for _ in 0..50 {
        // The port may take a moment to be free again after a stop.
        match contract_service::Application::build(&config, clock.clone()).await {
            Ok(built) => {
                app = Some(built);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let app = app.expect("contract-service starts");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    (stop, server)
}

fn start_feedback(port: u16, url: &str, contracts: SocketAddr) -> Child {
    Command::new(env!("CARGO_BIN_EXE_feedback-service"))
        .args([
            "--dev",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--metrics-listen",
            "127.0.0.1:0",
            "--database-url",
            url,
            "--contract-service-url",
            &format!("http://{contracts}"),
            "--contract-events-retry-max-ms",
            "200",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start feedback-service")
}

async fn channel(addr: SocketAddr) -> Channel {
    for _ in 0..100 {
        if let Ok(channel) = Channel::from_shared(format!("http://{addr}"))
            .expect("uri")
            .connect()
            .await
        {
            return channel;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("nothing answers on {addr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_either_side_mid_burst_loses_no_prompt_and_doubles_none() {
    for (contract_url, feedback_url) in fresh_databases().await {
        kill_mid_burst(&contract_url, &feedback_url).await;
    }
}

/// Ends each contract of `ids` (the `w`-th third), retrying with the same
/// request id while contract-service is away.
async fn end_all(caddr: SocketAddr, w: usize, ids: Vec<String>) {
    for (i, id) in ids.iter().enumerate() {
        let client_spec = TokenSpec::user(&format!("client-{}", w + 3 * i));
        loop {
            let Ok(channel) = Channel::from_shared(format!("http://{caddr}"))
                .expect("uri")
                .connect()
                .await
            else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let ended = ContractServiceClient::new(channel)
                .end_contract(token_request(
                    &client_spec,
                    cpb::EndContractRequest {
                        contract_id: id.clone(),
                        reason: "burst".into(),
                        request_id: format!("end-{id}"),
                    },
                ))
                .await;
            match ended {
                Ok(_) => break,
                // The server went away under the call: retry, same key.
                Err(status)
                    if matches!(
                        status.code(),
                        tonic::Code::Unavailable
                            | tonic::Code::Unknown
                            | tonic::Code::Internal
                            | tonic::Code::Cancelled
                    ) =>
                {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Err(status) => panic!("end {id}: {status}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
}

/// Prompt notifications per (contract, recipient, channel), read once the
/// outbox holds `want` of them (or after 40 s).
async fn prompts(faddr: SocketAddr, want: usize) -> HashMap<(String, String, i32), usize> {
    let mut watcher = FeedbackServiceClient::new(channel(faddr).await);
    let mut prompts = HashMap::new();
    for _ in 0..40 {
        prompts.clear();
        let mut stream = watcher
            .watch_events(token_request(
                &TokenSpec::service("audit", &["events:read"]),
                fpb::WatchEventsRequest { after_sequence: 0 },
            ))
            .await
            .expect("watch")
            .into_inner();
        while let Ok(Some(next)) =
            tokio::time::timeout(Duration::from_millis(700), stream.next()).await
        {
            let event = next.expect("event").event.expect("event");
            if let Some(fpb::event::Payload::NotificationRequested(n)) = event.payload
                && n.kind() == fpb::NotificationKind::EndFeedbackPrompt
            {
                *prompts
                    .entry((event.contract_id.clone(), n.recipient_id.clone(), n.channel))
                    .or_default() += 1;
            }
        }
        if prompts.values().sum::<usize>() >= want {
            break;
        }
    }
    prompts
}

async fn kill_mid_burst(contract_url: &str, feedback_url: &str) {
    let caddr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let (stop, server) = start_contracts(caddr, contract_url).await;
    let fport = free_port();
    let mut feedback = start_feedback(fport, feedback_url, caddr);
    let mut client = ContractServiceClient::new(channel(caddr).await);
    let hiring = TokenSpec::service("hiring", &["contracts:write"]);
    let mut ids = Vec::new();
    for k in 0..CONTRACTS {
        let created = client
            .create_contract(token_request(
                &hiring,
                cpb::CreateContractRequest {
                    client_id: format!("client-{k}"),
                    freelancer_id: format!("free-{k}"),
                    title: "burst".into(),
                    r#type: cpb::ContractType::FixedPrice as i32,
                    currency_code: "USD".into(),
                    start_time: Some(shared::time::to_proto(
                        chrono::Utc::now() - chrono::Duration::days(40),
                    )),
                    ..Default::default()
                },
            ))
            .await
            .expect("create")
            .into_inner()
            .contract
            .expect("contract");
        ids.push(created.id);
    }

    let enders: Vec<_> = (0..3)
        .map(|w| {
            let ids: Vec<String> = ids.iter().skip(w).step_by(3).cloned().collect();
            tokio::spawn(end_all(caddr, w, ids))
        })
        .collect();

    // Mid-burst: SIGKILL feedback-service and start it again; then stop
    // contract-service and start it again on the same port and database.
    tokio::time::sleep(Duration::from_millis(200)).await;
    feedback.kill().await.expect("SIGKILL feedback-service");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut feedback = start_feedback(fport, feedback_url, caddr);
    tokio::time::sleep(Duration::from_millis(150)).await;
    let _ = stop.send(());
    let _ = server.await;
    let (stop, server) = start_contracts(caddr, contract_url).await;
    for ender in enders {
        ender.await.expect("every contract ended");
    }

    let faddr: SocketAddr = format!("127.0.0.1:{fport}").parse().expect("addr");
    let want = CONTRACTS * 4;
    let prompts = prompts(faddr, want).await;
    let twice: Vec<_> = prompts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "prompted twice ({feedback_url}): {twice:?}"
    );
    for (k, id) in ids.iter().enumerate() {
        for who in [format!("client-{k}"), format!("free-{k}")] {
            for channel in [
                fpb::NotificationChannel::Email,
                fpb::NotificationChannel::InAppMessage,
            ] {
                assert!(
                    prompts.contains_key(&(id.clone(), who.clone(), channel as i32)),
                    "{who} of {id} not prompted by {channel:?} ({feedback_url})"
                );
            }
        }
    }
    assert_eq!(prompts.len(), want, "only the ended contracts' parties");
    feedback.kill().await.expect("stop");
    let _ = stop.send(());
    let _ = server.await;
}
