//! What every feature's SQL shares: decoding columns of a row (times, flags,
//! unexpected values), and the migrations of this service for each backend.

use chrono::{DateTime, Utc};
use shared::time::from_micros;
use sqlx::Row;
use sqlx::any::AnyRow;

pub(crate) fn opt_time(row: &AnyRow, col: &str) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    Ok(row.try_get::<Option<i64>, _>(col)?.map(from_micros))
}

pub(crate) fn time(row: &AnyRow, col: &str) -> Result<DateTime<Utc>, sqlx::Error> {
    Ok(from_micros(row.try_get(col)?))
}

pub(crate) fn flag(row: &AnyRow, col: &str) -> Result<bool, sqlx::Error> {
    Ok(row.try_get::<i64, _>(col)? != 0)
}

pub(crate) fn corrupt(col: &str, value: &str) -> sqlx::Error {
    sqlx::Error::ColumnDecode {
        index: col.to_owned(),
        source: format!("unexpected value {value:?}").into(),
    }
}

/// Migrations of this service for each backend, embedded in the binary.
pub const MIGRATIONS: shared::db::Migrations = shared::db::Migrations::new(&[
    (1, "init", include_str!("../migrations/0001_init.sql")),
    (
        2,
        "time entry span index",
        include_str!("../migrations/0002_time_entry_span_index.sql"),
    ),
    (
        3,
        "dispute lifecycle",
        include_str!("../migrations/0003_dispute_lifecycle.sql"),
    ),
]);
