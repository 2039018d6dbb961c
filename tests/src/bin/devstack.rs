//! One command for a laptop: both services in one process, SQLite files under
//! `./data/`, dev auth, and ready-to-paste grpcurl commands. Ctrl-C stops both.
//!
//! ```text
//! cargo run --bin devstack
//! ```

use std::net::SocketAddr;
use std::sync::Arc;

use clap::Parser;
use shared::auth::{TokenSpec, mint_dev};
use shared::clock::SystemClock;

/// Start contract-service and feedback-service with SQLite and dev auth.
#[derive(Debug, Parser)]
#[command(name = "devstack", version)]
struct Args {
    /// contract-service listen address.
    #[arg(long, env = "CONTRACT_LISTEN_ADDR", default_value = "127.0.0.1:50051")]
    contract_listen: SocketAddr,
    /// feedback-service listen address.
    #[arg(long, env = "FEEDBACK_LISTEN_ADDR", default_value = "127.0.0.1:50052")]
    feedback_listen: SocketAddr,
    /// Directory for the SQLite files.
    #[arg(long, env = "DATA_DIR", default_value = "data")]
    data_dir: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    shared::telemetry::init(shared::telemetry::LogFormat::Text);

    let contract_config = contract_service::Config::dev(
        args.contract_listen,
        format!("sqlite://{}/contract-service.db", args.data_dir),
    );
    let contracts =
        contract_service::Application::build(&contract_config, Arc::new(SystemClock)).await?;
    let feedback_config = feedback_service::Config::dev(
        args.feedback_listen,
        format!("sqlite://{}/feedback-service.db", args.data_dir),
        format!("http://{}", contracts.addr()),
    );
    let feedback =
        feedback_service::Application::build(&feedback_config, Arc::new(SystemClock)).await?;
    print_walkthrough(contracts.addr(), feedback.addr())?;

    let (stop, _) = tokio::sync::broadcast::channel::<()>(1);
    let stopped = |mut rx: tokio::sync::broadcast::Receiver<()>| async move {
        let _ = rx.recv().await;
    };
    let contract_task = tokio::spawn(contracts.run_until_stopped(stopped(stop.subscribe())));
    let feedback_task = tokio::spawn(feedback.run_until_stopped(stopped(stop.subscribe())));
    shared::server::shutdown_signal().await;
    let _ = stop.send(());
    contract_task.await??;
    feedback_task.await??;
    Ok(())
}

fn print_walkthrough(contracts: SocketAddr, feedback: SocketAddr) -> anyhow::Result<()> {
    let hiring = mint_dev(&TokenSpec::service(
        "hiring",
        &["contracts:write", "contracts:read"],
    ))?;
    let billing = mint_dev(&TokenSpec::service("billing", &["payments:write"]))?;
    let client = mint_dev(&TokenSpec::user("client-1"))?;
    let freelancer = mint_dev(&TokenSpec::user("freelancer-1"))?;
    println!(
        r#"
contract-service on {contracts}, feedback-service on {feedback} (SQLite, --dev auth). Ctrl-C stops both.

Tokens (24 h, dev key):
  export HIRING={hiring}
  export BILLING={billing}
  export CLIENT={client}
  export FREELANCER={freelancer}

Try:
  grpcurl -plaintext {contracts} list
  grpcurl -plaintext -H "authorization: Bearer $HIRING" -d '{{"client_id":"client-1","freelancer_id":"freelancer-1","title":"Landing page","type":"CONTRACT_TYPE_HOURLY","currency_code":"USD","hourly_rate_minor":6000,"weekly_limit_minutes":2400}}' {contracts} marketplace.contract.v1.ContractService/CreateContract
  grpcurl -plaintext -H "authorization: Bearer $CLIENT" -d '{{}}' {contracts} marketplace.contract.v1.ContractService/ListContracts
  grpcurl -plaintext {feedback} list marketplace.feedback.v1.FeedbackService
  grpcurl -plaintext -H "authorization: Bearer $CLIENT" -d '{{"freelancer_id":"freelancer-1"}}' {feedback} marketplace.feedback.v1.FeedbackService/ListWorkHistory

The README walks through every flow.
"#
    );
    Ok(())
}
