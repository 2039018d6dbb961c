//! Billing disputes, their whole lifecycle: filing, the freelancer's answer, the
//! escalation sweep, support's decision, withdrawal, listing; validation, orchestration, proto mapping.

use std::time::Duration as StdDuration;

use chrono::{DateTime, SecondsFormat, Utc};

use crate::domain::{
    self, BillingWeek, Contract, Dispute, DisputeState, EscalationCause, Refund, Resolver, Role,
};
use crate::error::Error;
use crate::grpc::{
    ContractApi, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, emit, find_contract, minutes_i32, money,
    refund_pb, require_scope,
};
use crate::store::{self, Resolution};
use shared::auth::{Caller, scope};
use shared::db::Tx;
use shared::ids;
use shared::paging;
use shared::proto::contract::v1 as pb;
use shared::time::{opt_to_proto, to_proto};
use shared::validate::{self, MAX_COMMENT_CHARS, Violations};
use shared::writer::Unit;

/// Most overdue disputes one sweep escalates (the next sweep takes the rest).
const SWEEP_BATCH: i64 = 500;

fn state_pb(s: DisputeState) -> pb::DisputeState {
    match s {
        DisputeState::Open => pb::DisputeState::Open,
        DisputeState::Escalated => pb::DisputeState::Escalated,
        DisputeState::Resolved => pb::DisputeState::Resolved,
        DisputeState::Withdrawn => pb::DisputeState::Withdrawn,
    }
}

/// A dispute on the wire, with the refunds its resolution made.
pub(crate) fn dispute_pb(d: &Dispute, refunds: &[Refund]) -> pb::Dispute {
    let m = |minor| Some(money(&d.currency, minor));
    pb::Dispute {
        id: d.id.clone(),
        contract_id: d.contract_id.clone(),
        week_start_time: Some(to_proto(d.week_start)),
        reason: d.reason.clone(),
        state: state_pb(d.state) as i32,
        create_time: Some(to_proto(d.create_time)),
        whole_week: d.whole_week,
        disputed_minutes: minutes_i32(d.disputed_minutes),
        disputed_amount: m(d.disputed_amount_minor),
        respond_by_time: Some(to_proto(d.respond_by)),
        decline_reason: d.decline_reason.clone(),
        escalation_cause: match d.escalation_cause {
            None => pb::EscalationCause::Unspecified,
            Some(EscalationCause::Declined) => pb::EscalationCause::Declined,
            Some(EscalationCause::NoResponse) => pb::EscalationCause::NoResponse,
        } as i32,
        escalate_time: opt_to_proto(d.escalate_time),
        resolution: (d.state == DisputeState::Resolved).then(|| pb::DisputeResolution {
            resolved_by: match d.resolved_by {
                None => pb::DisputeResolver::Unspecified,
                Some(Resolver::Freelancer) => pb::DisputeResolver::Freelancer,
                Some(Resolver::Support) => pb::DisputeResolver::Support,
            } as i32,
            accepted_minutes: minutes_i32(d.accepted_minutes),
            refund_amount: m(d.refund_amount_minor),
            refunded_amount: m(d.refunded_minor),
            billing_adjustment: m(d.adjustment_minor),
            refunds: refunds
                .iter()
                .filter(|r| r.dispute_id.as_deref() == Some(d.id.as_str()))
                .map(refund_pb)
                .collect(),
            note: d.resolution_note.clone(),
            resolve_time: opt_to_proto(d.resolve_time),
        }),
        withdraw_time: opt_to_proto(d.withdraw_time),
        update_time: Some(to_proto(d.update_time)),
        withdraw_reason: if d.state == DisputeState::Withdrawn {
            d.resolution_note.clone()
        } else {
            String::new()
        },
    }
}

/// Disputes on the wire, with their refunds (one query for all of them).
pub(crate) async fn with_refunds<'e, E>(
    executor: E,
    disputes: Vec<Dispute>,
) -> Result<Vec<pb::Dispute>, Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let resolved: Vec<String> = disputes
        .iter()
        .filter(|d| d.state == DisputeState::Resolved)
        .map(|d| d.id.clone())
        .collect();
    let refunds = store::refunds_of_disputes(executor, &resolved).await?;
    Ok(disputes.iter().map(|d| dispute_pb(d, &refunds)).collect())
}

fn day(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d").to_string()
}

fn instant(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Tells each recipient by email and in-app message (notification events,
/// delivered by the notification service from the outbox).
fn notify(unit: &mut Unit, d: &Dispute, now: DateTime<Utc>, recipients: &[&str], text: &str) {
    for recipient in recipients {
        for channel in [
            pb::NotificationChannel::Email,
            pb::NotificationChannel::InAppMessage,
        ] {
            emit(
                unit,
                &d.contract_id,
                now,
                "NotificationRequested",
                pb::event::Payload::NotificationRequested(pb::NotificationRequested {
                    channel: channel as i32,
                    recipient_id: (*recipient).to_owned(),
                    dispute_id: d.id.clone(),
                    text: text.to_owned(),
                }),
            );
        }
    }
}

/// A dispute and its contract, for a caller that may see the contract. A
/// user never learns whether a dispute it may not see exists.
async fn load(tx: &mut Tx, id: &str, caller: &Caller) -> Result<(Dispute, Contract), Error> {
    let missing = || {
        if caller.user_id().is_some() {
            Error::NotAParty {
                contract_id: format!("of dispute {id}"),
            }
        } else {
            Error::NotFound {
                what: "dispute",
                id: id.to_owned(),
            }
        }
    };
    let dispute = store::get_dispute(&mut **tx, id)
        .await?
        .ok_or_else(missing)?;
    let contract = store::get_contract(&mut **tx, &dispute.contract_id)
        .await?
        .ok_or_else(missing)?;
    Ok((dispute, contract))
}

/// The dispute as committed by this transaction, with its refunds.
async fn reread(tx: &mut Tx, id: &str) -> Result<pb::Dispute, Error> {
    let dispute = store::get_dispute(&mut **tx, id)
        .await?
        .ok_or_else(|| Error::Internal(format!("dispute {id} vanished in its transition")))?;
    let mut out = with_refunds(&mut **tx, vec![dispute]).await?;
    out.pop()
        .ok_or_else(|| Error::Internal(format!("dispute {id} not mapped")))
}

/// Why a conditional transition found nothing to change: the state a
/// concurrent transition left (`expected` is the state it needed).
async fn lost_race(tx: &mut Tx, id: &str, expected: DisputeState) -> Error {
    let state = match store::get_dispute(&mut **tx, id).await {
        Ok(Some(d)) => d.state,
        Ok(None) => return Error::Internal(format!("dispute {id} vanished")),
        Err(e) => return e,
    };
    match expected {
        DisputeState::Escalated => Error::DisputeNotEscalated { state },
        _ => Error::DisputeNotOpen { state },
    }
}

/// Carries out a resolution's money in the caller's transaction: refunds
/// against the week's invoice payments (at most what is left of each, one
/// refund per payment and dispute), or, when the week has no invoice, takes
/// the amount off the week's billable amount. Emits RefundIssued for each.
async fn settle(
    unit: &mut Unit,
    dispute: &Dispute,
    amount_minor: i64,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    let invoices =
        store::week_invoices_for_update(unit.tx(), &dispute.contract_id, dispute.week_start)
            .await?;
    let (plan, adjustment) = domain::plan_resolution_refund(amount_minor, &invoices);
    let mut refunded = 0;
    for (payment_id, amount) in plan {
        if !store::take_refund(unit.tx(), &payment_id, amount).await? {
            return Err(Error::Internal(format!(
                "payment {payment_id} changed under its lock while refunding dispute {}",
                dispute.id
            )));
        }
        let refund = Refund {
            id: ids::new_id("ref"),
            payment_id,
            contract_id: dispute.contract_id.clone(),
            currency: dispute.currency.clone(),
            amount_minor: amount,
            reason: format!("resolution of dispute {}", dispute.id),
            create_time: now,
            dispute_id: Some(dispute.id.clone()),
        };
        store::insert_refund(unit.tx(), &refund).await?;
        refunded += amount;
        emit(
            unit,
            &dispute.contract_id,
            now,
            "RefundIssued",
            pb::event::Payload::RefundIssued(pb::RefundIssued {
                refund: Some(refund_pb(&refund)),
            }),
        );
    }
    store::record_resolution_money(unit.tx(), &dispute.id, refunded, adjustment).await?;
    tracing::info!(
        dispute_id = %dispute.id,
        contract_id = %dispute.contract_id,
        decided_minor = amount_minor,
        refunded_minor = refunded,
        adjustment_minor = adjustment,
        "dispute resolved"
    );
    Ok(())
}

fn optional_minutes(v: &mut Violations, field: &str, value: i32, segment: i64) {
    let minutes = i64::from(value);
    if minutes < 0 || minutes % segment != 0 {
        v.add(
            field,
            format!("must be 0 (all) or a positive multiple of {segment}"),
        );
    }
}

impl ContractApi {
    pub(crate) async fn dispute_hours(
        &self,
        caller: Caller,
        req: pb::DisputeHoursRequest,
    ) -> Result<pb::DisputeHoursResponse, Error> {
        let now = self.now();
        let mut v = Violations::new();
        let id = v.check("contract_id", validate::id(&req.contract_id, "ctr"));
        let week_time = v.check("week_time", validate::timestamp(req.week_time.as_ref()));
        let reason = v.check(
            "reason",
            validate::text(&req.reason, MAX_COMMENT_CHARS, true),
        );
        optional_minutes(
            &mut v,
            "disputed_minutes",
            req.disputed_minutes,
            self.rules.segment_minutes,
        );
        let request_id = v.check("request_id", validate::request_id(&req.request_id));
        v.finish()?;
        let week = BillingWeek::containing(week_time);
        let fingerprint = pb::DisputeHoursRequest {
            request_id: String::new(),
            ..req.clone()
        };
        let rules = self.rules.clone();
        self.mutations
            .run(
                caller.key(),
                "DisputeHours",
                request_id,
                &fingerprint,
                move |unit| {
                    Box::pin(async move {
                        let contract = find_contract(&mut **unit.tx(), &id, &caller).await?;
                        contract.authorize_roles(&caller, &[Role::Client])?;
                        domain::check_dispute(&contract, week, now, &rules)?;
                        let existing =
                            store::disputes_for_week(&mut **unit.tx(), &id, week.start).await?;
                        domain::check_no_active_dispute(&existing)?;
                        let entries = store::time_entries_between(
                            &mut **unit.tx(),
                            &id,
                            week.start,
                            week.end(),
                        )
                        .await?;
                        let billable: i64 = domain::billable_minutes(
                            &entries,
                            i64::from(contract.weekly_limit_minutes),
                        )
                        .iter()
                        .sum();
                        let minutes = domain::disputed_minutes(
                            i64::from(req.disputed_minutes),
                            billable,
                            &rules,
                        )?;
                        let dispute = Dispute {
                            id: ids::new_id("dsp"),
                            contract_id: id.clone(),
                            currency: contract.currency.clone(),
                            week_start: week.start,
                            reason,
                            state: DisputeState::Open,
                            create_time: now,
                            whole_week: minutes == billable,
                            disputed_minutes: minutes,
                            disputed_amount_minor: domain::amount_for_minutes(
                                minutes,
                                contract.hourly_rate_minor,
                            ),
                            respond_by: now + rules.dispute_response,
                            decline_reason: String::new(),
                            escalation_cause: None,
                            escalate_time: None,
                            resolved_by: None,
                            accepted_minutes: 0,
                            refund_amount_minor: 0,
                            refunded_minor: 0,
                            adjustment_minor: 0,
                            resolution_note: String::new(),
                            resolve_time: None,
                            withdraw_time: None,
                            update_time: now,
                        };
                        store::insert_dispute(unit.tx(), &dispute).await?;
                        let response = pb::DisputeHoursResponse {
                            dispute: Some(dispute_pb(&dispute, &[])),
                        };
                        emit(
                            unit,
                            &id,
                            now,
                            "HoursDisputed",
                            pb::event::Payload::HoursDisputed(pb::HoursDisputed {
                                dispute: response.dispute.clone(),
                            }),
                        );
                        let text = format!(
                            "The client disputed {minutes} billable minutes of the week of {} on \"{}\". \
                             Accept all or part of them, or decline with a reason, before {}; \
                             after that support decides.",
                            day(week.start),
                            contract.title,
                            instant(dispute.respond_by),
                        );
                        notify(unit, &dispute, now, &[&contract.freelancer_id], &text);
                        tracing::info!(dispute_id = %dispute.id, contract_id = %id, minutes, "hours disputed");
                        Ok(response)
                    })
                },
            )
            .await
    }

    pub(crate) async fn accept_dispute(
        &self,
        caller: Caller,
        req: pb::AcceptDisputeRequest,
    ) -> Result<pb::AcceptDisputeResponse, Error> {
        let now = self.now();
        let mut v = Violations::new();
        let id = v.check("dispute_id", validate::id(&req.dispute_id, "dsp"));
        optional_minutes(
            &mut v,
            "accepted_minutes",
            req.accepted_minutes,
            self.rules.segment_minutes,
        );
        let note = v.check("note", validate::text(&req.note, MAX_COMMENT_CHARS, false));
        let request_id = v.check("request_id", validate::request_id(&req.request_id));
        v.finish()?;
        let fingerprint = pb::AcceptDisputeRequest {
            request_id: String::new(),
            ..req.clone()
        };
        let rules = self.rules.clone();
        self.mutations
            .run(
                caller.key(),
                "AcceptDispute",
                request_id,
                &fingerprint,
                move |unit| {
                    Box::pin(async move {
                        let (dispute, contract) = load(unit.tx(), &id, &caller).await?;
                        contract.authorize_roles(&caller, &[Role::Freelancer, Role::Agency])?;
                        domain::check_answerable(&dispute, now)?;
                        let (minutes, amount) = domain::accepted_refund(
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
                        emit(
                            unit,
                            &contract.id,
                            now,
                            "DisputeAnswered",
                            pb::event::Payload::DisputeAnswered(pb::DisputeAnswered {
                                dispute: Some(view.clone()),
                                accepted: true,
                            }),
                        );
                        emit(
                            unit,
                            &contract.id,
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
        let id = v.check("dispute_id", validate::id(&req.dispute_id, "dsp"));
        let reason = v.check(
            "reason",
            validate::text(&req.reason, MAX_COMMENT_CHARS, true),
        );
        let request_id = v.check("request_id", validate::request_id(&req.request_id));
        v.finish()?;
        let fingerprint = pb::DeclineDisputeRequest {
            request_id: String::new(),
            ..req.clone()
        };
        self.mutations
            .run(
                caller.key(),
                "DeclineDispute",
                request_id,
                &fingerprint,
                move |unit| {
                    Box::pin(async move {
                        let (dispute, contract) = load(unit.tx(), &id, &caller).await?;
                        contract.authorize_roles(&caller, &[Role::Freelancer, Role::Agency])?;
                        domain::check_answerable(&dispute, now)?;
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
                        emit(
                            unit,
                            &contract.id,
                            now,
                            "DisputeAnswered",
                            pb::event::Payload::DisputeAnswered(pb::DisputeAnswered {
                                dispute: Some(view.clone()),
                                accepted: false,
                            }),
                        );
                        emit(
                            unit,
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
                },
            )
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
        let request_id = v.check("request_id", validate::request_id(&req.request_id));
        v.finish()?;
        let fingerprint = pb::ResolveDisputeRequest {
            request_id: String::new(),
            ..req.clone()
        };
        self.mutations
            .run(
                caller.key(),
                "ResolveDispute",
                request_id,
                &fingerprint,
                move |unit| {
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
                        domain::check_escalated(&dispute)?;
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
                        emit(
                            unit,
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
                        notify(
                            unit,
                            &dispute,
                            now,
                            &[&contract.client_id, &contract.freelancer_id],
                            &text,
                        );
                        Ok(pb::ResolveDisputeResponse {
                            dispute: Some(view),
                        })
                    })
                },
            )
            .await
    }

    pub(crate) async fn withdraw_dispute(
        &self,
        caller: Caller,
        req: pb::WithdrawDisputeRequest,
    ) -> Result<pb::WithdrawDisputeResponse, Error> {
        let now = self.now();
        let mut v = Violations::new();
        let id = v.check("dispute_id", validate::id(&req.dispute_id, "dsp"));
        let reason = v.check(
            "reason",
            validate::text(&req.reason, MAX_COMMENT_CHARS, false),
        );
        let request_id = v.check("request_id", validate::request_id(&req.request_id));
        v.finish()?;
        let fingerprint = pb::WithdrawDisputeRequest {
            request_id: String::new(),
            ..req.clone()
        };
        self.mutations
            .run(
                caller.key(),
                "WithdrawDispute",
                request_id,
                &fingerprint,
                move |unit| {
                    Box::pin(async move {
                        let (dispute, contract) = load(unit.tx(), &id, &caller).await?;
                        contract.authorize_roles(&caller, &[Role::Client])?;
                        domain::check_answerable(&dispute, now)?;
                        if !store::withdraw_dispute(unit.tx(), &id, &reason, now).await? {
                            return Err(lost_race(unit.tx(), &id, DisputeState::Open).await);
                        }
                        let view = reread(unit.tx(), &id).await?;
                        emit(
                            unit,
                            &contract.id,
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

    pub(crate) async fn list_disputes(
        &self,
        caller: Caller,
        req: pb::ListDisputesRequest,
    ) -> Result<pb::ListDisputesResponse, Error> {
        let mut v = Violations::new();
        let contract_id = if req.contract_id.is_empty() {
            if caller.user_id().is_some() {
                v.add("contract_id", "is required");
            }
            None
        } else {
            Some(v.check("contract_id", validate::id(&req.contract_id, "ctr")))
        };
        let state = match req.state {
            0 => None,
            s => Some(
                match v.check("state", validate::known_enum::<pb::DisputeState>(s)) {
                    pb::DisputeState::Escalated => DisputeState::Escalated,
                    pb::DisputeState::Resolved => DisputeState::Resolved,
                    pb::DisputeState::Withdrawn => DisputeState::Withdrawn,
                    _ => DisputeState::Open,
                },
            ),
        };
        let size = v.check(
            "page_size",
            validate::page_size(req.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE),
        );
        v.finish()?;
        match &contract_id {
            Some(id) => {
                let contract = find_contract(self.db.reader(), id, &caller).await?;
                contract.authorize_read(&caller)?;
            }
            None if caller.has_scope(scope::CONTRACTS_READ) || caller.has_scope(scope::ADMIN) => {}
            None => return Err(Error::MissingScope(scope::CONTRACTS_READ)),
        }
        let filter = format!(
            "contract={};state={}",
            contract_id.as_deref().unwrap_or(""),
            req.state
        );
        let after = paging::decode(&req.page_token, &filter).map_err(|e| {
            Error::InvalidArgument(vec![shared::status::FieldViolation::new("page_token", e)])
        })?;
        let mut disputes = store::list_disputes(
            self.db.reader(),
            contract_id.as_deref(),
            state,
            after.as_deref(),
            i64::from(size) + 1,
        )
        .await?;
        let next_page_token = if disputes.len() > size as usize {
            disputes.truncate(size as usize);
            disputes
                .last()
                .map(|d| paging::encode(&d.id, &filter))
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(pb::ListDisputesResponse {
            disputes: with_refunds(self.db.reader(), disputes).await?,
            next_page_token,
        })
    }

    /// One sweep: escalates every OPEN dispute whose response window has
    /// closed by the service clock's now. Returns how many it escalated.
    pub async fn escalate_overdue_disputes(&self) -> Result<usize, Error> {
        self.escalate_disputes_due_by(self.now()).await
    }

    /// [`Self::escalate_overdue_disputes`] as of `now` (tests race it against
    /// an answer read at the previous second).
    pub async fn escalate_disputes_due_by(&self, now: DateTime<Utc>) -> Result<usize, Error> {
        let overdue = store::overdue_disputes(self.db.reader(), now, SWEEP_BATCH).await?;
        let mut escalated = 0;
        for id in overdue {
            let done = self
                .mutations
                .run(String::new(), "EscalateDispute", None, &(), move |unit| {
                    Box::pin(async move {
                        // Conditional on OPEN and overdue: a concurrent answer
                        // or withdrawal that committed first wins.
                        if !store::escalate_dispute(
                            unit.tx(),
                            &id,
                            EscalationCause::NoResponse,
                            "",
                            now,
                        )
                        .await?
                        {
                            return Ok::<_, Error>(pb::DisputeEscalated::default());
                        }
                        let system = Caller::Service {
                            name: "dispute-sweeper".into(),
                            scopes: vec![scope::ADMIN.into()],
                        };
                        let (dispute, contract) = load(unit.tx(), &id, &system).await?;
                        let event = pb::DisputeEscalated {
                            dispute: Some(reread(unit.tx(), &id).await?),
                        };
                        emit(
                            unit,
                            &contract.id,
                            now,
                            "DisputeEscalated",
                            pb::event::Payload::DisputeEscalated(event.clone()),
                        );
                        let text = format!(
                            "The dispute of the week of {} on \"{}\" was not answered by {}; \
                             support will review it and decide.",
                            day(dispute.week_start),
                            contract.title,
                            instant(dispute.respond_by),
                        );
                        notify(
                            unit,
                            &dispute,
                            now,
                            &[&contract.client_id, &contract.freelancer_id],
                            &text,
                        );
                        tracing::info!(dispute_id = %id, "dispute escalated: no answer in time");
                        Ok(event)
                    })
                })
                .await?;
            escalated += usize::from(done.dispute.is_some());
        }
        Ok(escalated)
    }
}

/// The escalation sweep, every `interval` until `stop`, reading now from
/// the service clock (so a test clock drives it).
pub async fn run_dispute_sweeper(
    api: ContractApi,
    interval: StdDuration,
    stop: impl Future<Output = ()>,
) {
    tokio::pin!(stop);
    loop {
        if let Err(err) = api.escalate_overdue_disputes().await {
            tracing::warn!(error = %err, "dispute sweep failed; will retry");
        }
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}
