//! The optional outbox relay to NATS JetStream (`--nats-url`): every
//! sequenced outbox event, in sequence order, published once to the service's
//! own stream.
//!
//! The stream is the relay's cursor. At start and after any failure the relay
//! reads the last message of the stream (its `Marketplace-Sequence` header)
//! and resumes after it, so a crash between the broker's ack and anything the
//! service could record never publishes an event twice, and an event is
//! counted as relayed only once the broker has acknowledged it. Each publish
//! names the stream sequence it expects to follow (`Nats-Expected-Last-Sequence`):
//! when one publish of a pipelined batch fails, the broker refuses every
//! later one, so the stream never holds an event whose predecessor is
//! missing. The event id is the JetStream message id too, so the broker's
//! duplicate window drops a re-publish from a second replica.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, context::PublishAckFuture, stream};
use prost::Message;
use tokio::sync::watch;

use crate::db::Db;
use crate::outbox::{self, StoredEvent};

/// The header giving an event's outbox sequence number.
pub const SEQUENCE_HEADER: &str = "Marketplace-Sequence";
/// The header naming the payload's protobuf message (e.g. `marketplace.contract.v1.Event`).
pub const MESSAGE_HEADER: &str = "Marketplace-Proto-Message";
/// The payload's content type: the binary protobuf encoding of the event.
pub const CONTENT_TYPE: &str = "application/protobuf";

/// Events read from the outbox and published per pipelined batch.
const BATCH: i64 = 256;

/// The NATS settings shared by both services; each service supplies its own
/// stream and subject defaults ([`NatsArgs::relay`]).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct NatsArgs {
    /// NATS server to publish committed events to (JetStream), e.g.
    /// nats://nats:4222. Off when unset: events are served by WatchEvents only.
    #[arg(long, env = "NATS_URL")]
    pub nats_url: Option<String>,
    /// File holding the NATS token, when the server asks for one.
    #[arg(long, env = "NATS_TOKEN_FILE")]
    pub nats_token_file: Option<std::path::PathBuf>,
    /// JetStream stream the events go to (created when missing). Default:
    /// MARKETPLACE_CONTRACT_EVENTS or MARKETPLACE_FEEDBACK_EVENTS.
    #[arg(long, env = "NATS_STREAM")]
    pub nats_stream: Option<String>,
    /// Subject prefix; each event goes to PREFIX.<EventType>. Default:
    /// marketplace.contract.v1.events or marketplace.feedback.v1.events.
    #[arg(long, env = "NATS_SUBJECT_PREFIX")]
    pub nats_subject_prefix: Option<String>,
    /// Replicas of the stream when the relay creates it (3 on a clustered JetStream).
    #[arg(long, env = "NATS_STREAM_REPLICAS", default_value_t = 1)]
    pub nats_stream_replicas: usize,
    /// Seconds the broker remembers message ids to drop re-publishes.
    #[arg(long, env = "NATS_DUPLICATE_WINDOW_SECS", default_value_t = 120)]
    pub nats_duplicate_window_secs: u64,
}

impl NatsArgs {
    /// The relay's settings, when `--nats-url` is given. `service` is the
    /// short name (`contract`, `feedback`) the defaults are made from.
    pub fn relay(&self, service: &str) -> anyhow::Result<Option<RelayConfig>> {
        let Some(url) = self.nats_url.clone() else {
            return Ok(None);
        };
        let token = match &self.nats_token_file {
            Some(path) => Some(std::fs::read_to_string(path)?.trim().to_owned()),
            None => None,
        };
        let stream = self
            .nats_stream
            .clone()
            .unwrap_or_else(|| format!("MARKETPLACE_{}_EVENTS", service.to_uppercase()));
        let subject_prefix = self
            .nats_subject_prefix
            .clone()
            .unwrap_or_else(|| format!("marketplace.{service}.v1.events"));
        if subject_prefix.is_empty()
            || subject_prefix
                .split('.')
                .any(|token| token.is_empty() || token.contains(['*', '>', ' ']))
        {
            anyhow::bail!("--nats-subject-prefix {subject_prefix:?} is not a NATS subject");
        }
        Ok(Some(RelayConfig {
            url,
            token,
            stream,
            subject_prefix,
            replicas: self.nats_stream_replicas.max(1),
            duplicate_window: Duration::from_secs(self.nats_duplicate_window_secs.max(1)),
            retry_max: Duration::from_secs(5),
        }))
    }
}

/// Where and how the relay publishes.
#[derive(Clone)]
pub struct RelayConfig {
    pub url: String,
    pub token: Option<String>,
    pub stream: String,
    pub subject_prefix: String,
    pub replicas: usize,
    pub duplicate_window: Duration,
    /// Longest pause between reconnection attempts.
    pub retry_max: Duration,
}

impl std::fmt::Debug for RelayConfig {
    // The URL may carry credentials and the token is a secret: neither is shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayConfig")
            .field("stream", &self.stream)
            .field("subject_prefix", &self.subject_prefix)
            .field("replicas", &self.replicas)
            .finish_non_exhaustive()
    }
}

impl RelayConfig {
    /// The subject of an event of type `kind` (e.g. `ContractEnded`).
    pub fn subject(&self, kind: &str) -> String {
        format!("{}.{kind}", self.subject_prefix)
    }
}

/// A service's wire `Event`, which carries its own outbox sequence.
pub trait WireEvent: Message + Default + Send + 'static {
    /// Full protobuf name, for [`MESSAGE_HEADER`].
    const NAME: &'static str;
    fn set_sequence(&mut self, sequence: i64);
}

impl WireEvent for crate::proto::contract::v1::Event {
    const NAME: &'static str = "marketplace.contract.v1.Event";
    fn set_sequence(&mut self, sequence: i64) {
        self.sequence = sequence;
    }
}

impl WireEvent for crate::proto::feedback::v1::Event {
    const NAME: &'static str = "marketplace.feedback.v1.Event";
    fn set_sequence(&mut self, sequence: i64) {
        self.sequence = sequence;
    }
}

/// Why a relay pass stopped; the relay reconnects and resumes from the stream.
#[derive(Debug, thiserror::Error)]
enum RelayError {
    #[error("cannot connect to NATS: {0}")]
    Connect(#[from] async_nats::ConnectError),
    #[error("cannot create or open the stream: {0}")]
    Stream(String),
    #[error("cannot read the stream's last event: {0}")]
    Resume(String),
    #[error("cannot read the outbox: {0}")]
    Outbox(#[from] sqlx::Error),
    #[error("undecodable event {event_id}: {source}")]
    Decode {
        event_id: String,
        source: prost::DecodeError,
    },
    #[error("publish refused or unacknowledged: {0}")]
    Publish(#[from] async_nats::jetstream::context::PublishError),
}

/// What the relay reports: `outbox_consumer_sequence{consumer="jetstream:<stream>"}`
/// (the last event the broker acknowledged, so the consumer-lag rules cover
/// it) and `nats_relay_connected` (1 while it has a working connection).
#[derive(Debug, Clone)]
pub struct RelayGauges {
    pub sequence: prometheus::IntGauge,
    pub connected: prometheus::IntGauge,
}

impl RelayGauges {
    pub fn register(
        metrics: &crate::metrics::Metrics,
        config: &RelayConfig,
    ) -> Result<Self, prometheus::Error> {
        Ok(Self {
            sequence: metrics.event_consumer(&format!("jetstream:{}", config.stream)),
            connected: metrics.gauge(
                "nats_relay_connected",
                "1 while the outbox relay to NATS JetStream has a working connection, else 0.",
            )?,
        })
    }
}

/// Starts the relay when `config` is set (`--nats-url`), registering its gauges.
pub fn spawn<E: WireEvent>(
    config: Option<RelayConfig>,
    db: &Db,
    relay: &outbox::Relay,
    metrics: &crate::metrics::Metrics,
    stop: impl Future<Output = ()> + Send + 'static,
) -> Result<Option<tokio::task::JoinHandle<()>>, prometheus::Error> {
    let Some(config) = config else {
        return Ok(None);
    };
    let gauges = RelayGauges::register(metrics, &config)?;
    Ok(Some(tokio::spawn(run::<E>(
        db.clone(),
        config,
        relay.subscribe(),
        gauges,
        stop,
    ))))
}

/// Publishes the outbox to JetStream until `stop` resolves, reconnecting
/// with backoff after any failure. `heads` wakes it when events are sequenced.
pub async fn run<E: WireEvent>(
    db: Db,
    config: RelayConfig,
    mut heads: watch::Receiver<i64>,
    gauges: RelayGauges,
    stop: impl Future<Output = ()>,
) {
    tokio::pin!(stop);
    let config = Arc::new(config);
    let mut backoff = Duration::from_millis(100);
    tracing::info!(stream = %config.stream, subjects = %format!("{}.>", config.subject_prefix), "outbox relay to NATS JetStream starting");
    loop {
        let pass = relay_pass::<E>(&db, &config, &mut heads, &gauges, &mut backoff);
        let failed = tokio::select! {
            _ = &mut stop => break,
            result = pass => result,
        };
        gauges.connected.set(0);
        if let Err(err) = failed {
            tracing::warn!(stream = %config.stream, error = %err, retry_in_ms = backoff.as_millis() as u64, "outbox relay to NATS interrupted");
        }
        tokio::select! {
            _ = &mut stop => break,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(config.retry_max);
    }
    gauges.connected.set(0);
}

/// Connects, resumes after the stream's last event and publishes until
/// something fails.
async fn relay_pass<E: WireEvent>(
    db: &Db,
    config: &RelayConfig,
    heads: &mut watch::Receiver<i64>,
    gauges: &RelayGauges,
    backoff: &mut Duration,
) -> Result<(), RelayError> {
    let mut options = async_nats::ConnectOptions::new()
        .name(format!("outbox-relay:{}", config.stream))
        .connection_timeout(Duration::from_secs(5));
    if let Some(token) = &config.token {
        options = options.token(token.clone());
    }
    let client = options.connect(config.url.as_str()).await?;
    let js = jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(5))
        .build(client.clone());
    let stream = js
        .get_or_create_stream(stream::Config {
            name: config.stream.clone(),
            subjects: vec![format!("{}.>", config.subject_prefix)],
            storage: stream::StorageType::File,
            num_replicas: config.replicas,
            duplicate_window: config.duplicate_window,
            description: Some(format!(
                "Committed outbox events, in sequence order ({})",
                config.subject_prefix
            )),
            ..Default::default()
        })
        .await
        .map_err(|err| RelayError::Stream(err.to_string()))?;
    let (mut cursor, mut stream_last) = resume_point(&stream).await?;
    gauges.connected.set(1);
    gauges.sequence.set(cursor);
    tracing::info!(stream = %config.stream, after_sequence = cursor, "outbox relay to NATS resumed");
    *backoff = Duration::from_millis(100);
    loop {
        // The client reconnects by itself; the gauge follows it while idle too.
        let connected = client.connection_state() == async_nats::connection::State::Connected;
        gauges.connected.set(i64::from(connected));
        let batch = outbox::read_after(db, cursor, BATCH).await?;
        if batch.is_empty() {
            tokio::select! {
                changed = heads.changed() => {
                    if changed.is_err() {
                        // The outbox relay is gone: the service is stopping.
                        std::future::pending::<()>().await;
                    }
                }
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
            continue;
        }
        // Pipelined: every publish is sent before the first ack is awaited.
        let mut pending: Vec<(i64, PublishAckFuture)> = Vec::with_capacity(batch.len());
        for (offset, stored) in batch.into_iter().enumerate() {
            let sequence = stored.sequence;
            let publication = Publication::new::<E>(stored, stream_last + offset as u64)?;
            let subject = config.subject(&publication.kind);
            let ack = js.send_publish(subject, publication.into_publish()).await?;
            pending.push((sequence, ack));
        }
        for (sequence, ack) in pending {
            let ack = ack.await?;
            cursor = sequence;
            stream_last = ack.sequence;
            gauges.sequence.set(cursor);
        }
    }
}

/// The outbox sequence of the stream's last event and the stream sequence of
/// that message ((0, 0) for an empty stream).
async fn resume_point(stream: &stream::Stream) -> Result<(i64, u64), RelayError> {
    let info = stream
        .get_info()
        .await
        .map_err(|err| RelayError::Resume(err.to_string()))?;
    let last = info.state.last_sequence;
    if info.state.messages == 0 {
        return Ok((0, last));
    }
    let message = stream
        .get_raw_message(last)
        .await
        .map_err(|err| RelayError::Resume(err.to_string()))?;
    let sequence = message
        .headers
        .get(SEQUENCE_HEADER)
        .and_then(|value| value.as_str().parse::<i64>().ok())
        .ok_or_else(|| {
            RelayError::Resume(format!(
                "message {last} has no {SEQUENCE_HEADER} header: the stream is not this relay's alone"
            ))
        })?;
    Ok((sequence, last))
}

/// One event as published: subject suffix, headers and payload.
struct Publication {
    kind: String,
    headers: async_nats::HeaderMap,
    payload: Vec<u8>,
}

impl Publication {
    /// `stored` as published, expected to follow stream message `after`.
    fn new<E: WireEvent>(stored: StoredEvent, after: u64) -> Result<Self, RelayError> {
        let mut event =
            E::decode(stored.payload.as_slice()).map_err(|source| RelayError::Decode {
                event_id: stored.event_id.clone(),
                source,
            })?;
        event.set_sequence(stored.sequence);
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(
            async_nats::header::NATS_MESSAGE_ID,
            stored.event_id.as_str(),
        );
        headers.insert(
            async_nats::header::NATS_EXPECTED_LAST_SEQUENCE,
            after.to_string(),
        );
        headers.insert("Content-Type", CONTENT_TYPE);
        headers.insert(MESSAGE_HEADER, E::NAME);
        headers.insert(SEQUENCE_HEADER, stored.sequence.to_string());
        Ok(Self {
            kind: stored.kind,
            headers,
            payload: event.encode_to_vec(),
        })
    }

    fn into_publish(self) -> jetstream::message::PublishMessage {
        jetstream::message::PublishMessage::build()
            .payload(self.payload.into())
            .headers(self.headers)
    }
}

/// A `nats-server -js` on a free port with its own store directory, for tests:
/// it can be SIGKILLed and started again on the same port and data. Found as
/// `$NATS_SERVER`, or `nats-server` on the PATH or in /usr/sbin (Debian's package).
pub struct TestServer {
    binary: std::path::PathBuf,
    port: u16,
    store: std::path::PathBuf,
    child: Option<std::process::Child>,
}

impl TestServer {
    /// Starts one; `None` (after saying so) when nats-server is not installed,
    /// unless `REQUIRE_NATS` is set, which makes that a panic (CI sets it).
    pub async fn start_or_skip() -> Option<Self> {
        let found = std::env::var_os("NATS_SERVER")
            .map(std::path::PathBuf::from)
            .or_else(|| {
                std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
                    .chain(["/usr/sbin".into(), "/usr/bin".into()])
                    .map(|dir| dir.join("nats-server"))
                    .find(|path| path.is_file())
            });
        let Some(binary) = found else {
            assert!(
                std::env::var_os("REQUIRE_NATS").is_none(),
                "REQUIRE_NATS is set but nats-server is not installed"
            );
            eprintln!("skipped: nats-server is not installed (apt-get install nats-server)");
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let store = std::env::temp_dir()
            .join("marketplace-tests")
            .join(format!("nats-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&store).expect("nats store directory");
        let mut server = Self {
            binary,
            port,
            store,
            child: None,
        };
        server.restart().await;
        Some(server)
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again) on the same port and store, and waits for it.
    pub async fn restart(&mut self) {
        self.kill();
        let child = std::process::Command::new(&self.binary)
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(&self.store)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start nats-server");
        self.child = Some(child);
        for _ in 0..200 {
            if async_nats::connect(self.url()).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("nats-server did not come up on port {}", self.port);
    }

    /// SIGKILLs the server (its store stays).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.store);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(url: Option<&str>) -> NatsArgs {
        NatsArgs {
            nats_url: url.map(str::to_owned),
            ..Default::default()
        }
    }

    #[test]
    fn off_without_a_url() {
        assert!(args(None).relay("contract").unwrap().is_none());
    }

    #[test]
    fn defaults_follow_the_service() {
        let config = args(Some("nats://localhost:4222"))
            .relay("feedback")
            .unwrap()
            .unwrap();
        assert_eq!(config.stream, "MARKETPLACE_FEEDBACK_EVENTS");
        assert_eq!(
            config.subject("MidContractFeedbackGiven"),
            "marketplace.feedback.v1.events.MidContractFeedbackGiven"
        );
    }

    #[test]
    fn refuses_a_wildcard_prefix() {
        let mut bad = args(Some("nats://localhost:4222"));
        bad.nats_subject_prefix = Some("marketplace.>".into());
        assert!(bad.relay("contract").is_err());
        bad.nats_subject_prefix = Some("marketplace..events".into());
        assert!(bad.relay("contract").is_err());
    }

    #[test]
    fn debug_hides_the_url_and_token() {
        let mut with_secret = args(Some("nats://user:hunter2@localhost:4222"));
        with_secret.nats_token_file = None;
        let mut config = with_secret.relay("contract").unwrap().unwrap();
        config.token = Some("s3cret".into());
        let shown = format!("{config:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("s3cret"),
            "{shown}"
        );
    }

    #[test]
    fn publication_carries_the_sequence_and_headers() {
        let event = crate::proto::contract::v1::Event {
            event_id: "evt_1".into(),
            contract_id: "ctr_1".into(),
            ..Default::default()
        };
        let stored = StoredEvent {
            sequence: 42,
            event_id: "evt_1".into(),
            kind: "ContractEnded".into(),
            payload: event.encode_to_vec(),
        };
        let publication =
            Publication::new::<crate::proto::contract::v1::Event>(stored, 41).unwrap();
        assert_eq!(publication.kind, "ContractEnded");
        let headers = &publication.headers;
        assert_eq!(
            headers
                .get(async_nats::header::NATS_MESSAGE_ID)
                .unwrap()
                .as_str(),
            "evt_1"
        );
        assert_eq!(
            headers
                .get(async_nats::header::NATS_EXPECTED_LAST_SEQUENCE)
                .unwrap()
                .as_str(),
            "41"
        );
        assert_eq!(headers.get(SEQUENCE_HEADER).unwrap().as_str(), "42");
        assert_eq!(headers.get("Content-Type").unwrap().as_str(), CONTENT_TYPE);
        let decoded =
            crate::proto::contract::v1::Event::decode(publication.payload.as_slice()).unwrap();
        assert_eq!(decoded.sequence, 42);
        assert_eq!(decoded.contract_id, "ctr_1");
    }
}
