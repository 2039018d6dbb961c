//! What both services' `Application` does alike: open and migrate the
//! database, bind the gRPC and metrics listeners, run the common workers
//! (event relay, idempotency purge, NATS publisher), serve, drain and stop.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus::IntGauge;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::service::Routes;

use crate::api::Core;
use crate::auth::Verifier;
use crate::clock::{SharedClock, TestClock};
use crate::db::{Db, Migrations};
use crate::metrics::Metrics;
use crate::nats::{RelayConfig, WireEvent};
use crate::outbox::Relay;
use crate::service::ServiceArgs;

/// A service's bound sockets, open database and the parts every service has.
pub struct Host {
    listener: TcpListener,
    metrics_listener: TcpListener,
    addr: SocketAddr,
    metrics_addr: SocketAddr,
    db: Db,
    relay: Relay,
    metrics: Arc<Metrics>,
    verifier: Verifier,
    clock: SharedClock,
    clock_control: Option<TestClock>,
    nats: Option<RelayConfig>,
    args: ServiceArgs,
}

impl Host {
    /// Reads the auth and NATS settings, opens and migrates the database
    /// and binds both listeners. `subject` names the service's NATS subjects.
    pub async fn bind(
        args: &ServiceArgs,
        subject: &str,
        migrations: &Migrations,
        clock: SharedClock,
    ) -> anyhow::Result<Self> {
        let verifier = args.auth.verifier()?;
        let nats = args.nats.relay(subject)?;
        let metrics = Metrics::new()?;
        let db = args.db.open(&args.database_url, migrations).await?;
        let listener = TcpListener::bind(args.listen).await?;
        let metrics_listener = TcpListener::bind(args.metrics_listen).await?;
        Ok(Self {
            addr: listener.local_addr()?,
            metrics_addr: metrics_listener.local_addr()?,
            listener,
            metrics_listener,
            db,
            relay: Relay::new(),
            metrics,
            verifier,
            clock,
            clock_control: None,
            nats,
            args: args.clone(),
        })
    }

    /// What the service's API is built on: database, clock, relay, writer
    /// and the metrics `WatchEvents` reports to.
    pub fn core(&self) -> Core {
        Core::new(self.db.clone(), self.clock.clone(), self.relay.clone())
            .with_metrics(self.metrics.clone())
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Also serve the dev-only TestClockService moving `clock` (which should
    /// be the clock the service was built with).
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

    /// The largest message the service takes or sends.
    pub fn max_message_bytes(&self) -> usize {
        self.args.serve.max_message_bytes
    }

    /// The service's routes: `service`, every call authenticated.
    pub fn routes<S>(&self, service: S) -> Routes
    where
        S: tonic::codegen::Service<
                http::Request<tonic::body::Body>,
                Response = http::Response<tonic::body::Body>,
                Error = std::convert::Infallible,
            > + tonic::server::NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        Routes::new(tonic::service::interceptor::InterceptedService::new(
            service,
            self.verifier.interceptor(),
        ))
    }

    /// Starts the workers every service runs: sequencing the outbox, the
    /// hourly purge of idempotency keys older than `retention`, and (with
    /// `--nats-url`) the JetStream publisher of events `E`, and sampling the
    /// common gauges and the service's own `gauges` every five seconds.
    pub fn workers<E: WireEvent>(
        &self,
        retention: chrono::Duration,
        gauges: Gauges,
    ) -> anyhow::Result<Workers> {
        let mut workers = Workers::new();
        let relay = self.relay.clone();
        let db = self.db.clone();
        workers.spawn(|stop| relay.run(db, Duration::from_millis(250), stop));
        let (db, clock) = (self.db.clone(), self.clock.clone());
        workers.spawn(|stop| crate::idempotency::purge_hourly(db, clock, retention, stop));
        let (db, clock, metrics) = (self.db.clone(), self.clock.clone(), self.metrics.clone());
        workers.spawn(|stop| sample_metrics(db, clock, metrics, gauges, stop));
        let stop = workers.stopped();
        if let Some(publisher) = crate::nats::spawn::<E>(
            self.nats.clone(),
            &self.db,
            &self.relay,
            &self.metrics,
            stop,
        )? {
            workers.running.push(publisher);
        }
        Ok(workers)
    }

    /// Serves `routes` (and TestClockService, if asked for) until `shutdown`
    /// resolves and calls drain, then stops `workers` (each finishes the
    /// step it is in) and closes the database. `services` are the names
    /// in `routes`; `components` the health names that follow a flag.
    pub async fn serve(
        self,
        routes: Routes,
        services: Vec<&'static str>,
        components: Vec<(&'static str, watch::Receiver<bool>)>,
        workers: Workers,
        shutdown: impl Future<Output = ()> + Send,
    ) -> anyhow::Result<()> {
        let mut routes = routes;
        let mut services = services;
        if let Some(clock) = self.clock_control {
            tracing::warn!("serving TestClockService: time moves on request (dev only)");
            routes = routes.add_service(
                crate::clock::control::TestClockApi::new(clock).service(&self.verifier),
            );
            services.push(crate::proto::testing::v1::test_clock_service_server::SERVICE_NAME);
        }
        tracing::info!(addr = %self.addr, backend = ?self.db.backend(), services = ?services, "listening");
        let served = crate::server::serve(
            crate::server::Serve {
                args: self.args.serve.clone(),
                listener: self.listener,
                metrics_listener: Some(self.metrics_listener),
                metrics: self.metrics,
                routes,
                services,
                components,
            },
            shutdown,
        )
        .await;
        workers.stop().await;
        self.db.close().await;
        served
    }
}

/// Background tasks that run until told to stop.
pub struct Workers {
    stop: watch::Sender<bool>,
    running: Vec<JoinHandle<()>>,
}

impl Workers {
    fn new() -> Self {
        Self {
            stop: watch::channel(false).0,
            running: Vec::new(),
        }
    }

    /// Resolves once the workers are told to stop.
    pub fn stopped(&self) -> impl Future<Output = ()> + Send + 'static + use<> {
        let mut stop = self.stop.subscribe();
        async move {
            let _ = stop.wait_for(|stop| *stop).await;
        }
    }

    /// Runs `work(stopped)` as a task; it should return soon after
    /// `stopped` resolves.
    pub fn spawn<W, F>(&mut self, work: W)
    where
        W: FnOnce(std::pin::Pin<Box<dyn Future<Output = ()> + Send>>) -> F,
        F: Future<Output = ()> + Send + 'static,
    {
        let stopped = Box::pin(self.stopped());
        self.running.push(tokio::spawn(work(stopped)));
    }

    /// Tells every worker to stop and waits for each.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for worker in self.running {
            let _ = worker.await;
        }
    }
}

/// A service's own gauges, sampled from its database: each query counts
/// rows, or gives the micros of the oldest one (reported as its age).
#[derive(Default)]
pub struct Gauges {
    pub counts: Vec<(IntGauge, &'static str)>,
    pub ages: Vec<(IntGauge, &'static str)>,
}

/// Samples the pool and outbox gauges and the service's own every five seconds.
async fn sample_metrics(
    db: Db,
    clock: SharedClock,
    metrics: Arc<Metrics>,
    gauges: Gauges,
    stop: impl Future<Output = ()>,
) {
    tokio::pin!(stop);
    loop {
        metrics.sample(&db, &gauges.counts).await;
        if !gauges.ages.is_empty() {
            metrics.sample_ages(&db, clock.now(), &gauges.ages).await;
        }
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}
