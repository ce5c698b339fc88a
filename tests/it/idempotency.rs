//! `Idempotency-Key` on AWS (DynamoDB and SQS in moto, tables and queues from `template.yaml`):
//! the `DynamoDbIdempotencyStore` contract, 100 concurrent identical keyed publishes making one
//! set of SQS messages, another body refused, and a repeat after a part-way failure queueing
//! only the missing deliveries with the same ids.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use webhooks_aws::DynamoDbIdempotencyStore;
use webhooks_core::delivery::DeliveryTask;
use webhooks_core::delivery_service::{
    DeliveryService, PublishError, PublishEvent, QueuedDelivery,
};
use webhooks_core::idempotency::{IdempotencyKey, tests_support};
use webhooks_core::ports::{DeliveryQueue, EnqueueError};
use webhooks_core::time::SystemClock;
use webhooks_core::webhook::RetryConfig;
use webhooks_core::webhook_service::Caller;
use webhooks_core::{DeliveryId, WebhookId};

use crate::helpers::dynamo::{DeliveryTables, moto_client};
use crate::helpers::world::World;

#[tokio::test]
async fn dynamodb_idempotency_store_meets_the_contract() {
    // GIVEN the store on a deliveries table built from template.yaml
    let tables = DeliveryTables::create().await;
    let store = DynamoDbIdempotencyStore::new(moto_client(), tables.deliveries_name.clone());
    // WHEN / THEN every check of the core's contract passes
    tests_support::check(&store).await;
}

fn alerts(world: &World, n: usize, value: f64) -> Vec<PublishEvent> {
    (0..n)
        .map(|i| PublishEvent {
            bucket_id: world.bucket.to_string(),
            event: "alert.triggered".into(),
            data: json!({"alertId": format!("alert-{i}"), "currentValue": value}),
            timestamp: None,
        })
        .collect()
}

fn service(world: &World, queue: Arc<dyn DeliveryQueue>) -> DeliveryService {
    DeliveryService::new(
        world.store.clone(),
        world.log.clone(),
        queue,
        Arc::new(SystemClock),
    )
    .with_idempotency(Arc::new(DynamoDbIdempotencyStore::new(
        moto_client(),
        world.log.table_name(),
    )))
}

fn caller(world: &World) -> Caller {
    Caller {
        owner: world.owner.clone(),
        buckets: None,
    }
}

fn ids(d: &[QueuedDelivery]) -> BTreeSet<DeliveryId> {
    d.iter().map(|d| d.delivery_id.clone()).collect()
}

/// The delivery ids of every message in the queue (received, so they stay in flight).
async fn queued_ids(world: &World, expect: usize) -> Vec<DeliveryId> {
    world
        .queues
        .receive_exactly(expect, Duration::from_secs(20))
        .await
        .into_iter()
        .map(|m| {
            let body: serde_json::Value = serde_json::from_str(m.body.as_deref().unwrap()).unwrap();
            DeliveryId::parse(body["deliveryId"].as_str().unwrap()).unwrap()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_identical_keyed_publishes_queue_one_set_of_messages() {
    // GIVEN a bucket with 3 webhooks
    let world = World::create(Duration::from_secs(5)).await;
    for _ in 0..3 {
        world
            .webhook("https://example.com/hook", RetryConfig::default())
            .await;
    }
    let service = Arc::new(service(&world, Arc::new(world.queues.queue.clone())));
    let key = IdempotencyKey::parse("gateway-7:batch-0042").unwrap();

    // WHEN 100 identical publishes of 2 events with one key run at once
    let mut handles = Vec::new();
    for _ in 0..100 {
        let (service, caller, key, events) = (
            service.clone(),
            caller(&world),
            key.clone(),
            alerts(&world, 2, 31.5),
        );
        handles.push(tokio::spawn(async move {
            service.publish_keyed(&caller, &key, events).await
        }));
    }
    let mut answers = HashSet::new();
    let mut in_progress = 0;
    for h in handles {
        match h.await.unwrap() {
            Ok(r) => {
                answers.insert(ids(&r.deliveries));
            }
            Err(PublishError::KeyInProgress) => in_progress += 1,
            Err(e) => panic!("{e:?}"),
        }
    }

    // THEN every 202 names the same 6 deliveries, the others were told to retry
    assert_eq!(answers.len(), 1, "{answers:?}");
    let set = answers.into_iter().next().unwrap();
    assert_eq!(set.len(), 6);
    assert!(in_progress < 100);
    // AND a late repeat gets them again
    let late = service
        .publish_keyed(&caller(&world), &key, alerts(&world, 2, 31.5))
        .await
        .unwrap();
    assert!(late.replayed);
    assert_eq!(ids(&late.deliveries), set);
    // AND the same key with another body is refused
    let e = service
        .publish_keyed(&caller(&world), &key, alerts(&world, 2, 99.0))
        .await
        .unwrap_err();
    assert!(matches!(e, PublishError::KeyReused), "{e:?}");
    // AND SQS holds exactly those 6 messages
    let got = queued_ids(&world, 6).await;
    assert_eq!(got.iter().cloned().collect::<BTreeSet<_>>(), set);
    assert_eq!(world.queues.counts(&world.queues.url).await, (0, 6));
}

/// SQS through the real adapter for the tasks of one webhook only; the others are reported as
/// not confirmed, as when the publish's time budget runs out part-way.
struct PartWay {
    sqs: Arc<dyn DeliveryQueue>,
    only: WebhookId,
}

// `async_trait` spelled out (this crate does not depend on the macro).
impl DeliveryQueue for PartWay {
    fn enqueue<'a, 'b, 'f>(
        &'a self,
        tasks: &'b [DeliveryTask],
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), EnqueueError>> + Send + 'f>>
    where
        'a: 'f,
        'b: 'f,
    {
        Box::pin(async move {
            let (pass, stop): (Vec<DeliveryTask>, Vec<DeliveryTask>) = tasks
                .iter()
                .cloned()
                .partition(|t| t.webhook_id == self.only);
            self.sqs.enqueue(&pass).await?;
            if stop.is_empty() {
                return Ok(());
            }
            Err(EnqueueError {
                failed: stop.into_iter().map(|t| t.delivery_id).collect(),
                reason: "the publish's time budget ran out".into(),
            })
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeat_after_a_part_way_failure_queues_only_the_missing_messages_with_the_same_ids() {
    // GIVEN 3 webhooks, and a publish that queued only the first one's deliveries (a 207)
    let world = World::create(Duration::from_secs(5)).await;
    let mut hooks = Vec::new();
    for _ in 0..3 {
        hooks.push(
            world
                .webhook("https://example.com/hook", RetryConfig::default())
                .await,
        );
    }
    let sqs: Arc<dyn DeliveryQueue> = Arc::new(world.queues.queue.clone());
    let key = IdempotencyKey::parse("part-way").unwrap();
    let first = service(
        &world,
        Arc::new(PartWay {
            sqs: sqs.clone(),
            only: hooks[0].id.clone(),
        }),
    )
    .publish_keyed(&caller(&world), &key, alerts(&world, 2, 31.5))
    .await
    .unwrap_err();
    let PublishError::Enqueue {
        queued, not_queued, ..
    } = first
    else {
        panic!("{first:?}")
    };
    assert_eq!((queued.len(), not_queued.len()), (2, 4));

    // WHEN the producer repeats the request (the queue now takes everything)
    let again = service(&world, sqs)
        .publish_keyed(&caller(&world), &key, alerts(&world, 2, 31.5))
        .await
        .unwrap();

    // THEN the answer is the first answer's 6 deliveries, and SQS got each exactly once
    let all: BTreeSet<DeliveryId> = ids(&queued).union(&ids(&not_queued)).cloned().collect();
    assert_eq!(ids(&again.deliveries), all);
    let got = queued_ids(&world, 6).await;
    assert_eq!(got.len(), 6);
    assert_eq!(got.into_iter().collect::<BTreeSet<_>>(), all);
    assert_eq!(world.queues.counts(&world.queues.url).await, (0, 6));
}
