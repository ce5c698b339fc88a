//! [`SqliteQueue`]: the local mode's delivery queue, with the SQS semantics the core relies on, in
//! the embedded [`Database`] (so queued and in-flight messages survive a restart).
//!
//! | SQS | here |
//! |---|---|
//! | `SendMessageBatch` | [`DeliveryQueue::enqueue`]: one transaction |
//! | `ReceiveMessage` + visibility timeout | [`SqliteQueue::receive`]: `visible_at = now + visibility` |
//! | `ApproximateReceiveCount` | `receive_count`, +1 on every receive |
//! | `DeleteMessage` | [`SqliteQueue::ack`] |
//! | `ChangeMessageVisibility` | [`SqliteQueue::retry_after`] |
//! | send to the DLQ + delete | [`SqliteQueue::move_to_dlq`]: one transaction |
//! | redrive policy (`maxReceiveCount`) + the DLQ's consumer | [`MAX_RECEIVE_COUNT`], checked on receive: the message is handed out marked [`Received::redriven`], and the worker finishes it (`Dispatcher::reconcile`: counted failed once, a dead letter with the reason) before moving it to the DLQ table |
//! | (none) | [`SqliteQueue::park`]: all of one webhook's messages held back until a time |
//!
//! **Parking** (`webhooks_core::flow`, parking). When the dispatcher defers a delivery because
//! its webhook's breaker is open or its in-flight cap is held by a slow receiver, every other
//! delivery of that webhook would be deferred too: the worker then parks the webhook in the
//! same write as the deferral. Its messages that would become visible sooner are moved to the
//! park's end (one `UPDATE` through the messages' webhook index), and a message enqueued for it
//! meanwhile is visible from the park's end only (`queue_parked`, read by primary key at
//! enqueue). Receiving is unchanged: parked messages lie past `now` in the visibility index, so
//! a receive never reads them, and a hanging receiver's backlog of thousands costs nothing
//! until its park ends (then the first message received is the breaker's probe). A park moves
//! only visibility times: receive counts, bodies and attempts are untouched, it survives a
//! restart (both are in the file), and a retry that falls inside it waits for its end, as it
//! would have been deferred then. A delivery delivered to the webhook ends its park for the
//! messages enqueued from then on ([`unpark_in`]).
//!
//! A message a worker received but never acknowledged (the worker crashed or was stopped) becomes
//! visible again when its visibility timeout passes, with a higher receive count: nothing is lost.
//! A body that cannot be read as a [`QueueTask`] is moved to the DLQ table with the
//! reason, never dropped and never a panic.
//!
//! Time is passed in explicitly (`now`) so tests control it; it is stored as unix milliseconds.
//! The worker passes [`queue_now`]: wall time anchored once per process and moved on by the
//! monotonic clock, so a step of the system clock does not change what is visible.
//! Every receipt carries the receive count it was issued for: a worker whose message was received
//! again by another (its visibility timeout passed) can no longer acknowledge, delay or
//! dead-letter it.
//!
//! Names: the `queue_dead_letters` table holds [`DlqMessage`]s, what the AWS dead-letter queue
//! holds (the message as it was queued, and why it left); a *dead letter* is the delivery log's row
//! that the API lists and redelivers (`DeliveryLog::put_dead_letter`), written when a delivery
//! gives up on either runtime.
//!
//! Must not depend on the AWS SDK or the Lambda runtime.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::Notify;
use webhooks_core::WebhookId;
use webhooks_core::delivery::{DeliveryTask, MAX_MESSAGE_BYTES, QueueTask};
use webhooks_core::ports::{DeliveryQueue, EnqueueError};

use crate::db::{Database, DbError};

/// A message received more than this many times is moved to the DLQ table instead of
/// being handed out again (SQS's `maxReceiveCount`; the arithmetic is the core's, see
/// [`webhooks_core::flow::MAX_RECEIVE_COUNT`]): it only catches messages the worker keeps failing
/// to act on (crashes, a store that stays unavailable), never a normal retry schedule.
pub use webhooks_core::flow::MAX_RECEIVE_COUNT;

/// A webhook already parked until at most this long before a new park's end is left as it is
/// (the deferred message itself still comes back at its own time): the deferrals of one batch
/// each ask for a slightly later end, and every new end moves the webhook's queued messages.
pub const PARK_SLACK: Duration = Duration::from_secs(1);

/// The insert of one message: visible from `?3`, or from the end of its webhook's park.
const INSERT_MESSAGE: &str = "INSERT INTO queue_messages
         (body, delivery_id, webhook_id, receive_count, visible_at, enqueued_at)
     VALUES (?1, ?2, ?4, 0,
             max(?3, coalesce((SELECT until FROM queue_parked WHERE webhook_id = ?4), ?3)),
             ?3)";

/// The messages a receive takes: through the visibility index, from the oldest visible, so
/// messages parked (or waiting for a retry) past `now` are never read.
const RECEIVE_CANDIDATES: &str = "SELECT id, receive_count FROM queue_messages
     WHERE visible_at <= ?1 ORDER BY visible_at, id LIMIT ?2";

/// A park's move of one webhook's messages (through the webhook index: only its messages).
const PARK_MESSAGES: &str =
    "UPDATE queue_messages SET visible_at = ?2 WHERE webhook_id = ?1 AND visible_at < ?2";

/// The queue's time for a running process: the wall clock read once (the anchor), then moved
/// on by the monotonic clock ([`Instant`]). Visibility times are stored as wall time (so they
/// mean the same after a restart, which anchors again), but while a process runs a step of the
/// system clock — an NTP correction, a manual change, a suspended VM resumed — must not make
/// every in-flight message visible at once (a step forward: each sent twice) nor hold them all
/// back (a step back). The worker reads [`queue_now`].
#[derive(Debug, Clone, Copy)]
pub struct MonotonicWall {
    anchor_wall: SystemTime,
    anchor: Instant,
}

impl MonotonicWall {
    /// Anchored at `wall` as of `at` (tests inject both).
    pub fn anchored(wall: SystemTime, at: Instant) -> Self {
        Self {
            anchor_wall: wall,
            anchor: at,
        }
    }

    /// The time at monotonic instant `at`: the anchor plus the monotonic time since it.
    pub fn at(&self, at: Instant) -> SystemTime {
        self.anchor_wall + at.saturating_duration_since(self.anchor)
    }

    pub fn now(&self) -> SystemTime {
        self.at(Instant::now())
    }
}

/// The process's [`MonotonicWall`], anchored at its first use.
pub fn queue_now() -> SystemTime {
    static CLOCK: std::sync::OnceLock<MonotonicWall> = std::sync::OnceLock::new();
    CLOCK
        .get_or_init(|| MonotonicWall::anchored(SystemTime::now(), Instant::now()))
        .now()
}

/// Proof of one receipt of one message; pass it back to act on the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Receipt {
    message_id: i64,
    receive_count: u32,
}

impl Receipt {
    /// The message's id in the queue (stable across receipts; never reused).
    pub fn message_id(&self) -> i64 {
        self.message_id
    }
}

/// One message handed to a worker.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    pub receipt: Receipt,
    pub task: DeliveryTask,
    /// How many times the message has been received, this time included (1 the first time).
    pub receive_count: u32,
    /// Caught by the redrive guard (received more than [`MAX_RECEIVE_COUNT`] times): not to be
    /// delivered but finished as the AWS dead-letter queue's consumer finishes what SQS's
    /// redrive moved there (`Dispatcher::reconcile`), then moved to the DLQ table with
    /// [`SqliteQueue::move_to_dlq`]. Until that, it comes back like any unacknowledged message.
    pub redriven: bool,
}

/// A message moved out of the queue: given up by the dispatcher, caught by the redrive guard, or
/// unreadable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DlqMessage {
    pub message_id: i64,
    /// The message body exactly as enqueued.
    pub body: String,
    pub error: String,
    /// How many times it had been received when it was moved.
    pub receive_count: u32,
    pub enqueued_at: SystemTime,
    pub dead_at: SystemTime,
}

/// The delivery queue in the embedded SQLite database. Cheap to clone; clones share the database
/// and the wake-up signal.
#[derive(Debug, Clone)]
pub struct SqliteQueue {
    db: Database,
    /// Signalled after every enqueue that added messages, so an idle worker starts at once.
    wake: Arc<Notify>,
}

fn millis(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_millis()).map_or(i64::MIN, |ms| -ms),
    }
}

fn from_millis(ms: i64) -> SystemTime {
    let d = Duration::from_millis(ms.unsigned_abs());
    if ms >= 0 {
        UNIX_EPOCH + d
    } else {
        UNIX_EPOCH - d
    }
}

fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn sql(e: rusqlite::Error) -> DbError {
    DbError::from_sqlite("delivery queue", &e)
}

fn count(n: i64) -> usize {
    usize::try_from(n).unwrap_or(0)
}

/// Moves message `id` to the DLQ table, when it is still there (and, with `receipt_count`,
/// still at that receive count). Returns whether it moved.
fn move_to_dlq_table(
    tx: &Connection,
    id: i64,
    receipt_count: Option<u32>,
    error: &str,
    now: i64,
) -> Result<bool, DbError> {
    let copied = tx
        .prepare_cached(
            "INSERT INTO queue_dead_letters (id, body, error, receive_count, enqueued_at, dead_at)
             SELECT id, body, ?2, receive_count, enqueued_at, ?3 FROM queue_messages
             WHERE id = ?1 AND (?4 IS NULL OR receive_count = ?4)",
        )
        .map_err(sql)?
        .execute(params![id, error, now, receipt_count])
        .map_err(sql)?;
    if copied == 0 {
        return Ok(false);
    }
    tx.prepare_cached("DELETE FROM queue_messages WHERE id = ?1")
        .map_err(sql)?
        .execute([id])
        .map_err(sql)?;
    Ok(true)
}

/// What a worker does with a message it received, once the delivery attempt is over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// Delete it (`DeleteMessage`).
    Ack,
    /// Visible again at this time, unix ms (`ChangeMessageVisibility`).
    RetryAt(i64),
    /// Held back by the flow control: visible again at this time (unix ms), and the receipt is
    /// given back (the receive count goes down by one), so deferrals never reach the redrive
    /// guard ([`MAX_RECEIVE_COUNT`]).
    DeferTo(i64),
    /// [`DeferTo`](Self::DeferTo) `at`, and the message's `webhook` parked until then
    /// ([`park_in`]) as of `now` (unix ms).
    Park { at: i64, webhook: String, now: i64 },
    /// Move it to the DLQ table with this error, at this time (unix ms).
    DeadLetter { error: String, at: i64 },
}

impl Action {
    pub(crate) fn retry_after(delay: Duration, now: SystemTime) -> Self {
        Action::RetryAt(millis(now).saturating_add(duration_ms(delay)))
    }

    pub(crate) fn defer(delay: Duration, now: SystemTime) -> Self {
        Action::DeferTo(millis(now).saturating_add(duration_ms(delay)))
    }

    pub(crate) fn park(webhook: &WebhookId, delay: Duration, now: SystemTime) -> Self {
        Action::Park {
            at: millis(now).saturating_add(duration_ms(delay)),
            webhook: webhook.as_str().to_owned(),
            now: millis(now),
        }
    }

    pub(crate) fn move_to_dlq(error: &str, now: SystemTime) -> Self {
        Action::DeadLetter {
            error: error.to_owned(),
            at: millis(now),
        }
    }
}

/// Carries out `action` on the message of `receipt` inside a write call. `false` when the
/// receipt is stale (the message is gone or was received again since): nothing changes then.
pub(crate) fn act_in(
    conn: &Connection,
    receipt: &Receipt,
    action: &Action,
) -> Result<bool, DbError> {
    let r = receipt;
    let changed = match action {
        Action::Ack => conn
            .prepare_cached("DELETE FROM queue_messages WHERE id = ?1 AND receive_count = ?2")
            .map_err(sql)?
            .execute(params![r.message_id, r.receive_count])
            .map_err(sql)?,
        Action::RetryAt(at) => conn
            .prepare_cached(
                "UPDATE queue_messages SET visible_at = ?3 WHERE id = ?1 AND receive_count = ?2",
            )
            .map_err(sql)?
            .execute(params![r.message_id, r.receive_count, at])
            .map_err(sql)?,
        Action::DeferTo(at) => conn
            .prepare_cached(
                "UPDATE queue_messages SET visible_at = ?3, receive_count = receive_count - 1
                 WHERE id = ?1 AND receive_count = ?2 AND receive_count > 0",
            )
            .map_err(sql)?
            .execute(params![r.message_id, r.receive_count, at])
            .map_err(sql)?,
        Action::Park { at, webhook, now } => {
            let deferred = act_in(conn, receipt, &Action::DeferTo(*at))?;
            if deferred {
                park_in(conn, webhook, *at, *now)?;
            }
            return Ok(deferred);
        }
        Action::DeadLetter { error, at } => {
            return move_to_dlq_table(conn, r.message_id, Some(r.receive_count), error, *at);
        }
    };
    Ok(changed > 0)
}

/// Parks `webhook` until `until` (unix ms) inside a write call, as of `now`: its messages that
/// would be visible before then are visible from then on, and so are those enqueued until
/// then (see the [module docs](self)). Nothing else about a message changes. A park that
/// already lasts until [`PARK_SLACK`] before `until` or later is kept as it is. Returns how many
/// messages were moved.
pub(crate) fn park_in(
    conn: &Connection,
    webhook: &str,
    until: i64,
    now: i64,
) -> Result<usize, DbError> {
    let current: Option<i64> = conn
        .prepare_cached("SELECT until FROM queue_parked WHERE webhook_id = ?1")
        .map_err(sql)?
        .query_row([webhook], |r| r.get(0))
        .optional()
        .map_err(sql)?;
    if current.is_some_and(|c| c > now && c.saturating_add(duration_ms(PARK_SLACK)) >= until) {
        return Ok(0);
    }
    // Parks that are over go, so the table holds the webhooks parked now (a few rows).
    conn.prepare_cached("DELETE FROM queue_parked WHERE until <= ?1")
        .map_err(sql)?
        .execute([now])
        .map_err(sql)?;
    conn.prepare_cached(
        "INSERT INTO queue_parked (webhook_id, until) VALUES (?1, ?2)
         ON CONFLICT (webhook_id) DO UPDATE SET until = max(until, excluded.until)",
    )
    .map_err(sql)?
    .execute(params![webhook, until])
    .map_err(sql)?;
    conn.prepare_cached(PARK_MESSAGES)
        .map_err(sql)?
        .execute(params![webhook, until])
        .map_err(sql)
}

/// Ends `webhook`'s park inside a write call (a delivery to it was delivered): messages
/// enqueued for it from now on are visible at once. The messages the park moved keep their
/// time (a retry among them cannot be told from them).
pub(crate) fn unpark_in(conn: &Connection, webhook: &str) -> Result<(), DbError> {
    conn.prepare_cached("DELETE FROM queue_parked WHERE webhook_id = ?1")
        .map_err(sql)?
        .execute([webhook])
        .map_err(sql)?;
    Ok(())
}

impl SqliteQueue {
    /// The queue on an open database (usually the one the store and the log use).
    pub fn new(db: Database) -> Self {
        Self {
            db,
            wake: Arc::new(Notify::new()),
        }
    }

    /// The database this queue lives in.
    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Resolves after the next `enqueue` that added messages (or at once if one happened since
    /// the last wait), so a worker can sleep until there is work. Wakes every waiting worker of
    /// this queue and its clones; enqueues by another process on the same file are not seen here
    /// (workers also poll).
    pub async fn notified(&self) {
        self.wake.notified().await;
    }

    /// [`DeliveryQueue::enqueue`] with an explicit enqueue time (the messages are visible from
    /// `now`). All tasks go in one transaction: all are queued or none. A task whose message
    /// would exceed [`MAX_MESSAGE_BYTES`] is refused (as SQS refuses it) and listed in the error;
    /// the others are queued.
    pub async fn enqueue_at(
        &self,
        tasks: &[DeliveryTask],
        now: SystemTime,
    ) -> Result<(), EnqueueError> {
        let mut rows = Vec::with_capacity(tasks.len());
        let mut too_large = Vec::new();
        for task in tasks {
            let body = QueueTask::DeliveryV1(task.clone()).to_json();
            if body.len() > MAX_MESSAGE_BYTES {
                too_large.push(task.delivery_id.clone());
            } else {
                rows.push((
                    task.delivery_id.as_str().to_owned(),
                    task.webhook_id.as_str().to_owned(),
                    body,
                ));
            }
        }
        let at = millis(now);
        let added = rows.len();
        if added > 0 {
            let result = self
                .db
                .write_bulk(move |conn: &mut Connection| {
                    let tx = conn.savepoint().map_err(sql)?;
                    {
                        let mut insert = tx.prepare_cached(INSERT_MESSAGE).map_err(sql)?;
                        for (delivery_id, webhook_id, body) in &rows {
                            insert
                                .execute(params![body, delivery_id, at, webhook_id])
                                .map_err(sql)?;
                        }
                    }
                    tx.commit().map_err(sql)
                })
                .await;
            if let Err(e) = result {
                // Nothing was committed: every task is reported (the busy timeout already waited
                // out transient locks).
                return Err(EnqueueError {
                    failed: tasks.iter().map(|t| t.delivery_id.clone()).collect(),
                    reason: e.to_string(),
                });
            }
            // Both: `notify_waiters` wakes every idle worker now; `notify_one` leaves a permit
            // for a worker that is between its last receive and its wait, so no wake-up is lost.
            self.wake.notify_waiters();
            self.wake.notify_one();
            tracing::debug!(messages = added, "enqueued deliveries");
        }
        if too_large.is_empty() {
            Ok(())
        } else {
            Err(EnqueueError {
                failed: too_large,
                reason: format!("message larger than {MAX_MESSAGE_BYTES} bytes"),
            })
        }
    }

    /// Takes up to `max` visible messages (`visible_at <= now`), oldest-visible first, and hides
    /// each from other receivers until `now + visibility`, counting the receipt. A message
    /// already received [`MAX_RECEIVE_COUNT`] times comes back marked
    /// [`redriven`](Received::redriven) (not to be delivered: finished, then moved to the
    /// dead-letter table by the worker); a message whose body is not a readable
    /// [`QueueTask`] is moved there right after (so a call may return fewer than `max` even
    /// though more are visible). Answered once all of it is committed.
    pub async fn receive(
        &self,
        max: usize,
        visibility: Duration,
        now: SystemTime,
    ) -> Result<Vec<Received>, DbError> {
        self.take(max, visibility, now, false).await
    }

    /// [`receive`](Self::receive), answered before the receipts are committed (see
    /// `Database::write_answered_before_commit`): the messages are the caller's at once — no other
    /// receiver can take them, since the commit that makes them invisible holds the write lock
    /// until then — and the commit follows within one group. Until it, reads still show the
    /// messages as visible and not received; if the process dies (or the commit fails) before
    /// it, they come back as if never received (so a receiver may get a delivery again: at
    /// least once, as always). Any outcome the caller records for a message is a later write,
    /// so it commits with or after the receipt. What the worker uses: a receive costs no
    /// commit latency.
    pub async fn receive_answered_before_commit(
        &self,
        max: usize,
        visibility: Duration,
        now: SystemTime,
    ) -> Result<Vec<Received>, DbError> {
        self.take(max, visibility, now, true).await
    }

    async fn take(
        &self,
        max: usize,
        visibility: Duration,
        now: SystemTime,
        before_commit: bool,
    ) -> Result<Vec<Received>, DbError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let now = millis(now);
        let hidden_until = now.saturating_add(duration_ms(visibility));
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        let take = move |conn: &mut Connection| {
            let candidates: Vec<(i64, u32)> = {
                let mut stmt = conn.prepare_cached(RECEIVE_CANDIDATES).map_err(sql)?;
                let rows = stmt
                    .query_map(params![now, max], |r| Ok((r.get(0)?, r.get(1)?)))
                    .map_err(sql)?;
                rows.collect::<Result<_, _>>().map_err(sql)?
            };
            let mut taken = Vec::with_capacity(candidates.len());
            for (id, receive_count) in candidates {
                // Past the redrive limit the message is still handed out, marked `redriven`
                // (see `Received`), so the worker finishes it before it leaves the queue.
                let receive_count = receive_count + 1;
                let body: String = conn
                    .prepare_cached(
                        "UPDATE queue_messages SET visible_at = ?2, receive_count = ?3
                             WHERE id = ?1 RETURNING body",
                    )
                    .map_err(sql)?
                    .query_row(params![id, hidden_until, receive_count], |r| r.get(0))
                    .map_err(sql)?;
                taken.push((id, body, receive_count));
            }
            Ok(taken)
        };
        let taken: Vec<(i64, String, u32)> = if before_commit {
            self.db.write_answered_before_commit(take).await?
        } else {
            self.db.write(take).await?
        };

        // Parsed here, off the writer thread.
        let mut received = Vec::with_capacity(taken.len());
        for (id, body, receive_count) in taken {
            let receipt = Receipt {
                message_id: id,
                receive_count,
            };
            match QueueTask::from_json(&body) {
                Ok(QueueTask::DeliveryV1(task)) => received.push(Received {
                    receipt,
                    task,
                    receive_count,
                    redriven: receive_count > MAX_RECEIVE_COUNT,
                }),
                Err(e) => {
                    // serde_json's message gives the position and what was expected; it is
                    // stored, while the log gets only the category (never body text).
                    let error = format!("unreadable message: {e}");
                    tracing::warn!(
                        message_id = id,
                        category = ?e.classify(),
                        line = e.line(),
                        column = e.column(),
                        "unreadable message moved to the DLQ table"
                    );
                    self.move_to_dlq(&receipt, &error, from_millis(now)).await?;
                }
            }
        }
        Ok(received)
    }

    /// Deletes the message (delivered, or nothing to deliver). `false` when the receipt is stale:
    /// the message is gone or was received again since.
    pub async fn ack(&self, receipt: &Receipt) -> Result<bool, DbError> {
        let r = *receipt;
        self.db
            .write(move |conn: &mut Connection| act_in(conn, &r, &Action::Ack))
            .await
    }

    /// Makes the message visible again at `now + delay` (the retry schedule). `false` when the
    /// receipt is stale.
    pub async fn retry_after(
        &self,
        receipt: &Receipt,
        delay: Duration,
        now: SystemTime,
    ) -> Result<bool, DbError> {
        let r = *receipt;
        let action = Action::retry_after(delay, now);
        self.db
            .write(move |conn: &mut Connection| act_in(conn, &r, &action))
            .await
    }

    /// Moves the message to the DLQ table with `error`, in one transaction. `false` when
    /// the receipt is stale.
    pub async fn move_to_dlq(
        &self,
        receipt: &Receipt,
        error: &str,
        now: SystemTime,
    ) -> Result<bool, DbError> {
        let r = *receipt;
        let action = Action::move_to_dlq(error, now);
        self.db
            .write(move |conn: &mut Connection| act_in(conn, &r, &action))
            .await
    }

    /// Parks `webhook` until `until`, as of `now` (see the [module docs](self)): its messages
    /// that would be visible sooner, and those enqueued meanwhile, are visible from `until`.
    /// The worker parks in the write that defers a delivery (breaker open, in-flight cap held
    /// by a slow receiver); this is that write on its own. Returns how many messages moved.
    pub async fn park(
        &self,
        webhook: &WebhookId,
        until: SystemTime,
        now: SystemTime,
    ) -> Result<usize, DbError> {
        let (webhook, until, now) = (webhook.as_str().to_owned(), millis(until), millis(now));
        self.db
            .write(move |conn: &mut Connection| park_in(conn, &webhook, until, now))
            .await
    }

    /// Until when `webhook` is parked, as of `now`; `None` when it is not.
    pub async fn parked_until(
        &self,
        webhook: &WebhookId,
        now: SystemTime,
    ) -> Result<Option<SystemTime>, DbError> {
        let (webhook, now) = (webhook.as_str().to_owned(), millis(now));
        self.db
            .read(move |conn: &Connection| {
                conn.prepare_cached(
                    "SELECT until FROM queue_parked WHERE webhook_id = ?1 AND until > ?2",
                )
                .map_err(sql)?
                .query_row(params![webhook, now], |r| r.get::<_, i64>(0))
                .optional()
                .map_err(sql)
            })
            .map(|until| until.map(from_millis))
    }

    /// Messages in the queue, visible or in flight (DLQ messages excluded).
    pub async fn len(&self) -> Result<usize, DbError> {
        self.scalar("SELECT count(*) FROM queue_messages", None)
            .await
            .map(count)
    }

    /// Whether the queue holds no message (DLQ messages excluded).
    pub async fn is_empty(&self) -> Result<bool, DbError> {
        Ok(self.len().await? == 0)
    }

    /// Messages received and not visible again yet at `now` (SQS's "messages not visible").
    pub async fn in_flight(&self, now: SystemTime) -> Result<usize, DbError> {
        self.scalar(
            "SELECT count(*) FROM queue_messages WHERE receive_count > 0 AND visible_at > ?1",
            Some(millis(now)),
        )
        .await
        .map(count)
    }

    /// Messages in the DLQ table.
    pub async fn dlq_len(&self) -> Result<usize, DbError> {
        self.scalar("SELECT count(*) FROM queue_dead_letters", None)
            .await
            .map(count)
    }

    /// Up to `limit` DLQ messages, oldest first.
    pub async fn dlq_messages(&self, limit: usize) -> Result<Vec<DlqMessage>, DbError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.db.read(move |conn: &Connection| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT id, body, error, receive_count, enqueued_at, dead_at
                         FROM queue_dead_letters ORDER BY dead_at, id LIMIT ?1",
                )
                .map_err(sql)?;
            let rows = stmt
                .query_map([limit], |r| {
                    Ok(DlqMessage {
                        message_id: r.get(0)?,
                        body: r.get(1)?,
                        error: r.get(2)?,
                        receive_count: r.get(3)?,
                        enqueued_at: from_millis(r.get(4)?),
                        dead_at: from_millis(r.get(5)?),
                    })
                })
                .map_err(sql)?;
            rows.collect::<Result<_, _>>().map_err(sql)
        })
    }

    /// When the earliest message becomes (or became) visible; `None` when the queue is empty.
    /// A worker with nothing to do sleeps until then (or until [`notified`](Self::notified)).
    pub async fn next_visible_at(&self) -> Result<Option<SystemTime>, DbError> {
        self.db
            .read(|conn: &Connection| {
                conn.prepare_cached("SELECT min(visible_at) FROM queue_messages")
                    .map_err(sql)?
                    .query_row([], |r| r.get::<_, Option<i64>>(0))
                    .map_err(sql)
            })
            .map(|ms| ms.map(from_millis))
    }

    async fn scalar(&self, text: &'static str, arg: Option<i64>) -> Result<i64, DbError> {
        self.db.read(move |conn: &Connection| {
            let mut stmt = conn.prepare_cached(text).map_err(sql)?;
            match arg {
                Some(a) => stmt.query_row([a], |r| r.get(0)),
                None => stmt.query_row([], |r| r.get(0)),
            }
            .map_err(sql)
        })
    }
}

#[async_trait]
impl DeliveryQueue for SqliteQueue {
    /// Enqueues at [`queue_now`]; see [`SqliteQueue::enqueue_at`].
    async fn enqueue(&self, tasks: &[DeliveryTask]) -> Result<(), EnqueueError> {
        self.enqueue_at(tasks, queue_now()).await
    }

    /// See [`SqliteQueue::enqueue_new_at`].
    async fn enqueue_new_by(
        &self,
        tasks: &[DeliveryTask],
        _deadline: std::time::Instant,
    ) -> Result<(), EnqueueError> {
        self.enqueue_new_at(tasks, SystemTime::now()).await
    }
}

impl SqliteQueue {
    /// [`enqueue_at`](Self::enqueue_at) for the repeat of a keyed publish
    /// ([`DeliveryQueue::enqueue_new_by`]): a task whose delivery id is in the queue (waiting,
    /// in flight or waiting for a retry) or has an attempt recorded (delivered, failed, dead-
    /// lettered: the worker records attempts in the write that removes the message, so a
    /// delivery is always in one of the two) is skipped, in the same write as the inserts, so
    /// a delivery the queue ever held is not queued twice. Checking the queue reads all of it
    /// (its delivery ids have no index, to keep the hot path's writes cheap): this runs only
    /// for repeats after a failure.
    pub async fn enqueue_new_at(
        &self,
        tasks: &[DeliveryTask],
        now: SystemTime,
    ) -> Result<(), EnqueueError> {
        let mut rows = Vec::with_capacity(tasks.len());
        let mut too_large = Vec::new();
        for task in tasks {
            let body = QueueTask::DeliveryV1(task.clone()).to_json();
            if body.len() > MAX_MESSAGE_BYTES {
                too_large.push(task.delivery_id.clone());
            } else {
                rows.push((
                    task.delivery_id.as_str().to_owned(),
                    task.webhook_id.as_str().to_owned(),
                    body,
                ));
            }
        }
        let at = millis(now);
        if !rows.is_empty() {
            let ids = serde_json::Value::from(rows.iter().map(|r| r.0.clone()).collect::<Vec<_>>())
                .to_string();
            let result = self
                .db
                .write_bulk(move |conn: &mut Connection| {
                    let tx = conn.savepoint().map_err(sql)?;
                    let added = {
                        let queued: std::collections::HashSet<String> = tx
                            .prepare_cached(
                                "SELECT delivery_id FROM queue_messages
                                 WHERE delivery_id IN (SELECT value FROM json_each(?1))",
                            )
                            .map_err(sql)?
                            .query_map([&ids], |r| r.get(0))
                            .map_err(sql)?
                            .collect::<Result<_, _>>()
                            .map_err(sql)?;
                        let mut attempted = tx
                            .prepare_cached(
                                "SELECT 1 FROM delivery_attempts WHERE delivery_id = ?1 LIMIT 1",
                            )
                            .map_err(sql)?;
                        let mut insert = tx.prepare_cached(INSERT_MESSAGE).map_err(sql)?;
                        let mut added = 0;
                        for (delivery_id, webhook_id, body) in &rows {
                            if queued.contains(delivery_id)
                                || attempted.exists([delivery_id]).map_err(sql)?
                            {
                                continue;
                            }
                            insert
                                .execute(params![body, delivery_id, at, webhook_id])
                                .map_err(sql)?;
                            added += 1;
                        }
                        added
                    };
                    tx.commit().map_err(sql)?;
                    Ok::<usize, DbError>(added)
                })
                .await;
            match result {
                Err(e) => {
                    return Err(EnqueueError {
                        failed: tasks.iter().map(|t| t.delivery_id.clone()).collect(),
                        reason: e.to_string(),
                    });
                }
                Ok(added) => {
                    self.wake.notify_waiters();
                    self.wake.notify_one();
                    tracing::debug!(messages = added, "enqueued the missing deliveries");
                }
            }
        }
        if too_large.is_empty() {
            Ok(())
        } else {
            Err(EnqueueError {
                failed: too_large,
                reason: format!("message larger than {MAX_MESSAGE_BYTES} bytes"),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_wall_clock_step_forward_does_not_make_in_flight_messages_visible() {
        // GIVEN a message received with a 30 s visibility, on a queue clock anchored at T
        let dir = tempfile::tempdir().unwrap();
        let queue = SqliteQueue::new(Database::open(&dir.path().join("q.db")).unwrap());
        let (wall, start) = (
            UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            Instant::now(),
        );
        let clock = MonotonicWall::anchored(wall, start);
        let task = DeliveryTask {
            delivery_id: webhooks_core::DeliveryId::generate(1),
            webhook_id: webhooks_core::WebhookId::generate(1),
            event: webhooks_core::EventType::DataReceived,
            generation: 0,
            attempts_made: 0,
            body: "{}".into(),
            created_at: webhooks_core::Timestamp::from_unix(1),
        };
        queue.enqueue_at(&[task], clock.at(start)).await.unwrap();
        let visibility = Duration::from_secs(30);
        let first = queue
            .receive(10, visibility, clock.at(start))
            .await
            .unwrap();
        assert_eq!(first.len(), 1);

        // WHEN the system clock jumps an hour ahead one second later
        let one_second_later = start + Duration::from_secs(1);
        let stepped_wall = wall + Duration::from_secs(3600);

        // THEN the queue's clock reads one second later, and the message stays hidden
        assert_eq!(clock.at(one_second_later), wall + Duration::from_secs(1));
        let again = queue
            .receive(10, visibility, clock.at(one_second_later))
            .await
            .unwrap();
        assert!(again.is_empty(), "still in flight");
        // (read by the stepped wall clock, it would have been handed out again)
        let by_wall = queue.receive(10, visibility, stepped_wall).await.unwrap();
        assert_eq!(by_wall.len(), 1);
        // AND its visibility ends when the monotonic clock says so
        let later = start + Duration::from_secs(3600 + 31);
        assert_eq!(clock.at(later), wall + Duration::from_secs(3631));
    }

    #[test]
    fn receiving_parking_and_enqueueing_read_only_what_they_need() {
        // (the query plans: a receive must never walk a parked backlog of thousands)
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.db");
        drop(Database::open(&path).unwrap());
        let conn = Connection::open(&path).unwrap();
        let plan = |text: &str| -> String {
            // (its parameters left unbound: NULL)
            let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {text}")).unwrap();
            let mut rows = stmt.raw_query();
            let mut steps = Vec::new();
            while let Some(row) = rows.next().unwrap() {
                steps.push(row.get::<_, String>(3).unwrap());
            }
            steps.join("; ")
        };
        let receive = plan(RECEIVE_CANDIDATES);
        assert!(
            receive.contains("USING INDEX queue_messages_by_visibility (visible_at<?)")
                && !receive.contains("TEMP B-TREE"),
            "{receive}"
        );
        let park = plan(PARK_MESSAGES);
        assert!(
            park.contains("USING INDEX queue_messages_by_webhook (webhook_id=?)"),
            "{park}"
        );
        let insert = plan(INSERT_MESSAGE);
        assert!(
            insert.contains("SEARCH queue_parked USING PRIMARY KEY (webhook_id=?)"),
            "{insert}"
        );
    }

    #[test]
    fn times_round_trip_through_milliseconds() {
        for t in [
            UNIX_EPOCH,
            UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
            UNIX_EPOCH - Duration::from_millis(5),
        ] {
            assert_eq!(from_millis(millis(t)), t);
        }
        assert_eq!(duration_ms(Duration::MAX), i64::MAX);
    }
}
