//! The gRPC surface as a table: the `ContractApi` service and, for each RPC,
//! a one-line delegation to its feature module (contracts, diary, payments, billing, disputes, events).

use tonic::{Request, Response, Status};

use crate::domain::Rules;
use crate::events::EventStream;
use shared::api::Core;
use shared::auth::handle;
use shared::proto::contract::v1 as pb;

/// The contract service.
#[derive(Debug, Clone)]
pub struct ContractApi {
    pub(crate) core: Core,
    pub(crate) rules: Rules,
}

impl ContractApi {
    pub fn new(core: Core, rules: Rules) -> Self {
        Self { core, rules }
    }
}

/// `self.db`, `self.mutations`, `self.now()`…: the state every service has.
impl std::ops::Deref for ContractApi {
    type Target = Core;
    fn deref(&self) -> &Core {
        &self.core
    }
}

#[tonic::async_trait]
impl pb::contract_service_server::ContractService for ContractApi {
    async fn create_contract(
        &self,
        request: Request<pb::CreateContractRequest>,
    ) -> Result<Response<pb::CreateContractResponse>, Status> {
        handle(request, |caller, req| self.create_contract(caller, req)).await
    }
    async fn get_contract(
        &self,
        request: Request<pb::GetContractRequest>,
    ) -> Result<Response<pb::GetContractResponse>, Status> {
        handle(request, |caller, req| self.get_contract(caller, req)).await
    }
    async fn batch_get_contracts(
        &self,
        request: Request<pb::BatchGetContractsRequest>,
    ) -> Result<Response<pb::BatchGetContractsResponse>, Status> {
        handle(request, |caller, req| self.batch_get_contracts(caller, req)).await
    }
    async fn list_contracts(
        &self,
        request: Request<pb::ListContractsRequest>,
    ) -> Result<Response<pb::ListContractsResponse>, Status> {
        handle(request, |caller, req| self.list_contracts(caller, req)).await
    }
    async fn end_contract(
        &self,
        request: Request<pb::EndContractRequest>,
    ) -> Result<Response<pb::EndContractResponse>, Status> {
        handle(request, |caller, req| self.end_contract(caller, req)).await
    }
    async fn log_time(
        &self,
        request: Request<pb::LogTimeRequest>,
    ) -> Result<Response<pb::LogTimeResponse>, Status> {
        handle(request, |caller, req| self.log_time(caller, req)).await
    }
    async fn delete_time_entry(
        &self,
        request: Request<pb::DeleteTimeEntryRequest>,
    ) -> Result<Response<pb::DeleteTimeEntryResponse>, Status> {
        handle(request, |caller, req| self.delete_time_entry(caller, req)).await
    }
    async fn get_work_diary(
        &self,
        request: Request<pb::GetWorkDiaryRequest>,
    ) -> Result<Response<pb::GetWorkDiaryResponse>, Status> {
        handle(request, |caller, req| self.get_work_diary(caller, req)).await
    }
    async fn record_payment(
        &self,
        request: Request<pb::RecordPaymentRequest>,
    ) -> Result<Response<pb::RecordPaymentResponse>, Status> {
        handle(request, |caller, req| self.record_payment(caller, req)).await
    }
    async fn list_payments(
        &self,
        request: Request<pb::ListPaymentsRequest>,
    ) -> Result<Response<pb::ListPaymentsResponse>, Status> {
        handle(request, |caller, req| self.list_payments(caller, req)).await
    }
    async fn refund_payment(
        &self,
        request: Request<pb::RefundPaymentRequest>,
    ) -> Result<Response<pb::RefundPaymentResponse>, Status> {
        handle(request, |caller, req| self.refund_payment(caller, req)).await
    }
    async fn get_billing_week(
        &self,
        request: Request<pb::GetBillingWeekRequest>,
    ) -> Result<Response<pb::GetBillingWeekResponse>, Status> {
        handle(request, |caller, req| self.get_billing_week(caller, req)).await
    }
    async fn dispute_hours(
        &self,
        request: Request<pb::DisputeHoursRequest>,
    ) -> Result<Response<pb::DisputeHoursResponse>, Status> {
        handle(request, |caller, req| self.dispute_hours(caller, req)).await
    }
    async fn accept_dispute(
        &self,
        request: Request<pb::AcceptDisputeRequest>,
    ) -> Result<Response<pb::AcceptDisputeResponse>, Status> {
        handle(request, |caller, req| self.accept_dispute(caller, req)).await
    }
    async fn decline_dispute(
        &self,
        request: Request<pb::DeclineDisputeRequest>,
    ) -> Result<Response<pb::DeclineDisputeResponse>, Status> {
        handle(request, |caller, req| self.decline_dispute(caller, req)).await
    }
    async fn resolve_dispute(
        &self,
        request: Request<pb::ResolveDisputeRequest>,
    ) -> Result<Response<pb::ResolveDisputeResponse>, Status> {
        handle(request, |caller, req| self.resolve_dispute(caller, req)).await
    }
    async fn withdraw_dispute(
        &self,
        request: Request<pb::WithdrawDisputeRequest>,
    ) -> Result<Response<pb::WithdrawDisputeResponse>, Status> {
        handle(request, |caller, req| self.withdraw_dispute(caller, req)).await
    }
    async fn list_disputes(
        &self,
        request: Request<pb::ListDisputesRequest>,
    ) -> Result<Response<pb::ListDisputesResponse>, Status> {
        handle(request, |caller, req| self.list_disputes(caller, req)).await
    }

    type WatchEventsStream = EventStream;

    async fn watch_events(
        &self,
        request: Request<pb::WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        handle(request, |caller, req| async move {
            self.watch_events(&caller, req)
        })
        .await
    }
}
