//! The stored rows every feature reads, their decoding, the contract lock,
//! metrics queries and migrations; each feature's own SQL is in its `store.rs`.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::{Any, Executor, Row};

use crate::error::Error;
use shared::db::Tx;

/// Where a bonus is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BonusState {
    None,
    Pending,
    Paid,
}

/// Mid-contract feedback as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct MidFeedback {
    pub id: String,
    pub contract_id: String,
    pub client_id: String,
    pub freelancer_id: String,
    pub rating: i32,
    pub comment: String,
    pub cohort: String,
    /// Currency and minor units.
    pub bonus: Option<(String, i64)>,
    pub bonus_state: BonusState,
    pub bonus_payment_id: Option<String>,
    pub fulfilled_request_id: Option<String>,
    pub create_time: DateTime<Utc>,
}

/// A feedback request as stored (its state may be PENDING past expiry until
/// the sweeper runs; readers apply the expiry rule themselves).
#[derive(Debug, Clone, PartialEq)]
pub struct FeedbackRequest {
    pub id: String,
    pub contract_id: String,
    pub freelancer_id: String,
    pub client_id: String,
    pub state: String,
    pub create_time: DateTime<Utc>,
    pub expire_time: DateTime<Utc>,
    pub feedback_id: Option<String>,
}

/// End-of-contract feedback as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct EndFeedback {
    pub id: String,
    pub contract_id: String,
    /// `CLIENT_TO_FREELANCER` or `FREELANCER_TO_CLIENT`.
    pub direction: String,
    pub author_id: String,
    pub recipient_id: String,
    pub client_id: String,
    pub freelancer_id: String,
    pub scores: [i32; 6],
    pub comment: String,
    pub reason_for_ending: Option<i32>,
    pub likelihood_to_recommend: Option<i32>,
    pub contract_end: DateTime<Utc>,
    pub window_close: DateTime<Utc>,
    pub revealed_at: Option<DateTime<Utc>>,
    pub create_time: DateTime<Utc>,
}

pub const CLIENT_TO_FREELANCER: &str = "CLIENT_TO_FREELANCER";
pub const FREELANCER_TO_CLIENT: &str = "FREELANCER_TO_CLIENT";

/// A reply as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub id: String,
    pub feedback_id: String,
    pub author_id: String,
    pub text: String,
    pub public: bool,
    pub create_time: DateTime<Utc>,
}

use shared::db::rows::{Fetch, Table, flag};
pub(crate) use shared::db::rows::{int, opt_int, opt_time, time};

/// Takes the contract's feedback lock for this transaction.
pub async fn lock_contract(tx: &mut Tx, contract_id: &str) -> Result<(), Error> {
    sqlx::query("INSERT INTO contract_guards (contract_id, version) VALUES ($1, 0) ON CONFLICT (contract_id) DO NOTHING")
        .bind(contract_id)
        .execute(&mut **tx)
        .await?;
    sqlx::query("UPDATE contract_guards SET version = version + 1 WHERE contract_id = $1")
        .bind(contract_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Latest mid-contract feedback time of each contract that has any.
pub async fn last_mid_feedback_times<'e, E>(
    executor: E,
    contract_ids: &[String],
) -> Result<HashMap<String, DateTime<Utc>>, Error>
where
    E: Executor<'e, Database = Any>,
{
    if contract_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = shared::db::query_with_ids(
        "SELECT contract_id, MAX(created_at) AS last_at FROM mid_feedback WHERE contract_id IN ({ids}) GROUP BY contract_id", contract_ids)
        .fetch_all(executor)
        .await?;
    rows.iter()
        .map(|row| Ok((row.try_get("contract_id")?, time(row, "last_at")?)))
        .collect::<Result<_, sqlx::Error>>()
        .map_err(Error::from)
}

pub(crate) const MID_COLUMNS: &str = "id, contract_id, client_id, freelancer_id, rating, comment, cohort, bonus_currency, bonus_minor, \
     bonus_state, bonus_payment_id, fulfilled_request_id, created_at";

pub(crate) fn mid_from_row(row: &AnyRow) -> Result<MidFeedback, sqlx::Error> {
    let currency: Option<String> = row.try_get("bonus_currency")?;
    let minor: Option<i64> = row.try_get("bonus_minor")?;
    let state: String = row.try_get("bonus_state")?;
    Ok(shared::from_row!(row, MidFeedback {
        id, contract_id, client_id, freelancer_id, comment, cohort, bonus_payment_id,
        fulfilled_request_id;
        rating: int(row, "rating")?,
        bonus: currency.zip(minor),
        bonus_state: match state.as_str() {
            "PENDING" => BonusState::Pending,
            "PAID" => BonusState::Paid,
            _ => BonusState::None,
        },
        create_time: time(row, "created_at")?,
    }))
}

pub(crate) const REQUEST_COLUMNS: &str =
    "id, contract_id, freelancer_id, client_id, state, created_at, expire_at, feedback_id";

pub(crate) fn request_from_row(row: &AnyRow) -> Result<FeedbackRequest, sqlx::Error> {
    Ok(shared::from_row!(row, FeedbackRequest {
        id, contract_id, freelancer_id, client_id, state, feedback_id;
        create_time: time(row, "created_at")?,
        expire_time: time(row, "expire_at")?,
    }))
}

pub(crate) const REQUESTS: Table<FeedbackRequest> =
    Table::new("feedback_requests", REQUEST_COLUMNS, request_from_row);

pub(crate) const END_COLUMNS: &str = "id, contract_id, direction, author_id, recipient_id, client_id, freelancer_id, score_1, score_2, \
     score_3, score_4, score_5, score_6, comment, reason_for_ending, likelihood_to_recommend, contract_end_at, \
     window_close_at, revealed_at, created_at";

pub(crate) fn end_from_row(row: &AnyRow) -> Result<EndFeedback, sqlx::Error> {
    Ok(shared::from_row!(row, EndFeedback {
        id, contract_id, direction, author_id, recipient_id, client_id, freelancer_id, comment;
        scores: [
            int(row, "score_1")?,
            int(row, "score_2")?,
            int(row, "score_3")?,
            int(row, "score_4")?,
            int(row, "score_5")?,
            int(row, "score_6")?,
        ],
        reason_for_ending: opt_int(row, "reason_for_ending")?,
        likelihood_to_recommend: opt_int(row, "likelihood_to_recommend")?,
        contract_end: time(row, "contract_end_at")?,
        window_close: time(row, "window_close_at")?,
        revealed_at: opt_time(row, "revealed_at")?,
        create_time: time(row, "created_at")?,
    }))
}

pub(crate) const END_FEEDBACK: Table<EndFeedback> =
    Table::new("end_feedback", END_COLUMNS, end_from_row);

pub(crate) fn reply_from_row(row: &AnyRow) -> Result<Reply, sqlx::Error> {
    Ok(shared::from_row!(row, Reply {
        id, feedback_id, author_id, text;
        public: flag(row, "public")?,
        create_time: time(row, "created_at")?,
    }))
}

/// Replies to these feedback ids.
pub async fn replies_to<'e, E>(
    executor: E,
    feedback_ids: &[String],
) -> Result<HashMap<String, Reply>, Error>
where
    E: Executor<'e, Database = Any>,
{
    if feedback_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let replies = shared::db::query_with_ids(
        "SELECT id, feedback_id, author_id, text, public, created_at FROM replies WHERE feedback_id IN ({ids})",
        feedback_ids,
    )
    .all(executor, reply_from_row)
    .await?;
    Ok(replies
        .into_iter()
        .map(|r| (r.feedback_id.clone(), r))
        .collect())
}

/// Metrics (`bonus_pending`): bonuses committed and not yet paid.
pub const PENDING_BONUSES: &str = "SELECT COUNT(*) FROM mid_feedback WHERE bonus_state = 'PENDING'";

/// Metrics (`bonus_pending_oldest_age_seconds`, through
/// `Metrics::sample_ages`): when the oldest bonus the payer still has to pay
/// ([`pending_bonuses`]) was committed.
pub const OLDEST_PENDING_BONUS: &str =
    "SELECT MIN(created_at) FROM mid_feedback WHERE bonus_state = 'PENDING'";

/// Metrics (`sweeper_lag_seconds`, through `Metrics::sample_ages`): when the
/// longest-waiting item of the sweeper fell due, the earliest expiry of a
/// request still PENDING ([`expire_requests`]) or window close of feedback
/// not yet revealed ([`closed_unrevealed_contracts`]). Items not due yet lie
/// after now and so have age 0: no `<= now` bound is needed, and the age is
/// taken against the service's clock, never the database's. Both read a
/// partial index.
pub const OLDEST_SWEEPER_DUE: &str = "SELECT MIN(due_at) FROM (\
       SELECT MIN(expire_at) AS due_at FROM feedback_requests WHERE state = 'PENDING' \
       UNION ALL \
       SELECT MIN(window_close_at) AS due_at FROM end_feedback WHERE revealed_at IS NULL\
     ) AS due";

/// Migrations of this service for each backend, embedded in the binary.
pub const MIGRATIONS: shared::db::Migrations = shared::db::Migrations::new(&[
    (1, "init", include_str!("../migrations/0001_init.sql")),
    (
        2,
        "contract events",
        include_str!("../migrations/0002_contract_events.sql"),
    ),
    (
        3,
        "moderation",
        include_str!("../migrations/0003_moderation.sql"),
    ),
]);
