//! What the sqlx `Any` driver costs against the native SQLite and PostgreSQL
//! drivers, and what the services' own SQLite connections (statements on
//! the calling thread) cost against both, on the hottest read (GetContract's
//! statement, every column decoded), in one process and one run: calls per
//! second and CPU time per call, side by side.
//!
//! `cargo run --release -p e2e --bin drivers -- [--postgres-url URL]`

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use sqlx::any::AnyPoolOptions;
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{AssertSqlSafe, Executor, Row};

use shared::db::{Db, DbOptions};

#[derive(Debug, Parser)]
struct Args {
    /// Also measure PostgreSQL (a scratch schema is created and dropped).
    #[arg(long)]
    postgres_url: Option<String>,
    /// Contracts in the table.
    #[arg(long, default_value_t = 10_000)]
    rows: u64,
    /// Calls per measurement.
    #[arg(long, default_value_t = 100_000)]
    calls: u64,
    /// Concurrent callers.
    #[arg(long, default_value_t = 64)]
    concurrency: u64,
}

const COLUMNS: &str = "id, client_id, freelancer_id, agency_id, title, contract_type, currency, \
     hourly_rate_minor, weekly_limit_minutes, allow_manual_time, state, start_at, end_at, ended_by, \
     end_reason, created_at, updated_at, last_paid_at, net_paid_minor, diary_locked_at";

/// Decodes every column the way the store does (text, integers, nullable
/// integers and text), whatever the row type.
macro_rules! decode {
    ($row:expr) => {{
        let row = $row;
        let text = |c: &str| row.try_get::<String, _>(c);
        let opt_text = |c: &str| row.try_get::<Option<String>, _>(c);
        let int = |c: &str| row.try_get::<i64, _>(c);
        let opt_int = |c: &str| row.try_get::<Option<i64>, _>(c);
        let mut n = 0usize;
        for c in [
            "id",
            "client_id",
            "freelancer_id",
            "title",
            "contract_type",
            "currency",
            "state",
            "end_reason",
        ] {
            n += text(c)?.len();
        }
        for c in ["agency_id", "ended_by"] {
            n += opt_text(c)?.map_or(0, |s| s.len());
        }
        for c in [
            "hourly_rate_minor",
            "weekly_limit_minutes",
            "start_at",
            "created_at",
            "updated_at",
            "net_paid_minor",
        ] {
            n += usize::from(int(c)? != 0);
        }
        // SMALLINT on PostgreSQL, which its native driver decodes only as i16.
        n += usize::from(row.try_get::<i16, _>("allow_manual_time")? != 0);
        for c in ["end_at", "last_paid_at", "diary_locked_at"] {
            n += usize::from(opt_int(c)?.is_some());
        }
        Ok::<usize, sqlx::Error>(n)
    }};
}

fn id(n: u64) -> String {
    format!("ctr_{n:032x}")
}

fn cpu_secs() -> f64 {
    // Fields 14 and 15 of /proc/self/stat: user and system time in ticks.
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

struct Figure {
    calls_per_sec: f64,
    cpu_us_per_call: f64,
}

/// Runs `calls` lookups of random existing ids from `concurrency` tasks.
async fn measure<F, Fut>(args: &Args, call: F) -> anyhow::Result<Figure>
where
    F: Fn(String) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<usize, sqlx::Error>> + Send,
{
    let call = Arc::new(call);
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let cpu = cpu_secs();
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency {
        let (call, next) = (call.clone(), next.clone());
        let (calls, rows) = (args.calls, args.rows);
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= calls {
                    return Ok::<(), sqlx::Error>(());
                }
                // A multiplicative hash spreads the ids over the table.
                let n = (i.wrapping_mul(2_654_435_761) % rows) + 1;
                // fetch_one fails on a missing row: a lookup that found
                // nothing is a broken benchmark, not a fast one.
                call(id(n)).await?;
            }
        }));
    }
    for task in tasks {
        task.await.context("caller panicked")??;
    }
    let secs = started.elapsed().as_secs_f64();
    Ok(Figure {
        calls_per_sec: args.calls as f64 / secs,
        cpu_us_per_call: (cpu_secs() - cpu) * 1e6 / args.calls as f64,
    })
}

/// Fills the table; `hex_id` is the backend's expression for `i` as 32
/// zero-padded hex digits.
fn fill_sql(rows: u64, hex_id: &str) -> String {
    format!(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows}) \
         INSERT INTO contracts ({COLUMNS}) \
         SELECT 'ctr_' || {hex_id}, \
         'client-' || i, 'freelancer-' || i, NULL, 'a contract', 'HOURLY', 'USD', 5000, 2400, 0, \
         'ACTIVE', 1700000000000000, NULL, NULL, '', 1700000000000000, 1700000000000000, NULL, 0, NULL FROM n"
    )
}

fn report(backend: &str, name: &str, figure: &Figure, against: &str, base: &Figure) {
    println!(
        "{backend:<10} {name:<20} {:>8.0} calls/s {:>6.1} µs CPU/call | {against} {:>8.0} calls/s {:>6.1} µs CPU/call | CPU {:+.1} %, throughput {:+.1} %",
        figure.calls_per_sec,
        figure.cpu_us_per_call,
        base.calls_per_sec,
        base.cpu_us_per_call,
        (figure.cpu_us_per_call / base.cpu_us_per_call - 1.0) * 100.0,
        (figure.calls_per_sec / base.calls_per_sec - 1.0) * 100.0,
    );
}

/// Measures lookups through one executor (anything `&source` executes on).
macro_rules! lookups {
    ($args:expr, $sql:expr, $source:expr) => {{
        let source = $source;
        measure($args, move |id| {
            let source = source.clone();
            async move {
                let row = sqlx::query($sql).bind(id).fetch_one(&source).await?;
                decode!(&row)
            }
        })
        .await?
    }};
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let sql: &'static str =
        Box::leak(format!("SELECT {COLUMNS} FROM contracts WHERE id = $1").into_boxed_str());

    // SQLite: the service's own pools (Any) against a native pool with the same pragmas.
    let dir = std::env::temp_dir().join(format!("drivers-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("contracts.db");
    let db = Db::connect(&DbOptions::new(format!("sqlite://{}", path.display()))).await?;
    db.migrate(&contract_service::store::MIGRATIONS).await?;
    let fill = fill_sql(
        args.rows,
        "substr('00000000000000000000000000000000' || printf('%x', i), -32)",
    );
    db.writer().execute(AssertSqlSafe(fill)).await?;
    let native = SqlitePoolOptions::new()
        .max_connections(4)
        .test_before_acquire(false)
        .connect_with(
            SqliteConnectOptions::new()
                .filename(&path)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true),
        )
        .await?;
    let any_pool = AnyPoolOptions::new()
        .max_connections(4)
        .test_before_acquire(false)
        .connect(&format!("sqlite://{}", path.display()))
        .await?;
    let inline = lookups!(&args, sql, db.reader().clone());
    let any = lookups!(&args, sql, any_pool.clone());
    let nat = lookups!(&args, sql, native.clone());
    report("SQLite", "sqlx Any", &any, "sqlx native", &nat);
    report("SQLite", "service (inline)", &inline, "sqlx native", &nat);
    any_pool.close().await;
    native.close().await;
    std::fs::remove_dir_all(&dir).ok();

    if let Some(url) = &args.postgres_url {
        let schema = format!("drivers_{}", std::process::id());
        let scoped = format!(
            "{url}{}options=-csearch_path%3D{schema}",
            if url.contains('?') { "&" } else { "?" }
        );
        let admin = PgPoolOptions::new().max_connections(1).connect(url).await?;
        admin
            .execute(AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .await?;
        let outcome = async {
            let db = Db::connect(&DbOptions::new(scoped.clone())).await?;
            db.migrate(&contract_service::store::MIGRATIONS).await?;
            let fill = fill_sql(args.rows, "lpad(to_hex(i), 32, '0')");
            db.writer().execute(AssertSqlSafe(fill)).await?;
            let native = PgPoolOptions::new()
                .max_connections(16)
                .test_before_acquire(false)
                .connect(&scoped)
                .await?;
            let any = lookups!(&args, sql, db.reader().clone());
            let nat = lookups!(&args, sql, native.clone());
            report(
                "PostgreSQL",
                "sqlx Any (service)",
                &any,
                "sqlx native",
                &nat,
            );
            anyhow::Ok(())
        }
        .await;
        admin
            .execute(AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
            .await?;
        outcome?;
    }
    Ok(())
}
