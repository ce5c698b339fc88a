//! `SqsDeliveryQueue` and `SqsWorkerQueue` against SQS in moto, on queues built from
//! `template.yaml`.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::QueueAttributeName;
use webhooks_core::delivery::{DeliveryTask, MAX_MESSAGE_BYTES, QueueTask};
use webhooks_core::flow::Lane;
use webhooks_core::ports::DeliveryQueue;
use webhooks_core::{DeliveryId, EventType, Timestamp, WebhookId};

use crate::helpers::poll_until;
use crate::helpers::sqs::Queues;

fn task(n: i64, body: String) -> DeliveryTask {
    DeliveryTask {
        delivery_id: DeliveryId::generate(1_750_000_000 + n),
        webhook_id: WebhookId::generate(1_750_000_000),
        event: EventType::DataReceived,
        generation: 0,
        attempts_made: 0,
        body,
        created_at: Timestamp::from_unix(1_750_000_000 + n),
    }
}

#[tokio::test]
async fn queues_are_created_with_the_templates_attributes_and_redrive_policy() {
    // GIVEN queues built from template.yaml
    let q = Queues::create().await;
    // WHEN their attributes are read back
    let attrs = q
        .client
        .get_queue_attributes()
        .queue_url(&q.url)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .expect("attributes")
        .attributes
        .unwrap_or_default();
    // THEN the delivery queue redrives to the test's dead-letter queue after the core's
    // MAX_RECEIVE_COUNT receipts, with
    // the template's visibility timeout and retention
    let redrive: serde_json::Value =
        serde_json::from_str(&attrs[&QueueAttributeName::RedrivePolicy]).expect("redrive json");
    assert_eq!(redrive["deadLetterTargetArn"], q.dlq_arn.as_str());
    assert_eq!(
        redrive["maxReceiveCount"].as_u64(),
        Some(u64::from(webhooks_core::flow::MAX_RECEIVE_COUNT))
    );
    assert_eq!(attrs[&QueueAttributeName::VisibilityTimeout], "360");
    // (12 days: the longest retry schedule is 10, and the dead-letter queue keeps 14 — a redriven
    // message keeps its original enqueue time)
    assert_eq!(
        attrs[&QueueAttributeName::MessageRetentionPeriod],
        "1036800"
    );
}

#[tokio::test]
async fn twenty_five_enqueued_tasks_are_all_received_and_their_bodies_parse_back() {
    // GIVEN 25 tasks (more than two batches of 10), bodies with unicode and escapes
    let q = Queues::create().await;
    let tasks: Vec<DeliveryTask> = (0..25)
        .map(|i| {
            task(
                i,
                format!(r#"{{"event":"data.received","data":{{"n":{i},"s":"°C \"q\" \n"}}}}"#),
            )
        })
        .collect();

    // WHEN they are enqueued
    q.queue.enqueue(&tasks).await.expect("enqueue");

    // THEN all 25 are received, each body is the versioned task exactly, and each message
    // carries its deliveryId attribute
    let received = q.receive_exactly(25, Duration::from_secs(20)).await;
    let mut seen = HashSet::new();
    for r in &received {
        let parsed = QueueTask::from_json(r.body.as_deref().unwrap()).expect("body parses");
        let d = parsed.delivery();
        let original = tasks
            .iter()
            .find(|t| t.delivery_id == d.delivery_id)
            .expect("a task we enqueued");
        assert_eq!(d, original);
        assert_eq!(
            r.message_attributes["deliveryId"].string_value.as_deref(),
            Some(d.delivery_id.as_str())
        );
        assert!(!r.body.as_deref().unwrap().contains("secret"));
        seen.insert(d.delivery_id.clone());
    }
    assert_eq!(seen.len(), 25, "each task once");
}

#[tokio::test]
async fn a_message_over_the_sqs_limit_is_reported_failed_and_the_others_are_queued() {
    // GIVEN two small tasks and one whose message is over 256 KiB (the core refuses these before
    // enqueueing; the adapter must still report rather than lose or hide it)
    let q = Queues::create().await;
    let small = [task(1, "{}".into()), task(2, "{}".into())];
    let big = task(3, "x".repeat(MAX_MESSAGE_BYTES));
    let tasks = vec![small[0].clone(), big.clone(), small[1].clone()];

    // WHEN enqueued
    let started = Instant::now();
    let err = q
        .queue
        .enqueue(&tasks)
        .await
        .expect_err("the big one fails");

    // THEN exactly the big one is reported, without waiting for the publish budget (refused,
    // not retried until time runs out; the classification itself is unit-tested in
    // webhooks_aws::sqs), and the others are queued. The bound is loose on purpose: the fan-out
    // tests of this binary keep both cores busy while this one runs.
    assert_eq!(err.failed, vec![big.delivery_id.clone()]);
    assert!(!err.reason.is_empty());
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    let received = q.receive_exactly(2, Duration::from_secs(10)).await;
    let ids: HashSet<String> = received
        .iter()
        .map(|r| {
            QueueTask::from_json(r.body.as_deref().unwrap())
                .unwrap()
                .delivery()
                .delivery_id
                .to_string()
        })
        .collect();
    assert_eq!(
        ids,
        small.iter().map(|t| t.delivery_id.to_string()).collect()
    );
}

#[tokio::test]
async fn the_worker_changes_visibility_and_dead_letters_with_attributes() {
    // GIVEN one received message
    let q = Queues::create().await;
    q.queue
        .enqueue(&[task(1, "{}".into())])
        .await
        .expect("enqueue");
    let r = q
        .receive_exactly(1, Duration::from_secs(10))
        .await
        .remove(0);

    // WHEN its visibility is set to 1 s
    q.worker
        .change_visibility(
            Lane::Main,
            r.receipt_handle.as_deref().unwrap(),
            Duration::from_secs(1),
        )
        .await
        .expect("change visibility");
    // THEN it is invisible now and visible again about a second later (not after the queue's
    // 360 s)
    let changed = Instant::now();
    assert!(q.receive_records(1, 0).await.is_empty(), "invisible now");
    let again = poll_until(
        "the message to be visible again",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || async { q.receive_records(1, 0).await.pop() },
    )
    .await;
    assert!(
        changed.elapsed() >= Duration::from_millis(800),
        "{:?}",
        changed.elapsed()
    );
    assert_eq!(again.attributes["ApproximateReceiveCount"], "2");

    // WHEN it is sent to the dead-letter queue with a long error
    let long_error = "é".repeat(2_000);
    q.worker
        .send_to_dead_letter(r.body.as_deref().unwrap(), &long_error, 4, Some("abc"))
        .await
        .expect("dead letter");
    // THEN the DLQ holds the body with its error (cut to 1 KiB), attempts and delivery id
    let dead = q
        .receive_raw(&q.dlq_url, 1, 1)
        .await
        .pop()
        .expect("in the DLQ");
    assert_eq!(dead.body, r.body);
    let attrs = dead.message_attributes.unwrap_or_default();
    let error = attrs["error"].string_value.as_deref().unwrap();
    assert!(
        error.len() <= 1024 && error.chars().all(|c| c == 'é'),
        "{}",
        error.len()
    );
    assert_eq!(attrs["attempts"].string_value.as_deref(), Some("4"));
    assert_eq!(attrs["attempts"].data_type, "Number");
    assert_eq!(attrs["deliveryId"].string_value.as_deref(), Some("abc"));

    // AND a stale receipt handle is refused, not retried
    let err = q
        .worker
        .change_visibility(Lane::Main, "not-a-receipt-handle", Duration::from_secs(1))
        .await
        .expect_err("unknown receipt handle");
    assert!(!err.is_retryable(), "{err}");
}
