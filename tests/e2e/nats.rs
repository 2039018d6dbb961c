//! Both services relay their outbox to NATS JetStream when given
//! `--nats-url`: each to its own stream, subjects per event type, the proto
//! Event as payload, in sequence order; the relay's gauges show it. (The
//! kill-and-restart test is contract-service/tests/nats.rs, on the binary.)

use std::time::Duration as StdDuration;

use e2e::scenario::{mid_feedback, paid_contract};
use e2e::{FeedbackApp, Stack, TestApp, TestBackend, backend_tests, wait_for_metric};
use prost::Message;
use shared::nats::TestServer;
use shared::proto::contract::v1 as pb;
use shared::proto::feedback::v1 as fpb;

/// The (subject, outbox sequence, decoded payload) of every message in `stream`,
/// once it holds at least `at_least`.
async fn published<E: Message + Default>(
    nats: &TestServer,
    stream: &str,
    at_least: u64,
) -> Vec<(String, i64, E)> {
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.expect("connect"));
    let mut held = 0;
    for _ in 0..100 {
        if let Ok(stream) = js.get_stream(stream).await {
            held = stream.get_info().await.expect("info").state.messages;
            if held >= at_least {
                let mut messages = Vec::new();
                for seq in 1..=held {
                    let message = stream.get_raw_message(seq).await.expect("message");
                    let sequence = message
                        .headers
                        .get(shared::nats::SEQUENCE_HEADER)
                        .and_then(|v| v.as_str().parse().ok())
                        .expect("sequence header");
                    let event = E::decode(message.payload.clone()).expect("proto payload");
                    messages.push((message.subject.to_string(), sequence, event));
                }
                return messages;
            }
        }
        tokio::time::sleep(StdDuration::from_millis(100)).await;
    }
    panic!("{stream} holds {held} messages, expected at least {at_least}");
}

async fn both_services_publish_their_events_to_their_own_streams(backend: TestBackend) {
    let Some(nats) = TestServer::start_or_skip().await else {
        return;
    };
    let contracts = TestApp::spawn_with(&backend, |config| {
        config.service.nats.nats_url = Some(nats.url());
    })
    .await;
    let mut config = FeedbackApp::config(&backend.fresh_database_url().await, contracts.addr);
    config.service.nats.nats_url = Some(nats.url());
    let feedback = FeedbackApp::spawn(config, contracts.clock.clone()).await;
    let s = Stack {
        contracts,
        feedback,
    };
    // ContractCreated, PaymentRecorded; then MidContractFeedbackGiven.
    let c = paid_contract(&s, "client-1", "free-1").await;
    mid_feedback(&s, "client-1", &c).await;

    let contract_events = published::<pb::Event>(&nats, "MARKETPLACE_CONTRACT_EVENTS", 2).await;
    let subjects: Vec<&str> = contract_events.iter().map(|(s, _, _)| s.as_str()).collect();
    assert_eq!(
        subjects,
        [
            "marketplace.contract.v1.events.ContractCreated",
            "marketplace.contract.v1.events.PaymentRecorded"
        ]
    );
    for (index, (_, sequence, event)) in contract_events.iter().enumerate() {
        assert_eq!(*sequence, index as i64 + 1);
        assert_eq!(
            event.sequence, *sequence,
            "the payload carries its sequence"
        );
        assert_eq!(event.contract_id, c.id);
    }
    let feedback_events = published::<fpb::Event>(&nats, "MARKETPLACE_FEEDBACK_EVENTS", 1).await;
    assert!(
        feedback_events
            .iter()
            .any(|(subject, _, _)| subject
                == "marketplace.feedback.v1.events.MidContractFeedbackGiven"),
        "{:?}",
        feedback_events
            .iter()
            .map(|(s, q, _)| (s, q))
            .collect::<Vec<_>>()
    );
    let last = feedback_events
        .last()
        .map(|(_, q, _)| *q)
        .unwrap_or_default();
    assert_eq!(
        last,
        feedback_events.len() as i64,
        "in sequence order from 1"
    );

    // The relay's gauges: connected, and where it is (the consumer-lag rules read it).
    let soon = StdDuration::from_secs(5);
    for (metrics, stream, sequence) in [
        (s.contracts.metrics_addr, "MARKETPLACE_CONTRACT_EVENTS", 2),
        (s.feedback.metrics_addr, "MARKETPLACE_FEEDBACK_EVENTS", last),
    ] {
        wait_for_metric(metrics, "nats_relay_connected", &[], 1.0, soon).await;
        wait_for_metric(
            metrics,
            "outbox_consumer_sequence",
            &[("consumer", &format!("jetstream:{stream}"))],
            sequence as f64,
            soon,
        )
        .await;
    }

    // nats-server goes away: the service keeps answering, the gauge says so,
    // and once it is back the relay publishes what was committed meanwhile.
    let mut nats = nats;
    nats.kill();
    wait_for_metric(
        s.contracts.metrics_addr,
        "nats_relay_connected",
        &[],
        0.0,
        StdDuration::from_secs(15),
    )
    .await;
    s.contracts
        .end_contract("client-1", &c.id, "done")
        .await
        .expect("ending needs no broker");
    nats.restart().await;
    let after = published::<pb::Event>(&nats, "MARKETPLACE_CONTRACT_EVENTS", 3).await;
    assert_eq!(after.len(), 3, "each event once");
    assert_eq!(after[2].0, "marketplace.contract.v1.events.ContractEnded");
    assert_eq!(after[2].1, 3);
    s.feedback.stop().await;
    s.contracts.stop().await;
}

backend_tests!(both_services_publish_their_events_to_their_own_streams);
