//! Moderation by support (scope `admin` only): hidden feedback shows as
//! removed by support in work history and the parties' views, leaves Job
//! Success inputs, its author is told why, and every action is in the audit
//! trail; restoring undoes it. Bad input and wrong states write nothing.

use std::time::Duration as StdDuration;

use e2e::scenario::{
    client_review, end_feedback_view, ended_contract, freelancer_review, job_success_inputs,
    mid_feedback, notifications_until_quiet, paid_contract,
};
use e2e::{Stack, TestBackend, as_service, as_user, backend_tests};
use shared::proto::feedback::v1 as fpb;
use tonic::Code;

fn support<T>(message: T) -> tonic::Request<T> {
    as_service("support-agent-7", &["admin"], message)
}

fn hide(item_id: &str, reason: fpb::ModerationReason, note: &str) -> fpb::HideFeedbackRequest {
    fpb::HideFeedbackRequest {
        item_id: item_id.into(),
        reason: reason as i32,
        note: note.into(),
        request_id: String::new(),
    }
}

async fn audit(s: &Stack, item_id: &str) -> Vec<fpb::ModerationAction> {
    s.feedback
        .client()
        .list_moderation_actions(support(fpb::ListModerationActionsRequest {
            item_id: item_id.into(),
            ..Default::default()
        }))
        .await
        .expect("audit")
        .into_inner()
        .actions
}

async fn jss_ids(s: &Stack) -> Vec<String> {
    job_success_inputs(&s.feedback, "free-1", &["jss:read"])
        .await
        .expect("jss")
        .into_iter()
        .map(|f| f.id)
        .collect()
}

/// The notifications of `kind` sent to `user`, read until the outbox is quiet.
async fn told(s: &Stack, user: &str, kind: fpb::NotificationKind) -> Vec<String> {
    notifications_until_quiet(&s.feedback, StdDuration::from_millis(700))
        .await
        .into_iter()
        .filter(|n| n.kind() == kind && n.recipient_id == user)
        .map(|n| n.text)
        .collect()
}

async fn support_hides_and_restores_end_of_contract_feedback(backend: TestBackend) {
    let s = Stack::spawn(&backend).await;
    let c = ended_contract(&s, "client-1", "free-1").await;
    let review = client_review(&s, "client-1", &c).await;
    freelancer_review(&s, "free-1", &c).await;
    let reply = s.feedback.reply("free-1", &review.id).await.expect("reply");
    assert_eq!(jss_ids(&s).await, vec![review.id.clone()]);

    let hidden = s
        .feedback
        .client()
        .hide_feedback(support(hide(
            &review.id,
            fpb::ModerationReason::PersonalData,
            "phone number",
        )))
        .await
        .expect("hide")
        .into_inner()
        .action
        .expect("action");
    assert_eq!(hidden.r#type(), fpb::ModerationActionType::Hide);
    assert_eq!(hidden.author_id, "client-1");
    assert_eq!(hidden.actor, "support-agent-7");
    assert_eq!(hidden.contract_id, c.id);

    // Work history: the item is there, removed by support, without its text.
    let history = s.feedback.work_history("free-1").await.expect("history");
    let shown = history[0]
        .client_feedback
        .as_ref()
        .expect("item still listed");
    assert!(shown.removed_by_support);
    assert!(
        shown.comment.is_empty() && shown.freelancer_scores.is_none(),
        "{shown:?}"
    );
    // The reply is not hidden: it stays.
    assert_eq!(
        shown.reply.as_ref().map(|r| r.text.clone()),
        Some(reply.text.clone())
    );
    // The other party's view too.
    let view = end_feedback_view(&s.feedback, "free-1", &c.id)
        .await
        .expect("view");
    let theirs = view
        .feedback
        .iter()
        .find(|f| f.id == review.id)
        .expect("listed");
    assert!(theirs.removed_by_support && theirs.comment.is_empty());
    // Job Success inputs leave it out while hidden.
    assert!(jss_ids(&s).await.is_empty());
    // The author is told why.
    let texts = told(&s, "client-1", fpb::NotificationKind::FeedbackHidden).await;
    assert_eq!(texts.len(), 2, "email and in-app: {texts:?}");
    assert!(texts[0].contains("personal data"), "{}", texts[0]);

    // Hiding twice is a wrong state; nothing is added to the trail.
    let again = s
        .feedback
        .client()
        .hide_feedback(support(hide(&review.id, fpb::ModerationReason::Abuse, "")))
        .await
        .expect_err("already hidden");
    assert_eq!(again.code(), Code::FailedPrecondition);
    assert!(
        format!("{:?}", again.details()).contains("ALREADY_HIDDEN")
            || again.message().contains("already hidden")
    );

    let restored = s
        .feedback
        .client()
        .restore_feedback(support(fpb::RestoreFeedbackRequest {
            item_id: review.id.clone(),
            note: "appeal accepted".into(),
            request_id: String::new(),
        }))
        .await
        .expect("restore")
        .into_inner()
        .action
        .expect("action");
    assert_eq!(restored.r#type(), fpb::ModerationActionType::Restore);
    let history = s.feedback.work_history("free-1").await.expect("history");
    let shown = history[0].client_feedback.as_ref().expect("item");
    assert!(!shown.removed_by_support && !shown.comment.is_empty());
    assert_eq!(jss_ids(&s).await, vec![review.id.clone()]);
    assert_eq!(
        told(&s, "client-1", fpb::NotificationKind::FeedbackRestored)
            .await
            .len(),
        2
    );
    let not_hidden = s
        .feedback
        .client()
        .restore_feedback(support(fpb::RestoreFeedbackRequest {
            item_id: review.id.clone(),
            ..Default::default()
        }))
        .await
        .expect_err("not hidden");
    assert_eq!(not_hidden.code(), Code::FailedPrecondition);

    // The audit trail: newest first, paged.
    let trail = audit(&s, &review.id).await;
    let types: Vec<_> = trail.iter().map(|a| a.r#type()).collect();
    assert_eq!(
        types,
        [
            fpb::ModerationActionType::Restore,
            fpb::ModerationActionType::Hide
        ]
    );
    assert_eq!(trail[1].reason(), fpb::ModerationReason::PersonalData);
    assert_eq!(trail[1].note, "phone number");
    let first = s
        .feedback
        .client()
        .list_moderation_actions(support(fpb::ListModerationActionsRequest {
            page_size: 1,
            ..Default::default()
        }))
        .await
        .expect("page 1")
        .into_inner();
    assert_eq!(first.actions.len(), 1);
    let second = s
        .feedback
        .client()
        .list_moderation_actions(support(fpb::ListModerationActionsRequest {
            page_size: 1,
            page_token: first.next_page_token.clone(),
            ..Default::default()
        }))
        .await
        .expect("page 2")
        .into_inner();
    assert_eq!(second.actions[0].id, trail[1].id);

    // A reply can be hidden on its own.
    s.feedback
        .client()
        .hide_feedback(support(hide(&reply.id, fpb::ModerationReason::Abuse, "")))
        .await
        .expect("hide reply");
    let history = s.feedback.work_history("free-1").await.expect("history");
    let shown_reply = history[0]
        .client_feedback
        .as_ref()
        .and_then(|f| f.reply.clone())
        .expect("reply listed");
    assert!(shown_reply.removed_by_support && shown_reply.text.is_empty());
}

async fn hidden_mid_contract_feedback_shows_as_removed(backend: TestBackend) {
    let s = Stack::spawn(&backend).await;
    let c = paid_contract(&s, "client-1", "free-1").await;
    let mid = mid_feedback(&s, "client-1", &c).await;
    s.feedback
        .client()
        .hide_feedback(support(hide(
            &mid.id,
            fpb::ModerationReason::Other,
            "spam link",
        )))
        .await
        .expect("hide");
    let history = s.feedback.work_history("free-1").await.expect("history");
    let shown = &history[0].mid_contract_feedback[0];
    assert!(shown.removed_by_support);
    assert_eq!((shown.rating, shown.comment.as_str()), (0, ""));
}

async fn only_support_moderates_and_bad_input_writes_nothing(backend: TestBackend) {
    let s = Stack::spawn(&backend).await;
    let c = paid_contract(&s, "client-1", "free-1").await;
    let mid = mid_feedback(&s, "client-1", &c).await;
    let mut client = s.feedback.client();
    let request = hide(&mid.id, fpb::ModerationReason::Abuse, "");
    for denied in [
        as_user("free-1", request.clone()),
        as_user("support-agent-7", request.clone()),
        as_service("gateway", &["contracts:read", "jss:read"], request.clone()),
    ] {
        let err = client.hide_feedback(denied).await.expect_err("not support");
        assert_eq!(err.code(), Code::PermissionDenied);
    }
    let listed = client
        .list_moderation_actions(as_user(
            "free-1",
            fpb::ListModerationActionsRequest::default(),
        ))
        .await
        .expect_err("users cannot read the trail");
    assert_eq!(listed.code(), Code::PermissionDenied);

    for (bad, field) in [
        (
            hide("mfb_nope", fpb::ModerationReason::Abuse, ""),
            "item_id",
        ),
        (hide(&c.id, fpb::ModerationReason::Abuse, ""), "item_id"),
        (
            hide(&mid.id, fpb::ModerationReason::Unspecified, ""),
            "reason",
        ),
        (hide(&mid.id, fpb::ModerationReason::Other, ""), "note"),
        (
            hide(&mid.id, fpb::ModerationReason::Abuse, &"x".repeat(1_001)),
            "note",
        ),
    ] {
        let err = client
            .hide_feedback(support(bad))
            .await
            .expect_err("invalid");
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(err.message().contains(field), "{field}: {}", err.message());
    }
    let missing = client
        .hide_feedback(support(hide(
            &shared::ids::new_id("efb"),
            fpb::ModerationReason::Abuse,
            "",
        )))
        .await
        .expect_err("no such feedback");
    assert_eq!(missing.code(), Code::NotFound);
    assert!(audit(&s, "").await.is_empty(), "nothing was written");
    let history = s.feedback.work_history("free-1").await.expect("history");
    assert!(!history[0].mid_contract_feedback[0].removed_by_support);
}

backend_tests!(
    support_hides_and_restores_end_of_contract_feedback,
    hidden_mid_contract_feedback_shows_as_removed,
    only_support_moderates_and_bad_input_writes_nothing,
);
