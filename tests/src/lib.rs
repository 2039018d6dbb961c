//! End-to-end harness: starts the services on port 0 against a fresh
//! database (a SQLite file, or a new PostgreSQL database when
//! `TEST_POSTGRES_URL` names a server), with a test clock, and hands tests
//! real gRPC clients and tokens.

pub mod proxy;

use std::net::SocketAddr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use sqlx::Executor;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::Request;
use tonic::transport::Channel;

use contract_service::{Application, Config};
use shared::auth::{TokenSpec, mint_dev};
use shared::clock::TestClock;
use shared::proto::contract::v1 as pb;
use shared::proto::contract::v1::contract_service_client::ContractServiceClient;

/// Which database a test runs against.
#[derive(Debug, Clone)]
pub enum TestBackend {
    Sqlite,
    /// A PostgreSQL server URL (any database on it; tests create their own).
    Postgres(String),
}

impl TestBackend {
    /// The PostgreSQL backend, when `TEST_POSTGRES_URL` is set. When it is
    /// not, the Postgres variant is skipped with a note, unless
    /// `REQUIRE_POSTGRES` is set (CI), where skipping is a failure.
    pub fn postgres() -> Option<Self> {
        match std::env::var("TEST_POSTGRES_URL") {
            Ok(url) if !url.is_empty() => Some(Self::Postgres(url)),
            _ => {
                assert!(
                    std::env::var_os("REQUIRE_POSTGRES").is_none(),
                    "REQUIRE_POSTGRES is set but TEST_POSTGRES_URL is not: the PostgreSQL tests must run"
                );
                eprintln!("note: TEST_POSTGRES_URL is not set; skipping the PostgreSQL variant");
                None
            }
        }
    }

    /// A database URL no other test uses.
    pub async fn fresh_database_url(&self) -> String {
        let name = format!("mkt_test_{}", uuid::Uuid::now_v7().simple());
        match self {
            TestBackend::Sqlite => {
                let dir = std::env::temp_dir().join("marketplace-tests");
                std::fs::create_dir_all(&dir).expect("temp dir");
                format!("sqlite://{}/{name}.db", dir.display())
            }
            TestBackend::Postgres(url) => {
                sqlx::any::install_default_drivers();
                let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(url)
                    .await
                    .expect("connect to TEST_POSTGRES_URL");
                conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .await
                    .expect("create test database");
                let (base, _) = url.rsplit_once('/').expect("postgres URL has a database");
                format!("{base}/{name}")
            }
        }
    }
}

/// Wednesday 2026-11-18 10:00 UTC: where test clocks start.
pub fn test_epoch() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-18T10:00:00Z")
        .expect("valid")
        .with_timezone(&Utc)
}

/// A running contract-service with a test clock.
pub struct TestApp {
    pub addr: SocketAddr,
    pub clock: TestClock,
    pub database_url: String,
    pub contracts: ContractServiceClient<Channel>,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestApp {
    /// Starts contract-service on a free port against a fresh database.
    pub async fn spawn(backend: &TestBackend) -> Self {
        let url = backend.fresh_database_url().await;
        Self::spawn_on(url, TestClock::new(test_epoch())).await
    }

    /// Starts contract-service against an existing database.
    pub async fn spawn_on(database_url: String, clock: TestClock) -> Self {
        let config = Config::dev("127.0.0.1:0".parse().expect("addr"), database_url.clone());
        let app = Application::build(&config, Arc::new(clock.clone()))
            .await
            .expect("build contract-service");
        let addr = app.addr();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(app.run_until_stopped(async {
            let _ = stopped.await;
        }));
        let channel = Channel::from_shared(format!("http://{addr}"))
            .expect("uri")
            .connect()
            .await
            .expect("connect to contract-service");
        Self {
            addr,
            clock,
            database_url,
            contracts: ContractServiceClient::new(channel),
            stop: Some(stop),
            server: Some(server),
        }
    }

    /// Stops the server (draining in-flight calls) and waits for it.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("join").expect("server ran cleanly");
        }
    }

    /// Moves the test clock to `t`.
    pub fn set_time(&self, t: DateTime<Utc>) {
        self.clock.set(t);
    }

    pub fn now(&self) -> DateTime<Utc> {
        use shared::clock::Clock;
        self.clock.now()
    }

    /// Hiring: registers an hourly contract ($60/h, 40 h/week) that started 60 days ago.
    pub async fn hourly_contract(&self, client: &str, freelancer: &str) -> pb::Contract {
        self.create_contract(pb::CreateContractRequest {
            client_id: client.into(),
            freelancer_id: freelancer.into(),
            title: "Build the thing".into(),
            r#type: pb::ContractType::Hourly as i32,
            currency_code: "USD".into(),
            hourly_rate_minor: 6_000,
            weekly_limit_minutes: 40 * 60,
            start_time: Some(ts(self.now() - chrono::Duration::days(60))),
            ..Default::default()
        })
        .await
        .expect("create hourly contract")
    }

    /// Hiring: registers any contract.
    pub async fn create_contract(
        &self,
        req: pb::CreateContractRequest,
    ) -> Result<pb::Contract, tonic::Status> {
        let response = self
            .contracts
            .clone()
            .create_contract(as_service("hiring", &["contracts:write"], req))
            .await?;
        Ok(response
            .into_inner()
            .contract
            .expect("contract in response"))
    }

    /// The freelancer logs `minutes` starting at `start`.
    pub async fn log_time(
        &self,
        freelancer: &str,
        contract_id: &str,
        start: DateTime<Utc>,
        minutes: i32,
    ) -> Result<pb::TimeEntry, tonic::Status> {
        let response = self
            .contracts
            .clone()
            .log_time(as_user(
                freelancer,
                pb::LogTimeRequest {
                    contract_id: contract_id.into(),
                    start_time: Some(ts(start)),
                    minutes,
                    ..Default::default()
                },
            ))
            .await?;
        Ok(response.into_inner().time_entry.expect("entry in response"))
    }

    /// A party ends the contract.
    pub async fn end_contract(
        &self,
        user: &str,
        contract_id: &str,
        request_id: &str,
    ) -> Result<pb::EndContractResponse, tonic::Status> {
        Ok(self
            .contracts
            .clone()
            .end_contract(as_user(
                user,
                pb::EndContractRequest {
                    contract_id: contract_id.into(),
                    reason: "work complete".into(),
                    request_id: request_id.into(),
                },
            ))
            .await?
            .into_inner())
    }

    /// Billing records a payment.
    pub async fn pay(
        &self,
        contract_id: &str,
        kind: pb::PaymentKind,
        amount_minor: i64,
        paid_at: DateTime<Utc>,
        request_id: &str,
    ) -> Result<pb::Payment, tonic::Status> {
        let response = self
            .contracts
            .clone()
            .record_payment(as_service(
                "billing",
                &["payments:write"],
                pb::RecordPaymentRequest {
                    contract_id: contract_id.into(),
                    kind: kind as i32,
                    amount: Some(usd(amount_minor)),
                    paid_time: Some(ts(paid_at)),
                    memo: String::new(),
                    request_id: request_id.into(),
                },
            ))
            .await?;
        Ok(response.into_inner().payment.expect("payment in response"))
    }

    /// The freelancer refunds part of a payment.
    pub async fn refund(
        &self,
        user: &str,
        payment_id: &str,
        amount_minor: i64,
        request_id: &str,
    ) -> Result<pb::RefundPaymentResponse, tonic::Status> {
        Ok(self
            .contracts
            .clone()
            .refund_payment(as_user(
                user,
                pb::RefundPaymentRequest {
                    payment_id: payment_id.into(),
                    amount: Some(usd(amount_minor)),
                    reason: String::new(),
                    request_id: request_id.into(),
                },
            ))
            .await?
            .into_inner())
    }

    /// The client disputes the hours of the week containing `week_time`.
    pub async fn dispute(
        &self,
        client: &str,
        contract_id: &str,
        week_time: DateTime<Utc>,
    ) -> Result<pb::Dispute, tonic::Status> {
        let response = self
            .contracts
            .clone()
            .dispute_hours(as_user(
                client,
                pb::DisputeHoursRequest {
                    contract_id: contract_id.into(),
                    week_time: Some(ts(week_time)),
                    reason: "hours do not match the work delivered".into(),
                    request_id: String::new(),
                },
            ))
            .await?;
        Ok(response.into_inner().dispute.expect("dispute in response"))
    }

    /// A party reads the diary of the week containing `week_time` (current week when None).
    pub async fn work_diary(
        &self,
        user: &str,
        contract_id: &str,
        week_time: Option<DateTime<Utc>>,
    ) -> Result<pb::GetWorkDiaryResponse, tonic::Status> {
        Ok(self
            .contracts
            .clone()
            .get_work_diary(as_user(
                user,
                pb::GetWorkDiaryRequest {
                    contract_id: contract_id.into(),
                    week_time: week_time.map(ts),
                },
            ))
            .await?
            .into_inner())
    }

    /// A party (or service) reads a contract.
    pub async fn get_contract(
        &self,
        request: Request<pb::GetContractRequest>,
    ) -> Result<pb::Contract, tonic::Status> {
        Ok(self
            .contracts
            .clone()
            .get_contract(request)
            .await?
            .into_inner()
            .contract
            .expect("contract in response"))
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A request carrying a user token.
pub fn as_user<T>(user: &str, message: T) -> Request<T> {
    with_token(&mint_dev(&TokenSpec::user(user)).expect("mint"), message)
}

/// A request carrying a service token with these scopes.
pub fn as_service<T>(name: &str, scopes: &[&str], message: T) -> Request<T> {
    with_token(
        &mint_dev(&TokenSpec::service(name, scopes)).expect("mint"),
        message,
    )
}

/// A request carrying this bearer token.
pub fn with_token<T>(token: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("ascii token"),
    );
    request
}

pub fn ts(t: DateTime<Utc>) -> prost_types::Timestamp {
    shared::time::to_proto(t)
}

pub fn usd(amount_minor: i64) -> pb::Money {
    pb::Money {
        currency_code: "USD".into(),
        amount_minor,
    }
}

/// Parses an RFC 3339 instant (tests only).
pub fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("valid time")
        .with_timezone(&Utc)
}

/// Runs each listed `async fn name(backend: TestBackend)` once on SQLite and
/// once on PostgreSQL.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name($crate::TestBackend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    if let Some(backend) = $crate::TestBackend::postgres() {
                        super::$name(backend).await
                    }
                }
            )*
        }
    };
}
