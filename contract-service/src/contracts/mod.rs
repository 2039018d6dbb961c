//! Contracts: create, get, batch get, list and end them (ending locks the
//! Work Diary); validation, orchestration and proto mapping.

pub mod rules;
pub mod store;

use crate::common::{
    DEFAULT_PAGE_SIZE, MAX_NOTE_CHARS, MAX_PAGE_SIZE, WEEK_MINUTES, find_contract, money,
    next_page_token, page_after, require_scope,
};
use crate::domain::Role;
use crate::error::Error;
use crate::grpc::ContractApi;
use rules::{Contract, ContractState, ContractType, Party};
use shared::auth::{Caller, scope};
use shared::ids;
use shared::proto::contract::v1 as pb;
use shared::status::Common;
use shared::time::{opt_to_proto, to_proto};
use shared::validate::{self, Violations};
use shared::writer::Call;

/// Longest title accepted.
const MAX_TITLE_CHARS: usize = 200;
/// Most ids in one BatchGetContracts.
const MAX_BATCH: usize = 100;

pub(crate) fn contract_pb(c: &Contract) -> pb::Contract {
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

impl ContractApi {
    pub(crate) async fn create_contract(
        &self,
        caller: Caller,
        req: pb::CreateContractRequest,
    ) -> Result<pb::CreateContractResponse, Error> {
        require_scope(&caller, scope::CONTRACTS_WRITE)?;
        let now = self.now();
        let mut v = Violations::new();
        let call = Call::of(&mut v, &caller, "CreateContract", &req);
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
        v.finish()?;
        self.mutations
            .run(call, move |unit| {
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
                    unit.event(
                        &contract.id,
                        now,
                        "ContractCreated",
                        pb::event::Payload::ContractCreated(pb::ContractCreated {
                            contract: response.contract.clone(),
                        }),
                    );
                    Ok(response)
                })
            })
            .await
    }

    pub(crate) async fn get_contract(
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

    pub(crate) async fn batch_get_contracts(
        &self,
        caller: Caller,
        req: pb::BatchGetContractsRequest,
    ) -> Result<pb::BatchGetContractsResponse, Error> {
        require_scope(&caller, scope::CONTRACTS_READ)?;
        let mut v = Violations::new();
        v.check_batch("contract_ids", &req.contract_ids, "ctr", MAX_BATCH);
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

    pub(crate) async fn list_contracts(
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
        let after = page_after(&req.page_token, &filter)?;
        let mut contracts = store::list_contracts(
            self.db.reader(),
            party.as_deref(),
            state,
            after.as_deref(),
            i64::from(size) + 1,
        )
        .await?;
        let next_page_token = next_page_token(&mut contracts, size, &filter, |c| &c.id);
        Ok(pb::ListContractsResponse {
            contracts: contracts.iter().map(contract_pb).collect(),
            next_page_token,
        })
    }

    pub(crate) async fn end_contract(
        &self,
        caller: Caller,
        req: pb::EndContractRequest,
    ) -> Result<pb::EndContractResponse, Error> {
        let mut v = Violations::new();
        let call = Call::of(&mut v, &caller, "EndContract", &req);
        let id = v.check("contract_id", validate::id(&req.contract_id, "ctr"));
        let reason = v.check("reason", validate::text(&req.reason, MAX_NOTE_CHARS, false));
        v.finish()?;
        let now = self.now();
        self.mutations
            .run(call, move |unit| {
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
                            Error::from(Common::Internal(format!(
                                "contract {id} vanished while ending"
                            )))
                        })?;
                    let response = pb::EndContractResponse {
                        contract: Some(contract_pb(&ended)),
                        checklist: rules::POST_END_CHECKLIST
                            .iter()
                            .map(|(code, text)| pb::ChecklistItem {
                                code: (*code).into(),
                                text: (*text).into(),
                            })
                            .collect(),
                    };
                    unit.event(
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
            })
            .await
    }
}
