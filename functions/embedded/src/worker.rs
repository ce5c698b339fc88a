//! The local mode's delivery worker: the in-process poller that runs next to the API, pulls
//! messages from the [`SqliteQueue`] and hands each to the core's [`Dispatcher`] — the same
//! decision the delivery Lambda makes — then acts on the [`Outcome`] as the SQS adapter does:
//!
//! | outcome | queue |
//! |---|---|
//! | `Delivered`, `Drop` | acknowledge (delete) |
//! | `Retry { after }` | visible again after `after` (`ChangeMessageVisibility`) |
//! | `GiveUp { error }` | moved to the dead-letter table |
//! | `Err(DispatchError)` (store unavailable) | visible again after a short delay |
//!
//! Up to [`WorkerConfig::concurrency`] deliveries run at once, so a slow receiver never holds up
//! the others. Each received message stays invisible for [`WorkerConfig::visibility_timeout`],
//! longer than any send may take; if the worker dies or is stopped before acting, the message
//! comes back after it with a higher receive count and the dispatcher carries on from the
//! attempts already recorded (and never counts a delivery twice). On shutdown the worker stops
//! receiving and waits, at most [`WorkerConfig::shutdown_grace`], for the deliveries in flight.
//!
//! Logs name messages, deliveries and webhooks by id and never carry a secret or a body.
//!
//! Must not depend on the AWS SDK, the Lambda runtime or an HTTP server.

use std::future::Future;
use std::time::{Duration, SystemTime};

use tokio::task::JoinSet;
use tracing::Instrument;
use webhooks_core::dispatch::{Dispatcher, Outcome};

use crate::queue::{Received, SqliteQueue};

/// How the worker runs. [`Default`] suits a sender with the default 30 s timeout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerConfig {
    /// Deliveries in flight at once (at least 1).
    pub concurrency: usize,
    /// How long a received message stays invisible to other receivers. Must exceed the sender's
    /// timeout (plus the store calls around a send), or a slow delivery is received twice.
    pub visibility_timeout: Duration,
    /// How long, after the shutdown signal, in-flight deliveries may take to finish. Those still
    /// running then are abandoned: they come back after their visibility timeout.
    pub shutdown_grace: Duration,
    /// When the dispatcher could not process a message (store unavailable), it is tried again
    /// after this long.
    pub error_retry_delay: Duration,
    /// The longest the worker sleeps with nothing to do before looking at the queue again (it is
    /// woken at once by an enqueue in this process; this catches other processes' writes).
    pub idle_poll: Duration,
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
            error_retry_delay: Duration::from_secs(5),
            idle_poll: Duration::from_secs(2),
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
    pub fn new(queue: SqliteQueue, dispatcher: Dispatcher, config: WorkerConfig) -> Self {
        Self {
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
            dispatcher,
            config,
        } = self;
        let concurrency = config.concurrency.max(1);
        let mut shutdown = std::pin::pin!(shutdown);
        let mut tasks: JoinSet<()> = JoinSet::new();
        let mut summary = WorkerSummary::default();
        tracing::info!(
            concurrency,
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
            let free = concurrency.saturating_sub(tasks.len());

            // How long to wait before looking again, when there is nothing to start now.
            let mut wait = config.idle_poll;
            if free > 0 {
                match queue
                    .receive(free, config.visibility_timeout, SystemTime::now())
                    .await
                {
                    Ok(batch) if !batch.is_empty() => {
                        for message in batch {
                            let span = tracing::info_span!(
                                "delivery",
                                message_id = message.receipt.message_id(),
                                delivery_id = %message.task.delivery_id,
                                webhook_id = %message.task.webhook_id,
                                generation = message.task.generation,
                                receive_count = message.receive_count,
                            );
                            tasks.spawn(
                                handle(queue.clone(), dispatcher.clone(), message, config.clone())
                                    .instrument(span),
                            );
                        }
                        continue;
                    }
                    Ok(_) => match queue.next_visible_at().await {
                        Ok(Some(at)) => {
                            let until = at
                                .duration_since(SystemTime::now())
                                .unwrap_or(Duration::ZERO);
                            wait = wait.min(until);
                        }
                        Ok(None) => {}
                        Err(e) => tracing::warn!(error = %e, "reading the queue failed"),
                    },
                    Err(e) => {
                        tracing::warn!(error = %e, "receiving from the queue failed; retrying")
                    }
                }
            }

            tokio::select! {
                biased;
                _ = &mut shutdown => break,
                Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                    reap(joined, &mut summary);
                }
                // With every slot taken, only a finishing delivery (above) or the shutdown
                // matters; an enqueue's wake-up stays stored for later.
                _ = queue.notified(), if free > 0 => {}
                _ = tokio::time::sleep(wait), if free > 0 => {}
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

/// One message: one attempt through the dispatcher, then the queue action its outcome calls for.
async fn handle(
    queue: SqliteQueue,
    dispatcher: Dispatcher,
    message: Received,
    config: WorkerConfig,
) {
    let Received {
        receipt,
        task,
        receive_count,
    } = message;
    let result = dispatcher.process(&task, receive_count).await;
    let now = SystemTime::now();
    let acted = match result {
        Ok(Outcome::Delivered) => {
            tracing::info!("delivered");
            queue.ack(&receipt).await
        }
        Ok(Outcome::Drop { reason }) => {
            tracing::info!(%reason, "dropped");
            queue.ack(&receipt).await
        }
        Ok(Outcome::Retry { after, error }) => {
            tracing::info!(%error, retry_in_s = after.as_secs(), "attempt failed; will retry");
            queue.retry_after(&receipt, after, now).await
        }
        Ok(Outcome::GiveUp { error }) => {
            tracing::warn!(%error, "gave up; moved to the dead letters");
            queue.dead_letter(&receipt, &error, now).await
        }
        Err(e) => {
            tracing::warn!(
                error = %e,
                retry_in_s = config.error_retry_delay.as_secs(),
                "could not process the delivery; will try again"
            );
            queue
                .retry_after(&receipt, config.error_retry_delay, now)
                .await
        }
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
