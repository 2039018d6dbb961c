//! Feedback rules as plain Rust: mid-contract eligibility (docs/rules.md), the
//! early-feedback cohort, the end-of-contract window, double-blind reveal
//! and replies (docs/rules.md). Everything is evaluated against a given `now`.

use std::collections::HashSet;

use chrono::{DateTime, Duration, Utc};
use sha2::{Digest, Sha256};

/// The configurable numbers behind the rules.
#[derive(Debug, Clone)]
pub struct Rules {
    /// Baseline: mid-contract feedback from this long after the contract started.
    pub min_contract_age: Duration,
    /// Early-feedback cohort: from this long after the start.
    pub min_contract_age_early: Duration,
    /// A payment must have been made within this long (inclusive).
    pub payment_recency: Duration,
    /// At most one mid-contract feedback per this long.
    pub feedback_interval: Duration,
    /// A feedback request expires this long after it was made.
    pub request_ttl: Duration,
    /// End-of-contract feedback may be left until this long after the end (exclusive).
    pub end_window: Duration,
    /// A party who has not left end-of-contract feedback is reminded this
    /// long before the window closes.
    pub reminder_before: Duration,
    /// A reply may be posted until this long after the end (exclusive).
    pub reply_window: Duration,
    /// Public feedback shows in work history only with at least this much net paid.
    pub min_net_paid_minor: i64,
    /// The largest bonus accepted with mid-contract feedback.
    pub max_bonus_minor: i64,
}

impl Default for Rules {
    fn default() -> Self {
        Self {
            min_contract_age: Duration::days(30),
            min_contract_age_early: Duration::days(14),
            payment_recency: Duration::days(30),
            feedback_interval: Duration::days(30),
            request_ttl: Duration::days(14),
            end_window: Duration::days(14),
            reminder_before: Duration::days(3),
            reply_window: Duration::days(28),
            min_net_paid_minor: 100,
            max_bonus_minor: 100_000,
        }
    }
}

/// Which mid-contract experience a client gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cohort {
    Baseline,
    /// "Feedback just 14 days into a contract, with the option to add a bonus."
    EarlyFeedback,
}

impl Cohort {
    pub fn as_str(self) -> &'static str {
        match self {
            Cohort::Baseline => "BASELINE",
            Cohort::EarlyFeedback => "EARLY_FEEDBACK",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "BASELINE" => Some(Cohort::Baseline),
            "EARLY_FEEDBACK" => Some(Cohort::EarlyFeedback),
            _ => None,
        }
    }
}

/// Who is in the early-feedback test: an allow-list and/or a stable rollout
/// percentage by hash of the client id.
#[derive(Debug, Clone, Default)]
pub struct CohortConfig {
    pub allow_list: HashSet<String>,
    /// Share of clients in the test, in basis points (0 to 10,000).
    pub rollout_basis_points: u32,
}

impl CohortConfig {
    /// The cohort of a client: the same answer every time for the same client.
    pub fn cohort_of(&self, client_id: &str) -> Cohort {
        if self.allow_list.contains(client_id) {
            return Cohort::EarlyFeedback;
        }
        let digest = Sha256::digest(format!("early-feedback:{client_id}").as_bytes());
        let bucket = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]) % 10_000;
        if bucket < self.rollout_basis_points {
            Cohort::EarlyFeedback
        } else {
            Cohort::Baseline
        }
    }
}

/// What feedback-service needs to know of a contract (from contract-service).
#[derive(Debug, Clone, PartialEq)]
pub struct ContractFacts {
    pub id: String,
    pub client_id: String,
    pub freelancer_id: String,
    pub active: bool,
    pub currency: String,
    pub start_time: DateTime<Utc>,
    pub end_time: Option<DateTime<Utc>>,
    pub last_payment_time: Option<DateTime<Utc>>,
    pub net_paid_minor: i64,
}

/// A user's side of a contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Freelancer,
}

impl ContractFacts {
    pub fn side_of(&self, user_id: &str) -> Option<Side> {
        if user_id == self.client_id {
            Some(Side::Client)
        } else if user_id == self.freelancer_id {
            Some(Side::Freelancer)
        } else {
            None
        }
    }
}

/// One eligibility rule that does not hold.
#[derive(Debug, Clone, PartialEq)]
pub struct UnmetRule {
    pub reason: &'static str,
    pub message: String,
    /// When it will hold, if that is known.
    pub hold_time: Option<DateTime<Utc>>,
}

/// The answer behind the "Leave Feedback" button.
#[derive(Debug, Clone, PartialEq)]
pub struct Eligibility {
    pub contract_id: String,
    pub unmet: Vec<UnmetRule>,
    pub cohort: Cohort,
    pub bonus_allowed: bool,
    pub next_eligible_time: Option<DateTime<Utc>>,
}

impl Eligibility {
    pub fn eligible(&self) -> bool {
        self.unmet.is_empty()
    }
}

fn day(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// The five rules of mid-contract eligibility (docs/rules.md). `last_feedback` is the time of the contract's
/// latest mid-contract feedback, if any.
pub fn mid_contract_eligibility(
    contract: &ContractFacts,
    last_feedback: Option<DateTime<Utc>>,
    cohort: Cohort,
    rules: &Rules,
    now: DateTime<Utc>,
) -> Eligibility {
    let mut unmet = Vec::new();
    if !contract.active {
        unmet.push(UnmetRule {
            reason: "CONTRACT_NOT_ACTIVE",
            message: "Mid-contract feedback is for active contracts; leave end-of-contract feedback instead.".into(),
            hold_time: None,
        });
    }
    let min_age = match cohort {
        Cohort::Baseline => rules.min_contract_age,
        Cohort::EarlyFeedback => rules.min_contract_age_early,
    };
    let old_enough = contract.start_time + min_age;
    if now < old_enough {
        unmet.push(UnmetRule {
            reason: "CONTRACT_TOO_NEW",
            message: format!(
                "The contract must have started at least {} days ago; it will be on {}.",
                min_age.num_days(),
                day(old_enough)
            ),
            hold_time: Some(old_enough),
        });
    }
    match contract.last_payment_time {
        Some(paid) if now - paid <= rules.payment_recency => {}
        _ => unmet.push(UnmetRule {
            reason: "NO_RECENT_PAYMENT",
            message: format!(
                "A payment must have been made on the contract in the last {} days.",
                rules.payment_recency.num_days()
            ),
            hold_time: None,
        }),
    }
    if let Some(given) = last_feedback {
        if contract.last_payment_time.is_some_and(|paid| given >= paid) {
            unmet.push(UnmetRule {
                reason: "FEEDBACK_SINCE_LAST_PAYMENT",
                message: "Mid-contract feedback was already given since the latest payment; it can be given again after the next one.".into(),
                hold_time: None,
            });
        }
        let again = given + rules.feedback_interval;
        if now < again {
            unmet.push(UnmetRule {
                reason: "FEEDBACK_TOO_RECENT",
                message: format!(
                    "Mid-contract feedback can be given once every {} days; next on {}.",
                    rules.feedback_interval.num_days(),
                    day(again)
                ),
                hold_time: Some(again),
            });
        }
    }
    let next_eligible_time = if unmet.is_empty() || unmet.iter().any(|r| r.hold_time.is_none()) {
        None
    } else {
        unmet.iter().filter_map(|r| r.hold_time).max()
    };
    Eligibility {
        contract_id: contract.id.clone(),
        unmet,
        cohort,
        bonus_allowed: cohort == Cohort::EarlyFeedback,
        next_eligible_time,
    }
}

/// When end-of-contract feedback may be left: `[end, close)`.
pub fn end_feedback_window(end: DateTime<Utc>, rules: &Rules) -> (DateTime<Utc>, DateTime<Utc>) {
    (end, end + rules.end_window)
}

/// Whether both sides' feedback is visible to the other: both submitted, or
/// the window closed (then whatever exists is published).
pub fn is_revealed(
    both_submitted: bool,
    end: DateTime<Utc>,
    rules: &Rules,
    now: DateTime<Utc>,
) -> bool {
    both_submitted || now >= end_feedback_window(end, rules).1
}

/// The overall score: the mean of the stars.
pub fn overall(scores: &[i32]) -> f64 {
    if scores.is_empty() {
        return 0.0;
    }
    f64::from(scores.iter().sum::<i32>()) / scores.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("valid")
            .with_timezone(&Utc)
    }

    /// `c`'s eligibility at `now` (RFC 3339) under the default rules.
    fn eligibility(
        c: &ContractFacts,
        last_feedback: Option<DateTime<Utc>>,
        cohort: Cohort,
        now: &str,
    ) -> Eligibility {
        mid_contract_eligibility(c, last_feedback, cohort, &Rules::default(), at(now))
    }

    fn contract(start: &str, paid: Option<&str>) -> ContractFacts {
        ContractFacts {
            id: "ctr_1".into(),
            client_id: "c".into(),
            freelancer_id: "f".into(),
            active: true,
            currency: "USD".into(),
            start_time: at(start),
            end_time: None,
            last_payment_time: paid.map(at),
            net_paid_minor: 1000,
        }
    }

    fn reasons(e: &Eligibility) -> Vec<&'static str> {
        e.unmet.iter().map(|r| r.reason).collect()
    }

    #[test]
    fn contracts_are_eligible_from_30_days_or_14_in_the_cohort() {
        let rules = Rules::default();
        let c = contract("2026-10-01T00:00:00Z", Some("2026-10-20T00:00:00Z"));
        let almost = at("2026-10-30T23:00:00Z");
        let e = mid_contract_eligibility(&c, None, Cohort::Baseline, &rules, almost);
        assert_eq!(reasons(&e), ["CONTRACT_TOO_NEW"]);
        assert_eq!(e.next_eligible_time, Some(at("2026-10-31T00:00:00Z")));
        assert!(eligibility(&c, None, Cohort::Baseline, "2026-10-31T00:00:00Z").eligible());
        let early = eligibility(&c, None, Cohort::EarlyFeedback, "2026-10-15T00:00:00Z");
        assert!(early.eligible());
        assert!(early.bonus_allowed);
        let early_too_soon = eligibility(&c, None, Cohort::EarlyFeedback, "2026-10-14T23:59:59Z");
        assert_eq!(reasons(&early_too_soon), ["CONTRACT_TOO_NEW"]);
    }

    #[test]
    fn a_payment_within_30_days_is_needed() {
        let c = contract("2026-01-01T00:00:00Z", Some("2026-10-01T00:00:00Z"));
        assert!(eligibility(&c, None, Cohort::Baseline, "2026-10-31T00:00:00Z").eligible());
        let late = eligibility(&c, None, Cohort::Baseline, "2026-10-31T00:00:01Z");
        assert_eq!(reasons(&late), ["NO_RECENT_PAYMENT"]);
        assert_eq!(late.next_eligible_time, None);
        let never = contract("2026-01-01T00:00:00Z", None);
        assert_eq!(
            reasons(&eligibility(
                &never,
                None,
                Cohort::Baseline,
                "2026-10-31T00:00:00Z"
            )),
            ["NO_RECENT_PAYMENT"]
        );
    }

    #[test]
    fn feedback_once_per_payment_and_once_every_30_days() {
        let c = contract("2026-01-01T00:00:00Z", Some("2026-10-01T00:00:00Z"));
        let given = at("2026-10-02T00:00:00Z");
        let e = eligibility(&c, Some(given), Cohort::Baseline, "2026-10-10T00:00:00Z");
        assert_eq!(
            reasons(&e),
            ["FEEDBACK_SINCE_LAST_PAYMENT", "FEEDBACK_TOO_RECENT"]
        );
        assert_eq!(
            e.next_eligible_time, None,
            "a new payment is needed: no date"
        );
        let paid_again = contract("2026-01-01T00:00:00Z", Some("2026-10-20T00:00:00Z"));
        let e = eligibility(
            &paid_again,
            Some(given),
            Cohort::Baseline,
            "2026-10-31T23:59:59Z",
        );
        assert_eq!(reasons(&e), ["FEEDBACK_TOO_RECENT"]);
        assert_eq!(e.next_eligible_time, Some(at("2026-11-01T00:00:00Z")));
        assert!(
            eligibility(
                &paid_again,
                Some(given),
                Cohort::Baseline,
                "2026-11-01T00:00:00Z"
            )
            .eligible()
        );
    }

    #[test]
    fn ended_contracts_are_not_eligible() {
        let mut c = contract("2026-01-01T00:00:00Z", Some("2026-10-01T00:00:00Z"));
        c.active = false;
        let e = eligibility(&c, None, Cohort::Baseline, "2026-10-02T00:00:00Z");
        assert_eq!(reasons(&e), ["CONTRACT_NOT_ACTIVE"]);
    }

    #[test]
    fn cohorts_are_stable_and_follow_the_rollout() {
        let none = CohortConfig::default();
        let all = CohortConfig {
            rollout_basis_points: 10_000,
            ..Default::default()
        };
        let half = CohortConfig {
            rollout_basis_points: 5_000,
            ..Default::default()
        };
        let listed = CohortConfig {
            allow_list: HashSet::from(["vip".to_owned()]),
            ..Default::default()
        };
        assert_eq!(none.cohort_of("anyone"), Cohort::Baseline);
        assert_eq!(all.cohort_of("anyone"), Cohort::EarlyFeedback);
        assert_eq!(listed.cohort_of("vip"), Cohort::EarlyFeedback);
        assert_eq!(listed.cohort_of("other"), Cohort::Baseline);
        let early = (0..1000)
            .filter(|i| half.cohort_of(&format!("client-{i}")) == Cohort::EarlyFeedback)
            .count();
        assert!((400..600).contains(&early), "{early} of 1000 at 50%");
        assert_eq!(half.cohort_of("client-7"), half.cohort_of("client-7"));
    }

    #[test]
    fn the_window_closes_14_days_after_the_end_and_reveals() {
        let rules = Rules::default();
        let end = at("2026-11-01T00:00:00Z");
        assert_eq!(
            end_feedback_window(end, &rules).1,
            at("2026-11-15T00:00:00Z")
        );
        assert!(!is_revealed(false, end, &rules, at("2026-11-14T23:59:59Z")));
        assert!(is_revealed(false, end, &rules, at("2026-11-15T00:00:00Z")));
        assert!(is_revealed(true, end, &rules, at("2026-11-02T00:00:00Z")));
        assert!((overall(&[5, 4, 5, 4, 5, 4]) - 4.5).abs() < f64::EPSILON);
    }
}
