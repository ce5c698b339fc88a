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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coalescing_delivery_log_meets_the_contract() {
    // GIVEN the delivery function's log: finishes of one webhook coalesced into one transaction
    let tables = DeliveryTables::create().await;
    let log = tables.log.clone().with_coalescing(
        std::time::Duration::from_millis(5),
        std::time::Duration::from_secs(60),
    );
    // WHEN / THEN the same contract holds
    run_all_sequential(Arc::new(tables.webhooks.store.clone()), Arc::new(log)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_finishes_counts_each_delivery_once_with_one_stats_write() {
    // GIVEN a webhook and a coalescing log (a window wide enough for every call below)
    let tables = DeliveryTables::create().await;
    let store = &tables.webhooks.store;
    let owner = OwnerId::parse("user-batch").unwrap();
    let w = sample_webhook(&owner, &BucketId::generate(1_740_000_000), 1_740_000_000);
    store.create(&w).await.expect("create");
    let log = Arc::new(tables.log.clone().with_coalescing(
        std::time::Duration::from_millis(300),
        std::time::Duration::from_secs(60),
    ));
    let attempt = |i: u32| AttemptRecord {
        webhook_id: w.id.clone(),
        delivery_id: DeliveryId::generate(1_740_000_100 + i64::from(i)),
        generation: 0,
        attempt: 1,
        event: EventType::DataReceived,
        status: AttemptStatus::Success,
        status_code: Some(200),
        duration_ms: 12,
        error: None,
        response_body: Some("ok".into()),
        at: Timestamp::from_unix(1_740_000_200 + i64::from(i)),
    };
    let delivered: Vec<AttemptRecord> = (0..30).map(attempt).collect();
    let failed: Vec<DeliveryId> = (0..8)
        .map(|i| DeliveryId::generate(1_740_001_000 + i))
        .collect();

    // WHEN 30 successes, 8 failures and 5 duplicates of successes finish at once
    let mut calls = tokio::task::JoinSet::new();
    for a in delivered.iter().chain(delivered[..5].iter()) {
        let (log, a) = (log.clone(), a.clone());
        calls.spawn(async move { log.finish_delivered(&a).await });
    }
    for d in &failed {
        let (log, w, d) = (log.clone(), w.id.clone(), d.clone());
        calls.spawn(async move {
            log.finish(
                &w,
                &d,
                0,
                DeliveryStatus::Failed,
                Timestamp::from_unix(1_740_000_500),
            )
            .await
        });
    }
    let mut counted = 0;
    while let Some(r) = calls.join_next().await {
        if r.expect("task").expect("finish") {
            counted += 1;
        }
    }

    // THEN each delivery counted once: 38 calls answered true, the 5 duplicates false
    assert_eq!(counted, 38);
    let stats = store.get(&w.id).await.expect("get").expect("webhook").stats;
    assert_eq!(
        (
            stats.total_deliveries,
            stats.successful_deliveries,
            stats.failed_deliveries
        ),
        (38, 30, 8)
    );
    // AND the latest outcome is the last delivery; a failure run starts at the failures
    let got = store.get(&w.id).await.expect("get").expect("webhook");
    assert_eq!(
        got.last_delivery_at,
        Some(Timestamp::from_unix(1_740_000_500))
    );
    // AND each success's attempt is its marker: one attempt per delivery in its history,
    // failures' markers listed as no attempt
    for a in &delivered {
        let recorded = log
            .attempts_of(&w.id, &a.delivery_id, 0)
            .await
            .expect("attempts");
        assert_eq!(recorded.len(), 1, "{}", a.delivery_id);
        assert_eq!(recorded[0].status, AttemptStatus::Success);
        assert_eq!(recorded[0].response_body.as_deref(), Some("ok"));
    }
    let page = log
        .attempts_page(
            &w.id,
            &webhooks_core::ports::AttemptQuery {
                limit: 100,
                ..Default::default()
            },
        )
        .await
        .expect("page");
    assert_eq!(page.items.len(), 30);
    let raw = tables
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
    let sk = |i: &std::collections::HashMap<String, AttributeValue>| match i.get("sk") {
        Some(AttributeValue::S(s)) => s.clone(),
        _ => String::new(),
    };
    let (hours, markers): (Vec<_>, Vec<_>) = raw.iter().partition(|i| sk(i).starts_with("H#"));
    assert_eq!(markers.len(), 38, "one item per delivery: the marker");
    assert_eq!(
        markers.iter().filter(|i| i.contains_key("attempt")).count(),
        30
    );
    // AND one hourly aggregate (every finish above is in one hour) counts each delivery once,
    // the 30 successes' 12 ms in their latency bucket
    assert_eq!(hours.len(), 1, "{hours:?}");
    let n = |a: &str| hours[0].get(a).cloned();
    let number = |v: u64| Some(AttributeValue::N(v.to_string()));
    let bucket = webhooks_core::hourly::LatencyHistogram::bucket_of(12);
    assert_eq!(
        (n("delivered"), n("failed"), n(&format!("l{bucket}"))),
        (number(30), number(8), number(30))
    );
    let hour = webhooks_core::hourly::hour_of(Timestamp::from_unix(1_740_000_200));
    assert_eq!(
        n("expiresAt"),
        number(webhooks_core::hourly::expires_at(hour) as u64),
        "kept 48 h after its hour"
    );
    let read = log.hourly_stats(&w.id, hour..=hour).await.expect("hourly");
    assert_eq!((read[0].delivered, read[0].failed), (30, 8));

    // AND finishing them again, coalesced or not, counts nothing
    assert!(!log.finish_delivered(&delivered[7]).await.expect("again"));
    assert!(
        !tables
            .log
            .finish(
                &w.id,
                &failed[0],
                0,
                DeliveryStatus::Failed,
                Timestamp::from_unix(9)
            )
            .await
            .expect("again")
    );
    let stats = store.get(&w.id).await.expect("get").expect("webhook").stats;
    assert_eq!(stats.total_deliveries, 38);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invocations_finishes_are_written_together_once_every_record_has_finished_or_ended() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    // GIVEN a webhook, the delivery function's coalescing log with a linger far longer than
    // this test, and an invocation of five records
    let tables = DeliveryTables::create().await;
    let store = &tables.webhooks.store;
    let owner = OwnerId::parse("user-scope").unwrap();
    let w = sample_webhook(&owner, &BucketId::generate(1_740_000_000), 1_740_000_000);
    store.create(&w).await.expect("create");
    let log = Arc::new(
        tables
            .log
            .clone()
            .with_coalescing(Duration::from_secs(600), Duration::from_secs(60)),
    );
    let scope = log.finish_scope().expect("a coalescing log has a scope");
    let mut records = scope.begin(5);
    let still_sending = records.pop().expect("five records");

    // WHEN four records finish 200 ms apart (their receivers answered apart) while the fifth
    // is still sending
    let success = |i: i64| AttemptRecord {
        webhook_id: w.id.clone(),
        delivery_id: DeliveryId::generate(1_740_000_100 + i),
        generation: 0,
        attempt: 1,
        event: EventType::DataReceived,
        status: AttemptStatus::Success,
        status_code: Some(200),
        duration_ms: 12,
        error: None,
        response_body: Some("ok".into()),
        at: Timestamp::from_unix(1_740_000_200 + i),
    };
    let answered = Arc::new(AtomicUsize::new(0));
    let mut calls = tokio::task::JoinSet::new();
    for (i, record) in records.into_iter().enumerate() {
        let (log, answered) = (log.clone(), answered.clone());
        let a = success(i as i64);
        calls.spawn(async move {
            tokio::time::sleep(Duration::from_millis(200 * i as u64)).await;
            let counted = log.finish_delivered(&a).await;
            answered.fetch_add(1, Ordering::SeqCst);
            drop(record);
            counted
        });
    }
    tokio::time::sleep(Duration::from_millis(1_500)).await;

    // THEN nothing is written while a record of the invocation may still finish
    assert_eq!(answered.load(Ordering::SeqCst), 0);
    let stats = store.get(&w.id).await.expect("get").expect("webhook").stats;
    assert_eq!(stats.total_deliveries, 0);

    // WHEN the fifth record ends without finishing (its attempt failed: a retry)
    drop(still_sending);

    // THEN the four are written at once, not after the linger, each counted once
    let counted = tokio::time::timeout(Duration::from_secs(120), async {
        let mut counted = 0;
        while let Some(r) = calls.join_next().await {
            if r.expect("task").expect("finish") {
                counted += 1;
            }
        }
        counted
    })
    .await
    .expect("written once every record waited, long before the 600 s linger");
    assert_eq!(counted, 4);
    let stats = store.get(&w.id).await.expect("get").expect("webhook").stats;
    assert_eq!(
        (stats.total_deliveries, stats.successful_deliveries),
        (4, 4)
    );

    // AND a later invocation's record that finishes alone is written without waiting for the
    // linger either
    let mut records = scope.begin(1);
    let lone = success(50);
    let counted = tokio::time::timeout(Duration::from_secs(120), log.finish_delivered(&lone))
        .await
        .expect("a lone record is written at once")
        .expect("finish");
    assert!(counted);
    drop(records.pop());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_whose_writer_died_between_markers_and_count_is_counted_once_by_the_next_receipt() {
    use webhooks_aws::dynamodb::delivery_log::{BATCH, FINAL, batch_sk, final_sk};
    // GIVEN a writer that died after writing 2 of its 3 markers and before counting them: its
    // batch record (2 minutes old) names 3 deliveries, 2 markers name the batch
    let tables = DeliveryTables::create().await;
    let store = &tables.webhooks.store;
    let owner = OwnerId::parse("user-crash").unwrap();
    let w = sample_webhook(&owner, &BucketId::generate(1_740_000_000), 1_740_000_000);
    store.create(&w).await.expect("create");
    let client = &tables.webhooks.client;
    let ds: Vec<DeliveryId> = (0..3)
        .map(|i| DeliveryId::generate(1_740_000_100 + i))
        .collect();
    let put_record = |token: &'static str, age_secs: i64| {
        let members = ds
            .iter()
            .map(|d| {
                AttributeValue::M(
                    [
                        ("d".to_owned(), AttributeValue::S(d.to_string())),
                        ("g".to_owned(), AttributeValue::N("0".into())),
                    ]
                    .into(),
                )
            })
            .collect();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs() as i64;
        let at = Timestamp::from_unix(now - age_secs);
        client
            .put_item()
            .table_name(&tables.deliveries_name)
            .item("webhookId", AttributeValue::S(w.id.to_string()))
            .item("sk", AttributeValue::S(batch_sk(token)))
            .item("members", AttributeValue::L(members))
            .item("at", AttributeValue::S(at.to_rfc3339()))
            .send()
    };
    let put_marker = |d: &DeliveryId, token: &'static str| {
        client
            .put_item()
            .table_name(&tables.deliveries_name)
            .item("webhookId", AttributeValue::S(w.id.to_string()))
            .item("sk", AttributeValue::S(final_sk(d, 0)))
            .item(FINAL, AttributeValue::S("success".into()))
            .item("at", AttributeValue::S("2025-02-19T21:20:00Z".into()))
            .item(BATCH, AttributeValue::S(token.into()))
            .send()
    };
    put_record("deadbeefdeadbeef", 120).await.expect("record");
    put_marker(&ds[0], "deadbeefdeadbeef")
        .await
        .expect("marker");
    put_marker(&ds[1], "deadbeefdeadbeef")
        .await
        .expect("marker");
    let log = tables.log.clone().with_coalescing(
        std::time::Duration::from_millis(1),
        std::time::Duration::from_secs(60),
    );
    let at = Timestamp::from_unix(1_740_000_300);

    // WHEN the first delivery's message is received again and finished
    let counted = log
        .finish(&w.id, &ds[0], 0, DeliveryStatus::Success, at)
        .await
        .expect("finish");
    // THEN it was counted before (false), and finishing it counted the batch's two markers
    assert!(!counted);
    let stats = store.get(&w.id).await.expect("get").expect("webhook").stats;
    assert_eq!(
        (stats.total_deliveries, stats.successful_deliveries),
        (2, 2)
    );
    // AND the second one's receipt counts nothing more, the third (never written) counts itself
    assert!(
        !log.finish(&w.id, &ds[1], 0, DeliveryStatus::Success, at)
            .await
            .expect("second")
    );
    assert!(
        log.finish(&w.id, &ds[2], 0, DeliveryStatus::Success, at)
            .await
            .expect("third")
    );
    let stats = store.get(&w.id).await.expect("get").expect("webhook").stats;
    assert_eq!(
        (stats.total_deliveries, stats.successful_deliveries),
        (3, 3)
    );

    // GIVEN a batch record of a writer that may still be running (5 s old)
    put_record("feedfacefeedface", 5).await.expect("record");
    put_marker(&ds[0], "feedfacefeedface")
        .await
        .expect("overwrite marker");
    // WHEN a receipt of one of its deliveries finds the marker
    let err = log
        .finish(&w.id, &ds[0], 0, DeliveryStatus::Success, at)
        .await
        .expect_err("too young to judge");
    // THEN it is not counted yet: the message comes back later (nothing changed)
    assert!(err.is_retryable(), "{err:?}");
    let stats = store.get(&w.id).await.expect("get").expect("webhook").stats;
    assert_eq!(stats.total_deliveries, 3);
}
