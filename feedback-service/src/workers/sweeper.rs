//! The sweeper: expires overdue feedback requests, reveals feedback whose
//! window closed, and sends due end-of-contract reminders.

use std::time::Duration as StdDuration;

use crate::api::FeedbackApi;
use crate::end_contract::{closed_unrevealed_contracts, reveal};
use crate::error::Error;
use crate::requests::{emit_expired, expire_requests};
use crate::store;
use shared::db::Due;
use shared::proto::feedback::v1 as pb;

/// One sweep: expire overdue requests, reveal feedback whose window
/// closed, and send the end-of-contract reminders that are due.
pub async fn sweep(api: &FeedbackApi) -> Result<(), Error> {
    crate::prompts::send_due_reminders(api).await?;
    let now = api.now();
    api.mutations
        .background(move |unit| {
            Box::pin(async move {
                let expired = expire_requests(unit.tx(), None, now, 500).await?;
                emit_expired(unit, &expired, now);
                Ok::<_, Error>(())
            })
        })
        .await?;
    for contract_id in closed_unrevealed_contracts(api.db.reader(), Due::new(now, 500)).await? {
        api.mutations
            .background(move |unit| {
                Box::pin(async move {
                    store::lock_contract(unit.tx(), &contract_id).await?;
                    let ids = reveal(unit.tx(), &contract_id, now).await?;
                    if !ids.is_empty() {
                        unit.event(
                            &contract_id,
                            now,
                            "FeedbackRevealed",
                            pb::event::Payload::FeedbackRevealed(pb::FeedbackRevealed {
                                feedback_ids: ids,
                            }),
                        );
                    }
                    Ok::<_, Error>(())
                })
            })
            .await?;
    }
    Ok(())
}

pub async fn run_sweeper(api: FeedbackApi, interval: StdDuration, stop: impl Future<Output = ()>) {
    tokio::pin!(stop);
    loop {
        if let Err(err) = sweep(&api).await {
            tracing::warn!(error = %err, "feedback sweeper failed; will retry");
        }
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}
