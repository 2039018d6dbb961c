//! A dispute's transitions after filing: the freelancer accepts or declines,
//! support resolves, the client withdraws.

use super::rules;
use super::rules::{Dispute, EscalationCause, Resolver};
use super::store::{self, Resolution};
use super::{day, load, lost_race, notify, optional_minutes, reread, settle};
use crate::common::require_scope;
use crate::contracts::rules::Contract;
use crate::domain::{DisputeState, Role};
use crate::error::Error;
use crate::grpc::ContractApi;
use chrono::{DateTime, Utc};
use shared::auth::{Caller, scope};
use shared::db::Tx;
use shared::proto::contract::v1 as pb;
use shared::validate::{self, MAX_COMMENT_CHARS, Violations};
use shared::writer::Call;

/// What every answer to an OPEN dispute starts with (accept, decline,
/// withdraw): the dispute and its contract, for a caller with one of
/// `roles`, while the dispute can still be answered at `now`.
async fn load_answerable(
    tx: &mut Tx,
    id: &str,
    caller: &Caller,
    roles: &[Role],
    now: DateTime<Utc>,
) -> Result<(Dispute, Contract), Error> {
    let (dispute, contract) = load(tx, id, caller).await?;
    contract.authorize_roles(caller, roles)?;
    rules::check_answerable(&dispute, now)?;
    Ok((dispute, contract))
}

impl ContractApi {
    pub(crate) async fn accept_dispute(
        &self,
        caller: Caller,
        req: pb::AcceptDisputeRequest,
    ) -> Result<pb::AcceptDisputeResponse, Error> {
        let now = self.now();
        let mut v = Violations::new();
        let call = Call::of(&mut v, &caller, "AcceptDispute", &req);
        let id = v.check("dispute_id", validate::id(&req.dispute_id, "dsp"));
        optional_minutes(
            &mut v,
            "accepted_minutes",
            req.accepted_minutes,
            self.rules.segment_minutes,
        );
        let note = v.check("note", validate::text(&req.note, MAX_COMMENT_CHARS, false));
        v.finish()?;
        let rules = self.rules.clone();
        self.mutations
            .run(call, move |unit| {
                    Box::pin(async move {
                        let (dispute, contract) =
                            load_answerable(unit.tx(), &id, &caller, &[Role::Freelancer, Role::Agency], now).await?;
                        let (minutes, amount) = rules::accepted_refund(
                            &dispute,
                            i64::from(req.accepted_minutes),
                            contract.hourly_rate_minor,
                            &rules,
                        )?;
                        let resolution = Resolution {
                            resolver: Resolver::Freelancer,
                            accepted_minutes: minutes,
                            refund_amount_minor: amount,
                            note: &note,
                        };
                        // The conditional update decides a race with the
                        // escalation sweep or a withdrawal: one of them wins.
                        if !store::resolve_dispute(
                            unit.tx(),
                            &id,
                            DisputeState::Open,
                            &resolution,
                            now,
                        )
                        .await?
                        {
                            return Err(lost_race(unit.tx(), &id, DisputeState::Open).await);
                        }
                        settle(unit, &dispute, amount, now).await?;
                        let view = reread(unit.tx(), &id).await?;
                        unit.event(&contract.id,
                            now,
                            "DisputeAnswered",
                            pb::event::Payload::DisputeAnswered(pb::DisputeAnswered {
                                dispute: Some(view.clone()),
                                accepted: true,
                            }),
                        );
                        unit.event(&contract.id,
                            now,
                            "DisputeResolved",
                            pb::event::Payload::DisputeResolved(pb::DisputeResolved {
                                dispute: Some(view.clone()),
                            }),
                        );
                        let text = format!(
                            "The freelancer accepted {minutes} of the {} disputed minutes of the week of {} \
                             on \"{}\"; the dispute is resolved and their worth is given back to you.",
                            dispute.disputed_minutes,
                            day(dispute.week_start),
                            contract.title,
                        );
                        notify(unit, &dispute, now, &[&contract.client_id], &text);
                        Ok(pb::AcceptDisputeResponse {
                            dispute: Some(view),
                        })
                    })
                },
            )
            .await
    }

    pub(crate) async fn decline_dispute(
        &self,
        caller: Caller,
        req: pb::DeclineDisputeRequest,
    ) -> Result<pb::DeclineDisputeResponse, Error> {
        let now = self.now();
        let mut v = Violations::new();
        let call = Call::of(&mut v, &caller, "DeclineDispute", &req);
        let id = v.check("dispute_id", validate::id(&req.dispute_id, "dsp"));
        let reason = v.check(
            "reason",
            validate::text(&req.reason, MAX_COMMENT_CHARS, true),
        );
        v.finish()?;
        self.mutations
            .run(call, move |unit| {
                Box::pin(async move {
                    let (dispute, contract) = load_answerable(
                        unit.tx(),
                        &id,
                        &caller,
                        &[Role::Freelancer, Role::Agency],
                        now,
                    )
                    .await?;
                    if !store::escalate_dispute(
                        unit.tx(),
                        &id,
                        EscalationCause::Declined,
                        &reason,
                        now,
                    )
                    .await?
                    {
                        return Err(lost_race(unit.tx(), &id, DisputeState::Open).await);
                    }
                    let view = reread(unit.tx(), &id).await?;
                    unit.event(
                        &contract.id,
                        now,
                        "DisputeAnswered",
                        pb::event::Payload::DisputeAnswered(pb::DisputeAnswered {
                            dispute: Some(view.clone()),
                            accepted: false,
                        }),
                    );
                    unit.event(
                        &contract.id,
                        now,
                        "DisputeEscalated",
                        pb::event::Payload::DisputeEscalated(pb::DisputeEscalated {
                            dispute: Some(view.clone()),
                        }),
                    );
                    let text = format!(
                        "The freelancer declined your dispute of the week of {} on \"{}\"; \
                             support will review it and decide.",
                        day(dispute.week_start),
                        contract.title,
                    );
                    notify(unit, &dispute, now, &[&contract.client_id], &text);
                    tracing::info!(dispute_id = %id, "dispute declined and escalated");
                    Ok(pb::DeclineDisputeResponse {
                        dispute: Some(view),
                    })
                })
            })
            .await
    }

    pub(crate) async fn resolve_dispute(
        &self,
        caller: Caller,
        req: pb::ResolveDisputeRequest,
    ) -> Result<pb::ResolveDisputeResponse, Error> {
        require_scope(&caller, scope::ADMIN)?;
        let now = self.now();
        let mut v = Violations::new();
        let call = Call::of(&mut v, &caller, "ResolveDispute", &req);
        let id = v.check("dispute_id", validate::id(&req.dispute_id, "dsp"));
        let (currency, amount_minor) = match req.refund_amount.as_ref() {
            None => {
                v.add("refund_amount", "is required (0 for no refund)");
                (String::new(), 0)
            }
            Some(m) => {
                if m.amount_minor < 0 {
                    v.add("refund_amount.amount_minor", "must not be negative");
                }
                (
                    v.check(
                        "refund_amount.currency_code",
                        validate::currency(&m.currency_code),
                    ),
                    m.amount_minor,
                )
            }
        };
        let note = v.check("note", validate::text(&req.note, MAX_COMMENT_CHARS, true));
        v.finish()?;
        self.mutations
            .run(call, move |unit| {
                Box::pin(async move {
                    let (dispute, contract) = load(unit.tx(), &id, &caller).await?;
                    if currency != dispute.currency {
                        return Err(Error::BadField {
                            field: "refund_amount.currency_code",
                            message: format!(
                                "must be {}, the contract's currency",
                                dispute.currency
                            ),
                        });
                    }
                    rules::check_escalated(&dispute)?;
                    if amount_minor > dispute.disputed_amount_minor {
                        return Err(Error::BadField {
                            field: "refund_amount.amount_minor",
                            message: format!(
                                "must be at most the disputed amount ({} minor units)",
                                dispute.disputed_amount_minor
                            ),
                        });
                    }
                    let resolution = Resolution {
                        resolver: Resolver::Support,
                        accepted_minutes: 0,
                        refund_amount_minor: amount_minor,
                        note: &note,
                    };
                    if !store::resolve_dispute(
                        unit.tx(),
                        &id,
                        DisputeState::Escalated,
                        &resolution,
                        now,
                    )
                    .await?
                    {
                        return Err(lost_race(unit.tx(), &id, DisputeState::Escalated).await);
                    }
                    settle(unit, &dispute, amount_minor, now).await?;
                    let view = reread(unit.tx(), &id).await?;
                    unit.event(
                        &contract.id,
                        now,
                        "DisputeResolved",
                        pb::event::Payload::DisputeResolved(pb::DisputeResolved {
                            dispute: Some(view.clone()),
                        }),
                    );
                    let text = format!(
                        "Support decided the dispute of the week of {} on \"{}\": {}",
                        day(dispute.week_start),
                        contract.title,
                        note,
                    );
                    notify(unit, &dispute, now, &contract.parties(), &text);
                    Ok(pb::ResolveDisputeResponse {
                        dispute: Some(view),
                    })
                })
            })
            .await
    }

    pub(crate) async fn withdraw_dispute(
        &self,
        caller: Caller,
        req: pb::WithdrawDisputeRequest,
    ) -> Result<pb::WithdrawDisputeResponse, Error> {
        let now = self.now();
        let mut v = Violations::new();
        let call = Call::of(&mut v, &caller, "WithdrawDispute", &req);
        let id = v.check("dispute_id", validate::id(&req.dispute_id, "dsp"));
        let reason = v.check(
            "reason",
            validate::text(&req.reason, MAX_COMMENT_CHARS, false),
        );
        v.finish()?;
        self.mutations
            .run(call, move |unit| {
                    Box::pin(async move {
                        let (dispute, contract) =
                            load_answerable(unit.tx(), &id, &caller, &[Role::Client], now).await?;
                        if !store::withdraw_dispute(unit.tx(), &id, &reason, now).await? {
                            return Err(lost_race(unit.tx(), &id, DisputeState::Open).await);
                        }
                        let view = reread(unit.tx(), &id).await?;
                        unit.event(&contract.id,
                            now,
                            "DisputeWithdrawn",
                            pb::event::Payload::DisputeWithdrawn(pb::DisputeWithdrawn {
                                dispute: Some(view.clone()),
                            }),
                        );
                        let text = format!(
                            "The client withdrew the dispute of the week of {} on \"{}\"; nothing changes.",
                            day(dispute.week_start),
                            contract.title,
                        );
                        notify(unit, &dispute, now, &[&contract.freelancer_id], &text);
                        Ok(pb::WithdrawDisputeResponse {
                            dispute: Some(view),
                        })
                    })
                },
            )
            .await
    }
}
