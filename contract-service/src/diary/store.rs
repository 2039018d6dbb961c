//! The SQL of Work Diaries: the diary's write lock, and adding, finding,
//! deleting and listing time entries.

use chrono::{DateTime, Utc};
use shared::db::rows::Fetch;
use sqlx::any::AnyRow;
use sqlx::{Any, AssertSqlSafe, Executor, Row};

use crate::error::Error;
use crate::store::{flag, time};
use shared::db::{Backend, Db, Tx};
use shared::time::to_micros;
use shared::writer::{Call, single};

use super::rules::TimeEntry;
use crate::contracts::rules::Contract;
use crate::contracts::store::{CONTRACT_COLUMNS, contract_from_row};

/// Takes the diary's write lock for this transaction and returns the
/// contract, if the diary is still unlocked (`None` otherwise: absent, ended
/// or locked). Diary writes of one contract are serialised by it, and it
/// waits for (and then sees) a concurrent EndContract. One statement: the
/// lock and the read are one round trip.
pub async fn lock_diary_for_write(
    tx: &mut Tx,
    contract_id: &str,
) -> Result<Option<Contract>, Error> {
    // PostgreSQL: an UPDATE of the diary's version, which conflicts with
    // EndContract's UPDATE and with other diary writers; after waiting for
    // one, the WHERE clause is re-checked against the committed row. The new
    // version is what LogTime's one-statement path ([`log_time_guarded`])
    // checks it read the diary at. (Only key columns are left alone, so
    // inserts that reference the contract are not blocked.) SQLite: write
    // transactions already run one at a time (`BEGIN IMMEDIATE`).
    static POSTGRES: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "UPDATE contracts SET diary_version = diary_version + 1 \
             WHERE id = $1 AND state = 'ACTIVE' AND diary_locked_at IS NULL \
             RETURNING {CONTRACT_COLUMNS}"
        )
    });
    static SQLITE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "SELECT {CONTRACT_COLUMNS} FROM contracts \
             WHERE id = $1 AND state = 'ACTIVE' AND diary_locked_at IS NULL"
        )
    });
    let sql = match Backend::of_connection(tx) {
        Backend::Postgres => POSTGRES.as_str(),
        Backend::Sqlite => SQLITE.as_str(),
    };
    Ok(sqlx::query(AssertSqlSafe(sql))
        .bind(contract_id)
        .optional(&mut **tx, contract_from_row)
        .await?)
}

/// Minutes logged by the contract's entries starting in `[from, before)`.
const LOGGED_MICROS: &str = "(SELECT CAST(COALESCE(SUM(end_at - start_at), 0) AS BIGINT) \
     FROM time_entries WHERE contract_id = $1 AND start_at >= $2 AND start_at < $3) AS logged_micros";

/// [`lock_diary_for_write`], also returning the minutes logged by entries
/// starting in `[from, before)`: what LogTime's locking path needs.
///
/// SQLite: one statement. PostgreSQL: the lock, then the sum in a statement
/// of its own, since a statement sees only what committed before it began,
/// and a LogTime that waited for the lock must count the entry of the one
/// it waited for.
pub async fn lock_diary_with_minutes(
    tx: &mut Tx,
    contract_id: &str,
    from: DateTime<Utc>,
    before: DateTime<Utc>,
) -> Result<Option<(Contract, i64)>, Error> {
    static SQLITE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "SELECT {CONTRACT_COLUMNS}, {LOGGED_MICROS} FROM contracts \
             WHERE id = $1 AND state = 'ACTIVE' AND diary_locked_at IS NULL"
        )
    });
    static POSTGRES: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| format!("SELECT {LOGGED_MICROS}"));
    let row = match Backend::of_connection(tx) {
        Backend::Sqlite => {
            let row = sqlx::query(AssertSqlSafe(SQLITE.as_str()))
                .bind(contract_id)
                .bind(to_micros(from))
                .bind(to_micros(before))
                .fetch_optional(&mut **tx)
                .await?;
            let Some(row) = row else {
                return Ok(None);
            };
            (contract_from_row(&row)?, row)
        }
        Backend::Postgres => {
            let Some(contract) = lock_diary_for_write(tx, contract_id).await? else {
                return Ok(None);
            };
            let row = sqlx::query(AssertSqlSafe(POSTGRES.as_str()))
                .bind(contract_id)
                .bind(to_micros(from))
                .bind(to_micros(before))
                .fetch_one(&mut **tx)
                .await?;
            (contract, row)
        }
    };
    let micros: i64 = row.1.try_get("logged_micros")?;
    Ok(Some((row.0, micros / 60_000_000)))
}

/// What LogTime's one-statement path read of a diary (PostgreSQL), all as
/// of one snapshot.
pub struct DiaryAsRead<R> {
    pub contract: Contract,
    /// The diary's version, which every diary write bumps.
    pub version: i64,
    /// Minutes logged by entries starting in the week before the new one.
    pub minutes_before: i64,
    /// Whether the new entry would overlap an existing one.
    pub overlaps: bool,
    /// The answer to a retry whose key is stored.
    pub replay: Option<Result<R, Error>>,
}

/// Reads, in one autocommit statement, everything LogTime's rules need for
/// an entry from `start` to `end` (the contract whatever its state, so a refusal can say why) and
/// the call's stored key. `None`: no such contract.
pub async fn read_for_log_time<R: prost::Message + Default>(
    db: &Db,
    contract_id: &str,
    week_start: DateTime<Utc>,
    (start, end): (DateTime<Utc>, DateTime<Utc>),
    call: &Call,
) -> Result<Option<DiaryAsRead<R>>, Error> {
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "SELECT {CONTRACT_COLUMNS}, diary_version, {LOGGED_MICROS}, \
             EXISTS (SELECT 1 FROM (SELECT end_at FROM time_entries WHERE contract_id = $1 \
              AND start_at < $4 ORDER BY start_at DESC LIMIT 1) AS previous \
              WHERE previous.end_at > $3) AS overlaps, {} \
             FROM contracts WHERE id = $1",
            single::key_columns(5)
        )
    });
    let query = sqlx::query(AssertSqlSafe(SQL.as_str()))
        .bind(contract_id)
        .bind(to_micros(week_start))
        .bind(to_micros(start))
        .bind(to_micros(end));
    let Some(row) = single::bind_key(query, call)
        .fetch_optional(db.writer())
        .await?
    else {
        return Ok(None);
    };
    let micros: i64 = row.try_get("logged_micros")?;
    Ok(Some(DiaryAsRead {
        contract: contract_from_row(&row)?,
        version: row.try_get("diary_version")?,
        minutes_before: micros / 60_000_000,
        overlaps: row.try_get("overlaps")?,
        replay: single::replay(&row, call)?,
    }))
}

/// The one-statement write of LogTime ([`single::write`] binds the event
/// and key terms and runs it): adds `entry` if the diary is still unlocked
/// and at `version`, bumping it.
pub fn log_time_guarded(version: i64, entry: &TimeEntry) -> single::AnyQuery<'static> {
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "WITH guard AS (UPDATE contracts SET diary_version = diary_version + 1 \
             WHERE id = $1 AND diary_version = $2 AND state = 'ACTIVE' \
             AND diary_locked_at IS NULL RETURNING id), \
             entry AS (INSERT INTO time_entries \
             (id, contract_id, start_at, end_at, manual, memo, created_at) \
             SELECT $3, $1, $4, $5, $6, $7, $8 FROM guard), {} \
             SELECT COUNT(*) AS written FROM guard",
            single::commit_terms("guard", 9)
        )
    });
    sqlx::query(AssertSqlSafe(SQL.as_str()))
        .bind(entry.contract_id.clone())
        .bind(version)
        .bind(entry.id.clone())
        .bind(to_micros(entry.start))
        .bind(to_micros(entry.end))
        .bind(i64::from(entry.manual))
        .bind(entry.memo.clone())
        .bind(to_micros(entry.create_time))
}

/// Adds a time entry unless it overlaps one of the contract's entries; one
/// statement, under the diary lock. Returns whether it was added.
///
/// A contract's entries never overlap (every insert passes this check under
/// the diary lock), so of the entries starting before the new one ends, only
/// the last can reach into it: one index probe, however long the diary.
pub async fn insert_time_entry_unless_overlapping(
    tx: &mut Tx,
    e: &TimeEntry,
) -> Result<bool, Error> {
    let done = sqlx::query(
        "INSERT INTO time_entries (id, contract_id, start_at, end_at, manual, memo, created_at) \
         SELECT $1, $2, $3, $4, $5, $6, $7 WHERE NOT EXISTS \
         (SELECT 1 FROM (SELECT end_at FROM time_entries WHERE contract_id = $2 AND start_at < $4 \
          ORDER BY start_at DESC LIMIT 1) AS previous WHERE previous.end_at > $3)",
    )
    .bind(&e.id)
    .bind(&e.contract_id)
    .bind(to_micros(e.start))
    .bind(to_micros(e.end))
    .bind(i64::from(e.manual))
    .bind(&e.memo)
    .bind(to_micros(e.create_time))
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

fn time_entry_from_row(row: &AnyRow) -> Result<TimeEntry, sqlx::Error> {
    Ok(shared::from_row!(row, TimeEntry {
        id, contract_id, memo;
        start: time(row, "start_at")?,
        end: time(row, "end_at")?,
        manual: flag(row, "manual")?,
        create_time: time(row, "created_at")?,
    }))
}

pub async fn get_time_entry(
    tx: &mut Tx,
    contract_id: &str,
    id: &str,
) -> Result<Option<TimeEntry>, Error> {
    Ok(sqlx::query(
        "SELECT id, contract_id, start_at, end_at, manual, memo, created_at \
         FROM time_entries WHERE id = $1 AND contract_id = $2",
    )
    .bind(id)
    .bind(contract_id)
    .optional(&mut **tx, time_entry_from_row)
    .await?)
}

pub async fn delete_time_entry(tx: &mut Tx, id: &str) -> Result<(), Error> {
    sqlx::query("DELETE FROM time_entries WHERE id = $1")
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Entries starting in `[from, to)`, in start order.
pub async fn time_entries_between<'e, E>(
    executor: E,
    contract_id: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<TimeEntry>, Error>
where
    E: Executor<'e, Database = Any>,
{
    Ok(sqlx::query(
        "SELECT id, contract_id, start_at, end_at, manual, memo, created_at FROM time_entries \
         WHERE contract_id = $1 AND start_at >= $2 AND start_at < $3 ORDER BY start_at",
    )
    .bind(contract_id)
    .bind(to_micros(from))
    .bind(to_micros(to))
    .all(executor, time_entry_from_row)
    .await?)
}
