//! Idempotent mutations (AIP-155): a retry with the same `request_id` and the
//! same parameters returns the first result; the same id with different
//! parameters is INVALID_ARGUMENT. Keys are per caller and per method, kept
//! at least 24 hours.
//!
//! The writer ([`crate::writer`]) checks a request's key before running it
//! and stores the response in the same transaction as the state change.
//! This module holds the key and the statements that read and write it.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use prost::Message;
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::db::{Db, Tx};

/// A request's idempotency key and the fingerprint of its parameters.
#[derive(Debug, Clone)]
pub struct IdempotencyKey {
    pub(crate) caller: String,
    pub(crate) method: &'static str,
    pub(crate) request_id: String,
    pub(crate) fingerprint: String,
}

/// What identifies a key (its fingerprint aside).
pub type KeyId = (String, &'static str, String);

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

    pub fn id(&self) -> KeyId {
        (self.caller.clone(), self.method, self.request_id.clone())
    }

    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
}

/// Why an idempotent mutation failed before (or instead of) running.
#[derive(Debug, thiserror::Error)]
pub enum IdempotencyError {
    /// The same `request_id` was used before with other parameters.
    #[error("request_id was already used with different parameters")]
    Mismatch,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// A key's stored fingerprint and response.
#[derive(Debug, Clone)]
pub struct Stored {
    pub fingerprint: String,
    pub response: Vec<u8>,
}

impl Stored {
    /// What a retry under `key` answers: the first response, or a mismatch
    /// if its parameters differ from the first call's.
    pub fn replay<R: Message + Default, E: From<IdempotencyError>>(
        &self,
        key: &IdempotencyKey,
    ) -> Result<R, E> {
        if key.fingerprint != self.fingerprint {
            return Err(E::from(IdempotencyError::Mismatch));
        }
        R::decode(self.response.as_slice())
            .map_err(|e| E::from(IdempotencyError::Database(sqlx::Error::Decode(Box::new(e)))))
    }
}

/// The stored responses of these keys, by key (keys never seen are absent).
pub async fn lookup_many(
    tx: &mut Tx,
    keys: &[&IdempotencyKey],
) -> Result<HashMap<KeyId, Stored>, sqlx::Error> {
    let mut found = HashMap::new();
    // Three parameters a key; 100 keys a statement stays far below either
    // engine's parameter limit.
    for chunk in keys.chunks(100) {
        let sql = format!(
            "SELECT caller, method, request_id, fingerprint, response FROM idempotency_keys \
             WHERE (caller, method, request_id) IN (VALUES {})",
            crate::db::placeholder_rows(chunk.len(), 3)
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for key in chunk {
            query = query
                .bind(key.caller.clone())
                .bind(key.method)
                .bind(key.request_id.clone());
        }
        for row in query.fetch_all(&mut **tx).await? {
            let method: String = row.try_get("method")?;
            let Some(key) = chunk.iter().find(|k| k.method == method) else {
                continue;
            };
            found.insert(
                (
                    row.try_get("caller")?,
                    key.method,
                    row.try_get("request_id")?,
                ),
                Stored {
                    fingerprint: row.try_get("fingerprint")?,
                    response: row.try_get("response")?,
                },
            );
        }
    }
    Ok(found)
}

/// Stores the responses of keys first used in this transaction.
pub async fn insert_many(
    tx: &mut Tx,
    keys: &[(IdempotencyKey, Vec<u8>)],
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    for chunk in keys.chunks(100) {
        let sql = format!(
            "INSERT INTO idempotency_keys (caller, method, request_id, fingerprint, response, created_at) \
             VALUES {}",
            crate::db::placeholder_rows(chunk.len(), 6)
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (key, response) in chunk {
            query = query
                .bind(key.caller.clone())
                .bind(key.method)
                .bind(key.request_id.clone())
                .bind(key.fingerprint.clone())
                .bind(response.clone())
                .bind(crate::time::to_micros(now));
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Claims a key before acting, where other connections write concurrently
/// (PostgreSQL): a concurrent duplicate waits on the claimed row until this
/// transaction ends. `None`: claimed, act; `Some`: the key was stored by a
/// committed transaction (replay it, or refuse a mismatch).
pub async fn claim(
    tx: &mut Tx,
    key: &IdempotencyKey,
    now: DateTime<Utc>,
) -> Result<Option<Stored>, sqlx::Error> {
    let claimed = sqlx::query(
        "INSERT INTO idempotency_keys (caller, method, request_id, fingerprint, response, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
    )
    .bind(&key.caller)
    .bind(key.method)
    .bind(&key.request_id)
    .bind(&key.fingerprint)
    .bind(Vec::<u8>::new())
    .bind(crate::time::to_micros(now))
    .execute(&mut **tx)
    .await?;
    if claimed.rows_affected() == 1 {
        return Ok(None);
    }
    let row = sqlx::query(
        "SELECT fingerprint, response FROM idempotency_keys \
         WHERE caller = $1 AND method = $2 AND request_id = $3",
    )
    .bind(&key.caller)
    .bind(key.method)
    .bind(&key.request_id)
    .fetch_one(&mut **tx)
    .await?;
    Ok(Some(Stored {
        fingerprint: row.try_get("fingerprint")?,
        response: row.try_get("response")?,
    }))
}

/// Stores the response under a key claimed with [`claim`].
pub async fn store_response(
    tx: &mut Tx,
    key: &IdempotencyKey,
    response: Vec<u8>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE idempotency_keys SET response = $1 \
         WHERE caller = $2 AND method = $3 AND request_id = $4",
    )
    .bind(response)
    .bind(&key.caller)
    .bind(key.method)
    .bind(&key.request_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
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

/// Forgets keys older than `retention` at once and then every hour, until
/// `stop` resolves (each service runs one).
pub async fn purge_hourly(
    db: Db,
    clock: crate::clock::SharedClock,
    retention: chrono::Duration,
    stop: impl Future<Output = ()>,
) {
    tokio::pin!(stop);
    loop {
        match purge(&db, clock.now() - retention).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(purged = n, "forgot old idempotency keys"),
            Err(err) => tracing::warn!(error = %err, "could not purge idempotency keys"),
        }
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(std::time::Duration::from_secs(3600)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::db::DbOptions;

    #[tokio::test]
    async fn purge_forgets_only_keys_created_before_the_cut() {
        let dir = std::env::temp_dir().join(format!("purge-{}", std::process::id()));
        std::fs::remove_dir_all(&dir).ok();
        let db = Db::connect(&DbOptions::new(format!("sqlite://{}/k.db", dir.display())))
            .await
            .expect("open");
        sqlx::raw_sql(
            "CREATE TABLE idempotency_keys (caller TEXT NOT NULL, method TEXT NOT NULL, \
             request_id TEXT NOT NULL, fingerprint TEXT NOT NULL, response BLOB NOT NULL, \
             created_at BIGINT NOT NULL, PRIMARY KEY (caller, method, request_id))",
        )
        .execute(db.writer())
        .await
        .expect("schema");
        let cut = Utc
            .with_ymd_and_hms(2026, 12, 1, 12, 0, 0)
            .single()
            .expect("time");
        let key = |id: &str| IdempotencyKey::new("c".into(), "M", id.into(), &());
        let mut tx = db.begin().await.expect("begin");
        for (id, at) in [
            ("before", cut - chrono::Duration::microseconds(1)),
            ("at", cut),
            ("after", cut + chrono::Duration::seconds(1)),
        ] {
            insert_many(&mut tx, &[(key(id), Vec::new())], at)
                .await
                .expect("insert");
        }
        tx.commit().await.expect("commit");
        assert_eq!(purge(&db, cut).await.expect("purge"), 1);
        let left: Vec<String> =
            sqlx::query_scalar("SELECT request_id FROM idempotency_keys ORDER BY request_id")
                .fetch_all(db.reader())
                .await
                .expect("left");
        assert_eq!(left, ["after", "at"]);
        db.close().await;
        std::fs::remove_dir_all(dir).ok();
    }
}
