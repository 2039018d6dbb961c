//! Building and running the service: open and migrate the database, bind the
//! gRPC and metrics listeners (so tests can use port 0 and ask for the
//! ports), serve until told to stop, drain, and stop the background workers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::config::Config;
use crate::grpc::ContractApi;
use crate::store::MIGRATIONS;
use shared::clock::{SharedClock, TestClock};
use shared::db::Db;
use shared::metrics::Metrics;
use shared::outbox::Relay;
use shared::proto::contract::v1::contract_service_server::ContractServiceServer;

/// The name health reports this service under.
pub const SERVICE_NAME: &str = "marketplace.contract.v1.ContractService";

/// A built, bound, not yet running contract service.
pub struct Application {
    listener: TcpListener,
    metrics_listener: TcpListener,
    addr: SocketAddr,
    metrics_addr: SocketAddr,
    db: Db,
    api: ContractApi,
    relay: Relay,
    metrics: Arc<Metrics>,
    verifier: shared::auth::Verifier,
    retention: chrono::Duration,
    clock: SharedClock,
    clock_control: Option<TestClock>,
    nats: Option<shared::nats::RelayConfig>,
    config: Config,
}

impl Application {
    /// Opens the database, applies migrations and binds the listeners.
    pub async fn build(config: &Config, clock: SharedClock) -> anyhow::Result<Self> {
        let verifier = config.service.auth.verifier()?;
        let nats = config.service.nats.relay("contract")?;
        let db = config
            .service
            .db
            .open(&config.service.database_url, &MIGRATIONS)
            .await?;
        let listener = TcpListener::bind(config.service.listen).await?;
        let metrics_listener = TcpListener::bind(config.service.metrics_listen).await?;
        let relay = Relay::new();
        let rules = config.rules.rules();
        let retention = rules.idempotency_retention;
        let metrics = Metrics::new()?;
        let api = ContractApi::new(db.clone(), clock.clone(), rules, relay.clone())
            .with_metrics(metrics.clone());
        Ok(Self {
            addr: listener.local_addr()?,
            metrics_addr: metrics_listener.local_addr()?,
            listener,
            metrics_listener,
            db,
            api,
            relay,
            metrics,
            verifier,
            retention,
            clock,
            clock_control: None,
            nats,
            config: config.clone(),
        })
    }

    /// Also serve the dev-only TestClockService moving `clock` (which should
    /// be the clock this service was built with).
    pub fn with_clock_control(mut self, clock: TestClock) -> Self {
        self.clock_control = Some(clock);
        self
    }

    /// The service itself (tests run its sweep at a chosen instant).
    pub fn api(&self) -> ContractApi {
        self.api.clone()
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where `/metrics` answers.
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics_addr
    }

    /// Serves until `shutdown` resolves, drains, then stops the background workers.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> anyhow::Result<()> {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        let mut workers = vec![
            tokio::spawn(self.relay.clone().run(
                self.db.clone(),
                Duration::from_millis(250),
                stopped(stop_rx.clone()),
            )),
            tokio::spawn(shared::idempotency::purge_hourly(
                self.db.clone(),
                self.clock.clone(),
                self.retention,
                stopped(stop_rx.clone()),
            )),
            tokio::spawn(sample_metrics(
                self.db.clone(),
                self.metrics.clone(),
                stopped(stop_rx.clone()),
            )),
            tokio::spawn(crate::workers::run_dispute_sweeper(
                self.api.clone(),
                Duration::from_millis(self.config.rules.dispute_sweep_interval_ms),
                stopped(stop_rx.clone()),
            )),
        ];
        workers.extend(shared::nats::spawn::<shared::proto::contract::v1::Event>(
            self.nats,
            &self.db,
            &self.relay,
            &self.metrics,
            stopped(stop_rx.clone()),
        )?);

        let max = self.config.service.serve.max_message_bytes;
        let service = ContractServiceServer::new(self.api)
            .max_decoding_message_size(max)
            .max_encoding_message_size(max);
        let mut routes = tonic::service::RoutesBuilder::default();
        routes.add_service(tonic::service::interceptor::InterceptedService::new(
            service,
            self.verifier.interceptor(),
        ));
        let mut services = vec![SERVICE_NAME];
        if let Some(clock) = self.clock_control {
            tracing::warn!("serving TestClockService: time moves on request (dev only)");
            routes.add_service(
                shared::clock::control::TestClockApi::new(clock).service(&self.verifier),
            );
            services.push(shared::proto::testing::v1::test_clock_service_server::SERVICE_NAME);
        }
        tracing::info!(addr = %self.addr, backend = ?self.db.backend(), "contract-service listening");
        let served = shared::server::serve(
            shared::server::Serve {
                args: self.config.service.serve.clone(),
                listener: self.listener,
                metrics_listener: Some(self.metrics_listener),
                metrics: self.metrics,
                routes: routes.routes(),
                services,
                components: Vec::new(),
            },
            shutdown,
        )
        .await;
        let _ = stop_tx.send(true);
        for worker in workers {
            let _ = worker.await;
        }
        self.db.close().await;
        served
    }
}

async fn sample_metrics(db: Db, metrics: Arc<Metrics>, stop: impl Future<Output = ()>) {
    tokio::pin!(stop);
    loop {
        metrics.sample(&db, &[]).await;
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}
