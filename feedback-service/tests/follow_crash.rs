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
use std::sync::Arc;
use std::time::Duration;

use shared::proto::contract::v1 as cpb;
use shared::proto::contract::v1::contract_service_client::ContractServiceClient;
use shared::proto::feedback::v1 as fpb;
use shared::proto::feedback::v1::feedback_service_client::FeedbackServiceClient;
use shared::testing::{
    InProcess, TestBackend, as_user, channel, create_contract, free_addr, start_service,
    usd_contract, watch_outbox,
};
use tokio::process::Child;
use tonic::transport::Channel;

const CONTRACTS: usize = 48;

/// contract-service in this process, until stopped (draining).
async fn start_contracts(addr: SocketAddr, url: &str) -> InProcess {
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
    InProcess::spawn(|shutdown| app.run_until_stopped(shutdown))
}

/// The feedback-service binary on `addr`, following the contract-service on `contracts`.
fn start_feedback(addr: SocketAddr, url: &str, contracts: SocketAddr) -> Child {
    let contracts = format!("http://{contracts}");
    start_service(
        env!("CARGO_BIN_EXE_feedback-service"),
        addr,
        url,
        &[
            "--contract-service-url",
            &contracts,
            "--contract-events-retry-max-ms",
            "200",
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_either_side_mid_burst_loses_no_prompt_and_doubles_none() {
    // (contract-service database, feedback-service database) per backend.
    for backend in TestBackend::all() {
        let contract_url = backend.fresh_database_url().await;
        let feedback_url = backend.fresh_database_url().await;
        kill_mid_burst(&contract_url, &feedback_url).await;
    }
}

/// Ends each contract of `ids` (the `w`-th third), retrying with the same
/// request id while contract-service is away.
async fn end_all(caddr: SocketAddr, w: usize, ids: Vec<String>) {
    for (i, id) in ids.iter().enumerate() {
        let client = format!("client-{}", w + 3 * i);
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
                .end_contract(as_user(
                    &client,
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
    let watcher = FeedbackServiceClient::new(channel(faddr).await);
    let mut prompts = HashMap::new();
    for _ in 0..40 {
        prompts.clear();
        let mut stream = watch_outbox(&watcher).await;
        while let Some(event) = stream.next_within(Duration::from_millis(700)).await {
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
    let caddr = free_addr();
    let contracts = start_contracts(caddr, contract_url).await;
    let faddr = free_addr();
    let mut feedback = start_feedback(faddr, feedback_url, caddr);
    let client = ContractServiceClient::new(channel(caddr).await);
    let mut ids = Vec::new();
    for k in 0..CONTRACTS {
        let burst = cpb::CreateContractRequest {
            start_time: Some(shared::time::to_proto(
                chrono::Utc::now() - chrono::Duration::days(40),
            )),
            ..usd_contract(
                cpb::ContractType::FixedPrice,
                format!("client-{k}"),
                format!("free-{k}"),
                "burst",
            )
        };
        ids.push(create_contract(&client, burst).await.expect("create").id);
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
    let mut feedback = start_feedback(faddr, feedback_url, caddr);
    tokio::time::sleep(Duration::from_millis(150)).await;
    let _ = contracts.stop().await;
    let contracts = start_contracts(caddr, contract_url).await;
    for ender in enders {
        ender.await.expect("every contract ended");
    }

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
    let _ = contracts.stop().await;
}
