//! The outbox events of this service: `emit` adds one to a write's unit,
//! and `watch_events` streams them to consumers (WatchEvents).

use std::pin::Pin;

use chrono::{DateTime, Utc};
use futures::Stream;
use prost::Message;
use tonic::Status;

use crate::common::require_scope;
use crate::error::{DOMAIN, Error};
use crate::grpc::ContractApi;
use shared::auth::{Caller, scope};
use shared::ids;
use shared::outbox;
use shared::proto::contract::v1 as pb;
use shared::time::to_proto;
use shared::writer::Unit;

/// Adds an event for a state change to the outbox, with the change.
pub(crate) fn emit(
    unit: &mut Unit,
    contract_id: &str,
    now: DateTime<Utc>,
    kind: &'static str,
    payload: pb::event::Payload,
) {
    let event = pb::Event {
        event_id: ids::new_id("evt"),
        sequence: 0,
        contract_id: contract_id.to_owned(),
        occur_time: Some(to_proto(now)),
        payload: Some(payload),
    };
    unit.emit(outbox::NewEvent {
        subject_id: contract_id.to_owned(),
        kind,
        payload: event.encode_to_vec(),
        event_id: event.event_id,
        created_at: now,
    });
}

pub(crate) type EventStream =
    Pin<Box<dyn Stream<Item = Result<pb::WatchEventsResponse, Status>> + Send>>;

impl ContractApi {
    pub(crate) fn watch_events(
        &self,
        caller: &Caller,
        req: pb::WatchEventsRequest,
    ) -> Result<EventStream, Error> {
        require_scope(caller, scope::EVENTS_READ)?;
        let consumer = || {
            self.metrics
                .as_ref()
                .map(|m| m.event_consumer(caller.subject()))
        };
        let stream = outbox::watch_events(
            self.db.clone(),
            &self.relay,
            DOMAIN,
            req.after_sequence,
            consumer,
            |mut event: pb::Event, sequence| {
                event.sequence = sequence;
                pb::WatchEventsResponse { event: Some(event) }
            },
        )
        .map_err(|violation| Error::InvalidArgument(vec![violation]))?;
        Ok(Box::pin(stream))
    }
}
