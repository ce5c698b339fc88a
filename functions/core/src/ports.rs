//! Ports: what the core needs from the outside world. Adapters live in other crates
//! (`webhooks-aws`: DynamoDB; `webhooks-embedded`: SQLite for the local mode); the in-process
//! [`memory::MemoryStore`] exists for fast unit tests of the core and the router only.

use async_trait::async_trait;

use crate::webhook::{DeliveryStatus, Subscriber, Webhook, WebhookPatch};
use crate::{BucketId, EventType, OwnerId, Timestamp, WebhookId};

pub mod memory;

/// Failures of a [`SubscriptionStore`]. Never carries SDK types or secrets.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No such webhook (or it belongs to someone else, for owner-scoped calls).
    #[error("not found")]
    NotFound,
    /// A conditional write lost: the id already exists.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The backend could not answer (throttled, unreachable, timed out). Safe to retry.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Stored data could not be read back (corrupt or written by an incompatible version).
    #[error("corrupt record: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// Whether trying the same call again later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

/// One page of a list; `next_after` is set when more items follow.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub items: Vec<Webhook>,
    /// Pass back as [`ListQuery::after`] to get the next page.
    pub next_after: Option<WebhookId>,
}

/// Which of an owner's webhooks to list: newest first (descending id), at most `limit`,
/// only ids strictly below `after` when set, only `bucket`'s when set.
#[derive(Debug, Clone, PartialEq)]
pub struct ListQuery {
    pub owner: OwnerId,
    pub bucket: Option<BucketId>,
    pub after: Option<WebhookId>,
    /// 1..=100 (the API validates it).
    pub limit: usize,
}

/// What a fan-out query ([`SubscriptionStore::list_for_bucket_event`]) found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Subscribers {
    /// The webhooks to deliver to, oldest first, as the fan-out needs them.
    pub webhooks: Vec<Subscriber>,
    /// Records of the bucket that could not be decoded, skipped.
    pub unreadable: Vec<Unreadable>,
}

/// A stored webhook record that could not be decoded (see [`StoreError::Corrupt`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    /// The record's id as stored (it may itself be what is wrong).
    pub id: String,
    /// What is wrong with it; never a secret.
    pub problem: String,
}

impl Unreadable {
    /// `error` as an unreadable record `id`, when it is `Corrupt`; any other error as it is.
    pub fn from_error(id: &str, error: StoreError) -> Result<Self, StoreError> {
        match error {
            StoreError::Corrupt(problem) => Ok(Self {
                id: id.to_owned(),
                problem,
            }),
            other => Err(other),
        }
    }
}

/// The most webhooks one bucket may hold, all owners together: creating another is refused
/// (`bucket_full`), and a publish's fan-out query reads no more than this many.
pub const MAX_WEBHOOKS_PER_BUCKET: usize = 100;

/// Where webhooks live.
///
/// Contract for every adapter:
/// - Writes are atomic per webhook: a failed call changes nothing.
/// - `create` is a conditional put: it never overwrites (`Conflict` if the id exists).
/// - Owner-scoped calls (`update`, `delete`) answer `NotFound` for a webhook of another owner,
///   exactly as for a missing one, and change nothing.
/// - `record_outcome` is an atomic counter update: concurrent outcomes for one webhook are all
///   counted, and `total = successful + failed` holds after every call.
/// - Lists are consistent with completed writes of the same process (read-after-write on the
///   primary record; fan-out queries may lag a moment on DynamoDB's eventually consistent indexes).
#[async_trait]
pub trait SubscriptionStore: Send + Sync + 'static {
    /// Stores a new webhook.
    async fn create(&self, webhook: &Webhook) -> Result<(), StoreError>;

    /// Any webhook by id, whoever owns it (the delivery side reads url, secret and retry policy
    /// here at send time). Owner checks are the caller's job.
    async fn get(&self, id: &WebhookId) -> Result<Option<Webhook>, StoreError>;

    /// [`get`](Self::get) for sending a delivery: the url, secrets, retry policy, format and
    /// `active` flag must be current, but the counters (`stats`, `last_delivery_*`,
    /// `failing_since`) may be out of date. An adapter may answer from a cache here, as long as
    /// every change made through it is seen by the next call and it says how stale anything else
    /// may be. The default is `get`.
    async fn get_for_delivery(&self, id: &WebhookId) -> Result<Option<Webhook>, StoreError> {
        self.get(id).await
    }

    /// An owner's webhooks, newest first, paginated.
    async fn list(&self, query: &ListQuery) -> Result<Page, StoreError>;

    /// Every active webhook of `bucket` subscribed to `event` (fan-out), oldest first.
    ///
    /// Bounded: the query reads at most [`MAX_WEBHOOKS_PER_BUCKET`] of the bucket's webhooks
    /// (active or not, oldest first), the most a bucket may hold, so one publish's reads and
    /// fan-out have a ceiling whoever created the webhooks.
    ///
    /// A webhook whose stored record cannot be decoded does not fail the query: it is left out
    /// and listed in [`Subscribers::unreadable`] (id and problem, never a secret), so one bad
    /// record cannot stop a bucket's deliveries. Any other failure (`Unavailable`) fails it.
    async fn list_for_bucket_event(
        &self,
        bucket: &BucketId,
        event: EventType,
    ) -> Result<Subscribers, StoreError>;

    /// How many webhooks `bucket` holds, of every owner, active or not, counting no further
    /// than `up_to` (so a count reads at most `up_to` records). Read consistently where the
    /// backend can (DynamoDB's index cannot: it may lag a completed create by a moment).
    async fn count_in_bucket(&self, bucket: &BucketId, up_to: usize) -> Result<usize, StoreError>;

    /// Applies `patch` to `owner`'s webhook `id` and returns it as stored afterwards.
    async fn update(
        &self,
        owner: &OwnerId,
        id: &WebhookId,
        patch: &WebhookPatch,
        now: Timestamp,
    ) -> Result<Webhook, StoreError>;

    /// Deletes `owner`'s webhook `id`.
    async fn delete(&self, owner: &OwnerId, id: &WebhookId) -> Result<(), StoreError>;

    /// Counts the final outcome of one delivery: `totalDeliveries` and the matching counter go up
    /// by one, `lastDeliveryAt`/`lastDeliveryStatus` are set, and `failing_since` is kept as
    /// [`DeliveryLog::finish`] keeps it. `NotFound` if the webhook is gone.
    async fn record_outcome(
        &self,
        id: &WebhookId,
        status: DeliveryStatus,
        at: Timestamp,
    ) -> Result<(), StoreError>;
}

/// The current time, injected so tests control it.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
}

// ---------------------------------------------------------------------------------------------
// Delivery side
// ---------------------------------------------------------------------------------------------

use crate::DeliveryId;
use crate::RecoverJobId;
use crate::delivery::{AttemptRecord, DeadLetter, DeliveryTask};
use crate::recovery::RecoverJob;

/// Some tasks of an `enqueue` call could not be enqueued; all others were.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{} of the deliveries could not be enqueued: {reason}", failed.len())]
pub struct EnqueueError {
    pub failed: Vec<DeliveryId>,
    pub reason: String,
}

/// Where deliveries wait to be sent: SQS in production, the embedded queue locally.
///
/// Contract: `enqueue` is at-least-once — when it returns `Ok`, every task is durably queued;
/// when it returns `Err`, the error lists the tasks that are *not* queued (the adapter has
/// already retried transient failures), and every other task is. Each message is at most
/// [`crate::delivery::MAX_MESSAGE_BYTES`] (callers check first). No ordering is promised.
/// The worker side (receive, retry after a delay, dead-letter) belongs to each adapter, driven
/// by [`crate::dispatch::Outcome`].
///
/// [`enqueue_by`](Self::enqueue_by) is the same with a deadline: by `deadline` the call has
/// returned, and every task it could not confirm by then is listed as failed (it may still
/// arrive: at-least-once). An adapter whose enqueue is a local write may ignore the deadline
/// (the default does).
#[async_trait]
pub trait DeliveryQueue: Send + Sync + 'static {
    async fn enqueue(&self, tasks: &[DeliveryTask]) -> Result<(), EnqueueError>;

    async fn enqueue_by(
        &self,
        tasks: &[DeliveryTask],
        _deadline: std::time::Instant,
    ) -> Result<(), EnqueueError> {
        self.enqueue(tasks).await
    }

    /// [`enqueue_by`](Self::enqueue_by) for tasks some of which may already have been queued
    /// (a keyed publish taken over after its publisher died, or repeated after an unconfirmed
    /// enqueue; their ids are the same, see [`crate::idempotency`]): an adapter that can tell
    /// skips every task whose delivery id it holds or has delivered (the embedded queue does);
    /// the default queues them all, and a second copy of a delivery is then counted once (the
    /// final marker is keyed by delivery) and deduplicated by receivers on `deliveryId`.
    async fn enqueue_new_by(
        &self,
        tasks: &[DeliveryTask],
        deadline: std::time::Instant,
    ) -> Result<(), EnqueueError> {
        self.enqueue_by(tasks, deadline).await
    }
}

/// Which attempts of a webhook to list ([`DeliveryLog::attempts_page`]): the log's order
/// (newest first, see [`DeliveryLog::recent_attempts`]), only those matching every filter set,
/// at most `limit`, starting after the position `after` (a [`LogPage::next_after`] of the same
/// query).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AttemptQuery {
    pub status: Option<crate::delivery::AttemptStatus>,
    pub event: Option<EventType>,
    /// Attempts made at or after this time.
    pub since: Option<Timestamp>,
    /// Attempts made before this time.
    pub until: Option<Timestamp>,
    pub after: Option<String>,
    /// 1..=100 (the API validates it).
    pub limit: usize,
}

/// Which dead letters of a webhook to list ([`DeliveryLog::dead_letters_page`]): oldest first,
/// those of `event` when set, given up at or after `since` and before `until` when set, at most
/// `limit`, starting after the position `after`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeadLetterQuery {
    pub event: Option<EventType>,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
    pub after: Option<String>,
    /// 1..=100 for the API; the recovery job reads pages of [`crate::recovery::RECOVER_PAGE`].
    pub limit: usize,
}

/// One page of the delivery log. `next_after` is set when more may follow: an adapter-made
/// position (opaque to the core; the API signs it into a cursor) to pass back as the query's
/// `after`. A page may hold fewer than `limit` items and still have a next one (an adapter
/// bounds how much it reads per call when filters skip many).
#[derive(Debug, Clone, PartialEq)]
pub struct LogPage<T> {
    pub items: Vec<T>,
    pub next_after: Option<String>,
}

/// The delivery history and final outcomes.
///
/// Contract:
/// - `record_attempt` stores one attempt, keyed by (delivery, generation, attempt): recording
///   the same attempt twice keeps one record.
/// - `finish` is atomic and idempotent: the first call for a (delivery, generation) marks it
///   final *and* counts the outcome on the webhook (`record_outcome` semantics) in one write
///   and returns `true`; later calls change nothing and return `false`. In the same write it
///   keeps `failing_since`: cleared by a success, set to `at` by a failure when not already set. A missing webhook
///   counts nothing and returns `Ok(false)`. This is what keeps stats exactly-once when a
///   worker dies between sending and acknowledging.
/// - The same write adds the outcome to the webhook's aggregate of the hour of `at`
///   ([`crate::hourly`]), and for [`finish_delivered`](Self::finish_delivered) the attempt's
///   `duration_ms` to that hour's latency histogram: an hour counts each delivery once, as the
///   stats do. [`hourly_stats`](Self::hourly_stats) reads them back.
/// - Dead letters are keyed by (webhook, delivery); putting one again replaces it.
///   `claim_dead_letter` is a conditional delete (one winner among concurrent claims).
#[async_trait]
pub trait DeliveryLog: Send + Sync + 'static {
    async fn record_attempt(&self, attempt: &AttemptRecord) -> Result<(), StoreError>;

    /// Attempts recorded for one delivery generation, in attempt order.
    async fn attempts_of(
        &self,
        webhook: &WebhookId,
        delivery: &DeliveryId,
        generation: u32,
    ) -> Result<Vec<AttemptRecord>, StoreError>;

    /// A webhook's most recent attempts, newest first: by `at`, then delivery id, generation and
    /// attempt, all descending. (The DynamoDB adapter orders by delivery id first — ids are made
    /// at publish time — so a late retry of an old delivery is listed with its delivery.)
    async fn recent_attempts(
        &self,
        webhook: &WebhookId,
        limit: usize,
    ) -> Result<Vec<AttemptRecord>, StoreError> {
        let query = AttemptQuery {
            limit,
            ..AttemptQuery::default()
        };
        Ok(self.attempts_page(webhook, &query).await?.items)
    }

    /// One page of a webhook's attempts in [`recent_attempts`](Self::recent_attempts)' order,
    /// filtered and positioned by `query`. Walking the pages lists every matching attempt once
    /// (attempts recorded meanwhile may or may not show).
    async fn attempts_page(
        &self,
        webhook: &WebhookId,
        query: &AttemptQuery,
    ) -> Result<LogPage<AttemptRecord>, StoreError>;

    async fn finish(
        &self,
        webhook: &WebhookId,
        delivery: &DeliveryId,
        generation: u32,
        status: DeliveryStatus,
        at: Timestamp,
    ) -> Result<bool, StoreError>;

    /// Records a successful `attempt` and finishes its delivery as delivered: what
    /// [`record_attempt`](Self::record_attempt) then [`finish`](Self::finish) (status success,
    /// at `attempt.at`) do, which is this default. An adapter may write both as one item (the
    /// DynamoDB log makes the final marker the attempt itself). Returns what `finish` returns.
    async fn finish_delivered(&self, attempt: &AttemptRecord) -> Result<bool, StoreError> {
        self.record_attempt(attempt).await?;
        self.finish(
            &attempt.webhook_id,
            &attempt.delivery_id,
            attempt.generation,
            DeliveryStatus::Success,
            attempt.at,
        )
        .await
    }

    /// The webhook's hourly aggregates ([`crate::hourly::HourlyStats`]) of the hours in
    /// `hours` ([`crate::hourly::hour_of`]) that have any, in any order: at most one record per
    /// hour is read, never the attempt history. Aggregates older than
    /// [`crate::hourly::HOURLY_RETENTION_SECS`] may be gone.
    async fn hourly_stats(
        &self,
        webhook: &WebhookId,
        hours: std::ops::RangeInclusive<i64>,
    ) -> Result<Vec<crate::hourly::HourlyStats>, StoreError>;

    async fn put_dead_letter(&self, dead: &DeadLetter) -> Result<(), StoreError>;

    /// A webhook's dead letters, oldest first.
    async fn dead_letters(
        &self,
        webhook: &WebhookId,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        let query = DeadLetterQuery {
            limit,
            ..DeadLetterQuery::default()
        };
        Ok(self.dead_letters_page(webhook, &query).await?.items)
    }

    /// One page of a webhook's dead letters, oldest first (by `at` then delivery id; DynamoDB:
    /// by delivery id, which is creation order), filtered and positioned by `query`. Walking
    /// the pages lists every matching dead letter that stays put meanwhile exactly once;
    /// removing listed ones (a redelivery) does not disturb the walk.
    async fn dead_letters_page(
        &self,
        webhook: &WebhookId,
        query: &DeadLetterQuery,
    ) -> Result<LogPage<DeadLetter>, StoreError>;

    /// How many dead letters `query` matches (its `after` and `limit` ignored). The default
    /// walks the pages; an adapter with a cheaper count overrides it.
    async fn count_dead_letters(
        &self,
        webhook: &WebhookId,
        query: &DeadLetterQuery,
    ) -> Result<u64, StoreError> {
        let mut q = DeadLetterQuery {
            after: None,
            limit: crate::recovery::RECOVER_PAGE,
            ..query.clone()
        };
        let mut n = 0u64;
        loop {
            let page = self.dead_letters_page(webhook, &q).await?;
            n += page.items.len() as u64;
            match page.next_after {
                Some(a) => q.after = Some(a),
                None => return Ok(n),
            }
        }
    }

    async fn dead_letter(
        &self,
        webhook: &WebhookId,
        delivery: &DeliveryId,
    ) -> Result<Option<DeadLetter>, StoreError>;

    /// Removes a dead letter. Missing is not an error.
    async fn remove_dead_letter(
        &self,
        webhook: &WebhookId,
        delivery: &DeliveryId,
    ) -> Result<(), StoreError>;

    /// Claims a dead letter for redelivery: removes it if it is still there *with this
    /// `generation`* (the one its task carries), and answers whether this call removed it. A
    /// conditional delete: of concurrent claims of one dead letter exactly one gets `true`, so
    /// it is redelivered once however many callers ask at once; a dead letter that gave up
    /// again since the caller read it (a newer generation) is left alone and answers `false`,
    /// as a missing one does.
    async fn claim_dead_letter(
        &self,
        webhook: &WebhookId,
        delivery: &DeliveryId,
        generation: u32,
    ) -> Result<bool, StoreError>;

    /// Removes everything kept for a webhook that is deleted: its dead letters (which hold
    /// delivery bodies and would otherwise be kept forever), its recovery jobs and its hourly
    /// aggregates ([`Self::hourly_stats`]). Attempts and final markers expire by themselves.
    /// Idempotent; called after the webhook is deleted (the SQLite store also does it in the
    /// delete's own transaction). The default removes the dead letters one by one, page by
    /// page (an adapter that keeps jobs or aggregates overrides it).
    async fn purge_webhook(&self, webhook: &WebhookId) -> Result<(), StoreError> {
        loop {
            let page = self.dead_letters(webhook, 100).await?;
            if page.is_empty() {
                return Ok(());
            }
            for d in page {
                self.remove_dead_letter(webhook, &d.task.delivery_id)
                    .await?;
            }
        }
    }

    /// Stores a new recovery job unless one with its (webhook, id) exists: `true` when stored,
    /// `false` (nothing written) when it existed. A conditional put.
    async fn create_recover_job(&self, job: &RecoverJob) -> Result<bool, StoreError>;

    /// One of a webhook's recovery jobs.
    async fn recover_job(
        &self,
        webhook: &WebhookId,
        id: &RecoverJobId,
    ) -> Result<Option<RecoverJob>, StoreError>;

    /// Replaces a recovery job if the stored one is still at `expected_version` (a compare and
    /// set: `false`, nothing written, when another writer got there first or it is gone).
    async fn update_recover_job(
        &self,
        job: &RecoverJob,
        expected_version: u64,
    ) -> Result<bool, StoreError>;
}

/// One HTTP request to a receiver. `Debug` shows header names only: a webhook's custom headers
/// carry credentials.
#[derive(Clone)]
pub struct OutgoingRequest {
    pub url: String,
    /// The service's headers (static names) and the webhook's custom ones.
    pub headers: Vec<(std::borrow::Cow<'static, str>, String)>,
    pub body: String,
}

impl std::fmt::Debug for OutgoingRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutgoingRequest")
            .field("url", &self.url)
            .field(
                "headers",
                &self.headers.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// What a receiver answered (any status: success or not is the dispatcher's call).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SenderResponse {
    pub status: u16,
    /// The `Retry-After` header, as sent.
    pub retry_after: Option<String>,
    /// The start of the body (at most 1 KiB).
    pub body_excerpt: String,
}

/// Why no HTTP answer came back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error("timed out after {0} s")]
    Timeout(u64),
    #[error("connection failed: {0}")]
    Connect(String),
    /// The target is not allowed (e.g. it resolves to a private address in production).
    #[error("target refused by policy: {0}")]
    Refused(String),
    #[error("request failed: {0}")]
    Other(String),
}

/// Sends one signed request. Implementations must time out (30 s default), never follow
/// redirects (a 3xx is an answer like any other), and refuse private targets unless allowed.
#[async_trait]
pub trait WebhookSender: Send + Sync + 'static {
    async fn send(&self, request: &OutgoingRequest) -> Result<SenderResponse, SendError>;
}
