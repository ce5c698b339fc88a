//! [`SqliteDeliveryLog`]: the [`DeliveryLog`] of the local mode — attempts, finished markers and
//! dead letters — on the same embedded [`Database`] as the [`SqliteStore`](crate::SqliteStore),
//! so `finish` marks a delivery final *and* counts it on its webhook in one transaction.
//!
//! The same transaction adds the outcome to the webhook's aggregate of its hour
//! (`webhook_hourly`, [`webhooks_core::hourly`]: the dashboard's 24 h chart).
//!
//! Attempts are kept [`ATTEMPT_RETENTION_SECS`] (DynamoDB's TTL in production), hourly
//! aggregates [`HOURLY_RETENTION_SECS`] after their hour: the log prunes older ones itself, at
//! most once an hour of the dispatcher's clock, when it records an attempt, and
//! [`SqliteDeliveryLog::prune`] does it on demand.
//!
//! Must not depend on the AWS SDK or the Lambda runtime.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use async_trait::async_trait;
use rusqlite::{Connection, Row, params};
use webhooks_core::delivery::{ATTEMPT_RETENTION_SECS, AttemptRecord, AttemptStatus, DeadLetter};
use webhooks_core::hourly::{HOURLY_RETENTION_SECS, HourlyStats, LATENCY_BUCKETS, hour_of};
use webhooks_core::ports::{AttemptQuery, DeadLetterQuery, DeliveryLog, LogPage, StoreError};
use webhooks_core::recovery::RecoverJob;
use webhooks_core::webhook::DeliveryStatus;
use webhooks_core::{DeliveryId, EventType, RecoverJobId, Timestamp, WebhookId};

use crate::db::Database;
use crate::rows::{Columns, corrupt, store_error};

/// How often (in the recorded attempts' time) the log prunes itself.
const PRUNE_EVERY_SECS: i64 = 3600;

const ATTEMPT_COLUMNS: &str = "webhook_id, delivery_id, generation, attempt, event, status, \
     status_code, duration_ms, error, response_body, at";

/// What one [`SqliteDeliveryLog::prune`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Attempts older than the retention.
    pub attempts: usize,
    /// Finished markers older than the retention whose delivery has no message left in the queue.
    pub finished: usize,
    /// Hourly aggregates of hours that ended more than `HOURLY_RETENTION_SECS` ago.
    pub hourly: usize,
}

/// The delivery history and final outcomes in the embedded SQLite database.
#[derive(Debug, Clone)]
pub struct SqliteDeliveryLog {
    db: Database,
    /// The `at` (unix seconds) of the last automatic prune; `i64::MIN` until the first.
    last_prune: Arc<AtomicI64>,
}

impl SqliteDeliveryLog {
    /// The log on an open database (the one the [`SqliteStore`](crate::SqliteStore) uses: `finish`
    /// updates its webhooks' counters).
    pub fn new(db: Database) -> Self {
        Self {
            db,
            last_prune: Arc::new(AtomicI64::new(i64::MIN)),
        }
    }

    /// The database this log lives in.
    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Deletes attempts recorded before `now - ATTEMPT_RETENTION_SECS`, and finished markers as
    /// old whose delivery has no message left in the queue. A marker is what keeps a delivery
    /// from being counted twice, so it is kept for as long as its message may still come back
    /// (a worker stopped for longer than the retention leaves its messages queued).
    pub async fn prune(&self, now: Timestamp) -> Result<Pruned, StoreError> {
        self.db.write(move |conn| prune(conn, now)).await
    }

    /// [`DeliveryLog::record_attempt`] inside a write call (so the worker can record an attempt,
    /// its outcome and the queue's acknowledgement in one transaction).
    pub(crate) fn record_attempt_in(
        &self,
        conn: &Connection,
        a: &AttemptRecord,
    ) -> Result<(), StoreError> {
        let key = a.delivery_id.as_str();
        // REPLACE: the same (delivery, generation, attempt) recorded again (a
        // worker retrying a write) keeps one record, the latest.
        conn.prepare_cached(&format!(
            "INSERT OR REPLACE INTO delivery_attempts ({ATTEMPT_COLUMNS})
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
        ))
        .map_err(sql)?
        .execute(params![
            a.webhook_id.as_str(),
            key,
            a.generation,
            a.attempt,
            a.event.as_str(),
            attempt_status(a.status),
            a.status_code,
            count(key, "duration_ms", a.duration_ms)?,
            a.error,
            a.response_body,
            a.at.unix(),
        ])
        .map_err(sql)?;

        // Housekeeping by the dispatcher's clock (the attempt's `at`), so tests on a fixed
        // clock never see their data pruned by the wall clock.
        let now = a.at.unix();
        let last = self.last_prune.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= PRUNE_EVERY_SECS
            && self
                .last_prune
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            match prune(conn, a.at) {
                Ok(p) if p.attempts + p.finished + p.hourly > 0 => tracing::info!(
                    attempts = p.attempts,
                    finished = p.finished,
                    hourly = p.hourly,
                    "pruned delivery history older than the retention"
                ),
                Ok(_) => {}
                // The attempt is recorded; pruning is retried within the hour.
                Err(e) => {
                    self.last_prune.store(last, Ordering::Relaxed);
                    tracing::warn!(error = %e, "pruning the delivery history failed");
                }
            }
        }
        Ok(())
    }
}

/// Deletes the dead letters, recovery jobs and hourly aggregates of `webhook` (a deleted one) on `conn`: in the
/// store's delete transaction, and by [`DeliveryLog::purge_webhook`].
pub(crate) fn purge_webhook_in(conn: &Connection, webhook: &WebhookId) -> Result<(), StoreError> {
    for table in ["dead_letters", "recover_jobs", "webhook_hourly"] {
        conn.prepare_cached(&format!("DELETE FROM {table} WHERE webhook_id = ?1"))
            .map_err(sql)?
            .execute([webhook.as_str()])
            .map_err(sql)?;
    }
    Ok(())
}

/// [`DeliveryLog::finish`] inside a write call.
/// Counts one final outcome on the webhook (the counters, `lastDelivery*`, `failingSince` as
/// [`DeliveryLog::finish`] keeps them), with no marker. `false` when the webhook is gone.
///
/// In the same transaction it adds the outcome to the webhook's aggregate of the hour of `at`
/// ([`webhooks_core::hourly`]), with `latency_ms` (a delivering attempt's duration) when given.
pub(crate) fn count_outcome_in(
    conn: &Connection,
    webhook: &WebhookId,
    status: DeliveryStatus,
    at: Timestamp,
    latency_ms: Option<u64>,
) -> Result<bool, StoreError> {
    let (success, failure) = match status {
        DeliveryStatus::Success => (1, 0),
        DeliveryStatus::Failed => (0, 1),
    };
    let counted = conn
        .prepare_cached(
            "UPDATE webhooks SET
                 total_deliveries = total_deliveries + 1,
                 successful_deliveries = successful_deliveries + ?2,
                 failed_deliveries = failed_deliveries + ?3,
                 -- never backwards: outcomes may commit out of order (a late finish of an
                 -- older attempt leaves the newer outcome in place)
                 last_delivery_status = CASE WHEN last_delivery_at IS NULL OR ?4 >= last_delivery_at
                                             THEN ?5 ELSE last_delivery_status END,
                 last_delivery_at = CASE WHEN last_delivery_at IS NULL OR ?4 >= last_delivery_at
                                         THEN ?4 ELSE last_delivery_at END,
                 failing_since = CASE WHEN ?3 = 1 THEN COALESCE(failing_since, ?4) END
             WHERE id = ?1",
        )
        .map_err(sql)?
        .execute(params![
            webhook.as_str(),
            success,
            failure,
            at.unix(),
            status.as_str()
        ])
        .map_err(sql)?;
    if counted > 0 {
        add_hourly_in(
            conn,
            webhook,
            &HourlyStats::of_finish(status == DeliveryStatus::Success, at, latency_ms),
        )?;
    }
    Ok(counted > 0)
}

/// Adds `add` to the webhook's stored aggregate of `add.hour` (creating it).
fn add_hourly_in(
    conn: &Connection,
    webhook: &WebhookId,
    add: &HourlyStats,
) -> Result<(), StoreError> {
    let stored = conn
        .prepare_cached(
            "SELECT hour, delivered, failed, latency FROM webhook_hourly
             WHERE webhook_id = ?1 AND hour = ?2",
        )
        .map_err(sql)?
        .query_map(params![webhook.as_str(), add.hour], |r| {
            Ok(read_hourly(webhook, r))
        })
        .map_err(sql)?
        .next()
        .transpose()
        .map_err(sql)?
        .transpose()?;
    let mut sum = stored.unwrap_or_else(|| HourlyStats::empty(add.hour));
    sum.add(add);
    let latency = serde_json::to_string(&sum.latency.counts.to_vec()).map_err(|e| {
        corrupt(
            "hourly aggregate of webhook",
            webhook.as_str(),
            "latency",
            e,
        )
    })?;
    conn.prepare_cached(
        "INSERT OR REPLACE INTO webhook_hourly (webhook_id, hour, delivered, failed, latency)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .map_err(sql)?
    .execute(params![
        webhook.as_str(),
        sum.hour,
        count(webhook.as_str(), "delivered", sum.delivered)?,
        count(webhook.as_str(), "failed", sum.failed)?,
        latency
    ])
    .map_err(sql)?;
    Ok(())
}

/// One row of `webhook_hourly` (hour, delivered, failed, latency), strictly.
fn read_hourly(webhook: &WebhookId, row: &Row<'_>) -> Result<HourlyStats, StoreError> {
    let key = webhook.as_str();
    let what = "hourly aggregate of webhook";
    let column = |name: &str, e: rusqlite::Error| corrupt(what, key, name, e);
    let delivered: i64 = row.get("delivered").map_err(|e| column("delivered", e))?;
    let failed: i64 = row.get("failed").map_err(|e| column("failed", e))?;
    let latency: String = row.get("latency").map_err(|e| column("latency", e))?;
    let counts: Vec<u64> =
        serde_json::from_str(&latency).map_err(|e| corrupt(what, key, "latency", e))?;
    let mut h = HourlyStats::empty(row.get("hour").map_err(|e| column("hour", e))?);
    h.latency.counts = counts.try_into().map_err(|v: Vec<u64>| {
        corrupt(
            what,
            key,
            "latency",
            format!("{} buckets, not {LATENCY_BUCKETS}", v.len()),
        )
    })?;
    h.delivered = u64::try_from(delivered).map_err(|e| corrupt(what, key, "delivered", e))?;
    h.failed = u64::try_from(failed).map_err(|e| corrupt(what, key, "failed", e))?;
    Ok(h)
}

/// Whether [`DeliveryLog::finish`] already marked this delivery generation final.
pub(crate) fn is_finished_in(
    conn: &Connection,
    delivery: &DeliveryId,
    generation: u32,
) -> Result<bool, StoreError> {
    conn.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM finished_deliveries WHERE delivery_id = ?1 AND generation = ?2)",
    )
    .map_err(sql)?
    .query_row(params![delivery.as_str(), generation], |r| r.get(0))
    .map_err(sql)
}

pub(crate) fn finish_in(
    conn: &mut Connection,
    webhook: &WebhookId,
    delivery: &DeliveryId,
    generation: u32,
    status: DeliveryStatus,
    at: Timestamp,
    latency_ms: Option<u64>,
) -> Result<bool, StoreError> {
    // One transaction: the marker and the counters commit together or not at all, so
    // a crash can neither count a delivery without marking it nor the reverse.
    let tx = conn.savepoint().map_err(sql)?;
    let marked = tx
        .prepare_cached(
            "INSERT INTO finished_deliveries
                 (delivery_id, generation, webhook_id, status, at)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (delivery_id, generation) DO NOTHING",
        )
        .map_err(sql)?
        .execute(params![
            delivery.as_str(),
            generation,
            webhook.as_str(),
            status.as_str(),
            at.unix()
        ])
        .map_err(sql)?;
    if marked == 0 {
        return Ok(false); // already final: dropping `tx` rolls back (nothing written)
    }
    let counted = count_outcome_in(&tx, webhook, status, at, latency_ms)?;
    if !counted {
        // The webhook is gone: nothing to count, and no marker either (dropping `tx`
        // rolls the marker back).
        return Ok(false);
    }
    tx.commit().map_err(sql)?;
    Ok(true)
}

fn prune(conn: &Connection, now: Timestamp) -> Result<Pruned, StoreError> {
    let cutoff = now.unix().saturating_sub(ATTEMPT_RETENTION_SECS);
    // Every delivery id below this one was created before the cutoff (an ObjectId starts with
    // its creation time as 8 hex digits), and a delivery's attempts and outcome all come after
    // its creation: so the rows to prune are all below it, and the primary keys' ranges find
    // them without an index on `at`.
    let created_before = format!(
        "{:08x}{}",
        cutoff.clamp(0, i64::from(u32::MAX)),
        "0".repeat(16)
    );
    let attempts = conn
        .prepare_cached("DELETE FROM delivery_attempts WHERE delivery_id < ?1 AND at < ?2")
        .map_err(sql)?
        .execute(params![created_before, cutoff])
        .map_err(sql)?;
    let finished = conn
        .prepare_cached(
            // The subquery is evaluated once (into a temporary index), not per marker.
            "DELETE FROM finished_deliveries
             WHERE delivery_id < ?1 AND at < ?2
               AND delivery_id NOT IN (SELECT delivery_id FROM queue_messages
                                       WHERE delivery_id IS NOT NULL)",
        )
        .map_err(sql)?
        .execute(params![created_before, cutoff])
        .map_err(sql)?;
    let hourly = conn
        // A scan: the table holds a few dozen rows per webhook.
        .prepare_cached("DELETE FROM webhook_hourly WHERE hour < ?1")
        .map_err(sql)?
        .execute([hour_of(Timestamp::from_unix(
            now.unix().saturating_sub(HOURLY_RETENTION_SECS),
        ))])
        .map_err(sql)?;
    Ok(Pruned {
        attempts,
        finished,
        hourly,
    })
}

fn sql(e: rusqlite::Error) -> StoreError {
    store_error("", &e)
}

fn attempt_status(s: AttemptStatus) -> &'static str {
    match s {
        AttemptStatus::Success => "success",
        AttemptStatus::Failed => "failed",
    }
}

fn count(key: &str, column: &str, v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| corrupt("attempt of delivery", key, column, "out of range"))
}

/// Decodes one row selected with [`ATTEMPT_COLUMNS`], strictly: a value this build cannot read
/// back is `Corrupt`, naming the delivery and the column.
fn read_attempt(row: &Row<'_>) -> Result<AttemptRecord, StoreError> {
    let c = Columns::keyed(row, "attempt of delivery", "delivery_id")?;
    let key = c.key();
    let webhook: String = c.get("webhook_id")?;
    let event: String = c.get("event")?;
    let status: String = c.get("status")?;
    let duration_ms: i64 = c.get("duration_ms")?;
    Ok(AttemptRecord {
        webhook_id: WebhookId::parse(&webhook).map_err(|e| c.corrupt("webhook_id", e))?,
        delivery_id: DeliveryId::parse(key).map_err(|e| c.corrupt("delivery_id", e))?,
        generation: c.get("generation")?,
        attempt: c.get("attempt")?,
        event: event
            .parse::<EventType>()
            .map_err(|e| c.corrupt("event", e))?,
        status: match status.as_str() {
            "success" => AttemptStatus::Success,
            "failed" => AttemptStatus::Failed,
            _ => {
                return Err(c.corrupt("status", "unknown status"));
            }
        },
        status_code: c.get("status_code")?,
        duration_ms: u64::try_from(duration_ms).map_err(|e| c.corrupt("duration_ms", e))?,
        error: c.get("error")?,
        response_body: c.get("response_body")?,
        at: Timestamp::from_unix(c.get("at")?),
    })
}

fn query_attempts(
    conn: &Connection,
    text: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<AttemptRecord>, StoreError> {
    let mut stmt = conn.prepare_cached(text).map_err(sql)?;
    let mut rows = stmt.query(params).map_err(sql)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(sql)? {
        out.push(read_attempt(row)?);
    }
    Ok(out)
}

fn read_dead_letter(row: &Row<'_>) -> Result<DeadLetter, StoreError> {
    let c = Columns::keyed(row, "dead letter", "delivery_id")?;
    let task: String = c.get("task")?;
    Ok(DeadLetter {
        // serde_json's messages give a position and the expected type, not the body's text.
        task: serde_json::from_str(&task).map_err(|e| c.corrupt("task", e))?,
        error: c.get("error")?,
        attempts: c.get("attempts")?,
        at: Timestamp::from_unix(c.get("at")?),
    })
}

fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Where a page of attempts ended: the last attempt's place in the history's order (`at`, then
/// delivery, generation and attempt), written `at.delivery.generation.attempt`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct AttemptPosition {
    at: i64,
    delivery: String,
    generation: u32,
    attempt: u32,
}

impl AttemptPosition {
    fn of(a: &AttemptRecord) -> Self {
        Self {
            at: a.at.unix(),
            delivery: a.delivery_id.to_string(),
            generation: a.generation,
            attempt: a.attempt,
        }
    }

    fn parse(s: &str) -> Result<Self, StoreError> {
        let bad = || StoreError::Corrupt(format!("not a position in the attempts: {s:?}"));
        let mut parts = s.split('.');
        let mut next = || parts.next().ok_or_else(bad);
        let p = Self {
            at: next()?.parse().map_err(|_| bad())?,
            delivery: DeliveryId::parse(next()?).map_err(|_| bad())?.to_string(),
            generation: next()?.parse().map_err(|_| bad())?,
            attempt: next()?.parse().map_err(|_| bad())?,
        };
        Ok(p)
    }
}

impl std::fmt::Display for AttemptPosition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}.{}.{}.{}",
            self.at, self.delivery, self.generation, self.attempt
        )
    }
}

/// Where a page of dead letters ended: the last one's `at` and delivery id, `at.delivery`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct DeadLetterPosition {
    at: i64,
    delivery: String,
}

impl DeadLetterPosition {
    fn parse(s: &str) -> Result<Self, StoreError> {
        let bad = || StoreError::Corrupt(format!("not a position in the dead letters: {s:?}"));
        let (at, delivery) = s.split_once('.').ok_or_else(bad)?;
        Ok(Self {
            at: at.parse().map_err(|_| bad())?,
            delivery: DeliveryId::parse(delivery).map_err(|_| bad())?.to_string(),
        })
    }
}

impl std::fmt::Display for DeadLetterPosition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.at, self.delivery)
    }
}

/// `select` over one webhook's dead letters with `q`'s filters, after `after` (in the order of
/// `dead_letters_oldest_first`), at most `limit`; the text and its values.
fn dead_letter_select(
    select: &str,
    webhook: &WebhookId,
    q: &DeadLetterQuery,
    after: Option<&DeadLetterPosition>,
    limit_to: Option<usize>,
) -> (String, Vec<rusqlite::types::Value>) {
    let mut text = format!("{select} WHERE webhook_id = ?1");
    let mut values: Vec<rusqlite::types::Value> = vec![webhook.as_str().to_owned().into()];
    let mut bind = |text: &mut String, cond: &str, v: rusqlite::types::Value| {
        values.push(v);
        text.push_str(&cond.replace('?', &format!("?{}", values.len())));
    };
    if let Some(e) = q.event {
        // The event is in the task's JSON only (dead letters are few and read rarely).
        bind(
            &mut text,
            " AND json_extract(task, '$.event') = ?",
            e.as_str().to_owned().into(),
        );
    }
    if let Some(t) = q.since {
        bind(&mut text, " AND at >= ?", t.unix().into());
    }
    if let Some(t) = q.until {
        bind(&mut text, " AND at < ?", t.unix().into());
    }
    if let Some(p) = after {
        bind(&mut text, " AND (at, delivery_id) > (?", p.at.into());
        bind(&mut text, ", ?)", p.delivery.clone().into());
    }
    if let Some(n) = limit_to {
        bind(
            &mut text,
            " ORDER BY at, delivery_id LIMIT ?",
            limit(n).into(),
        );
    }
    (text, values)
}

fn encode_job(job: &RecoverJob) -> Result<String, StoreError> {
    serde_json::to_string(job).map_err(|e| corrupt("recover job", job.id.as_str(), "job", e))
}

fn version(job: &RecoverJob) -> Result<i64, StoreError> {
    i64::try_from(job.version)
        .map_err(|_| corrupt("recover job", job.id.as_str(), "version", "out of range"))
}

#[async_trait]
impl DeliveryLog for SqliteDeliveryLog {
    async fn record_attempt(&self, attempt: &AttemptRecord) -> Result<(), StoreError> {
        let log = self.clone();
        let a = attempt.clone();
        self.db
            .write(move |conn| log.record_attempt_in(conn, &a))
            .await
    }

    async fn attempts_of(
        &self,
        webhook: &WebhookId,
        delivery: &DeliveryId,
        generation: u32,
    ) -> Result<Vec<AttemptRecord>, StoreError> {
        let (webhook, delivery) = (webhook.clone(), delivery.clone());
        self.db.read(move |conn| {
            query_attempts(
                conn,
                &format!(
                    "SELECT {ATTEMPT_COLUMNS} FROM delivery_attempts
                         WHERE webhook_id = ?1 AND delivery_id = ?2 AND generation = ?3
                         ORDER BY attempt"
                ),
                params![webhook.as_str(), delivery.as_str(), generation],
            )
        })
    }

    async fn attempts_page(
        &self,
        webhook: &WebhookId,
        q: &AttemptQuery,
    ) -> Result<LogPage<AttemptRecord>, StoreError> {
        let webhook = webhook.clone();
        let q = q.clone();
        let after = q.after.as_deref().map(AttemptPosition::parse).transpose()?;
        self.db.read(move |conn| {
            // Only the conditions asked for go into the text (a handful of cached variants), so
            // the position is a range of `delivery_attempts_recent` and a page reads its rows.
            let mut text =
                format!("SELECT {ATTEMPT_COLUMNS} FROM delivery_attempts WHERE webhook_id = ?1");
            let mut values: Vec<rusqlite::types::Value> = vec![webhook.as_str().to_owned().into()];
            let mut bind = |text: &mut String, cond: &str, v: rusqlite::types::Value| {
                values.push(v);
                text.push_str(&cond.replace('?', &format!("?{}", values.len())));
            };
            if let Some(s) = q.status {
                bind(
                    &mut text,
                    " AND status = ?",
                    attempt_status(s).to_owned().into(),
                );
            }
            if let Some(e) = q.event {
                bind(&mut text, " AND event = ?", e.as_str().to_owned().into());
            }
            if let Some(t) = q.since {
                bind(&mut text, " AND at >= ?", t.unix().into());
            }
            if let Some(t) = q.until {
                bind(&mut text, " AND at < ?", t.unix().into());
            }
            if let Some(p) = &after {
                bind(
                    &mut text,
                    " AND (at, delivery_id, generation, attempt) < (?",
                    p.at.into(),
                );
                bind(&mut text, ", ?", p.delivery.clone().into());
                bind(&mut text, ", ?", i64::from(p.generation).into());
                bind(&mut text, ", ?)", i64::from(p.attempt).into());
            }
            bind(
                &mut text,
                " ORDER BY at DESC, delivery_id DESC, generation DESC, attempt DESC LIMIT ?",
                limit(q.limit.saturating_add(1)).into(),
            );
            let mut items = query_attempts(conn, &text, rusqlite::params_from_iter(values))?;
            let more = items.len() > q.limit;
            items.truncate(q.limit);
            let next_after = match items.last() {
                Some(a) if more => Some(AttemptPosition::of(a).to_string()),
                _ => None,
            };
            Ok(LogPage { items, next_after })
        })
    }

    async fn finish(
        &self,
        webhook: &WebhookId,
        delivery: &DeliveryId,
        generation: u32,
        status: DeliveryStatus,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        let (webhook, delivery) = (webhook.clone(), delivery.clone());
        self.db
            .write(move |conn| finish_in(conn, &webhook, &delivery, generation, status, at, None))
            .await
    }

    /// The attempt and its finish in one write call (one transaction), the attempt's duration
    /// in its hour's latency histogram.
    async fn finish_delivered(&self, attempt: &AttemptRecord) -> Result<bool, StoreError> {
        let log = self.clone();
        let a = attempt.clone();
        self.db
            .write(move |conn| {
                log.record_attempt_in(conn, &a)?;
                finish_in(
                    conn,
                    &a.webhook_id,
                    &a.delivery_id,
                    a.generation,
                    DeliveryStatus::Success,
                    a.at,
                    Some(a.duration_ms),
                )
            })
            .await
    }

    async fn hourly_stats(
        &self,
        webhook: &WebhookId,
        hours: std::ops::RangeInclusive<i64>,
    ) -> Result<Vec<HourlyStats>, StoreError> {
        let webhook = webhook.clone();
        self.db.read(move |conn| {
            conn.prepare_cached(
                "SELECT hour, delivered, failed, latency FROM webhook_hourly
                 WHERE webhook_id = ?1 AND hour BETWEEN ?2 AND ?3 ORDER BY hour",
            )
            .map_err(sql)?
            .query_map(params![webhook.as_str(), hours.start(), hours.end()], |r| {
                Ok(read_hourly(&webhook, r))
            })
            .map_err(sql)?
            .map(|r| r.map_err(sql).and_then(|h| h))
            .collect()
        })
    }

    async fn put_dead_letter(&self, dead: &DeadLetter) -> Result<(), StoreError> {
        let d = dead.clone();
        self.db
            .write(move |conn| {
                let key = d.task.delivery_id.as_str();
                let task = serde_json::to_string(&d.task)
                    .map_err(|e| corrupt("dead letter", key, "task", e))?;
                conn.prepare_cached(
                    "INSERT OR REPLACE INTO dead_letters
                         (webhook_id, delivery_id, task, error, attempts, at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .map_err(sql)?
                .execute(params![
                    d.task.webhook_id.as_str(),
                    key,
                    task,
                    d.error,
                    d.attempts,
                    d.at.unix()
                ])
                .map_err(sql)?;
                Ok(())
            })
            .await
    }

    async fn dead_letters_page(
        &self,
        webhook: &WebhookId,
        q: &DeadLetterQuery,
    ) -> Result<LogPage<DeadLetter>, StoreError> {
        let (webhook, q) = (webhook.clone(), q.clone());
        let after = q
            .after
            .as_deref()
            .map(DeadLetterPosition::parse)
            .transpose()?;
        self.db.read(move |conn| {
            let (text, values) = dead_letter_select(
                "SELECT delivery_id, task, error, attempts, at FROM dead_letters",
                &webhook,
                &q,
                after.as_ref(),
                Some(q.limit.saturating_add(1)),
            );
            let mut stmt = conn.prepare_cached(&text).map_err(sql)?;
            let mut rows = stmt
                .query(rusqlite::params_from_iter(values))
                .map_err(sql)?;
            let mut items = Vec::new();
            while let Some(row) = rows.next().map_err(sql)? {
                items.push(read_dead_letter(row)?);
            }
            let more = items.len() > q.limit;
            items.truncate(q.limit);
            let next_after = match items.last() {
                Some(d) if more => Some(
                    DeadLetterPosition {
                        at: d.at.unix(),
                        delivery: d.task.delivery_id.to_string(),
                    }
                    .to_string(),
                ),
                _ => None,
            };
            Ok(LogPage { items, next_after })
        })
    }

    async fn count_dead_letters(
        &self,
        webhook: &WebhookId,
        q: &DeadLetterQuery,
    ) -> Result<u64, StoreError> {
        let (webhook, q) = (webhook.clone(), q.clone());
        self.db.read(move |conn| {
            let (text, values) = dead_letter_select(
                "SELECT COUNT(*) FROM dead_letters",
                &webhook,
                &q,
                None,
                None,
            );
            let n: i64 = conn
                .prepare_cached(&text)
                .map_err(sql)?
                .query_row(rusqlite::params_from_iter(values), |r| r.get(0))
                .map_err(sql)?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
    }

    async fn dead_letter(
        &self,
        webhook: &WebhookId,
        delivery: &DeliveryId,
    ) -> Result<Option<DeadLetter>, StoreError> {
        let (webhook, delivery) = (webhook.clone(), delivery.clone());
        self.db.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT delivery_id, task, error, attempts, at FROM dead_letters
                         WHERE webhook_id = ?1 AND delivery_id = ?2",
                )
                .map_err(sql)?;
            let mut rows = stmt
                .query([webhook.as_str(), delivery.as_str()])
                .map_err(sql)?;
            rows.next().map_err(sql)?.map(read_dead_letter).transpose()
        })
    }

    async fn purge_webhook(&self, webhook: &WebhookId) -> Result<(), StoreError> {
        let webhook = webhook.clone();
        self.db
            .write(move |conn| purge_webhook_in(conn, &webhook))
            .await
    }

    async fn remove_dead_letter(
        &self,
        webhook: &WebhookId,
        delivery: &DeliveryId,
    ) -> Result<(), StoreError> {
        let (webhook, delivery) = (webhook.clone(), delivery.clone());
        self.db
            .write(move |conn| {
                conn.prepare_cached(
                    "DELETE FROM dead_letters WHERE webhook_id = ?1 AND delivery_id = ?2",
                )
                .map_err(sql)?
                .execute([webhook.as_str(), delivery.as_str()])
                .map_err(sql)?;
                Ok(())
            })
            .await
    }

    async fn claim_dead_letter(
        &self,
        webhook: &WebhookId,
        delivery: &DeliveryId,
        generation: u32,
    ) -> Result<bool, StoreError> {
        let (webhook, delivery) = (webhook.clone(), delivery.clone());
        // One writer runs writes one after another, so of two claims the second finds the row
        // gone (or, after a new give-up, of another generation) and deletes nothing.
        self.db
            .write(move |conn| {
                let removed = conn
                    .prepare_cached(
                        "DELETE FROM dead_letters
                         WHERE webhook_id = ?1 AND delivery_id = ?2
                           AND COALESCE(json_extract(task, '$.generation'), 0) = ?3",
                    )
                    .map_err(sql)?
                    .execute(params![webhook.as_str(), delivery.as_str(), generation])
                    .map_err(sql)?;
                Ok(removed == 1)
            })
            .await
    }

    async fn create_recover_job(&self, job: &RecoverJob) -> Result<bool, StoreError> {
        let job = job.clone();
        self.db
            .write(move |conn| {
                let text = encode_job(&job)?;
                let n = conn
                    .prepare_cached(
                        "INSERT INTO recover_jobs (webhook_id, job_id, version, job)
                         VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
                    )
                    .map_err(sql)?
                    .execute(params![
                        job.webhook_id.as_str(),
                        job.id.as_str(),
                        version(&job)?,
                        text
                    ])
                    .map_err(sql)?;
                Ok(n == 1)
            })
            .await
    }

    async fn recover_job(
        &self,
        webhook: &WebhookId,
        id: &RecoverJobId,
    ) -> Result<Option<RecoverJob>, StoreError> {
        let (webhook, id) = (webhook.clone(), id.clone());
        self.db.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT job FROM recover_jobs WHERE webhook_id = ?1 AND job_id = ?2",
                )
                .map_err(sql)?;
            let mut rows = stmt.query([webhook.as_str(), id.as_str()]).map_err(sql)?;
            let Some(row) = rows.next().map_err(sql)? else {
                return Ok(None);
            };
            let text: String = row
                .get(0)
                .map_err(|e| corrupt("recover job", id.as_str(), "job", e))?;
            serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| corrupt("recover job", id.as_str(), "job", e))
        })
    }

    async fn update_recover_job(
        &self,
        job: &RecoverJob,
        expected_version: u64,
    ) -> Result<bool, StoreError> {
        let job = job.clone();
        self.db
            .write(move |conn| {
                let text = encode_job(&job)?;
                let n = conn
                    .prepare_cached(
                        "UPDATE recover_jobs SET version = ?3, job = ?4
                         WHERE webhook_id = ?1 AND job_id = ?2 AND version = ?5",
                    )
                    .map_err(sql)?
                    .execute(params![
                        job.webhook_id.as_str(),
                        job.id.as_str(),
                        version(&job)?,
                        text,
                        i64::try_from(expected_version).unwrap_or(i64::MAX)
                    ])
                    .map_err(sql)?;
                Ok(n == 1)
            })
            .await
    }
}
