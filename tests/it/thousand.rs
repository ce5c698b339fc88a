//! DESIGN.md §4's guarantee at volume, on SQS and DynamoDB in moto: 1,000 events published the
//! way the API publishes them (fan-out, `SendMessageBatch`) to a receiver that fails one
//! delivery in ten for good, drained by the delivery Lambda's handler the way the SQS event
//! source drives it (retries through the visibility timeout, give-ups to the dead-letter queue).
//! Every delivery ends delivered or in the dead-letter queue, none lost, none counted twice.
//!
//! The handler is given one record at a time here: moto's `TransactWriteItems` is not safe
//! under concurrent calls on one item (a cancelled transaction restores a snapshot of the table,
//! undoing the others' counts), which DynamoDB is; batches of 10 run concurrently in
//! `delivery::a_mixed_batch_finishes_in_about_one_timeout_with_each_record_on_its_own`.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use webhooks_core::delivery_service::{DeliveryService, ValidEvent};
use webhooks_core::time::SystemClock;
use webhooks_core::webhook::RetryConfig;
use webhooks_core::webhook_service::Caller;
use webhooks_core::{EventType, Timestamp};

use crate::helpers::world::World;

const EVENTS: u64 = 1000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_events_through_sqs_end_delivered_or_dead_lettered_with_exact_stats() {
    // GIVEN a webhook whose receiver fails every tenth delivery (one retry, 1 s later)
    let world = World::create(Duration::from_secs(5)).await;
    let retry = RetryConfig {
        max_retries: 1,
        backoff_multiplier: 1.0,
        initial_delay_seconds: 1,
    };
    let webhook = world.webhook(&world.receiver.url("/mixed"), retry).await;
    let service = DeliveryService::new(
        world.store.clone(),
        world.log.clone(),
        Arc::new(world.queues.queue.clone()),
        Arc::new(SystemClock),
    )
    // What is under test here is not the publish time budget (tests/it/fanout.rs is): moto is
    // shared by the tests running beside this one and can take longer than 10 s for a batch.
    .with_budget(Duration::from_secs(300));
    let caller = Caller {
        owner: world.owner.clone(),
        buckets: None,
    };

    // WHEN 1,000 events are published in batches of 100
    let started = Instant::now();
    let mut queued = 0u64;
    for batch in 0..EVENTS / 100 {
        let events = (0..100)
            .map(|i| {
                let seq = batch * 100 + i;
                ValidEvent {
                    bucket_id: world.bucket.clone(),
                    event: EventType::AlertTriggered,
                    data: serde_json::json!({"seq": seq, "currentValue": 31.5, "fail": seq % 10 == 0}),
                    timestamp: Timestamp::from_unix(1_705_314_600),
                }
            })
            .collect();
        queued += service
            .publish(&caller, events)
            .await
            .expect("publish")
            .len() as u64;
    }
    assert_eq!(queued, EVENTS, "one delivery per event");
    let published = started.elapsed();

    // AND the handler runs until the webhook has 1,000 final outcomes
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let records = world.queues.receive_records(1, 1).await;
        if records.is_empty() && world.get(&webhook).await.stats.total_deliveries >= EVENTS {
            break;
        }
        world.invoke(records).await;
        if Instant::now() >= deadline {
            let stats = world.get(&webhook).await.stats;
            panic!("not drained within 10 min: {stats:?}");
        }
    }
    let drained = started.elapsed();

    // THEN every delivery ended exactly once: delivered, or in the dead-letter queue
    let w = world.get(&webhook).await;
    let (ok, failed) = (EVENTS - EVENTS / 10, EVENTS / 10);
    assert_eq!(
        (
            w.stats.total_deliveries,
            w.stats.successful_deliveries,
            w.stats.failed_deliveries
        ),
        (EVENTS, ok, failed)
    );
    let got = world.receiver.at("/mixed");
    let ids = got
        .iter()
        .map(|r| r.header("x-webhook-id").unwrap_or_default().to_owned())
        .collect::<HashSet<_>>();
    assert_eq!(
        ids.len() as u64,
        EVENTS,
        "every delivery reached the receiver"
    );
    assert_eq!(
        got.len() as u64,
        ok + 2 * failed,
        "the failing ones twice (one retry)"
    );
    assert_eq!(
        world.queues.counts(&world.queues.url).await,
        (0, 0),
        "the delivery queue is empty"
    );
    let (dead, _) = world.queues.counts(&world.queues.dlq_url).await;
    assert_eq!(
        dead, failed,
        "every exhausted delivery is in the dead-letter queue"
    );
    eprintln!("moto: {EVENTS} deliveries published in {published:?}, all final after {drained:?}");
}
