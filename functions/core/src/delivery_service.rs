//! `DeliveryService`: the use cases that create deliveries — publishing events (fan-out), test
//! sends, redelivery of dead letters — and the delivery history.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::delivery::{AttemptRecord, DeadLetter, DeliveryTask, MAX_MESSAGE_BYTES, envelope};
use crate::idempotency::{
    self, Decision, IdempotencyKey, IdempotencyRecord, IdempotencyStore, KeyState, Planned,
    StoredAnswer,
};
use crate::ports::{
    AttemptQuery, Clock, DeadLetterQuery, DeliveryLog, DeliveryQueue, EnqueueError, LogPage,
    SubscriptionStore,
};
use crate::validate::ValidationError;
use crate::webhook::Subscriber;
use crate::webhook_service::{Caller, ServiceError};
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

/// Dead letters claimed (or put back) at once by a redelivery: each is one conditional write.
pub const CLAIM_CONCURRENCY: usize = 16;

/// Webhook records skipped by publishes of this process because they could not be decoded
/// (see [`unreadable_webhooks_skipped`]).
static UNREADABLE_SKIPPED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many times a publish of this process skipped a webhook whose stored record could not be
/// decoded (once per record per (bucket, event) of a publish call). Such a webhook gets no
/// delivery; the others of its bucket get theirs and the producer's answer lists those only.
pub fn unreadable_webhooks_skipped() -> u64 {
    UNREADABLE_SKIPPED.load(std::sync::atomic::Ordering::Relaxed)
}

/// Logs and counts the records a fan-out query could not decode: an operator must hear of
/// them (their webhooks get nothing), the producer's publish goes on for the others.
fn report_unreadable(bucket: &BucketId, unreadable: &[crate::ports::Unreadable]) {
    for u in unreadable {
        let total = UNREADABLE_SKIPPED.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        tracing::error!(
            webhook_id = %u.id,
            bucket_id = %bucket,
            problem = %u.problem,
            skipped_total = total,
            "unreadable webhook record skipped at publish: it gets no delivery until repaired"
        );
    }
}

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

/// What a keyed publish answers when everything is queued.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyedPublish {
    pub deliveries: Vec<QueuedDelivery>,
    /// The answer of an earlier request with the same key and body (nothing queued now).
    pub replayed: bool,
}

/// How a claimed keyed publish failed: with its answer stored, or before anything reached the
/// queue (the claim is then given back).
enum Claimed {
    Stored(PublishError),
    NothingQueued(PublishError),
}

/// Validates every event with `now` as the default timestamp; the error names the event's
/// index (`events[i]: ...`).
pub fn validate_events(
    raw: Vec<PublishEvent>,
    now: Timestamp,
) -> Result<Vec<ValidEvent>, ValidationError> {
    raw.into_iter()
        .enumerate()
        .map(|(i, e)| {
            e.validate(now)
                .map_err(|v| ValidationError::new(v.code, format!("events[{i}]: {}", v.message)))
        })
        .collect()
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
    /// The `Idempotency-Key` was used for another request (another body) in the last 24 h.
    #[error("this Idempotency-Key was used for a different request in the last 24 h")]
    KeyReused,
    /// The first request with this `Idempotency-Key` is still being published.
    #[error("a request with this Idempotency-Key is being published; retry shortly")]
    KeyInProgress,
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
    pub(crate) store: Arc<dyn SubscriptionStore>,
    pub(crate) log: Arc<dyn DeliveryLog>,
    queue: Arc<dyn DeliveryQueue>,
    clock: Arc<dyn Clock>,
    keys: Arc<dyn IdempotencyStore>,
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
            keys: Arc::new(idempotency::MemoryIdempotencyStore::new()),
            budget: PUBLISH_BUDGET,
        }
    }

    /// The same service keeping `Idempotency-Key` records in `keys` (without this call, in
    /// process memory only: unit tests).
    pub fn with_idempotency(mut self, keys: Arc<dyn IdempotencyStore>) -> Self {
        self.keys = keys;
        self
    }

    /// The same service with another time budget per call than [`PUBLISH_BUDGET`] (tests).
    pub fn with_budget(mut self, budget: Duration) -> Self {
        self.budget = budget;
        self
    }

    /// How long one publish, test send, redelivery or recovery step may take
    /// ([`PUBLISH_BUDGET`] unless changed by [`with_budget`](Self::with_budget)).
    pub fn budget(&self) -> Duration {
        self.budget
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
        let tasks = self
            .plan(events, now, &|_, _| DeliveryId::generate(now.unix()))
            .await?
            .into_iter()
            .map(|(_, t)| t)
            .collect();
        self.enqueue(tasks, deadline).await
    }

    /// The deliveries `events` make now: (event index, task) per (event, subscribed active
    /// webhook whose filter matches), ids from `id(index, webhook)`. Nothing is enqueued.
    async fn plan(
        &self,
        events: Vec<ValidEvent>,
        now: Timestamp,
        id: &(dyn Fn(usize, &WebhookId) -> DeliveryId + Sync),
    ) -> Result<Vec<(usize, DeliveryTask)>, PublishError> {
        let mut tasks = Vec::new();
        // The subscribers of each (bucket, event) are read once per call: a batch is usually
        // many events of one bucket.
        let mut subscribers: HashMap<(BucketId, EventType), Vec<Subscriber>> = HashMap::new();
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
                report_unreadable(&ev.bucket_id, &found.unreadable);
                subscribers.insert(key.clone(), found.webhooks);
            }
            for webhook in subscribers.get(&key).into_iter().flatten() {
                let delivery_id = id(index, &webhook.id);
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
                tasks.push((index, task));
            }
        }
        Ok(tasks)
    }

    /// [`publish`](Self::publish) under an `Idempotency-Key` (see [`crate::idempotency`]):
    /// `raw` are the events as sent (already checked with [`validate_events`]); they are
    /// validated again with the key's first time as "now", so events without a timestamp get
    /// the same one on every repeat. Answers the deliveries (all queued) and whether this is a
    /// replay; a part-way failure is [`PublishError::Enqueue`] as for `publish`, and is stored,
    /// so that a repeat queues what is missing.
    pub async fn publish_keyed(
        &self,
        caller: &Caller,
        key: &IdempotencyKey,
        raw: Vec<PublishEvent>,
    ) -> Result<KeyedPublish, PublishError> {
        let deadline = Instant::now() + self.budget;
        let now = self.clock.now();
        let checked = validate_events(raw.clone(), now).map_err(ServiceError::Invalid)?;
        if let Some(e) = checked.iter().find(|e| !caller.may_use(&e.bucket_id)) {
            return Err(ServiceError::BucketForbidden(e.bucket_id.clone()).into());
        }
        let hash = idempotency::request_hash(&raw);
        let claim = IdempotencyRecord::claim(&caller.owner, key, hash.clone(), now);
        let (record, previous) = match self.keys.insert_or_get(&claim).await? {
            None => (claim, None),
            Some(existing) => match idempotency::decide(&existing, &hash, now) {
                Decision::Reused => return Err(PublishError::KeyReused),
                Decision::InProgress => return Err(PublishError::KeyInProgress),
                Decision::Replay(answer) => {
                    return Ok(KeyedPublish {
                        deliveries: existing.deliveries(&answer).0,
                        replayed: true,
                    });
                }
                Decision::TakeOver => {
                    let mine = existing.next(KeyState::InProgress {
                        until: Timestamp::from_unix(now.unix() + idempotency::LEASE_SECS),
                    });
                    if !self.keys.replace(&mine, existing.version).await? {
                        // Another repeat took it over first.
                        return Err(PublishError::KeyInProgress);
                    }
                    (mine, Some(existing.state))
                }
            },
        };
        match self
            .publish_claimed(&record, raw, previous.clone(), deadline)
            .await
        {
            Ok(r) => Ok(r),
            Err(Claimed::Stored(e)) => Err(e),
            Err(Claimed::NothingQueued(e)) => {
                // Nothing of this call reached the queue: give the key back as it was, so a
                // repeat runs again (with the same delivery ids if it had any).
                let undo = match previous {
                    None => {
                        self.keys
                            .remove(&record.scope, &record.key, record.version)
                            .await
                    }
                    Some(state) => {
                        let state = match state {
                            KeyState::InProgress { .. } => KeyState::InProgress { until: now },
                            done => done,
                        };
                        self.keys
                            .replace(&record.next(state), record.version)
                            .await
                            .map(drop)
                    }
                };
                if let Err(u) = undo {
                    // The lease runs out by itself: a repeat then takes the key over.
                    tracing::warn!(error = %u, "idempotency key not released after a failed publish");
                }
                Err(e)
            }
        }
    }

    async fn publish_claimed(
        &self,
        record: &IdempotencyRecord,
        raw: Vec<PublishEvent>,
        previous: Option<KeyState>,
        deadline: Instant,
    ) -> Result<KeyedPublish, Claimed> {
        let events = validate_events(raw, record.created_at)
            .map_err(|v| Claimed::NothingQueued(ServiceError::Invalid(v).into()))?;
        let names: Vec<EventType> = events.iter().map(|e| e.event).collect();
        let planned = self
            .plan(events, record.created_at, &|i, w| {
                idempotency::delivery_id(&record.scope, &record.key, record.created_at, i, w)
            })
            .await
            .map_err(Claimed::NothingQueued)?;
        let of = |(i, t): &(usize, DeliveryTask)| Planned {
            index: *i,
            webhook: t.webhook_id.clone(),
        };
        // What this publish is made of, and what of it is to be queued now.
        let (all, tasks): (Vec<Planned>, Vec<DeliveryTask>) = match &previous {
            // First run: everything.
            None => (
                planned.iter().map(of).collect(),
                planned.into_iter().map(|(_, t)| t).collect(),
            ),
            // A part-way answer: its deliveries, of which only the unconfirmed ones (a webhook
            // deleted or disabled since has none rebuilt: its pending deliveries are dropped).
            Some(KeyState::Done { answer }) => {
                let missing: HashSet<&Planned> = answer.not_queued.iter().collect();
                let all = answer
                    .queued
                    .iter()
                    .chain(&answer.not_queued)
                    .cloned()
                    .collect();
                let tasks = planned
                    .into_iter()
                    .filter(|p| missing.contains(&of(p)))
                    .map(|(_, t)| t)
                    .collect();
                (all, tasks)
            }
            // Its publisher died mid-way: everything again, minus what the queue already holds.
            Some(KeyState::InProgress { .. }) => (
                planned.iter().map(of).collect(),
                planned.into_iter().map(|(_, t)| t).collect(),
            ),
        };
        let result = if tasks.is_empty() {
            Ok(())
        } else if previous.is_none() {
            self.queue.enqueue_by(&tasks, deadline).await
        } else {
            // Some may have reached the queue unconfirmed: the queue skips ids it holds.
            self.queue.enqueue_new_by(&tasks, deadline).await
        };
        let failed: HashSet<DeliveryId> = match &result {
            Ok(()) => HashSet::new(),
            Err(e) => e.failed.iter().cloned().collect(),
        };
        let (not_queued, queued): (Vec<Planned>, Vec<Planned>) = all
            .into_iter()
            .partition(|p| failed.contains(&record.delivery_id(p)));
        let answer = StoredAnswer {
            events: names,
            queued,
            not_queued,
        };
        let done = record.next(KeyState::Done {
            answer: answer.clone(),
        });
        match self.keys.replace(&done, record.version).await {
            Ok(true) => {}
            // The answer stands; a repeat finds the key in progress until the lease runs out,
            // then takes it over and queues nothing new (the same ids).
            Ok(false) => tracing::warn!("idempotency record changed while publishing"),
            Err(e) => tracing::error!(error = %e, "idempotency answer not stored"),
        }
        let (queued, not_queued) = record.deliveries(&answer);
        match result {
            Ok(()) => Ok(KeyedPublish {
                deliveries: queued,
                replayed: false,
            }),
            Err(source) => Err(Claimed::Stored(PublishError::Enqueue {
                source,
                queued,
                not_queued,
            })),
        }
    }

    pub(crate) async fn enqueue(
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

    /// One page of a webhook's attempts, newest first, filtered by `query`.
    pub async fn history(
        &self,
        caller: &Caller,
        id: &WebhookId,
        query: &AttemptQuery,
    ) -> Result<LogPage<AttemptRecord>, ServiceError> {
        self.owned(caller, id).await?;
        Ok(self.log.attempts_page(id, query).await?)
    }

    /// The webhook's last [`crate::hourly::CHART_HOURS`] hours (the current one last): outcomes
    /// and delivering-attempt latency per hour, from the aggregates the log keeps as deliveries
    /// finish.
    pub async fn hourly(
        &self,
        caller: &Caller,
        id: &WebhookId,
    ) -> Result<Vec<crate::hourly::HourPoint>, ServiceError> {
        self.owned(caller, id).await?;
        let now = self.clock.now();
        let stored = self
            .log
            .hourly_stats(id, crate::hourly::chart_hours(now))
            .await?;
        Ok(crate::hourly::chart(&stored, now))
    }

    /// One page of a webhook's dead letters, oldest first, filtered by `query`.
    pub async fn dead_letters(
        &self,
        caller: &Caller,
        id: &WebhookId,
        query: &DeadLetterQuery,
    ) -> Result<LogPage<DeadLetter>, ServiceError> {
        self.owned(caller, id).await?;
        Ok(self.log.dead_letters_page(id, query).await?)
    }

    /// Re-enqueues dead letters (one, or all of the webhook's up to `limit`) as a new generation:
    /// same `deliveryId` and body, attempts counted from 1 again.
    ///
    /// Each dead letter is first **claimed** ([`DeliveryLog::claim_dead_letter`], a conditional
    /// delete), and only the claimed ones are enqueued: two calls racing for one dead letter
    /// send it once (the loser skips it; asked for that one alone, it answers `NotFound`, as
    /// for one already redelivered). A claimed dead letter that could not be confirmed as queued
    /// (the queue failed, or the time budget ran out) is put back before the error is answered,
    /// so it can be redelivered again; one that may still arrive then can be delivered twice,
    /// with the same `deliveryId` (at-least-once). A crash between the claim and the enqueue
    /// loses the dead letter (the delivery stays counted as failed).
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
        match self
            .claim_and_redeliver(id, dead, deadline, Duration::ZERO)
            .await?
        {
            None if delivery.is_some() => Err(ServiceError::NotFound.into()),
            None => Ok(Vec::new()),
            Some(queued) => Ok(queued),
        }
    }

    /// Removes what the delivery log keeps for webhook `id`, just deleted: its dead letters
    /// (they hold bodies for a redelivery that can no longer happen) and recovery jobs. The
    /// webhook is gone whatever happens here, so a failure is logged, not answered: the
    /// leftovers are unreachable (every route answers 404 for a deleted webhook).
    pub async fn purge_deleted(&self, id: &WebhookId) {
        if let Err(e) = self.log.purge_webhook(id).await {
            tracing::warn!(webhook = %id, error = %e, "dead letters of a deleted webhook not removed");
        }
    }

    /// Claims each of `dead` (letters of webhook `id`), enqueues the claimed ones as a new
    /// generation — same `deliveryId` and body, attempts counted from 1 again — and puts back
    /// those whose redelivery was not queued (listed in the `Enqueue` error, as for a publish).
    /// `None` when none could be claimed (taken by a concurrent redelivery, or given up again
    /// since they were read). The enqueue stops waiting at `deadline`, but never less than
    /// `min_enqueue` after the claims: a send cut off in flight may still have been queued, and
    /// what is put back after it may be queued twice, so a caller that can wait a little longer
    /// (a recovery step) keeps that from happening when its claims ran late.
    pub(crate) async fn claim_and_redeliver(
        &self,
        id: &WebhookId,
        dead: Vec<DeadLetter>,
        deadline: Instant,
        min_enqueue: Duration,
    ) -> Result<Option<Vec<QueuedDelivery>>, PublishError> {
        // Claims go out CLAIM_CONCURRENCY at a time: one conditional delete each, so a page of
        // 100 takes a few round trips, not 100 (on DynamoDB, one after another, a page of a
        // recovery could spend its whole budget claiming).
        let log = &self.log;
        let results: Vec<(DeadLetter, Result<bool, crate::ports::StoreError>)> =
            futures::stream::iter(dead)
                .map(|d| async move {
                    let r = log
                        .claim_dead_letter(id, &d.task.delivery_id, d.task.generation)
                        .await;
                    (d, r)
                })
                .buffered(CLAIM_CONCURRENCY)
                .collect()
                .await;
        let mut claimed = Vec::with_capacity(results.len());
        let mut error = None;
        for (d, r) in results {
            match r {
                Ok(true) => claimed.push(d),
                Ok(false) => {} // taken by a concurrent redelivery, or given up again since
                Err(e) => error = error.or(Some(e)),
            }
        }
        if let Some(e) = error {
            self.put_back(claimed.iter()).await;
            return Err(e.into());
        }
        if claimed.is_empty() {
            return Ok(None);
        }
        let tasks: Vec<DeliveryTask> = claimed
            .iter()
            .map(|d| DeliveryTask {
                generation: d.task.generation + 1,
                attempts_made: 0,
                created_at: self.clock.now(),
                ..d.task.clone()
            })
            .collect();
        let deadline = deadline.max(Instant::now() + min_enqueue);
        match self.enqueue(tasks, deadline).await {
            Ok(queued) => Ok(Some(queued)),
            Err(PublishError::Enqueue {
                source,
                queued,
                not_queued,
            }) => {
                let missing: std::collections::HashSet<&DeliveryId> =
                    not_queued.iter().map(|q| &q.delivery_id).collect();
                self.put_back(
                    claimed
                        .iter()
                        .filter(|d| missing.contains(&d.task.delivery_id)),
                )
                .await;
                Err(PublishError::Enqueue {
                    source,
                    queued,
                    not_queued,
                })
            }
            Err(e) => {
                self.put_back(claimed.iter()).await;
                Err(e)
            }
        }
    }

    /// Puts claimed dead letters back (their redelivery was not queued). A failure is logged
    /// with the delivery id: the dead letter is then lost, the delivery stays counted.
    async fn put_back(&self, dead: impl Iterator<Item = &DeadLetter>) {
        let log = &self.log;
        futures::stream::iter(dead)
            .for_each_concurrent(CLAIM_CONCURRENCY, |d| async move {
                if let Err(e) = log.put_dead_letter(d).await {
                    tracing::error!(
                        delivery_id = %d.task.delivery_id,
                        webhook_id = %d.task.webhook_id,
                        error = %e,
                        "a dead letter whose redelivery was not queued could not be put back"
                    );
                }
            })
            .await;
    }

    pub(crate) async fn owned(
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

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use async_trait::async_trait;

    use super::*;
    use crate::delivery::AttemptRecord;
    use crate::ports::StoreError;
    use crate::ports::memory::{MemoryLog, MemoryQueue, MemoryStore};
    use crate::time::FixedClock;
    use crate::webhook::{DeliveryStatus, Webhook};
    use crate::{OwnerId, Timestamp};

    /// A log whose dead-letter reads wait at a barrier after reading, so two redeliveries both
    /// read the same dead letters before either claims one (the race the claim is for).
    struct RacingReads {
        inner: Arc<MemoryLog>,
        barrier: tokio::sync::Barrier,
    }

    #[async_trait]
    impl DeliveryLog for RacingReads {
        async fn record_attempt(&self, a: &AttemptRecord) -> Result<(), StoreError> {
            self.inner.record_attempt(a).await
        }
        async fn attempts_of(
            &self,
            w: &WebhookId,
            d: &DeliveryId,
            g: u32,
        ) -> Result<Vec<AttemptRecord>, StoreError> {
            self.inner.attempts_of(w, d, g).await
        }
        async fn attempts_page(
            &self,
            w: &WebhookId,
            q: &crate::ports::AttemptQuery,
        ) -> Result<LogPage<AttemptRecord>, StoreError> {
            self.inner.attempts_page(w, q).await
        }
        async fn finish(
            &self,
            w: &WebhookId,
            d: &DeliveryId,
            g: u32,
            s: DeliveryStatus,
            at: Timestamp,
        ) -> Result<bool, StoreError> {
            self.inner.finish(w, d, g, s, at).await
        }
        async fn hourly_stats(
            &self,
            w: &WebhookId,
            hours: std::ops::RangeInclusive<i64>,
        ) -> Result<Vec<crate::hourly::HourlyStats>, StoreError> {
            self.inner.hourly_stats(w, hours).await
        }
        async fn put_dead_letter(&self, dead: &DeadLetter) -> Result<(), StoreError> {
            self.inner.put_dead_letter(dead).await
        }
        async fn dead_letters_page(
            &self,
            w: &WebhookId,
            q: &DeadLetterQuery,
        ) -> Result<LogPage<DeadLetter>, StoreError> {
            let read = self.inner.dead_letters_page(w, q).await;
            self.barrier.wait().await;
            read
        }
        async fn dead_letter(
            &self,
            w: &WebhookId,
            d: &DeliveryId,
        ) -> Result<Option<DeadLetter>, StoreError> {
            let read = self.inner.dead_letter(w, d).await;
            self.barrier.wait().await;
            read
        }
        async fn remove_dead_letter(
            &self,
            w: &WebhookId,
            d: &DeliveryId,
        ) -> Result<(), StoreError> {
            self.inner.remove_dead_letter(w, d).await
        }
        async fn claim_dead_letter(
            &self,
            w: &WebhookId,
            d: &DeliveryId,
            g: u32,
        ) -> Result<bool, StoreError> {
            self.inner.claim_dead_letter(w, d, g).await
        }
        async fn create_recover_job(
            &self,
            job: &crate::recovery::RecoverJob,
        ) -> Result<bool, StoreError> {
            self.inner.create_recover_job(job).await
        }
        async fn recover_job(
            &self,
            w: &WebhookId,
            id: &crate::RecoverJobId,
        ) -> Result<Option<crate::recovery::RecoverJob>, StoreError> {
            self.inner.recover_job(w, id).await
        }
        async fn update_recover_job(
            &self,
            job: &crate::recovery::RecoverJob,
            expected: u64,
        ) -> Result<bool, StoreError> {
            self.inner.update_recover_job(job, expected).await
        }
    }

    /// A queue that refuses the deliveries it is told to and takes the others.
    #[derive(Default)]
    struct PartlyFailingQueue {
        refuse: Mutex<HashSet<DeliveryId>>,
        taken: Mutex<Vec<DeliveryTask>>,
    }

    #[async_trait]
    impl DeliveryQueue for PartlyFailingQueue {
        async fn enqueue(&self, tasks: &[DeliveryTask]) -> Result<(), EnqueueError> {
            let refuse = self.refuse.lock().unwrap().clone();
            let (bad, good): (Vec<_>, Vec<_>) = tasks
                .iter()
                .cloned()
                .partition(|t| refuse.contains(&t.delivery_id));
            self.taken.lock().unwrap().extend(good);
            if bad.is_empty() {
                return Ok(());
            }
            Err(EnqueueError {
                failed: bad.into_iter().map(|t| t.delivery_id).collect(),
                reason: "throttled".into(),
            })
        }
    }

    use std::sync::Mutex;

    struct Fixture {
        webhook: Webhook,
        caller: Caller,
        log: Arc<MemoryLog>,
        dead: Vec<DeadLetter>,
    }

    /// A webhook with three dead letters (generation 0) in a memory log.
    async fn fixture(store: &Arc<MemoryStore>) -> Fixture {
        let owner = OwnerId::parse("alice").unwrap();
        let webhook = Webhook::for_tests(owner.clone(), Timestamp::from_unix(1));
        store.create(&webhook).await.unwrap();
        let log = Arc::new(MemoryLog::new(store.clone()));
        let mut dead = Vec::new();
        for i in 0..3 {
            let d = DeadLetter {
                task: DeliveryTask {
                    delivery_id: DeliveryId::generate(10 + i),
                    webhook_id: webhook.id.clone(),
                    event: EventType::AlertTriggered,
                    generation: 0,
                    attempts_made: 0,
                    body: format!(r#"{{"n":{i}}}"#),
                    created_at: Timestamp::from_unix(10 + i),
                },
                error: "receiver answered HTTP 500".into(),
                attempts: 4,
                at: Timestamp::from_unix(20 + i),
            };
            log.put_dead_letter(&d).await.unwrap();
            dead.push(d);
        }
        Fixture {
            webhook,
            caller: Caller {
                owner,
                buckets: None,
            },
            log,
            dead,
        }
    }

    fn clock() -> Arc<FixedClock> {
        Arc::new(FixedClock::at(Timestamp::from_unix(1_700_000_000)))
    }

    #[tokio::test]
    async fn two_racing_redeliveries_queue_each_dead_letter_once() {
        // GIVEN three dead letters, and two redeliveries that both read them before claiming
        let store = Arc::new(MemoryStore::new());
        let f = fixture(&store).await;
        let racing = Arc::new(RacingReads {
            inner: f.log.clone(),
            barrier: tokio::sync::Barrier::new(2),
        });
        let queue = Arc::new(MemoryQueue::new());
        let service = DeliveryService::new(store.clone(), racing, queue.clone(), clock());

        // WHEN both redeliver all of them at once
        let id = &f.webhook.id;
        let (a, b) = tokio::join!(
            service.redeliver(&f.caller, id, None, 100),
            service.redeliver(&f.caller, id, None, 100)
        );

        // THEN each dead letter is queued once, as generation 1, by one call or the other
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(a.len() + b.len(), 3, "{a:?} {b:?}");
        let tasks = queue.tasks();
        let ids: HashSet<_> = tasks.iter().map(|t| t.delivery_id.clone()).collect();
        assert_eq!((tasks.len(), ids.len()), (3, 3));
        assert!(tasks.iter().all(|t| t.generation == 1));
        assert!(f.log.dead_letters(id, 100).await.unwrap().is_empty());

        // AND asked for one alone at once, one call queues it and the other answers not found
        f.log.put_dead_letter(&f.dead[0]).await.unwrap();
        let one = &f.dead[0].task.delivery_id;
        let (a, b) = tokio::join!(
            service.redeliver(&f.caller, id, Some(one), 1),
            service.redeliver(&f.caller, id, Some(one), 1)
        );
        let found: Vec<_> = [a, b].into_iter().filter_map(Result::ok).collect();
        assert_eq!(
            found.len(),
            1,
            "one call queues it, the other finds it gone"
        );
        assert_eq!(queue.tasks().len(), 4);
    }

    #[tokio::test]
    async fn a_partly_failed_redelivery_keeps_only_the_dead_letters_not_queued() {
        // GIVEN three dead letters and a queue that refuses the second
        let store = Arc::new(MemoryStore::new());
        let f = fixture(&store).await;
        let queue = Arc::new(PartlyFailingQueue::default());
        let refused = f.dead[1].task.delivery_id.clone();
        queue.refuse.lock().unwrap().insert(refused.clone());
        let service = DeliveryService::new(store.clone(), f.log.clone(), queue.clone(), clock());

        // WHEN all are redelivered
        let got = service.redeliver(&f.caller, &f.webhook.id, None, 100).await;

        // THEN the answer names the two queued and the one not queued
        let Err(PublishError::Enqueue {
            queued, not_queued, ..
        }) = got
        else {
            panic!("expected a partial enqueue failure, got {got:?}");
        };
        assert_eq!((queued.len(), not_queued.len()), (2, 1));
        assert_eq!(not_queued[0].delivery_id, refused);
        // AND only the refused one is still a dead letter (as it was), so redelivering again
        // sends nothing twice
        assert_eq!(
            f.log.dead_letters(&f.webhook.id, 100).await.unwrap(),
            vec![f.dead[1].clone()]
        );
        queue.refuse.lock().unwrap().clear();
        let again = service
            .redeliver(&f.caller, &f.webhook.id, None, 100)
            .await
            .unwrap();
        assert_eq!(again.len(), 1);
        let taken = queue.taken.lock().unwrap().clone();
        let ids: HashSet<_> = taken.iter().map(|t| t.delivery_id.clone()).collect();
        assert_eq!((taken.len(), ids.len()), (3, 3), "each queued once");
    }

    #[tokio::test]
    async fn a_redelivery_the_queue_refuses_entirely_puts_every_dead_letter_back() {
        // GIVEN three dead letters and a queue that refuses everything
        let store = Arc::new(MemoryStore::new());
        let f = fixture(&store).await;
        let queue = Arc::new(MemoryQueue::new());
        queue.fail_with(Some("unreachable"));
        let service = DeliveryService::new(store.clone(), f.log.clone(), queue.clone(), clock());

        // WHEN all are redelivered THEN it fails and every dead letter is still there
        assert!(
            service
                .redeliver(&f.caller, &f.webhook.id, None, 100)
                .await
                .is_err()
        );
        assert_eq!(
            f.log.dead_letters(&f.webhook.id, 100).await.unwrap(),
            f.dead
        );
    }
}
