//! Command line and environment: the flags both services take (flattened from
//! `shared::service`) and feedback-service's own settings, each with an env var.

use std::collections::HashSet;
use std::net::SocketAddr;

use chrono::Duration;

use crate::Application;
use crate::domain::{CohortConfig, Rules};
use shared::service::ServiceArgs;

/// Everything the service needs to start: the flags both services take
/// (`--listen`, `--database-url`, `--dev`, …) and feedback-service's own.
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    #[command(flatten)]
    pub service: ServiceArgs,
    /// Where contract-service answers.
    #[arg(
        long,
        env = "CONTRACT_SERVICE_URL",
        default_value = "http://127.0.0.1:50051"
    )]
    pub contract_service_url: String,
    /// HTTP/2 connections to contract-service, used in turn.
    #[arg(
        long,
        env = "CONTRACT_SERVICE_CONNECTIONS",
        default_value_t = 4,
        value_parser = clap::value_parser!(u16).range(1..=64)
    )]
    pub contract_service_connections: u16,
    /// Longest a call to contract-service may take (the caller's deadline may cut it shorter).
    #[arg(long, env = "CONTRACT_SERVICE_TIMEOUT_MS", default_value_t = 2_000)]
    pub contract_service_timeout_ms: u64,
    /// Longest a connection attempt to contract-service may take.
    #[arg(
        long,
        env = "CONTRACT_SERVICE_CONNECT_TIMEOUT_MS",
        default_value_t = 1_000
    )]
    pub contract_service_connect_timeout_ms: u64,
    /// File holding this service's token for contract-service (scopes
    /// contracts:read and payments:write). With --dev and no file, one is minted with the dev key.
    #[arg(long, env = "CONTRACT_SERVICE_TOKEN_FILE")]
    pub contract_service_token_file: Option<String>,
    /// PEM CA that signed contract-service's certificate (https:// URLs).
    #[arg(long, env = "CONTRACT_SERVICE_CA_FILE")]
    pub contract_service_ca_file: Option<String>,
    /// Name to verify in contract-service's certificate (defaults to the URL's host).
    #[arg(long, env = "CONTRACT_SERVICE_TLS_DOMAIN")]
    pub contract_service_tls_domain: Option<String>,
    /// PEM client certificate for mutual TLS with contract-service (with the key file).
    #[arg(
        long,
        env = "CONTRACT_SERVICE_CLIENT_CERT_FILE",
        requires = "contract_service_client_key_file"
    )]
    pub contract_service_client_cert_file: Option<String>,
    /// PEM key of the client certificate.
    #[arg(
        long,
        env = "CONTRACT_SERVICE_CLIENT_KEY_FILE",
        requires = "contract_service_client_cert_file"
    )]
    pub contract_service_client_key_file: Option<String>,
    /// Attempts for an idempotent read of contract-service that fails UNAVAILABLE.
    #[arg(long, env = "CONTRACT_SERVICE_ATTEMPTS", default_value_t = 3)]
    pub contract_service_attempts: u32,
    #[command(flatten)]
    pub rules: RuleArgs,
    /// Hours idempotency keys are kept (at least 24).
    #[arg(long, env = "IDEMPOTENCY_RETENTION_HOURS", default_value_t = 24)]
    pub idempotency_retention_hours: i64,
    /// Run the background workers (bonus payer, request expiry, reveal sweeper) in this process.
    #[arg(long, env = "RUN_WORKERS", default_value_t = true, action = clap::ArgAction::Set)]
    pub run_workers: bool,
    /// Follow contract-service's events (WatchEvents, scope events:read):
    /// end-of-contract feedback prompts and reminders come from them.
    #[arg(long, env = "FOLLOW_CONTRACT_EVENTS", default_value_t = true, action = clap::ArgAction::Set)]
    pub follow_contract_events: bool,
    /// Longest wait between attempts to reopen contract-service's event
    /// stream (the backoff starts at 100 ms and doubles).
    #[arg(long, env = "CONTRACT_EVENTS_RETRY_MAX_MS", default_value_t = 5_000)]
    pub contract_events_retry_max_ms: u64,
    /// How often the sweeper expires requests and reveals closed windows.
    #[arg(long, env = "SWEEP_INTERVAL_MS", default_value_t = 30_000)]
    pub sweep_interval_ms: u64,
    /// Longest wait between retries of a failing bonus payment.
    #[arg(long, env = "BONUS_RETRY_MAX_MS", default_value_t = 30_000)]
    pub bonus_retry_max_ms: u64,
}

/// The rule windows and cohort settings of feedback-service (docs/rules.md).
#[derive(Debug, Clone, clap::Args)]
pub struct RuleArgs {
    /// Baseline: days after the start before mid-contract feedback.
    #[arg(long, env = "MID_FEEDBACK_MIN_AGE_DAYS", default_value_t = 30)]
    pub mid_feedback_min_age_days: i64,
    /// Early-feedback cohort: days after the start before mid-contract feedback.
    #[arg(long, env = "EARLY_FEEDBACK_MIN_AGE_DAYS", default_value_t = 14)]
    pub early_feedback_min_age_days: i64,
    /// A payment must be this recent (days, inclusive).
    #[arg(long, env = "PAYMENT_RECENCY_DAYS", default_value_t = 30)]
    pub payment_recency_days: i64,
    /// At most one mid-contract feedback per this many days.
    #[arg(long, env = "MID_FEEDBACK_INTERVAL_DAYS", default_value_t = 30)]
    pub mid_feedback_interval_days: i64,
    /// Feedback requests expire after this many days.
    #[arg(long, env = "REQUEST_TTL_DAYS", default_value_t = 14)]
    pub request_ttl_days: i64,
    /// End-of-contract feedback window, days after the end.
    #[arg(long, env = "END_FEEDBACK_WINDOW_DAYS", default_value_t = 14)]
    pub end_feedback_window_days: i64,
    /// Hours before the end-of-contract feedback window closes when a party
    /// who has not left feedback is reminded.
    #[arg(long, env = "END_FEEDBACK_REMINDER_HOURS", default_value_t = 72)]
    pub end_feedback_reminder_hours: i64,
    /// Reply window, days after the end.
    #[arg(long, env = "REPLY_WINDOW_DAYS", default_value_t = 28)]
    pub reply_window_days: i64,
    /// Minimum net paid (minor units) for public feedback in work history.
    #[arg(long, env = "WORK_HISTORY_MIN_NET_PAID_MINOR", default_value_t = 100)]
    pub work_history_min_net_paid_minor: i64,
    /// Largest bonus with mid-contract feedback (minor units).
    #[arg(long, env = "MAX_BONUS_MINOR", default_value_t = 100_000)]
    pub max_bonus_minor: i64,
    /// Clients always in the early-feedback test (comma-separated ids).
    #[arg(long, env = "EARLY_FEEDBACK_CLIENTS", value_delimiter = ',')]
    pub early_feedback_clients: Vec<String>,
    /// Share of clients in the early-feedback test, 0 to 100 (stable by hash of client id).
    #[arg(long, env = "EARLY_FEEDBACK_ROLLOUT_PERCENT", default_value_t = 0.0)]
    pub early_feedback_rollout_percent: f64,
}

impl RuleArgs {
    pub fn rules(&self) -> Rules {
        Rules {
            min_contract_age: Duration::days(self.mid_feedback_min_age_days),
            min_contract_age_early: Duration::days(self.early_feedback_min_age_days),
            payment_recency: Duration::days(self.payment_recency_days),
            feedback_interval: Duration::days(self.mid_feedback_interval_days),
            request_ttl: Duration::days(self.request_ttl_days),
            end_window: Duration::days(self.end_feedback_window_days),
            reminder_before: Duration::hours(self.end_feedback_reminder_hours),
            reply_window: Duration::days(self.reply_window_days),
            min_net_paid_minor: self.work_history_min_net_paid_minor,
            max_bonus_minor: self.max_bonus_minor,
        }
    }

    pub fn cohorts(&self) -> CohortConfig {
        CohortConfig {
            allow_list: self
                .early_feedback_clients
                .iter()
                .filter(|c| !c.is_empty())
                .cloned()
                .collect::<HashSet<_>>(),
            rollout_basis_points: (self.early_feedback_rollout_percent.clamp(0.0, 100.0) * 100.0)
                .round() as u32,
        }
    }
}

impl Config {
    /// TLS towards contract-service, when its URL is https://.
    pub fn contract_service_tls(
        &self,
    ) -> anyhow::Result<Option<tonic::transport::ClientTlsConfig>> {
        if !self.contract_service_url.starts_with("https://") {
            return Ok(None);
        }
        let read = |path: &str| {
            std::fs::read(path).map_err(|e| anyhow::anyhow!("cannot read {path}: {e}"))
        };
        let mut tls = tonic::transport::ClientTlsConfig::new();
        if let Some(ca) = &self.contract_service_ca_file {
            tls = tls.ca_certificate(tonic::transport::Certificate::from_pem(read(ca)?));
        }
        if let Some(domain) = &self.contract_service_tls_domain {
            tls = tls.domain_name(domain.clone());
        }
        if let (Some(cert), Some(key)) = (
            &self.contract_service_client_cert_file,
            &self.contract_service_client_key_file,
        ) {
            tls = tls.identity(tonic::transport::Identity::from_pem(
                read(cert)?,
                read(key)?,
            ));
        }
        Ok(Some(tls))
    }

    /// Defaults with `--dev`, for tests and the dev launcher.
    pub fn dev(
        listen: SocketAddr,
        database_url: impl Into<String>,
        contract_service_url: impl Into<String>,
    ) -> Self {
        let mut config = shared::service::dev_config::<Application>(listen, database_url);
        config.contract_service_url = contract_service_url.into();
        config
    }
}

// The binary: its defaults (name and about are Cargo.toml's) and how it starts.
shared::service!(Application, Config, listen: "127.0.0.1:50052", metrics: "127.0.0.1:9102", migrations: crate::store::MIGRATIONS);
