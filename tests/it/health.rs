//! The circuit breaker on AWS (DESIGN.md §7): `DynamoDbHealthStore` against DynamoDB in moto
//! (the core's contract, on a deliveries table built from `template.yaml`), and the delivery
//! Lambda's handler with the breaker wired as its `main` wires it — 5 failures open it, deferred
//! records send nothing and use no attempt, the probe after the open period closes it; a
//! timing-out webhook's deliveries move to the slow lane's queue and are sent from there.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use webhooks_aws::DynamoDbHealthStore;
use webhooks_core::delivery::{DeliveryTask, QueueTask};
use webhooks_core::dispatch::Dispatcher;
use webhooks_core::health::{FIRST_OPEN, HealthState, HealthStore, tests_support};
use webhooks_core::ports::{Clock, DeliveryLog, DeliveryQueue};
use webhooks_core::time::{FixedClock, SystemClock};
use webhooks_core::webhook::RetryConfig;
use webhooks_delivery::MAX_IN_FLIGHT_PER_WEBHOOK;
use webhooks_sender::{ReqwestWebhookSender, SenderConfig};

use crate::helpers::dynamo::{DeliveryTables, moto_client};
use crate::helpers::poll_until;
use crate::helpers::world::{World, every_second, failures};

#[tokio::test]
async fn dynamodb_health_store_meets_the_contract() {
    // GIVEN the store on a deliveries table built from template.yaml
    let tables = DeliveryTables::create().await;
    let store = DynamoDbHealthStore::new(moto_client(), tables.deliveries_name.clone());
    // WHEN / THEN every check of the core's contract passes
    tests_support::check(&store).await;
}

/// A task whose body makes the receiver's `/mixed` answer 500 when `fail`.
fn task(world: &World, w: &webhooks_core::webhook::Webhook, fail: bool) -> DeliveryTask {
    let mut t = world.task(w);
    if fail {
        t.body = t
            .body
            .replacen("\"alertId\"", "\"fail\":true,\"alertId\"", 1);
    }
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lambda_breaker_opens_after_five_failures_defers_without_sending_and_a_probe_closes_it()
{
    // GIVEN the handler with the breaker on DynamoDB (moto), a clock the test moves, and a
    // webhook whose receiver fails the deliveries marked to fail; retries an hour apart
    let mut world = World::create(Duration::from_secs(2)).await;
    let clock = Arc::new(FixedClock::at(SystemClock.now()));
    let health = Arc::new(DynamoDbHealthStore::new(
        moto_client(),
        world.log.table_name(),
    ));
    let sender = ReqwestWebhookSender::new(SenderConfig {
        timeout: Duration::from_secs(2),
        allow_private: true,
    })
    .expect("sender");
    world.ports.dispatcher = Dispatcher::new(
        world.store.clone(),
        world.log.clone(),
        Arc::new(sender),
        clock.clone(),
    )
    .with_breaker(health.clone())
    .with_max_in_flight(MAX_IN_FLIGHT_PER_WEBHOOK);
    let retry = RetryConfig {
        max_retries: 3,
        backoff_multiplier: 1.0,
        initial_delay_seconds: 3600,
    };
    let w = world.webhook(&world.receiver.url("/mixed"), retry).await;
    let queue = &world.queues.queue;

    // WHEN 5 failing deliveries are handled in one batch
    let failing: Vec<DeliveryTask> = (0..5).map(|_| task(&world, &w, true)).collect();
    queue.enqueue(&failing).await.expect("enqueue");
    let records = world
        .queues
        .receive_exactly(5, Duration::from_secs(10))
        .await;
    let response = world.invoke(records).await;

    // THEN all 5 were sent and failed (retries scheduled), and the breaker is open for 30 s,
    // every failure counted although they finished at once
    assert_eq!(failures(&response).len(), 5, "{response:?}");
    assert_eq!(world.receiver.at("/mixed").len(), 5);
    let open = health.get(&w.id).await.expect("get").expect("a state");
    assert_eq!(
        (open.state, open.consecutive_failures),
        (HealthState::Open, 5)
    );
    assert_eq!(open.open_seconds, FIRST_OPEN.as_secs());

    // WHEN two more deliveries (whose receiver would answer) are handled while it is open
    let held: Vec<DeliveryTask> = (0..2).map(|_| task(&world, &w, false)).collect();
    queue.enqueue(&held).await.expect("enqueue");
    let records = world
        .queues
        .receive_exactly(2, Duration::from_secs(10))
        .await;
    let response = world.invoke(records).await;

    // THEN nothing is sent and no attempt is recorded; they are acknowledged (queued again as
    // new messages, delayed until the period ends)
    assert!(failures(&response).is_empty(), "{response:?}");
    assert_eq!(world.receiver.at("/mixed").len(), 5, "deferred: not sent");
    for t in &held {
        let attempts = world
            .log
            .attempts_of(&w.id, &t.delivery_id, 0)
            .await
            .expect("attempts");
        assert!(attempts.is_empty(), "a deferral uses no attempt");
    }
    assert!(
        world.queues.receive_records(10, 0).await.is_empty(),
        "the deferred messages wait for the open period"
    );

    // WHEN the open period is over and a delivery comes
    clock.advance(FIRST_OPEN.as_secs() as i64 + 1);
    let probe = task(&world, &w, false);
    queue
        .enqueue(std::slice::from_ref(&probe))
        .await
        .expect("enqueue");
    let records = world
        .queues
        .receive_exactly(1, Duration::from_secs(10))
        .await;
    let response = world.invoke(records).await;

    // THEN it is sent as the probe, answered, and the breaker is closed
    assert!(failures(&response).is_empty(), "{response:?}");
    let got = world.receiver.at("/mixed");
    assert_eq!(got.len(), 6);
    assert_eq!(
        got[5].header("x-webhook-id"),
        Some(probe.delivery_id.as_str())
    );
    assert_eq!(got[5].header("x-webhook-attempt"), Some("1"));
    let closed = health.get(&w.id).await.expect("get").expect("a state");
    assert_eq!(
        (closed.state, closed.consecutive_failures),
        (HealthState::Healthy, 0)
    );
}

/// The delivery ids of `records` (SQS event records of queued tasks), each once.
fn delivery_ids(records: &[aws_lambda_events::event::sqs::SqsMessage]) -> BTreeSet<String> {
    records
        .iter()
        .map(|r| {
            QueueTask::from_json(r.body.as_deref().unwrap_or_default())
                .expect("a queued task")
                .delivery()
                .delivery_id
                .to_string()
        })
        .collect()
}

/// Hands what the delivery queue hands out to the function until `done` says so, given the
/// world and the queue's (visible, in flight) counts (bounded).
async fn drain_main(world: &World, what: &str, done: impl Fn(&World, (u64, u64)) -> bool) {
    poll_until(what, Duration::from_secs(60), Duration::ZERO, || async {
        let records = world.queues.receive_records(10, 1).await;
        if !records.is_empty() {
            world.invoke(records).await;
        }
        let counts = world.queues.counts(&world.queues.url).await;
        done(world, counts).then_some(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timing_out_webhooks_deliveries_move_to_the_slow_lane_without_an_attempt_and_a_healthy_ones_never_do()
 {
    // GIVEN the handler as main.rs wires it (the breaker on DynamoDB, the slow lane's queue
    // configured: World's queues come from template.yaml's DeliveryQueue, SlowQueue and
    // DeadLetterQueue), attempts timing out after 1 s, a webhook whose receiver hangs and one
    // that answers, retries 1 s apart
    let mut world = World::create(Duration::from_secs(1)).await;
    let health = Arc::new(DynamoDbHealthStore::new(
        moto_client(),
        world.log.table_name(),
    ));
    let sender = ReqwestWebhookSender::new(SenderConfig {
        timeout: Duration::from_secs(1),
        allow_private: true,
    })
    .expect("sender");
    world.ports.dispatcher = Dispatcher::new(
        world.store.clone(),
        world.log.clone(),
        Arc::new(sender),
        Arc::new(SystemClock),
    )
    .with_breaker(health.clone())
    .with_max_in_flight(MAX_IN_FLIGHT_PER_WEBHOOK);
    let hanging = world
        .webhook(&world.receiver.url("/hang"), every_second(5))
        .await;
    let ok = world
        .webhook(&world.receiver.url("/ok"), every_second(5))
        .await;
    let queue = &world.queues.queue;
    let delivered_ok = || {
        world
            .receiver
            .at("/ok")
            .iter()
            .filter_map(|r| r.header("x-webhook-id").map(str::to_owned))
            .collect::<BTreeSet<String>>()
    };
    let ids = |tasks: &[DeliveryTask]| -> BTreeSet<String> {
        tasks.iter().map(|t| t.delivery_id.to_string()).collect()
    };
    // WHEN a delivery to each webhook (three to the healthy one) is handled from the delivery
    // queue
    let first = world.task(&hanging);
    let healthy: Vec<DeliveryTask> = (0..3).map(|_| world.task(&ok)).collect();
    queue
        .enqueue(&[vec![first.clone()], healthy.clone()].concat())
        .await
        .expect("enqueue");
    drain_main(&world, "the first deliveries", |w, _| {
        !w.receiver.at("/hang").is_empty() && w.receiver.at("/ok").len() >= 3
    })
    .await;
    // THEN the hanging receiver got attempt 1, which timed out: the webhook is timing out
    let hung = world.receiver.at("/hang");
    assert_eq!(hung.len(), 1);
    assert_eq!(hung[0].header("x-webhook-attempt"), Some("1"));
    let h = health
        .get(&hanging.id)
        .await
        .expect("get")
        .expect("a state");
    assert!(h.timing_out && h.state == HealthState::Degraded, "{h:?}");

    // WHEN its retry comes back on the delivery queue, with a new delivery to it and three more
    // to the healthy webhook, and the delivery queue is handled until empty
    let second = world.task(&hanging);
    let more: Vec<DeliveryTask> = (0..3).map(|_| world.task(&ok)).collect();
    queue
        .enqueue(&[vec![second.clone()], more.clone()].concat())
        .await
        .expect("enqueue");
    drain_main(&world, "the delivery queue to empty", |_, counts| {
        counts == (0, 0)
    })
    .await;

    // THEN the healthy deliveries were delivered from it, and the hanging webhook's two were
    // not sent (still 1 request), used no attempt (attempt 1 only, none for the new one) ...
    let all_healthy: BTreeSet<String> = ids(&healthy).union(&ids(&more)).cloned().collect();
    assert_eq!(delivered_ok(), all_healthy);
    assert_eq!(world.receiver.at("/hang").len(), 1, "a move sends nothing");
    let attempts = |t: &DeliveryTask| {
        let (log, w, d) = (world.log.clone(), hanging.id.clone(), t.delivery_id.clone());
        async move {
            let mut n: Vec<u32> = log
                .attempts_of(&w, &d, 0)
                .await
                .expect("attempts")
                .iter()
                .map(|a| a.attempt)
                .collect();
            n.sort();
            n.dedup();
            n
        }
    };
    assert_eq!(attempts(&first).await, [1]);
    assert!(attempts(&second).await.is_empty());
    // ... and are on the slow lane's queue, carrying the attempts made (copies allowed), with
    // no healthy delivery among them
    let mut slow_records = Vec::new();
    let want = ids(&[first.clone(), second.clone()]);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while delivery_ids(&slow_records) != want {
        assert!(
            std::time::Instant::now() < deadline,
            "the slow queue held {:?}, not {want:?}",
            delivery_ids(&slow_records)
        );
        slow_records.extend(world.queues.receive_slow_records(10, 1).await);
    }
    for r in &slow_records {
        let task = QueueTask::from_json(r.body.as_deref().unwrap()).unwrap();
        let task = task.delivery();
        let made = if task.delivery_id == first.delivery_id {
            1
        } else {
            0
        };
        assert_eq!(task.attempts_made, made, "{task:?}");
    }

    // WHEN the slow lane's event source hands them to the function
    let response = world.invoke(slow_records.clone()).await;

    // THEN they are sent from there, numbered on from the attempts recorded (2 and 1), time out
    // and are retried on the slow queue (its visibility), never moved back to the delivery
    // queue
    let sent: BTreeSet<(String, String)> = world.receiver.at("/hang")[1..]
        .iter()
        .map(|r| {
            (
                r.header("x-webhook-id").unwrap_or_default().to_owned(),
                r.header("x-webhook-attempt").unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let expected: BTreeSet<(String, String)> = [
        (first.delivery_id.to_string(), "2".to_owned()),
        (second.delivery_id.to_string(), "1".to_owned()),
    ]
    .into();
    assert_eq!(sent, expected);
    assert_eq!(
        failures(&response).len(),
        slow_records.len(),
        "{response:?}"
    );
    assert_eq!(attempts(&first).await, [1, 2]);
    assert_eq!(world.queues.counts(&world.queues.url).await, (0, 0));
    let (visible, in_flight) = world.queues.counts(&world.queues.slow_url).await;
    assert!(visible + in_flight >= 2, "{visible} + {in_flight}");
}
