//! SQL of mid-contract feedback: inserting and reading it, and the
//! pending bonuses the payer works through.

use shared::db::rows::Fetch;
use sqlx::{Any, AssertSqlSafe, Executor};

use crate::error::Error;
use crate::store::{BonusState, MID_COLUMNS, MidFeedback, mid_from_row};
use shared::db::Tx;
use shared::time::to_micros;

pub async fn insert_mid_feedback(tx: &mut Tx, f: &MidFeedback) -> Result<(), Error> {
    let state = match f.bonus_state {
        BonusState::None => "NONE",
        BonusState::Pending => "PENDING",
        BonusState::Paid => "PAID",
    };
    sqlx::query(
        "INSERT INTO mid_feedback (id, contract_id, client_id, freelancer_id, rating, comment, cohort, bonus_currency, \
         bonus_minor, bonus_state, bonus_payment_id, fulfilled_request_id, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL, $11, $12)",
    )
    .bind(&f.id)
    .bind(&f.contract_id)
    .bind(&f.client_id)
    .bind(&f.freelancer_id)
    .bind(i64::from(f.rating))
    .bind(&f.comment)
    .bind(&f.cohort)
    .bind(f.bonus.as_ref().map(|(c, _)| c.clone()))
    .bind(f.bonus.as_ref().map(|(_, m)| *m))
    .bind(state)
    .bind(f.fulfilled_request_id.clone())
    .bind(to_micros(f.create_time))
    .execute(&mut **tx)
    .await?;
    Ok(())
}
/// Bonuses committed but not yet paid, oldest first.
pub async fn pending_bonuses<'e, E>(executor: E, limit: i64) -> Result<Vec<MidFeedback>, Error>
where
    E: Executor<'e, Database = Any>,
{
    let sql = format!(
        "SELECT {MID_COLUMNS} FROM mid_feedback WHERE bonus_state = 'PENDING' ORDER BY created_at LIMIT $1"
    );
    Ok(sqlx::query(AssertSqlSafe(sql))
        .bind(limit)
        .all(executor, mid_from_row)
        .await?)
}

/// Marks a pending bonus paid. False if it was not pending any more.
pub async fn mark_bonus_paid(
    tx: &mut Tx,
    feedback_id: &str,
    payment_id: &str,
) -> Result<bool, Error> {
    let done = sqlx::query(
        "UPDATE mid_feedback SET bonus_state = 'PAID', bonus_payment_id = $2 WHERE id = $1 AND bonus_state = 'PENDING'",
    )
    .bind(feedback_id)
    .bind(payment_id)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}
