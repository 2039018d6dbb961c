//! SQL of the prompts feature: the contract-event cursor, end-of-contract
//! prompts and their reminders, and notification preferences.

use chrono::{DateTime, Utc};
use sqlx::{Any, Executor, Row};

use crate::error::Error;
use shared::db::Tx;
use shared::db::{Due, Reader};
use shared::time::{from_micros, to_micros};

/// The last contract-service event applied (0: none yet).
pub async fn cursor<'e, E>(executor: E) -> Result<i64, Error>
where
    E: Executor<'e, Database = Any>,
{
    Ok(
        sqlx::query_scalar("SELECT last_sequence FROM contract_event_cursor WHERE id = 1")
            .fetch_one(executor)
            .await?,
    )
}

/// Moves the cursor to `sequence` if it is behind it. False: the event was
/// applied already (by this process before a restart, or by another
/// replica), and nothing else may be written for it.
pub async fn advance_cursor(
    tx: &mut Tx,
    sequence: i64,
    event_id: &str,
    now: DateTime<Utc>,
) -> Result<bool, Error> {
    let moved = sqlx::query(
        "UPDATE contract_event_cursor SET last_sequence = $1, last_event_id = $2, updated_at = $3 \
         WHERE id = 1 AND last_sequence < $1",
    )
    .bind(sequence)
    .bind(event_id)
    .bind(to_micros(now))
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(moved == 1)
}

/// One party's end-of-contract feedback prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct Prompt {
    pub contract_id: String,
    /// `CLIENT_TO_FREELANCER` (the client is asked) or `FREELANCER_TO_CLIENT`.
    pub direction: String,
    pub recipient_id: String,
    pub title: String,
    pub window_close_time: DateTime<Utc>,
    pub remind_time: DateTime<Utc>,
}

/// Adds `prompt` unless that party of that contract has one. True when added.
/// A prompt made after its window closed is settled at once: no reminder.
pub async fn insert_prompt(
    tx: &mut Tx,
    prompt: &Prompt,
    event_id: &str,
    now: DateTime<Utc>,
) -> Result<bool, Error> {
    let settled = (now >= prompt.window_close_time).then(|| to_micros(now));
    let added = sqlx::query(
        "INSERT INTO end_prompts (contract_id, direction, recipient_id, title, event_id, \
         window_close_at, remind_at, reminder_settled_at, reminder_sent, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, $9) \
         ON CONFLICT (contract_id, direction) DO NOTHING",
    )
    .bind(&prompt.contract_id)
    .bind(&prompt.direction)
    .bind(&prompt.recipient_id)
    .bind(&prompt.title)
    .bind(event_id)
    .bind(to_micros(prompt.window_close_time))
    .bind(to_micros(prompt.remind_time))
    .bind(settled)
    .bind(to_micros(now))
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(added == 1)
}

/// Prompts whose reminder is due at `now` and not yet settled, oldest first.
pub async fn due_reminders(db: &Reader, due: Due) -> Result<Vec<Prompt>, Error> {
    let rows = due
        .query(
            "SELECT contract_id, direction, recipient_id, title, window_close_at, remind_at \
         FROM end_prompts WHERE reminder_settled_at IS NULL AND remind_at <= $1 \
         ORDER BY remind_at, contract_id, direction LIMIT $2",
        )
        .fetch_all(db)
        .await?;
    rows.iter()
        .map(|row| {
            Ok(Prompt {
                contract_id: row.try_get("contract_id")?,
                direction: row.try_get("direction")?,
                recipient_id: row.try_get("recipient_id")?,
                title: row.try_get("title")?,
                window_close_time: from_micros(row.try_get("window_close_at")?),
                remind_time: from_micros(row.try_get("remind_at")?),
            })
        })
        .collect()
}

/// Settles a prompt's reminder, sent or not. False when it was settled
/// already (another sweep got there first): then nothing may be sent.
pub async fn settle_reminder(
    tx: &mut Tx,
    contract_id: &str,
    direction: &str,
    sent: bool,
    now: DateTime<Utc>,
) -> Result<bool, Error> {
    let settled = sqlx::query(
        "UPDATE end_prompts SET reminder_settled_at = $1, reminder_sent = $2 \
         WHERE contract_id = $3 AND direction = $4 AND reminder_settled_at IS NULL",
    )
    .bind(to_micros(now))
    .bind(i64::from(sent))
    .bind(contract_id)
    .bind(direction)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(settled == 1)
}

/// Whether that side of the contract has left its end-of-contract feedback.
pub async fn has_submitted(tx: &mut Tx, contract_id: &str, direction: &str) -> Result<bool, Error> {
    let found: Option<i64> =
        sqlx::query_scalar("SELECT 1 FROM end_feedback WHERE contract_id = $1 AND direction = $2")
            .bind(contract_id)
            .bind(direction)
            .fetch_optional(&mut **tx)
            .await?;
    Ok(found.is_some())
}

/// A user's stored preferences: (end-of-contract reminders on, last update).
pub async fn preferences<'e, E>(
    executor: E,
    user_id: &str,
) -> Result<Option<(bool, DateTime<Utc>)>, Error>
where
    E: Executor<'e, Database = Any>,
{
    let row = sqlx::query(
        "SELECT end_feedback_reminders, updated_at FROM notification_preferences WHERE user_id = $1",
    )
    .bind(user_id)
    .fetch_optional(executor)
    .await?;
    row.map(|row| {
        Ok((
            row.try_get::<i64, _>("end_feedback_reminders")? == 1,
            from_micros(row.try_get("updated_at")?),
        ))
    })
    .transpose()
}

pub async fn set_preferences(
    tx: &mut Tx,
    user_id: &str,
    end_feedback_reminders: bool,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO notification_preferences (user_id, end_feedback_reminders, updated_at) \
         VALUES ($1, $2, $3) ON CONFLICT (user_id) DO UPDATE \
         SET end_feedback_reminders = excluded.end_feedback_reminders, updated_at = excluded.updated_at",
    )
    .bind(user_id)
    .bind(i64::from(end_feedback_reminders))
    .bind(to_micros(now))
    .execute(&mut **tx)
    .await?;
    Ok(())
}
