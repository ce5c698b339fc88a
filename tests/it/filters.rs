//! Payload filters on AWS (SQS and DynamoDB in moto): 1,000 readings of 10 devices published
//! the way the API publishes them, to webhooks whose filters want 1, 3 and all 10 devices. The
//! queue gets exactly the wanted (event, webhook) pairs — 100 + 300 + 1,000 messages, not
//! 3 × 1,000 — so a filtered-out event costs no SQS request entry. (Delivery of the same
//! workload, each receiver getting exactly its devices' events, with signatures and stats, is
//! `functions/local/tests/routing.rs`.)

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use webhooks_core::delivery_service::{DeliveryService, ValidEvent};
use webhooks_core::filter::Filter;
use webhooks_core::ports::SubscriptionStore;
use webhooks_core::time::SystemClock;
use webhooks_core::webhook::{RetryConfig, WebhookPatch};
use webhooks_core::webhook_service::Caller;
use webhooks_core::{EventType, Timestamp};

use crate::helpers::world::World;

const DEVICES: u64 = 10;
const EVENTS: u64 = 1000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_events_a_webhooks_filter_wants_become_sqs_messages() {
    // GIVEN three data.received webhooks filtering on 1, 3 and all devices
    let world = World::create(Duration::from_secs(5)).await;
    let filters = [
        (json!({"data.dataSourceId": "device-7"}), 1),
        (
            json!({"data.dataSourceId": {"$in": ["device-0", "device-3", "device-9"]}}),
            3,
        ),
        (
            json!({"data.dataSourceId": {"$startsWith": "device-"}}),
            DEVICES,
        ),
    ];
    let mut want = BTreeMap::new();
    for (filter, devices) in &filters {
        let w = world
            .webhook("https://example.com/hook", RetryConfig::default())
            .await;
        let patch = WebhookPatch {
            events: Some(vec![EventType::DataReceived]),
            filter: Some(Some(Filter::parse(filter.clone()).unwrap())),
            ..Default::default()
        };
        world
            .store
            .update(
                &world.owner,
                &w.id,
                &patch,
                Timestamp::from_unix(1_760_000_000),
            )
            .await
            .unwrap();
        want.insert(w.id.to_string(), (*devices, filter.clone()));
    }
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

    // WHEN 1,000 readings (100 per device) are published in batches of 100
    let mut queued = 0;
    let mut per_webhook: BTreeMap<String, u64> = BTreeMap::new();
    for batch in 0..EVENTS / 100 {
        let events = (batch * 100..(batch + 1) * 100)
            .map(|i| ValidEvent {
                bucket_id: world.bucket.clone(),
                event: EventType::DataReceived,
                data: json!({"dataSourceId": format!("device-{}", i % DEVICES), "seq": i}),
                timestamp: Timestamp::from_unix(1_705_314_600),
            })
            .collect();
        for q in service.publish(&caller, events).await.expect("publish") {
            *per_webhook.entry(q.webhook_id.to_string()).or_default() += 1;
            queued += 1;
        }
    }

    // THEN the queue holds exactly 100 + 300 + 1,000 messages
    let total = EVENTS / DEVICES * (1 + 3 + DEVICES);
    assert_eq!(queued, total);
    assert_eq!(world.queues.counts(&world.queues.url).await, (total, 0));
    // AND each webhook got 100 per device it wants (the publish answers name the webhook of each
    // queued delivery; which devices they are is checked end to end in the local mode)
    for (id, (devices, filter)) in &want {
        let n = per_webhook.get(id).copied().unwrap_or(0);
        assert_eq!(n, EVENTS / DEVICES * devices, "{filter}");
    }
}
