//! The delivery decision: one attempt of one delivery, and what the queue must do next.
//! The core decides, the adapter acts: [`QueueAction::for_result`](crate::flow::QueueAction)
//! turns an [`Outcome`] into the queue's action, which SQS carries out with
//! `ChangeMessageVisibility` + `batchItemFailures`, a send to the dead-letter queue, or an
//! acknowledgement, and the embedded queue with its visibility timeout and dead-letter table.
//!
//! Attempts are numbered from the attempts recorded for the delivery, never from the receive
//! count (see [`crate::flow`]): a receipt that sent nothing uses up no retry.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::delivery::{
    AttemptRecord, AttemptStatus, DeadLetter, DeliveryTask, parse_retry_after,
    webhook_request_headers,
};
use crate::flow::{InFlight, Lane, RateLimiter, is_first_receipt};
use crate::health::{AttemptClass, Breaker, Gate, HealthState, HealthStore, WebhookHealth, gate};
use crate::metrics::{Measurements, MetricsSink, NoMetrics};
use crate::notify::Notifier;
use crate::ports::{
    Clock, DeliveryLog, OutgoingRequest, SendError, StoreError, SubscriptionStore, WebhookSender,
};
use crate::webhook::{DeliveryStatus, RetryConfig, WebhookPatch};

/// What to do with the message after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Delivered (2xx): acknowledge.
    Delivered,
    /// Failed, retries left: make the message visible again after `after`.
    Retry { after: Duration, error: String },
    /// Failed for good (retries exhausted, 410, disabled, refused target): the dead letter is
    /// recorded and counted; move the message to the dead-letter queue, then acknowledge.
    /// `attempts`: how many attempts were made.
    GiveUp { error: String, attempts: u32 },
    /// Nothing to send (the webhook was deleted): acknowledge.
    Drop { reason: String },
    /// Held back by the flow control (DESIGN.md §7): nothing sent, no attempt used; try again
    /// after `after`. `slow`: the webhook is timing out or its breaker is open.
    Defer {
        after: Duration,
        reason: String,
        slow: bool,
        /// Attempts made so far (for a queue that re-sends the message as a new one).
        attempts_made: u32,
        /// Every delivery of this webhook received before `after` would be deferred too (its
        /// breaker is open, or its in-flight cap is held by attempts running for longer than
        /// [`IN_FLIGHT_DEFER`](crate::flow::IN_FLIGHT_DEFER)): a queue that can hold back all of
        /// the webhook's messages at once need not receive each one to defer it
        /// ([`crate::flow`], parking). `false` for a rate limit's slot, which is this
        /// delivery's own.
        webhook_wide: bool,
    },
}

/// What [`Dispatcher::reconcile`] did with a delivery the queue's redrive policy moved to the
/// dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reconciled {
    /// It had not ended: it is now counted as failed (once) and recorded as a dead letter with
    /// the reason, so the API lists it and can redeliver it. `attempts`: attempts made.
    DeadLettered { attempts: u32 },
    /// It had already ended (the dispatcher gave it up itself and recorded its dead letter, it
    /// was delivered, or its webhook is gone): nothing changed.
    AlreadyFinal,
}

/// The `error` of a dead letter recorded by [`Dispatcher::reconcile`]: the queue's redrive
/// policy moved the message after [`MAX_RECEIVE_COUNT`](crate::flow::MAX_RECEIVE_COUNT)
/// receives, none of which finished the delivery (a webhook that could not be read, a store
/// that stayed unavailable, a worker that kept crashing).
pub fn redriven_error() -> String {
    format!(
        "moved to the dead-letter queue by the redrive policy after {} receives that did not \
         finish it (its webhook could not be read, the store was unavailable, or the worker \
         crashed)",
        crate::flow::MAX_RECEIVE_COUNT
    )
}

/// Whether a webhook with this health is timing out: its last attempts failed (it is not
/// healthy) and the last of them by a timeout. Its deliveries received from the main lane move
/// to the slow lane until an attempt is answered.
pub fn is_timing_out(health: &WebhookHealth) -> bool {
    health.state != HealthState::Healthy && health.timing_out
}

/// The attempt could not be carried out (store unavailable): leave the message on the queue;
/// it comes back after its visibility timeout.
#[derive(Debug, thiserror::Error)]
#[error("delivery could not be processed: {0}")]
pub struct DispatchError(#[from] pub StoreError);

#[derive(Clone)]
pub struct Dispatcher {
    store: Arc<dyn SubscriptionStore>,
    log: Arc<dyn DeliveryLog>,
    sender: Arc<dyn WebhookSender>,
    clock: Arc<dyn Clock>,
    auto_disable_after: Option<Duration>,
    /// The circuit breaker (DESIGN.md §7), when the runtime gave it a store.
    breaker: Option<Breaker>,
    /// The per-webhook in-flight cap of this instance.
    in_flight: InFlight,
    /// Where each receipt's metric values go ([`crate::metrics`]).
    metrics: Arc<dyn MetricsSink>,
    /// Each webhook's `rateLimit`, paced on this instance.
    rate: RateLimiter,
    /// Operational notifications ([`crate::notify`]), when the runtime turned them on.
    notifier: Option<Arc<Notifier>>,
}

pub use crate::flow::DEFAULT_AUTO_DISABLE_AFTER;

/// Why a webhook whose receiver answered `410 Gone` was disabled (its `disabledReason`).
pub const GONE_REASON: &str = "receiver answered HTTP 410 Gone";

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Dispatcher")
    }
}

impl Dispatcher {
    pub fn new(
        store: Arc<dyn SubscriptionStore>,
        log: Arc<dyn DeliveryLog>,
        sender: Arc<dyn WebhookSender>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            store,
            log,
            sender,
            clock,
            auto_disable_after: Some(DEFAULT_AUTO_DISABLE_AFTER),
            breaker: None,
            in_flight: InFlight::default(),
            metrics: Arc::new(NoMetrics),
            rate: RateLimiter::default(),
            notifier: None,
        }
    }

    /// Records each receipt's metric values ([`Measurements::delivery`]) into `sink`.
    pub fn with_metrics(mut self, sink: Arc<dyn MetricsSink>) -> Self {
        self.metrics = sink;
        self
    }

    /// Turns operational notifications on: after each finished delivery, `notifier` decides
    /// what its owner is told (see [`crate::notify`]).
    pub fn with_notifier(mut self, notifier: Arc<Notifier>) -> Self {
        self.notifier = Some(notifier);
        self
    }

    /// Turns the circuit breaker on, its states kept in `store` (see [`crate::health`]).
    pub fn with_breaker(mut self, store: Arc<dyn HealthStore>) -> Self {
        self.breaker = Some(Breaker::new(store));
        self
    }

    /// Makes this instance one of `shares` that send at once (the delivery Lambda: the event
    /// source's `MaximumConcurrency`): each paces a webhook's deliveries at `rateLimit / shares`
    /// (see [`RateLimiter`]). The default, 1, is the local mode's single process.
    pub fn with_rate_limit_shares(mut self, shares: u32) -> Self {
        self.rate = RateLimiter::new(shares);
        self
    }

    /// Changes the per-webhook in-flight cap of this instance (default
    /// [`DEFAULT_MAX_IN_FLIGHT`](crate::flow::DEFAULT_MAX_IN_FLIGHT)).
    pub fn with_max_in_flight(mut self, limit: usize) -> Self {
        self.in_flight = InFlight::new(limit);
        self
    }

    /// Changes (or, with `None`, turns off) auto-disabling of continuously failing webhooks.
    pub fn with_auto_disable_after(mut self, after: Option<Duration>) -> Self {
        self.auto_disable_after = after;
        self
    }

    /// The same dispatcher recording into `log` instead (the local worker gives each delivery a
    /// log that holds its final writes back, to commit them with the queue's acknowledgement).
    pub fn with_log(&self, log: Arc<dyn DeliveryLog>) -> Self {
        Self {
            log,
            ..self.clone()
        }
    }

    /// Processes one receipt of `task`. The attempt number is the last one recorded for the
    /// delivery (or carried by the task, [`DeliveryTask::attempts_made`]) plus one: a receipt
    /// that sent nothing (a crash before sending, a deadline cut-off) leaves no record and uses
    /// up no retry, and a crash between sending and acknowledging never resets the schedule.
    /// `receive_count` (SQS `ApproximateReceiveCount`) only tells a first receipt, whose
    /// attempts need not be read ([`crate::flow::is_first_receipt`]).
    /// Each receipt is measured ([`crate::metrics`]) into the dispatcher's sink.
    pub async fn process(
        &self,
        task: &DeliveryTask,
        receive_count: u32,
    ) -> Result<Outcome, DispatchError> {
        self.process_in(task, receive_count, Lane::Only).await
    }

    /// [`process`](Self::process) for a message received from `lane`. On [`Lane::Main`], a
    /// delivery to a webhook that is timing out (its last attempts failed, the last by a
    /// timeout) is deferred at once with `slow`, without sending, so that it moves to the slow
    /// lane ([`crate::flow`]); as is one whose breaker is open, on every lane.
    pub async fn process_in(
        &self,
        task: &DeliveryTask,
        receive_count: u32,
        lane: Lane,
    ) -> Result<Outcome, DispatchError> {
        let started = Instant::now();
        let result = self.process_receipt(task, receive_count, lane).await;
        self.metrics.record(&Measurements::delivery(
            task,
            &result,
            started.elapsed(),
            self.clock.now(),
        ));
        result
    }

    async fn process_receipt(
        &self,
        task: &DeliveryTask,
        receive_count: u32,
        lane: Lane,
    ) -> Result<Outcome, DispatchError> {
        let Some(webhook) = self.store.get_for_delivery(&task.webhook_id).await? else {
            return Ok(Outcome::Drop {
                reason: "webhook deleted".into(),
            });
        };
        let recorded = if is_first_receipt(task, receive_count) {
            Vec::new()
        } else {
            self.log
                .attempts_of(&task.webhook_id, &task.delivery_id, task.generation)
                .await?
        };
        if recorded.iter().any(|a| a.status == AttemptStatus::Success) {
            // Sent and recorded before a crash: count it (idempotently), do not send again.
            self.finish(task, DeliveryStatus::Success).await?;
            self.notify(&webhook, DeliveryStatus::Success, None, None)
                .await;
            return Ok(Outcome::Delivered);
        }
        let last = recorded
            .iter()
            .map(|a| a.attempt)
            .max()
            .unwrap_or(0)
            .max(task.attempts_made);
        let attempt = last + 1;
        let policy = webhook.retry_config;

        if attempt > policy.max_attempts() {
            let error = recorded
                .last()
                .and_then(|a| a.error.clone())
                .unwrap_or_else(|| "retries exhausted".into());
            let out = self.give_up(task, last, error.clone()).await?;
            self.notify(&webhook, DeliveryStatus::Failed, None, Some(&error))
                .await;
            return Ok(out);
        }
        if !webhook.active {
            let error = "not sent: the webhook is disabled".to_owned();
            self.record(task, attempt, None, 0, Some(error.clone()), None)
                .await?;
            let out = self.give_up(task, attempt, error.clone()).await?;
            self.notify(&webhook, DeliveryStatus::Failed, None, Some(&error))
                .await;
            return Ok(out);
        }

        // Flow control (DESIGN.md §7): nothing is sent, no attempt used, when the webhook has
        // its cap of attempts in flight here or its breaker is open.
        // `slow` and `webhook_wide` as in `Outcome::Defer`.
        let defer =
            |after: Duration, reason: String, slow: bool, webhook_wide: bool| Outcome::Defer {
                after,
                reason,
                slow,
                attempts_made: last,
                webhook_wide,
            };
        let _in_flight = match self.in_flight.try_acquire(&task.webhook_id) {
            Ok(guard) => guard,
            Err(wait) => {
                let reason = format!(
                    "{} attempts already in flight to this webhook",
                    self.in_flight.limit()
                );
                // Held by attempts that have run for more than the shortest wait: a receiver
                // that is slow or hangs, whose whole backlog may wait (a fast receiver's cap
                // frees within milliseconds: only this delivery waits).
                let webhook_wide = wait > crate::flow::IN_FLIGHT_DEFER;
                return Ok(defer(wait, reason, false, webhook_wide));
            }
        };
        let now = self.clock.now();
        let mut health = None;
        let mut probe = None;
        if let Some(breaker) = &self.breaker {
            health = breaker.get(&task.webhook_id).await;
            match gate(health.as_ref(), now) {
                Gate::Send => {}
                Gate::Wait { wait } => {
                    let reason = match health.as_ref().and_then(|h| h.open_until) {
                        Some(until) => format!("circuit breaker open until {until}"),
                        None => "circuit breaker open".to_owned(),
                    };
                    return Ok(defer(wait.max(Duration::from_secs(1)), reason, true, true));
                }
                Gate::Probe { rearmed } => probe = Some(rearmed),
            }
            // The slow lane (DESIGN.md §7): a webhook that is timing out would hold one of the
            // main queue's instances for the whole timeout; its deliveries (its probe too) are
            // sent from the slow lane instead.
            if lane == Lane::Main
                && let Some(h) = health.as_ref().filter(|h| is_timing_out(h))
            {
                let reason = format!(
                    "timing out ({}): moved to the slow lane",
                    h.last_error.as_deref().unwrap_or("timeout")
                );
                return Ok(defer(Duration::ZERO, reason, true, false));
            }
        }
        // The rate limit (after the breaker's wait, so a delivery it holds takes no slot).
        if let Some(rate) = webhook.rate_limit
            && let Err(wait) = self.rate.check(&task.webhook_id, rate)
        {
            let reason = format!("over the webhook's rate limit of {rate}/s");
            return Ok(defer(wait, reason, false, false));
        }
        if let Some(breaker) = &self.breaker {
            match probe {
                None => {}
                Some(rearmed) => {
                    let current = health.clone().unwrap_or(rearmed.clone());
                    match breaker
                        .claim_probe(&task.webhook_id, &current, rearmed)
                        .await
                    {
                        Ok(rearmed) => {
                            tracing::info!(webhook_id = %task.webhook_id, "circuit breaker probe");
                            health = Some(rearmed);
                        }
                        // Another instance made a transition first: decide from its state.
                        Err(fresh) => match gate(fresh.as_ref(), now) {
                            Gate::Send => health = fresh,
                            Gate::Wait { wait } => {
                                let reason = "circuit breaker open: another probe is under way";
                                return Ok(defer(
                                    wait.max(Duration::from_secs(1)),
                                    reason.to_owned(),
                                    true,
                                    true,
                                ));
                            }
                            Gate::Probe { .. } => {
                                let reason = "circuit breaker open: its state is changing";
                                return Ok(defer(
                                    Duration::from_secs(1),
                                    reason.to_owned(),
                                    true,
                                    true,
                                ));
                            }
                        },
                    }
                }
            }
        }

        let request = OutgoingRequest {
            url: webhook.url.clone(),
            headers: webhook_request_headers(task, &webhook, attempt, now),
            body: task.body.clone(),
        };
        let started = Instant::now();
        let result = self.sender.send(&request).await;
        let duration_ms = started.elapsed().as_millis() as u64;
        if let Some(breaker) = &self.breaker {
            let class = AttemptClass::of(&result);
            breaker
                .record(&task.webhook_id, health, &class, self.clock.now())
                .await;
        }

        match result {
            Ok(res) if (200..300).contains(&res.status) => {
                // The attempt and the final outcome in one call: an adapter may write them as
                // one item (DeliveryLog::finish_delivered).
                let record = self.attempt_record(
                    task,
                    attempt,
                    Some(res.status),
                    duration_ms,
                    None,
                    Some(res.body_excerpt),
                );
                self.log.finish_delivered(&record).await?;
                self.notify(&webhook, DeliveryStatus::Success, None, None)
                    .await;
                Ok(Outcome::Delivered)
            }
            Ok(res) => {
                let error = format!("receiver answered HTTP {}", res.status);
                self.record(
                    task,
                    attempt,
                    Some(res.status),
                    duration_ms,
                    Some(error.clone()),
                    Some(res.body_excerpt),
                )
                .await?;
                if res.status == 410 {
                    let patch = WebhookPatch {
                        active: Some(false),
                        disabled_reason: Some(Some(GONE_REASON.to_owned())),
                        ..Default::default()
                    };
                    match self
                        .store
                        .update(&webhook.owner_id, &webhook.id, &patch, now)
                        .await
                    {
                        Ok(_) | Err(StoreError::NotFound) => {}
                        Err(e) => return Err(e.into()),
                    }
                    let error = "receiver answered HTTP 410 Gone: webhook disabled".to_owned();
                    let out = self.give_up(task, attempt, error.clone()).await?;
                    let gone = Some(GONE_REASON.to_owned());
                    self.notify(&webhook, DeliveryStatus::Failed, gone, Some(&error))
                        .await;
                    return Ok(out);
                }
                let wait = match res.status {
                    429 | 503 => res
                        .retry_after
                        .as_deref()
                        .and_then(|v| parse_retry_after(v, now)),
                    _ => None,
                };
                self.retry_or_give_up(&webhook, task, attempt, &policy, wait, error)
                    .await
            }
            Err(e) => {
                let error = e.to_string();
                self.record(task, attempt, None, duration_ms, Some(error.clone()), None)
                    .await?;
                if matches!(e, SendError::Refused(_)) {
                    let out = self.give_up(task, attempt, error.clone()).await?;
                    self.notify(&webhook, DeliveryStatus::Failed, None, Some(&error))
                        .await;
                    return Ok(out);
                }
                self.retry_or_give_up(&webhook, task, attempt, &policy, None, error)
                    .await
            }
        }
    }

    async fn retry_or_give_up(
        &self,
        webhook: &crate::webhook::Webhook,
        task: &DeliveryTask,
        attempt: u32,
        policy: &RetryConfig,
        retry_after: Option<u64>,
        error: String,
    ) -> Result<Outcome, DispatchError> {
        if attempt >= policy.max_attempts() {
            let out = self.give_up(task, attempt, error.clone()).await?;
            let disabled = self.maybe_auto_disable(&task.webhook_id).await?;
            self.notify(webhook, DeliveryStatus::Failed, disabled, Some(&error))
                .await;
            return Ok(out);
        }
        let mut after = policy.delay_before_retry(attempt);
        if let Some(secs) = retry_after {
            after = after.max(Duration::from_secs(
                secs.min(RetryConfig::MAX_DELAY_SECONDS),
            ));
        }
        Ok(Outcome::Retry { after, error })
    }

    async fn disable(
        &self,
        webhook: &crate::webhook::Webhook,
        reason: String,
    ) -> Result<(), DispatchError> {
        let patch = WebhookPatch {
            active: Some(false),
            disabled_reason: Some(Some(reason)),
            ..Default::default()
        };
        match self
            .store
            .update(&webhook.owner_id, &webhook.id, &patch, self.clock.now())
            .await
        {
            Ok(_) | Err(StoreError::NotFound) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Tells the notifier (when there is one) that a delivery to `webhook` finished.
    async fn notify(
        &self,
        webhook: &crate::webhook::Webhook,
        status: DeliveryStatus,
        disabled: Option<String>,
        error: Option<&str>,
    ) {
        if let Some(n) = &self.notifier {
            n.after_finish(webhook, status, disabled, error).await;
        }
    }

    /// After a failed delivery: disable the webhook if every delivery has failed for longer than
    /// the configured stretch (`failing_since` is kept by the log's `finish`). Answers the
    /// reason when it disabled it.
    async fn maybe_auto_disable(
        &self,
        id: &crate::WebhookId,
    ) -> Result<Option<String>, DispatchError> {
        let Some(limit) = self.auto_disable_after else {
            return Ok(None);
        };
        let Some(webhook) = self.store.get(id).await? else {
            return Ok(None);
        };
        let now = self.clock.now();
        match webhook.failing_since {
            Some(since)
                if webhook.active && now.unix() - since.unix() >= limit.as_secs() as i64 =>
            {
                let reason = format!(
                    "every delivery has failed since {since}; re-enable it once the receiver is fixed"
                );
                self.disable(&webhook, reason.clone()).await?;
                Ok(Some(reason))
            }
            _ => Ok(None),
        }
    }

    /// Finishes a delivery the queue's redrive policy moved to the dead-letter queue without the
    /// dispatcher having ended it (see [`Reconciled`]): counts it failed exactly once (the final
    /// marker) and records its dead letter with [`redriven_error`] and the attempts recorded
    /// for it. Idempotent: a message seen again finds its dead letter and changes nothing.
    ///
    /// Order, so that a crash at any point leaves something the next try completes: the dead
    /// letter first, then `finish`; when `finish` finds the delivery already final (delivered,
    /// an acknowledgement lost until the redrive guard; or the webhook is gone), the dead letter
    /// just written is claimed back (only that generation's: a newer one is left alone).
    pub async fn reconcile(&self, task: &DeliveryTask) -> Result<Reconciled, DispatchError> {
        let (webhook, delivery) = (&task.webhook_id, &task.delivery_id);
        if let Some(dead) = self.log.dead_letter(webhook, delivery).await?
            && dead.task.generation >= task.generation
        {
            return Ok(Reconciled::AlreadyFinal);
        }
        let recorded = self
            .log
            .attempts_of(webhook, delivery, task.generation)
            .await?;
        let attempts = recorded
            .iter()
            .map(|a| a.attempt)
            .max()
            .unwrap_or(0)
            .max(task.attempts_made);
        let dead = DeadLetter {
            task: DeliveryTask {
                attempts_made: 0,
                ..task.clone()
            },
            error: redriven_error(),
            attempts,
            at: self.clock.now(),
        };
        self.log.put_dead_letter(&dead).await?;
        let counted = self
            .log
            .finish(
                webhook,
                delivery,
                task.generation,
                DeliveryStatus::Failed,
                self.clock.now(),
            )
            .await?;
        if counted {
            return Ok(Reconciled::DeadLettered { attempts });
        }
        self.log
            .claim_dead_letter(webhook, delivery, task.generation)
            .await?;
        Ok(Reconciled::AlreadyFinal)
    }

    async fn give_up(
        &self,
        task: &DeliveryTask,
        attempts: u32,
        error: String,
    ) -> Result<Outcome, DispatchError> {
        let dead = DeadLetter {
            task: task.clone(),
            error: error.clone(),
            attempts,
            at: self.clock.now(),
        };
        self.log.put_dead_letter(&dead).await?;
        self.finish(task, DeliveryStatus::Failed).await?;
        Ok(Outcome::GiveUp { error, attempts })
    }

    async fn finish(
        &self,
        task: &DeliveryTask,
        status: DeliveryStatus,
    ) -> Result<(), DispatchError> {
        self.log
            .finish(
                &task.webhook_id,
                &task.delivery_id,
                task.generation,
                status,
                self.clock.now(),
            )
            .await?;
        Ok(())
    }

    async fn record(
        &self,
        task: &DeliveryTask,
        attempt: u32,
        status_code: Option<u16>,
        duration_ms: u64,
        error: Option<String>,
        response_body: Option<String>,
    ) -> Result<(), DispatchError> {
        let record = self.attempt_record(
            task,
            attempt,
            status_code,
            duration_ms,
            error,
            response_body,
        );
        self.log.record_attempt(&record).await?;
        Ok(())
    }

    /// The record of one attempt, made now.
    fn attempt_record(
        &self,
        task: &DeliveryTask,
        attempt: u32,
        status_code: Option<u16>,
        duration_ms: u64,
        error: Option<String>,
        response_body: Option<String>,
    ) -> AttemptRecord {
        AttemptRecord {
            webhook_id: task.webhook_id.clone(),
            delivery_id: task.delivery_id.clone(),
            generation: task.generation,
            attempt,
            event: task.event,
            status: if error.is_none() {
                AttemptStatus::Success
            } else {
                AttemptStatus::Failed
            },
            status_code,
            duration_ms,
            error,
            response_body: response_body.filter(|b| !b.is_empty()),
            at: self.clock.now(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::AttemptStatus;
    use crate::ports::memory::{MemoryLog, MemoryStore, RecordingSender};
    use crate::ports::{DeliveryLog, SenderResponse};
    use crate::time::FixedClock;
    use crate::webhook::{DeliveryStats, Secret, Webhook};
    use crate::{DeliveryId, EventType, OwnerId, Timestamp, WebhookId};

    struct Fixture {
        store: Arc<MemoryStore>,
        log: Arc<MemoryLog>,
        sender: Arc<RecordingSender>,
        dispatcher: Dispatcher,
        webhook: Webhook,
        task: DeliveryTask,
    }

    async fn fixture() -> Fixture {
        let store = Arc::new(MemoryStore::new());
        let log = Arc::new(MemoryLog::new(store.clone()));
        let sender = Arc::new(RecordingSender::new());
        let clock = Arc::new(FixedClock::at(Timestamp::from_unix(1_700_000_000)));
        let webhook = Webhook::for_tests(OwnerId::parse("alice").unwrap(), Timestamp::from_unix(1));
        store.create(&webhook).await.unwrap();
        let task = DeliveryTask {
            delivery_id: DeliveryId::generate(2),
            webhook_id: webhook.id.clone(),
            event: EventType::AlertTriggered,
            generation: 0,
            attempts_made: 0,
            body: r#"{"event":"alert.triggered","data":{"currentValue":31.5}}"#.into(),
            created_at: Timestamp::from_unix(2),
        };
        let dispatcher = Dispatcher::new(store.clone(), log.clone(), sender.clone(), clock);
        Fixture {
            store,
            log,
            sender,
            dispatcher,
            webhook,
            task,
        }
    }

    impl Fixture {
        async fn stats(&self) -> DeliveryStats {
            self.store
                .get(&self.webhook.id)
                .await
                .unwrap()
                .unwrap()
                .stats
        }
    }

    #[tokio::test]
    async fn a_redriven_delivery_is_counted_failed_once_and_dead_lettered_with_its_attempts() {
        // GIVEN a delivery with two failed attempts that never ended (the redrive policy moved it)
        let f = fixture().await;
        f.sender
            .answer([RecordingSender::status(500), RecordingSender::status(500)]);
        for _ in 0..2 {
            f.dispatcher.process(&f.task, 2).await.unwrap();
        }
        assert_eq!(f.stats().await.total_deliveries, 0);

        // WHEN it is reconciled, twice (the message seen again)
        let first = f.dispatcher.reconcile(&f.task).await.unwrap();
        let again = f.dispatcher.reconcile(&f.task).await.unwrap();

        // THEN it is counted failed once and is a dead letter with its 2 attempts and the reason
        assert_eq!(first, Reconciled::DeadLettered { attempts: 2 });
        assert_eq!(again, Reconciled::AlreadyFinal);
        let stats = f.stats().await;
        assert_eq!((stats.total_deliveries, stats.failed_deliveries), (1, 1));
        let dead = f
            .log
            .dead_letter(&f.webhook.id, &f.task.delivery_id)
            .await
            .unwrap()
            .expect("a dead letter");
        assert_eq!((dead.attempts, dead.error), (2, redriven_error()));
        assert_eq!(dead.task, f.task);
    }

    #[tokio::test]
    async fn reconciling_a_delivery_that_already_ended_changes_nothing() {
        // GIVEN one delivery delivered, one given up by the dispatcher (maxRetries 0)
        let f = fixture().await;
        assert_eq!(
            f.dispatcher.process(&f.task, 1).await.unwrap(),
            Outcome::Delivered
        );
        let gave_up = DeliveryTask {
            delivery_id: DeliveryId::generate(3),
            ..f.task.clone()
        };
        f.sender
            .answer((0..4).map(|_| RecordingSender::status(500)));
        for n in 1..=4 {
            f.dispatcher.process(&gave_up, n).await.unwrap();
        }
        let before = f.stats().await;
        assert_eq!((before.total_deliveries, before.failed_deliveries), (2, 1));
        let dead = f
            .log
            .dead_letter(&f.webhook.id, &gave_up.delivery_id)
            .await
            .unwrap();

        // WHEN both are reconciled
        // THEN neither is counted again; the delivered one gets no dead letter, the other keeps its own
        assert_eq!(
            f.dispatcher.reconcile(&f.task).await.unwrap(),
            Reconciled::AlreadyFinal
        );
        assert_eq!(
            f.dispatcher.reconcile(&gave_up).await.unwrap(),
            Reconciled::AlreadyFinal
        );
        assert_eq!(f.stats().await, before);
        assert_eq!(
            f.log
                .dead_letter(&f.webhook.id, &f.task.delivery_id)
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            f.log
                .dead_letter(&f.webhook.id, &gave_up.delivery_id)
                .await
                .unwrap(),
            dead
        );
    }

    #[tokio::test]
    async fn a_2xx_is_delivered_signed_and_counted_once() {
        let f = fixture().await;
        assert_eq!(
            f.dispatcher.process(&f.task, 1).await.unwrap(),
            Outcome::Delivered
        );
        let req = &f.sender.requests()[0];
        let header = |n: &str| {
            req.headers
                .iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| v.clone())
                .unwrap()
        };
        assert_eq!(
            header("x-webhook-signature"),
            crate::signing::guide_signature(&f.webhook.secret, f.task.body.as_bytes())
        );
        assert_eq!(header("x-webhook-id"), f.task.delivery_id.to_string());
        assert_eq!(header("webhook-id"), f.task.delivery_id.to_string());
        assert_eq!(header("x-webhook-attempt"), "1");
        assert_eq!(header("x-webhook-timestamp"), "1700000000");
        assert!(header("webhook-signature").starts_with("v1,"));
        assert_eq!(req.body, f.task.body);
        assert_eq!(
            f.stats().await,
            DeliveryStats {
                total_deliveries: 1,
                successful_deliveries: 1,
                failed_deliveries: 0
            }
        );

        // A second receipt of the same message (crash before the ack) is not sent again nor recounted.
        assert_eq!(
            f.dispatcher.process(&f.task, 2).await.unwrap(),
            Outcome::Delivered
        );
        assert_eq!(f.sender.requests().len(), 1);
        assert_eq!(f.stats().await.total_deliveries, 1);
    }

    #[tokio::test]
    async fn failures_retry_after_1_2_4_seconds_then_give_up_to_the_dead_letters() {
        let f = fixture().await;
        f.sender
            .answer((0..4).map(|_| RecordingSender::status(500)));
        let mut outcomes = Vec::new();
        for receive in 1..=4 {
            outcomes.push(f.dispatcher.process(&f.task, receive).await.unwrap());
        }
        let err = "receiver answered HTTP 500".to_owned();
        assert_eq!(
            outcomes,
            vec![
                Outcome::Retry {
                    after: Duration::from_secs(1),
                    error: err.clone()
                },
                Outcome::Retry {
                    after: Duration::from_secs(2),
                    error: err.clone()
                },
                Outcome::Retry {
                    after: Duration::from_secs(4),
                    error: err.clone()
                },
                Outcome::GiveUp {
                    error: err.clone(),
                    attempts: 4
                },
            ]
        );
        assert_eq!(
            f.stats().await,
            DeliveryStats {
                total_deliveries: 1,
                successful_deliveries: 0,
                failed_deliveries: 1
            }
        );
        let dead = f
            .log
            .dead_letter(&f.webhook.id, &f.task.delivery_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((dead.attempts, dead.error.as_str()), (4, err.as_str()));
        let attempts = f
            .log
            .attempts_of(&f.webhook.id, &f.task.delivery_id, 0)
            .await
            .unwrap();
        assert_eq!(
            attempts.iter().map(|a| a.attempt).collect::<Vec<_>>(),
            vec![1, 2, 3, 4]
        );
        assert!(
            attempts
                .iter()
                .all(|a| a.status == AttemptStatus::Failed && a.status_code == Some(500))
        );
    }

    #[tokio::test]
    async fn attempts_are_numbered_from_the_recorded_ones_not_from_the_receive_count() {
        let f = fixture().await;
        f.sender.answer([
            RecordingSender::status(500),
            RecordingSender::status(500),
            RecordingSender::status(500),
        ]);
        let attempts_of = || async {
            f.log
                .attempts_of(&f.webhook.id, &f.task.delivery_id, 0)
                .await
                .unwrap()
                .iter()
                .map(|a| a.attempt)
                .collect::<Vec<_>>()
        };
        f.dispatcher.process(&f.task, 1).await.unwrap();
        // Receipts 2 to 4 ended before sending (crashes, deadline cut-offs): receipt 5 is
        // attempt 2, not 5, and the receiver's attempt header says so.
        f.dispatcher.process(&f.task, 5).await.unwrap();
        assert_eq!(attempts_of().await, vec![1, 2]);
        assert_eq!(
            f.sender.requests()[1]
                .headers
                .iter()
                .find(|(k, _)| *k == "x-webhook-attempt")
                .unwrap()
                .1,
            "2"
        );
        // A receive count that goes back (a redriven message) does not either.
        f.dispatcher.process(&f.task, 2).await.unwrap();
        assert_eq!(attempts_of().await, vec![1, 2, 3]);
        assert_eq!(f.stats().await.total_deliveries, 0);
    }

    #[tokio::test]
    async fn a_receipt_after_the_last_recorded_attempt_gives_up_without_sending() {
        // GIVEN a delivery whose 4 attempts (maxRetries 3) were all sent and recorded, and a
        // crash before its message was dead-lettered
        let f = fixture().await;
        f.sender
            .answer((0..4).map(|_| RecordingSender::status(500)));
        for receive in 1..=4 {
            f.dispatcher.process(&f.task, receive).await.unwrap();
        }
        let sent = f.sender.requests().len();
        // WHEN it comes back
        let out = f.dispatcher.process(&f.task, 9).await.unwrap();
        // THEN it gives up with the attempts made, sends nothing, counts once
        assert!(
            matches!(out, Outcome::GiveUp { attempts: 4, .. }),
            "{out:?}"
        );
        assert_eq!(f.sender.requests().len(), sent);
        assert_eq!(f.stats().await.failed_deliveries, 1);
    }

    #[tokio::test]
    async fn a_task_moved_as_a_new_message_carries_on_from_its_attempts_made() {
        // GIVEN a message re-queued as a new one after 2 attempts (its receive count is 1 again)
        let f = fixture().await;
        f.sender.answer([RecordingSender::status(500)]);
        let moved = DeliveryTask {
            attempts_made: 2,
            ..f.task.clone()
        };
        // WHEN it is received for the first time
        let out = f.dispatcher.process(&moved, 1).await.unwrap();
        // THEN it is attempt 3, retried after the third delay (4 s)
        assert_eq!(
            out,
            Outcome::Retry {
                after: Duration::from_secs(4),
                error: "receiver answered HTTP 500".into()
            }
        );
        let attempts = f
            .log
            .attempts_of(&f.webhook.id, &f.task.delivery_id, 0)
            .await
            .unwrap();
        assert_eq!(attempts.iter().map(|a| a.attempt).collect::<Vec<_>>(), [3]);
    }

    #[tokio::test]
    async fn gone_disables_the_webhook_and_gives_up() {
        let f = fixture().await;
        f.sender.answer([RecordingSender::status(410)]);
        let out = f.dispatcher.process(&f.task, 1).await.unwrap();
        assert!(
            matches!(out, Outcome::GiveUp { ref error, .. } if error.contains("410")),
            "{out:?}"
        );
        assert!(!f.store.get(&f.webhook.id).await.unwrap().unwrap().active);
    }

    #[tokio::test]
    async fn gone_tells_the_owners_endpoint_webhook_disabled_with_the_reason() {
        // GIVEN a dispatcher with notifications on and an endpoint of the webhook's owner
        let f = fixture().await;
        let clock = Arc::new(FixedClock::at(Timestamp::from_unix(1_700_000_000)));
        let queue = Arc::new(crate::ports::memory::MemoryQueue::new());
        let notifier = crate::notify::Notifier::new(
            Arc::new(crate::notify::MemoryNotices::new()),
            f.store.clone(),
            queue.clone(),
            clock.clone(),
        );
        let dispatcher = f.dispatcher.clone().with_notifier(Arc::new(notifier));
        let caller = crate::webhook_service::Caller {
            owner: f.webhook.owner_id.clone(),
            buckets: None,
        };
        crate::notify::NotificationService::new(
            f.store.clone(),
            clock,
            crate::validate::UrlPolicy::PRODUCTION,
        )
        .put(
            &caller,
            crate::notify::PutNotifications {
                url: "https://ops.example.com/n".into(),
                secret: None,
            },
        )
        .await
        .unwrap();
        // WHEN the receiver answers 410
        f.sender.answer([RecordingSender::status(410)]);
        dispatcher.process(&f.task, 1).await.unwrap();
        // THEN the webhook is disabled with the reason, and the endpoint is told so, once
        let stored = f.store.get(&f.webhook.id).await.unwrap().unwrap();
        assert_eq!(stored.disabled_reason.as_deref(), Some(GONE_REASON));
        let tasks = queue.tasks();
        assert_eq!(tasks.len(), 1, "{tasks:?}");
        assert_eq!(tasks[0].event, EventType::WebhookDisabled);
        let body: serde_json::Value = serde_json::from_str(&tasks[0].body).unwrap();
        assert_eq!(body["data"]["reason"], GONE_REASON);
    }

    #[tokio::test]
    async fn retry_after_on_429_and_503_stretches_the_wait() {
        let f = fixture().await;
        let r = |s: u16, ra: &str| {
            Ok(SenderResponse {
                status: s,
                retry_after: Some(ra.into()),
                body_excerpt: String::new(),
            })
        };
        f.sender.answer([r(429, "30"), r(503, "1"), r(500, "999")]);
        assert!(
            matches!(f.dispatcher.process(&f.task, 1).await.unwrap(), Outcome::Retry { after, .. } if after == Duration::from_secs(30))
        );
        assert!(
            matches!(f.dispatcher.process(&f.task, 2).await.unwrap(), Outcome::Retry { after, .. } if after == Duration::from_secs(2))
        );
        assert!(
            matches!(f.dispatcher.process(&f.task, 3).await.unwrap(), Outcome::Retry { after, .. } if after == Duration::from_secs(4)),
            "Retry-After only counts on 429/503"
        );
    }

    #[tokio::test]
    async fn deleted_webhooks_drop_and_disabled_ones_are_not_sent() {
        let f = fixture().await;
        let patch = WebhookPatch {
            active: Some(false),
            ..Default::default()
        };
        f.store
            .update(
                &f.webhook.owner_id,
                &f.webhook.id,
                &patch,
                Timestamp::from_unix(3),
            )
            .await
            .unwrap();
        assert!(matches!(
            f.dispatcher.process(&f.task, 2).await.unwrap(),
            Outcome::GiveUp { .. }
        ));
        assert!(f.sender.requests().is_empty());
        f.store
            .delete(&f.webhook.owner_id, &f.webhook.id)
            .await
            .unwrap();
        assert!(matches!(
            f.dispatcher.process(&f.task, 3).await.unwrap(),
            Outcome::Drop { .. }
        ));
        assert!(f.sender.requests().is_empty());
    }

    #[tokio::test]
    async fn transport_errors_retry_and_refused_targets_give_up_at_once() {
        let f = fixture().await;
        f.sender.answer([
            Err(SendError::Timeout(30)),
            Err(SendError::Refused("10.0.0.1 is private".into())),
        ]);
        assert!(
            matches!(f.dispatcher.process(&f.task, 1).await.unwrap(), Outcome::Retry { ref error, .. } if error.contains("timed out"))
        );
        assert!(
            matches!(f.dispatcher.process(&f.task, 2).await.unwrap(), Outcome::GiveUp { ref error, .. } if error.contains("refused"))
        );
    }

    #[tokio::test]
    async fn a_rotated_out_secret_keeps_signing_until_its_grace_ends() {
        let f = fixture().await;
        let patch = WebhookPatch {
            secret: Some(Secret::new("the-new-secret".into())),
            previous_secret: Some(Some(crate::webhook::PreviousSecret {
                secret: f.webhook.secret.clone(),
                expires_at: Timestamp::from_unix(1_700_000_100),
            })),
            ..Default::default()
        };
        f.store
            .update(
                &f.webhook.owner_id,
                &f.webhook.id,
                &patch,
                Timestamp::from_unix(5),
            )
            .await
            .unwrap();
        f.dispatcher.process(&f.task, 1).await.unwrap();
        let req = &f.sender.requests()[0];
        let h = |n: &str| {
            req.headers
                .iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| v.clone())
        };
        let body = f.task.body.as_bytes();
        assert_eq!(
            h("x-webhook-signature"),
            Some(crate::signing::guide_signature(
                &Secret::new("the-new-secret".into()),
                body
            ))
        );
        assert_eq!(
            h("x-webhook-signature-previous"),
            Some(crate::signing::guide_signature(&f.webhook.secret, body))
        );
        let std = h("webhook-signature").unwrap();
        let id = f.task.delivery_id.to_string();
        assert_eq!(std.split(' ').count(), 2);
        assert!(crate::signing::verify_standard_webhooks(
            &f.webhook.secret,
            &id,
            1_700_000_000,
            body,
            &std
        ));
        assert!(crate::signing::verify_standard_webhooks(
            &Secret::new("the-new-secret".into()),
            &id,
            1_700_000_000,
            body,
            &std
        ));

        // After the grace period only the new secret signs.
        let w = f.store.get(&f.webhook.id).await.unwrap().unwrap();
        assert_eq!(
            w.signing_secrets(Timestamp::from_unix(1_700_000_100)).len(),
            1
        );
    }

    #[tokio::test]
    async fn a_webhook_failing_for_longer_than_the_limit_is_disabled_with_a_reason() {
        let f = fixture().await;
        let patch = WebhookPatch {
            max_retries: Some(0),
            ..Default::default()
        };
        f.store
            .update(
                &f.webhook.owner_id,
                &f.webhook.id,
                &patch,
                Timestamp::from_unix(5),
            )
            .await
            .unwrap();
        // Failing since 6 days before the fixture's clock.
        let old = DeliveryId::generate(3);
        f.log
            .finish(
                &f.webhook.id,
                &old,
                0,
                DeliveryStatus::Failed,
                Timestamp::from_unix(1_700_000_000 - 6 * 86_400),
            )
            .await
            .unwrap();
        f.sender.answer([RecordingSender::status(500)]);
        assert!(matches!(
            f.dispatcher.process(&f.task, 1).await.unwrap(),
            Outcome::GiveUp { .. }
        ));
        let w = f.store.get(&f.webhook.id).await.unwrap().unwrap();
        assert!(!w.active);
        assert!(
            w.disabled_reason
                .as_deref()
                .unwrap()
                .contains("failed since"),
            "{:?}",
            w.disabled_reason
        );
    }

    #[tokio::test]
    async fn a_recent_run_of_failures_does_not_disable() {
        let f = fixture().await;
        let patch = WebhookPatch {
            max_retries: Some(0),
            ..Default::default()
        };
        f.store
            .update(
                &f.webhook.owner_id,
                &f.webhook.id,
                &patch,
                Timestamp::from_unix(5),
            )
            .await
            .unwrap();
        f.sender.answer([RecordingSender::status(500)]);
        f.dispatcher.process(&f.task, 1).await.unwrap();
        let w = f.store.get(&f.webhook.id).await.unwrap().unwrap();
        assert!(w.active && w.failing_since.is_some() && w.disabled_reason.is_none());
    }

    fn task_of(f: &Fixture, n: i64) -> DeliveryTask {
        DeliveryTask {
            delivery_id: DeliveryId::generate(100 + n),
            ..f.task.clone()
        }
    }

    #[tokio::test]
    async fn a_timing_out_webhook_moves_from_the_main_lane_without_an_attempt_and_is_sent_from_the_slow_lane()
     {
        // GIVEN a webhook with a breaker whose receiver timed out once (degraded, timing out)
        let f = fixture().await;
        let health = Arc::new(crate::ports::memory::MemoryHealth::new());
        let dispatcher = Dispatcher::new(
            f.store.clone(),
            f.log.clone(),
            f.sender.clone(),
            Arc::new(FixedClock::at(Timestamp::from_unix(1_700_000_000))),
        )
        .with_breaker(health.clone());
        f.sender.answer([Err(SendError::Timeout(30))]);
        let first = task_of(&f, 1);
        let out = dispatcher.process_in(&first, 1, Lane::Main).await.unwrap();
        assert!(matches!(out, Outcome::Retry { .. }), "{out:?}");
        let h = crate::health::HealthStore::get(&*health, &f.webhook.id)
            .await
            .unwrap()
            .unwrap();
        assert!(is_timing_out(&h), "{h:?}");
        // WHEN its retry and a new delivery are received from the main lane
        let sent = f.sender.requests().len();
        let retry = dispatcher.process_in(&first, 2, Lane::Main).await.unwrap();
        let fresh = dispatcher
            .process_in(&task_of(&f, 2), 1, Lane::Main)
            .await
            .unwrap();
        // THEN both are deferred at once with `slow` (moved), carrying the attempts made, and
        // nothing is sent nor recorded
        assert!(
            matches!(&retry, Outcome::Defer { after, slow: true, attempts_made: 1, reason, webhook_wide: false } if after.is_zero() && reason.contains("slow lane")),
            "{retry:?}"
        );
        assert!(
            matches!(
                &fresh,
                Outcome::Defer {
                    slow: true,
                    attempts_made: 0,
                    ..
                }
            ),
            "{fresh:?}"
        );
        assert_eq!(f.sender.requests().len(), sent);
        let attempts = |t: DeliveryTask| {
            let log = f.log.clone();
            let w = f.webhook.id.clone();
            async move { log.attempts_of(&w, &t.delivery_id, 0).await.unwrap().len() }
        };
        assert_eq!(attempts(first.clone()).await, 1);
        // WHEN the moved retry is received from the slow lane (a new message carrying 1 attempt)
        // THEN it is sent as attempt 2; answered, the webhook is healthy and the main lane sends
        f.sender.answer([RecordingSender::status(200)]);
        let moved = DeliveryTask {
            attempts_made: 1,
            ..first.clone()
        };
        assert_eq!(
            dispatcher.process_in(&moved, 1, Lane::Slow).await.unwrap(),
            Outcome::Delivered
        );
        let sent_now = f.sender.requests();
        assert_eq!(sent_now.len(), sent + 1);
        assert!(
            sent_now
                .last()
                .unwrap()
                .headers
                .iter()
                .any(|(k, v)| k.eq_ignore_ascii_case("x-webhook-attempt") && v == "2"),
            "{:?}",
            sent_now.last().unwrap().headers
        );
        assert_eq!(
            dispatcher
                .process_in(&task_of(&f, 3), 1, Lane::Main)
                .await
                .unwrap(),
            Outcome::Delivered
        );
        // AND a runtime with one queue never defers a timing-out webhook for it
        f.sender.answer([Err(SendError::Timeout(30))]);
        dispatcher.process(&task_of(&f, 4), 1).await.unwrap();
        f.sender.answer([RecordingSender::status(200)]);
        assert_eq!(
            dispatcher.process(&task_of(&f, 5), 1).await.unwrap(),
            Outcome::Delivered
        );
    }

    #[tokio::test]
    async fn the_breaker_opens_after_five_failures_defers_without_attempts_and_a_probe_closes_it() {
        // GIVEN a webhook with a breaker, retries to spare, and a receiver failing 5 times
        let f = fixture().await;
        let clock = Arc::new(FixedClock::at(Timestamp::from_unix(1_700_000_000)));
        let health = Arc::new(crate::ports::memory::MemoryHealth::new());
        let dispatcher = Dispatcher::new(
            f.store.clone(),
            f.log.clone(),
            f.sender.clone(),
            clock.clone(),
        )
        .with_breaker(health.clone());
        f.sender
            .answer((0..5).map(|_| RecordingSender::status(500)));
        let state = || async {
            crate::health::HealthStore::get(&*health, &f.webhook.id)
                .await
                .unwrap()
        };
        // WHEN 5 deliveries fail THEN it is degraded, then open for 30 s
        for n in 1..=5 {
            let out = dispatcher.process(&task_of(&f, n), 1).await.unwrap();
            assert!(matches!(out, Outcome::Retry { .. }), "{out:?}");
            let h = state().await.unwrap();
            let want = if n < 5 {
                crate::health::HealthState::Degraded
            } else {
                crate::health::HealthState::Open
            };
            assert_eq!((h.state, h.consecutive_failures), (want, n as u32));
            assert_eq!(h.last_error.as_deref(), Some("receiver answered HTTP 500"));
        }
        // AND a delivery meanwhile is deferred: nothing sent, no attempt used, slow lane, and
        // the webhook's other deliveries with it (a queue may park them all)
        let sent = f.sender.requests().len();
        let held = task_of(&f, 6);
        let out = dispatcher.process(&held, 1).await.unwrap();
        assert!(
            matches!(out, Outcome::Defer { after, slow: true, attempts_made: 0, webhook_wide: true, .. } if after == Duration::from_secs(30)),
            "{out:?}"
        );
        assert_eq!(f.sender.requests().len(), sent);
        assert!(
            f.log
                .attempts_of(&f.webhook.id, &held.delivery_id, 0)
                .await
                .unwrap()
                .is_empty()
        );
        // WHEN the open period is over THEN the next delivery is the probe; answered, it closes
        clock.advance(30);
        assert_eq!(
            dispatcher.process(&held, 2).await.unwrap(),
            Outcome::Delivered
        );
        let h = state().await.unwrap();
        assert_eq!(
            (h.state, h.consecutive_failures),
            (crate::health::HealthState::Healthy, 0)
        );
        let attempts = f
            .log
            .attempts_of(&f.webhook.id, &held.delivery_id, 0)
            .await
            .unwrap();
        assert_eq!(attempts.iter().map(|a| a.attempt).collect::<Vec<_>>(), [1]);
        // AND only transitions were written: 5 failures, the probe's re-arm, the close
        assert_eq!(health.writes(), 7);
        dispatcher.process(&task_of(&f, 7), 1).await.unwrap();
        assert_eq!(health.writes(), 7, "a healthy delivery writes no state");
    }

    #[tokio::test]
    async fn a_failed_probe_opens_it_again_for_twice_as_long() {
        let f = fixture().await;
        let clock = Arc::new(FixedClock::at(Timestamp::from_unix(1_700_000_000)));
        let health = Arc::new(crate::ports::memory::MemoryHealth::new());
        let dispatcher = Dispatcher::new(
            f.store.clone(),
            f.log.clone(),
            f.sender.clone(),
            clock.clone(),
        )
        .with_breaker(health.clone());
        f.sender.answer((0..6).map(|_| Err(SendError::Timeout(30))));
        for n in 1..=5 {
            dispatcher.process(&task_of(&f, n), 1).await.unwrap();
        }
        clock.advance(30);
        // the probe times out
        assert!(matches!(
            dispatcher.process(&task_of(&f, 6), 1).await.unwrap(),
            Outcome::Retry { .. }
        ));
        let h = crate::health::HealthStore::get(&*health, &f.webhook.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(h.state, crate::health::HealthState::Open);
        assert_eq!(h.open_seconds, 60);
        assert!(h.timing_out);
        assert!(matches!(
            dispatcher.process(&task_of(&f, 7), 1).await.unwrap(),
            Outcome::Defer { after, .. } if after == Duration::from_secs(60)
        ));
    }

    /// A sender that holds every request until released.
    #[derive(Default)]
    struct HoldingSender {
        release: tokio::sync::Notify,
        started: std::sync::atomic::AtomicUsize,
    }

    #[async_trait::async_trait]
    impl WebhookSender for HoldingSender {
        async fn send(&self, _: &OutgoingRequest) -> Result<SenderResponse, SendError> {
            self.started
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.release.notified().await;
            Ok(SenderResponse {
                status: 200,
                retry_after: None,
                body_excerpt: String::new(),
            })
        }
    }

    #[tokio::test]
    async fn over_the_in_flight_cap_a_delivery_waits_without_an_attempt_and_others_go_on() {
        // GIVEN a cap of 2 and two attempts hanging on one webhook
        let f = fixture().await;
        let sender = Arc::new(HoldingSender::default());
        let clock = Arc::new(FixedClock::at(Timestamp::from_unix(1_700_000_000)));
        let dispatcher = Dispatcher::new(f.store.clone(), f.log.clone(), sender.clone(), clock)
            .with_max_in_flight(2);
        let mut hanging = Vec::new();
        for n in 1..=2 {
            let (d, t) = (dispatcher.clone(), task_of(&f, n));
            hanging.push(tokio::spawn(async move { d.process(&t, 1).await }));
        }
        while sender.started.load(std::sync::atomic::Ordering::SeqCst) < 2 {
            tokio::task::yield_now().await;
        }
        // WHEN a third delivery to it comes THEN it is deferred, nothing sent nor recorded;
        // only it waits (the attempts in flight have just started: a fast receiver's cap frees
        // within milliseconds)
        let third = task_of(&f, 3);
        let out = dispatcher.process(&third, 1).await.unwrap();
        assert!(
            matches!(out, Outcome::Defer { slow: false, after, webhook_wide: false, .. } if after == crate::flow::IN_FLIGHT_DEFER),
            "{out:?}"
        );
        // AND once they have run for longer than the shortest wait (a slow or hanging
        // receiver), a delivery waits as long as the oldest has run, and the webhook's whole
        // backlog with it
        std::thread::sleep(crate::flow::IN_FLIGHT_DEFER + Duration::from_millis(100));
        let out = dispatcher.process(&third, 1).await.unwrap();
        assert!(
            matches!(out, Outcome::Defer { slow: false, after, webhook_wide: true, .. } if after > crate::flow::IN_FLIGHT_DEFER),
            "{out:?}"
        );
        assert_eq!(sender.started.load(std::sync::atomic::Ordering::SeqCst), 2);
        assert!(
            f.log
                .attempts_of(&f.webhook.id, &third.delivery_id, 0)
                .await
                .unwrap()
                .is_empty()
        );
        // AND another webhook's delivery is sent
        let mut other = f.webhook.clone();
        other.id = WebhookId::generate(77);
        f.store.create(&other).await.unwrap();
        let other_task = DeliveryTask {
            webhook_id: other.id.clone(),
            ..task_of(&f, 4)
        };
        let (d, t) = (dispatcher.clone(), other_task);
        let other_run = tokio::spawn(async move { d.process(&t, 1).await });
        while sender.started.load(std::sync::atomic::Ordering::SeqCst) < 3 {
            tokio::task::yield_now().await;
        }
        // WHEN the hanging attempts end THEN the place is free again
        sender.release.notify_waiters();
        for h in hanging {
            assert_eq!(h.await.unwrap().unwrap(), Outcome::Delivered);
        }
        assert_eq!(other_run.await.unwrap().unwrap(), Outcome::Delivered);
        let d = dispatcher.clone();
        let again = tokio::spawn(async move { d.process(&third, 2).await });
        while sender.started.load(std::sync::atomic::Ordering::SeqCst) < 4 {
            tokio::task::yield_now().await;
        }
        sender.release.notify_waiters();
        assert_eq!(again.await.unwrap().unwrap(), Outcome::Delivered);
    }
}
