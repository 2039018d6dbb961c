//! The outbox relay to NATS JetStream, against a real `nats-server -js`:
//! nats-server and then contract-service are SIGKILLed and restarted in the
//! middle of a burst of writes, and the stream ends up holding every
//! committed event exactly once, in sequence order, with its id as the
//! message id and the proto Event as payload. Needs `nats-server` on the PATH
//! (Debian's package; or NATS_SERVER=path); set REQUIRE_NATS to fail rather
//! than skip without it (CI does). Runs on SQLite, and on PostgreSQL when
//! `TEST_POSTGRES_URL` is set.

mod support;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use prost::Message;
use shared::nats::TestServer;
use shared::proto::contract::v1 as pb;
use shared::proto::contract::v1::contract_service_client::ContractServiceClient;
use shared::testing::{TestBackend, assert_gap_free, create_contract, free_addr, watch_outbox};
use support::{connect, fixed_price, start};
use tonic::transport::Channel;

const STREAM: &str = "MARKETPLACE_CONTRACT_EVENTS";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_stream_holds_every_event_once_in_order_across_kills_of_nats_and_the_service() {
    for backend in TestBackend::all() {
        let url = backend.fresh_database_url().await;
        let Some(nats) = TestServer::start_or_skip().await else {
            return;
        };
        kills_mid_stream(nats, &url).await;
    }
}

/// Writers creating contracts until `stop` or the first failed call; each
/// returns the ids the service acknowledged.
fn writers(
    client: &ContractServiceClient<Channel>,
    stop: &Arc<AtomicBool>,
    round: usize,
) -> Vec<tokio::task::JoinHandle<Vec<String>>> {
    (0..6)
        .map(|w| {
            let (client, stop) = (client.clone(), stop.clone());
            tokio::spawn(async move {
                let mut acked = Vec::new();
                for i in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let create = fixed_price(
                        format!("client-{w}"),
                        format!("free-{round}-{i}"),
                        "relay",
                        format!("r{round}-{w}-{i}"),
                    );
                    match create_contract(&client, create).await {
                        Ok(created) => acked.push(created.id),
                        Err(_) => break,
                    }
                }
                acked
            })
        })
        .collect()
}

async fn joined(handles: Vec<tokio::task::JoinHandle<Vec<String>>>) -> Vec<String> {
    let mut all = Vec::new();
    for handle in handles {
        all.extend(handle.await.expect("join"));
    }
    all
}

async fn kills_mid_stream(mut nats: TestServer, url: &str) {
    // A duplicate window of 1 s: past it, only the relay's resume point (the
    // stream's last event) keeps a restarted relay from publishing again.
    let relay_args = [
        "--nats-url".to_owned(),
        nats.url(),
        "--nats-duplicate-window-secs".to_owned(),
        "1".to_owned(),
    ];
    let relay_args: Vec<&str> = relay_args.iter().map(String::as_str).collect();
    let addr = free_addr();
    let mut service = start(addr, url, &relay_args);
    let client = connect(addr).await;

    // Round 1: nats-server is SIGKILLed and restarted mid-burst (the service
    // keeps answering), then the service itself is SIGKILLed.
    let stop = Arc::new(AtomicBool::new(false));
    let round1 = writers(&client, &stop, 1);
    tokio::time::sleep(Duration::from_millis(400)).await;
    nats.kill();
    tokio::time::sleep(Duration::from_millis(600)).await;
    nats.restart().await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    service.kill().await.expect("SIGKILL contract-service");
    let mut acked = joined(round1).await;
    assert!(
        acked.len() > 10,
        "writes acknowledged in round 1 ({url}): {}",
        acked.len()
    );

    // Round 2: the service comes back on the same database, after the
    // broker's duplicate window, and resumes.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let mut service = start(addr, url, &relay_args);
    let client = connect(addr).await;
    let round2 = writers(&client, &stop, 2);
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    acked.extend(joined(round2).await);

    // Every event in the outbox, read with WatchEvents until it stays quiet.
    let outbox = watch_outbox(&client)
        .await
        .until_quiet(Duration::from_secs(2))
        .await;
    assert_gap_free(&outbox, url);
    let created: HashSet<String> = outbox.iter().map(|e| e.contract_id.clone()).collect();
    for id in &acked {
        assert!(
            created.contains(id),
            "acknowledged contract {id} has no event ({url})"
        );
    }

    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.expect("connect"));
    let stream = js
        .get_stream(STREAM)
        .await
        .expect("the relay created its stream");
    let expected = u64::try_from(outbox.len()).expect("small");
    let mut last = 0;
    for _ in 0..300 {
        last = stream.get_info().await.expect("stream info").state.messages;
        if last >= expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let info = stream.get_info().await.expect("stream info");
    assert_eq!(
        info.state.messages, expected,
        "the stream holds exactly the outbox's events ({url}; saw {last} earlier)"
    );
    assert_eq!(
        info.state.first_sequence, 1,
        "nothing removed from the stream ({url})"
    );
    for (index, event) in outbox.iter().enumerate() {
        let message = stream
            .get_raw_message(index as u64 + 1)
            .await
            .expect("stream message");
        let header = |name: &str| {
            message
                .headers
                .get(name.parse::<async_nats::HeaderName>().expect("header name"))
                .map(|value| value.as_str().to_owned())
                .unwrap_or_default()
        };
        assert_eq!(
            header(shared::nats::SEQUENCE_HEADER),
            event.sequence.to_string(),
            "stream message {} is outbox event {} ({url})",
            index + 1,
            event.sequence
        );
        assert_eq!(header("Nats-Msg-Id"), event.event_id, "message id ({url})");
        assert_eq!(header("Content-Type"), shared::nats::CONTENT_TYPE);
        assert_eq!(
            header(shared::nats::MESSAGE_HEADER),
            "marketplace.contract.v1.Event"
        );
        assert_eq!(
            message.subject.as_str(),
            "marketplace.contract.v1.events.ContractCreated"
        );
        let published = pb::Event::decode(message.payload.clone()).expect("proto Event payload");
        assert_eq!(
            &published, event,
            "payload is the event as WatchEvents gives it ({url})"
        );
    }
    service.kill().await.expect("stop");
}
