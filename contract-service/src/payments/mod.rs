//! Payments: record and list them, and refund them; validation,
//! orchestration and proto mapping.

pub mod rules;
pub mod store;

use crate::common::{
    DEFAULT_PAGE_SIZE, MAX_NOTE_CHARS, MAX_PAGE_SIZE, absent_contract, find_contract, money,
    next_page_token, page_after, parse_amount, require_request_id, require_scope,
};
use crate::domain::{BillingWeek, Role};
use crate::error::Error;
use crate::grpc::ContractApi;
use rules::{NewPayment, Payment, PaymentKind, Refund};
use shared::auth::{Caller, scope};
use shared::db::Backend;
use shared::ids;
use shared::outbox::NewEvent;
use shared::proto::contract::v1 as pb;
use shared::status::Common;
use shared::time::to_proto;
use shared::validate::{self, Violations};
use shared::writer::{Call, single};

use crate::contracts::rules::Contract;
use chrono::{DateTime, Utc};

use crate::contracts::store::get_contract;

pub(crate) fn payment_pb(p: &Payment) -> pb::Payment {
    pb::Payment {
        id: p.id.clone(),
        contract_id: p.contract_id.clone(),
        kind: match p.kind {
            PaymentKind::HourlyInvoice => pb::PaymentKind::HourlyInvoice,
            PaymentKind::FixedPrice => pb::PaymentKind::FixedPrice,
            PaymentKind::Bonus => pb::PaymentKind::Bonus,
        } as i32,
        amount: Some(money(&p.currency, p.amount_minor)),
        refunded_amount: Some(money(&p.currency, p.refunded_minor)),
        paid_time: Some(to_proto(p.paid_at)),
        memo: p.memo.clone(),
        create_time: Some(to_proto(p.create_time)),
        billing_week_start_time: p.billing_week.map(|w| to_proto(w.start)),
    }
}

pub(crate) fn refund_pb(r: &Refund) -> pb::Refund {
    pb::Refund {
        id: r.id.clone(),
        payment_id: r.payment_id.clone(),
        contract_id: r.contract_id.clone(),
        amount: Some(money(&r.currency, r.amount_minor)),
        reason: r.reason.clone(),
        create_time: Some(to_proto(r.create_time)),
        dispute_id: r.dispute_id.clone().unwrap_or_default(),
    }
}

/// RecordPayment's rules on the contract as read: the payment to record
/// and the answer.
fn decide_payment(
    contract: &Contract,
    payment: NewPayment,
    now: DateTime<Utc>,
    rules: &crate::domain::Rules,
) -> Result<(Payment, pb::RecordPaymentResponse, NewEvent), Error> {
    rules::check_payment(contract, &payment, now, rules)?;
    let saved = Payment {
        id: ids::new_id("pay"),
        contract_id: contract.id.clone(),
        kind: payment.kind,
        currency: payment.currency,
        amount_minor: payment.amount_minor,
        refunded_minor: 0,
        paid_at: payment.paid_at,
        memo: payment.memo,
        create_time: now,
        billing_week: payment.billing_week,
    };
    let response = pb::RecordPaymentResponse {
        payment: Some(payment_pb(&saved)),
    };
    let event = NewEvent::of(
        &saved.contract_id,
        now,
        "PaymentRecorded",
        pb::event::Payload::PaymentRecorded(pb::PaymentRecorded {
            payment: response.payment.clone(),
        }),
    );
    Ok((saved, response, event))
}

impl ContractApi {
    pub(crate) async fn record_payment(
        &self,
        caller: Caller,
        req: pb::RecordPaymentRequest,
    ) -> Result<pb::RecordPaymentResponse, Error> {
        require_scope(&caller, scope::PAYMENTS_WRITE)?;
        let mut v = Violations::new();
        let call = Call::of(&mut v, &caller, "RecordPayment", &req);
        let id = v.check("contract_id", validate::id(&req.contract_id, "ctr"));
        let kind = match v.check("kind", validate::known_enum::<pb::PaymentKind>(req.kind)) {
            pb::PaymentKind::FixedPrice => PaymentKind::FixedPrice,
            pb::PaymentKind::Bonus => PaymentKind::Bonus,
            _ => PaymentKind::HourlyInvoice,
        };
        let (currency, amount_minor) = parse_amount(&mut v, "amount", req.amount.as_ref());
        let paid_at = v.check("paid_time", validate::timestamp(req.paid_time.as_ref()));
        let memo = v.check("memo", validate::text(&req.memo, MAX_NOTE_CHARS, false));
        require_request_id(&mut v, &req.request_id);
        // An hourly invoice names the week it pays (a dispute's refund goes
        // against it); nothing else does.
        let billing_week = v
            .check(
                "billing_week_time",
                validate::optional_timestamp(req.billing_week_time.as_ref()),
            )
            .map(BillingWeek::containing);
        match (kind, billing_week) {
            (PaymentKind::HourlyInvoice, None) if req.billing_week_time.is_none() => {
                v.add("billing_week_time", "is required for hourly invoices")
            }
            (PaymentKind::HourlyInvoice, Some(week))
                if req.paid_time.is_some() && week.start > paid_at =>
            {
                v.add(
                    "billing_week_time",
                    "the week must have started by paid_time",
                )
            }
            (PaymentKind::FixedPrice | PaymentKind::Bonus, _)
                if req.billing_week_time.is_some() =>
            {
                v.add("billing_week_time", "applies to hourly invoices only")
            }
            _ => {}
        }
        v.finish()?;
        let payment = NewPayment {
            kind,
            currency,
            amount_minor,
            paid_at,
            memo,
            billing_week,
        };
        let now = self.now();
        if self.db.backend() == Backend::Postgres {
            for _ in 0..single::ATTEMPTS {
                if let Some(answer) = self
                    .record_payment_guarded(&caller, &call, &id, &payment, now)
                    .await
                {
                    return answer;
                }
            }
            // The contract changed under every try: wait for its lock instead.
        }
        let rules = self.rules.clone();
        self.mutations
            .run(call, move |unit| {
                Box::pin(async move {
                    let contract = find_contract(&mut **unit.tx(), &id, &caller).await?;
                    let (saved, response, event) = decide_payment(&contract, payment, now, &rules)?;
                    store::insert_payment(unit.tx(), &saved).await?;
                    unit.emit(event);
                    Ok(response)
                })
            })
            .await
    }

    /// One try of RecordPayment's one-statement path (PostgreSQL): read the
    /// contract (and the call's key), decide, and write unless the contract
    /// ended in between. `None`: it did; try again.
    async fn record_payment_guarded(
        &self,
        caller: &Caller,
        call: &Call,
        id: &str,
        payment: &NewPayment,
        now: DateTime<Utc>,
    ) -> Option<Result<pb::RecordPaymentResponse, Error>> {
        let (contract, replay) = match store::read_for_payment(&self.db, id, call).await {
            Ok(Some(read)) => read,
            Ok(None) => return Some(Err(absent_contract(id, caller))),
            Err(err) => return Some(Err(err)),
        };
        if let Some(replayed) = replay {
            return Some(replayed);
        }
        let (saved, response, event) =
            match decide_payment(&contract, payment.clone(), now, &self.rules) {
                Ok(decided) => decided,
                Err(err) => return Some(Err(err)),
            };
        let write = store::record_payment_guarded(&saved, contract.end_time);
        single::write(&self.db, &self.relay, write, &event, call, response).await
    }

    pub(crate) async fn list_payments(
        &self,
        caller: Caller,
        req: pb::ListPaymentsRequest,
    ) -> Result<pb::ListPaymentsResponse, Error> {
        let mut v = Violations::new();
        let id = v.check("contract_id", validate::id(&req.contract_id, "ctr"));
        let size = v.check(
            "page_size",
            validate::page_size(req.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE),
        );
        v.finish()?;
        let filter = format!("contract={id}");
        let after = page_after(&req.page_token, &filter)?;
        let contract = find_contract(self.db.reader(), &id, &caller).await?;
        contract.authorize_read(&caller)?;
        let page = shared::db::Page::new(&id, after.as_deref(), i64::from(size) + 1);
        let mut payments = store::list_payments(self.db.reader(), page).await?;
        let next_page_token = next_page_token(&mut payments, size, &filter, |p| &p.id);
        Ok(pb::ListPaymentsResponse {
            payments: payments.iter().map(payment_pb).collect(),
            next_page_token,
        })
    }

    pub(crate) async fn refund_payment(
        &self,
        caller: Caller,
        req: pb::RefundPaymentRequest,
    ) -> Result<pb::RefundPaymentResponse, Error> {
        let mut v = Violations::new();
        let call = Call::of(&mut v, &caller, "RefundPayment", &req);
        let payment_id = v.check("payment_id", validate::id(&req.payment_id, "pay"));
        let (currency, amount_minor) = parse_amount(&mut v, "amount", req.amount.as_ref());
        let reason = v.check("reason", validate::text(&req.reason, MAX_NOTE_CHARS, false));
        require_request_id(&mut v, &req.request_id);
        v.finish()?;
        let now = self.now();
        let rules = self.rules.clone();
        self.mutations
            .run(call, move |unit| {
                Box::pin(async move {
                    // A payment nobody may see reads like one that does not exist.
                    let denied = || Error::NotAParty {
                        contract_id: format!("of payment {payment_id}"),
                    };
                    let payment = store::get_payment(&mut **unit.tx(), &payment_id)
                        .await?
                        .ok_or_else(denied)?;
                    let contract = get_contract(&mut **unit.tx(), &payment.contract_id)
                        .await?
                        .ok_or_else(denied)?;
                    if contract.role_of(&caller).is_none() {
                        return Err(denied());
                    }
                    contract.authorize_roles(&caller, &[Role::Freelancer, Role::Agency])?;
                    rules::check_refund(&payment, &currency, amount_minor, now, &rules)?;
                    if !store::take_refund(unit.tx(), &payment_id, amount_minor).await? {
                        // A concurrent refund took part of it: report what is left now.
                        let left = store::get_payment(&mut **unit.tx(), &payment_id)
                            .await?
                            .map(|p| p.amount_minor - p.refunded_minor)
                            .unwrap_or(0);
                        return Err(Error::RefundExceedsRemaining {
                            remaining_minor: left,
                        });
                    }
                    let refund = Refund {
                        id: ids::new_id("ref"),
                        payment_id: payment_id.clone(),
                        contract_id: contract.id.clone(),
                        currency,
                        amount_minor,
                        reason,
                        create_time: now,
                        dispute_id: None,
                    };
                    store::insert_refund(unit.tx(), &refund).await?;
                    let updated = store::get_payment(&mut **unit.tx(), &payment_id)
                        .await?
                        .ok_or_else(|| {
                            Error::from(Common::Internal(format!(
                                "payment {payment_id} vanished while refunding"
                            )))
                        })?;
                    let response = pb::RefundPaymentResponse {
                        refund: Some(refund_pb(&refund)),
                        payment: Some(payment_pb(&updated)),
                    };
                    unit.event(
                        &contract.id,
                        now,
                        "RefundIssued",
                        pb::event::Payload::RefundIssued(pb::RefundIssued {
                            refund: response.refund.clone(),
                        }),
                    );
                    Ok(response)
                })
            })
            .await
    }
}
