//! Outbox events: `notify` (a NotificationRequested per channel) inside a
//! write, next to `Unit::event`, and the `WatchEvents` stream.

use chrono::{DateTime, Utc};

use crate::api::FeedbackApi;
use crate::error::{DOMAIN, Error};
use shared::auth::{Caller, scope};
use shared::proto::feedback::v1 as pb;
use shared::writer::Unit;

/// Asks for `notification` to go out by email and by in-app message (its
/// `channel` is set for each).
pub(crate) fn notify(
    unit: &mut Unit,
    contract_id: &str,
    now: DateTime<Utc>,
    notification: pb::NotificationRequested,
) {
    for channel in [
        pb::NotificationChannel::Email,
        pb::NotificationChannel::InAppMessage,
    ] {
        unit.event(
            contract_id,
            now,
            "NotificationRequested",
            pb::event::Payload::NotificationRequested(pb::NotificationRequested {
                channel: channel as i32,
                ..notification.clone()
            }),
        );
    }
}

pub(crate) type EventStream = shared::api::EventStream<pb::WatchEventsResponse>;

impl FeedbackApi {
    pub(crate) fn watch_events(
        &self,
        caller: &Caller,
        req: pb::WatchEventsRequest,
    ) -> Result<EventStream, Error> {
        if !caller.has_scope(scope::EVENTS_READ) {
            return Err(Error::MissingScope(scope::EVENTS_READ));
        }
        let stream =
            self.core
                .watch_events::<pb::event::Payload>(DOMAIN, caller, req.after_sequence)?;
        Ok(stream)
    }
}
