//! Reading rows: a SELECT run into decoded values ([`Fetch`], [`from_row!`]),
//! and the column decoders both services' stores use (times are stored as
//! microseconds, flags and small numbers as integers).

use std::future::Future;

use chrono::{DateTime, Utc};
use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, AssertSqlSafe, Executor, Row};

use super::page::Page;
use crate::time::from_micros;

/// Declares a [`Fetch`] method: each takes the same executor and decoder,
/// under the same bounds, and differs only in what it fetches (`$fetch`)
/// and how it decodes what it fetched (`$rows`) with the decoder (`$decode`).
macro_rules! fetch_method {
    (
        $(#[$doc:meta])*
        fn $name:ident -> $out:ty = $fetch:ident, |$rows:ident, $decode:ident| $body:expr
    ) => {
        $(#[$doc])*
        fn $name<'e, 'c: 'e, E, T, D>(
            self,
            executor: E,
            $decode: impl Fn(&AnyRow) -> Result<T, D> + Send + 'e,
        ) -> impl Future<Output = Result<$out, D>> + Send + 'e
        where
            'q: 'e,
            Self: 'e,
            E: Executor<'c, Database = Any> + 'e,
            T: Send + 'e,
            D: From<sqlx::Error> + Send + 'e,
        {
            let query = self.into();
            async move {
                let $rows = query.$fetch(executor).await?;
                $body
            }
        }
    };
}

/// Runs a query and decodes its rows with the store's `*_from_row`
/// function (or [`column`]), in one expression.
pub trait Fetch<'q>: Sized + Into<Query<'q, Any, AnyArguments>> {
    fetch_method! {
        /// Every row, decoded.
        fn all -> Vec<T> = fetch_all, |rows, decode| rows.iter().map(decode).collect()
    }

    fetch_method! {
        /// The row, decoded, if there is one.
        fn optional -> Option<T> = fetch_optional,
            |row, decode| row.as_ref().map(decode).transpose()
    }
}

impl<'q> Fetch<'q> for Query<'q, Any, AnyArguments> {}

/// A table as its store reads it: the columns selected and the decoder of a
/// row of them, for the reads every table has (one row by id, a page of
/// rows in id order).
pub struct Table<T> {
    name: &'static str,
    columns: &'static str,
    decode: fn(&AnyRow) -> Result<T, sqlx::Error>,
}

impl<T: Send> Table<T> {
    pub const fn new(
        name: &'static str,
        columns: &'static str,
        decode: fn(&AnyRow) -> Result<T, sqlx::Error>,
    ) -> Self {
        Self {
            name,
            columns,
            decode,
        }
    }

    /// The row with this id, decoded, if there is one.
    pub async fn get<'e, E>(&self, executor: E, id: &str) -> Result<Option<T>, sqlx::Error>
    where
        E: Executor<'e, Database = Any>,
    {
        let sql = format!("SELECT {} FROM {} WHERE id = $1", self.columns, self.name);
        sqlx::query(AssertSqlSafe(sql))
            .bind(id)
            .optional(executor, self.decode)
            .await
    }

    /// A page of the rows `filter` (a condition on the page's key, `$1`)
    /// selects, in id order.
    pub async fn page<'e, E>(
        &self,
        executor: E,
        filter: &'static str,
        page: Page<'_>,
    ) -> Result<Vec<T>, sqlx::Error>
    where
        E: Executor<'e, Database = Any>,
    {
        let sql = format!(
            "SELECT {} FROM {} WHERE {filter} AND id > $2 ORDER BY id LIMIT $3",
            self.columns, self.name
        );
        page.query(AssertSqlSafe(sql))
            .all(executor, self.decode)
            .await
    }
}

/// Decodes one column of a row, by name.
pub fn column<T>(name: &'static str) -> impl Fn(&AnyRow) -> Result<T, sqlx::Error> + Send
where
    T: for<'r> sqlx::Decode<'r, Any> + sqlx::Type<Any>,
{
    move |row| row.try_get(name)
}

/// Builds a struct from a row: each field before the `;` from the column of
/// its name, each `field: value` after it from the expression given.
///
/// `from_row!(row, Reply { id, text; public: flag(row, "public")? })`
#[macro_export]
macro_rules! from_row {
    ($row:expr, $ty:ident { $($field:ident),* $(,)? ; $($other:ident : $value:expr),* $(,)? }) => {
        $ty {
            $($field: ::sqlx::Row::try_get($row, stringify!($field))?,)*
            $($other: $value,)*
        }
    };
}

/// A time stored as microseconds since the epoch.
pub fn time(row: &AnyRow, col: &str) -> Result<DateTime<Utc>, sqlx::Error> {
    Ok(from_micros(row.try_get(col)?))
}

/// A nullable time stored as microseconds since the epoch.
pub fn opt_time(row: &AnyRow, col: &str) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    Ok(row.try_get::<Option<i64>, _>(col)?.map(from_micros))
}

/// A flag stored as 0 or 1.
pub fn flag(row: &AnyRow, col: &str) -> Result<bool, sqlx::Error> {
    Ok(row.try_get::<i64, _>(col)? != 0)
}

/// A small number stored as an integer.
pub fn int(row: &AnyRow, col: &str) -> Result<i32, sqlx::Error> {
    narrow(col, row.try_get(col)?)
}

/// A nullable small number stored as an integer.
pub fn opt_int(row: &AnyRow, col: &str) -> Result<Option<i32>, sqlx::Error> {
    row.try_get::<Option<i64>, _>(col)?
        .map(|v| narrow(col, v))
        .transpose()
}

fn narrow(col: &str, value: i64) -> Result<i32, sqlx::Error> {
    i32::try_from(value).map_err(|e| sqlx::Error::ColumnDecode {
        index: col.into(),
        source: Box::new(e),
    })
}

/// The error for a column holding a value the code does not know.
pub fn corrupt(col: &str, value: &str) -> sqlx::Error {
    sqlx::Error::ColumnDecode {
        index: col.to_owned(),
        source: format!("unexpected value {value:?}").into(),
    }
}
