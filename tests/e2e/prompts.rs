//! feedback-service follows contract-service's events: when a contract ends
//! both parties are prompted for end-of-contract feedback, once, whatever
//! the restarts; a reminder goes to each party who has not submitted, at its
//! instant (the test clock to the second), never twice, never after the
//! window closed, never to someone who turned reminders off.

use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use e2e::scenario::{end_by, notifications_until_quiet};
use e2e::{FeedbackApp, Stack, TestApp, TestBackend, as_service, as_user, backend_tests};
use shared::proto::contract::v1 as pb;
use shared::proto::feedback::v1 as fpb;

/// (kind, recipient, channel, text, window close) of a notification event.
type Notification = (
    fpb::NotificationKind,
    String,
    fpb::NotificationChannel,
    String,
    Option<DateTime<Utc>>,
);

/// Every notification feedback-service has sent so far, read until the
/// outbox stays quiet for `quiet`.
async fn notifications(feedback: &FeedbackApp, quiet: StdDuration) -> Vec<Notification> {
    notifications_until_quiet(feedback, quiet)
        .await
        .into_iter()
        .map(|n| {
            let close = n
                .window_close_time
                .as_ref()
                .and_then(shared::time::from_proto);
            (n.kind(), n.recipient_id.clone(), n.channel(), n.text, close)
        })
        .collect()
}

fn of_kind(
    all: &[Notification],
    kind: fpb::NotificationKind,
) -> Vec<(String, fpb::NotificationChannel)> {
    let mut found: Vec<_> = all
        .iter()
        .filter(|n| n.0 == kind)
        .map(|n| (n.1.clone(), n.2))
        .collect();
    found.sort_by(|a, b| (&a.0, a.1 as i32).cmp(&(&b.0, b.1 as i32)));
    found
}

fn both_channels(users: &[&str]) -> Vec<(String, fpb::NotificationChannel)> {
    let mut all = Vec::new();
    for user in users {
        all.push((user.to_string(), fpb::NotificationChannel::Email));
        all.push((user.to_string(), fpb::NotificationChannel::InAppMessage));
    }
    all.sort_by(|a, b| (&a.0, a.1 as i32).cmp(&(&b.0, b.1 as i32)));
    all
}

/// Waits until `want` notifications of `kind` are in the outbox (10 s at most).
async fn wait_for(
    feedback: &FeedbackApp,
    kind: fpb::NotificationKind,
    want: usize,
) -> Vec<Notification> {
    for _ in 0..50 {
        let all = notifications(feedback, StdDuration::from_millis(200)).await;
        if of_kind(&all, kind).len() >= want {
            return all;
        }
    }
    panic!("fewer than {want} {kind:?} notifications after 10 s");
}

const SETTLE: StdDuration = StdDuration::from_millis(1_200);

/// Every notification so far, once the sweeps have had time to settle.
async fn settled_notifications(feedback: &FeedbackApp) -> Vec<Notification> {
    tokio::time::sleep(SETTLE).await;
    notifications(feedback, StdDuration::from_millis(500)).await
}

/// `client`'s 60-day-old contract with `freelancer` (never paid), which the
/// client has just ended; and when it ended.
async fn just_ended(s: &Stack, client: &str, freelancer: &str) -> (pb::Contract, DateTime<Utc>) {
    let c = s
        .contract(client, freelancer, Duration::days(60), None)
        .await;
    let ended_at = s.contracts.now();
    end_by(s, client, &c).await;
    (c, ended_at)
}

async fn ending_a_contract_prompts_both_parties_once_across_restarts(backend: TestBackend) {
    let s = Stack::spawn(&backend).await;
    let (_, ended_at) = just_ended(&s, "client-1", "free-1").await;

    let all = wait_for(&s.feedback, fpb::NotificationKind::EndFeedbackPrompt, 4).await;
    assert_eq!(
        of_kind(&all, fpb::NotificationKind::EndFeedbackPrompt),
        both_channels(&["client-1", "free-1"])
    );
    let close = ended_at + Duration::days(14);
    for n in all
        .iter()
        .filter(|n| n.0 == fpb::NotificationKind::EndFeedbackPrompt)
    {
        assert_eq!(n.4, Some(close), "the prompt gives the window's close time");
        assert!(
            n.3.contains(&close.format("%Y-%m-%d %H:%M").to_string()),
            "{}",
            n.3
        );
    }

    // feedback-service restarts on the same database: it resumes after the
    // applied event, prompting nobody again, and applies what it missed.
    let Stack {
        contracts,
        feedback,
    } = s;
    let config = FeedbackApp::config(&feedback.database_url, contracts.addr);
    feedback.stop().await;
    let second = contracts.hourly_contract("client-2", "free-2").await;
    contracts
        .end_contract("client-2", &second.id, "")
        .await
        .expect("end while feedback-service is down");
    let feedback = FeedbackApp::spawn(config, contracts.clock.clone()).await;
    let all = wait_for(&feedback, fpb::NotificationKind::EndFeedbackPrompt, 8).await;
    let all_after = settled_notifications(&feedback).await;
    assert_eq!(all.len(), all_after.len(), "nothing more once caught up");
    assert_eq!(
        of_kind(&all_after, fpb::NotificationKind::EndFeedbackPrompt),
        both_channels(&["client-1", "client-2", "free-1", "free-2"]),
        "each party prompted exactly once"
    );

    // contract-service restarts too (same port and database): the follower
    // reconnects and goes on from its cursor.
    let (addr, url, clock) = (
        contracts.addr,
        contracts.database_url.clone(),
        contracts.clock.clone(),
    );
    contracts.stop().await;
    let contracts = TestApp::spawn_at(addr, url, clock).await;
    let third = contracts.hourly_contract("client-3", "free-3").await;
    contracts
        .end_contract("client-3", &third.id, "")
        .await
        .expect("end");
    let all = wait_for(&feedback, fpb::NotificationKind::EndFeedbackPrompt, 12).await;
    assert_eq!(
        of_kind(&all, fpb::NotificationKind::EndFeedbackPrompt),
        both_channels(&[
            "client-1", "client-2", "client-3", "free-1", "free-2", "free-3"
        ])
    );
    feedback.stop().await;
    contracts.stop().await;
}

async fn reminders_go_out_at_their_instant_once_to_who_has_not_submitted(backend: TestBackend) {
    let s = Stack::spawn(&backend).await;
    // A: the client submits, the freelancer does not. B: nobody submits,
    // and B's client turned reminders off.
    let (a, ended_at) = just_ended(&s, "client-a", "free-a").await;
    let (_, b_ended_at) = just_ended(&s, "client-b", "free-b").await;
    assert_eq!(b_ended_at, ended_at, "the test clock stood still");
    wait_for(&s.feedback, fpb::NotificationKind::EndFeedbackPrompt, 8).await;
    s.feedback
        .client_end_feedback("client-a", &a.id)
        .await
        .expect("client-a submits");
    let off = s
        .feedback
        .client()
        .update_notification_preferences(as_user(
            "client-b",
            fpb::UpdateNotificationPreferencesRequest {
                user_id: String::new(),
                end_feedback_reminders: false,
            },
        ))
        .await
        .expect("turn reminders off")
        .into_inner()
        .preferences
        .expect("preferences");
    assert!(!off.end_feedback_reminders);

    let remind_at = ended_at + Duration::days(14) - Duration::days(3);
    s.contracts.set_time(remind_at - Duration::seconds(1));
    let before = settled_notifications(&s.feedback).await;
    assert!(
        of_kind(&before, fpb::NotificationKind::EndFeedbackReminder).is_empty(),
        "no reminder a second before its instant"
    );

    s.contracts.set_time(remind_at + Duration::seconds(1));
    let all = wait_for(&s.feedback, fpb::NotificationKind::EndFeedbackReminder, 4).await;
    assert_eq!(
        of_kind(&all, fpb::NotificationKind::EndFeedbackReminder),
        both_channels(&["free-a", "free-b"]),
        "not client-a (submitted), not client-b (turned off)"
    );
    let reminder = all
        .iter()
        .find(|n| n.0 == fpb::NotificationKind::EndFeedbackReminder)
        .expect("reminder");
    assert_eq!(reminder.4, Some(ended_at + Duration::days(14)));

    // Later sweeps, up to the close, send nothing more.
    s.contracts
        .set_time(ended_at + Duration::days(14) - Duration::seconds(1));
    let later = settled_notifications(&s.feedback).await;
    assert_eq!(
        of_kind(&later, fpb::NotificationKind::EndFeedbackReminder).len(),
        4,
        "each sent once"
    );
}

async fn no_reminder_once_the_window_has_closed(backend: TestBackend) {
    let s = Stack::spawn(&backend).await;
    let (_, ended_at) = just_ended(&s, "client-1", "free-1").await;
    wait_for(&s.feedback, fpb::NotificationKind::EndFeedbackPrompt, 4).await;
    // The service was away through the reminder instant; at the close it is too late.
    s.contracts.set_time(ended_at + Duration::days(14));
    tokio::time::sleep(SETTLE).await;
    s.contracts.set_time(ended_at + Duration::days(15));
    let all = settled_notifications(&s.feedback).await;
    assert!(of_kind(&all, fpb::NotificationKind::EndFeedbackReminder).is_empty());
}

/// Notification preferences read with `request`'s token.
async fn preferences(
    s: &Stack,
    request: tonic::Request<fpb::GetNotificationPreferencesRequest>,
) -> Result<fpb::NotificationPreferences, tonic::Status> {
    let response = s
        .feedback
        .client()
        .get_notification_preferences(request)
        .await?;
    Ok(response.into_inner().preferences.expect("preferences"))
}

/// `user_id`'s preferences, read by the service `name` with `scopes`.
async fn preferences_as_service(
    s: &Stack,
    name: &str,
    scopes: &[&str],
    user_id: &str,
) -> Result<fpb::NotificationPreferences, tonic::Status> {
    let user_id = user_id.into();
    let request = fpb::GetNotificationPreferencesRequest { user_id };
    preferences(s, as_service(name, scopes, request)).await
}

async fn preferences_are_the_users_own(backend: TestBackend) {
    let s = Stack::spawn(&backend).await;
    let own = fpb::GetNotificationPreferencesRequest::default();
    let default = preferences(&s, as_user("free-1", own))
        .await
        .expect("own preferences");
    assert!(
        default.end_feedback_reminders,
        "reminders are on by default"
    );
    assert_eq!(default.user_id, "free-1");
    assert!(default.update_time.is_none());

    let other = s
        .feedback
        .client()
        .update_notification_preferences(as_user(
            "free-1",
            fpb::UpdateNotificationPreferencesRequest {
                user_id: "client-1".into(),
                end_feedback_reminders: false,
            },
        ))
        .await
        .expect_err("not someone else's");
    assert_eq!(other.code(), tonic::Code::PermissionDenied);
    let service = preferences_as_service(&s, "gateway", &["contracts:read"], "client-1")
        .await
        .expect_err("services need admin");
    assert_eq!(service.code(), tonic::Code::PermissionDenied);
    let bad = preferences_as_service(&s, "support", &["admin"], "no spaces")
        .await
        .expect_err("bad user id");
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    assert!(bad.message().contains("user_id"), "{}", bad.message());
    let unchanged = preferences_as_service(&s, "support", &["admin"], "client-1")
        .await
        .expect("admin reads");
    assert!(unchanged.end_feedback_reminders, "nothing was written");
}

backend_tests!(
    ending_a_contract_prompts_both_parties_once_across_restarts,
    reminders_go_out_at_their_instant_once_to_who_has_not_submitted,
    no_reminder_once_the_window_has_closed,
    preferences_are_the_users_own,
);
