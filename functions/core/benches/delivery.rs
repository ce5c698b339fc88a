//! The per-delivery CPU work of the core, for a 1 KiB body (BENCHMARKS.md):
//!
//! - `render`: the JS-canonical body, `jsjson::to_string(format::render(json, envelope(..)))`,
//!   as `DeliveryService::publish` renders it once per (event, webhook);
//! - `message_len`: the queue-message size check `publish` does for every task;
//! - `guide_signature`, `standard_webhooks_signature`: one HMAC-SHA256 each;
//! - `request_headers`: all headers of one attempt, both signatures included;
//! - `per_delivery`: render + size check + headers, the core's whole share of one delivery;
//! - `dispatch`: whole `Dispatcher::process` calls on the in-memory ports, with an instant
//!   sender (the dispatcher's own CPU) and a batch of 10 with a sender that takes 50 ms, run
//!   concurrently with `join_all` — it must take ~50 ms, not ~500 ms (the sequential variant
//!   shows what ~500 ms looks like).
//!
//! `cargo bench -p webhooks-core --bench delivery` (add `-- --quick` for a faster, rougher run).

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use futures::future::join_all;
use serde_json::{Value, json};
use webhooks_core::delivery::{DeliveryTask, envelope, request_headers};
use webhooks_core::dispatch::{Dispatcher, Outcome};
use webhooks_core::format::{self, Format};
use webhooks_core::ports::memory::{MemoryLog, MemoryStore};
use webhooks_core::ports::{
    OutgoingRequest, SendError, SenderResponse, SubscriptionStore, WebhookSender,
};
use webhooks_core::time::SystemClock;
use webhooks_core::webhook::{DeliveryStats, RetryConfig, Secret, Webhook};
use webhooks_core::{BucketId, DeliveryId, EventType, OwnerId, Timestamp, WebhookId, jsjson};

const BODY_BYTES: usize = 1024;
const SECRET: &str = "bench_webhook_secret_0123456789";

/// A `data.received`-like payload, padded so that the rendered body is [`BODY_BYTES`] long.
fn data(pad: usize) -> Value {
    json!({
        "dataSourceId": "65f0a1b2c3d4e5f6a7b8c9d0",
        "dataSourceName": "Greenhouse sensor 7",
        "dataPoint": {
            "_id": "65f0a1b2c3d4e5f6a7b8c9d1",
            "timestamp": "2024-01-15T10:30:00Z",
            "values": {"temperature": 22.5, "humidity": 61.25, "co2": 412, "battery": 0.87},
            "metadata": {"firmware": "1.4.2", "rssi": -67, "note": "x".repeat(pad)}
        }
    })
}

struct Ids {
    webhook: WebhookId,
    bucket: BucketId,
}

fn ids() -> Ids {
    Ids {
        webhook: WebhookId::parse("65f000000000000000000001").unwrap(),
        bucket: BucketId::parse("507f1f77bcf86cd799439011").unwrap(),
    }
}

fn render(ids: &Ids, delivery: &DeliveryId, data: &Value) -> String {
    let env = envelope(
        EventType::DataReceived,
        Timestamp::from_unix(1_705_314_600),
        &ids.webhook,
        &ids.bucket,
        delivery,
        data.clone(),
    );
    jsjson::to_string(&format::render(Format::Json, &env))
}

/// The payload padded to a 1 KiB body.
fn data_1k() -> Value {
    let ids = ids();
    let d = DeliveryId::generate(1_705_314_600);
    let base = render(&ids, &d, &data(0)).len();
    let v = data(BODY_BYTES.saturating_sub(base));
    assert_eq!(render(&ids, &d, &v).len(), BODY_BYTES);
    v
}

fn task(webhook: &WebhookId, body: String) -> DeliveryTask {
    DeliveryTask {
        delivery_id: DeliveryId::generate(1_705_314_600),
        webhook_id: webhook.clone(),
        event: EventType::DataReceived,
        generation: 0,
        attempts_made: 0,
        body,
        created_at: Timestamp::from_unix(1_705_314_600),
    }
}

fn per_delivery(c: &mut Criterion) {
    let ids = ids();
    let data = data_1k();
    let delivery = DeliveryId::generate(1_705_314_600);
    let secret = Secret::new(SECRET.into());
    let body = render(&ids, &delivery, &data);
    let t = task(&ids.webhook, body.clone());
    let now = Timestamp::from_unix(1_705_314_601);
    let id = delivery.to_string();

    let mut g = c.benchmark_group("delivery_1k");
    g.throughput(criterion::Throughput::Elements(1));
    g.bench_function("render", |b| {
        b.iter(|| render(black_box(&ids), black_box(&delivery), black_box(&data)))
    });
    g.bench_function("message_len", |b| b.iter(|| black_box(&t).message_len()));
    g.bench_function("guide_signature", |b| {
        b.iter(|| webhooks_core::signing::guide_signature(&secret, black_box(body.as_bytes())))
    });
    g.bench_function("standard_webhooks_signature", |b| {
        b.iter(|| {
            webhooks_core::signing::standard_webhooks_signature(
                &secret,
                &id,
                now.unix(),
                black_box(body.as_bytes()),
            )
        })
    });
    g.bench_function("request_headers", |b| {
        b.iter(|| request_headers(black_box(&t), &[&secret], 1, now))
    });
    g.bench_function("per_delivery", |b| {
        b.iter(|| {
            let body = render(&ids, &delivery, black_box(&data));
            let t = task(&ids.webhook, body);
            let size = t.message_len();
            (size, request_headers(&t, &[&secret], 1, now))
        })
    });
    g.finish();
}

/// A receiver that answers 200 after `delay` (zero: at once).
#[derive(Debug)]
struct SleepySender {
    delay: Duration,
}

#[async_trait]
impl WebhookSender for SleepySender {
    async fn send(&self, request: &OutgoingRequest) -> Result<SenderResponse, SendError> {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        black_box(request);
        Ok(SenderResponse {
            status: 200,
            retry_after: None,
            body_excerpt: String::new(),
        })
    }
}

/// A fresh in-memory world (store, log, one webhook) and `n` new tasks for it.
fn world(delay: Duration, n: usize, body: &str) -> (Dispatcher, Vec<DeliveryTask>) {
    let store = Arc::new(MemoryStore::new());
    let log = Arc::new(MemoryLog::new(store.clone()));
    let ids = ids();
    let webhook = Webhook {
        id: ids.webhook.clone(),
        owner_id: OwnerId::parse("bench").unwrap(),
        bucket_id: ids.bucket.clone(),
        url: "http://127.0.0.1:9/hook".into(),
        events: vec![EventType::DataReceived],
        description: None,
        active: true,
        retry_config: RetryConfig::default(),
        secret: Secret::new(SECRET.into()),
        previous_secret: None,
        format: Format::Json,
        filter: None,
        headers: Default::default(),
        rate_limit: None,
        stats: DeliveryStats::default(),
        last_delivery_at: None,
        last_delivery_status: None,
        failing_since: None,
        disabled_reason: None,
        created_at: Timestamp::from_unix(1),
        updated_at: Timestamp::from_unix(1),
    };
    futures::executor::block_on(store.create(&webhook)).unwrap();
    let sender = Arc::new(SleepySender { delay });
    let dispatcher = Dispatcher::new(store, log, sender, Arc::new(SystemClock));
    let tasks = (0..n)
        .map(|_| task(&ids.webhook, body.to_owned()))
        .collect();
    (dispatcher, tasks)
}

async fn concurrently(dispatcher: &Dispatcher, tasks: &[DeliveryTask]) {
    let outcomes = join_all(tasks.iter().map(|t| dispatcher.process(t, 1))).await;
    for o in outcomes {
        assert_eq!(o.unwrap(), Outcome::Delivered);
    }
}

fn dispatch(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let ids = ids();
    let body = render(&ids, &DeliveryId::generate(1), &data_1k());

    // The check the issue asks for, once, before measuring: 10 deliveries to a 50 ms receiver
    // overlap (~50 ms), they do not queue behind each other (~500 ms).
    let (d, tasks) = world(Duration::from_millis(50), 10, &body);
    let started = Instant::now();
    rt.block_on(concurrently(&d, &tasks));
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(250),
        "10 concurrent deliveries to a 50 ms receiver took {took:?}: they ran one after another"
    );

    let mut g = c.benchmark_group("dispatch");
    g.bench_function("process_1_instant_sender", |b| {
        b.iter_batched(
            || world(Duration::ZERO, 1, &body),
            |(d, tasks)| rt.block_on(concurrently(&d, &tasks)),
            BatchSize::SmallInput,
        )
    });
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    g.bench_function("batch_10_join_all_50ms_sender", |b| {
        b.iter_batched(
            || world(Duration::from_millis(50), 10, &body),
            |(d, tasks)| rt.block_on(concurrently(&d, &tasks)),
            BatchSize::PerIteration,
        )
    });
    g.measurement_time(Duration::from_secs(6));
    g.bench_function("batch_10_sequential_50ms_sender", |b| {
        b.iter_batched(
            || world(Duration::from_millis(50), 10, &body),
            |(d, tasks)| {
                rt.block_on(async {
                    for t in &tasks {
                        assert_eq!(d.process(t, 1).await.unwrap(), Outcome::Delivered);
                    }
                })
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, per_delivery, dispatch);
criterion_main!(benches);
