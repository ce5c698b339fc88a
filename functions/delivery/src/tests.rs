//! The handler against the core's in-process fakes and a fake [`QueueActions`]: what each
//! outcome does to the message, the batch's independence of its records, and the fixtures in
//! `events/`. The same handler runs against SQS and DynamoDB in moto in `tests/it/delivery.rs`.

use std::sync::Mutex;

use async_trait::async_trait;
use lambda_runtime::Context;
use webhooks_core::delivery::DeliveryTask;
use webhooks_core::ports::memory::{MemoryLog, MemoryStore, RecordingSender};
use webhooks_core::ports::{
    DeliveryLog, OutgoingRequest, SendError, SenderResponse, StoreError, SubscriptionStore,
    WebhookSender,
};
use webhooks_core::time::FixedClock;
use webhooks_core::webhook::{DeliveryStats, RetryConfig, Secret, Webhook};
use webhooks_core::{BucketId, DeliveryId, EventType, OwnerId, Timestamp, WebhookId};

use super::*;

/// What the fake queue was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Action {
    Visibility {
        receipt: String,
        after: Duration,
    },
    /// A visibility change on the slow lane's queue.
    SlowVisibility {
        receipt: String,
        after: Duration,
    },
    DeadLetter {
        body: String,
        error: String,
        attempts: u32,
        delivery_id: Option<String>,
    },
    Again {
        body: String,
        delay: Duration,
        delivery_id: String,
    },
    /// Queued on the slow lane's queue.
    Slow {
        body: String,
        delay: Duration,
        delivery_id: String,
    },
}

#[derive(Debug, Default)]
struct FakeQueue {
    actions: Mutex<Vec<Action>>,
    fail_dead_letters: Mutex<bool>,
    /// Sends to the slow lane fail (SQS unavailable).
    fail_slow_sends: Mutex<bool>,
    /// With a slow lane: records whose `eventSourceARN` is this are of the slow lane, the others
    /// of the main one.
    slow_arn: Option<String>,
}

impl FakeQueue {
    fn actions(&self) -> Vec<Action> {
        self.actions.lock().unwrap().clone()
    }
}

#[async_trait]
impl QueueActions for FakeQueue {
    async fn change_visibility(
        &self,
        lane: Lane,
        receipt_handle: &str,
        after: Duration,
    ) -> Result<(), QueueActionError> {
        let receipt = receipt_handle.into();
        self.actions.lock().unwrap().push(match lane {
            Lane::Slow => Action::SlowVisibility { receipt, after },
            Lane::Main | Lane::Only => Action::Visibility { receipt, after },
        });
        Ok(())
    }

    async fn send_again(
        &self,
        lane: Lane,
        body: &str,
        delay: Duration,
        delivery_id: &str,
    ) -> Result<(), QueueActionError> {
        let (body, delivery_id) = (body.into(), delivery_id.into());
        let action = match lane {
            Lane::Slow if *self.fail_slow_sends.lock().unwrap() => {
                return Err(QueueActionError("SQS SendMessage unavailable".into()));
            }
            Lane::Slow => Action::Slow {
                body,
                delay,
                delivery_id,
            },
            Lane::Main | Lane::Only => Action::Again {
                body,
                delay,
                delivery_id,
            },
        };
        self.actions.lock().unwrap().push(action);
        Ok(())
    }

    fn lane_of(&self, event_source_arn: &str) -> Lane {
        match &self.slow_arn {
            None => Lane::Only,
            Some(slow) if slow == event_source_arn => Lane::Slow,
            Some(_) => Lane::Main,
        }
    }

    async fn send_to_dead_letter(
        &self,
        body: &str,
        error: &str,
        attempts: u32,
        delivery_id: Option<&str>,
    ) -> Result<(), QueueActionError> {
        if *self.fail_dead_letters.lock().unwrap() {
            return Err(QueueActionError(
                "SQS SendMessage unavailable: timed out".into(),
            ));
        }
        self.actions.lock().unwrap().push(Action::DeadLetter {
            body: body.into(),
            error: error.into(),
            attempts,
            delivery_id: delivery_id.map(str::to_owned),
        });
        Ok(())
    }
}

/// A sender that answers by URL: `/slow` sleeps 10 s (tokio time) then 200, `/panic` panics,
/// `/hang` never answers, anything else 200.
#[derive(Debug)]
struct UrlSender;

#[async_trait]
impl WebhookSender for UrlSender {
    async fn send(&self, request: &OutgoingRequest) -> Result<SenderResponse, SendError> {
        if request.url.ends_with("/slow") {
            tokio::time::sleep(Duration::from_secs(10)).await;
        } else if request.url.ends_with("/hang") {
            std::future::pending::<()>().await;
        } else if request.url.ends_with("/panic") {
            panic!("a sender bug");
        }
        RecordingSender::status(200)
    }
}

/// A store that cannot be reached.
#[derive(Debug)]
struct DownStore;

#[async_trait]
impl SubscriptionStore for DownStore {
    async fn create(&self, _: &Webhook) -> Result<(), StoreError> {
        Err(down())
    }
    async fn get(&self, _: &WebhookId) -> Result<Option<Webhook>, StoreError> {
        Err(down())
    }
    async fn list(
        &self,
        _: &webhooks_core::ports::ListQuery,
    ) -> Result<webhooks_core::ports::Page, StoreError> {
        Err(down())
    }
    async fn list_for_bucket_event(
        &self,
        _: &BucketId,
        _: EventType,
    ) -> Result<webhooks_core::ports::Subscribers, StoreError> {
        Err(down())
    }
    async fn count_in_bucket(&self, _: &BucketId, _: usize) -> Result<usize, StoreError> {
        Err(down())
    }
    async fn update(
        &self,
        _: &OwnerId,
        _: &WebhookId,
        _: &webhooks_core::webhook::WebhookPatch,
        _: Timestamp,
    ) -> Result<Webhook, StoreError> {
        Err(down())
    }
    async fn delete(&self, _: &OwnerId, _: &WebhookId) -> Result<(), StoreError> {
        Err(down())
    }
    async fn record_outcome(
        &self,
        _: &WebhookId,
        _: webhooks_core::webhook::DeliveryStatus,
        _: Timestamp,
    ) -> Result<(), StoreError> {
        Err(down())
    }
}

fn down() -> StoreError {
    StoreError::Unavailable("DynamoDB GetItem: timed out".into())
}

struct Fixture {
    store: Arc<MemoryStore>,
    log: Arc<MemoryLog>,
    queue: Arc<FakeQueue>,
    ports: Ports,
}

fn fixture_with(sender: Arc<dyn WebhookSender>) -> Fixture {
    fixture_on(sender, FakeQueue::default())
}

fn fixture_on(sender: Arc<dyn WebhookSender>, queue: FakeQueue) -> Fixture {
    let store = Arc::new(MemoryStore::new());
    let log = Arc::new(MemoryLog::new(store.clone()));
    let queue = Arc::new(queue);
    let clock = Arc::new(FixedClock::at(Timestamp::from_unix(1_700_000_000)));
    let dispatcher = Dispatcher::new(store.clone(), log.clone(), sender, clock);
    let ports = Ports::new(dispatcher, queue.clone());
    Fixture {
        store,
        log,
        queue,
        ports,
    }
}

fn fixture(sender: &Arc<RecordingSender>) -> Fixture {
    fixture_with(sender.clone())
}

fn webhook(id: WebhookId, url: &str) -> Webhook {
    Webhook {
        id,
        owner_id: OwnerId::parse("alice").unwrap(),
        bucket_id: BucketId::generate(1_700_000_000),
        url: url.into(),
        events: vec![EventType::AlertTriggered],
        description: None,
        active: true,
        retry_config: RetryConfig::default(),
        secret: Secret::new("your_webhook_secret".into()),
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
        created_at: Timestamp::from_unix(1_700_000_000),
        updated_at: Timestamp::from_unix(1_700_000_000),
    }
}

impl Fixture {
    /// A webhook at `url` and a task for it.
    async fn webhook_and_task(&self, url: &str) -> (Webhook, DeliveryTask) {
        let w = webhook(WebhookId::generate(1_700_000_000), url);
        self.store.create(&w).await.unwrap();
        let task = DeliveryTask {
            delivery_id: DeliveryId::generate(1_700_000_001),
            webhook_id: w.id.clone(),
            event: EventType::AlertTriggered,
            generation: 0,
            attempts_made: 0,
            body: r#"{"event":"alert.triggered","data":{"currentValue":31.5}}"#.into(),
            created_at: Timestamp::from_unix(1_700_000_001),
        };
        (w, task)
    }

    async fn stats(&self, id: &WebhookId) -> DeliveryStats {
        self.store.get(id).await.unwrap().unwrap().stats
    }

    async fn run(&self, records: Vec<SqsMessage>) -> Vec<String> {
        self.run_with(records, Context::default()).await
    }

    async fn run_with(&self, records: Vec<SqsMessage>, context: Context) -> Vec<String> {
        let mut event = SqsEvent::default();
        event.records = records;
        let response = handle(LambdaEvent::new(event, context), &self.ports)
            .await
            .expect("the handler never fails a whole batch");
        let mut failed: Vec<String> = response
            .batch_item_failures
            .into_iter()
            .map(|f| f.item_identifier)
            .collect();
        failed.sort();
        failed
    }
}

fn record(id: &str, body: &str, receive_count: u32) -> SqsMessage {
    let mut m = SqsMessage::default();
    m.message_id = Some(id.into());
    m.receipt_handle = Some(format!("receipt-{id}"));
    m.body = Some(body.into());
    m.attributes
        .insert(RECEIVE_COUNT_ATTRIBUTE.into(), receive_count.to_string());
    m
}

fn task_record(id: &str, task: &DeliveryTask, receive_count: u32) -> SqsMessage {
    record(
        id,
        &QueueTask::DeliveryV1(task.clone()).to_json(),
        receive_count,
    )
}

#[tokio::test]
async fn a_2xx_is_acknowledged_and_counted_once() {
    // GIVEN a webhook whose receiver answers 200, and its delivery's message
    let sender = Arc::new(RecordingSender::new());
    let f = fixture(&sender);
    let (w, task) = f.webhook_and_task("https://example.com/ok").await;
    // WHEN the batch is handled
    let failed = f.run(vec![task_record("m1", &task, 1)]).await;
    // THEN the message is acknowledged, the request was sent once, and the stats count it
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(sender.requests().len(), 1);
    assert_eq!(f.stats(&w.id).await.successful_deliveries, 1);
    assert!(f.queue.actions().is_empty());
}

#[tokio::test]
async fn a_500_makes_the_message_visible_after_the_retry_delay_and_reports_it_failed() {
    // GIVEN a receiver answering 500, and a message that carries one attempt already made
    let sender = Arc::new(RecordingSender::new());
    sender.answer([RecordingSender::status(500)]);
    let f = fixture(&sender);
    let (w, mut task) = f.webhook_and_task("https://example.com/500").await;
    task.attempts_made = 1;
    // WHEN handled
    let failed = f.run(vec![task_record("m1", &task, 1)]).await;
    // THEN it is a batch item failure, visible again after the 2nd retry's delay (2 s), and the
    // attempt was recorded as attempt 2
    assert_eq!(failed, vec!["m1"]);
    assert_eq!(
        f.queue.actions(),
        vec![Action::Visibility {
            receipt: "receipt-m1".into(),
            after: Duration::from_secs(2)
        }]
    );
    let attempts = f
        .log
        .attempts_of(&w.id, &task.delivery_id, 0)
        .await
        .unwrap();
    assert_eq!(
        attempts.iter().map(|a| a.attempt).collect::<Vec<_>>(),
        vec![2]
    );
    assert_eq!(f.stats(&w.id).await.total_deliveries, 0, "not final yet");
}

#[tokio::test]
async fn the_last_failed_attempt_goes_to_the_dead_letter_queue_and_is_acknowledged() {
    // GIVEN a receiver answering 500 on the 4th and last attempt (default: 3 retries)
    let sender = Arc::new(RecordingSender::new());
    sender.answer([RecordingSender::status(500)]);
    let f = fixture(&sender);
    let (w, mut task) = f.webhook_and_task("https://example.com/500").await;
    task.attempts_made = 3;
    let body = QueueTask::DeliveryV1(task.clone()).to_json();
    // WHEN handled
    let failed = f.run(vec![task_record("m1", &task, 1)]).await;
    // THEN it is acknowledged after being sent to the DLQ with its error, counted failed once,
    // and the dead letter is in the log
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(
        f.queue.actions(),
        vec![Action::DeadLetter {
            body,
            error: "receiver answered HTTP 500".into(),
            attempts: 4,
            delivery_id: Some(task.delivery_id.to_string()),
        }]
    );
    assert_eq!(f.stats(&w.id).await.failed_deliveries, 1);
    assert!(
        f.log
            .dead_letter(&w.id, &task.delivery_id)
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn a_give_up_the_dead_letter_queue_refuses_keeps_the_message_and_counts_once() {
    // GIVEN a receiver answering 410 and a dead-letter queue that cannot be reached
    let sender = Arc::new(RecordingSender::new());
    sender.answer([RecordingSender::status(410)]);
    let f = fixture(&sender);
    *f.queue.fail_dead_letters.lock().unwrap() = true;
    let (w, task) = f.webhook_and_task("https://example.com/gone").await;
    // WHEN handled
    let failed = f.run(vec![task_record("m1", &task, 1)]).await;
    // THEN the message stays (it comes back and gives up again), the webhook is disabled
    assert_eq!(failed, vec!["m1"]);
    let stored = f.store.get(&w.id).await.unwrap().unwrap();
    assert!(!stored.active);
    // AND when it comes back and the DLQ answers, it goes there; the failure is counted once
    *f.queue.fail_dead_letters.lock().unwrap() = false;
    let failed = f.run(vec![task_record("m1", &task, 2)]).await;
    assert!(failed.is_empty(), "{failed:?}");
    assert!(matches!(
        &f.queue.actions()[..],
        [Action::DeadLetter { .. }]
    ));
    assert_eq!(f.stats(&w.id).await.failed_deliveries, 1);
    assert_eq!(
        sender.requests().len(),
        1,
        "a disabled webhook is not sent again"
    );
}

#[tokio::test]
async fn an_unreadable_body_goes_to_the_dead_letter_queue_as_it_is_and_is_acknowledged() {
    // GIVEN a message that is not a QueueTask, received for the 3rd time
    let sender = Arc::new(RecordingSender::new());
    let f = fixture(&sender);
    let mut m = record("bad", r#"{"type":"delivery.v9","x":1}"#, 3);
    let mut attr = aws_lambda_events::event::sqs::SqsMessageAttribute::default();
    attr.string_value = Some("65a4e5f0aabbccddeeff0011".into());
    attr.data_type = Some("String".into());
    m.message_attributes.insert("deliveryId".into(), attr);
    // WHEN handled
    let failed = f.run(vec![m]).await;
    // THEN it is acknowledged, in the DLQ with the parse error and no attempt made (not its 3
    // receives), and nothing was sent
    assert!(failed.is_empty(), "{failed:?}");
    match &f.queue.actions()[..] {
        [
            Action::DeadLetter {
                body,
                error,
                attempts: 0,
                delivery_id: Some(id),
            },
        ] => {
            assert_eq!(body, r#"{"type":"delivery.v9","x":1}"#);
            assert!(error.contains("unreadable queue message"), "{error}");
            assert_eq!(id, "65a4e5f0aabbccddeeff0011");
        }
        other => panic!("{other:?}"),
    }
    assert!(sender.requests().is_empty());
}

#[tokio::test]
async fn a_deleted_webhooks_delivery_is_dropped_and_acknowledged() {
    // GIVEN a task whose webhook does not exist
    let sender = Arc::new(RecordingSender::new());
    let f = fixture(&sender);
    let (w, task) = f.webhook_and_task("https://example.com/ok").await;
    f.store.delete(&w.owner_id, &w.id).await.unwrap();
    // WHEN handled THEN acknowledged, nothing sent, nothing moved
    assert!(f.run(vec![task_record("m1", &task, 1)]).await.is_empty());
    assert!(sender.requests().is_empty());
    assert!(f.queue.actions().is_empty());
}

#[tokio::test]
async fn an_unavailable_store_keeps_the_message_and_retries_it_shortly() {
    // GIVEN a store that cannot be reached
    let store = Arc::new(DownStore);
    let log = Arc::new(MemoryLog::new(Arc::new(MemoryStore::new())));
    let queue = Arc::new(FakeQueue::default());
    let clock = Arc::new(FixedClock::at(Timestamp::from_unix(1_700_000_000)));
    let sender = Arc::new(RecordingSender::new());
    let ports = Ports::new(
        Dispatcher::new(store, log, sender.clone(), clock),
        queue.clone(),
    );
    let task = DeliveryTask {
        delivery_id: DeliveryId::generate(1),
        webhook_id: WebhookId::generate(1),
        event: EventType::AlertTriggered,
        generation: 0,
        attempts_made: 0,
        body: "{}".into(),
        created_at: Timestamp::from_unix(1),
    };
    // WHEN handled
    let outcome = process_record(&task_record("m1", &task, 1), &ports, Instant::now()).await;
    // THEN the message stays, visible again after the error delay, nothing sent
    assert!(outcome.keeps_message());
    assert!(matches!(outcome, RecordOutcome::Failed { ref error } if error.contains("timed out")));
    assert_eq!(
        queue.actions(),
        vec![Action::Visibility {
            receipt: "receipt-m1".into(),
            after: webhooks_core::flow::ERROR_RETRY_DELAY
        }]
    );
    assert!(sender.requests().is_empty());
}

#[tokio::test(start_paused = true)]
async fn records_of_a_batch_are_sent_concurrently_and_a_panic_fails_only_its_own() {
    // GIVEN 5 slow receivers (10 s each), one sender panic and one quick receiver
    let f = fixture_with(Arc::new(UrlSender));
    let mut records = Vec::new();
    for i in 0..5 {
        let (_, task) = f.webhook_and_task("https://example.com/slow").await;
        records.push(task_record(&format!("slow{i}"), &task, 1));
    }
    let (_, task) = f.webhook_and_task("https://example.com/panic").await;
    records.push(task_record("panic", &task, 1));
    let (quick, task) = f.webhook_and_task("https://example.com/ok").await;
    records.push(task_record("quick", &task, 1));
    // WHEN the batch is handled
    let started = tokio::time::Instant::now();
    let failed = f.run(records).await;
    // THEN it takes one slow answer's time, not five, and only the panicking record failed
    assert_eq!(started.elapsed(), Duration::from_secs(10));
    assert_eq!(failed, vec!["panic"]);
    assert_eq!(f.stats(&quick.id).await.successful_deliveries, 1);
}

#[tokio::test(start_paused = true)]
async fn records_still_running_near_the_deadline_are_reported_failed() {
    // GIVEN a receiver that never answers, a quick one, and an invocation with 5 s left
    let f = fixture_with(Arc::new(UrlSender));
    let (_, hang) = f.webhook_and_task("https://example.com/hang").await;
    let (_, ok) = f.webhook_and_task("https://example.com/ok").await;
    let mut context = Context::default();
    let now_ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    context.deadline = now_ms + 5_000;
    // WHEN handled
    let failed = f
        .run_with(
            vec![task_record("hang", &hang, 1), task_record("ok", &ok, 1)],
            context,
        )
        .await;
    // THEN the hanging record is reported failed before the deadline, the quick one is not
    assert_eq!(failed, vec!["hang"]);
}

/// The deadline cargo-lambda 1.9's runtime emulator sends (`lambda-runtime-deadline-ms: 600000`).
const CARGO_LAMBDA_DEADLINE_MS: u64 = 600_000;

#[tokio::test(start_paused = true)]
async fn a_deadline_in_1970_as_cargo_lambda_sends_it_falls_back_to_the_function_timeout() {
    // GIVEN a quick receiver, a hanging one, and the deadline header cargo-lambda sends
    let f = fixture_with(Arc::new(UrlSender));
    let (quick, ok) = f.webhook_and_task("https://example.com/ok").await;
    let (_, hang) = f.webhook_and_task("https://example.com/hang").await;
    let mut context = Context::default();
    context.deadline = CARGO_LAMBDA_DEADLINE_MS;
    // WHEN handled
    let started = tokio::time::Instant::now();
    let failed = f
        .run_with(
            vec![task_record("ok", &ok, 1), task_record("hang", &hang, 1)],
            context,
        )
        .await;
    // THEN the quick record is delivered (not given up at once), and the hanging one is given
    // up only near the end of the function's own timeout
    assert_eq!(failed, vec!["hang"]);
    assert_eq!(f.stats(&quick.id).await.successful_deliveries, 1);
    assert_eq!(
        started.elapsed(),
        DEFAULT_FUNCTION_TIMEOUT - DEADLINE_MARGIN
    );
}

#[test]
fn only_a_plausible_runtime_deadline_is_used() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let now_ms = 1_800_000_000_000;
    let fallback = Duration::from_secs(60);
    // a real Lambda's: now + the function's timeout
    assert_eq!(
        time_left(now_ms + 60_000, now, fallback),
        (Duration::from_secs(60), true)
    );
    assert_eq!(
        time_left(now_ms + 900_000, now, fallback),
        (Duration::from_secs(900), true)
    );
    // absent, in 1970 (cargo-lambda), already past, exactly now, or beyond Lambda's 15 min
    for deadline in [
        0,
        CARGO_LAMBDA_DEADLINE_MS,
        now_ms - 1,
        now_ms,
        now_ms + 900_001,
        u64::MAX,
    ] {
        assert_eq!(
            time_left(deadline, now, fallback),
            (fallback, false),
            "{deadline}"
        );
    }
}

#[test]
fn the_receive_count_defaults_to_a_first_receipt() {
    let mut m = record("m", "{}", 7);
    assert_eq!(receive_count(&m), 7);
    m.attributes
        .insert(RECEIVE_COUNT_ATTRIBUTE.into(), "many".into());
    assert_eq!(receive_count(&m), 1);
    m.attributes.clear();
    assert_eq!(receive_count(&m), 1);
    m.attributes
        .insert(RECEIVE_COUNT_ATTRIBUTE.into(), "0".into());
    assert_eq!(receive_count(&m), 1);
}

#[test]
fn a_retry_near_twelve_hours_leaves_room_for_the_time_since_receipt() {
    let cap = MAX_VISIBILITY - RECEIPT_MARGIN;
    assert!(cap < Duration::from_secs(43_200));
    assert!(cap >= Duration::from_secs(43_200 - 120));
}

const FIXTURES: [(&str, &str); 3] = [
    (
        "sqs-delivery-single.json",
        include_str!("../../../events/sqs-delivery-single.json"),
    ),
    (
        "sqs-delivery-batch.json",
        include_str!("../../../events/sqs-delivery-batch.json"),
    ),
    (
        "sqs-delivery-retry.json",
        include_str!("../../../events/sqs-delivery-retry.json"),
    ),
];

#[tokio::test]
async fn every_sqs_fixture_runs_through_the_handler() {
    for (name, text) in FIXTURES {
        let event: SqsEvent = serde_json::from_str(text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!event.records.is_empty(), "{name}");

        // GIVEN no webhook exists WHEN handled THEN every record is dropped and acknowledged
        let sender = Arc::new(RecordingSender::new());
        let f = fixture(&sender);
        assert!(f.run(event.records.clone()).await.is_empty(), "{name}");
        assert!(sender.requests().is_empty(), "{name}");

        // GIVEN the webhooks exist WHEN handled THEN every record is delivered, with the
        // attempt number after the attempts the message carries (the retry fixture: 2 made)
        let sender = Arc::new(RecordingSender::new());
        let f = fixture(&sender);
        for r in &event.records {
            let task = QueueTask::from_json(r.body.as_deref().unwrap()).unwrap();
            let id = task.delivery().webhook_id.clone();
            if f.store.get(&id).await.unwrap().is_none() {
                f.store
                    .create(&webhook(id, "https://example.com/hook"))
                    .await
                    .unwrap();
            }
        }
        assert!(f.run(event.records.clone()).await.is_empty(), "{name}");
        let requests = sender.requests();
        assert_eq!(requests.len(), event.records.len(), "{name}");
        let want = if name.contains("retry") { "3" } else { "1" };
        for req in &requests {
            let attempt = req
                .headers
                .iter()
                .find(|(k, _)| *k == "x-webhook-attempt")
                .map(|(_, v)| v.as_str());
            assert_eq!(attempt, Some(want), "{name}");
        }
        // AND each body is exactly the queue message the core writes (a fixture in step with
        // the format)
        for r in &event.records {
            let body = r.body.as_deref().unwrap();
            let task = QueueTask::from_json(body).unwrap();
            assert_eq!(task.to_json(), body, "{name}");
            // the delivery body is in JavaScript's JSON form, as the core renders it
            let inner = &task.delivery().body;
            assert_eq!(
                &webhooks_core::jsjson::canonicalize(inner).unwrap(),
                inner,
                "{name}"
            );
        }
    }
}

#[test]
fn the_config_reads_the_templates_variables_with_a_30_second_default_timeout() {
    let base = |extra: &'static [(&'static str, &'static str)]| {
        move |n: &str| {
            [
                ("WEBHOOKS_TABLE", "w"),
                ("SECRETS_KEY_ARN", "k"),
                ("DELIVERIES_TABLE", "d"),
                ("QUEUE_URL", "http://q"),
                ("DLQ_URL", "http://dlq"),
            ]
            .iter()
            .chain(extra)
            .find(|(k, _)| *k == n)
            .map(|(_, v)| (*v).to_owned())
        }
    };
    // GIVEN only the resource names WHEN read THEN 30 s and no private targets
    let c = DeliveryConfig::from_lookup(base(&[])).unwrap();
    assert_eq!(c.timeout, Duration::from_secs(30));
    assert!(!c.allow_private);
    assert_eq!(
        (
            c.webhooks.table_name.as_str(),
            c.log.deliveries_table.as_str(),
            c.queues.dead_letter_queue_url.as_str()
        ),
        ("w", "d", "http://dlq")
    );
    // GIVEN a timeout and the test switch WHEN read THEN both apply
    let c = DeliveryConfig::from_lookup(base(&[
        ("DELIVERY_TIMEOUT_SECONDS", "5"),
        ("ALLOW_PRIVATE_TARGETS", "true"),
    ]))
    .unwrap();
    assert_eq!((c.timeout, c.allow_private), (Duration::from_secs(5), true));
    // GIVEN a bad timeout, or a missing queue WHEN read THEN the error names the variable
    let err = DeliveryConfig::from_lookup(base(&[("DELIVERY_TIMEOUT_SECONDS", "0")])).unwrap_err();
    assert!(
        err.to_string().contains("DELIVERY_TIMEOUT_SECONDS"),
        "{err}"
    );
    let all = base(&[]);
    let err = DeliveryConfig::from_lookup(|n| all(n).filter(|_| n != "DLQ_URL")).unwrap_err();
    assert!(err.to_string().contains("DLQ_URL"), "{err}");
    // Auto-disable: 5 days by default, hours when set, off with 0, a clear error otherwise
    let days5 = Some(Duration::from_secs(120 * 3600));
    assert_eq!(
        DeliveryConfig::from_lookup(base(&[]))
            .unwrap()
            .auto_disable_after,
        days5
    );
    let c = DeliveryConfig::from_lookup(base(&[("AUTO_DISABLE_AFTER_HOURS", "24")])).unwrap();
    assert_eq!(c.auto_disable_after, Some(Duration::from_secs(24 * 3600)));
    let c = DeliveryConfig::from_lookup(base(&[("AUTO_DISABLE_AFTER_HOURS", "0")])).unwrap();
    assert_eq!(c.auto_disable_after, None);
    let err =
        DeliveryConfig::from_lookup(base(&[("AUTO_DISABLE_AFTER_HOURS", "soon")])).unwrap_err();
    assert!(
        err.to_string().contains("AUTO_DISABLE_AFTER_HOURS"),
        "{err}"
    );
    // The function's timeout (for an unusable runtime deadline): 60 s by default, 1–900 s
    let c = DeliveryConfig::from_lookup(base(&[])).unwrap();
    assert_eq!(c.function_timeout, DEFAULT_FUNCTION_TIMEOUT);
    let c = DeliveryConfig::from_lookup(base(&[("FUNCTION_TIMEOUT_SECONDS", "120")])).unwrap();
    assert_eq!(c.function_timeout, Duration::from_secs(120));
    // The rate limit's shares: 1 by default, 1–1000
    assert_eq!(c.rate_limit_shares, 1);
    let c = DeliveryConfig::from_lookup(base(&[("RATE_LIMIT_SHARES", "10")])).unwrap();
    assert_eq!(c.rate_limit_shares, 10);
    for bad in [
        base(&[("RATE_LIMIT_SHARES", "0")]),
        base(&[("RATE_LIMIT_SHARES", "1001")]),
        base(&[("RATE_LIMIT_SHARES", "ten")]),
    ] {
        let err = DeliveryConfig::from_lookup(bad).unwrap_err();
        assert!(err.to_string().contains("RATE_LIMIT_SHARES"), "{err}");
    }
    // The failing notices' repeats: 1 h and 24 h by default, two increasing second counts up
    // to 14 days, a clear error naming the variable otherwise
    assert_eq!(
        c.failing_notice.repeats,
        [Duration::from_secs(3600), Duration::from_secs(86_400)]
    );
    let c =
        DeliveryConfig::from_lookup(base(&[("FAILING_NOTICE_AFTER_SECONDS", "60,600")])).unwrap();
    assert_eq!(
        c.failing_notice.repeats,
        [Duration::from_secs(60), Duration::from_secs(600)]
    );
    // The operators' topic: none unless set and not empty
    assert_eq!(c.operator_topic_arn, None);
    const ARN: &str = "arn:aws:sns:us-east-1:123456789012:ops";
    let c = DeliveryConfig::from_lookup(base(&[("OPERATOR_TOPIC_ARN", ARN)])).unwrap();
    assert_eq!(c.operator_topic_arn.as_deref(), Some(ARN));
    let c = DeliveryConfig::from_lookup(base(&[("OPERATOR_TOPIC_ARN", " ")])).unwrap();
    assert_eq!(c.operator_topic_arn, None);
    for bad in ["600,60", "0,60", "60", "1h,2h", "60,1209601"] {
        let err = DeliveryConfig::from_lookup(|n| {
            if n == "FAILING_NOTICE_AFTER_SECONDS" {
                Some(bad.to_owned())
            } else {
                base(&[])(n)
            }
        })
        .unwrap_err();
        assert!(
            err.to_string().contains("FAILING_NOTICE_AFTER_SECONDS"),
            "{bad}: {err}"
        );
    }
    for bad in [
        base(&[("FUNCTION_TIMEOUT_SECONDS", "0")]),
        base(&[("FUNCTION_TIMEOUT_SECONDS", "901")]),
        base(&[("FUNCTION_TIMEOUT_SECONDS", "1m")]),
    ] {
        let err = DeliveryConfig::from_lookup(bad).unwrap_err();
        assert!(
            err.to_string().contains("FUNCTION_TIMEOUT_SECONDS"),
            "{err}"
        );
    }
}

#[tokio::test]
async fn a_deferred_delivery_is_queued_again_as_a_new_message_with_its_attempts_and_acknowledged() {
    // GIVEN a webhook whose breaker is open, and a delivery that made 2 attempts
    let sender = Arc::new(RecordingSender::new());
    let health = Arc::new(webhooks_core::ports::memory::MemoryHealth::new());
    let mut f = fixture(&sender);
    f.ports.dispatcher = f.ports.dispatcher.clone().with_breaker(health.clone());
    let (w, mut task) = f.webhook_and_task("https://example.com/down").await;
    task.attempts_made = 2;
    let open = webhooks_core::health::WebhookHealth {
        state: webhooks_core::health::HealthState::Open,
        since: Timestamp::from_unix(1_700_000_000),
        consecutive_failures: 5,
        last_error: Some("timed out after 30 s".into()),
        open_until: Some(Timestamp::from_unix(1_700_000_000 + 600)),
        open_seconds: 600,
        timing_out: true,
    };
    webhooks_core::health::HealthStore::put(&*health, &w.id, &open)
        .await
        .unwrap();
    // WHEN its message is handled (received 3 times already)
    let failed = f.run(vec![task_record("m1", &task, 3)]).await;
    // THEN nothing is sent, it is acknowledged, and queued again as a new message with its
    // attempts, visible when the breaker's period ends
    assert!(failed.is_empty(), "{failed:?}");
    assert!(sender.requests().is_empty());
    let actions = f.queue.actions();
    let [
        Action::Again {
            body,
            delay,
            delivery_id,
        },
    ] = &actions[..]
    else {
        panic!("{actions:?}")
    };
    assert_eq!(delivery_id, task.delivery_id.as_str());
    assert!(*delay <= Duration::from_secs(600) && *delay >= Duration::from_secs(1));
    assert_eq!(QueueTask::from_json(body).unwrap().delivery(), &task);
    assert_eq!(f.stats(&w.id).await.total_deliveries, 0);
}

const SLOW_ARN: &str = "arn:aws:sqs:us-east-1:123456789012:deliveries-slow";

/// A record of the slow lane's queue.
fn slow_record(id: &str, task: &DeliveryTask, receive_count: u32) -> SqsMessage {
    let mut r = task_record(id, task, receive_count);
    r.event_source_arn = Some(SLOW_ARN.into());
    r
}

#[tokio::test]
async fn with_a_slow_lane_an_open_breaker_moves_main_records_there_and_slow_records_stay() {
    // GIVEN a function with a slow lane, and a webhook whose breaker is open (not timing out)
    let sender = Arc::new(RecordingSender::new());
    let health = Arc::new(webhooks_core::ports::memory::MemoryHealth::new());
    let queue = FakeQueue {
        slow_arn: Some(SLOW_ARN.into()),
        ..Default::default()
    };
    let mut f = fixture_on(sender.clone(), queue);
    f.ports.dispatcher = f.ports.dispatcher.clone().with_breaker(health.clone());
    let (w, mut task) = f.webhook_and_task("https://example.com/down").await;
    task.attempts_made = 1;
    let open = webhooks_core::health::WebhookHealth {
        state: webhooks_core::health::HealthState::Open,
        since: Timestamp::from_unix(1_700_000_000),
        consecutive_failures: 5,
        last_error: Some("receiver answered HTTP 503".into()),
        open_until: Some(Timestamp::from_unix(1_700_000_000 + 60)),
        open_seconds: 60,
        timing_out: false,
    };
    webhooks_core::health::HealthStore::put(&*health, &w.id, &open)
        .await
        .unwrap();
    // WHEN its record comes from the main queue
    let started = Instant::now();
    let moved = process_record(&task_record("m1", &task, 2), &f.ports, started).await;
    // THEN it is queued on the slow lane with its attempts, for the open period, and
    // acknowledged; nothing is sent
    assert_eq!(
        moved,
        RecordOutcome::MovedToSlowLane {
            after: Duration::from_secs(60)
        }
    );
    assert!(!moved.keeps_message());
    let actions = f.queue.actions();
    let [Action::Slow { body, delay, .. }] = &actions[..] else {
        panic!("{actions:?}")
    };
    assert_eq!(*delay, Duration::from_secs(60));
    assert_eq!(QueueTask::from_json(body).unwrap().delivery(), &task);
    // WHEN the moved message comes from the slow queue while the breaker is still open
    let again = process_record(&slow_record("s1", &task, 1), &f.ports, started).await;
    // THEN it is deferred on the slow queue itself, never moved again
    assert_eq!(
        again,
        RecordOutcome::Deferred {
            after: Duration::from_secs(60)
        }
    );
    assert!(matches!(&f.queue.actions()[1], Action::Slow { .. }));
    assert!(sender.requests().is_empty());
    // WHEN the slow lane cannot be sent to
    *f.queue.fail_slow_sends.lock().unwrap() = true;
    let kept = process_record(&task_record("m2", &task, 3), &f.ports, started).await;
    // THEN the received message is kept (it comes back after the wait): nothing is lost
    assert!(kept.keeps_message(), "{kept:?}");
    assert_eq!(
        f.queue.actions().last(),
        Some(&Action::Visibility {
            receipt: "receipt-m2".into(),
            after: Duration::from_secs(60)
        })
    );
    assert_eq!(f.stats(&w.id).await.total_deliveries, 0);
}

#[tokio::test]
async fn a_slow_lane_record_that_fails_is_retried_on_the_slow_queue() {
    // GIVEN a function with a slow lane and a webhook answering 500 (no breaker)
    let sender = Arc::new(RecordingSender::new());
    sender.answer([RecordingSender::status(500)]);
    let queue = FakeQueue {
        slow_arn: Some(SLOW_ARN.into()),
        ..Default::default()
    };
    let f = fixture_on(sender.clone(), queue);
    let (_, task) = f.webhook_and_task("https://example.com/fails").await;
    // WHEN a record of the slow queue is handled
    let failed = f.run(vec![slow_record("s1", &task, 1)]).await;
    // THEN it is sent, and its retry is a visibility change on the slow queue
    assert_eq!(failed, ["s1"]);
    assert_eq!(sender.requests().len(), 1);
    let actions = f.queue.actions();
    assert!(
        matches!(&actions[..], [Action::SlowVisibility { receipt, .. }] if receipt == "receipt-s1"),
        "{actions:?}"
    );
}

#[tokio::test]
async fn a_batch_writes_one_emf_line_whose_counts_match_the_deliveries_made() {
    // GIVEN a batch of three: two deliveries to a webhook that answers 200, one to a webhook
    // that was deleted; the metric lines kept in memory
    let sender = Arc::new(RecordingSender::new());
    let mut f = fixture(&sender);
    let (emf, captured) = webhooks_aws::emf::EmfSink::capturing(METRICS_FUNCTION);
    f.ports.emf = emf;
    let (w, first) = f.webhook_and_task("https://example.com/ok").await;
    let second = DeliveryTask {
        delivery_id: DeliveryId::generate(1_699_999_990),
        created_at: Timestamp::from_unix(1_699_999_990),
        ..first.clone()
    };
    let gone = DeliveryTask {
        delivery_id: DeliveryId::generate(1_700_000_001),
        webhook_id: WebhookId::generate(1_700_000_000),
        ..first.clone()
    };
    // WHEN the batch is handled
    let failed = f
        .run(vec![
            task_record("m1", &first, 1),
            task_record("m2", &second, 1),
            task_record("m3", &gone, 1),
        ])
        .await;
    assert!(failed.is_empty());
    // THEN one EMF line, per AWS's EMF specification, counts 2 delivered and 1 dropped
    let lines = captured.lock().unwrap().clone();
    assert_eq!(lines.len(), 1, "{lines:?}");
    let v: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    let aws = &v["_aws"];
    assert!(aws["Timestamp"].as_i64().unwrap() > 1_700_000_000_000);
    let directive = &aws["CloudWatchMetrics"][0];
    assert_eq!(directive["Namespace"], webhooks_core::metrics::NAMESPACE);
    assert_eq!(directive["Dimensions"], serde_json::json!([["Function"]]));
    assert_eq!(v["Function"], "delivery");
    // Every declared metric has its value in the line, and every value a declaration.
    for m in directive["Metrics"].as_array().unwrap() {
        let name = m["Name"].as_str().unwrap();
        assert!(!v[name].is_null(), "{name} declared without a value");
        assert!(m["Unit"].is_string());
    }
    assert_eq!(
        (
            &v["Delivered"],
            &v["Dropped"],
            &v["Retried"],
            &v["DeadLettered"]
        ),
        (
            &serde_json::json!(2),
            &serde_json::json!(1),
            &serde_json::json!(0),
            &serde_json::json!(0)
        )
    );
    assert_eq!(v["AttemptLatency"].as_array().unwrap().len(), 2);
    // Lag: published at 1_700_000_001 and 1_699_999_990, delivered at 1_700_000_000 (the
    // fixed clock): 0 (never negative) and 10 s.
    let mut lag: Vec<f64> = v["DeliveryLag"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    lag.sort_by(f64::total_cmp);
    assert_eq!(lag, [0.0, 10_000.0]);
    // The webhook id is a plain field, never a dimension.
    assert!(
        v["webhookIds"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!(w.id.to_string()))
    );
    assert_eq!(sender.requests().len(), 2);
    // AND the next batch starts from zero
    let (_, third) = f.webhook_and_task("https://example.com/ok").await;
    f.run(vec![task_record("m4", &third, 1)]).await;
    let lines = captured.lock().unwrap().clone();
    assert_eq!(lines.len(), 2);
    let next: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
    assert_eq!(
        (&next["Delivered"], &next["Dropped"]),
        (&serde_json::json!(1), &serde_json::json!(0))
    );
}
