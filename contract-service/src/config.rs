//! Command line and environment: the flags both services take (flattened from
//! `shared::service`) and contract-service's own rule settings, each with an env var.

use std::net::SocketAddr;

use chrono::Duration;

use crate::Application;
use crate::domain::Rules;
use shared::service::ServiceArgs;

/// Everything the service needs to start: the flags both services take
/// (`--listen`, `--database-url`, `--dev`, …) and contract-service's rules.
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    #[command(flatten)]
    pub service: ServiceArgs,
    #[command(flatten)]
    pub rules: RuleArgs,
}

/// The rule windows of contract-service (docs/rules.md).
#[derive(Debug, Clone, clap::Args)]
pub struct RuleArgs {
    /// Work Diary segment length in minutes.
    #[arg(long, env = "TIME_SEGMENT_MINUTES", default_value_t = 10)]
    pub time_segment_minutes: i64,
    /// Days after payment during which a refund is allowed (inclusive).
    #[arg(long, env = "REFUND_WINDOW_DAYS", default_value_t = 180)]
    pub refund_window_days: i64,
    /// Days after a contract ends during which a bonus may be paid (inclusive).
    #[arg(long, env = "BONUS_WINDOW_DAYS", default_value_t = 365)]
    pub bonus_window_days: i64,
    /// Hours after a billing week ends when its review window opens (Monday 12:00).
    #[arg(long, env = "REVIEW_WINDOW_OPENS_HOURS", default_value_t = 12)]
    pub review_window_opens_hours: i64,
    /// Hours after a billing week ends when its review window closes (Saturday 00:00, exclusive).
    #[arg(long, env = "REVIEW_WINDOW_CLOSES_HOURS", default_value_t = 120)]
    pub review_window_closes_hours: i64,
    /// Hours idempotency keys are kept (at least 24).
    #[arg(long, env = "IDEMPOTENCY_RETENTION_HOURS", default_value_t = 24)]
    pub idempotency_retention_hours: i64,
    /// Days after filing during which the freelancer may answer a dispute
    /// (exclusive); then it is escalated to support.
    #[arg(long, env = "DISPUTE_RESPONSE_DAYS", default_value_t = 5)]
    pub dispute_response_days: i64,
    /// How often the sweep escalates disputes whose response window closed.
    #[arg(long, env = "DISPUTE_SWEEP_INTERVAL_MS", default_value_t = 30_000)]
    pub dispute_sweep_interval_ms: u64,
}

impl RuleArgs {
    pub fn rules(&self) -> Rules {
        Rules {
            segment_minutes: self.time_segment_minutes,
            refund_window: Duration::days(self.refund_window_days),
            bonus_window: Duration::days(self.bonus_window_days),
            review_opens_after_week: Duration::hours(self.review_window_opens_hours),
            review_closes_after_week: Duration::hours(self.review_window_closes_hours),
            idempotency_retention: Duration::hours(self.idempotency_retention_hours.max(24)),
            dispute_response: Duration::days(self.dispute_response_days.max(1)),
        }
    }
}

impl Config {
    /// Defaults with `--dev`, for tests and the dev launcher.
    pub fn dev(listen: SocketAddr, database_url: impl Into<String>) -> Self {
        shared::service::dev_config::<Application>(listen, database_url)
    }
}

// The binary: its defaults (name and about are Cargo.toml's) and how it starts.
shared::service!(Application, Config, listen: "127.0.0.1:50051", metrics: "127.0.0.1:9101", migrations: crate::store::MIGRATIONS);
