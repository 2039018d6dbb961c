//! The SQL of disputes: filing, reading and listing them, the conditional
//! state transitions, and the refunds a resolution made.

use chrono::{DateTime, Utc};
use shared::db::rows::{Fetch, column};
use sqlx::any::AnyRow;
use sqlx::{Any, AssertSqlSafe, Executor, Row};

use crate::error::Error;
use crate::store::{corrupt, flag, opt_time, time};
use shared::db::Tx;
use shared::time::to_micros;

use super::rules::{Dispute, EscalationCause, Resolver};
use crate::domain::DisputeState;
use crate::payments::rules::Refund;
use shared::db::{Due, Reader};

/// Refunds made by these disputes' resolutions, in id order.
pub async fn refunds_of_disputes<'e, E>(executor: E, ids: &[String]) -> Result<Vec<Refund>, Error>
where
    E: Executor<'e, Database = Any>,
{
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(shared::db::query_with_ids(
        "SELECT id, payment_id, contract_id, currency, amount_minor, reason, created_at, dispute_id \
         FROM refunds WHERE dispute_id IN ({ids}) ORDER BY id",
        ids,
    )
    .all(executor, refund_from_row)
    .await?)
}

fn refund_from_row(row: &AnyRow) -> Result<Refund, sqlx::Error> {
    Ok(shared::from_row!(row, Refund {
        id, payment_id, contract_id, currency, amount_minor, reason, dispute_id;
        create_time: time(row, "created_at")?,
    }))
}

/// Opens a dispute; the database allows one dispute per contract and week
/// that is not withdrawn.
pub async fn insert_dispute(tx: &mut Tx, d: &Dispute) -> Result<(), Error> {
    let inserted = sqlx::query(
        "INSERT INTO disputes (id, contract_id, week_start, reason, state, created_at, whole_week, \
         disputed_minutes, disputed_amount_minor, respond_by, updated_at) \
         VALUES ($1, $2, $3, $4, 'OPEN', $5, $6, $7, $8, $9, $5)",
    )
    .bind(&d.id)
    .bind(&d.contract_id)
    .bind(to_micros(d.week_start))
    .bind(&d.reason)
    .bind(to_micros(d.create_time))
    .bind(i64::from(d.whole_week))
    .bind(d.disputed_minutes)
    .bind(d.disputed_amount_minor)
    .bind(to_micros(d.respond_by))
    .execute(&mut **tx)
    .await;
    shared::db::map_conflict(
        inserted,
        &["disputes_one_active_per_week", "disputes.contract_id"],
        Error::DisputeAlreadyOpen,
    )
}

const DISPUTE_SELECT: &str = "SELECT d.id, d.contract_id, c.currency, d.week_start, d.reason, d.state, \
     d.created_at, d.whole_week, d.disputed_minutes, d.disputed_amount_minor, d.respond_by, \
     d.decline_reason, d.escalation_cause, d.escalated_at, d.resolved_by, d.accepted_minutes, \
     d.refund_amount_minor, d.refunded_minor, d.adjustment_minor, d.resolution_note, d.resolved_at, \
     d.withdrawn_at, d.updated_at FROM disputes d JOIN contracts c ON c.id = d.contract_id";

fn dispute_state_from(s: &str) -> Result<DisputeState, sqlx::Error> {
    Ok(match s {
        "OPEN" => DisputeState::Open,
        "ESCALATED" => DisputeState::Escalated,
        "RESOLVED" => DisputeState::Resolved,
        "WITHDRAWN" => DisputeState::Withdrawn,
        other => return Err(corrupt("state", other)),
    })
}

fn dispute_from_row(row: &AnyRow) -> Result<Dispute, sqlx::Error> {
    let state: String = row.try_get("state")?;
    let cause: Option<String> = row.try_get("escalation_cause")?;
    let resolver: Option<String> = row.try_get("resolved_by")?;
    Ok(shared::from_row!(row, Dispute {
        id, contract_id, currency, reason, disputed_minutes, disputed_amount_minor,
        decline_reason, accepted_minutes, refund_amount_minor, refunded_minor, adjustment_minor,
        resolution_note;
        week_start: time(row, "week_start")?,
        state: dispute_state_from(&state)?,
        create_time: time(row, "created_at")?,
        whole_week: flag(row, "whole_week")?,
        respond_by: time(row, "respond_by")?,
        escalation_cause: match cause.as_deref() {
            None => None,
            Some("DECLINED") => Some(EscalationCause::Declined),
            Some("NO_RESPONSE") => Some(EscalationCause::NoResponse),
            Some(other) => return Err(corrupt("escalation_cause", other)),
        },
        escalate_time: opt_time(row, "escalated_at")?,
        resolved_by: match resolver.as_deref() {
            None => None,
            Some("FREELANCER") => Some(Resolver::Freelancer),
            Some("SUPPORT") => Some(Resolver::Support),
            Some(other) => return Err(corrupt("resolved_by", other)),
        },
        resolve_time: opt_time(row, "resolved_at")?,
        withdraw_time: opt_time(row, "withdrawn_at")?,
        update_time: time(row, "updated_at")?,
    }))
}

/// One dispute, through a transaction or a pool.
pub async fn get_dispute<'e, E>(executor: E, id: &str) -> Result<Option<Dispute>, Error>
where
    E: Executor<'e, Database = Any>,
{
    static SQL: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| format!("{DISPUTE_SELECT} WHERE d.id = $1"));
    Ok(sqlx::query(AssertSqlSafe(SQL.as_str()))
        .bind(id)
        .optional(executor, dispute_from_row)
        .await?)
}

pub async fn disputes_for_week<'e, E>(
    executor: E,
    contract_id: &str,
    week_start: DateTime<Utc>,
) -> Result<Vec<Dispute>, Error>
where
    E: Executor<'e, Database = Any>,
{
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!("{DISPUTE_SELECT} WHERE d.contract_id = $1 AND d.week_start = $2 ORDER BY d.id")
    });
    Ok(sqlx::query(AssertSqlSafe(SQL.as_str()))
        .bind(contract_id)
        .bind(to_micros(week_start))
        .all(executor, dispute_from_row)
        .await?)
}

/// A page of disputes in id (filing) order after `after`, of one contract
/// or all, optionally in one state.
pub async fn list_disputes<'e, E>(
    executor: E,
    contract_id: Option<&str>,
    state: Option<DisputeState>,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<Dispute>, Error>
where
    E: Executor<'e, Database = Any>,
{
    let sql = format!(
        "{DISPUTE_SELECT} WHERE ($1 = '' OR d.contract_id = $1) AND ($2 = '' OR d.state = $2) \
         AND d.id > $3 ORDER BY d.id LIMIT $4"
    );
    Ok(sqlx::query(AssertSqlSafe(sql))
        .bind(contract_id.unwrap_or_default())
        .bind(state.map(DisputeState::as_str).unwrap_or_default())
        .bind(after.unwrap_or_default())
        .bind(limit)
        .all(executor, dispute_from_row)
        .await?)
}

/// Open disputes whose response window has closed by `now`, oldest deadline first.
pub async fn overdue_disputes(db: &Reader, due: Due) -> Result<Vec<String>, Error> {
    Ok(due.query(
        "SELECT id FROM disputes WHERE state = 'OPEN' AND respond_by <= $1 ORDER BY respond_by, id LIMIT $2",
    )
    .all(db, column("id"))
    .await?)
}

/// OPEN → ESCALATED, in one conditional statement: false when the dispute
/// was no longer open (a concurrent answer, withdrawal or sweep won), or,
/// for `NoResponse`, when its response window has not closed by `now`.
pub async fn escalate_dispute(
    tx: &mut Tx,
    id: &str,
    cause: EscalationCause,
    decline_reason: &str,
    now: DateTime<Utc>,
) -> Result<bool, Error> {
    let (cause, overdue_only) = match cause {
        EscalationCause::Declined => ("DECLINED", 0_i64),
        EscalationCause::NoResponse => ("NO_RESPONSE", 1_i64),
    };
    let done = sqlx::query(
        "UPDATE disputes SET state = 'ESCALATED', escalation_cause = $2, decline_reason = $3, \
         escalated_at = $4, updated_at = $4 \
         WHERE id = $1 AND state = 'OPEN' AND ($5 = 0 OR respond_by <= $4)",
    )
    .bind(id)
    .bind(cause)
    .bind(decline_reason)
    .bind(to_micros(now))
    .bind(overdue_only)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The decision of a resolution, before its money is carried out.
pub struct Resolution<'a> {
    pub resolver: Resolver,
    pub accepted_minutes: i64,
    pub refund_amount_minor: i64,
    pub note: &'a str,
}

/// `from` → RESOLVED in one conditional statement (false when the dispute
/// is no longer in `from`: a concurrent transition won). The money columns
/// are set by [`record_resolution_money`] in the same transaction.
pub async fn resolve_dispute(
    tx: &mut Tx,
    id: &str,
    from: DisputeState,
    resolution: &Resolution<'_>,
    now: DateTime<Utc>,
) -> Result<bool, Error> {
    let done = sqlx::query(
        "UPDATE disputes SET state = 'RESOLVED', resolved_by = $3, accepted_minutes = $4, \
         refund_amount_minor = $5, resolution_note = $6, resolved_at = $7, updated_at = $7 \
         WHERE id = $1 AND state = $2",
    )
    .bind(id)
    .bind(from.as_str())
    .bind(match resolution.resolver {
        Resolver::Freelancer => "FREELANCER",
        Resolver::Support => "SUPPORT",
    })
    .bind(resolution.accepted_minutes)
    .bind(resolution.refund_amount_minor)
    .bind(resolution.note)
    .bind(to_micros(now))
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Records what a resolution refunded and what it took off the week.
pub async fn record_resolution_money(
    tx: &mut Tx,
    id: &str,
    refunded_minor: i64,
    adjustment_minor: i64,
) -> Result<(), Error> {
    sqlx::query(
        "UPDATE disputes SET refunded_minor = $2, adjustment_minor = $3 WHERE id = $1 AND state = 'RESOLVED'",
    )
    .bind(id)
    .bind(refunded_minor)
    .bind(adjustment_minor)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// OPEN → WITHDRAWN in one conditional statement (false when no longer open).
pub async fn withdraw_dispute(
    tx: &mut Tx,
    id: &str,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<bool, Error> {
    let done = sqlx::query(
        "UPDATE disputes SET state = 'WITHDRAWN', withdrawn_at = $2, updated_at = $2, \
         resolution_note = $3 WHERE id = $1 AND state = 'OPEN'",
    )
    .bind(id)
    .bind(to_micros(now))
    .bind(reason)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}
