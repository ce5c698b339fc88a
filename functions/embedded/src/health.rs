//! [`SqliteHealthStore`]: the circuit breakers' states ([`HealthStore`]) in the embedded
//! database's `webhook_health` table, one row per webhook that ever failed, apart from the
//! webhook's own row (written only on the breaker's transitions, each a compare-and-set on the
//! decoded state; see [`webhooks_core::health`]).
//!
//! Must not depend on the AWS SDK or the Lambda runtime.

use async_trait::async_trait;
use rusqlite::OptionalExtension;
use webhooks_core::WebhookId;
use webhooks_core::health::{HealthStore, WebhookHealth};
use webhooks_core::ports::StoreError;

use crate::db::Database;
use crate::rows::store_error;

/// The breakers' states in the embedded database. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SqliteHealthStore {
    db: Database,
}

impl SqliteHealthStore {
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

fn sql(e: rusqlite::Error) -> StoreError {
    store_error("webhook health", &e)
}

#[async_trait]
impl HealthStore for SqliteHealthStore {
    async fn get(&self, webhook: &WebhookId) -> Result<Option<WebhookHealth>, StoreError> {
        let id = webhook.clone();
        let json: Option<String> = self.db.read(move |conn| {
            conn.prepare_cached("SELECT health FROM webhook_health WHERE webhook_id = ?1")
                .map_err(sql)?
                .query_row([id.as_str()], |r| r.get(0))
                .optional()
                .map_err(sql)
        })?;
        json.map(|j| {
            serde_json::from_str(&j)
                .map_err(|e| StoreError::Corrupt(format!("webhook health of {webhook}: {e}")))
        })
        .transpose()
    }

    async fn replace(
        &self,
        webhook: &WebhookId,
        expected: Option<&WebhookHealth>,
        health: &WebhookHealth,
    ) -> Result<bool, StoreError> {
        let id = webhook.clone();
        let expected = expected.cloned();
        let json = serde_json::to_string(health)
            .map_err(|e| StoreError::Corrupt(format!("webhook health: {e}")))?;
        self.db
            .write(move |conn| {
                // The compare is on the decoded state, so it does not depend on how the stored
                // JSON was written; the writer thread runs one call at a time, so nothing
                // changes the row between the read and the write.
                let stored: Option<String> = conn
                    .prepare_cached("SELECT health FROM webhook_health WHERE webhook_id = ?1")
                    .map_err(sql)?
                    .query_row([id.as_str()], |r| r.get(0))
                    .optional()
                    .map_err(sql)?;
                let stored: Option<WebhookHealth> = stored
                    .map(|j| serde_json::from_str(&j))
                    .transpose()
                    .map_err(|e| StoreError::Corrupt(format!("webhook health of {id}: {e}")))?;
                if stored != expected {
                    return Ok(false);
                }
                conn.prepare_cached(
                    "INSERT INTO webhook_health (webhook_id, health) VALUES (?1, ?2)
                     ON CONFLICT (webhook_id) DO UPDATE SET health = excluded.health",
                )
                .map_err(sql)?
                .execute([id.as_str(), json.as_str()])
                .map_err(sql)?;
                Ok(true)
            })
            .await
    }

    async fn put(&self, webhook: &WebhookId, health: &WebhookHealth) -> Result<(), StoreError> {
        let id = webhook.clone();
        let json = serde_json::to_string(health)
            .map_err(|e| StoreError::Corrupt(format!("webhook health: {e}")))?;
        self.db
            .write(move |conn| {
                conn.prepare_cached(
                    "INSERT INTO webhook_health (webhook_id, health) VALUES (?1, ?2)
                     ON CONFLICT (webhook_id) DO UPDATE SET health = excluded.health",
                )
                .map_err(sql)?
                .execute([id.as_str(), json.as_str()])
                .map_err(sql)?;
                Ok(())
            })
            .await
    }

    async fn delete(&self, webhook: &WebhookId) -> Result<(), StoreError> {
        let id = webhook.clone();
        self.db
            .write(move |conn| {
                conn.prepare_cached("DELETE FROM webhook_health WHERE webhook_id = ?1")
                    .map_err(sql)?
                    .execute([id.as_str()])
                    .map_err(sql)?;
                Ok(())
            })
            .await
    }
}
