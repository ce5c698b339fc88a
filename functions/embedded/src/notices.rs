//! [`SqliteNoticeStore`]: what each webhook's owner was last told ([`NoticeStore`],
//! [`webhooks_core::notify`]) in the embedded database's `webhook_notices` table, one row per
//! webhook with something told, apart from the webhook's row (written only when a notification
//! is decided, never per delivery).
//!
//! Must not depend on the AWS SDK or the Lambda runtime.

use async_trait::async_trait;
use rusqlite::OptionalExtension;
use webhooks_core::notify::{Level, Notice, NoticeStore};
use webhooks_core::ports::StoreError;
use webhooks_core::{Timestamp, WebhookId};

use crate::db::Database;
use crate::rows::store_error;

/// The notices in the embedded database. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SqliteNoticeStore {
    db: Database,
}

impl SqliteNoticeStore {
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

fn sql(e: rusqlite::Error) -> StoreError {
    store_error("webhook notices", &e)
}

fn read_row(level: String, since: i64) -> Result<Notice, StoreError> {
    let level = Level::parse(&level)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown notice level {level:?}")))?;
    Ok(Notice {
        level,
        failing_since: Timestamp::from_unix(since),
    })
}

fn current(conn: &rusqlite::Connection, id: &str) -> Result<Option<Notice>, StoreError> {
    conn.prepare_cached("SELECT level, failing_since FROM webhook_notices WHERE webhook_id = ?1")
        .map_err(sql)?
        .query_row([id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
        .optional()
        .map_err(sql)?
        .map(|(l, s)| read_row(l, s))
        .transpose()
}

#[async_trait]
impl NoticeStore for SqliteNoticeStore {
    async fn notice(&self, webhook: &WebhookId) -> Result<Option<Notice>, StoreError> {
        let id = webhook.clone();
        self.db.read(move |conn| current(conn, id.as_str()))
    }

    async fn replace_notice(
        &self,
        webhook: &WebhookId,
        expected: Option<&Notice>,
        new: Option<&Notice>,
    ) -> Result<bool, StoreError> {
        let (id, expected, new) = (webhook.clone(), expected.copied(), new.copied());
        // The compare and the write in one transaction of the single writer: nothing else
        // writes between them.
        self.db
            .write(move |conn| {
                if current(conn, id.as_str())? != expected {
                    return Ok(false);
                }
                match new {
                    Some(n) => conn
                        .prepare_cached(
                            "INSERT INTO webhook_notices (webhook_id, level, failing_since)
                             VALUES (?1, ?2, ?3)
                             ON CONFLICT (webhook_id) DO UPDATE
                             SET level = excluded.level, failing_since = excluded.failing_since",
                        )
                        .map_err(sql)?
                        .execute(rusqlite::params![
                            id.as_str(),
                            n.level.as_str(),
                            n.failing_since.unix()
                        ])
                        .map_err(sql)?,
                    None => conn
                        .prepare_cached("DELETE FROM webhook_notices WHERE webhook_id = ?1")
                        .map_err(sql)?
                        .execute([id.as_str()])
                        .map_err(sql)?,
                };
                Ok(true)
            })
            .await
    }
}
