//! The gauges the monitoring rules (deploy/monitoring) read beyond the gRPC
//! counters, scraped from `/metrics`: the bonus backlog's age and the
//! sweeper's lag against the test clock, at their boundaries, and each
//! `WatchEvents` consumer's last sequence on both services.

use std::time::Duration as StdDuration;

use chrono::Duration;
use e2e::scenario::{
    early_contract, end_by, ended_contract, freelancer_review, mid_feedback, paid_contract,
};
use e2e::{
    EARLY_CLIENT, Stack, TestBackend, as_service, backend_tests, metric_stays, wait_for_metric,
};
use futures::StreamExt;
use shared::proto::contract::v1 as pb;
use shared::proto::feedback::v1 as fpb;

/// Long enough for a sampling round of the database gauges (every 5 s).
const SAMPLED: StdDuration = StdDuration::from_secs(15);
/// Longer than one sampling interval: a fresh sample is among what is read.
const ONE_ROUND: StdDuration = StdDuration::from_secs(6);

const OLDEST_BONUS: &str = "bonus_pending_oldest_age_seconds";
const SWEEPER_LAG: &str = "sweeper_lag_seconds";
const CONSUMER: &str = "outbox_consumer_sequence";

async fn the_oldest_pending_bonus_ages_on_the_service_clock(backend: TestBackend) {
    // No bonus payer: bonuses stay pending.
    let s = Stack::spawn_with(&backend, |config| config.run_workers = false).await;
    let metrics = s.feedback.metrics_addr;
    let t0 = s.contracts.now();
    wait_for_metric(metrics, OLDEST_BONUS, &[], 0.0, SAMPLED).await;

    let first = early_contract(&s, "free-1").await;
    s.feedback
        .submit_mid(EARLY_CLIENT, &first.id, Some(700))
        .await
        .expect("feedback with bonus");
    wait_for_metric(metrics, "bonus_pending", &[], 1.0, SAMPLED).await;
    // Just committed: pending, but not old.
    wait_for_metric(metrics, OLDEST_BONUS, &[], 0.0, SAMPLED).await;

    // Over the alert's 30 minutes on the test clock (the database's clock
    // would say otherwise).
    s.contracts.set_time(t0 + Duration::seconds(1801));
    wait_for_metric(metrics, OLDEST_BONUS, &[], 1801.0, SAMPLED).await;

    // A newer bonus does not make the backlog younger: the oldest counts.
    let second = early_contract(&s, "free-2").await;
    s.feedback
        .submit_mid(EARLY_CLIENT, &second.id, Some(300))
        .await
        .expect("second feedback with bonus");
    s.contracts.set_time(t0 + Duration::seconds(1900));
    wait_for_metric(metrics, "bonus_pending", &[], 2.0, SAMPLED).await;
    wait_for_metric(metrics, OLDEST_BONUS, &[], 1900.0, SAMPLED).await;
}

/// A request pending past its expiry: the lag is 0 until it expires, then
/// the time since (a fulfilled request that expired earlier does not count).
async fn an_expired_request_waits_for_the_sweeper(backend: &TestBackend) {
    let s = Stack::spawn_with(backend, |config| config.run_workers = false).await;
    let metrics = s.feedback.metrics_addr;
    let t0 = s.contracts.now();
    let answered = paid_contract(&s, "client-1", "free-1").await;
    s.feedback
        .request_feedback("free-1", &answered.id)
        .await
        .expect("request");
    let given = mid_feedback(&s, "client-1", &answered).await;
    assert!(!given.fulfilled_request_id.is_empty(), "{given:?}");

    s.contracts.set_time(t0 + Duration::hours(1));
    let c = paid_contract(&s, "client-2", "free-2").await;
    let request = s
        .feedback
        .request_feedback("free-2", &c.id)
        .await
        .expect("request");
    let due =
        shared::time::from_proto(&request.expire_time.expect("expiry")).expect("valid expiry");
    assert_eq!(due, t0 + Duration::hours(1) + Duration::days(14));

    s.contracts.set_time(due - Duration::seconds(1));
    metric_stays(metrics, SWEEPER_LAG, &[], 0.0, ONE_ROUND).await;
    s.contracts.set_time(due + Duration::seconds(90));
    wait_for_metric(metrics, SWEEPER_LAG, &[], 90.0, SAMPLED).await;
}

/// One side's end-of-contract feedback after its window closed, not yet
/// revealed: 0 until the window closes, then the time since (feedback that
/// both sides gave, revealed at once, does not count however old).
async fn a_closed_window_waits_for_the_sweeper(backend: &TestBackend) {
    let s = Stack::spawn_with(backend, |config| config.run_workers = false).await;
    let metrics = s.feedback.metrics_addr;
    let t0 = s.contracts.now();
    let both = ended_contract(&s, "client-1", "free-1").await;
    s.feedback
        .client_end_feedback("client-1", &both.id)
        .await
        .expect("client side");
    let second = freelancer_review(&s, "free-1", &both).await;
    assert!(second.revealed, "both sides: revealed at once");

    s.contracts.set_time(t0 + Duration::hours(1));
    let one = ended_contract(&s, "client-2", "free-2").await;
    s.feedback
        .client_end_feedback("client-2", &one.id)
        .await
        .expect("client side only");
    let due = t0 + Duration::hours(1) + Duration::days(14);

    s.contracts.set_time(due - Duration::seconds(1));
    metric_stays(metrics, SWEEPER_LAG, &[], 0.0, ONE_ROUND).await;
    s.contracts.set_time(due + Duration::seconds(90));
    wait_for_metric(metrics, SWEEPER_LAG, &[], 90.0, SAMPLED).await;
}

async fn the_sweeper_lag_counts_what_the_sweeper_picks_up(backend: TestBackend) {
    tokio::join!(
        an_expired_request_waits_for_the_sweeper(&backend),
        a_closed_window_waits_for_the_sweeper(&backend),
    );
}

/// Reads a stream until no event arrives for a second; returns the sequences.
async fn drain<S, M>(mut stream: S, sequence: impl Fn(M) -> i64) -> Vec<i64>
where
    S: futures::Stream<Item = Result<M, tonic::Status>> + Unpin,
{
    let mut sequences = Vec::new();
    while let Ok(next) = tokio::time::timeout(StdDuration::from_secs(1), stream.next()).await {
        sequences.push(sequence(next.expect("stream open").expect("event")));
    }
    sequences
}

async fn contract_events(s: &Stack, consumer: &str) -> Vec<i64> {
    let stream = s
        .contracts
        .contracts
        .clone()
        .watch_events(as_service(
            consumer,
            &["events:read"],
            pb::WatchEventsRequest { after_sequence: 0 },
        ))
        .await
        .expect("watch")
        .into_inner();
    drain(stream, |m: pb::WatchEventsResponse| {
        m.event.expect("event").sequence
    })
    .await
}

async fn feedback_events(s: &Stack, consumer: &str, after_sequence: i64) -> Vec<i64> {
    let stream = s
        .feedback
        .client()
        .watch_events(as_service(
            consumer,
            &["events:read"],
            fpb::WatchEventsRequest { after_sequence },
        ))
        .await
        .expect("watch")
        .into_inner();
    drain(stream, |m: fpb::WatchEventsResponse| {
        m.event.expect("event").sequence
    })
    .await
}

async fn each_event_consumer_reports_the_last_sequence_it_was_sent(backend: TestBackend) {
    let s = Stack::spawn(&backend).await;
    let (contracts, feedback) = (s.contracts.metrics_addr, s.feedback.metrics_addr);
    let immediately = StdDuration::from_secs(2);

    // contract-service: billing reads everything there is, then hangs up.
    let c = paid_contract(&s, "client-1", "free-1").await;
    let billing = contract_events(&s, "billing").await;
    assert!(billing.len() >= 2, "{billing:?}");
    assert_eq!(billing, (1..=billing.len() as i64).collect::<Vec<_>>());
    let billed = *billing.last().expect("events") as f64;
    wait_for_metric(
        contracts,
        CONSUMER,
        &[("consumer", "billing")],
        billed,
        immediately,
    )
    .await;

    // More events; search-indexer reads them all; billing keeps its value.
    end_by(&s, "client-1", &c).await;
    let indexed = contract_events(&s, "search-indexer").await;
    let indexed = *indexed.last().expect("events");
    assert!(indexed as f64 > billed, "{indexed} after {billed}");
    wait_for_metric(
        contracts,
        CONSUMER,
        &[("consumer", "search-indexer")],
        indexed as f64,
        immediately,
    )
    .await;
    wait_for_metric(
        contracts,
        CONSUMER,
        &[("consumer", "billing")],
        billed,
        immediately,
    )
    .await;

    // feedback-service: a consumer resuming from a sequence is sent the rest.
    s.feedback
        .request_feedback("free-1", &paid_contract(&s, "client-2", "free-1").await.id)
        .await
        .expect("request");
    let notified = feedback_events(&s, "notifier", 1).await;
    assert!(notified.len() >= 2, "{notified:?}");
    assert_eq!(notified[0], 2, "resumed after 1");
    wait_for_metric(
        feedback,
        CONSUMER,
        &[("consumer", "notifier")],
        *notified.last().expect("events") as f64,
        immediately,
    )
    .await;
    // Each service counts only its own consumers.
    let text = e2e::http_get(feedback, "/metrics").await;
    assert!(!text.contains(r#"consumer="billing""#), "{text}");
}

backend_tests!(
    the_oldest_pending_bonus_ages_on_the_service_clock,
    the_sweeper_lag_counts_what_the_sweeper_picks_up,
    each_event_consumer_reports_the_last_sequence_it_was_sent,
);
