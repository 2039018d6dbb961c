//! Idempotent mutations (AIP-155): a retry with the same `request_id` and the
//! same parameters returns the first result; the same id with different
//! parameters is INVALID_ARGUMENT. Keys are per caller and per method, kept
//! at least 24 hours.
//!
//! A mutation starts with [`start`]: it either replays a stored response, or
//! opens the write transaction with the key claimed inside it. The claim is
//! a row in `idempotency_keys` inserted first, so a concurrent duplicate waits
//! on it and then replays instead of acting twice. [`finish`] stores the
//! response and commits, in the same transaction as the state change.

use chrono::{DateTime, Utc};
use prost::Message;
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::db::{Db, Tx};

/// A request's idempotency key and the fingerprint of its parameters.
#[derive(Debug, Clone)]
pub struct IdempotencyKey {
    caller: String,
    method: &'static str,
    request_id: String,
    fingerprint: String,
}

impl IdempotencyKey {
    /// `request` must be the request with its `request_id` cleared, so only
    /// the parameters are fingerprinted.
    pub fn new(
        caller: String,
        method: &'static str,
        request_id: String,
        request: &impl Message,
    ) -> Self {
        let digest = Sha256::digest(request.encode_to_vec());
        let fingerprint = digest.iter().map(|b| format!("{b:02x}")).collect();
        Self {
            caller,
            method,
            request_id,
            fingerprint,
        }
    }
}

/// Why an idempotent start failed.
#[derive(Debug, thiserror::Error)]
pub enum IdempotencyError {
    /// The same `request_id` was used before with other parameters.
    #[error("request_id was already used with different parameters")]
    Mismatch,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// The outcome of [`start`].
pub enum Started<R> {
    /// The request was seen before: here is its first response.
    Replay(R),
    /// First time: act inside this transaction, then call [`finish`].
    Fresh(Fresh),
}

/// An open write transaction, with the request's key claimed in it.
pub struct Fresh {
    pub tx: Tx,
    key: Option<IdempotencyKey>,
}

/// Opens the write transaction for a mutation, or replays its first response.
pub async fn start<R: Message + Default>(
    db: &Db,
    key: Option<IdempotencyKey>,
    now: DateTime<Utc>,
) -> Result<Started<R>, IdempotencyError> {
    let Some(key) = key else {
        return Ok(Started::Fresh(Fresh {
            tx: db.begin().await?,
            key: None,
        }));
    };
    // Two rounds suffice: a claim can only fail because a concurrent duplicate
    // committed its own, which the second round's lookup then replays.
    let mut attempts = 0;
    loop {
        attempts += 1;
        let mut tx = db.begin().await?;
        let row = sqlx::query(
            "SELECT fingerprint, response FROM idempotency_keys \
             WHERE caller = $1 AND method = $2 AND request_id = $3",
        )
        .bind(&key.caller)
        .bind(key.method)
        .bind(&key.request_id)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = row {
            let fingerprint: String = row.try_get("fingerprint")?;
            if fingerprint != key.fingerprint {
                return Err(IdempotencyError::Mismatch);
            }
            let response: Vec<u8> = row.try_get("response")?;
            let decoded = R::decode(response.as_slice())
                .map_err(|e| IdempotencyError::Database(sqlx::Error::Decode(Box::new(e))))?;
            return Ok(Started::Replay(decoded));
        }
        let claimed = sqlx::query(
            "INSERT INTO idempotency_keys (caller, method, request_id, fingerprint, response, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&key.caller)
        .bind(key.method)
        .bind(&key.request_id)
        .bind(&key.fingerprint)
        .bind(Vec::<u8>::new())
        .bind(crate::time::to_micros(now))
        .execute(&mut *tx)
        .await;
        match claimed {
            Ok(_) => return Ok(Started::Fresh(Fresh { tx, key: Some(key) })),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() && attempts < 3 => {
                tx.rollback().await.ok();
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Stores the response under the claimed key (if any) and commits.
pub async fn finish<R: Message>(fresh: Fresh, response: &R) -> Result<(), sqlx::Error> {
    let Fresh { mut tx, key } = fresh;
    if let Some(key) = key {
        sqlx::query(
            "UPDATE idempotency_keys SET response = $1 \
             WHERE caller = $2 AND method = $3 AND request_id = $4",
        )
        .bind(response.encode_to_vec())
        .bind(&key.caller)
        .bind(key.method)
        .bind(&key.request_id)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
}

/// Forgets keys created before `before`. Returns how many were removed.
pub async fn purge(db: &Db, before: DateTime<Utc>) -> Result<u64, sqlx::Error> {
    let mut tx = db.begin().await?;
    let done = sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1")
        .bind(crate::time::to_micros(before))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(done.rows_affected())
}

/// Opens and commits the transactions of a service's mutating RPCs: the
/// request's idempotency key is claimed first, and the outbox relay is woken
/// once the change (and its event) committed.
#[derive(Debug, Clone)]
pub struct Mutations {
    db: Db,
    clock: crate::clock::SharedClock,
    relay: crate::outbox::Relay,
}

impl Mutations {
    pub fn new(db: Db, clock: crate::clock::SharedClock, relay: crate::outbox::Relay) -> Self {
        Self { db, clock, relay }
    }

    /// The write transaction for `method`, or the first response of a retry.
    /// `fingerprint_of` is the request with its `request_id` cleared.
    pub async fn start<R: Message + Default>(
        &self,
        caller: &crate::auth::Caller,
        method: &'static str,
        request_id: Option<String>,
        fingerprint_of: &impl Message,
    ) -> Result<Started<R>, IdempotencyError> {
        let key =
            request_id.map(|id| IdempotencyKey::new(caller.key(), method, id, fingerprint_of));
        start(&self.db, key, self.clock.now()).await
    }

    /// Stores the response under the request's key, commits, and wakes the relay.
    pub async fn finish<R: Message>(&self, fresh: Fresh, response: R) -> Result<R, sqlx::Error> {
        finish(fresh, &response).await?;
        self.relay.poke();
        Ok(response)
    }
}
