//! The gRPC table: each `FeedbackService` method authenticates the caller
//! and delegates to its feature module.

use tonic::{Request, Response, Status};

use crate::events::EventStream;
use crate::moderation;
use shared::auth::Caller;
use shared::proto::feedback::v1 as pb;

use crate::api::FeedbackApi;

/// Runs one handler: caller from the interceptor, the caller's deadline for
/// calls to contract-service, errors mapped in one place.
macro_rules! handle {
    ($self:ident, $request:ident, $method:ident) => {{
        let caller = Caller::of(&$request)?;
        let deadline = shared::deadline::remaining($request.metadata());
        $self
            .$method(caller, $request.into_inner(), deadline)
            .await
            .map(Response::new)
            .map_err(Status::from)
    }};
    ($self:ident, $request:ident, $function:path, api) => {{
        let caller = Caller::of(&$request)?;
        $function($self, caller, $request.into_inner())
            .await
            .map(Response::new)
            .map_err(Status::from)
    }};
    ($self:ident, $request:ident, $method:ident, local) => {{
        let caller = Caller::of(&$request)?;
        $self
            .$method(caller, $request.into_inner())
            .await
            .map(Response::new)
            .map_err(Status::from)
    }};
}

#[tonic::async_trait]
impl pb::feedback_service_server::FeedbackService for FeedbackApi {
    async fn check_mid_contract_eligibility(
        &self,
        request: Request<pb::CheckMidContractEligibilityRequest>,
    ) -> Result<Response<pb::CheckMidContractEligibilityResponse>, Status> {
        handle!(self, request, check_mid_contract_eligibility)
    }
    async fn batch_check_mid_contract_eligibility(
        &self,
        request: Request<pb::BatchCheckMidContractEligibilityRequest>,
    ) -> Result<Response<pb::BatchCheckMidContractEligibilityResponse>, Status> {
        handle!(self, request, batch_check_mid_contract_eligibility)
    }
    async fn submit_mid_contract_feedback(
        &self,
        request: Request<pb::SubmitMidContractFeedbackRequest>,
    ) -> Result<Response<pb::SubmitMidContractFeedbackResponse>, Status> {
        handle!(self, request, submit_mid_contract_feedback)
    }
    async fn request_mid_contract_feedback(
        &self,
        request: Request<pb::RequestMidContractFeedbackRequest>,
    ) -> Result<Response<pb::RequestMidContractFeedbackResponse>, Status> {
        handle!(self, request, request_mid_contract_feedback)
    }
    async fn list_feedback_requests(
        &self,
        request: Request<pb::ListFeedbackRequestsRequest>,
    ) -> Result<Response<pb::ListFeedbackRequestsResponse>, Status> {
        handle!(self, request, list_feedback_requests)
    }
    async fn submit_end_contract_feedback(
        &self,
        request: Request<pb::SubmitEndContractFeedbackRequest>,
    ) -> Result<Response<pb::SubmitEndContractFeedbackResponse>, Status> {
        handle!(self, request, submit_end_contract_feedback)
    }
    async fn get_end_contract_feedback(
        &self,
        request: Request<pb::GetEndContractFeedbackRequest>,
    ) -> Result<Response<pb::GetEndContractFeedbackResponse>, Status> {
        handle!(self, request, get_end_contract_feedback)
    }
    async fn reply_to_feedback(
        &self,
        request: Request<pb::ReplyToFeedbackRequest>,
    ) -> Result<Response<pb::ReplyToFeedbackResponse>, Status> {
        handle!(self, request, reply_to_feedback, local)
    }
    async fn list_work_history(
        &self,
        request: Request<pb::ListWorkHistoryRequest>,
    ) -> Result<Response<pb::ListWorkHistoryResponse>, Status> {
        handle!(self, request, list_work_history)
    }
    async fn list_job_success_inputs(
        &self,
        request: Request<pb::ListJobSuccessInputsRequest>,
    ) -> Result<Response<pb::ListJobSuccessInputsResponse>, Status> {
        handle!(self, request, list_job_success_inputs, local)
    }
    async fn get_notification_preferences(
        &self,
        request: Request<pb::GetNotificationPreferencesRequest>,
    ) -> Result<Response<pb::GetNotificationPreferencesResponse>, Status> {
        handle!(self, request, crate::prompts::get_preferences, api)
    }
    async fn hide_feedback(
        &self,
        request: Request<pb::HideFeedbackRequest>,
    ) -> Result<Response<pb::HideFeedbackResponse>, Status> {
        handle!(self, request, moderation::hide, api)
    }
    async fn restore_feedback(
        &self,
        request: Request<pb::RestoreFeedbackRequest>,
    ) -> Result<Response<pb::RestoreFeedbackResponse>, Status> {
        handle!(self, request, moderation::restore, api)
    }
    async fn list_moderation_actions(
        &self,
        request: Request<pb::ListModerationActionsRequest>,
    ) -> Result<Response<pb::ListModerationActionsResponse>, Status> {
        handle!(self, request, moderation::list, api)
    }
    async fn update_notification_preferences(
        &self,
        request: Request<pb::UpdateNotificationPreferencesRequest>,
    ) -> Result<Response<pb::UpdateNotificationPreferencesResponse>, Status> {
        handle!(self, request, crate::prompts::update_preferences, api)
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
