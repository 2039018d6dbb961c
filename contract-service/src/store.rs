//! The only place with SQL. One implementation serves SQLite and PostgreSQL
//! (through sqlx's `Any` driver); rules live in `domain`, and this module
//! only persists and loads, turning constraint violations into domain errors.

use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::{Any, AssertSqlSafe, Executor, Row};

use crate::domain::{
    BillingWeek, Contract, ContractState, ContractType, Dispute, DisputeState, EscalationCause,
    Party, Payment, PaymentKind, Refund, Resolver, TimeEntry,
};
use crate::error::Error;
use shared::db::{Backend, Tx};
use shared::time::{from_micros, to_micros};

const CONTRACT_COLUMNS: &str = "id, client_id, freelancer_id, agency_id, title, contract_type, currency, \
     hourly_rate_minor, weekly_limit_minutes, allow_manual_time, state, start_at, end_at, ended_by, \
     end_reason, created_at, updated_at, last_paid_at, net_paid_minor, diary_locked_at";

fn opt_time(row: &AnyRow, col: &str) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    Ok(row.try_get::<Option<i64>, _>(col)?.map(from_micros))
}

fn time(row: &AnyRow, col: &str) -> Result<DateTime<Utc>, sqlx::Error> {
    Ok(from_micros(row.try_get(col)?))
}

fn flag(row: &AnyRow, col: &str) -> Result<bool, sqlx::Error> {
    Ok(row.try_get::<i64, _>(col)? != 0)
}

fn corrupt(col: &str, value: &str) -> sqlx::Error {
    sqlx::Error::ColumnDecode {
        index: col.to_owned(),
        source: format!("unexpected value {value:?}").into(),
    }
}

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

fn kind_str(k: PaymentKind) -> &'static str {
    match k {
        PaymentKind::HourlyInvoice => "HOURLY_INVOICE",
        PaymentKind::FixedPrice => "FIXED_PRICE",
        PaymentKind::Bonus => "BONUS",
    }
}

fn contract_from_row(row: &AnyRow) -> Result<Contract, sqlx::Error> {
    let contract_type: String = row.try_get("contract_type")?;
    let state: String = row.try_get("state")?;
    let ended_by: Option<String> = row.try_get("ended_by")?;
    Ok(Contract {
        id: row.try_get("id")?,
        client_id: row.try_get("client_id")?,
        freelancer_id: row.try_get("freelancer_id")?,
        agency_id: row.try_get("agency_id")?,
        title: row.try_get("title")?,
        contract_type: match contract_type.as_str() {
            "HOURLY" => ContractType::Hourly,
            "FIXED_PRICE" => ContractType::FixedPrice,
            other => return Err(corrupt("contract_type", other)),
        },
        currency: row.try_get("currency")?,
        hourly_rate_minor: row.try_get("hourly_rate_minor")?,
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
        end_reason: row.try_get("end_reason")?,
        create_time: time(row, "created_at")?,
        update_time: time(row, "updated_at")?,
        last_payment_time: opt_time(row, "last_paid_at")?,
        net_paid_minor: row.try_get("net_paid_minor")?,
        diary_lock_time: opt_time(row, "diary_locked_at")?,
    })
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
    let row = sqlx::query(AssertSqlSafe(SQL.as_str()))
        .bind(id)
        .fetch_optional(executor)
        .await?;
    Ok(row.as_ref().map(contract_from_row).transpose()?)
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
    let rows = shared::db::query_with_ids(&sql, ids)
        .fetch_all(executor)
        .await?;
    Ok(rows
        .iter()
        .map(contract_from_row)
        .collect::<Result<_, _>>()?)
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
    let rows = sqlx::query(AssertSqlSafe(sql))
        .bind(party_id.unwrap_or_default())
        .bind(match state {
            None => "",
            Some(ContractState::Active) => "ACTIVE",
            Some(ContractState::Ended) => "ENDED",
        })
        .bind(after.unwrap_or_default())
        .bind(limit)
        .fetch_all(executor)
        .await?;
    Ok(rows
        .iter()
        .map(contract_from_row)
        .collect::<Result<_, _>>()?)
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

/// Takes the diary's write lock for this transaction and returns the
/// contract, if the diary is still unlocked (`None` otherwise: absent, ended
/// or locked). Diary writes of one contract are serialised by it, and it
/// waits for (and then sees) a concurrent EndContract. One statement: the
/// lock and the read are one round trip.
///
/// (`contracts.diary_version`, which an earlier version bumped to take this
/// lock, is no longer read or written; a later migration drops it once no
/// running version writes it.)
pub async fn lock_diary_for_write(
    tx: &mut Tx,
    contract_id: &str,
) -> Result<Option<Contract>, Error> {
    // PostgreSQL: a row lock that conflicts with EndContract's UPDATE and
    // with other diary writers, and (unlike an UPDATE) writes no new row
    // version; after waiting for a concurrent EndContract, the WHERE clause
    // is re-checked against the committed row. `NO KEY` leaves inserts that
    // reference the contract (payments, disputes) unblocked. SQLite: write
    // transactions already run one at a time (`BEGIN IMMEDIATE`).
    static POSTGRES: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| format!("{} FOR NO KEY UPDATE", SQLITE.as_str()));
    static SQLITE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "SELECT {CONTRACT_COLUMNS} FROM contracts \
             WHERE id = $1 AND state = 'ACTIVE' AND diary_locked_at IS NULL"
        )
    });
    let sql = match Backend::of_connection(tx) {
        Backend::Postgres => POSTGRES.as_str(),
        Backend::Sqlite => SQLITE.as_str(),
    };
    let row = sqlx::query(AssertSqlSafe(sql))
        .bind(contract_id)
        .fetch_optional(&mut **tx)
        .await?;
    Ok(row.as_ref().map(contract_from_row).transpose()?)
}

/// [`lock_diary_for_write`], also returning the minutes logged by entries
/// starting in `[from, before)`: what LogTime needs, in one statement.
pub async fn lock_diary_with_minutes(
    tx: &mut Tx,
    contract_id: &str,
    from: DateTime<Utc>,
    before: DateTime<Utc>,
) -> Result<Option<(Contract, i64)>, Error> {
    static POSTGRES: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| format!("{} FOR NO KEY UPDATE OF contracts", SQLITE.as_str()));
    static SQLITE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "SELECT {CONTRACT_COLUMNS}, \
             (SELECT CAST(COALESCE(SUM(end_at - start_at), 0) AS BIGINT) FROM time_entries \
              WHERE contract_id = $1 AND start_at >= $2 AND start_at < $3) AS logged_micros \
             FROM contracts WHERE id = $1 AND state = 'ACTIVE' AND diary_locked_at IS NULL"
        )
    });
    let sql = match Backend::of_connection(tx) {
        Backend::Postgres => POSTGRES.as_str(),
        Backend::Sqlite => SQLITE.as_str(),
    };
    let row = sqlx::query(AssertSqlSafe(sql))
        .bind(contract_id)
        .bind(to_micros(from))
        .bind(to_micros(before))
        .fetch_optional(&mut **tx)
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let micros: i64 = row.try_get("logged_micros")?;
    Ok(Some((contract_from_row(&row)?, micros / 60_000_000)))
}

/// Adds a time entry unless it overlaps one of the contract's entries; one
/// statement, under the diary lock. Returns whether it was added.
///
/// A contract's entries never overlap (every insert passes this check under
/// the diary lock), so of the entries starting before the new one ends, only
/// the last can reach into it: one index probe, however long the diary.
pub async fn insert_time_entry_unless_overlapping(
    tx: &mut Tx,
    e: &TimeEntry,
) -> Result<bool, Error> {
    let done = sqlx::query(
        "INSERT INTO time_entries (id, contract_id, start_at, end_at, manual, memo, created_at) \
         SELECT $1, $2, $3, $4, $5, $6, $7 WHERE NOT EXISTS \
         (SELECT 1 FROM (SELECT end_at FROM time_entries WHERE contract_id = $2 AND start_at < $4 \
          ORDER BY start_at DESC LIMIT 1) AS previous WHERE previous.end_at > $3)",
    )
    .bind(&e.id)
    .bind(&e.contract_id)
    .bind(to_micros(e.start))
    .bind(to_micros(e.end))
    .bind(i64::from(e.manual))
    .bind(&e.memo)
    .bind(to_micros(e.create_time))
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

fn time_entry_from_row(row: &AnyRow) -> Result<TimeEntry, sqlx::Error> {
    Ok(TimeEntry {
        id: row.try_get("id")?,
        contract_id: row.try_get("contract_id")?,
        start: time(row, "start_at")?,
        end: time(row, "end_at")?,
        manual: flag(row, "manual")?,
        memo: row.try_get("memo")?,
        create_time: time(row, "created_at")?,
    })
}

pub async fn get_time_entry(
    tx: &mut Tx,
    contract_id: &str,
    id: &str,
) -> Result<Option<TimeEntry>, Error> {
    let row = sqlx::query(
        "SELECT id, contract_id, start_at, end_at, manual, memo, created_at \
         FROM time_entries WHERE id = $1 AND contract_id = $2",
    )
    .bind(id)
    .bind(contract_id)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(row.as_ref().map(time_entry_from_row).transpose()?)
}

pub async fn delete_time_entry(tx: &mut Tx, id: &str) -> Result<(), Error> {
    sqlx::query("DELETE FROM time_entries WHERE id = $1")
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Entries starting in `[from, to)`, in start order.
pub async fn time_entries_between<'e, E>(
    executor: E,
    contract_id: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<TimeEntry>, Error>
where
    E: Executor<'e, Database = Any>,
{
    let rows = sqlx::query(
        "SELECT id, contract_id, start_at, end_at, manual, memo, created_at FROM time_entries \
         WHERE contract_id = $1 AND start_at >= $2 AND start_at < $3 ORDER BY start_at",
    )
    .bind(contract_id)
    .bind(to_micros(from))
    .bind(to_micros(to))
    .fetch_all(executor)
    .await?;
    Ok(rows
        .iter()
        .map(time_entry_from_row)
        .collect::<Result<_, _>>()?)
}

/// Records a payment and adds it to the contract's totals.
pub async fn insert_payment(tx: &mut Tx, p: &Payment) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO payments (id, contract_id, kind, currency, amount_minor, refunded_minor, paid_at, memo, created_at, \
         billing_week_start) VALUES ($1, $2, $3, $4, $5, 0, $6, $7, $8, $9)",
    )
    .bind(&p.id)
    .bind(&p.contract_id)
    .bind(kind_str(p.kind))
    .bind(&p.currency)
    .bind(p.amount_minor)
    .bind(to_micros(p.paid_at))
    .bind(&p.memo)
    .bind(to_micros(p.create_time))
    .bind(p.billing_week.map(|w| to_micros(w.start)))
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "UPDATE contracts SET net_paid_minor = net_paid_minor + $2, \
         last_paid_at = CASE WHEN last_paid_at IS NULL OR last_paid_at < $3 THEN $3 ELSE last_paid_at END, \
         updated_at = $4 WHERE id = $1",
    )
    .bind(&p.contract_id)
    .bind(p.amount_minor)
    .bind(to_micros(p.paid_at))
    .bind(to_micros(p.create_time))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

const PAYMENT_COLUMNS: &str = "id, contract_id, kind, currency, amount_minor, refunded_minor, paid_at, memo, created_at, \
     billing_week_start";

fn payment_from_row(row: &AnyRow) -> Result<Payment, sqlx::Error> {
    let kind: String = row.try_get("kind")?;
    Ok(Payment {
        id: row.try_get("id")?,
        contract_id: row.try_get("contract_id")?,
        kind: match kind.as_str() {
            "HOURLY_INVOICE" => PaymentKind::HourlyInvoice,
            "FIXED_PRICE" => PaymentKind::FixedPrice,
            "BONUS" => PaymentKind::Bonus,
            other => return Err(corrupt("kind", other)),
        },
        currency: row.try_get("currency")?,
        amount_minor: row.try_get("amount_minor")?,
        refunded_minor: row.try_get("refunded_minor")?,
        paid_at: time(row, "paid_at")?,
        memo: row.try_get("memo")?,
        create_time: time(row, "created_at")?,
        billing_week: opt_time(row, "billing_week_start")?.map(|start| BillingWeek { start }),
    })
}

/// The HOURLY_INVOICE payments of one billing week, in payment order, locked
/// for this transaction on PostgreSQL (a dispute's resolution refunds them).
pub async fn week_invoices_for_update(
    tx: &mut Tx,
    contract_id: &str,
    week_start: DateTime<Utc>,
) -> Result<Vec<Payment>, Error> {
    let lock = match Backend::of_connection(tx) {
        Backend::Postgres => " FOR UPDATE",
        Backend::Sqlite => "",
    };
    let sql = format!(
        "SELECT {PAYMENT_COLUMNS} FROM payments WHERE contract_id = $1 AND kind = 'HOURLY_INVOICE' \
         AND billing_week_start = $2 ORDER BY paid_at, id{lock}"
    );
    let rows = sqlx::query(AssertSqlSafe(sql))
        .bind(contract_id)
        .bind(to_micros(week_start))
        .fetch_all(&mut **tx)
        .await?;
    Ok(rows
        .iter()
        .map(payment_from_row)
        .collect::<Result<_, _>>()?)
}

/// What a billing week was invoiced, what was refunded from those invoices,
/// and what resolved disputes took off it (minor units).
pub async fn week_money<'e, E>(
    executor: E,
    contract_id: &str,
    week_start: DateTime<Utc>,
) -> Result<(i64, i64, i64), Error>
where
    E: Executor<'e, Database = Any>,
{
    let row = sqlx::query(
        "SELECT \
         (SELECT CAST(COALESCE(SUM(amount_minor), 0) AS BIGINT) FROM payments \
          WHERE contract_id = $1 AND kind = 'HOURLY_INVOICE' AND billing_week_start = $2) AS invoiced, \
         (SELECT CAST(COALESCE(SUM(refunded_minor), 0) AS BIGINT) FROM payments \
          WHERE contract_id = $1 AND kind = 'HOURLY_INVOICE' AND billing_week_start = $2) AS refunded, \
         (SELECT CAST(COALESCE(SUM(adjustment_minor), 0) AS BIGINT) FROM disputes \
          WHERE contract_id = $1 AND week_start = $2 AND state = 'RESOLVED') AS adjusted",
    )
    .bind(contract_id)
    .bind(to_micros(week_start))
    .fetch_one(executor)
    .await?;
    Ok((
        row.try_get("invoiced")?,
        row.try_get("refunded")?,
        row.try_get("adjusted")?,
    ))
}

pub async fn get_payment<'e, E>(executor: E, id: &str) -> Result<Option<Payment>, Error>
where
    E: Executor<'e, Database = Any>,
{
    let sql = format!("SELECT {PAYMENT_COLUMNS} FROM payments WHERE id = $1");
    let row = sqlx::query(AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(executor)
        .await?;
    Ok(row.as_ref().map(payment_from_row).transpose()?)
}

pub async fn list_payments<'e, E>(
    executor: E,
    contract_id: &str,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<Payment>, Error>
where
    E: Executor<'e, Database = Any>,
{
    let sql = format!(
        "SELECT {PAYMENT_COLUMNS} FROM payments WHERE contract_id = $1 AND id > $2 ORDER BY id LIMIT $3"
    );
    let rows = sqlx::query(AssertSqlSafe(sql))
        .bind(contract_id)
        .bind(after.unwrap_or_default())
        .bind(limit)
        .fetch_all(executor)
        .await?;
    Ok(rows
        .iter()
        .map(payment_from_row)
        .collect::<Result<_, _>>()?)
}

/// Takes `amount` off what is left of a payment, atomically. False when less
/// than `amount` is left (a concurrent refund may have taken it): refunds can
/// never add up to more than the payment, whatever the interleaving.
pub async fn take_refund(tx: &mut Tx, payment_id: &str, amount: i64) -> Result<bool, Error> {
    let done = sqlx::query(
        "UPDATE payments SET refunded_minor = refunded_minor + $2 \
         WHERE id = $1 AND refunded_minor + $2 <= amount_minor",
    )
    .bind(payment_id)
    .bind(amount)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Records a refund and takes it off the contract's net paid.
pub async fn insert_refund(tx: &mut Tx, r: &Refund) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO refunds (id, payment_id, contract_id, currency, amount_minor, reason, created_at, dispute_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&r.id)
    .bind(&r.payment_id)
    .bind(&r.contract_id)
    .bind(&r.currency)
    .bind(r.amount_minor)
    .bind(&r.reason)
    .bind(to_micros(r.create_time))
    .bind(r.dispute_id.clone())
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "UPDATE contracts SET net_paid_minor = net_paid_minor - $2, updated_at = $3 WHERE id = $1",
    )
    .bind(&r.contract_id)
    .bind(r.amount_minor)
    .bind(to_micros(r.create_time))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Refunds made by these disputes' resolutions, in id order.
pub async fn refunds_of_disputes<'e, E>(executor: E, ids: &[String]) -> Result<Vec<Refund>, Error>
where
    E: Executor<'e, Database = Any>,
{
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows = shared::db::query_with_ids(
        "SELECT id, payment_id, contract_id, currency, amount_minor, reason, created_at, dispute_id \
         FROM refunds WHERE dispute_id IN ({ids}) ORDER BY id",
        ids,
    )
    .fetch_all(executor)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(Refund {
                id: row.try_get("id")?,
                payment_id: row.try_get("payment_id")?,
                contract_id: row.try_get("contract_id")?,
                currency: row.try_get("currency")?,
                amount_minor: row.try_get("amount_minor")?,
                reason: row.try_get("reason")?,
                create_time: time(row, "created_at")?,
                dispute_id: row.try_get("dispute_id")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(Error::from)
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
    match inserted {
        Ok(_) => Ok(()),
        Err(e)
            if shared::db::violated_constraint(&e).is_some_and(|c| {
                c.contains("disputes_one_active_per_week") || c.contains("disputes.contract_id")
            }) =>
        {
            Err(Error::DisputeAlreadyOpen)
        }
        Err(e) => Err(e.into()),
    }
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
    Ok(Dispute {
        id: row.try_get("id")?,
        contract_id: row.try_get("contract_id")?,
        currency: row.try_get("currency")?,
        week_start: time(row, "week_start")?,
        reason: row.try_get("reason")?,
        state: dispute_state_from(&state)?,
        create_time: time(row, "created_at")?,
        whole_week: flag(row, "whole_week")?,
        disputed_minutes: row.try_get("disputed_minutes")?,
        disputed_amount_minor: row.try_get("disputed_amount_minor")?,
        respond_by: time(row, "respond_by")?,
        decline_reason: row.try_get("decline_reason")?,
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
        accepted_minutes: row.try_get("accepted_minutes")?,
        refund_amount_minor: row.try_get("refund_amount_minor")?,
        refunded_minor: row.try_get("refunded_minor")?,
        adjustment_minor: row.try_get("adjustment_minor")?,
        resolution_note: row.try_get("resolution_note")?,
        resolve_time: opt_time(row, "resolved_at")?,
        withdraw_time: opt_time(row, "withdrawn_at")?,
        update_time: time(row, "updated_at")?,
    })
}

/// One dispute, through a transaction or a pool.
pub async fn get_dispute<'e, E>(executor: E, id: &str) -> Result<Option<Dispute>, Error>
where
    E: Executor<'e, Database = Any>,
{
    static SQL: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| format!("{DISPUTE_SELECT} WHERE d.id = $1"));
    let row = sqlx::query(AssertSqlSafe(SQL.as_str()))
        .bind(id)
        .fetch_optional(executor)
        .await?;
    Ok(row.as_ref().map(dispute_from_row).transpose()?)
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
    let rows = sqlx::query(AssertSqlSafe(SQL.as_str()))
        .bind(contract_id)
        .bind(to_micros(week_start))
        .fetch_all(executor)
        .await?;
    Ok(rows
        .iter()
        .map(dispute_from_row)
        .collect::<Result<_, _>>()?)
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
    let rows = sqlx::query(AssertSqlSafe(sql))
        .bind(contract_id.unwrap_or_default())
        .bind(state.map(DisputeState::as_str).unwrap_or_default())
        .bind(after.unwrap_or_default())
        .bind(limit)
        .fetch_all(executor)
        .await?;
    Ok(rows
        .iter()
        .map(dispute_from_row)
        .collect::<Result<_, _>>()?)
}

/// Open disputes whose response window has closed by `now`, oldest deadline first.
pub async fn overdue_disputes<'e, E>(
    executor: E,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<String>, Error>
where
    E: Executor<'e, Database = Any>,
{
    let rows = sqlx::query(
        "SELECT id FROM disputes WHERE state = 'OPEN' AND respond_by <= $1 ORDER BY respond_by, id LIMIT $2",
    )
    .bind(to_micros(now))
    .bind(limit)
    .fetch_all(executor)
    .await?;
    rows.iter()
        .map(|row| row.try_get("id"))
        .collect::<Result<_, sqlx::Error>>()
        .map_err(Error::from)
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

/// Migrations of this service for each backend, embedded in the binary.
pub const MIGRATIONS: shared::db::Migrations = shared::db::Migrations::new(&[
    (1, "init", include_str!("../migrations/0001_init.sql")),
    (
        2,
        "time entry span index",
        include_str!("../migrations/0002_time_entry_span_index.sql"),
    ),
    (
        3,
        "dispute lifecycle",
        include_str!("../migrations/0003_dispute_lifecycle.sql"),
    ),
]);
