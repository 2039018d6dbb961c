//! The database pool. SQLite is the embedded default (a file per service, WAL
//! mode); PostgreSQL is chosen by a `postgres://` URL. Both are reached through
//! sqlx's `Any` driver so each service has a single store implementation;
//! the migrations are rendered per backend from one source ([`crate::migrate`]).
//!
//! SQLite allows one writer at a time. Rather than let concurrent writers
//! collide (and surface "database is locked"), write transactions go through
//! one write connection and start with `BEGIN IMMEDIATE`; reads use a
//! separate pool and never block on the writer thanks to WAL. The write
//! connection runs its statements on the calling thread
//! ([`crate::sqlite_inline`]); a [`Tx`] is a sqlx `Executor` either way.

use std::sync::Arc;
use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::{Any, AnyConnection, AnyPool, Executor};
use tokio::sync::Mutex;

pub use crate::migrate::{MigrationScript, Migrations};
use crate::sqlite_inline::InlineConnection;
use crate::writer::WriteOptions;

mod conn;
pub mod page;
pub mod rows;

use conn::{InlineTx, Inner};
pub use conn::{Reader, Tx, TxConn};
pub use page::{Due, Page};

/// Which database engine is behind a [`Db`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// The backend a database URL names.
    pub fn of_url(url: &str) -> Result<Self, DbError> {
        if url.starts_with("sqlite:") {
            Ok(Self::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres)
        } else {
            Err(DbError::UnsupportedUrl)
        }
    }

    /// The backend behind an open transaction, for the few statements
    /// whose SQL differs between the engines.
    pub fn of_connection(conn: &TxConn) -> Self {
        match &conn.0 {
            Inner::Inline(_) => Self::Sqlite,
            Inner::Pooled(tx) if is_postgres(tx) => Self::Postgres,
            Inner::Pooled(_) => Self::Sqlite,
        }
    }
}

/// Failures to open or migrate a database.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database URL must start with sqlite: or postgres://")]
    UnsupportedUrl,
    #[error("cannot create the SQLite directory {path}")]
    CreateDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot connect to the database")]
    Connect(#[source] sqlx::Error),
    #[error("cannot apply migrations")]
    Migrate(#[source] sqlx::migrate::MigrateError),
}

/// How SQLite makes a commit durable (`PRAGMA synchronous`); PostgreSQL
/// ignores it (its own `synchronous_commit` applies).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum SqliteSync {
    /// The WAL is synced at checkpoints: a commit survives a crash of the
    /// process, but the last commits may be lost if the machine loses power
    /// or the OS crashes. SQLite's recommended setting for WAL mode.
    #[default]
    Normal,
    /// The WAL is synced at every commit: a commit survives power loss.
    Full,
}

impl SqliteSync {
    pub(crate) fn pragma(self) -> &'static str {
        match self {
            Self::Normal => "PRAGMA synchronous = NORMAL",
            Self::Full => "PRAGMA synchronous = FULL",
        }
    }
}

/// The database flags both services share (the URL is each service's own,
/// for its default file name).
#[derive(Debug, Clone, clap::Args)]
pub struct DbArgs {
    /// Database pool size (default: 16 on PostgreSQL; 4 readers on SQLite,
    /// beside its one writer).
    #[arg(long = "db-max-connections", env = "DB_MAX_CONNECTIONS")]
    pub max_connections: Option<u32>,
    /// SQLite only: `normal` (a commit survives a process crash; the last
    /// ones may be lost on power loss) or `full` (fsync at every commit).
    #[arg(long, env = "SQLITE_SYNCHRONOUS", value_enum, default_value_t = SqliteSync::Normal)]
    pub sqlite_synchronous: SqliteSync,
    /// Most mutations committed in one transaction (group commit; default:
    /// 64 on SQLite, 1 on PostgreSQL).
    #[arg(long = "write-batch", env = "WRITE_BATCH")]
    pub write_batch: Option<usize>,
    /// PostgreSQL only: write transactions running at once, each on a
    /// connection of the pool (default 12). SQLite always has one writer.
    #[arg(long = "db-writers", env = "DB_WRITERS")]
    pub writers: Option<usize>,
}

impl DbArgs {
    /// Opens the database at `url` with these settings and applies `migrations`.
    pub async fn open(&self, url: &str, migrations: &Migrations) -> Result<Db, DbError> {
        let mut options = DbOptions::new(url);
        options.max_connections = self.max_connections;
        options.sqlite_synchronous = self.sqlite_synchronous;
        options.write_batch = self.write_batch;
        options.writers = self.writers;
        let db = Db::connect(&options).await?;
        db.migrate(migrations).await?;
        Ok(db)
    }
}

/// Pool settings.
#[derive(Debug, Clone)]
pub struct DbOptions {
    pub url: String,
    /// Connections in the (read) pool; PostgreSQL uses one pool for both.
    /// `None`: 16 on PostgreSQL, 4 on SQLite. SQLite runs each query on its
    /// connection's thread in this process, so more readers than a few per
    /// core only add context switches.
    pub max_connections: Option<u32>,
    /// How long a caller waits for a connection before the call fails UNAVAILABLE.
    pub acquire_timeout: Duration,
    pub sqlite_synchronous: SqliteSync,
    /// Group commit's batch size and writer count (`None`: the backend's default).
    pub write_batch: Option<usize>,
    pub writers: Option<usize>,
}

impl DbOptions {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            max_connections: None,
            acquire_timeout: Duration::from_secs(5),
            sqlite_synchronous: SqliteSync::default(),
            write_batch: None,
            writers: None,
        }
    }
}

fn is_postgres(conn: &AnyConnection) -> bool {
    conn.backend_name() == <sqlx::Postgres as sqlx::Database>::NAME
}

/// A service's database: a writer and a reader pool (the same pool on
/// PostgreSQL), and on SQLite the write connection.
#[derive(Debug, Clone)]
pub struct Db {
    backend: Backend,
    writer: AnyPool,
    reader: Reader,
    /// SQLite's write connection (none for an in-memory database, whose
    /// writes stay on the writer pool's one connection).
    inline: Option<Arc<Mutex<InlineConnection>>>,
    writes: WriteOptions,
}

impl Db {
    /// Opens the pools (creating a SQLite file and its directory if needed).
    /// Connections are made lazily, so a database that is down at start-up
    /// only fails the calls that need it.
    pub async fn connect(options: &DbOptions) -> Result<Self, DbError> {
        sqlx::any::install_default_drivers();
        let backend = Backend::of_url(&options.url)?;
        let defaults = WriteOptions::default_for(backend);
        let writes = WriteOptions {
            writers: options.writers.unwrap_or(defaults.writers).max(1),
            max_batch: options.write_batch.unwrap_or(defaults.max_batch).max(1),
        };
        // No ping before handing out a connection: on SQLite it is a round
        // trip to the connection's thread, on PostgreSQL one over the
        // network, before every read and every write batch. A connection
        // that broke fails its next statement instead (UNAVAILABLE, which
        // callers retry) and the pool replaces it.
        let base = AnyPoolOptions::new()
            .test_before_acquire(false)
            .acquire_timeout(options.acquire_timeout)
            .max_connections(options.max_connections.unwrap_or(match backend {
                Backend::Postgres => 16,
                Backend::Sqlite => 4,
            }));
        match backend {
            Backend::Postgres => {
                let pool = base.connect_lazy(&options.url).map_err(DbError::Connect)?;
                Ok(Self {
                    backend,
                    writer: pool.clone(),
                    reader: Reader::pooled(pool),
                    inline: None,
                    writes,
                })
            }
            Backend::Sqlite => {
                let url = sqlite_url(&options.url)?;
                let sync = options.sqlite_synchronous;
                let writer = base
                    .clone()
                    .max_connections(1)
                    .after_connect(move |conn, _| {
                        Box::pin(async move { sqlite_pragmas(conn, sync).await })
                    })
                    .connect(&url)
                    .await
                    .map_err(DbError::Connect)?;
                let reader = base
                    .after_connect(move |conn, _| {
                        Box::pin(async move { sqlite_pragmas(conn, sync).await })
                    })
                    .connect_lazy(&url)
                    .map_err(DbError::Connect)?;
                // The writer pool's connection created the file.
                let (inline, reader) = match sqlite_path(&url) {
                    Some(path) => {
                        let writer =
                            InlineConnection::open(path, sync, false).map_err(DbError::Connect)?;
                        let readers = (0..options.max_connections.unwrap_or(4).max(1))
                            .map(|_| InlineConnection::open(path, sync, true).map(Mutex::new))
                            .collect::<Result<Vec<_>, _>>()
                            .map_err(DbError::Connect)?;
                        (
                            Some(Arc::new(Mutex::new(writer))),
                            Reader {
                                pool: reader,
                                inline: Arc::new(readers),
                                next: Arc::default(),
                            },
                        )
                    }
                    None => (None, Reader::pooled(reader)),
                };
                Ok(Self {
                    backend,
                    writer,
                    reader,
                    inline,
                    writes,
                })
            }
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// How the writers group mutations ([`crate::writer`]).
    pub fn write_options(&self) -> WriteOptions {
        self.writes
    }

    /// Where reads outside a transaction run (`&Reader` is a sqlx executor).
    pub fn reader(&self) -> &Reader {
        &self.reader
    }

    /// Connections of the writer and of the readers: (name, open, idle).
    pub fn occupancy(&self) -> [(&'static str, u32, usize); 2] {
        let writer = match &self.inline {
            Some(conn) => (1, usize::from(conn.try_lock().is_ok())),
            None => (self.writer.size(), self.writer.num_idle()),
        };
        let (size, idle) = self.reader.occupancy();
        [("writer", writer.0, writer.1), ("reader", size, idle)]
    }

    /// The pool write transactions use (the same as the reader on PostgreSQL).
    pub fn writer(&self) -> &AnyPool {
        &self.writer
    }

    /// Starts a write transaction. On SQLite it takes the write lock at once
    /// (`BEGIN IMMEDIATE`), so a transaction never has to upgrade a read lock
    /// and can never fail with "database is locked" half-way through.
    pub async fn begin(&self) -> Result<Tx, sqlx::Error> {
        let conn = match (&self.inline, self.backend) {
            (Some(inline), _) => {
                let conn = inline.clone().lock_owned().await;
                conn.batch("BEGIN IMMEDIATE")?;
                Inner::Inline(InlineTx(conn))
            }
            (None, Backend::Sqlite) => {
                Inner::Pooled(self.writer.begin_with("BEGIN IMMEDIATE").await?)
            }
            (None, Backend::Postgres) => Inner::Pooled(self.writer.begin().await?),
        };
        Ok(Tx { conn: TxConn(conn) })
    }

    /// Applies the service's migrations for this backend.
    pub async fn migrate(&self, migrations: &Migrations) -> Result<(), DbError> {
        migrations
            .migrator(self.backend)
            .run(&self.writer)
            .await
            .map_err(DbError::Migrate)
    }

    /// Closes both pools, waiting for connections in use to be returned.
    pub async fn close(&self) {
        self.writer.close().await;
        self.reader.pool.close().await;
    }
}

async fn sqlite_pragmas(conn: &mut AnyConnection, sync: SqliteSync) -> Result<(), sqlx::Error> {
    conn.execute("PRAGMA journal_mode = WAL").await?;
    conn.execute(sync.pragma()).await?;
    // No mmap: each connection's mapping counted the file's cached pages
    // again in the service's resident memory (over 100 MiB under load for
    // 25 MiB of its own); reads copy pages from the OS cache instead.
    // Savepoints (one per mutation of a write batch) keep their undo pages
    // in memory rather than in a temporary file.
    conn.execute("PRAGMA temp_store = MEMORY").await?;
    conn.execute("PRAGMA foreign_keys = ON").await?;
    conn.execute("PRAGMA busy_timeout = 10000").await?;
    Ok(())
}

/// The file of a SQLite URL; `None` for an in-memory database.
fn sqlite_path(url: &str) -> Option<&str> {
    let rest = url.trim_start_matches("sqlite:").trim_start_matches("//");
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    (path != ":memory:" && !path.is_empty() && !query.contains("mode=memory")).then_some(path)
}

/// Makes sure a SQLite URL creates its file, and that the file's directory exists.
fn sqlite_url(url: &str) -> Result<String, DbError> {
    let rest = url.trim_start_matches("sqlite:").trim_start_matches("//");
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path != ":memory:"
        && let Some(dir) = std::path::Path::new(path).parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).map_err(|source| DbError::CreateDir {
            path: dir.display().to_string(),
            source,
        })?;
    }
    Ok(if query.contains("mode=") {
        url.to_owned()
    } else if query.is_empty() {
        format!("{url}?mode=rwc")
    } else {
        format!("{url}&mode=rwc")
    })
}

/// A query whose `{ids}` marker becomes `$1, $2, …` with every id bound in
/// order: the one way an `IN (…)` list is built (only placeholder numbers are
/// ever put in SQL text; the ids are bound).
pub fn query_with_ids<'q>(
    sql: &str,
    ids: &[String],
) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments> {
    let placeholders = (1..=ids.len())
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.replace("{ids}", &placeholders)));
    for id in ids {
        query = query.bind(id.clone());
    }
    query
}

/// `rows` groups of `columns` numbered placeholders, for a multi-row
/// `VALUES` list: `($1, $2), ($3, $4)`.
pub fn placeholder_rows(rows: usize, columns: usize) -> String {
    (0..rows)
        .map(|r| {
            let row = (1..=columns)
                .map(|c| format!("${}", r * columns + c))
                .collect::<Vec<_>>()
                .join(", ");
            format!("({row})")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether a database error means the database could not be reached (the
/// call may succeed later: UNAVAILABLE) rather than a bug (INTERNAL).
pub fn is_unavailable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => true,
        sqlx::Error::Tls(_) | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            // PostgreSQL: class 08 (connection), 57P01-57P03 (shutdown, cannot connect now),
            // 53300 too many connections; serialization/deadlock are retryable too.
            db.code().is_some_and(|c| {
                c.starts_with("08")
                    || c.starts_with("57P0")
                    || c == "53300"
                    || c == "40001"
                    || c == "40P01"
            }) || db.message().contains("database is locked")
        }
        _ => false,
    }
}

/// The name of the unique or check constraint a database error violated, if any.
/// SQLite reports columns rather than names, so callers match on a substring
/// that both backends include (the index name is used in PostgreSQL, the
/// table.column list in SQLite).
pub fn violated_constraint(err: &sqlx::Error) -> Option<String> {
    match err {
        sqlx::Error::Database(db) if db.is_unique_violation() || db.is_check_violation() => Some(
            db.constraint()
                .map(str::to_owned)
                .unwrap_or_else(|| db.message().to_owned()),
        ),
        _ => None,
    }
}

/// An insert's outcome, where violating one of the unique (or check)
/// constraints `names` ([`violated_constraint`]: a name on PostgreSQL, the
/// `table.column` list on SQLite) is the caller's `conflict` error.
pub fn map_conflict<E: From<sqlx::Error>>(
    inserted: Result<sqlx::any::AnyQueryResult, sqlx::Error>,
    names: &[&str],
    conflict: E,
) -> Result<(), E> {
    match inserted {
        Ok(_) => Ok(()),
        Err(e)
            if violated_constraint(&e)
                .is_some_and(|c| names.iter().any(|name| c.contains(name))) =>
        {
            Err(conflict)
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests;
