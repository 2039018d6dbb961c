//! A contract as plain Rust: its type, state and parties, who may read or
//! act on it, and what to do once it ended. No SQL and no gRPC here.

use chrono::{DateTime, Utc};

use crate::domain::Role;
use crate::error::Error;
use shared::auth::{Caller, scope};

/// How a contract is paid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContractType {
    Hourly,
    FixedPrice,
}

/// Where a contract is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContractState {
    Active,
    Ended,
}

/// A side of a contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Party {
    Client,
    Freelancer,
}

/// A contract as stored, with its derived payment totals.
#[derive(Debug, Clone, PartialEq)]
pub struct Contract {
    pub id: String,
    pub client_id: String,
    pub freelancer_id: String,
    pub agency_id: Option<String>,
    pub title: String,
    pub contract_type: ContractType,
    pub currency: String,
    /// Hourly contracts: rate per hour in minor units (0 for fixed price).
    pub hourly_rate_minor: i64,
    /// Hourly contracts: billable minutes per week (0 for fixed price).
    pub weekly_limit_minutes: i32,
    pub allow_manual_time: bool,
    pub state: ContractState,
    pub start_time: DateTime<Utc>,
    pub end_time: Option<DateTime<Utc>>,
    pub ended_by: Option<Party>,
    pub end_reason: String,
    pub create_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
    /// Latest `paid_at` of any payment.
    pub last_payment_time: Option<DateTime<Utc>>,
    /// Payments minus refunds, in minor units.
    pub net_paid_minor: i64,
    /// Set (with the end) once the Work Diary is locked.
    pub diary_lock_time: Option<DateTime<Utc>>,
}

impl Contract {
    /// The client and the freelancer, who are both told of what concerns them both.
    pub fn parties(&self) -> [&str; 2] {
        [&self.client_id, &self.freelancer_id]
    }

    /// The caller's relation to this contract, for user callers.
    pub fn role_of(&self, caller: &Caller) -> Option<Role> {
        let user = caller.user_id()?;
        if user == self.client_id {
            Some(Role::Client)
        } else if user == self.freelancer_id {
            Some(Role::Freelancer)
        } else if self.agency_id.as_deref() == Some(user) {
            Some(Role::Agency)
        } else {
            None
        }
    }

    /// Read access: the parties, or a service with `contracts:read` or `admin`.
    pub fn authorize_read(&self, caller: &Caller) -> Result<(), Error> {
        if self.role_of(caller).is_some()
            || caller.has_scope(scope::CONTRACTS_READ)
            || caller.has_scope(scope::ADMIN)
        {
            Ok(())
        } else {
            Err(self.not_yours())
        }
    }

    /// Only a user with one of `roles` on this contract.
    pub fn authorize_roles(&self, caller: &Caller, roles: &[Role]) -> Result<Role, Error> {
        match self.role_of(caller) {
            Some(role) if roles.contains(&role) => Ok(role),
            // A party with the wrong role may know the contract exists.
            Some(_) => Err(Error::WrongParty {
                allowed: roles.to_vec(),
            }),
            None => Err(self.not_yours()),
        }
    }

    /// The denial for a non-party: it reads the same whether or not the contract exists.
    pub fn not_yours(&self) -> Error {
        Error::NotAParty {
            contract_id: self.id.clone(),
        }
    }

    pub fn is_hourly(&self) -> bool {
        self.contract_type == ContractType::Hourly
    }
}

/// What to do once a contract has ended (the help center's checklist).
pub const POST_END_CHECKLIST: &[(&str, &str)] = &[
    (
        "REVOKE_ACCESS",
        "Change or revoke any passwords or special access you gave the freelancer during the contract.",
    ),
    (
        "CONFIRM_WORK_RECEIVED",
        "Make sure you have received all work from the freelancer, and any work-related materials and equipment of yours they used.",
    ),
    (
        "REMOVE_PROPERTY",
        "Remind the freelancer to remove any property of yours (documents, files, software) from their equipment.",
    ),
    (
        "LEAVE_FEEDBACK",
        "Leave feedback: it is double-blind, so each side sees the other's once both have left theirs or the window closes.",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::hourly;

    #[test]
    fn membership_decides_roles() {
        let c = hourly("2026-01-01T00:00:00Z");
        let user = |id: &str| Caller::User { id: id.into() };
        assert_eq!(c.role_of(&user("client")), Some(Role::Client));
        assert_eq!(c.role_of(&user("freelancer")), Some(Role::Freelancer));
        assert_eq!(c.role_of(&user("agency")), Some(Role::Agency));
        assert_eq!(c.role_of(&user("stranger")), None);
        assert!(c.authorize_read(&user("stranger")).is_err());
        let reader = Caller::Service {
            name: "feedback".into(),
            scopes: vec!["contracts:read".into()],
        };
        assert!(c.authorize_read(&reader).is_ok());
        assert!(matches!(
            c.authorize_roles(&user("client"), &[Role::Freelancer]),
            Err(Error::WrongParty { .. })
        ));
    }
}
