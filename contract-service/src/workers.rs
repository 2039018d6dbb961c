//! Background work of the service: the dispute escalation sweep, one pass
//! (`escalate_disputes_due_by`) and the loop app.rs starts.

use std::time::Duration as StdDuration;

use chrono::{DateTime, Utc};

use crate::disputes::rules::EscalationCause;
use crate::disputes::store::{escalate_dispute, overdue_disputes};
use crate::disputes::{day, instant, load, notify, reread};
use crate::error::Error;
use crate::grpc::ContractApi;
use shared::auth::{Caller, scope};
use shared::db::Due;
use shared::proto::contract::v1 as pb;

/// Most overdue disputes one sweep escalates (the next sweep takes the rest).
const SWEEP_BATCH: i64 = 500;

impl ContractApi {
    /// One sweep: escalates every OPEN dispute whose response window has
    /// closed by the service clock's now. Returns how many it escalated.
    pub async fn escalate_overdue_disputes(&self) -> Result<usize, Error> {
        self.escalate_disputes_due_by(self.now()).await
    }

    /// [`Self::escalate_overdue_disputes`] as of `now` (tests race it against
    /// an answer read at the previous second).
    pub async fn escalate_disputes_due_by(&self, now: DateTime<Utc>) -> Result<usize, Error> {
        let overdue = overdue_disputes(self.db.reader(), Due::new(now, SWEEP_BATCH)).await?;
        let mut escalated = 0;
        for id in overdue {
            let done = self
                .mutations
                .background(move |unit| {
                    Box::pin(async move {
                        // Conditional on OPEN and overdue: a concurrent answer
                        // or withdrawal that committed first wins.
                        if !escalate_dispute(unit.tx(), &id, EscalationCause::NoResponse, "", now)
                            .await?
                        {
                            return Ok::<_, Error>(pb::DisputeEscalated::default());
                        }
                        let system = Caller::Service {
                            name: "dispute-sweeper".into(),
                            scopes: vec![scope::ADMIN.into()],
                        };
                        let (dispute, contract) = load(unit.tx(), &id, &system).await?;
                        let event = pb::DisputeEscalated {
                            dispute: Some(reread(unit.tx(), &id).await?),
                        };
                        unit.event(
                            &contract.id,
                            now,
                            "DisputeEscalated",
                            pb::event::Payload::DisputeEscalated(event.clone()),
                        );
                        let text = format!(
                            "The dispute of the week of {} on \"{}\" was not answered by {}; \
                             support will review it and decide.",
                            day(dispute.week_start),
                            contract.title,
                            instant(dispute.respond_by),
                        );
                        notify(unit, &dispute, now, &contract.parties(), &text);
                        tracing::info!(dispute_id = %id, "dispute escalated: no answer in time");
                        Ok(event)
                    })
                })
                .await?;
            escalated += usize::from(done.dispute.is_some());
        }
        Ok(escalated)
    }
}

/// The escalation sweep, every `interval` until `stop`, reading now from
/// the service clock (so a test clock drives it).
pub async fn run_dispute_sweeper(
    api: ContractApi,
    interval: StdDuration,
    stop: impl Future<Output = ()>,
) {
    tokio::pin!(stop);
    loop {
        if let Err(err) = api.escalate_overdue_disputes().await {
            tracing::warn!(error = %err, "dispute sweep failed; will retry");
        }
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}
