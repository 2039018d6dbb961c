//! Building and running feedback-service: open and migrate its database, set
//! up the observed client of contract-service, bind the gRPC and metrics
//! listeners, serve, drain, and stop the background workers.

use std::time::Duration;

use crate::api::FeedbackApi;
use crate::config::Config;
use crate::contracts::Contracts;
use crate::store::{self, MIGRATIONS};
use crate::workers;
use shared::auth::{TokenSpec, scope};
use shared::clock::{SharedClock, TestClock};
use shared::host::{Gauges, Host};
use shared::metrics::Metrics;
use shared::proto::feedback::v1 as pb;

/// The name health reports this service under.
pub const SERVICE_NAME: &str = "marketplace.feedback.v1.FeedbackService";

/// A built, bound, not yet running feedback service.
pub struct Application {
    host: Host,
    api: FeedbackApi,
    config: Config,
}

impl Application {
    pub async fn build(config: &Config, clock: SharedClock) -> anyhow::Result<Self> {
        let host = Host::bind(&config.service, "feedback", &MIGRATIONS, clock).await?;
        let token = contract_service_token(config)?;
        let contracts = Contracts::connect_lazy(
            &config.contract_service_url,
            &token,
            usize::from(config.contract_service_connections),
            Duration::from_millis(config.contract_service_timeout_ms),
            Duration::from_millis(config.contract_service_connect_timeout_ms),
            host.metrics().clone(),
            config.contract_service_tls()?,
        )?
        .with_attempts(config.contract_service_attempts);
        let api = FeedbackApi::new(
            host.core(),
            config.rules.rules(),
            config.rules.cohorts(),
            contracts,
        );
        tracing::info!(contract_service = %config.contract_service_url, "calling contract-service");
        let config = config.clone();
        Ok(Self { host, api, config })
    }

    /// Also serve the dev-only TestClockService moving `clock`.
    pub fn with_clock_control(mut self, clock: TestClock) -> Self {
        self.host = self.host.with_clock_control(clock);
        self
    }

    /// Serves until `shutdown` resolves, drains, then stops the workers
    /// (each finishes the step it is in: no bonus or reveal is left half-done).
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> anyhow::Result<()> {
        let config = &self.config;
        let retention = chrono::Duration::hours(config.idempotency_retention_hours.max(24));
        let mut workers = self
            .host
            .workers::<pb::Event>(retention, gauges(self.host.metrics())?)?;
        let (events_healthy, events_health) = tokio::sync::watch::channel(false);
        if config.follow_contract_events {
            let gauges = workers::FollowerGauges::register(self.host.metrics())?;
            let (api, retry) = (self.api.clone(), config.contract_events_retry_max_ms);
            workers.spawn(|stop| {
                let retry = Duration::from_millis(retry);
                workers::run_follower(api, gauges, events_healthy, retry, stop)
            });
        }
        if config.run_workers {
            let (api, retry) = (self.api.clone(), config.bonus_retry_max_ms);
            workers.spawn(|stop| workers::run_bonus_payer(api, Duration::from_millis(retry), stop));
            let (api, every) = (self.api.clone(), config.sweep_interval_ms);
            workers.spawn(|stop| workers::run_sweeper(api, Duration::from_millis(every), stop));
        }
        let max = self.host.max_message_bytes();
        let service = pb::feedback_service_server::FeedbackServiceServer::new(self.api)
            .max_decoding_message_size(max)
            .max_encoding_message_size(max);
        let routes = self.host.routes(service);
        let components = vec![(workers::HEALTH_NAME, events_health)];
        self.host
            .serve(routes, vec![SERVICE_NAME], components, workers, shutdown)
            .await
    }
}

/// `addr()`, `metrics_addr()`: where the service answers.
impl std::ops::Deref for Application {
    type Target = Host;
    fn deref(&self) -> &Host {
        &self.host
    }
}

/// feedback-service's own gauges, sampled from its database.
fn gauges(metrics: &Metrics) -> Result<Gauges, prometheus::Error> {
    let pending = metrics.gauge(
        "bonus_pending",
        "Bonuses committed with feedback and not yet paid.",
    )?;
    let oldest = metrics.gauge(
        "bonus_pending_oldest_age_seconds",
        "Age in seconds of the oldest mid-contract feedback whose bonus is not yet paid (0 when none).",
    )?;
    let lag = metrics.gauge(
        "sweeper_lag_seconds",
        "Seconds the most overdue item has waited for the sweeper: a request pending past its expiry, or a closed double-blind window not revealed (0 when none).",
    )?;
    Ok(Gauges {
        counts: vec![(pending, store::PENDING_BONUSES)],
        ages: vec![
            (oldest, store::OLDEST_PENDING_BONUS),
            (lag, store::OLDEST_SWEEPER_DUE),
        ],
    })
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
