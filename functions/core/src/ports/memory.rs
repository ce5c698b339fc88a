//! An in-process [`SubscriptionStore`] for unit tests of the core and the router. It is never
//! the only test of anything a user meets: the SQLite and DynamoDB adapters have their own.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;

use super::{ListQuery, MAX_WEBHOOKS_PER_BUCKET, Page, StoreError, Subscribers, SubscriptionStore};
use crate::webhook::{DeliveryStatus, Webhook, WebhookPatch};
use crate::{BucketId, EventType, OwnerId, Timestamp, WebhookId};

#[derive(Debug, Default)]
pub struct MemoryStore {
    webhooks: Mutex<BTreeMap<WebhookId, Webhook>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<WebhookId, Webhook>> {
        self.webhooks.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl SubscriptionStore for MemoryStore {
    async fn create(&self, webhook: &Webhook) -> Result<(), StoreError> {
        let mut map = self.lock();
        if map.contains_key(&webhook.id) {
            return Err(StoreError::Conflict(format!(
                "webhook {} exists",
                webhook.id
            )));
        }
        map.insert(webhook.id.clone(), webhook.clone());
        Ok(())
    }

    async fn get(&self, id: &WebhookId) -> Result<Option<Webhook>, StoreError> {
        Ok(self.lock().get(id).cloned())
    }

    async fn list(&self, q: &ListQuery) -> Result<Page, StoreError> {
        let map = self.lock();
        let mut items: Vec<Webhook> = map
            .values()
            .rev()
            .filter(|w| w.owner_id == q.owner)
            .filter(|w| q.bucket.as_ref().is_none_or(|b| &w.bucket_id == b))
            .filter(|w| q.after.as_ref().is_none_or(|a| &w.id < a))
            .take(q.limit + 1)
            .cloned()
            .collect();
        let more = items.len() > q.limit;
        items.truncate(q.limit);
        let next_after = if more {
            items.last().map(|w| w.id.clone())
        } else {
            None
        };
        Ok(Page { items, next_after })
    }

    async fn list_for_bucket_event(
        &self,
        bucket: &BucketId,
        event: EventType,
    ) -> Result<Subscribers, StoreError> {
        // Oldest first, reading no more than the bound of the bucket's webhooks.
        let webhooks = self
            .lock()
            .values()
            .filter(|w| &w.bucket_id == bucket)
            .take(MAX_WEBHOOKS_PER_BUCKET)
            .filter(|w| w.active && w.subscribes_to(event))
            .map(Webhook::subscriber)
            .collect();
        Ok(Subscribers {
            webhooks,
            unreadable: Vec::new(),
        })
    }

    async fn count_in_bucket(&self, bucket: &BucketId, up_to: usize) -> Result<usize, StoreError> {
        Ok(self
            .lock()
            .values()
            .filter(|w| &w.bucket_id == bucket)
            .take(up_to)
            .count())
    }

    async fn update(
        &self,
        owner: &OwnerId,
        id: &WebhookId,
        patch: &WebhookPatch,
        now: Timestamp,
    ) -> Result<Webhook, StoreError> {
        let mut map = self.lock();
        let w = map
            .get_mut(id)
            .filter(|w| &w.owner_id == owner)
            .ok_or(StoreError::NotFound)?;
        patch.apply(w, now);
        Ok(w.clone())
    }

    async fn delete(&self, owner: &OwnerId, id: &WebhookId) -> Result<(), StoreError> {
        let mut map = self.lock();
        match map.get(id) {
            Some(w) if &w.owner_id == owner => {
                map.remove(id);
                Ok(())
            }
            _ => Err(StoreError::NotFound),
        }
    }

    async fn record_outcome(
        &self,
        id: &WebhookId,
        status: DeliveryStatus,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        self.record_outcome_sync(id, status, at)
    }
}

// ---------------------------------------------------------------------------------------------
// Delivery side fakes
// ---------------------------------------------------------------------------------------------

use crate::DeliveryId;
use crate::RecoverJobId;
use crate::delivery::{AttemptRecord, DeadLetter, DeliveryTask};
use crate::hourly::HourlyStats;
use crate::ports::{
    AttemptQuery, DeadLetterQuery, DeliveryLog, DeliveryQueue, EnqueueError, LogPage,
    OutgoingRequest, SendError, SenderResponse, WebhookSender,
};
use crate::recovery::RecoverJob;

/// The in-memory delivery log shares [`MemoryStore`]'s lock so `finish` is atomic with stats.
#[derive(Debug, Default)]
pub struct MemoryLog {
    store: std::sync::Arc<MemoryStore>,
    inner: Mutex<LogInner>,
}

#[derive(Debug, Default)]
struct LogInner {
    attempts: Vec<AttemptRecord>,
    finished: std::collections::BTreeSet<(DeliveryId, u32)>,
    dead: BTreeMap<(WebhookId, DeliveryId), DeadLetter>,
    jobs: BTreeMap<(WebhookId, RecoverJobId), RecoverJob>,
    hourly: BTreeMap<(WebhookId, i64), HourlyStats>,
}

/// The first `limit` of `sorted` (position, item) pairs, and the position of the last one when
/// more follow.
fn page<T>(sorted: Vec<(String, T)>, limit: usize) -> LogPage<T> {
    let more = sorted.len() > limit;
    let mut items = Vec::with_capacity(limit.min(sorted.len()));
    let mut last = None;
    for (k, v) in sorted.into_iter().take(limit) {
        last = Some(k);
        items.push(v);
    }
    LogPage {
        items,
        next_after: if more { last } else { None },
    }
}

impl MemoryLog {
    pub fn new(store: std::sync::Arc<MemoryStore>) -> Self {
        Self {
            store,
            inner: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LogInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `finish`, adding `latency_ms` (a delivering attempt's) to the hour's histogram.
    fn finish_with(
        &self,
        webhook: &WebhookId,
        delivery: &DeliveryId,
        generation: u32,
        status: DeliveryStatus,
        at: Timestamp,
        latency_ms: Option<u64>,
    ) -> Result<bool, StoreError> {
        let mut l = self.lock();
        if l.finished.contains(&(delivery.clone(), generation)) {
            return Ok(false);
        }
        match self.store.record_outcome_sync(webhook, status, at) {
            Ok(()) => {}
            Err(StoreError::NotFound) => return Ok(false),
            Err(e) => return Err(e),
        }
        l.finished.insert((delivery.clone(), generation));
        let add = HourlyStats::of_finish(status == DeliveryStatus::Success, at, latency_ms);
        l.hourly
            .entry((webhook.clone(), add.hour))
            .or_insert_with(|| HourlyStats::empty(add.hour))
            .add(&add);
        Ok(true)
    }
}

#[async_trait]
impl DeliveryLog for MemoryLog {
    async fn record_attempt(&self, a: &AttemptRecord) -> Result<(), StoreError> {
        let mut l = self.lock();
        l.attempts.retain(|x| {
            !(x.delivery_id == a.delivery_id
                && x.generation == a.generation
                && x.attempt == a.attempt)
        });
        l.attempts.push(a.clone());
        Ok(())
    }

    async fn attempts_of(
        &self,
        webhook: &WebhookId,
        delivery: &DeliveryId,
        generation: u32,
    ) -> Result<Vec<AttemptRecord>, StoreError> {
        let mut v: Vec<AttemptRecord> = self
            .lock()
            .attempts
            .iter()
            .filter(|a| {
                &a.webhook_id == webhook && &a.delivery_id == delivery && a.generation == generation
            })
            .cloned()
            .collect();
        v.sort_by_key(|a| a.attempt);
        Ok(v)
    }

    async fn attempts_page(
        &self,
        webhook: &WebhookId,
        q: &AttemptQuery,
    ) -> Result<LogPage<AttemptRecord>, StoreError> {
        let key = |a: &AttemptRecord| {
            format!(
                "{:020}|{}|{:010}|{:05}",
                a.at.unix(),
                a.delivery_id,
                a.generation,
                a.attempt
            )
        };
        let mut v: Vec<(String, AttemptRecord)> = self
            .lock()
            .attempts
            .iter()
            .filter(|a| {
                &a.webhook_id == webhook
                    && q.status.is_none_or(|s| a.status == s)
                    && q.event.is_none_or(|e| a.event == e)
                    && q.since.is_none_or(|t| a.at >= t)
                    && q.until.is_none_or(|t| a.at < t)
            })
            .map(|a| (key(a), a.clone()))
            .filter(|(k, _)| q.after.as_ref().is_none_or(|after| k < after))
            .collect();
        v.sort_by(|a, b| b.0.cmp(&a.0));
        Ok(page(v, q.limit))
    }

    async fn finish(
        &self,
        webhook: &WebhookId,
        delivery: &DeliveryId,
        generation: u32,
        status: DeliveryStatus,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        self.finish_with(webhook, delivery, generation, status, at, None)
    }

    async fn finish_delivered(&self, attempt: &AttemptRecord) -> Result<bool, StoreError> {
        self.record_attempt(attempt).await?;
        self.finish_with(
            &attempt.webhook_id,
            &attempt.delivery_id,
            attempt.generation,
            DeliveryStatus::Success,
            attempt.at,
            Some(attempt.duration_ms),
        )
    }

    async fn hourly_stats(
        &self,
        webhook: &WebhookId,
        hours: std::ops::RangeInclusive<i64>,
    ) -> Result<Vec<HourlyStats>, StoreError> {
        Ok(self
            .lock()
            .hourly
            .range((webhook.clone(), *hours.start())..=(webhook.clone(), *hours.end()))
            .map(|(_, h)| *h)
            .collect())
    }

    async fn put_dead_letter(&self, dead: &DeadLetter) -> Result<(), StoreError> {
        let key = (dead.task.webhook_id.clone(), dead.task.delivery_id.clone());
        self.lock().dead.insert(key, dead.clone());
        Ok(())
    }

    async fn dead_letters_page(
        &self,
        webhook: &WebhookId,
        q: &DeadLetterQuery,
    ) -> Result<LogPage<DeadLetter>, StoreError> {
        let mut v: Vec<(String, DeadLetter)> = self
            .lock()
            .dead
            .values()
            .filter(|d| {
                &d.task.webhook_id == webhook
                    && q.event.is_none_or(|e| d.task.event == e)
                    && q.since.is_none_or(|t| d.at >= t)
                    && q.until.is_none_or(|t| d.at < t)
            })
            .map(|d| {
                (
                    format!("{:020}|{}", d.at.unix(), d.task.delivery_id),
                    d.clone(),
                )
            })
            .filter(|(k, _)| q.after.as_ref().is_none_or(|after| k > after))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(page(v, q.limit))
    }

    async fn dead_letter(
        &self,
        webhook: &WebhookId,
        delivery: &DeliveryId,
    ) -> Result<Option<DeadLetter>, StoreError> {
        Ok(self
            .lock()
            .dead
            .get(&(webhook.clone(), delivery.clone()))
            .cloned())
    }

    async fn remove_dead_letter(
        &self,
        webhook: &WebhookId,
        delivery: &DeliveryId,
    ) -> Result<(), StoreError> {
        self.lock()
            .dead
            .remove(&(webhook.clone(), delivery.clone()));
        Ok(())
    }

    async fn purge_webhook(&self, webhook: &WebhookId) -> Result<(), StoreError> {
        let mut l = self.lock();
        l.dead.retain(|(w, _), _| w != webhook);
        l.jobs.retain(|(w, _), _| w != webhook);
        l.hourly.retain(|(w, _), _| w != webhook);
        Ok(())
    }

    async fn claim_dead_letter(
        &self,
        webhook: &WebhookId,
        delivery: &DeliveryId,
        generation: u32,
    ) -> Result<bool, StoreError> {
        let mut l = self.lock();
        let key = (webhook.clone(), delivery.clone());
        if l.dead.get(&key).map(|d| d.task.generation) != Some(generation) {
            return Ok(false);
        }
        l.dead.remove(&key);
        Ok(true)
    }

    async fn create_recover_job(&self, job: &RecoverJob) -> Result<bool, StoreError> {
        let key = (job.webhook_id.clone(), job.id.clone());
        let mut l = self.lock();
        if l.jobs.contains_key(&key) {
            return Ok(false);
        }
        l.jobs.insert(key, job.clone());
        Ok(true)
    }

    async fn recover_job(
        &self,
        webhook: &WebhookId,
        id: &RecoverJobId,
    ) -> Result<Option<RecoverJob>, StoreError> {
        Ok(self
            .lock()
            .jobs
            .get(&(webhook.clone(), id.clone()))
            .cloned())
    }

    async fn update_recover_job(
        &self,
        job: &RecoverJob,
        expected_version: u64,
    ) -> Result<bool, StoreError> {
        let mut l = self.lock();
        match l.jobs.get_mut(&(job.webhook_id.clone(), job.id.clone())) {
            Some(stored) if stored.version == expected_version => {
                *stored = job.clone();
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

impl MemoryStore {
    fn record_outcome_sync(
        &self,
        id: &WebhookId,
        status: DeliveryStatus,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        let mut map = self.lock();
        let w = map.get_mut(id).ok_or(StoreError::NotFound)?;
        w.stats.total_deliveries += 1;
        match status {
            DeliveryStatus::Success => w.stats.successful_deliveries += 1,
            DeliveryStatus::Failed => w.stats.failed_deliveries += 1,
        }
        // Never backwards: outcomes may be counted out of order.
        if w.last_delivery_at.is_none_or(|last| at >= last) {
            w.last_delivery_at = Some(at);
            w.last_delivery_status = Some(status);
        }
        w.failing_since = match status {
            DeliveryStatus::Success => None,
            DeliveryStatus::Failed => w.failing_since.or(Some(at)),
        };
        Ok(())
    }
}

/// A queue that keeps what was enqueued; it can be told to fail.
#[derive(Debug, Default)]
pub struct MemoryQueue {
    tasks: Mutex<Vec<DeliveryTask>>,
    fail: Mutex<Option<String>>,
}

impl MemoryQueue {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn tasks(&self) -> Vec<DeliveryTask> {
        self.tasks.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Makes every later `enqueue` fail with `reason` (None: succeed again).
    pub fn fail_with(&self, reason: Option<&str>) {
        *self.fail.lock().unwrap_or_else(|e| e.into_inner()) = reason.map(str::to_owned);
    }
}

#[async_trait]
impl DeliveryQueue for MemoryQueue {
    async fn enqueue(&self, tasks: &[DeliveryTask]) -> Result<(), EnqueueError> {
        if let Some(reason) = self.fail.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            return Err(EnqueueError {
                failed: tasks.iter().map(|t| t.delivery_id.clone()).collect(),
                reason,
            });
        }
        self.tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(tasks);
        Ok(())
    }
}

/// A sender that records requests and answers from a script (then 200s).
#[derive(Debug, Default)]
pub struct RecordingSender {
    requests: Mutex<Vec<OutgoingRequest>>,
    script: Mutex<std::collections::VecDeque<Result<SenderResponse, SendError>>>,
}

impl RecordingSender {
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues answers, used in order; once used up, every request gets 200.
    pub fn answer(&self, answers: impl IntoIterator<Item = Result<SenderResponse, SendError>>) {
        self.script
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(answers);
    }

    pub fn status(code: u16) -> Result<SenderResponse, SendError> {
        Ok(SenderResponse {
            status: code,
            retry_after: None,
            body_excerpt: String::new(),
        })
    }

    pub fn requests(&self) -> Vec<OutgoingRequest> {
        self.requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

#[async_trait]
impl WebhookSender for RecordingSender {
    async fn send(&self, request: &OutgoingRequest) -> Result<SenderResponse, SendError> {
        self.requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(request.clone());
        self.script
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_front()
            .unwrap_or_else(|| Self::status(200))
    }
}

/// Breaker states in memory ([`crate::health::HealthStore`]); counts its writes, so tests can
/// check that only transitions write.
#[derive(Debug, Default)]
pub struct MemoryHealth {
    states: Mutex<BTreeMap<WebhookId, crate::health::WebhookHealth>>,
    writes: std::sync::atomic::AtomicUsize,
}

impl MemoryHealth {
    pub fn new() -> Self {
        Self::default()
    }

    /// How many writes (`put`s and `replace`s that stored) were made.
    pub fn writes(&self) -> usize {
        self.writes.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[async_trait]
impl crate::health::HealthStore for MemoryHealth {
    async fn get(
        &self,
        webhook: &WebhookId,
    ) -> Result<Option<crate::health::WebhookHealth>, StoreError> {
        let states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        Ok(states.get(webhook).cloned())
    }

    async fn replace(
        &self,
        webhook: &WebhookId,
        expected: Option<&crate::health::WebhookHealth>,
        health: &crate::health::WebhookHealth,
    ) -> Result<bool, StoreError> {
        let mut states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        if states.get(webhook) != expected {
            return Ok(false);
        }
        self.writes
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        states.insert(webhook.clone(), health.clone());
        Ok(true)
    }

    async fn put(
        &self,
        webhook: &WebhookId,
        health: &crate::health::WebhookHealth,
    ) -> Result<(), StoreError> {
        self.writes
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let mut states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        states.insert(webhook.clone(), health.clone());
        Ok(())
    }

    async fn delete(&self, webhook: &WebhookId) -> Result<(), StoreError> {
        let mut states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        states.remove(webhook);
        Ok(())
    }
}
