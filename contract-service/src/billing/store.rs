//! The SQL of billing weeks: what a week was invoiced, refunded and
//! adjusted by resolved disputes.

use chrono::{DateTime, Utc};
use sqlx::{Any, Executor, Row};

use crate::error::Error;
use shared::time::to_micros;

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
