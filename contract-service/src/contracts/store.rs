//! The SQL of contracts: insert, look up one or many, list pages, and end
//! one (which also locks its Work Diary).

use chrono::{DateTime, Utc};
use shared::db::rows::Fetch;
use sqlx::any::AnyRow;
use sqlx::{Any, AssertSqlSafe, Executor, Row};

use crate::error::Error;
use crate::store::{corrupt, flag, opt_time, time};
use shared::db::Tx;
use shared::time::to_micros;

use super::rules::{Contract, ContractState, ContractType, Party};

pub(crate) const CONTRACT_COLUMNS: &str = "id, client_id, freelancer_id, agency_id, title, contract_type, currency, \
     hourly_rate_minor, weekly_limit_minutes, allow_manual_time, state, start_at, end_at, ended_by, \
     end_reason, created_at, updated_at, last_paid_at, net_paid_minor, diary_locked_at";

fn contract_type_str(t: ContractType) -> &'static str {
    match t {
        ContractType::Hourly => "HOURLY",
        ContractType::FixedPrice => "FIXED_PRICE",
    }
}

fn party_str(p: Party) -> &'static str {
    match p {
        Party::Client => "CLIENT",
        Party::Freelancer => "FREELANCER",
    }
}

pub(crate) fn contract_from_row(row: &AnyRow) -> Result<Contract, sqlx::Error> {
    let contract_type: String = row.try_get("contract_type")?;
    let state: String = row.try_get("state")?;
    let ended_by: Option<String> = row.try_get("ended_by")?;
    Ok(shared::from_row!(row, Contract {
        id, client_id, freelancer_id, agency_id, title, currency, hourly_rate_minor, end_reason,
        net_paid_minor;
        contract_type: match contract_type.as_str() {
            "HOURLY" => ContractType::Hourly,
            "FIXED_PRICE" => ContractType::FixedPrice,
            other => return Err(corrupt("contract_type", other)),
        },
        weekly_limit_minutes: i32::try_from(row.try_get::<i64, _>("weekly_limit_minutes")?)
            .map_err(|_| corrupt("weekly_limit_minutes", "out of range"))?,
        allow_manual_time: flag(row, "allow_manual_time")?,
        state: match state.as_str() {
            "ACTIVE" => ContractState::Active,
            "ENDED" => ContractState::Ended,
            other => return Err(corrupt("state", other)),
        },
        start_time: time(row, "start_at")?,
        end_time: opt_time(row, "end_at")?,
        ended_by: match ended_by.as_deref() {
            None => None,
            Some("CLIENT") => Some(Party::Client),
            Some("FREELANCER") => Some(Party::Freelancer),
            Some(other) => return Err(corrupt("ended_by", other)),
        },
        create_time: time(row, "created_at")?,
        update_time: time(row, "updated_at")?,
        last_payment_time: opt_time(row, "last_paid_at")?,
        diary_lock_time: opt_time(row, "diary_locked_at")?,
    }))
}

pub async fn insert_contract(tx: &mut Tx, c: &Contract) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO contracts (id, client_id, freelancer_id, agency_id, title, contract_type, currency, \
         hourly_rate_minor, weekly_limit_minutes, allow_manual_time, state, start_at, end_at, ended_by, \
         end_reason, created_at, updated_at, last_paid_at, net_paid_minor, diary_locked_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'ACTIVE', $11, NULL, NULL, '', $12, $12, NULL, 0, NULL)",
    )
    .bind(&c.id)
    .bind(&c.client_id)
    .bind(&c.freelancer_id)
    .bind(c.agency_id.clone())
    .bind(&c.title)
    .bind(contract_type_str(c.contract_type))
    .bind(&c.currency)
    .bind(c.hourly_rate_minor)
    .bind(i64::from(c.weekly_limit_minutes))
    .bind(i64::from(c.allow_manual_time))
    .bind(to_micros(c.start_time))
    .bind(to_micros(c.create_time))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// One contract, through a transaction or a pool.
pub async fn get_contract<'e, E>(executor: E, id: &str) -> Result<Option<Contract>, Error>
where
    E: Executor<'e, Database = Any>,
{
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!("SELECT {CONTRACT_COLUMNS} FROM contracts WHERE id = $1")
    });
    Ok(sqlx::query(AssertSqlSafe(SQL.as_str()))
        .bind(id)
        .optional(executor, contract_from_row)
        .await?)
}

/// Contracts with these ids (any order; missing ids are simply absent).
pub async fn get_contracts<'e, E>(executor: E, ids: &[String]) -> Result<Vec<Contract>, Error>
where
    E: Executor<'e, Database = Any>,
{
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!("SELECT {CONTRACT_COLUMNS} FROM contracts WHERE id IN ({{ids}})");
    Ok(shared::db::query_with_ids(&sql, ids)
        .all(executor, contract_from_row)
        .await?)
}

/// A page of contracts in id order after `after`, optionally of one party
/// and/or in one state.
pub async fn list_contracts<'e, E>(
    executor: E,
    party_id: Option<&str>,
    state: Option<ContractState>,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<Contract>, Error>
where
    E: Executor<'e, Database = Any>,
{
    let party_filter = if party_id.is_some() {
        "(client_id = $1 OR freelancer_id = $1 OR agency_id = $1)"
    } else {
        "$1 = ''"
    };
    let sql = format!(
        "SELECT {CONTRACT_COLUMNS} FROM contracts \
         WHERE {party_filter} AND ($2 = '' OR state = $2) AND id > $3 ORDER BY id LIMIT $4"
    );
    Ok(sqlx::query(AssertSqlSafe(sql))
        .bind(party_id.unwrap_or_default())
        .bind(match state {
            None => "",
            Some(ContractState::Active) => "ACTIVE",
            Some(ContractState::Ended) => "ENDED",
        })
        .bind(after.unwrap_or_default())
        .bind(limit)
        .all(executor, contract_from_row)
        .await?)
}

/// Ends an active contract and locks its diary in one statement. False when
/// it was not active (already ended, possibly by a concurrent call).
pub async fn end_contract(
    tx: &mut Tx,
    id: &str,
    ended_by: Party,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<bool, Error> {
    let done = sqlx::query(
        "UPDATE contracts SET state = 'ENDED', end_at = $2, ended_by = $3, end_reason = $4, \
         diary_locked_at = $2, updated_at = $2 WHERE id = $1 AND state = 'ACTIVE'",
    )
    .bind(id)
    .bind(to_micros(now))
    .bind(party_str(ended_by))
    .bind(reason)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}
