//! The circuit breaker on AWS (DESIGN.md §7): `DynamoDbHealthStore` against DynamoDB in moto
//! (the core's contract, on a deliveries table built from `template.yaml`), and the delivery
//! Lambda's handler with the breaker wired as its `main` wires it — 5 failures open it, deferred
//! records send nothing and use no attempt, the probe after the open period closes it.

use std::sync::Arc;
use std::time::Duration;

use webhooks_aws::DynamoDbHealthStore;
use webhooks_core::delivery::DeliveryTask;
use webhooks_core::dispatch::Dispatcher;
use webhooks_core::health::{FIRST_OPEN, HealthState, HealthStore, tests_support};
use webhooks_core::ports::{Clock, DeliveryLog, DeliveryQueue};
use webhooks_core::time::{FixedClock, SystemClock};
use webhooks_core::webhook::RetryConfig;
use webhooks_delivery::MAX_IN_FLIGHT_PER_WEBHOOK;
use webhooks_sender::{ReqwestWebhookSender, SenderConfig};

use crate::helpers::dynamo::{DeliveryTables, moto_client};
use crate::helpers::world::{World, failures};

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
    world.deps.dispatcher = Dispatcher::new(
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
