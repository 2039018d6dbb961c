//! Bulk data for the flat-cost benchmark: contracts, diary entries, payments
//! and feedback written straight into both services' databases, the same SQL
//! on SQLite and PostgreSQL (a recursive CTE numbers the rows, so nothing
//! crosses the wire row by row).
//!
//! The data is consistent with the schema's rules: half the contracts are
//! ended (diary locked), diary entries lie in past weeks, every contract has
//! two payments counted in its totals, and feedback belongs to contracts
//! that exist. Ids have the services' shape (`ctr_` + 32 hex digits) and
//! sort before generated ids.

use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use sqlx::{AnyPool, AssertSqlSafe, Executor};

use shared::time::to_micros;

/// How much to load.
#[derive(Debug, Clone)]
pub struct SeedPlan {
    pub contracts: u64,
    pub diary_entries: u64,
    pub payments: u64,
    pub feedback: u64,
    /// Freelancer ids are `{prefix}{n}` for `n` in `0..freelancers`.
    pub freelancer_prefix: String,
    pub freelancers: u64,
    /// "Now": everything seeded lies before it.
    pub now: DateTime<Utc>,
}

impl SeedPlan {
    /// The sizes the performance issue names: 100k contracts, 1M diary
    /// entries, 200k payments, 100k feedback records.
    pub fn standard(now: DateTime<Utc>) -> Self {
        Self {
            contracts: 100_000,
            diary_entries: 1_000_000,
            payments: 200_000,
            feedback: 100_000,
            freelancer_prefix: "seed-free-".into(),
            freelancers: 10_000,
            now,
        }
    }
}

/// What was loaded and how long it took.
#[derive(Debug)]
pub struct Seeded {
    pub rows: u64,
    pub elapsed: Duration,
}

/// An id of kind `prefix` for row number `n` (SQL expression): 32 digits,
/// all valid hex, below any generated (time-ordered) id.
fn id_sql(prefix: &str, n: &str) -> String {
    format!("'{prefix}_' || '0000000000000000000000000' || (1000000 + {n})")
}

/// `WITH RECURSIVE` numbering 1..=count as `i`.
fn numbers(count: u64) -> String {
    format!(
        "WITH RECURSIVE n(i) AS (SELECT CAST(1 AS BIGINT) UNION ALL SELECT i + 1 FROM n WHERE i < {count}) "
    )
}

async fn run(pool: &AnyPool, statements: &[String]) -> anyhow::Result<u64> {
    let mut tx = pool.begin().await?;
    let mut rows = 0;
    for sql in statements {
        rows += tx
            .execute(AssertSqlSafe(sql.clone()))
            .await
            .with_context(|| format!("seeding: {}", &sql[..sql.len().min(120)]))?
            .rows_affected();
    }
    tx.commit().await?;
    Ok(rows)
}

/// Leaves the database as it would be in steady state: statistics current,
/// and on PostgreSQL the new rows vacuumed (visibility map set, so index-only
/// scans need no heap visits, and no autovacuum of a million fresh rows
/// runs during the measurement).
async fn analyze(pool: &AnyPool, sqlite: bool) -> anyhow::Result<()> {
    if sqlite {
        pool.execute("ANALYZE").await?;
        pool.execute("PRAGMA wal_checkpoint(TRUNCATE)").await?;
    } else {
        pool.execute("VACUUM ANALYZE").await?;
    }
    Ok(())
}

/// Loads the plan into a contract-service database and a feedback-service
/// database (both already migrated; the services may be running).
pub async fn seed(
    contract_db: &AnyPool,
    feedback_db: &AnyPool,
    sqlite: bool,
    plan: &SeedPlan,
) -> anyhow::Result<Seeded> {
    anyhow::ensure!(
        plan.contracts >= 4 && plan.freelancers >= 1,
        "at least 4 contracts and 1 freelancer"
    );
    let started = Instant::now();
    let day = 86_400_000_000_i64;
    let now = to_micros(plan.now);
    // Contracts started 200 days ago; ended ones ended 30 days ago, so their
    // feedback windows are closed and revealed.
    let start = now - 200 * day;
    let ended = now - 30 * day;
    let contracts = plan.contracts;
    let per_contract_payment = 10_000;
    let payments_per_contract = (plan.payments / contracts).max(1);
    let contract_id = |n: &str| id_sql("ctr", n);
    let freelancer = |n: &str| {
        format!(
            "'{}' || ({n} % {})",
            plan.freelancer_prefix.replace('\'', "''"),
            plan.freelancers
        )
    };
    let client = |n: &str| format!("'seed-client-' || ({n} % 20000)");
    let contract_rows = format!(
        "{numbers}INSERT INTO contracts (id, client_id, freelancer_id, agency_id, title, contract_type, currency, \
         hourly_rate_minor, weekly_limit_minutes, allow_manual_time, state, start_at, end_at, ended_by, \
         end_reason, created_at, updated_at, last_paid_at, net_paid_minor, diary_locked_at) \
         SELECT {id}, {client}, {freelancer}, NULL, 'seeded contract', 'HOURLY', 'USD', 5000, 2400, 0, \
         CASE WHEN i % 2 = 0 THEN 'ENDED' ELSE 'ACTIVE' END, {start}, \
         CASE WHEN i % 2 = 0 THEN {ended} END, CASE WHEN i % 2 = 0 THEN 'CLIENT' END, '', {start}, {start}, \
         {paid}, {net}, CASE WHEN i % 2 = 0 THEN {ended} END FROM n",
        numbers = numbers(contracts),
        id = contract_id("i"),
        client = client("i"),
        freelancer = freelancer("i"),
        paid = ended - day,
        net = per_contract_payment * payments_per_contract as i64,
    );
    // Ten-minute entries, spread over the contract's first weeks (all past).
    let entry_rows = format!(
        "{numbers}INSERT INTO time_entries (id, contract_id, start_at, end_at, manual, memo, created_at) \
         SELECT {id}, {contract}, {start} + (i / {contracts}) * 600000000, \
         {start} + (i / {contracts}) * 600000000 + 600000000, 0, '', {start} FROM n",
        numbers = numbers(plan.diary_entries),
        id = id_sql("te", "i"),
        contract = contract_id(&format!("(i % {contracts}) + 1")),
    );
    let payment_rows = format!(
        "{numbers}INSERT INTO payments (id, contract_id, kind, currency, amount_minor, refunded_minor, paid_at, memo, created_at, billing_week_start) \
         SELECT {id}, {contract}, 'HOURLY_INVOICE', 'USD', {per_contract_payment}, 0, {paid}, '', {paid}, {week} FROM n",
        numbers = numbers(payments_per_contract * contracts),
        id = id_sql("pay", "i"),
        contract = contract_id(&format!("(i % {contracts}) + 1")),
        paid = ended - day,
        // Each invoice pays the billing week it was paid in.
        week = to_micros(contract_service::domain::billing_week_start(
            shared::time::from_micros(ended - day)
        )),
    );
    let mut rows = run(contract_db, &[contract_rows, entry_rows, payment_rows]).await?;

    // Feedback: half of it client-to-freelancer on ended contracts, a quarter
    // freelancer-to-client, a quarter mid-contract on active contracts.
    let half = (plan.feedback / 2).min(contracts / 2);
    let quarter = (plan.feedback / 4).min(contracts / 4);
    let end_feedback = |count: u64, direction: &str, author: &str, recipient: &str, m: u64| {
        // Row i is contract m·i (every m-th contract, starting at an ended one).
        let n = format!("({m} * i)");
        format!(
            "{numbers}INSERT INTO end_feedback (id, contract_id, direction, author_id, recipient_id, client_id, \
             freelancer_id, score_1, score_2, score_3, score_4, score_5, score_6, comment, reason_for_ending, \
             likelihood_to_recommend, contract_end_at, window_close_at, revealed_at, created_at) \
             SELECT {id}, {contract}, '{direction}', {author}, {recipient}, {client}, {freelancer}, \
             5, 4, 5, 4, 5, 5, 'seeded feedback', NULL, NULL, {ended}, {closed}, {closed}, {ended} FROM n",
            numbers = numbers(count),
            id = id_sql(if m == 2 { "efc" } else { "eff" }, &n),
            contract = contract_id(&n),
            author = if author == "client" {
                client(&n)
            } else {
                freelancer(&n)
            },
            recipient = if recipient == "client" {
                client(&n)
            } else {
                freelancer(&n)
            },
            client = client(&n),
            freelancer = freelancer(&n),
            closed = ended + 14 * day,
        )
    };
    let to_freelancer = end_feedback(half, "CLIENT_TO_FREELANCER", "client", "freelancer", 2);
    let to_client = end_feedback(quarter, "FREELANCER_TO_CLIENT", "freelancer", "client", 4);
    // Mid-contract feedback on odd (active) contracts.
    let n = "(2 * i - 1)";
    let mid = format!(
        "{numbers}INSERT INTO mid_feedback (id, contract_id, client_id, freelancer_id, rating, comment, cohort, \
         bonus_currency, bonus_minor, bonus_state, bonus_payment_id, fulfilled_request_id, created_at) \
         SELECT {id}, {contract}, {client}, {freelancer}, 5, 'seeded progress note', 'BASELINE', \
         NULL, NULL, 'NONE', NULL, NULL, {at} FROM n",
        numbers = numbers(plan.feedback - half - quarter),
        id = id_sql("mfb", "i"),
        contract = contract_id(n),
        client = client(n),
        freelancer = freelancer(n),
        at = start + 20 * day,
    );
    rows += run(feedback_db, &[to_freelancer, to_client, mid]).await?;
    analyze(contract_db, sqlite).await?;
    analyze(feedback_db, sqlite).await?;
    Ok(Seeded {
        rows,
        elapsed: started.elapsed(),
    })
}
