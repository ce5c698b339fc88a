//! Fault injection: the emulator goes away while the service works, on dedicated moto servers
//! (`helpers::moto::start_dedicated`; the shared one is never disturbed). The clients under test
//! run with short SDK timeouts and no SDK retries (the adapters' own retries stay), so a fault
//! shows within seconds; the harness's own clients (setup, inspection) keep the defaults.
//!
//! - Publishing (`POST /api/events` through the API's Router on DynamoDB + SQS):
//!   - the whole emulator paused: `503 unavailable` (the store cannot list the subscriptions);
//!   - SQS paused: `503 enqueue_failed` naming every delivery; after the resume, publishing
//!     again queues them all. Requests that timed out while SQS was paused may still be carried
//!     out when it resumes (the kernel had buffered them): such copies carry a delivery id the
//!     503 named, and only such ids — see the test for what that means for "not queued";
//!   - SQS killed and restarted on the same port: `503 enqueue_failed` naming every delivery,
//!     promptly (connection refused); moto restarts empty, so the queues are created again from
//!     `template.yaml`, and publishing again queues every delivery exactly once.
//! - Delivering (the delivery Lambda's handler on a received batch):
//!   - DynamoDB paused: every record is reported in `batchItemFailures` (none acknowledged),
//!     nothing is sent; resumed, the messages come back after the handler's error delay (its
//!     `ChangeMessageVisibility` reached SQS) and each delivery is sent once and counted once;
//!   - the whole emulator paused mid-batch, by the receiver itself as the first delivery
//!     arrives: every record fails (its attempt cannot be recorded); resumed, the messages come
//!     back and each delivery is counted exactly once (sent once or twice: at-least-once, same
//!     delivery id).
//!
//! Waiting is bounded polling only; no sleep decides an outcome.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use aws_config::retry::RetryConfig as SdkRetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_sqs::types::QueueAttributeName;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;
use webhooks_api::Ports;
use webhooks_aws::{DynamoDbDeliveryLog, DynamoDbSubscriptionStore};
use webhooks_core::delivery::{DeliveryTask, QueueTask};
use webhooks_core::dispatch::Dispatcher;
use webhooks_core::ports::DeliveryQueue;
use webhooks_core::time::SystemClock;
use webhooks_core::{BucketId, OwnerId};
use webhooks_delivery::Ports as DeliveryPorts;
use webhooks_sender::{ReqwestWebhookSender, SenderConfig};

use crate::helpers::api::{Api, delivery_ids, subscribe};
use crate::helpers::dynamo::{DeliveryTables, sdk_config_for};
use crate::helpers::moto::{DedicatedMoto, start_dedicated};
use crate::helpers::receiver::Receiver;
use crate::helpers::sqs::Queues;
use crate::helpers::world::{World, every_second, failures};
use crate::helpers::{poll_until, unique_name};

/// Per-operation (and per-attempt) timeout of the clients under test.
const SDK_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a request may take to fail while the emulator is away: the adapters' own retries
/// (SQS: 4 rounds and their backoff) of operations that each time out after `SDK_TIMEOUT`.
const FAIL_WITHIN: Duration = Duration::from_secs(20);
const OWNER: &str = "user-fault-tests";
const DELIVERIES: usize = 5;

/// An SDK config for `endpoint` as the service's clients would have it in a hurry: short
/// timeouts, one attempt per operation.
fn impatient_config(endpoint: &str) -> SdkConfig {
    sdk_config_for(endpoint)
        .into_builder()
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(SDK_TIMEOUT)
                .operation_attempt_timeout(SDK_TIMEOUT)
                .operation_timeout(SDK_TIMEOUT)
                .build(),
        )
        .retry_config(SdkRetryConfig::standard().with_max_attempts(1))
        .build()
}

/// Starts a dedicated moto server (off the async threads: starting blocks while Python loads).
async fn moto() -> DedicatedMoto {
    tokio::task::spawn_blocking(start_dedicated)
        .await
        .expect("start a dedicated moto server")
}

/// Both tables from `template.yaml` on `endpoint`; the store and the log on impatient clients.
async fn tables_on(endpoint: &str) -> (Arc<DynamoDbSubscriptionStore>, Arc<DynamoDbDeliveryLog>) {
    let tables = DeliveryTables::create_on(endpoint, &impatient_config(endpoint)).await;
    // As the delivery function wires it (main.rs): a batch's finishes of one webhook coalesced.
    let log = tables.log.with_coalescing(
        webhooks_delivery::FINISH_LINGER,
        webhooks_delivery::DEFAULT_FUNCTION_TIMEOUT,
    );
    (Arc::new(tables.webhooks.store), Arc::new(log))
}

/// The delivery queue `name`, its slow lane `name-slow` and its dead-letter queue `name-dlq` on
/// `endpoint`, from `template.yaml`; the adapters on impatient clients, the harness's client on
/// a patient one.
async fn queues_on(endpoint: &str, name: &str) -> Queues {
    Queues::create_on(endpoint, name, &impatient_config(endpoint)).await
}

/// The delivery side (as `helpers::world` wires it) with its tables on `db` and its queues on
/// `sqs`; a failed record comes back after 1 s.
async fn world_on(db: &str, sqs: &str) -> World {
    let name = unique_name("deliveries");
    let ((store, log), queues, receiver) =
        tokio::join!(tables_on(db), queues_on(sqs, &name), Receiver::start());
    let sender = ReqwestWebhookSender::new(SenderConfig {
        timeout: Duration::from_secs(5),
        allow_private: true,
    })
    .expect("sender");
    let dispatcher = Dispatcher::new(
        store.clone(),
        log.clone(),
        Arc::new(sender),
        Arc::new(SystemClock),
    );
    let mut ports = DeliveryPorts::new(dispatcher, Arc::new(queues.worker.clone()));
    ports.error_retry_delay = Duration::from_secs(1);
    ports.finish_scope = log.finish_scope();
    World {
        queues,
        receiver,
        store,
        log,
        ports,
        owner: OwnerId::parse(OWNER).unwrap(),
        bucket: BucketId::generate(1_760_000_000),
    }
}

/// Waits until the resumed server answers a request of its own, so requests buffered while it
/// was paused have been taken up.
async fn answered(queues: &Queues) {
    queues
        .client
        .get_queue_attributes()
        .queue_url(&queues.url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await
        .expect("the resumed emulator answers");
}

/// Receives every message of the delivery queue (bounded): until `wanted` delivery ids have been
/// seen and one more receive comes back empty. Returns the delivery id of each message, and
/// deletes them.
async fn drain(queues: &Queues, wanted: &HashSet<String>) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut ids = Vec::new();
    loop {
        let messages = queues.receive_raw(&queues.url, 10, 1).await;
        if messages.is_empty() && wanted.iter().all(|w| ids.contains(w)) {
            return ids;
        }
        for m in messages {
            let body = m.body.as_deref().expect("a body");
            let task = QueueTask::from_json(body).expect("a delivery task");
            ids.push(task.delivery().delivery_id.to_string());
            queues
                .client
                .delete_message()
                .queue_url(&queues.url)
                .receipt_handle(m.receipt_handle.as_deref().expect("receipt handle"))
                .send()
                .await
                .expect("delete");
        }
        assert!(
            Instant::now() < deadline,
            "the queue did not yield {wanted:?} within 30 s (got {ids:?})"
        );
    }
}

/// The API on the adapters.
fn api(
    store: Arc<DynamoDbSubscriptionStore>,
    log: Arc<DynamoDbDeliveryLog>,
    queue: Arc<dyn DeliveryQueue>,
) -> Api {
    Api::open(Ports {
        store,
        log,
        queue,
        clock: Arc::new(SystemClock),
    })
}

/// `POST /api/events` with one alert for `bucket`: status, body, how long it took.
async fn publish(api: &Api, bucket: &BucketId) -> (StatusCode, Value, Duration) {
    api.publish_alerts(bucket, 1).await
}

/// The delivery ids a `503 enqueue_failed` names as not queued.
fn not_queued(body: &Value) -> Vec<String> {
    let message = body["error"]["message"].as_str().expect("an error message");
    let list = message
        .split("unconfirmed: [")
        .nth(1)
        .and_then(|rest| rest.split(']').next())
        .unwrap_or_else(|| panic!("the message names the deliveries not queued: {message}"));
    list.split(", ")
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn queued(body: &Value) -> Vec<String> {
    delivery_ids(body, "deliveries")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_while_the_emulator_is_paused_answers_503_and_a_retry_after_resume_queues_all() {
    // GIVEN DynamoDB and SQS on two dedicated emulators, three webhooks on one bucket
    let (db, sqs) = tokio::join!(moto(), moto());
    let (db_endpoint, sqs_endpoint, name) =
        (db.endpoint(), sqs.endpoint(), unique_name("deliveries"));
    let ((store, log), queues) =
        tokio::join!(tables_on(&db_endpoint), queues_on(&sqs_endpoint, &name));
    let bucket = BucketId::generate(1_760_000_000);
    subscribe(store.as_ref(), OWNER, &bucket, 3).await;
    let api = api(store, log, Arc::new(queues.queue.clone()));
    let (s, body, _) = publish(&api, &bucket).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{body}");
    let before: HashSet<String> = queued(&body).into_iter().collect();
    assert_eq!(drain(&queues, &before).await.len(), 3);

    // WHEN both emulators are paused THEN the store cannot list the subscriptions: 503
    // `unavailable`, within the clients' timeouts
    db.pause();
    sqs.pause();
    let (s, body, took) = publish(&api, &bucket).await;
    db.resume();
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "unavailable", "{body}");
    assert!(took < FAIL_WITHIN, "503 after {took:?}");
    println!("store paused: 503 unavailable after {took:?}");

    // WHEN only SQS is paused THEN 503 `enqueue_failed`, naming all three deliveries, none queued
    let (s, body, took) = publish(&api, &bucket).await;
    sqs.resume();
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "enqueue_failed", "{body}");
    assert!(took < FAIL_WITHIN, "503 after {took:?}");
    let failed: HashSet<String> = not_queued(&body).into_iter().collect();
    assert_eq!(failed.len(), 3, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("and 0 were"),
        "{body}"
    );
    println!(
        "queue paused: 503 enqueue_failed after {took:?}: {}",
        body["error"]["message"]
    );

    // AND after the resume, publishing again queues all three
    answered(&queues).await;
    let (s, body, _) = publish(&api, &bucket).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{body}");
    let retried: HashSet<String> = queued(&body).into_iter().collect();
    assert_eq!(retried.len(), 3);
    assert!(
        retried.is_disjoint(&failed),
        "a publish makes new delivery ids"
    );

    // AND the queue holds each of the retry's deliveries exactly once; anything else in it is a
    // copy of a delivery the 503 named: a SendMessageBatch that timed out while SQS was paused
    // was buffered by the kernel and carried out on the resume. So "not queued" in a 503 after a
    // timeout means "not known to be queued", and those copies carry ids the retry does not
    // (receivers cannot deduplicate them against it).
    let ids = drain(&queues, &retried).await;
    let mut count: HashMap<&String, usize> = HashMap::new();
    for id in &ids {
        *count.entry(id).or_default() += 1;
    }
    for id in &retried {
        assert_eq!(count.get(id), Some(&1), "retried delivery {id}: {ids:?}");
    }
    let stale: Vec<&String> = ids.iter().filter(|id| !retried.contains(*id)).collect();
    for id in &stale {
        assert!(
            failed.contains(*id),
            "{id} is neither a retried delivery nor one the 503 named: {ids:?}"
        );
    }
    println!(
        "after the resume: {} messages; {} of them copies of the {} deliveries the 503 called not queued",
        ids.len(),
        stale.len(),
        failed.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_while_sqs_is_down_answers_503_and_after_a_restart_a_retry_queues_each_once() {
    // GIVEN DynamoDB and SQS on two dedicated emulators, three webhooks on one bucket
    let (db, mut sqs) = tokio::join!(moto(), moto());
    let (db_endpoint, sqs_endpoint, name) =
        (db.endpoint(), sqs.endpoint(), unique_name("deliveries"));
    let ((store, log), queues) =
        tokio::join!(tables_on(&db_endpoint), queues_on(&sqs_endpoint, &name));
    let bucket = BucketId::generate(1_760_000_000);
    subscribe(store.as_ref(), OWNER, &bucket, 3).await;
    let api = api(store, log, Arc::new(queues.queue.clone()));

    // WHEN SQS is killed THEN 503 `enqueue_failed` naming all three deliveries, promptly
    tokio::task::block_in_place(|| sqs.kill());
    let (s, body, took) = publish(&api, &bucket).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "enqueue_failed", "{body}");
    assert!(took < Duration::from_secs(10), "503 after {took:?}");
    let failed: HashSet<String> = not_queued(&body).into_iter().collect();
    assert_eq!(failed.len(), 3, "{body}");
    println!("queue down: 503 enqueue_failed after {took:?}");

    // WHEN it is restarted on the same port (empty: moto keeps nothing) and the queues are
    // created again from template.yaml (same names, so the same URLs)
    tokio::task::block_in_place(|| sqs.restart());
    let again = queues_on(&sqs.endpoint(), &name).await;
    assert_eq!(again.url, queues.url);

    // THEN publishing again queues each delivery exactly once, and nothing else is queued (no
    // request reached the killed server)
    let retried = poll_until(
        "a publish to succeed after the restart",
        Duration::from_secs(20),
        Duration::from_millis(200),
        || async {
            let (s, body, _) = publish(&api, &bucket).await;
            (s == StatusCode::ACCEPTED).then(|| queued(&body))
        },
    )
    .await;
    let wanted: HashSet<String> = retried.iter().cloned().collect();
    assert_eq!(wanted.len(), 3);
    let mut ids = drain(&again, &wanted).await;
    ids.sort();
    let mut expected = retried;
    expected.sort();
    assert_eq!(ids, expected, "exactly the retried deliveries, once each");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_handled_while_dynamodb_is_paused_comes_back_and_is_delivered_and_counted_once() {
    // GIVEN the delivery side with its tables and its queues on two dedicated emulators, and
    // five deliveries to one webhook received as one batch
    let (db, sqs) = tokio::join!(moto(), moto());
    let world = world_on(&db.endpoint(), &sqs.endpoint()).await;
    let w = world
        .webhook(&world.receiver.url("/ok"), every_second(3))
        .await;
    let tasks: Vec<DeliveryTask> = (0..DELIVERIES).map(|_| world.task(&w)).collect();
    world.queues.queue.enqueue(&tasks).await.expect("enqueue");
    let records = world
        .queues
        .receive_exactly(DELIVERIES, Duration::from_secs(20))
        .await;

    // WHEN the handler processes the batch while DynamoDB is paused
    db.pause();
    let started = Instant::now();
    let response = world.handle(records.clone()).await;
    let took = started.elapsed();
    world.queues.delete_acknowledged(&records, &response).await;
    db.resume();

    // THEN every record is a batch item failure (none acknowledged), promptly, and nothing was
    // sent: the webhook could not be read
    let mut all: Vec<String> = records
        .iter()
        .map(|r| r.message_id.clone().unwrap())
        .collect();
    all.sort();
    assert_eq!(failures(&response), all);
    assert!(took < FAIL_WITHIN, "the batch took {took:?}");
    assert!(world.receiver.at("/ok").is_empty());
    println!("DynamoDB paused: {DELIVERIES} of {DELIVERIES} records failed after {took:?}");

    // AND once it is resumed, the messages come back after the handler's error delay (its
    // ChangeMessageVisibility reached SQS), a second receipt each, and are delivered
    let again = world
        .queues
        .receive_exactly(DELIVERIES, Duration::from_secs(30))
        .await;
    for r in &again {
        assert_eq!(
            r.attributes
                .get("ApproximateReceiveCount")
                .map(String::as_str),
            Some("2")
        );
    }
    let response = world.invoke(again).await;
    assert!(failures(&response).is_empty(), "{response:?}");

    // AND each delivery was sent exactly once and counted exactly once; both queues are empty
    let mut sent: Vec<String> = world
        .receiver
        .at("/ok")
        .iter()
        .map(|r| r.header("webhook-id").expect("webhook-id").to_owned())
        .collect();
    sent.sort();
    let mut expected: Vec<String> = tasks.iter().map(|t| t.delivery_id.to_string()).collect();
    expected.sort();
    assert_eq!(sent, expected);
    let stats = world.get(&w).await.stats;
    assert_eq!(stats.total_deliveries, DELIVERIES as u64);
    assert_eq!(stats.successful_deliveries, DELIVERIES as u64);
    assert_eq!(stats.failed_deliveries, 0);
    assert_eq!(world.queues.counts(&world.queues.url).await, (0, 0));
    assert_eq!(world.queues.counts(&world.queues.dlq_url).await, (0, 0));
}

/// A receiver that pauses the emulator when the first delivery arrives (before answering any),
/// then answers 200 to everything; records the delivery id of each request.
#[derive(Clone)]
struct PausingReceiver {
    moto_pid: u32,
    paused: Arc<tokio::sync::OnceCell<()>>,
    received: Arc<Mutex<Vec<String>>>,
}

async fn pausing_answer(
    State(rx): State<PausingReceiver>,
    headers: HeaderMap,
    _body: Bytes,
) -> StatusCode {
    rx.paused
        .get_or_init(|| async {
            let status = tokio::process::Command::new("kill")
                .args(["-STOP", &rx.moto_pid.to_string()])
                .status()
                .await
                .expect("kill -STOP");
            assert!(status.success());
        })
        .await;
    let id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    rx.received.lock().unwrap().push(id);
    StatusCode::OK
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_emulator_paused_mid_batch_fails_the_batch_and_every_delivery_is_counted_once() {
    // GIVEN the delivery side with tables and queues on one dedicated emulator, and a receiver
    // that pauses it (SIGSTOP) as the first delivery arrives
    let moto = moto().await;
    let world = world_on(&moto.endpoint(), &moto.endpoint()).await;
    let rx = PausingReceiver {
        moto_pid: moto.pid().expect("running"),
        paused: Arc::new(tokio::sync::OnceCell::new()),
        received: Arc::new(Mutex::new(Vec::new())),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/pause", listener.local_addr().unwrap());
    let app = Router::new()
        .fallback(pausing_answer)
        .with_state(rx.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let w = world.webhook(&url, every_second(3)).await;
    let tasks: Vec<DeliveryTask> = (0..DELIVERIES).map(|_| world.task(&w)).collect();
    world.queues.queue.enqueue(&tasks).await.expect("enqueue");
    let records = world
        .queues
        .receive_exactly(DELIVERIES, Duration::from_secs(20))
        .await;

    // WHEN the handler processes the batch and the emulator stops mid-way
    let started = Instant::now();
    let response = world.handle(records.clone()).await;
    let took = started.elapsed();
    assert!(rx.paused.initialized(), "a delivery reached the receiver");

    // THEN no record is acknowledged: each either could not read its webhook or could not
    // record its attempt; the batch ends within the clients' timeouts
    let mut all: Vec<String> = records
        .iter()
        .map(|r| r.message_id.clone().unwrap())
        .collect();
    all.sort();
    assert_eq!(failures(&response), all);
    assert!(took < FAIL_WITHIN, "the batch took {took:?}");
    let first_pass = rx.received.lock().unwrap().len();
    println!(
        "emulator paused mid-batch: {first_pass} sent, {DELIVERIES} records failed after {took:?}"
    );

    // WHEN it resumes, and the messages' visibility timeout runs out. (The handler's own
    // ChangeMessageVisibility could not reach the paused emulator, so they would come back after
    // template.yaml's VisibilityTimeout, 360 s: the test makes them visible now, as SQS does
    // when that time is up. A change that timed out may also be carried out on the resume,
    // which is why errors of this one are ignored.)
    moto.resume();
    answered(&world.queues).await;
    for r in &records {
        world
            .queues
            .client
            .change_message_visibility()
            .queue_url(&world.queues.url)
            .receipt_handle(r.receipt_handle.as_deref().unwrap())
            .visibility_timeout(0)
            .send()
            .await
            .ok();
    }

    // THEN they come back, and the handler delivers them all
    let again = world
        .queues
        .receive_exactly(DELIVERIES, Duration::from_secs(30))
        .await;
    let response = world.invoke(again).await;
    assert!(failures(&response).is_empty(), "{response:?}");

    // AND every delivery is counted exactly once; each was sent once or twice (an attempt whose
    // record was lost to the pause is sent again — or, if the record was written after all when
    // the emulator resumed, recognized as delivered), always with its own delivery id
    let received = rx.received.lock().unwrap().clone();
    let mut per_delivery: HashMap<String, usize> = HashMap::new();
    for id in &received {
        *per_delivery.entry(id.clone()).or_default() += 1;
    }
    for t in &tasks {
        let n = per_delivery.remove(&t.delivery_id.to_string()).unwrap_or(0);
        assert!(
            (1..=2).contains(&n),
            "delivery {} sent {n} times",
            t.delivery_id
        );
    }
    assert!(
        per_delivery.is_empty(),
        "unknown deliveries: {per_delivery:?}"
    );
    let stats = world.get(&w).await.stats;
    assert_eq!(stats.total_deliveries, DELIVERIES as u64, "{stats:?}");
    assert_eq!(stats.successful_deliveries, DELIVERIES as u64, "{stats:?}");
    assert_eq!(world.queues.counts(&world.queues.url).await, (0, 0));
    assert_eq!(world.queues.counts(&world.queues.dlq_url).await, (0, 0));
    println!(
        "after the resume: {} requests for {DELIVERIES} deliveries, each counted once",
        received.len()
    );
}
