//! Contracts, Work Diaries, payments and disputes as plain Rust: the types and
//! every rule of the contract service, evaluated against a given `now`. No
//! SQL and no gRPC here; the store persists these types and the gRPC layer
//! parses requests into them.

use chrono::{DateTime, Datelike, Duration, DurationRound, Utc};

use crate::error::Error;
use shared::auth::{Caller, scope};

/// The configurable numbers behind the rules (docs/rules.md, contract-service).
#[derive(Debug, Clone)]
pub struct Rules {
    /// Work Diary time is logged in segments of this many minutes.
    pub segment_minutes: i64,
    /// A payment may be refunded up to this long after it was paid (inclusive).
    pub refund_window: Duration,
    /// A bonus may be paid up to this long after the contract ended (inclusive).
    pub bonus_window: Duration,
    /// The review window opens this long after the billing week ends (Monday 12:00).
    pub review_opens_after_week: Duration,
    /// The review window closes (exclusive) this long after the week ends
    /// (Saturday 00:00, so Friday 23:59:59 is the last second inside).
    pub review_closes_after_week: Duration,
    /// How long idempotency keys are kept, at least.
    pub idempotency_retention: Duration,
    /// The freelancer may answer a dispute until this long after it was
    /// filed (exclusive); then it is escalated to support.
    pub dispute_response: Duration,
}

impl Default for Rules {
    fn default() -> Self {
        Self {
            segment_minutes: 10,
            refund_window: Duration::days(180),
            bonus_window: Duration::days(365),
            review_opens_after_week: Duration::hours(12),
            review_closes_after_week: Duration::days(5),
            idempotency_retention: Duration::hours(24),
            dispute_response: Duration::days(5),
        }
    }
}

/// How a contract is paid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContractType {
    Hourly,
    FixedPrice,
}

/// Where a contract is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContractState {
    Active,
    Ended,
}

/// A side of a contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Party {
    Client,
    Freelancer,
}

/// What a payment was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentKind {
    HourlyInvoice,
    FixedPrice,
    Bonus,
}

/// How a user is related to a contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Client,
    Freelancer,
    /// The agency the freelancer works through: may refund like the freelancer.
    Agency,
}

/// A contract as stored, with its derived payment totals.
#[derive(Debug, Clone, PartialEq)]
pub struct Contract {
    pub id: String,
    pub client_id: String,
    pub freelancer_id: String,
    pub agency_id: Option<String>,
    pub title: String,
    pub contract_type: ContractType,
    pub currency: String,
    /// Hourly contracts: rate per hour in minor units (0 for fixed price).
    pub hourly_rate_minor: i64,
    /// Hourly contracts: billable minutes per week (0 for fixed price).
    pub weekly_limit_minutes: i32,
    pub allow_manual_time: bool,
    pub state: ContractState,
    pub start_time: DateTime<Utc>,
    pub end_time: Option<DateTime<Utc>>,
    pub ended_by: Option<Party>,
    pub end_reason: String,
    pub create_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
    /// Latest `paid_at` of any payment.
    pub last_payment_time: Option<DateTime<Utc>>,
    /// Payments minus refunds, in minor units.
    pub net_paid_minor: i64,
    /// Set (with the end) once the Work Diary is locked.
    pub diary_lock_time: Option<DateTime<Utc>>,
}

impl Contract {
    /// The caller's relation to this contract, for user callers.
    pub fn role_of(&self, caller: &Caller) -> Option<Role> {
        let user = caller.user_id()?;
        if user == self.client_id {
            Some(Role::Client)
        } else if user == self.freelancer_id {
            Some(Role::Freelancer)
        } else if self.agency_id.as_deref() == Some(user) {
            Some(Role::Agency)
        } else {
            None
        }
    }

    /// Read access: the parties, or a service with `contracts:read` or `admin`.
    pub fn authorize_read(&self, caller: &Caller) -> Result<(), Error> {
        if self.role_of(caller).is_some()
            || caller.has_scope(scope::CONTRACTS_READ)
            || caller.has_scope(scope::ADMIN)
        {
            Ok(())
        } else {
            Err(self.not_yours())
        }
    }

    /// Only a user with one of `roles` on this contract.
    pub fn authorize_roles(&self, caller: &Caller, roles: &[Role]) -> Result<Role, Error> {
        match self.role_of(caller) {
            Some(role) if roles.contains(&role) => Ok(role),
            // A party with the wrong role may know the contract exists.
            Some(_) => Err(Error::WrongParty {
                allowed: roles.to_vec(),
            }),
            None => Err(self.not_yours()),
        }
    }

    /// The denial for a non-party: it reads the same whether or not the contract exists.
    pub fn not_yours(&self) -> Error {
        Error::NotAParty {
            contract_id: self.id.clone(),
        }
    }

    pub fn is_hourly(&self) -> bool {
        self.contract_type == ContractType::Hourly
    }
}

/// The Monday 00:00 UTC that starts the billing week containing `t`.
pub fn billing_week_start(t: DateTime<Utc>) -> DateTime<Utc> {
    let midnight = t.duration_trunc(Duration::days(1)).unwrap_or(t);
    midnight - Duration::days(i64::from(t.weekday().num_days_from_monday()))
}

/// A billing week: Monday 00:00 UTC up to the next Monday 00:00 (exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BillingWeek {
    pub start: DateTime<Utc>,
}

impl BillingWeek {
    pub fn containing(t: DateTime<Utc>) -> Self {
        Self {
            start: billing_week_start(t),
        }
    }

    pub fn end(&self) -> DateTime<Utc> {
        self.start + Duration::days(7)
    }

    pub fn contains(&self, t: DateTime<Utc>) -> bool {
        self.start <= t && t < self.end()
    }

    /// When the client may dispute this week: `[opens, closes)`.
    pub fn review_window(&self, rules: &Rules) -> (DateTime<Utc>, DateTime<Utc>) {
        (
            self.end() + rules.review_opens_after_week,
            self.end() + rules.review_closes_after_week,
        )
    }
}

/// A request to log time, already parsed.
#[derive(Debug, Clone)]
pub struct NewTimeEntry {
    pub start: DateTime<Utc>,
    pub minutes: i64,
    pub manual: bool,
    pub memo: String,
}

impl NewTimeEntry {
    pub fn end(&self) -> DateTime<Utc> {
        self.start + Duration::minutes(self.minutes)
    }
}

/// A logged span of time.
#[derive(Debug, Clone, PartialEq)]
pub struct TimeEntry {
    pub id: String,
    pub contract_id: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub manual: bool,
    pub memo: String,
    pub create_time: DateTime<Utc>,
}

impl TimeEntry {
    pub fn minutes(&self) -> i64 {
        (self.end - self.start).num_minutes()
    }
}

/// Every rule LogTime checks before touching the diary (overlap is checked by
/// the store under the diary lock).
pub fn check_log_time(
    contract: &Contract,
    entry: &NewTimeEntry,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    check_diary_writable(contract)?;
    if entry.manual && !contract.allow_manual_time {
        return Err(Error::ManualTimeNotAllowed);
    }
    if entry.end() > now {
        return Err(Error::TimeInFuture);
    }
    let week = BillingWeek::containing(now);
    if entry.start < week.start || entry.end() > week.end() {
        return Err(Error::OutsideCurrentWeek {
            week_start: week.start,
        });
    }
    if entry.start < contract.start_time {
        return Err(Error::BeforeContractStart {
            start_time: contract.start_time,
        });
    }
    Ok(())
}

/// Checks that a time entry may be deleted now.
pub fn check_delete_time(
    contract: &Contract,
    entry: &TimeEntry,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    check_diary_writable(contract)?;
    let week = BillingWeek::containing(now);
    if !week.contains(entry.start) {
        return Err(Error::OutsideCurrentWeek {
            week_start: week.start,
        });
    }
    Ok(())
}

pub fn check_diary_writable(contract: &Contract) -> Result<(), Error> {
    if !contract.is_hourly() {
        return Err(Error::NotHourly);
    }
    if contract.diary_lock_time.is_some() || contract.state == ContractState::Ended {
        return Err(Error::WorkDiaryLocked {
            contract_id: contract.id.clone(),
        });
    }
    Ok(())
}

/// How many minutes of each entry (in start order) fall within the weekly
/// limit: time over the limit is kept but not billable.
pub fn billable_minutes(entries: &[TimeEntry], weekly_limit_minutes: i64) -> Vec<i64> {
    let mut before = 0;
    entries
        .iter()
        .map(|e| {
            let billable = billable_after(before, e.minutes(), weekly_limit_minutes);
            before += e.minutes();
            billable
        })
        .collect()
}

/// Billable minutes of an entry that follows `before` minutes of its week.
pub fn billable_after(before: i64, minutes: i64, weekly_limit_minutes: i64) -> i64 {
    minutes.min((weekly_limit_minutes - before).max(0)).max(0)
}

/// Billable minutes at an hourly rate, rounded half up to the minor unit.
pub fn amount_for_minutes(minutes: i64, hourly_rate_minor: i64) -> i64 {
    let product = i128::from(minutes) * i128::from(hourly_rate_minor);
    i64::try_from((product + 30) / 60).unwrap_or(i64::MAX)
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

/// Where a dispute is in its life (the proto's `DisputeState` has the graph).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisputeState {
    Open,
    Escalated,
    Resolved,
    Withdrawn,
}

impl DisputeState {
    pub fn as_str(self) -> &'static str {
        match self {
            DisputeState::Open => "OPEN",
            DisputeState::Escalated => "ESCALATED",
            DisputeState::Resolved => "RESOLVED",
            DisputeState::Withdrawn => "WITHDRAWN",
        }
    }
}

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

/// What to do once a contract has ended (the help center's checklist).
pub const POST_END_CHECKLIST: &[(&str, &str)] = &[
    (
        "REVOKE_ACCESS",
        "Change or revoke any passwords or special access you gave the freelancer during the contract.",
    ),
    (
        "CONFIRM_WORK_RECEIVED",
        "Make sure you have received all work from the freelancer, and any work-related materials and equipment of yours they used.",
    ),
    (
        "REMOVE_PROPERTY",
        "Remind the freelancer to remove any property of yours (documents, files, software) from their equipment.",
    ),
    (
        "LEAVE_FEEDBACK",
        "Leave feedback: it is double-blind, so each side sees the other's once both have left theirs or the window closes.",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("valid time")
            .with_timezone(&Utc)
    }

    fn hourly(start: &str) -> Contract {
        Contract {
            id: "ctr_1".into(),
            client_id: "client".into(),
            freelancer_id: "freelancer".into(),
            agency_id: Some("agency".into()),
            title: "t".into(),
            contract_type: ContractType::Hourly,
            currency: "USD".into(),
            hourly_rate_minor: 6000,
            weekly_limit_minutes: 600,
            allow_manual_time: true,
            state: ContractState::Active,
            start_time: at(start),
            end_time: None,
            ended_by: None,
            end_reason: String::new(),
            create_time: at(start),
            update_time: at(start),
            last_payment_time: None,
            net_paid_minor: 0,
            diary_lock_time: None,
        }
    }

    fn entry(start: &str, minutes: i64, manual: bool) -> NewTimeEntry {
        NewTimeEntry {
            start: at(start),
            minutes,
            manual,
            memo: String::new(),
        }
    }

    #[test]
    fn billing_weeks_start_monday_midnight_utc() {
        // 2026-11-16 is a Monday.
        assert_eq!(
            billing_week_start(at("2026-11-16T00:00:00Z")),
            at("2026-11-16T00:00:00Z")
        );
        assert_eq!(
            billing_week_start(at("2026-11-22T23:59:59Z")),
            at("2026-11-16T00:00:00Z")
        );
        assert_eq!(
            billing_week_start(at("2026-11-23T00:00:00Z")),
            at("2026-11-23T00:00:00Z")
        );
        assert_eq!(
            billing_week_start(at("2026-11-19T13:45:12.5Z")),
            at("2026-11-16T00:00:00Z")
        );
    }

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

    #[test]
    fn time_is_logged_only_inside_the_current_week_and_not_in_the_future() {
        let c = hourly("2026-01-01T00:00:00Z");
        let now = at("2026-11-18T10:00:00Z");
        assert!(check_log_time(&c, &entry("2026-11-18T09:50:00Z", 10, false), now).is_ok());
        assert!(check_log_time(&c, &entry("2026-11-16T00:00:00Z", 10, false), now).is_ok());
        assert!(matches!(
            check_log_time(&c, &entry("2026-11-15T23:50:00Z", 10, false), now),
            Err(Error::OutsideCurrentWeek { .. })
        ));
        assert!(matches!(
            check_log_time(&c, &entry("2026-11-18T09:50:00Z", 20, false), now),
            Err(Error::TimeInFuture)
        ));
    }

    #[test]
    fn locked_fixed_price_and_manual_rules() {
        let now = at("2026-11-18T10:00:00Z");
        let mut c = hourly("2026-01-01T00:00:00Z");
        c.allow_manual_time = false;
        assert!(matches!(
            check_log_time(&c, &entry("2026-11-18T09:00:00Z", 10, true), now),
            Err(Error::ManualTimeNotAllowed)
        ));
        c.diary_lock_time = Some(now);
        assert!(matches!(
            check_log_time(&c, &entry("2026-11-18T09:00:00Z", 10, false), now),
            Err(Error::WorkDiaryLocked { .. })
        ));
        let mut fixed = hourly("2026-01-01T00:00:00Z");
        fixed.contract_type = ContractType::FixedPrice;
        assert!(matches!(
            check_log_time(&fixed, &entry("2026-11-18T09:00:00Z", 10, false), now),
            Err(Error::NotHourly)
        ));
        let late = hourly("2026-11-18T09:30:00Z");
        assert!(matches!(
            check_log_time(&late, &entry("2026-11-18T09:00:00Z", 10, false), now),
            Err(Error::BeforeContractStart { .. })
        ));
    }

    #[test]
    fn time_over_the_weekly_limit_is_kept_but_not_billable() {
        let mk = |start: &str, end: &str| TimeEntry {
            id: "t".into(),
            contract_id: "c".into(),
            start: at(start),
            end: at(end),
            manual: false,
            memo: String::new(),
            create_time: at(start),
        };
        let entries = vec![
            mk("2026-11-16T08:00:00Z", "2026-11-16T13:00:00Z"),
            mk("2026-11-17T08:00:00Z", "2026-11-17T14:00:00Z"),
            mk("2026-11-18T08:00:00Z", "2026-11-18T09:00:00Z"),
        ];
        assert_eq!(billable_minutes(&entries, 600), vec![300, 300, 0]);
        assert_eq!(billable_minutes(&entries, 610), vec![300, 310, 0]);
        assert_eq!(amount_for_minutes(90, 6000), 9000);
        assert_eq!(amount_for_minutes(10, 1), 0);
        assert_eq!(amount_for_minutes(30, 1), 1);
    }

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

    fn dispute(minutes: i64, amount: i64) -> Dispute {
        let t = at("2026-11-23T12:00:00Z");
        Dispute {
            id: "dsp_1".into(),
            contract_id: "ctr_1".into(),
            currency: "USD".into(),
            week_start: at("2026-11-16T00:00:00Z"),
            reason: "r".into(),
            state: DisputeState::Open,
            create_time: t,
            whole_week: false,
            disputed_minutes: minutes,
            disputed_amount_minor: amount,
            respond_by: t + Duration::days(5),
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
            update_time: t,
        }
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
        let d = dispute(30, 17);
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

    #[test]
    fn membership_decides_roles() {
        let c = hourly("2026-01-01T00:00:00Z");
        let user = |id: &str| Caller::User { id: id.into() };
        assert_eq!(c.role_of(&user("client")), Some(Role::Client));
        assert_eq!(c.role_of(&user("freelancer")), Some(Role::Freelancer));
        assert_eq!(c.role_of(&user("agency")), Some(Role::Agency));
        assert_eq!(c.role_of(&user("stranger")), None);
        assert!(c.authorize_read(&user("stranger")).is_err());
        let reader = Caller::Service {
            name: "feedback".into(),
            scopes: vec!["contracts:read".into()],
        };
        assert!(c.authorize_read(&reader).is_ok());
        assert!(matches!(
            c.authorize_roles(&user("client"), &[Role::Freelancer]),
            Err(Error::WrongParty { .. })
        ));
    }
}
