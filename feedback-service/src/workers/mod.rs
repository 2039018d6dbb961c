//! Background work started by `app`: one file per worker (bonus payer,
//! sweeper).

mod bonus_payer;
mod sweeper;

pub use bonus_payer::{pay_pending_bonuses, run_bonus_payer};
pub use sweeper::{run_sweeper, sweep};
