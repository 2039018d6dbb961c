//! Prometheus metrics, named as go-grpc-prometheus names them so existing
//! dashboards and alerts work: `grpc_server_started_total`,
//! `grpc_server_handled_total{grpc_code}`, `grpc_server_handling_seconds`,
//! the `grpc_client_*` twins for outgoing calls, database pool gauges and
//! outbox lag. Served as text on a separate HTTP port at `/metrics`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use prometheus::{
    HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};
use tokio::net::TcpListener;

use crate::db::Db;

/// Latency buckets (seconds): 0.5 ms to 10 s.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// One side's (server or client) gRPC metrics.
#[derive(Debug, Clone)]
pub struct GrpcMetrics {
    pub started: IntCounterVec,
    pub handled: IntCounterVec,
    pub handling_seconds: HistogramVec,
}

impl GrpcMetrics {
    fn new(registry: &Registry, side: &str) -> Result<Self, prometheus::Error> {
        let labels = ["grpc_type", "grpc_service", "grpc_method"];
        let started = IntCounterVec::new(
            Opts::new(
                format!("grpc_{side}_started_total"),
                format!("Total number of RPCs started on the {side}."),
            ),
            &labels,
        )?;
        let handled = IntCounterVec::new(
            Opts::new(
                format!("grpc_{side}_handled_total"),
                format!(
                    "Total number of RPCs completed on the {side}, regardless of success or failure."
                ),
            ),
            &["grpc_type", "grpc_service", "grpc_method", "grpc_code"],
        )?;
        let handling_seconds = HistogramVec::new(
            HistogramOpts::new(
                format!("grpc_{side}_handling_seconds"),
                format!(
                    "Histogram of response latency (seconds) of gRPC calls handled by the {side}."
                ),
            )
            .buckets(BUCKETS.to_vec()),
            &labels,
        )?;
        registry.register(Box::new(started.clone()))?;
        registry.register(Box::new(handled.clone()))?;
        registry.register(Box::new(handling_seconds.clone()))?;
        Ok(Self {
            started,
            handled,
            handling_seconds,
        })
    }

    /// Counts a call's start.
    pub fn start(&self, kind: &str, service: &str, method: &str) {
        self.started
            .with_label_values(&[kind, service, method])
            .inc();
    }

    /// Counts a call's end with its code and latency.
    pub fn finish(
        &self,
        kind: &str,
        service: &str,
        method: &str,
        code: tonic::Code,
        elapsed: Duration,
    ) {
        self.handled
            .with_label_values(&[kind, service, method, code_name(code)])
            .inc();
        self.handling_seconds
            .with_label_values(&[kind, service, method])
            .observe(elapsed.as_secs_f64());
    }
}

/// A service's metrics registry.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub server: GrpcMetrics,
    pub client: GrpcMetrics,
    /// Connections per pool (`writer`, `reader`) and state (`idle`, `in_use`).
    pub db_connections: IntGaugeVec,
    /// Events committed but not yet sequenced (the relay's backlog).
    pub outbox_unsequenced: IntGauge,
    /// The highest sequence number assigned.
    pub outbox_last_sequence: IntGauge,
}

impl Metrics {
    pub fn new() -> Result<Arc<Self>, prometheus::Error> {
        let registry = Registry::new();
        let db_connections = IntGaugeVec::new(
            Opts::new(
                "db_pool_connections",
                "Database pool connections by pool and state.",
            ),
            &["pool", "state"],
        )?;
        let outbox_unsequenced = IntGauge::new(
            "outbox_unsequenced_events",
            "Outbox events committed but not yet given a sequence number.",
        )?;
        let outbox_last_sequence = IntGauge::new(
            "outbox_last_sequence",
            "Highest outbox sequence number assigned.",
        )?;
        registry.register(Box::new(db_connections.clone()))?;
        registry.register(Box::new(outbox_unsequenced.clone()))?;
        registry.register(Box::new(outbox_last_sequence.clone()))?;
        Ok(Arc::new(Self {
            server: GrpcMetrics::new(&registry, "server")?,
            client: GrpcMetrics::new(&registry, "client")?,
            registry,
            db_connections,
            outbox_unsequenced,
            outbox_last_sequence,
        }))
    }

    /// A gauge of the service's own, registered here.
    pub fn gauge(&self, name: &str, help: &str) -> Result<IntGauge, prometheus::Error> {
        let gauge = IntGauge::new(name, help)?;
        self.registry.register(Box::new(gauge.clone()))?;
        Ok(gauge)
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        use prometheus::Encoder;
        let mut buffer = Vec::new();
        if let Err(err) =
            prometheus::TextEncoder::new().encode(&self.registry.gather(), &mut buffer)
        {
            tracing::warn!(error = %err, "cannot encode metrics");
        }
        String::from_utf8(buffer).unwrap_or_default()
    }

    /// Refreshes the database gauges: pool occupancy, outbox backlog and
    /// head, and each `(gauge, SQL returning one count)` of the service's own.
    pub async fn sample(&self, db: &Db, extra: &[(IntGauge, &'static str)]) {
        for (name, size, idle) in db.occupancy() {
            let size = i64::from(size);
            let idle = i64::try_from(idle).unwrap_or(i64::MAX);
            self.db_connections
                .with_label_values(&[name, "idle"])
                .set(idle);
            self.db_connections
                .with_label_values(&[name, "in_use"])
                .set(size - idle);
        }
        let queries = [
            (
                &self.outbox_unsequenced,
                "SELECT COUNT(*) FROM outbox WHERE seq IS NULL",
            ),
            (
                &self.outbox_last_sequence,
                "SELECT last_seq FROM outbox_head WHERE id = 1",
            ),
        ];
        for (gauge, sql) in queries
            .into_iter()
            .chain(extra.iter().map(|(g, s)| (g, *s)))
        {
            match sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(db.reader())
                .await
            {
                Ok(value) => gauge.set(value),
                Err(err) => tracing::debug!(error = %err, "cannot sample a metric"),
            }
        }
    }
}

/// The canonical upper-case name of a gRPC code, as go-grpc-prometheus labels it.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "Canceled",
        Unknown => "Unknown",
        InvalidArgument => "InvalidArgument",
        DeadlineExceeded => "DeadlineExceeded",
        NotFound => "NotFound",
        AlreadyExists => "AlreadyExists",
        PermissionDenied => "PermissionDenied",
        ResourceExhausted => "ResourceExhausted",
        FailedPrecondition => "FailedPrecondition",
        Aborted => "Aborted",
        OutOfRange => "OutOfRange",
        Unimplemented => "Unimplemented",
        Internal => "Internal",
        Unavailable => "Unavailable",
        DataLoss => "DataLoss",
        Unauthenticated => "Unauthenticated",
    }
}

/// Serves `/metrics` (and `/healthz`) over HTTP/1 on `listener` until `stop` resolves.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, stop: impl Future<Output = ()>) {
    use hyper::service::service_fn;
    tokio::pin!(stop);
    loop {
        let (stream, _) = tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::warn!(error = %err, "metrics listener failed to accept");
                    continue;
                }
            },
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                let metrics = metrics.clone();
                async move {
                    let response = match request.uri().path() {
                        "/metrics" => hyper::Response::builder()
                            .header("content-type", "text/plain; version=0.0.4")
                            .body(Full::new(Bytes::from(metrics.render()))),
                        "/healthz" => {
                            hyper::Response::builder().body(Full::new(Bytes::from_static(b"ok\n")))
                        }
                        _ => hyper::Response::builder()
                            .status(404)
                            .body(Full::new(Bytes::from_static(b"not found\n"))),
                    };
                    Ok::<_, Infallible>(response.unwrap_or_default())
                }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            if let Err(err) = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await
            {
                tracing::debug!(error = %err, "metrics connection ended with an error");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_use_go_grpc_prometheus_names() {
        let metrics = Metrics::new().expect("registry");
        metrics.server.start("unary", "pkg.Svc", "Get");
        metrics.server.finish(
            "unary",
            "pkg.Svc",
            "Get",
            tonic::Code::NotFound,
            Duration::from_millis(3),
        );
        let text = metrics.render();
        assert!(text.contains(r#"grpc_server_started_total{grpc_method="Get",grpc_service="pkg.Svc",grpc_type="unary"} 1"#), "{text}");
        assert!(text.contains(r#"grpc_server_handled_total{grpc_code="NotFound",grpc_method="Get",grpc_service="pkg.Svc",grpc_type="unary"} 1"#), "{text}");
        assert!(
            text.contains("grpc_server_handling_seconds_bucket"),
            "{text}"
        );
    }
}
