//! Prometheus metrics, named as go-grpc-prometheus names them so existing
//! dashboards and alerts work: `grpc_server_started_total`,
//! `grpc_server_handled_total{grpc_code}`, `grpc_server_handling_seconds`,
//! the `grpc_client_*` twins for outgoing calls, database pool gauges,
//! outbox lag and each `WatchEvents` consumer's position. Served as text on a
//! separate HTTP port at `/metrics`.

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
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

/// Most `consumer` label values of `outbox_consumer_sequence` one process
/// keeps. Consumers are platform services holding a token with scope
/// `events:read` (a handful: search indexing, billing, notifications…), so
/// this is far above what a healthy deployment reaches; it only bounds the
/// series a misconfiguration (a new subject per token) could create.
pub const MAX_EVENT_CONSUMERS: usize = 32;

/// The `consumer` label of every consumer past [`MAX_EVENT_CONSUMERS`]. No
/// token subject can take this value (subjects have no parentheses).
pub const OTHER_EVENT_CONSUMER: &str = "(other)";

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
    /// The last sequence number sent to each `WatchEvents` consumer (by token
    /// subject); kept after the consumer disconnects. Use [`Self::event_consumer`].
    pub outbox_consumer_sequence: IntGaugeVec,
    /// The `consumer` label values given out so far (at most [`MAX_EVENT_CONSUMERS`]).
    event_consumers: Mutex<HashSet<String>>,
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
        let outbox_consumer_sequence = IntGaugeVec::new(
            Opts::new(
                "outbox_consumer_sequence",
                "Last outbox sequence number sent to each WatchEvents consumer (token subject).",
            ),
            &["consumer"],
        )?;
        registry.register(Box::new(db_connections.clone()))?;
        registry.register(Box::new(outbox_unsequenced.clone()))?;
        registry.register(Box::new(outbox_last_sequence.clone()))?;
        registry.register(Box::new(outbox_consumer_sequence.clone()))?;
        Ok(Arc::new(Self {
            server: GrpcMetrics::new(&registry, "server")?,
            client: GrpcMetrics::new(&registry, "client")?,
            registry,
            db_connections,
            outbox_unsequenced,
            outbox_last_sequence,
            outbox_consumer_sequence,
            event_consumers: Mutex::new(HashSet::new()),
        }))
    }

    /// The `outbox_consumer_sequence` gauge of a `WatchEvents` consumer, by
    /// its token subject. The first [`MAX_EVENT_CONSUMERS`] subjects get a
    /// series each; later ones share [`OTHER_EVENT_CONSUMER`]'s.
    pub fn event_consumer(&self, subject: &str) -> IntGauge {
        let label = {
            // A poisoned lock only means a panicking writer; the set is still valid.
            let mut known = self
                .event_consumers
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if known.contains(subject) {
                subject
            } else if known.len() < MAX_EVENT_CONSUMERS {
                known.insert(subject.to_owned());
                subject
            } else {
                tracing::warn!(
                    consumer = subject,
                    max = MAX_EVENT_CONSUMERS,
                    "too many WatchEvents consumers: counted as {OTHER_EVENT_CONSUMER}"
                );
                OTHER_EVENT_CONSUMER
            }
        };
        self.outbox_consumer_sequence.with_label_values(&[label])
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

    /// Refreshes the service's age gauges: each `(gauge, SQL returning the
    /// oldest time still waiting, in microseconds, or NULL)` is set to that
    /// time's age in seconds at `now` (the service's clock, not the
    /// database's), 0 when nothing waits.
    pub async fn sample_ages(
        &self,
        db: &Db,
        now: DateTime<Utc>,
        ages: &[(IntGauge, &'static str)],
    ) {
        for (gauge, sql) in ages {
            match sqlx::query_scalar::<_, Option<i64>>(*sql)
                .fetch_one(db.reader())
                .await
            {
                Ok(oldest) => gauge.set(age_seconds(now, oldest)),
                Err(err) => tracing::debug!(error = %err, "cannot sample a metric"),
            }
        }
    }
}

/// Whole seconds from `oldest` (microseconds since the epoch, as stored) to
/// `now`; 0 when there is nothing (`None`) or it is not in the past.
pub fn age_seconds(now: DateTime<Utc>, oldest: Option<i64>) -> i64 {
    oldest.map_or(0, |t| {
        crate::time::to_micros(now).saturating_sub(t).max(0) / 1_000_000
    })
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

    #[test]
    fn event_consumers_keep_their_sequence_and_their_number_is_bounded() {
        let metrics = Metrics::new().expect("registry");
        // Declared but never sent to: no series yet.
        assert!(!metrics.render().contains("outbox_consumer_sequence{"));
        metrics.event_consumer("search-indexer").set(7);
        // Another stream of the same consumer shares its series.
        assert_eq!(metrics.event_consumer("search-indexer").get(), 7);
        for i in 1..MAX_EVENT_CONSUMERS {
            metrics.event_consumer(&format!("svc-{i}")).set(1);
        }
        metrics.event_consumer("one-too-many").set(3);
        metrics.event_consumer("and-another").set(5);
        let text = metrics.render();
        assert!(
            text.contains(r#"outbox_consumer_sequence{consumer="search-indexer"} 7"#),
            "{text}"
        );
        assert!(
            text.contains(r#"outbox_consumer_sequence{consumer="(other)"} 5"#),
            "{text}"
        );
        assert!(!text.contains("one-too-many"), "{text}");
        assert_eq!(
            text.lines()
                .filter(|l| l.starts_with("outbox_consumer_sequence{"))
                .count(),
            MAX_EVENT_CONSUMERS + 1
        );
        // A known consumer keeps its own series after the cap is reached.
        metrics.event_consumer("svc-1").set(9);
        assert!(
            metrics
                .render()
                .contains(r#"outbox_consumer_sequence{consumer="svc-1"} 9"#)
        );
    }

    #[test]
    fn ages_are_whole_seconds_against_the_given_now_and_never_negative() {
        let now = DateTime::from_timestamp(1_763_700_000, 0).expect("valid");
        let micros = crate::time::to_micros(now);
        assert_eq!(age_seconds(now, None), 0);
        assert_eq!(age_seconds(now, Some(micros)), 0);
        assert_eq!(age_seconds(now, Some(micros - 1_801_500_000)), 1801);
        assert_eq!(age_seconds(now, Some(micros + 5_000_000)), 0);
        assert_eq!(age_seconds(now, Some(i64::MIN)), i64::MAX / 1_000_000);
    }
}
