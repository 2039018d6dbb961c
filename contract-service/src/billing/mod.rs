//! Billing weeks: what a week of an hourly contract logged, is billable and
//! worth, its review window, disputes and money (GetBillingWeek).

pub mod store;

use chrono::Duration;

use crate::common::{minutes_i32, money};
use crate::diary::rules::TimeEntry;
use crate::disputes;
use crate::error::Error;
use crate::grpc::ContractApi;
use shared::auth::Caller;
use shared::proto::contract::v1 as pb;
use shared::time::to_proto;

use crate::diary::rules::amount_for_minutes;
use crate::disputes::store::disputes_for_week;

impl ContractApi {
    pub(crate) async fn get_billing_week(
        &self,
        caller: Caller,
        req: pb::GetBillingWeekRequest,
    ) -> Result<pb::GetBillingWeekResponse, Error> {
        let now = self.now();
        let diary = self
            .readable_week(&caller, &req.contract_id, req.week_time.as_ref())
            .await?;
        let (contract, week) = (&diary.contract, diary.week);
        let logged: i64 = diary.entries.iter().map(TimeEntry::minutes).sum();
        let billable: i64 = diary.billable.iter().sum();
        let (opens, closes) = week.review_window(&self.rules);
        let disputes = disputes::with_refunds(
            self.db.reader(),
            disputes_for_week(self.db.reader(), &contract.id, week.start).await?,
        )
        .await?;
        let (invoiced, refunded, adjusted) =
            store::week_money(self.db.reader(), &contract.id, week.start).await?;
        let unadjusted = amount_for_minutes(billable, contract.hourly_rate_minor);
        let currency = &contract.currency;
        Ok(pb::GetBillingWeekResponse {
            contract_id: contract.id.clone(),
            week_start_time: Some(to_proto(week.start)),
            week_end_time: Some(to_proto(week.end())),
            logged_minutes: minutes_i32(logged),
            billable_minutes: minutes_i32(billable),
            amount: Some(money(currency, (unadjusted - adjusted).max(0))),
            review_window_start_time: Some(to_proto(opens)),
            review_window_end_time: Some(to_proto(closes - Duration::seconds(1))),
            review_window_open: opens <= now && now < closes,
            disputes,
            unadjusted_amount: Some(money(currency, unadjusted)),
            dispute_adjustment: Some(money(currency, adjusted)),
            invoiced_amount: Some(money(currency, invoiced)),
            refunded_amount: Some(money(currency, refunded)),
        })
    }
}
