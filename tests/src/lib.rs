//! End-to-end harness: starts the services on port 0 against a fresh
//! database (a SQLite file, or a new PostgreSQL database when
//! `TEST_POSTGRES_URL` names a server), with a test clock, and hands tests
//! real gRPC clients and tokens.

pub mod proxy;
pub mod scenario;
pub mod seed;

use std::net::SocketAddr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tonic::Request;
use tonic::transport::Channel;

use contract_service::{Application, Config};
use shared::clock::TestClock;
use shared::proto::contract::v1 as pb;
use shared::proto::contract::v1::contract_service_client::ContractServiceClient;
use shared::proto::feedback::v1 as fpb;
use shared::proto::feedback::v1::feedback_service_client::FeedbackServiceClient;
use shared::testing::{InProcess, channel};

/// The support every crate's tests share: tokens, fresh databases, the outbox.
pub use shared::testing::{
    EventStream, TestBackend, as_service, as_user, assert_gap_free, free_addr, usd_contract,
    watch_outbox, with_token,
};

/// The same `stars` on every criterion a client rates a freelancer on.
pub fn freelancer_scores(stars: i32) -> fpb::FreelancerScores {
    fpb::FreelancerScores {
        skills: stars,
        quality_of_work: stars,
        availability: stars,
        adherence_to_schedule: stars,
        communication: stars,
        cooperation: stars,
    }
}

/// The same `stars` on every criterion a freelancer rates a client on.
pub fn client_scores(stars: i32) -> fpb::ClientScores {
    fpb::ClientScores {
        clarity_of_requirements: stars,
        communication: stars,
        cooperation: stars,
        availability: stars,
        reasonable_deadlines: stars,
        payment_promptness: stars,
    }
}

/// The client's end-of-contract feedback on the freelancer: `scores`, why
/// the contract ended (an `EndReason`), how likely the client is to
/// recommend the freelancer (0 to 10), and a public comment.
pub fn client_feedback(
    contract_id: &str,
    scores: fpb::FreelancerScores,
    reason_for_ending: i32,
    likelihood_to_recommend: i32,
    comment: &str,
) -> fpb::SubmitEndContractFeedbackRequest {
    fpb::SubmitEndContractFeedbackRequest {
        contract_id: contract_id.into(),
        freelancer_scores: Some(scores),
        private_feedback: Some(fpb::ClientPrivateFeedback {
            reason_for_ending,
            likelihood_to_recommend,
        }),
        client_scores: None,
        comment: comment.into(),
        request_id: String::new(),
    }
}

/// The freelancer's end-of-contract feedback on the client.
pub fn freelancer_feedback(
    contract_id: &str,
    scores: fpb::ClientScores,
    comment: &str,
) -> fpb::SubmitEndContractFeedbackRequest {
    fpb::SubmitEndContractFeedbackRequest {
        contract_id: contract_id.into(),
        freelancer_scores: None,
        private_feedback: None,
        client_scores: Some(scores),
        comment: comment.into(),
        request_id: String::new(),
    }
}

/// The client's end-of-contract feedback used throughout the tests: all
/// fives but quality of work 3, job completed, 9 of 10 to recommend.
pub fn client_end_feedback_request(contract_id: &str) -> fpb::SubmitEndContractFeedbackRequest {
    let scores = fpb::FreelancerScores {
        quality_of_work: 3,
        ..freelancer_scores(5)
    };
    let completed = fpb::EndReason::JobCompleted as i32;
    client_feedback(contract_id, scores, completed, 9, "Solid delivery")
}

/// The freelancer's end-of-contract feedback used throughout the tests: all fours.
pub fn freelancer_end_feedback_request(contract_id: &str) -> fpb::SubmitEndContractFeedbackRequest {
    freelancer_feedback(contract_id, client_scores(4), "Clear requirements")
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
    /// Where `/metrics` answers.
    pub metrics_addr: SocketAddr,
    pub clock: TestClock,
    pub database_url: String,
    pub contracts: ContractServiceClient<Channel>,
    /// The running service, to run its dispute sweep at a chosen instant
    /// (dropped on stop, so its writers can stop with the server).
    api: Option<contract_service::grpc::ContractApi>,
    server: InProcess,
}

/// `client` hires `freelancer` by the hour ($60/h, 40 h/week) from `start`.
pub fn hourly_terms(
    client: &str,
    freelancer: &str,
    title: &str,
    start: DateTime<Utc>,
) -> pb::CreateContractRequest {
    pb::CreateContractRequest {
        hourly_rate_minor: 6_000,
        weekly_limit_minutes: 40 * 60,
        start_time: Some(ts(start)),
        ..usd_contract(pb::ContractType::Hourly, client, freelancer, title)
    }
}

/// Test settings: `--dev` defaults with a fast dispute sweep (100 ms).
pub fn contract_config(listen: SocketAddr, database_url: String) -> Config {
    let mut config = Config::dev(listen, database_url);
    config.rules.dispute_sweep_interval_ms = 100;
    config
}

impl TestApp {
    /// Starts contract-service on a free port against a fresh database.
    pub async fn spawn(backend: &TestBackend) -> Self {
        let url = backend.fresh_database_url().await;
        Self::spawn_on(url, TestClock::new(test_epoch())).await
    }

    /// Starts contract-service against an existing database.
    pub async fn spawn_on(database_url: String, clock: TestClock) -> Self {
        Self::spawn_at("127.0.0.1:0".parse().expect("addr"), database_url, clock).await
    }

    /// Starts contract-service on `listen` (a restart reuses the old address).
    pub async fn spawn_at(listen: SocketAddr, database_url: String, clock: TestClock) -> Self {
        Self::spawn_configured(contract_config(listen, database_url), clock, false).await
    }

    /// Starts contract-service on a fresh database with adjusted settings.
    pub async fn spawn_with(backend: &TestBackend, tweak: impl FnOnce(&mut Config)) -> Self {
        let url = backend.fresh_database_url().await;
        let mut config = contract_config("127.0.0.1:0".parse().expect("addr"), url);
        tweak(&mut config);
        Self::spawn_configured(config, TestClock::new(test_epoch()), false).await
    }

    /// Starts contract-service serving TestClockService for its clock.
    pub async fn spawn_with_clock_control(backend: &TestBackend) -> Self {
        let url = backend.fresh_database_url().await;
        let config = contract_config("127.0.0.1:0".parse().expect("addr"), url);
        Self::spawn_configured(config, TestClock::new(test_epoch()), true).await
    }

    async fn spawn_configured(config: Config, clock: TestClock, clock_control: bool) -> Self {
        let database_url = config.service.database_url.clone();
        let mut app = Application::build(&config, Arc::new(clock.clone()))
            .await
            .expect("build contract-service");
        if clock_control {
            app = app.with_clock_control(clock.clone());
        }
        let (addr, metrics_addr, api) = (app.addr(), app.metrics_addr(), app.api());
        Self {
            addr,
            metrics_addr,
            clock,
            database_url,
            contracts: ContractServiceClient::new(channel(addr).await),
            api: Some(api),
            server: InProcess::spawn(|shutdown| app.run_until_stopped(shutdown)),
        }
    }

    /// A channel to the service (any client of what it serves).
    pub async fn channel(&self) -> Channel {
        channel(self.addr).await
    }

    /// Runs the dispute escalation sweep once, now (as the background sweep
    /// does every 100 ms): how many disputes it escalated.
    pub async fn sweep_disputes(&self) -> usize {
        self.api
            .as_ref()
            .expect("running")
            .escalate_overdue_disputes()
            .await
            .expect("dispute sweep")
    }

    /// The dispute sweep as of `now`, whatever the clock says.
    pub async fn sweep_disputes_at(&self, now: DateTime<Utc>) -> usize {
        self.api
            .as_ref()
            .expect("running")
            .escalate_disputes_due_by(now)
            .await
            .expect("dispute sweep")
    }

    /// Stops the server (draining in-flight calls) and waits for it.
    pub async fn stop(mut self) {
        self.api = None;
        self.server.stop().await.expect("server ran cleanly");
    }

    /// The first `count` outbox events, in sequence order (each within 10 s).
    pub async fn events(&self, count: usize) -> Vec<pb::Event> {
        watch_outbox(&self.contracts).await.take(count).await
    }

    /// Whether the outbox holds more than `count` events (waits briefly for one more).
    pub async fn has_more_events_than(&self, count: usize) -> bool {
        tokio::time::timeout(
            std::time::Duration::from_millis(700),
            self.events(count + 1),
        )
        .await
        .is_ok()
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
        let started = self.now() - chrono::Duration::days(60);
        self.create_contract(hourly_terms(client, freelancer, "Build the thing", started))
            .await
            .expect("create hourly contract")
    }

    /// Hiring: registers any contract.
    pub async fn create_contract(
        &self,
        req: pb::CreateContractRequest,
    ) -> Result<pb::Contract, tonic::Status> {
        shared::testing::create_contract(&self.contracts, req).await
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
        self.record_payment(pb::RecordPaymentRequest {
            // An hourly invoice pays the week it was paid in, unless a test
            // names the week (`pay_week`).
            billing_week_time: (kind == pb::PaymentKind::HourlyInvoice).then(|| ts(paid_at)),
            ..payment(contract_id, kind, amount_minor, paid_at, request_id)
        })
        .await
    }

    /// Billing records an hourly invoice, paid now, for the week containing `week_time`.
    pub async fn pay_week(
        &self,
        contract_id: &str,
        amount_minor: i64,
        week_time: DateTime<Utc>,
        request_id: &str,
    ) -> Result<pb::Payment, tonic::Status> {
        let kind = pb::PaymentKind::HourlyInvoice;
        self.record_payment(pb::RecordPaymentRequest {
            billing_week_time: Some(ts(week_time)),
            ..payment(contract_id, kind, amount_minor, self.now(), request_id)
        })
        .await
    }

    /// Billing records `request`.
    async fn record_payment(
        &self,
        request: pb::RecordPaymentRequest,
    ) -> Result<pb::Payment, tonic::Status> {
        let response = self
            .contracts
            .clone()
            .record_payment(as_service("billing", &["payments:write"], request))
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
                    disputed_minutes: 0,
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

pub fn ts(t: DateTime<Utc>) -> prost_types::Timestamp {
    shared::time::to_proto(t)
}

/// A payment of `amount_minor` US cents paid at `paid_at`, no billing week.
fn payment(
    contract_id: &str,
    kind: pb::PaymentKind,
    amount_minor: i64,
    paid_at: DateTime<Utc>,
    request_id: &str,
) -> pb::RecordPaymentRequest {
    pb::RecordPaymentRequest {
        contract_id: contract_id.into(),
        kind: kind as i32,
        amount: Some(usd(amount_minor)),
        paid_time: Some(ts(paid_at)),
        memo: String::new(),
        request_id: request_id.into(),
        billing_week_time: None,
    }
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

/// A running feedback-service wired to a contract-service, on the same test clock.
pub struct FeedbackApp {
    pub addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    pub database_url: String,
    pub feedback: FeedbackServiceClient<Channel>,
    server: InProcess,
}

/// Clients in the early-feedback test in every test stack.
pub const EARLY_CLIENT: &str = "early-client";

impl FeedbackApp {
    /// Test settings: fast sweeper and retries, `EARLY_CLIENT` in the cohort.
    pub fn config(database_url: &str, contract_service: SocketAddr) -> feedback_service::Config {
        let mut config = feedback_service::Config::dev(
            "127.0.0.1:0".parse().expect("addr"),
            database_url,
            format!("http://{contract_service}"),
        );
        config.sweep_interval_ms = 100;
        config.bonus_retry_max_ms = 200;
        config.contract_events_retry_max_ms = 200;
        config.rules.early_feedback_clients = vec![EARLY_CLIENT.to_owned()];
        config
    }

    pub async fn spawn(config: feedback_service::Config, clock: TestClock) -> Self {
        let database_url = config.service.database_url.clone();
        let app = feedback_service::Application::build(&config, Arc::new(clock))
            .await
            .expect("build feedback-service");
        let (addr, metrics_addr) = (app.addr(), app.metrics_addr());
        Self {
            addr,
            metrics_addr,
            database_url,
            feedback: FeedbackServiceClient::new(channel(addr).await),
            server: InProcess::spawn(|shutdown| app.run_until_stopped(shutdown)),
        }
    }

    pub async fn stop(self) {
        self.server.stop().await.expect("server ran cleanly");
    }

    pub fn client(&self) -> FeedbackServiceClient<Channel> {
        self.feedback.clone()
    }

    /// The client asks whether it may leave mid-contract feedback.
    pub async fn eligibility(
        &self,
        user: &str,
        contract_id: &str,
    ) -> Result<fpb::MidContractEligibility, tonic::Status> {
        Ok(self
            .client()
            .check_mid_contract_eligibility(as_user(
                user,
                fpb::CheckMidContractEligibilityRequest {
                    contract_id: contract_id.into(),
                },
            ))
            .await?
            .into_inner()
            .eligibility
            .expect("eligibility"))
    }

    /// The client leaves mid-contract feedback, with an optional bonus in USD cents.
    pub async fn submit_mid(
        &self,
        user: &str,
        contract_id: &str,
        bonus: Option<i64>,
    ) -> Result<fpb::MidContractFeedback, tonic::Status> {
        Ok(self
            .client()
            .submit_mid_contract_feedback(as_user(
                user,
                fpb::SubmitMidContractFeedbackRequest {
                    contract_id: contract_id.into(),
                    rating: 5,
                    comment: "Great work so far".into(),
                    bonus: bonus.map(usd),
                    request_id: String::new(),
                },
            ))
            .await?
            .into_inner()
            .feedback
            .expect("feedback"))
    }

    /// The freelancer asks for mid-contract feedback.
    pub async fn request_feedback(
        &self,
        user: &str,
        contract_id: &str,
    ) -> Result<fpb::FeedbackRequest, tonic::Status> {
        Ok(self
            .client()
            .request_mid_contract_feedback(as_user(
                user,
                fpb::RequestMidContractFeedbackRequest {
                    contract_id: contract_id.into(),
                    request_id: String::new(),
                },
            ))
            .await?
            .into_inner()
            .feedback_request
            .expect("request"))
    }

    /// `user` submits end-of-contract feedback.
    pub async fn submit_end_feedback(
        &self,
        user: &str,
        request: fpb::SubmitEndContractFeedbackRequest,
    ) -> Result<fpb::SubmitEndContractFeedbackResponse, tonic::Status> {
        Ok(self
            .client()
            .submit_end_contract_feedback(as_user(user, request))
            .await?
            .into_inner())
    }

    /// The client rates the freelancer at the end (all 5 stars but quality 3).
    pub async fn client_end_feedback(
        &self,
        user: &str,
        contract_id: &str,
    ) -> Result<fpb::SubmitEndContractFeedbackResponse, tonic::Status> {
        let request = client_end_feedback_request(contract_id);
        self.submit_end_feedback(user, request).await
    }

    /// A party (or service) reads the end-of-contract feedback.
    pub async fn end_feedback(
        &self,
        request: Request<fpb::GetEndContractFeedbackRequest>,
    ) -> Result<fpb::GetEndContractFeedbackResponse, tonic::Status> {
        Ok(self
            .client()
            .get_end_contract_feedback(request)
            .await?
            .into_inner())
    }

    /// The recipient replies.
    pub async fn reply(&self, user: &str, feedback_id: &str) -> Result<fpb::Reply, tonic::Status> {
        Ok(self
            .client()
            .reply_to_feedback(as_user(
                user,
                fpb::ReplyToFeedbackRequest {
                    feedback_id: feedback_id.into(),
                    text: "Thank you!".into(),
                    request_id: String::new(),
                },
            ))
            .await?
            .into_inner()
            .reply
            .expect("reply"))
    }

    /// Anyone reads a freelancer's work history (first page).
    pub async fn work_history(
        &self,
        freelancer: &str,
    ) -> Result<Vec<fpb::WorkHistoryItem>, tonic::Status> {
        Ok(self
            .client()
            .list_work_history(as_user(
                "someone",
                fpb::ListWorkHistoryRequest {
                    freelancer_id: freelancer.into(),
                    page_size: 0,
                    page_token: String::new(),
                },
            ))
            .await?
            .into_inner()
            .items)
    }

    /// Waits for the first `count` outbox events.
    pub async fn events(&self, count: usize) -> Vec<fpb::Event> {
        watch_outbox(&self.feedback).await.take(count).await
    }

    /// Waits until an event matching `want` is in the outbox (10 s at most); returns all events up to it.
    pub async fn wait_for_event(
        &self,
        want: impl Fn(&fpb::event::Payload) -> bool,
    ) -> Vec<fpb::Event> {
        watch_outbox(&self.feedback)
            .await
            .until(|event| event.payload.as_ref().is_some_and(&want))
            .await
    }
}

/// Both services on one test clock, each with its own fresh database.
pub struct Stack {
    pub contracts: TestApp,
    pub feedback: FeedbackApp,
}

impl Stack {
    pub async fn spawn(backend: &TestBackend) -> Self {
        Self::spawn_with(backend, |_| {}).await
    }

    /// Like `spawn`, with feedback-service settings adjusted by `tweak`.
    pub async fn spawn_with(
        backend: &TestBackend,
        tweak: impl FnOnce(&mut feedback_service::Config),
    ) -> Self {
        let contracts = TestApp::spawn(backend).await;
        let url = backend.fresh_database_url().await;
        let mut config = FeedbackApp::config(&url, contracts.addr);
        tweak(&mut config);
        let feedback = FeedbackApp::spawn(config, contracts.clock.clone()).await;
        Self {
            contracts,
            feedback,
        }
    }

    /// An hourly contract that started `age` ago, paid `paid_ago` ago (if given).
    pub async fn contract(
        &self,
        client: &str,
        freelancer: &str,
        age: chrono::Duration,
        paid_ago: Option<chrono::Duration>,
    ) -> pb::Contract {
        let now = self.contracts.now();
        let contract = self
            .contracts
            .create_contract(hourly_terms(client, freelancer, "Ongoing work", now - age))
            .await
            .expect("create contract");
        if let Some(ago) = paid_ago {
            self.contracts
                .pay(
                    &contract.id,
                    pb::PaymentKind::HourlyInvoice,
                    10_000,
                    now - ago,
                    &format!("inv-{}", contract.id),
                )
                .await
                .expect("pay");
        }
        contract
    }
}

/// GETs `path` from an HTTP/1 server (the metrics port) and returns the body.
pub async fn http_get(addr: SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to metrics");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_owned()
}

/// The value of the sample whose line starts with `metric{` (or `metric `,
/// a metric without labels) and contains every label in `labels`.
pub fn metric_value(text: &str, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let (labelled, bare) = (format!("{metric}{{"), format!("{metric} "));
    text.lines()
        .filter(|line| line.starts_with(&labelled) || line.starts_with(&bare))
        .find(|line| {
            labels
                .iter()
                .all(|(k, v)| line.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

/// Scrapes `/metrics` at `addr` until `metric` (with `labels`) reads `want`,
/// for at most `within` (the services sample database gauges every 5 s);
/// panics with the last scrape otherwise.
pub async fn wait_for_metric(
    addr: SocketAddr,
    metric: &str,
    labels: &[(&str, &str)],
    want: f64,
    within: std::time::Duration,
) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let text = http_get(addr, "/metrics").await;
        let value = metric_value(&text, metric, labels);
        if value == Some(want) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{metric}{labels:?} is {value:?}, not {want}, after {within:?}:\n{text}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Scrapes `/metrics` at `addr` for `during` and asserts `metric` (with
/// `labels`) reads `want` every time (`during` longer than the sampling
/// interval covers a fresh sample).
pub async fn metric_stays(
    addr: SocketAddr,
    metric: &str,
    labels: &[(&str, &str)],
    want: f64,
    during: std::time::Duration,
) {
    let until = tokio::time::Instant::now() + during;
    while tokio::time::Instant::now() < until {
        let text = http_get(addr, "/metrics").await;
        let value = metric_value(&text, metric, labels);
        assert_eq!(value, Some(want), "{metric}{labels:?}:\n{text}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}
