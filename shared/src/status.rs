//! Building `tonic::Status` values the AIP-193 way: a canonical code, an
//! `ErrorInfo` with an UPPER_SNAKE reason on every error, `BadRequest` field
//! violations for invalid input and `PreconditionFailure` for rule failures.
//! Each service maps its own error enum onto these in exactly one place.

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// One invalid field of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    /// The field's path in the request, e.g. `amount.amount_minor`.
    pub field: String,
    pub description: String,
}

impl FieldViolation {
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            description: description.into(),
        }
    }
}

impl std::fmt::Display for FieldViolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.description)
    }
}

/// The `ErrorInfo.domain` of a service, e.g. `contracts.marketplace`.
pub type Domain = &'static str;

/// The failures every service shares (bad input, a reused `request_id`, the
/// database, a broken invariant), mapped to a status once, in [`Common::status`].
#[derive(Debug, thiserror::Error)]
pub enum Common {
    #[error("invalid argument")]
    InvalidArgument(Vec<FieldViolation>),
    #[error("request_id was already used with different parameters")]
    IdempotencyMismatch,
    #[error("database error")]
    Database(#[from] sqlx::Error),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<crate::idempotency::IdempotencyError> for Common {
    fn from(err: crate::idempotency::IdempotencyError) -> Self {
        match err {
            crate::idempotency::IdempotencyError::Mismatch => Common::IdempotencyMismatch,
            crate::idempotency::IdempotencyError::Database(e) => Common::Database(e),
        }
    }
}

impl From<Vec<FieldViolation>> for Common {
    fn from(violations: Vec<FieldViolation>) -> Self {
        Common::InvalidArgument(violations)
    }
}

impl Common {
    /// The status of this failure, in `domain`.
    pub fn status(&self, domain: Domain) -> Status {
        match self {
            Common::InvalidArgument(violations) => invalid_argument(domain, violations),
            Common::IdempotencyMismatch => invalid_argument(
                domain,
                &[FieldViolation::new("request_id", self.to_string())],
            ),
            Common::Database(e) if crate::db::is_unavailable(e) => database_unavailable(domain, e),
            Common::Database(e) => internal(domain, e),
            Common::Internal(_) => internal(domain, self),
        }
    }
}

/// Lets `?` turn what [`Common`] is made from into a service's error type,
/// whose `Common` variant holds it.
#[macro_export]
macro_rules! common_error_from {
    ($error:ty) => {
        impl From<$crate::status::Common> for $error {
            fn from(common: $crate::status::Common) -> Self {
                Self::Common(common)
            }
        }
        impl From<::sqlx::Error> for $error {
            fn from(err: ::sqlx::Error) -> Self {
                Self::Common(err.into())
            }
        }
        impl From<$crate::idempotency::IdempotencyError> for $error {
            fn from(err: $crate::idempotency::IdempotencyError) -> Self {
                Self::Common(err.into())
            }
        }
        impl From<Vec<$crate::status::FieldViolation>> for $error {
            fn from(violations: Vec<$crate::status::FieldViolation>) -> Self {
                Self::Common(violations.into())
            }
        }
    };
}

/// INVALID_ARGUMENT naming every bad field.
pub fn invalid_argument(domain: Domain, violations: &[FieldViolation]) -> Status {
    let message = format!(
        "invalid argument: {}",
        violations
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    );
    let mut details = ErrorDetails::new();
    details.set_error_info("INVALID_ARGUMENT", domain, HashMap::new());
    for v in violations {
        details.add_bad_request_violation(v.field.clone(), v.description.clone());
    }
    Status::with_error_details(Code::InvalidArgument, message, details)
}

/// FAILED_PRECONDITION for a business rule that does not hold.
///
/// `subject` names what the rule is about (e.g. `contracts/ctr_…`);
/// `metadata` carries machine-readable facts such as the time the rule will hold.
pub fn precondition_failed(
    domain: Domain,
    reason: &str,
    subject: &str,
    message: impl Into<String>,
    metadata: HashMap<String, String>,
) -> Status {
    let message = message.into();
    let mut details = ErrorDetails::new();
    details.set_error_info(reason, domain, metadata);
    details.add_precondition_failure_violation(reason, subject, message.clone());
    Status::with_error_details(Code::FailedPrecondition, message, details)
}

/// Any other code with an `ErrorInfo` reason.
pub fn with_reason(code: Code, domain: Domain, reason: &str, message: impl Into<String>) -> Status {
    let mut details = ErrorDetails::new();
    details.set_error_info(reason, domain, HashMap::new());
    Status::with_error_details(code, message, details)
}

/// PERMISSION_DENIED (reason `PERMISSION_DENIED`) for a caller that may not
/// do this; about objects the message never reveals whether they exist.
pub fn permission_denied(domain: Domain, message: impl Into<String>) -> Status {
    with_reason(Code::PermissionDenied, domain, "PERMISSION_DENIED", message)
}

/// NOT_FOUND (reason `NOT_FOUND`).
pub fn not_found(domain: Domain, message: impl Into<String>) -> Status {
    with_reason(Code::NotFound, domain, "NOT_FOUND", message)
}

/// An opaque INTERNAL status; the cause chain is logged, never returned.
pub fn internal(domain: Domain, err: &(dyn std::error::Error + 'static)) -> Status {
    let mut chain = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        chain.push_str(": ");
        chain.push_str(&cause.to_string());
        source = cause.source();
    }
    tracing::error!(error = %chain, "internal error");
    with_reason(Code::Internal, domain, "INTERNAL", "internal error")
}

/// UNAVAILABLE when the database cannot be reached; the cause is logged.
pub fn database_unavailable(domain: Domain, err: &(dyn std::error::Error + 'static)) -> Status {
    tracing::warn!(error = %err, "database unavailable");
    with_reason(
        Code::Unavailable,
        domain,
        "DATABASE_UNAVAILABLE",
        "the database is unavailable; retry later",
    )
}

/// The `ErrorInfo.reason` of a status, if it has one (tests and clients).
pub fn reason(status: &Status) -> Option<String> {
    status.get_details_error_info().map(|info| info.reason)
}

/// The fields named by a status's `BadRequest`, if any.
pub fn violated_fields(status: &Status) -> Vec<String> {
    status
        .get_details_bad_request()
        .map(|br| br.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_argument_names_every_field() {
        let status = invalid_argument(
            "test",
            &[
                FieldViolation::new("contract_id", "is required"),
                FieldViolation::new("minutes", "must be positive"),
            ],
        );
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().contains("contract_id: is required"));
        assert_eq!(violated_fields(&status), vec!["contract_id", "minutes"]);
        assert_eq!(reason(&status).as_deref(), Some("INVALID_ARGUMENT"));
    }

    #[test]
    fn internal_errors_are_opaque() {
        let err = std::io::Error::other("secret detail");
        let status = internal("test", &err);
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("secret"));
    }
}
