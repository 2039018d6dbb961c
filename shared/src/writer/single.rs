//! One-statement writes for PostgreSQL's hot mutations: the pieces a store
//! needs to read what its rules need (with the call's stored idempotency key)
//! in one autocommit statement, decide in Rust, then commit the change, its
//! outbox event and its key in one more, guarded by a version the read saw.
//!
//! The guard is what makes this safe under READ COMMITTED: the write's first
//! term is an `UPDATE … WHERE version = $seen` of the row every writer of the
//! same state bumps, so a concurrent writer that committed after the read
//! makes the guard match nothing (PostgreSQL re-checks the WHERE clause on
//! the newest row version after waiting for its lock), nothing is written,
//! and the caller reads again. An acknowledged write is a committed
//! autocommit statement, exactly as the writer's COMMIT is.

use prost::Message;
use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, Row};

use super::Call;
use crate::idempotency::{IdempotencyError, Stored};
use crate::outbox::NewEvent;

/// A query of the `Any` driver with its arguments still to bind.
pub type AnyQuery<'q> = Query<'q, Any, AnyArguments>;

/// How many times a guarded write is tried before the caller falls back to
/// the writer's locking path (which always makes progress).
pub const ATTEMPTS: usize = 3;

/// Two columns for a read that also fetches the call's stored key
/// (`key_fingerprint`, `key_response`; NULL when none is stored), with the
/// key's caller, method and request id at parameters `$first`..`$first+2`
/// ([`bind_key`]).
pub fn key_columns(first: usize) -> String {
    let (caller, method, request) = (first, first + 1, first + 2);
    let from = format!(
        "FROM idempotency_keys WHERE caller = ${caller} AND method = ${method} \
         AND request_id = ${request}"
    );
    format!(
        "(SELECT fingerprint {from}) AS key_fingerprint, (SELECT response {from}) AS key_response"
    )
}

/// Binds the three parameters of [`key_columns`] (NULLs for a call without
/// a `request_id`, which matches no key).
pub fn bind_key<'q>(query: AnyQuery<'q>, call: &Call) -> AnyQuery<'q> {
    let key = call.key.as_ref();
    query
        .bind(key.map(|k| k.caller.clone()))
        .bind(key.map(|k| k.method))
        .bind(key.map(|k| k.request_id.clone()))
}

/// What a retry of `call` answers, if the read found its key stored: the
/// first response, or a mismatch if the parameters differ.
pub fn replay<R, E>(row: &AnyRow, call: &Call) -> Result<Option<Result<R, E>>, sqlx::Error>
where
    R: Message + Default,
    E: From<IdempotencyError>,
{
    let (Some(key), Some(fingerprint)) = (
        call.key.as_ref(),
        row.try_get::<Option<String>, _>("key_fingerprint")?,
    ) else {
        return Ok(None);
    };
    let response: Option<Vec<u8>> = row.try_get("key_response")?;
    let stored = Stored {
        fingerprint,
        response: response.unwrap_or_default(),
    };
    Ok(Some(stored.replay(key)))
}

/// CTE terms, after the guard term named `guard`, that add `event` to the
/// outbox and store the call's key with its response when the guard
/// matched: ten parameters from `$first` ([`bind_commit`]).
pub fn commit_terms(guard: &str, first: usize) -> String {
    let p = |i: usize| format!("${}", first + i);
    format!(
        "event AS (INSERT INTO outbox (event_id, subject_id, kind, payload, created_at) \
         SELECT {}, {}, {}, {}, {} FROM {guard}), \
         stored_key AS (INSERT INTO idempotency_keys \
         (caller, method, request_id, fingerprint, response, created_at) \
         SELECT {}, {}, {}, {}, {}, {} FROM {guard} WHERE CAST({} AS TEXT) IS NOT NULL)",
        p(0),
        p(1),
        p(2),
        p(3),
        p(4),
        p(5),
        p(6),
        p(7),
        p(8),
        p(9),
        p(4),
        p(7),
    )
}

/// Binds the parameters of [`commit_terms`]. A second request with the same
/// key that commits first makes this statement fail with a unique violation
/// ([`is_key_taken`]): nothing of it is written, and a new read replays.
fn bind_commit<'q>(
    query: AnyQuery<'q>,
    event: &NewEvent,
    call: &Call,
    response: &impl Message,
) -> AnyQuery<'q> {
    let key = call.key.as_ref();
    query
        .bind(event.event_id.clone())
        .bind(event.subject_id.clone())
        .bind(event.kind)
        .bind(event.payload.clone())
        .bind(crate::time::to_micros(event.created_at))
        .bind(key.map(|k| k.caller.clone()))
        .bind(key.map(|k| k.method))
        .bind(key.map(|k| k.request_id.clone()))
        .bind(key.map(|k| k.fingerprint.clone()))
        .bind(key.map(|_| response.encode_to_vec()))
}

/// Runs a guarded write whose own parameters are bound (its statement ends
/// `SELECT COUNT(*) AS written FROM guard`), with [`commit_terms`]' bound
/// here, and settles it: `Some(Ok(response))` once committed (the relay is
/// woken), `Some(Err)` for a failure, `None` when the guard matched nothing
/// or a same-key request committed first: read again.
pub async fn write<R: Message, E: From<sqlx::Error>>(
    db: &crate::db::Db,
    relay: &crate::outbox::Relay,
    query: AnyQuery<'_>,
    event: &NewEvent,
    call: &Call,
    response: R,
) -> Option<Result<R, E>> {
    let written = bind_commit(query, event, call, &response)
        .fetch_one(db.writer())
        .await
        .and_then(|row| row.try_get::<i64, _>("written"));
    match written {
        Ok(1) => {
            relay.poke();
            Some(Ok(response))
        }
        Ok(_) => None,
        Err(err) if is_key_taken(&err) => None,
        Err(err) => Some(Err(err.into())),
    }
}

/// Whether a guarded write failed because a concurrent request with the same
/// key committed first (read again: the key is there now).
fn is_key_taken(err: &sqlx::Error) -> bool {
    crate::db::violated_constraint(err).is_some_and(|c| c.contains("idempotency_keys"))
}
