//! SQL of moderation: hidden items and the audit trail, written in the
//! same transaction as the decision that caused them.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use shared::db::rows::{Fetch, column, time};
use sqlx::any::AnyRow;
use sqlx::{Any, Executor, Row};

use crate::error::Error;
use shared::db::Tx;
use shared::time::to_micros;

/// An audit-trail entry as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Action {
    pub id: String,
    /// `HIDE` or `RESTORE`.
    pub action: String,
    pub item_id: String,
    /// `MID_CONTRACT`, `END_CONTRACT` or `REPLY`.
    pub item_kind: String,
    pub contract_id: String,
    pub author_id: String,
    pub reason: Option<String>,
    pub note: String,
    pub actor: String,
    pub create_time: DateTime<Utc>,
}

/// The contract and author of an item, if it exists.
pub async fn item_owner(
    tx: &mut Tx,
    kind: &str,
    item_id: &str,
) -> Result<Option<(String, String)>, Error> {
    let sql = match kind {
        "MID_CONTRACT" => {
            "SELECT contract_id, client_id AS author_id FROM mid_feedback WHERE id = $1"
        }
        "END_CONTRACT" => "SELECT contract_id, author_id FROM end_feedback WHERE id = $1",
        _ => {
            "SELECT e.contract_id AS contract_id, r.author_id AS author_id \
             FROM replies r JOIN end_feedback e ON e.id = r.feedback_id WHERE r.id = $1"
        }
    };
    let row = sqlx::query(sql)
        .bind(item_id)
        .fetch_optional(&mut **tx)
        .await?;
    row.map(|row| Ok((row.try_get("contract_id")?, row.try_get("author_id")?)))
        .transpose()
}

/// Hides the item. False when it is hidden already.
pub async fn hide(
    tx: &mut Tx,
    item_id: &str,
    kind: &str,
    now: DateTime<Utc>,
) -> Result<bool, Error> {
    let changed = sqlx::query(
        "INSERT INTO moderation_state (item_id, item_kind, hidden, updated_at) VALUES ($1, $2, 1, $3) \
         ON CONFLICT (item_id) DO UPDATE SET hidden = 1, updated_at = excluded.updated_at \
         WHERE moderation_state.hidden = 0",
    )
    .bind(item_id)
    .bind(kind)
    .bind(to_micros(now))
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(changed == 1)
}

/// Shows the item again. False when it is not hidden.
pub async fn restore(tx: &mut Tx, item_id: &str, now: DateTime<Utc>) -> Result<bool, Error> {
    let changed = sqlx::query(
        "UPDATE moderation_state SET hidden = 0, updated_at = $2 WHERE item_id = $1 AND hidden = 1",
    )
    .bind(item_id)
    .bind(to_micros(now))
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(changed == 1)
}

pub async fn insert_action(tx: &mut Tx, a: &Action) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO moderation_actions (id, action, item_id, item_kind, contract_id, author_id, \
         reason, note, actor, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(&a.id)
    .bind(&a.action)
    .bind(&a.item_id)
    .bind(&a.item_kind)
    .bind(&a.contract_id)
    .bind(&a.author_id)
    .bind(a.reason.clone())
    .bind(&a.note)
    .bind(&a.actor)
    .bind(to_micros(a.create_time))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn action_from_row(row: &AnyRow) -> Result<Action, sqlx::Error> {
    Ok(shared::from_row!(row, Action {
        id, action, item_id, item_kind, contract_id, author_id, reason, note, actor;
        create_time: time(row, "created_at")?,
    }))
}

/// Actions newest first, before `before` (a page token's key), optionally of one item.
pub async fn list_actions<'e, E>(
    executor: E,
    item_id: Option<&str>,
    before: Option<&str>,
    limit: i64,
) -> Result<Vec<Action>, Error>
where
    E: Executor<'e, Database = Any>,
{
    Ok(sqlx::query(
        "SELECT id, action, item_id, item_kind, contract_id, author_id, reason, note, actor, created_at \
         FROM moderation_actions WHERE ($1 = '' OR item_id = $1) AND ($2 = '' OR id < $2) \
         ORDER BY id DESC LIMIT $3",
    )
    .bind(item_id.unwrap_or_default())
    .bind(before.unwrap_or_default())
    .bind(limit)
    .all(executor, action_from_row)
    .await?)
}

/// Which of `ids` are hidden now.
pub async fn hidden_of<'e, E>(executor: E, ids: &[String]) -> Result<HashSet<String>, Error>
where
    E: Executor<'e, Database = Any>,
{
    if ids.is_empty() {
        return Ok(HashSet::new());
    }
    let hidden: Vec<String> = shared::db::query_with_ids(
        "SELECT item_id FROM moderation_state WHERE hidden = 1 AND item_id IN ({ids})",
        ids,
    )
    .all(executor, column("item_id"))
    .await?;
    Ok(hidden.into_iter().collect())
}
