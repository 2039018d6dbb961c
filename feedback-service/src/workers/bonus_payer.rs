//! The bonus payer: pays pending mid-contract bonuses through
//! contract-service, retrying with backoff until each is paid.

use std::time::Duration as StdDuration;

use super::{FIRST_BACKOFF, double};
use crate::api::FeedbackApi;
use crate::error::Error;
use crate::mid_contract as store;
use shared::proto::contract::v1::Money;
use shared::proto::feedback::v1 as pb;

/// Pays every pending bonus once; returns how many are still pending.
pub async fn pay_pending_bonuses(api: &FeedbackApi) -> Result<usize, Error> {
    let pending = store::pending_bonuses(api.db.reader(), 50).await?;
    let mut left = 0;
    for feedback in pending {
        let Some((currency, amount)) = feedback.bonus.clone() else {
            continue;
        };
        // Same key every time (derived from the feedback id): never paid twice.
        match api
            .contracts
            .pay_bonus(
                &feedback.contract_id,
                &feedback.id,
                &currency,
                amount,
                feedback.create_time,
            )
            .await
        {
            Ok(payment_id) => {
                let now = api.now();
                let (feedback_id, contract_id) =
                    (feedback.id.clone(), feedback.contract_id.clone());
                let paid_id = payment_id.clone();
                api.mutations
                    .background(move |unit| {
                        Box::pin(async move {
                            if store::mark_bonus_paid(unit.tx(), &feedback_id, &paid_id).await? {
                                let paid = pb::BonusPaid {
                                    feedback_id,
                                    payment_id: paid_id,
                                    amount: Some(Money {
                                        currency_code: currency,
                                        amount_minor: amount,
                                    }),
                                };
                                unit.event(
                                    &contract_id,
                                    now,
                                    "BonusPaid",
                                    pb::event::Payload::BonusPaid(paid),
                                );
                            }
                            Ok::<_, Error>(())
                        })
                    })
                    .await?;
                tracing::info!(feedback_id = %feedback.id, payment_id = %payment_id, "bonus paid");
            }
            Err(err) => {
                left += 1;
                tracing::warn!(feedback_id = %feedback.id, error = %err, "bonus payment failed; will retry");
            }
        }
    }
    Ok(left)
}

/// Retries pending bonuses until each is paid: at once when woken, then
/// with exponential backoff while payments keep failing.
pub async fn run_bonus_payer(
    api: FeedbackApi,
    max_backoff: StdDuration,
    stop: impl Future<Output = ()>,
) {
    tokio::pin!(stop);
    let mut backoff = FIRST_BACKOFF;
    loop {
        let left = match pay_pending_bonuses(&api).await {
            Ok(left) => Some(left),
            Err(err) => {
                tracing::warn!(error = %err, "bonus payer cannot read pending bonuses");
                None
            }
        };
        let wait = after_pass(left, &mut backoff, max_backoff);
        tokio::select! {
            _ = &mut stop => return,
            _ = api.bonus_wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// How long the payer waits after a pass that left `left` bonuses unpaid
/// (`None`: it could not read them): 30 s once none is left (and the backoff
/// starts over), else the doubled backoff.
fn after_pass(
    left: Option<usize>,
    backoff: &mut StdDuration,
    max_backoff: StdDuration,
) -> StdDuration {
    if left == Some(0) {
        *backoff = FIRST_BACKOFF;
        StdDuration::from_secs(30)
    } else {
        *backoff = double(*backoff, max_backoff);
        *backoff
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: StdDuration = StdDuration::from_secs(5);

    #[test]
    fn nothing_left_waits_thirty_seconds_and_resets_the_backoff() {
        let mut backoff = StdDuration::from_secs(4);
        assert_eq!(
            after_pass(Some(0), &mut backoff, MAX),
            StdDuration::from_secs(30)
        );
        assert_eq!(backoff, FIRST_BACKOFF);
    }

    #[test]
    fn bonuses_left_or_unreadable_double_the_backoff_up_to_the_cap() {
        let mut backoff = FIRST_BACKOFF;
        assert_eq!(
            after_pass(Some(2), &mut backoff, MAX),
            StdDuration::from_millis(200)
        );
        assert_eq!(
            after_pass(None, &mut backoff, MAX),
            StdDuration::from_millis(400)
        );
        assert_eq!(backoff, StdDuration::from_millis(400));
        let mut backoff = StdDuration::from_secs(4);
        assert_eq!(after_pass(Some(1), &mut backoff, MAX), MAX);
        assert_eq!(after_pass(None, &mut backoff, MAX), MAX);
    }
}
