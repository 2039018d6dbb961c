//! Building and running feedback-service: open and migrate its database,
//! set up the contract-service client, bind, serve, drain.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::config::Config;
use crate::contracts::Contracts;
use crate::grpc::{FeedbackApi, workers};
use crate::store::MIGRATIONS;
use shared::auth::{TokenSpec, scope};
use shared::clock::SharedClock;
use shared::db::{Db, DbOptions};
use shared::outbox::Relay;
use shared::proto::feedback::v1::feedback_service_server::FeedbackServiceServer;

/// A built, bound, not yet running feedback service.
pub struct Application {
    listener: TcpListener,
    addr: SocketAddr,
    db: Db,
    api: FeedbackApi,
    relay: Relay,
    verifier: shared::auth::Verifier,
    config: Config,
}

impl Application {
    pub async fn build(config: &Config, clock: SharedClock) -> anyhow::Result<Self> {
        let verifier = config.auth.verifier()?;
        let token = contract_service_token(config)?;
        let contracts = Contracts::connect_lazy(
            &config.contract_service_url,
            token,
            Duration::from_millis(config.contract_service_timeout_ms),
            Duration::from_millis(config.contract_service_connect_timeout_ms),
        )?;
        let db = open_database(config).await?;
        let listener = TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let relay = Relay::new();
        let api = FeedbackApi::new(
            db.clone(),
            clock,
            config.rules.rules(),
            config.rules.cohorts(),
            contracts,
            relay.clone(),
            Arc::new(Notify::new()),
        );
        Ok(Self {
            listener,
            addr,
            db,
            api,
            relay,
            verifier,
            config: config.clone(),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until `shutdown` resolves, then finishes in-flight calls and stops the workers.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> anyhow::Result<()> {
        let (health, health_service) = tonic_health::server::health_reporter();
        type Svc = FeedbackServiceServer<FeedbackApi>;
        health.set_serving::<Svc>().await;
        health
            .set_service_status("", tonic_health::ServingStatus::Serving)
            .await;
        let (reflection_v1, reflection_v1alpha) = shared::server::reflection()?;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        let mut tasks = vec![tokio::spawn(self.relay.clone().run(
            self.db.clone(),
            Duration::from_millis(250),
            stopped(stop_rx.clone()),
        ))];
        if self.config.run_workers {
            tasks.push(tokio::spawn(workers::run_bonus_payer(
                self.api.clone(),
                Duration::from_millis(self.config.bonus_retry_max_ms),
                stopped(stop_rx.clone()),
            )));
            tasks.push(tokio::spawn(workers::run_sweeper(
                self.api.clone(),
                Duration::from_millis(self.config.sweep_interval_ms),
                stopped(stop_rx.clone()),
            )));
        }
        let service =
            FeedbackServiceServer::with_interceptor(self.api, self.verifier.interceptor());
        let router = shared::server::builder()
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(service);
        tracing::info!(addr = %self.addr, backend = ?self.db.backend(), contract_service = %self.config.contract_service_url, "feedback-service listening");
        let served = shared::server::serve(router, self.listener, async move {
            shutdown.await;
            tracing::info!("shutting down: draining in-flight calls");
            health.set_not_serving::<Svc>().await;
            health
                .set_service_status("", tonic_health::ServingStatus::NotServing)
                .await;
        })
        .await;
        let _ = stop_tx.send(true);
        for task in tasks {
            let _ = task.await;
        }
        self.db.close().await;
        served?;
        Ok(())
    }
}

/// The token feedback-service presents to contract-service.
fn contract_service_token(config: &Config) -> anyhow::Result<String> {
    match &config.contract_service_token_file {
        Some(path) => Ok(std::fs::read_to_string(path)?.trim().to_owned()),
        None if config.auth.dev => {
            let mut spec = TokenSpec::service(
                "feedback-service",
                &[scope::CONTRACTS_READ, scope::PAYMENTS_WRITE],
            );
            spec.ttl = chrono::Duration::days(365);
            Ok(shared::auth::mint_dev(&spec)?)
        }
        None => anyhow::bail!(
            "no token for contract-service: pass --contract-service-token-file (or CONTRACT_SERVICE_TOKEN_FILE)"
        ),
    }
}

/// Opens the configured database and applies migrations.
pub async fn open_database(config: &Config) -> anyhow::Result<Db> {
    let mut options = DbOptions::new(&config.database_url);
    options.max_connections = config.db_max_connections;
    let db = Db::connect(&options).await?;
    db.migrate(&MIGRATIONS).await?;
    Ok(db)
}
