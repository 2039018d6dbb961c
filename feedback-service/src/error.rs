//! The feedback service's one error type, and its one mapping to gRPC status:
//! domain rule failures, store errors and contract-service answers alike.

use std::collections::HashMap;

use chrono::{DateTime, SecondsFormat, Utc};
use tonic::{Code, Status};

use crate::domain::UnmetRule;
use shared::status::{self, Common, FieldViolation};

/// `ErrorInfo.domain` of this service's errors.
pub const DOMAIN: &str = "feedback.marketplace";

/// Everything a feedback-service call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the caller is not a party to contract {contract_id}, or it does not exist")]
    NotAParty { contract_id: String },
    #[error("only the {0} of the contract may do this")]
    WrongSide(&'static str),
    #[error("a user may only read and change their own notification preferences")]
    NotYourPreferences,
    #[error("missing scope {0}")]
    MissingScope(&'static str),
    #[error("{what} {id} not found")]
    NotFound { what: &'static str, id: String },
    #[error("not eligible for mid-contract feedback: {}", .0.first().map(|r| r.message.as_str()).unwrap_or(""))]
    NotEligible(Vec<UnmetRule>),
    #[error("only clients in the early-feedback test may add a bonus")]
    BonusNotAllowed,
    #[error("the bonus must be in {expected}, the contract's currency")]
    BonusCurrency { expected: String },
    #[error("a feedback request is already pending on this contract")]
    RequestAlreadyPending,
    #[error("the contract has not ended yet: end-of-contract feedback opens when it does")]
    ContractNotEnded,
    #[error("the feedback window closed at {closed_at}")]
    FeedbackWindowClosed { closed_at: DateTime<Utc> },
    #[error("feedback was already left for this contract")]
    FeedbackAlreadyGiven,
    #[error(
        "mid-contract feedback cannot be replied to; to follow up, message the freelancer directly"
    )]
    MidContractNotReplyable,
    #[error("feedback can be replied to once it is revealed")]
    FeedbackNotRevealed,
    #[error(
        "replies are accepted until {closed_at}, the end of the reply window after the contract ended"
    )]
    ReplyWindowClosed { closed_at: DateTime<Utc> },
    #[error("this feedback already has a reply")]
    AlreadyReplied,
    #[error("this feedback is already hidden")]
    AlreadyHidden,
    #[error("this feedback is not hidden")]
    NotHidden,
    #[error("contract-service is unavailable; nothing was written, retry later")]
    ContractServiceUnavailable(#[source] tonic::Status),
    #[error("the deadline passed while waiting for contract-service; nothing was written")]
    ContractServiceDeadline(#[source] tonic::Status),
    #[error("contract-service failed")]
    ContractService(#[source] tonic::Status),
    /// Bad input, a reused `request_id`, the database, a broken invariant.
    #[error(transparent)]
    Common(Common),
}

shared::common_error_from!(Error);

fn rfc3339(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

impl From<Error> for Status {
    fn from(err: Error) -> Status {
        let precondition = |reason: &str, metadata: HashMap<String, String>| {
            status::precondition_failed(DOMAIN, reason, "contract", err.to_string(), metadata)
        };
        let none = HashMap::new;
        match &err {
            Error::BonusNotAllowed | Error::BonusCurrency { .. } => {
                status::invalid_argument(DOMAIN, &[FieldViolation::new("bonus", err.to_string())])
            }
            Error::NotAParty { .. }
            | Error::WrongSide(_)
            | Error::MissingScope(_)
            | Error::NotYourPreferences => status::permission_denied(DOMAIN, err.to_string()),
            Error::NotFound { .. } => status::not_found(DOMAIN, err.to_string()),
            Error::NotEligible(rules) => {
                let mut details = tonic_types::ErrorDetails::new();
                let first = rules.first().map(|r| r.reason).unwrap_or("NOT_ELIGIBLE");
                let mut metadata = HashMap::new();
                if let Some(t) = rules.iter().filter_map(|r| r.hold_time).max() {
                    metadata.insert("holdTime".to_owned(), rfc3339(&t));
                }
                details.set_error_info(first, DOMAIN, metadata);
                for rule in rules {
                    details.add_precondition_failure_violation(
                        rule.reason,
                        "contract",
                        rule.message.clone(),
                    );
                }
                use tonic_types::StatusExt;
                Status::with_error_details(Code::FailedPrecondition, err.to_string(), details)
            }
            Error::RequestAlreadyPending => precondition("REQUEST_ALREADY_PENDING", none()),
            Error::ContractNotEnded => precondition("CONTRACT_NOT_ENDED", none()),
            Error::FeedbackWindowClosed { closed_at } => precondition(
                "FEEDBACK_WINDOW_CLOSED",
                HashMap::from([("closeTime".to_owned(), rfc3339(closed_at))]),
            ),
            Error::FeedbackAlreadyGiven => precondition("FEEDBACK_ALREADY_GIVEN", none()),
            Error::MidContractNotReplyable => {
                precondition("MID_CONTRACT_FEEDBACK_NOT_REPLYABLE", none())
            }
            Error::FeedbackNotRevealed => precondition("FEEDBACK_NOT_REVEALED", none()),
            Error::ReplyWindowClosed { closed_at } => precondition(
                "REPLY_WINDOW_CLOSED",
                HashMap::from([("closeTime".to_owned(), rfc3339(closed_at))]),
            ),
            Error::AlreadyReplied => precondition("ALREADY_REPLIED", none()),
            Error::AlreadyHidden => precondition("ALREADY_HIDDEN", none()),
            Error::NotHidden => precondition("NOT_HIDDEN", none()),
            Error::ContractServiceUnavailable(cause) => {
                tracing::warn!(error = %cause.message(), code = ?cause.code(), "contract-service unavailable");
                status::with_reason(
                    Code::Unavailable,
                    DOMAIN,
                    "CONTRACT_SERVICE_UNAVAILABLE",
                    err.to_string(),
                )
            }
            Error::ContractServiceDeadline(_) => status::with_reason(
                Code::DeadlineExceeded,
                DOMAIN,
                "CONTRACT_SERVICE_DEADLINE",
                err.to_string(),
            ),
            Error::ContractService(cause) => status::internal(DOMAIN, cause),
            Error::Common(common) => common.status(DOMAIN),
        }
    }
}
