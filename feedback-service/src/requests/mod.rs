//! Feedback requests: a freelancer asks the client for mid-contract
//! feedback; listing them, expiring them, and their proto mapping.

mod store;
pub(crate) use store::{expire_requests, fulfil_pending_request};

use std::time::Duration as StdDuration;

use chrono::{DateTime, Utc};

use crate::api::FeedbackApi;
use crate::common::{next_token, page_size, page_token, require_eligible};
use crate::domain::Side;
use crate::error::Error;
use crate::events::notify;
use shared::auth::Caller;
use shared::ids;
use shared::proto::feedback::v1 as pb;
use shared::time::to_proto;
use shared::validate::{self, Violations};
use shared::writer::Call;
use shared::writer::Unit;

/// What the client is told when the freelancer asks for feedback, with the
/// request's expiry (its time to live is configurable).
pub(crate) fn request_notification_text(expire_time: chrono::DateTime<chrono::Utc>) -> String {
    format!(
        "Your freelancer asked for feedback on your contract. You have until {} UTC to respond.",
        expire_time.format("%Y-%m-%d %H:%M")
    )
}

/// A request's state as readers see it: a pending request past its expiry is expired.
pub(crate) fn request_pb(
    r: &crate::store::FeedbackRequest,
    now: DateTime<Utc>,
) -> pb::FeedbackRequest {
    let state = match r.state.as_str() {
        "FULFILLED" => pb::FeedbackRequestState::Fulfilled,
        "EXPIRED" => pb::FeedbackRequestState::Expired,
        _ if now >= r.expire_time => pb::FeedbackRequestState::Expired,
        _ => pb::FeedbackRequestState::Pending,
    };
    pb::FeedbackRequest {
        id: r.id.clone(),
        contract_id: r.contract_id.clone(),
        freelancer_id: r.freelancer_id.clone(),
        client_id: r.client_id.clone(),
        state: state as i32,
        create_time: Some(to_proto(r.create_time)),
        expire_time: Some(to_proto(r.expire_time)),
        feedback_id: r.feedback_id.clone().unwrap_or_default(),
    }
}

/// Emits RequestExpired for requests the store just expired.
pub(crate) fn emit_expired(
    unit: &mut Unit,
    expired: &[crate::store::FeedbackRequest],
    now: DateTime<Utc>,
) {
    for request in expired {
        let mut view = request_pb(request, now);
        view.state = pb::FeedbackRequestState::Expired as i32;
        unit.event(
            &request.contract_id,
            now,
            "RequestExpired",
            pb::event::Payload::RequestExpired(pb::RequestExpired {
                feedback_request: Some(view),
            }),
        );
    }
}

impl FeedbackApi {
    pub(crate) async fn request_mid_contract_feedback(
        &self,
        caller: Caller,
        req: pb::RequestMidContractFeedbackRequest,
        deadline: Option<StdDuration>,
    ) -> Result<pb::RequestMidContractFeedbackResponse, Error> {
        let mut v = Violations::new();
        let call = Call::of(&mut v, &caller, "RequestMidContractFeedback", &req);
        let id = v.check("contract_id", validate::id(&req.contract_id, "ctr"));
        v.finish()?;
        let (facts, side) = self.contract_for(&caller, &id, deadline).await?;
        if side != Some(Side::Freelancer) {
            return Err(Error::WrongSide("freelancer"));
        }
        let now = self.now();
        let cohort = self.cohorts.cohort_of(&facts.client_id);
        let rules = self.rules.clone();
        self.mutations
            .run(call, move |unit| {
                Box::pin(async move {
                    crate::store::lock_contract(unit.tx(), &id).await?;
                    let expired = store::expire_requests(unit.tx(), Some(&id), now, 100).await?;
                    emit_expired(unit, &expired, now);
                    require_eligible(unit, &facts, cohort, &rules, now).await?;
                    let request = crate::store::FeedbackRequest {
                        id: ids::new_id("frq"),
                        contract_id: id.clone(),
                        freelancer_id: facts.freelancer_id.clone(),
                        client_id: facts.client_id.clone(),
                        state: "PENDING".into(),
                        create_time: now,
                        expire_time: now + rules.request_ttl,
                        feedback_id: None,
                    };
                    store::insert_request(unit.tx(), &request).await?;
                    let view = request_pb(&request, now);
                    unit.event(
                        &id,
                        now,
                        "FeedbackRequested",
                        pb::event::Payload::FeedbackRequested(pb::FeedbackRequested {
                            feedback_request: Some(view.clone()),
                        }),
                    );
                    // The client hears about it twice: by email and in Messages.
                    notify(
                        unit,
                        &id,
                        now,
                        pb::NotificationRequested {
                            recipient_id: facts.client_id.clone(),
                            feedback_request_id: request.id.clone(),
                            text: request_notification_text(request.expire_time),
                            kind: pb::NotificationKind::FeedbackRequest as i32,
                            ..Default::default()
                        },
                    );
                    let response = pb::RequestMidContractFeedbackResponse {
                        feedback_request: Some(view),
                    };
                    Ok::<_, Error>(response)
                })
            })
            .await
    }

    pub(crate) async fn list_feedback_requests(
        &self,
        caller: Caller,
        req: pb::ListFeedbackRequestsRequest,
        deadline: Option<StdDuration>,
    ) -> Result<pb::ListFeedbackRequestsResponse, Error> {
        let mut v = Violations::new();
        let id = v.check("contract_id", validate::id(&req.contract_id, "ctr"));
        let size = page_size(&mut v, req.page_size);
        v.finish()?;
        let filter = format!("requests:{id}");
        let after = page_token(&req.page_token, &filter)?;
        self.contract_for(&caller, &id, deadline).await?;
        let page = shared::db::Page::new(&id, after.as_deref(), i64::from(size) + 1);
        let mut requests = store::list_requests(self.db.reader(), page).await?;
        let next_page_token = next_token(&mut requests, size, &filter, |r| r.id.clone());
        let now = self.now();
        Ok(pb::ListFeedbackRequestsResponse {
            feedback_requests: requests.iter().map(|r| request_pb(r, now)).collect(),
            next_page_token,
        })
    }
}
