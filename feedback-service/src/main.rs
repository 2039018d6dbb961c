//! Parses the command line, starts telemetry, and runs or migrates.

use std::sync::Arc;

use clap::Parser;
use feedback_service::Application;
use feedback_service::config::{Cli, Command};
use shared::clock::SystemClock;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    shared::telemetry::init(cli.config.log_format);
    match cli.command.unwrap_or(Command::Serve) {
        Command::Migrate => {
            feedback_service::app::open_database(&cli.config).await?;
            tracing::info!("migrations applied");
        }
        Command::Serve => {
            let app = Application::build(&cli.config, Arc::new(SystemClock)).await?;
            app.run_until_stopped(shared::server::shutdown_signal())
                .await?;
        }
    }
    Ok(())
}
