//! Work history and job-success inputs: read-only listings of finished
//! contracts' feedback.

mod store;

use std::collections::HashMap;
use std::time::Duration as StdDuration;

use crate::api::FeedbackApi;
use crate::common::{next_token, page_size, page_token};
use crate::domain::ContractFacts;
use crate::end_contract::end_pb;
use crate::error::Error;
use crate::mid_contract::mid_pb;
use crate::moderation;
use shared::auth::{Caller, scope};
use shared::proto::feedback::v1 as pb;
use shared::time::opt_to_proto;
use shared::validate::{self, Violations};

impl FeedbackApi {
    pub(crate) async fn list_work_history(
        &self,
        _caller: Caller,
        req: pb::ListWorkHistoryRequest,
        deadline: Option<StdDuration>,
    ) -> Result<pb::ListWorkHistoryResponse, Error> {
        let mut v = Violations::new();
        let freelancer = v.check("freelancer_id", validate::token(&req.freelancer_id));
        let size = page_size(&mut v, req.page_size);
        v.finish()?;
        let filter = format!("history:{freelancer}");
        let after = page_token(&req.page_token, &filter)?;
        let page = shared::db::Page::new(&freelancer, after.as_deref(), i64::from(size) + 1);
        let mut contract_ids = store::history_contracts(self.db.reader(), page).await?;
        let next_page_token = next_token(&mut contract_ids, size, &filter, Clone::clone);
        let facts: HashMap<String, ContractFacts> = self
            .contracts
            .batch_get(&contract_ids, deadline)
            .await?
            .into_iter()
            .map(|c| (c.id.clone(), c))
            .collect();
        let mids = store::mid_feedback_of_contracts(self.db.reader(), &contract_ids).await?;
        let ends = store::client_feedback_of_contracts(self.db.reader(), &contract_ids).await?;
        let end_ids: Vec<String> = ends.iter().map(|f| f.id.clone()).collect();
        let replies = crate::store::replies_to(self.db.reader(), &end_ids).await?;
        let now = self.now();
        let mut shown: Vec<String> = mids.iter().map(|m| m.id.clone()).collect();
        shown.extend(end_ids.iter().cloned());
        shown.extend(replies.values().map(|r| r.id.clone()));
        let hidden = moderation::store::hidden_of(self.db.reader(), &shown).await?;
        let items = contract_ids
            .iter()
            .map(|id| {
                let contract = facts.get(id);
                let client_feedback = ends
                    .iter()
                    .find(|f| &f.contract_id == id)
                    .filter(|f| {
                        // Public only once revealed, and only with at least $1 paid.
                        let revealed = f.revealed_at.is_some() || now >= f.window_close;
                        revealed
                            && contract
                                .is_some_and(|c| c.net_paid_minor >= self.rules.min_net_paid_minor)
                    })
                    .map(|f| {
                        let mut view = end_pb(f, false, replies.get(&f.id).filter(|r| r.public));
                        moderation::redact_ends(std::slice::from_mut(&mut view), &hidden);
                        view
                    });
                pb::WorkHistoryItem {
                    contract_id: id.clone(),
                    client_id: contract.map(|c| c.client_id.clone()).unwrap_or_default(),
                    end_time: contract.and_then(|c| opt_to_proto(c.end_time)),
                    client_feedback,
                    mid_contract_feedback: mids
                        .iter()
                        .filter(|m| &m.contract_id == id)
                        .map(|m| {
                            let mut view = mid_pb(m);
                            if hidden.contains(&m.id) {
                                moderation::redact_mid(&mut view);
                            }
                            view
                        })
                        .collect(),
                }
            })
            .collect();
        Ok(pb::ListWorkHistoryResponse {
            items,
            next_page_token,
        })
    }

    pub(crate) async fn list_job_success_inputs(
        &self,
        caller: Caller,
        req: pb::ListJobSuccessInputsRequest,
    ) -> Result<pb::ListJobSuccessInputsResponse, Error> {
        if !caller.has_scope(scope::JSS_READ) {
            return Err(Error::MissingScope(scope::JSS_READ));
        }
        let mut v = Violations::new();
        let freelancer = v.check("freelancer_id", validate::token(&req.freelancer_id));
        let size = page_size(&mut v, req.page_size);
        v.finish()?;
        let filter = format!("jss:{freelancer}");
        let after = page_token(&req.page_token, &filter)?;
        let page = shared::db::Page::new(&freelancer, after.as_deref(), i64::from(size) + 1);
        let mut rows = store::job_success_inputs(self.db.reader(), page).await?;
        let next_page_token = next_token(&mut rows, size, &filter, |f| f.id.clone());
        // Left out while support has them hidden.
        let all: Vec<String> = rows.iter().map(|f| f.id.clone()).collect();
        let hidden = moderation::store::hidden_of(self.db.reader(), &all).await?;
        rows.retain(|f| !hidden.contains(&f.id));
        let ids: Vec<String> = rows.iter().map(|f| f.id.clone()).collect();
        let replies = crate::store::replies_to(self.db.reader(), &ids).await?;
        Ok(pb::ListJobSuccessInputsResponse {
            feedback: rows
                .iter()
                .map(|f| end_pb(f, true, replies.get(&f.id)))
                .collect(),
            next_page_token,
        })
    }
}
