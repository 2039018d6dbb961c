//! End-of-contract feedback: submitting it, reading it, replying to it,
//! and its proto mapping.

mod store;
pub(crate) use store::{closed_unrevealed_contracts, reveal};

use std::time::Duration as StdDuration;

use crate::api::FeedbackApi;
use crate::common::score;
use crate::domain::{self, Side};
use crate::error::Error;
use crate::moderation;
use crate::store::{CLIENT_TO_FREELANCER, EndFeedback, FREELANCER_TO_CLIENT};
use shared::auth::Caller;
use shared::ids;
use shared::proto::feedback::v1 as pb;
use shared::status::Common;
use shared::status::FieldViolation;
use shared::time::to_proto;
use shared::validate::{self, MAX_COMMENT_CHARS, Violations};
use shared::writer::Call;

pub(crate) fn reply_pb(r: &crate::store::Reply) -> pb::Reply {
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
pub(crate) fn end_pb(
    f: &EndFeedback,
    with_private: bool,
    reply: Option<&crate::store::Reply>,
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

impl FeedbackApi {
    pub(crate) async fn submit_end_contract_feedback(
        &self,
        caller: Caller,
        req: pb::SubmitEndContractFeedbackRequest,
        deadline: Option<StdDuration>,
    ) -> Result<pb::SubmitEndContractFeedbackResponse, Error> {
        let mut v = Violations::new();
        let call = Call::of(&mut v, &caller, "SubmitEndContractFeedback", &req);
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
        v.finish()?;
        let Some((direction_side, scores)) = scores else {
            return Err(Error::from(Common::Internal(
                "scores validated but missing".into(),
            )));
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
            return Err(Error::from(Common::InvalidArgument(vec![
                FieldViolation::new(
                    field,
                    "is what this caller rates; the other set is for the other party",
                ),
            ])));
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
        self.mutations
            .run(call, move |unit| {
                Box::pin(async move {
                    // Under the contract's lock, so when both sides submit at once exactly one reveals.
                    crate::store::lock_contract(unit.tx(), &id).await?;
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
                    unit.event(
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
                            unit.event(
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
            })
            .await
    }

    pub(crate) async fn get_end_contract_feedback(
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
        let replies = crate::store::replies_to(self.db.reader(), &ids).await?;
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

    pub(crate) async fn reply_to_feedback(
        &self,
        caller: Caller,
        req: pb::ReplyToFeedbackRequest,
    ) -> Result<pb::ReplyToFeedbackResponse, Error> {
        let mut v = Violations::new();
        let call = Call::of(&mut v, &caller, "ReplyToFeedback", &req);
        if shared::ids::is_id("mfb", &req.feedback_id) {
            return Err(Error::MidContractNotReplyable);
        }
        let feedback_id = v.check("feedback_id", validate::id(&req.feedback_id, "efb"));
        let text = v.check("text", validate::text(&req.text, MAX_COMMENT_CHARS, true));
        v.finish()?;
        let user = caller
            .user_id()
            .ok_or(Error::WrongSide("recipient"))?
            .to_owned();
        let now = self.now();
        let rules = self.rules.clone();
        self.mutations
            .run(call, move |unit| {
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
                    let both =
                        store::end_feedback_of_contract(&mut **unit.tx(), &feedback.contract_id)
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
                    let reply = crate::store::Reply {
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
                    unit.event(
                        &feedback.contract_id,
                        now,
                        "ReplyPosted",
                        pb::event::Payload::ReplyPosted(pb::ReplyPosted {
                            reply: response.reply.clone(),
                        }),
                    );
                    Ok::<_, Error>(response)
                })
            })
            .await
    }
}
