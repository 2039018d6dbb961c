//! One command for a laptop: both services in one process, SQLite files under
//! `./data/`, dev auth, and ready-to-paste grpcurl commands with fresh tokens.
//! `--test-clock` gives both services one clock that TestClockService moves.
//! Ctrl-C stops both cleanly.
//!
//! ```text
//! cargo run --bin devstack [-- --test-clock]
//! ```

use std::net::SocketAddr;
use std::sync::Arc;

use clap::Parser;
use shared::auth::{TokenSpec, mint_dev};
use shared::clock::{SharedClock, SystemClock, TestClock};

/// Start contract-service and feedback-service with SQLite and dev auth.
#[derive(Debug, Parser)]
#[command(name = "devstack", version)]
struct Args {
    /// contract-service gRPC address.
    #[arg(long, env = "CONTRACT_LISTEN_ADDR", default_value = "127.0.0.1:50051")]
    contract_listen: SocketAddr,
    /// contract-service /metrics address.
    #[arg(long, env = "CONTRACT_METRICS_ADDR", default_value = "127.0.0.1:9101")]
    contract_metrics: SocketAddr,
    /// feedback-service gRPC address.
    #[arg(long, env = "FEEDBACK_LISTEN_ADDR", default_value = "127.0.0.1:50052")]
    feedback_listen: SocketAddr,
    /// feedback-service /metrics address.
    #[arg(long, env = "FEEDBACK_METRICS_ADDR", default_value = "127.0.0.1:9102")]
    feedback_metrics: SocketAddr,
    /// Directory for the SQLite files.
    #[arg(long, env = "DATA_DIR", default_value = "data")]
    data_dir: String,
    /// Share one movable clock between both services and serve TestClockService on both.
    #[arg(long, env = "TEST_CLOCK", default_value_t = false)]
    test_clock: bool,
    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = shared::telemetry::LogFormat::Text)]
    log_format: shared::telemetry::LogFormat,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _telemetry = shared::telemetry::init(args.log_format, None, "devstack");
    let test_clock = args.test_clock.then(|| TestClock::new(chrono::Utc::now()));
    let clock: SharedClock = match &test_clock {
        Some(clock) => Arc::new(clock.clone()),
        None => Arc::new(SystemClock),
    };

    let mut contract_config = contract_service::Config::dev(
        args.contract_listen,
        format!("sqlite://{}/contract-service.db", args.data_dir),
    );
    contract_config.service.metrics_listen = args.contract_metrics;
    let mut contracts =
        contract_service::Application::build(&contract_config, clock.clone()).await?;
    let mut feedback_config = feedback_service::Config::dev(
        args.feedback_listen,
        format!("sqlite://{}/feedback-service.db", args.data_dir),
        format!("http://{}", contracts.addr()),
    );
    feedback_config.service.metrics_listen = args.feedback_metrics;
    let mut feedback = feedback_service::Application::build(&feedback_config, clock).await?;
    if let Some(clock) = test_clock {
        contracts = contracts.with_clock_control(clock.clone());
        feedback = feedback.with_clock_control(clock);
    }
    print_walkthrough(&contracts, &feedback, args.test_clock)?;

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

fn print_walkthrough(
    contracts: &contract_service::Application,
    feedback: &feedback_service::Application,
    test_clock: bool,
) -> anyhow::Result<()> {
    let (c, f) = (contracts.addr(), feedback.addr());
    let (cm, fm) = (contracts.metrics_addr(), feedback.metrics_addr());
    let hiring = mint_dev(&TokenSpec::service(
        "hiring",
        &["contracts:write", "contracts:read"],
    ))?;
    let billing = mint_dev(&TokenSpec::service("billing", &["payments:write"]))?;
    let ops = mint_dev(&TokenSpec::service(
        "ops",
        &["admin", "events:read", "jss:read", "contracts:read"],
    ))?;
    let client = mint_dev(&TokenSpec::user("client-1"))?;
    let freelancer = mint_dev(&TokenSpec::user("freelancer-1"))?;
    println!(
        r#"
contract-service  grpc {c}  metrics http://{cm}/metrics
feedback-service  grpc {f}  metrics http://{fm}/metrics
SQLite files under ./data, --dev auth (public dev key). Ctrl-C stops both.

Tokens (24 h):
export HIRING={hiring}
export BILLING={billing}
export OPS={ops}
export CLIENT={client}
export FREELANCER={freelancer}

Try:
grpcurl -plaintext {c} list
grpcurl -plaintext -H "authorization: Bearer $HIRING" -d '{{"client_id":"client-1","freelancer_id":"freelancer-1","title":"Landing page","type":"CONTRACT_TYPE_HOURLY","currency_code":"USD","hourly_rate_minor":6000,"weekly_limit_minutes":2400,"start_time":"2026-01-05T00:00:00Z"}}' {c} marketplace.contract.v1.ContractService/CreateContract
grpcurl -plaintext -H "authorization: Bearer $CLIENT" -d '{{}}' {c} marketplace.contract.v1.ContractService/ListContracts
grpcurl -plaintext -H "authorization: Bearer $CLIENT" -d '{{"freelancer_id":"freelancer-1"}}' {f} marketplace.feedback.v1.FeedbackService/ListWorkHistory
grpcurl -plaintext -H "authorization: Bearer $OPS" -d '{{}}' {c} marketplace.contract.v1.ContractService/WatchEvents
curl -s http://{cm}/metrics | grep grpc_server_handled_total
"#
    );
    if test_clock {
        println!(
            r#"Test clock (shared by both services):
grpcurl -plaintext -H "authorization: Bearer $OPS" -d '{{}}' {c} marketplace.testing.v1.TestClockService/GetTime
grpcurl -plaintext -H "authorization: Bearer $OPS" -d '{{"by":"1209600s"}}' {c} marketplace.testing.v1.TestClockService/AdvanceTime
"#
        );
    }
    Ok(())
}
