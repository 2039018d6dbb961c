//! The load tool: starts the echo baselines (bare tonic, and the services'
//! own layers) and both services as separate processes (release builds, one
//! shared test clock set through TestClockService, tokens signed with an
//! RS256 key made for the run, as in production), drives each scenario at a
//! concurrency for a duration, and reports requests/s, p50/p90/p99, errors,
//! each figure's ratio to both echo ceilings measured in the same run, the
//! services' resident memory, and for PostgreSQL the same machine's
//! `pgbench` single-row INSERT TPS.
//!
//! ```text
//! cargo build --release --bins && target/release/loadtest --backend sqlite
//! cargo build --release --bins && target/release/loadtest --backend postgres --postgres-url postgres://…/db
//! ```
//! It measures; it asserts nothing (docs/benchmarks.md holds the figures).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use hdrhistogram::Histogram;
use serde::Serialize;
use shared::auth::TokenSpec;
use shared::proto::contract::v1 as pb;
use shared::proto::contract::v1::contract_service_client::ContractServiceClient;
use shared::proto::feedback::v1 as fpb;
use shared::proto::feedback::v1::feedback_service_client::FeedbackServiceClient;
use shared::proto::testing::v1 as tpb;
use shared::proto::testing::v1::echo_service_client::EchoServiceClient;
use shared::proto::testing::v1::test_clock_service_client::TestClockServiceClient;
use shared::testing::{TestBackend, free_addr, service_command, with_token};
use tokio::process::Child;
use tonic::transport::Channel;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, Parser)]
#[command(
    name = "loadtest",
    version,
    about = "Drive each scenario and report throughput, latency and ratios to an echo baseline"
)]
struct Args {
    #[arg(long, value_enum, default_value_t = Backend::Sqlite)]
    backend: Backend,
    /// Any database on the PostgreSQL server (the tool creates its own databases).
    #[arg(long, env = "TEST_POSTGRES_URL")]
    postgres_url: Option<String>,
    /// Concurrent callers per scenario.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Measured seconds per scenario (after a one-second warm-up).
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,
    /// Scenarios to run (default: all).
    #[arg(long, value_delimiter = ',')]
    scenarios: Vec<String>,
    /// Where the built binaries are (default: next to this one).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Also write the report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Flat cost: start a near-empty and a seeded stack (100k contracts, 1M
    /// diary entries, 200k payments, 100k feedback records), measure each
    /// read scenario on both in alternating rounds, and report each p50's
    /// growth.
    #[arg(long)]
    flat_cost: bool,
    /// An extra flag for both services (repeatable), e.g.
    /// `--service-arg=--write-batch=1`.
    #[arg(long = "service-arg", allow_hyphen_values = true)]
    service_args: Vec<String>,
}

/// The scenarios that only read (the flat-cost comparison runs these).
const READ_SCENARIOS: &[&str] = &[
    "get-contract",
    "check-eligibility",
    "batch-check-100",
    "get-end-feedback",
    "list-work-history",
];

/// Freelancers of the ended fixture contracts (and of the seeded history):
/// few enough that each has more than a page of work history.
const HISTORY_FREELANCERS: usize = 8;

const SCENARIOS: &[&str] = &[
    "bare-echo",
    "echo",
    "get-contract",
    "check-eligibility",
    "batch-check-100",
    "log-time",
    "end-contract",
    "submit-mid-feedback",
    "record-payment",
    "submit-end-feedback",
    "get-end-feedback",
    "list-work-history",
];

#[derive(Debug, Serialize)]
struct Figures {
    scenario: String,
    backend: String,
    concurrency: usize,
    requests: u64,
    errors: u64,
    requests_per_sec: f64,
    /// Contracts per second for batch scenarios (requests × batch size).
    items_per_sec: f64,
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    /// Requests/s ÷ the bare tonic echo's (the targets' denominator).
    ratio_to_bare_echo: Option<f64>,
    /// Requests/s ÷ the echo behind the services' own layers and JWT check.
    ratio_to_echo: Option<f64>,
    contract_rss_mib: f64,
    feedback_rss_mib: f64,
    /// CPU time each service spent per call of the scenario.
    contract_cpu_us_per_call: f64,
    feedback_cpu_us_per_call: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    machine: String,
    backend: String,
    figures: Vec<Figures>,
    pgbench_insert_tps: Option<f64>,
    log_time_ratio_to_pgbench: Option<f64>,
    /// With --flat-cost: each read scenario near-empty and seeded.
    flat_cost: Vec<FlatCost>,
    seeded_rows: Option<u64>,
}

/// A started service process.
struct Process {
    child: Child,
    addr: SocketAddr,
}

/// A fresh database for one service (`mkt_load_<name>_<uuid>`), on the
/// chosen backend.
async fn database_url(args: &Args, name: &str) -> anyhow::Result<String> {
    let backend = match args.backend {
        Backend::Sqlite => TestBackend::Sqlite,
        Backend::Postgres => TestBackend::Postgres(
            args.postgres_url
                .clone()
                .context("--postgres-url (or TEST_POSTGRES_URL) is required for postgres")?,
        ),
    };
    backend.create_database(&format!("load_{name}")).await
}

async fn start(
    bin_dir: &std::path::Path,
    binary: &str,
    extra: &[String],
) -> anyhow::Result<Process> {
    let addr = free_addr();
    let path = bin_dir.join(binary);
    let child = service_command(&path, addr)
        .args(extra)
        .env("RUST_LOG", "warn")
        .env("MAX_CONCURRENT_REQUESTS", "0")
        .spawn()
        .with_context(|| {
            format!(
                "cannot start {} (run `cargo build --release --bins` first)",
                path.display()
            )
        })?;
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(Process { child, addr });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("{binary} did not start on {addr}")
}

async fn channel(addr: SocketAddr) -> anyhow::Result<Channel> {
    Ok(Channel::from_shared(format!("http://{addr}"))?
        .tcp_nodelay(true)
        .connect()
        .await?)
}

fn rss_mib(process: &Process) -> f64 {
    let Some(pid) = process.child.id() else {
        return 0.0;
    };
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// A process's CPU time so far (user + system), from /proc.
fn cpu_secs(process: &Process) -> f64 {
    // Clock ticks are 1/100 s on Linux (USER_HZ).
    const TICKS_PER_SEC: f64 = 100.0;
    let Some(pid) = process.child.id() else {
        return 0.0;
    };
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            // Fields after the command name, which is in parentheses.
            let rest = stat.rsplit_once(')')?.1;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let utime: f64 = fields.get(11)?.parse().ok()?;
            let stime: f64 = fields.get(12)?.parse().ok()?;
            Some((utime + stime) / TICKS_PER_SEC)
        })
        .unwrap_or(0.0)
}

/// Tokens minted once: signing is not what is measured.
struct Tokens {
    hiring: String,
    billing: String,
    reader: String,
    ops: String,
}

impl Tokens {
    fn new() -> anyhow::Result<Self> {
        Ok(Self {
            hiring: mint(&TokenSpec::service("load-hiring", &["contracts:write"]))?,
            billing: mint(&TokenSpec::service("load-billing", &["payments:write"]))?,
            reader: mint(&TokenSpec::service(
                "load-reader",
                &["contracts:read", "admin"],
            ))?,
            ops: mint(&TokenSpec::service("load-ops", &["admin"]))?,
        })
    }

    fn user(id: &str) -> String {
        mint(&TokenSpec::user(id)).unwrap_or_default()
    }
}

/// The run's RS256 signing key (made at start-up; its public half is what
/// every process verifies with) and where that public key is.
struct Signer {
    key: jsonwebtoken::EncodingKey,
    public_key_file: PathBuf,
    /// feedback-service's own token for contract-service.
    feedback_token_file: PathBuf,
}

static SIGNER: std::sync::OnceLock<Signer> = std::sync::OnceLock::new();

impl Signer {
    /// A fresh 2048-bit RSA key, its public half written to a temporary file.
    fn generate() -> anyhow::Result<Signer> {
        use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
        let private = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048)?;
        let private_pem = private.to_pkcs8_pem(LineEnding::LF)?;
        let public_pem = private.to_public_key().to_public_key_pem(LineEnding::LF)?;
        let dir = std::env::temp_dir().join(format!("loadtest-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let public_key_file = dir.join("jwt-public.pem");
        std::fs::write(&public_key_file, public_pem)?;
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(private_pem.as_bytes())?;
        let feedback_token_file = dir.join("feedback-service.token");
        let mut spec =
            TokenSpec::service("feedback-service", &["contracts:read", "payments:write"]);
        spec.ttl = chrono::Duration::days(1);
        let token = shared::auth::mint_with(&spec, jsonwebtoken::Algorithm::RS256, &key)?;
        std::fs::write(&feedback_token_file, token)?;
        Ok(Signer {
            key,
            public_key_file,
            feedback_token_file,
        })
    }

    /// The flags that make a process verify with this key.
    fn flags(&self) -> Vec<String> {
        vec![
            "--jwt-algorithm".into(),
            "RS256".into(),
            "--jwt-key-file".into(),
            self.public_key_file.display().to_string(),
        ]
    }
}

/// Signs a token with the run's RS256 key.
fn mint(spec: &TokenSpec) -> anyhow::Result<String> {
    let signer = SIGNER
        .get()
        .context("the signing key is made at start-up")?;
    Ok(shared::auth::mint_with(
        spec,
        jsonwebtoken::Algorithm::RS256,
        &signer.key,
    )?)
}

/// The echo scenarios' request.
fn ping() -> tpb::EchoRequest {
    tpb::EchoRequest {
        payload: "ping".into(),
    }
}

/// Friday 2026-11-20 23:50 UTC: the whole billing week is open for LogTime.
fn bench_now() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339("2026-11-20T23:50:00Z")
        .map(|t| t.with_timezone(&chrono::Utc))
        .unwrap_or_default()
}

/// One contract of the fixture: ids and the user tokens of its parties.
#[derive(Clone)]
struct Fixture {
    contract: String,
    client_token: String,
    freelancer_token: String,
}

/// Creates `count` hourly contracts started 90 days ago, each with a payment
/// two days ago (and ended, if asked), 32 at a time. Freelancers are
/// `{tag}-free-{i % freelancers}`.
async fn create_contracts(
    contracts: &ContractServiceClient<Channel>,
    tokens: &Tokens,
    count: usize,
    freelancers: usize,
    ended: bool,
    tag: &str,
) -> anyhow::Result<Vec<Fixture>> {
    use futures::{StreamExt, TryStreamExt};
    futures::stream::iter(0..count)
        .map(|i| create_contract(contracts.clone(), tokens, i, freelancers, ended, tag))
        .buffered(32)
        .try_collect()
        .await
}

async fn create_contract(
    mut c: ContractServiceClient<Channel>,
    tokens: &Tokens,
    i: usize,
    freelancers: usize,
    ended: bool,
    tag: &str,
) -> anyhow::Result<Fixture> {
    let client = format!("{tag}-client-{i}");
    let freelancer = format!("{tag}-free-{}", i % freelancers);
    let created = c
        .create_contract(with_token(
            &tokens.hiring,
            pb::CreateContractRequest {
                client_id: client.clone(),
                freelancer_id: freelancer.clone(),
                title: "load".into(),
                r#type: pb::ContractType::Hourly as i32,
                currency_code: "USD".into(),
                hourly_rate_minor: 5_000,
                weekly_limit_minutes: 6_000,
                start_time: Some(shared::time::to_proto(
                    bench_now() - chrono::Duration::days(90),
                )),
                ..Default::default()
            },
        ))
        .await?
        .into_inner()
        .contract
        .context("contract")?;
    let paid = bench_now() - chrono::Duration::days(2);
    let request_id = format!("load-pay-{}", created.id);
    let pay = invoice(created.id.clone(), 10_000, paid, request_id);
    c.record_payment(with_token(&tokens.billing, pay)).await?;
    let client_token = Tokens::user(&client);
    if ended {
        let end = end_request(created.id.clone());
        c.end_contract(with_token(&client_token, end)).await?;
    }
    Ok(Fixture {
        contract: created.id,
        client_token,
        freelancer_token: Tokens::user(&freelancer),
    })
}

/// An hourly invoice of `amount_minor` US cents paid at `paid`, for the week
/// it was paid in.
fn invoice(
    contract_id: String,
    amount_minor: i64,
    paid: chrono::DateTime<chrono::Utc>,
    request_id: String,
) -> pb::RecordPaymentRequest {
    let paid = Some(shared::time::to_proto(paid));
    pb::RecordPaymentRequest {
        contract_id,
        kind: pb::PaymentKind::HourlyInvoice as i32,
        amount: Some(pb::Money {
            currency_code: "USD".into(),
            amount_minor,
        }),
        paid_time: paid,
        memo: String::new(),
        request_id,
        billing_week_time: paid,
    }
}

/// A party ends the contract (no reason, no request id).
fn end_request(contract_id: String) -> pb::EndContractRequest {
    pb::EndContractRequest {
        contract_id,
        reason: String::new(),
        request_id: String::new(),
    }
}

/// The `rpc` of [`Bench::drive_rpc`] that calls the client's `$method` and
/// says whether it succeeded.
macro_rules! succeeds {
    ($method:ident) => {
        |mut client, request| async move { client.$method(request).await.is_ok() }
    };
}

/// A [`Bench::drive_rpc`] request maker: call `i` sends `build(i)` with
/// a service's `token`.
fn by_service<M>(
    token: &str,
    build: impl Fn(usize) -> M + Send + Sync + 'static,
) -> impl Fn(usize, usize) -> Option<tonic::Request<M>> + Send + Sync + 'static {
    let token = token.to_owned();
    move |_, i| Some(with_token(&token, build(i)))
}

/// A [`Bench::drive_rpc`] request maker: call `i` goes to the fixtures in
/// turn, sending `build(contract id)` as the contract's client.
fn by_clients<M>(
    fixtures: Arc<Vec<Fixture>>,
    build: impl Fn(String) -> M + Send + Sync + 'static,
) -> impl Fn(usize, usize) -> Option<tonic::Request<M>> + Send + Sync + 'static {
    move |_, i| {
        let fixture = &fixtures[i % fixtures.len()];
        Some(with_token(
            &fixture.client_token,
            build(fixture.contract.clone()),
        ))
    }
}

/// Like [`by_clients`], each fixture once: no more work once they ran out.
fn once_by_clients<M>(
    fixtures: Arc<Vec<Fixture>>,
    build: impl Fn(String) -> M + Send + Sync + 'static,
) -> impl Fn(usize, usize) -> Option<tonic::Request<M>> + Send + Sync + 'static {
    move |_, i| {
        let fixture = fixtures.get(i)?;
        Some(with_token(
            &fixture.client_token,
            build(fixture.contract.clone()),
        ))
    }
}

/// How long a scenario warms up, then is measured.
#[derive(Debug, Clone, Copy)]
struct Pace {
    warm_up: Duration,
    measured: Duration,
}

/// What [`drive`] measured: the latencies, the calls that succeeded and
/// failed, the measured time, and the warm-up's calls.
type Driven = (Histogram<u64>, u64, u64, Duration, u64);

/// Runs `call(worker, iteration)` from `concurrency` workers for the
/// measured time, after the warm-up. A call returns whether it succeeded, or
/// `None` when there is no more work (single-use fixtures ran out): that
/// worker stops, and the rate is taken over the time the workers ran.
async fn drive<F, Fut>(concurrency: usize, pace: Pace, call: F) -> Driven
where
    F: Fn(usize, usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Option<bool>> + Send,
{
    let call = Arc::new(call);
    // Warm-up: connections, caches and prepared statements.
    let warm_until = Instant::now() + pace.warm_up;
    let counter = Arc::new(AtomicUsize::new(0));
    let run = |until: Instant, record: bool| {
        let tasks: Vec<_> = (0..concurrency)
            .map(|worker| {
                let (call, counter) = (call.clone(), counter.clone());
                tokio::spawn(async move {
                    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).ok();
                    let (mut ok, mut errors) = (0u64, 0u64);
                    while Instant::now() < until {
                        let i = counter.fetch_add(1, Ordering::Relaxed);
                        let started = Instant::now();
                        let Some(success) = call(worker, i).await else {
                            break;
                        };
                        let micros = u64::try_from(started.elapsed().as_micros())
                            .unwrap_or(u64::MAX)
                            .max(1);
                        if record && let Some(h) = histogram.as_mut() {
                            let _ = h.record(micros.min(60_000_000));
                        }
                        if success { ok += 1 } else { errors += 1 }
                    }
                    (histogram, ok, errors)
                })
            })
            .collect::<Vec<_>>();
        async move {
            let mut total = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).ok();
            let (mut ok, mut errors) = (0, 0);
            for task in tasks {
                if let Ok((h, o, e)) = task.await {
                    if let (Some(total), Some(h)) = (total.as_mut(), h.as_ref()) {
                        let _ = total.add(h);
                    }
                    ok += o;
                    errors += e;
                }
            }
            (total, ok, errors)
        }
    };
    let (_, warm_ok, warm_errors) = run(warm_until, false).await;
    let started = Instant::now();
    let (histogram, ok, errors) = run(started + pace.measured, true).await;
    let elapsed = started.elapsed();
    (
        histogram.unwrap_or_else(|| Histogram::new(3).expect("histogram")),
        ok,
        errors,
        elapsed,
        warm_ok + warm_errors,
    )
}

fn pgbench_tps(url: &str, concurrency: usize, duration: u64) -> Option<f64> {
    use std::process::Command as Sync;
    let script = std::env::temp_dir().join("loadtest-insert.sql");
    std::fs::write(
        &script,
        "INSERT INTO pgbench_single_row (payload) VALUES ('x');\n",
    )
    .ok()?;
    let setup = Sync::new("psql")
        .args([url, "-q", "-c", "CREATE TABLE IF NOT EXISTS pgbench_single_row (id BIGSERIAL PRIMARY KEY, payload TEXT NOT NULL)"])
        .output()
        .ok()?;
    if !setup.status.success() {
        eprintln!(
            "pgbench setup failed: {}",
            String::from_utf8_lossy(&setup.stderr)
        );
        return None;
    }
    let output = Sync::new("pgbench")
        .args([
            "-n",
            "-c",
            &concurrency.to_string(),
            "-j",
            "2",
            "-T",
            &duration.to_string(),
            "-f",
        ])
        .arg(&script)
        .arg(url)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    text.lines()
        .find(|l| l.starts_with("tps = "))
        .and_then(|l| l.trim_start_matches("tps = ").split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// The clients, tokens and fixtures every scenario uses.
struct Bench {
    contracts: ContractServiceClient<Channel>,
    feedbacks: FeedbackServiceClient<Channel>,
    echoes: EchoServiceClient<Channel>,
    bare_echoes: EchoServiceClient<Channel>,
    tokens: Arc<Tokens>,
    /// Active contracts with a payment (reads, eligibility, LogTime).
    active: Arc<Vec<Fixture>>,
    /// Ended contracts with the client's feedback (feedback reads, history).
    ended: Arc<Vec<Fixture>>,
    concurrency: usize,
    pace: Pace,
    backend: String,
    contract: Process,
    feedback: Process,
    contract_db: String,
    feedback_db: String,
}

impl Bench {
    /// Fresh contracts for a scenario that uses each one once, enough for
    /// `per_sec` calls a second over the warm-up and the measured time.
    async fn single_use(&self, per_sec: u64, tag: &str) -> anyhow::Result<Arc<Vec<Fixture>>> {
        self.fresh_contracts(per_sec, tag, false).await
    }

    /// Like [`Self::single_use`], with the contracts ended.
    async fn single_use_ended(&self, per_sec: u64, tag: &str) -> anyhow::Result<Arc<Vec<Fixture>>> {
        self.fresh_contracts(per_sec, tag, true).await
    }

    async fn fresh_contracts(
        &self,
        per_sec: u64,
        tag: &str,
        ended: bool,
    ) -> anyhow::Result<Arc<Vec<Fixture>>> {
        let count = per_sec as f64 * (self.pace.warm_up + self.pace.measured).as_secs_f64();
        let count = usize::try_from(count.ceil() as u64).unwrap_or(usize::MAX);
        Ok(Arc::new(
            create_contracts(&self.contracts, &self.tokens, count, 50, ended, tag).await?,
        ))
    }

    /// [`drive`] for one RPC at this bench's concurrency and pace:
    /// `request(worker, iteration)` makes the next request (`None`: no more
    /// work), and `rpc` sends it on a clone of `client`, saying whether it
    /// succeeded.
    async fn drive_rpc<C, M, R, F, Fut>(&self, client: C, request: R, rpc: F) -> Driven
    where
        C: Clone + Send + Sync + 'static,
        R: Fn(usize, usize) -> Option<tonic::Request<M>> + Send + Sync + 'static,
        F: Fn(C, tonic::Request<M>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = bool> + Send,
    {
        drive(self.concurrency, self.pace, move |worker, i| {
            let call = request(worker, i).map(|request| rpc(client.clone(), request));
            async move { Some(call?.await) }
        })
        .await
    }

    /// Drives one scenario; `None` for an unknown name.
    async fn measure(&self, scenario: &str) -> anyhow::Result<Option<Figures>> {
        let bare = self.bare_echoes.clone();
        let (c, f, e, t, act, end) = (
            self.contracts.clone(),
            self.feedbacks.clone(),
            self.echoes.clone(),
            self.tokens.clone(),
            self.active.clone(),
            self.ended.clone(),
        );
        let concurrency = self.concurrency;
        let mut batch = 1.0;
        let cpu_before = [cpu_secs(&self.contract), cpu_secs(&self.feedback)];
        let (histogram, ok, errors, elapsed, warm_calls) = match scenario {
            "bare-echo" => {
                let ping = |_, _| Some(tonic::Request::new(ping()));
                self.drive_rpc(bare, ping, succeeds!(echo)).await
            }
            "echo" => {
                let ping = by_service(&t.reader, |_| ping());
                self.drive_rpc(e, ping, succeeds!(echo)).await
            }
            "get-contract" => {
                let get = by_service(&t.reader, move |i| pb::GetContractRequest {
                    contract_id: act[i % act.len()].contract.clone(),
                });
                self.drive_rpc(c, get, succeeds!(get_contract)).await
            }
            "check-eligibility" => {
                let check = by_clients(act, |contract_id| {
                    fpb::CheckMidContractEligibilityRequest { contract_id }
                });
                self.drive_rpc(f, check, succeeds!(check_mid_contract_eligibility))
                    .await
            }
            "batch-check-100" => {
                batch = 100.0;
                let check = by_service(&t.reader, move |i| {
                    let contract_ids: Vec<String> = (0..100)
                        .map(|k| act[(i * 7 + k) % act.len()].contract.clone())
                        .collect();
                    fpb::BatchCheckMidContractEligibilityRequest { contract_ids }
                });
                self.drive_rpc(f, check, succeeds!(batch_check_mid_contract_eligibility))
                    .await
            }
            "log-time" => {
                // Each worker logs consecutive segments on its own contracts.
                let week_start =
                    bench_now() - chrono::Duration::minutes(4 * 24 * 60 + 23 * 60 + 50);
                let per_worker = (act.len() / concurrency).max(1);
                let counters: Arc<Vec<AtomicUsize>> =
                    Arc::new((0..concurrency).map(|_| AtomicUsize::new(0)).collect());
                let log = move |worker: usize, _| {
                    let n = counters[worker].fetch_add(1, Ordering::Relaxed);
                    let fixture = &act[(worker * per_worker + (n / 700) % per_worker) % act.len()];
                    let start = week_start + chrono::Duration::minutes(10 * (n % 700) as i64);
                    let request = pb::LogTimeRequest {
                        contract_id: fixture.contract.clone(),
                        start_time: Some(shared::time::to_proto(start)),
                        minutes: 10,
                        ..Default::default()
                    };
                    Some(with_token(&fixture.freelancer_token, request))
                };
                self.drive_rpc(c, log, succeeds!(log_time)).await
            }
            "end-contract" => {
                let fresh = self.single_use(6_000, "x").await?;
                let end = once_by_clients(fresh, end_request);
                self.drive_rpc(c, end, succeeds!(end_contract)).await
            }
            "submit-mid-feedback" => {
                let fresh = self.single_use(3_000, "m").await?;
                let submit =
                    once_by_clients(fresh, |contract_id| fpb::SubmitMidContractFeedbackRequest {
                        contract_id,
                        rating: 5,
                        comment: "great progress".into(),
                        bonus: None,
                        request_id: String::new(),
                    });
                self.drive_rpc(f, submit, succeeds!(submit_mid_contract_feedback))
                    .await
            }
            "record-payment" => {
                let pay = by_service(&t.billing, move |i| {
                    let contract_id = act[i % act.len()].contract.clone();
                    let paid = bench_now() - chrono::Duration::hours(1);
                    invoice(contract_id, 100, paid, format!("load-invoice-{i}"))
                });
                self.drive_rpc(c, pay, succeeds!(record_payment)).await
            }
            "submit-end-feedback" => {
                // Ended contracts, each reviewed once by its client.
                let fresh = self.single_use_ended(3_000, "q").await?;
                let submit = once_by_clients(fresh, |contract_id| {
                    e2e::client_end_feedback_request(&contract_id)
                });
                self.drive_rpc(f, submit, succeeds!(submit_end_contract_feedback))
                    .await
            }
            "get-end-feedback" => {
                let get = by_clients(end, |contract_id| fpb::GetEndContractFeedbackRequest {
                    contract_id,
                });
                self.drive_rpc(f, get, succeeds!(get_end_contract_feedback))
                    .await
            }
            "list-work-history" => {
                let list = by_service(&t.reader, |i| fpb::ListWorkHistoryRequest {
                    freelancer_id: format!("e-free-{}", i % HISTORY_FREELANCERS),
                    page_size: 20,
                    page_token: String::new(),
                });
                self.drive_rpc(f, list, succeeds!(list_work_history)).await
            }
            _ => return Ok(None),
        };
        let rps = ok as f64 / elapsed.as_secs_f64();
        // Each service's CPU time per call (warm-up included), which a busy
        // or stolen-from host disturbs far less than latency.
        let calls = (ok + errors + warm_calls).max(1) as f64;
        let cpu_us = |process: &Process, before: f64| (cpu_secs(process) - before) * 1e6 / calls;
        let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
        Ok(Some(Figures {
            scenario: scenario.into(),
            backend: self.backend.clone(),
            concurrency,
            requests: ok,
            errors,
            requests_per_sec: rps,
            items_per_sec: rps * batch,
            p50_ms: ms(0.50),
            p90_ms: ms(0.90),
            p99_ms: ms(0.99),
            ratio_to_bare_echo: None,
            ratio_to_echo: None,
            contract_rss_mib: rss_mib(&self.contract),
            feedback_rss_mib: rss_mib(&self.feedback),
            contract_cpu_us_per_call: cpu_us(&self.contract, cpu_before[0]),
            feedback_cpu_us_per_call: cpu_us(&self.feedback, cpu_before[1]),
        }))
    }

    /// Runs the scenarios in order; ratios divide by this run's echoes.
    async fn measure_all(&self, scenarios: &[&str]) -> anyhow::Result<Vec<Figures>> {
        let mut figures = Vec::new();
        let (mut bare_rps, mut echo_rps) = (None, None);
        for scenario in scenarios {
            eprintln!("loadtest: {scenario}");
            if let Some(mut f) = self.measure(scenario).await? {
                match *scenario {
                    "bare-echo" => bare_rps = Some(f.requests_per_sec),
                    "echo" => echo_rps = Some(f.requests_per_sec),
                    _ => {}
                }
                f.ratio_to_bare_echo = bare_rps.map(|e| f.requests_per_sec / e);
                f.ratio_to_echo = echo_rps.map(|e| f.requests_per_sec / e);
                figures.push(f);
            }
        }
        Ok(figures)
    }
}

/// Loads the standard seed into both databases; the history rows go to the
/// benchmark's history freelancers, so ListWorkHistory pages through them.
async fn seed_databases(
    backend: Backend,
    contract_db: &str,
    feedback_db: &str,
) -> anyhow::Result<u64> {
    use shared::db::{Db, DbOptions};
    let contract = Db::connect(&DbOptions::new(contract_db)).await?;
    let feedback = Db::connect(&DbOptions::new(feedback_db)).await?;
    let plan = e2e::seed::SeedPlan {
        freelancer_prefix: "e-free-".into(),
        freelancers: HISTORY_FREELANCERS as u64,
        ..e2e::seed::SeedPlan::standard(bench_now())
    };
    let seeded = e2e::seed::seed(
        contract.writer(),
        feedback.writer(),
        backend == Backend::Sqlite,
        &plan,
    )
    .await?;
    eprintln!(
        "loadtest: seeded {} rows in {:.1} s",
        seeded.rows,
        seeded.elapsed.as_secs_f64()
    );
    contract.close().await;
    feedback.close().await;
    Ok(seeded.rows)
}

fn print_table(figures: &[Figures]) {
    println!(
        "| scenario | req/s | items/s | p50 ms | p90 ms | p99 ms | errors | ÷ bare echo | ÷ echo | contract RSS MiB | feedback RSS MiB | CPU µs/call contract / feedback |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for f in figures {
        println!(
            "| {} | {:.0} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {} | {} | {:.0} | {:.0} | {:.0} / {:.0} |",
            f.scenario,
            f.requests_per_sec,
            f.items_per_sec,
            f.p50_ms,
            f.p90_ms,
            f.p99_ms,
            f.errors,
            f.ratio_to_bare_echo
                .map_or("-".into(), |r| format!("{r:.2}")),
            f.ratio_to_echo.map_or("-".into(), |r| format!("{r:.2}")),
            f.contract_rss_mib,
            f.feedback_rss_mib,
            f.contract_cpu_us_per_call,
            f.feedback_cpu_us_per_call
        );
    }
}

impl Bench {
    /// Starts contract-service and feedback-service on fresh databases,
    /// sets both clocks, and makes the fixtures: 400 active contracts with a
    /// payment, and 200 ended ones with the client's feedback.
    async fn start(
        args: &Args,
        bin_dir: &std::path::Path,
        echoes: EchoServiceClient<Channel>,
        bare_echoes: EchoServiceClient<Channel>,
        pace: Pace,
    ) -> anyhow::Result<Self> {
        let contract_db = database_url(args, "contract").await?;
        let feedback_db = database_url(args, "feedback").await?;
        let signer = SIGNER
            .get()
            .context("the signing key is made at start-up")?;
        let common: Vec<String> = ["--dev".into(), "--test-clock".into()]
            .into_iter()
            .chain(signer.flags())
            .chain(args.service_args.iter().cloned())
            .collect();
        let contract = start(
            bin_dir,
            "contract-service",
            &[
                common.clone(),
                vec!["--database-url".into(), contract_db.clone()],
            ]
            .concat(),
        )
        .await?;
        let feedback = start(
            bin_dir,
            "feedback-service",
            &[
                common,
                vec![
                    "--database-url".into(),
                    feedback_db.clone(),
                    "--contract-service-url".into(),
                    format!("http://{}", contract.addr),
                    "--contract-service-token-file".into(),
                    signer.feedback_token_file.display().to_string(),
                    "--run-workers".into(),
                    "false".into(),
                ],
            ]
            .concat(),
        )
        .await?;
        let tokens = Arc::new(Tokens::new()?);
        // One clock for both services: Friday night, so a whole week is open.
        for addr in [contract.addr, feedback.addr] {
            TestClockServiceClient::new(channel(addr).await?)
                .set_time(with_token(
                    &tokens.ops,
                    tpb::SetTimeRequest {
                        now: Some(shared::time::to_proto(bench_now())),
                    },
                ))
                .await?;
        }
        let contracts = ContractServiceClient::new(channel(contract.addr).await?);
        let feedbacks = FeedbackServiceClient::new(channel(feedback.addr).await?);
        eprintln!("loadtest: preparing fixtures");
        let active = create_contracts(&contracts, &tokens, 400, 50, false, "a").await?;
        let ended =
            create_contracts(&contracts, &tokens, 200, HISTORY_FREELANCERS, true, "e").await?;
        for f in &ended {
            let mut fb = feedbacks.clone();
            fb.submit_end_contract_feedback(with_token(
                &f.client_token,
                e2e::client_end_feedback_request(&f.contract),
            ))
            .await?;
        }
        Ok(Self {
            contracts,
            feedbacks,
            echoes,
            bare_echoes,
            tokens,
            active: Arc::new(active),
            ended: Arc::new(ended),
            concurrency: args.concurrency,
            pace,
            backend: format!("{:?}", args.backend).to_lowercase(),
            contract,
            feedback,
            contract_db,
            feedback_db,
        })
    }

    /// Stops the services and drops their databases.
    async fn stop(self, args: &Args) {
        let (contract_db, feedback_db) = (self.contract_db.clone(), self.feedback_db.clone());
        drop(self);
        remove_database(args, &contract_db).await;
        remove_database(args, &feedback_db).await;
    }
}

/// Rounds of the flat-cost comparison, and each measurement's length.
const FLAT_ROUNDS: usize = 6;
const FLAT_PACE: Pace = Pace {
    warm_up: Duration::from_millis(500),
    measured: Duration::from_secs(2),
};

/// One read scenario on a near-empty and on a seeded pair of databases.
#[derive(Debug, Serialize)]
struct FlatCost {
    scenario: String,
    rounds: usize,
    /// Medians over the rounds.
    p50_empty_ms: f64,
    p50_seeded_ms: f64,
    /// Median over the rounds of each round's seeded ÷ empty p50.
    seeded_over_empty: f64,
    /// Medians over the rounds of both services' CPU per call (µs),
    /// near-empty and seeded: contract-service, then feedback-service.
    cpu_us_empty: [f64; 2],
    cpu_us_seeded: [f64; 2],
    errors: u64,
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// Flat cost: two fresh stacks with the same fixtures, one of them seeded,
/// measured in alternating short slices (empty, seeded, seeded, empty, …),
/// so that the host's drift (CPU steal comes and goes) falls on both alike;
/// each round's p50s are compared with each other.
async fn flat_cost(
    args: &Args,
    bin_dir: &std::path::Path,
    echoes: &EchoServiceClient<Channel>,
    bare_echoes: &EchoServiceClient<Channel>,
    scenarios: &[&str],
) -> anyhow::Result<(u64, Vec<FlatCost>)> {
    let start = || {
        Bench::start(
            args,
            bin_dir,
            echoes.clone(),
            bare_echoes.clone(),
            FLAT_PACE,
        )
    };
    let (empty, seeded) = (start().await?, start().await?);
    eprintln!("loadtest: seeding");
    let rows = seed_databases(args.backend, &seeded.contract_db, &seeded.feedback_db).await?;
    let mut results = Vec::new();
    for scenario in scenarios {
        eprintln!("loadtest: flat cost of {scenario}");
        let (mut before, mut after, mut ratios, mut errors) = (vec![], vec![], vec![], 0);
        let mut cpu: [[Vec<f64>; 2]; 2] = Default::default();
        for round in 0..FLAT_ROUNDS {
            let order = if round % 2 == 0 {
                [&empty, &seeded]
            } else {
                [&seeded, &empty]
            };
            let mut p50 = [0.0; 2];
            for bench in order {
                let Some(f) = bench.measure(scenario).await? else {
                    continue;
                };
                errors += f.errors;
                let side = usize::from(std::ptr::eq(bench, &seeded));
                p50[side] = f.p50_ms;
                cpu[side][0].push(f.contract_cpu_us_per_call);
                cpu[side][1].push(f.feedback_cpu_us_per_call);
            }
            before.push(p50[0]);
            after.push(p50[1]);
            ratios.push(p50[1] / p50[0]);
        }
        results.push(FlatCost {
            scenario: (*scenario).into(),
            rounds: FLAT_ROUNDS,
            p50_empty_ms: median(before),
            p50_seeded_ms: median(after),
            seeded_over_empty: median(ratios),
            cpu_us_empty: cpu[0].clone().map(median),
            cpu_us_seeded: cpu[1].clone().map(median),
            errors,
        });
    }
    empty.stop(args).await;
    seeded.stop(args).await;
    Ok((rows, results))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let bin_dir = match &args.bin_dir {
        Some(dir) => dir.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("exe dir")?
            .to_path_buf(),
    };
    let selected: Vec<&str> = if args.scenarios.is_empty() {
        SCENARIOS.to_vec()
    } else {
        SCENARIOS
            .iter()
            .copied()
            .filter(|s| args.scenarios.iter().any(|a| a == s))
            .collect()
    };
    eprintln!("loadtest: making an RS256 key for the run");
    let signer = Signer::generate()?;
    let echo_flags = [vec!["--dev".to_owned()], signer.flags()].concat();
    if SIGNER.set(signer).is_err() {
        anyhow::bail!("the signing key was already made");
    }
    let echo = start(&bin_dir, "echo-server", &echo_flags).await?;
    let bare_echo = start(&bin_dir, "echo-server", &["--bare".to_owned()]).await?;
    let echoes = EchoServiceClient::new(channel(echo.addr).await?);
    let bare_echoes = EchoServiceClient::new(channel(bare_echo.addr).await?);
    let pace = Pace {
        warm_up: Duration::from_secs(1),
        measured: Duration::from_secs(args.duration_secs),
    };
    let bench = Bench::start(&args, &bin_dir, echoes.clone(), bare_echoes.clone(), pace).await?;
    let figures = bench.measure_all(&selected).await?;
    let backend = bench.backend.clone();
    bench.stop(&args).await;
    let pgbench = match (args.backend, &args.postgres_url) {
        (Backend::Postgres, Some(url)) => pgbench_tps(url, args.concurrency, args.duration_secs),
        _ => None,
    };
    let (mut flat, mut seeded_rows) = (Vec::new(), None);
    if args.flat_cost {
        let reads: Vec<&str> = selected
            .iter()
            .copied()
            .filter(|s| READ_SCENARIOS.contains(s))
            .collect();
        let (rows, results) = flat_cost(&args, &bin_dir, &echoes, &bare_echoes, &reads).await?;
        seeded_rows = Some(rows);
        flat = results;
    }
    let log_time_rps = figures
        .iter()
        .find(|f| f.scenario == "log-time")
        .map(|f| f.requests_per_sec);
    let report = Report {
        machine: format!(
            "{} cores",
            std::thread::available_parallelism().map_or(0, |n| n.get())
        ),
        backend,
        log_time_ratio_to_pgbench: pgbench.zip(log_time_rps).map(|(p, l)| l / p),
        pgbench_insert_tps: pgbench,
        figures,
        flat_cost: flat,
        seeded_rows,
    };
    print_table(&report.figures);
    if let Some(tps) = report.pgbench_insert_tps {
        println!(
            "\npgbench single-row INSERT at {}: {tps:.0} tps; LogTime ÷ pgbench = {}",
            args.concurrency,
            report
                .log_time_ratio_to_pgbench
                .map_or("-".into(), |r| format!("{r:.2}"))
        );
    }
    if let Some(rows) = report.seeded_rows {
        println!(
            "\nFlat cost: near-empty vs {rows} seeded rows, {FLAT_ROUNDS} alternating rounds of {} s:\n",
            FLAT_PACE.measured.as_secs_f64()
        );
        println!(
            "| scenario | p50 near-empty ms | p50 seeded ms | seeded ÷ empty | contract CPU µs/call empty → seeded | feedback CPU µs/call empty → seeded | errors |"
        );
        println!("|---|---|---|---|---|---|---|");
        for f in &report.flat_cost {
            println!(
                "| {} | {:.2} | {:.2} | {:.2} | {:.0} → {:.0} | {:.0} → {:.0} | {} |",
                f.scenario,
                f.p50_empty_ms,
                f.p50_seeded_ms,
                f.seeded_over_empty,
                f.cpu_us_empty[0],
                f.cpu_us_seeded[0],
                f.cpu_us_empty[1],
                f.cpu_us_seeded[1],
                f.errors
            );
        }
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
    }
    drop((echo, bare_echo));
    Ok(())
}

/// Removes a database the run created (best effort: a leftover is only disk).
async fn remove_database(args: &Args, url: &str) {
    match (args.backend, &args.postgres_url) {
        (Backend::Sqlite, _) => {
            let path = url.trim_start_matches("sqlite://");
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{path}{suffix}"));
            }
        }
        (Backend::Postgres, Some(server)) => {
            use sqlx::Executor;
            let Some((_, name)) = url.split('?').next().and_then(|u| u.rsplit_once('/')) else {
                return;
            };
            if let Ok(mut conn) = <sqlx::AnyConnection as sqlx::Connection>::connect(server).await {
                let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                if let Err(err) = conn.execute(sqlx::AssertSqlSafe(sql)).await {
                    eprintln!("loadtest: could not drop {name}: {err}");
                }
            }
        }
        (Backend::Postgres, None) => {}
    }
}
