//! Building and running the service: open and migrate the database, bind the
//! gRPC and metrics listeners (so tests can use port 0 and ask for the
//! ports), serve until told to stop, drain, and stop the background workers.

use std::time::Duration;

use crate::config::Config;
use crate::grpc::ContractApi;
use crate::store::MIGRATIONS;
use shared::clock::{SharedClock, TestClock};
use shared::host::{Gauges, Host};
use shared::proto::contract::v1 as pb;

/// The name health reports this service under.
pub const SERVICE_NAME: &str = "marketplace.contract.v1.ContractService";

/// A built, bound, not yet running contract service.
pub struct Application {
    host: Host,
    api: ContractApi,
    config: Config,
}

impl Application {
    /// Opens the database, applies migrations and binds the listeners.
    pub async fn build(config: &Config, clock: SharedClock) -> anyhow::Result<Self> {
        let host = Host::bind(&config.service, "contract", &MIGRATIONS, clock).await?;
        let api = ContractApi::new(host.core(), config.rules.rules());
        let config = config.clone();
        Ok(Self { host, api, config })
    }

    /// Also serve the dev-only TestClockService moving `clock` (which should
    /// be the clock this service was built with).
    pub fn with_clock_control(mut self, clock: TestClock) -> Self {
        self.host = self.host.with_clock_control(clock);
        self
    }

    /// The service itself (tests run its sweep at a chosen instant).
    pub fn api(&self) -> ContractApi {
        self.api.clone()
    }

    pub fn port(&self) -> u16 {
        self.addr().port()
    }

    /// Serves until `shutdown` resolves, drains, then stops the background workers.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> anyhow::Result<()> {
        let retention = self.api.rules.idempotency_retention;
        let mut workers = self
            .host
            .workers::<pb::Event>(retention, Gauges::default())?;
        let (api, every) = (
            self.api.clone(),
            self.config.rules.dispute_sweep_interval_ms,
        );
        workers.spawn(|stop| {
            crate::workers::run_dispute_sweeper(api, Duration::from_millis(every), stop)
        });
        let max = self.host.max_message_bytes();
        let service = pb::contract_service_server::ContractServiceServer::new(self.api)
            .max_decoding_message_size(max)
            .max_encoding_message_size(max);
        let routes = self.host.routes(service);
        self.host
            .serve(routes, vec![SERVICE_NAME], Vec::new(), workers, shutdown)
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
