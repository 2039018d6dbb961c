//! Glue between the wire and the feedback rules: authenticate, parse (every
//! bad field reported, nothing written), ask contract-service for the facts
//! (before any transaction is opened, with the caller's deadline), decide
//! with `domain`, write with `store` in one transaction with the outbox event
//! and idempotency key, and encode.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Utc};
use futures::Stream;
use prost::Message;
use tokio::sync::Notify;
use tonic::{Request, Response, Status};

use crate::contracts::Contracts;
use crate::domain::{self, Cohort, CohortConfig, ContractFacts, Eligibility, Rules, Side};
use crate::error::Error;
use crate::moderation;
use crate::store::{
    self, BonusState, CLIENT_TO_FREELANCER, EndFeedback, FREELANCER_TO_CLIENT, MidFeedback,
};
use shared::auth::{Caller, scope};
use shared::clock::SharedClock;
use shared::db::Db;
use shared::metrics::Metrics;
use shared::outbox::{self, Relay};
use shared::proto::contract::v1::Money;
use shared::proto::feedback::v1 as pb;
use shared::status::FieldViolation;
use shared::time::{opt_to_proto, to_proto};
use shared::validate::{self, MAX_COMMENT_CHARS, Violations};
use shared::writer::{Mutations, Unit};
use shared::{ids, paging};

const MAX_BATCH: usize = 100;
const DEFAULT_PAGE_SIZE: u32 = 50;
const MAX_PAGE_SIZE: u32 = 200;

/// The feedback service.
#[derive(Debug, Clone)]
pub struct FeedbackApi {
    db: Db,
    clock: SharedClock,
    rules: Rules,
    cohorts: Arc<CohortConfig>,
    contracts: Contracts,
    relay: Relay,
    /// Wakes the bonus worker after a feedback with a bonus commits.
    bonus_wake: Arc<Notify>,
    mutations: Mutations,
    /// Where `WatchEvents` reports each consumer's position, once set.
    metrics: Option<Arc<Metrics>>,
}

impl FeedbackApi {
    pub fn new(
        db: Db,
        clock: SharedClock,
        rules: Rules,
        cohorts: CohortConfig,
        contracts: Contracts,
        relay: Relay,
        bonus_wake: Arc<Notify>,
    ) -> Self {
        Self {
            mutations: Mutations::new(db.clone(), clock.clone(), relay.clone()),
            db,
            clock,
            rules,
            cohorts: Arc::new(cohorts),
            contracts,
            relay,
            bonus_wake,
            metrics: None,
        }
    }

    /// Reports what `WatchEvents` sends each consumer in `metrics`
    /// (`outbox_consumer_sequence`).
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    pub(crate) fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    pub(crate) fn db(&self) -> &Db {
        &self.db
    }

    pub(crate) fn contracts(&self) -> &Contracts {
        &self.contracts
    }

    pub(crate) fn rules(&self) -> &Rules {
        &self.rules
    }

    pub(crate) fn mutations(&self) -> &Mutations {
        &self.mutations
    }

    /// A contract's facts, for a caller allowed to see it. Users learn
    /// nothing about contracts they are not a party to.
    async fn contract_for(
        &self,
        caller: &Caller,
        contract_id: &str,
        deadline: Option<StdDuration>,
    ) -> Result<(ContractFacts, Option<Side>), Error> {
        let not_yours = || Error::NotAParty {
            contract_id: contract_id.to_owned(),
        };
        let facts = self.contracts.get(contract_id, deadline).await?;
        match caller.user_id() {
            Some(user) => {
                let facts = facts.ok_or_else(not_yours)?;
                let side = facts.side_of(user).ok_or_else(not_yours)?;
                Ok((facts, Some(side)))
            }
            None if caller.has_scope(scope::CONTRACTS_READ) || caller.has_scope(scope::ADMIN) => {
                let facts = facts.ok_or_else(|| Error::NotFound {
                    what: "contract",
                    id: contract_id.to_owned(),
                })?;
                Ok((facts, None))
            }
            None => Err(Error::MissingScope(scope::CONTRACTS_READ)),
        }
    }

    fn eligibility(
        &self,
        facts: &ContractFacts,
        last_feedback: Option<DateTime<Utc>>,
    ) -> Eligibility {
        let cohort = self.cohorts.cohort_of(&facts.client_id);
        domain::mid_contract_eligibility(facts, last_feedback, cohort, &self.rules, self.now())
    }

    fn eligibility_pb(&self, e: &Eligibility, currency: &str) -> pb::MidContractEligibility {
        pb::MidContractEligibility {
            contract_id: e.contract_id.clone(),
            eligible: e.eligible(),
            unmet_rules: e
                .unmet
                .iter()
                .map(|r| pb::UnmetRule {
                    reason: r.reason.into(),
                    message: r.message.clone(),
                    hold_time: opt_to_proto(r.hold_time),
                })
                .collect(),
            cohort: cohort_pb(e.cohort) as i32,
            bonus_allowed: e.bonus_allowed,
            max_bonus: e.bonus_allowed.then(|| Money {
                currency_code: currency.to_owned(),
                amount_minor: self.rules.max_bonus_minor,
            }),
            next_eligible_time: opt_to_proto(e.next_eligible_time),
        }
    }
}

/// Fails unless the contract is eligible for mid-contract feedback at `now`,
/// judged on its latest feedback as read in the write transaction (after the
/// caller took the contract's lock).
async fn require_eligible(
    unit: &mut Unit,
    facts: &ContractFacts,
    cohort: Cohort,
    rules: &Rules,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    let id = std::slice::from_ref(&facts.id);
    let last = store::last_mid_feedback_times(&mut **unit.tx(), id).await?;
    let e =
        domain::mid_contract_eligibility(facts, last.get(&facts.id).copied(), cohort, rules, now);
    if e.eligible() {
        Ok(())
    } else {
        Err(Error::NotEligible(e.unmet))
    }
}

/// What the client is told when the freelancer asks for feedback, with the
/// request's expiry (its time to live is configurable).
fn request_notification_text(expire_time: chrono::DateTime<chrono::Utc>) -> String {
    format!(
        "Your freelancer asked for feedback on your contract. You have until {} UTC to respond.",
        expire_time.format("%Y-%m-%d %H:%M")
    )
}

fn cohort_pb(c: Cohort) -> pb::Cohort {
    match c {
        Cohort::Baseline => pb::Cohort::Baseline,
        Cohort::EarlyFeedback => pb::Cohort::EarlyFeedback,
    }
}

fn mid_pb(f: &MidFeedback) -> pb::MidContractFeedback {
    pb::MidContractFeedback {
        id: f.id.clone(),
        contract_id: f.contract_id.clone(),
        client_id: f.client_id.clone(),
        freelancer_id: f.freelancer_id.clone(),
        rating: f.rating,
        comment: f.comment.clone(),
        bonus: f.bonus.as_ref().map(|(currency, minor)| Money {
            currency_code: currency.clone(),
            amount_minor: *minor,
        }),
        bonus_state: match f.bonus_state {
            BonusState::None => pb::BonusState::Unspecified,
            BonusState::Pending => pb::BonusState::Pending,
            BonusState::Paid => pb::BonusState::Paid,
        } as i32,
        bonus_payment_id: f.bonus_payment_id.clone().unwrap_or_default(),
        cohort: Cohort::parse(&f.cohort).map_or(pb::Cohort::Unspecified, cohort_pb) as i32,
        fulfilled_request_id: f.fulfilled_request_id.clone().unwrap_or_default(),
        create_time: Some(to_proto(f.create_time)),
        removed_by_support: false,
    }
}

/// A request's state as readers see it: a pending request past its expiry is expired.
fn request_pb(r: &store::FeedbackRequest, now: DateTime<Utc>) -> pb::FeedbackRequest {
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

fn reply_pb(r: &store::Reply) -> pb::Reply {
    pb::Reply {
        id: r.id.clone(),
        feedback_id: r.feedback_id.clone(),
        author_id: r.author_id.clone(),
        text: r.text.clone(),
        public: r.public,
        create_time: Some(to_proto(r.create_time)),
        removed_by_support: false,
    }
}

/// End-of-contract feedback on the wire; `with_private` includes the client's private part.
fn end_pb(
    f: &EndFeedback,
    with_private: bool,
    reply: Option<&store::Reply>,
) -> pb::EndContractFeedback {
    let [a, b, c, d, e, g] = f.scores;
    let client_to_freelancer = f.direction == CLIENT_TO_FREELANCER;
    pb::EndContractFeedback {
        id: f.id.clone(),
        contract_id: f.contract_id.clone(),
        direction: if client_to_freelancer {
            pb::Direction::ClientToFreelancer
        } else {
            pb::Direction::FreelancerToClient
        } as i32,
        author_id: f.author_id.clone(),
        recipient_id: f.recipient_id.clone(),
        freelancer_scores: client_to_freelancer.then_some(pb::FreelancerScores {
            skills: a,
            quality_of_work: b,
            availability: c,
            adherence_to_schedule: d,
            communication: e,
            cooperation: g,
        }),
        client_scores: (!client_to_freelancer).then_some(pb::ClientScores {
            clarity_of_requirements: a,
            communication: b,
            cooperation: c,
            availability: d,
            reasonable_deadlines: e,
            payment_promptness: g,
        }),
        overall_score: domain::overall(&f.scores),
        comment: f.comment.clone(),
        private_feedback: (with_private && client_to_freelancer).then(|| {
            pb::ClientPrivateFeedback {
                reason_for_ending: f.reason_for_ending.unwrap_or(0),
                likelihood_to_recommend: f.likelihood_to_recommend.unwrap_or(0),
            }
        }),
        reply: reply.map(reply_pb),
        create_time: Some(to_proto(f.create_time)),
        removed_by_support: false,
    }
}

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
        emit(
            unit,
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

/// Emits RequestExpired for requests the store just expired.
fn emit_expired(unit: &mut Unit, expired: &[store::FeedbackRequest], now: DateTime<Utc>) {
    for request in expired {
        let mut view = request_pb(request, now);
        view.state = pb::FeedbackRequestState::Expired as i32;
        emit(
            unit,
            &request.contract_id,
            now,
            "RequestExpired",
            pb::event::Payload::RequestExpired(pb::RequestExpired {
                feedback_request: Some(view),
            }),
        );
    }
}

fn score(v: &mut Violations, field: &str, value: i32) -> i32 {
    if !(1..=5).contains(&value) {
        v.add(field, "must be between 1 and 5");
    }
    value
}

pub(crate) fn page_token(token: &str, filter: &str) -> Result<Option<String>, Error> {
    paging::decode(token, filter)
        .map_err(|e| Error::InvalidArgument(vec![FieldViolation::new("page_token", e)]))
}

pub(crate) fn next_token<T>(
    items: &mut Vec<T>,
    size: u32,
    filter: &str,
    key: impl Fn(&T) -> String,
) -> String {
    if items.len() > size as usize {
        items.truncate(size as usize);
        items
            .last()
            .map(|last| paging::encode(&key(last), filter))
            .unwrap_or_default()
    } else {
        String::new()
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::WatchEventsResponse, Status>> + Send>>;

impl FeedbackApi {
    async fn check_mid_contract_eligibility(
        &self,
        caller: Caller,
        req: pb::CheckMidContractEligibilityRequest,
        deadline: Option<StdDuration>,
    ) -> Result<pb::CheckMidContractEligibilityResponse, Error> {
        let mut v = Violations::new();
        let id = v.check("contract_id", validate::id(&req.contract_id, "ctr"));
        v.finish()?;
        let (facts, side) = self.contract_for(&caller, &id, deadline).await?;
        if side == Some(Side::Freelancer) {
            return Err(Error::WrongSide("client"));
        }
        let last =
            store::last_mid_feedback_times(self.db.reader(), std::slice::from_ref(&id)).await?;
        let e = self.eligibility(&facts, last.get(&id).copied());
        Ok(pb::CheckMidContractEligibilityResponse {
            eligibility: Some(self.eligibility_pb(&e, &facts.currency)),
        })
    }

    async fn batch_check_mid_contract_eligibility(
        &self,
        caller: Caller,
        req: pb::BatchCheckMidContractEligibilityRequest,
        deadline: Option<StdDuration>,
    ) -> Result<pb::BatchCheckMidContractEligibilityResponse, Error> {
        let mut v = Violations::new();
        if req.contract_ids.is_empty() {
            v.add("contract_ids", "is required");
        }
        if req.contract_ids.len() > MAX_BATCH {
            v.add("contract_ids", format!("must hold at most {MAX_BATCH} ids"));
        }
        v.check_each("contract_ids", &req.contract_ids, |id| {
            validate::id(id, "ctr")
        });
        v.finish()?;
        if caller.user_id().is_none()
            && !caller.has_scope(scope::CONTRACTS_READ)
            && !caller.has_scope(scope::ADMIN)
        {
            return Err(Error::MissingScope(scope::CONTRACTS_READ));
        }
        let mut unique = req.contract_ids.clone();
        unique.sort();
        unique.dedup();
        // One call to contract-service for the whole page.
        let found = self.contracts.batch_get(&unique, deadline).await?;
        let visible: HashMap<&str, &ContractFacts> = found
            .iter()
            .filter(|c| caller.user_id().is_none_or(|user| c.client_id == user))
            .map(|c| (c.id.as_str(), c))
            .collect();
        let ids: Vec<String> = visible.keys().map(|id| (*id).to_owned()).collect();
        let last = store::last_mid_feedback_times(self.db.reader(), &ids).await?;
        let mut response = pb::BatchCheckMidContractEligibilityResponse::default();
        for id in &req.contract_ids {
            match visible.get(id.as_str()) {
                Some(facts) => {
                    let e = self.eligibility(facts, last.get(id).copied());
                    response
                        .eligibilities
                        .push(self.eligibility_pb(&e, &facts.currency));
                }
                None => response.unavailable_contract_ids.push(id.clone()),
            }
        }
        Ok(response)
    }

    async fn submit_mid_contract_feedback(
        &self,
        caller: Caller,
        req: pb::SubmitMidContractFeedbackRequest,
        deadline: Option<StdDuration>,
    ) -> Result<pb::SubmitMidContractFeedbackResponse, Error> {
        let mut v = Violations::new();
        let id = v.check("contract_id", validate::id(&req.contract_id, "ctr"));
        let rating = score(&mut v, "rating", req.rating);
        let comment = v.check(
            "comment",
            validate::text(&req.comment, MAX_COMMENT_CHARS, true),
        );
        let bonus = req.bonus.as_ref().map(|m| {
            let currency = v.check("bonus.currency_code", validate::currency(&m.currency_code));
            let amount = v.check(
                "bonus.amount_minor",
                validate::positive_amount(m.amount_minor),
            );
            if amount > self.rules.max_bonus_minor {
                v.add(
                    "bonus.amount_minor",
                    format!("must be at most {}", self.rules.max_bonus_minor),
                );
            }
            (currency, amount)
        });
        let request_id = v.check("request_id", validate::request_id(&req.request_id));
        v.finish()?;
        let (facts, side) = self.contract_for(&caller, &id, deadline).await?;
        if side != Some(Side::Client) {
            return Err(Error::WrongSide("client"));
        }
        let cohort = self.cohorts.cohort_of(&facts.client_id);
        if let Some((currency, _)) = &bonus {
            if cohort != Cohort::EarlyFeedback {
                return Err(Error::BonusNotAllowed);
            }
            if *currency != facts.currency {
                return Err(Error::BonusCurrency {
                    expected: facts.currency.clone(),
                });
            }
        }
        let now = self.now();
        let fingerprint = pb::SubmitMidContractFeedbackRequest {
            request_id: String::new(),
            ..req.clone()
        };
        let has_bonus = bonus.is_some();
        let rules = self.rules.clone();
        let response = self
            .mutations
            .run(
                caller.key(),
                "SubmitMidContractFeedback",
                request_id,
                &fingerprint,
                move |unit| {
                    Box::pin(async move {
                        // Under the contract's lock, so two concurrent submits cannot both see "eligible".
                        store::lock_contract(unit.tx(), &id).await?;
                        require_eligible(unit, &facts, cohort, &rules, now).await?;
                        let feedback_id = ids::new_id("mfb");
                        let fulfilled =
                            store::fulfil_pending_request(unit.tx(), &id, &feedback_id, now)
                                .await?;
                        let feedback = MidFeedback {
                            id: feedback_id,
                            contract_id: id.clone(),
                            client_id: facts.client_id.clone(),
                            freelancer_id: facts.freelancer_id.clone(),
                            rating,
                            comment,
                            cohort: cohort.as_str().into(),
                            bonus_state: if bonus.is_some() {
                                BonusState::Pending
                            } else {
                                BonusState::None
                            },
                            bonus,
                            bonus_payment_id: None,
                            fulfilled_request_id: fulfilled,
                            create_time: now,
                        };
                        store::insert_mid_feedback(unit.tx(), &feedback).await?;
                        let response = pb::SubmitMidContractFeedbackResponse {
                            feedback: Some(mid_pb(&feedback)),
                        };
                        emit(
                            unit,
                            &id,
                            now,
                            "MidContractFeedbackGiven",
                            pb::event::Payload::MidContractFeedbackGiven(
                                pb::MidContractFeedbackGiven {
                                    feedback: response.feedback.clone(),
                                },
                            ),
                        );
                        Ok::<_, Error>(response)
                    })
                },
            )
            .await?;
        if has_bonus {
            self.bonus_wake.notify_one();
        }
        Ok(response)
    }

    async fn request_mid_contract_feedback(
        &self,
        caller: Caller,
        req: pb::RequestMidContractFeedbackRequest,
        deadline: Option<StdDuration>,
    ) -> Result<pb::RequestMidContractFeedbackResponse, Error> {
        let mut v = Violations::new();
        let id = v.check("contract_id", validate::id(&req.contract_id, "ctr"));
        let request_id = v.check("request_id", validate::request_id(&req.request_id));
        v.finish()?;
        let (facts, side) = self.contract_for(&caller, &id, deadline).await?;
        if side != Some(Side::Freelancer) {
            return Err(Error::WrongSide("freelancer"));
        }
        let now = self.now();
        let fingerprint = pb::RequestMidContractFeedbackRequest {
            request_id: String::new(),
            ..req.clone()
        };
        let cohort = self.cohorts.cohort_of(&facts.client_id);
        let rules = self.rules.clone();
        self.mutations
            .run(
                caller.key(),
                "RequestMidContractFeedback",
                request_id,
                &fingerprint,
                move |unit| {
                    Box::pin(async move {
                        store::lock_contract(unit.tx(), &id).await?;
                        let expired =
                            store::expire_requests(unit.tx(), Some(&id), now, 100).await?;
                        emit_expired(unit, &expired, now);
                        require_eligible(unit, &facts, cohort, &rules, now).await?;
                        let request = store::FeedbackRequest {
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
                        emit(
                            unit,
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
                },
            )
            .await
    }

    async fn list_feedback_requests(
        &self,
        caller: Caller,
        req: pb::ListFeedbackRequestsRequest,
        deadline: Option<StdDuration>,
    ) -> Result<pb::ListFeedbackRequestsResponse, Error> {
        let mut v = Violations::new();
        let id = v.check("contract_id", validate::id(&req.contract_id, "ctr"));
        let size = v.check(
            "page_size",
            validate::page_size(req.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE),
        );
        v.finish()?;
        let filter = format!("requests:{id}");
        let after = page_token(&req.page_token, &filter)?;
        self.contract_for(&caller, &id, deadline).await?;
        let mut requests =
            store::list_requests(self.db.reader(), &id, after.as_deref(), i64::from(size) + 1)
                .await?;
        let next_page_token = next_token(&mut requests, size, &filter, |r| r.id.clone());
        let now = self.now();
        Ok(pb::ListFeedbackRequestsResponse {
            feedback_requests: requests.iter().map(|r| request_pb(r, now)).collect(),
            next_page_token,
        })
    }

    async fn submit_end_contract_feedback(
        &self,
        caller: Caller,
        req: pb::SubmitEndContractFeedbackRequest,
        deadline: Option<StdDuration>,
    ) -> Result<pb::SubmitEndContractFeedbackResponse, Error> {
        let mut v = Violations::new();
        let id = v.check("contract_id", validate::id(&req.contract_id, "ctr"));
        let comment = v.check(
            "comment",
            validate::text(&req.comment, MAX_COMMENT_CHARS, true),
        );
        let scores = match (&req.freelancer_scores, &req.client_scores) {
            (Some(s), None) => Some((
                Side::Client,
                [
                    score(&mut v, "freelancer_scores.skills", s.skills),
                    score(
                        &mut v,
                        "freelancer_scores.quality_of_work",
                        s.quality_of_work,
                    ),
                    score(&mut v, "freelancer_scores.availability", s.availability),
                    score(
                        &mut v,
                        "freelancer_scores.adherence_to_schedule",
                        s.adherence_to_schedule,
                    ),
                    score(&mut v, "freelancer_scores.communication", s.communication),
                    score(&mut v, "freelancer_scores.cooperation", s.cooperation),
                ],
            )),
            (None, Some(s)) => Some((
                Side::Freelancer,
                [
                    score(
                        &mut v,
                        "client_scores.clarity_of_requirements",
                        s.clarity_of_requirements,
                    ),
                    score(&mut v, "client_scores.communication", s.communication),
                    score(&mut v, "client_scores.cooperation", s.cooperation),
                    score(&mut v, "client_scores.availability", s.availability),
                    score(
                        &mut v,
                        "client_scores.reasonable_deadlines",
                        s.reasonable_deadlines,
                    ),
                    score(
                        &mut v,
                        "client_scores.payment_promptness",
                        s.payment_promptness,
                    ),
                ],
            )),
            _ => {
                v.add(
                    "freelancer_scores",
                    "set exactly one of freelancer_scores (client) and client_scores (freelancer)",
                );
                None
            }
        };
        let private = match (&req.private_feedback, scores.map(|(s, _)| s)) {
            (Some(p), Some(Side::Client)) => {
                let reason: pb::EndReason = v.check(
                    "private_feedback.reason_for_ending",
                    validate::known_enum(p.reason_for_ending),
                );
                if !(0..=10).contains(&p.likelihood_to_recommend) {
                    v.add(
                        "private_feedback.likelihood_to_recommend",
                        "must be between 0 and 10",
                    );
                }
                Some((reason as i32, p.likelihood_to_recommend))
            }
            (None, Some(Side::Client)) => {
                v.add("private_feedback", "is required with freelancer_scores");
                None
            }
            (Some(_), _) => {
                v.add("private_feedback", "only the client gives private feedback");
                None
            }
            (None, _) => None,
        };
        let request_id = v.check("request_id", validate::request_id(&req.request_id));
        v.finish()?;
        let Some((direction_side, scores)) = scores else {
            return Err(Error::Internal("scores validated but missing".into()));
        };
        let (facts, side) = self.contract_for(&caller, &id, deadline).await?;
        let Some(side) = side else {
            return Err(Error::WrongSide("client or freelancer"));
        };
        if side != direction_side {
            let field = if side == Side::Client {
                "freelancer_scores"
            } else {
                "client_scores"
            };
            return Err(Error::InvalidArgument(vec![FieldViolation::new(
                field,
                "is what this caller rates; the other set is for the other party",
            )]));
        }
        let now = self.now();
        let end = match facts.end_time {
            Some(end) if !facts.active && end <= now => end,
            _ => return Err(Error::ContractNotEnded),
        };
        let (_, closes) = domain::end_feedback_window(end, &self.rules);
        if now >= closes {
            return Err(Error::FeedbackWindowClosed { closed_at: closes });
        }
        let fingerprint = pb::SubmitEndContractFeedbackRequest {
            request_id: String::new(),
            ..req.clone()
        };
        self.mutations
            .run(
                caller.key(),
                "SubmitEndContractFeedback",
                request_id,
                &fingerprint,
                move |unit| {
                    Box::pin(async move {
                        // Under the contract's lock, so when both sides submit at once exactly one reveals.
                        store::lock_contract(unit.tx(), &id).await?;
                        let client = side == Side::Client;
                        let feedback = EndFeedback {
                            id: ids::new_id("efb"),
                            contract_id: id.clone(),
                            direction: if client {
                                CLIENT_TO_FREELANCER
                            } else {
                                FREELANCER_TO_CLIENT
                            }
                            .into(),
                            author_id: if client {
                                facts.client_id.clone()
                            } else {
                                facts.freelancer_id.clone()
                            },
                            recipient_id: if client {
                                facts.freelancer_id.clone()
                            } else {
                                facts.client_id.clone()
                            },
                            client_id: facts.client_id.clone(),
                            freelancer_id: facts.freelancer_id.clone(),
                            scores,
                            comment,
                            reason_for_ending: private.map(|(r, _)| r),
                            likelihood_to_recommend: private.map(|(_, l)| l),
                            contract_end: end,
                            window_close: closes,
                            revealed_at: None,
                            create_time: now,
                        };
                        store::insert_end_feedback(unit.tx(), &feedback).await?;
                        emit(
                            unit,
                            &id,
                            now,
                            "EndContractFeedbackSubmitted",
                            pb::event::Payload::EndContractFeedbackSubmitted(
                                pb::EndContractFeedbackSubmitted {
                                    feedback_id: feedback.id.clone(),
                                    direction: if client {
                                        pb::Direction::ClientToFreelancer
                                    } else {
                                        pb::Direction::FreelancerToClient
                                    } as i32,
                                },
                            ),
                        );
                        let both = store::end_feedback_of_contract(&mut **unit.tx(), &id)
                            .await?
                            .len()
                            == 2;
                        let revealed = if both {
                            let ids = store::reveal(unit.tx(), &id, now).await?;
                            if !ids.is_empty() {
                                emit(
                                    unit,
                                    &id,
                                    now,
                                    "FeedbackRevealed",
                                    pb::event::Payload::FeedbackRevealed(pb::FeedbackRevealed {
                                        feedback_ids: ids,
                                    }),
                                );
                            }
                            true
                        } else {
                            false
                        };
                        let response = pb::SubmitEndContractFeedbackResponse {
                            feedback: Some(end_pb(&feedback, true, None)),
                            revealed,
                        };
                        Ok::<_, Error>(response)
                    })
                },
            )
            .await
    }

    async fn get_end_contract_feedback(
        &self,
        caller: Caller,
        req: pb::GetEndContractFeedbackRequest,
        deadline: Option<StdDuration>,
    ) -> Result<pb::GetEndContractFeedbackResponse, Error> {
        let mut v = Violations::new();
        let id = v.check("contract_id", validate::id(&req.contract_id, "ctr"));
        v.finish()?;
        let (facts, side) = self.contract_for(&caller, &id, deadline).await?;
        let rows = store::end_feedback_of_contract(self.db.reader(), &id).await?;
        let ids: Vec<String> = rows.iter().map(|f| f.id.clone()).collect();
        let replies = store::replies_to(self.db.reader(), &ids).await?;
        let now = self.now();
        let revealed = match facts.end_time {
            Some(end) => {
                rows.iter().any(|f| f.revealed_at.is_some())
                    || domain::is_revealed(rows.len() == 2, end, &self.rules, now)
            }
            None => false,
        };
        let mine = |f: &EndFeedback| match side {
            Some(Side::Client) => f.direction == CLIENT_TO_FREELANCER,
            Some(Side::Freelancer) => f.direction == FREELANCER_TO_CLIENT,
            None => true,
        };
        let mut feedback: Vec<pb::EndContractFeedback> = rows
            .iter()
            // Double-blind: the other side's feedback only once revealed.
            .filter(|f| mine(f) || revealed)
            // The client's private part: its author and staff only.
            .map(|f| end_pb(f, side != Some(Side::Freelancer), replies.get(&f.id)))
            .collect();
        if side.is_some() {
            // Parties see what support hid as removed; staff see it whole.
            let mut shown: Vec<String> = ids.clone();
            shown.extend(replies.values().map(|r| r.id.clone()));
            let hidden = moderation::store::hidden_of(self.db.reader(), &shown).await?;
            moderation::redact_ends(&mut feedback, &hidden);
        }
        Ok(pb::GetEndContractFeedbackResponse {
            contract_id: id,
            feedback,
            client_submitted: rows.iter().any(|f| f.direction == CLIENT_TO_FREELANCER),
            freelancer_submitted: rows.iter().any(|f| f.direction == FREELANCER_TO_CLIENT),
            revealed,
            window_close_time: facts
                .end_time
                .map(|end| to_proto(domain::end_feedback_window(end, &self.rules).1)),
        })
    }

    async fn reply_to_feedback(
        &self,
        caller: Caller,
        req: pb::ReplyToFeedbackRequest,
    ) -> Result<pb::ReplyToFeedbackResponse, Error> {
        let mut v = Violations::new();
        if shared::ids::is_id("mfb", &req.feedback_id) {
            return Err(Error::MidContractNotReplyable);
        }
        let feedback_id = v.check("feedback_id", validate::id(&req.feedback_id, "efb"));
        let text = v.check("text", validate::text(&req.text, MAX_COMMENT_CHARS, true));
        let request_id = v.check("request_id", validate::request_id(&req.request_id));
        v.finish()?;
        let user = caller
            .user_id()
            .ok_or(Error::WrongSide("recipient"))?
            .to_owned();
        let now = self.now();
        let fingerprint = pb::ReplyToFeedbackRequest {
            request_id: String::new(),
            ..req.clone()
        };
        let rules = self.rules.clone();
        self.mutations
            .run(
                caller.key(),
                "ReplyToFeedback",
                request_id,
                &fingerprint,
                move |unit| {
                    Box::pin(async move {
                        let not_yours = || Error::NotAParty {
                            contract_id: format!("of feedback {feedback_id}"),
                        };
                        let feedback = store::get_end_feedback(&mut **unit.tx(), &feedback_id)
                            .await?
                            .ok_or_else(not_yours)?;
                        if feedback.author_id == user {
                            return Err(Error::WrongSide("recipient"));
                        }
                        if feedback.recipient_id != user {
                            return Err(not_yours());
                        }
                        let both = store::end_feedback_of_contract(
                            &mut **unit.tx(),
                            &feedback.contract_id,
                        )
                        .await?
                        .len()
                            == 2;
                        if feedback.revealed_at.is_none()
                            && !domain::is_revealed(both, feedback.contract_end, &rules, now)
                        {
                            return Err(Error::FeedbackNotRevealed);
                        }
                        let closes = feedback.contract_end + rules.reply_window;
                        if now >= closes {
                            return Err(Error::ReplyWindowClosed { closed_at: closes });
                        }
                        let reply = store::Reply {
                            id: ids::new_id("rpl"),
                            feedback_id: feedback.id.clone(),
                            author_id: user,
                            text,
                            // A freelancer's reply is public; a client's is for the freelancer only.
                            public: feedback.direction == CLIENT_TO_FREELANCER,
                            create_time: now,
                        };
                        store::insert_reply(unit.tx(), &reply).await?;
                        let response = pb::ReplyToFeedbackResponse {
                            reply: Some(reply_pb(&reply)),
                        };
                        emit(
                            unit,
                            &feedback.contract_id,
                            now,
                            "ReplyPosted",
                            pb::event::Payload::ReplyPosted(pb::ReplyPosted {
                                reply: response.reply.clone(),
                            }),
                        );
                        Ok::<_, Error>(response)
                    })
                },
            )
            .await
    }

    async fn list_work_history(
        &self,
        _caller: Caller,
        req: pb::ListWorkHistoryRequest,
        deadline: Option<StdDuration>,
    ) -> Result<pb::ListWorkHistoryResponse, Error> {
        let mut v = Violations::new();
        let freelancer = v.check("freelancer_id", validate::token(&req.freelancer_id));
        let size = v.check(
            "page_size",
            validate::page_size(req.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE),
        );
        v.finish()?;
        let filter = format!("history:{freelancer}");
        let after = page_token(&req.page_token, &filter)?;
        let mut contract_ids = store::history_contracts(
            self.db.reader(),
            &freelancer,
            after.as_deref(),
            i64::from(size) + 1,
        )
        .await?;
        let next_page_token = next_token(&mut contract_ids, size, &filter, Clone::clone);
        let facts: HashMap<String, ContractFacts> = self
            .contracts
            .batch_get(&contract_ids, deadline)
            .await?
            .into_iter()
            .map(|c| (c.id.clone(), c))
            .collect();
        let mids = store::mid_feedback_of_contracts(self.db.reader(), &contract_ids).await?;
        let ends = store::client_feedback_of_contracts(self.db.reader(), &contract_ids).await?;
        let end_ids: Vec<String> = ends.iter().map(|f| f.id.clone()).collect();
        let replies = store::replies_to(self.db.reader(), &end_ids).await?;
        let now = self.now();
        let mut shown: Vec<String> = mids.iter().map(|m| m.id.clone()).collect();
        shown.extend(end_ids.iter().cloned());
        shown.extend(replies.values().map(|r| r.id.clone()));
        let hidden = moderation::store::hidden_of(self.db.reader(), &shown).await?;
        let items = contract_ids
            .iter()
            .map(|id| {
                let contract = facts.get(id);
                let client_feedback = ends
                    .iter()
                    .find(|f| &f.contract_id == id)
                    .filter(|f| {
                        // Public only once revealed, and only with at least $1 paid.
                        let revealed = f.revealed_at.is_some() || now >= f.window_close;
                        revealed
                            && contract
                                .is_some_and(|c| c.net_paid_minor >= self.rules.min_net_paid_minor)
                    })
                    .map(|f| {
                        let mut view = end_pb(f, false, replies.get(&f.id).filter(|r| r.public));
                        moderation::redact_ends(std::slice::from_mut(&mut view), &hidden);
                        view
                    });
                pb::WorkHistoryItem {
                    contract_id: id.clone(),
                    client_id: contract.map(|c| c.client_id.clone()).unwrap_or_default(),
                    end_time: contract.and_then(|c| opt_to_proto(c.end_time)),
                    client_feedback,
                    mid_contract_feedback: mids
                        .iter()
                        .filter(|m| &m.contract_id == id)
                        .map(|m| {
                            let mut view = mid_pb(m);
                            if hidden.contains(&m.id) {
                                moderation::redact_mid(&mut view);
                            }
                            view
                        })
                        .collect(),
                }
            })
            .collect();
        Ok(pb::ListWorkHistoryResponse {
            items,
            next_page_token,
        })
    }

    async fn list_job_success_inputs(
        &self,
        caller: Caller,
        req: pb::ListJobSuccessInputsRequest,
    ) -> Result<pb::ListJobSuccessInputsResponse, Error> {
        if !caller.has_scope(scope::JSS_READ) {
            return Err(Error::MissingScope(scope::JSS_READ));
        }
        let mut v = Violations::new();
        let freelancer = v.check("freelancer_id", validate::token(&req.freelancer_id));
        let size = v.check(
            "page_size",
            validate::page_size(req.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE),
        );
        v.finish()?;
        let filter = format!("jss:{freelancer}");
        let after = page_token(&req.page_token, &filter)?;
        let mut rows = store::job_success_inputs(
            self.db.reader(),
            &freelancer,
            after.as_deref(),
            i64::from(size) + 1,
        )
        .await?;
        let next_page_token = next_token(&mut rows, size, &filter, |f| f.id.clone());
        // Left out while support has them hidden.
        let all: Vec<String> = rows.iter().map(|f| f.id.clone()).collect();
        let hidden = moderation::store::hidden_of(self.db.reader(), &all).await?;
        rows.retain(|f| !hidden.contains(&f.id));
        let ids: Vec<String> = rows.iter().map(|f| f.id.clone()).collect();
        let replies = store::replies_to(self.db.reader(), &ids).await?;
        Ok(pb::ListJobSuccessInputsResponse {
            feedback: rows
                .iter()
                .map(|f| end_pb(f, true, replies.get(&f.id)))
                .collect(),
            next_page_token,
        })
    }

    fn watch_events(
        &self,
        caller: &Caller,
        req: pb::WatchEventsRequest,
    ) -> Result<EventStream, Error> {
        if !caller.has_scope(scope::EVENTS_READ) {
            return Err(Error::MissingScope(scope::EVENTS_READ));
        }
        if req.after_sequence < 0 {
            return Err(Error::InvalidArgument(vec![FieldViolation::new(
                "after_sequence",
                "must not be negative",
            )]));
        }
        let consumer = self
            .metrics
            .as_ref()
            .map(|m| m.event_consumer(caller.subject()));
        let stream = outbox::watch(
            self.db.clone(),
            &self.relay,
            req.after_sequence,
            consumer,
            |stored| {
                let mut event = pb::Event::decode(stored.payload.as_slice()).map_err(|err| {
                    Status::from(Error::Internal(format!(
                        "undecodable event {}: {err}",
                        stored.event_id
                    )))
                })?;
                event.sequence = stored.sequence;
                Ok(pb::WatchEventsResponse { event: Some(event) })
            },
        );
        Ok(Box::pin(stream))
    }
}

/// Runs one handler: caller from the interceptor, the caller's deadline for
/// calls to contract-service, errors mapped in one place.
macro_rules! handle {
    ($self:ident, $request:ident, $method:ident) => {{
        let caller = Caller::of(&$request)?;
        let deadline = shared::deadline::remaining($request.metadata());
        $self
            .$method(caller, $request.into_inner(), deadline)
            .await
            .map(Response::new)
            .map_err(Status::from)
    }};
    ($self:ident, $request:ident, $method:ident, local) => {{
        let caller = Caller::of(&$request)?;
        $self
            .$method(caller, $request.into_inner())
            .await
            .map(Response::new)
            .map_err(Status::from)
    }};
}

#[tonic::async_trait]
impl pb::feedback_service_server::FeedbackService for FeedbackApi {
    async fn check_mid_contract_eligibility(
        &self,
        request: Request<pb::CheckMidContractEligibilityRequest>,
    ) -> Result<Response<pb::CheckMidContractEligibilityResponse>, Status> {
        handle!(self, request, check_mid_contract_eligibility)
    }
    async fn batch_check_mid_contract_eligibility(
        &self,
        request: Request<pb::BatchCheckMidContractEligibilityRequest>,
    ) -> Result<Response<pb::BatchCheckMidContractEligibilityResponse>, Status> {
        handle!(self, request, batch_check_mid_contract_eligibility)
    }
    async fn submit_mid_contract_feedback(
        &self,
        request: Request<pb::SubmitMidContractFeedbackRequest>,
    ) -> Result<Response<pb::SubmitMidContractFeedbackResponse>, Status> {
        handle!(self, request, submit_mid_contract_feedback)
    }
    async fn request_mid_contract_feedback(
        &self,
        request: Request<pb::RequestMidContractFeedbackRequest>,
    ) -> Result<Response<pb::RequestMidContractFeedbackResponse>, Status> {
        handle!(self, request, request_mid_contract_feedback)
    }
    async fn list_feedback_requests(
        &self,
        request: Request<pb::ListFeedbackRequestsRequest>,
    ) -> Result<Response<pb::ListFeedbackRequestsResponse>, Status> {
        handle!(self, request, list_feedback_requests)
    }
    async fn submit_end_contract_feedback(
        &self,
        request: Request<pb::SubmitEndContractFeedbackRequest>,
    ) -> Result<Response<pb::SubmitEndContractFeedbackResponse>, Status> {
        handle!(self, request, submit_end_contract_feedback)
    }
    async fn get_end_contract_feedback(
        &self,
        request: Request<pb::GetEndContractFeedbackRequest>,
    ) -> Result<Response<pb::GetEndContractFeedbackResponse>, Status> {
        handle!(self, request, get_end_contract_feedback)
    }
    async fn reply_to_feedback(
        &self,
        request: Request<pb::ReplyToFeedbackRequest>,
    ) -> Result<Response<pb::ReplyToFeedbackResponse>, Status> {
        handle!(self, request, reply_to_feedback, local)
    }
    async fn list_work_history(
        &self,
        request: Request<pb::ListWorkHistoryRequest>,
    ) -> Result<Response<pb::ListWorkHistoryResponse>, Status> {
        handle!(self, request, list_work_history)
    }
    async fn list_job_success_inputs(
        &self,
        request: Request<pb::ListJobSuccessInputsRequest>,
    ) -> Result<Response<pb::ListJobSuccessInputsResponse>, Status> {
        handle!(self, request, list_job_success_inputs, local)
    }
    async fn get_notification_preferences(
        &self,
        request: Request<pb::GetNotificationPreferencesRequest>,
    ) -> Result<Response<pb::GetNotificationPreferencesResponse>, Status> {
        let caller = Caller::of(&request)?;
        crate::prompts::get_preferences(self, caller, request.into_inner())
            .await
            .map(Response::new)
            .map_err(Status::from)
    }
    async fn hide_feedback(
        &self,
        request: Request<pb::HideFeedbackRequest>,
    ) -> Result<Response<pb::HideFeedbackResponse>, Status> {
        let caller = Caller::of(&request)?;
        moderation::hide(self, caller, request.into_inner())
            .await
            .map(Response::new)
            .map_err(Status::from)
    }
    async fn restore_feedback(
        &self,
        request: Request<pb::RestoreFeedbackRequest>,
    ) -> Result<Response<pb::RestoreFeedbackResponse>, Status> {
        let caller = Caller::of(&request)?;
        moderation::restore(self, caller, request.into_inner())
            .await
            .map(Response::new)
            .map_err(Status::from)
    }
    async fn list_moderation_actions(
        &self,
        request: Request<pb::ListModerationActionsRequest>,
    ) -> Result<Response<pb::ListModerationActionsResponse>, Status> {
        let caller = Caller::of(&request)?;
        moderation::list(self, caller, request.into_inner())
            .await
            .map(Response::new)
            .map_err(Status::from)
    }
    async fn update_notification_preferences(
        &self,
        request: Request<pb::UpdateNotificationPreferencesRequest>,
    ) -> Result<Response<pb::UpdateNotificationPreferencesResponse>, Status> {
        let caller = Caller::of(&request)?;
        crate::prompts::update_preferences(self, caller, request.into_inner())
            .await
            .map(Response::new)
            .map_err(Status::from)
    }

    type WatchEventsStream = EventStream;

    async fn watch_events(
        &self,
        request: Request<pb::WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        let caller = Caller::of(&request)?;
        self.watch_events(&caller, request.into_inner())
            .map(Response::new)
            .map_err(Status::from)
    }
}

/// Background work: pay pending bonuses until they are paid, expire feedback
/// requests and reveal feedback whose window closed.
pub mod workers {
    use super::*;

    /// Pays every pending bonus once; returns how many are still pending.
    pub async fn pay_pending_bonuses(api: &FeedbackApi) -> Result<usize, Error> {
        let pending = store::pending_bonuses(api.db.reader(), 50).await?;
        let mut left = 0;
        for feedback in pending {
            let Some((currency, amount)) = feedback.bonus.clone() else {
                continue;
            };
            // Same key every time (derived from the feedback id): never paid twice.
            match api
                .contracts
                .pay_bonus(
                    &feedback.contract_id,
                    &feedback.id,
                    &currency,
                    amount,
                    feedback.create_time,
                )
                .await
            {
                Ok(payment_id) => {
                    let now = api.now();
                    let (feedback_id, contract_id) =
                        (feedback.id.clone(), feedback.contract_id.clone());
                    let paid_id = payment_id.clone();
                    api.mutations
                        .run(String::new(), "MarkBonusPaid", None, &(), move |unit| {
                            Box::pin(async move {
                                if store::mark_bonus_paid(unit.tx(), &feedback_id, &paid_id).await?
                                {
                                    let paid = pb::BonusPaid {
                                        feedback_id,
                                        payment_id: paid_id,
                                        amount: Some(Money {
                                            currency_code: currency,
                                            amount_minor: amount,
                                        }),
                                    };
                                    emit(
                                        unit,
                                        &contract_id,
                                        now,
                                        "BonusPaid",
                                        pb::event::Payload::BonusPaid(paid),
                                    );
                                }
                                Ok::<_, Error>(())
                            })
                        })
                        .await?;
                    tracing::info!(feedback_id = %feedback.id, payment_id = %payment_id, "bonus paid");
                }
                Err(err) => {
                    left += 1;
                    tracing::warn!(feedback_id = %feedback.id, error = %err, "bonus payment failed; will retry");
                }
            }
        }
        Ok(left)
    }

    /// Retries pending bonuses until each is paid: at once when woken, then
    /// with exponential backoff while payments keep failing.
    pub async fn run_bonus_payer(
        api: FeedbackApi,
        max_backoff: StdDuration,
        stop: impl Future<Output = ()>,
    ) {
        tokio::pin!(stop);
        let mut backoff = StdDuration::from_millis(100);
        loop {
            let wait = match pay_pending_bonuses(&api).await {
                Ok(0) => {
                    backoff = StdDuration::from_millis(100);
                    StdDuration::from_secs(30)
                }
                Ok(_) => {
                    backoff = (backoff * 2).min(max_backoff);
                    backoff
                }
                Err(err) => {
                    tracing::warn!(error = %err, "bonus payer cannot read pending bonuses");
                    backoff = (backoff * 2).min(max_backoff);
                    backoff
                }
            };
            tokio::select! {
                _ = &mut stop => return,
                _ = api.bonus_wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// One sweep: expire overdue requests, reveal feedback whose window
    /// closed, and send the end-of-contract reminders that are due.
    pub async fn sweep(api: &FeedbackApi) -> Result<(), Error> {
        crate::prompts::send_due_reminders(api).await?;
        let now = api.now();
        api.mutations
            .run(String::new(), "ExpireRequests", None, &(), move |unit| {
                Box::pin(async move {
                    let expired = store::expire_requests(unit.tx(), None, now, 500).await?;
                    emit_expired(unit, &expired, now);
                    Ok::<_, Error>(())
                })
            })
            .await?;
        for contract_id in store::closed_unrevealed_contracts(api.db.reader(), now, 500).await? {
            api.mutations
                .run(String::new(), "RevealFeedback", None, &(), move |unit| {
                    Box::pin(async move {
                        store::lock_contract(unit.tx(), &contract_id).await?;
                        let ids = store::reveal(unit.tx(), &contract_id, now).await?;
                        if !ids.is_empty() {
                            emit(
                                unit,
                                &contract_id,
                                now,
                                "FeedbackRevealed",
                                pb::event::Payload::FeedbackRevealed(pb::FeedbackRevealed {
                                    feedback_ids: ids,
                                }),
                            );
                        }
                        Ok::<_, Error>(())
                    })
                })
                .await?;
        }
        Ok(())
    }

    pub async fn run_sweeper(
        api: FeedbackApi,
        interval: StdDuration,
        stop: impl Future<Output = ()>,
    ) {
        tokio::pin!(stop);
        loop {
            if let Err(err) = sweep(&api).await {
                tracing::warn!(error = %err, "feedback sweeper failed; will retry");
            }
            tokio::select! {
                _ = &mut stop => return,
                _ = tokio::time::sleep(interval) => {}
            }
        }
    }
}
