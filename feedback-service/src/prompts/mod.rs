//! Prompts: when a contract ends, asks both parties for end-of-contract
//! feedback, reminds those who have not left it, and keeps reminder preferences.
//!
//! `workers::follower` feeds [`apply`] contract-service's events; each is
//! applied in one transaction that also moves the cursor forward (only
//! forward: an event already applied changes nothing).

pub mod store;

use chrono::{DateTime, Utc};

use crate::api::FeedbackApi;
use crate::error::Error;
use crate::store::{CLIENT_TO_FREELANCER, FREELANCER_TO_CLIENT};
use shared::auth::{Caller, scope};
use shared::db::Due;
use shared::proto::contract::v1 as cpb;
use shared::proto::feedback::v1 as pb;
use shared::time::to_proto;
use shared::validate::{self, Violations};

/// Applies one contract-service event with the cursor move, in one
/// transaction. Returns false when it had been applied already.
pub async fn apply(api: &FeedbackApi, event: cpb::Event) -> Result<bool, Error> {
    let now = api.now();
    let rules = api.rules().clone();
    let ended = match event.payload {
        Some(cpb::event::Payload::ContractEnded(ended)) => ended.contract,
        _ => None,
    };
    let (sequence, event_id) = (event.sequence, event.event_id);
    api.mutations()
        .background(move |unit| {
            Box::pin(async move {
                if !store::advance_cursor(unit.tx(), sequence, &event_id, now).await? {
                    return Ok::<_, Error>(false);
                }
                let Some(contract) = ended else {
                    return Ok(true);
                };
                let Some(end) = contract.end_time.and_then(|t| shared::time::from_proto(&t)) else {
                    return Ok(true);
                };
                let close = end + rules.end_window;
                for (direction, recipient) in [
                    (CLIENT_TO_FREELANCER, &contract.client_id),
                    (FREELANCER_TO_CLIENT, &contract.freelancer_id),
                ] {
                    let prompt = store::Prompt {
                        contract_id: contract.id.clone(),
                        direction: direction.to_owned(),
                        recipient_id: recipient.clone(),
                        title: contract.title.clone(),
                        window_close_time: close,
                        remind_time: close - rules.reminder_before,
                    };
                    if store::insert_prompt(unit.tx(), &prompt, &event_id, now).await?
                        && now < close
                    {
                        notify(unit, &prompt, pb::NotificationKind::EndFeedbackPrompt, now);
                    }
                }
                Ok(true)
            })
        })
        .await
}

/// Sends every reminder due now, each in its own transaction; returns how
/// many were settled (sent or skipped).
pub async fn send_due_reminders(api: &FeedbackApi) -> Result<usize, Error> {
    let now = api.now();
    let due = store::due_reminders(api.db().reader(), Due::new(now, 500)).await?;
    let count = due.len();
    for prompt in due {
        api.mutations()
            .background(move |unit| {
                Box::pin(async move {
                    // Serialises with a submit of the same contract's feedback.
                    crate::store::lock_contract(unit.tx(), &prompt.contract_id).await?;
                    let submitted =
                        store::has_submitted(unit.tx(), &prompt.contract_id, &prompt.direction)
                            .await?;
                    let wanted = store::preferences(&mut **unit.tx(), &prompt.recipient_id)
                        .await?
                        .is_none_or(|(on, _)| on);
                    let send = !submitted && wanted && now < prompt.window_close_time;
                    if store::settle_reminder(
                        unit.tx(),
                        &prompt.contract_id,
                        &prompt.direction,
                        send,
                        now,
                    )
                    .await?
                        && send
                    {
                        notify(
                            unit,
                            &prompt,
                            pb::NotificationKind::EndFeedbackReminder,
                            now,
                        );
                    }
                    Ok::<_, Error>(())
                })
            })
            .await?;
    }
    Ok(count)
}

/// The prompt's recipient is told by email and in Messages.
fn notify(
    unit: &mut shared::writer::Unit,
    prompt: &store::Prompt,
    kind: pb::NotificationKind,
    now: DateTime<Utc>,
) {
    let other = if prompt.direction == CLIENT_TO_FREELANCER {
        "your freelancer"
    } else {
        "your client"
    };
    let close = prompt.window_close_time.format("%Y-%m-%d %H:%M");
    let text = match kind {
        pb::NotificationKind::EndFeedbackReminder => format!(
            "Reminder: you have until {close} UTC to leave feedback for {other} on \"{}\".",
            prompt.title
        ),
        _ => format!(
            "Your contract \"{}\" has ended. Leave feedback for {other} by {close} UTC; it stays hidden until you have both left yours or the window closes.",
            prompt.title
        ),
    };
    crate::events::notify(
        unit,
        &prompt.contract_id,
        now,
        pb::NotificationRequested {
            recipient_id: prompt.recipient_id.clone(),
            text,
            kind: kind as i32,
            window_close_time: Some(to_proto(prompt.window_close_time)),
            ..Default::default()
        },
    );
}

/// The user whose preferences `caller` may read or change: itself (empty
/// `user_id` or its own), or anyone for a service with scope `admin`.
fn preference_owner(caller: &Caller, user_id: &str) -> Result<String, Error> {
    match caller.user_id() {
        Some(me) if user_id.is_empty() || user_id == me => Ok(me.to_owned()),
        Some(_) => Err(Error::NotYourPreferences),
        None if caller.has_scope(scope::ADMIN) => {
            let mut v = Violations::new();
            let id = v.check("user_id", validate::token(user_id));
            v.finish()?;
            Ok(id)
        }
        None => Err(Error::MissingScope(scope::ADMIN)),
    }
}

fn preferences_pb(
    user_id: String,
    stored: Option<(bool, DateTime<Utc>)>,
) -> pb::NotificationPreferences {
    pb::NotificationPreferences {
        user_id,
        end_feedback_reminders: stored.is_none_or(|(on, _)| on),
        update_time: stored.map(|(_, at)| to_proto(at)),
    }
}

pub async fn get_preferences(
    api: &FeedbackApi,
    caller: Caller,
    req: pb::GetNotificationPreferencesRequest,
) -> Result<pb::GetNotificationPreferencesResponse, Error> {
    let user = preference_owner(&caller, &req.user_id)?;
    let stored = store::preferences(api.db().reader(), &user).await?;
    Ok(pb::GetNotificationPreferencesResponse {
        preferences: Some(preferences_pb(user, stored)),
    })
}

pub async fn update_preferences(
    api: &FeedbackApi,
    caller: Caller,
    req: pb::UpdateNotificationPreferencesRequest,
) -> Result<pb::UpdateNotificationPreferencesResponse, Error> {
    let user = preference_owner(&caller, &req.user_id)?;
    let now = api.now();
    let on = req.end_feedback_reminders;
    let stored_user = user.clone();
    api.mutations()
        .background(move |unit| {
            Box::pin(async move {
                store::set_preferences(unit.tx(), &stored_user, on, now).await?;
                Ok::<_, Error>(())
            })
        })
        .await?;
    Ok(pb::UpdateNotificationPreferencesResponse {
        preferences: Some(preferences_pb(user, Some((on, now)))),
    })
}
