//! What the tests that run the real contract-service binary share: tokens,
//! a fresh database per backend, starting the binary and connecting to it.
// Each test binary uses its own part of this module.
#![allow(dead_code)]

use std::collections::HashSet;
use std::process::Stdio;
use std::time::Duration;

use shared::auth::{TokenSpec, mint_dev};
use shared::proto::contract::v1 as pb;
use shared::proto::contract::v1::contract_service_client::ContractServiceClient;
use tokio::process::{Child, Command};
use tonic::transport::Channel;

pub fn authorized<T>(scopes: &[&str], message: T) -> tonic::Request<T> {
    as_token(
        &mint_dev(&TokenSpec::service("crash-test", scopes)).expect("mint"),
        message,
    )
}

pub fn as_user<T>(user: &str, message: T) -> tonic::Request<T> {
    as_token(&mint_dev(&TokenSpec::user(user)).expect("mint"), message)
}

pub fn as_token<T>(token: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("ascii"),
    );
    request
}

pub async fn fresh_database() -> Vec<String> {
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

pub fn start(port: u16, database_url: &str) -> Child {
    start_with(port, database_url, &[])
}

pub fn start_with(port: u16, database_url: &str, extra: &[&str]) -> Child {
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

pub async fn connect(port: u16) -> ContractServiceClient<Channel> {
    ContractServiceClient::new(channel(port).await)
}

pub async fn channel(port: u16) -> Channel {
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

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// The whole outbox, which must hold exactly `expected` events, sequenced
/// 1..=N without a gap or a reorder, with no event id twice.
pub async fn whole_outbox(
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
