//! SQL of feedback requests: inserting, fulfilling, listing and expiring
//! them.

use chrono::{DateTime, Utc};
use shared::db::rows::Fetch;
use sqlx::{Any, AssertSqlSafe, Executor, Row};

use crate::error::Error;
use crate::store::{FeedbackRequest, REQUEST_COLUMNS, request_from_row};
use shared::db::Tx;
use shared::time::to_micros;

/// Marks requests past their expiry EXPIRED (all, or one contract's) and returns them.
pub async fn expire_requests(
    tx: &mut Tx,
    contract_id: Option<&str>,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<FeedbackRequest>, Error> {
    let sql = format!(
        "UPDATE feedback_requests SET state = 'EXPIRED' WHERE id IN (SELECT id FROM feedback_requests \
         WHERE state = 'PENDING' AND expire_at <= $1 AND ($2 = '' OR contract_id = $2) ORDER BY expire_at LIMIT $3) \
         RETURNING {REQUEST_COLUMNS}"
    );
    Ok(sqlx::query(AssertSqlSafe(sql))
        .bind(to_micros(now))
        .bind(contract_id.unwrap_or_default())
        .bind(limit)
        .all(&mut **tx, request_from_row)
        .await?)
}

/// Adds a pending request; the database allows one pending request per contract.
pub async fn insert_request(tx: &mut Tx, r: &FeedbackRequest) -> Result<(), Error> {
    let inserted = sqlx::query(
        "INSERT INTO feedback_requests (id, contract_id, freelancer_id, client_id, state, created_at, expire_at, feedback_id) \
         VALUES ($1, $2, $3, $4, 'PENDING', $5, $6, NULL)",
    )
    .bind(&r.id)
    .bind(&r.contract_id)
    .bind(&r.freelancer_id)
    .bind(&r.client_id)
    .bind(to_micros(r.create_time))
    .bind(to_micros(r.expire_time))
    .execute(&mut **tx)
    .await;
    match inserted {
        Ok(_) => Ok(()),
        Err(e)
            if shared::db::violated_constraint(&e)
                .is_some_and(|c| c.contains("feedback_requests")) =>
        {
            Err(Error::RequestAlreadyPending)
        }
        Err(e) => Err(e.into()),
    }
}

/// Fulfils the contract's pending, unexpired request with this feedback.
pub async fn fulfil_pending_request(
    tx: &mut Tx,
    contract_id: &str,
    feedback_id: &str,
    now: DateTime<Utc>,
) -> Result<Option<String>, Error> {
    let row = sqlx::query(
        "UPDATE feedback_requests SET state = 'FULFILLED', feedback_id = $2 \
         WHERE contract_id = $1 AND state = 'PENDING' AND expire_at > $3 RETURNING id",
    )
    .bind(contract_id)
    .bind(feedback_id)
    .bind(to_micros(now))
    .fetch_optional(&mut **tx)
    .await?;
    Ok(row.map(|r| r.try_get("id")).transpose()?)
}

pub async fn list_requests<'e, E>(
    executor: E,
    contract_id: &str,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<FeedbackRequest>, Error>
where
    E: Executor<'e, Database = Any>,
{
    let sql = format!(
        "SELECT {REQUEST_COLUMNS} FROM feedback_requests WHERE contract_id = $1 AND id > $2 ORDER BY id LIMIT $3"
    );
    Ok(sqlx::query(AssertSqlSafe(sql))
        .bind(contract_id)
        .bind(after.unwrap_or_default())
        .bind(limit)
        .all(executor, request_from_row)
        .await?)
}
