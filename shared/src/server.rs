//! The gRPC server both services run: health (`grpc.health.v1`), reflection
//! v1 and v1alpha (grpcurl 1.8 speaks only v1alpha), the observing layer
//! (span, metrics, load shedding), request timeout, HTTP/2 keepalive and a
//! maximum connection age (so Kubernetes spreads long-lived HTTP/2
//! connections), a `/metrics` HTTP port, and a bounded graceful drain.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tonic::service::Routes;
use tonic_health::ServingStatus;

use crate::metrics::Metrics;
use crate::observe::ObserveLayer;
use crate::telemetry::LogFormat;

/// Server settings both services share (flattened into each command line).
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// After SIGTERM: how long in-flight calls may take before they are dropped.
    #[arg(long, env = "DRAIN_TIMEOUT_SECS", default_value_t = 20)]
    pub drain_timeout_secs: u64,
    /// Longest any call may run on the server.
    #[arg(long, env = "REQUEST_TIMEOUT_MS", default_value_t = 10_000)]
    pub request_timeout_ms: u64,
    /// Calls served at once; beyond it calls fail fast with RESOURCE_EXHAUSTED (0 = no limit).
    #[arg(long, env = "MAX_CONCURRENT_REQUESTS", default_value_t = 512)]
    pub max_concurrent_requests: usize,
    /// Largest request or response message, in bytes.
    #[arg(long, env = "MAX_MESSAGE_BYTES", default_value_t = 1 << 20)]
    pub max_message_bytes: usize,
    /// HTTP/2 keepalive ping interval.
    #[arg(long, env = "HTTP2_KEEPALIVE_INTERVAL_SECS", default_value_t = 30)]
    pub http2_keepalive_interval_secs: u64,
    /// How long to wait for a keepalive ping's answer before closing the connection.
    #[arg(long, env = "HTTP2_KEEPALIVE_TIMEOUT_SECS", default_value_t = 10)]
    pub http2_keepalive_timeout_secs: u64,
    /// Connections are closed gracefully after this long, so clients rebalance across pods.
    #[arg(long, env = "MAX_CONNECTION_AGE_SECS", default_value_t = 300)]
    pub max_connection_age_secs: u64,
    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// OTLP/gRPC endpoint for spans (e.g. http://otel-collector:4317); unset exports nothing.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// PEM certificate chain: serve gRPC over TLS (with --tls-key-file).
    #[arg(long, env = "TLS_CERT_FILE", requires = "tls_key_file")]
    pub tls_cert_file: Option<String>,
    /// PEM private key of the TLS certificate.
    #[arg(long, env = "TLS_KEY_FILE", requires = "tls_cert_file")]
    pub tls_key_file: Option<String>,
    /// PEM CA: require client certificates it signed (mutual TLS).
    #[arg(long, env = "TLS_CLIENT_CA_FILE", requires = "tls_cert_file")]
    pub tls_client_ca_file: Option<String>,
}

impl ServeArgs {
    /// The server's TLS settings, if TLS is configured.
    pub fn tls(&self) -> anyhow::Result<Option<tonic::transport::ServerTlsConfig>> {
        let (Some(cert), Some(key)) = (&self.tls_cert_file, &self.tls_key_file) else {
            return Ok(None);
        };
        let read = |path: &str| {
            std::fs::read(path).map_err(|e| anyhow::anyhow!("cannot read {path}: {e}"))
        };
        let mut tls = tonic::transport::ServerTlsConfig::new().identity(
            tonic::transport::Identity::from_pem(read(cert)?, read(key)?),
        );
        if let Some(ca) = &self.tls_client_ca_file {
            tls = tls.client_ca_root(tonic::transport::Certificate::from_pem(read(ca)?));
        }
        Ok(Some(tls))
    }
}

impl Default for ServeArgs {
    fn default() -> Self {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Only {
            #[command(flatten)]
            serve: ServeArgs,
        }
        Only::parse_from(["serve"]).serve
    }
}

/// Server reflection, v1 and v1alpha. It lists `services` (the ones this
/// server runs), health and reflection itself, and describes every proto in
/// this workspace, health, and `google.rpc` error details (so grpcurl can
/// print `ErrorInfo`).
pub fn reflection(
    services: &[&'static str],
) -> Result<
    (
        tonic_reflection::server::v1::ServerReflectionServer<
            impl tonic_reflection::server::v1::ServerReflection,
        >,
        tonic_reflection::server::v1alpha::ServerReflectionServer<
            impl tonic_reflection::server::v1alpha::ServerReflection,
        >,
    ),
    tonic_reflection::server::Error,
> {
    let builder = || {
        let listed = services.iter().copied().chain([
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
        ]);
        listed.fold(
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET),
            |builder, name| builder.with_service_name(name),
        )
    };
    Ok((builder().build_v1()?, builder().build_v1alpha()?))
}

/// Binds `addr` (use port 0 for an ephemeral port).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Everything [`serve`] needs.
pub struct Serve {
    pub args: ServeArgs,
    pub listener: TcpListener,
    /// Where `/metrics` is served, if anywhere.
    pub metrics_listener: Option<TcpListener>,
    pub metrics: Arc<Metrics>,
    /// The service's own routes (authenticated, message sizes set).
    pub routes: Routes,
    /// The fully qualified names of the services in `routes`: what health
    /// reports on (besides "") and reflection lists (grpcurl `list`).
    pub services: Vec<&'static str>,
    /// Health names of parts whose status follows a flag (true: SERVING),
    /// e.g. a background stream. Kubernetes probes do not read them.
    pub components: Vec<(&'static str, tokio::sync::watch::Receiver<bool>)>,
}

/// Serves until `shutdown` resolves. Then health turns NOT_SERVING, new
/// connections are refused, in-flight calls get up to the drain timeout to
/// finish, and the function returns.
pub async fn serve(
    serve: Serve,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), anyhow::Error> {
    let Serve {
        args,
        listener,
        metrics_listener,
        metrics,
        routes,
        services,
        components,
    } = serve;
    let (health, health_service) = tonic_health::server::health_reporter();
    for name in std::iter::once("").chain(services.iter().copied()) {
        health
            .set_service_status(name, ServingStatus::Serving)
            .await;
    }
    for (name, mut up) in components {
        let health = health.clone();
        tokio::spawn(async move {
            loop {
                let status = if *up.borrow_and_update() {
                    ServingStatus::Serving
                } else {
                    ServingStatus::NotServing
                };
                health.set_service_status(name, status).await;
                if up.changed().await.is_err() {
                    health
                        .set_service_status(name, ServingStatus::NotServing)
                        .await;
                    return;
                }
            }
        });
    }
    let (reflection_v1, reflection_v1alpha) = reflection(&services)?;

    let (metrics_stop, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
    let metrics_task = metrics_listener.map(|listener| {
        tracing::info!(addr = ?listener.local_addr().ok(), "metrics on /metrics");
        tokio::spawn(crate::metrics::serve(listener, metrics.clone(), async {
            let _ = metrics_stopped.await;
        }))
    });

    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = args.tls()? {
        tracing::info!(
            mutual = args.tls_client_ca_file.is_some(),
            "serving gRPC over TLS"
        );
        builder = builder.tls_config(tls)?;
    }
    let router = builder
        // The observing layer answers at the limit (DEADLINE_EXCEEDED with a
        // reason, counted); tonic's own timeout, a second later, is a backstop.
        .timeout(Duration::from_millis(args.request_timeout_ms) + Duration::from_secs(1))
        .http2_keepalive_interval(Some(Duration::from_secs(
            args.http2_keepalive_interval_secs,
        )))
        .http2_keepalive_timeout(Some(Duration::from_secs(args.http2_keepalive_timeout_secs)))
        .max_connection_age(Duration::from_secs(args.max_connection_age_secs))
        .layer(
            ObserveLayer::server(metrics, args.max_concurrent_requests)
                .with_timeout(Duration::from_millis(args.request_timeout_ms)),
        )
        .add_routes(routes)
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha);

    // Small responses go out at once: with Nagle's algorithm a reply can
    // wait for the peer's delayed ACK (tens of milliseconds).
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let (drain_tx, drain_rx) = tokio::sync::oneshot::channel::<()>();
    let server = router.serve_with_incoming_shutdown(incoming, async {
        let _ = drain_rx.await;
    });
    tokio::pin!(server);
    let result = tokio::select! {
        result = &mut server => result.map_err(anyhow::Error::from),
        _ = shutdown => {
            tracing::info!(drain_timeout_secs = args.drain_timeout_secs, "shutting down: NOT_SERVING, draining in-flight calls");
            for name in std::iter::once("").chain(services.iter().copied()) {
                health.set_service_status(name, ServingStatus::NotServing).await;
            }
            let _ = drain_tx.send(());
            match tokio::time::timeout(Duration::from_secs(args.drain_timeout_secs), &mut server).await {
                Ok(result) => result.map_err(anyhow::Error::from),
                Err(_) => {
                    tracing::warn!("drain timeout reached; dropping the calls still running");
                    Ok(())
                }
            }
        }
    };
    let _ = metrics_stop.send(());
    if let Some(task) = metrics_task {
        let _ = task.await;
    }
    result
}

/// Resolves on SIGTERM (Kubernetes) or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %err, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("received ctrl-c"),
        _ = term => tracing::info!("received SIGTERM"),
    }
}
