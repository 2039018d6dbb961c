//! SQL of feedback requests: inserting, fulfilling, listing and expiring
//! them.

use chrono::{DateTime, Utc};
use shared::db::rows::Fetch;
use sqlx::{AssertSqlSafe, Row};

use crate::error::Error;
use crate::store::{FeedbackRequest, REQUEST_COLUMNS, REQUESTS, request_from_row};
use shared::db::Reader;
use shared::db::{Page, Tx};
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
    shared::db::map_conflict(
        inserted,
        &["feedback_requests"],
        Error::RequestAlreadyPending,
    )
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

/// A page of a contract's requests (`page.key`), in id order.
pub async fn list_requests(db: &Reader, page: Page<'_>) -> Result<Vec<FeedbackRequest>, Error> {
    Ok(REQUESTS.page(db, "contract_id = $1", page).await?)
}
