//! Operational notifications on AWS (DynamoDB and SQS in moto, tables and queues from
//! `template.yaml`): the `DynamoDbNoticeStore` contract on the webhooks table, and a delivery
//! Lambda whose receiver fails queueing `webhook.failing` to the owner's endpoint once.

use std::sync::Arc;
use std::time::Duration;

use webhooks_aws::DynamoDbNoticeStore;
use webhooks_core::notify::{NotificationService, Notifier, PutNotifications, conformance};
use webhooks_core::ports::DeliveryQueue;
use webhooks_core::time::SystemClock;
use webhooks_core::validate::UrlPolicy;
use webhooks_core::webhook_service::Caller;

use crate::helpers::dynamo::{WebhooksTable, moto_client};
use crate::helpers::world::{World, every_second};

#[tokio::test]
async fn dynamodb_notice_store_meets_the_contract() {
    // GIVEN the store on a webhooks table built from template.yaml
    let table = WebhooksTable::create().await;
    let store = DynamoDbNoticeStore::new(moto_client(), table.name.clone());
    // WHEN / THEN every check of the core's contract passes
    conformance::check(&store).await;
}

#[tokio::test]
async fn a_failed_delivery_on_aws_queues_webhook_failing_to_the_owners_endpoint_once() {
    // GIVEN the delivery handler with notifications on, an endpoint of the owner, and a
    // webhook (no retries) whose receiver answers 500
    let mut world = World::create(Duration::from_secs(5)).await;
    let clock = Arc::new(SystemClock);
    let notices = Arc::new(DynamoDbNoticeStore::new(
        moto_client(),
        world.store.table_name().to_owned(),
    ));
    let queue = Arc::new(world.queues.queue.clone());
    let notifier = Notifier::new(notices, world.store.clone(), queue, clock.clone());
    world.ports.dispatcher = world
        .ports
        .dispatcher
        .clone()
        .with_notifier(Arc::new(notifier));
    let caller = Caller {
        owner: world.owner.clone(),
        buckets: None,
    };
    let endpoint = NotificationService::new(world.store.clone(), clock, UrlPolicy::LOCAL)
        .put(
            &caller,
            PutNotifications {
                url: world.receiver.url("/notify"),
                secret: None,
            },
        )
        .await
        .expect("endpoint");
    let w = world
        .webhook(&world.receiver.url("/fail"), every_second(0))
        .await;

    // WHEN two deliveries to it fail, in one batch (their notifications decided at once)
    let tasks = [world.task(&w), world.task(&w)];
    world.queues.queue.enqueue(&tasks).await.expect("enqueue");
    let records = world
        .queues
        .receive_exactly(2, Duration::from_secs(10))
        .await;
    world.invoke(records).await;

    // THEN the queue holds exactly one notification: webhook.failing to the endpoint
    let left = world
        .queues
        .receive_exactly(1, Duration::from_secs(10))
        .await;
    let tasks: Vec<_> = left
        .iter()
        .map(|m| {
            webhooks_core::delivery::QueueTask::from_json(m.body.as_deref().unwrap())
                .unwrap()
                .delivery()
                .clone()
        })
        .collect();
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        world.queues.receive_records(10, 0).await.is_empty(),
        "only one"
    );
    assert_eq!(tasks[0].webhook_id, endpoint.webhook.id);
    assert_eq!(tasks[0].event.as_str(), "webhook.failing");
    let body: serde_json::Value = serde_json::from_str(&tasks[0].body).unwrap();
    assert_eq!(body["data"]["webhookId"], w.id.to_string());
}
