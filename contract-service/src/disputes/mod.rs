//! Billing disputes: proto mapping, what every transition shares (loading,
//! re-reading, settling the money, notifying), and listing them.

mod answer;
mod file;
pub mod rules;
pub mod store;

use chrono::{DateTime, SecondsFormat, Utc};

use crate::common::{
    DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, find_contract, minutes_i32, money, next_page_token,
    page_after,
};
use crate::contracts::rules::Contract;
use crate::contracts::store::get_contract;
use crate::domain::DisputeState;
use crate::error::Error;
use crate::grpc::ContractApi;
use crate::payments::refund_pb;
use crate::payments::rules::Refund;
use crate::payments::store::{insert_refund, take_refund, week_invoices_for_update};
use rules::{Dispute, EscalationCause, Resolver};
use shared::auth::{Caller, scope};
use shared::db::Tx;
use shared::ids;
use shared::proto::contract::v1 as pb;
use shared::status::Common;
use shared::time::{opt_to_proto, to_proto};
use shared::validate::{self, Violations};
use shared::writer::Unit;

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

pub(crate) fn day(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d").to_string()
}

pub(crate) fn instant(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Tells each recipient by email and in-app message (notification events,
/// delivered by the notification service from the outbox).
pub(crate) fn notify(
    unit: &mut Unit,
    d: &Dispute,
    now: DateTime<Utc>,
    recipients: &[&str],
    text: &str,
) {
    for recipient in recipients {
        for channel in [
            pb::NotificationChannel::Email,
            pb::NotificationChannel::InAppMessage,
        ] {
            unit.event(
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
pub(crate) async fn load(
    tx: &mut Tx,
    id: &str,
    caller: &Caller,
) -> Result<(Dispute, Contract), Error> {
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
    let contract = get_contract(&mut **tx, &dispute.contract_id)
        .await?
        .ok_or_else(missing)?;
    Ok((dispute, contract))
}

/// The dispute as committed by this transaction, with its refunds.
pub(crate) async fn reread(tx: &mut Tx, id: &str) -> Result<pb::Dispute, Error> {
    let dispute = store::get_dispute(&mut **tx, id).await?.ok_or_else(|| {
        Error::from(Common::Internal(format!(
            "dispute {id} vanished in its transition"
        )))
    })?;
    let mut out = with_refunds(&mut **tx, vec![dispute]).await?;
    out.pop()
        .ok_or_else(|| Error::from(Common::Internal(format!("dispute {id} not mapped"))))
}

/// Why a conditional transition found nothing to change: the state a
/// concurrent transition left (`expected` is the state it needed).
pub(crate) async fn lost_race(tx: &mut Tx, id: &str, expected: DisputeState) -> Error {
    let state = match store::get_dispute(&mut **tx, id).await {
        Ok(Some(d)) => d.state,
        Ok(None) => return Error::from(Common::Internal(format!("dispute {id} vanished"))),
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
pub(crate) async fn settle(
    unit: &mut Unit,
    dispute: &Dispute,
    amount_minor: i64,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    let invoices =
        week_invoices_for_update(unit.tx(), &dispute.contract_id, dispute.week_start).await?;
    let (plan, adjustment) = rules::plan_resolution_refund(amount_minor, &invoices);
    let mut refunded = 0;
    for (payment_id, amount) in plan {
        if !take_refund(unit.tx(), &payment_id, amount).await? {
            return Err(Error::from(Common::Internal(format!(
                "payment {payment_id} changed under its lock while refunding dispute {}",
                dispute.id
            ))));
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
        insert_refund(unit.tx(), &refund).await?;
        refunded += amount;
        unit.event(
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

pub(crate) fn optional_minutes(v: &mut Violations, field: &str, value: i32, segment: i64) {
    let minutes = i64::from(value);
    if minutes < 0 || minutes % segment != 0 {
        v.add(
            field,
            format!("must be 0 (all) or a positive multiple of {segment}"),
        );
    }
}

impl ContractApi {
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
        let after = page_after(&req.page_token, &filter)?;
        let mut disputes = store::list_disputes(
            self.db.reader(),
            contract_id.as_deref(),
            state,
            after.as_deref(),
            i64::from(size) + 1,
        )
        .await?;
        let next_page_token = next_page_token(&mut disputes, size, &filter, |d| &d.id);
        Ok(pb::ListDisputesResponse {
            disputes: with_refunds(self.db.reader(), disputes).await?,
            next_page_token,
        })
    }
}
