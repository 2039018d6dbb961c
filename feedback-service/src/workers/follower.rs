//! The contract-events follower: reads contract-service's `WatchEvents` from
//! the stored cursor and hands each event to `prompts::apply`, reconnecting.
//!
//! It reads with feedback-service's own service token (scope `events:read`)
//! from a cursor kept in this service's database. Since each event is applied
//! with its cursor move, a crash of either service, a reconnection or a
//! second replica never applies an event twice or skips one.

use std::time::Duration as StdDuration;

use tokio::sync::watch;

use super::{FIRST_BACKOFF, double};
use crate::api::FeedbackApi;
use crate::error::Error;
use crate::prompts::{apply, store};

/// The health service name whose status follows the event follower:
/// SERVING while it holds an open stream from contract-service.
pub const HEALTH_NAME: &str = "marketplace.feedback.v1.ContractEvents";

/// What the follower reports.
#[derive(Debug, Clone)]
pub struct FollowerGauges {
    /// `contract_events_cursor`: the last contract-service event applied.
    pub cursor: prometheus::IntGauge,
    /// `contract_events_lag_seconds`: how old the last applied event was when
    /// applied (0 once the stream is quiet: caught up).
    pub lag_seconds: prometheus::IntGauge,
    /// `contract_events_connected`: 1 while the stream is open.
    pub connected: prometheus::IntGauge,
}

impl FollowerGauges {
    pub fn register(metrics: &shared::metrics::Metrics) -> Result<Self, prometheus::Error> {
        Ok(Self {
            cursor: metrics.gauge(
                "contract_events_cursor",
                "Sequence of the last contract-service event feedback-service applied.",
            )?,
            lag_seconds: metrics.gauge(
                "contract_events_lag_seconds",
                "Age in seconds of the last contract-service event when feedback-service applied it (0 when caught up).",
            )?,
            connected: metrics.gauge(
                "contract_events_connected",
                "1 while feedback-service holds an open WatchEvents stream from contract-service, else 0.",
            )?,
        })
    }
}

/// Follows contract-service's events until `stop`: reconnects with backoff
/// (100 ms doubling to `max_backoff`) and resumes from the stored cursor.
/// `healthy` is true while a stream is open.
pub async fn run_follower(
    api: FeedbackApi,
    gauges: FollowerGauges,
    healthy: watch::Sender<bool>,
    max_backoff: StdDuration,
    stop: impl Future<Output = ()>,
) {
    tokio::pin!(stop);
    let mut backoff = FIRST_BACKOFF;
    loop {
        let pass = follow(&api, &gauges, &healthy, &mut backoff);
        let result = tokio::select! {
            _ = &mut stop => break,
            result = pass => result,
        };
        gauges.connected.set(0);
        healthy.send_replace(false);
        if let Err(err) = result {
            tracing::warn!(error = %err, retry_in_ms = backoff.as_millis() as u64, "following contract-service's events interrupted");
        }
        tokio::select! {
            _ = &mut stop => break,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = double(backoff, max_backoff);
    }
    gauges.connected.set(0);
    healthy.send_replace(false);
}

/// One stream: from the cursor until the stream ends or an event cannot be applied.
async fn follow(
    api: &FeedbackApi,
    gauges: &FollowerGauges,
    healthy: &watch::Sender<bool>,
    backoff: &mut StdDuration,
) -> Result<(), Error> {
    let after = store::cursor(api.db().reader()).await?;
    gauges.cursor.set(after);
    let mut stream = api
        .contracts()
        .watch_events(after)
        .await
        .map_err(Error::ContractService)?;
    gauges.connected.set(1);
    healthy.send_replace(true);
    tracing::info!(
        after_sequence = after,
        "following contract-service's events"
    );
    loop {
        let next = tokio::time::timeout(StdDuration::from_secs(1), stream.message()).await;
        let Ok(next) = next else {
            // Quiet for a second: caught up.
            gauges.lag_seconds.set(0);
            continue;
        };
        let Some(message) = next.map_err(Error::ContractService)? else {
            return Ok(());
        };
        let Some(event) = message.event else {
            continue;
        };
        let (sequence, occurred) = (event.sequence, event.occur_time);
        apply(api, event).await?;
        *backoff = FIRST_BACKOFF;
        gauges.cursor.set(sequence);
        if let Some(occurred) = occurred.and_then(|t| shared::time::from_proto(&t)) {
            gauges
                .lag_seconds
                .set((api.now() - occurred).num_seconds().max(0));
        }
    }
}
