//! `DeliveryService::publish_keyed` on in-process fakes: the decisions of `core::idempotency`
//! carried out (replay, reuse, in progress, part-way failures, a dead publisher, expiry).
#![cfg(feature = "conformance")]

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::json;
use webhooks_core::conformance::sample_webhook;
use webhooks_core::delivery::DeliveryTask;
use webhooks_core::delivery_service::{
    DeliveryService, PublishError, PublishEvent, QueuedDelivery,
};
use webhooks_core::idempotency::{
    IdempotencyKey, IdempotencyRecord, IdempotencyStore, KeyState, LEASE_SECS,
    MemoryIdempotencyStore, request_hash,
};
use webhooks_core::ports::memory::{MemoryLog, MemoryStore};
use webhooks_core::ports::{DeliveryQueue, EnqueueError, SubscriptionStore};
use webhooks_core::time::FixedClock;
use webhooks_core::webhook_service::Caller;
use webhooks_core::{BucketId, DeliveryId, OwnerId, Timestamp, WebhookId};

/// A queue that keeps what was enqueued (and through which call), refuses the tasks of the
/// webhooks in `refuse`, and, like the embedded queue, skips ids it holds in `enqueue_new_by`.
#[derive(Default)]
struct TestQueue {
    tasks: Mutex<Vec<DeliveryTask>>,
    refuse: Mutex<HashSet<WebhookId>>,
    new_by_calls: Mutex<usize>,
}

impl TestQueue {
    fn ids(&self) -> Vec<DeliveryId> {
        let mut v: Vec<DeliveryId> = self
            .tasks
            .lock()
            .unwrap()
            .iter()
            .map(|t| t.delivery_id.clone())
            .collect();
        v.sort();
        v
    }
}

#[async_trait]
impl DeliveryQueue for TestQueue {
    async fn enqueue(&self, tasks: &[DeliveryTask]) -> Result<(), EnqueueError> {
        let refuse = self.refuse.lock().unwrap().clone();
        let (bad, ok): (Vec<&DeliveryTask>, Vec<&DeliveryTask>) =
            tasks.iter().partition(|t| refuse.contains(&t.webhook_id));
        self.tasks.lock().unwrap().extend(ok.into_iter().cloned());
        if bad.is_empty() {
            Ok(())
        } else {
            Err(EnqueueError {
                failed: bad.iter().map(|t| t.delivery_id.clone()).collect(),
                reason: "refused".into(),
            })
        }
    }

    async fn enqueue_new_by(
        &self,
        tasks: &[DeliveryTask],
        _deadline: std::time::Instant,
    ) -> Result<(), EnqueueError> {
        *self.new_by_calls.lock().unwrap() += 1;
        let held: HashSet<DeliveryId> = self.ids().into_iter().collect();
        let new: Vec<DeliveryTask> = tasks
            .iter()
            .filter(|t| !held.contains(&t.delivery_id))
            .cloned()
            .collect();
        self.enqueue(&new).await
    }
}

struct World {
    service: DeliveryService,
    queue: Arc<TestQueue>,
    keys: Arc<MemoryIdempotencyStore>,
    clock: Arc<FixedClock>,
    caller: Caller,
    bucket: BucketId,
    webhooks: Vec<WebhookId>,
}

const T0: i64 = 1_800_000_000;

async fn world(webhooks: usize) -> World {
    let store = Arc::new(MemoryStore::new());
    let owner = OwnerId::parse("producer-1").unwrap();
    let bucket = BucketId::generate(T0);
    let mut ids = Vec::new();
    for i in 0..webhooks {
        let w = sample_webhook(&owner, &bucket, T0 + i as i64);
        ids.push(w.id.clone());
        store.create(&w).await.unwrap();
    }
    let queue = Arc::new(TestQueue::default());
    let keys = Arc::new(MemoryIdempotencyStore::new());
    let clock = Arc::new(FixedClock::at(Timestamp::from_unix(T0)));
    let service = DeliveryService::new(
        store.clone(),
        Arc::new(MemoryLog::new(store)),
        queue.clone(),
        clock.clone(),
    )
    .with_idempotency(keys.clone());
    World {
        service,
        queue,
        keys,
        clock,
        caller: Caller {
            owner,
            buckets: Some(vec![bucket.clone()]),
        },
        bucket,
        webhooks: ids,
    }
}

fn events(bucket: &BucketId, n: usize, value: i64) -> Vec<PublishEvent> {
    (0..n)
        .map(|i| PublishEvent {
            bucket_id: bucket.to_string(),
            event: "data.received".into(),
            data: json!({"device": i, "value": value}),
            timestamp: None,
        })
        .collect()
}

fn key(s: &str) -> IdempotencyKey {
    IdempotencyKey::parse(s).unwrap()
}

fn sorted_ids(d: &[QueuedDelivery]) -> Vec<DeliveryId> {
    let mut v: Vec<DeliveryId> = d.iter().map(|d| d.delivery_id.clone()).collect();
    v.sort();
    v
}

#[tokio::test]
async fn a_repeat_with_the_same_body_answers_the_same_deliveries_and_queues_nothing() {
    // GIVEN a bucket with 3 webhooks
    let w = world(3).await;
    // WHEN 2 events are published twice with one key, the second time 5 s later
    let first = w
        .service
        .publish_keyed(&w.caller, &key("k1"), events(&w.bucket, 2, 1))
        .await
        .unwrap();
    w.clock.advance(5);
    let second = w
        .service
        .publish_keyed(&w.caller, &key("k1"), events(&w.bucket, 2, 1))
        .await
        .unwrap();
    // THEN the second is a replay of the first; 6 deliveries were queued once
    assert!(!first.replayed);
    assert!(second.replayed);
    assert_eq!(first.deliveries.len(), 6);
    assert_eq!(
        sorted_ids(&first.deliveries),
        sorted_ids(&second.deliveries)
    );
    assert_eq!(w.queue.ids(), sorted_ids(&first.deliveries));
    // AND another key, or another producer with the same key, is another publish
    let other = w
        .service
        .publish_keyed(&w.caller, &key("k2"), events(&w.bucket, 2, 1))
        .await
        .unwrap();
    assert!(!other.replayed);
    let someone_else = Caller {
        owner: OwnerId::parse("producer-2").unwrap(),
        ..w.caller.clone()
    };
    let theirs = w
        .service
        .publish_keyed(&someone_else, &key("k1"), events(&w.bucket, 2, 1))
        .await
        .unwrap();
    assert!(!theirs.replayed);
    assert_eq!(w.queue.ids().len(), 18);
    assert_eq!(
        w.queue.ids().into_iter().collect::<HashSet<_>>().len(),
        18,
        "all ids distinct"
    );
}

#[tokio::test]
async fn a_repeat_with_another_body_is_refused_and_queues_nothing() {
    let w = world(2).await;
    w.service
        .publish_keyed(&w.caller, &key("k"), events(&w.bucket, 1, 1))
        .await
        .unwrap();
    let e = w
        .service
        .publish_keyed(&w.caller, &key("k"), events(&w.bucket, 1, 2))
        .await
        .unwrap_err();
    assert!(matches!(e, PublishError::KeyReused), "{e:?}");
    assert_eq!(w.queue.ids().len(), 2);
}

#[tokio::test]
async fn a_repeat_while_the_first_runs_is_told_to_wait_and_takes_over_after_the_lease() {
    // GIVEN a key claimed by a publisher that then died (nothing queued, no answer)
    let w = world(2).await;
    let evs = events(&w.bucket, 1, 1);
    let claim = IdempotencyRecord::claim(
        &w.caller.owner,
        &key("k"),
        request_hash(&evs),
        Timestamp::from_unix(T0),
    );
    assert_eq!(w.keys.insert_or_get(&claim).await.unwrap(), None);
    // WHEN the same request comes within the lease: 409, nothing queued
    w.clock.advance(LEASE_SECS - 1);
    let e = w
        .service
        .publish_keyed(&w.caller, &key("k"), evs.clone())
        .await
        .unwrap_err();
    assert!(matches!(e, PublishError::KeyInProgress), "{e:?}");
    assert!(w.queue.ids().is_empty());
    // WHEN it comes after the lease: it takes over, through the queue's dedup
    w.clock.advance(1);
    let r = w
        .service
        .publish_keyed(&w.caller, &key("k"), evs.clone())
        .await
        .unwrap();
    assert!(!r.replayed);
    assert_eq!(r.deliveries.len(), 2);
    assert_eq!(*w.queue.new_by_calls.lock().unwrap(), 1);
    // THEN the ids are the claim's (its time base), and the next repeat replays them
    for d in &r.deliveries {
        assert!(d.delivery_id.as_str().starts_with(&format!("{T0:08x}")));
    }
    let again = w
        .service
        .publish_keyed(&w.caller, &key("k"), evs)
        .await
        .unwrap();
    assert!(again.replayed);
    assert_eq!(sorted_ids(&again.deliveries), sorted_ids(&r.deliveries));
    assert_eq!(w.queue.ids(), sorted_ids(&r.deliveries));
}

#[tokio::test]
async fn a_dead_publisher_that_had_queued_some_gets_only_the_missing_ones_queued() {
    // GIVEN a publish that queued everything, whose answer was lost with its process
    let w = world(3).await;
    let evs = events(&w.bucket, 2, 1);
    let first = w
        .service
        .publish_keyed(&w.caller, &key("k"), evs.clone())
        .await
        .unwrap();
    let stored = w
        .keys
        .insert_or_get(&IdempotencyRecord::claim(
            &w.caller.owner,
            &key("k"),
            String::new(),
            Timestamp::from_unix(T0),
        ))
        .await
        .unwrap()
        .unwrap();
    let lost = stored.next(KeyState::InProgress {
        until: Timestamp::from_unix(T0 + LEASE_SECS),
    });
    assert!(w.keys.replace(&lost, stored.version).await.unwrap());
    // WHEN it is repeated after the lease
    w.clock.advance(LEASE_SECS + 3);
    let r = w
        .service
        .publish_keyed(&w.caller, &key("k"), evs)
        .await
        .unwrap();
    // THEN the same deliveries, each queued once
    assert_eq!(sorted_ids(&r.deliveries), sorted_ids(&first.deliveries));
    assert_eq!(w.queue.ids(), sorted_ids(&first.deliveries));
}

#[tokio::test]
async fn a_repeat_after_a_part_way_failure_queues_only_the_missing_deliveries_with_the_same_ids() {
    // GIVEN a publish whose queue refused the deliveries of one of 3 webhooks
    let w = world(3).await;
    let evs = events(&w.bucket, 2, 1);
    w.queue.refuse.lock().unwrap().insert(w.webhooks[1].clone());
    let e = w
        .service
        .publish_keyed(&w.caller, &key("k"), evs.clone())
        .await
        .unwrap_err();
    let PublishError::Enqueue {
        queued, not_queued, ..
    } = e
    else {
        panic!("{e:?}")
    };
    assert_eq!((queued.len(), not_queued.len()), (4, 2));
    let bodies_before: Vec<String> = w
        .queue
        .tasks
        .lock()
        .unwrap()
        .iter()
        .map(|t| t.body.clone())
        .collect();
    // WHEN the queue works again and the producer repeats 30 s later
    w.queue.refuse.lock().unwrap().clear();
    w.clock.advance(30);
    let r = w
        .service
        .publish_keyed(&w.caller, &key("k"), evs.clone())
        .await
        .unwrap();
    // THEN the answer is the whole set with the first answer's ids; only the 2 missing were
    // queued now, and the ones queued before kept their bodies (timestamps of the first try)
    let all: Vec<QueuedDelivery> = queued.iter().chain(&not_queued).cloned().collect();
    assert_eq!(sorted_ids(&r.deliveries), sorted_ids(&all));
    assert_eq!(w.queue.ids(), sorted_ids(&all));
    let tasks = w.queue.tasks.lock().unwrap().clone();
    assert_eq!(
        &tasks[..4]
            .iter()
            .map(|t| t.body.clone())
            .collect::<Vec<_>>(),
        &bodies_before
    );
    for t in &tasks {
        assert!(
            t.body.contains("\"timestamp\":\"2027-01-15T08:00:00Z\""),
            "{}",
            t.body
        );
    }
    // AND a further repeat replays the full answer
    let again = w
        .service
        .publish_keyed(&w.caller, &key("k"), evs)
        .await
        .unwrap();
    assert!(again.replayed);
    assert_eq!(w.queue.ids().len(), 6);
}

#[tokio::test]
async fn a_publish_that_queued_nothing_before_failing_gives_the_key_back() {
    // GIVEN a webhook whose deliveries would exceed the queue's message limit
    let w = world(1).await;
    let huge = vec![PublishEvent {
        bucket_id: w.bucket.to_string(),
        event: "data.received".into(),
        data: json!({"blob": "x".repeat(300 * 1024)}),
        timestamp: None,
    }];
    let e = w
        .service
        .publish_keyed(&w.caller, &key("k"), huge)
        .await
        .unwrap_err();
    assert!(matches!(e, PublishError::TooLarge { .. }), "{e:?}");
    // THEN the key is free for a corrected request (not 422)
    let ok = w
        .service
        .publish_keyed(&w.caller, &key("k"), events(&w.bucket, 1, 1))
        .await
        .unwrap();
    assert!(!ok.replayed);
    // AND a bucket the token may not use is refused before the key is claimed
    let elsewhere = events(&BucketId::generate(T0), 1, 1);
    let e = w
        .service
        .publish_keyed(&w.caller, &key("k3"), elsewhere)
        .await
        .unwrap_err();
    assert!(matches!(e, PublishError::Service(_)), "{e:?}");
    let ok = w
        .service
        .publish_keyed(&w.caller, &key("k3"), events(&w.bucket, 1, 5))
        .await
        .unwrap();
    assert!(!ok.replayed);
}

#[tokio::test]
async fn a_key_is_forgotten_after_24_hours() {
    let w = world(1).await;
    let first = w
        .service
        .publish_keyed(&w.caller, &key("k"), events(&w.bucket, 1, 1))
        .await
        .unwrap();
    w.clock.advance(24 * 3600 - 1);
    let replay = w
        .service
        .publish_keyed(&w.caller, &key("k"), events(&w.bucket, 1, 2))
        .await
        .unwrap_err();
    assert!(matches!(replay, PublishError::KeyReused));
    w.clock.advance(1);
    let fresh = w
        .service
        .publish_keyed(&w.caller, &key("k"), events(&w.bucket, 1, 2))
        .await
        .unwrap();
    assert!(!fresh.replayed);
    assert_ne!(sorted_ids(&first.deliveries), sorted_ids(&fresh.deliveries));
}

#[tokio::test]
async fn concurrent_repeats_make_one_set_of_deliveries() {
    let w = Arc::new(world(3).await);
    let mut handles = Vec::new();
    for _ in 0..100 {
        let w = w.clone();
        handles.push(tokio::spawn(async move {
            w.service
                .publish_keyed(&w.caller, &key("burst"), events(&w.bucket, 2, 1))
                .await
        }));
    }
    let mut answers = HashSet::new();
    let mut in_progress = 0;
    for h in handles {
        match h.await.unwrap() {
            Ok(r) => {
                answers.insert(sorted_ids(&r.deliveries));
            }
            Err(PublishError::KeyInProgress) => in_progress += 1,
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(answers.len(), 1, "one set of ids in every 202");
    assert!(in_progress < 100);
    assert_eq!(w.queue.ids().len(), 6);
}
