//! SQL of end-of-contract feedback and replies: inserting and reading
//! them, and revealing feedback whose window closed.

use chrono::{DateTime, Utc};
use shared::db::rows::{Fetch, column};
use sqlx::{Any, AssertSqlSafe, Executor};

use crate::error::Error;
use crate::store::{END_COLUMNS, END_FEEDBACK, EndFeedback, Reply, end_from_row};
use shared::db::Tx;
use shared::db::{Due, Reader};
use shared::time::to_micros;

/// Adds one side's feedback; the database allows one per side and contract.
pub async fn insert_end_feedback(tx: &mut Tx, f: &EndFeedback) -> Result<(), Error> {
    let mut query = sqlx::query(
        "INSERT INTO end_feedback (id, contract_id, direction, author_id, recipient_id, client_id, freelancer_id, \
         score_1, score_2, score_3, score_4, score_5, score_6, comment, reason_for_ending, likelihood_to_recommend, \
         contract_end_at, window_close_at, revealed_at, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, NULL, $19)",
    )
    .bind(&f.id)
    .bind(&f.contract_id)
    .bind(&f.direction)
    .bind(&f.author_id)
    .bind(&f.recipient_id)
    .bind(&f.client_id)
    .bind(&f.freelancer_id);
    for score in f.scores {
        query = query.bind(i64::from(score));
    }
    let inserted = query
        .bind(&f.comment)
        .bind(f.reason_for_ending.map(i64::from))
        .bind(f.likelihood_to_recommend.map(i64::from))
        .bind(to_micros(f.contract_end))
        .bind(to_micros(f.window_close))
        .bind(to_micros(f.create_time))
        .execute(&mut **tx)
        .await;
    shared::db::map_conflict(inserted, &["end_feedback"], Error::FeedbackAlreadyGiven)
}

/// Both sides' feedback of a contract (zero, one or two rows).
pub async fn end_feedback_of_contract<'e, E>(
    executor: E,
    contract_id: &str,
) -> Result<Vec<EndFeedback>, Error>
where
    E: Executor<'e, Database = Any>,
{
    let sql =
        format!("SELECT {END_COLUMNS} FROM end_feedback WHERE contract_id = $1 ORDER BY direction");
    Ok(sqlx::query(AssertSqlSafe(sql))
        .bind(contract_id)
        .all(executor, end_from_row)
        .await?)
}

pub async fn get_end_feedback<'e, E>(executor: E, id: &str) -> Result<Option<EndFeedback>, Error>
where
    E: Executor<'e, Database = Any>,
{
    Ok(END_FEEDBACK.get(executor, id).await?)
}

/// Marks a contract's feedback revealed; returns the ids this call revealed
/// (empty if it was revealed already, so the reveal event is emitted once).
pub async fn reveal(
    tx: &mut Tx,
    contract_id: &str,
    now: DateTime<Utc>,
) -> Result<Vec<String>, Error> {
    let mut ids: Vec<String> = sqlx::query(
        "UPDATE end_feedback SET revealed_at = $2 WHERE contract_id = $1 AND revealed_at IS NULL RETURNING id",
    )
    .bind(contract_id)
    .bind(to_micros(now))
    .all(&mut **tx, column("id"))
    .await?;
    ids.sort();
    Ok(ids)
}

/// Contracts whose window has closed with feedback still unrevealed.
pub async fn closed_unrevealed_contracts(db: &Reader, due: Due) -> Result<Vec<String>, Error> {
    Ok(due.query(
        "SELECT DISTINCT contract_id FROM end_feedback WHERE revealed_at IS NULL AND window_close_at <= $1 \
         ORDER BY contract_id LIMIT $2",
    )
    .all(db, column("contract_id"))
    .await?)
}

/// Adds the reply; the database allows one per feedback.
pub async fn insert_reply(tx: &mut Tx, r: &Reply) -> Result<(), Error> {
    let inserted = sqlx::query(
        "INSERT INTO replies (id, feedback_id, author_id, text, public, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&r.id)
    .bind(&r.feedback_id)
    .bind(&r.author_id)
    .bind(&r.text)
    .bind(i64::from(r.public))
    .bind(to_micros(r.create_time))
    .execute(&mut **tx)
    .await;
    shared::db::map_conflict(inserted, &["replies"], Error::AlreadyReplied)
}
