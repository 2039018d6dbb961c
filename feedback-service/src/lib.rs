//! feedback-service: mid-contract and end-of-contract feedback, checked for
//! eligibility with contract-service over gRPC.
//!
//! This is the skeleton the workspace starts with: it serves health and
//! reflection with the shared conventions; the feedback RPCs are built on it.

use std::net::SocketAddr;

use tokio::net::TcpListener;

/// Command line and environment.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "feedback-service",
    version,
    about = "Mid-contract and end-of-contract feedback over gRPC"
)]
pub struct Config {
    /// Address to serve gRPC on (port 0 picks a free port).
    #[arg(
        long = "listen",
        env = "LISTEN_ADDR",
        default_value = "127.0.0.1:50052"
    )]
    pub listen: SocketAddr,
    /// Where contract-service answers.
    #[arg(
        long,
        env = "CONTRACT_SERVICE_URL",
        default_value = "http://127.0.0.1:50051"
    )]
    pub contract_service_url: String,
    #[command(flatten)]
    pub auth: shared::auth::AuthArgs,
    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = shared::telemetry::LogFormat::Text)]
    pub log_format: shared::telemetry::LogFormat,
}

/// A bound, not yet running feedback service.
pub struct Application {
    listener: TcpListener,
    addr: SocketAddr,
}

impl Application {
    pub async fn build(config: &Config) -> anyhow::Result<Self> {
        config.auth.verifier()?;
        let listener = TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        Ok(Self { listener, addr })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves health and reflection until `shutdown` resolves.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> anyhow::Result<()> {
        let (health, health_service) = tonic_health::server::health_reporter();
        health
            .set_service_status("", tonic_health::ServingStatus::Serving)
            .await;
        let (v1, v1alpha) = shared::server::reflection()?;
        let router = shared::server::builder()
            .add_service(health_service)
            .add_service(v1)
            .add_service(v1alpha);
        tracing::info!(addr = %self.addr, "feedback-service listening");
        shared::server::serve(router, self.listener, shutdown).await?;
        Ok(())
    }
}
