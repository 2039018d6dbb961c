//! The bonus payer: pays pending mid-contract bonuses through
//! contract-service, retrying with backoff until each is paid.

use std::time::Duration as StdDuration;

use crate::api::FeedbackApi;
use crate::error::Error;
use crate::events::emit;
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
                    .run(String::new(), "MarkBonusPaid", None, &(), move |unit| {
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
                                emit(
                                    unit,
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
    let mut backoff = StdDuration::from_millis(100);
    loop {
        let wait = match pay_pending_bonuses(&api).await {
            Ok(0) => {
                backoff = StdDuration::from_millis(100);
                StdDuration::from_secs(30)
            }
            Ok(_) => {
                backoff = (backoff * 2).min(max_backoff);
                backoff
            }
            Err(err) => {
                tracing::warn!(error = %err, "bonus payer cannot read pending bonuses");
                backoff = (backoff * 2).min(max_backoff);
                backoff
            }
        };
        tokio::select! {
            _ = &mut stop => return,
            _ = api.bonus_wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}
