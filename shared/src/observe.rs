//! A tower layer around every gRPC call, server and client side: one span per
//! RPC (service, method, code, latency) joined to the caller's W3C trace, the
//! go-grpc-prometheus metrics, and on the server a global concurrency limit
//! that sheds load with RESOURCE_EXHAUSTED instead of queueing without bound
//! (health and reflection are never shed, so probes keep answering).

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use futures::future::BoxFuture;
use tokio::sync::Semaphore;
use tonic::body::Body;
use tracing::Instrument;

use crate::metrics::{GrpcMetrics, Metrics};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Which end of the call this layer sits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Server,
    Client,
}

/// The observing layer; build with [`ObserveLayer::server`] or [`ObserveLayer::client`].
#[derive(Debug, Clone)]
pub struct ObserveLayer {
    metrics: Arc<Metrics>,
    side: Side,
    limiter: Option<Arc<Semaphore>>,
    /// The server's own limit on a call (the caller's deadline may be shorter).
    timeout: Option<std::time::Duration>,
}

impl ObserveLayer {
    /// For a server: at most `max_concurrent` calls at once (0 = unlimited).
    pub fn server(metrics: Arc<Metrics>, max_concurrent: usize) -> Self {
        Self {
            metrics,
            side: Side::Server,
            limiter: (max_concurrent > 0).then(|| Arc::new(Semaphore::new(max_concurrent))),
            timeout: None,
        }
    }

    /// A server call that has not answered within `limit` gets
    /// DEADLINE_EXCEEDED with reason REQUEST_TIMEOUT (and is counted so).
    pub fn with_timeout(mut self, limit: std::time::Duration) -> Self {
        self.timeout = Some(limit);
        self
    }

    /// For a client channel: metrics and trace context on outgoing calls.
    pub fn client(metrics: Arc<Metrics>) -> Self {
        Self {
            metrics,
            side: Side::Client,
            limiter: None,
            timeout: None,
        }
    }
}

impl<S> tower::Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Observe {
            inner,
            layer: self.clone(),
        }
    }
}

/// See [`ObserveLayer`].
#[derive(Debug, Clone)]
pub struct Observe<S> {
    inner: S,
    layer: ObserveLayer,
}

/// `/pkg.Service/Method` split in two.
fn rpc_names(path: &str) -> (String, String) {
    let trimmed = path.trim_start_matches('/');
    match trimmed.split_once('/') {
        Some((service, method)) => (service.to_owned(), method.to_owned()),
        None => (String::new(), trimmed.to_owned()),
    }
}

/// go-grpc-prometheus's `grpc_type` of the RPCs served here.
fn rpc_type(method: &str) -> &'static str {
    match method {
        "WatchEvents" | "Watch" => "server_stream",
        "ServerReflectionInfo" => "bidi_stream",
        _ => "unary",
    }
}

/// The gRPC code of a response: trailers-only responses (every unary error)
/// carry it in the headers; otherwise the call succeeded.
fn response_code<B>(response: &http::Response<B>) -> tonic::Code {
    response
        .headers()
        .get("grpc-status")
        .map(|v| tonic::Code::from_bytes(v.as_bytes()))
        .unwrap_or(tonic::Code::Ok)
}

/// A call whose future is dropped before it answered: the caller's deadline
/// passed (tonic answers it) or the caller went away. Counted as
/// DEADLINE_EXCEEDED or CANCELLED, so no call goes missing from the
/// handled counter and the latency histogram.
struct Unfinished {
    metrics: Arc<Metrics>,
    side: Side,
    kind: &'static str,
    service: String,
    method: String,
    started: Instant,
    caller_deadline: Option<std::time::Duration>,
    armed: bool,
}

impl Drop for Unfinished {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let elapsed = self.started.elapsed();
        let code = if self.caller_deadline.is_some_and(|d| elapsed >= d) {
            tonic::Code::DeadlineExceeded
        } else {
            tonic::Code::Cancelled
        };
        let grpc = match self.side {
            Side::Server => &self.metrics.server,
            Side::Client => &self.metrics.client,
        };
        grpc.finish(self.kind, &self.service, &self.method, code, elapsed);
        tracing::info!(
            rpc.service = %self.service,
            rpc.method = %self.method,
            grpc.code = crate::metrics::code_name(code),
            latency_ms = elapsed.as_secs_f64() * 1000.0,
            "rpc abandoned before it answered"
        );
    }
}

/// The answer to a call that ran past the server's limit.
fn timed_out(limit: std::time::Duration) -> http::Response<Body> {
    crate::status::with_reason(
        tonic::Code::DeadlineExceeded,
        "server.marketplace",
        "REQUEST_TIMEOUT",
        format!(
            "the call did not finish within the server's limit of {} ms; retry with backoff",
            limit.as_millis()
        ),
    )
    .into_http()
}

/// tonic answers a message over the size limit with OUT_OF_RANGE; grpc-go
/// and grpc-java answer RESOURCE_EXHAUSTED, which is what callers' retry and
/// alert rules expect, so that is what this server says, with the limit.
fn too_large_is_resource_exhausted(response: http::Response<Body>) -> http::Response<Body> {
    if response_code(&response) != tonic::Code::OutOfRange {
        return response;
    }
    let Some(status) = tonic::Status::from_header_map(response.headers()) else {
        return response;
    };
    let message = status.message();
    if !message.contains("message length too large") {
        return response;
    }
    // "…: found N bytes, the limit is: M bytes"
    let number_after = |marker: &str| {
        message.split_once(marker).and_then(|(_, rest)| {
            rest.trim_start_matches(':')
                .split_whitespace()
                .next()
                .and_then(|n| n.parse::<u64>().ok())
        })
    };
    let text = match (number_after("found"), number_after("limit is")) {
        (Some(found), Some(limit)) => {
            format!("the message is {found} bytes; the limit is {limit} bytes")
        }
        (_, Some(limit)) => format!("the message is over the limit of {limit} bytes"),
        _ => format!("the message is over the size limit ({message})"),
    };
    crate::status::with_reason(
        tonic::Code::ResourceExhausted,
        "server.marketplace",
        "MESSAGE_TOO_LARGE",
        text,
    )
    .into_http()
}

impl<S, ReqBody> tower::Service<http::Request<ReqBody>> for Observe<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    ReqBody: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: http::Request<ReqBody>) -> Self::Future {
        let (service, method) = rpc_names(request.uri().path());
        let kind = rpc_type(&method);
        let side = self.layer.side;
        let metrics = self.layer.metrics.clone();
        let grpc: &GrpcMetrics = match side {
            Side::Server => &metrics.server,
            Side::Client => &metrics.client,
        };
        grpc.start(kind, &service, &method);
        let span = match side {
            Side::Server => {
                tracing::info_span!("rpc", otel.kind = "server", rpc.service = %service, rpc.method = %method, grpc.code = tracing::field::Empty, latency_ms = tracing::field::Empty)
            }
            Side::Client => {
                tracing::info_span!("rpc.client", otel.kind = "client", rpc.service = %service, rpc.method = %method, grpc.code = tracing::field::Empty, latency_ms = tracing::field::Empty)
            }
        };
        match side {
            Side::Server => crate::telemetry::adopt_remote_parent(&span, request.headers()),
            Side::Client => {
                span.in_scope(|| crate::telemetry::inject_current(request.headers_mut()))
            }
        }
        let exempt = service.starts_with("grpc.health.") || service.starts_with("grpc.reflection.");
        let permit = match (&self.layer.limiter, exempt) {
            (Some(limiter), false) => match limiter.clone().try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) => {
                    let status = crate::status::with_reason(
                        tonic::Code::ResourceExhausted,
                        "server.marketplace",
                        "OVERLOADED",
                        "the server is at its concurrency limit; retry with backoff",
                    );
                    grpc.finish(
                        kind,
                        &service,
                        &method,
                        tonic::Code::ResourceExhausted,
                        std::time::Duration::ZERO,
                    );
                    span.in_scope(|| tracing::warn!(rpc.method = %method, "load shed: too many concurrent calls"));
                    return Box::pin(async move { Ok(status.into_http()) });
                }
            },
            _ => None,
        };
        // The clone that was polled ready is the one that must be called.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let limit = self.layer.timeout;
        let unfinished = Unfinished {
            metrics: metrics.clone(),
            side,
            kind,
            service: service.clone(),
            method: method.clone(),
            started: Instant::now(),
            caller_deadline: crate::deadline::in_headers(request.headers()),
            armed: true,
        };
        Box::pin(async move {
            // The whole guard lives in this future (dropped with it).
            let mut unfinished = unfinished;
            let started = Instant::now();
            let call = inner.call(request).instrument(span.clone());
            let result = match limit {
                Some(limit) => match tokio::time::timeout(limit, call).await {
                    Ok(result) => result.map_err(Into::into),
                    Err(_) => {
                        span.in_scope(|| {
                            tracing::warn!(limit_ms = limit.as_millis(), "call timed out")
                        });
                        Ok(timed_out(limit))
                    }
                },
                None => call.await.map_err(Into::into),
            };
            // Answered: counted below, not by the guard.
            unfinished.armed = false;
            let elapsed = started.elapsed();
            let result = match (side, result) {
                (Side::Server, Ok(response)) => Ok(too_large_is_resource_exhausted(response)),
                (_, other) => other,
            };
            let code = match &result {
                Ok(response) => response_code(response),
                Err(err) => tonic::Status::from_error(BoxError::from(err.to_string())).code(),
            };
            let grpc = match side {
                Side::Server => &metrics.server,
                Side::Client => &metrics.client,
            };
            grpc.finish(kind, &service, &method, code, elapsed);
            let latency_ms = elapsed.as_secs_f64() * 1000.0;
            span.record("grpc.code", crate::metrics::code_name(code));
            span.record("latency_ms", latency_ms);
            if side == Side::Server {
                span.in_scope(|| {
                    tracing::info!(
                        grpc.code = crate::metrics::code_name(code),
                        latency_ms,
                        "rpc finished"
                    )
                });
            }
            drop(permit);
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_types_are_named_as_go_grpc_prometheus_does() {
        assert_eq!(
            rpc_names("/marketplace.contract.v1.ContractService/EndContract"),
            (
                "marketplace.contract.v1.ContractService".to_owned(),
                "EndContract".to_owned()
            )
        );
        assert_eq!(rpc_type("WatchEvents"), "server_stream");
        assert_eq!(rpc_type("EndContract"), "unary");
        let response = http::Response::builder()
            .header("grpc-status", "9")
            .body(())
            .expect("response");
        assert_eq!(response_code(&response), tonic::Code::FailedPrecondition);
    }

    /// `service`'s response to `request`.
    async fn answer<S, B>(service: &mut S, request: http::Request<()>) -> http::Response<B>
    where
        S: tower::Service<http::Request<()>, Response = http::Response<B>>,
        S::Error: std::fmt::Debug,
    {
        use tower::ServiceExt;
        let ready = service.ready().await.expect("ready");
        ready.call(request).await.expect("response")
    }

    #[tokio::test]
    async fn calls_beyond_the_limit_are_shed_but_health_is_not() {
        use std::sync::Arc;
        use tokio::sync::Notify;
        use tower::{Layer, Service, ServiceExt};

        let gate = Arc::new(Notify::new());
        let inner = {
            let gate = gate.clone();
            tower::service_fn(move |request: http::Request<()>| {
                let gate = gate.clone();
                async move {
                    if request.uri().path().ends_with("/Slow") {
                        gate.notified().await;
                    }
                    Ok::<_, std::convert::Infallible>(http::Response::new(Body::empty()))
                }
            })
        };
        let metrics = Metrics::new().expect("metrics");
        let mut service = ObserveLayer::server(metrics.clone(), 1).layer(inner);
        let call = |path: &str| {
            http::Request::builder()
                .uri(path)
                .body(())
                .expect("request")
        };

        let slow = service
            .ready()
            .await
            .expect("ready")
            .call(call("/pkg.Svc/Slow"));
        let slow = tokio::spawn(slow);
        tokio::task::yield_now().await;
        let shed = answer(&mut service, call("/pkg.Svc/Fast")).await;
        assert_eq!(response_code(&shed), tonic::Code::ResourceExhausted);
        let health = answer(&mut service, call("/grpc.health.v1.Health/Check")).await;
        assert_eq!(
            response_code(&health),
            tonic::Code::Ok,
            "probes are never shed"
        );

        gate.notify_one();
        let finished = slow.await.expect("join").expect("response");
        assert_eq!(response_code(&finished), tonic::Code::Ok);
        let after = answer(&mut service, call("/pkg.Svc/Fast")).await;
        assert_eq!(
            response_code(&after),
            tonic::Code::Ok,
            "the permit came back"
        );
        let text = metrics.render();
        assert!(
            text.contains(r#"grpc_code="ResourceExhausted",grpc_method="Fast""#),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_call_past_the_limit_gets_deadline_exceeded_and_an_abandoned_one_is_counted() {
        use tower::{Layer, Service, ServiceExt};

        let inner = tower::service_fn(|_request: http::Request<()>| async {
            tokio::time::sleep(std::time::Duration::from_secs(30)).await;
            Ok::<_, std::convert::Infallible>(http::Response::new(Body::empty()))
        });
        let metrics = Metrics::new().expect("metrics");
        let mut service = ObserveLayer::server(metrics.clone(), 0)
            .with_timeout(std::time::Duration::from_millis(50))
            .layer(inner);
        let handled = |code: &str| {
            metrics
                .server
                .handled
                .with_label_values(&["unary", "pkg.Svc", "Slow", code])
                .get()
        };
        let request = |deadline: Option<&str>| {
            let mut builder = http::Request::builder().uri("/pkg.Svc/Slow");
            if let Some(deadline) = deadline {
                builder = builder.header("grpc-timeout", deadline);
            }
            builder.body(()).expect("request")
        };

        let answer = answer(&mut service, request(None)).await;
        assert_eq!(response_code(&answer), tonic::Code::DeadlineExceeded);
        let status = tonic::Status::from_header_map(answer.headers()).expect("status");
        assert!(status.message().contains("limit of 50 ms"), "{status:?}");
        assert_eq!(handled("DeadlineExceeded"), 1);

        // Dropped before answering (tonic's deadline or a caller gone): a
        // caller whose deadline passed counts as DEADLINE_EXCEEDED, one
        // without a deadline as CANCELLED.
        let mut patient = ObserveLayer::server(metrics.clone(), 0).layer(inner);
        // "1m" is one millisecond in grpc-timeout's units.
        for (deadline, code) in [(Some("1m"), "DeadlineExceeded"), (None, "Canceled")] {
            let before = handled(code);
            let call = patient
                .ready()
                .await
                .expect("ready")
                .call(request(deadline));
            let running = tokio::spawn(call);
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            running.abort();
            let _ = running.await;
            assert_eq!(handled(code), before + 1, "{code}");
        }
    }
}
