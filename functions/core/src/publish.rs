//! `DeliveryService`: the use cases that create deliveries — publishing events (fan-out), test
//! sends, redelivery of dead letters — and the delivery history.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::delivery::{AttemptRecord, DeadLetter, DeliveryTask, MAX_MESSAGE_BYTES, envelope};
use crate::ports::{Clock, DeliveryLog, DeliveryQueue, EnqueueError, SubscriptionStore};
use crate::service::{Caller, ServiceError};
use crate::validate::ValidationError;
use crate::webhook::Webhook;
use crate::{BucketId, DeliveryId, EventType, Timestamp, WebhookId, jsjson};

/// Most events in one publish call.
pub const MAX_EVENTS_PER_PUBLISH: usize = 100;

/// How long one publish (or test send, or redelivery) may take, from the request's start to its
/// answer's: reading the subscribers, rendering, and enqueueing. The API function's `Timeout` in
/// `template.yaml` is 15 s; 10 s leaves 5 s for the answer to be written and for the SDK's
/// cut-off of an in-flight call (the queue stops waiting at the deadline). When the budget runs
/// out the answer names every delivery not confirmed as queued (`207`, see the API docs), rather
/// than the function being killed with nothing said.
pub const PUBLISH_BUDGET: Duration = Duration::from_secs(10);

/// One event as a producer sends it.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PublishEvent {
    #[schema(example = "507f1f77bcf86cd799439011", pattern = "^[0-9a-f]{24}$")]
    pub bucket_id: String,
    /// `alert.triggered`, `data.received` or `bucket.updated`.
    #[schema(example = "alert.triggered")]
    pub event: String,
    /// The event's data (an object), passed through to receivers unchanged in meaning.
    #[schema(value_type = Object)]
    pub data: Value,
    /// RFC 3339; defaults to now.
    pub timestamp: Option<String>,
}

/// `POST /api/events` body: one event, or `{"events": [...]}` (1–100).
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PublishBatch {
    pub events: Vec<PublishEvent>,
}

/// A validated event.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidEvent {
    pub bucket_id: BucketId,
    pub event: EventType,
    pub data: Value,
    pub timestamp: Timestamp,
}

impl PublishEvent {
    pub fn validate(self, now: Timestamp) -> Result<ValidEvent, ValidationError> {
        let bucket_id = BucketId::parse(&self.bucket_id)
            .map_err(|e| ValidationError::new("invalid_bucket_id", format!("bucketId {e}")))?;
        let event = self
            .event
            .parse::<EventType>()
            .ok()
            .filter(|e| EventType::SUBSCRIBABLE.contains(e))
            .ok_or_else(|| {
                ValidationError::new(
                    "invalid_event",
                    format!(
                        "unknown event {:?}; known events: alert.triggered, data.received, bucket.updated",
                        self.event
                    ),
                )
            })?;
        if !self.data.is_object() {
            return Err(ValidationError::new(
                "invalid_data",
                "data must be a JSON object",
            ));
        }
        let timestamp = match self.timestamp {
            None => now,
            Some(t) => Timestamp::parse(&t).map_err(|_| {
                ValidationError::new(
                    "invalid_timestamp",
                    format!("timestamp {t:?} is not RFC 3339"),
                )
            })?,
        };
        Ok(ValidEvent {
            bucket_id,
            event,
            data: self.data,
            timestamp,
        })
    }
}

/// One delivery created by a publish, test or redelivery.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueuedDelivery {
    pub delivery_id: DeliveryId,
    pub webhook_id: WebhookId,
    pub event: EventType,
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// A delivery's queue message would exceed the queue's limit; nothing was enqueued.
    #[error(
        "event {index}: the delivery message would be {size} bytes; the limit is {MAX_MESSAGE_BYTES}"
    )]
    TooLarge { index: usize, size: usize },
    /// Some deliveries could not be confirmed as enqueued (`not_queued`, which may still
    /// arrive); the others (`queued`) were.
    #[error("{source}")]
    Enqueue {
        source: EnqueueError,
        queued: Vec<QueuedDelivery>,
        not_queued: Vec<QueuedDelivery>,
    },
}

impl From<crate::ports::StoreError> for PublishError {
    fn from(e: crate::ports::StoreError) -> Self {
        PublishError::Service(e.into())
    }
}

#[derive(Clone)]
pub struct DeliveryService {
    store: Arc<dyn SubscriptionStore>,
    log: Arc<dyn DeliveryLog>,
    queue: Arc<dyn DeliveryQueue>,
    clock: Arc<dyn Clock>,
    budget: Duration,
}

impl std::fmt::Debug for DeliveryService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeliveryService")
    }
}

impl DeliveryService {
    pub fn new(
        store: Arc<dyn SubscriptionStore>,
        log: Arc<dyn DeliveryLog>,
        queue: Arc<dyn DeliveryQueue>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            store,
            log,
            queue,
            clock,
            budget: PUBLISH_BUDGET,
        }
    }

    /// The same service with another time budget per call than [`PUBLISH_BUDGET`] (tests).
    pub fn with_budget(mut self, budget: Duration) -> Self {
        self.budget = budget;
        self
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Fans each event out to every active webhook of its bucket subscribed to it whose filter
    /// (if any) it matches: one delivery (own `deliveryId`, body rendered once) per pair, all
    /// enqueued together, within the service's time budget ([`PUBLISH_BUDGET`]). Every message
    /// is checked against the queue's limit before anything is enqueued.
    pub async fn publish(
        &self,
        caller: &Caller,
        events: Vec<ValidEvent>,
    ) -> Result<Vec<QueuedDelivery>, PublishError> {
        let deadline = Instant::now() + self.budget;
        if let Some(e) = events.iter().find(|e| !caller.may_use(&e.bucket_id)) {
            return Err(ServiceError::BucketForbidden(e.bucket_id.clone()).into());
        }
        let now = self.clock.now();
        let mut tasks = Vec::new();
        // The subscribers of each (bucket, event) are read once per call: a batch is usually
        // many events of one bucket.
        let mut subscribers: HashMap<(BucketId, EventType), Vec<Webhook>> = HashMap::new();
        for (index, ev) in events.into_iter().enumerate() {
            // Rendering a large fan-out is CPU work with no await in it: let other tasks (the
            // delivery worker, other requests) run between events.
            if index > 0 {
                YieldNow::default().await;
            }
            let key = (ev.bucket_id.clone(), ev.event);
            if !subscribers.contains_key(&key) {
                let found = self
                    .store
                    .list_for_bucket_event(&ev.bucket_id, ev.event)
                    .await?;
                subscribers.insert(key.clone(), found);
            }
            for webhook in subscribers.get(&key).into_iter().flatten() {
                let delivery_id = DeliveryId::generate(now.unix());
                let env = envelope(
                    ev.event,
                    ev.timestamp,
                    &webhook.id,
                    &ev.bucket_id,
                    &delivery_id,
                    ev.data.clone(),
                );
                // The filter runs here, before anything is queued: an unwanted event costs no
                // queue message and never shows in the webhook's stats.
                if !webhook.wants(&env) {
                    continue;
                }
                let body = jsjson::to_string(&crate::format::render(webhook.format, &env));
                let task = DeliveryTask {
                    delivery_id,
                    webhook_id: webhook.id.clone(),
                    event: ev.event,
                    generation: 0,
                    attempts_made: 0,
                    body,
                    created_at: now,
                };
                let size = task.message_len();
                if size > MAX_MESSAGE_BYTES {
                    return Err(PublishError::TooLarge { index, size });
                }
                tasks.push(task);
            }
        }
        self.enqueue(tasks, deadline).await
    }

    async fn enqueue(
        &self,
        tasks: Vec<DeliveryTask>,
        deadline: Instant,
    ) -> Result<Vec<QueuedDelivery>, PublishError> {
        let queued = |t: &DeliveryTask| QueuedDelivery {
            delivery_id: t.delivery_id.clone(),
            webhook_id: t.webhook_id.clone(),
            event: t.event,
        };
        if tasks.is_empty() {
            return Ok(Vec::new());
        }
        match self.queue.enqueue_by(&tasks, deadline).await {
            Ok(()) => Ok(tasks.iter().map(queued).collect()),
            Err(source) => {
                let failed: std::collections::HashSet<&DeliveryId> = source.failed.iter().collect();
                let (not_ok, ok): (Vec<&DeliveryTask>, Vec<&DeliveryTask>) =
                    tasks.iter().partition(|t| failed.contains(&t.delivery_id));
                Err(PublishError::Enqueue {
                    queued: ok.into_iter().map(queued).collect(),
                    not_queued: not_ok.into_iter().map(queued).collect(),
                    source,
                })
            }
        }
    }

    /// Enqueues a signed `webhook.test` delivery carrying a sample of `sample` plus `"test": true`.
    pub async fn send_test(
        &self,
        caller: &Caller,
        id: &WebhookId,
        sample: Option<EventType>,
    ) -> Result<QueuedDelivery, PublishError> {
        let deadline = Instant::now() + self.budget;
        let webhook = self.owned(caller, id).await?;
        if !webhook.active {
            return Err(ServiceError::Invalid(ValidationError::new(
                "webhook_inactive",
                "the webhook is disabled; enable it (PATCH active: true) to send a test",
            ))
            .into());
        }
        let sample = sample.unwrap_or(webhook.events[0]);
        let now = self.clock.now();
        let delivery_id = DeliveryId::generate(now.unix());
        let mut data = crate::samples::data_for(sample);
        if let Value::Object(m) = &mut data {
            m.insert("test".into(), Value::Bool(true));
        }
        let env = envelope(
            EventType::WebhookTest,
            now,
            &webhook.id,
            &webhook.bucket_id,
            &delivery_id,
            data,
        );
        let body = jsjson::to_string(&crate::format::render(webhook.format, &env));
        let task = DeliveryTask {
            delivery_id,
            webhook_id: webhook.id,
            event: EventType::WebhookTest,
            generation: 0,
            attempts_made: 0,
            body,
            created_at: now,
        };
        let mut q = self.enqueue(vec![task], deadline).await?;
        q.pop().ok_or_else(|| unreachable!("one task in, one out"))
    }

    /// A webhook's recent attempts, newest first.
    pub async fn history(
        &self,
        caller: &Caller,
        id: &WebhookId,
        limit: usize,
    ) -> Result<Vec<AttemptRecord>, ServiceError> {
        self.owned(caller, id).await?;
        Ok(self.log.recent_attempts(id, limit).await?)
    }

    /// A webhook's dead letters, oldest first.
    pub async fn dead_letters(
        &self,
        caller: &Caller,
        id: &WebhookId,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, ServiceError> {
        self.owned(caller, id).await?;
        Ok(self.log.dead_letters(id, limit).await?)
    }

    /// Re-enqueues dead letters (one, or all of the webhook's up to `limit`) as a new generation:
    /// same `deliveryId` and body, attempts counted from 1 again. A dead letter is removed only
    /// after its redelivery is enqueued, so a failure here loses nothing.
    pub async fn redeliver(
        &self,
        caller: &Caller,
        id: &WebhookId,
        delivery: Option<&DeliveryId>,
        limit: usize,
    ) -> Result<Vec<QueuedDelivery>, PublishError> {
        let deadline = Instant::now() + self.budget;
        self.owned(caller, id).await?;
        let dead = match delivery {
            Some(d) => match self.log.dead_letter(id, d).await? {
                Some(x) => vec![x],
                None => return Err(ServiceError::NotFound.into()),
            },
            None => self.log.dead_letters(id, limit).await?,
        };
        let tasks: Vec<DeliveryTask> = dead
            .into_iter()
            .map(|d| DeliveryTask {
                generation: d.task.generation + 1,
                attempts_made: 0,
                created_at: self.clock.now(),
                ..d.task
            })
            .collect();
        let queued = self.enqueue(tasks, deadline).await?;
        for q in &queued {
            self.log.remove_dead_letter(id, &q.delivery_id).await?;
        }
        Ok(queued)
    }

    async fn owned(
        &self,
        caller: &Caller,
        id: &WebhookId,
    ) -> Result<crate::webhook::Webhook, ServiceError> {
        match self.store.get(id).await? {
            Some(w) if caller.sees(&w) => Ok(w),
            _ => Err(ServiceError::NotFound),
        }
    }
}

/// Returns `Pending` once (waking itself first), so the executor runs other tasks before this
/// one goes on: a runtime-independent `yield_now`.
#[derive(Debug, Default)]
struct YieldNow {
    yielded: bool,
}

impl std::future::Future for YieldNow {
    type Output = ();

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if self.yielded {
            return std::task::Poll::Ready(());
        }
        self.yielded = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    }
}
