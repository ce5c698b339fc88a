//! Large fan-outs through the API's Router (DynamoDB in a dedicated moto server), with SQS
//! answering each request 15 ms late, as a real SQS endpoint takes 10-20 ms:
//! `SendMessageBatch` requests go out [`ENQUEUE_CONCURRENCY`] at a time, so 100 events × 100
//! webhooks (1,000 requests, 15 s one after another) are queued well within the API function's
//! timeout; and when the publish's time budget runs out first, the answer is a `207` naming
//! every delivery that is queued and every one that is not.
//!
//! - SQS in moto behind a proxy that holds every request 15 ms: the answer comes within the
//!   function's timeout naming every delivery once (moto on a loaded machine may be slower than
//!   the budget: then the answer is a `207`, which is what it is for);
//! - a stand-in SQS that answers `SendMessageBatch` itself after 15 ms (no emulator CPU in the
//!   way): all 10,000 are queued, in about a second;
//! - moto behind a 500 ms proxy and a 3 s budget: a `207`, at the budget.
//!
//! The SDK clients under test get the service's own timeouts ([`sdk_timeouts`]).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::SdkConfig;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use serde_json::{Value, json};
use webhooks_api::Ports;
use webhooks_aws::DynamoDbSubscriptionStore;
use webhooks_aws::config::sdk_timeouts;
use webhooks_aws::sqs::ENQUEUE_CONCURRENCY;
use webhooks_core::BucketId;
use webhooks_core::delivery_service::PUBLISH_BUDGET;
use webhooks_core::time::SystemClock;

use crate::helpers::api::{Api, delivery_ids, subscribe};
use crate::helpers::dynamo::{DeliveryTables, sdk_config_for};
use crate::helpers::moto::start_dedicated;
use crate::helpers::sqs::Queues;
use crate::helpers::template::resource;

/// An HTTP proxy on 127.0.0.1 that holds each request for `delay`, then forwards it to
/// `target` and answers what it answered. Returns its endpoint.
async fn delaying_proxy(target: String, delay: Duration) -> String {
    #[derive(Clone)]
    struct Proxy {
        client: reqwest::Client,
        target: String,
        delay: Duration,
    }
    async fn forward(
        State(p): State<Proxy>,
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> (StatusCode, HeaderMap, Bytes) {
        tokio::time::sleep(p.delay).await;
        let path = uri.path_and_query().map_or("/", |pq| pq.as_str());
        let mut out = headers.clone();
        out.remove("host");
        out.remove("content-length");
        let res = p
            .client
            .request(method, format!("{}{path}", p.target))
            .headers(out)
            .body(body)
            .send()
            .await
            .expect("the emulator answers the proxy");
        let status = res.status();
        let mut back = res.headers().clone();
        back.remove("content-length");
        back.remove("transfer-encoding");
        (
            status,
            back,
            res.bytes().await.expect("the emulator's body"),
        )
    }
    let proxy = Proxy {
        client: reqwest::Client::new(),
        target,
        delay,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the proxy");
    let addr = listener.local_addr().expect("proxy address");
    let app = Router::new().fallback(forward).with_state(proxy);
    tokio::spawn(async move { axum::serve(listener, app).await.expect("proxy serves") });
    format!("http://{addr}")
}

/// What the stand-in SQS saw: the `deliveryId` of each message, and the most requests it had
/// in hand at once.
#[derive(Debug, Default)]
struct Seen {
    ids: Vec<String>,
    in_flight: usize,
    peak: usize,
}

/// A stand-in SQS on 127.0.0.1 that takes every `SendMessageBatch` after `delay` and records
/// what it saw. Returns its endpoint and the record.
async fn fake_sqs(delay: Duration) -> (String, Arc<Mutex<Seen>>) {
    #[derive(Clone)]
    struct Fake {
        delay: Duration,
        seen: Arc<Mutex<Seen>>,
    }
    async fn answer(State(f): State<Fake>, headers: HeaderMap, body: Bytes) -> (HeaderMap, String) {
        {
            let mut s = f.seen.lock().unwrap();
            s.in_flight += 1;
            s.peak = s.peak.max(s.in_flight);
        }
        tokio::time::sleep(f.delay).await;
        f.seen.lock().unwrap().in_flight -= 1;
        let target = headers
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert_eq!(
            target, "AmazonSQS.SendMessageBatch",
            "only SendMessageBatch expected"
        );
        let req: Value = serde_json::from_slice(&body).expect("a JSON request");
        let mut ok = Vec::new();
        for e in req["Entries"].as_array().expect("entries") {
            let id = e["MessageAttributes"]["deliveryId"]["StringValue"]
                .as_str()
                .expect("a deliveryId attribute");
            f.seen.lock().unwrap().ids.push(id.to_owned());
            ok.push(json!({"Id": e["Id"], "MessageId": id, "MD5OfMessageBody": "0"}));
        }
        let mut h = HeaderMap::new();
        h.insert(
            "content-type",
            "application/x-amz-json-1.0".parse().unwrap(),
        );
        (h, json!({"Successful": ok, "Failed": []}).to_string())
    }
    let seen = Arc::new(Mutex::new(Seen::default()));
    let fake = Fake {
        delay,
        seen: seen.clone(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the stand-in SQS");
    let addr = listener.local_addr().expect("address");
    let app = Router::new().fallback(answer).with_state(fake);
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serves") });
    (format!("http://{addr}"), seen)
}

/// `endpoint`'s SDK config as the service has it: its timeouts, the SDK's default retries.
fn service_config(endpoint: &str) -> SdkConfig {
    sdk_config_for(endpoint)
        .into_builder()
        .timeout_config(sdk_timeouts())
        .build()
}

/// The API on DynamoDB at `db` and on SQS at `sqs` (moto's queues, reached through the proxy
/// or a stand-in), the store, the queues.
struct Setup {
    api: Api,
    store: Arc<DynamoDbSubscriptionStore>,
    queues: Queues,
}

async fn setup(db: &str, sqs: &str, name: &str) -> Setup {
    let (db_config, sqs_config) = (service_config(db), service_config(sqs));
    let (tables, queues) = tokio::join!(
        DeliveryTables::create_on(db, &db_config),
        Queues::create_on(db, name, &sqs_config)
    );
    let store = Arc::new(tables.webhooks.store);
    let api = Api::open(Ports {
        store: store.clone(),
        log: Arc::new(tables.log),
        queue: Arc::new(queues.queue.clone()),
        clock: Arc::new(SystemClock),
    });
    Setup { api, store, queues }
}

impl Setup {
    /// `n` active webhooks on `bucket` subscribed to alert.triggered.
    async fn subscribe(&self, bucket: &BucketId, n: usize) {
        subscribe(self.store.as_ref(), "user-fanout-tests", bucket, n).await;
    }

    /// `POST /api/events` with `events` alerts for `bucket`: status, body, how long it took.
    async fn publish(&self, bucket: &BucketId, events: usize) -> (StatusCode, Value, Duration) {
        self.api.publish_alerts(bucket, events).await
    }

    /// How many messages the delivery queue holds.
    async fn depth(&self) -> usize {
        self.queues.counts(&self.queues.url).await.0 as usize
    }
}

fn ids(body: &Value, key: &str) -> Vec<String> {
    delivery_ids(body, key)
}

/// The API function's timeout, from template.yaml.
fn api_timeout() -> Duration {
    let own = &resource("ApiFunction")["Properties"]["Timeout"];
    let t = if own.is_null() {
        &crate::helpers::template::template()["Globals"]["Function"]["Timeout"]
    } else {
        own
    };
    Duration::from_secs(t.as_u64().expect("a Timeout"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_by_100_fan_out_sends_its_requests_concurrently_and_names_every_delivery() {
    // GIVEN a bucket with 100 webhooks, and an SQS that takes each request after 15 ms
    let moto = tokio::task::spawn_blocking(start_dedicated)
        .await
        .expect("moto");
    let (sqs, seen) = fake_sqs(Duration::from_millis(15)).await;
    let app = setup(&moto.endpoint(), &sqs, "fanout-fake").await;
    let bucket = BucketId::generate(1_760_000_000);
    app.subscribe(&bucket, 100).await;

    // WHEN 100 events are published in one call (10,000 deliveries, 1,000 SendMessageBatch)
    let (status, body, took) = app.publish(&bucket, 100).await;
    let (queued, not_queued) = (ids(&body, "deliveries"), ids(&body, "notQueued"));
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    println!(
        "100 x 100 on a stand-in SQS answering in 15 ms: {status} after {took:?}, {} queued, {} \
         not, at most {} requests at once",
        queued.len(),
        not_queued.len(),
        seen.peak
    );

    // THEN the requests went out concurrently, never more than the bound at once
    assert!(
        (2..=ENQUEUE_CONCURRENCY).contains(&seen.peak),
        "peak {}",
        seen.peak
    );
    // AND the answer came within the function's timeout, naming each delivery once: queued
    // (202), or queued and not confirmed (207, when this debug build on a busy machine signs
    // requests slower than the budget allows)
    assert!(took < api_timeout(), "answered after {took:?}");
    assert!(
        status == StatusCode::ACCEPTED || status == StatusCode::MULTI_STATUS,
        "{status}"
    );
    let all: HashSet<&String> = queued.iter().chain(&not_queued).collect();
    assert_eq!(
        (all.len(), queued.len() + not_queued.len()),
        (10_000, 10_000)
    );
    // AND SQS received every queued delivery exactly once, and nothing it was not asked for
    // (an abandoned request may have reached it: those are among the unconfirmed)
    let sent: HashSet<&String> = seen.ids.iter().collect();
    assert_eq!(sent.len(), seen.ids.len(), "a delivery sent twice");
    assert!(queued.iter().all(|d| sent.contains(d)));
    assert!(sent.iter().all(|d| all.contains(d)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_by_100_fan_out_on_a_15_ms_moto_answers_within_the_function_timeout() {
    // GIVEN a bucket with 100 webhooks, and SQS answering each request 15 ms late
    let moto = tokio::task::spawn_blocking(start_dedicated)
        .await
        .expect("moto");
    let proxy = delaying_proxy(moto.endpoint(), Duration::from_millis(15)).await;
    let app = setup(&moto.endpoint(), &proxy, "fanout-100x100").await;
    let bucket = BucketId::generate(1_760_000_000);
    app.subscribe(&bucket, 100).await;

    // WHEN 100 events are published in one call (10,000 deliveries, 1,000 SendMessageBatch)
    let (status, body, took) = app.publish(&bucket, 100).await;
    println!(
        "100 x 100 through a 15 ms SQS, {ENQUEUE_CONCURRENCY} requests at once: {status} after {took:?}"
    );

    // THEN the answer comes within the API function's timeout, and every delivery is named
    // exactly once, as queued or as not queued (202: all queued; 207: the budget ran out)
    assert!(took < api_timeout(), "answered after {took:?}");
    assert!(
        status == StatusCode::ACCEPTED || status == StatusCode::MULTI_STATUS,
        "{status}: {}",
        body["error"]
    );
    let (queued, not_queued) = (ids(&body, "deliveries"), ids(&body, "notQueued"));
    let all: HashSet<&String> = queued.iter().chain(&not_queued).collect();
    assert_eq!(all.len(), 10_000);
    assert_eq!(queued.len() + not_queued.len(), 10_000);
    // AND each webhook got one delivery per event
    let mut per_webhook: HashMap<&str, usize> = HashMap::new();
    for d in body["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .chain(body["notQueued"].as_array().into_iter().flatten())
    {
        *per_webhook
            .entry(d["webhookId"].as_str().unwrap())
            .or_default() += 1;
    }
    assert_eq!(per_webhook.len(), 100);
    assert!(per_webhook.values().all(|&n| n == 100));
    // AND the queue holds at least every delivery said to be queued (an unconfirmed one may be
    // there too: at-least-once)
    let depth = app.depth().await;
    assert!(
        (queued.len()..=10_000).contains(&depth),
        "{depth} messages for {} queued",
        queued.len()
    );
    println!("{} queued, {} not", queued.len(), not_queued.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_budget_runs_out_the_answer_is_207_naming_what_is_and_is_not_queued() {
    // GIVEN a bucket with 20 webhooks, an SQS answering each request 500 ms late, and a publish
    // budget of 3 s (2,000 deliveries need 200 requests: 13 rounds of 16, ~6.5 s)
    let moto = tokio::task::spawn_blocking(start_dedicated)
        .await
        .expect("moto");
    let proxy = delaying_proxy(moto.endpoint(), Duration::from_millis(500)).await;
    let mut app = setup(&moto.endpoint(), &proxy, "fanout-budget").await;
    let budget = Duration::from_secs(3);
    app.api.state.deliveries = app.api.state.deliveries.clone().with_budget(budget);
    let bucket = BucketId::generate(1_760_000_000);
    app.subscribe(&bucket, 20).await;

    // WHEN 100 events are published
    let (status, body, took) = app.publish(&bucket, 100).await;
    println!(
        "budget {budget:?}: {status} after {took:?}, {} queued, {} not",
        ids(&body, "deliveries").len(),
        ids(&body, "notQueued").len()
    );

    // THEN the answer comes at the budget (not after every request: ~6.5 s), as a 207
    assert_eq!(status, StatusCode::MULTI_STATUS, "{body}");
    // (the slack: a debug build on a loaded 2-core machine finishes the answer slowly)
    assert!(took < budget + Duration::from_secs(3), "{took:?}");
    assert!(PUBLISH_BUDGET > budget);
    assert_eq!(body["error"]["code"], "enqueue_failed");
    assert_eq!(body["events"], 100);
    // AND it names every delivery once: some queued, the rest not confirmed
    let (queued, not_queued) = (ids(&body, "deliveries"), ids(&body, "notQueued"));
    assert!(!queued.is_empty() && !not_queued.is_empty());
    let all: HashSet<&String> = queued.iter().chain(&not_queued).collect();
    assert_eq!(all.len(), 2_000);
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!(
            "{} deliveries could not be confirmed as queued and {} were",
            not_queued.len(),
            queued.len()
        )),
        "{message}"
    );
    // AND the queue holds every queued one (and at most the unconfirmed ones besides, whose
    // requests were abandoned in flight)
    let depth = crate::helpers::poll_until(
        "the abandoned requests to settle",
        Duration::from_secs(10),
        Duration::from_millis(300),
        || async {
            let d = app.depth().await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            (app.depth().await == d).then_some(d)
        },
    )
    .await;
    assert!(
        (queued.len()..=2_000).contains(&depth),
        "{depth} messages for {} queued",
        queued.len()
    );
}
