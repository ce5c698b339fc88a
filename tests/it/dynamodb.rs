//! `DynamoDbSubscriptionStore` against DynamoDB in moto, each test on its own table built from
//! `template.yaml`; and a publish (SQS in moto) past a corrupt webhook item.

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::types::AttributeValue;
use webhooks_aws::dynamodb::item::WebhookItem;
use webhooks_aws::dynamodb::{BY_BUCKET_INDEX, BY_OWNER_INDEX, FAN_OUT_ATTRIBUTES};
use webhooks_aws::{DynamoDbConfig, DynamoDbSubscriptionStore};
use webhooks_core::conformance::{run_all, sample_webhook};
use webhooks_core::headers::CustomHeaders;
use webhooks_core::ports::{ListQuery, StoreError, SubscriptionStore};
use webhooks_core::webhook::{PreviousSecret, Secret, WebhookPatch};
use webhooks_core::{BucketId, OwnerId, Timestamp, WebhookId};

use crate::helpers::dynamo::{WebhooksTable, sdk_config_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_store_meets_the_subscription_store_contract() {
    // GIVEN a store on a fresh table built from template.yaml
    let table = WebhooksTable::create().await;
    // WHEN / THEN every check of the core's store contract passes
    run_all(Arc::new(table.store)).await;
}

#[tokio::test]
async fn owner_list_filtered_by_bucket_finds_matches_spread_over_many_pages() {
    // GIVEN an owner with 5 webhooks in bucket B, interleaved (by creation time, so by id) with
    // 30 webhooks of other owners in B and 30 of the same owner in other buckets, the newest 10
    // of B being strangers', so the first DynamoDB pages hold no match at all
    let table = WebhooksTable::create().await;
    let store = &table.store;
    let owner = OwnerId::parse("owner-of-many-pages").unwrap();
    let bucket = BucketId::generate(1_700_100_000);
    let mut mine_in_bucket = Vec::new();
    let mut t = 1_700_100_000;
    for i in 0..40 {
        t += 1;
        if i % 6 == 0 && mine_in_bucket.len() < 5 && i < 30 {
            let w = sample_webhook(&owner, &bucket, t);
            store.create(&w).await.expect("create match");
            mine_in_bucket.push(w.id);
        } else {
            let stranger = OwnerId::parse(&format!("stranger-{i}")).unwrap();
            store
                .create(&sample_webhook(&stranger, &bucket, t))
                .await
                .expect("create stranger's");
        }
        t += 1;
        let elsewhere = BucketId::generate(t);
        if i < 30 {
            store
                .create(&sample_webhook(&owner, &elsewhere, t))
                .await
                .expect("create elsewhere");
        }
    }
    assert_eq!(mine_in_bucket.len(), 5);
    mine_in_bucket.reverse(); // newest first

    // WHEN the owner lists bucket B two at a time (each query page reads only 3 items)
    let mut seen = Vec::new();
    let mut after: Option<WebhookId> = None;
    let mut pages = 0;
    loop {
        let q = ListQuery {
            owner: owner.clone(),
            bucket: Some(bucket.clone()),
            after,
            limit: 2,
        };
        let page = store.list(&q).await.expect("list");
        pages += 1;
        assert!(
            page.items.len() <= 2,
            "page over the limit: {}",
            page.items.len()
        );
        assert!(
            page.items
                .iter()
                .all(|w| w.owner_id == owner && w.bucket_id == bucket)
        );
        seen.extend(page.items.into_iter().map(|w| w.id));
        after = page.next_after;
        if after.is_none() {
            break;
        }
        assert!(pages < 10, "pagination does not end");
    }

    // THEN exactly the owner's webhooks of B come back, newest first, each once, in full pages
    assert_eq!(seen, mine_in_bucket);
    assert_eq!(pages, 3, "2 + 2 + 1");
    // AND one large page holds them all, with no cursor
    let q = ListQuery {
        owner: owner.clone(),
        bucket: Some(bucket.clone()),
        after: None,
        limit: 100,
    };
    let page = store.list(&q).await.expect("list all");
    assert_eq!(
        page.items.into_iter().map(|w| w.id).collect::<Vec<_>>(),
        mine_in_bucket
    );
    assert_eq!(page.next_after, None);
    // AND the unfiltered list has all 35 of the owner's
    let q = ListQuery {
        owner,
        bucket: None,
        after: None,
        limit: 100,
    };
    assert_eq!(store.list(&q).await.expect("list owner").items.len(), 35);
}

#[tokio::test]
async fn lists_read_ids_from_the_narrow_indexes_then_the_webhooks_and_the_fan_out_reads_its_index_alone()
 {
    // GIVEN 60 webhooks of one owner in one bucket (more than one BatchGetItem's 50), one with
    // a format, a filter, a header and a previous secret, some with outcomes counted
    let table = WebhooksTable::create().await;
    let store = &table.store;
    let owner = OwnerId::parse("owner-of-sixty").unwrap();
    let bucket = BucketId::generate(1_700_300_000);
    let mut all = Vec::new();
    for i in 0..60 {
        let mut w = sample_webhook(&owner, &bucket, 1_700_300_000 + i);
        if i == 17 {
            w.format = webhooks_core::format::Format::Slack;
            w.filter = Some(
                webhooks_core::filter::Filter::parse(
                    serde_json::json!({"data.value": {"$gt": 30}}),
                )
                .unwrap(),
            );
            w.headers =
                CustomHeaders::parse([("X-Api-Key".to_owned(), "key-17".to_owned())]).unwrap();
            w.previous_secret = Some(PreviousSecret {
                secret: Secret::new("whsec_old".into()),
                expires_at: Timestamp::from_unix(1_900_000_000),
            });
        }
        store.create(&w).await.expect("create");
        all.push(w);
    }
    for w in all.iter().step_by(7) {
        store
            .record_outcome(
                &w.id,
                webhooks_core::webhook::DeliveryStatus::Success,
                Timestamp::from_unix(1_700_400_000),
            )
            .await
            .expect("outcome");
    }
    let mut newest_first = Vec::new();
    for w in all.iter().rev() {
        newest_first.push(store.get(&w.id).await.expect("get").expect("exists"));
    }

    // WHEN the owner lists them in one page of 100, and in pages of 55
    let list = |after: Option<WebhookId>, limit: usize| {
        let q = ListQuery {
            owner: owner.clone(),
            bucket: None,
            after,
            limit,
        };
        async move { store.list(&q).await.expect("list") }
    };
    let whole = list(None, 100).await;
    let first = list(None, 55).await;
    let rest = list(first.next_after.clone(), 55).await;

    // THEN each page is the webhooks as `get` answers them (stats included), newest first
    assert_eq!(whole.items, newest_first);
    assert_eq!(whole.next_after, None);
    assert_eq!(first.items, newest_first[..55]);
    assert_eq!(first.next_after, Some(newest_first[54].id.clone()));
    assert_eq!(rest.items, newest_first[55..]);
    assert_eq!(rest.next_after, None);
    assert!(whole.items.iter().any(|w| w.stats.total_deliveries == 1));
    // AND the fan-out answers every subscriber, oldest first, as the whole webhook makes it
    // (format and filter included) from the index alone
    let found = store
        .list_for_bucket_event(&bucket, webhooks_core::EventType::AlertTriggered)
        .await
        .expect("fan-out");
    let want: Vec<_> = all.iter().map(|w| w.subscriber()).collect();
    assert_eq!(found.webhooks, want);
    // AND the indexes hold nothing but their keys and the fan-out's attributes
    for (index, allowed) in [
        (BY_OWNER_INDEX, vec!["id", "ownerId"]),
        (BY_BUCKET_INDEX, {
            let mut a = vec!["id", "bucketId"];
            a.extend(FAN_OUT_ATTRIBUTES);
            a
        }),
    ] {
        let out = table
            .client
            .scan()
            .table_name(&table.name)
            .index_name(index)
            .send()
            .await
            .expect("scan");
        let items = out.items.unwrap_or_default();
        assert_eq!(items.len(), 60, "{index}");
        for item in items {
            for name in item.keys() {
                assert!(allowed.contains(&name.as_str()), "{index} holds {name}");
            }
        }
    }
}

#[tokio::test]
async fn the_fan_out_cache_shares_a_query_for_its_ttl_and_forgets_it_on_its_own_writes() {
    // GIVEN an API instance whose store caches fan-outs for 10 minutes, another instance on the
    // same table without a cache, and a webhook created through the first
    let table = WebhooksTable::create().await;
    let other = table.store.clone();
    let cached = table
        .store
        .clone()
        .with_fan_out_cache(Duration::from_secs(600));
    let owner = OwnerId::parse("owner-cached").unwrap();
    let bucket = BucketId::generate(1_700_500_000);
    let hook = |i: i64| sample_webhook(&owner, &bucket, 1_700_500_000 + i);
    let ids = |store: &DynamoDbSubscriptionStore| {
        let (store, bucket) = (store.clone(), bucket.clone());
        async move {
            store
                .list_for_bucket_event(&bucket, webhooks_core::EventType::AlertTriggered)
                .await
                .expect("fan-out")
                .webhooks
                .into_iter()
                .map(|s| s.id)
                .collect::<Vec<_>>()
        }
    };
    let (a, b, c, d) = (hook(1), hook(2), hook(3), hook(4));
    cached.create(&a).await.expect("create a");
    assert_eq!(ids(&cached).await, vec![a.id.clone()]);

    // WHEN the other instance creates a webhook THEN the cached answer stands for its TTL
    other.create(&b).await.expect("create b");
    assert_eq!(
        ids(&cached).await,
        vec![a.id.clone()],
        "served from the cache"
    );
    assert_eq!(ids(&other).await, [a.id.clone(), b.id.clone()]);
    // WHEN the cached instance writes (create, update, delete) THEN its next fan-out reads again
    cached.create(&c).await.expect("create c");
    assert_eq!(
        ids(&cached).await,
        [a.id.clone(), b.id.clone(), c.id.clone()]
    );
    let off = WebhookPatch {
        active: Some(false),
        ..Default::default()
    };
    let now = Timestamp::from_unix(1_700_500_100);
    cached
        .update(&owner, &a.id, &off, now)
        .await
        .expect("update");
    assert_eq!(ids(&cached).await, [b.id.clone(), c.id.clone()]);
    cached.delete(&owner, &b.id).await.expect("delete");
    assert_eq!(ids(&cached).await, vec![c.id.clone()]);
    // AND with a short TTL another instance's write is seen once it has passed
    let short = table
        .store
        .clone()
        .with_fan_out_cache(Duration::from_millis(200));
    assert_eq!(ids(&short).await, vec![c.id.clone()]);
    other.create(&d).await.expect("create d");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(ids(&short).await, [c.id.clone(), d.id.clone()]);
}

#[tokio::test]
async fn a_store_pointed_at_a_closed_port_answers_unavailable_quickly() {
    // GIVEN a store whose endpoint is a port nothing listens on, with retries off and short
    // timeouts (no moto needed)
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let sdk = sdk_config_for(&format!("http://127.0.0.1:{port}"))
        .to_builder()
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(1))
                .operation_timeout(Duration::from_secs(3))
                .build(),
        )
        .build();
    let store = DynamoDbSubscriptionStore::from_config(
        &sdk,
        &DynamoDbConfig {
            table_name: "nowhere".into(),
            secrets_key_arn: "arn:aws:kms:us-east-1:123456789012:key/nowhere".into(),
            owner_index: None,
        },
    );
    let owner = OwnerId::parse("user-unreachable").unwrap();
    let mut w = sample_webhook(&owner, &BucketId::generate(1_700_000_000), 1_700_000_000);
    w.secret = Secret::new("whsec_never-in-an-error-message".into());

    // WHEN reading and writing
    let started = Instant::now();
    let read = store.get(&w.id).await.expect_err("get cannot succeed");
    let write = store.create(&w).await.expect_err("create cannot succeed");

    // THEN both fail fast as Unavailable (retryable), and no message carries the secret
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    for err in [read, write] {
        assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
        assert!(err.is_retryable());
        assert!(
            !err.to_string().contains("never-in-an-error-message"),
            "{err}"
        );
    }
}

/// Writes `item` with the raw SDK, past the store's encoder.
async fn put_raw(table: &WebhooksTable, item: HashMap<String, AttributeValue>) {
    table
        .client
        .put_item()
        .table_name(&table.name)
        .set_item(Some(item))
        .send()
        .await
        .expect("raw put");
}

#[tokio::test]
async fn an_item_with_a_bad_events_value_is_reported_corrupt_by_get() {
    // GIVEN two items written behind the store's back: one whose `events` is a string instead of
    // a list, one whose `events` names an unknown event
    let table = WebhooksTable::create().await;
    let owner = OwnerId::parse("user-corrupt").unwrap();
    let bucket = BucketId::generate(1_700_200_000);
    let mut ids = Vec::new();
    let bad_events = [
        AttributeValue::S("alert.triggered".into()),
        AttributeValue::L(vec![AttributeValue::S("alert.fired".into())]),
    ];
    for (i, events) in bad_events.into_iter().enumerate() {
        let w = sample_webhook(&owner, &bucket, 1_700_200_000 + i as i64);
        let mut item: HashMap<String, AttributeValue> =
            serde_dynamo::to_item(WebhookItem::from(&w)).expect("encode");
        item.insert("events".into(), events);
        put_raw(&table, item).await;
        ids.push(w.id);
    }

    for id in &ids {
        // WHEN the store reads it
        let err = table
            .store
            .get(id)
            .await
            .expect_err("corrupt item must not decode");
        // THEN it is Corrupt, names the webhook, and never shows the secret
        assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
        assert!(!err.is_retryable());
        let msg = err.to_string();
        assert!(msg.contains(id.as_str()), "{msg}");
        assert!(!msg.contains("your_webhook_secret"), "{msg}");
    }
}

/// Every attribute value of every item of `table` (a Scan, as someone with read access to the
/// table or a backup of it would see them), and of both indexes (Scan of each).
async fn everything_in(table: &WebhooksTable) -> String {
    let mut all = String::new();
    for index in [None, Some(BY_OWNER_INDEX), Some(BY_BUCKET_INDEX)] {
        let out = table
            .client
            .scan()
            .table_name(&table.name)
            .set_index_name(index.map(str::to_owned))
            .send()
            .await
            .expect("scan");
        for item in out.items.unwrap_or_default() {
            all.push_str(&format!("{item:?}\n"));
        }
    }
    all
}

#[tokio::test]
async fn secrets_and_header_values_are_stored_sealed_in_the_table_and_both_indexes() {
    // GIVEN a webhook with a secret and a custom header, then rotated (a previous secret)
    let table = WebhooksTable::create().await;
    let me = OwnerId::parse("user-sealed").unwrap();
    let mut w = sample_webhook(&me, &BucketId::generate(1_700_000_000), 1_700_000_000);
    w.secret = Secret::new("whsec_Y3VycmVudC1zZWNyZXQtYnl0ZXMtMTIzNDU2".into());
    w.headers = CustomHeaders::parse([(
        "X-Api-Key".to_owned(),
        "header-value-0123456789abcdef".to_owned(),
    )])
    .unwrap();
    table.store.create(&w).await.expect("create");
    let rotated = WebhookPatch {
        secret: Some(Secret::new(
            "whsec_bmV3LXNlY3JldC1ieXRlcy0xMjM0NTY3OA==".into(),
        )),
        previous_secret: Some(Some(PreviousSecret {
            secret: w.secret.clone(),
            expires_at: Timestamp::from_unix(1_900_000_000),
        })),
        headers: Some(
            CustomHeaders::parse([("X-Other".to_owned(), "second-header-value-42".to_owned())])
                .unwrap(),
        ),
        ..Default::default()
    };
    table
        .store
        .update(&me, &w.id, &rotated, Timestamp::from_unix(1_700_000_100))
        .await
        .expect("rotate");
    // WHEN the table and its indexes are scanned
    let raw = everything_in(&table).await;
    // THEN no secret and no header value is anywhere, only sealed values
    for needle in [
        "Y3VycmVudC1zZWNyZXQ",
        "bmV3LXNlY3JldC1ieXRlcy",
        "header-value-0123456789abcdef",
        "second-header-value-42",
    ] {
        assert!(!raw.contains(needle), "{needle} is stored in clear");
    }
    // (sealed in the table's item only: the indexes hold no secret and no header at all)
    assert_eq!(raw.matches("sealed:v1:").count(), 3, "{raw}");
    // AND the store opens them (what signing and sending use)
    let back = table.store.get_for_delivery(&w.id).await.unwrap().unwrap();
    assert_eq!(
        back.secret.expose(),
        "whsec_bmV3LXNlY3JldC1ieXRlcy0xMjM0NTY3OA=="
    );
    assert_eq!(back.previous_secret.unwrap().secret, w.secret);
    assert_eq!(back.headers, rotated.headers.unwrap());
}

#[tokio::test]
async fn a_legacy_plaintext_item_still_reads_and_is_sealed_by_its_next_write() {
    // GIVEN an item written before sealing existed (secret and headers in clear)
    let table = WebhooksTable::create().await;
    let me = OwnerId::parse("user-legacy").unwrap();
    let mut w = sample_webhook(&me, &BucketId::generate(1_700_000_000), 1_700_000_000);
    w.headers =
        CustomHeaders::parse([("X-Token".to_owned(), "legacy-header-value".to_owned())]).unwrap();
    let item: HashMap<String, AttributeValue> =
        serde_dynamo::to_item(WebhookItem::from(&w)).unwrap();
    table
        .client
        .put_item()
        .table_name(&table.name)
        .set_item(Some(item))
        .send()
        .await
        .unwrap();
    // WHEN it is read THEN it reads as it is (the fan-out and a delivery would use it)
    let legacy = table.store.get_for_delivery(&w.id).await.unwrap().unwrap();
    assert_eq!(legacy.secret, w.secret);
    assert_eq!(legacy.headers, w.headers);
    // WHEN an unrelated field is changed
    let patch = WebhookPatch {
        description: Some(Some("touched".into())),
        ..Default::default()
    };
    let updated = table
        .store
        .update(&me, &w.id, &patch, Timestamp::from_unix(1_700_000_200))
        .await
        .unwrap();
    assert_eq!(updated.secret, w.secret);
    // THEN the stored secret and headers are sealed, and still read back the same
    let raw = everything_in(&table).await;
    assert!(!raw.contains("your_webhook_secret"), "{raw}");
    assert!(!raw.contains("legacy-header-value"), "{raw}");
    let after = table.store.get(&w.id).await.unwrap().unwrap();
    assert_eq!((after.secret, after.headers), (w.secret, w.headers));
}

#[tokio::test]
async fn an_item_copied_under_another_id_does_not_open_and_says_why() {
    // GIVEN webhook A stored sealed, and a copy of its item put under B's id
    let table = WebhooksTable::create().await;
    let me = OwnerId::parse("user-copy").unwrap();
    let a = sample_webhook(&me, &BucketId::generate(1_700_000_000), 1_700_000_000);
    table.store.create(&a).await.unwrap();
    let mut copy = table
        .client
        .get_item()
        .table_name(&table.name)
        .key("id", AttributeValue::S(a.id.to_string()))
        .send()
        .await
        .unwrap()
        .item
        .expect("A's item");
    let b = WebhookId::generate(1_700_000_001);
    copy.insert("id".into(), AttributeValue::S(b.to_string()));
    table
        .client
        .put_item()
        .table_name(&table.name)
        .set_item(Some(copy))
        .send()
        .await
        .unwrap();
    // WHEN B is read THEN Corrupt, naming B and the attribute, no panic, no value
    let err = table.store.get_for_delivery(&b).await.expect_err("copied");
    let msg = err.to_string();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
    assert!(
        msg.contains(b.as_str()) && msg.contains("`secret`"),
        "{msg}"
    );
    assert!(msg.contains("does not open"), "{msg}");
    // AND A still opens
    assert_eq!(
        table.store.get(&a.id).await.unwrap().unwrap().secret,
        a.secret
    );
}

#[tokio::test]
async fn the_delivery_cache_shares_one_read_per_webhook_for_its_ttl_and_get_stays_fresh() {
    // GIVEN the delivery function's store: webhook reads for deliveries cached for 1 s
    let table = WebhooksTable::create().await;
    let cached = table
        .store
        .clone()
        .with_delivery_cache(Duration::from_secs(1));
    let owner = OwnerId::parse("user-cache").unwrap();
    let w = sample_webhook(&owner, &BucketId::generate(1_740_000_000), 1_740_000_000);
    table.store.create(&w).await.expect("create");
    // WHEN ten deliveries read it at once, then it is disabled
    let mut reads = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let (store, id) = (cached.clone(), w.id.clone());
        reads.spawn(async move { store.get_for_delivery(&id).await });
    }
    while let Some(read) = reads.join_next().await {
        let got = read.expect("task").expect("read").expect("webhook");
        assert!(got.active);
    }
    let off = WebhookPatch {
        active: Some(false),
        ..Default::default()
    };
    table
        .store
        .update(&owner, &w.id, &off, Timestamp::from_unix(1_740_000_100))
        .await
        .expect("disable");
    // THEN deliveries see the read they shared until it is 1 s old; `get` sees the change now
    let soon = cached
        .get_for_delivery(&w.id)
        .await
        .expect("read")
        .expect("webhook");
    assert!(soon.active, "served from the shared read");
    assert!(
        !cached
            .get(&w.id)
            .await
            .expect("get")
            .expect("webhook")
            .active
    );
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let later = cached
        .get_for_delivery(&w.id)
        .await
        .expect("read")
        .expect("webhook");
    assert!(!later.active, "read again after the ttl");
    // AND a deleted webhook is gone for deliveries after the ttl too
    table.store.delete(&owner, &w.id).await.expect("delete");
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert!(
        cached
            .get_for_delivery(&w.id)
            .await
            .expect("read")
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_webhook_item_is_skipped_at_publish_and_the_others_are_queued() {
    // GIVEN a bucket with three good webhooks and, between them, one item written behind the
    // store's back whose `events` is not a list of events (it still matches the fan-out query)
    let world = crate::helpers::world::World::create(Duration::from_secs(5)).await;
    let mut good = Vec::new();
    for _ in 0..3 {
        let w = world
            .webhook(
                "https://example.com/hook",
                webhooks_core::webhook::RetryConfig::default(),
            )
            .await;
        good.push(w.id.to_string());
    }
    let mut bad = sample_webhook(&world.owner, &world.bucket, 1_760_000_500);
    bad.events = vec![webhooks_core::EventType::AlertTriggered];
    let mut item: HashMap<String, AttributeValue> =
        serde_dynamo::to_item(WebhookItem::from(&bad)).expect("encode");
    item.insert(
        "events".into(),
        AttributeValue::L(vec![
            AttributeValue::S("alert.triggered".into()),
            AttributeValue::N("7".into()),
        ]),
    );
    crate::helpers::dynamo::moto_client()
        .put_item()
        .table_name(world.store.table_name())
        .set_item(Some(item))
        .send()
        .await
        .expect("raw put");
    let service = webhooks_core::delivery_service::DeliveryService::new(
        world.store.clone(),
        world.log.clone(),
        Arc::new(world.queues.queue.clone()),
        Arc::new(webhooks_core::time::SystemClock),
    )
    .with_budget(Duration::from_secs(60));
    let caller = webhooks_core::webhook_service::Caller {
        owner: world.owner.clone(),
        buckets: None,
    };
    let skipped_before = webhooks_core::delivery_service::unreadable_webhooks_skipped();

    // WHEN an alert is published to the bucket
    let event = webhooks_core::delivery_service::ValidEvent {
        bucket_id: world.bucket.clone(),
        event: webhooks_core::EventType::AlertTriggered,
        data: serde_json::json!({"alertId": "507f1f77bcf86cd799439013"}),
        timestamp: Timestamp::from_unix(1_760_000_600),
    };
    let queued = service
        .publish(&caller, vec![event])
        .await
        .expect("the publish succeeds for the readable webhooks");

    // THEN the three good webhooks get a delivery each, queued in SQS, the corrupt one none
    let mut got: Vec<String> = queued.iter().map(|q| q.webhook_id.to_string()).collect();
    got.sort();
    good.sort();
    assert_eq!(got, good);
    assert_eq!(world.queues.counts(&world.queues.url).await, (3, 0));
    // AND the skip is counted
    assert!(webhooks_core::delivery_service::unreadable_webhooks_skipped() > skipped_before);
    // AND the store's fan-out names the item it skipped
    let found = world
        .store
        .list_for_bucket_event(&world.bucket, webhooks_core::EventType::AlertTriggered)
        .await
        .expect("fan-out");
    assert_eq!(found.webhooks.len(), 3);
    assert_eq!(found.unreadable.len(), 1);
    assert_eq!(found.unreadable[0].id, bad.id.as_str());
    assert!(!found.unreadable[0].problem.contains("your_webhook_secret"));
}
