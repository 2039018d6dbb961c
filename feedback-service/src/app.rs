//! Building and running feedback-service: open and migrate its database, set
//! up the observed client of contract-service, bind the gRPC and metrics
//! listeners, serve, drain, and stop the background workers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::api::FeedbackApi;
use crate::config::Config;
use crate::contracts::Contracts;
use crate::store::{self, MIGRATIONS};
use crate::workers;
use shared::auth::{TokenSpec, scope};
use shared::clock::{SharedClock, TestClock};
use shared::db::Db;
use shared::metrics::Metrics;
use shared::outbox::Relay;
use shared::proto::feedback::v1::feedback_service_server::FeedbackServiceServer;

/// The name health reports this service under.
pub const SERVICE_NAME: &str = "marketplace.feedback.v1.FeedbackService";

/// A built, bound, not yet running feedback service.
pub struct Application {
    listener: TcpListener,
    metrics_listener: TcpListener,
    addr: SocketAddr,
    metrics_addr: SocketAddr,
    db: Db,
    api: FeedbackApi,
    relay: Relay,
    metrics: Arc<Metrics>,
    verifier: shared::auth::Verifier,
    clock: SharedClock,
    clock_control: Option<TestClock>,
    nats: Option<shared::nats::RelayConfig>,
    config: Config,
}

impl Application {
    pub async fn build(config: &Config, clock: SharedClock) -> anyhow::Result<Self> {
        let verifier = config.service.auth.verifier()?;
        let nats = config.service.nats.relay("feedback")?;
        let metrics = Metrics::new()?;
        let token = contract_service_token(config)?;
        let contracts = Contracts::connect_lazy(
            &config.contract_service_url,
            &token,
            usize::from(config.contract_service_connections),
            Duration::from_millis(config.contract_service_timeout_ms),
            Duration::from_millis(config.contract_service_connect_timeout_ms),
            metrics.clone(),
            config.contract_service_tls()?,
        )?
        .with_attempts(config.contract_service_attempts);
        let db = config
            .service
            .db
            .open(&config.service.database_url, &MIGRATIONS)
            .await?;
        let listener = TcpListener::bind(config.service.listen).await?;
        let metrics_listener = TcpListener::bind(config.service.metrics_listen).await?;
        let relay = Relay::new();
        let api = FeedbackApi::new(
            db.clone(),
            clock.clone(),
            config.rules.rules(),
            config.rules.cohorts(),
            contracts,
            relay.clone(),
            Arc::new(Notify::new()),
        )
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
            clock,
            clock_control: None,
            nats,
            config: config.clone(),
        })
    }

    /// Also serve the dev-only TestClockService moving `clock`.
    pub fn with_clock_control(mut self, clock: TestClock) -> Self {
        self.clock_control = Some(clock);
        self
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where `/metrics` answers.
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics_addr
    }

    /// Serves until `shutdown` resolves, drains, then stops the workers
    /// (each finishes the step it is in: no bonus or reveal is left half-done).
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> anyhow::Result<()> {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        let gauges = Gauges {
            bonus_pending: self.metrics.gauge(
                "bonus_pending",
                "Bonuses committed with feedback and not yet paid.",
            )?,
            bonus_pending_oldest_age_seconds: self.metrics.gauge(
                "bonus_pending_oldest_age_seconds",
                "Age in seconds of the oldest mid-contract feedback whose bonus is not yet paid (0 when none).",
            )?,
            sweeper_lag_seconds: self.metrics.gauge(
                "sweeper_lag_seconds",
                "Seconds the most overdue item has waited for the sweeper: a request pending past its expiry, or a closed double-blind window not revealed (0 when none).",
            )?,
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
                chrono::Duration::hours(self.config.idempotency_retention_hours.max(24)),
                stopped(stop_rx.clone()),
            )),
            tokio::spawn(sample_metrics(
                self.db.clone(),
                self.metrics.clone(),
                self.clock.clone(),
                gauges,
                stopped(stop_rx.clone()),
            )),
        ];
        workers.extend(shared::nats::spawn::<shared::proto::feedback::v1::Event>(
            self.nats,
            &self.db,
            &self.relay,
            &self.metrics,
            stopped(stop_rx.clone()),
        )?);
        let (events_healthy, events_health) = tokio::sync::watch::channel(false);
        if self.config.follow_contract_events {
            workers.push(tokio::spawn(crate::workers::run_follower(
                self.api.clone(),
                crate::workers::FollowerGauges::register(&self.metrics)?,
                events_healthy,
                Duration::from_millis(self.config.contract_events_retry_max_ms),
                stopped(stop_rx.clone()),
            )));
        }
        if self.config.run_workers {
            workers.push(tokio::spawn(workers::run_bonus_payer(
                self.api.clone(),
                Duration::from_millis(self.config.bonus_retry_max_ms),
                stopped(stop_rx.clone()),
            )));
            workers.push(tokio::spawn(workers::run_sweeper(
                self.api.clone(),
                Duration::from_millis(self.config.sweep_interval_ms),
                stopped(stop_rx.clone()),
            )));
        }
        let max = self.config.service.serve.max_message_bytes;
        let service = FeedbackServiceServer::new(self.api)
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
        tracing::info!(addr = %self.addr, backend = ?self.db.backend(), contract_service = %self.config.contract_service_url, "feedback-service listening");
        let served = shared::server::serve(
            shared::server::Serve {
                args: self.config.service.serve.clone(),
                listener: self.listener,
                metrics_listener: Some(self.metrics_listener),
                metrics: self.metrics,
                routes: routes.routes(),
                services,
                components: vec![(crate::workers::HEALTH_NAME, events_health)],
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

/// The token feedback-service presents to contract-service.
fn contract_service_token(config: &Config) -> anyhow::Result<String> {
    match &config.contract_service_token_file {
        Some(path) => Ok(std::fs::read_to_string(path)?.trim().to_owned()),
        None if config.service.auth.dev => {
            let mut spec = TokenSpec::service(
                "feedback-service",
                &[
                    scope::CONTRACTS_READ,
                    scope::PAYMENTS_WRITE,
                    scope::EVENTS_READ,
                ],
            );
            spec.ttl = chrono::Duration::days(365);
            Ok(shared::auth::mint_dev(&spec)?)
        }
        None => anyhow::bail!(
            "no token for contract-service: pass --contract-service-token-file (or CONTRACT_SERVICE_TOKEN_FILE)"
        ),
    }
}

/// feedback-service's own gauges, sampled from its database.
struct Gauges {
    bonus_pending: prometheus::IntGauge,
    bonus_pending_oldest_age_seconds: prometheus::IntGauge,
    sweeper_lag_seconds: prometheus::IntGauge,
}

async fn sample_metrics(
    db: Db,
    metrics: Arc<Metrics>,
    clock: SharedClock,
    gauges: Gauges,
    stop: impl Future<Output = ()>,
) {
    tokio::pin!(stop);
    let extra = [(gauges.bonus_pending, store::PENDING_BONUSES)];
    let ages = [
        (
            gauges.bonus_pending_oldest_age_seconds,
            store::OLDEST_PENDING_BONUS,
        ),
        (gauges.sweeper_lag_seconds, store::OLDEST_SWEEPER_DUE),
    ];
    loop {
        metrics.sample(&db, &extra).await;
        metrics.sample_ages(&db, clock.now(), &ages).await;
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}
