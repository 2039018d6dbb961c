//! What several features share: the in-transaction eligibility check, score
//! validation, the page size and page tokens.

use chrono::{DateTime, Utc};

use crate::domain::{self, Cohort, ContractFacts, Rules};
use crate::error::Error;
use crate::store;
use shared::paging;
use shared::status::Common;
use shared::status::FieldViolation;
use shared::validate::{self, Violations};
use shared::writer::Unit;

const DEFAULT_PAGE_SIZE: u32 = 50;
const MAX_PAGE_SIZE: u32 = 200;

/// The request's `page_size` checked into `v`: 0 means 50, more is capped at
/// 200, negative is a violation.
pub(crate) fn page_size(v: &mut Violations, page_size: i32) -> u32 {
    v.check(
        "page_size",
        validate::page_size(page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE),
    )
}

/// Fails unless the contract is eligible for mid-contract feedback at `now`,
/// judged on its latest feedback as read in the write transaction (after the
/// caller took the contract's lock).
pub(crate) async fn require_eligible(
    unit: &mut Unit,
    facts: &ContractFacts,
    cohort: Cohort,
    rules: &Rules,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    let id = std::slice::from_ref(&facts.id);
    let last = store::last_mid_feedback_times(&mut **unit.tx(), id).await?;
    let e =
        domain::mid_contract_eligibility(facts, last.get(&facts.id).copied(), cohort, rules, now);
    if e.eligible() {
        Ok(())
    } else {
        Err(Error::NotEligible(e.unmet))
    }
}

pub(crate) fn score(v: &mut Violations, field: &str, value: i32) -> i32 {
    if !(1..=5).contains(&value) {
        v.add(field, "must be between 1 and 5");
    }
    value
}

pub(crate) fn page_token(token: &str, filter: &str) -> Result<Option<String>, Error> {
    paging::decode(token, filter).map_err(|e| {
        Error::from(Common::InvalidArgument(vec![FieldViolation::new(
            "page_token",
            e,
        )]))
    })
}

pub(crate) fn next_token<T>(
    items: &mut Vec<T>,
    size: u32,
    filter: &str,
    key: impl Fn(&T) -> String,
) -> String {
    if items.len() > size as usize {
        items.truncate(size as usize);
        items
            .last()
            .map(|last| paging::encode(&key(last), filter))
            .unwrap_or_default()
    } else {
        String::new()
    }
}
