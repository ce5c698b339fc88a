//! `DynamoDbDeliveryLog` against DynamoDB in moto, on both tables built from `template.yaml`.

use std::sync::Arc;

use aws_sdk_dynamodb::types::AttributeValue;
use webhooks_core::conformance::delivery_log::run_all_sequential;
use webhooks_core::conformance::sample_webhook;
use webhooks_core::delivery::{AttemptRecord, AttemptStatus};
use webhooks_core::ports::{DeliveryLog, SubscriptionStore};
use webhooks_core::webhook::DeliveryStatus;
use webhooks_core::{BucketId, DeliveryId, EventType, OwnerId, Timestamp};

use crate::helpers::dynamo::DeliveryTables;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_delivery_log_meets_the_delivery_log_contract() {
    // GIVEN a delivery log on fresh webhooks and deliveries tables built from template.yaml
    let tables = DeliveryTables::create().await;
    // WHEN / THEN every check of the core's delivery-log contract passes (racing `finish` calls
    // run one after the other here: moto's TransactWriteItems is not concurrency-safe, see
    // `run_all_sequential`; DynamoDB's is, and the SQLite log runs the racing version)
    run_all_sequential(
        Arc::new(tables.webhooks.store.clone()),
        Arc::new(tables.log),
    )
    .await;
}

#[tokio::test]
async fn attempts_expire_after_30_days_and_finishing_a_deleted_webhook_writes_nothing() {
    // GIVEN a webhook with one recorded attempt
    let tables = DeliveryTables::create().await;
    let store = &tables.webhooks.store;
    let owner = OwnerId::parse("user-ttl").unwrap();
    let w = sample_webhook(&owner, &BucketId::generate(1_740_000_000), 1_740_000_000);
    store.create(&w).await.expect("create");
    let d = DeliveryId::generate(1_740_000_001);
    let at = Timestamp::from_unix(1_740_000_010);
    let attempt = AttemptRecord {
        webhook_id: w.id.clone(),
        delivery_id: d.clone(),
        generation: 0,
        attempt: 1,
        event: EventType::AlertTriggered,
        status: AttemptStatus::Failed,
        status_code: None,
        duration_ms: 2_000,
        error: Some("timed out after 2 s".into()),
        response_body: None,
        at,
    };
    tables.log.record_attempt(&attempt).await.expect("record");

    // WHEN the raw items are read back
    let items = tables
        .webhooks
        .client
        .query()
        .table_name(&tables.deliveries_name)
        .key_condition_expression("webhookId = :w")
        .expression_attribute_values(":w", AttributeValue::S(w.id.to_string()))
        .send()
        .await
        .expect("query")
        .items
        .unwrap_or_default();
    // THEN the attempt carries the TTL attribute the template enables, 30 days after `at`
    assert_eq!(items.len(), 1);
    assert_eq!(
        items[0].get("expiresAt"),
        Some(&AttributeValue::N(
            (1_740_000_010 + 30 * 86_400).to_string()
        ))
    );
    let ttl = tables
        .webhooks
        .client
        .describe_time_to_live()
        .table_name(&tables.deliveries_name)
        .send()
        .await
        .expect("describe ttl")
        .time_to_live_description
        .expect("ttl");
    assert_eq!(ttl.attribute_name(), Some("expiresAt"));

    // WHEN the webhook is deleted and the delivery then finishes
    store.delete(&owner, &w.id).await.expect("delete");
    let counted = tables
        .log
        .finish(&w.id, &d, 0, DeliveryStatus::Failed, at)
        .await
        .expect("finish");
    // THEN nothing is counted and no final marker was written (the transaction was cancelled)
    assert!(!counted);
    assert!(store.get(&w.id).await.expect("get").is_none());
    let markers = tables
        .webhooks
        .client
        .get_item()
        .table_name(&tables.deliveries_name)
        .key("webhookId", AttributeValue::S(w.id.to_string()))
        .key(
            "sk",
            AttributeValue::S(webhooks_aws::dynamodb::delivery_log::final_sk(&d, 0)),
        )
        .consistent_read(true)
        .send()
        .await
        .expect("get marker");
    assert!(
        markers.item.is_none(),
        "no marker for an uncounted delivery"
    );
}
