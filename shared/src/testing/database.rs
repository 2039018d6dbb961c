//! Fresh test databases on SQLite or PostgreSQL (`TEST_POSTGRES_URL`, required
//! when `REQUIRE_POSTGRES` is set), and the sweep of the ones earlier runs left.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use sqlx::Executor;

/// Which database a test runs against.
#[derive(Debug, Clone)]
pub enum TestBackend {
    Sqlite,
    /// A PostgreSQL server URL (any database on it; tests create their own).
    Postgres(String),
}

impl TestBackend {
    /// The PostgreSQL backend, when `TEST_POSTGRES_URL` is set. When it is
    /// not, the Postgres variant is skipped with a note, unless
    /// `REQUIRE_POSTGRES` is set (CI), where skipping is a failure.
    pub fn postgres() -> Option<Self> {
        match std::env::var("TEST_POSTGRES_URL") {
            Ok(url) if !url.is_empty() => Some(Self::Postgres(url)),
            _ => {
                assert!(
                    std::env::var_os("REQUIRE_POSTGRES").is_none(),
                    "REQUIRE_POSTGRES is set but TEST_POSTGRES_URL is not: the PostgreSQL tests must run"
                );
                eprintln!("note: TEST_POSTGRES_URL is not set; skipping the PostgreSQL variant");
                None
            }
        }
    }

    /// SQLite, then PostgreSQL as [`Self::postgres`] decides: for a test
    /// that runs once per backend in a loop.
    pub fn all() -> Vec<Self> {
        std::iter::once(Self::Sqlite)
            .chain(Self::postgres())
            .collect()
    }

    /// A database URL no other test uses. The first call of a process also
    /// removes the test databases that earlier runs left behind.
    pub async fn fresh_database_url(&self) -> String {
        self.create_database("test")
            .await
            .expect("a fresh test database")
    }

    /// Creates `mkt_<label>_<uuid v7>` (a SQLite file in the temp dir's
    /// `marketplace-tests`, or a database on the PostgreSQL server, keeping
    /// the URL's `?` parameters) and returns its URL. The first call of a
    /// process also sweeps stale `mkt_…` databases.
    pub async fn create_database(&self, label: &str) -> anyhow::Result<String> {
        let name = format!("mkt_{label}_{}", uuid::Uuid::now_v7().simple());
        let first = !SWEPT.swap(true, Ordering::AcqRel);
        match self {
            TestBackend::Sqlite => {
                let dir = std::env::temp_dir().join("marketplace-tests");
                std::fs::create_dir_all(&dir).context("temp dir")?;
                if first {
                    sweep_sqlite_files(&dir);
                }
                Ok(format!("sqlite://{}/{name}.db", dir.display()))
            }
            TestBackend::Postgres(url) => {
                sqlx::any::install_default_drivers();
                let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(url)
                    .await
                    .context("connect to TEST_POSTGRES_URL")?;
                if first {
                    sweep_postgres_databases(&mut conn).await;
                }
                conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .await
                    .context("create test database")?;
                let (url, params) = url.split_once('?').unwrap_or((url, ""));
                let (base, _) = url
                    .rsplit_once('/')
                    .context("postgres URL has a database")?;
                Ok(match params {
                    "" => format!("{base}/{name}"),
                    params => format!("{base}/{name}?{params}"),
                })
            }
        }
    }
}

/// Whether this process has already swept stale test databases.
static SWEPT: AtomicBool = AtomicBool::new(false);

/// Test and load databases older than this are leftovers: the harness
/// never drops a database while a test may still hold it, and no run of the
/// suite or the load tool lasts this long.
const STALE_AFTER: Duration = Duration::from_secs(3600);

/// Whether a `mkt_…_<uuid v7>` database name was created more than
/// [`STALE_AFTER`] ago (the UUID carries its creation time).
fn is_stale(name: &str) -> bool {
    let Some(created) = name
        .strip_prefix("mkt_")
        .and_then(|rest| rest.rsplit('_').next())
        .and_then(|id| uuid::Uuid::try_parse(id).ok())
        .and_then(|id| id.get_timestamp())
    else {
        return false;
    };
    let (secs, nanos) = created.to_unix();
    let created = std::time::UNIX_EPOCH + Duration::new(secs, nanos);
    created.elapsed().is_ok_and(|age| age > STALE_AFTER)
}

/// Removes stale SQLite test files (`mkt_…_<uuid>.db` and its `-wal`
/// and `-shm`).
fn sweep_sqlite_files(dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file = entry.file_name();
        let Some(name) = file.to_str() else { continue };
        let stem = name.split('.').next().unwrap_or(name);
        if is_stale(stem) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Drops stale test and load databases on the PostgreSQL server.
async fn sweep_postgres_databases(conn: &mut sqlx::AnyConnection) {
    let names: Vec<String> = match sqlx::query_scalar(
        "SELECT CAST(datname AS TEXT) FROM pg_database WHERE datname LIKE 'mkt\\_%'",
    )
    .fetch_all(&mut *conn)
    .await
    {
        Ok(names) => names,
        Err(err) => {
            eprintln!("note: could not list old test databases: {err}");
            return;
        }
    };
    for name in names.iter().filter(|name| is_stale(name)) {
        let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
        if let Err(err) = conn.execute(sqlx::AssertSqlSafe(sql)).await {
            eprintln!("note: could not drop old test database {name}: {err}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name_made(ago: Duration) -> String {
        let at = std::time::SystemTime::now() - ago;
        let since = at
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970");
        let ts = uuid::Timestamp::from_unix(uuid::NoContext, since.as_secs(), since.subsec_nanos());
        format!("mkt_test_{}", uuid::Uuid::new_v7(ts).simple())
    }

    #[test]
    fn only_old_test_databases_are_stale() {
        let minute = Duration::from_secs(60);
        assert!(!is_stale(&name_made(minute * 59)));
        assert!(is_stale(&name_made(minute * 61)));
        let load = name_made(minute * 61).replace("mkt_test_", "mkt_load_contract_");
        assert!(is_stale(&load));
        // Anything not named by the harness or the load tool is left alone.
        assert!(!is_stale(&name_made(minute * 61).replace("mkt_", "app_")));
        assert!(!is_stale("mkt_test_notauuid"));
        assert!(!is_stale("marketplace"));
    }
}
