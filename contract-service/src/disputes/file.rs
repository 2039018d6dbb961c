//! Filing a dispute of a billing week's hours (DisputeHours): validation,
//! the rules, the new dispute and its event and notification.

use super::rules;
use super::rules::Dispute;
use super::store::{self};
use super::{day, dispute_pb, instant, notify, optional_minutes};
use crate::common::find_contract;
use crate::diary::rules::billable_minutes;
use crate::diary::store::time_entries_between;
use crate::domain::{BillingWeek, Role};
use crate::error::Error;
use crate::grpc::ContractApi;
use shared::auth::Caller;
use shared::proto::contract::v1 as pb;
use shared::validate::{self, MAX_COMMENT_CHARS, Violations};
use shared::writer::Call;

impl ContractApi {
    pub(crate) async fn dispute_hours(
        &self,
        caller: Caller,
        req: pb::DisputeHoursRequest,
    ) -> Result<pb::DisputeHoursResponse, Error> {
        let now = self.now();
        let mut v = Violations::new();
        let call = Call::of(&mut v, &caller, "DisputeHours", &req);
        let id = v.check("contract_id", validate::id(&req.contract_id, "ctr"));
        let week_time = v.check("week_time", validate::timestamp(req.week_time.as_ref()));
        let reason = v.check(
            "reason",
            validate::text(&req.reason, MAX_COMMENT_CHARS, true),
        );
        optional_minutes(
            &mut v,
            "disputed_minutes",
            req.disputed_minutes,
            self.rules.segment_minutes,
        );
        v.finish()?;
        let week = BillingWeek::containing(week_time);
        let rules = self.rules.clone();
        self.mutations
            .run(call, move |unit| {
                    Box::pin(async move {
                        let contract = find_contract(&mut **unit.tx(), &id, &caller).await?;
                        contract.authorize_roles(&caller, &[Role::Client])?;
                        rules::check_dispute(&contract, week, now, &rules)?;
                        let existing =
                            store::disputes_for_week(&mut **unit.tx(), &id, week.start).await?;
                        rules::check_no_active_dispute(&existing)?;
                        let entries = time_entries_between(
                            &mut **unit.tx(),
                            &id,
                            week.start,
                            week.end(),
                        )
                        .await?;
                        let billable: i64 = billable_minutes(
                            &entries,
                            i64::from(contract.weekly_limit_minutes),
                        )
                        .iter()
                        .sum();
                        let minutes = rules::disputed_minutes(
                            i64::from(req.disputed_minutes),
                            billable,
                            &rules,
                        )?;
                        let dispute = Dispute::filed(
                            &contract,
                            week.start,
                            reason,
                            minutes,
                            minutes == billable,
                            now,
                            &rules,
                        );
                        store::insert_dispute(unit.tx(), &dispute).await?;
                        let response = pb::DisputeHoursResponse {
                            dispute: Some(dispute_pb(&dispute, &[])),
                        };
                        unit.event(&id,
                            now,
                            "HoursDisputed",
                            pb::event::Payload::HoursDisputed(pb::HoursDisputed {
                                dispute: response.dispute.clone(),
                            }),
                        );
                        let text = format!(
                            "The client disputed {minutes} billable minutes of the week of {} on \"{}\". \
                             Accept all or part of them, or decline with a reason, before {}; \
                             after that support decides.",
                            day(week.start),
                            contract.title,
                            instant(dispute.respond_by),
                        );
                        notify(unit, &dispute, now, &[&contract.freelancer_id], &text);
                        tracing::info!(dispute_id = %dispute.id, contract_id = %id, minutes, "hours disputed");
                        Ok(response)
                    })
                },
            )
            .await
    }
}
