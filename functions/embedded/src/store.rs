//! [`SqliteStore`]: the [`SubscriptionStore`] of the local mode, on the `webhooks` table of the
//! embedded [`Database`].
//!
//! Each call is one statement or one transaction, so the port's contract (atomic writes,
//! conditional create, owner-scoped update and delete, atomic counters) is SQLite's to keep, as
//! it is DynamoDB's in the AWS adapter. Rows are decoded strictly: a value this build cannot read
//! back is [`StoreError::Corrupt`], never a panic and never a silently wrong webhook.
//!
//! [`SubscriptionStore::get_for_delivery`] (what the worker reads before every send) is served
//! from a small cache: a change made through any store on the same [`Database`] empties it at
//! once, and an entry is kept at most [`DELIVERY_CACHE_TTL`], which bounds how long a change
//! made by *another process* on the same file may go unseen by the worker.
//!
//! Must not depend on the AWS SDK or the Lambda runtime.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rusqlite::types::Value;
use rusqlite::{Connection, Params, Row, params, params_from_iter};
use webhooks_core::filter::Filter;
use webhooks_core::format::Format;
use webhooks_core::headers::CustomHeaders;
use webhooks_core::ports::{
    ListQuery, MAX_WEBHOOKS_PER_BUCKET, Page, StoreError, Subscribers, SubscriptionStore,
    Unreadable,
};
use webhooks_core::sealing::DataKey;
use webhooks_core::webhook::{
    DeliveryStats, DeliveryStatus, PreviousSecret, RetryConfig, Secret, Webhook, WebhookPatch,
};
use webhooks_core::{BucketId, EventType, OwnerId, Timestamp, WebhookId};

use crate::db::Database;
use crate::delivery_log::{count_outcome_in, purge_webhook_in};
use crate::rows::{self, Columns, store_error};

/// The columns every read selects. [`read_webhook`] reads them by name, so their order here is
/// only for the human reading the SQL.
const COLUMNS: &str = "id, owner_id, bucket_id, url, events, description, active, \
     max_retries, backoff_multiplier, initial_delay_seconds, secret, \
     total_deliveries, successful_deliveries, failed_deliveries, \
     last_delivery_at, last_delivery_status, created_at, updated_at, \
     format, previous_secret, previous_secret_expires_at, failing_since, disabled_reason, filter, headers, rate_limit";

/// How long [`SubscriptionStore::get_for_delivery`] may answer from its cache.
pub const DELIVERY_CACHE_TTL: Duration = Duration::from_secs(1);

/// Entries above this many are dropped all at once (a bound on memory, not a working limit).
const DELIVERY_CACHE_MAX: usize = 10_000;

/// Webhook subscriptions in the embedded SQLite database.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    db: Database,
    delivery_cache: Arc<Mutex<HashMap<WebhookId, Cached>>>,
}

/// A webhook (or its absence) as read at `epoch` of [`Database::webhooks_epoch`].
#[derive(Debug)]
struct Cached {
    epoch: u64,
    read_at: Instant,
    webhook: Option<Webhook>,
}

impl SqliteStore {
    /// Opens (creating if missing) the database file at `path` and the store on it. Blocking:
    /// call it at start-up.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        Ok(Self::new(Database::open(path)?))
    }

    /// The store on an already open database (which other embedded adapters may share).
    pub fn new(db: Database) -> Self {
        Self {
            db,
            delivery_cache: Arc::default(),
        }
    }

    /// Called after every committed change to a webhook's settings: every cached entry, of
    /// every store on this database, is stale from now on.
    fn settings_changed(&self) {
        self.db.webhooks_epoch().fetch_add(1, Ordering::AcqRel);
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<WebhookId, Cached>> {
        self.delivery_cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The database this store lives in.
    pub fn database(&self) -> &Database {
        &self.db
    }
}

/// A rusqlite error as the port's error (see [`store_error`]).
fn sql(e: rusqlite::Error) -> StoreError {
    store_error("", &e)
}

fn corrupt(id: &str, column: &str, why: impl std::fmt::Display) -> StoreError {
    rows::corrupt("webhook", id, column, why)
}

/// Decodes one row selected with [`COLUMNS`], opening its sealed values with `key`. Error messages
/// name the webhook and the column and say what is wrong; they never quote the secret column
/// (rusqlite's and our messages for it give only its type), and other quoted values (ids, event
/// names) are not secret.
fn read_webhook(row: &Row<'_>, key: &DataKey) -> Result<Webhook, StoreError> {
    let c = Columns::keyed(row, "webhook", "id")?;
    let id = c.key();

    let events: String = c.get("events")?;
    let events: Vec<EventType> =
        serde_json::from_str(&events).map_err(|e| corrupt(id, "events", e))?;
    let owner: String = c.get("owner_id")?;
    let bucket: String = c.get("bucket_id")?;
    let status: Option<String> = c.get("last_delivery_status")?;
    let last_delivery_status = match status.as_deref() {
        None => None,
        Some(s) => Some(
            DeliveryStatus::parse(s)
                .ok_or_else(|| corrupt(id, "last_delivery_status", "unknown status"))?,
        ),
    };
    let last_delivery_at: Option<i64> = c.get("last_delivery_at")?;
    let secret: String = c.get("secret")?;
    let secret = open(key, id, "secret", &secret)?;
    let format: String = c.get("format")?;
    let format: Format = format
        .parse()
        .map_err(|e: String| corrupt(id, "format", e))?;
    let previous: Option<String> = c.get("previous_secret")?;
    let previous_until: Option<i64> = c.get("previous_secret_expires_at")?;
    let previous_secret = match (previous, previous_until) {
        (Some(s), Some(t)) => Some(PreviousSecret {
            secret: Secret::new(open(key, id, "previous_secret", &s)?),
            expires_at: Timestamp::from_unix(t),
        }),
        (None, None) => None,
        _ => {
            return Err(corrupt(
                id,
                "previous_secret",
                "secret and expiry must be set together",
            ));
        }
    };
    let failing_since: Option<i64> = c.get("failing_since")?;
    let headers: Option<String> = c.get("headers")?;
    // The message names the column only: a header value must not end up in an error.
    let headers = headers
        .map(|h| open(key, id, "headers", &h))
        .transpose()?
        .as_deref()
        .map(CustomHeaders::from_json)
        .transpose()
        .map_err(|e| corrupt(id, "headers", e.code))?
        .unwrap_or_default();
    let filter: Option<String> = c.get("filter")?;
    let filter = filter
        .as_deref()
        .map(Filter::from_json)
        .transpose()
        .map_err(|e| corrupt(id, "filter", e))?;

    Ok(Webhook {
        id: WebhookId::parse(id).map_err(|e| corrupt(id, "id", e))?,
        owner_id: OwnerId::parse(&owner).map_err(|e| corrupt(id, "owner_id", e))?,
        bucket_id: BucketId::parse(&bucket).map_err(|e| corrupt(id, "bucket_id", e))?,
        url: c.get("url")?,
        events,
        description: c.get("description")?,
        active: c.get("active")?,
        retry_config: RetryConfig {
            max_retries: c.get("max_retries")?,
            backoff_multiplier: c.get("backoff_multiplier")?,
            initial_delay_seconds: c.get("initial_delay_seconds")?,
        },
        secret: Secret::new(secret),
        previous_secret,
        format,
        filter,
        headers,
        rate_limit: c.get("rate_limit")?,
        failing_since: failing_since.map(Timestamp::from_unix),
        disabled_reason: c.get("disabled_reason")?,
        stats: DeliveryStats {
            total_deliveries: c.get("total_deliveries")?,
            successful_deliveries: c.get("successful_deliveries")?,
            failed_deliveries: c.get("failed_deliveries")?,
        },
        last_delivery_at: last_delivery_at.map(Timestamp::from_unix),
        last_delivery_status,
        created_at: Timestamp::from_unix(c.get("created_at")?),
        updated_at: Timestamp::from_unix(c.get("updated_at")?),
    })
}

/// A stored value of `column` in clear ([`DataKey::open_stored`]: legacy values as they are).
/// The error names the column and why, never the value.
fn open(key: &DataKey, id: &str, column: &str, stored: &str) -> Result<String, StoreError> {
    let webhook = WebhookId::parse(id).map_err(|e| corrupt(id, "id", e))?;
    key.open_stored(&webhook, stored)
        .map_err(|e| corrupt(id, column, e))
}

/// What the store writes for a secret or header value: sealed for webhook `id`.
fn seal(key: &DataKey, id: &WebhookId, plaintext: &str) -> String {
    key.seal(id, plaintext)
}

/// Runs a `SELECT {COLUMNS} …` and decodes every row.
fn query_webhooks(
    conn: &Connection,
    key: &DataKey,
    sql_text: &str,
    params: impl Params,
) -> Result<Vec<Webhook>, StoreError> {
    let mut stmt = conn.prepare_cached(sql_text).map_err(sql)?;
    let mut rows = stmt.query(params).map_err(sql)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(sql)? {
        out.push(read_webhook(row, key)?);
    }
    Ok(out)
}

fn events_json(id: &WebhookId, events: &[EventType]) -> Result<String, StoreError> {
    serde_json::to_string(events).map_err(|e| corrupt(id.as_str(), "events", e))
}

/// The `headers` column: NULL when there are none, sealed otherwise.
fn stored_headers(key: &DataKey, id: &WebhookId, h: &CustomHeaders) -> Option<String> {
    (!h.is_empty()).then(|| seal(key, id, &h.to_json()))
}

fn stat(id: &WebhookId, column: &str, v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| corrupt(id.as_str(), column, "counter out of range"))
}

#[async_trait]
impl SubscriptionStore for SqliteStore {
    async fn create(&self, webhook: &Webhook) -> Result<(), StoreError> {
        let (w, key) = (webhook.clone(), self.db.sealing_key().clone());
        self.db
            .write(move |conn| {
                let events = events_json(&w.id, &w.events)?;
                // A conditional put: an existing id is left untouched and reported, never
                // replaced (`INSERT OR REPLACE` would overwrite another owner's webhook).
                let inserted = conn
                    .prepare_cached(
                        "INSERT INTO webhooks (
                            id, owner_id, bucket_id, url, events, description, active,
                            max_retries, backoff_multiplier, initial_delay_seconds, secret,
                            total_deliveries, successful_deliveries, failed_deliveries,
                            last_delivery_at, last_delivery_status, created_at, updated_at,
                            format, previous_secret, previous_secret_expires_at, failing_since,
                            disabled_reason, filter, headers, rate_limit
                         ) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14,
                                   ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26)
                         ON CONFLICT (id) DO NOTHING",
                    )
                    .map_err(sql)?
                    .execute(params![
                        w.id.as_str(),
                        w.owner_id.as_str(),
                        w.bucket_id.as_str(),
                        w.url,
                        events,
                        w.description,
                        w.active,
                        w.retry_config.max_retries,
                        w.retry_config.backoff_multiplier,
                        w.retry_config.initial_delay_seconds,
                        seal(&key, &w.id, w.secret.expose()),
                        stat(&w.id, "total_deliveries", w.stats.total_deliveries)?,
                        stat(
                            &w.id,
                            "successful_deliveries",
                            w.stats.successful_deliveries
                        )?,
                        stat(&w.id, "failed_deliveries", w.stats.failed_deliveries)?,
                        w.last_delivery_at.map(Timestamp::unix),
                        w.last_delivery_status.map(DeliveryStatus::as_str),
                        w.created_at.unix(),
                        w.updated_at.unix(),
                        w.format.as_str(),
                        w.previous_secret
                            .as_ref()
                            .map(|p| seal(&key, &w.id, p.secret.expose())),
                        w.previous_secret.as_ref().map(|p| p.expires_at.unix()),
                        w.failing_since.map(Timestamp::unix),
                        w.disabled_reason,
                        w.filter.as_ref().map(Filter::to_json),
                        stored_headers(&key, &w.id, &w.headers),
                        w.rate_limit,
                    ])
                    .map_err(sql)?;
                if inserted == 0 {
                    return Err(StoreError::Conflict(format!("webhook {} exists", w.id)));
                }
                Ok(())
            })
            .await
            .inspect(|_| self.settings_changed())
    }

    async fn get(&self, id: &WebhookId) -> Result<Option<Webhook>, StoreError> {
        let (id, key) = (id.clone(), self.db.sealing_key().clone());
        self.db.read(move |conn| {
            let found = query_webhooks(
                conn,
                &key,
                &format!("SELECT {COLUMNS} FROM webhooks WHERE id = ?1"),
                [id.as_str()],
            )?;
            Ok(found.into_iter().next())
        })
    }

    async fn get_for_delivery(&self, id: &WebhookId) -> Result<Option<Webhook>, StoreError> {
        // The epoch is read before the row: a change committed after this point bumps it, so
        // what is read here can never be cached as current past that change.
        let epoch = self.db.webhooks_epoch().load(Ordering::Acquire);
        if let Some(hit) = self
            .cache()
            .get(id)
            .filter(|c| c.epoch == epoch && c.read_at.elapsed() < DELIVERY_CACHE_TTL)
        {
            return Ok(hit.webhook.clone());
        }
        let webhook = self.get(id).await?;
        let mut cache = self.cache();
        if cache.len() >= DELIVERY_CACHE_MAX {
            cache.clear();
        }
        cache.insert(
            id.clone(),
            Cached {
                epoch,
                read_at: Instant::now(),
                webhook: webhook.clone(),
            },
        );
        Ok(webhook)
    }

    async fn list(&self, query: &ListQuery) -> Result<Page, StoreError> {
        let (q, key) = (query.clone(), self.db.sealing_key().clone());
        self.db.read(move |conn| {
            // Conditions are added only when set (rather than `?n IS NULL OR …`) so SQLite
            // walks `webhooks_by_owner` from `after` down and stops after `limit + 1` rows.
            let mut text = format!("SELECT {COLUMNS} FROM webhooks WHERE owner_id = ?1");
            let mut args = vec![Value::Text(q.owner.as_str().to_owned())];
            if let Some(bucket) = &q.bucket {
                args.push(Value::Text(bucket.as_str().to_owned()));
                text.push_str(&format!(" AND bucket_id = ?{}", args.len()));
            }
            if let Some(after) = &q.after {
                args.push(Value::Text(after.as_str().to_owned()));
                text.push_str(&format!(" AND id < ?{}", args.len()));
            }
            // One more than asked tells whether another page follows.
            let fetch = i64::try_from(q.limit.saturating_add(1)).unwrap_or(i64::MAX);
            args.push(Value::Integer(fetch));
            text.push_str(&format!(" ORDER BY id DESC LIMIT ?{}", args.len()));

            let mut items = query_webhooks(conn, &key, &text, params_from_iter(args))?;
            let more = items.len() > q.limit;
            items.truncate(q.limit);
            let next_after = if more {
                items.last().map(|w| w.id.clone())
            } else {
                None
            };
            Ok(Page { items, next_after })
        })
    }

    async fn list_for_bucket_event(
        &self,
        bucket: &BucketId,
        event: EventType,
    ) -> Result<Subscribers, StoreError> {
        let (bucket, key) = (bucket.clone(), self.db.sealing_key().clone());
        self.db.read(move |conn| {
            // The oldest bound-many of the bucket's webhooks, active or not (an inactive one
            // takes a place too), and of those the active ones. The event filter runs here
            // rather than in SQL (`json_each`): a row with unreadable events must be reported,
            // not be an SQL error or a silent miss. A row that does not decode is skipped and
            // reported (Unreadable), so it cannot stop the bucket's other deliveries.
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM
                         (SELECT * FROM webhooks WHERE bucket_id = ?1 ORDER BY id LIMIT ?2)
                     WHERE active = 1 ORDER BY id"
                ))
                .map_err(sql)?;
            let bound = i64::try_from(MAX_WEBHOOKS_PER_BUCKET).unwrap_or(i64::MAX);
            let mut rows = stmt.query(params![bucket.as_str(), bound]).map_err(sql)?;
            let mut found = Subscribers::default();
            while let Some(row) = rows.next().map_err(sql)? {
                match read_webhook(row, &key) {
                    Ok(w) if w.subscribes_to(event) => found.webhooks.push(w.subscriber()),
                    Ok(_) => {}
                    Err(e) => {
                        let id = row.get::<_, String>("id").unwrap_or_else(|_| "?".into());
                        found.unreadable.push(Unreadable::from_error(&id, e)?);
                    }
                }
            }
            Ok(found)
        })
    }

    async fn count_in_bucket(&self, bucket: &BucketId, up_to: usize) -> Result<usize, StoreError> {
        let bucket = bucket.clone();
        self.db.read(move |conn| {
            let up_to = i64::try_from(up_to).unwrap_or(i64::MAX);
            // The inner LIMIT stops the index walk after `up_to` rows.
            let n: i64 = conn
                .prepare_cached(
                    "SELECT COUNT(*) FROM
                         (SELECT 1 FROM webhooks WHERE bucket_id = ?1 LIMIT ?2)",
                )
                .map_err(sql)?
                .query_row(params![bucket.as_str(), up_to], |r| r.get(0))
                .map_err(sql)?;
            Ok(usize::try_from(n).unwrap_or(0))
        })
    }

    async fn update(
        &self,
        owner: &OwnerId,
        id: &WebhookId,
        patch: &WebhookPatch,
        now: Timestamp,
    ) -> Result<Webhook, StoreError> {
        let (owner, id, patch) = (owner.clone(), id.clone(), patch.clone());
        let key = self.db.sealing_key().clone();
        self.db
            .write(move |conn| {
                // IMMEDIATE takes the write lock before the read, so no other writer (another
                // process on the file) can change the row between our read and our write.
                let tx = conn.savepoint().map_err(sql)?;
                let mut w = query_webhooks(
                    &tx,
                    &key,
                    &format!("SELECT {COLUMNS} FROM webhooks WHERE id = ?1 AND owner_id = ?2"),
                    [id.as_str(), owner.as_str()],
                )?
                .into_iter()
                .next()
                .ok_or(StoreError::NotFound)?;
                patch.apply(&mut w, now);
                // Only the fields a patch can change: the counters belong to `record_outcome`.
                tx.prepare_cached(
                    "UPDATE webhooks SET url = ?2, events = ?3, description = ?4, active = ?5,
                         max_retries = ?6, backoff_multiplier = ?7, initial_delay_seconds = ?8,
                         secret = ?9, updated_at = ?10, format = ?11, previous_secret = ?12,
                         previous_secret_expires_at = ?13, disabled_reason = ?14, filter = ?15,
                         headers = ?16, rate_limit = ?17
                     WHERE id = ?1",
                )
                .map_err(sql)?
                .execute(params![
                    w.id.as_str(),
                    w.url,
                    events_json(&w.id, &w.events)?,
                    w.description,
                    w.active,
                    w.retry_config.max_retries,
                    w.retry_config.backoff_multiplier,
                    w.retry_config.initial_delay_seconds,
                    seal(&key, &w.id, w.secret.expose()),
                    w.updated_at.unix(),
                    w.format.as_str(),
                    w.previous_secret
                        .as_ref()
                        .map(|p| seal(&key, &w.id, p.secret.expose())),
                    w.previous_secret.as_ref().map(|p| p.expires_at.unix()),
                    w.disabled_reason,
                    w.filter.as_ref().map(Filter::to_json),
                    stored_headers(&key, &w.id, &w.headers),
                    w.rate_limit,
                ])
                .map_err(sql)?;
                tx.commit().map_err(sql)?;
                Ok(w)
            })
            .await
            .inspect(|_| self.settings_changed())
    }

    async fn delete(&self, owner: &OwnerId, id: &WebhookId) -> Result<(), StoreError> {
        let (owner, id) = (owner.clone(), id.clone());
        self.db
            .write(move |conn| {
                let deleted = conn
                    .prepare_cached("DELETE FROM webhooks WHERE id = ?1 AND owner_id = ?2")
                    .map_err(sql)?
                    .execute([id.as_str(), owner.as_str()])
                    .map_err(sql)?;
                if deleted == 0 {
                    return Err(StoreError::NotFound);
                }
                // In the same transaction: the dead letters (bodies kept for a redelivery that
                // can no longer happen) and recovery jobs go with the webhook.
                purge_webhook_in(conn, &id)
            })
            .await
            .inspect(|_| self.settings_changed())
    }

    async fn record_outcome(
        &self,
        id: &WebhookId,
        status: DeliveryStatus,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        let id = id.clone();
        self.db
            .write(move |conn| {
                // One statement, counters computed by SQLite from the stored values: concurrent
                // outcomes each add their one, and total = successful + failed stays true.
                if count_outcome_in(conn, &id, status, at, None)? {
                    Ok(())
                } else {
                    Err(StoreError::NotFound)
                }
            })
            .await
    }
}
