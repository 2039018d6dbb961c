//! The gRPC surface as a table: the `ContractApi` service and, for each RPC,
//! a one-line delegation to its feature module (contracts, diary, payments, billing, disputes, events).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use tonic::{Request, Response, Status};

use crate::domain::Rules;
use crate::events::EventStream;
use shared::auth::Caller;
use shared::clock::SharedClock;
use shared::db::Db;
use shared::metrics::Metrics;
use shared::outbox::Relay;
use shared::proto::contract::v1 as pb;
use shared::writer::Mutations;

/// The contract service.
#[derive(Debug, Clone)]
pub struct ContractApi {
    pub(crate) db: Db,
    pub(crate) clock: SharedClock,
    pub(crate) rules: Rules,
    pub(crate) relay: Relay,
    pub(crate) mutations: Mutations,
    /// Where `WatchEvents` reports each consumer's position, once set.
    pub(crate) metrics: Option<Arc<Metrics>>,
}

impl ContractApi {
    pub fn new(db: Db, clock: SharedClock, rules: Rules, relay: Relay) -> Self {
        Self {
            mutations: Mutations::new(db.clone(), clock.clone(), relay.clone()),
            db,
            clock,
            rules,
            relay,
            metrics: None,
        }
    }

    /// Reports what `WatchEvents` sends each consumer in `metrics`
    /// (`outbox_consumer_sequence`).
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    pub(crate) fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }
}

/// Runs one handler: caller from the interceptor, errors mapped in one place.
macro_rules! handle {
    ($self:ident, $request:ident, $method:ident) => {{
        let caller = Caller::of(&$request)?;
        $self
            .$method(caller, $request.into_inner())
            .await
            .map(Response::new)
            .map_err(Status::from)
    }};
}

#[tonic::async_trait]
impl pb::contract_service_server::ContractService for ContractApi {
    async fn create_contract(
        &self,
        request: Request<pb::CreateContractRequest>,
    ) -> Result<Response<pb::CreateContractResponse>, Status> {
        handle!(self, request, create_contract)
    }
    async fn get_contract(
        &self,
        request: Request<pb::GetContractRequest>,
    ) -> Result<Response<pb::GetContractResponse>, Status> {
        handle!(self, request, get_contract)
    }
    async fn batch_get_contracts(
        &self,
        request: Request<pb::BatchGetContractsRequest>,
    ) -> Result<Response<pb::BatchGetContractsResponse>, Status> {
        handle!(self, request, batch_get_contracts)
    }
    async fn list_contracts(
        &self,
        request: Request<pb::ListContractsRequest>,
    ) -> Result<Response<pb::ListContractsResponse>, Status> {
        handle!(self, request, list_contracts)
    }
    async fn end_contract(
        &self,
        request: Request<pb::EndContractRequest>,
    ) -> Result<Response<pb::EndContractResponse>, Status> {
        handle!(self, request, end_contract)
    }
    async fn log_time(
        &self,
        request: Request<pb::LogTimeRequest>,
    ) -> Result<Response<pb::LogTimeResponse>, Status> {
        handle!(self, request, log_time)
    }
    async fn delete_time_entry(
        &self,
        request: Request<pb::DeleteTimeEntryRequest>,
    ) -> Result<Response<pb::DeleteTimeEntryResponse>, Status> {
        handle!(self, request, delete_time_entry)
    }
    async fn get_work_diary(
        &self,
        request: Request<pb::GetWorkDiaryRequest>,
    ) -> Result<Response<pb::GetWorkDiaryResponse>, Status> {
        handle!(self, request, get_work_diary)
    }
    async fn record_payment(
        &self,
        request: Request<pb::RecordPaymentRequest>,
    ) -> Result<Response<pb::RecordPaymentResponse>, Status> {
        handle!(self, request, record_payment)
    }
    async fn list_payments(
        &self,
        request: Request<pb::ListPaymentsRequest>,
    ) -> Result<Response<pb::ListPaymentsResponse>, Status> {
        handle!(self, request, list_payments)
    }
    async fn refund_payment(
        &self,
        request: Request<pb::RefundPaymentRequest>,
    ) -> Result<Response<pb::RefundPaymentResponse>, Status> {
        handle!(self, request, refund_payment)
    }
    async fn get_billing_week(
        &self,
        request: Request<pb::GetBillingWeekRequest>,
    ) -> Result<Response<pb::GetBillingWeekResponse>, Status> {
        handle!(self, request, get_billing_week)
    }
    async fn dispute_hours(
        &self,
        request: Request<pb::DisputeHoursRequest>,
    ) -> Result<Response<pb::DisputeHoursResponse>, Status> {
        handle!(self, request, dispute_hours)
    }
    async fn accept_dispute(
        &self,
        request: Request<pb::AcceptDisputeRequest>,
    ) -> Result<Response<pb::AcceptDisputeResponse>, Status> {
        handle!(self, request, accept_dispute)
    }
    async fn decline_dispute(
        &self,
        request: Request<pb::DeclineDisputeRequest>,
    ) -> Result<Response<pb::DeclineDisputeResponse>, Status> {
        handle!(self, request, decline_dispute)
    }
    async fn resolve_dispute(
        &self,
        request: Request<pb::ResolveDisputeRequest>,
    ) -> Result<Response<pb::ResolveDisputeResponse>, Status> {
        handle!(self, request, resolve_dispute)
    }
    async fn withdraw_dispute(
        &self,
        request: Request<pb::WithdrawDisputeRequest>,
    ) -> Result<Response<pb::WithdrawDisputeResponse>, Status> {
        handle!(self, request, withdraw_dispute)
    }
    async fn list_disputes(
        &self,
        request: Request<pb::ListDisputesRequest>,
    ) -> Result<Response<pb::ListDisputesResponse>, Status> {
        handle!(self, request, list_disputes)
    }

    type WatchEventsStream = EventStream;

    async fn watch_events(
        &self,
        request: Request<pb::WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        let caller = Caller::of(&request)?;
        self.watch_events(&caller, request.into_inner())
            .map(Response::new)
            .map_err(Status::from)
    }
}
