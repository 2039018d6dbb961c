//! Payment and refund rules as plain Rust: what a payment or refund is, and
//! when one may be recorded or refunded.

use chrono::{DateTime, Utc};

use crate::contracts::rules::{Contract, ContractType};
use crate::domain::{BillingWeek, Rules};
use crate::error::Error;

/// What a payment was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentKind {
    HourlyInvoice,
    FixedPrice,
    Bonus,
}

/// A payment as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Payment {
    pub id: String,
    pub contract_id: String,
    pub kind: PaymentKind,
    pub currency: String,
    pub amount_minor: i64,
    pub refunded_minor: i64,
    pub paid_at: DateTime<Utc>,
    pub memo: String,
    pub create_time: DateTime<Utc>,
    /// HOURLY_INVOICE: the billing week it pays.
    pub billing_week: Option<BillingWeek>,
}

/// A payment to record, already parsed.
#[derive(Debug, Clone)]
pub struct NewPayment {
    pub kind: PaymentKind,
    pub currency: String,
    pub amount_minor: i64,
    pub paid_at: DateTime<Utc>,
    pub memo: String,
    /// HOURLY_INVOICE only (required there, checked when parsing).
    pub billing_week: Option<BillingWeek>,
}

/// Rules for recording a payment on a contract.
pub fn check_payment(
    contract: &Contract,
    payment: &NewPayment,
    now: DateTime<Utc>,
    rules: &Rules,
) -> Result<(), Error> {
    if payment.currency != contract.currency {
        return Err(Error::CurrencyMismatch {
            expected: contract.currency.clone(),
        });
    }
    if payment.paid_at > now {
        return Err(Error::PaidInFuture);
    }
    match (payment.kind, contract.contract_type) {
        (PaymentKind::HourlyInvoice, ContractType::FixedPrice)
        | (PaymentKind::FixedPrice, ContractType::Hourly) => {
            return Err(Error::PaymentKindMismatch);
        }
        _ => {}
    }
    if payment.paid_at < contract.start_time {
        return Err(Error::PaidBeforeContractStart {
            start_time: contract.start_time,
        });
    }
    if let Some(week) = payment.billing_week
        && week.end() <= contract.start_time
    {
        return Err(Error::BadField {
            field: "billing_week_time",
            message: format!(
                "the billing week ends before the contract's start ({})",
                contract.start_time
            ),
        });
    }
    if payment.kind == PaymentKind::Bonus
        && let Some(end) = contract.end_time
        && payment.paid_at > end + rules.bonus_window
    {
        return Err(Error::BonusWindowPassed {
            closed_at: end + rules.bonus_window,
        });
    }
    Ok(())
}

/// Rules for refunding `amount_minor` of a payment (the remaining amount is
/// re-checked atomically by the store).
pub fn check_refund(
    payment: &Payment,
    currency: &str,
    amount_minor: i64,
    now: DateTime<Utc>,
    rules: &Rules,
) -> Result<(), Error> {
    if currency != payment.currency {
        return Err(Error::CurrencyMismatch {
            expected: payment.currency.clone(),
        });
    }
    let closes = payment.paid_at + rules.refund_window;
    if now > closes {
        return Err(Error::RefundWindowPassed { closed_at: closes });
    }
    let remaining = payment.amount_minor - payment.refunded_minor;
    if amount_minor > remaining {
        return Err(Error::RefundExceedsRemaining {
            remaining_minor: remaining,
        });
    }
    Ok(())
}

/// A refund as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Refund {
    pub id: String,
    pub payment_id: String,
    pub contract_id: String,
    pub currency: String,
    pub amount_minor: i64,
    pub reason: String,
    pub create_time: DateTime<Utc>,
    /// Set when a dispute's resolution made it.
    pub dispute_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contracts::rules::ContractState;
    use crate::test_support::{at, hourly};
    use chrono::Duration;

    #[test]
    fn refunds_allowed_for_180_days_and_up_to_what_is_left() {
        let rules = Rules::default();
        let paid = at("2026-01-01T00:00:00Z");
        let p = Payment {
            id: "p".into(),
            contract_id: "c".into(),
            kind: PaymentKind::HourlyInvoice,
            currency: "USD".into(),
            amount_minor: 1000,
            refunded_minor: 400,
            paid_at: paid,
            memo: String::new(),
            create_time: paid,
            billing_week: None,
        };
        let day180 = paid + Duration::days(180);
        assert!(check_refund(&p, "USD", 600, day180, &rules).is_ok());
        assert!(matches!(
            check_refund(&p, "USD", 600, day180 + Duration::seconds(1), &rules),
            Err(Error::RefundWindowPassed { .. })
        ));
        assert!(matches!(
            check_refund(&p, "USD", 601, day180, &rules),
            Err(Error::RefundExceedsRemaining {
                remaining_minor: 600
            })
        ));
        assert!(matches!(
            check_refund(&p, "EUR", 1, day180, &rules),
            Err(Error::CurrencyMismatch { .. })
        ));
    }

    #[test]
    fn bonus_allowed_up_to_365_days_after_the_end() {
        let rules = Rules::default();
        let mut c = hourly("2025-01-01T00:00:00Z");
        let end = at("2025-06-01T00:00:00Z");
        c.state = ContractState::Ended;
        c.end_time = Some(end);
        let bonus = |paid_at| NewPayment {
            kind: PaymentKind::Bonus,
            currency: "USD".into(),
            amount_minor: 100,
            paid_at,
            memo: String::new(),
            billing_week: None,
        };
        let now = at("2027-01-01T00:00:00Z");
        assert!(check_payment(&c, &bonus(end + Duration::days(365)), now, &rules).is_ok());
        assert!(matches!(
            check_payment(
                &c,
                &bonus(end + Duration::days(365) + Duration::seconds(1)),
                now,
                &rules
            ),
            Err(Error::BonusWindowPassed { .. })
        ));
        let invoice = NewPayment {
            kind: PaymentKind::FixedPrice,
            ..bonus(end)
        };
        assert!(matches!(
            check_payment(&c, &invoice, now, &rules),
            Err(Error::PaymentKindMismatch)
        ));
    }
}
