//! The benchmark baselines: `marketplace.testing.v1.EchoService` behind the
//! same server, layers and JWT check as the real services, or (`--bare`)
//! served by tonic alone: no interceptor, no layers, no metrics, the ceiling
//! of a unary call on the machine.
//!
//! ```text
//! echo-server --listen 127.0.0.1:50061 --metrics-listen 127.0.0.1:0 --dev
//! echo-server --listen 127.0.0.1:50062 --bare
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
    /// Serve with tonic alone: no token check, layers or metrics.
    #[arg(long)]
    bare: bool,
    #[command(flatten)]
    serve: shared::server::ServeArgs,
    #[command(flatten)]
    auth: shared::auth::AuthArgs,
}

/// Echo with nothing else: no caller to look up.
struct BareEcho;

#[tonic::async_trait]
impl shared::proto::testing::v1::echo_service_server::EchoService for BareEcho {
    async fn echo(
        &self,
        request: tonic::Request<shared::proto::testing::v1::EchoRequest>,
    ) -> Result<tonic::Response<shared::proto::testing::v1::EchoResponse>, tonic::Status> {
        Ok(tonic::Response::new(
            shared::proto::testing::v1::EchoResponse {
                payload: request.into_inner().payload,
            },
        ))
    }
}

/// The services' allocator, so the baseline is served the same way.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _telemetry = shared::telemetry::init(args.serve.log_format, None, "echo-server");
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    if args.bare {
        let incoming =
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        tonic::transport::Server::builder()
            .add_service(EchoServiceServer::new(BareEcho))
            .serve_with_incoming_shutdown(incoming, shared::server::shutdown_signal())
            .await?;
        return Ok(());
    }
    let verifier = args.auth.verifier()?;
    let mut routes = tonic::service::RoutesBuilder::default();
    routes.add_service(tonic::service::interceptor::InterceptedService::new(
        EchoServiceServer::new(shared::clock::echo::EchoApi),
        verifier.interceptor(),
    ));
    shared::server::serve(
        shared::server::Serve {
            args: args.serve,
            listener,
            metrics_listener: Some(tokio::net::TcpListener::bind(args.metrics_listen).await?),
            metrics: shared::metrics::Metrics::new()?,
            routes: routes.routes(),
            services: vec!["marketplace.testing.v1.EchoService"],
            components: Vec::new(),
        },
        shared::server::shutdown_signal(),
    )
    .await
}
