//! Work Diaries: log time, delete a time entry, read a week of the diary,
//! and the diary's write lock; validation, orchestration and proto mapping.

pub mod rules;
pub mod store;

use chrono::{DateTime, Utc};

use crate::common::{MAX_NOTE_CHARS, WEEK_MINUTES, absent_contract, find_contract, minutes_i32};
use crate::contracts::rules::Contract;
use crate::domain::{BillingWeek, Role};
use crate::error::Error;
use crate::grpc::ContractApi;
use rules::{NewTimeEntry, TimeEntry};
use shared::auth::Caller;
use shared::db::Backend;
use shared::ids;
use shared::outbox::NewEvent;
use shared::proto::contract::v1 as pb;
use shared::time::{opt_to_proto, to_proto};
use shared::validate::{self, Violations};
use shared::writer::{Call, single};

/// Takes the diary's write lock (re-checked under it: EndContract may have
/// committed since any earlier read) and returns the contract, for its
/// freelancer only. When the diary is not writable, the contract is read to
/// say why.
async fn lock_diary(tx: &mut shared::db::Tx, id: &str, caller: &Caller) -> Result<Contract, Error> {
    match store::lock_diary_for_write(tx, id).await? {
        Some(contract) => {
            contract.authorize_roles(caller, &[Role::Freelancer])?;
            Ok(contract)
        }
        None => Err(diary_not_writable(tx, id, caller).await),
    }
}

/// Why a diary could not be locked for writing: not the caller's, gone, or
/// locked (the contract ended).
async fn diary_not_writable(tx: &mut shared::db::Tx, id: &str, caller: &Caller) -> Error {
    match not_writable(tx, id, caller).await {
        Ok(()) => Error::WorkDiaryLocked {
            contract_id: id.to_owned(),
        },
        Err(e) => e,
    }
}

async fn not_writable(tx: &mut shared::db::Tx, id: &str, caller: &Caller) -> Result<(), Error> {
    let contract = find_contract(&mut **tx, id, caller).await?;
    contract.authorize_roles(caller, &[Role::Freelancer])?;
    rules::check_diary_writable(&contract)?;
    Ok(())
}

fn entry_pb(e: &TimeEntry, billable_minutes: i64) -> pb::TimeEntry {
    pb::TimeEntry {
        id: e.id.clone(),
        contract_id: e.contract_id.clone(),
        start_time: Some(to_proto(e.start)),
        end_time: Some(to_proto(e.end)),
        minutes: minutes_i32(e.minutes()),
        billable_minutes: minutes_i32(billable_minutes),
        manual: e.manual,
        memo: e.memo.clone(),
        create_time: Some(to_proto(e.create_time)),
    }
}

/// The billing week named by an optional instant (unset: the current week).
fn parse_week(
    v: &mut Violations,
    field: &str,
    t: Option<&prost_types::Timestamp>,
    now: DateTime<Utc>,
) -> BillingWeek {
    let at = v
        .check(field, validate::optional_timestamp(t))
        .unwrap_or(now);
    BillingWeek::containing(at)
}

/// A billing week of a Work Diary as read for GetWorkDiary and GetBillingWeek.
pub(crate) struct WeekOfDiary {
    pub(crate) contract: Contract,
    pub(crate) week: BillingWeek,
    /// In start order.
    pub(crate) entries: Vec<TimeEntry>,
    /// Billable minutes of each entry, in the same order.
    pub(crate) billable: Vec<i64>,
}

/// LogTime's rules on the diary as read (under its lock, or as of one
/// snapshot): the entry to add and the answer, whose billable minutes
/// depend on the minutes logged before it in its week.
fn decide_log_time(
    caller: &Caller,
    contract: &Contract,
    entry: NewTimeEntry,
    minutes_before: i64,
    now: DateTime<Utc>,
) -> Result<(TimeEntry, pb::LogTimeResponse, NewEvent), Error> {
    contract.authorize_roles(caller, &[Role::Freelancer])?;
    rules::check_log_time(contract, &entry, now)?;
    let saved = TimeEntry {
        id: ids::new_id("te"),
        contract_id: contract.id.clone(),
        start: entry.start,
        end: entry.end(),
        manual: entry.manual,
        memo: entry.memo,
        create_time: now,
    };
    let own = rules::billable_after(
        minutes_before,
        saved.minutes(),
        i64::from(contract.weekly_limit_minutes),
    );
    let response = pb::LogTimeResponse {
        time_entry: Some(entry_pb(&saved, own)),
    };
    let event = NewEvent::of(
        &saved.contract_id,
        now,
        "TimeLogged",
        pb::event::Payload::TimeLogged(pb::TimeLogged {
            time_entry: response.time_entry.clone(),
        }),
    );
    Ok((saved, response, event))
}

impl ContractApi {
    pub(crate) async fn log_time(
        &self,
        caller: Caller,
        req: pb::LogTimeRequest,
    ) -> Result<pb::LogTimeResponse, Error> {
        let segment = self.rules.segment_minutes;
        let mut v = Violations::new();
        let call = Call::of(&mut v, &caller, "LogTime", &req);
        let id = v.check("contract_id", validate::id(&req.contract_id, "ctr"));
        let start = v.check("start_time", validate::timestamp(req.start_time.as_ref()));
        if req
            .start_time
            .as_ref()
            .is_some_and(|ts| ts.nanos != 0 || ts.seconds % (segment * 60) != 0)
        {
            v.add(
                "start_time",
                format!("must be on a {segment}-minute boundary (UTC)"),
            );
        }
        let minutes = i64::from(req.minutes);
        if minutes <= 0 || minutes % segment != 0 || minutes > WEEK_MINUTES {
            v.add(
                "minutes",
                format!("must be a positive multiple of {segment}, at most {WEEK_MINUTES}"),
            );
        }
        let memo = v.check("memo", validate::text(&req.memo, MAX_NOTE_CHARS, false));
        v.finish()?;
        let entry = NewTimeEntry {
            start,
            minutes,
            manual: req.manual,
            memo,
        };
        let now = self.now();
        if self.db.backend() == Backend::Postgres {
            for _ in 0..single::ATTEMPTS {
                if let Some(answer) = self
                    .log_time_guarded(&caller, &call, &id, &entry, now)
                    .await
                {
                    return answer;
                }
            }
            // The diary is busy with other writers: wait for its lock instead.
        }
        self.mutations
            .run(call, move |unit| {
                Box::pin(async move {
                    let week = BillingWeek::containing(entry.start);
                    let Some((contract, before)) =
                        store::lock_diary_with_minutes(unit.tx(), &id, week.start, entry.start)
                            .await?
                    else {
                        return Err(diary_not_writable(unit.tx(), &id, &caller).await);
                    };
                    let (saved, response, event) =
                        decide_log_time(&caller, &contract, entry, before, now)?;
                    if !store::insert_time_entry_unless_overlapping(unit.tx(), &saved).await? {
                        return Err(Error::TimeOverlap);
                    }
                    unit.emit(event);
                    Ok(response)
                })
            })
            .await
    }

    /// One try of LogTime's one-statement path (PostgreSQL): read the diary
    /// as of one snapshot, decide, and write under the version read. `None`:
    /// another writer changed the diary in between; try again.
    async fn log_time_guarded(
        &self,
        caller: &Caller,
        call: &Call,
        id: &str,
        entry: &NewTimeEntry,
        now: DateTime<Utc>,
    ) -> Option<Result<pb::LogTimeResponse, Error>> {
        let week = BillingWeek::containing(entry.start);
        let read = match store::read_for_log_time(
            &self.db,
            id,
            week.start,
            (entry.start, entry.end()),
            call,
        )
        .await
        {
            Ok(Some(read)) => read,
            Ok(None) => return Some(Err(absent_contract(id, caller))),
            Err(err) => return Some(Err(err)),
        };
        if let Some(replayed) = read.replay {
            return Some(replayed);
        }
        let decided = decide_log_time(
            caller,
            &read.contract,
            entry.clone(),
            read.minutes_before,
            now,
        )
        .and_then(|decided| match read.overlaps {
            true => Err(Error::TimeOverlap),
            false => Ok(decided),
        });
        let (saved, response, event) = match decided {
            Ok(decided) => decided,
            Err(err) => return Some(Err(err)),
        };
        let write = store::log_time_guarded(read.version, &saved);
        single::write(&self.db, &self.relay, write, &event, call, response).await
    }

    pub(crate) async fn delete_time_entry(
        &self,
        caller: Caller,
        req: pb::DeleteTimeEntryRequest,
    ) -> Result<pb::DeleteTimeEntryResponse, Error> {
        let mut v = Violations::new();
        let call = Call::of(&mut v, &caller, "DeleteTimeEntry", &req);
        let id = v.check("contract_id", validate::id(&req.contract_id, "ctr"));
        let entry_id = v.check("time_entry_id", validate::id(&req.time_entry_id, "te"));
        v.finish()?;
        let now = self.now();
        self.mutations
            .run(call, move |unit| {
                Box::pin(async move {
                    let contract = lock_diary(unit.tx(), &id, &caller).await?;
                    let entry = store::get_time_entry(unit.tx(), &id, &entry_id)
                        .await?
                        .ok_or(Error::NotFound {
                            what: "time entry",
                            id: entry_id.clone(),
                        })?;
                    rules::check_delete_time(&contract, &entry, now)?;
                    store::delete_time_entry(unit.tx(), &entry_id).await?;
                    let response = pb::DeleteTimeEntryResponse {
                        time_entry: Some(entry_pb(&entry, 0)),
                    };
                    unit.event(
                        &id,
                        now,
                        "TimeEntryDeleted",
                        pb::event::Payload::TimeEntryDeleted(pb::TimeEntryDeleted {
                            time_entry: response.time_entry.clone(),
                        }),
                    );
                    Ok(response)
                })
            })
            .await
    }

    /// One billing week of a contract the caller may read, with each entry's
    /// billable minutes (GetWorkDiary and GetBillingWeek).
    pub(crate) async fn readable_week(
        &self,
        caller: &Caller,
        contract_id: &str,
        week_time: Option<&prost_types::Timestamp>,
    ) -> Result<WeekOfDiary, Error> {
        let mut v = Violations::new();
        let id = v.check("contract_id", validate::id(contract_id, "ctr"));
        let week = parse_week(&mut v, "week_time", week_time, self.now());
        v.finish()?;
        let contract = find_contract(self.db.reader(), &id, caller).await?;
        contract.authorize_read(caller)?;
        let entries =
            store::time_entries_between(self.db.reader(), &id, week.start, week.end()).await?;
        let billable = rules::billable_minutes(&entries, i64::from(contract.weekly_limit_minutes));
        Ok(WeekOfDiary {
            contract,
            week,
            entries,
            billable,
        })
    }

    pub(crate) async fn get_work_diary(
        &self,
        caller: Caller,
        req: pb::GetWorkDiaryRequest,
    ) -> Result<pb::GetWorkDiaryResponse, Error> {
        let diary = self
            .readable_week(&caller, &req.contract_id, req.week_time.as_ref())
            .await?;
        let (contract, week, entries, billable) =
            (diary.contract, diary.week, diary.entries, diary.billable);
        Ok(pb::GetWorkDiaryResponse {
            contract_id: contract.id.clone(),
            week_start_time: Some(to_proto(week.start)),
            week_end_time: Some(to_proto(week.end())),
            logged_minutes: minutes_i32(entries.iter().map(TimeEntry::minutes).sum()),
            billable_minutes: minutes_i32(billable.iter().sum()),
            time_entries: entries
                .iter()
                .zip(&billable)
                .map(|(e, b)| entry_pb(e, *b))
                .collect(),
            weekly_limit_minutes: contract.weekly_limit_minutes,
            locked: contract.diary_lock_time.is_some(),
            lock_time: opt_to_proto(contract.diary_lock_time),
        })
    }
}
