//! The one source of "now". Every business rule reads time through a [`Clock`],
//! so tests (and the dev-only test clock) can move it.

use std::sync::{Arc, RwLock};

use chrono::{DateTime, Duration, Utc};

/// Where services read the current time from.
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    fn now(&self) -> DateTime<Utc>;
}

/// A shared, cloneable handle on a clock.
pub type SharedClock = Arc<dyn Clock>;

/// Wall time, for production.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that only moves when told to: tests and `--test-clock` dev runs.
#[derive(Debug, Clone)]
pub struct TestClock {
    now: Arc<RwLock<DateTime<Utc>>>,
}

impl TestClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        Self {
            now: Arc::new(RwLock::new(start)),
        }
    }

    /// Sets the time (it may go backwards: tests own it).
    pub fn set(&self, to: DateTime<Utc>) {
        // A poisoned lock only means a panicking writer; the value is still a valid instant.
        *self.now.write().unwrap_or_else(|e| e.into_inner()) = to;
    }

    /// Moves the time forward by `by`.
    pub fn advance(&self, by: Duration) {
        let mut now = self.now.write().unwrap_or_else(|e| e.into_inner());
        *now += by;
    }
}

impl Clock for TestClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.read().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_clock_moves_only_when_told() {
        let start = DateTime::from_timestamp(1_700_000_000, 0).expect("valid");
        let clock = TestClock::new(start);
        assert_eq!(clock.now(), start);
        clock.advance(Duration::minutes(10));
        assert_eq!(clock.now(), start + Duration::minutes(10));
        let shared: SharedClock = Arc::new(clock.clone());
        clock.set(start);
        assert_eq!(shared.now(), start);
    }
}
