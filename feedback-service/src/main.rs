//! Parses the command line, starts telemetry, and serves.

use clap::Parser;
use feedback_service::{Application, Config};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    shared::telemetry::init(config.log_format);
    let app = Application::build(&config).await?;
    app.run_until_stopped(shared::server::shutdown_signal())
        .await
}
