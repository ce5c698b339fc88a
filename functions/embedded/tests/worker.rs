//! The local mode's delivery worker end to end: a real SQLite file holding the webhooks, the
//! delivery log and the queue; the core's dispatcher; scripted senders instead of HTTP.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::{Notify, oneshot};
use webhooks_core::conformance::sample_webhook;
use webhooks_core::delivery::{AttemptStatus, DeliveryTask};
use webhooks_core::dispatch::Dispatcher;
use webhooks_core::ports::memory::RecordingSender;
use webhooks_core::ports::{
    DeliveryLog, DeliveryQueue, ListQuery, OutgoingRequest, Page, SendError, SenderResponse,
    StoreError, SubscriptionStore, WebhookSender,
};
use webhooks_core::time::SystemClock;
use webhooks_core::webhook::{DeliveryStats, DeliveryStatus, RetryConfig, Webhook, WebhookPatch};
use webhooks_core::{BucketId, EventType, OwnerId, Timestamp, WebhookId};
use webhooks_embedded::{
    Database, SqliteDeliveryLog, SqliteQueue, SqliteStore, WorkerConfig, WorkerSummary, run_worker,
};

mod common;
use common::{eventually, ms, secs, task_for};

/// One process's worth of adapters on the database file.
struct App {
    store: SqliteStore,
    log: SqliteDeliveryLog,
    queue: SqliteQueue,
}

impl App {
    fn open(path: &Path) -> App {
        let db = Database::open(path).expect("open");
        App {
            store: SqliteStore::new(db.clone()),
            log: SqliteDeliveryLog::new(db.clone()),
            queue: SqliteQueue::new(db),
        }
    }

    /// Starts a worker with `sender`; stop it with the returned handle.
    fn start_worker(&self, sender: Arc<dyn WebhookSender>, config: WorkerConfig) -> Running {
        self.start_worker_on(Arc::new(self.store.clone()), sender, config)
    }

    /// Starts a worker whose dispatcher reads webhooks from `store`.
    fn start_worker_on(
        &self,
        store: Arc<dyn SubscriptionStore>,
        sender: Arc<dyn WebhookSender>,
        config: WorkerConfig,
    ) -> Running {
        let dispatcher = Dispatcher::new(
            store,
            Arc::new(self.log.clone()),
            sender,
            Arc::new(SystemClock),
        );
        let (stop, stopped) = oneshot::channel::<()>();
        let handle = tokio::spawn(run_worker(self.queue.clone(), dispatcher, config, stopped));
        Running { stop, handle }
    }

    /// The webhook's hourly aggregates of the last and next hour, summed.
    async fn hourly(&self, w: &Webhook) -> webhooks_core::hourly::HourlyStats {
        let now = webhooks_core::hourly::hour_of(Timestamp::from_unix(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs() as i64,
        ));
        let mut sum = webhooks_core::hourly::HourlyStats::empty(now);
        for h in self
            .log
            .hourly_stats(&w.id, now - 1..=now + 1)
            .await
            .unwrap()
        {
            sum.add(&h);
        }
        sum
    }

    async fn stats(&self, w: &Webhook) -> DeliveryStats {
        self.store.get(&w.id).await.unwrap().unwrap().stats
    }
}

struct Running {
    stop: oneshot::Sender<()>,
    handle: tokio::task::JoinHandle<WorkerSummary>,
}

impl Running {
    async fn stop(self) -> WorkerSummary {
        self.stop.send(()).unwrap();
        tokio::time::timeout(secs(10), self.handle)
            .await
            .expect("the worker stops within its grace period")
            .unwrap()
    }
}

/// Short timeouts, and an idle poll longer than any test: every wake-up a test relies on must
/// come from an enqueue or from the next message's visibility time, never from polling.
fn test_config() -> WorkerConfig {
    WorkerConfig {
        concurrency: 8,
        visibility_timeout: secs(1),
        shutdown_grace: ms(200),
        error_retry_delay: ms(200),
        idle_poll: secs(60),
        crash_before_send_at: None,
    }
}

fn db_path() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("webhooks.db");
    (dir, path)
}

async fn webhook(app: &App, retry: RetryConfig, url: &str) -> Webhook {
    let mut w = sample_webhook(
        &OwnerId::parse("user_worker").unwrap(),
        &BucketId::generate(1_700_000_000),
        1_700_000_000,
    );
    w.retry_config = retry;
    w.url = url.into();
    app.store.create(&w).await.unwrap();
    w
}

fn wait_long() -> Duration {
    secs(20)
}

/// A sender that never answers the first `hang` requests (a receiver that stalls, or a worker
/// killed mid-send), and answers every other one 200 at once; it records every request.
#[derive(Debug, Default)]
struct StallingSender {
    hang: AtomicUsize,
    hanging_url: Mutex<Option<String>>,
    started: Notify,
    requests: Mutex<Vec<OutgoingRequest>>,
}

impl StallingSender {
    /// Stalls the next `n` requests to `url`.
    fn stall(n: usize, url: &str) -> Arc<Self> {
        let s = Self::default();
        s.hang.store(n, Ordering::SeqCst);
        *s.hanging_url.lock().unwrap() = Some(url.to_owned());
        Arc::new(s)
    }

    fn requests(&self) -> Vec<OutgoingRequest> {
        self.requests.lock().unwrap().clone()
    }
}

#[async_trait]
impl WebhookSender for StallingSender {
    async fn send(&self, request: &OutgoingRequest) -> Result<SenderResponse, SendError> {
        self.requests.lock().unwrap().push(request.clone());
        let stalls = self.hanging_url.lock().unwrap().as_deref() == Some(request.url.as_str())
            && self
                .hang
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
        if stalls {
            self.started.notify_one();
            std::future::pending::<()>().await;
        }
        RecordingSender::status(200)
    }
}

fn header<'a>(req: &'a OutgoingRequest, name: &str) -> &'a str {
    req.headers
        .iter()
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {name} header"))
}

async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(wait_long(), f)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_delivery_answered_200_is_sent_once_acknowledged_and_counted() {
    // GIVEN a running worker and a receiver that answers 200
    let (_dir, path) = db_path();
    let app = App::open(&path);
    let w = webhook(&app, RetryConfig::default(), "https://example.com/hook").await;
    let sender = Arc::new(RecordingSender::new());
    let worker = app.start_worker(sender.clone(), test_config());

    // WHEN a delivery is enqueued
    let task = task_for(&w.id, 1);
    app.queue
        .enqueue(std::slice::from_ref(&task))
        .await
        .unwrap();

    // THEN it is counted as a success once, and its message leaves the queue
    eventually("the delivery to be counted", wait_long(), || async {
        app.stats(&w).await.total_deliveries == 1
    })
    .await;
    eventually("the message to be acknowledged", wait_long(), || async {
        app.queue.is_empty().await.unwrap()
    })
    .await;
    let summary = worker.stop().await;
    assert_eq!(
        app.stats(&w).await,
        DeliveryStats {
            total_deliveries: 1,
            successful_deliveries: 1,
            failed_deliveries: 0
        }
    );
    let sent = sender.requests();
    assert_eq!(sent.len(), 1, "sent exactly once");
    assert_eq!(sent[0].body, task.body);
    assert_eq!(header(&sent[0], "x-webhook-attempt"), "1");
    assert_eq!(header(&sent[0], "webhook-id"), task.delivery_id.as_str());
    let attempts = app
        .log
        .attempts_of(&w.id, &task.delivery_id, 0)
        .await
        .unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(
        (attempts[0].status, attempts[0].status_code),
        (AttemptStatus::Success, Some(200))
    );
    assert_eq!(app.queue.dlq_len().await.unwrap(), 0);
    assert_eq!(
        summary,
        WorkerSummary {
            handled: 1,
            abandoned: 0
        }
    );
    // AND its hour's aggregate holds it once, with the attempt's latency
    let hours = app.hourly(&w).await;
    assert_eq!(
        (hours.delivered, hours.failed, hours.latency.total()),
        (1, 0, 1)
    );
    let bucket = webhooks_core::hourly::LatencyHistogram::bucket_of(attempts[0].duration_ms);
    assert_eq!(hours.latency.counts[bucket], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_receiver_failing_every_attempt_is_retried_then_dead_lettered_and_counted_failed_once() {
    // GIVEN a webhook with 3 retries 1 s apart, a receiver answering 500 every time, a worker
    let (_dir, path) = db_path();
    let app = App::open(&path);
    let retry = RetryConfig {
        max_retries: 3,
        backoff_multiplier: 1.0,
        initial_delay_seconds: 1,
    };
    let w = webhook(&app, retry, "https://example.com/failing").await;
    let sender = Arc::new(RecordingSender::new());
    sender.answer((0..4).map(|_| RecordingSender::status(500)));
    let worker = app.start_worker(sender.clone(), test_config());
    let started = Instant::now();

    // WHEN a delivery is enqueued
    let task = task_for(&w.id, 2);
    app.queue
        .enqueue(std::slice::from_ref(&task))
        .await
        .unwrap();

    // THEN after 4 attempts it lands in the queue's dead-letter table
    eventually("the message to be dead-lettered", wait_long(), || async {
        app.queue.dlq_len().await.unwrap() == 1
    })
    .await;
    let elapsed = started.elapsed();
    worker.stop().await;
    assert!(
        elapsed >= secs(3),
        "three 1 s waits between 4 attempts: {elapsed:?}"
    );
    assert_eq!(app.queue.len().await.unwrap(), 0);
    let queue_dead = app.queue.dlq_messages(10).await.unwrap().remove(0);
    assert_eq!(queue_dead.error, "receiver answered HTTP 500");
    assert_eq!(queue_dead.receive_count, 4);

    // AND attempts 1..4 were recorded, each after the retry delay, all 500s
    let attempts = app
        .log
        .attempts_of(&w.id, &task.delivery_id, 0)
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
    for pair in attempts.windows(2) {
        assert!(
            pair[1].at.unix() - pair[0].at.unix() >= 1,
            "retry {} waited its second",
            pair[1].attempt
        );
    }
    let attempt_headers: Vec<String> = sender
        .requests()
        .iter()
        .map(|r| header(r, "x-webhook-attempt").to_owned())
        .collect();
    assert_eq!(attempt_headers, ["1", "2", "3", "4"]);

    // AND the log has the dead letter, and the webhook counts one failed delivery
    let dead = app
        .log
        .dead_letter(&w.id, &task.delivery_id)
        .await
        .unwrap()
        .expect("dead letter in the log");
    assert_eq!((dead.attempts, dead.task), (4, task));
    assert_eq!(
        app.stats(&w).await,
        DeliveryStats {
            total_deliveries: 1,
            successful_deliveries: 0,
            failed_deliveries: 1
        }
    );
    let hours = app.hourly(&w).await;
    assert_eq!(
        (hours.delivered, hours.failed, hours.latency.total()),
        (0, 1, 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_stopped_mid_delivery_leaves_it_to_the_next_worker_which_counts_it_once() {
    // GIVEN a worker in the middle of a send that does not return
    let (_dir, path) = db_path();
    let app = App::open(&path);
    let w = webhook(&app, RetryConfig::default(), "https://example.com/slow").await;
    let sender = StallingSender::stall(1, &w.url);
    let first = app.start_worker(sender.clone(), test_config());
    let task = task_for(&w.id, 3);
    app.queue
        .enqueue(std::slice::from_ref(&task))
        .await
        .unwrap();
    within("the first send to start", sender.started.notified()).await;

    // WHEN it is stopped (the grace period runs out) and the process restarts
    let summary = first.stop().await;
    assert_eq!(summary.abandoned, 1, "the stalled delivery was abandoned");
    assert_eq!(app.stats(&w).await.total_deliveries, 0, "not counted yet");
    assert_eq!(app.queue.len().await.unwrap(), 1, "the message is not lost");
    drop(app);
    let app = App::open(&path);
    let second = app.start_worker(sender.clone(), test_config());

    // THEN once its visibility timeout passes, the new worker delivers it and counts it once
    eventually("the delivery to be counted", wait_long(), || async {
        app.stats(&w).await.total_deliveries == 1
    })
    .await;
    eventually("the message to be acknowledged", wait_long(), || async {
        app.queue.is_empty().await.unwrap()
    })
    .await;
    second.stop().await;
    assert_eq!(
        app.stats(&w).await,
        DeliveryStats {
            total_deliveries: 1,
            successful_deliveries: 1,
            failed_deliveries: 0
        }
    );
    let sent = sender.requests();
    assert_eq!(sent.len(), 2, "the stalled send, then the redelivery");
    assert_eq!(
        header(&sent[1], "x-webhook-attempt"),
        "1",
        "the stalled send was never recorded: the resend is the same attempt (numbered from \
         the recorded attempts, not from the receive count)"
    );
    assert!(sent.iter().all(|r| r.body == task.body));
    let attempts = app
        .log
        .attempts_of(&w.id, &task.delivery_id, 0)
        .await
        .unwrap();
    assert_eq!(
        attempts
            .iter()
            .map(|a| (a.attempt, a.status))
            .collect::<Vec<_>>(),
        vec![(1, AttemptStatus::Success)]
    );
    assert_eq!(app.queue.dlq_len().await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stalled_receiver_does_not_hold_up_other_deliveries() {
    // GIVEN a worker busy with a send to a receiver that never answers
    let (_dir, path) = db_path();
    let app = App::open(&path);
    let slow = webhook(&app, RetryConfig::default(), "https://example.com/stalled").await;
    let fast = {
        let mut w = sample_webhook(
            &OwnerId::parse("user_worker").unwrap(),
            &BucketId::generate(1_700_000_001),
            1_700_000_001,
        );
        w.url = "https://example.com/fast".into();
        app.store.create(&w).await.unwrap();
        w
    };
    let sender = StallingSender::stall(1, &slow.url);
    let mut config = test_config();
    config.visibility_timeout = secs(60); // the stalled send is not received again here
    let worker = app.start_worker(sender.clone(), config);
    app.queue.enqueue(&[task_for(&slow.id, 4)]).await.unwrap();
    within("the stalled send to start", sender.started.notified()).await;

    // WHEN deliveries to another receiver are enqueued
    let tasks: Vec<DeliveryTask> = (5..8).map(|n| task_for(&fast.id, n)).collect();
    app.queue.enqueue(&tasks).await.unwrap();

    // THEN they are all delivered while the stalled one is still in flight
    eventually(
        "the other deliveries to be counted",
        wait_long(),
        || async { app.stats(&fast).await.successful_deliveries == 3 },
    )
    .await;
    assert_eq!(app.stats(&slow).await.total_deliveries, 0);
    assert_eq!(
        app.queue.len().await.unwrap(),
        1,
        "only the stalled one is left"
    );
    assert_eq!(worker.stop().await.abandoned, 1);
}

/// A store that is unavailable for its first `outage` reads, then passes everything through.
#[derive(Debug)]
struct FlakyStore {
    inner: SqliteStore,
    outage: AtomicUsize,
}

#[async_trait]
impl SubscriptionStore for FlakyStore {
    async fn create(&self, webhook: &Webhook) -> Result<(), StoreError> {
        self.inner.create(webhook).await
    }
    async fn get(&self, id: &WebhookId) -> Result<Option<Webhook>, StoreError> {
        let down = self
            .outage
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if down {
            return Err(StoreError::Unavailable("simulated outage".into()));
        }
        self.inner.get(id).await
    }
    async fn list(&self, query: &ListQuery) -> Result<Page, StoreError> {
        self.inner.list(query).await
    }
    async fn list_for_bucket_event(
        &self,
        bucket: &BucketId,
        event: EventType,
    ) -> Result<webhooks_core::ports::Subscribers, StoreError> {
        self.inner.list_for_bucket_event(bucket, event).await
    }
    async fn count_in_bucket(&self, bucket: &BucketId, up_to: usize) -> Result<usize, StoreError> {
        self.inner.count_in_bucket(bucket, up_to).await
    }
    async fn update(
        &self,
        owner: &OwnerId,
        id: &WebhookId,
        patch: &WebhookPatch,
        now: Timestamp,
    ) -> Result<Webhook, StoreError> {
        self.inner.update(owner, id, patch, now).await
    }
    async fn delete(&self, owner: &OwnerId, id: &WebhookId) -> Result<(), StoreError> {
        self.inner.delete(owner, id).await
    }
    async fn record_outcome(
        &self,
        id: &WebhookId,
        status: DeliveryStatus,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        self.inner.record_outcome(id, status, at).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_store_outage_keeps_the_message_queued_until_it_can_be_delivered() {
    // GIVEN a worker whose store fails its first read
    let (_dir, path) = db_path();
    let app = App::open(&path);
    let w = webhook(&app, RetryConfig::default(), "https://example.com/hook").await;
    let flaky = Arc::new(FlakyStore {
        inner: app.store.clone(),
        outage: AtomicUsize::new(1),
    });
    let sender = Arc::new(RecordingSender::new());
    let worker = app.start_worker_on(flaky, sender.clone(), test_config());

    // WHEN a delivery is enqueued
    let task = task_for(&w.id, 9);
    app.queue
        .enqueue(std::slice::from_ref(&task))
        .await
        .unwrap();

    // THEN nothing is sent during the outage; the message comes back after the short error delay
    // and is delivered, counted once
    eventually("the delivery to be counted", wait_long(), || async {
        app.stats(&w).await.total_deliveries == 1
    })
    .await;
    eventually("the message to be acknowledged", wait_long(), || async {
        app.queue.is_empty().await.unwrap()
    })
    .await;
    worker.stop().await;
    assert_eq!(sender.requests().len(), 1);
    assert_eq!(app.stats(&w).await.successful_deliveries, 1);
    assert_eq!(app.queue.dlq_len().await.unwrap(), 0);
}

/// Answers 200 to every request; the first one only after `delay`.
#[derive(Debug)]
struct SlowFirstSender {
    delay: Duration,
    sent: AtomicUsize,
}

#[async_trait]
impl WebhookSender for SlowFirstSender {
    async fn send(&self, _request: &OutgoingRequest) -> Result<SenderResponse, SendError> {
        if self.sent.fetch_add(1, Ordering::SeqCst) == 0 {
            tokio::time::sleep(self.delay).await;
        }
        RecordingSender::status(200)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_delivery_outliving_its_visibility_timeout_is_sent_again_but_counted_once() {
    // GIVEN a receiver that answers the first request only after the message's visibility
    // timeout (1 s) has passed, so the worker receives the message again meanwhile
    let (_dir, path) = db_path();
    let app = App::open(&path);
    let w = webhook(
        &app,
        RetryConfig::default(),
        "https://example.com/slow-first",
    )
    .await;
    let sender = Arc::new(SlowFirstSender {
        delay: ms(1_800),
        sent: AtomicUsize::new(0),
    });
    let worker = app.start_worker(sender.clone(), test_config());

    // WHEN one delivery is enqueued
    let task = task_for(&w.id, 4);
    app.queue
        .enqueue(std::slice::from_ref(&task))
        .await
        .unwrap();

    // THEN both receipts send it and both sends succeed, but the delivery is counted once:
    // only the receipt that removes the message counts it
    eventually("both sends to finish", wait_long(), || async {
        sender.sent.load(Ordering::SeqCst) == 2 && app.queue.is_empty().await.unwrap()
    })
    .await;
    tokio::time::sleep(ms(2_000)).await; // the slow first send answers and is written too
    worker.stop().await;
    assert_eq!(
        app.stats(&w).await,
        DeliveryStats {
            total_deliveries: 1,
            successful_deliveries: 1,
            failed_deliveries: 0
        }
    );
    let attempts = app
        .log
        .attempts_of(&w.id, &task.delivery_id, 0)
        .await
        .unwrap();
    assert_eq!(
        attempts
            .iter()
            .map(|a| (a.attempt, a.status))
            .collect::<Vec<_>>(),
        vec![(1, AttemptStatus::Success)],
        "both sends are attempt 1 (the second receipt found nothing recorded): one record"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hanging_receiver_holds_at_most_its_cap_of_sending_slots_and_its_other_deliveries_wait_without_attempts()
 {
    // GIVEN 4 sending slots, a cap of 2 attempts in flight per webhook, and a receiver that
    // never answers, with 10 deliveries waiting for it
    let (_dir, path) = db_path();
    let app = App::open(&path);
    let slow = webhook(&app, RetryConfig::default(), "https://example.com/hangs").await;
    let fast = {
        let mut w = sample_webhook(
            &OwnerId::parse("user_worker").unwrap(),
            &BucketId::generate(1_700_000_002),
            1_700_000_002,
        );
        w.url = "https://example.com/fast".into();
        app.store.create(&w).await.unwrap();
        w
    };
    let sender = StallingSender::stall(usize::MAX, &slow.url);
    let dispatcher = Dispatcher::new(
        Arc::new(app.store.clone()),
        Arc::new(app.log.clone()),
        sender.clone(),
        Arc::new(SystemClock),
    )
    .with_max_in_flight(2);
    let mut config = test_config();
    config.concurrency = 4;
    config.visibility_timeout = secs(60);
    let (stop, stopped) = oneshot::channel::<()>();
    let handle = tokio::spawn(run_worker(app.queue.clone(), dispatcher, config, stopped));
    let worker = Running { stop, handle };
    let slow_tasks: Vec<DeliveryTask> = (10..20).map(|n| task_for(&slow.id, n)).collect();
    app.queue.enqueue(&slow_tasks).await.unwrap();

    // WHEN 10 deliveries to a healthy receiver follow
    let tasks: Vec<DeliveryTask> = (20..30).map(|n| task_for(&fast.id, n)).collect();
    app.queue.enqueue(&tasks).await.unwrap();

    // THEN they are all delivered, with 2 sends hanging: the hanging receiver got 2 requests,
    // its other deliveries wait with no attempt recorded and nothing dead-lettered
    eventually(
        "the healthy deliveries to be counted",
        wait_long(),
        || async { app.stats(&fast).await.successful_deliveries == 10 },
    )
    .await;
    tokio::time::sleep(ms(300)).await;
    let to_slow = sender
        .requests()
        .iter()
        .filter(|r| r.url == slow.url)
        .count();
    assert_eq!(to_slow, 2, "at most the cap in flight to one webhook");
    for t in &slow_tasks {
        let attempts = app
            .log
            .attempts_of(&slow.id, &t.delivery_id, 0)
            .await
            .unwrap();
        assert!(attempts.is_empty(), "a deferral records no attempt");
    }
    assert_eq!(app.queue.len().await.unwrap(), 10, "the slow ones wait");
    assert_eq!(app.queue.dlq_len().await.unwrap(), 0);
    // AND a deferred message's receipt was given back: received again, it is a first receipt
    worker.stop().await;
    let received = app
        .queue
        .receive(20, secs(1), std::time::SystemTime::now() + secs(120))
        .await
        .unwrap();
    assert_eq!(received.len(), 10);
    assert!(
        received.iter().filter(|m| m.receive_count == 1).count() >= 8,
        "{:?}",
        received.iter().map(|m| m.receive_count).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn breaker_states_round_trip_through_the_sqlite_file() {
    use webhooks_core::health::{HealthState, HealthStore, WebhookHealth};
    let (_dir, path) = db_path();
    let store = webhooks_embedded::SqliteHealthStore::new(Database::open(&path).unwrap());
    let id = WebhookId::generate(1_700_000_003);
    assert_eq!(store.get(&id).await.unwrap(), None);
    let open = WebhookHealth {
        state: HealthState::Open,
        since: Timestamp::from_unix(1_700_000_000),
        consecutive_failures: 5,
        last_error: Some("timed out after 30 s".into()),
        open_until: Some(Timestamp::from_unix(1_700_000_030)),
        open_seconds: 30,
        timing_out: true,
    };
    store.put(&id, &open).await.unwrap();
    // a new process on the same file sees it
    let again = webhooks_embedded::SqliteHealthStore::new(Database::open(&path).unwrap());
    assert_eq!(again.get(&id).await.unwrap(), Some(open.clone()));
    let healthy = WebhookHealth::healthy(Timestamp::from_unix(1_700_000_040));
    again.put(&id, &healthy).await.unwrap();
    assert_eq!(again.get(&id).await.unwrap(), Some(healthy));
    again.delete(&id).await.unwrap();
    again.delete(&id).await.unwrap();
    assert_eq!(again.get(&id).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_message_caught_by_the_redrive_guard_is_finished_counted_failed_once_and_redeliverable() {
    // GIVEN a delivery with one failed attempt recorded, whose message has been received the
    // redrive limit of times without an outcome (workers crashing on it; set behind the queue's
    // back on the real file)
    let (_dir, path) = db_path();
    let app = App::open(&path);
    let w = webhook(&app, RetryConfig::default(), "https://example.com/hook").await;
    let task = task_for(&w.id, 1);
    app.queue
        .enqueue(std::slice::from_ref(&task))
        .await
        .unwrap();
    let failed = webhooks_core::delivery::AttemptRecord {
        webhook_id: w.id.clone(),
        delivery_id: task.delivery_id.clone(),
        generation: 0,
        attempt: 1,
        event: task.event,
        status: AttemptStatus::Failed,
        status_code: Some(500),
        duration_ms: 12,
        error: Some("receiver answered HTTP 500".into()),
        response_body: None,
        at: Timestamp::from_unix(1_700_000_010),
    };
    app.log.record_attempt(&failed).await.unwrap();
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute(
            "UPDATE queue_messages SET receive_count = ?1",
            [webhooks_embedded::MAX_RECEIVE_COUNT],
        )
        .unwrap();

    // WHEN a worker receives it once more
    let sender = Arc::new(RecordingSender::new());
    let worker = app.start_worker(sender.clone(), test_config());

    // THEN it is not sent but finished: counted failed once, listed as a dead letter with the
    // reason and the attempts made, and moved out of the queue to its dead-letter table
    eventually(
        "the redriven delivery to be counted",
        wait_long(),
        || async { app.stats(&w).await.total_deliveries == 1 },
    )
    .await;
    eventually("the message to leave the queue", wait_long(), || async {
        app.queue.is_empty().await.unwrap() && app.queue.dlq_len().await.unwrap() == 1
    })
    .await;
    assert_eq!(
        app.stats(&w).await,
        DeliveryStats {
            total_deliveries: 1,
            successful_deliveries: 0,
            failed_deliveries: 1
        }
    );
    assert!(sender.requests().is_empty(), "nothing sent");
    let dead = app.log.dead_letters(&w.id, 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].task.delivery_id, task.delivery_id);
    assert_eq!(dead[0].attempts, 1);
    assert!(dead[0].error.contains("redrive"), "{}", dead[0].error);

    // AND it can be redelivered like any dead letter: sent once, as a new generation
    let service = webhooks_core::delivery_service::DeliveryService::new(
        Arc::new(app.store.clone()),
        Arc::new(app.log.clone()),
        Arc::new(app.queue.clone()),
        Arc::new(SystemClock),
    );
    let caller = webhooks_core::webhook_service::Caller {
        owner: w.owner_id.clone(),
        buckets: None,
    };
    let queued = service
        .redeliver(&caller, &w.id, Some(&task.delivery_id), 1)
        .await
        .unwrap();
    assert_eq!(queued.len(), 1);
    eventually("the redelivery to be counted", wait_long(), || async {
        app.stats(&w).await.successful_deliveries == 1
    })
    .await;
    worker.stop().await;
    assert_eq!(app.stats(&w).await.total_deliveries, 2);
    assert_eq!(sender.requests().len(), 1);
    assert!(app.log.dead_letters(&w.id, 10).await.unwrap().is_empty());
}

#[tokio::test]
async fn the_sqlite_health_store_meets_the_contract() {
    // GIVEN the store on a real file WHEN / THEN every check of the core's contract passes
    let (_dir, path) = db_path();
    let store = webhooks_embedded::SqliteHealthStore::new(Database::open(&path).unwrap());
    webhooks_core::health::tests_support::check(&store).await;
}

/// Answers 500 to `failing`, and to `slow` after `hold` for its first `held` requests; 200 to
/// everything else at once. Records every request.
#[derive(Debug, Default)]
struct ScriptedSender {
    failing: String,
    slow: String,
    hold: Duration,
    held: AtomicUsize,
    /// Set once a held request has been answered.
    answered_slow: std::sync::atomic::AtomicBool,
    requests: Mutex<Vec<OutgoingRequest>>,
}

impl ScriptedSender {
    fn to(&self, url: &str) -> usize {
        let requests = self.requests.lock().unwrap();
        requests.iter().filter(|r| r.url == url).count()
    }
}

#[async_trait]
impl WebhookSender for ScriptedSender {
    async fn send(&self, request: &OutgoingRequest) -> Result<SenderResponse, SendError> {
        self.requests.lock().unwrap().push(request.clone());
        if request.url == self.failing {
            return RecordingSender::status(500);
        }
        if request.url == self.slow
            && self
                .held
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        {
            tokio::time::sleep(self.hold).await;
            self.answered_slow.store(true, Ordering::SeqCst);
        }
        RecordingSender::status(200)
    }
}

/// A webhook of a bucket of its own, created at `at`, to `url`.
async fn webhook_at(app: &App, at: i64, url: &str) -> Webhook {
    let mut w = sample_webhook(
        &OwnerId::parse("user_worker").unwrap(),
        &BucketId::generate(at),
        at,
    );
    w.url = url.into();
    app.store.create(&w).await.unwrap();
    w
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_open_breaker_parks_its_webhooks_backlog_until_the_probe_instead_of_receiving_each_message()
 {
    // GIVEN a worker with the breaker, and a webhook whose receiver fails: 5 deliveries open
    // its breaker, and their retries, deferred, park it
    let (_dir, path) = db_path();
    let app = App::open(&path);
    let bad = webhook_at(&app, 1_700_000_010, "https://example.com/fails").await;
    let good = webhook_at(&app, 1_700_000_011, "https://example.com/ok").await;
    let sender = Arc::new(ScriptedSender {
        failing: bad.url.clone(),
        ..Default::default()
    });
    let health = Arc::new(webhooks_embedded::SqliteHealthStore::new(
        app.queue.database().clone(),
    ));
    let metrics = Arc::new(webhooks_core::metrics::Accumulator::default());
    let dispatcher = Dispatcher::new(
        Arc::new(app.store.clone()),
        Arc::new(app.log.clone()),
        sender.clone(),
        Arc::new(SystemClock),
    )
    .with_breaker(health.clone())
    .with_metrics(metrics.clone());
    let mut config = test_config();
    config.visibility_timeout = secs(60);
    let (stop, stopped) = oneshot::channel::<()>();
    let handle = tokio::spawn(run_worker(app.queue.clone(), dispatcher, config, stopped));
    let worker = Running { stop, handle };
    let first: Vec<DeliveryTask> = (1..=5).map(|n| task_for(&bad.id, n)).collect();
    app.queue.enqueue(&first).await.unwrap();
    eventually("the failing webhook to be parked", wait_long(), || async {
        let now = std::time::SystemTime::now();
        app.queue
            .parked_until(&bad.id, now)
            .await
            .unwrap()
            .is_some()
    })
    .await;
    let parked = app
        .queue
        .parked_until(&bad.id, std::time::SystemTime::now())
        .await
        .unwrap();
    use webhooks_core::health::{HealthState, HealthStore};
    let open = health.get(&bad.id).await.unwrap().expect("a health state");
    assert_eq!(open.state, HealthState::Open);
    // parked until the open period ends (to the second the breaker counts in): the first
    // message visible then is the probe, on time
    let open_until = std::time::UNIX_EPOCH + secs(open.open_until.unwrap().unix() as u64);
    let parked = parked.expect("still parked");
    // (the queue's clock and the breaker's may differ by a few ms)
    assert!(
        parked + ms(100) >= open_until && parked <= open_until + secs(1),
        "{parked:?} vs {open_until:?}"
    );

    // WHEN 300 more deliveries to it and 20 to a healthy webhook are published
    let _ = metrics.take();
    let backlog: Vec<DeliveryTask> = (10..310).map(|n| task_for(&bad.id, n)).collect();
    app.queue.enqueue(&backlog).await.unwrap();
    let healthy: Vec<DeliveryTask> = (310..330).map(|n| task_for(&good.id, n)).collect();
    app.queue.enqueue(&healthy).await.unwrap();

    // THEN the healthy ones are delivered, and the backlog is not received at all: no receipt
    // deferred one by one (at most a straggler of the first retries), nothing sent to the
    // failing receiver beyond its 5 attempts, no attempt recorded
    eventually("the healthy deliveries", wait_long(), || async {
        app.stats(&good).await.successful_deliveries == 20
    })
    .await;
    tokio::time::sleep(ms(300)).await;
    let deferred = metrics
        .take()
        .count(webhooks_core::metrics::DeliveryOutcome::Deferred);
    assert!(deferred < 5, "{deferred} receipts deferred while parked");
    assert_eq!(sender.to(&bad.url), 5);
    for t in &backlog {
        assert!(
            app.log
                .attempts_of(&bad.id, &t.delivery_id, 0)
                .await
                .unwrap()
                .is_empty()
        );
    }
    worker.stop().await;
    // AND all 305 are still queued (nothing lost), none visible before the park ends, every
    // one visible at its end with no receipt used by parking
    assert_eq!(app.queue.len().await.unwrap(), 305);
    assert!(
        app.queue
            .receive(1000, secs(1), parked - ms(1))
            .await
            .unwrap()
            .is_empty()
    );
    let back = app.queue.receive(1000, secs(1), parked).await.unwrap();
    assert_eq!(back.len(), 305);
    assert!(back.iter().all(|m| m.task.webhook_id == bad.id));
    assert!(
        back.iter()
            .filter(|m| m.task.created_at.unix() >= 1_700_000_010)
            .all(|m| m.receive_count == 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_receiver_holding_its_in_flight_cap_parks_its_backlog_and_a_delivery_ends_the_park()
{
    // GIVEN a cap of 2 attempts in flight per webhook, and a receiver whose first 2 requests
    // take 3 s (then it answers at once)
    let (_dir, path) = db_path();
    let app = App::open(&path);
    let slow = webhook_at(&app, 1_700_000_020, "https://example.com/slow").await;
    let sender = Arc::new(ScriptedSender {
        slow: slow.url.clone(),
        hold: secs(3),
        held: AtomicUsize::new(2),
        ..Default::default()
    });
    let dispatcher = Dispatcher::new(
        Arc::new(app.store.clone()),
        Arc::new(app.log.clone()),
        sender.clone(),
        Arc::new(SystemClock),
    )
    .with_max_in_flight(2);
    let mut config = test_config();
    config.visibility_timeout = secs(60);
    let (stop, stopped) = oneshot::channel::<()>();
    let handle = tokio::spawn(run_worker(app.queue.clone(), dispatcher, config, stopped));
    let worker = Running { stop, handle };

    // WHEN 20 deliveries to it are published
    let tasks: Vec<DeliveryTask> = (1..=20).map(|n| task_for(&slow.id, n)).collect();
    app.queue.enqueue(&tasks).await.unwrap();

    // THEN once the 2 in flight have run longer than the shortest wait, the webhook is
    // parked; and the first delivery delivered ends the park before its time (the messages
    // it moved keep theirs)
    let mut last_until = None;
    let mut ended_early = false;
    let deadline = Instant::now() + wait_long();
    while Instant::now() < deadline && !ended_early {
        let now = std::time::SystemTime::now();
        let answered = sender.answered_slow.load(Ordering::SeqCst);
        match app.queue.parked_until(&slow.id, now).await.unwrap() {
            Some(until) => last_until = Some(until),
            None => ended_early = answered && last_until.is_some_and(|u| now < u),
        }
        tokio::time::sleep(ms(20)).await;
    }
    assert!(last_until.is_some(), "never parked");
    assert!(ended_early, "the park was not ended by the delivery");
    // AND all 20 are delivered, each on attempt 1 (parking uses no attempt), none dead
    eventually("all 20 delivered", wait_long(), || async {
        app.stats(&slow).await.successful_deliveries == 20
    })
    .await;
    for t in &tasks {
        let attempts = app
            .log
            .attempts_of(&slow.id, &t.delivery_id, 0)
            .await
            .unwrap();
        assert_eq!(attempts.iter().map(|a| a.attempt).collect::<Vec<_>>(), [1]);
    }
    assert_eq!(app.queue.dlq_len().await.unwrap(), 0);
    worker.stop().await;
}
