//! The service's state (`FeedbackApi`): database, clock, rules, cohorts,
//! contract-service client, relay and bonus wake-up, shared by every feature.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use tokio::sync::Notify;

use crate::contracts::Contracts;
use crate::domain::{CohortConfig, ContractFacts, Rules, Side};
use crate::error::Error;
use shared::api::Core;
use shared::auth::{Caller, scope};
use shared::db::Db;
use shared::writer::Mutations;

/// The feedback service.
#[derive(Debug, Clone)]
pub struct FeedbackApi {
    pub(crate) core: Core,
    pub(crate) rules: Rules,
    pub(crate) cohorts: Arc<CohortConfig>,
    pub(crate) contracts: Contracts,
    /// Wakes the bonus worker after a feedback with a bonus commits.
    pub(crate) bonus_wake: Arc<Notify>,
}

/// `self.db`, `self.mutations`, `self.now()`…: the state every service has.
impl std::ops::Deref for FeedbackApi {
    type Target = Core;
    fn deref(&self) -> &Core {
        &self.core
    }
}

impl FeedbackApi {
    pub fn new(core: Core, rules: Rules, cohorts: CohortConfig, contracts: Contracts) -> Self {
        Self {
            core,
            rules,
            cohorts: Arc::new(cohorts),
            contracts,
            bonus_wake: Arc::new(Notify::new()),
        }
    }

    pub(crate) fn db(&self) -> &Db {
        &self.db
    }

    pub(crate) fn contracts(&self) -> &Contracts {
        &self.contracts
    }

    pub(crate) fn rules(&self) -> &Rules {
        &self.rules
    }

    pub(crate) fn mutations(&self) -> &Mutations {
        &self.mutations
    }

    /// A contract's facts, for a caller allowed to see it. Users learn
    /// nothing about contracts they are not a party to.
    pub(crate) async fn contract_for(
        &self,
        caller: &Caller,
        contract_id: &str,
        deadline: Option<StdDuration>,
    ) -> Result<(ContractFacts, Option<Side>), Error> {
        let not_yours = || Error::NotAParty {
            contract_id: contract_id.to_owned(),
        };
        let facts = self.contracts.get(contract_id, deadline).await?;
        match caller.user_id() {
            Some(user) => {
                let facts = facts.ok_or_else(not_yours)?;
                let side = facts.side_of(user).ok_or_else(not_yours)?;
                Ok((facts, Some(side)))
            }
            None if caller.has_scope(scope::CONTRACTS_READ) || caller.has_scope(scope::ADMIN) => {
                let facts = facts.ok_or_else(|| Error::NotFound {
                    what: "contract",
                    id: contract_id.to_owned(),
                })?;
                Ok((facts, None))
            }
            None => Err(Error::MissingScope(scope::CONTRACTS_READ)),
        }
    }
}
