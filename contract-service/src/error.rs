//! The contract service's one error type, and its one mapping to gRPC status;
//! it depends only on the shared vocabulary in `domain`, never on a feature's rules.

use std::collections::HashMap;

use chrono::{DateTime, SecondsFormat, Utc};
use tonic::Status;

use crate::domain::{DisputeState, Role};
use shared::status::{self, Common, FieldViolation};

/// `ErrorInfo.domain` of this service's errors.
pub const DOMAIN: &str = "contracts.marketplace";

/// Everything a contract-service call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the caller is not a party to contract {contract_id}, or it does not exist")]
    NotAParty { contract_id: String },
    #[error("only the {} of the contract may do this", roles(allowed))]
    WrongParty { allowed: Vec<Role> },
    #[error("missing scope {0}")]
    MissingScope(&'static str),
    #[error("{what} {id} not found")]
    NotFound { what: &'static str, id: String },
    #[error("contract {contract_id} has ended: its Work Diary is locked")]
    WorkDiaryLocked { contract_id: String },
    #[error("contract {contract_id} has already ended")]
    AlreadyEnded { contract_id: String },
    #[error("only hourly contracts have a Work Diary")]
    NotHourly,
    #[error("manual time is not allowed on this contract")]
    ManualTimeNotAllowed,
    #[error("time cannot be logged in the future")]
    TimeInFuture,
    #[error("only the current billing week (from {week_start}) can be changed")]
    OutsideCurrentWeek { week_start: DateTime<Utc> },
    #[error("the contract starts at {start_time}; no time before it")]
    BeforeContractStart { start_time: DateTime<Utc> },
    #[error("the time overlaps time already logged")]
    TimeOverlap,
    #[error("the amount must be in {expected}, the contract's currency")]
    CurrencyMismatch { expected: String },
    #[error("a payment cannot be dated in the future")]
    PaidInFuture,
    #[error("payment kind does not match the contract type")]
    PaymentKindMismatch,
    #[error("a payment cannot be dated before the contract started ({start_time})")]
    PaidBeforeContractStart { start_time: DateTime<Utc> },
    #[error(
        "bonuses can be paid until {closed_at}, the end of the bonus window after the contract ended"
    )]
    BonusWindowPassed { closed_at: DateTime<Utc> },
    #[error("this payment can no longer be refunded: the refund window closed at {closed_at}")]
    RefundWindowPassed { closed_at: DateTime<Utc> },
    #[error("the refund exceeds what is left of the payment ({remaining_minor} minor units)")]
    RefundExceedsRemaining { remaining_minor: i64 },
    #[error("hours of this week can be disputed from {opens} until before {closes}")]
    DisputeWindowClosed {
        opens: DateTime<Utc>,
        closes: DateTime<Utc>,
    },
    #[error("this week already has an open dispute")]
    DisputeAlreadyOpen,
    #[error("this week's dispute has already been resolved")]
    DisputeAlreadyResolved,
    #[error("the week has no billable time to dispute")]
    NoBillableTime,
    #[error("the dispute is {}, not open", state_name(*state))]
    DisputeNotOpen { state: DisputeState },
    #[error("the dispute is {}; support decides only escalated disputes", state_name(*state))]
    DisputeNotEscalated { state: DisputeState },
    #[error("the freelancer's response window closed at {closed_at}: the dispute goes to support")]
    DisputeResponseWindowClosed { closed_at: DateTime<Utc> },
    /// Input that is well-formed but does not fit the stored facts (named field).
    #[error("{message}")]
    BadField {
        field: &'static str,
        message: String,
    },
    /// Bad input, a reused `request_id`, the database, a broken invariant.
    #[error(transparent)]
    Common(Common),
}

shared::common_error_from!(Error);

fn roles(allowed: &[Role]) -> String {
    allowed
        .iter()
        .map(|r| match r {
            Role::Client => "client",
            Role::Freelancer => "freelancer",
            Role::Agency => "agency",
        })
        .collect::<Vec<_>>()
        .join(" or ")
}

fn state_name(state: DisputeState) -> &'static str {
    match state {
        DisputeState::Open => "open",
        DisputeState::Escalated => "escalated",
        DisputeState::Resolved => "resolved",
        DisputeState::Withdrawn => "withdrawn",
    }
}

fn rfc3339(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

impl Error {
    /// The `ErrorInfo` reason and facts for a failed business rule.
    fn precondition(&self) -> Option<(&'static str, HashMap<String, String>)> {
        let one = |k: &str, v: String| HashMap::from([(k.to_owned(), v)]);
        Some(match self {
            Error::WorkDiaryLocked { .. } => ("WORK_DIARY_LOCKED", HashMap::new()),
            Error::AlreadyEnded { .. } => ("CONTRACT_ALREADY_ENDED", HashMap::new()),
            Error::NotHourly => ("CONTRACT_NOT_HOURLY", HashMap::new()),
            Error::ManualTimeNotAllowed => ("MANUAL_TIME_NOT_ALLOWED", HashMap::new()),
            Error::TimeInFuture => ("TIME_IN_FUTURE", HashMap::new()),
            Error::OutsideCurrentWeek { week_start } => (
                "OUTSIDE_CURRENT_WEEK",
                one("currentWeekStartTime", rfc3339(week_start)),
            ),
            Error::BeforeContractStart { start_time } => (
                "BEFORE_CONTRACT_START",
                one("contractStartTime", rfc3339(start_time)),
            ),
            Error::TimeOverlap => ("TIME_ENTRY_OVERLAP", HashMap::new()),
            Error::PaidBeforeContractStart { start_time } => (
                "PAYMENT_BEFORE_CONTRACT_START",
                one("contractStartTime", rfc3339(start_time)),
            ),
            Error::BonusWindowPassed { closed_at } => {
                ("BONUS_WINDOW_PASSED", one("closeTime", rfc3339(closed_at)))
            }
            Error::RefundWindowPassed { closed_at } => {
                ("REFUND_WINDOW_PASSED", one("closeTime", rfc3339(closed_at)))
            }
            Error::RefundExceedsRemaining { remaining_minor } => (
                "REFUND_EXCEEDS_REMAINING",
                one("remainingMinor", remaining_minor.to_string()),
            ),
            Error::DisputeWindowClosed { opens, closes } => (
                "DISPUTE_WINDOW_CLOSED",
                HashMap::from([
                    ("openTime".to_owned(), rfc3339(opens)),
                    ("closeTime".to_owned(), rfc3339(closes)),
                ]),
            ),
            Error::DisputeAlreadyOpen => ("DISPUTE_ALREADY_OPEN", HashMap::new()),
            Error::DisputeAlreadyResolved => ("DISPUTE_ALREADY_RESOLVED", HashMap::new()),
            Error::NoBillableTime => ("NO_BILLABLE_TIME", HashMap::new()),
            Error::DisputeNotOpen { state } => {
                ("DISPUTE_NOT_OPEN", one("state", state.as_str().to_owned()))
            }
            Error::DisputeNotEscalated { state } => (
                "DISPUTE_NOT_ESCALATED",
                one("state", state.as_str().to_owned()),
            ),
            Error::DisputeResponseWindowClosed { closed_at } => (
                "DISPUTE_RESPONSE_WINDOW_CLOSED",
                one("closeTime", rfc3339(closed_at)),
            ),
            _ => return None,
        })
    }
}

impl From<Error> for Status {
    fn from(err: Error) -> Status {
        if let Some((reason, metadata)) = err.precondition() {
            return status::precondition_failed(
                DOMAIN,
                reason,
                "contract",
                err.to_string(),
                metadata,
            );
        }
        match err {
            Error::CurrencyMismatch { .. } => status::invalid_argument(
                DOMAIN,
                &[FieldViolation::new("amount.currency_code", err.to_string())],
            ),
            Error::PaidInFuture => status::invalid_argument(
                DOMAIN,
                &[FieldViolation::new("paid_time", err.to_string())],
            ),
            Error::BadField { field, .. } => {
                status::invalid_argument(DOMAIN, &[FieldViolation::new(field, err.to_string())])
            }
            Error::PaymentKindMismatch => {
                status::invalid_argument(DOMAIN, &[FieldViolation::new("kind", err.to_string())])
            }
            Error::NotAParty { .. } | Error::WrongParty { .. } | Error::MissingScope(_) => {
                status::permission_denied(DOMAIN, err.to_string())
            }
            Error::NotFound { .. } => status::not_found(DOMAIN, err.to_string()),
            Error::Common(common) => common.status(DOMAIN),
            // Every precondition was handled above.
            other => status::internal(DOMAIN, &other),
        }
    }
}
