//! Operators' alerts on SNS (`webhooks_aws::sns`) against moto: a webhook the service disables is
//! published to the operators' topic once, and what a subscriber (here an SQS queue) receives
//! is the `webhook.disabled` envelope with no secret in it.

use std::sync::Arc;

use webhooks_aws::SnsOperatorAlerts;
use webhooks_core::conformance::sample_webhook;
use webhooks_core::notify::{MemoryNotices, Notifier};
use webhooks_core::ports::SubscriptionStore;
use webhooks_core::ports::memory::{MemoryQueue, MemoryStore};
use webhooks_core::time::FixedClock;
use webhooks_core::webhook::DeliveryStatus;
use webhooks_core::{BucketId, OwnerId, Timestamp};

use crate::helpers::dynamo::sdk_config_for;
use crate::helpers::moto;

#[tokio::test]
async fn a_disabled_webhook_is_published_to_the_operators_topic_once_without_its_secret() {
    // GIVEN an SNS topic with an SQS queue subscribed (raw: the body is what was published)
    let sdk = sdk_config_for(moto::endpoint());
    let (sns, sqs) = (
        aws_sdk_sns::Client::new(&sdk),
        aws_sdk_sqs::Client::new(&sdk),
    );
    let name = format!("ops-{}-{}", std::process::id(), rand_suffix());
    let topic = sns
        .create_topic()
        .name(&name)
        .send()
        .await
        .expect("CreateTopic")
        .topic_arn
        .expect("topic arn");
    let queue_url = sqs
        .create_queue()
        .queue_name(&name)
        .send()
        .await
        .expect("CreateQueue")
        .queue_url
        .expect("queue url");
    let queue_arn = sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("GetQueueAttributes")
        .attributes
        .and_then(|a| {
            a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn)
                .cloned()
        })
        .expect("queue arn");
    sns.subscribe()
        .topic_arn(&topic)
        .protocol("sqs")
        .endpoint(&queue_arn)
        .attributes("RawMessageDelivery", "true")
        .send()
        .await
        .expect("Subscribe");

    // AND a failing webhook, and the delivery function's notifier with the SNS adapter
    let now = Timestamp::from_unix(1_760_000_000);
    let store = Arc::new(MemoryStore::new());
    let mut w = sample_webhook(
        &OwnerId::parse("user-ops").unwrap(),
        &BucketId::generate(now.unix()),
        now.unix() - 600,
    );
    w.failing_since = Some(Timestamp::from_unix(now.unix() - 300));
    store.create(&w).await.expect("create");
    let notifier = Notifier::new(
        Arc::new(MemoryNotices::new()),
        store.clone(),
        Arc::new(MemoryQueue::new()),
        Arc::new(FixedClock::at(now)),
    )
    .with_operators(Arc::new(SnsOperatorAlerts::from_config(&sdk, &topic)));

    // WHEN a delivery's 410 disables it, and a duplicate receipt finishes the same way
    let reason = "receiver answered HTTP 410 Gone".to_owned();
    for _ in 0..2 {
        notifier
            .after_finish(
                &w,
                DeliveryStatus::Failed,
                Some(reason.clone()),
                Some("receiver answered HTTP 410"),
            )
            .await;
    }

    // THEN the subscriber receives one webhook.disabled naming the webhook and the reason
    let receive = |wait: i32| {
        let (sqs, queue_url) = (sqs.clone(), queue_url.clone());
        async move {
            sqs.receive_message()
                .queue_url(&queue_url)
                .max_number_of_messages(10)
                .wait_time_seconds(wait)
                .send()
                .await
                .expect("ReceiveMessage")
                .messages
                .unwrap_or_default()
                .into_iter()
                .filter_map(|m| m.body)
                .collect::<Vec<_>>()
        }
    };
    let mut bodies = Vec::new();
    for _ in 0..30 {
        bodies.extend(receive(1).await);
        if !bodies.is_empty() {
            break;
        }
    }
    // (a second one would have been published with the first: a short look shows none)
    bodies.extend(receive(2).await);
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    let event: serde_json::Value = serde_json::from_str(&bodies[0]).expect("the envelope's JSON");
    assert_eq!(event["event"], "webhook.disabled");
    assert_eq!(event["data"]["webhookId"], w.id.as_str());
    assert_eq!(event["data"]["reason"], reason.as_str());
    assert!(
        !bodies[0].contains(w.secret.expose()),
        "no secret in an operator alert"
    );
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64
}
