//! # webhooks-delivery
//!
//! The delivery Lambda's handler: one SQS batch of queued deliveries in, a partial batch response
//! out (DESIGN.md §4). Each record is handed to the core's [`Dispatcher`], which sends one attempt,
//! records it and decides; the core's [`QueueAction::for_result`] says what the queue must do,
//! and this crate only carries that out the SQS way:
//!
//! | [`QueueAction`] | the message |
//! |---|---|
//! | `Ack` | acknowledged (not in `batchItemFailures`, so Lambda deletes it) |
//! | `RetryAfter { delay }` | `ChangeMessageVisibility(delay)` (at most 12 h since receipt), then a batch item failure: SQS hands it out again after the delay |
//! | `Defer { delay, attempts_made, .. }` | queued again as a new message on the queue it came from (`DelaySeconds` = delay, at most 15 min, carrying `attemptsMade`), then acknowledged: its receive count starts again, so deferrals never reach the redrive guard (if that send fails: as `RetryAfter`) |
//! | `MoveToSlowLane { delay, attempts_made }` | the same, but queued on the slow lane's queue: only then is the received message acknowledged (if that send fails: as `RetryAfter`, so nothing is lost; a copy is harmless, the final marker counts the delivery once) |
//! | `DeadLetter { error, attempts }` | sent to the dead-letter queue with its error, then acknowledged (if that send fails: a batch item failure, so it comes back and gives up again) |
//! | a body that is not a `QueueTask` | sent to the dead-letter queue as it is, with the parse error, then acknowledged: never lost, never retried in vain |
//!
//! **The slow lane** (DESIGN.md §7, [`flow`]'s module docs). When `SLOW_QUEUE_URL` is set
//! (`SlowQueue` in `template.yaml`, its own event source and small `MaximumConcurrency`), a
//! record's lane is told by its `eventSourceARN` ([`QueueActions::lane_of`]): a delivery from
//! the delivery queue whose webhook is timing out or whose breaker is open is moved to the
//! slow queue without being sent, so the delivery queue's instances serve healthy endpoints
//! only; a record from the slow queue is handled the same way as any other, its retries and
//! deferrals stay on the slow queue, and it is never moved again.
//!
//! **The dead-letter queue is another event source of this function.** What the queue's redrive
//! policy moves there (a message received [`flow::MAX_RECEIVE_COUNT`] times without ending: a
//! webhook item that cannot be decoded, DynamoDB unavailable receipt after receipt, a worker
//! that keeps crashing) would otherwise never be counted nor listed. A record whose
//! `eventSourceARN` is the dead-letter queue's is reconciled instead of delivered
//! ([`Dispatcher::reconcile`]: counted failed once, recorded as a dead letter with the reason,
//! so the API lists and redelivers it); one this function sent there itself is already both and
//! is acknowledged; an unreadable body stays there (see `reconcile_record`).
//!
//! Records are processed concurrently, each in its own task: a slow or hanging receiver holds up
//! only its own record, and a panic fails only its own record. When the invocation's deadline
//! comes near, records still running are reported failed (they come back) rather than letting
//! the whole invocation time out. A deadline the runtime sends that cannot be real (absent,
//! already past, more than 15 min ahead) is replaced by the function's timeout ([`time_left`]).
//!
//! **Metrics.** The dispatcher measures each receipt ([`webhooks_core::metrics`]); the handler
//! writes a batch's sum as one CloudWatch Embedded Metric Format line to stdout
//! ([`webhooks_aws::emf`]): deliveries by outcome, attempt latency, publish → delivery lag.
//!
//! The SQS actions sit behind [`QueueActions`] (implemented here for
//! [`webhooks_aws::SqsWorkerQueue`]), so the handler is tested with a fake as well as against
//! the emulator. Logs name messages, deliveries and webhooks by id, never a body or a secret.
//!
//! `src/main.rs` is wiring only: tracing, [`DeliveryConfig::from_env`], SDK clients and adapters
//! built once, `lambda_runtime::run`. This crate must not depend on axum or any other entry point.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use lambda_runtime::LambdaEvent;
use tokio::task::JoinSet;
use tracing::Instrument;
use webhooks_aws::config::ConfigError;
use webhooks_aws::emf::EmfSink;
use webhooks_aws::{
    DeliveryLogConfig, DynamoDbConfig, FinishScope, QueueError, SqsWorkerConfig, SqsWorkerQueue,
};
use webhooks_core::delivery::QueueTask;
use webhooks_core::dispatch::{Dispatcher, Outcome, Reconciled};
use webhooks_core::flow::{self, Lane, QueueAction};
use webhooks_core::metrics::{Accumulator, MetricsSink};

pub use lambda_runtime::Error;

/// The `Function` dimension of this function's metric lines ([`webhooks_aws::emf`]).
pub const METRICS_FUNCTION: &str = "delivery";

/// SQS's longest visibility timeout (core's `RetryConfig::MAX_DELAY_SECONDS`, the one home of it).
pub const MAX_VISIBILITY: Duration =
    Duration::from_secs(webhooks_core::webhook::RetryConfig::MAX_DELAY_SECONDS);
/// Room left below [`MAX_VISIBILITY`] for the time a message spent received before this handler
/// ran (the event source's batching window, at most a few seconds in `template.yaml`): SQS
/// refuses a visibility that would keep a message hidden more than 12 h after it was received.
pub const RECEIPT_MARGIN: Duration = Duration::from_secs(60);
/// How long before the invocation's deadline records still running are given up on.
pub const DEADLINE_MARGIN: Duration = Duration::from_secs(2);
/// The delivery function's timeout (`Timeout` of `DeliveryFunction` in `template.yaml`, passed as
/// `FUNCTION_TIMEOUT_SECONDS`): how long an invocation may run when the runtime's deadline is
/// unusable (see [`time_left`]).
pub const DEFAULT_FUNCTION_TIMEOUT: Duration = Duration::from_secs(60);
/// Lambda's longest function timeout (15 min): a deadline further ahead is not a real one.
pub const MAX_FUNCTION_TIMEOUT: Duration = Duration::from_secs(900);
/// The per-webhook in-flight cap of a delivery function instance: the event source's largest
/// batch (`BatchSize` in `template.yaml`; a test keeps them equal). An instance handles one batch
/// at a time, so a lower cap would only defer part of every batch that goes to one webhook (a
/// new message and a second invocation each time, 20 % more of both at the local mode's default
/// of 8) without protecting anyone: on Lambda, what bounds one slow receiver's share is the event
/// source's `MaximumConcurrency` and the time budget of each batch.
pub const MAX_IN_FLIGHT_PER_WEBHOOK: usize = 10;
/// The longest the delivery log waits after a webhook's first finished delivery for the others
/// of the batch before writing their outcomes as one group
/// (`DynamoDbDeliveryLog::with_coalescing`). It writes sooner, as soon as every record of the
/// invocation still running waits for its finish ([`Ports::finish_scope`]), so this bound
/// matters only while a record's receiver is slower: the invocation lasts until that record
/// ends anyway, so the wait costs no Lambda time, and a batch's answers that arrive seconds
/// apart (a loaded receiver) still make one group — ten stats updates of one webhook become
/// one, and the batch protocol's fixed 5 units are shared by the whole batch. Well below the
/// function's timeout, so a finish never waits into the deadline margin.
pub const FINISH_LINGER: Duration = Duration::from_secs(1);
/// How long one read of a webhook serves the deliveries of an instance
/// (`DynamoDbSubscriptionStore::with_delivery_cache`): a batch's records to one webhook share a
/// read, and a change to the webhook (disabled, new url or secret; a rotated secret keeps
/// signing through its grace period) reaches deliveries at most this much later — as the
/// circuit breaker's cached state does.
pub const WEBHOOK_CACHE_TTL: Duration = Duration::from_secs(1);
/// The SQS system attribute holding how many times the message was received.
pub const RECEIVE_COUNT_ATTRIBUTE: &str = "ApproximateReceiveCount";

/// A queue action failed (its text is logged; the message comes back either way).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct QueueActionError(pub String);

impl From<QueueError> for QueueActionError {
    fn from(e: QueueError) -> Self {
        Self(e.to_string())
    }
}

/// What the handler does to received messages besides acknowledging them: the SQS specifics of
/// a retry and of a dead letter.
#[async_trait]
pub trait QueueActions: Send + Sync + 'static {
    /// Makes the message received from `lane`'s queue visible again `after` from now.
    async fn change_visibility(
        &self,
        lane: Lane,
        receipt_handle: &str,
        after: Duration,
    ) -> Result<(), QueueActionError>;

    /// Queues `body` as a new message on `lane`'s queue, visible after `delay` (SQS: at most
    /// 15 min); the received message is then acknowledged (a flow-control deferral, which must
    /// not count towards the redrive guard, or a move to the slow lane).
    async fn send_again(
        &self,
        lane: Lane,
        body: &str,
        delay: Duration,
        delivery_id: &str,
    ) -> Result<(), QueueActionError>;

    /// Moves a message to the dead-letter queue: its `body` as received, why it gave up, after
    /// how many attempts, and its delivery id when known.
    async fn send_to_dead_letter(
        &self,
        body: &str,
        error: &str,
        attempts: u32,
        delivery_id: Option<&str>,
    ) -> Result<(), QueueActionError>;

    /// Whether a record with this `eventSourceARN` comes from the dead-letter queue (the
    /// function's second event source), not from the delivery queue.
    fn is_dead_letter_queue(&self, _event_source_arn: &str) -> bool {
        false
    }

    /// The lane of a record with this `eventSourceARN` (see the crate docs): [`Lane::Only`]
    /// without a slow lane.
    fn lane_of(&self, _event_source_arn: &str) -> Lane {
        Lane::Only
    }
}

#[async_trait]
impl QueueActions for SqsWorkerQueue {
    async fn change_visibility(
        &self,
        lane: Lane,
        receipt_handle: &str,
        after: Duration,
    ) -> Result<(), QueueActionError> {
        Ok(SqsWorkerQueue::change_visibility(self, lane, receipt_handle, after).await?)
    }

    async fn send_again(
        &self,
        lane: Lane,
        body: &str,
        delay: Duration,
        delivery_id: &str,
    ) -> Result<(), QueueActionError> {
        Ok(SqsWorkerQueue::send_delayed(self, lane, body, delay, delivery_id).await?)
    }

    async fn send_to_dead_letter(
        &self,
        body: &str,
        error: &str,
        attempts: u32,
        delivery_id: Option<&str>,
    ) -> Result<(), QueueActionError> {
        SqsWorkerQueue::send_to_dead_letter(self, body, error, attempts, delivery_id).await?;
        Ok(())
    }

    fn is_dead_letter_queue(&self, event_source_arn: &str) -> bool {
        SqsWorkerQueue::is_dead_letter_queue(self, event_source_arn)
    }

    fn lane_of(&self, event_source_arn: &str) -> Lane {
        SqsWorkerQueue::lane_of(self, event_source_arn)
    }
}

/// What the handler needs, built once per cold start.
#[derive(Clone)]
pub struct Ports {
    pub dispatcher: Dispatcher,
    pub queue: Arc<dyn QueueActions>,
    /// When the dispatcher could not process a message (store unavailable), it comes back after
    /// this long ([`flow::ERROR_RETRY_DELAY`]; tests shorten it).
    pub error_retry_delay: Duration,
    /// The function's timeout: the time an invocation has when the runtime's deadline is
    /// unusable ([`time_left`]).
    pub function_timeout: Duration,
    /// Sums the dispatcher's measurements of a batch ([`Ports::new`] hands it to the
    /// dispatcher); [`handle`] writes them to [`emf`](Self::emf) as one line per batch.
    pub metrics: Arc<Accumulator>,
    /// Where the batch's metric line goes: stdout (CloudWatch Logs) by default.
    pub emf: EmfSink,
    /// The coalescing delivery log's view of the invocation's records
    /// (`DynamoDbDeliveryLog::finish_scope`): with it, a batch's finishes of one webhook are
    /// written together once every record has either finished or ended, rather than in groups
    /// of whatever answered within [`FINISH_LINGER`] of each other.
    pub finish_scope: Option<FinishScope>,
}

impl std::fmt::Debug for Ports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ports")
            .field("error_retry_delay", &self.error_retry_delay)
            .field("function_timeout", &self.function_timeout)
            .finish_non_exhaustive()
    }
}

impl Ports {
    /// Ports with the default error retry delay ([`flow::ERROR_RETRY_DELAY`]) and function timeout
    /// ([`DEFAULT_FUNCTION_TIMEOUT`]).
    /// The dispatcher's metrics are summed per batch and written as EMF to stdout.
    pub fn new(dispatcher: Dispatcher, queue: Arc<dyn QueueActions>) -> Self {
        let metrics = Arc::new(Accumulator::default());
        Self {
            dispatcher: dispatcher.with_metrics(metrics.clone()),
            queue,
            error_retry_delay: flow::ERROR_RETRY_DELAY,
            function_timeout: DEFAULT_FUNCTION_TIMEOUT,
            metrics,
            emf: EmfSink::stdout(METRICS_FUNCTION),
            finish_scope: None,
        }
    }
}

/// How long an invocation that starts `now` may run, from the runtime's deadline
/// (`Lambda-Runtime-Deadline-Ms`: unix milliseconds; `0` when there is none, as in
/// `Context::default()`).
///
/// A real Lambda sends the start time plus the function's timeout. A deadline that is absent,
/// already past when the invocation starts, or further ahead than Lambda's longest timeout is
/// not a real one — cargo-lambda 1.9 sends `600000` (ten minutes after the epoch), and a runtime
/// with a skewed clock could send anything — so the invocation gets `function_timeout` instead
/// of giving up every record at once. Returns the time left and whether the runtime's deadline
/// was used.
pub fn time_left(
    deadline_ms: u64,
    now: SystemTime,
    function_timeout: Duration,
) -> (Duration, bool) {
    let deadline = SystemTime::UNIX_EPOCH + Duration::from_millis(deadline_ms);
    match deadline.duration_since(now) {
        Ok(left) if deadline_ms > 0 && !left.is_zero() && left <= MAX_FUNCTION_TIMEOUT => {
            (left, true)
        }
        _ => (function_timeout, false),
    }
}

/// What happened to one record (logged, and returned by [`process_record`] for tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordOutcome {
    Delivered,
    Dropped {
        reason: String,
    },
    /// Failed; SQS hands it out again after `after` (`visibility_changed` false: the change
    /// failed, so it comes back after the queue's own visibility timeout instead).
    RetryScheduled {
        after: Duration,
        visibility_changed: bool,
    },
    /// Held back by the flow control: queued again as a new message, visible after `after`, and
    /// acknowledged (no attempt used).
    Deferred {
        after: Duration,
    },
    /// Its webhook is timing out or its breaker is open: queued on the slow lane, visible after
    /// `after`, and acknowledged (nothing sent, no attempt used).
    MovedToSlowLane {
        after: Duration,
    },
    /// Gave up and moved to the dead-letter queue.
    DeadLettered {
        error: String,
    },
    /// Gave up, but the dead-letter queue could not take it: it comes back to try again.
    DeadLetterFailed {
        error: String,
    },
    /// Could not be processed (store unavailable, or the task panicked): it comes back.
    Failed {
        error: String,
    },
    /// A dead-letter queue record, reconciled and acknowledged: `recorded` when it had not
    /// ended and is now counted failed and a dead letter in the delivery log
    /// ([`Dispatcher::reconcile`]); otherwise it had ended already.
    Reconciled {
        recorded: bool,
    },
}

impl RecordOutcome {
    /// Whether the message stays on the queue (reported in `batchItemFailures`).
    pub fn keeps_message(&self) -> bool {
        !matches!(
            self,
            RecordOutcome::Delivered
                | RecordOutcome::Dropped { .. }
                | RecordOutcome::Deferred { .. }
                | RecordOutcome::MovedToSlowLane { .. }
                | RecordOutcome::DeadLettered { .. }
                | RecordOutcome::Reconciled { .. }
        )
    }

    fn name(&self) -> &'static str {
        match self {
            RecordOutcome::Delivered => "delivered",
            RecordOutcome::Dropped { .. } => "dropped",
            RecordOutcome::Deferred { .. } => "deferred",
            RecordOutcome::MovedToSlowLane { .. } => "moved_to_slow_lane",
            RecordOutcome::RetryScheduled { .. } => "retry",
            RecordOutcome::DeadLettered { .. } => "dead_lettered",
            RecordOutcome::DeadLetterFailed { .. } => "dead_letter_failed",
            RecordOutcome::Failed { .. } => "failed",
            RecordOutcome::Reconciled { recorded: true } => "reconciled",
            RecordOutcome::Reconciled { recorded: false } => "already_final",
        }
    }
}

/// The Lambda handler: every record of the batch concurrently; the records whose message must
/// stay on the queue are returned as batch item failures.
pub async fn handle(
    event: LambdaEvent<SqsEvent>,
    ports: &Ports,
) -> Result<SqsBatchResponse, Error> {
    let started = Instant::now();
    let (left, trusted) = time_left(
        event.context.deadline,
        SystemTime::now(),
        ports.function_timeout,
    );
    if !trusted {
        tracing::debug!(
            deadline_ms = event.context.deadline,
            assumed_secs = left.as_secs(),
            "the runtime's deadline is absent or not plausible: assuming the function's timeout"
        );
    }
    let deadline = Some(tokio::time::Instant::now() + left.saturating_sub(DEADLINE_MARGIN));

    let mut tasks = JoinSet::new();
    let mut ids = HashMap::new();
    let mut response = SqsBatchResponse::default();
    let records = event.payload.records;
    let mut in_scope = match &ports.finish_scope {
        Some(scope) => scope.begin(records.len()),
        None => Vec::new(),
    };
    for record in records {
        let message_id = record.message_id.clone().unwrap_or_default();
        let ports = ports.clone();
        let span = tracing::info_span!(
            "record",
            message_id = %message_id,
            delivery_id = tracing::field::Empty
        );
        // Held until the record ends (also when it panics or is cut off).
        let in_scope = in_scope.pop();
        let handle = tasks.spawn(
            async move {
                let outcome = process_record(&record, &ports, started).await;
                drop(in_scope);
                outcome
            }
            .instrument(span),
        );
        ids.insert(handle.id(), message_id);
    }

    loop {
        let next = match deadline {
            Some(at) => match tokio::time::timeout_at(at, tasks.join_next_with_id()).await {
                Ok(next) => next,
                Err(_) => break,
            },
            None => tasks.join_next_with_id().await,
        };
        let Some(joined) = next else { break };
        let (id, outcome) = match joined {
            Ok((id, outcome)) => (id, outcome),
            Err(e) => {
                let error = if e.is_panic() {
                    "panicked"
                } else {
                    "cancelled"
                };
                tracing::error!(error, "a record's processing did not finish");
                (
                    e.id(),
                    RecordOutcome::Failed {
                        error: error.to_owned(),
                    },
                )
            }
        };
        let message_id = ids.remove(&id).unwrap_or_default();
        if outcome.keeps_message() {
            response.add_failure(message_id);
        }
    }
    if !ids.is_empty() {
        tracing::warn!(
            unfinished = ids.len(),
            "the invocation's deadline is near: records still running come back later"
        );
        tasks.abort_all();
        for (_, message_id) in ids {
            response.add_failure(message_id);
        }
    }
    tracing::info!(
        failures = response.batch_item_failures.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "batch done"
    );
    // One EMF line for the batch (records cut off by the deadline are not in it: they come
    // back and are measured then).
    ports.emf.record(&ports.metrics.take());
    Ok(response)
}

/// One record: parse, dispatch, act on the outcome. `started` is when the batch's handling
/// began (to keep a retry's visibility within SQS's 12 h since receipt).
pub async fn process_record(record: &SqsMessage, ports: &Ports, started: Instant) -> RecordOutcome {
    if record
        .event_source_arn
        .as_deref()
        .is_some_and(|arn| ports.queue.is_dead_letter_queue(arn))
    {
        return reconcile_record(record, ports).await;
    }
    let receive_count = receive_count(record);
    let lane = ports
        .queue
        .lane_of(record.event_source_arn.as_deref().unwrap_or_default());
    let body = record.body.as_deref().unwrap_or_default();
    let receipt = record.receipt_handle.as_deref();

    let task = match QueueTask::from_json(body) {
        Ok(t) => t,
        Err(e) => {
            let error = format!("unreadable queue message (not a known QueueTask): {e}");
            let delivery_id = record
                .message_attributes
                .get("deliveryId")
                .and_then(|a| a.string_value.as_deref());
            // Nothing was sent: no attempt made (the `attempts` attribute counts attempts, a
            // request the receiver could have seen, never receives).
            return dead_letter(ports, body, error, 0, delivery_id).await;
        }
    };
    let delivery = task.delivery();
    tracing::Span::current().record("delivery_id", delivery.delivery_id.as_str());
    let result = ports
        .dispatcher
        .process_in(delivery, receive_count, lane)
        .await;
    let action = QueueAction::for_result(&result, ports.error_retry_delay, lane);
    let outcome = match (result, action) {
        (Ok(Outcome::Drop { reason }), _) => RecordOutcome::Dropped { reason },
        (_, QueueAction::Ack) => RecordOutcome::Delivered,
        (
            Ok(Outcome::Defer { reason, .. }),
            QueueAction::Defer {
                delay,
                attempts_made,
                ..
            },
        ) => {
            let again = Again {
                to: lane,
                delay,
                attempts_made,
                reason,
            };
            queue_again(ports, delivery, lane, receipt, again).await
        }
        (
            Ok(Outcome::Defer { reason, .. }),
            QueueAction::MoveToSlowLane {
                delay,
                attempts_made,
            },
        ) => {
            let again = Again {
                to: Lane::Slow,
                delay,
                attempts_made,
                reason,
            };
            queue_again(ports, delivery, lane, receipt, again).await
        }
        (
            result,
            QueueAction::RetryAfter { delay }
            | QueueAction::Defer { delay, .. }
            | QueueAction::MoveToSlowLane { delay, .. },
        ) => {
            // SQS refuses a visibility that would keep a message hidden more than 12 h after
            // it was received.
            let after = delay.min(
                MAX_VISIBILITY
                    .saturating_sub(RECEIPT_MARGIN)
                    .saturating_sub(started.elapsed()),
            );
            let visibility_changed = change_visibility(ports, lane, receipt, after).await;
            match result {
                Ok(Outcome::Retry { error, .. }) => {
                    tracing::info!(%error, after_secs = after.as_secs(), "attempt failed; retry scheduled");
                    RecordOutcome::RetryScheduled {
                        after,
                        visibility_changed,
                    }
                }
                Err(e) => RecordOutcome::Failed {
                    error: e.to_string(),
                },
                Ok(other) => {
                    tracing::info!(outcome = ?other, after_secs = after.as_secs(), "deferred");
                    RecordOutcome::RetryScheduled {
                        after,
                        visibility_changed,
                    }
                }
            }
        }
        (_, QueueAction::DeadLetter { error, attempts }) => {
            let id = delivery.delivery_id.as_str();
            dead_letter(ports, body, error, attempts, Some(id)).await
        }
    };
    tracing::info!(
        delivery_id = %delivery.delivery_id,
        webhook_id = %delivery.webhook_id,
        generation = delivery.generation,
        receive_count,
        lane = ?lane,
        outcome = outcome.name(),
        "record processed"
    );
    outcome
}

/// A delivery to queue again as a new message: on lane `to`, visible after `delay`, carrying
/// `attempts_made`; `reason` is logged.
struct Again {
    to: Lane,
    delay: Duration,
    attempts_made: u32,
    reason: String,
}

/// Queues `delivery` again (a deferral on its own lane, or a move to the slow lane), and only
/// then lets the received message be acknowledged: a failed send leaves it to come back after
/// the delay (nothing lost); a send whose answer was lost makes a copy, which the delivery's
/// final marker counts once.
async fn queue_again(
    ports: &Ports,
    delivery: &webhooks_core::delivery::DeliveryTask,
    lane: Lane,
    receipt: Option<&str>,
    again: Again,
) -> RecordOutcome {
    let Again {
        to,
        delay,
        attempts_made,
        reason,
    } = again;
    let body = QueueTask::DeliveryV1(webhooks_core::delivery::DeliveryTask {
        attempts_made,
        ..delivery.clone()
    })
    .to_json();
    let id = delivery.delivery_id.as_str();
    match ports.queue.send_again(to, &body, delay, id).await {
        Ok(()) if to != lane => {
            tracing::info!(%reason, after_secs = delay.as_secs(), "moved to the slow lane");
            RecordOutcome::MovedToSlowLane { after: delay }
        }
        Ok(()) => {
            tracing::info!(%reason, after_secs = delay.as_secs(), "deferred");
            RecordOutcome::Deferred { after: delay }
        }
        Err(e) => {
            tracing::warn!(error = %e, %reason, "could not queue the deferral; it comes back");
            let visibility_changed = change_visibility(ports, lane, receipt, delay).await;
            RecordOutcome::RetryScheduled {
                after: delay,
                visibility_changed,
            }
        }
    }
}

/// One record of the dead-letter queue. What this function moved there itself (a give-up,
/// marked by its `error` attribute) is already counted and recorded as a dead letter: it is
/// acknowledged. What the queue's redrive policy moved there never ended: it is reconciled
/// ([`Dispatcher::reconcile`]: counted failed once, recorded as a dead letter the API lists and
/// redelivers), then acknowledged. A body that is not a `QueueTask` stays on the dead-letter
/// queue for inspection (a batch item failure: it comes back after the queue's visibility
/// timeout until its retention ends); a store failure leaves the record to come back too.
async fn reconcile_record(record: &SqsMessage, ports: &Ports) -> RecordOutcome {
    let body = record.body.as_deref().unwrap_or_default();
    let task = match QueueTask::from_json(body) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "an unreadable message on the dead-letter queue: kept there for inspection");
            return RecordOutcome::Failed {
                error: format!("unreadable dead-letter queue message: {e}"),
            };
        }
    };
    let delivery = task.delivery();
    tracing::Span::current().record("delivery_id", delivery.delivery_id.as_str());
    let outcome = if record
        .message_attributes
        .contains_key(webhooks_aws::sqs::attribute::ERROR)
    {
        RecordOutcome::Reconciled { recorded: false }
    } else {
        match ports.dispatcher.reconcile(delivery).await {
            Ok(Reconciled::DeadLettered { attempts }) => {
                tracing::warn!(
                    attempts,
                    "a delivery the redrive policy moved to the dead-letter queue: counted failed and recorded as a dead letter"
                );
                RecordOutcome::Reconciled { recorded: true }
            }
            Ok(Reconciled::AlreadyFinal) => RecordOutcome::Reconciled { recorded: false },
            Err(e) => RecordOutcome::Failed {
                error: e.to_string(),
            },
        }
    };
    tracing::info!(
        delivery_id = %delivery.delivery_id,
        webhook_id = %delivery.webhook_id,
        generation = delivery.generation,
        outcome = outcome.name(),
        "dead-letter queue record processed"
    );
    outcome
}

/// `ApproximateReceiveCount`, or 1 when absent or unreadable (a first receipt).
pub fn receive_count(record: &SqsMessage) -> u32 {
    record
        .attributes
        .get(RECEIVE_COUNT_ATTRIBUTE)
        .and_then(|v| v.trim().parse::<u32>().ok())
        .unwrap_or(1)
        .max(1)
}

/// Best effort: a failure is logged, and the message comes back after the queue's own
/// visibility timeout instead. Returns whether the change was made.
async fn change_visibility(
    ports: &Ports,
    lane: Lane,
    receipt: Option<&str>,
    after: Duration,
) -> bool {
    let Some(receipt) = receipt.filter(|r| !r.is_empty()) else {
        tracing::warn!("record without a receipt handle: its visibility cannot be changed");
        return false;
    };
    match ports.queue.change_visibility(lane, receipt, after).await {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(error = %e, "could not change the message's visibility");
            false
        }
    }
}

async fn dead_letter(
    ports: &Ports,
    body: &str,
    error: String,
    attempts: u32,
    delivery_id: Option<&str>,
) -> RecordOutcome {
    match ports
        .queue
        .send_to_dead_letter(body, &error, attempts, delivery_id)
        .await
    {
        Ok(()) => {
            tracing::warn!(%error, attempts, "moved to the dead-letter queue");
            RecordOutcome::DeadLettered { error }
        }
        Err(e) => {
            tracing::error!(%error, send_error = %e, "could not move to the dead-letter queue; it comes back");
            RecordOutcome::DeadLetterFailed { error }
        }
    }
}

/// A configuration value is present but unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryConfigError {
    #[error(transparent)]
    Missing(#[from] ConfigError),
    #[error("environment variable {name} {problem}")]
    Invalid { name: &'static str, problem: String },
}

/// Everything the delivery Lambda reads from its environment (`template.yaml` sets it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryConfig {
    pub webhooks: DynamoDbConfig,
    pub log: DeliveryLogConfig,
    pub queues: SqsWorkerConfig,
    /// How long a receiver may take to answer (`DELIVERY_TIMEOUT_SECONDS`, default 30).
    pub timeout: Duration,
    /// Allow loopback and private targets (`ALLOW_PRIVATE_TARGETS=true`; tests only).
    pub allow_private: bool,
    /// Disable a webhook whose deliveries have all failed this long (`AUTO_DISABLE_AFTER_HOURS`,
    /// default 120 = 5 days; `0` turns auto-disabling off).
    pub auto_disable_after: Option<Duration>,
    /// The function's own timeout (`FUNCTION_TIMEOUT_SECONDS`, 1–900, default 60; template.yaml
    /// sets it to the function's `Timeout`): used when the runtime's deadline is unusable.
    pub function_timeout: Duration,
    /// How many instances share each webhook's `rateLimit` (`RATE_LIMIT_SHARES`, 1–1000,
    /// default 1; template.yaml sets the event source's `MaximumConcurrency`): each instance
    /// paces a webhook at `rateLimit / shares` ([`webhooks_core::flow::RateLimiter`]), so the
    /// limit holds without a DynamoDB write per delivery.
    pub rate_limit_shares: u32,
    /// When `webhook.failing` is told again during a run of failures
    /// (`FAILING_NOTICE_AFTER_SECONDS`: two increasing numbers of seconds, default `3600,86400`,
    /// parsed and bounded by [`webhooks_core::notify::Thresholds::parse_secs`]).
    pub failing_notice: webhooks_core::notify::Thresholds,
    /// The operators' SNS topic (`OPERATOR_TOPIC_ARN`, optional: none when absent or empty):
    /// what `webhooks_core::notify::operator_subject` names is published to it.
    pub operator_topic_arn: Option<String>,
}

impl DeliveryConfig {
    pub const TIMEOUT_ENV: &'static str = "DELIVERY_TIMEOUT_SECONDS";
    pub const ALLOW_PRIVATE_ENV: &'static str = "ALLOW_PRIVATE_TARGETS";
    pub const DEFAULT_TIMEOUT: Duration = flow::DEFAULT_DELIVERY_TIMEOUT;
    pub const AUTO_DISABLE_ENV: &'static str = "AUTO_DISABLE_AFTER_HOURS";
    pub const FUNCTION_TIMEOUT_ENV: &'static str = "FUNCTION_TIMEOUT_SECONDS";
    pub const RATE_LIMIT_SHARES_ENV: &'static str = "RATE_LIMIT_SHARES";
    pub const FAILING_NOTICE_ENV: &'static str = "FAILING_NOTICE_AFTER_SECONDS";
    pub const OPERATOR_TOPIC_ENV: &'static str = "OPERATOR_TOPIC_ARN";

    pub fn from_env() -> Result<Self, DeliveryConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, DeliveryConfigError> {
        let number = |name: &'static str| -> Result<Option<u64>, DeliveryConfigError> {
            match lookup(name).map(|v| v.trim().to_owned()) {
                None => Ok(None),
                Some(v) if v.is_empty() => Ok(None),
                Some(v) => v
                    .parse::<u64>()
                    .map(Some)
                    .map_err(|_| DeliveryConfigError::Invalid {
                        name,
                        problem: format!("must be a whole number, got {v:?}"),
                    }),
            }
        };
        let invalid = |name: &'static str| {
            move |e: flow::SettingError| DeliveryConfigError::Invalid { name, problem: e.0 }
        };
        let timeout = match number(Self::TIMEOUT_ENV)? {
            None => flow::DEFAULT_DELIVERY_TIMEOUT,
            Some(secs) => {
                flow::delivery_timeout_from_secs(secs).map_err(invalid(Self::TIMEOUT_ENV))?
            }
        };
        let auto_disable_after = match number(Self::AUTO_DISABLE_ENV)? {
            None => Some(flow::DEFAULT_AUTO_DISABLE_AFTER),
            Some(hours) => flow::auto_disable_after_from_hours(hours)
                .map_err(invalid(Self::AUTO_DISABLE_ENV))?,
        };
        let function_timeout = match number(Self::FUNCTION_TIMEOUT_ENV)? {
            None => DEFAULT_FUNCTION_TIMEOUT,
            Some(secs) if (1..=MAX_FUNCTION_TIMEOUT.as_secs()).contains(&secs) => {
                Duration::from_secs(secs)
            }
            Some(secs) => {
                return Err(DeliveryConfigError::Invalid {
                    name: Self::FUNCTION_TIMEOUT_ENV,
                    problem: format!("must be whole seconds from 1 to 900, got {secs}"),
                });
            }
        };
        let rate_limit_shares = match number(Self::RATE_LIMIT_SHARES_ENV)? {
            None => 1,
            Some(n) if (1..=1000).contains(&n) => n as u32,
            Some(n) => {
                return Err(DeliveryConfigError::Invalid {
                    name: Self::RATE_LIMIT_SHARES_ENV,
                    problem: format!("must be a whole number from 1 to 1000, got {n}"),
                });
            }
        };
        let failing_notice = match lookup(Self::FAILING_NOTICE_ENV) {
            Some(v) if !v.trim().is_empty() => webhooks_core::notify::Thresholds::parse_secs(&v)
                .map_err(|problem| DeliveryConfigError::Invalid {
                    name: Self::FAILING_NOTICE_ENV,
                    problem,
                })?,
            _ => webhooks_core::notify::Thresholds::default(),
        };
        Ok(Self {
            auto_disable_after,
            function_timeout,
            rate_limit_shares,
            failing_notice,
            operator_topic_arn: lookup(Self::OPERATOR_TOPIC_ENV)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty()),
            webhooks: DynamoDbConfig::from_lookup(&lookup)?,
            log: DeliveryLogConfig::from_lookup(&lookup)?,
            queues: SqsWorkerConfig::from_lookup(&lookup)?,
            timeout,
            allow_private: lookup(Self::ALLOW_PRIVATE_ENV).is_some_and(|v| v.trim() == "true"),
        })
    }
}

#[cfg(test)]
mod tests;
