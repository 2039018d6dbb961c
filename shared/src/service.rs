//! What both services' binaries share: the flags every service takes, the
//! `serve | migrate` subcommands, and `main` (telemetry, test clock, signals).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use clap::{Args, FromArgMatches, Subcommand};

use crate::auth::AuthArgs;
use crate::clock::{SharedClock, SystemClock, TestClock};
use crate::db::{DbArgs, Migrations};
use crate::nats::NatsArgs;
use crate::server::ServeArgs;

/// What tells one service's command line from the other's.
#[derive(Debug, Clone, Copy)]
pub struct Identity {
    /// The binary's name, also its service name in traces.
    pub name: &'static str,
    pub about: &'static str,
    /// Defaults of `--listen`, `--database-url` and `--metrics-listen`.
    pub listen: &'static str,
    pub database_url: &'static str,
    pub metrics_listen: &'static str,
    pub migrations: Migrations,
}

/// A service binary: its settings and how it starts.
pub trait Service: Sized + Send + 'static {
    const IDENTITY: Identity;
    /// The whole command line's settings, [`ServiceArgs`] flattened in.
    type Config: Args + FromArgMatches + Clone + Send + Sync + 'static;

    /// The flags every service has, inside its settings.
    fn common(config: &mut Self::Config) -> &mut ServiceArgs;

    /// Opens the database, binds the sockets and builds the service; with
    /// `control`, the service serves TestClockService moving that clock.
    fn start(
        config: &Self::Config,
        clock: SharedClock,
        control: Option<TestClock>,
    ) -> impl Future<Output = anyhow::Result<Self>> + Send;

    /// Serves until SIGTERM or ctrl-c, then drains.
    fn serve(self) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// `impl Service` for a service's `Application`, whose inherent
/// `build(config, clock)`, `with_clock_control(clock)` and
/// `run_until_stopped(shutdown)` it calls, and whose `Config` flattens
/// [`ServiceArgs`] as `service`. Name and about are the crate's (Cargo.toml);
/// the default database is `sqlite://data/<name>.db`.
#[macro_export]
macro_rules! service {
    ($app:ty, $config:ty, listen: $listen:literal, metrics: $metrics:literal, migrations: $migrations:expr $(,)?) => {
        impl $crate::service::Service for $app {
            const IDENTITY: $crate::service::Identity = $crate::service::Identity {
                name: env!("CARGO_PKG_NAME"),
                about: env!("CARGO_PKG_DESCRIPTION"),
                listen: $listen,
                database_url: concat!("sqlite://data/", env!("CARGO_PKG_NAME"), ".db"),
                metrics_listen: $metrics,
                migrations: $migrations,
            };
            type Config = $config;

            fn common(config: &mut $config) -> &mut $crate::service::ServiceArgs {
                &mut config.service
            }

            async fn start(
                config: &$config,
                clock: $crate::clock::SharedClock,
                control: Option<$crate::clock::TestClock>,
            ) -> anyhow::Result<Self> {
                let app = <$app>::build(config, clock).await?;
                Ok(match control {
                    Some(clock) => app.with_clock_control(clock),
                    None => app,
                })
            }

            async fn serve(self) -> anyhow::Result<()> {
                self.run_until_stopped($crate::server::shutdown_signal())
                    .await
            }
        }
    };
}

/// The flags both services take (their defaults come from [`Identity`]).
#[derive(Debug, Clone, clap::Args)]
pub struct ServiceArgs {
    /// Address to serve gRPC on (port 0 picks a free port).
    #[arg(long = "listen", env = "LISTEN_ADDR")]
    pub listen: SocketAddr,
    /// sqlite://PATH (embedded default) or postgres://… (production).
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: String,
    #[command(flatten)]
    pub db: DbArgs,
    /// Address of the Prometheus `/metrics` HTTP endpoint.
    #[arg(long = "metrics-listen", env = "METRICS_LISTEN_ADDR")]
    pub metrics_listen: SocketAddr,
    #[command(flatten)]
    pub auth: AuthArgs,
    #[command(flatten)]
    pub serve: ServeArgs,
    #[command(flatten)]
    pub nats: NatsArgs,
    /// Dev only (needs --dev): serve TestClockService and read time from a clock it can move.
    #[arg(long, env = "TEST_CLOCK", default_value_t = false)]
    pub test_clock: bool,
}

/// `serve` (the default) or `migrate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Subcommand)]
pub enum Command {
    /// Serve gRPC (the default).
    Serve,
    /// Apply database migrations and exit (run as a Kubernetes Job).
    Migrate,
}

/// The service's whole command line, with its defaults filled in.
pub fn command<S: Service>() -> clap::Command {
    let id = S::IDENTITY;
    let cmd = clap::Command::new(id.name)
        .version(env!("CARGO_PKG_VERSION"))
        .subcommand_required(false);
    // After the settings' own help, which would otherwise replace `about`.
    S::Config::augment_args(Command::augment_subcommands(cmd))
        .about(id.about)
        .mut_arg("listen", |a| a.default_value(id.listen).required(false))
        .mut_arg("database_url", |a| {
            a.default_value(id.database_url).required(false)
        })
        .mut_arg("metrics_listen", |a| {
            a.default_value(id.metrics_listen).required(false)
        })
}

/// Parses `args` (the binary's name first) as the service's command line.
pub fn parse<S: Service, I, T>(args: I) -> Result<(Command, S::Config), clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let mut matches = command::<S>().try_get_matches_from(args)?;
    let subcommand = match matches.subcommand_name() {
        Some(_) => Command::from_arg_matches_mut(&mut matches)?,
        None => Command::Serve,
    };
    Ok((subcommand, S::Config::from_arg_matches_mut(&mut matches)?))
}

/// Settings for tests and the dev launcher: every default, the dev key, gRPC
/// on `listen`, metrics on a free port of the same address.
pub fn dev_config<S: Service>(listen: SocketAddr, database_url: impl Into<String>) -> S::Config {
    let mut config = match parse::<S, _, _>([S::IDENTITY.name, "--dev"]) {
        Ok((_, config)) => config,
        // The defaults of a command line the binary itself defines.
        Err(err) => panic!("{} has an invalid default: {err}", S::IDENTITY.name),
    };
    let common = S::common(&mut config);
    common.listen = listen;
    common.metrics_listen = SocketAddr::new(listen.ip(), 0);
    common.database_url = database_url.into();
    common.auth = AuthArgs::dev();
    config
}

/// A service binary's `main`: parse the command line, start telemetry, then
/// migrate or serve.
pub fn main<S: Service>() -> anyhow::Result<()> {
    let (subcommand, config) = match parse::<S, _, _>(std::env::args_os()) {
        Ok(parsed) => parsed,
        Err(err) => err.exit(),
    };
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run::<S>(subcommand, config))
}

async fn run<S: Service>(subcommand: Command, mut config: S::Config) -> anyhow::Result<()> {
    let common = S::common(&mut config).clone();
    let _telemetry = crate::telemetry::init(
        common.serve.log_format,
        common.serve.otlp_endpoint.as_deref(),
        S::IDENTITY.name,
    );
    match subcommand {
        Command::Migrate => {
            common
                .db
                .open(&common.database_url, &S::IDENTITY.migrations)
                .await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Serve if common.test_clock => {
            anyhow::ensure!(
                common.auth.dev,
                "--test-clock is for development only and needs --dev"
            );
            let clock = TestClock::new(chrono::Utc::now());
            let shared: SharedClock = Arc::new(clock.clone());
            S::start(&config, shared, Some(clock)).await?.serve().await
        }
        Command::Serve => {
            S::start(&config, Arc::new(SystemClock), None)
                .await?
                .serve()
                .await
        }
    }
}
