//! Building and running the service: open and migrate the database, bind the
//! listener (so tests can use port 0 and ask for the port), serve until told
//! to stop, then drain.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tonic_health::server::HealthReporter;

use crate::config::Config;
use crate::grpc::ContractApi;
use crate::store::MIGRATIONS;
use shared::clock::SharedClock;
use shared::db::{Db, DbOptions};
use shared::outbox::Relay;
use shared::proto::contract::v1::contract_service_server::ContractServiceServer;

/// A built, bound, not yet running contract service.
pub struct Application {
    listener: TcpListener,
    addr: SocketAddr,
    db: Db,
    api: ContractApi,
    relay: Relay,
    verifier: shared::auth::Verifier,
    retention: chrono::Duration,
    clock: SharedClock,
}

impl Application {
    /// Opens the database, applies migrations and binds the listener.
    pub async fn build(config: &Config, clock: SharedClock) -> anyhow::Result<Self> {
        let verifier = config.auth.verifier()?;
        let db = open_database(config).await?;
        let listener = TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let relay = Relay::new();
        let rules = config.rules.rules();
        let retention = rules.idempotency_retention;
        let api = ContractApi::new(db.clone(), clock.clone(), rules, relay.clone());
        Ok(Self {
            listener,
            addr,
            db,
            api,
            relay,
            verifier,
            retention,
            clock,
        })
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until `shutdown` resolves, then finishes in-flight calls and
    /// stops the background workers.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> anyhow::Result<()> {
        let (health, health_service) = tonic_health::server::health_reporter();
        set_serving(&health, true).await;
        let (reflection_v1, reflection_v1alpha) = shared::server::reflection()?;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };

        let relay = tokio::spawn(self.relay.clone().run(
            self.db.clone(),
            Duration::from_millis(250),
            stopped(stop_rx.clone()),
        ));
        let purge = tokio::spawn(purge_idempotency_keys(
            self.db.clone(),
            self.clock.clone(),
            self.retention,
            stopped(stop_rx.clone()),
        ));

        let service =
            ContractServiceServer::with_interceptor(self.api, self.verifier.interceptor());
        let router = shared::server::builder()
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(service);
        tracing::info!(addr = %self.addr, backend = ?self.db.backend(), "contract-service listening");
        let health_on_stop = health.clone();
        let served = shared::server::serve(router, self.listener, async move {
            shutdown.await;
            tracing::info!("shutting down: draining in-flight calls");
            set_serving(&health_on_stop, false).await;
        })
        .await;
        let _ = stop_tx.send(true);
        let _ = relay.await;
        let _ = purge.await;
        self.db.close().await;
        served?;
        Ok(())
    }
}

async fn set_serving(health: &HealthReporter, serving: bool) {
    type Svc = ContractServiceServer<ContractApi>;
    if serving {
        health.set_serving::<Svc>().await;
        health
            .set_service_status("", tonic_health::ServingStatus::Serving)
            .await;
    } else {
        health.set_not_serving::<Svc>().await;
        health
            .set_service_status("", tonic_health::ServingStatus::NotServing)
            .await;
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

async fn purge_idempotency_keys(
    db: Db,
    clock: SharedClock,
    retention: chrono::Duration,
    stop: impl Future<Output = ()>,
) {
    tokio::pin!(stop);
    loop {
        match shared::idempotency::purge(&db, clock.now() - retention).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(purged = n, "forgot old idempotency keys"),
            Err(err) => tracing::warn!(error = %err, "could not purge idempotency keys"),
        }
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
        }
    }
}
