//! The outbox events of this service as a stream (WatchEvents); a write adds
//! its events with `Unit::event`, in the same transaction.

use std::pin::Pin;

use futures::Stream;
use tonic::Status;

use crate::common::require_scope;
use crate::error::{DOMAIN, Error};
use crate::grpc::ContractApi;
use shared::auth::{Caller, scope};
use shared::outbox;
use shared::proto::contract::v1 as pb;

pub(crate) type EventStream =
    Pin<Box<dyn Stream<Item = Result<pb::WatchEventsResponse, Status>> + Send>>;

impl ContractApi {
    pub(crate) fn watch_events(
        &self,
        caller: &Caller,
        req: pb::WatchEventsRequest,
    ) -> Result<EventStream, Error> {
        require_scope(caller, scope::EVENTS_READ)?;
        let stream = outbox::watch_events::<pb::event::Payload>(
            self.db.clone(),
            &self.relay,
            DOMAIN,
            req.after_sequence,
            self.metrics.as_deref(),
            caller.subject(),
        )?;
        Ok(Box::pin(stream))
    }
}
