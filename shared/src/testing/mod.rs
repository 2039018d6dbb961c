//! Test support shared by every crate's tests (only with the `testing` feature): tokens,
//! fresh databases per backend, starting a service binary and reaching it, reading the outbox.

mod database;
mod outbox;

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::pin::Pin;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::Request;
use tonic::transport::Channel;

use crate::auth::{TokenSpec, mint_dev};
use crate::proto::contract::v1 as pb;
use crate::proto::contract::v1::contract_service_client::ContractServiceClient;

pub use database::TestBackend;
pub use outbox::{EventStream, Outbox, OutboxEvent, Watched, assert_gap_free, watch_outbox};

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

/// An address on 127.0.0.1 that was free when asked (a service started on
/// it binds it right after).
pub fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
}

/// `binary --listen <listen> --metrics-listen 127.0.0.1:0`, its output
/// discarded, killed when dropped: what every service (and the echo server)
/// is started with. Add flags and spawn.
pub fn service_command(binary: impl AsRef<OsStr>, listen: SocketAddr) -> Command {
    let mut command = Command::new(binary);
    command
        .args(["--listen", &listen.to_string()])
        .args(["--metrics-listen", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    command
}

/// Starts a service binary (the owning crate's `CARGO_BIN_EXE_…`) with
/// `--dev` on `listen` against `database_url`, plus `extra` flags.
pub fn start_service(
    binary: &str,
    listen: SocketAddr,
    database_url: &str,
    extra: &[&str],
) -> Child {
    service_command(binary, listen)
        .args(["--dev", "--database-url", database_url])
        .args(extra)
        .spawn()
        .unwrap_or_else(|err| panic!("start {binary}: {err}"))
}

/// A channel to `addr`, retried for up to 10 s while the server comes up.
pub async fn channel(addr: SocketAddr) -> Channel {
    for _ in 0..100 {
        if let Ok(channel) = Channel::from_shared(format!("http://{addr}"))
            .expect("uri")
            .connect()
            .await
        {
            return channel;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("nothing answers on {addr}");
}

/// `client` hires `freelancer` on `kind` terms in USD, under `title`; the
/// rest (rates, start, request id) default for the caller to fill in.
pub fn usd_contract(
    kind: pb::ContractType,
    client: impl Into<String>,
    freelancer: impl Into<String>,
    title: &str,
) -> pb::CreateContractRequest {
    pb::CreateContractRequest {
        client_id: client.into(),
        freelancer_id: freelancer.into(),
        title: title.into(),
        r#type: kind as i32,
        currency_code: "USD".into(),
        ..Default::default()
    }
}

/// A service running in this process until [`InProcess::stop`] (or until
/// dropped, which asks it to stop without waiting).
pub struct InProcess {
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
}

/// What a service in this process is told to stop by.
pub type Shutdown = Pin<Box<dyn Future<Output = ()> + Send>>;

impl InProcess {
    /// Spawns `run(shutdown)`, typically `|s| app.run_until_stopped(s)`.
    pub fn spawn<F>(run: impl FnOnce(Shutdown) -> F) -> Self
    where
        F: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(run(Box::pin(async {
            let _ = stopped.await;
        })));
        Self {
            stop: Some(stop),
            server: Some(server),
        }
    }

    /// Stops the service (draining in-flight calls) and returns how it ended.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.signal();
        match self.server.take() {
            Some(server) => server.await.expect("join"),
            None => Ok(()),
        }
    }

    fn signal(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        self.signal();
    }
}

/// The payments on a contract (the first page), read with the token
/// `authorize` puts on the request (`|r| as_user("free-1", r)`).
pub async fn payments_of(
    client: &ContractServiceClient<Channel>,
    contract_id: &str,
    authorize: impl FnOnce(pb::ListPaymentsRequest) -> Request<pb::ListPaymentsRequest>,
) -> Vec<pb::Payment> {
    let request = pb::ListPaymentsRequest {
        contract_id: contract_id.into(),
        ..Default::default()
    };
    client
        .clone()
        .list_payments(authorize(request))
        .await
        .expect("payments")
        .into_inner()
        .payments
}

/// Registers a contract as the hiring service (`contracts:write`).
pub async fn create_contract(
    client: &ContractServiceClient<Channel>,
    request: pb::CreateContractRequest,
) -> Result<pb::Contract, tonic::Status> {
    let response = client
        .clone()
        .create_contract(as_service("hiring", &["contracts:write"], request))
        .await?;
    Ok(response
        .into_inner()
        .contract
        .expect("contract in response"))
}
