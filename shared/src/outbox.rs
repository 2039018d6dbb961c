//! The transactional outbox. A state change and its event commit in one
//! transaction ([`append`]); a relay then gives committed events a gap-free,
//! increasing sequence number in commit order ([`Relay`]), which is the
//! cursor `WatchEvents` resumes from. Sequencing after commit (rather than
//! with an auto-increment id) matters on PostgreSQL, where ids are handed out
//! before commit: a reader following ids could skip an event whose
//! transaction commits late, and a rolled-back id would leave a gap.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::Row;
use tokio::sync::{Notify, watch};

use crate::db::{Db, Tx};

/// An event as stored: its sequence and encoded payload.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub sequence: i64,
    pub event_id: String,
    /// The event type (e.g. `ContractEnded`).
    pub kind: String,
    pub payload: Vec<u8>,
}

/// An event to add to the outbox with the state change that caused it.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub event_id: String,
    pub subject_id: String,
    pub kind: &'static str,
    pub payload: Vec<u8>,
    pub created_at: DateTime<Utc>,
}

impl NewEvent {
    /// The event of a change to `contract_id` at `now`, under a new id.
    pub fn of(
        contract_id: &str,
        now: DateTime<Utc>,
        kind: &'static str,
        payload: impl EventPayload,
    ) -> Self {
        let event_id = crate::ids::new_id("evt");
        let occur_time = crate::time::to_proto(now);
        let event = payload.wrap(event_id.clone(), contract_id.to_owned(), occur_time);
        Self {
            event_id,
            subject_id: contract_id.to_owned(),
            kind,
            payload: prost::Message::encode_to_vec(&event),
            created_at: now,
        }
    }
}

/// A service's event payload (`pb::event::Payload`), which knows the event
/// message (`pb::Event`) that carries it on the wire.
pub trait EventPayload {
    /// The event message of this payload's service.
    type Event: prost::Message + Default + 'static;
    /// The service's WatchEvents response.
    type Response: Send + 'static;
    /// The event carrying this payload; its sequence is set when relayed.
    fn wrap(
        self,
        event_id: String,
        contract_id: String,
        occur_time: prost_types::Timestamp,
    ) -> Self::Event;
    /// The WatchEvents response carrying `event`, as sequence `sequence`.
    fn respond(event: Self::Event, sequence: i64) -> Self::Response;
}

/// Implements [`EventPayload`] for each service's wire contract.
macro_rules! event_payload {
    ($($service:ident),*) => {
        $(impl EventPayload for crate::proto::$service::v1::event::Payload {
            type Event = crate::proto::$service::v1::Event;
            type Response = crate::proto::$service::v1::WatchEventsResponse;
            fn wrap(self, event_id: String, contract_id: String, occur_time: prost_types::Timestamp) -> Self::Event {
                Self::Event { event_id, sequence: 0, contract_id, occur_time: Some(occur_time), payload: Some(self) }
            }
            fn respond(mut event: Self::Event, sequence: i64) -> Self::Response {
                event.sequence = sequence;
                Self::Response { event: Some(event) }
            }
        })*
    };
}

event_payload!(contract, feedback);

/// Adds the events of a write batch, in order, with as few statements as
/// the engines' parameter limits allow; the relay sequences them.
pub async fn append_many(tx: &mut Tx, events: &[NewEvent]) -> Result<(), sqlx::Error> {
    insert_rows(tx, events, None).await
}

/// Adds a write batch's events with their sequence numbers assigned at once,
/// for a database with a single writer (SQLite), where commit order is the
/// order batches run in: the relay then has nothing left to sequence.
/// Returns the new head sequence.
pub async fn append_sequenced(tx: &mut Tx, events: &[NewEvent]) -> Result<i64, sqlx::Error> {
    let count = i64::try_from(events.len()).unwrap_or(i64::MAX);
    let head: i64 = sqlx::query_scalar(
        "UPDATE outbox_head SET last_seq = last_seq + $1 WHERE id = 1 RETURNING last_seq",
    )
    .bind(count)
    .fetch_one(&mut **tx)
    .await?;
    insert_rows(tx, events, Some(head - count + 1)).await?;
    Ok(head)
}

/// Multi-row INSERTs of `events`, numbered from `first_seq` when given.
async fn insert_rows(
    tx: &mut Tx,
    events: &[NewEvent],
    first_seq: Option<i64>,
) -> Result<(), sqlx::Error> {
    let (columns, seq_column) = match first_seq {
        Some(_) => (6, ", seq"),
        None => (5, ""),
    };
    let mut next = first_seq.unwrap_or_default();
    for chunk in events.chunks(100) {
        let sql = format!(
            "INSERT INTO outbox (event_id, subject_id, kind, payload, created_at{seq_column}) VALUES {}",
            crate::db::placeholder_rows(chunk.len(), columns)
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for event in chunk {
            query = query
                .bind(event.event_id.clone())
                .bind(event.subject_id.clone())
                .bind(event.kind)
                .bind(event.payload.clone())
                .bind(crate::time::to_micros(event.created_at));
            if first_seq.is_some() {
                query = query.bind(next);
                next += 1;
            }
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Sequenced events after `after`, oldest first.
pub async fn read_after(db: &Db, after: i64, limit: i64) -> Result<Vec<StoredEvent>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT seq, event_id, kind, payload FROM outbox WHERE seq > $1 ORDER BY seq LIMIT $2",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(db.reader())
    .await?;
    rows.iter()
        .map(|row| {
            Ok(StoredEvent {
                sequence: row.try_get("seq")?,
                event_id: row.try_get("event_id")?,
                kind: row.try_get("kind")?,
                payload: row.try_get("payload")?,
            })
        })
        .collect()
}

/// Gives committed, unsequenced events their sequence numbers. Returns the
/// highest sequence now assigned.
pub async fn sequence_pending(db: &Db) -> Result<i64, sqlx::Error> {
    let mut tx = db.begin().await?;
    // Locks the head row: relays of several replicas take turns.
    let last: i64 = sqlx::query_scalar(
        "UPDATE outbox_head SET last_seq = last_seq WHERE id = 1 RETURNING last_seq",
    )
    .fetch_one(&mut *tx)
    .await?;
    let assigned = sqlx::query(
        "UPDATE outbox SET seq = numbered.seq \
         FROM (SELECT id, $1 + ROW_NUMBER() OVER (ORDER BY id) AS seq \
               FROM outbox WHERE seq IS NULL ORDER BY id LIMIT 1000) AS numbered \
         WHERE outbox.id = numbered.id",
    )
    .bind(last)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if assigned == 0 {
        tx.rollback().await?;
        return Ok(last);
    }
    let head = last + assigned as i64;
    sqlx::query("UPDATE outbox_head SET last_seq = $1 WHERE id = 1")
        .bind(head)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(head)
}

/// How long the relay waits after a poke before sequencing.
const COALESCE: Duration = Duration::from_millis(2);

/// Runs the sequencing loop and tells watchers about new events.
#[derive(Debug, Clone)]
pub struct Relay {
    wake: Arc<Notify>,
    head: watch::Sender<i64>,
}

impl Default for Relay {
    fn default() -> Self {
        Self::new()
    }
}

impl Relay {
    pub fn new() -> Self {
        Self {
            wake: Arc::new(Notify::new()),
            head: watch::Sender::new(0),
        }
    }

    /// Call after committing a transaction that appended events.
    pub fn poke(&self) {
        self.wake.notify_one();
    }

    /// Tells watchers that events up to `head` are sequenced and committed
    /// (by a writer that sequences its own events).
    pub fn advance(&self, head: i64) {
        self.head.send_if_modified(|h| {
            let newer = head > *h;
            if newer {
                *h = head;
            }
            newer
        });
    }

    /// A receiver that changes whenever new events are sequenced.
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.head.subscribe()
    }

    /// Sequences events until `stop` resolves: at once when poked, and every
    /// `interval` anyway (events committed by other replicas).
    pub async fn run(self, db: Db, interval: Duration, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            match sequence_pending(&db).await {
                Ok(head) => {
                    self.head.send_if_modified(|h| {
                        let changed = *h != head;
                        *h = head;
                        changed
                    });
                }
                Err(err) => tracing::warn!(error = %err, "outbox relay could not sequence events"),
            }
            tokio::select! {
                _ = &mut stop => break,
                // A short pause lets one pass sequence the events of every
                // commit in that moment, rather than one pass per commit
                // competing with the writers.
                _ = self.wake.notified() => tokio::time::sleep(COALESCE).await,
                _ = tokio::time::sleep(interval) => {}
            }
        }
        // One last pass so events committed during shutdown are sequenced.
        if let Err(err) = sequence_pending(&db).await {
            tracing::warn!(error = %err, "outbox relay could not sequence events at shutdown");
        }
    }
}

/// An outbox payload that is not the service's event message.
#[derive(Debug, thiserror::Error)]
#[error("undecodable event {event_id}")]
pub struct UndecodableEvent {
    pub event_id: String,
    #[source]
    pub source: prost::DecodeError,
}

/// WatchEvents as both services serve it: `after_sequence` must not be
/// negative (else INVALID_ARGUMENT naming it, nothing streamed and no
/// consumer gauge made); then every event after it, decoded as the service's
/// event message, in its service's response (an undecodable payload ends the
/// stream with INTERNAL). `metrics` reports what `consumer` was sent.
pub fn watch_events<P: EventPayload>(
    db: Db,
    relay: &Relay,
    domain: crate::status::Domain,
    after_sequence: i64,
    metrics: Option<&crate::metrics::Metrics>,
    consumer: &str,
) -> Result<
    impl futures::Stream<Item = Result<P::Response, tonic::Status>> + Send + 'static,
    crate::status::Common,
> {
    if after_sequence < 0 {
        let violation =
            crate::status::FieldViolation::new("after_sequence", "must not be negative");
        return Err(crate::status::Common::InvalidArgument(vec![violation]));
    }
    let gauge = metrics.map(|m| m.event_consumer(consumer));
    Ok(watch(db, relay, after_sequence, gauge, move |stored| {
        let event =
            <P::Event as prost::Message>::decode(stored.payload.as_slice()).map_err(|source| {
                let err = UndecodableEvent {
                    event_id: stored.event_id,
                    source,
                };
                crate::status::internal(domain, &err)
            })?;
        Ok(P::respond(event, stored.sequence))
    }))
}

/// Streams sequenced events after `after` to a `WatchEvents` caller until it
/// hangs up, waking when the relay sequences new events (and polling, for
/// other replicas'). `to_message` turns a stored event into the wire message.
/// `consumer`, when given, is set to each event's sequence as the stream hands
/// the event to the transport (`outbox_consumer_sequence`).
pub fn watch<T, F>(
    db: Db,
    relay: &Relay,
    after: i64,
    consumer: Option<prometheus::IntGauge>,
    mut to_message: F,
) -> impl futures::Stream<Item = Result<T, tonic::Status>> + Send + 'static
where
    T: Send + 'static,
    F: FnMut(StoredEvent) -> Result<T, tonic::Status> + Send + 'static,
{
    use futures::StreamExt;
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let mut heads = relay.subscribe();
    let mut cursor = after;
    tokio::spawn(async move {
        loop {
            let batch = match read_after(&db, cursor, 100).await {
                Ok(batch) => batch,
                Err(err) => {
                    tracing::warn!(error = %err, "cannot read the outbox");
                    let _ = tx
                        .send((
                            None,
                            Err(tonic::Status::unavailable(
                                "cannot read events; resume from the last sequence",
                            )),
                        ))
                        .await;
                    return;
                }
            };
            let empty = batch.is_empty();
            for stored in batch {
                cursor = stored.sequence;
                let message = to_message(stored);
                let failed = message.is_err();
                if tx.send((Some(cursor), message)).await.is_err() || failed {
                    return;
                }
            }
            if empty {
                tokio::select! {
                    _ = tx.closed() => return,
                    _ = heads.changed() => {}
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
        }
    });
    // Set as tonic takes the event to send it (not as it is queued here), so
    // a consumer that stops reading shows where it stopped.
    tokio_stream::wrappers::ReceiverStream::new(rx).map(move |(sequence, message)| {
        if let (Some(gauge), Some(sequence), Ok(_)) = (&consumer, sequence, &message) {
            gauge.set(sequence);
        }
        message
    })
}
