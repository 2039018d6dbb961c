//! Loads bulk data into both services' databases (migrating them first):
//! by default 100,000 contracts, 1,000,000 diary entries, 200,000 payments
//! and 100,000 feedback records.
//!
//! ```sh
//! cargo run --release -p e2e --bin seed -- \
//!   --contract-database-url sqlite://data/contract.db \
//!   --feedback-database-url sqlite://data/feedback.db
//! ```

use anyhow::Context;
use clap::Parser;

use e2e::seed::{SeedPlan, seed};
use shared::db::{Backend, Db, DbOptions};

#[derive(Debug, Parser)]
#[command(about = "Load bulk benchmark data into the services' databases")]
struct Args {
    #[arg(long)]
    contract_database_url: String,
    #[arg(long)]
    feedback_database_url: String,
    #[arg(long, default_value_t = 100_000)]
    contracts: u64,
    #[arg(long, default_value_t = 1_000_000)]
    diary_entries: u64,
    #[arg(long, default_value_t = 200_000)]
    payments: u64,
    #[arg(long, default_value_t = 100_000)]
    feedback: u64,
    /// Freelancer ids are this prefix and a number below --freelancers.
    #[arg(long, default_value = "seed-free-")]
    freelancer_prefix: String,
    #[arg(long, default_value_t = 10_000)]
    freelancers: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let contract = Db::connect(&DbOptions::new(&args.contract_database_url)).await?;
    contract
        .migrate(&contract_service::store::MIGRATIONS)
        .await?;
    let feedback = Db::connect(&DbOptions::new(&args.feedback_database_url)).await?;
    feedback
        .migrate(&feedback_service::store::MIGRATIONS)
        .await?;
    let plan = SeedPlan {
        contracts: args.contracts,
        diary_entries: args.diary_entries,
        payments: args.payments,
        feedback: args.feedback,
        freelancer_prefix: args.freelancer_prefix,
        freelancers: args.freelancers,
        ..SeedPlan::standard(chrono::Utc::now())
    };
    let seeded = seed(
        contract.writer(),
        feedback.writer(),
        contract.backend() == Backend::Sqlite,
        &plan,
    )
    .await
    .context("seeding")?;
    println!(
        "seeded {} rows in {:.1} s",
        seeded.rows,
        seeded.elapsed.as_secs_f64()
    );
    Ok(())
}
