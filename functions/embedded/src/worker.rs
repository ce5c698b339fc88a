//! The local mode's delivery worker: the in-process poller that runs next to the API, pulls
//! messages from the [`SqliteQueue`] and hands each to the core's [`Dispatcher`] — the same
//! decision the delivery Lambda makes — then carries out the core's
//! [`QueueAction`](webhooks_core::flow::QueueAction) for it, as the SQS adapter does:
//!
//! | queue action | queue |
//! |---|---|
//! | `Ack` | acknowledge (delete) |
//! | `RetryAfter { delay }` | visible again after `delay` (`ChangeMessageVisibility`) |
//! | `Defer { delay, .. }` | visible again after `delay`, the receipt given back (the receive count goes down by one: flow-control deferrals never reach the redrive guard) |
//! | `Defer { webhook_wide: true, .. }` | as `Defer`, and the webhook parked until then in the same write ([`SqliteQueue::park`]): its other messages are not received one by one only to be deferred |
//! | `DeadLetter { error, .. }` | moved to the dead-letter table |
//!
//! A message the queue's redrive guard hands out ([`Received::redriven`]: received more than
//! `MAX_RECEIVE_COUNT` times without an outcome) is not delivered: it is finished as the AWS
//! dead-letter queue's consumer finishes what SQS's redrive policy moved
//! ([`Dispatcher::reconcile`]: counted failed once, a dead letter with the reason, redeliverable
//! through the API), then moved to the dead-letter table.
//!
//! Up to [`WorkerConfig::concurrency`] deliveries are being sent at once, so a slow receiver never
//! holds up the others. A message is received only when a sending slot is free for it, and the
//! slot is freed as soon as the attempt is over: up to three times as many more messages may be
//! waiting for their outcome's commit meanwhile, so sending goes on while outcomes are written
//! (and the writer commits them in large groups). Each received message stays invisible for
//! [`WorkerConfig::visibility_timeout`], longer than any send may take; if the worker dies or is stopped before acting, the message
//! comes back after it with a higher receive count and the dispatcher carries on from the
//! attempts already recorded (and never counts a delivery twice). On shutdown the worker stops
//! receiving and waits, at most [`WorkerConfig::shutdown_grace`], for the deliveries in flight.
//!
//! A delivered message costs one write: the worker hands the dispatcher a log that holds the
//! successful attempt and every final outcome back ([`HeldLog`]), and then records them *and*
//! carries out the queue action in one write call (one transaction, committed with whatever
//! other writes are waiting: see [`Database`](crate::Database)). Nothing is acknowledged before
//! it is on disk, and a crash can no longer fall between counting a delivery and removing its
//! message. Failed attempts are recorded as they happen (the dispatcher reads them back), and
//! dead letters too.
//!
//! **Exactly-once counting.** A final outcome is counted by the write that removes the message
//! from the queue (acknowledge or dead-letter) and only if that write did remove it with this
//! receipt: a message can be removed once, so its delivery is counted once, without the
//! `finished_deliveries` marker [`DeliveryLog::finish`] writes for other callers (a marker left
//! by an earlier version is still honoured). A stale receipt (the message was received again
//! meanwhile) records its attempt but counts nothing: the newer receipt decides.
//!
//! A delivered delivery ends its webhook's park, if any, in the write that counts it, so a
//! receiver that recovered gets its new deliveries at once.
//!
//! Logs name messages, deliveries and webhooks by id and never carry a secret or a body.
//!
//! Must not depend on the AWS SDK, the Lambda runtime or an HTTP server.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tracing::Instrument;
use webhooks_core::delivery::{AttemptRecord, AttemptStatus, DeadLetter};
use webhooks_core::dispatch::{Dispatcher, Outcome};
use webhooks_core::flow::{self, Lane, QueueAction};
use webhooks_core::ports::{AttemptQuery, DeadLetterQuery, DeliveryLog, LogPage, StoreError};
use webhooks_core::recovery::RecoverJob;
use webhooks_core::webhook::DeliveryStatus;
use webhooks_core::{DeliveryId, RecoverJobId, Timestamp, WebhookId};

use crate::delivery_log::{SqliteDeliveryLog, count_outcome_in, is_finished_in};
use crate::queue::{Action, Receipt, Received, SqliteQueue, act_in, unpark_in};

/// Messages in flight per sending slot: the others have been sent and wait for their outcome's
/// commit (which the writer groups: the more waiting, the fewer commits per delivery).
const IN_FLIGHT_PER_SENDING_SLOT: usize = 4;

/// After an empty receive, the shortest wait before receiving again.
const STALE_VIEW_PAUSE: Duration = Duration::from_millis(2);

/// How the worker runs. [`Default`] suits a sender with the default 30 s timeout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerConfig {
    /// Deliveries being sent at once (at least 1). Up to four times as many messages may be in
    /// flight: the others have been sent and are recording their outcome.
    pub concurrency: usize,
    /// How long a received message stays invisible to other receivers. Must exceed the sender's
    /// timeout plus the store calls around a send, or a slow delivery is received twice.
    pub visibility_timeout: Duration,
    /// How long, after the shutdown signal, in-flight deliveries may take to finish. Those still
    /// running then are abandoned: they come back after their visibility timeout.
    pub shutdown_grace: Duration,
    /// When the dispatcher could not process a message (store unavailable), it is tried again
    /// after this long ([`flow::ERROR_RETRY_DELAY`]; tests shorten it).
    pub error_retry_delay: Duration,
    /// The longest the worker sleeps with nothing to do before looking at the queue again (it is
    /// woken at once by an enqueue in this process; this catches other processes' writes).
    pub idle_poll: Duration,
    /// Tests only (crash fidelity, issue 12): at its `n`-th receipt since it started (1-based),
    /// after the message was received and before anything is sent, the process SIGKILLs
    /// itself. `None` (always, outside tests): never.
    pub crash_before_send_at: Option<u64>,
}

impl WorkerConfig {
    /// The configuration for a sender that times out after `sender_timeout`: messages stay
    /// invisible for twice that plus 10 s.
    pub fn for_sender_timeout(sender_timeout: Duration) -> Self {
        Self {
            concurrency: 32,
            visibility_timeout: sender_timeout
                .saturating_mul(2)
                .saturating_add(Duration::from_secs(10)),
            shutdown_grace: Duration::from_secs(10),
            error_retry_delay: flow::ERROR_RETRY_DELAY,
            idle_poll: Duration::from_secs(2),
            crash_before_send_at: None,
        }
    }
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self::for_sender_timeout(Duration::from_secs(30))
    }
}

/// What a worker did before it stopped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerSummary {
    /// Messages whose processing finished (whatever the outcome).
    pub handled: u64,
    /// Deliveries still running when the shutdown grace ran out; their messages come back after
    /// their visibility timeout.
    pub abandoned: usize,
}

/// The delivery worker of the local mode. See the [module docs](self).
#[derive(Debug)]
pub struct Worker {
    queue: SqliteQueue,
    log: SqliteDeliveryLog,
    dispatcher: Dispatcher,
    config: WorkerConfig,
}

/// Runs a [`Worker`] until `shutdown` resolves; see [`Worker::run`].
pub async fn run_worker(
    queue: SqliteQueue,
    dispatcher: Dispatcher,
    config: WorkerConfig,
    shutdown: impl Future,
) -> WorkerSummary {
    Worker::new(queue, dispatcher, config).run(shutdown).await
}

impl Worker {
    /// A worker taking messages from `queue`. Whatever log `dispatcher` was built with, the
    /// deliveries are recorded in the queue's database (a [`SqliteDeliveryLog`] on it), so that a
    /// delivery's outcome and its message's deletion are one transaction.
    pub fn new(queue: SqliteQueue, dispatcher: Dispatcher, config: WorkerConfig) -> Self {
        Self {
            log: SqliteDeliveryLog::new(queue.database().clone()),
            queue,
            dispatcher,
            config,
        }
    }

    /// Receives and delivers until `shutdown` resolves, then stops receiving and waits (at most
    /// `shutdown_grace`) for the deliveries in flight. Never returns early: queue failures are
    /// logged and retried.
    pub async fn run(self, shutdown: impl Future) -> WorkerSummary {
        let Worker {
            queue,
            log,
            dispatcher,
            config,
        } = self;
        let concurrency = config.concurrency.max(1);
        let max_in_flight = concurrency.saturating_mul(IN_FLIGHT_PER_SENDING_SLOT);
        let sending = Arc::new(Semaphore::new(concurrency));
        let mut shutdown = std::pin::pin!(shutdown);
        let mut tasks: JoinSet<()> = JoinSet::new();
        let mut summary = WorkerSummary::default();
        tracing::info!(
            concurrency,
            max_in_flight,
            visibility_timeout_ms = config.visibility_timeout.as_millis() as u64,
            "delivery worker started"
        );

        loop {
            // Checked on every turn, not only when idle: with a backlog of quick deliveries the
            // loop may go on receiving without ever waiting below.
            tokio::select! {
                biased;
                _ = &mut shutdown => break,
                _ = std::future::ready(()) => {}
            }
            while let Some(joined) = tasks.try_join_next() {
                reap(joined, &mut summary);
            }
            let free = max_in_flight.saturating_sub(tasks.len());
            if free == 0 {
                tokio::select! {
                    biased;
                    _ = &mut shutdown => break,
                    Some(joined) = tasks.join_next() => reap(joined, &mut summary),
                }
                continue;
            }
            // A message is received only with a free sending slot in hand, so it never waits
            // for one (which its visibility timeout does not cover).
            let first = tokio::select! {
                biased;
                _ = &mut shutdown => break,
                permit = Arc::clone(&sending).acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break, // never closed
                },
                Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                    reap(joined, &mut summary);
                    continue;
                }
            };
            let mut permits = vec![first];
            while permits.len() < free {
                match Arc::clone(&sending).try_acquire_owned() {
                    Ok(permit) => permits.push(permit),
                    Err(_) => break,
                }
            }

            // How long to wait before looking again, when there is nothing to start now.
            let mut wait = config.idle_poll;
            match queue
                .receive_answered_before_commit(
                    permits.len(),
                    config.visibility_timeout,
                    crate::queue::queue_now(),
                )
                .await
            {
                Ok(batch) if !batch.is_empty() => {
                    for (message, permit) in batch.into_iter().zip(permits) {
                        let span = tracing::info_span!(
                            "delivery",
                            message_id = message.receipt.message_id(),
                            delivery_id = %message.task.delivery_id,
                            webhook_id = %message.task.webhook_id,
                            generation = message.task.generation,
                            receive_count = message.receive_count,
                        );
                        tasks.spawn(
                            handle(
                                queue.clone(),
                                log.clone(),
                                dispatcher.clone(),
                                permit,
                                message,
                                config.clone(),
                            )
                            .instrument(span),
                        );
                    }
                    continue;
                }
                Ok(_) => match queue.next_visible_at().await {
                    Ok(Some(at)) => {
                        // Reads see only committed receipts: a message this worker has just
                        // received still looks visible until its receipt commits. Not worth
                        // spinning on: look again a moment later.
                        let until = at
                            .duration_since(crate::queue::queue_now())
                            .unwrap_or(Duration::ZERO)
                            .max(STALE_VIEW_PAUSE);
                        wait = wait.min(until);
                    }
                    Ok(None) => {}
                    Err(e) => tracing::warn!(error = %e, "reading the queue failed"),
                },
                Err(e) => {
                    tracing::warn!(error = %e, "receiving from the queue failed; retrying")
                }
            }
            drop(permits);

            tokio::select! {
                biased;
                _ = &mut shutdown => break,
                Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                    reap(joined, &mut summary);
                }
                _ = queue.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }

        let in_flight = tasks.len();
        if in_flight > 0 {
            tracing::info!(
                in_flight,
                grace_ms = config.shutdown_grace.as_millis() as u64,
                "delivery worker stopping: waiting for deliveries in flight"
            );
            let deadline = tokio::time::sleep(config.shutdown_grace);
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    joined = tasks.join_next() => match joined {
                        Some(joined) => reap(joined, &mut summary),
                        None => break,
                    },
                    _ = &mut deadline => break,
                }
            }
        }
        summary.abandoned = tasks.len();
        if summary.abandoned > 0 {
            tracing::warn!(
                abandoned = summary.abandoned,
                "deliveries still running at shutdown were abandoned; their messages come back \
                 after the visibility timeout"
            );
            tasks.shutdown().await;
        }
        tracing::info!(handled = summary.handled, "delivery worker stopped");
        summary
    }
}

/// [`WorkerConfig::crash_before_send_at`]: SIGKILL this process (`kill -KILL <pid>`: nothing
/// gets to clean up, as in a real crash); abort if that could not be sent.
fn crash_now(n: u64) -> ! {
    tracing::warn!(receipt = n, "test hook: SIGKILL before sending");
    let _ = std::process::Command::new("kill")
        .args(["-KILL", &std::process::id().to_string()])
        .status();
    std::thread::sleep(Duration::from_secs(5));
    std::process::abort()
}

fn reap(joined: Result<(), tokio::task::JoinError>, summary: &mut WorkerSummary) {
    match joined {
        Ok(()) => summary.handled += 1,
        // A panic in the dispatcher is a bug; the message stays in the queue and comes back
        // after its visibility timeout (and is dead-lettered by the redrive guard if it keeps
        // panicking).
        Err(e) if e.is_panic() => tracing::error!("a delivery task panicked"),
        Err(_) => {} // cancelled: only at shutdown
    }
}

/// One message: one attempt through the dispatcher, then the queue action its outcome calls for,
/// written together with the writes the dispatcher's [`HeldLog`] held back.
async fn handle(
    queue: SqliteQueue,
    log: SqliteDeliveryLog,
    dispatcher: Dispatcher,
    permit: OwnedSemaphorePermit,
    message: Received,
    config: WorkerConfig,
) {
    let Received {
        receipt,
        task,
        receive_count,
        redriven,
    } = message;
    if redriven {
        drop(permit);
        return finish_redriven(&queue, log, &dispatcher, receipt, &task, &config).await;
    }
    if let Some(n) = config.crash_before_send_at {
        static RECEIPTS: AtomicU64 = AtomicU64::new(0);
        if RECEIPTS.fetch_add(1, Ordering::SeqCst) + 1 == n {
            crash_now(n);
        }
    }
    let held = Arc::new(HeldLog::new(log.clone()));
    // The sending slot is held for the attempt only: the next delivery is sent while this one's
    // outcome waits for its commit.
    let result = dispatcher
        .with_log(held.clone())
        .process(&task, receive_count)
        .await;
    drop(permit);
    let now = crate::queue::queue_now();
    let queue_action = QueueAction::for_result(&result, config.error_retry_delay, Lane::Only);
    match &result {
        Ok(Outcome::Delivered) => tracing::info!("delivered"),
        Ok(Outcome::Drop { reason }) => tracing::info!(%reason, "dropped"),
        Ok(Outcome::Retry { after, error }) => {
            tracing::info!(%error, retry_in_s = after.as_secs(), "attempt failed; will retry")
        }
        Ok(Outcome::GiveUp { error, attempts }) => {
            tracing::warn!(%error, attempts, "gave up; moved to the dead letters")
        }
        Ok(Outcome::Defer { after, reason, .. }) => {
            tracing::info!(%reason, retry_in_ms = after.as_millis() as u64, "deferred")
        }
        Err(e) => tracing::warn!(
            error = %e,
            retry_in_s = config.error_retry_delay.as_secs(),
            "could not process the delivery; will try again"
        ),
    }
    let action = match queue_action {
        QueueAction::Ack => Action::Ack,
        QueueAction::RetryAfter { delay } => Action::retry_after(delay, now),
        // Every delivery of the webhook would wait as long: park them all (no receipt each).
        QueueAction::Defer {
            delay,
            webhook_wide: true,
            ..
        } => Action::park(&task.webhook_id, delay, now),
        // (one queue: nothing moves; both are a deferral)
        QueueAction::Defer { delay, .. } | QueueAction::MoveToSlowLane { delay, .. } => {
            Action::defer(delay, now)
        }
        QueueAction::DeadLetter { error, .. } => Action::move_to_dlq(&error, now),
    };
    let held = held.take();
    let acted = if held.is_empty() {
        queue
            .database()
            .write_without_savepoint(move |conn| act_in(conn, &receipt, &action))
            .await
    } else {
        complete(&queue, log, receipt, held, action, config.error_retry_delay).await
    };
    match acted {
        Ok(true) => {}
        // Only when the message was received again meanwhile, i.e. this delivery took longer
        // than the visibility timeout: the other receipt decides now.
        Ok(false) => tracing::warn!(
            "the message was received again while this delivery ran (visibility timeout too \
             short?); leaving it to the newer receipt"
        ),
        Err(e) => tracing::warn!(
            error = %e,
            "updating the queue failed; the message comes back after its visibility timeout"
        ),
    }
}

/// A message the redrive guard caught (received more than `MAX_RECEIVE_COUNT` times without an
/// outcome: a worker that keeps crashing on it, a store that stays unavailable): finished as the
/// AWS dead-letter queue's consumer finishes one — counted failed once and recorded as a dead
/// letter with the reason, so it shows in the webhook's stats and dead letters and can be
/// redelivered ([`Dispatcher::reconcile`], idempotent) — and then moved to the queue's
/// dead-letter table. If finishing fails, the message is tried again after the error delay
/// (a crash in between: after its visibility timeout), and reconciling again changes nothing.
async fn finish_redriven(
    queue: &SqliteQueue,
    log: SqliteDeliveryLog,
    dispatcher: &Dispatcher,
    receipt: Receipt,
    task: &webhooks_core::delivery::DeliveryTask,
    config: &WorkerConfig,
) {
    let now = crate::queue::queue_now();
    let action = match dispatcher.with_log(Arc::new(log)).reconcile(task).await {
        Ok(reconciled) => {
            tracing::warn!(
                ?reconciled,
                "redrive: finished and moved to the dead letters"
            );
            Action::move_to_dlq(&webhooks_core::dispatch::redriven_error(), now)
        }
        Err(e) => {
            tracing::warn!(error = %e, "redrive: could not finish the delivery; will try again");
            Action::retry_after(config.error_retry_delay, now)
        }
    };
    if let Err(e) = queue
        .database()
        .write_without_savepoint(move |conn| act_in(conn, &receipt, &action))
        .await
    {
        tracing::warn!(error = %e, "updating the queue failed; the message comes back after its visibility timeout");
    }
}

/// Records the held-back writes and carries out `action`, in one write call; the held final
/// outcomes are counted only if `action` removed the message (see the [module docs](self)). If that write fails,
/// nothing of it is kept: the message is made visible again after `error_delay` (a second,
/// separate write), and the next attempt sends the delivery again — at least once, never
/// counted twice.
async fn complete(
    queue: &SqliteQueue,
    log: SqliteDeliveryLog,
    receipt: Receipt,
    held: Held,
    action: Action,
    error_delay: Duration,
) -> Result<bool, crate::DbError> {
    let written = queue
        .database()
        .write_without_savepoint(move |conn| {
            for attempt in &held.attempts {
                log.record_attempt_in(conn, attempt)?;
            }
            let acted = act_in(conn, &receipt, &action)?;
            let removed = acted && matches!(action, Action::Ack | Action::DeadLetter { .. });
            if removed {
                for f in &held.finishes {
                    if !is_finished_in(conn, &f.delivery, f.generation)? {
                        // A delivered one's latency: its successful attempt, held with it.
                        let latency = held
                            .attempts
                            .iter()
                            .find(|a| {
                                f.status == DeliveryStatus::Success
                                    && a.status == AttemptStatus::Success
                                    && a.delivery_id == f.delivery
                                    && a.generation == f.generation
                            })
                            .map(|a| a.duration_ms);
                        count_outcome_in(conn, &f.webhook, f.status, f.at, latency)?;
                    }
                    if f.status == DeliveryStatus::Success {
                        unpark_in(conn, f.webhook.as_str())?;
                    }
                }
            }
            Ok::<_, StoreError>(acted)
        })
        .await;
    match written {
        Ok(acted) => Ok(acted),
        Err(e) => {
            tracing::warn!(
                error = %e,
                retry_in_s = error_delay.as_secs(),
                "recording the delivery failed; it will be sent again"
            );
            queue
                .retry_after(&receipt, error_delay, crate::queue::queue_now())
                .await
        }
    }
}

/// A [`finish`](DeliveryLog::finish) call held back by a [`HeldLog`].
#[derive(Debug, Clone)]
struct Finish {
    webhook: WebhookId,
    delivery: DeliveryId,
    generation: u32,
    status: DeliveryStatus,
    at: Timestamp,
}

#[derive(Debug, Default)]
struct Held {
    attempts: Vec<AttemptRecord>,
    finishes: Vec<Finish>,
}

impl Held {
    fn is_empty(&self) -> bool {
        self.attempts.is_empty() && self.finishes.is_empty()
    }
}

/// The log one delivery's dispatcher writes to: a successful attempt and every `finish` are held
/// back, for the worker to write with the queue action; everything else (failed attempts, dead
/// letters, every read) goes straight to the SQLite log.
///
/// A held `finish` answers `true` ("counted now") at once: the dispatcher does not act on the
/// answer, and the worker's write counts it exactly once (see the [module docs](self)).
struct HeldLog {
    inner: SqliteDeliveryLog,
    held: Mutex<Held>,
}

impl HeldLog {
    fn new(inner: SqliteDeliveryLog) -> Self {
        Self {
            inner,
            held: Mutex::new(Held::default()),
        }
    }

    fn take(&self) -> Held {
        std::mem::take(&mut *self.held.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn hold(&self, f: impl FnOnce(&mut Held)) {
        f(&mut self.held.lock().unwrap_or_else(PoisonError::into_inner));
    }
}

#[async_trait]
impl DeliveryLog for HeldLog {
    async fn record_attempt(&self, attempt: &AttemptRecord) -> Result<(), StoreError> {
        if attempt.status == AttemptStatus::Success {
            self.hold(|h| h.attempts.push(attempt.clone()));
            return Ok(());
        }
        self.inner.record_attempt(attempt).await
    }

    async fn attempts_of(
        &self,
        webhook: &WebhookId,
        delivery: &DeliveryId,
        generation: u32,
    ) -> Result<Vec<AttemptRecord>, StoreError> {
        self.inner.attempts_of(webhook, delivery, generation).await
    }

    async fn attempts_page(
        &self,
        webhook: &WebhookId,
        query: &AttemptQuery,
    ) -> Result<LogPage<AttemptRecord>, StoreError> {
        self.inner.attempts_page(webhook, query).await
    }

    async fn finish(
        &self,
        webhook: &WebhookId,
        delivery: &DeliveryId,
        generation: u32,
        status: DeliveryStatus,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        self.hold(|h| {
            h.finishes.push(Finish {
                webhook: webhook.clone(),
                delivery: delivery.clone(),
                generation,
                status,
                at,
            })
        });
        Ok(true)
    }

    async fn hourly_stats(
        &self,
        webhook: &WebhookId,
        hours: std::ops::RangeInclusive<i64>,
    ) -> Result<Vec<webhooks_core::hourly::HourlyStats>, StoreError> {
        self.inner.hourly_stats(webhook, hours).await
    }

    async fn put_dead_letter(&self, dead: &DeadLetter) -> Result<(), StoreError> {
        self.inner.put_dead_letter(dead).await
    }

    async fn dead_letters_page(
        &self,
        webhook: &WebhookId,
        query: &DeadLetterQuery,
    ) -> Result<LogPage<DeadLetter>, StoreError> {
        self.inner.dead_letters_page(webhook, query).await
    }

    async fn count_dead_letters(
        &self,
        webhook: &WebhookId,
        query: &DeadLetterQuery,
    ) -> Result<u64, StoreError> {
        self.inner.count_dead_letters(webhook, query).await
    }

    async fn dead_letter(
        &self,
        webhook: &WebhookId,
        delivery: &DeliveryId,
    ) -> Result<Option<DeadLetter>, StoreError> {
        self.inner.dead_letter(webhook, delivery).await
    }

    async fn remove_dead_letter(
        &self,
        webhook: &WebhookId,
        delivery: &DeliveryId,
    ) -> Result<(), StoreError> {
        self.inner.remove_dead_letter(webhook, delivery).await
    }

    async fn claim_dead_letter(
        &self,
        webhook: &WebhookId,
        delivery: &DeliveryId,
        generation: u32,
    ) -> Result<bool, StoreError> {
        self.inner
            .claim_dead_letter(webhook, delivery, generation)
            .await
    }

    async fn create_recover_job(&self, job: &RecoverJob) -> Result<bool, StoreError> {
        self.inner.create_recover_job(job).await
    }

    async fn recover_job(
        &self,
        webhook: &WebhookId,
        id: &RecoverJobId,
    ) -> Result<Option<RecoverJob>, StoreError> {
        self.inner.recover_job(webhook, id).await
    }

    async fn update_recover_job(
        &self,
        job: &RecoverJob,
        expected_version: u64,
    ) -> Result<bool, StoreError> {
        self.inner.update_recover_job(job, expected_version).await
    }
}
