//! Reading either service's outbox through WatchEvents, and checking that it
//! is whole: sequences 1..=N without a gap or a reorder, no event id twice.

use std::collections::HashSet;
use std::time::Duration;

use futures::StreamExt;
use tonic::Streaming;
use tonic::transport::Channel;

use super::as_service;
use crate::proto::contract::v1 as cpb;
use crate::proto::contract::v1::contract_service_client::ContractServiceClient;
use crate::proto::feedback::v1 as fpb;
use crate::proto::feedback::v1::feedback_service_client::FeedbackServiceClient;

/// How long [`EventStream::take`] and [`EventStream::until`] wait for each event.
const EACH_EVENT: Duration = Duration::from_secs(10);

/// An outbox event of either service.
pub trait OutboxEvent: Send + 'static {
    fn sequence(&self) -> i64;
    fn event_id(&self) -> &str;
}

/// A WatchEvents response of either service.
pub trait Watched: Send + 'static {
    type Event: OutboxEvent;
    fn into_event(self) -> Option<Self::Event>;
}

/// A client of a service with an outbox.
pub trait Outbox: Clone + Send {
    type Watched: Watched;
    /// WatchEvents from `after_sequence`, as the service `consumer`
    /// (`events:read`).
    fn watch_as(
        self,
        consumer: &str,
        after_sequence: i64,
    ) -> impl Future<Output = Result<Streaming<Self::Watched>, tonic::Status>> + Send;
}

/// Both services' outboxes have the same shape; one implementation serves both.
macro_rules! outbox_of {
    ($pb:ident, $client:ident) => {
        impl OutboxEvent for $pb::Event {
            fn sequence(&self) -> i64 {
                self.sequence
            }
            fn event_id(&self) -> &str {
                &self.event_id
            }
        }

        impl Watched for $pb::WatchEventsResponse {
            type Event = $pb::Event;
            fn into_event(self) -> Option<$pb::Event> {
                self.event
            }
        }

        impl Outbox for $client<Channel> {
            type Watched = $pb::WatchEventsResponse;
            async fn watch_as(
                mut self,
                consumer: &str,
                after_sequence: i64,
            ) -> Result<Streaming<Self::Watched>, tonic::Status> {
                let request = $pb::WatchEventsRequest { after_sequence };
                let response = self
                    .watch_events(as_service(consumer, &["events:read"], request))
                    .await?;
                Ok(response.into_inner())
            }
        }
    };
}

outbox_of!(cpb, ContractServiceClient);
outbox_of!(fpb, FeedbackServiceClient);

/// Opens the outbox behind `client` from its first event, as an auditing service.
pub async fn watch_outbox<C: Outbox>(client: &C) -> EventStream<C::Watched> {
    EventStream {
        stream: client.clone().watch_as("audit", 0).await.expect("watch"),
    }
}

/// An open WatchEvents stream, read event by event.
pub struct EventStream<W> {
    stream: Streaming<W>,
}

impl<W: Watched> EventStream<W> {
    /// The next event, or `None` when none comes within `within` (or the
    /// stream ends); an error on the stream panics.
    pub async fn next_within(&mut self, within: Duration) -> Option<W::Event> {
        match tokio::time::timeout(within, self.stream.next()).await {
            Ok(Some(next)) => Some(next.expect("event").into_event().expect("event")),
            Ok(None) | Err(_) => None,
        }
    }

    /// The next `count` events (each within 10 s, else a panic).
    pub async fn take(&mut self, count: usize) -> Vec<W::Event> {
        let mut events = Vec::with_capacity(count);
        while events.len() < count {
            events.push(self.arriving().await);
        }
        events
    }

    /// The events up to and including the first that matches `want` (each
    /// within 10 s, else a panic).
    pub async fn until(&mut self, want: impl Fn(&W::Event) -> bool) -> Vec<W::Event> {
        let mut events = Vec::new();
        loop {
            let event = self.arriving().await;
            let done = want(&event);
            events.push(event);
            if done {
                return events;
            }
        }
    }

    /// The events until none comes for `quiet`.
    pub async fn until_quiet(&mut self, quiet: Duration) -> Vec<W::Event> {
        let mut events = Vec::new();
        while let Some(event) = self.next_within(quiet).await {
            events.push(event);
        }
        events
    }

    /// The whole outbox, which must hold exactly `expected` events, whole
    /// (see [`assert_gap_free`]); `context` (the database, say) goes in the
    /// failure messages.
    pub async fn whole(&mut self, expected: usize, context: &str) -> Vec<W::Event> {
        let events = self.take(expected).await;
        assert_gap_free(&events, context);
        let extra = self.next_within(Duration::from_millis(800)).await;
        assert!(
            extra.is_none(),
            "no event beyond the {expected} expected ({context})"
        );
        events
    }

    async fn arriving(&mut self) -> W::Event {
        let next = tokio::time::timeout(EACH_EVENT, self.stream.next())
            .await
            .expect("event within 10 s")
            .expect("stream open");
        next.expect("event").into_event().expect("event")
    }
}

/// Asserts that `events` are sequenced 1..=N without a gap or a reorder,
/// with no event id twice; `context` goes in the failure messages.
pub fn assert_gap_free<E: OutboxEvent>(events: &[E], context: &str) {
    let sequences: Vec<i64> = events.iter().map(OutboxEvent::sequence).collect();
    let contiguous: Vec<i64> = (1..=i64::try_from(events.len()).expect("small")).collect();
    assert_eq!(
        sequences, contiguous,
        "a gap or a reorder in the outbox ({context})"
    );
    let unique: HashSet<&str> = events.iter().map(OutboxEvent::event_id).collect();
    assert_eq!(
        unique.len(),
        events.len(),
        "duplicate event ids ({context})"
    );
}
