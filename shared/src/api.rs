//! What both services' APIs hold and do alike: the database, the clock, the
//! event relay, the writer, the metrics, and the `WatchEvents` stream over them.

use std::pin::Pin;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::Stream;
use tonic::Status;

use crate::auth::Caller;
use crate::clock::SharedClock;
use crate::db::Db;
use crate::metrics::Metrics;
use crate::outbox::{EventPayload, Relay};
use crate::status::{Common, Domain};
use crate::writer::Mutations;

/// A service's `WatchEvents` stream of responses `R`.
pub type EventStream<R> = Pin<Box<dyn Stream<Item = Result<R, Status>> + Send>>;

/// The state every RPC of a service reads or writes through.
#[derive(Debug, Clone)]
pub struct Core {
    pub db: Db,
    pub clock: SharedClock,
    pub relay: Relay,
    /// Group commit: every mutation goes through it.
    pub mutations: Mutations,
    /// Where `WatchEvents` reports each consumer's position, once set.
    pub metrics: Option<Arc<Metrics>>,
}

impl Core {
    pub fn new(db: Db, clock: SharedClock, relay: Relay) -> Self {
        Self {
            mutations: Mutations::new(db.clone(), clock.clone(), relay.clone()),
            db,
            clock,
            relay,
            metrics: None,
        }
    }

    /// Reports what `WatchEvents` sends each consumer in `metrics`
    /// (`outbox_consumer_sequence`).
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// The service's events after `after_sequence`, then each new one as it
    /// is sequenced, for `caller` (whose scope the service has checked).
    pub fn watch_events<P: EventPayload>(
        &self,
        domain: Domain,
        caller: &Caller,
        after_sequence: i64,
    ) -> Result<EventStream<P::Response>, Common> {
        let stream = crate::outbox::watch_events::<P>(
            self.db.clone(),
            &self.relay,
            domain,
            after_sequence,
            self.metrics.as_deref(),
            caller.subject(),
        )?;
        Ok(Box::pin(stream))
    }
}
