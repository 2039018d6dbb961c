//! feedback-service's client of contract-service: eligibility facts and
//! bonus payments, with the caller's remaining deadline passed on and
//! transport failures reported as UNAVAILABLE.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Status};

use crate::domain::ContractFacts;
use crate::error::Error;
use shared::observe::{Observe, ObserveLayer};
use shared::proto::contract::v1 as pb;
use shared::proto::contract::v1::contract_service_client::ContractServiceClient;
use shared::status::Common;

type Client = ContractServiceClient<Observe<Channel>>;

/// HTTP/2 connections to contract-service, taken in turn (one connection's
/// task would carry every call otherwise), and the token feedback-service
/// calls it with, made into a header once.
#[derive(Debug, Clone)]
pub struct Contracts {
    clients: Arc<[Client]>,
    next: Arc<AtomicUsize>,
    authorization: AsciiMetadataValue,
    /// The longest any one call may take, whatever the caller allows.
    timeout: Duration,
    /// Attempts for idempotent reads that fail UNAVAILABLE.
    attempts: u32,
}

impl Contracts {
    /// A lazily connecting client with `connections` HTTP/2 connections:
    /// contract-service may be down at start-up.
    pub fn connect_lazy(
        url: &str,
        token: &str,
        connections: usize,
        timeout: Duration,
        connect_timeout: Duration,
        metrics: Arc<shared::metrics::Metrics>,
        tls: Option<tonic::transport::ClientTlsConfig>,
    ) -> anyhow::Result<Self> {
        let mut endpoint = Endpoint::from_shared(url.to_owned())?;
        if let Some(tls) = tls {
            endpoint = endpoint.tls_config(tls)?;
        }
        let endpoint = endpoint
            .connect_timeout(connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_while_idle(true);
        let clients = (0..connections.max(1))
            .map(|_| {
                let observed = tower::ServiceBuilder::new()
                    .layer(ObserveLayer::client(metrics.clone()))
                    .service(endpoint.connect_lazy());
                ContractServiceClient::new(observed)
            })
            .collect();
        let authorization = format!("Bearer {token}").parse().map_err(|_| {
            anyhow::anyhow!("the contract-service token is not a valid header value")
        })?;
        Ok(Self {
            clients,
            next: Arc::new(AtomicUsize::new(0)),
            authorization,
            timeout,
            attempts: 3,
        })
    }

    /// The next connection's client.
    fn client(&self) -> Client {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.clients.len();
        self.clients[i].clone()
    }

    /// How many times an idempotent read is tried when contract-service is UNAVAILABLE.
    pub fn with_attempts(mut self, attempts: u32) -> Self {
        self.attempts = attempts.max(1);
        self
    }

    /// Runs an idempotent read, retrying on UNAVAILABLE with a short backoff
    /// while the caller's deadline allows.
    async fn read<T, F, Fut>(&self, deadline: Option<Duration>, mut call: F) -> Result<T, Status>
    where
        F: FnMut(Option<Duration>) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let started = std::time::Instant::now();
        let mut backoff = Duration::from_millis(25);
        let mut attempt = 1;
        loop {
            let left = deadline.map(|d| d.saturating_sub(started.elapsed()));
            match call(left).await {
                Err(status) if status.code() == Code::Unavailable && attempt < self.attempts => {
                    if left.is_some_and(|l| l <= backoff * 2) {
                        return Err(status);
                    }
                    tracing::debug!(attempt, "contract-service unavailable; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff *= 4;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    fn request<T>(&self, message: T, caller_deadline: Option<Duration>) -> Request<T> {
        let mut request = Request::new(message);
        request.set_timeout(caller_deadline.map_or(self.timeout, |d| d.min(self.timeout)));
        request
            .metadata_mut()
            .insert("authorization", self.authorization.clone());
        request
    }

    /// contract-service's events after `after_sequence`, as a stream without
    /// a deadline (it stays open while events keep coming).
    pub async fn watch_events(
        &self,
        after_sequence: i64,
    ) -> Result<tonic::Streaming<pb::WatchEventsResponse>, Status> {
        let mut request = Request::new(pb::WatchEventsRequest { after_sequence });
        request
            .metadata_mut()
            .insert("authorization", self.authorization.clone());
        Ok(self.client().watch_events(request).await?.into_inner())
    }

    /// One contract's facts; `None` when it does not exist.
    pub async fn get(
        &self,
        contract_id: &str,
        deadline: Option<Duration>,
    ) -> Result<Option<ContractFacts>, Error> {
        let answer = self
            .read(deadline, |left| {
                let request = self.request(
                    pb::GetContractRequest {
                        contract_id: contract_id.to_owned(),
                    },
                    left,
                );
                let mut client = self.client();
                async move { client.get_contract(request).await }
            })
            .await;
        match answer {
            Ok(response) => response.into_inner().contract.map(facts).transpose(),
            Err(status) if status.code() == Code::NotFound => Ok(None),
            Err(status) => Err(failure(status)),
        }
    }

    /// Facts of up to 100 contracts in one call; missing ones are left out.
    pub async fn batch_get(
        &self,
        contract_ids: &[String],
        deadline: Option<Duration>,
    ) -> Result<Vec<ContractFacts>, Error> {
        if contract_ids.is_empty() {
            return Ok(Vec::new());
        }
        let response = self
            .read(deadline, |left| {
                let request = self.request(
                    pb::BatchGetContractsRequest {
                        contract_ids: contract_ids.to_vec(),
                    },
                    left,
                );
                let mut client = self.client();
                async move { client.batch_get_contracts(request).await }
            })
            .await
            .map_err(failure)?;
        response
            .into_inner()
            .contracts
            .into_iter()
            .map(facts)
            .collect()
    }

    /// Pays a bonus through RecordPayment(BONUS). The idempotency key is
    /// derived from the feedback id, so a retry after any failure or crash
    /// can never pay twice. Returns the payment id.
    pub async fn pay_bonus(
        &self,
        contract_id: &str,
        feedback_id: &str,
        currency: &str,
        amount_minor: i64,
        paid_at: DateTime<Utc>,
    ) -> Result<String, Error> {
        let request = self.request(
            pb::RecordPaymentRequest {
                contract_id: contract_id.to_owned(),
                kind: pb::PaymentKind::Bonus as i32,
                amount: Some(pb::Money {
                    currency_code: currency.to_owned(),
                    amount_minor,
                }),
                paid_time: Some(shared::time::to_proto(paid_at)),
                memo: format!("bonus with mid-contract feedback {feedback_id}"),
                request_id: bonus_request_id(feedback_id),
                billing_week_time: None,
            },
            None,
        );
        let response = self
            .client()
            .record_payment(request)
            .await
            .map_err(failure)?;
        response.into_inner().payment.map(|p| p.id).ok_or_else(|| {
            Error::from(Common::Internal(
                "RecordPayment answered without a payment".into(),
            ))
        })
    }
}

/// The idempotency key of a feedback's bonus payment.
pub fn bonus_request_id(feedback_id: &str) -> String {
    format!("bonus-{feedback_id}")
}

fn failure(status: Status) -> Error {
    match status.code() {
        // tonic reports its own client-side timeout as CANCELLED "Timeout expired".
        Code::DeadlineExceeded => Error::ContractServiceDeadline(status),
        Code::Cancelled if status.message().contains("Timeout") => {
            Error::ContractServiceDeadline(status)
        }
        Code::Unavailable | Code::Cancelled => Error::ContractServiceUnavailable(status),
        _ => Error::ContractService(status),
    }
}

fn facts(c: pb::Contract) -> Result<ContractFacts, Error> {
    let time = |t: Option<prost_types::Timestamp>| t.as_ref().and_then(shared::time::from_proto);
    Ok(ContractFacts {
        active: c.state == pb::ContractState::Active as i32,
        start_time: time(c.start_time).ok_or_else(|| {
            Error::from(Common::Internal(format!(
                "contract {} has no start time",
                c.id
            )))
        })?,
        end_time: time(c.end_time),
        last_payment_time: time(c.last_payment_time),
        net_paid_minor: c.net_paid.map(|m| m.amount_minor).unwrap_or(0),
        currency: c.currency_code,
        client_id: c.client_id,
        freelancer_id: c.freelancer_id,
        id: c.id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_callers_remaining_deadline_is_passed_on_capped_by_our_timeout() {
        let contracts = Contracts::connect_lazy(
            "http://127.0.0.1:9",
            "token",
            2,
            Duration::from_secs(2),
            Duration::from_secs(1),
            shared::metrics::Metrics::new().expect("metrics"),
            None,
        )
        .expect("client");
        let sent =
            |deadline| shared::deadline::remaining(contracts.request((), deadline).metadata());
        assert_eq!(
            sent(Some(Duration::from_millis(300))),
            Some(Duration::from_millis(300))
        );
        assert_eq!(
            sent(Some(Duration::from_secs(5))),
            Some(Duration::from_secs(2))
        );
        assert_eq!(sent(None), Some(Duration::from_secs(2)));
        let request = contracts.request((), None);
        let auth = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        assert_eq!(auth, Some("Bearer token"));
    }
}
