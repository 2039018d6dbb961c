//! Parses the command line, starts telemetry, and runs or migrates.

use std::sync::Arc;

use clap::Parser;
use contract_service::Application;
use contract_service::config::{Cli, Command};
use shared::clock::{SharedClock, SystemClock, TestClock};

/// mimalloc rather than the system allocator: under load, glibc's malloc
/// (its arena locks and consolidation) took about a third of the machine's
/// CPU in a profile of the batch eligibility check (docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = cli.config;
    let _telemetry = shared::telemetry::init(
        config.serve.log_format,
        config.serve.otlp_endpoint.as_deref(),
        "contract-service",
    );
    match cli.command.unwrap_or(Command::Serve) {
        Command::Migrate => {
            config
                .db
                .open(&config.database_url, &contract_service::store::MIGRATIONS)
                .await?;
            tracing::info!("migrations applied");
        }
        Command::Serve if config.test_clock => {
            anyhow::ensure!(
                config.auth.dev,
                "--test-clock is for development only and needs --dev"
            );
            let clock = TestClock::new(chrono::Utc::now());
            let shared: SharedClock = Arc::new(clock.clone());
            let app = Application::build(&config, shared)
                .await?
                .with_clock_control(clock);
            app.run_until_stopped(shared::server::shutdown_signal())
                .await?;
        }
        Command::Serve => {
            let app = Application::build(&config, Arc::new(SystemClock)).await?;
            app.run_until_stopped(shared::server::shutdown_signal())
                .await?;
        }
    }
    Ok(())
}
