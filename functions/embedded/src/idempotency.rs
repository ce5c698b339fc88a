//! [`SqliteIdempotencyStore`]: the `Idempotency-Key` records of `POST /api/events`
//! ([`IdempotencyStore`], see [`webhooks_core::idempotency`]) in the embedded database's
//! `idempotency_keys` table, one row per (producer, key): the record as JSON plus the columns
//! its conditions need (`version`, `expires_at`).
//!
//! Every call is one write call on the database's single writer, so `insert_or_get`'s "read,
//! then insert if absent or expired" is atomic, as DynamoDB's conditional put is. Expired rows
//! are ignored and replaced; each claim also deletes up to [`PRUNE_PER_CLAIM`] expired rows, so
//! the table holds about one day of keys.
//!
//! One process serves a data directory, so a record still in progress when the local mode
//! starts was left by a process that died mid-publish: [`release_leases`] ends those leases at
//! start, and the first repeat takes the key over at once (instead of after
//! [`LEASE_SECS`](webhooks_core::idempotency::LEASE_SECS)).
//!
//! Must not depend on the AWS SDK or the Lambda runtime.
//!
//! [`release_leases`]: SqliteIdempotencyStore::release_leases

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};
use webhooks_core::idempotency::{IdempotencyKey, IdempotencyRecord, IdempotencyStore, KeyState};
use webhooks_core::ports::StoreError;
use webhooks_core::{OwnerId, Timestamp};

use crate::db::Database;
use crate::rows::store_error;

/// Expired rows a claim deletes at most.
pub const PRUNE_PER_CLAIM: usize = 100;

/// The records in the embedded database. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SqliteIdempotencyStore {
    db: Database,
}

fn sql(e: rusqlite::Error) -> StoreError {
    store_error("idempotency keys", &e)
}

fn to_json(r: &IdempotencyRecord) -> Result<String, StoreError> {
    r.to_json()
}

fn from_json(s: &str) -> Result<IdempotencyRecord, StoreError> {
    IdempotencyRecord::from_json(s)
}

impl SqliteIdempotencyStore {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// Ends every lease still running (records in progress), as if it had run out: call once
    /// at start, before serving (see the [module docs](self)). Answers how many there were.
    pub async fn release_leases(&self) -> Result<usize, StoreError> {
        self.db
            .write(|conn| {
                let rows: Vec<(String, String, i64, String)> = conn
                    .prepare("SELECT scope, key, version, record FROM idempotency_keys WHERE in_progress = 1")
                    .map_err(sql)?
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                    .map_err(sql)?
                    .collect::<Result<_, _>>()
                    .map_err(sql)?;
                for (scope, key, version, json) in &rows {
                    let mut record = from_json(json)?;
                    record.state = KeyState::InProgress {
                        until: Timestamp::from_unix(0),
                    };
                    conn.prepare_cached(
                        "UPDATE idempotency_keys SET record = ?1
                         WHERE scope = ?2 AND key = ?3 AND version = ?4",
                    )
                    .map_err(sql)?
                    .execute(params![to_json(&record)?, scope, key, version])
                    .map_err(sql)?;
                }
                Ok(rows.len())
            })
            .await
    }
}

#[async_trait]
impl IdempotencyStore for SqliteIdempotencyStore {
    async fn insert_or_get(
        &self,
        record: &IdempotencyRecord,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        let json = to_json(record)?;
        let r = record.clone();
        self.db
            .write(move |conn| {
                let now = r.created_at.unix();
                let existing: Option<String> = conn
                    .prepare_cached(
                        "SELECT record FROM idempotency_keys
                         WHERE scope = ?1 AND key = ?2 AND expires_at > ?3",
                    )
                    .map_err(sql)?
                    .query_row(params![r.scope.as_str(), r.key.as_str(), now], |row| {
                        row.get(0)
                    })
                    .optional()
                    .map_err(sql)?;
                if let Some(existing) = existing {
                    return from_json(&existing).map(Some);
                }
                conn.prepare_cached(
                    "DELETE FROM idempotency_keys WHERE (scope, key) IN
                         (SELECT scope, key FROM idempotency_keys WHERE expires_at <= ?1 LIMIT ?2)",
                )
                .map_err(sql)?
                .execute(params![now, PRUNE_PER_CLAIM as i64])
                .map_err(sql)?;
                conn.prepare_cached(
                    "INSERT OR REPLACE INTO idempotency_keys
                         (scope, key, version, expires_at, in_progress, record)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .map_err(sql)?
                .execute(params![
                    r.scope.as_str(),
                    r.key.as_str(),
                    r.version as i64,
                    r.expires_at.unix(),
                    matches!(r.state, KeyState::InProgress { .. }),
                    json,
                ])
                .map_err(sql)?;
                Ok(None)
            })
            .await
    }

    async fn replace(&self, record: &IdempotencyRecord, expected: u64) -> Result<bool, StoreError> {
        let json = to_json(record)?;
        let r = record.clone();
        self.db
            .write(move |conn| {
                let n = conn
                    .prepare_cached(
                        "UPDATE idempotency_keys
                         SET version = ?1, expires_at = ?2, in_progress = ?3, record = ?4
                         WHERE scope = ?5 AND key = ?6 AND version = ?7",
                    )
                    .map_err(sql)?
                    .execute(params![
                        r.version as i64,
                        r.expires_at.unix(),
                        matches!(r.state, KeyState::InProgress { .. }),
                        json,
                        r.scope.as_str(),
                        r.key.as_str(),
                        expected as i64,
                    ])
                    .map_err(sql)?;
                Ok(n == 1)
            })
            .await
    }

    async fn remove(
        &self,
        scope: &OwnerId,
        key: &IdempotencyKey,
        expected: u64,
    ) -> Result<(), StoreError> {
        let (scope, key) = (scope.clone(), key.clone());
        self.db
            .write(move |conn| {
                conn.prepare_cached(
                    "DELETE FROM idempotency_keys WHERE scope = ?1 AND key = ?2 AND version = ?3",
                )
                .map_err(sql)?
                .execute(params![scope.as_str(), key.as_str(), expected as i64])
                .map_err(sql)?;
                Ok(())
            })
            .await
    }
}
