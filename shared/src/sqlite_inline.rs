//! SQLite statements run on the calling thread: the write connection.
//!
//! sqlx's SQLite driver gives each connection a thread of its own and hands
//! every statement to it and back; on a loaded 2-core machine each hand-off
//! costs far more CPU than the statement (see docs/benchmarks.md). The write
//! connection is therefore opened here, with `rusqlite` on the same bundled
//! SQLite, and its statements run where they are called: a write batch of
//! any size costs no hand-off at all. Statements are prepared once and
//! cached on the connection.
//!
//! The store keeps writing sqlx queries: [`crate::db::Tx`] implements sqlx's
//! `Executor` for the `Any` driver on this connection, so the same statement
//! code runs on PostgreSQL through sqlx and here without a thread.

use std::borrow::Cow;
use std::sync::Arc;

use sqlx::Either;
use sqlx::error::{DatabaseError, ErrorKind};
use sqlx_core::any::{
    AnyArguments, AnyColumn, AnyQueryResult, AnyRow, AnyTypeInfo, AnyTypeInfoKind, AnyValue,
    AnyValueKind,
};
use sqlx_core::ext::ustr::UStr;

use crate::db::SqliteSync;

/// Prepared statements kept per connection (the store has a few dozen).
const STATEMENT_CACHE: usize = 256;

/// One result of a statement, in sqlx's shape.
pub(crate) type Step = Either<AnyQueryResult, AnyRow>;

/// The write connection.
pub struct InlineConnection {
    conn: rusqlite::Connection,
}

impl std::fmt::Debug for InlineConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InlineConnection")
            .field("path", &self.conn.path())
            .finish()
    }
}

impl InlineConnection {
    /// Opens the database file (created by the pools already) with the
    /// same settings as every pooled connection; a reader refuses writes.
    pub(crate) fn open(path: &str, sync: SqliteSync, read_only: bool) -> Result<Self, sqlx::Error> {
        let conn = rusqlite::Connection::open(path).map_err(into_sqlx)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        conn.execute_batch(&format!(
            "PRAGMA journal_mode = WAL; {}; PRAGMA temp_store = MEMORY; \
             PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000; PRAGMA query_only = {};",
            sync.pragma(),
            if read_only { "ON" } else { "OFF" }
        ))
        .map_err(into_sqlx)?;
        Ok(Self { conn })
    }

    /// Runs statements without parameters or results (BEGIN, COMMIT,
    /// savepoints).
    pub(crate) fn batch(&self, sql: &str) -> Result<(), sqlx::Error> {
        self.conn.execute_batch(sql).map_err(into_sqlx)
    }

    /// Whether a transaction is open.
    pub(crate) fn in_transaction(&self) -> bool {
        !self.conn.is_autocommit()
    }

    /// Runs one statement with its arguments (bound by their `$N` numbers,
    /// as sqlx does) and returns its rows, then its rows-affected count.
    pub(crate) fn run(
        &self,
        sql: &str,
        arguments: Option<AnyArguments>,
    ) -> Result<Vec<Step>, sqlx::Error> {
        let mut statement = self.conn.prepare_cached(sql).map_err(into_sqlx)?;
        let values = arguments.map(|a| a.values.0).unwrap_or_default();
        for slot in 1..=statement.parameter_count() {
            let n = match statement.parameter_name(slot) {
                Some(name) => name
                    .strip_prefix('$')
                    .or_else(|| name.strip_prefix('?'))
                    .and_then(|n| n.parse::<usize>().ok())
                    .ok_or_else(|| {
                        sqlx::Error::Protocol(format!("unsupported SQL parameter {name}"))
                    })?,
                None => slot,
            };
            match values.get(n - 1) {
                Some(value) => bind(&mut statement, slot, value)?,
                // SQLite (and sqlx's driver) treat an unbound parameter as NULL.
                None => statement
                    .raw_bind_parameter(slot, rusqlite::types::Null)
                    .map_err(into_sqlx)?,
            }
        }
        let readonly = statement.readonly();
        let ordered: Vec<UStr> = statement
            .column_names()
            .into_iter()
            .map(UStr::new)
            .collect();
        let names: Arc<sqlx_core::HashMap<UStr, usize>> = Arc::new(
            ordered
                .iter()
                .enumerate()
                .map(|(i, name)| (name.clone(), i))
                .collect(),
        );
        let columns = ordered.len();
        let mut steps = Vec::new();
        let mut rows = statement.raw_query();
        while let Some(row) = rows.next().map_err(into_sqlx)? {
            let mut out = AnyRow {
                column_names: names.clone(),
                columns: Vec::with_capacity(columns),
                values: Vec::with_capacity(columns),
            };
            for (i, name) in ordered.iter().enumerate() {
                let kind = value_kind(row.get_ref(i).map_err(into_sqlx)?);
                out.columns.push(AnyColumn {
                    ordinal: i,
                    name: name.clone(),
                    type_info: type_info(&kind),
                });
                out.values.push(AnyValue { kind });
            }
            steps.push(Either::Right(out));
        }
        drop(rows);
        steps.push(Either::Left(AnyQueryResult {
            rows_affected: if readonly { 0 } else { self.conn.changes() },
            last_insert_id: None,
        }));
        Ok(steps)
    }
}

fn bind(
    statement: &mut rusqlite::CachedStatement<'_>,
    slot: usize,
    value: &AnyValueKind,
) -> Result<(), sqlx::Error> {
    use rusqlite::types::Null;
    let bound = match value {
        AnyValueKind::Null(_) => statement.raw_bind_parameter(slot, Null),
        AnyValueKind::Bool(b) => statement.raw_bind_parameter(slot, i64::from(*b)),
        AnyValueKind::SmallInt(i) => statement.raw_bind_parameter(slot, i64::from(*i)),
        AnyValueKind::Integer(i) => statement.raw_bind_parameter(slot, i64::from(*i)),
        AnyValueKind::BigInt(i) => statement.raw_bind_parameter(slot, *i),
        AnyValueKind::Real(r) => statement.raw_bind_parameter(slot, f64::from(*r)),
        AnyValueKind::Double(d) => statement.raw_bind_parameter(slot, *d),
        AnyValueKind::Text(t) => statement.raw_bind_parameter(slot, t.as_str()),
        AnyValueKind::TextSlice(t) => statement.raw_bind_parameter(slot, &**t),
        AnyValueKind::Blob(b) => statement.raw_bind_parameter(slot, b.as_slice()),
        other => {
            return Err(sqlx::Error::Protocol(format!(
                "no SQLite binding for {other:?}"
            )));
        }
    };
    bound.map_err(into_sqlx)
}

/// A value as sqlx's SQLite driver hands it to `Any`: by the value's own
/// storage class.
fn value_kind(value: rusqlite::types::ValueRef<'_>) -> AnyValueKind {
    use rusqlite::types::ValueRef;
    match value {
        ValueRef::Null => AnyValueKind::Null(AnyTypeInfoKind::Null),
        ValueRef::Integer(i) => AnyValueKind::BigInt(i),
        ValueRef::Real(r) => AnyValueKind::Double(r),
        ValueRef::Text(t) => AnyValueKind::Text(Arc::new(String::from_utf8_lossy(t).into_owned())),
        ValueRef::Blob(b) => AnyValueKind::Blob(Arc::new(b.to_vec())),
    }
}

fn type_info(kind: &AnyValueKind) -> AnyTypeInfo {
    AnyTypeInfo {
        kind: match kind {
            AnyValueKind::BigInt(_) => AnyTypeInfoKind::BigInt,
            AnyValueKind::Double(_) => AnyTypeInfoKind::Double,
            AnyValueKind::Text(_) => AnyTypeInfoKind::Text,
            AnyValueKind::Blob(_) => AnyTypeInfoKind::Blob,
            _ => AnyTypeInfoKind::Null,
        },
    }
}

/// A SQLite error as a sqlx database error, classified as sqlx's SQLite
/// driver classifies it (so constraint checks and "database is locked"
/// read the same on either connection).
fn into_sqlx(err: rusqlite::Error) -> sqlx::Error {
    match err {
        rusqlite::Error::SqliteFailure(failure, message) => {
            let message = message.unwrap_or_else(|| failure.to_string());
            sqlx::Error::Database(Box::new(InlineError {
                code: failure.extended_code,
                message,
            }))
        }
        other => sqlx::Error::Protocol(format!("SQLite: {other}")),
    }
}

/// An error SQLite reported on the write connection.
#[derive(Debug, thiserror::Error)]
#[error("(code: {code}) {message}")]
pub struct InlineError {
    code: i32,
    message: String,
}

impl DatabaseError for InlineError {
    fn message(&self) -> &str {
        &self.message
    }

    fn code(&self) -> Option<Cow<'_, str>> {
        Some(Cow::Owned(self.code.to_string()))
    }

    fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self
    }

    fn kind(&self) -> ErrorKind {
        use rusqlite::ffi;
        match self.code {
            ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY => {
                ErrorKind::UniqueViolation
            }
            ffi::SQLITE_CONSTRAINT_FOREIGNKEY => ErrorKind::ForeignKeyViolation,
            ffi::SQLITE_CONSTRAINT_NOTNULL => ErrorKind::NotNullViolation,
            ffi::SQLITE_CONSTRAINT_CHECK => ErrorKind::CheckViolation,
            _ => ErrorKind::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use sqlx::Row;

    use crate::db::{Db, DbOptions};

    async fn open(name: &str) -> (Db, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("inline-{name}-{}", std::process::id()));
        std::fs::remove_dir_all(&dir).ok();
        let db = Db::connect(&DbOptions::new(format!("sqlite://{}/x.db", dir.display())))
            .await
            .expect("open");
        sqlx::raw_sql(
            "CREATE TABLE t (id TEXT PRIMARY KEY, n BIGINT NOT NULL CHECK (n >= 0), \
             note TEXT, data BLOB, ratio DOUBLE PRECISION)",
        )
        .execute(db.writer())
        .await
        .expect("schema");
        (db, dir)
    }

    #[tokio::test]
    async fn statements_bind_by_number_and_rows_decode_as_through_sqlx() {
        let (db, dir) = open("rows").await;
        let mut tx = db.begin().await.expect("begin");
        // $1 twice and out of order, as the store writes them.
        let done = sqlx::query(
            "INSERT INTO t (id, n, note, data, ratio) SELECT $2, $1, NULL, $3, 0.5 \
             UNION ALL SELECT $2 || '-b', $1 + 1, 'b', NULL, NULL",
        )
        .bind(7_i64)
        .bind("a")
        .bind(vec![1_u8, 2, 3])
        .execute(&mut *tx)
        .await
        .expect("insert");
        assert_eq!(done.rows_affected(), 2);
        let rows = sqlx::query("SELECT id, n, note, data, ratio FROM t ORDER BY id")
            .fetch_all(&mut *tx)
            .await
            .expect("select");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].try_get::<String, _>("id").expect("id"), "a");
        assert_eq!(rows[0].try_get::<i64, _>("n").expect("n"), 7);
        assert_eq!(
            rows[0].try_get::<Option<String>, _>("note").expect("note"),
            None
        );
        assert_eq!(
            rows[0].try_get::<Vec<u8>, _>("data").expect("data"),
            vec![1, 2, 3]
        );
        assert_eq!(rows[0].try_get::<f64, _>("ratio").expect("ratio"), 0.5);
        assert_eq!(rows[1].try_get::<i32, _>(1).expect("by index"), 8);
        assert_eq!(
            rows[1]
                .try_get::<Option<String>, _>("note")
                .expect("note")
                .as_deref(),
            Some("b")
        );
        let none = sqlx::query("SELECT id FROM t WHERE id = $1")
            .bind("missing")
            .fetch_optional(&mut *tx)
            .await
            .expect("select");
        assert!(none.is_none());
        // A SELECT reports no rows affected, whatever ran before it.
        let read = sqlx::query("SELECT 1")
            .execute(&mut *tx)
            .await
            .expect("select");
        assert_eq!(read.rows_affected(), 0);
        tx.commit().await.expect("commit");
        let seen: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM t")
            .fetch_one(db.reader())
            .await
            .expect("count");
        assert_eq!(seen, 2, "committed rows are visible to the readers");
        db.close().await;
        std::fs::remove_dir_all(dir).ok();
    }

    #[tokio::test]
    async fn constraint_errors_read_as_sqlx_reports_them_and_a_dropped_transaction_rolls_back() {
        let (db, dir) = open("errors").await;
        let mut tx = db.begin().await.expect("begin");
        sqlx::query("INSERT INTO t (id, n) VALUES ($1, 1)")
            .bind("a")
            .execute(&mut *tx)
            .await
            .expect("insert");
        let duplicate = sqlx::query("INSERT INTO t (id, n) VALUES ($1, 1)")
            .bind("a")
            .execute(&mut *tx)
            .await
            .expect_err("duplicate");
        match &duplicate {
            sqlx::Error::Database(e) => assert!(e.is_unique_violation(), "{e}"),
            other => panic!("not a database error: {other}"),
        }
        assert!(crate::db::violated_constraint(&duplicate).is_some_and(|c| c.contains("t.id")));
        let negative = sqlx::query("INSERT INTO t (id, n) VALUES ('b', -1)")
            .execute(&mut *tx)
            .await
            .expect_err("check");
        assert!(matches!(&negative, sqlx::Error::Database(e) if e.is_check_violation()));
        drop(tx);
        // Dropped without commit: rolled back, and the connection is free.
        let mut tx = db.begin().await.expect("begin again");
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM t")
            .fetch_one(&mut *tx)
            .await
            .expect("count");
        assert_eq!(n, 0);
        tx.rollback().await.expect("rollback");
        db.close().await;
        std::fs::remove_dir_all(dir).ok();
    }
}
