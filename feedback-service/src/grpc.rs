//! The gRPC table: each `FeedbackService` method authenticates the caller
//! and delegates to its feature module.

use tonic::{Request, Response, Status};

use crate::events::EventStream;
use crate::moderation;
use shared::auth::{handle, handle_within};
use shared::proto::feedback::v1 as pb;

use crate::api::FeedbackApi;

#[tonic::async_trait]
impl pb::feedback_service_server::FeedbackService for FeedbackApi {
    async fn check_mid_contract_eligibility(
        &self,
        request: Request<pb::CheckMidContractEligibilityRequest>,
    ) -> Result<Response<pb::CheckMidContractEligibilityResponse>, Status> {
        handle_within(request, |caller, req, deadline| {
            self.check_mid_contract_eligibility(caller, req, deadline)
        })
        .await
    }
    async fn batch_check_mid_contract_eligibility(
        &self,
        request: Request<pb::BatchCheckMidContractEligibilityRequest>,
    ) -> Result<Response<pb::BatchCheckMidContractEligibilityResponse>, Status> {
        handle_within(request, |caller, req, deadline| {
            self.batch_check_mid_contract_eligibility(caller, req, deadline)
        })
        .await
    }
    async fn submit_mid_contract_feedback(
        &self,
        request: Request<pb::SubmitMidContractFeedbackRequest>,
    ) -> Result<Response<pb::SubmitMidContractFeedbackResponse>, Status> {
        handle_within(request, |caller, req, deadline| {
            self.submit_mid_contract_feedback(caller, req, deadline)
        })
        .await
    }
    async fn request_mid_contract_feedback(
        &self,
        request: Request<pb::RequestMidContractFeedbackRequest>,
    ) -> Result<Response<pb::RequestMidContractFeedbackResponse>, Status> {
        handle_within(request, |caller, req, deadline| {
            self.request_mid_contract_feedback(caller, req, deadline)
        })
        .await
    }
    async fn list_feedback_requests(
        &self,
        request: Request<pb::ListFeedbackRequestsRequest>,
    ) -> Result<Response<pb::ListFeedbackRequestsResponse>, Status> {
        handle_within(request, |caller, req, deadline| {
            self.list_feedback_requests(caller, req, deadline)
        })
        .await
    }
    async fn submit_end_contract_feedback(
        &self,
        request: Request<pb::SubmitEndContractFeedbackRequest>,
    ) -> Result<Response<pb::SubmitEndContractFeedbackResponse>, Status> {
        handle_within(request, |caller, req, deadline| {
            self.submit_end_contract_feedback(caller, req, deadline)
        })
        .await
    }
    async fn get_end_contract_feedback(
        &self,
        request: Request<pb::GetEndContractFeedbackRequest>,
    ) -> Result<Response<pb::GetEndContractFeedbackResponse>, Status> {
        handle_within(request, |caller, req, deadline| {
            self.get_end_contract_feedback(caller, req, deadline)
        })
        .await
    }
    async fn reply_to_feedback(
        &self,
        request: Request<pb::ReplyToFeedbackRequest>,
    ) -> Result<Response<pb::ReplyToFeedbackResponse>, Status> {
        handle(request, |caller, req| self.reply_to_feedback(caller, req)).await
    }
    async fn list_work_history(
        &self,
        request: Request<pb::ListWorkHistoryRequest>,
    ) -> Result<Response<pb::ListWorkHistoryResponse>, Status> {
        handle_within(request, |caller, req, deadline| {
            self.list_work_history(caller, req, deadline)
        })
        .await
    }
    async fn list_job_success_inputs(
        &self,
        request: Request<pb::ListJobSuccessInputsRequest>,
    ) -> Result<Response<pb::ListJobSuccessInputsResponse>, Status> {
        handle(request, |caller, req| {
            self.list_job_success_inputs(caller, req)
        })
        .await
    }
    async fn get_notification_preferences(
        &self,
        request: Request<pb::GetNotificationPreferencesRequest>,
    ) -> Result<Response<pb::GetNotificationPreferencesResponse>, Status> {
        handle(request, |caller, req| {
            crate::prompts::get_preferences(self, caller, req)
        })
        .await
    }
    async fn hide_feedback(
        &self,
        request: Request<pb::HideFeedbackRequest>,
    ) -> Result<Response<pb::HideFeedbackResponse>, Status> {
        handle(request, |caller, req| moderation::hide(self, caller, req)).await
    }
    async fn restore_feedback(
        &self,
        request: Request<pb::RestoreFeedbackRequest>,
    ) -> Result<Response<pb::RestoreFeedbackResponse>, Status> {
        handle(request, |caller, req| {
            moderation::restore(self, caller, req)
        })
        .await
    }
    async fn list_moderation_actions(
        &self,
        request: Request<pb::ListModerationActionsRequest>,
    ) -> Result<Response<pb::ListModerationActionsResponse>, Status> {
        handle(request, |caller, req| moderation::list(self, caller, req)).await
    }
    async fn update_notification_preferences(
        &self,
        request: Request<pb::UpdateNotificationPreferencesRequest>,
    ) -> Result<Response<pb::UpdateNotificationPreferencesResponse>, Status> {
        handle(request, |caller, req| {
            crate::prompts::update_preferences(self, caller, req)
        })
        .await
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
