//! What every feature's SQL shares: decoding columns of a row (times, flags,
//! unexpected values), and the migrations of this service for each backend.

pub(crate) use shared::db::rows::{corrupt, flag, opt_time, time};

/// Migrations of this service for each backend, embedded in the binary.
pub const MIGRATIONS: shared::db::Migrations = shared::db::Migrations::new(&[
    (1, "init", include_str!("../migrations/0001_init.sql")),
    (
        2,
        "time entry span index",
        include_str!("../migrations/0002_time_entry_span_index.sql"),
    ),
    (
        3,
        "dispute lifecycle",
        include_str!("../migrations/0003_dispute_lifecycle.sql"),
    ),
]);
