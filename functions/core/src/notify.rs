//! Operational notifications (issue 14): the owner of a webhook is told when it starts failing,
//! keeps failing (after 1 h and 24 h by default), is disabled (410 Gone or auto-disable) or
//! recovers — `webhook.failing`, `webhook.disabled`, `webhook.recovered`.
//!
//! ## Design
//!
//! - **One decision, pure**: [`decide`] maps what the owner was last told about a webhook (its
//!   [`Notice`]: the level and the run of failures it was about) and the webhook's state after a
//!   delivery finished ([`Observed`]) to the events to send and the notice to remember. A level
//!   is told once per run of failures: the notice is replaced with a compare-and-set
//!   ([`NoticeStore::replace_notice`]) before the event is queued, so of two workers that decide
//!   the same event at once one sends it; its delivery id is derived from the webhook, the run
//!   and the event, so a duplicate (a retried delivery) is recognisable.
//! - **The notification endpoint is a webhook**: `PUT /api/notifications {url, secret?}` stores
//!   it in the [`SubscriptionStore`] as a webhook of the owner with a derived id
//!   ([`endpoint_id`]), in the reserved bucket [`NOTIFICATIONS_BUCKET`] (no token may use it, so
//!   it is in no webhook list, route or publish), its `events` the [`OPERATIONAL_EVENTS`]. Its secret is sealed
//!   at rest like every webhook secret, and an operational event is an ordinary
//!   [`DeliveryTask`] to it: signed, retried, recorded and counted exactly like any delivery, by
//!   the same dispatcher on both runtimes.
//! - **When**: the [`Dispatcher`](crate::dispatch::Dispatcher) calls [`Notifier::after_finish`]
//!   after it finished a delivery (a success, or a final failure). A failure reads the webhook
//!   again (its `failingSince`); a success reads only the notice, through a short per-process
//!   cache ([`NOTICE_CACHE_TTL`]) whose reads a batch's records share, so a healthy webhook
//!   costs no store read per delivery. A
//!   notification never fails or delays the delivery that caused it: errors are logged. A
//!   `webhook.failing` repeat is sent with the first failed delivery that finishes after the
//!   threshold (nothing runs on a timer). Deliveries to a notification endpoint cause no
//!   notifications themselves.
//! - **Operators** ([`OperatorAlerts`]): on AWS the delivery function also publishes
//!   `webhook.disabled`, and `webhook.failing` once a run of failures reaches the last repeat
//!   (24 h by default), to an SNS topic when one is configured (`webhooks_aws::sns`, template
//!   parameter `OperatorTopicArn`); which ones is [`operator_subject`]'s rule.
//!
//! Thresholds ([`Thresholds`]) are configuration so tests can compress time; the auto-disable
//! age is the dispatcher's (`crate::flow::DEFAULT_AUTO_DISABLE_AFTER`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::FutureExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::delivery::{DeliveryTask, envelope};
use crate::ports::{Clock, DeliveryQueue, StoreError, SubscriptionStore};
use crate::shared_read::SharedReads;
use crate::validate::{UrlPolicy, validate_secret, validate_url};
use crate::webhook::{DeliveryStats, DeliveryStatus, RetryConfig, Secret, Webhook, WebhookPatch};
use crate::webhook_service::{Caller, ServiceError};
use crate::{BucketId, DeliveryId, EventType, OwnerId, Timestamp, WebhookId};

/// The reserved bucket of notification endpoints: no token may use it (see
/// [`Caller::may_use`]), so an endpoint is never listed, published to or changed through
/// `/api/webhooks`.
pub const NOTIFICATIONS_BUCKET: &str = "000000000000000000000000";
/// The events a notification endpoint is sent.
pub const OPERATIONAL_EVENTS: [EventType; 3] = [
    EventType::WebhookFailing,
    EventType::WebhookDisabled,
    EventType::WebhookRecovered,
];
/// When `webhook.failing` is told again during one run of failures (after it started).
pub const DEFAULT_FAILING_REPEATS: [Duration; 2] =
    [Duration::from_secs(3600), Duration::from_secs(24 * 3600)];
/// The latest a `webhook.failing` repeat may be set to: the dead-letter queue's retention
/// (14 days); a run of failures that long has been disabled long before (the default
/// auto-disable is 5 days).
pub const MAX_FAILING_REPEAT: Duration = Duration::from_secs(14 * 24 * 3600);
/// The text form of [`DEFAULT_FAILING_REPEATS`] ([`Thresholds::parse_secs`]): the local mode's
/// `--failing-notice-after-secs` and the delivery function's `FAILING_NOTICE_AFTER_SECONDS`.
pub const DEFAULT_FAILING_REPEATS_SECS: &str = "3600,86400";
/// How long a process trusts the notice it read or wrote last for a webhook when a delivery
/// succeeds (a `webhook.recovered` another instance's notice calls for is sent at most this
/// much later, with a later success).
pub const NOTICE_CACHE_TTL: Duration = Duration::from_secs(30);

/// Two starts of a run of failures this close are one run: where the worker commits an
/// outcome after the notifier ran (the local mode), the first failure's start is read as the
/// notifier's clock, which may differ from the committed one by a second.
const SAME_RUN_SLACK_SECS: u64 = 5;

/// The bucket id of [`NOTIFICATIONS_BUCKET`].
pub fn notifications_bucket() -> BucketId {
    BucketId::parse(NOTIFICATIONS_BUCKET).unwrap_or_else(|_| unreachable!("24 hex characters"))
}

/// The id of `owner`'s notification endpoint: 12 bytes of SHA-256 over the owner, in the
/// ObjectId form (one endpoint per user; the same id on every PUT).
pub fn endpoint_id(owner: &OwnerId) -> WebhookId {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("notifications\0{}", owner.as_str()).as_bytes());
    WebhookId::parse(&hex::encode(&digest[..12]))
        .unwrap_or_else(|_| unreachable!("24 hex characters"))
}

/// Whether `w` is a notification endpoint (its deliveries cause no notifications).
pub fn is_endpoint(w: &Webhook) -> bool {
    w.bucket_id.as_str() == NOTIFICATIONS_BUCKET
}

/// How far a run of failures has been told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Level {
    /// `webhook.failing` sent when the run started.
    Failing,
    /// Sent again after the first repeat threshold (1 h).
    FailingLong,
    /// Sent again after the second (24 h).
    FailingLonger,
    /// `webhook.disabled` sent.
    Disabled,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Failing => "failing",
            Level::FailingLong => "failingLong",
            Level::FailingLonger => "failingLonger",
            Level::Disabled => "disabled",
        }
    }

    pub fn parse(s: &str) -> Option<Level> {
        [
            Level::Failing,
            Level::FailingLong,
            Level::FailingLonger,
            Level::Disabled,
        ]
        .into_iter()
        .find(|l| l.as_str() == s)
    }
}

/// What the owner was last told about one webhook: `level` of the run of failures that began
/// at `failing_since`. No notice: nothing to take back (healthy, or recovered and told).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Notice {
    pub level: Level,
    pub failing_since: Timestamp,
}

/// When `webhook.failing` is repeated during one run of failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    pub repeats: [Duration; 2],
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            repeats: DEFAULT_FAILING_REPEATS,
        }
    }
}

impl Thresholds {
    /// Parses `"3600,86400"` (seconds, the two repeats in increasing order, from 1 to
    /// [`MAX_FAILING_REPEAT`]).
    pub fn parse_secs(s: &str) -> Result<Thresholds, String> {
        let parts: Vec<u64> = s
            .split(',')
            .map(|p| p.trim().parse::<u64>())
            .collect::<Result<_, _>>()
            .map_err(|_| format!("expected two numbers of seconds like 3600,86400, got {s:?}"))?;
        match parts.as_slice() {
            [a, b] if *a >= 1 && a < b && *b <= MAX_FAILING_REPEAT.as_secs() => Ok(Thresholds {
                repeats: [Duration::from_secs(*a), Duration::from_secs(*b)],
            }),
            _ => Err(format!(
                "expected two increasing numbers of seconds from 1 to {} like 3600,86400, got {s:?}",
                MAX_FAILING_REPEAT.as_secs()
            )),
        }
    }

    /// The level a run of failures that began at `since` has reached at `now`.
    fn failing_level(&self, since: Timestamp, now: Timestamp) -> Level {
        let age = u64::try_from(now.unix() - since.unix()).unwrap_or(0);
        if age >= self.repeats[1].as_secs() {
            Level::FailingLonger
        } else if age >= self.repeats[0].as_secs() {
            Level::FailingLong
        } else {
            Level::Failing
        }
    }
}

/// A webhook's state after one of its deliveries finished, as [`decide`] needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// The finished delivery's outcome.
    pub status: DeliveryStatus,
    /// When the current run of failures began, this delivery counted (`None` after a success).
    pub failing_since: Option<Timestamp>,
    /// Whether the webhook is active now.
    pub active: bool,
    /// Why the service disabled it (410 Gone, failing too long); `None` when a user did, or
    /// when it is active.
    pub disabled_reason: Option<String>,
    pub now: Timestamp,
}

/// An operational event to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Told {
    /// The run of failures that began at `since` reached `level` (one of the failing ones).
    Failing { level: Level, since: Timestamp },
    /// The service disabled the webhook, for `reason`.
    Disabled {
        reason: String,
        since: Option<Timestamp>,
    },
    /// A delivery succeeded after the run of failures that began at `since` was told.
    Recovered { since: Timestamp },
}

impl Told {
    pub fn event(&self) -> EventType {
        match self {
            Told::Failing { .. } => EventType::WebhookFailing,
            Told::Disabled { .. } => EventType::WebhookDisabled,
            Told::Recovered { .. } => EventType::WebhookRecovered,
        }
    }
}

/// What [`decide`] says: the events to send (at most one) and the notice to remember.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub send: Option<Told>,
    pub next: Option<Notice>,
}

/// The one decision: from what was told (`told`) and the state after a delivery finished
/// (`now`), the event to send and the notice to keep.
///
/// - Disabled by the service, not yet told so → `webhook.disabled` (told once per disable).
/// - A success with something told → `webhook.recovered`, and the notice is cleared.
/// - A failure in a run of failures whose level (by its age: started, ≥ first repeat, ≥
///   second) is above what was told of *this* run → `webhook.failing` at that level; a new
///   run (another `failingSince`) starts from nothing. A webhook told disabled and since
///   re-enabled starts again from nothing too.
/// - Anything else: nothing to send, the notice unchanged.
pub fn decide(told: Option<&Notice>, now: &Observed, thresholds: &Thresholds) -> Decision {
    let keep = Decision {
        send: None,
        next: told.copied(),
    };
    if !now.active {
        return match (&now.disabled_reason, told) {
            (Some(_), Some(n)) if n.level == Level::Disabled => keep,
            (Some(reason), _) => Decision {
                send: Some(Told::Disabled {
                    reason: reason.clone(),
                    since: now.failing_since,
                }),
                next: Some(Notice {
                    level: Level::Disabled,
                    failing_since: now
                        .failing_since
                        .or(told.map(|n| n.failing_since))
                        .unwrap_or(now.now),
                }),
            },
            // Disabled by its owner: nothing to tell.
            (None, _) => keep,
        };
    }
    match (now.status, now.failing_since) {
        (DeliveryStatus::Success, _) | (_, None) => match told {
            Some(n) if now.status == DeliveryStatus::Success => Decision {
                send: Some(Told::Recovered {
                    since: n.failing_since,
                }),
                next: None,
            },
            _ => keep,
        },
        (DeliveryStatus::Failed, Some(since)) => {
            let level = thresholds.failing_level(since, now.now);
            let told_level = told
                .filter(|n| n.failing_since == since && n.level != Level::Disabled)
                .map(|n| n.level);
            if told_level.is_some_and(|t| t >= level) {
                return keep;
            }
            Decision {
                send: Some(Told::Failing { level, since }),
                next: Some(Notice {
                    level,
                    failing_since: since,
                }),
            }
        }
    }
}

/// The delivery id of an operational event: the run's start (4 bytes, so ids sort by time like
/// generated ones) and 8 bytes of SHA-256 over the webhook, the run and the event: the same
/// event decided twice (two workers at once, or a retry after a lost write) is one delivery.
pub fn notice_delivery_id(webhook: &WebhookId, told: &Told) -> DeliveryId {
    use sha2::Digest;
    let (name, since) = match told {
        Told::Failing { level, since } => (level.as_str(), Some(*since)),
        Told::Disabled { since, .. } => ("disabled", *since),
        Told::Recovered { since } => ("recovered", Some(*since)),
    };
    let since = since.map_or(0, Timestamp::unix);
    let mut h = sha2::Sha256::new();
    h.update(webhook.as_str().as_bytes());
    h.update(b"\0");
    h.update(name.as_bytes());
    h.update(b"\0");
    h.update(since.to_string().as_bytes());
    let digest = h.finalize();
    let mut bytes = [0u8; 12];
    bytes[..4].copy_from_slice(&(since.clamp(0, u32::MAX as i64) as u32).to_be_bytes());
    bytes[4..].copy_from_slice(&digest[..8]);
    DeliveryId::parse(&hex::encode(bytes)).unwrap_or_else(|_| unreachable!("24 hex characters"))
}

/// The `data` of an operational event about `webhook` (DESIGN.md §2's envelope around it).
pub fn event_data(
    webhook: &Webhook,
    told: &Told,
    now: Timestamp,
    last_error: Option<&str>,
) -> Value {
    let mut data = json!({
        "webhookId": webhook.id.to_string(),
        "bucketId": webhook.bucket_id.to_string(),
        "url": webhook.url,
    });
    let m = data
        .as_object_mut()
        .unwrap_or_else(|| unreachable!("an object"));
    if let Some(d) = &webhook.description {
        m.insert("description".into(), json!(d));
    }
    match told {
        Told::Failing { level, since } => {
            m.insert(
                "reason".into(),
                json!(format!("every delivery has failed since {since}")),
            );
            m.insert("failingSince".into(), json!(since.to_rfc3339()));
            m.insert(
                "failingForSeconds".into(),
                json!((now.unix() - since.unix()).max(0)),
            );
            m.insert("level".into(), json!(level.as_str()));
            if let Some(e) = last_error {
                m.insert("lastError".into(), json!(e));
            }
        }
        Told::Disabled { reason, since } => {
            m.insert("reason".into(), json!(reason));
            m.insert(
                "failingSince".into(),
                since.map_or(Value::Null, |s| json!(s.to_rfc3339())),
            );
            m.insert("disabledAt".into(), json!(now.to_rfc3339()));
        }
        Told::Recovered { since } => {
            m.insert("reason".into(), json!("a delivery succeeded"));
            m.insert("failingSince".into(), json!(since.to_rfc3339()));
            m.insert("recoveredAt".into(), json!(now.to_rfc3339()));
        }
    }
    data
}

/// The task that tells `endpoint` about `webhook`.
pub fn notice_task(
    endpoint: &WebhookId,
    webhook: &Webhook,
    told: &Told,
    now: Timestamp,
    last_error: Option<&str>,
) -> DeliveryTask {
    let delivery_id = notice_delivery_id(&webhook.id, told);
    let body = crate::jsjson::to_string(&envelope(
        told.event(),
        now,
        &webhook.id,
        &webhook.bucket_id,
        &delivery_id,
        event_data(webhook, told, now, last_error),
    ));
    DeliveryTask {
        delivery_id,
        webhook_id: endpoint.clone(),
        event: told.event(),
        generation: 0,
        attempts_made: 0,
        body,
        created_at: now,
    }
}

/// Where the notices live: one per webhook that was ever told something.
///
/// Contract: `replace_notice` is a compare-and-set — it writes `new` (`None`: removes the
/// notice) only if the stored notice equals `expected` (`None`: there is none) and answers
/// whether it wrote; concurrent replacements of one expected notice have one winner.
#[async_trait]
pub trait NoticeStore: Send + Sync + 'static {
    async fn notice(&self, webhook: &WebhookId) -> Result<Option<Notice>, StoreError>;

    async fn replace_notice(
        &self,
        webhook: &WebhookId,
        expected: Option<&Notice>,
        new: Option<&Notice>,
    ) -> Result<bool, StoreError>;
}

/// Operators' channel (SNS on AWS): told what [`operator_subject`] names, as the JSON of the
/// event's envelope. Errors are the adapter's message; the caller logs them.
#[async_trait]
pub trait OperatorAlerts: Send + Sync + 'static {
    async fn publish(&self, subject: &str, message: &str) -> Result<(), String>;
}

/// Whether the operators are told `told` about `webhook` as well as its owner, and the
/// subject when they are: a disable, and a run of failures that reached the last repeat
/// ([`Level::FailingLonger`], 24 h by default) — a day of failures is worth an operator's look
/// before the auto-disable; the earlier levels are the owner's alone.
pub fn operator_subject(webhook: &WebhookId, told: &Told) -> Option<String> {
    match told {
        Told::Disabled { .. } => Some(format!("dakkio webhook {webhook} disabled")),
        Told::Failing {
            level: Level::FailingLonger,
            since,
        } => Some(format!(
            "dakkio webhook {webhook} failing since {}",
            since.to_rfc3339()
        )),
        Told::Failing { .. } | Told::Recovered { .. } => None,
    }
}

/// Notices in memory (unit tests; the router's tests).
#[derive(Debug, Default)]
pub struct MemoryNotices {
    notices: Mutex<HashMap<WebhookId, Notice>>,
}

impl MemoryNotices {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl NoticeStore for MemoryNotices {
    async fn notice(&self, webhook: &WebhookId) -> Result<Option<Notice>, StoreError> {
        Ok(self
            .notices
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(webhook)
            .copied())
    }

    async fn replace_notice(
        &self,
        webhook: &WebhookId,
        expected: Option<&Notice>,
        new: Option<&Notice>,
    ) -> Result<bool, StoreError> {
        let mut map = self.notices.lock().unwrap_or_else(|e| e.into_inner());
        if map.get(webhook) != expected {
            return Ok(false);
        }
        match new {
            Some(n) => map.insert(webhook.clone(), *n),
            None => map.remove(webhook),
        };
        Ok(true)
    }
}

/// Carries out [`decide`] after a delivery finished: reads and replaces the notice, queues the
/// event to the owner's endpoint (when there is one) and tells the operators what
/// [`operator_subject`] names.
pub struct Notifier {
    notices: Arc<dyn NoticeStore>,
    store: Arc<dyn SubscriptionStore>,
    queue: Arc<dyn DeliveryQueue>,
    clock: Arc<dyn Clock>,
    operators: Option<Arc<dyn OperatorAlerts>>,
    thresholds: Thresholds,
    /// The notice last read or written per webhook (see [`NOTICE_CACHE_TTL`]); the records of a
    /// batch that succeed at once share one read.
    cache: SharedReads<Option<Notice>>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("thresholds", &self.thresholds)
            .finish_non_exhaustive()
    }
}

impl Notifier {
    pub fn new(
        notices: Arc<dyn NoticeStore>,
        store: Arc<dyn SubscriptionStore>,
        queue: Arc<dyn DeliveryQueue>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            notices,
            store,
            queue,
            clock,
            operators: None,
            thresholds: Thresholds::default(),
            cache: SharedReads::new(NOTICE_CACHE_TTL),
        }
    }

    pub fn with_thresholds(mut self, thresholds: Thresholds) -> Self {
        self.thresholds = thresholds;
        self
    }

    pub fn with_operators(mut self, operators: Arc<dyn OperatorAlerts>) -> Self {
        self.operators = Some(operators);
        self
    }

    fn remember(&self, id: &WebhookId, notice: Option<Notice>) {
        self.cache.put(id, notice);
    }

    fn forget(&self, id: &WebhookId) {
        self.cache.forget(id);
    }

    /// After `webhook`'s delivery finished with `status`: `webhook` as read at send time;
    /// `disabled` the reason when this delivery made the service disable it; `last_error` the
    /// delivery's error. Never fails: what goes wrong is logged (the delivery is done).
    pub async fn after_finish(
        &self,
        webhook: &Webhook,
        status: DeliveryStatus,
        disabled: Option<String>,
        last_error: Option<&str>,
    ) {
        if is_endpoint(webhook) {
            return;
        }
        if let Err(e) = self.tell(webhook, status, disabled, last_error).await {
            tracing::warn!(webhook_id = %webhook.id, error = %e, "operational notification not sent");
        }
    }

    async fn tell(
        &self,
        sent_to: &Webhook,
        status: DeliveryStatus,
        disabled: Option<String>,
        last_error: Option<&str>,
    ) -> Result<(), StoreError> {
        let now = self.clock.now();
        let (told, observed, webhook) = match status {
            DeliveryStatus::Success => {
                let (notices, id) = (self.notices.clone(), sent_to.id.clone());
                let read = move || {
                    async move { notices.notice(&id).await.map_err(|e| e.to_string()) }.boxed()
                };
                let told = self
                    .cache
                    .get_or_read(&sent_to.id, read)
                    .await
                    .map_err(StoreError::Unavailable)?;
                if told.is_none() {
                    return Ok(());
                }
                let observed = Observed {
                    status,
                    failing_since: None,
                    active: true,
                    disabled_reason: None,
                    now,
                };
                (told, observed, sent_to.clone())
            }
            DeliveryStatus::Failed => {
                // Read again: `failingSince` as the log keeps it (the local worker commits this
                // delivery's outcome after us: the finish rule is applied here as well).
                let Some(fresh) = self.store.get(&sent_to.id).await? else {
                    return Ok(());
                };
                let told = self.notices.notice(&sent_to.id).await?;
                // The local worker commits this delivery's outcome after us, so the first
                // failure of a run is not in `fresh` yet: its start is about now, and the run
                // told a moment ago is the same run.
                let since = match (fresh.failing_since, told) {
                    (Some(s), Some(n))
                        if s.unix().abs_diff(n.failing_since.unix()) <= SAME_RUN_SLACK_SECS =>
                    {
                        n.failing_since
                    }
                    (Some(s), _) => s,
                    (None, _) => now,
                };
                let observed = Observed {
                    status,
                    failing_since: Some(since),
                    active: fresh.active && disabled.is_none(),
                    disabled_reason: disabled.or(fresh.disabled_reason.clone()),
                    now,
                };
                (told, observed, fresh)
            }
        };
        let decision = decide(told.as_ref(), &observed, &self.thresholds);
        let Some(send) = decision.send else {
            return Ok(());
        };
        // Remember first (the compare-and-set picks one of the workers that decided this at
        // once), then queue; a failed enqueue gives the notice back, so the next finished
        // delivery decides again. A crash in between loses this one notification.
        let won = self
            .notices
            .replace_notice(&webhook.id, told.as_ref(), decision.next.as_ref())
            .await?;
        if !won {
            self.forget(&webhook.id);
            return Ok(());
        }
        self.remember(&webhook.id, decision.next);
        let endpoint_id = endpoint_id(&webhook.owner_id);
        let task = notice_task(&endpoint_id, &webhook, &send, now, last_error);
        if let Some(ops) = &self.operators
            && let Some(subject) = operator_subject(&webhook.id, &send)
            && let Err(e) = ops.publish(&subject, &task.body).await
        {
            tracing::warn!(webhook_id = %webhook.id, error = %e, "operator alert not published");
        }
        let endpoint = self
            .store
            .get(&endpoint_id)
            .await?
            .filter(|e| e.owner_id == webhook.owner_id && e.active);
        let Some(endpoint) = endpoint else {
            return Ok(());
        };
        if let Err(e) = self.queue.enqueue(std::slice::from_ref(&task)).await {
            self.forget(&webhook.id);
            self.notices
                .replace_notice(&webhook.id, decision.next.as_ref(), told.as_ref())
                .await?;
            return Err(StoreError::Unavailable(e.to_string()));
        }
        tracing::info!(
            webhook_id = %webhook.id,
            endpoint_id = %endpoint.id,
            event = %task.event,
            delivery_id = %task.delivery_id,
            "operational notification queued"
        );
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// The API side: PUT/GET/DELETE /api/notifications
// ---------------------------------------------------------------------------------------------

/// `PUT /api/notifications` body.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PutNotifications {
    /// Where operational events are POSTed; validated like a webhook's `url`.
    #[schema(example = "https://ops.example.com/dakkio")]
    pub url: String,
    /// The signing secret (8–512 characters). Generated (`whsec_…`) when absent on the first
    /// PUT, kept when absent on a later one; shown only in the answer of the PUT that set it.
    pub secret: Option<String>,
}

/// The owner's notification endpoint, and its secret when the request set it.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub webhook: Webhook,
    /// `Some` only in the answer of the PUT that set it (given or generated).
    pub new_secret: Option<Secret>,
}

/// The use cases of `/api/notifications` (user tokens; ownership as for webhooks).
#[derive(Clone)]
pub struct NotificationService {
    store: Arc<dyn SubscriptionStore>,
    clock: Arc<dyn Clock>,
    policy: UrlPolicy,
}

impl std::fmt::Debug for NotificationService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotificationService")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl NotificationService {
    pub fn new(
        store: Arc<dyn SubscriptionStore>,
        clock: Arc<dyn Clock>,
        policy: UrlPolicy,
    ) -> Self {
        Self {
            store,
            clock,
            policy,
        }
    }

    async fn current(&self, caller: &Caller) -> Result<Option<Webhook>, ServiceError> {
        Ok(self
            .store
            .get(&endpoint_id(&caller.owner))
            .await?
            .filter(|w| w.owner_id == caller.owner && is_endpoint(w)))
    }

    /// Sets (creates or replaces) the caller's endpoint; re-enables it if the service had
    /// disabled it.
    pub async fn put(
        &self,
        caller: &Caller,
        body: PutNotifications,
    ) -> Result<Endpoint, ServiceError> {
        let url = validate_url(&body.url, self.policy)?;
        let given = body.secret.map(validate_secret).transpose()?;
        let now = self.clock.now();
        match self.current(caller).await? {
            Some(existing) => {
                let patch = WebhookPatch {
                    url: Some(url),
                    secret: given.clone(),
                    previous_secret: given.as_ref().map(|_| None),
                    active: Some(true),
                    disabled_reason: Some(None),
                    ..Default::default()
                };
                let webhook = self
                    .store
                    .update(&caller.owner, &existing.id, &patch, now)
                    .await?;
                Ok(Endpoint {
                    webhook,
                    new_secret: given,
                })
            }
            None => {
                let secret = given.unwrap_or_else(Secret::generate);
                let webhook = Webhook {
                    id: endpoint_id(&caller.owner),
                    owner_id: caller.owner.clone(),
                    bucket_id: notifications_bucket(),
                    url,
                    // What it is sent (no publish can name these, and no token may use its
                    // bucket, so it is never part of a fan-out).
                    events: OPERATIONAL_EVENTS.to_vec(),
                    description: Some("operational notifications".into()),
                    active: true,
                    retry_config: RetryConfig::default(),
                    secret: secret.clone(),
                    previous_secret: None,
                    format: Default::default(),
                    filter: None,
                    headers: Default::default(),
                    rate_limit: None,
                    stats: DeliveryStats::default(),
                    last_delivery_at: None,
                    last_delivery_status: None,
                    failing_since: None,
                    disabled_reason: None,
                    created_at: now,
                    updated_at: now,
                };
                // Two first PUTs at once: the store's conditional create refuses the second
                // (409 conflict); asking again replaces the endpoint.
                self.store.create(&webhook).await?;
                Ok(Endpoint {
                    webhook,
                    new_secret: Some(secret),
                })
            }
        }
    }

    /// The caller's endpoint (`NotFound` when none is set).
    pub async fn get(&self, caller: &Caller) -> Result<Webhook, ServiceError> {
        self.current(caller).await?.ok_or(ServiceError::NotFound)
    }

    /// Removes the caller's endpoint (`NotFound` when none is set); queued notifications to it
    /// are dropped, like a deleted webhook's deliveries.
    pub async fn delete(&self, caller: &Caller) -> Result<(), ServiceError> {
        let current = self.get(caller).await?;
        self.store.delete(&caller.owner, &current.id).await?;
        Ok(())
    }
}

#[cfg(any(test, feature = "conformance"))]
pub mod conformance {
    //! The [`NoticeStore`] contract as checks every adapter runs.
    use super::*;

    pub async fn check(store: &dyn NoticeStore) {
        let w = WebhookId::generate(1_700_000_000);
        let a = Notice {
            level: Level::Failing,
            failing_since: Timestamp::from_unix(1_700_000_000),
        };
        let b = Notice {
            level: Level::FailingLong,
            ..a
        };
        assert_eq!(store.notice(&w).await.unwrap(), None, "none at first");
        assert!(
            !store.replace_notice(&w, Some(&a), Some(&b)).await.unwrap(),
            "expected a notice that is not there"
        );
        assert!(
            store.replace_notice(&w, None, Some(&a)).await.unwrap(),
            "first write"
        );
        assert!(
            !store.replace_notice(&w, None, Some(&b)).await.unwrap(),
            "a second first write loses"
        );
        assert_eq!(store.notice(&w).await.unwrap(), Some(a));
        assert!(store.replace_notice(&w, Some(&a), Some(&b)).await.unwrap());
        assert!(
            !store.replace_notice(&w, Some(&a), None).await.unwrap(),
            "stale expectation"
        );
        assert_eq!(store.notice(&w).await.unwrap(), Some(b));
        assert!(
            store.replace_notice(&w, Some(&b), None).await.unwrap(),
            "cleared"
        );
        assert_eq!(store.notice(&w).await.unwrap(), None);
        // Another webhook's notice is its own.
        let other = WebhookId::generate(1_700_000_001);
        assert!(store.replace_notice(&other, None, Some(&a)).await.unwrap());
        assert_eq!(store.notice(&w).await.unwrap(), None);
        // Concurrent first writes: one winner.
        let w3 = WebhookId::generate(1_700_000_002);
        let (x, y) = tokio::join!(
            store.replace_notice(&w3, None, Some(&a)),
            store.replace_notice(&w3, None, Some(&b))
        );
        assert_eq!(u8::from(x.unwrap()) + u8::from(y.unwrap()), 1, "one winner");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::memory::{MemoryQueue, MemoryStore};
    use crate::time::FixedClock;

    const T0: i64 = 1_700_000_000;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_unix(T0 + s)
    }

    fn failed(since: i64, now: i64) -> Observed {
        Observed {
            status: DeliveryStatus::Failed,
            failing_since: Some(t(since)),
            active: true,
            disabled_reason: None,
            now: t(now),
        }
    }

    fn ok(now: i64) -> Observed {
        Observed {
            status: DeliveryStatus::Success,
            failing_since: None,
            active: true,
            disabled_reason: None,
            now: t(now),
        }
    }

    fn notice(level: Level, since: i64) -> Notice {
        Notice {
            level,
            failing_since: t(since),
        }
    }

    #[test]
    fn failing_is_told_when_a_run_starts_then_once_after_1_h_and_once_after_24_h() {
        let th = Thresholds::default();
        // GIVEN nothing told, WHEN the first failure finishes THEN failing is told
        let d = decide(None, &failed(0, 0), &th);
        assert_eq!(
            d.send,
            Some(Told::Failing {
                level: Level::Failing,
                since: t(0)
            })
        );
        assert_eq!(d.next, Some(notice(Level::Failing, 0)));
        // More failures within the hour: nothing new
        let told = d.next.unwrap();
        assert_eq!(decide(Some(&told), &failed(0, 3599), &th).send, None);
        // At 1 h: told again, once
        let d = decide(Some(&told), &failed(0, 3600), &th);
        assert_eq!(
            d.send,
            Some(Told::Failing {
                level: Level::FailingLong,
                since: t(0)
            })
        );
        let told = d.next.unwrap();
        assert_eq!(decide(Some(&told), &failed(0, 7200), &th).send, None);
        // At 24 h: told again, once
        let d = decide(Some(&told), &failed(0, 86_400), &th);
        assert_eq!(
            d.send,
            Some(Told::Failing {
                level: Level::FailingLonger,
                since: t(0)
            })
        );
        assert_eq!(decide(d.next.as_ref(), &failed(0, 90_000), &th).send, None);
    }

    #[test]
    fn a_late_first_failure_tells_the_level_reached_once_not_every_level() {
        let d = decide(None, &failed(0, 100_000), &Thresholds::default());
        assert_eq!(
            d.send,
            Some(Told::Failing {
                level: Level::FailingLonger,
                since: t(0)
            })
        );
    }

    #[test]
    fn a_success_after_failing_tells_recovered_and_clears_the_notice_a_healthy_one_tells_nothing() {
        let th = Thresholds::default();
        let told = notice(Level::FailingLong, 0);
        let d = decide(Some(&told), &ok(5000), &th);
        assert_eq!(d.send, Some(Told::Recovered { since: t(0) }));
        assert_eq!(d.next, None);
        assert_eq!(
            decide(None, &ok(5000), &th),
            Decision {
                send: None,
                next: None
            }
        );
    }

    #[test]
    fn a_new_run_of_failures_starts_from_nothing() {
        // GIVEN a run told at 24 h whose recovery was missed (e.g. no success seen)
        let told = notice(Level::FailingLonger, 0);
        // WHEN a failure of a later run finishes THEN failing is told for the new run
        let d = decide(
            Some(&told),
            &failed(100_000, 100_000),
            &Thresholds::default(),
        );
        assert_eq!(
            d.send,
            Some(Told::Failing {
                level: Level::Failing,
                since: t(100_000)
            })
        );
    }

    #[test]
    fn disabled_by_the_service_is_told_once_with_its_reason_disabled_by_the_owner_never() {
        let th = Thresholds::default();
        let mut off = failed(0, 500_000);
        off.active = false;
        off.disabled_reason = Some("receiver answered HTTP 410 Gone".into());
        let d = decide(Some(&notice(Level::FailingLonger, 0)), &off, &th);
        assert_eq!(
            d.send,
            Some(Told::Disabled {
                reason: "receiver answered HTTP 410 Gone".into(),
                since: Some(t(0))
            })
        );
        assert_eq!(d.next, Some(notice(Level::Disabled, 0)));
        assert_eq!(decide(d.next.as_ref(), &off, &th).send, None, "told once");
        // Disabled by its owner: nothing
        let mut by_owner = failed(0, 10);
        by_owner.active = false;
        assert_eq!(decide(None, &by_owner, &th).send, None);
        // Re-enabled and still failing in the same run: failing again, and a later disable is told again
        let d = decide(Some(&notice(Level::Disabled, 0)), &failed(0, 600_000), &th);
        assert_eq!(
            d.send,
            Some(Told::Failing {
                level: Level::FailingLonger,
                since: t(0)
            })
        );
        assert!(matches!(
            decide(d.next.as_ref(), &off, &th).send,
            Some(Told::Disabled { .. })
        ));
        // Re-enabled and delivered: recovered
        assert_eq!(
            decide(Some(&notice(Level::Disabled, 0)), &ok(700_000), &th).send,
            Some(Told::Recovered { since: t(0) })
        );
    }

    #[test]
    fn thresholds_parse_two_increasing_second_counts_and_refuse_anything_else() {
        assert_eq!(
            Thresholds::parse_secs("2,4").unwrap().repeats,
            [Duration::from_secs(2), Duration::from_secs(4)]
        );
        for bad in [
            "",
            "1",
            "4,2",
            "3,3",
            "0,5",
            "a,b",
            "1,2,3",
            "-1,2",
            "1,1209601",
        ] {
            assert!(Thresholds::parse_secs(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            Thresholds::parse_secs(" 1 , 1209600 ").unwrap().repeats[1],
            MAX_FAILING_REPEAT
        );
        assert_eq!(
            Thresholds::parse_secs(DEFAULT_FAILING_REPEATS_SECS).unwrap(),
            Thresholds::default()
        );
    }

    #[test]
    fn notice_delivery_ids_are_stable_per_event_and_run_and_distinct_otherwise() {
        let w = WebhookId::generate(T0);
        let f = Told::Failing {
            level: Level::Failing,
            since: t(0),
        };
        assert_eq!(notice_delivery_id(&w, &f), notice_delivery_id(&w, &f));
        let others = [
            Told::Failing {
                level: Level::FailingLong,
                since: t(0),
            },
            Told::Failing {
                level: Level::Failing,
                since: t(1),
            },
            Told::Recovered { since: t(0) },
            Told::Disabled {
                reason: "x".into(),
                since: Some(t(0)),
            },
        ];
        for o in &others {
            assert_ne!(
                notice_delivery_id(&w, &f),
                notice_delivery_id(&w, o),
                "{o:?}"
            );
        }
        assert_ne!(
            notice_delivery_id(&w, &f),
            notice_delivery_id(&WebhookId::generate(T0), &f)
        );
    }

    #[tokio::test]
    async fn the_memory_notice_store_keeps_the_contract() {
        conformance::check(&MemoryNotices::new()).await;
    }

    struct Fx {
        store: Arc<MemoryStore>,
        queue: Arc<MemoryQueue>,
        clock: Arc<FixedClock>,
        notifier: Notifier,
        service: NotificationService,
        caller: Caller,
    }

    fn fx() -> Fx {
        let store = Arc::new(MemoryStore::new());
        let queue = Arc::new(MemoryQueue::new());
        let clock = Arc::new(FixedClock::at(t(0)));
        let notifier = Notifier::new(
            Arc::new(MemoryNotices::new()),
            store.clone(),
            queue.clone(),
            clock.clone(),
        );
        let service = NotificationService::new(store.clone(), clock.clone(), UrlPolicy::PRODUCTION);
        let caller = Caller {
            owner: OwnerId::parse("alice").unwrap(),
            buckets: None,
        };
        Fx {
            store,
            queue,
            clock,
            notifier,
            service,
            caller,
        }
    }

    #[tokio::test]
    async fn the_notifier_queues_each_event_once_to_the_owners_endpoint_signed_as_json() {
        // GIVEN alice's endpoint and a webhook of hers that failed once
        let f = fx();
        let endpoint = f
            .service
            .put(
                &f.caller,
                PutNotifications {
                    url: "https://ops.example.com/n".into(),
                    secret: None,
                },
            )
            .await
            .unwrap();
        assert!(
            endpoint
                .new_secret
                .as_ref()
                .unwrap()
                .expose()
                .starts_with("whsec_")
        );
        let mut w = Webhook::for_tests(f.caller.owner.clone(), t(-10));
        w.failing_since = Some(t(0));
        f.store.create(&w).await.unwrap();

        // WHEN two failures finish, then a success
        f.notifier
            .after_finish(
                &w,
                DeliveryStatus::Failed,
                None,
                Some("receiver answered HTTP 500"),
            )
            .await;
        f.notifier
            .after_finish(&w, DeliveryStatus::Failed, None, None)
            .await;
        f.clock.advance(60);
        f.notifier
            .after_finish(&w, DeliveryStatus::Success, None, None)
            .await;
        f.notifier
            .after_finish(&w, DeliveryStatus::Success, None, None)
            .await;

        // THEN failing then recovered were queued to the endpoint, once each
        let tasks = f.queue.tasks();
        let events: Vec<_> = tasks.iter().map(|t| t.event).collect();
        assert_eq!(
            events,
            [EventType::WebhookFailing, EventType::WebhookRecovered]
        );
        assert!(tasks.iter().all(|t| t.webhook_id == endpoint.webhook.id));
        let body: Value = serde_json::from_str(&tasks[0].body).unwrap();
        assert_eq!(body["event"], "webhook.failing");
        assert_eq!(body["webhookId"], w.id.to_string());
        assert_eq!(body["deliveryId"], tasks[0].delivery_id.to_string());
        assert_eq!(body["data"]["url"], w.url);
        assert_eq!(body["data"]["failingSince"], t(0).to_rfc3339());
        assert_eq!(body["data"]["lastError"], "receiver answered HTTP 500");
        assert_eq!(
            crate::jsjson::canonicalize(&tasks[0].body).unwrap(),
            tasks[0].body
        );
        // The endpoint's own deliveries tell nothing
        f.notifier
            .after_finish(&endpoint.webhook, DeliveryStatus::Failed, None, None)
            .await;
        assert_eq!(f.queue.tasks().len(), 2);
    }

    /// Operators' alerts, recorded.
    #[derive(Default)]
    struct RecordedAlerts(Mutex<Vec<(String, String)>>);

    #[async_trait]
    impl OperatorAlerts for RecordedAlerts {
        async fn publish(&self, subject: &str, message: &str) -> Result<(), String> {
            self.0
                .lock()
                .unwrap()
                .push((subject.to_owned(), message.to_owned()));
            Ok(())
        }
    }

    #[tokio::test]
    async fn operators_are_told_a_day_of_failures_and_the_disable_once_each_not_the_earlier_levels()
    {
        // GIVEN a webhook failing since t0, and an operators' channel (no owner's endpoint)
        let f = fx();
        let alerts = Arc::new(RecordedAlerts::default());
        let notifier = Notifier::new(
            Arc::new(MemoryNotices::new()),
            f.store.clone(),
            f.queue.clone(),
            f.clock.clone(),
        )
        .with_operators(alerts.clone());
        let mut w = Webhook::for_tests(f.caller.owner.clone(), t(-10));
        w.failing_since = Some(t(0));
        f.store.create(&w).await.unwrap();

        // WHEN failures finish at the start, after 1 h, twice after 24 h, and then the service
        // disables it
        let mut now = 0;
        for at in [0, 3_601, 86_401, 86_500] {
            f.clock.advance(at - now);
            now = at;
            notifier
                .after_finish(&w, DeliveryStatus::Failed, None, Some("HTTP 500"))
                .await;
        }
        notifier
            .after_finish(
                &w,
                DeliveryStatus::Failed,
                Some("failing for 5 days".into()),
                None,
            )
            .await;

        // THEN the operators got the 24 h failing and the disable, once each, as the event's
        // envelope
        let got = alerts.0.lock().unwrap().clone();
        let subjects: Vec<&str> = got.iter().map(|(s, _)| s.as_str()).collect();
        assert_eq!(
            subjects,
            [
                format!(
                    "dakkio webhook {} failing since {}",
                    w.id,
                    t(0).to_rfc3339()
                ),
                format!("dakkio webhook {} disabled", w.id),
            ]
        );
        let failing: Value = serde_json::from_str(&got[0].1).unwrap();
        assert_eq!(failing["event"], "webhook.failing");
        assert_eq!(failing["data"]["level"], "failingLonger");
        assert_eq!(failing["webhookId"], w.id.to_string());
        let disabled: Value = serde_json::from_str(&got[1].1).unwrap();
        assert_eq!(disabled["event"], "webhook.disabled");
        assert_eq!(disabled["data"]["reason"], "failing for 5 days");
        // AND the rule names nothing else
        for told in [
            Told::Failing {
                level: Level::Failing,
                since: t(0),
            },
            Told::Failing {
                level: Level::FailingLong,
                since: t(0),
            },
            Told::Recovered { since: t(0) },
        ] {
            assert_eq!(operator_subject(&w.id, &told), None, "{told:?}");
        }
    }

    #[tokio::test]
    async fn without_an_endpoint_nothing_is_queued_but_the_notice_still_advances() {
        let f = fx();
        let mut w = Webhook::for_tests(f.caller.owner.clone(), t(-10));
        w.failing_since = Some(t(0));
        f.store.create(&w).await.unwrap();
        f.notifier
            .after_finish(&w, DeliveryStatus::Failed, None, None)
            .await;
        assert!(f.queue.tasks().is_empty());
        assert_eq!(
            f.notifier.notices.notice(&w.id).await.unwrap(),
            Some(notice(Level::Failing, 0))
        );
    }

    #[tokio::test]
    async fn a_notification_the_queue_refused_is_decided_again_by_the_next_failure() {
        // GIVEN alice's endpoint, a failing webhook of hers, and a queue that refuses
        let f = fx();
        f.service
            .put(
                &f.caller,
                PutNotifications {
                    url: "https://ops.example.com/n".into(),
                    secret: None,
                },
            )
            .await
            .unwrap();
        let mut w = Webhook::for_tests(f.caller.owner.clone(), t(-10));
        w.failing_since = Some(t(0));
        f.store.create(&w).await.unwrap();
        f.queue.fail_with(Some("queue down"));
        // WHEN a failure finishes THEN nothing is queued and nothing remembered
        f.notifier
            .after_finish(&w, DeliveryStatus::Failed, None, None)
            .await;
        assert!(f.queue.tasks().is_empty());
        assert_eq!(f.notifier.notices.notice(&w.id).await.unwrap(), None);
        // WHEN the queue is back and the next failure finishes THEN failing is queued once
        f.queue.fail_with(None);
        f.notifier
            .after_finish(&w, DeliveryStatus::Failed, None, None)
            .await;
        f.notifier
            .after_finish(&w, DeliveryStatus::Failed, None, None)
            .await;
        assert_eq!(f.queue.tasks().len(), 1);
    }

    #[tokio::test]
    async fn the_endpoint_is_validated_like_a_webhook_and_is_the_owners_alone() {
        let f = fx();
        for (url, secret, code) in [
            ("http://ops.example.com/n", None, "invalid_url"),
            ("https://127.0.0.1/n", None, "invalid_url"),
            ("not a url", None, "invalid_url"),
            ("https://ops.example.com/n", Some("short"), "invalid_secret"),
        ] {
            let body = PutNotifications {
                url: url.into(),
                secret: secret.map(Into::into),
            };
            match f.service.put(&f.caller, body).await {
                Err(ServiceError::Invalid(e)) => assert_eq!(e.code, code, "{url}"),
                other => panic!("{url}: {other:?}"),
            }
        }
        assert!(f.store.is_empty(), "a bad request stores nothing");
        assert!(matches!(
            f.service.get(&f.caller).await,
            Err(ServiceError::NotFound)
        ));
        let set = f
            .service
            .put(
                &f.caller,
                PutNotifications {
                    url: "https://ops.example.com/n".into(),
                    secret: Some("a-secret-of-mine".into()),
                },
            )
            .await
            .unwrap();
        assert_eq!(set.new_secret.unwrap().expose(), "a-secret-of-mine");
        // A later PUT without a secret keeps it
        let again = f
            .service
            .put(
                &f.caller,
                PutNotifications {
                    url: "https://ops.example.com/m".into(),
                    secret: None,
                },
            )
            .await
            .unwrap();
        assert!(again.new_secret.is_none());
        assert_eq!(again.webhook.secret.expose(), "a-secret-of-mine");
        assert_eq!(again.webhook.url, "https://ops.example.com/m");
        // Bob has none; alice's is hers
        let bob = Caller {
            owner: OwnerId::parse("bob").unwrap(),
            buckets: None,
        };
        assert!(matches!(
            f.service.get(&bob).await,
            Err(ServiceError::NotFound)
        ));
        assert!(matches!(
            f.service.delete(&bob).await,
            Err(ServiceError::NotFound)
        ));
        f.service.delete(&f.caller).await.unwrap();
        assert!(matches!(
            f.service.get(&f.caller).await,
            Err(ServiceError::NotFound)
        ));
        // No token may use the reserved bucket
        assert!(!f.caller.may_use(&notifications_bucket()));
    }
}
