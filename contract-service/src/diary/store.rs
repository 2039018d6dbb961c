//! The SQL of Work Diaries: the diary's write lock, and adding, finding,
//! deleting and listing time entries.

use chrono::{DateTime, Utc};
use shared::db::rows::Fetch;
use sqlx::any::AnyRow;
use sqlx::{Any, AssertSqlSafe, Executor, Row};

use crate::error::Error;
use crate::store::{flag, time};
use shared::db::{Backend, Tx};
use shared::time::to_micros;

use super::rules::TimeEntry;
use crate::contracts::rules::Contract;
use crate::contracts::store::{CONTRACT_COLUMNS, contract_from_row};

/// Takes the diary's write lock for this transaction and returns the
/// contract, if the diary is still unlocked (`None` otherwise: absent, ended
/// or locked). Diary writes of one contract are serialised by it, and it
/// waits for (and then sees) a concurrent EndContract. One statement: the
/// lock and the read are one round trip.
///
/// (`contracts.diary_version`, which an earlier version bumped to take this
/// lock, is no longer read or written; a later migration drops it once no
/// running version writes it.)
pub async fn lock_diary_for_write(
    tx: &mut Tx,
    contract_id: &str,
) -> Result<Option<Contract>, Error> {
    // PostgreSQL: a row lock that conflicts with EndContract's UPDATE and
    // with other diary writers, and (unlike an UPDATE) writes no new row
    // version; after waiting for a concurrent EndContract, the WHERE clause
    // is re-checked against the committed row. `NO KEY` leaves inserts that
    // reference the contract (payments, disputes) unblocked. SQLite: write
    // transactions already run one at a time (`BEGIN IMMEDIATE`).
    static POSTGRES: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| format!("{} FOR NO KEY UPDATE", SQLITE.as_str()));
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

/// [`lock_diary_for_write`], also returning the minutes logged by entries
/// starting in `[from, before)`: what LogTime needs, in one statement.
pub async fn lock_diary_with_minutes(
    tx: &mut Tx,
    contract_id: &str,
    from: DateTime<Utc>,
    before: DateTime<Utc>,
) -> Result<Option<(Contract, i64)>, Error> {
    static POSTGRES: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| format!("{} FOR NO KEY UPDATE OF contracts", SQLITE.as_str()));
    static SQLITE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "SELECT {CONTRACT_COLUMNS}, \
             (SELECT CAST(COALESCE(SUM(end_at - start_at), 0) AS BIGINT) FROM time_entries \
              WHERE contract_id = $1 AND start_at >= $2 AND start_at < $3) AS logged_micros \
             FROM contracts WHERE id = $1 AND state = 'ACTIVE' AND diary_locked_at IS NULL"
        )
    });
    let sql = match Backend::of_connection(tx) {
        Backend::Postgres => POSTGRES.as_str(),
        Backend::Sqlite => SQLITE.as_str(),
    };
    let row = sqlx::query(AssertSqlSafe(sql))
        .bind(contract_id)
        .bind(to_micros(from))
        .bind(to_micros(before))
        .fetch_optional(&mut **tx)
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let micros: i64 = row.try_get("logged_micros")?;
    Ok(Some((contract_from_row(&row)?, micros / 60_000_000)))
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
