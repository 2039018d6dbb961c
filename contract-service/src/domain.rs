//! The vocabulary every feature shares: the configurable rule numbers, the
//! parties' roles, the billing week and a dispute's states (no SQL, gRPC or errors).

use chrono::{DateTime, Datelike, Duration, DurationRound, Utc};

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

/// How a user is related to a contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Client,
    Freelancer,
    /// The agency the freelancer works through: may refund like the freelancer.
    Agency,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::at;

    #[test]
    fn billing_weeks_start_monday_midnight_utc() {
        // 2026-11-16 is a Monday.
        for (t, start) in [
            ("2026-11-16T00:00:00Z", "2026-11-16T00:00:00Z"),
            ("2026-11-22T23:59:59Z", "2026-11-16T00:00:00Z"),
            ("2026-11-23T00:00:00Z", "2026-11-23T00:00:00Z"),
            ("2026-11-19T13:45:12.5Z", "2026-11-16T00:00:00Z"),
        ] {
            assert_eq!(billing_week_start(at(t)), at(start), "{t}");
        }
    }
}
