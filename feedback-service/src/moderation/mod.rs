//! Moderation: support staff (scope `admin`, never a user token) hide a
//! piece of public feedback with a reason and restore it; every action is in
//! an audit trail; readers see hidden items as removed by support.
//!
//! Hidden items stay stored: work history and the parties' views show them
//! as `removed_by_support` without their text or scores, Job Success inputs
//! leave them out while hidden, and the author is told why (email and
//! in-app message).

pub mod store;

use chrono::{DateTime, Utc};

use crate::api::FeedbackApi;
use crate::common::{next_token, page_size, page_token};
use crate::error::Error;
use shared::auth::{Caller, scope};
use shared::ids;
use shared::proto::feedback::v1 as pb;
use shared::time::to_proto;
use shared::validate::{self, Violations};
use shared::writer::Call;

const MAX_NOTE_CHARS: usize = 1_000;

/// The kind of item an id names, by its prefix.
fn kind_of(item_id: &str) -> Result<&'static str, String> {
    for (prefix, kind) in [
        ("mfb", "MID_CONTRACT"),
        ("efb", "END_CONTRACT"),
        ("rpl", "REPLY"),
    ] {
        if ids::is_id(prefix, item_id) {
            return Ok(kind);
        }
    }
    if item_id.is_empty() {
        Err("is required".into())
    } else {
        Err("must be a mid-contract feedback (mfb_), end-of-contract feedback (efb_) or reply (rpl_) id".into())
    }
}

fn require_support(caller: &Caller) -> Result<(), Error> {
    // A user token never carries scopes, so this also shuts users out.
    if caller.user_id().is_none() && caller.has_scope(scope::ADMIN) {
        Ok(())
    } else {
        Err(Error::MissingScope(scope::ADMIN))
    }
}

fn reason_name(reason: pb::ModerationReason) -> &'static str {
    match reason {
        pb::ModerationReason::PersonalData => "PERSONAL_DATA",
        pb::ModerationReason::Abuse => "ABUSE",
        pb::ModerationReason::OffPlatformPayment => "OFF_PLATFORM_PAYMENT",
        pb::ModerationReason::Other => "OTHER",
        pb::ModerationReason::Unspecified => "UNSPECIFIED",
    }
}

fn reason_of(name: Option<&str>) -> pb::ModerationReason {
    match name {
        Some("PERSONAL_DATA") => pb::ModerationReason::PersonalData,
        Some("ABUSE") => pb::ModerationReason::Abuse,
        Some("OFF_PLATFORM_PAYMENT") => pb::ModerationReason::OffPlatformPayment,
        Some("OTHER") => pb::ModerationReason::Other,
        _ => pb::ModerationReason::Unspecified,
    }
}

/// What the author is told: why, in words.
fn reason_text(reason: pb::ModerationReason) -> &'static str {
    match reason {
        pb::ModerationReason::PersonalData => "it contained personal data",
        pb::ModerationReason::Abuse => "it contained abusive language",
        pb::ModerationReason::OffPlatformPayment => "it mentioned payment outside the platform",
        _ => "it broke the feedback guidelines",
    }
}

fn action_pb(a: &store::Action) -> pb::ModerationAction {
    pb::ModerationAction {
        id: a.id.clone(),
        r#type: if a.action == "HIDE" {
            pb::ModerationActionType::Hide as i32
        } else {
            pb::ModerationActionType::Restore as i32
        },
        item_id: a.item_id.clone(),
        contract_id: a.contract_id.clone(),
        author_id: a.author_id.clone(),
        reason: reason_of(a.reason.as_deref()) as i32,
        note: a.note.clone(),
        actor: a.actor.clone(),
        create_time: Some(to_proto(a.create_time)),
    }
}

pub async fn hide(
    api: &FeedbackApi,
    caller: Caller,
    req: pb::HideFeedbackRequest,
) -> Result<pb::HideFeedbackResponse, Error> {
    require_support(&caller)?;
    let mut v = Violations::new();
    let call = Call::of(&mut v, &caller, "HideFeedback", &req);
    let kind = v.check("item_id", kind_of(&req.item_id));
    let reason = req.reason();
    if reason == pb::ModerationReason::Unspecified {
        v.add("reason", "is required");
    }
    let note = v.check(
        "note",
        validate::text(
            &req.note,
            MAX_NOTE_CHARS,
            reason == pb::ModerationReason::Other,
        ),
    );
    v.finish()?;
    let change = Change {
        hide: true,
        kind,
        item_id: req.item_id,
        reason: Some(reason),
        note,
    };
    let action = act(api, call, &caller, change).await?;
    Ok(pb::HideFeedbackResponse {
        action: Some(action),
    })
}

pub async fn restore(
    api: &FeedbackApi,
    caller: Caller,
    req: pb::RestoreFeedbackRequest,
) -> Result<pb::RestoreFeedbackResponse, Error> {
    require_support(&caller)?;
    let mut v = Violations::new();
    let call = Call::of(&mut v, &caller, "RestoreFeedback", &req);
    let kind = v.check("item_id", kind_of(&req.item_id));
    let note = v.check("note", validate::text(&req.note, MAX_NOTE_CHARS, false));
    v.finish()?;
    let change = Change {
        hide: false,
        kind,
        item_id: req.item_id,
        reason: None,
        note,
    };
    let action = act(api, call, &caller, change).await?;
    Ok(pb::RestoreFeedbackResponse {
        action: Some(action),
    })
}

/// A validated hide or restore.
struct Change {
    hide: bool,
    kind: &'static str,
    item_id: String,
    reason: Option<pb::ModerationReason>,
    note: String,
}

/// Applies `change` in one transaction: the item's state (from the right
/// state only), the audit entry, the author's notification and the event.
async fn act(
    api: &FeedbackApi,
    call: Call,
    caller: &Caller,
    change: Change,
) -> Result<pb::ModerationAction, Error> {
    let now = api.now();
    let actor = caller.subject().to_owned();
    api.mutations()
        .run(call, move |unit| {
            Box::pin(async move {
                let Change {
                    hide,
                    kind,
                    item_id,
                    reason,
                    note,
                } = change;
                let (contract_id, author_id) = store::item_owner(unit.tx(), kind, &item_id)
                    .await?
                    .ok_or_else(|| Error::NotFound {
                        what: "feedback",
                        id: item_id.clone(),
                    })?;
                if hide && !store::hide(unit.tx(), &item_id, kind, now).await? {
                    return Err(Error::AlreadyHidden);
                }
                if !hide && !store::restore(unit.tx(), &item_id, now).await? {
                    return Err(Error::NotHidden);
                }
                let action = store::Action {
                    id: ids::new_id("mod"),
                    action: if hide { "HIDE" } else { "RESTORE" }.into(),
                    item_id,
                    item_kind: kind.into(),
                    contract_id,
                    author_id,
                    reason: reason.map(|r| reason_name(r).into()),
                    note,
                    actor,
                    create_time: now,
                };
                store::insert_action(unit.tx(), &action).await?;
                let view = action_pb(&action);
                let (kind, text, kind_name, payload) = match reason {
                    Some(reason) => (
                        pb::NotificationKind::FeedbackHidden,
                        format!(
                            "Support removed your feedback from public view because {}. You can contact support if you think this is a mistake.",
                            reason_text(reason)
                        ),
                        "FeedbackHidden",
                        pb::event::Payload::FeedbackHidden(pb::FeedbackHidden {
                            action: Some(view.clone()),
                        }),
                    ),
                    None => (
                        pb::NotificationKind::FeedbackRestored,
                        "Support restored your feedback: it is public again.".to_owned(),
                        "FeedbackRestored",
                        pb::event::Payload::FeedbackRestored(pb::FeedbackRestored {
                            action: Some(view.clone()),
                        }),
                    ),
                };
                tell_author(unit, &action, kind, &text, now);
                unit.event(&action.contract_id, now, kind_name, payload);
                Ok(view)
            })
        })
        .await
}

fn tell_author(
    unit: &mut shared::writer::Unit,
    action: &store::Action,
    kind: pb::NotificationKind,
    text: &str,
    now: DateTime<Utc>,
) {
    crate::events::notify(
        unit,
        &action.contract_id,
        now,
        pb::NotificationRequested {
            recipient_id: action.author_id.clone(),
            text: text.to_owned(),
            kind: kind as i32,
            ..Default::default()
        },
    );
}

pub async fn list(
    api: &FeedbackApi,
    caller: Caller,
    req: pb::ListModerationActionsRequest,
) -> Result<pb::ListModerationActionsResponse, Error> {
    require_support(&caller)?;
    let mut v = Violations::new();
    if !req.item_id.is_empty() {
        v.check("item_id", kind_of(&req.item_id));
    }
    let size = page_size(&mut v, req.page_size);
    v.finish()?;
    let filter = format!("moderation:{}", req.item_id);
    let before = page_token(&req.page_token, &filter)?;
    let mut actions = store::list_actions(
        api.db().reader(),
        Some(req.item_id.as_str()).filter(|id| !id.is_empty()),
        before.as_deref(),
        i64::from(size) + 1,
    )
    .await?;
    let next_page_token = next_token(&mut actions, size, &filter, |a| a.id.clone());
    Ok(pb::ListModerationActionsResponse {
        actions: actions.iter().map(action_pb).collect(),
        next_page_token,
    })
}

/// Shows a hidden mid-contract feedback as removed: no rating, comment or bonus.
pub fn redact_mid(feedback: &mut pb::MidContractFeedback) {
    feedback.removed_by_support = true;
    feedback.rating = 0;
    feedback.comment.clear();
    feedback.bonus = None;
    feedback.bonus_state = pb::BonusState::Unspecified as i32;
    feedback.bonus_payment_id.clear();
}

/// Shows a hidden end-of-contract feedback as removed: no scores, comment
/// or private part (its reply is judged on its own).
pub fn redact_end(feedback: &mut pb::EndContractFeedback) {
    feedback.removed_by_support = true;
    feedback.freelancer_scores = None;
    feedback.client_scores = None;
    feedback.overall_score = 0.0;
    feedback.comment.clear();
    feedback.private_feedback = None;
}

pub fn redact_reply(reply: &mut pb::Reply) {
    reply.removed_by_support = true;
    reply.text.clear();
}

/// Marks what is hidden in end-of-contract feedback views (and their replies).
pub fn redact_ends(
    views: &mut [pb::EndContractFeedback],
    hidden: &std::collections::HashSet<String>,
) {
    for view in views {
        if hidden.contains(&view.id) {
            redact_end(view);
        }
        if let Some(reply) = view.reply.as_mut().filter(|r| hidden.contains(&r.id)) {
            redact_reply(reply);
        }
    }
}
