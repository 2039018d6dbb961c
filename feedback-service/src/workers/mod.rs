//! Background work started by `app`, one file per worker: the bonus payer,
//! the sweeper (request expiry, reveal, reminders) and the contract-events follower.

mod bonus_payer;
mod follower;
mod sweeper;

use std::time::Duration as StdDuration;

pub use bonus_payer::{pay_pending_bonuses, run_bonus_payer};
pub use follower::{FollowerGauges, HEALTH_NAME, run_follower};
pub use sweeper::{run_sweeper, sweep};

/// The first retry delay of the bonus payer and the follower.
const FIRST_BACKOFF: StdDuration = StdDuration::from_millis(100);

/// The next retry delay: twice `backoff`, at most `max`.
fn double(backoff: StdDuration, max: StdDuration) -> StdDuration {
    (backoff * 2).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_until_the_cap() {
        let max = StdDuration::from_millis(300);
        assert_eq!(double(FIRST_BACKOFF, max), StdDuration::from_millis(200));
        assert_eq!(double(StdDuration::from_millis(200), max), max);
        assert_eq!(double(max, max), max);
    }
}
