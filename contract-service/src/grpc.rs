//! Glue between the wire and the domain: each RPC authenticates the caller,
//! parses the request into domain values (every bad field is reported, and
//! nothing is written), runs the rules and the store in one transaction with
//! its outbox event and idempotency key, and encodes the answer.

use std::pin::Pin;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use futures::Stream;
use prost::Message;
use tonic::{Request, Response, Status};

use crate::disputes;
use crate::domain::{
    self, BillingWeek, Contract, ContractState, ContractType, NewPayment, NewTimeEntry, Party,
    Payment, PaymentKind, Refund, Role, Rules, TimeEntry,
};
use crate::error::Error;
use crate::store;
use shared::auth::{Caller, scope};
use shared::clock::SharedClock;
use shared::db::Db;
use shared::metrics::Metrics;
use shared::outbox::{self, Relay};
use shared::proto::contract::v1 as pb;
use shared::time::{opt_to_proto, to_proto};
use shared::validate::{self, Violations};
use shared::writer::{Mutations, Unit};
use shared::{ids, paging};

/// Longest title accepted.
const MAX_TITLE_CHARS: usize = 200;
/// Longest memo, end reason or refund reason accepted.
const MAX_NOTE_CHARS: usize = 1_000;
/// Most ids in one BatchGetContracts.
const MAX_BATCH: usize = 100;
pub(crate) const DEFAULT_PAGE_SIZE: u32 = 50;
pub(crate) const MAX_PAGE_SIZE: u32 = 1_000;
/// Minutes in a billing week: the most one entry or weekly limit can hold.
const WEEK_MINUTES: i64 = 7 * 24 * 60;

/// The contract service.
#[derive(Debug, Clone)]
pub struct ContractApi {
    pub(crate) db: Db,
    clock: SharedClock,
    pub(crate) rules: Rules,
    relay: Relay,
    pub(crate) mutations: Mutations,
    /// Where `WatchEvents` reports each consumer's position, once set.
    metrics: Option<Arc<Metrics>>,
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

/// A contract the caller may act on. For users an unknown contract reads
/// exactly like someone else's, so existence is never revealed.
pub(crate) async fn find_contract<'e, E>(
    executor: E,
    id: &str,
    caller: &Caller,
) -> Result<Contract, Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    match store::get_contract(executor, id).await? {
        Some(c) => Ok(c),
        None if caller.user_id().is_some() => Err(Error::NotAParty {
            contract_id: id.to_owned(),
        }),
        None => Err(Error::NotFound {
            what: "contract",
            id: id.to_owned(),
        }),
    }
}

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
    domain::check_diary_writable(&contract)?;
    Ok(())
}

pub(crate) fn require_scope(caller: &Caller, scope: &'static str) -> Result<(), Error> {
    if caller.has_scope(scope) {
        Ok(())
    } else {
        Err(Error::MissingScope(scope))
    }
}

/// Adds an event for a state change to the outbox, with the change.
pub(crate) fn emit(
    unit: &mut Unit,
    contract_id: &str,
    now: DateTime<Utc>,
    kind: &'static str,
    payload: pb::event::Payload,
) {
    let event = pb::Event {
        event_id: ids::new_id("evt"),
        sequence: 0,
        contract_id: contract_id.to_owned(),
        occur_time: Some(to_proto(now)),
        payload: Some(payload),
    };
    unit.emit(outbox::NewEvent {
        subject_id: contract_id.to_owned(),
        kind,
        payload: event.encode_to_vec(),
        event_id: event.event_id,
        created_at: now,
    });
}

pub(crate) fn money(currency: &str, amount_minor: i64) -> pb::Money {
    pb::Money {
        currency_code: currency.to_owned(),
        amount_minor,
    }
}

fn contract_pb(c: &Contract) -> pb::Contract {
    pb::Contract {
        id: c.id.clone(),
        client_id: c.client_id.clone(),
        freelancer_id: c.freelancer_id.clone(),
        agency_id: c.agency_id.clone().unwrap_or_default(),
        title: c.title.clone(),
        r#type: match c.contract_type {
            ContractType::Hourly => pb::ContractType::Hourly,
            ContractType::FixedPrice => pb::ContractType::FixedPrice,
        } as i32,
        currency_code: c.currency.clone(),
        hourly_rate: c
            .is_hourly()
            .then(|| money(&c.currency, c.hourly_rate_minor)),
        weekly_limit_minutes: c.weekly_limit_minutes,
        allow_manual_time: c.allow_manual_time,
        state: match c.state {
            ContractState::Active => pb::ContractState::Active,
            ContractState::Ended => pb::ContractState::Ended,
        } as i32,
        start_time: Some(to_proto(c.start_time)),
        end_time: opt_to_proto(c.end_time),
        ended_by: match c.ended_by {
            None => pb::Party::Unspecified,
            Some(Party::Client) => pb::Party::Client,
            Some(Party::Freelancer) => pb::Party::Freelancer,
        } as i32,
        end_reason: c.end_reason.clone(),
        create_time: Some(to_proto(c.create_time)),
        update_time: Some(to_proto(c.update_time)),
        last_payment_time: opt_to_proto(c.last_payment_time),
        net_paid: Some(money(&c.currency, c.net_paid_minor)),
        diary_locked: c.diary_lock_time.is_some(),
        diary_lock_time: opt_to_proto(c.diary_lock_time),
    }
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

pub(crate) fn minutes_i32(minutes: i64) -> i32 {
    i32::try_from(minutes).unwrap_or(i32::MAX)
}

fn payment_pb(p: &Payment) -> pb::Payment {
    pb::Payment {
        id: p.id.clone(),
        contract_id: p.contract_id.clone(),
        kind: match p.kind {
            PaymentKind::HourlyInvoice => pb::PaymentKind::HourlyInvoice,
            PaymentKind::FixedPrice => pb::PaymentKind::FixedPrice,
            PaymentKind::Bonus => pb::PaymentKind::Bonus,
        } as i32,
        amount: Some(money(&p.currency, p.amount_minor)),
        refunded_amount: Some(money(&p.currency, p.refunded_minor)),
        paid_time: Some(to_proto(p.paid_at)),
        memo: p.memo.clone(),
        create_time: Some(to_proto(p.create_time)),
        billing_week_start_time: p.billing_week.map(|w| to_proto(w.start)),
    }
}

pub(crate) fn refund_pb(r: &Refund) -> pb::Refund {
    pb::Refund {
        id: r.id.clone(),
        payment_id: r.payment_id.clone(),
        contract_id: r.contract_id.clone(),
        amount: Some(money(&r.currency, r.amount_minor)),
        reason: r.reason.clone(),
        create_time: Some(to_proto(r.create_time)),
        dispute_id: r.dispute_id.clone().unwrap_or_default(),
    }
}

/// A Money field: a valid currency and a positive amount.
pub(crate) fn parse_amount(
    v: &mut Violations,
    field: &str,
    amount: Option<&pb::Money>,
) -> (String, i64) {
    match amount {
        None => {
            v.add(field, "is required");
            (String::new(), 0)
        }
        Some(m) => (
            v.check(
                &format!("{field}.currency_code"),
                validate::currency(&m.currency_code),
            ),
            v.check(
                &format!("{field}.amount_minor"),
                validate::positive_amount(m.amount_minor),
            ),
        ),
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

pub(crate) fn required_request_id(v: &mut Violations, value: &str) -> Option<String> {
    let id = v.check("request_id", validate::request_id(value));
    if value.is_empty() {
        v.add("request_id", "is required for this call");
    }
    id
}

/// A billing week of a Work Diary as read for GetWorkDiary and GetBillingWeek.
struct WeekOfDiary {
    contract: Contract,
    week: BillingWeek,
    /// In start order.
    entries: Vec<TimeEntry>,
    /// Billable minutes of each entry, in the same order.
    billable: Vec<i64>,
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::WatchEventsResponse, Status>> + Send>>;

impl ContractApi {
    async fn create_contract(
        &self,
        caller: Caller,
        req: pb::CreateContractRequest,
    ) -> Result<pb::CreateContractResponse, Error> {
        require_scope(&caller, scope::CONTRACTS_WRITE)?;
        let now = self.now();
        let mut v = Violations::new();
        let client_id = v.check("client_id", validate::token(&req.client_id));
        let freelancer_id = v.check("freelancer_id", validate::token(&req.freelancer_id));
        if !req.client_id.is_empty() && req.client_id == req.freelancer_id {
            v.add("freelancer_id", "must differ from client_id");
        }
        let agency_id = if req.agency_id.is_empty() {
            None
        } else {
            Some(v.check("agency_id", validate::token(&req.agency_id)))
        };
        let title = v.check("title", validate::text(&req.title, MAX_TITLE_CHARS, true));
        let contract_type =
            match v.check("type", validate::known_enum::<pb::ContractType>(req.r#type)) {
                pb::ContractType::FixedPrice => ContractType::FixedPrice,
                _ => ContractType::Hourly,
            };
        let currency = v.check("currency_code", validate::currency(&req.currency_code));
        let segment = self.rules.segment_minutes;
        if contract_type == ContractType::Hourly {
            v.check(
                "hourly_rate_minor",
                validate::positive_amount(req.hourly_rate_minor),
            );
            let limit = i64::from(req.weekly_limit_minutes);
            if limit <= 0 || limit > WEEK_MINUTES || limit % segment != 0 {
                v.add(
                    "weekly_limit_minutes",
                    format!("must be a multiple of {segment} between {segment} and {WEEK_MINUTES}"),
                );
            }
        } else {
            if req.hourly_rate_minor != 0 {
                v.add("hourly_rate_minor", "applies to hourly contracts only");
            }
            if req.weekly_limit_minutes != 0 {
                v.add("weekly_limit_minutes", "applies to hourly contracts only");
            }
        }
        let start_time = v
            .check(
                "start_time",
                validate::optional_timestamp(req.start_time.as_ref()),
            )
            .unwrap_or(now);
        if start_time > now {
            v.add("start_time", "must not be in the future");
        }
        let request_id = v.check("request_id", validate::request_id(&req.request_id));
        v.finish()?;

        let fingerprint = pb::CreateContractRequest {
            request_id: String::new(),
            ..req.clone()
        };
        self.mutations
            .run(
                caller.key(),
                "CreateContract",
                request_id,
                &fingerprint,
                move |unit| {
                    Box::pin(async move {
                        let contract = Contract {
                            id: ids::new_id("ctr"),
                            client_id,
                            freelancer_id,
                            agency_id,
                            title,
                            contract_type,
                            currency: currency.clone(),
                            hourly_rate_minor: req.hourly_rate_minor,
                            weekly_limit_minutes: req.weekly_limit_minutes,
                            allow_manual_time: req.allow_manual_time.unwrap_or(true),
                            state: ContractState::Active,
                            start_time,
                            end_time: None,
                            ended_by: None,
                            end_reason: String::new(),
                            create_time: now,
                            update_time: now,
                            last_payment_time: None,
                            net_paid_minor: 0,
                            diary_lock_time: None,
                        };
                        store::insert_contract(unit.tx(), &contract).await?;
                        let response = pb::CreateContractResponse {
                            contract: Some(contract_pb(&contract)),
                        };
                        emit(
                            unit,
                            &contract.id,
                            now,
                            "ContractCreated",
                            pb::event::Payload::ContractCreated(pb::ContractCreated {
                                contract: response.contract.clone(),
                            }),
                        );
                        Ok(response)
                    })
                },
            )
            .await
    }

    async fn get_contract(
        &self,
        caller: Caller,
        req: pb::GetContractRequest,
    ) -> Result<pb::GetContractResponse, Error> {
        let mut v = Violations::new();
        let id = v.check("contract_id", validate::id(&req.contract_id, "ctr"));
        v.finish()?;
        let contract = find_contract(self.db.reader(), &id, &caller).await?;
        contract.authorize_read(&caller)?;
        Ok(pb::GetContractResponse {
            contract: Some(contract_pb(&contract)),
        })
    }

    async fn batch_get_contracts(
        &self,
        caller: Caller,
        req: pb::BatchGetContractsRequest,
    ) -> Result<pb::BatchGetContractsResponse, Error> {
        require_scope(&caller, scope::CONTRACTS_READ)?;
        let mut v = Violations::new();
        if req.contract_ids.is_empty() {
            v.add("contract_ids", "is required");
        }
        if req.contract_ids.len() > MAX_BATCH {
            v.add("contract_ids", format!("must hold at most {MAX_BATCH} ids"));
        }
        v.check_each("contract_ids", &req.contract_ids, |id| {
            validate::id(id, "ctr")
        });
        v.finish()?;
        let mut unique = req.contract_ids.clone();
        unique.sort();
        unique.dedup();
        let found = store::get_contracts(self.db.reader(), &unique).await?;
        let by_id: std::collections::HashMap<&str, &Contract> =
            found.iter().map(|c| (c.id.as_str(), c)).collect();
        let mut response = pb::BatchGetContractsResponse::default();
        for id in &req.contract_ids {
            match by_id.get(id.as_str()) {
                Some(c) => response.contracts.push(contract_pb(c)),
                None => response.missing_contract_ids.push(id.clone()),
            }
        }
        Ok(response)
    }

    async fn list_contracts(
        &self,
        caller: Caller,
        req: pb::ListContractsRequest,
    ) -> Result<pb::ListContractsResponse, Error> {
        let mut v = Violations::new();
        let mut party = if req.party_id.is_empty() {
            None
        } else {
            Some(v.check("party_id", validate::token(&req.party_id)))
        };
        let state = match req.state {
            0 => None,
            s => match v.check("state", validate::known_enum::<pb::ContractState>(s)) {
                pb::ContractState::Ended => Some(ContractState::Ended),
                _ => Some(ContractState::Active),
            },
        };
        let size = v.check(
            "page_size",
            validate::page_size(req.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE),
        );
        v.finish()?;
        match caller.user_id() {
            Some(user) => match &party {
                Some(p) if p != user => return Err(Error::MissingScope(scope::CONTRACTS_READ)),
                _ => party = Some(user.to_owned()),
            },
            None if caller.has_scope(scope::CONTRACTS_READ) || caller.has_scope(scope::ADMIN) => {}
            None => return Err(Error::MissingScope(scope::CONTRACTS_READ)),
        }
        let filter = format!(
            "party={};state={}",
            party.as_deref().unwrap_or(""),
            req.state
        );
        let after = paging::decode(&req.page_token, &filter).map_err(|e| {
            Error::InvalidArgument(vec![shared::status::FieldViolation::new("page_token", e)])
        })?;
        let mut contracts = store::list_contracts(
            self.db.reader(),
            party.as_deref(),
            state,
            after.as_deref(),
            i64::from(size) + 1,
        )
        .await?;
        let next_page_token = if contracts.len() > size as usize {
            contracts.truncate(size as usize);
            contracts
                .last()
                .map(|c| paging::encode(&c.id, &filter))
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(pb::ListContractsResponse {
            contracts: contracts.iter().map(contract_pb).collect(),
            next_page_token,
        })
    }

    async fn end_contract(
        &self,
        caller: Caller,
        req: pb::EndContractRequest,
    ) -> Result<pb::EndContractResponse, Error> {
        let mut v = Violations::new();
        let id = v.check("contract_id", validate::id(&req.contract_id, "ctr"));
        let reason = v.check("reason", validate::text(&req.reason, MAX_NOTE_CHARS, false));
        let request_id = v.check("request_id", validate::request_id(&req.request_id));
        v.finish()?;
        let now = self.now();
        let fingerprint = pb::EndContractRequest {
            request_id: String::new(),
            ..req.clone()
        };
        self.mutations
            .run(
                caller.key(),
                "EndContract",
                request_id,
                &fingerprint,
                move |unit| {
                    Box::pin(async move {
                        let contract = find_contract(&mut **unit.tx(), &id, &caller).await?;
                        let ended_by = match contract
                            .authorize_roles(&caller, &[Role::Client, Role::Freelancer])?
                        {
                            Role::Client => Party::Client,
                            _ => Party::Freelancer,
                        };
                        // One statement ends the contract and locks the diary; it fails if a
                        // concurrent call ended it first.
                        if !store::end_contract(unit.tx(), &id, ended_by, &reason, now).await? {
                            return Err(Error::AlreadyEnded { contract_id: id });
                        }
                        let ended = store::get_contract(&mut **unit.tx(), &id)
                            .await?
                            .ok_or_else(|| {
                                Error::Internal(format!("contract {id} vanished while ending"))
                            })?;
                        let response = pb::EndContractResponse {
                            contract: Some(contract_pb(&ended)),
                            checklist: domain::POST_END_CHECKLIST
                                .iter()
                                .map(|(code, text)| pb::ChecklistItem {
                                    code: (*code).into(),
                                    text: (*text).into(),
                                })
                                .collect(),
                        };
                        emit(
                            unit,
                            &id,
                            now,
                            "ContractEnded",
                            pb::event::Payload::ContractEnded(pb::ContractEnded {
                                contract: response.contract.clone(),
                            }),
                        );
                        tracing::info!(
                            contract_id = %id,
                            ended_by = ?ended_by,
                            "contract ended and work diary locked"
                        );
                        Ok(response)
                    })
                },
            )
            .await
    }

    async fn log_time(
        &self,
        caller: Caller,
        req: pb::LogTimeRequest,
    ) -> Result<pb::LogTimeResponse, Error> {
        let segment = self.rules.segment_minutes;
        let mut v = Violations::new();
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
        let request_id = v.check("request_id", validate::request_id(&req.request_id));
        v.finish()?;
        let entry = NewTimeEntry {
            start,
            minutes,
            manual: req.manual,
            memo,
        };
        let now = self.now();
        let fingerprint = pb::LogTimeRequest {
            request_id: String::new(),
            ..req.clone()
        };
        self.mutations
            .run(
                caller.key(),
                "LogTime",
                request_id,
                &fingerprint,
                move |unit| {
                    Box::pin(async move {
                        // Billable minutes of the new entry depend on the time
                        // logged before it in its week, read with the lock.
                        let week = BillingWeek::containing(entry.start);
                        let Some((contract, before)) =
                            store::lock_diary_with_minutes(unit.tx(), &id, week.start, entry.start)
                                .await?
                        else {
                            return Err(diary_not_writable(unit.tx(), &id, &caller).await);
                        };
                        contract.authorize_roles(&caller, &[Role::Freelancer])?;
                        domain::check_log_time(&contract, &entry, now)?;
                        let saved = TimeEntry {
                            id: ids::new_id("te"),
                            contract_id: id.clone(),
                            start: entry.start,
                            end: entry.end(),
                            manual: entry.manual,
                            memo: entry.memo,
                            create_time: now,
                        };
                        if !store::insert_time_entry_unless_overlapping(unit.tx(), &saved).await? {
                            return Err(Error::TimeOverlap);
                        }
                        let own = domain::billable_after(
                            before,
                            saved.minutes(),
                            i64::from(contract.weekly_limit_minutes),
                        );
                        let response = pb::LogTimeResponse {
                            time_entry: Some(entry_pb(&saved, own)),
                        };
                        emit(
                            unit,
                            &id,
                            now,
                            "TimeLogged",
                            pb::event::Payload::TimeLogged(pb::TimeLogged {
                                time_entry: response.time_entry.clone(),
                            }),
                        );
                        Ok(response)
                    })
                },
            )
            .await
    }

    async fn delete_time_entry(
        &self,
        caller: Caller,
        req: pb::DeleteTimeEntryRequest,
    ) -> Result<pb::DeleteTimeEntryResponse, Error> {
        let mut v = Violations::new();
        let id = v.check("contract_id", validate::id(&req.contract_id, "ctr"));
        let entry_id = v.check("time_entry_id", validate::id(&req.time_entry_id, "te"));
        let request_id = v.check("request_id", validate::request_id(&req.request_id));
        v.finish()?;
        let now = self.now();
        let fingerprint = pb::DeleteTimeEntryRequest {
            request_id: String::new(),
            ..req.clone()
        };
        self.mutations
            .run(
                caller.key(),
                "DeleteTimeEntry",
                request_id,
                &fingerprint,
                move |unit| {
                    Box::pin(async move {
                        let contract = lock_diary(unit.tx(), &id, &caller).await?;
                        let entry = store::get_time_entry(unit.tx(), &id, &entry_id)
                            .await?
                            .ok_or(Error::NotFound {
                                what: "time entry",
                                id: entry_id.clone(),
                            })?;
                        domain::check_delete_time(&contract, &entry, now)?;
                        store::delete_time_entry(unit.tx(), &entry_id).await?;
                        let response = pb::DeleteTimeEntryResponse {
                            time_entry: Some(entry_pb(&entry, 0)),
                        };
                        emit(
                            unit,
                            &id,
                            now,
                            "TimeEntryDeleted",
                            pb::event::Payload::TimeEntryDeleted(pb::TimeEntryDeleted {
                                time_entry: response.time_entry.clone(),
                            }),
                        );
                        Ok(response)
                    })
                },
            )
            .await
    }

    /// One billing week of a contract the caller may read, with each entry's
    /// billable minutes (GetWorkDiary and GetBillingWeek).
    async fn readable_week(
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
        let billable = domain::billable_minutes(&entries, i64::from(contract.weekly_limit_minutes));
        Ok(WeekOfDiary {
            contract,
            week,
            entries,
            billable,
        })
    }

    async fn get_work_diary(
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

    async fn record_payment(
        &self,
        caller: Caller,
        req: pb::RecordPaymentRequest,
    ) -> Result<pb::RecordPaymentResponse, Error> {
        require_scope(&caller, scope::PAYMENTS_WRITE)?;
        let mut v = Violations::new();
        let id = v.check("contract_id", validate::id(&req.contract_id, "ctr"));
        let kind = match v.check("kind", validate::known_enum::<pb::PaymentKind>(req.kind)) {
            pb::PaymentKind::FixedPrice => PaymentKind::FixedPrice,
            pb::PaymentKind::Bonus => PaymentKind::Bonus,
            _ => PaymentKind::HourlyInvoice,
        };
        let (currency, amount_minor) = parse_amount(&mut v, "amount", req.amount.as_ref());
        let paid_at = v.check("paid_time", validate::timestamp(req.paid_time.as_ref()));
        let memo = v.check("memo", validate::text(&req.memo, MAX_NOTE_CHARS, false));
        let request_id = required_request_id(&mut v, &req.request_id);
        // An hourly invoice names the week it pays (a dispute's refund goes
        // against it); nothing else does.
        let billing_week = v
            .check(
                "billing_week_time",
                validate::optional_timestamp(req.billing_week_time.as_ref()),
            )
            .map(BillingWeek::containing);
        match (kind, billing_week) {
            (PaymentKind::HourlyInvoice, None) if req.billing_week_time.is_none() => {
                v.add("billing_week_time", "is required for hourly invoices")
            }
            (PaymentKind::HourlyInvoice, Some(week))
                if req.paid_time.is_some() && week.start > paid_at =>
            {
                v.add(
                    "billing_week_time",
                    "the week must have started by paid_time",
                )
            }
            (PaymentKind::FixedPrice | PaymentKind::Bonus, _)
                if req.billing_week_time.is_some() =>
            {
                v.add("billing_week_time", "applies to hourly invoices only")
            }
            _ => {}
        }
        v.finish()?;
        let payment = NewPayment {
            kind,
            currency,
            amount_minor,
            paid_at,
            memo,
            billing_week,
        };
        let now = self.now();
        let fingerprint = pb::RecordPaymentRequest {
            request_id: String::new(),
            ..req.clone()
        };
        let rules = self.rules.clone();
        self.mutations
            .run(
                caller.key(),
                "RecordPayment",
                request_id,
                &fingerprint,
                move |unit| {
                    Box::pin(async move {
                        let contract = find_contract(&mut **unit.tx(), &id, &caller).await?;
                        domain::check_payment(&contract, &payment, now, &rules)?;
                        let saved = Payment {
                            id: ids::new_id("pay"),
                            contract_id: id.clone(),
                            kind: payment.kind,
                            currency: payment.currency,
                            amount_minor: payment.amount_minor,
                            refunded_minor: 0,
                            paid_at: payment.paid_at,
                            memo: payment.memo,
                            create_time: now,
                            billing_week: payment.billing_week,
                        };
                        store::insert_payment(unit.tx(), &saved).await?;
                        let response = pb::RecordPaymentResponse {
                            payment: Some(payment_pb(&saved)),
                        };
                        emit(
                            unit,
                            &id,
                            now,
                            "PaymentRecorded",
                            pb::event::Payload::PaymentRecorded(pb::PaymentRecorded {
                                payment: response.payment.clone(),
                            }),
                        );
                        Ok(response)
                    })
                },
            )
            .await
    }

    async fn list_payments(
        &self,
        caller: Caller,
        req: pb::ListPaymentsRequest,
    ) -> Result<pb::ListPaymentsResponse, Error> {
        let mut v = Violations::new();
        let id = v.check("contract_id", validate::id(&req.contract_id, "ctr"));
        let size = v.check(
            "page_size",
            validate::page_size(req.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE),
        );
        v.finish()?;
        let filter = format!("contract={id}");
        let after = paging::decode(&req.page_token, &filter).map_err(|e| {
            Error::InvalidArgument(vec![shared::status::FieldViolation::new("page_token", e)])
        })?;
        let contract = find_contract(self.db.reader(), &id, &caller).await?;
        contract.authorize_read(&caller)?;
        let mut payments =
            store::list_payments(self.db.reader(), &id, after.as_deref(), i64::from(size) + 1)
                .await?;
        let next_page_token = if payments.len() > size as usize {
            payments.truncate(size as usize);
            payments
                .last()
                .map(|p| paging::encode(&p.id, &filter))
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(pb::ListPaymentsResponse {
            payments: payments.iter().map(payment_pb).collect(),
            next_page_token,
        })
    }

    async fn refund_payment(
        &self,
        caller: Caller,
        req: pb::RefundPaymentRequest,
    ) -> Result<pb::RefundPaymentResponse, Error> {
        let mut v = Violations::new();
        let payment_id = v.check("payment_id", validate::id(&req.payment_id, "pay"));
        let (currency, amount_minor) = parse_amount(&mut v, "amount", req.amount.as_ref());
        let reason = v.check("reason", validate::text(&req.reason, MAX_NOTE_CHARS, false));
        let request_id = required_request_id(&mut v, &req.request_id);
        v.finish()?;
        let now = self.now();
        let fingerprint = pb::RefundPaymentRequest {
            request_id: String::new(),
            ..req.clone()
        };
        let rules = self.rules.clone();
        self.mutations
            .run(
                caller.key(),
                "RefundPayment",
                request_id,
                &fingerprint,
                move |unit| {
                    Box::pin(async move {
                        // A payment nobody may see reads like one that does not exist.
                        let denied = || Error::NotAParty {
                            contract_id: format!("of payment {payment_id}"),
                        };
                        let payment = store::get_payment(&mut **unit.tx(), &payment_id)
                            .await?
                            .ok_or_else(denied)?;
                        let contract = store::get_contract(&mut **unit.tx(), &payment.contract_id)
                            .await?
                            .ok_or_else(denied)?;
                        if contract.role_of(&caller).is_none() {
                            return Err(denied());
                        }
                        contract.authorize_roles(&caller, &[Role::Freelancer, Role::Agency])?;
                        domain::check_refund(&payment, &currency, amount_minor, now, &rules)?;
                        if !store::take_refund(unit.tx(), &payment_id, amount_minor).await? {
                            // A concurrent refund took part of it: report what is left now.
                            let left = store::get_payment(&mut **unit.tx(), &payment_id)
                                .await?
                                .map(|p| p.amount_minor - p.refunded_minor)
                                .unwrap_or(0);
                            return Err(Error::RefundExceedsRemaining {
                                remaining_minor: left,
                            });
                        }
                        let refund = Refund {
                            id: ids::new_id("ref"),
                            payment_id: payment_id.clone(),
                            contract_id: contract.id.clone(),
                            currency,
                            amount_minor,
                            reason,
                            create_time: now,
                            dispute_id: None,
                        };
                        store::insert_refund(unit.tx(), &refund).await?;
                        let updated = store::get_payment(&mut **unit.tx(), &payment_id)
                            .await?
                            .ok_or_else(|| {
                                Error::Internal(format!(
                                    "payment {payment_id} vanished while refunding"
                                ))
                            })?;
                        let response = pb::RefundPaymentResponse {
                            refund: Some(refund_pb(&refund)),
                            payment: Some(payment_pb(&updated)),
                        };
                        emit(
                            unit,
                            &contract.id,
                            now,
                            "RefundIssued",
                            pb::event::Payload::RefundIssued(pb::RefundIssued {
                                refund: response.refund.clone(),
                            }),
                        );
                        Ok(response)
                    })
                },
            )
            .await
    }

    async fn get_billing_week(
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
            store::disputes_for_week(self.db.reader(), &contract.id, week.start).await?,
        )
        .await?;
        let (invoiced, refunded, adjusted) =
            store::week_money(self.db.reader(), &contract.id, week.start).await?;
        let unadjusted = domain::amount_for_minutes(billable, contract.hourly_rate_minor);
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

    fn watch_events(
        &self,
        caller: &Caller,
        req: pb::WatchEventsRequest,
    ) -> Result<EventStream, Error> {
        require_scope(caller, scope::EVENTS_READ)?;
        if req.after_sequence < 0 {
            return Err(Error::InvalidArgument(vec![
                shared::status::FieldViolation::new("after_sequence", "must not be negative"),
            ]));
        }
        let consumer = self
            .metrics
            .as_ref()
            .map(|m| m.event_consumer(caller.subject()));
        let stream = outbox::watch(
            self.db.clone(),
            &self.relay,
            req.after_sequence,
            consumer,
            |stored| {
                let mut event = pb::Event::decode(stored.payload.as_slice()).map_err(|err| {
                    Status::from(Error::Internal(format!(
                        "undecodable event {}: {err}",
                        stored.event_id
                    )))
                })?;
                event.sequence = stored.sequence;
                Ok(pb::WatchEventsResponse { event: Some(event) })
            },
        );
        Ok(Box::pin(stream))
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
