//! Work Diary rules as plain Rust: time entries, when time may be logged or
//! deleted, and how much of a week is billable (and worth).

use chrono::{DateTime, Duration, Utc};

use crate::contracts::rules::{Contract, ContractState};
use crate::domain::BillingWeek;
use crate::error::Error;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contracts::rules::ContractType;
    use crate::test_support::{at, hourly};

    fn entry(start: &str, minutes: i64, manual: bool) -> NewTimeEntry {
        NewTimeEntry {
            start: at(start),
            minutes,
            manual,
            memo: String::new(),
        }
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
}
