//! Fixtures the unit tests of several features share: an instant from
//! RFC 3339 and a typical hourly contract.

use chrono::{DateTime, Utc};

use crate::contracts::rules::{Contract, ContractState, ContractType};

pub(crate) fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("valid time")
        .with_timezone(&Utc)
}

pub(crate) fn hourly(start: &str) -> Contract {
    Contract {
        id: "ctr_1".into(),
        client_id: "client".into(),
        freelancer_id: "freelancer".into(),
        agency_id: Some("agency".into()),
        title: "t".into(),
        contract_type: ContractType::Hourly,
        currency: "USD".into(),
        hourly_rate_minor: 6000,
        weekly_limit_minutes: 600,
        allow_manual_time: true,
        state: ContractState::Active,
        start_time: at(start),
        end_time: None,
        ended_by: None,
        end_reason: String::new(),
        create_time: at(start),
        update_time: at(start),
        last_payment_time: None,
        net_paid_minor: 0,
        diary_lock_time: None,
    }
}
