//! The SQL of payments and refunds: recording them with the contract's
//! totals, reading and listing payments, and taking refunds atomically.

use chrono::{DateTime, Utc};
use shared::db::rows::{Fetch, Table};
use sqlx::any::AnyRow;
use sqlx::{Any, AssertSqlSafe, Executor, Row};

use crate::error::Error;
use crate::store::{corrupt, opt_time, time};
use shared::db::{Backend, Db, Page, Tx};
use shared::time::to_micros;
use shared::writer::{Call, single};

use super::rules::{Payment, PaymentKind, Refund};
use crate::contracts::rules::Contract;
use crate::contracts::store::{CONTRACT_COLUMNS, contract_from_row};
use crate::domain::BillingWeek;

fn kind_str(k: PaymentKind) -> &'static str {
    match k {
        PaymentKind::HourlyInvoice => "HOURLY_INVOICE",
        PaymentKind::FixedPrice => "FIXED_PRICE",
        PaymentKind::Bonus => "BONUS",
    }
}

/// Binds a payment's nine columns as `$1`..`$9`: id, contract, kind,
/// currency, amount, paid, memo, created, billing week.
fn bind_payment<'q>(query: single::AnyQuery<'q>, p: &Payment) -> single::AnyQuery<'q> {
    query
        .bind(p.id.clone())
        .bind(p.contract_id.clone())
        .bind(kind_str(p.kind))
        .bind(p.currency.clone())
        .bind(p.amount_minor)
        .bind(to_micros(p.paid_at))
        .bind(p.memo.clone())
        .bind(to_micros(p.create_time))
        .bind(p.billing_week.map(|w| to_micros(w.start)))
}

/// Records a payment and adds it to the contract's totals.
pub async fn insert_payment(tx: &mut Tx, p: &Payment) -> Result<(), Error> {
    bind_payment(
        sqlx::query(
            "INSERT INTO payments (id, contract_id, kind, currency, amount_minor, refunded_minor, paid_at, memo, created_at, \
             billing_week_start) VALUES ($1, $2, $3, $4, $5, 0, $6, $7, $8, $9)",
        ),
        p,
    )
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

/// A contract as RecordPayment's one-statement path reads it (PostgreSQL),
/// with the answer to a retry whose key is stored. `None`: no such contract.
pub async fn read_for_payment<R: prost::Message + Default>(
    db: &Db,
    contract_id: &str,
    call: &Call,
) -> Result<Option<(Contract, Option<Result<R, Error>>)>, Error> {
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "SELECT {CONTRACT_COLUMNS}, {} FROM contracts WHERE id = $1",
            single::key_columns(2)
        )
    });
    let query = sqlx::query(AssertSqlSafe(SQL.as_str())).bind(contract_id);
    let Some(row) = single::bind_key(query, call)
        .fetch_optional(db.writer())
        .await?
    else {
        return Ok(None);
    };
    Ok(Some((
        contract_from_row(&row)?,
        single::replay(&row, call)?,
    )))
}

/// The one-statement write of RecordPayment ([`single::write`] binds the
/// event and key terms and runs it): records `p` with the contract's totals
/// if the contract's end is still `seen_end` (the one rule input that
/// changes: EndContract sets it).
pub fn record_payment_guarded(
    p: &Payment,
    seen_end: Option<DateTime<Utc>>,
) -> single::AnyQuery<'static> {
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "WITH guard AS (UPDATE contracts SET net_paid_minor = net_paid_minor + $5, \
             last_paid_at = CASE WHEN last_paid_at IS NULL OR last_paid_at < $6 THEN $6 \
             ELSE last_paid_at END, updated_at = $8 \
             WHERE id = $2 AND end_at IS NOT DISTINCT FROM $10 RETURNING id), \
             payment AS (INSERT INTO payments (id, contract_id, kind, currency, amount_minor, \
             refunded_minor, paid_at, memo, created_at, billing_week_start) \
             SELECT $1, $2, $3, $4, $5, 0, $6, $7, $8, $9 FROM guard), {} \
             SELECT COUNT(*) AS written FROM guard",
            single::commit_terms("guard", 11)
        )
    });
    bind_payment(sqlx::query(AssertSqlSafe(SQL.as_str())), p).bind(seen_end.map(to_micros))
}

const PAYMENT_COLUMNS: &str = "id, contract_id, kind, currency, amount_minor, refunded_minor, paid_at, memo, created_at, \
     billing_week_start";

const PAYMENTS: Table<Payment> = Table::new("payments", PAYMENT_COLUMNS, payment_from_row);

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
    Ok(sqlx::query(AssertSqlSafe(sql))
        .bind(contract_id)
        .bind(to_micros(week_start))
        .all(&mut **tx, payment_from_row)
        .await?)
}

pub async fn get_payment<'e, E>(executor: E, id: &str) -> Result<Option<Payment>, Error>
where
    E: Executor<'e, Database = Any>,
{
    Ok(PAYMENTS.get(executor, id).await?)
}

/// A page of a contract's payments (`page.key`), in id order.
pub async fn list_payments<'e, E>(executor: E, page: Page<'_>) -> Result<Vec<Payment>, Error>
where
    E: Executor<'e, Database = Any>,
{
    Ok(PAYMENTS.page(executor, "contract_id = $1", page).await?)
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
