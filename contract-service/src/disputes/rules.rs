//! Dispute rules as plain Rust: what a dispute is, when a week may be
//! disputed or a dispute answered or decided, and how its refund is carried out.

use chrono::{DateTime, Utc};

use crate::contracts::rules::Contract;
use crate::diary::rules::amount_for_minutes;
use crate::domain::{BillingWeek, DisputeState, Rules};
use crate::error::Error;
use crate::payments::rules::Payment;

/// Why a dispute went to support.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EscalationCause {
    Declined,
    NoResponse,
}

/// Who decided a dispute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolver {
    Freelancer,
    Support,
}

/// A billing dispute.
#[derive(Debug, Clone, PartialEq)]
pub struct Dispute {
    pub id: String,
    pub contract_id: String,
    /// The contract's currency (every amount of the dispute is in it).
    pub currency: String,
    pub week_start: DateTime<Utc>,
    pub reason: String,
    pub state: DisputeState,
    pub create_time: DateTime<Utc>,
    pub whole_week: bool,
    pub disputed_minutes: i64,
    pub disputed_amount_minor: i64,
    /// Answers are accepted before this instant; from it on the dispute escalates.
    pub respond_by: DateTime<Utc>,
    pub decline_reason: String,
    pub escalation_cause: Option<EscalationCause>,
    pub escalate_time: Option<DateTime<Utc>>,
    pub resolved_by: Option<Resolver>,
    pub accepted_minutes: i64,
    /// What the resolution decided to give back.
    pub refund_amount_minor: i64,
    /// Of that, refunded against the week's invoice payments.
    pub refunded_minor: i64,
    /// Of that, taken off the week's billable amount (week not invoiced).
    pub adjustment_minor: i64,
    pub resolution_note: String,
    pub resolve_time: Option<DateTime<Utc>>,
    pub withdraw_time: Option<DateTime<Utc>>,
    pub update_time: DateTime<Utc>,
}

impl Dispute {
    /// A dispute of `minutes` (`whole_week`: all the billable time) of the
    /// week starting `week_start`, filed at `now`: open, answerable for the
    /// response window, nothing decided yet.
    pub fn filed(
        contract: &Contract,
        week_start: DateTime<Utc>,
        reason: String,
        minutes: i64,
        whole_week: bool,
        now: DateTime<Utc>,
        rules: &Rules,
    ) -> Self {
        Self {
            id: shared::ids::new_id("dsp"),
            contract_id: contract.id.clone(),
            currency: contract.currency.clone(),
            week_start,
            reason,
            state: DisputeState::Open,
            create_time: now,
            whole_week,
            disputed_minutes: minutes,
            disputed_amount_minor: amount_for_minutes(minutes, contract.hourly_rate_minor),
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
        }
    }
}

/// Billable minutes a new dispute covers: `requested` (0 = the whole week)
/// must be a positive multiple of the segment, at most the week's billable
/// minutes; a week without billable time cannot be disputed.
pub fn disputed_minutes(requested: i64, billable: i64, rules: &Rules) -> Result<i64, Error> {
    if billable <= 0 {
        return Err(Error::NoBillableTime);
    }
    if requested == 0 {
        return Ok(billable);
    }
    if requested > billable {
        return Err(Error::BadField {
            field: "disputed_minutes",
            message: format!("must be at most the week's {billable} billable minutes"),
        });
    }
    let segment = rules.segment_minutes;
    if requested < 0 || requested % segment != 0 {
        return Err(Error::BadField {
            field: "disputed_minutes",
            message: format!("must be a positive multiple of {segment}"),
        });
    }
    Ok(requested)
}

/// A week may be disputed again only after its earlier disputes were withdrawn.
pub fn check_no_active_dispute(existing: &[Dispute]) -> Result<(), Error> {
    for d in existing {
        match d.state {
            DisputeState::Open | DisputeState::Escalated => return Err(Error::DisputeAlreadyOpen),
            DisputeState::Resolved => return Err(Error::DisputeAlreadyResolved),
            DisputeState::Withdrawn => {}
        }
    }
    Ok(())
}

/// The freelancer's answer or the client's withdrawal: only while OPEN and
/// before `respond_by` (the last second inside is `respond_by - 1 s`).
pub fn check_answerable(dispute: &Dispute, now: DateTime<Utc>) -> Result<(), Error> {
    if dispute.state != DisputeState::Open {
        return Err(Error::DisputeNotOpen {
            state: dispute.state,
        });
    }
    if now >= dispute.respond_by {
        return Err(Error::DisputeResponseWindowClosed {
            closed_at: dispute.respond_by,
        });
    }
    Ok(())
}

/// Support decides only escalated disputes.
pub fn check_escalated(dispute: &Dispute) -> Result<(), Error> {
    if dispute.state != DisputeState::Escalated {
        return Err(Error::DisputeNotEscalated {
            state: dispute.state,
        });
    }
    Ok(())
}

/// The refund for accepting `accepted` (0 = all) of the disputed minutes:
/// (minutes, amount). All of them are worth exactly the disputed amount.
pub fn accepted_refund(
    dispute: &Dispute,
    accepted: i64,
    hourly_rate_minor: i64,
    rules: &Rules,
) -> Result<(i64, i64), Error> {
    if accepted == 0 || accepted == dispute.disputed_minutes {
        return Ok((dispute.disputed_minutes, dispute.disputed_amount_minor));
    }
    let segment = rules.segment_minutes;
    if accepted < 0 || accepted % segment != 0 || accepted > dispute.disputed_minutes {
        return Err(Error::BadField {
            field: "accepted_minutes",
            message: format!(
                "must be a positive multiple of {segment}, at most the {} disputed minutes",
                dispute.disputed_minutes
            ),
        });
    }
    Ok((accepted, amount_for_minutes(accepted, hourly_rate_minor)))
}

/// How a resolution's refund of `amount` is carried out against the week's
/// invoice payments (in the order given): `(payment id, amount)` for each
/// payment refunded, taking at most what is left of each. When the week has
/// no invoice payment at all, nothing is refunded and the whole amount is
/// taken off the week's billable amount instead (the second value).
pub fn plan_resolution_refund(amount: i64, invoices: &[Payment]) -> (Vec<(String, i64)>, i64) {
    if invoices.is_empty() {
        return (Vec::new(), amount.max(0));
    }
    let mut left = amount.max(0);
    let mut plan = Vec::new();
    for p in invoices {
        if left == 0 {
            break;
        }
        let take = left.min(p.amount_minor - p.refunded_minor);
        if take > 0 {
            plan.push((p.id.clone(), take));
            left -= take;
        }
    }
    (plan, 0)
}

/// Rules for disputing a week's hours at `now`.
pub fn check_dispute(
    contract: &Contract,
    week: BillingWeek,
    now: DateTime<Utc>,
    rules: &Rules,
) -> Result<(), Error> {
    if !contract.is_hourly() {
        return Err(Error::NotHourly);
    }
    let (opens, closes) = week.review_window(rules);
    if now < opens || now >= closes {
        return Err(Error::DisputeWindowClosed { opens, closes });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payments::rules::PaymentKind;
    use crate::test_support::{at, hourly};
    use chrono::Duration;

    #[test]
    fn review_window_is_monday_noon_to_friday_end_after_the_week() {
        let week = BillingWeek::containing(at("2026-11-18T10:00:00Z"));
        let (opens, closes) = week.review_window(&Rules::default());
        assert_eq!(opens, at("2026-11-23T12:00:00Z"));
        assert_eq!(closes, at("2026-11-28T00:00:00Z"));
        let c = hourly("2026-01-01T00:00:00Z");
        let rules = Rules::default();
        let ok = |t: &str| check_dispute(&c, week, at(t), &rules).is_ok();
        assert!(!ok("2026-11-23T11:59:59Z"));
        assert!(ok("2026-11-23T12:00:00Z"));
        assert!(ok("2026-11-27T23:59:59Z"));
        assert!(!ok("2026-11-28T00:00:00Z"));
        // During the week itself the window is not open yet.
        assert!(!ok("2026-11-20T12:00:00Z"));
    }

    /// A dispute of `minutes` at `rate` (minor units an hour), filed on
    /// the Monday noon after its week.
    fn dispute(minutes: i64, rate: i64) -> Dispute {
        let contract = Contract {
            hourly_rate_minor: rate,
            ..hourly("2026-11-01T00:00:00Z")
        };
        let (week, filed) = (at("2026-11-16T00:00:00Z"), at("2026-11-23T12:00:00Z"));
        let rules = Rules::default();
        Dispute::filed(&contract, week, "r".into(), minutes, false, filed, &rules)
    }

    #[test]
    fn disputed_minutes_are_whole_segments_up_to_the_billable_time() {
        let rules = Rules::default();
        assert_eq!(disputed_minutes(0, 600, &rules).ok(), Some(600));
        assert_eq!(disputed_minutes(600, 600, &rules).ok(), Some(600));
        assert_eq!(disputed_minutes(10, 600, &rules).ok(), Some(10));
        for bad in [610, 15, -10] {
            assert!(matches!(
                disputed_minutes(bad, 600, &rules),
                Err(Error::BadField {
                    field: "disputed_minutes",
                    ..
                })
            ));
        }
        assert!(matches!(
            disputed_minutes(0, 0, &rules),
            Err(Error::NoBillableTime)
        ));
    }

    #[test]
    fn answers_only_while_open_and_before_the_deadline() {
        let d = dispute(60, 6000);
        assert!(check_answerable(&d, d.respond_by - Duration::seconds(1)).is_ok());
        assert!(matches!(
            check_answerable(&d, d.respond_by),
            Err(Error::DisputeResponseWindowClosed { .. })
        ));
        let escalated = Dispute {
            state: DisputeState::Escalated,
            ..d.clone()
        };
        assert!(matches!(
            check_answerable(&escalated, d.create_time),
            Err(Error::DisputeNotOpen {
                state: DisputeState::Escalated
            })
        ));
        assert!(check_escalated(&escalated).is_ok());
        assert!(matches!(
            check_escalated(&d),
            Err(Error::DisputeNotEscalated { .. })
        ));
    }

    #[test]
    fn accepting_part_refunds_its_worth_and_all_refunds_the_disputed_amount() {
        let rules = Rules::default();
        // 25 minutes at $0.33/h would round; all of them is exactly the disputed amount.
        let d = dispute(30, 33);
        assert_eq!(accepted_refund(&d, 0, 33, &rules).ok(), Some((30, 17)));
        assert_eq!(accepted_refund(&d, 30, 33, &rules).ok(), Some((30, 17)));
        assert_eq!(accepted_refund(&d, 10, 6000, &rules).ok(), Some((10, 1000)));
        assert!(accepted_refund(&d, 40, 6000, &rules).is_err());
        assert!(accepted_refund(&d, 5, 6000, &rules).is_err());
    }

    #[test]
    fn resolution_refunds_take_at_most_what_is_left_or_adjust_the_week() {
        let pay = |id: &str, amount, refunded| Payment {
            id: id.into(),
            contract_id: "c".into(),
            kind: PaymentKind::HourlyInvoice,
            currency: "USD".into(),
            amount_minor: amount,
            refunded_minor: refunded,
            paid_at: at("2026-11-24T00:00:00Z"),
            memo: String::new(),
            create_time: at("2026-11-24T00:00:00Z"),
            billing_week: None,
        };
        assert_eq!(plan_resolution_refund(500, &[]), (vec![], 500));
        let invoices = [pay("a", 300, 100), pay("b", 1000, 0)];
        assert_eq!(
            plan_resolution_refund(500, &invoices),
            (vec![("a".into(), 200), ("b".into(), 300)], 0)
        );
        assert_eq!(
            plan_resolution_refund(5000, &invoices),
            (vec![("a".into(), 200), ("b".into(), 1000)], 0)
        );
        assert_eq!(plan_resolution_refund(0, &invoices), (vec![], 0));
    }
}
