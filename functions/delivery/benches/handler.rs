//! The delivery Lambda's handler on one SQS batch of 10, with in-process ports (BENCHMARKS.md):
//! `webhooks_delivery::handle` — parsing the records, the dispatcher's reads, rendering headers
//! and both signatures, the sends, the bookkeeping and the batch response — against the in-memory
//! store and log and a sender that answers 200 after 50 ms. The records are processed
//! concurrently, so the batch must take ~50 ms, not ~500 ms; `batch_10_instant_sender` is the
//! handler's own CPU for 10 deliveries.
//!
//! `cargo bench -p webhooks-delivery --bench handler` (add `-- --quick` for a rougher run).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use lambda_runtime::{Context, LambdaEvent};
use webhooks_core::conformance::sample_webhook;
use webhooks_core::delivery::{DeliveryTask, QueueTask};
use webhooks_core::dispatch::Dispatcher;
use webhooks_core::flow::Lane;
use webhooks_core::ports::SubscriptionStore;
use webhooks_core::ports::memory::{MemoryLog, MemoryStore, RecordingSender};
use webhooks_core::ports::{OutgoingRequest, SendError, SenderResponse, WebhookSender};
use webhooks_core::time::SystemClock;
use webhooks_core::{BucketId, DeliveryId, EventType, OwnerId, Timestamp, WebhookId};
use webhooks_delivery::{Ports, QueueActionError, QueueActions, handle};

/// Answers 200 after `delay` (none: at once).
struct DelayedSender {
    delay: Duration,
}

#[async_trait]
impl WebhookSender for DelayedSender {
    async fn send(&self, _request: &OutgoingRequest) -> Result<SenderResponse, SendError> {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        RecordingSender::status(200)
    }
}

/// No retries or dead letters happen here; any call would be a failed run.
struct NoQueueActions;

#[async_trait]
impl QueueActions for NoQueueActions {
    async fn change_visibility(
        &self,
        _: Lane,
        _: &str,
        _: Duration,
    ) -> Result<(), QueueActionError> {
        panic!("no delivery should be retried in this benchmark")
    }

    async fn send_to_dead_letter(
        &self,
        _: &str,
        _: &str,
        _: u32,
        _: Option<&str>,
    ) -> Result<(), QueueActionError> {
        panic!("no delivery should be dead-lettered in this benchmark")
    }

    async fn send_again(
        &self,
        _: Lane,
        _: &str,
        _: Duration,
        _: &str,
    ) -> Result<(), QueueActionError> {
        panic!("no delivery should be deferred in this benchmark")
    }
}

/// ~1 KiB of JSON, like the core benchmark's body.
fn body(delivery: &DeliveryId, webhook: &WebhookId) -> String {
    format!(
        r#"{{"event":"data.received","timestamp":"2024-01-15T10:30:00.000Z","webhookId":"{webhook}","bucketId":"507f1f77bcf86cd799439011","deliveryId":"{delivery}","data":{{"dataSourceId":"65f0a1b2c3d4e5f6a7b8c9d0","dataPoint":{{"timestamp":"2024-01-15T10:30:00Z","values":{{"temperature":22.5,"humidity":61.25}}}},"note":"{}"}}}}"#,
        "x".repeat(760)
    )
}

/// A batch of 10 fresh deliveries to `webhook` (fresh ids: a delivery already recorded as sent
/// would not be sent again).
fn batch(webhook: &WebhookId) -> LambdaEvent<SqsEvent> {
    let now = Timestamp::from_unix(1_705_314_600);
    let records = (0..10)
        .map(|i| {
            let delivery = DeliveryId::generate(now.unix());
            let task = DeliveryTask {
                body: body(&delivery, webhook),
                delivery_id: delivery,
                webhook_id: webhook.clone(),
                event: EventType::DataReceived,
                generation: 0,
                attempts_made: 0,
                created_at: now,
            };
            let mut m = SqsMessage::default();
            m.message_id = Some(format!("m{i}"));
            m.receipt_handle = Some(format!("receipt-{i}"));
            m.body = Some(QueueTask::DeliveryV1(task).to_json());
            m.attributes
                .insert("ApproximateReceiveCount".into(), "1".into());
            m
        })
        .collect();
    let mut event = SqsEvent::default();
    event.records = records;
    LambdaEvent::new(event, Context::default())
}

fn ports(rt: &tokio::runtime::Runtime, delay: Duration) -> (Ports, WebhookId) {
    let store = Arc::new(MemoryStore::new());
    let log = Arc::new(MemoryLog::new(store.clone()));
    let webhook = sample_webhook(
        &OwnerId::parse("bench_user").unwrap(),
        &BucketId::parse("507f1f77bcf86cd799439011").unwrap(),
        1_700_000_000,
    );
    rt.block_on(store.create(&webhook)).unwrap();
    let dispatcher = Dispatcher::new(
        store,
        log,
        Arc::new(DelayedSender { delay }),
        Arc::new(SystemClock),
    );
    (Ports::new(dispatcher, Arc::new(NoQueueActions)), webhook.id)
}

fn handler(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("handler");
    for (name, delay, samples) in [
        ("batch_10_50ms_receiver", Duration::from_millis(50), 20),
        ("batch_10_instant_sender", Duration::ZERO, 100),
    ] {
        group.sample_size(samples);
        group.bench_function(name, |b| {
            // Fresh in-memory ports per batch (set-up, not measured): the fakes scan their whole
            // history, which would otherwise grow with every iteration.
            b.iter_batched(
                || {
                    let (ports, webhook) = ports(&rt, delay);
                    let event = batch(&webhook);
                    (ports, event)
                },
                |(ports, event)| {
                    let response = rt.block_on(handle(event, &ports)).unwrap();
                    assert!(response.batch_item_failures.is_empty());
                    ports
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, handler);
criterion_main!(benches);
