//! Scenario set-ups the end-to-end tests share: a contract brought to the
//! state a test starts from, in one call.

use chrono::Duration;
use shared::proto::contract::v1 as pb;
use shared::proto::feedback::v1 as fpb;

use crate::{
    EARLY_CLIENT, FeedbackApp, Stack, as_service, as_user, freelancer_end_feedback_request,
};

/// An hourly contract 60 days old, paid a day ago: open to mid-contract feedback.
pub async fn paid_contract(s: &Stack, client: &str, freelancer: &str) -> pb::Contract {
    s.contract(
        client,
        freelancer,
        Duration::days(60),
        Some(Duration::days(1)),
    )
    .await
}

/// A 20-day-old contract of the early-feedback cohort, paid a day ago (bonus allowed).
pub async fn early_contract(s: &Stack, freelancer: &str) -> pb::Contract {
    s.contract(
        EARLY_CLIENT,
        freelancer,
        Duration::days(20),
        Some(Duration::days(1)),
    )
    .await
}

/// A paid contract the client has just ended: its review window is open.
pub async fn ended_contract(s: &Stack, client: &str, freelancer: &str) -> pb::Contract {
    let c = paid_contract(s, client, freelancer).await;
    end_by(s, client, &c).await;
    c
}

/// `user` ends the contract (no request id).
pub async fn end_by(s: &Stack, user: &str, c: &pb::Contract) {
    s.contracts
        .end_contract(user, &c.id, "")
        .await
        .expect("end the contract");
}

/// The client's end-of-contract feedback on the freelancer, as stored.
pub async fn client_review(s: &Stack, client: &str, c: &pb::Contract) -> fpb::EndContractFeedback {
    s.feedback
        .client_end_feedback(client, &c.id)
        .await
        .expect("client's end feedback")
        .feedback
        .expect("feedback")
}

/// The freelancer's end-of-contract feedback on the client (whole answer).
pub async fn freelancer_review(
    s: &Stack,
    freelancer: &str,
    c: &pb::Contract,
) -> fpb::SubmitEndContractFeedbackResponse {
    let request = freelancer_end_feedback_request(&c.id);
    s.feedback
        .submit_end_feedback(freelancer, request)
        .await
        .expect("freelancer's end feedback")
}

/// An ended contract both parties reviewed: (contract, client's review, freelancer's answer).
pub async fn ended_contract_with_feedback(
    s: &Stack,
    client: &str,
    freelancer: &str,
) -> (
    pb::Contract,
    fpb::EndContractFeedback,
    fpb::SubmitEndContractFeedbackResponse,
) {
    let c = ended_contract(s, client, freelancer).await;
    let to_freelancer = client_review(s, client, &c).await;
    let to_client = freelancer_review(s, freelancer, &c).await;
    (c, to_freelancer, to_client)
}

/// The client's mid-contract feedback (5 stars, no bonus), as stored.
pub async fn mid_feedback(s: &Stack, client: &str, c: &pb::Contract) -> fpb::MidContractFeedback {
    s.feedback
        .submit_mid(client, &c.id, None)
        .await
        .expect("mid-contract feedback")
}

/// The freelancer's request for mid-contract feedback on `c`, as stored.
pub async fn feedback_request(
    s: &Stack,
    freelancer: &str,
    c: &pb::Contract,
) -> fpb::FeedbackRequest {
    s.feedback
        .request_feedback(freelancer, &c.id)
        .await
        .expect("feedback request")
}

/// A party's view of the contract's end-of-contract feedback.
pub async fn end_feedback_view(
    feedback: &FeedbackApp,
    user: &str,
    contract_id: &str,
) -> Result<fpb::GetEndContractFeedbackResponse, tonic::Status> {
    feedback
        .end_feedback(as_user(
            user,
            fpb::GetEndContractFeedbackRequest {
                contract_id: contract_id.into(),
            },
        ))
        .await
}

/// Job Success inputs for a freelancer, read by the JSS service with `scopes`.
pub async fn job_success_inputs(
    feedback: &FeedbackApp,
    freelancer: &str,
    scopes: &[&str],
) -> Result<Vec<fpb::EndContractFeedback>, tonic::Status> {
    Ok(feedback
        .client()
        .list_job_success_inputs(as_service(
            "jss",
            scopes,
            fpb::ListJobSuccessInputsRequest {
                freelancer_id: freelancer.into(),
                ..Default::default()
            },
        ))
        .await?
        .into_inner()
        .feedback)
}

/// Waits for the first event matching `want` and returns its payload.
pub async fn awaited_event(
    feedback: &FeedbackApp,
    want: impl Fn(&fpb::event::Payload) -> bool,
) -> fpb::event::Payload {
    feedback
        .wait_for_event(want)
        .await
        .pop()
        .and_then(|e| e.payload)
        .expect("the awaited event")
}

/// Billing records an hourly invoice of `amount_minor` cents paid at `paid_at`.
pub async fn pay_invoice(
    s: &Stack,
    c: &pb::Contract,
    amount_minor: i64,
    paid_at: chrono::DateTime<chrono::Utc>,
    request_id: &str,
) -> pb::Payment {
    s.contracts
        .pay(
            &c.id,
            pb::PaymentKind::HourlyInvoice,
            amount_minor,
            paid_at,
            request_id,
        )
        .await
        .expect("pay the invoice")
}

/// Every notification feedback-service has requested so far, read (as the
/// notifications service) until no event arrives for `quiet`.
pub async fn notifications_until_quiet(
    feedback: &FeedbackApp,
    quiet: std::time::Duration,
) -> Vec<fpb::NotificationRequested> {
    use futures::StreamExt;
    use shared::testing::Outbox;
    let mut stream = feedback
        .client()
        .watch_as("notifications", 0)
        .await
        .expect("watch");
    let mut seen = Vec::new();
    while let Ok(Some(next)) = tokio::time::timeout(quiet, stream.next()).await {
        if let Some(fpb::event::Payload::NotificationRequested(n)) =
            next.expect("event").event.expect("event").payload
        {
            seen.push(n);
        }
    }
    seen
}
