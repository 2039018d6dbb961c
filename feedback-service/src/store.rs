//! The only place with SQL in feedback-service. One implementation serves
//! SQLite and PostgreSQL through sqlx's `Any` driver.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::{Any, AssertSqlSafe, Executor, Row};

use crate::error::Error;
use shared::db::Tx;
use shared::time::{from_micros, to_micros};

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

fn time(row: &AnyRow, col: &str) -> Result<DateTime<Utc>, sqlx::Error> {
    Ok(from_micros(row.try_get(col)?))
}

fn opt_time(row: &AnyRow, col: &str) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    Ok(row.try_get::<Option<i64>, _>(col)?.map(from_micros))
}

fn int(row: &AnyRow, col: &str) -> Result<i32, sqlx::Error> {
    let v: i64 = row.try_get(col)?;
    i32::try_from(v).map_err(|e| sqlx::Error::ColumnDecode {
        index: col.into(),
        source: Box::new(e),
    })
}

fn opt_int(row: &AnyRow, col: &str) -> Result<Option<i32>, sqlx::Error> {
    row.try_get::<Option<i64>, _>(col)?
        .map(|v| {
            i32::try_from(v).map_err(|e| sqlx::Error::ColumnDecode {
                index: col.into(),
                source: Box::new(e),
            })
        })
        .transpose()
}

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

const MID_COLUMNS: &str = "id, contract_id, client_id, freelancer_id, rating, comment, cohort, bonus_currency, bonus_minor, \
     bonus_state, bonus_payment_id, fulfilled_request_id, created_at";

fn mid_from_row(row: &AnyRow) -> Result<MidFeedback, sqlx::Error> {
    let currency: Option<String> = row.try_get("bonus_currency")?;
    let minor: Option<i64> = row.try_get("bonus_minor")?;
    let state: String = row.try_get("bonus_state")?;
    Ok(MidFeedback {
        id: row.try_get("id")?,
        contract_id: row.try_get("contract_id")?,
        client_id: row.try_get("client_id")?,
        freelancer_id: row.try_get("freelancer_id")?,
        rating: int(row, "rating")?,
        comment: row.try_get("comment")?,
        cohort: row.try_get("cohort")?,
        bonus: currency.zip(minor),
        bonus_state: match state.as_str() {
            "PENDING" => BonusState::Pending,
            "PAID" => BonusState::Paid,
            _ => BonusState::None,
        },
        bonus_payment_id: row.try_get("bonus_payment_id")?,
        fulfilled_request_id: row.try_get("fulfilled_request_id")?,
        create_time: time(row, "created_at")?,
    })
}

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

pub async fn get_mid_feedback<'e, E>(executor: E, id: &str) -> Result<Option<MidFeedback>, Error>
where
    E: Executor<'e, Database = Any>,
{
    let sql = format!("SELECT {MID_COLUMNS} FROM mid_feedback WHERE id = $1");
    let row = sqlx::query(AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(executor)
        .await?;
    Ok(row.as_ref().map(mid_from_row).transpose()?)
}

/// Mid-contract feedback of these contracts, oldest first.
pub async fn mid_feedback_of_contracts<'e, E>(
    executor: E,
    contract_ids: &[String],
) -> Result<Vec<MidFeedback>, Error>
where
    E: Executor<'e, Database = Any>,
{
    if contract_ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT {MID_COLUMNS} FROM mid_feedback WHERE contract_id IN ({{ids}}) ORDER BY created_at, id"
    );
    let rows = shared::db::query_with_ids(&sql, contract_ids)
        .fetch_all(executor)
        .await?;
    Ok(rows.iter().map(mid_from_row).collect::<Result<_, _>>()?)
}

/// Bonuses committed but not yet paid, oldest first.
pub async fn pending_bonuses<'e, E>(executor: E, limit: i64) -> Result<Vec<MidFeedback>, Error>
where
    E: Executor<'e, Database = Any>,
{
    let sql = format!(
        "SELECT {MID_COLUMNS} FROM mid_feedback WHERE bonus_state = 'PENDING' ORDER BY created_at LIMIT $1"
    );
    let rows = sqlx::query(AssertSqlSafe(sql))
        .bind(limit)
        .fetch_all(executor)
        .await?;
    Ok(rows.iter().map(mid_from_row).collect::<Result<_, _>>()?)
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

const REQUEST_COLUMNS: &str =
    "id, contract_id, freelancer_id, client_id, state, created_at, expire_at, feedback_id";

fn request_from_row(row: &AnyRow) -> Result<FeedbackRequest, sqlx::Error> {
    Ok(FeedbackRequest {
        id: row.try_get("id")?,
        contract_id: row.try_get("contract_id")?,
        freelancer_id: row.try_get("freelancer_id")?,
        client_id: row.try_get("client_id")?,
        state: row.try_get("state")?,
        create_time: time(row, "created_at")?,
        expire_time: time(row, "expire_at")?,
        feedback_id: row.try_get("feedback_id")?,
    })
}

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
    let rows = sqlx::query(AssertSqlSafe(sql))
        .bind(to_micros(now))
        .bind(contract_id.unwrap_or_default())
        .bind(limit)
        .fetch_all(&mut **tx)
        .await?;
    Ok(rows
        .iter()
        .map(request_from_row)
        .collect::<Result<_, _>>()?)
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
    let rows = sqlx::query(AssertSqlSafe(sql))
        .bind(contract_id)
        .bind(after.unwrap_or_default())
        .bind(limit)
        .fetch_all(executor)
        .await?;
    Ok(rows
        .iter()
        .map(request_from_row)
        .collect::<Result<_, _>>()?)
}

const END_COLUMNS: &str = "id, contract_id, direction, author_id, recipient_id, client_id, freelancer_id, score_1, score_2, \
     score_3, score_4, score_5, score_6, comment, reason_for_ending, likelihood_to_recommend, contract_end_at, \
     window_close_at, revealed_at, created_at";

fn end_from_row(row: &AnyRow) -> Result<EndFeedback, sqlx::Error> {
    Ok(EndFeedback {
        id: row.try_get("id")?,
        contract_id: row.try_get("contract_id")?,
        direction: row.try_get("direction")?,
        author_id: row.try_get("author_id")?,
        recipient_id: row.try_get("recipient_id")?,
        client_id: row.try_get("client_id")?,
        freelancer_id: row.try_get("freelancer_id")?,
        scores: [
            int(row, "score_1")?,
            int(row, "score_2")?,
            int(row, "score_3")?,
            int(row, "score_4")?,
            int(row, "score_5")?,
            int(row, "score_6")?,
        ],
        comment: row.try_get("comment")?,
        reason_for_ending: opt_int(row, "reason_for_ending")?,
        likelihood_to_recommend: opt_int(row, "likelihood_to_recommend")?,
        contract_end: time(row, "contract_end_at")?,
        window_close: time(row, "window_close_at")?,
        revealed_at: opt_time(row, "revealed_at")?,
        create_time: time(row, "created_at")?,
    })
}

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
    match inserted {
        Ok(_) => Ok(()),
        Err(e)
            if shared::db::violated_constraint(&e).is_some_and(|c| c.contains("end_feedback")) =>
        {
            Err(Error::FeedbackAlreadyGiven)
        }
        Err(e) => Err(e.into()),
    }
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
    let rows = sqlx::query(AssertSqlSafe(sql))
        .bind(contract_id)
        .fetch_all(executor)
        .await?;
    Ok(rows.iter().map(end_from_row).collect::<Result<_, _>>()?)
}

pub async fn get_end_feedback<'e, E>(executor: E, id: &str) -> Result<Option<EndFeedback>, Error>
where
    E: Executor<'e, Database = Any>,
{
    let sql = format!("SELECT {END_COLUMNS} FROM end_feedback WHERE id = $1");
    let row = sqlx::query(AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(executor)
        .await?;
    Ok(row.as_ref().map(end_from_row).transpose()?)
}

/// Marks a contract's feedback revealed; returns the ids this call revealed
/// (empty if it was revealed already, so the reveal event is emitted once).
pub async fn reveal(
    tx: &mut Tx,
    contract_id: &str,
    now: DateTime<Utc>,
) -> Result<Vec<String>, Error> {
    let rows = sqlx::query("UPDATE end_feedback SET revealed_at = $2 WHERE contract_id = $1 AND revealed_at IS NULL RETURNING id")
        .bind(contract_id)
        .bind(to_micros(now))
        .fetch_all(&mut **tx)
        .await?;
    let mut ids = rows
        .iter()
        .map(|r| r.try_get("id"))
        .collect::<Result<Vec<String>, _>>()?;
    ids.sort();
    Ok(ids)
}

/// Contracts whose window has closed with feedback still unrevealed.
pub async fn closed_unrevealed_contracts<'e, E>(
    executor: E,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<String>, Error>
where
    E: Executor<'e, Database = Any>,
{
    let rows = sqlx::query(
        "SELECT DISTINCT contract_id FROM end_feedback WHERE revealed_at IS NULL AND window_close_at <= $1 ORDER BY contract_id LIMIT $2",
    )
    .bind(to_micros(now))
    .bind(limit)
    .fetch_all(executor)
    .await?;
    Ok(rows
        .iter()
        .map(|r| r.try_get("contract_id"))
        .collect::<Result<_, _>>()?)
}

/// A page of a freelancer's contracts that have feedback for them, by contract id.
pub async fn history_contracts<'e, E>(
    executor: E,
    freelancer_id: &str,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<String>, Error>
where
    E: Executor<'e, Database = Any>,
{
    let rows = sqlx::query(
        // Each side is cut to the page before the union, so a page reads
        // about `limit` index entries however long the history is.
        "SELECT contract_id FROM (\
           SELECT contract_id FROM (SELECT DISTINCT contract_id FROM mid_feedback \
             WHERE freelancer_id = $1 AND contract_id > $2 ORDER BY contract_id LIMIT $3) AS mid \
           UNION SELECT contract_id FROM (SELECT contract_id FROM end_feedback \
             WHERE freelancer_id = $1 AND direction = 'CLIENT_TO_FREELANCER' AND contract_id > $2 \
             ORDER BY contract_id LIMIT $3) AS ended\
         ) AS history ORDER BY contract_id LIMIT $3",
    )
    .bind(freelancer_id)
    .bind(after.unwrap_or_default())
    .bind(limit)
    .fetch_all(executor)
    .await?;
    Ok(rows
        .iter()
        .map(|r| r.try_get("contract_id"))
        .collect::<Result<_, _>>()?)
}

/// Client-to-freelancer feedback of these contracts.
pub async fn client_feedback_of_contracts<'e, E>(
    executor: E,
    contract_ids: &[String],
) -> Result<Vec<EndFeedback>, Error>
where
    E: Executor<'e, Database = Any>,
{
    if contract_ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT {END_COLUMNS} FROM end_feedback WHERE direction = 'CLIENT_TO_FREELANCER' AND contract_id IN ({{ids}})"
    );
    let rows = shared::db::query_with_ids(&sql, contract_ids)
        .fetch_all(executor)
        .await?;
    Ok(rows.iter().map(end_from_row).collect::<Result<_, _>>()?)
}

/// A page of a freelancer's received end-of-contract feedback (Job Success inputs).
pub async fn job_success_inputs<'e, E>(
    executor: E,
    freelancer_id: &str,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<EndFeedback>, Error>
where
    E: Executor<'e, Database = Any>,
{
    let sql = format!(
        "SELECT {END_COLUMNS} FROM end_feedback WHERE freelancer_id = $1 AND direction = 'CLIENT_TO_FREELANCER' \
         AND id > $2 ORDER BY id LIMIT $3"
    );
    let rows = sqlx::query(AssertSqlSafe(sql))
        .bind(freelancer_id)
        .bind(after.unwrap_or_default())
        .bind(limit)
        .fetch_all(executor)
        .await?;
    Ok(rows.iter().map(end_from_row).collect::<Result<_, _>>()?)
}

fn reply_from_row(row: &AnyRow) -> Result<Reply, sqlx::Error> {
    Ok(Reply {
        id: row.try_get("id")?,
        feedback_id: row.try_get("feedback_id")?,
        author_id: row.try_get("author_id")?,
        text: row.try_get("text")?,
        public: row.try_get::<i64, _>("public")? != 0,
        create_time: time(row, "created_at")?,
    })
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
    match inserted {
        Ok(_) => Ok(()),
        Err(e) if shared::db::violated_constraint(&e).is_some_and(|c| c.contains("replies")) => {
            Err(Error::AlreadyReplied)
        }
        Err(e) => Err(e.into()),
    }
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
    let rows = shared::db::query_with_ids(
        "SELECT id, feedback_id, author_id, text, public, created_at FROM replies WHERE feedback_id IN ({ids})", feedback_ids)
        .fetch_all(executor)
        .await?;
    rows.iter()
        .map(|row| reply_from_row(row).map(|r| (r.feedback_id.clone(), r)))
        .collect::<Result<_, sqlx::Error>>()
        .map_err(Error::from)
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
