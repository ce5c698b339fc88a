//! Ports: what the core needs from the outside world. Adapters live in other crates
//! (`webhooks-aws`: DynamoDB; `webhooks-embedded`: SQLite for the local mode); the in-process
//! [`memory::MemoryStore`] exists for fast unit tests of the core and the router only.

use async_trait::async_trait;

use crate::webhook::{DeliveryStatus, Webhook, WebhookPatch};
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

    /// An owner's webhooks, newest first, paginated.
    async fn list(&self, query: &ListQuery) -> Result<Page, StoreError>;

    /// Every active webhook of `bucket` subscribed to `event` (fan-out).
    async fn list_for_bucket_event(
        &self,
        bucket: &BucketId,
        event: EventType,
    ) -> Result<Vec<Webhook>, StoreError>;

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
    /// by one, `lastDeliveryAt`/`lastDeliveryStatus` are set. `NotFound` if the webhook is gone.
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
