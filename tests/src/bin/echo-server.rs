//! The benchmark baseline: `marketplace.testing.v1.EchoService` behind the
//! same server, layers and JWT check as the real services.
//!
//! ```text
//! echo-server --listen 127.0.0.1:50061 --metrics-listen 127.0.0.1:0
//! ```

use std::net::SocketAddr;

use clap::Parser;
use shared::proto::testing::v1::echo_service_server::EchoServiceServer;

#[derive(Debug, Parser)]
#[command(name = "echo-server", version)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:50061")]
    listen: SocketAddr,
    #[arg(long, default_value = "127.0.0.1:0")]
    metrics_listen: SocketAddr,
    #[command(flatten)]
    serve: shared::server::ServeArgs,
}

/// The services' allocator, so the baseline is served the same way.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _telemetry = shared::telemetry::init(args.serve.log_format, None, "echo-server");
    let verifier = shared::auth::AuthArgs::dev().verifier()?;
    let mut routes = tonic::service::RoutesBuilder::default();
    routes.add_service(tonic::service::interceptor::InterceptedService::new(
        EchoServiceServer::new(shared::clock::echo::EchoApi),
        verifier.interceptor(),
    ));
    shared::server::serve(
        shared::server::Serve {
            args: args.serve,
            listener: tokio::net::TcpListener::bind(args.listen).await?,
            metrics_listener: Some(tokio::net::TcpListener::bind(args.metrics_listen).await?),
            metrics: shared::metrics::Metrics::new()?,
            routes: routes.routes(),
            services: vec!["marketplace.testing.v1.EchoService"],
        },
        shared::server::shutdown_signal(),
    )
    .await
}
