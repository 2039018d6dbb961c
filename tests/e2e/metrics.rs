//! The gauges the monitoring rules (deploy/monitoring) read beyond the gRPC
//! counters, scraped from `/metrics`: the bonus backlog's age and the
//! sweeper's lag against the test clock, at their boundaries, and each
//! `WatchEvents` consumer's last sequence on both services.

use std::net::SocketAddr;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use e2e::scenario::{
    client_review, early_contract, end_by, ended_contract, feedback_request, freelancer_review,
    mid_feedback, paid_contract,
};
use e2e::{EARLY_CLIENT, Stack, TestBackend, backend_tests, metric_stays, wait_for_metric};
use futures::StreamExt;
use shared::testing::{Outbox, OutboxEvent, Watched};

/// Long enough for a sampling round of the database gauges (every 5 s).
const SAMPLED: StdDuration = StdDuration::from_secs(15);
/// Longer than one sampling interval: a fresh sample is among what is read.
const ONE_ROUND: StdDuration = StdDuration::from_secs(6);

const OLDEST_BONUS: &str = "bonus_pending_oldest_age_seconds";
const SWEEPER_LAG: &str = "sweeper_lag_seconds";
const CONSUMER: &str = "outbox_consumer_sequence";

/// A stack whose feedback-service runs no workers (no bonus payer, no
/// sweeper): what they would pick up stays put. With its metrics port and
/// the test clock's start.
async fn without_workers(backend: &TestBackend) -> (Stack, SocketAddr, DateTime<Utc>) {
    let s = Stack::spawn_with(backend, |config| config.run_workers = false).await;
    let (metrics, t0) = (s.feedback.metrics_addr, s.contracts.now());
    (s, metrics, t0)
}

async fn the_oldest_pending_bonus_ages_on_the_service_clock(backend: TestBackend) {
    // No bonus payer: bonuses stay pending.
    let (s, metrics, t0) = without_workers(&backend).await;
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

/// The sweeper's lag on a stack of its own: what `settled` leaves at the
/// start (work the sweeper has no part in) does not count; what `pending`
/// leaves an hour later counts from when it falls due, 14 days on (the
/// instant `pending` returns): 0 up to a second before, 90 once 90 s past.
async fn sweeper_lag(
    backend: &TestBackend,
    settled: impl AsyncFnOnce(&Stack),
    pending: impl AsyncFnOnce(&Stack) -> DateTime<Utc>,
) {
    let (s, metrics, t0) = without_workers(backend).await;
    settled(&s).await;
    s.contracts.set_time(t0 + Duration::hours(1));
    let due = pending(&s).await;
    assert_eq!(due, t0 + Duration::hours(1) + Duration::days(14));
    s.contracts.set_time(due - Duration::seconds(1));
    metric_stays(metrics, SWEEPER_LAG, &[], 0.0, ONE_ROUND).await;
    s.contracts.set_time(due + Duration::seconds(90));
    wait_for_metric(metrics, SWEEPER_LAG, &[], 90.0, SAMPLED).await;
}

/// A request the client answered at once: fulfilled (its expiry passes
/// too, but there is nothing to sweep).
async fn answered_request(s: &Stack) {
    let c = paid_contract(s, "client-1", "free-1").await;
    feedback_request(s, "free-1", &c).await;
    let given = mid_feedback(s, "client-1", &c).await;
    assert!(!given.fulfilled_request_id.is_empty(), "{given:?}");
}

/// A request left pending: when it expires.
async fn unanswered_request(s: &Stack) -> DateTime<Utc> {
    let c = paid_contract(s, "client-2", "free-2").await;
    let request = feedback_request(s, "free-2", &c).await;
    shared::time::from_proto(&request.expire_time.expect("expiry")).expect("valid expiry")
}

/// End-of-contract feedback both sides gave: revealed at once, so it does
/// not count however old.
async fn feedback_from_both_sides(s: &Stack) {
    let c = ended_contract(s, "client-1", "free-1").await;
    client_review(s, "client-1", &c).await;
    let second = freelancer_review(s, "free-1", &c).await;
    assert!(second.revealed, "both sides: revealed at once");
}

/// One side's end-of-contract feedback, not yet revealed: when its window
/// closes, 14 days after the end.
async fn feedback_from_one_side(s: &Stack) -> DateTime<Utc> {
    let c = ended_contract(s, "client-2", "free-2").await;
    client_review(s, "client-2", &c).await;
    s.contracts.now() + Duration::days(14)
}

async fn the_sweeper_lag_counts_what_the_sweeper_picks_up(backend: TestBackend) {
    tokio::join!(
        // A request pending past its expiry.
        sweeper_lag(&backend, answered_request, unanswered_request),
        // One side's end-of-contract feedback after its window closed.
        sweeper_lag(&backend, feedback_from_both_sides, feedback_from_one_side),
    );
}

/// The sequences `consumer` is sent after `after_sequence`, read until no
/// event arrives for a second.
async fn sequences_sent<C: Outbox>(client: C, consumer: &str, after_sequence: i64) -> Vec<i64> {
    let mut stream = client
        .watch_as(consumer, after_sequence)
        .await
        .expect("watch");
    let mut sequences = Vec::new();
    while let Ok(next) = tokio::time::timeout(StdDuration::from_secs(1), stream.next()).await {
        let event = next.expect("stream open").expect("event").into_event();
        sequences.push(event.expect("event").sequence());
    }
    sequences
}

/// Waits (2 s at most) until the service on `metrics` reports `sequence`
/// as the last one `consumer` was sent.
async fn consumer_at(metrics: SocketAddr, consumer: &str, sequence: i64) {
    let labels = [("consumer", consumer)];
    let immediately = StdDuration::from_secs(2);
    wait_for_metric(metrics, CONSUMER, &labels, sequence as f64, immediately).await;
}

async fn each_event_consumer_reports_the_last_sequence_it_was_sent(backend: TestBackend) {
    let s = Stack::spawn(&backend).await;
    let (contracts, feedback) = (s.contracts.metrics_addr, s.feedback.metrics_addr);

    // contract-service: billing reads everything there is, then hangs up.
    let c = paid_contract(&s, "client-1", "free-1").await;
    let billing = sequences_sent(s.contracts.contracts.clone(), "billing", 0).await;
    assert!(billing.len() >= 2, "{billing:?}");
    assert_eq!(billing, (1..=billing.len() as i64).collect::<Vec<_>>());
    let billed = *billing.last().expect("events");
    consumer_at(contracts, "billing", billed).await;

    // More events; search-indexer reads them all; billing keeps its value.
    end_by(&s, "client-1", &c).await;
    let indexed = sequences_sent(s.contracts.contracts.clone(), "search-indexer", 0).await;
    let indexed = *indexed.last().expect("events");
    assert!(indexed > billed, "{indexed} after {billed}");
    consumer_at(contracts, "search-indexer", indexed).await;
    consumer_at(contracts, "billing", billed).await;

    // feedback-service: a consumer resuming from a sequence is sent the rest.
    feedback_request(&s, "free-1", &paid_contract(&s, "client-2", "free-1").await).await;
    let notified = sequences_sent(s.feedback.client(), "notifier", 1).await;
    assert!(notified.len() >= 2, "{notified:?}");
    assert_eq!(notified[0], 2, "resumed after 1");
    consumer_at(feedback, "notifier", *notified.last().expect("events")).await;
    // Each service counts only its own consumers.
    let text = e2e::http_get(feedback, "/metrics").await;
    assert!(!text.contains(r#"consumer="billing""#), "{text}");
}

backend_tests!(
    the_oldest_pending_bonus_ages_on_the_service_clock,
    the_sweeper_lag_counts_what_the_sweeper_picks_up,
    each_event_consumer_reports_the_last_sequence_it_was_sent,
);
