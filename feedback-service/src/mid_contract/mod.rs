//! Mid-contract feedback: eligibility (single and batch), submitting it
//! (with an optional bonus), and its proto mapping.

mod store;
pub(crate) use store::{mark_bonus_paid, pending_bonuses};

use std::collections::HashMap;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Utc};

use crate::api::FeedbackApi;
use crate::common::{require_eligible, score};
use crate::domain::{self, Cohort, ContractFacts, Eligibility, Side};
use crate::error::Error;
use crate::store::{BonusState, MidFeedback};
use shared::auth::{Caller, scope};
use shared::ids;
use shared::proto::contract::v1::Money;
use shared::proto::feedback::v1 as pb;
use shared::time::{opt_to_proto, to_proto};
use shared::validate::{self, MAX_COMMENT_CHARS, Violations};
use shared::writer::Call;

const MAX_BATCH: usize = 100;

impl FeedbackApi {
    pub(crate) fn eligibility(
        &self,
        facts: &ContractFacts,
        last_feedback: Option<DateTime<Utc>>,
    ) -> Eligibility {
        let cohort = self.cohorts.cohort_of(&facts.client_id);
        domain::mid_contract_eligibility(facts, last_feedback, cohort, &self.rules, self.now())
    }

    pub(crate) fn eligibility_pb(
        &self,
        e: &Eligibility,
        currency: &str,
    ) -> pb::MidContractEligibility {
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

pub(crate) fn cohort_pb(c: Cohort) -> pb::Cohort {
    match c {
        Cohort::Baseline => pb::Cohort::Baseline,
        Cohort::EarlyFeedback => pb::Cohort::EarlyFeedback,
    }
}

pub(crate) fn mid_pb(f: &MidFeedback) -> pb::MidContractFeedback {
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

impl FeedbackApi {
    pub(crate) async fn check_mid_contract_eligibility(
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
            crate::store::last_mid_feedback_times(self.db.reader(), std::slice::from_ref(&id))
                .await?;
        let e = self.eligibility(&facts, last.get(&id).copied());
        Ok(pb::CheckMidContractEligibilityResponse {
            eligibility: Some(self.eligibility_pb(&e, &facts.currency)),
        })
    }

    pub(crate) async fn batch_check_mid_contract_eligibility(
        &self,
        caller: Caller,
        req: pb::BatchCheckMidContractEligibilityRequest,
        deadline: Option<StdDuration>,
    ) -> Result<pb::BatchCheckMidContractEligibilityResponse, Error> {
        let mut v = Violations::new();
        v.check_batch("contract_ids", &req.contract_ids, "ctr", MAX_BATCH);
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
        let last = crate::store::last_mid_feedback_times(self.db.reader(), &ids).await?;
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

    pub(crate) async fn submit_mid_contract_feedback(
        &self,
        caller: Caller,
        req: pb::SubmitMidContractFeedbackRequest,
        deadline: Option<StdDuration>,
    ) -> Result<pb::SubmitMidContractFeedbackResponse, Error> {
        let mut v = Violations::new();
        let call = Call::of(&mut v, &caller, "SubmitMidContractFeedback", &req);
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
        let has_bonus = bonus.is_some();
        let rules = self.rules.clone();
        let response = self
            .mutations
            .run(call, move |unit| {
                Box::pin(async move {
                    // Under the contract's lock, so two concurrent submits cannot both see "eligible".
                    crate::store::lock_contract(unit.tx(), &id).await?;
                    require_eligible(unit, &facts, cohort, &rules, now).await?;
                    let feedback_id = ids::new_id("mfb");
                    let fulfilled =
                        crate::requests::fulfil_pending_request(unit.tx(), &id, &feedback_id, now)
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
                    unit.event(
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
            })
            .await?;
        if has_bonus {
            self.bonus_wake.notify_one();
        }
        Ok(response)
    }
}
