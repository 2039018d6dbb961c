//! The outbox events of this service as a stream (WatchEvents); a write adds
//! its events with `Unit::event`, in the same transaction.

use crate::common::require_scope;
use crate::error::{DOMAIN, Error};
use crate::grpc::ContractApi;
use shared::auth::{Caller, scope};
use shared::proto::contract::v1 as pb;

pub(crate) type EventStream = shared::api::EventStream<pb::WatchEventsResponse>;

impl ContractApi {
    pub(crate) fn watch_events(
        &self,
        caller: &Caller,
        req: pb::WatchEventsRequest,
    ) -> Result<EventStream, Error> {
        require_scope(caller, scope::EVENTS_READ)?;
        let stream =
            self.core
                .watch_events::<pb::event::Payload>(DOMAIN, caller, req.after_sequence)?;
        Ok(stream)
    }
}
