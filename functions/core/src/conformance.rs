//! The [`SubscriptionStore`] contract as executable checks. Every adapter's tests call
//! [`run_all`] against a real backend (SQLite file, DynamoDB in the emulator), so "same
//! semantics" is something tested, not hoped for. Each check uses fresh owner and bucket ids, so
//! several may share one table.

use std::sync::Arc;

use crate::ports::{ListQuery, MAX_WEBHOOKS_PER_BUCKET, StoreError, SubscriptionStore};
use crate::webhook::{
    DeliveryStats, DeliveryStatus, PreviousSecret, RetryConfig, Secret, Webhook, WebhookPatch,
};
use crate::{BucketId, EventType, OwnerId, Timestamp, WebhookId};

static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn fresh_owner() -> OwnerId {
    let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    OwnerId::parse(&format!("user-{}-{n}", std::process::id())).expect("owner id")
}

fn fresh_bucket() -> BucketId {
    BucketId::generate(1_700_000_000)
}

/// A webhook with every optional field set, created at `t` (unix seconds).
pub fn sample_webhook(owner: &OwnerId, bucket: &BucketId, t: i64) -> Webhook {
    let at = Timestamp::from_unix(t);
    Webhook {
        id: WebhookId::generate(t),
        owner_id: owner.clone(),
        bucket_id: bucket.clone(),
        url: "https://your-server.com/webhook?q=1".into(),
        events: vec![EventType::AlertTriggered, EventType::DataReceived],
        description: Some("Room A — °C alerts".into()),
        active: true,
        retry_config: RetryConfig {
            max_retries: 5,
            backoff_multiplier: 1.5,
            initial_delay_seconds: 7,
        },
        secret: Secret::new("your_webhook_secret".into()),
        previous_secret: None,
        format: crate::format::Format::Json,
        filter: None,
        headers: Default::default(),
        rate_limit: None,
        stats: DeliveryStats::default(),
        last_delivery_at: None,
        last_delivery_status: None,
        failing_since: None,
        disabled_reason: None,
        created_at: at,
        updated_at: at,
    }
}

/// Runs every check; panics with the failing check's message.
pub async fn run_all(store: Arc<dyn SubscriptionStore>) {
    create_then_get_round_trips_every_field(&*store).await;
    create_never_overwrites(&*store).await;
    list_is_newest_first_paginated_and_owner_scoped(&*store).await;
    fan_out_query_returns_active_subscribed_webhooks_of_the_bucket(&*store).await;
    fan_out_and_count_are_bounded_across_owners(&*store).await;
    update_applies_the_patch_for_the_owner_only(&*store).await;
    delete_is_owner_scoped(&*store).await;
    concurrent_outcomes_are_all_counted(store).await;
}

pub async fn create_then_get_round_trips_every_field(store: &dyn SubscriptionStore) {
    let owner = fresh_owner();
    let mut w = sample_webhook(&owner, &fresh_bucket(), 1_700_000_000);
    w.failing_since = Some(Timestamp::from_unix(1_699_999_000));
    w.disabled_reason = Some("receiver answered HTTP 410 Gone".into());
    w.filter = Some(sample_filter());
    w.headers = sample_headers();
    w.rate_limit = Some(50);
    store.create(&w).await.expect("create");
    assert_eq!(
        store.get(&w.id).await.expect("get").as_ref(),
        Some(&w),
        "round trip"
    );

    // Optional fields absent, too.
    w = sample_webhook(&owner, &fresh_bucket(), 1_700_000_001);
    w.description = None;
    w.previous_secret = None;
    w.format = crate::format::Format::Json;
    w.active = false;
    w.events = vec![EventType::BucketUpdated];
    store.create(&w).await.expect("create minimal");
    assert_eq!(
        store.get(&w.id).await.expect("get").as_ref(),
        Some(&w),
        "minimal round trip"
    );

    let missing = WebhookId::generate(1_600_000_000);
    assert!(store.get(&missing).await.expect("get missing").is_none());
}

pub async fn create_never_overwrites(store: &dyn SubscriptionStore) {
    let owner = fresh_owner();
    let w = sample_webhook(&owner, &fresh_bucket(), 1_700_000_100);
    store.create(&w).await.expect("create");
    let mut other = sample_webhook(&fresh_owner(), &fresh_bucket(), 1_700_000_100);
    other.id = w.id.clone();
    other.url = "https://attacker.example/".into();
    let err = store
        .create(&other)
        .await
        .expect_err("second create with the same id");
    assert!(
        matches!(err, StoreError::Conflict(_)),
        "expected Conflict, got {err:?}"
    );
    assert_eq!(
        store.get(&w.id).await.expect("get").as_ref(),
        Some(&w),
        "original unchanged"
    );
}

pub async fn list_is_newest_first_paginated_and_owner_scoped(store: &dyn SubscriptionStore) {
    let (owner, stranger) = (fresh_owner(), fresh_owner());
    let (b1, b2) = (fresh_bucket(), fresh_bucket());
    let mut mine = Vec::new();
    for i in 0..5 {
        let w = sample_webhook(
            &owner,
            if i % 2 == 0 { &b1 } else { &b2 },
            1_700_001_000 + i,
        );
        store.create(&w).await.expect("create");
        mine.push(w);
    }
    store
        .create(&sample_webhook(&stranger, &b1, 1_700_001_010))
        .await
        .expect("create");
    mine.reverse(); // newest first

    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let q = ListQuery {
            owner: owner.clone(),
            bucket: None,
            after: after.clone(),
            limit: 2,
        };
        let page = store.list(&q).await.expect("list");
        assert!(page.items.len() <= 2, "page larger than limit");
        seen.extend(page.items.iter().map(|w| w.id.clone()));
        match page.next_after {
            Some(a) => after = Some(a),
            None => break,
        }
        assert!(seen.len() <= 5, "pagination does not end");
    }
    let want: Vec<WebhookId> = mine.iter().map(|w| w.id.clone()).collect();
    assert_eq!(
        seen, want,
        "all of the owner's webhooks, newest first, each once"
    );

    let q = ListQuery {
        owner: owner.clone(),
        bucket: Some(b1.clone()),
        after: None,
        limit: 10,
    };
    let page = store.list(&q).await.expect("list bucket");
    let want: Vec<WebhookId> = mine
        .iter()
        .filter(|w| w.bucket_id == b1)
        .map(|w| w.id.clone())
        .collect();
    assert_eq!(
        page.items.iter().map(|w| w.id.clone()).collect::<Vec<_>>(),
        want,
        "bucket filter"
    );
    assert_eq!(page.next_after, None);

    let q = ListQuery {
        owner: owner.clone(),
        bucket: Some(b1),
        after: None,
        limit: 1,
    };
    let page = store.list(&q).await.expect("list bucket limit 1");
    assert_eq!(page.items.len(), 1);
    assert_eq!(
        page.next_after.as_ref(),
        Some(&page.items[0].id),
        "more follow"
    );

    let q = ListQuery {
        owner: fresh_owner(),
        bucket: None,
        after: None,
        limit: 10,
    };
    assert!(store.list(&q).await.expect("list empty").items.is_empty());
}

pub async fn fan_out_query_returns_active_subscribed_webhooks_of_the_bucket(
    store: &dyn SubscriptionStore,
) {
    let bucket = fresh_bucket();
    let mut alerts = sample_webhook(&fresh_owner(), &bucket, 1_700_002_000);
    alerts.events = vec![EventType::AlertTriggered];
    let mut both = sample_webhook(&fresh_owner(), &bucket, 1_700_002_001);
    both.events = vec![EventType::AlertTriggered, EventType::DataReceived];
    let mut inactive = sample_webhook(&fresh_owner(), &bucket, 1_700_002_002);
    inactive.active = false;
    let elsewhere = sample_webhook(&fresh_owner(), &fresh_bucket(), 1_700_002_003);
    for w in [&alerts, &both, &inactive, &elsewhere] {
        store.create(w).await.expect("create");
    }
    let mut got: Vec<WebhookId> = store
        .list_for_bucket_event(&bucket, EventType::AlertTriggered)
        .await
        .expect("fan-out")
        .webhooks
        .into_iter()
        .map(|w| w.id)
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![alerts.id.clone(), both.id.clone()],
        "alert.triggered subscribers"
    );
    let got = store
        .list_for_bucket_event(&bucket, EventType::DataReceived)
        .await
        .expect("fan-out")
        .webhooks;
    assert_eq!(
        got.into_iter().map(|w| w.id).collect::<Vec<_>>(),
        vec![both.id]
    );
    let got = store
        .list_for_bucket_event(&bucket, EventType::BucketUpdated)
        .await
        .expect("fan-out");
    assert!(got.webhooks.is_empty() && got.unreadable.is_empty());
}

/// A bucket's webhooks are counted across owners, and the fan-out query reads no more than the
/// bound: with more stored than [`MAX_WEBHOOKS_PER_BUCKET`] (possible only through the store,
/// the service refuses them) it answers the subscribers among the oldest bound-many only.
pub async fn fan_out_and_count_are_bounded_across_owners(store: &dyn SubscriptionStore) {
    let bucket = fresh_bucket();
    let owners = [fresh_owner(), fresh_owner(), fresh_owner()];
    let extra = 5;
    let mut ids = Vec::new();
    for i in 0..MAX_WEBHOOKS_PER_BUCKET + extra {
        let mut w = sample_webhook(&owners[i % 3], &bucket, 1_700_010_000 + i as i64);
        // Every tenth one inactive: it still takes a place in the bucket.
        w.active = i % 10 != 9;
        store.create(&w).await.expect("create");
        ids.push((w.id, w.active));
    }
    assert_eq!(
        store.count_in_bucket(&bucket, 1_000).await.expect("count"),
        MAX_WEBHOOKS_PER_BUCKET + extra,
        "every owner's webhooks, active or not"
    );
    assert_eq!(store.count_in_bucket(&bucket, 7).await.expect("count"), 7);
    assert_eq!(
        store
            .count_in_bucket(&fresh_bucket(), 7)
            .await
            .expect("count"),
        0
    );
    let got: Vec<WebhookId> = store
        .list_for_bucket_event(&bucket, EventType::AlertTriggered)
        .await
        .expect("fan-out")
        .webhooks
        .into_iter()
        .map(|w| w.id)
        .collect();
    let want: Vec<WebhookId> = ids
        .iter()
        .take(MAX_WEBHOOKS_PER_BUCKET)
        .filter(|(_, active)| *active)
        .map(|(id, _)| id.clone())
        .collect();
    assert_eq!(
        got, want,
        "the oldest bound-many's subscribers, oldest first"
    );
}

pub async fn update_applies_the_patch_for_the_owner_only(store: &dyn SubscriptionStore) {
    let owner = fresh_owner();
    let w = sample_webhook(&owner, &fresh_bucket(), 1_700_003_000);
    store.create(&w).await.expect("create");
    let later = Timestamp::from_unix(1_700_003_500);
    // Counters set before the update must survive it (an update never rewrites stats).
    store
        .record_outcome(
            &w.id,
            DeliveryStatus::Failed,
            Timestamp::from_unix(1_700_003_100),
        )
        .await
        .expect("record");
    let w = store.get(&w.id).await.expect("get").expect("exists");
    assert_eq!(w.stats.failed_deliveries, 1);

    let patch = WebhookPatch {
        active: Some(false),
        ..Default::default()
    };
    let err = store
        .update(&fresh_owner(), &w.id, &patch, later)
        .await
        .expect_err("stranger");
    assert!(
        matches!(err, StoreError::NotFound),
        "stranger update: {err:?}"
    );
    assert_eq!(
        store.get(&w.id).await.expect("get").as_ref(),
        Some(&w),
        "unchanged by stranger"
    );
    let missing = WebhookId::generate(1_600_000_000);
    let err = store
        .update(&owner, &missing, &patch, later)
        .await
        .expect_err("missing");
    assert!(
        matches!(err, StoreError::NotFound),
        "missing update: {err:?}"
    );
    assert!(
        store.get(&missing).await.expect("get").is_none(),
        "update must not create"
    );

    let patch = WebhookPatch {
        url: Some("https://example.com/new".into()),
        events: Some(vec![EventType::BucketUpdated]),
        description: Some(None),
        active: Some(false),
        max_retries: Some(0),
        backoff_multiplier: None,
        initial_delay_seconds: Some(3600),
        secret: Some(Secret::new("rotated-secret".into())),
        previous_secret: Some(Some(PreviousSecret {
            secret: Secret::new("your_webhook_secret".into()),
            expires_at: Timestamp::from_unix(1_700_090_000),
        })),
        format: Some(crate::format::Format::Discord),
        disabled_reason: Some(Some("deliveries failed for 5 days".into())),
        filter: Some(Some(sample_filter())),
        headers: Some(sample_headers()),
        rate_limit: Some(Some(7)),
    };
    let mut want = w.clone();
    patch.apply(&mut want, later);
    let got = store
        .update(&owner, &w.id, &patch, later)
        .await
        .expect("update");
    assert_eq!(got, want, "returned webhook");
    assert_eq!(
        store.get(&w.id).await.expect("get"),
        Some(want.clone()),
        "stored webhook"
    );
    assert_eq!(
        got.retry_config.backoff_multiplier, 1.5,
        "untouched retry field kept"
    );

    let patch = WebhookPatch {
        description: Some(Some("back".into())),
        ..Default::default()
    };
    let got = store
        .update(&owner, &w.id, &patch, later)
        .await
        .expect("update description");
    assert_eq!(got.description.as_deref(), Some("back"));
    assert_eq!(got.url, "https://example.com/new");
    assert_eq!(
        got.filter,
        Some(sample_filter()),
        "filter kept by other patches"
    );

    assert_eq!(
        got.headers,
        sample_headers(),
        "headers kept by other patches"
    );
    assert_eq!(got.rate_limit, Some(7), "rate limit kept by other patches");

    let patch = WebhookPatch {
        filter: Some(None),
        headers: Some(crate::headers::CustomHeaders::default()),
        rate_limit: Some(None),
        ..Default::default()
    };
    let got = store
        .update(&owner, &w.id, &patch, later)
        .await
        .expect("remove filter");
    assert_eq!(got.filter, None);
    assert!(got.headers.is_empty());
    assert_eq!(got.rate_limit, None, "rate limit removed");
    let stored = store.get(&w.id).await.expect("get").expect("exists");
    assert_eq!((stored.filter, stored.headers.is_empty()), (None, true));
}

/// Two custom headers, names in mixed case.
pub fn sample_headers() -> crate::headers::CustomHeaders {
    crate::headers::CustomHeaders::parse([
        (
            "X-Api-Key".to_owned(),
            "sk_live_0123456789abcdef".to_owned(),
        ),
        ("authorization".to_owned(), "Bearer a.b.c".to_owned()),
    ])
    .expect("valid headers")
}

/// A filter using nesting, several operators, unicode and numbers of both kinds.
pub fn sample_filter() -> crate::filter::Filter {
    crate::filter::Filter::parse(serde_json::json!({
        "data.dataSourceId": {"$in": ["pump-1", "pompe-2 °C"]},
        "$or": [{"data.currentValue": {"$gte": 30.5}}, {"data.severity": "high"}],
        "$not": {"data.test": true}
    }))
    .expect("a valid filter")
}

pub async fn delete_is_owner_scoped(store: &dyn SubscriptionStore) {
    let owner = fresh_owner();
    let w = sample_webhook(&owner, &fresh_bucket(), 1_700_004_000);
    store.create(&w).await.expect("create");
    let err = store
        .delete(&fresh_owner(), &w.id)
        .await
        .expect_err("stranger delete");
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
    assert!(
        store.get(&w.id).await.expect("get").is_some(),
        "stranger deleted it"
    );
    store.delete(&owner, &w.id).await.expect("delete");
    assert!(store.get(&w.id).await.expect("get").is_none());
    let err = store
        .delete(&owner, &w.id)
        .await
        .expect_err("second delete");
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
    assert!(
        store
            .list_for_bucket_event(&w.bucket_id, EventType::AlertTriggered)
            .await
            .expect("q")
            .webhooks
            .is_empty()
    );
}

pub async fn concurrent_outcomes_are_all_counted(store: Arc<dyn SubscriptionStore>) {
    let w = sample_webhook(&fresh_owner(), &fresh_bucket(), 1_700_005_000);
    store.create(&w).await.expect("create");
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..24i64 {
        let (store, id) = (store.clone(), w.id.clone());
        let status = if i % 3 == 0 {
            DeliveryStatus::Failed
        } else {
            DeliveryStatus::Success
        };
        tasks.spawn(async move {
            store
                .record_outcome(&id, status, Timestamp::from_unix(1_700_005_100 + i))
                .await
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("task").expect("record_outcome");
    }
    let got = store.get(&w.id).await.expect("get").expect("exists");
    assert_eq!(
        got.stats,
        DeliveryStats {
            total_deliveries: 24,
            successful_deliveries: 16,
            failed_deliveries: 8
        },
        "every outcome counted once"
    );
    assert!(got.last_delivery_at.is_some() && got.last_delivery_status.is_some());
    let mut rest = got.clone();
    rest.stats = w.stats;
    rest.last_delivery_at = None;
    rest.last_delivery_status = None;
    // Which outcome landed last decides `failing_since`; the run-tracking has its own check.
    rest.failing_since = None;
    assert_eq!(rest, w, "counters touched nothing else");

    store
        .record_outcome(
            &w.id,
            DeliveryStatus::Success,
            Timestamp::from_unix(1_700_006_000),
        )
        .await
        .expect("record");
    let got = store.get(&w.id).await.expect("get").expect("exists");
    assert_eq!(
        got.last_delivery_at,
        Some(Timestamp::from_unix(1_700_006_000))
    );
    assert_eq!(got.last_delivery_status, Some(DeliveryStatus::Success));

    let missing = WebhookId::generate(1_600_000_000);
    let err = store
        .record_outcome(&missing, DeliveryStatus::Success, Timestamp::from_unix(1))
        .await
        .expect_err("missing webhook");
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
    assert!(
        store.get(&missing).await.expect("get").is_none(),
        "counter must not create a webhook"
    );
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn the_memory_store_meets_the_contract() {
        super::run_all(std::sync::Arc::new(crate::ports::memory::MemoryStore::new())).await;
    }
}

/// The [`DeliveryLog`](crate::ports::DeliveryLog) contract. `store` and `log` must be the same
/// backend (the log's `finish` updates the store's webhook counters).
pub mod delivery_log {
    use std::sync::Arc;

    use super::{fresh_bucket, fresh_owner, sample_webhook};
    use crate::delivery::{AttemptRecord, AttemptStatus, DeadLetter, DeliveryTask};
    use crate::ports::{AttemptQuery, DeadLetterQuery, DeliveryLog, SubscriptionStore};
    use crate::recovery::{JobState, RecoverJob};
    use crate::webhook::{DeliveryStats, DeliveryStatus};
    use crate::{DeliveryId, EventType, RecoverJobId, Timestamp, WebhookId};

    fn attempt(
        w: &WebhookId,
        d: &DeliveryId,
        generation: u32,
        n: u32,
        ok: bool,
        at: i64,
    ) -> AttemptRecord {
        AttemptRecord {
            webhook_id: w.clone(),
            delivery_id: d.clone(),
            generation,
            attempt: n,
            event: EventType::AlertTriggered,
            status: if ok {
                AttemptStatus::Success
            } else {
                AttemptStatus::Failed
            },
            status_code: Some(if ok { 200 } else { 500 }),
            duration_ms: 12,
            error: (!ok).then(|| "receiver answered HTTP 500".to_owned()),
            response_body: Some("{\"ok\":false} — é".into()),
            at: Timestamp::from_unix(at),
        }
    }

    fn task(w: &WebhookId, t: i64) -> DeliveryTask {
        DeliveryTask {
            delivery_id: DeliveryId::generate(t),
            webhook_id: w.clone(),
            event: EventType::DataReceived,
            generation: 0,
            attempts_made: 0,
            body: r#"{"event":"data.received","data":{"v":31.5,"s":"°C"}}"#.into(),
            created_at: Timestamp::from_unix(t),
        }
    }

    pub async fn run_all(store: Arc<dyn SubscriptionStore>, log: Arc<dyn DeliveryLog>) {
        run(store, log, true).await;
    }

    /// The same checks, but with `finish` calls racing one another replaced by the same calls
    /// one after the other. For moto only: its `TransactWriteItems` is not safe under concurrent
    /// calls (a cancelled transaction restores a snapshot of the whole table, undoing other
    /// writes), which DynamoDB itself is.
    pub async fn run_all_sequential(store: Arc<dyn SubscriptionStore>, log: Arc<dyn DeliveryLog>) {
        run(store, log, false).await;
    }

    async fn run(store: Arc<dyn SubscriptionStore>, log: Arc<dyn DeliveryLog>, concurrent: bool) {
        attempts_are_kept_per_generation_and_listed_newest_first(&*store, &*log).await;
        finish_counts_each_delivery_once_even_when_repeated_or_concurrent(
            store.clone(),
            log.clone(),
            concurrent,
        )
        .await;
        failing_since_tracks_the_current_run_of_failures(&*store, &*log).await;
        the_last_delivery_never_moves_backwards_when_outcomes_commit_out_of_order(&*store, &*log)
            .await;
        dead_letters_round_trip_and_are_removable(&*store, &*log).await;
        a_dead_letter_is_claimed_once_and_only_in_its_generation(&*store, log.clone()).await;
        pages_list_every_match_once_with_filters(&*store, &*log).await;
        recover_jobs_are_created_once_and_written_by_compare_and_set(&*log).await;
        purging_a_webhook_removes_its_dead_letters_jobs_and_aggregates_only(&*store, &*log).await;
        hourly_aggregates_count_each_finish_once_in_its_hour(&*store, &*log).await;
    }

    /// Each finished delivery is added once to its webhook's aggregate of the hour it finished
    /// in (a delivered one with its attempt's latency), in the write that counts it: repeats
    /// and a missing webhook add nothing, other webhooks and hours are apart, and a read of a
    /// range returns only the hours in it.
    pub async fn hourly_aggregates_count_each_finish_once_in_its_hour(
        store: &dyn SubscriptionStore,
        log: &dyn DeliveryLog,
    ) {
        use crate::hourly::{HourlyStats, LatencyHistogram, hour_of};
        // GIVEN two webhooks and two consecutive hours
        let t0 = 1_735_002_000;
        let w = sample_webhook(&fresh_owner(), &fresh_bucket(), t0);
        let other = sample_webhook(&fresh_owner(), &fresh_bucket(), t0 + 1);
        store.create(&w).await.expect("create");
        store.create(&other).await.expect("create");
        let first = hour_of(Timestamp::from_unix(t0));
        let at = |hour: i64, s: i64| hour * 3600 + s;
        let delivered = |w: &WebhookId, t: i64, ms: u64| {
            let mut a = attempt(w, &DeliveryId::generate(t), 0, 1, true, t);
            a.duration_ms = ms;
            a
        };
        // WHEN the first hour finishes 3 delivered (12, 80 and 400 ms) and 1 failed, the
        // second 1 delivered (3 s) and 2 failed, the other webhook 1 delivered, each once
        let mut finished = Vec::new();
        for (t, ms) in [(10, 12), (20, 80), (30, 400)] {
            finished.push(delivered(&w.id, at(first, t), ms));
        }
        finished.push(delivered(&w.id, at(first + 1, 5), 3_000));
        for a in &finished {
            assert!(log.finish_delivered(a).await.expect("finish delivered"));
        }
        let failures = [at(first, 40), at(first + 1, 50), at(first + 1, 60)]
            .map(|t| (DeliveryId::generate(t), Timestamp::from_unix(t)));
        for (d, t) in &failures {
            assert!(
                log.finish(&w.id, d, 0, DeliveryStatus::Failed, *t)
                    .await
                    .expect("finish failed")
            );
        }
        let theirs = delivered(&other.id, at(first, 15), 7);
        assert!(log.finish_delivered(&theirs).await.expect("other webhook"));
        // AND every one of them is finished again (a duplicate receipt), and a deleted
        // webhook's delivery finishes
        for a in &finished {
            assert!(!log.finish_delivered(a).await.expect("repeat"));
        }
        for (d, t) in &failures {
            assert!(
                !log.finish(&w.id, d, 0, DeliveryStatus::Failed, *t)
                    .await
                    .expect("repeat")
            );
        }
        let gone = WebhookId::generate(t0 - 5);
        assert!(
            !log.finish_delivered(&delivered(&gone, at(first, 70), 5))
                .await
                .expect("missing webhook")
        );

        // THEN each hour holds its finishes once, the latencies in their buckets
        let mut got = log
            .hourly_stats(&w.id, first - 1..=first + 2)
            .await
            .expect("hourly");
        got.sort_by_key(|h| h.hour);
        let histogram = |ms: &[u64]| {
            let mut h = LatencyHistogram::default();
            ms.iter().for_each(|&m| h.record(m));
            h
        };
        assert_eq!(
            got,
            vec![
                HourlyStats {
                    hour: first,
                    delivered: 3,
                    failed: 1,
                    latency: histogram(&[12, 80, 400]),
                },
                HourlyStats {
                    hour: first + 1,
                    delivered: 1,
                    failed: 2,
                    latency: histogram(&[3_000]),
                },
            ]
        );
        // AND a range reads only its hours; the other webhook's are its own; none for the gone
        let second = log
            .hourly_stats(&w.id, first + 1..=first + 1)
            .await
            .expect("hourly");
        assert_eq!(second.len(), 1);
        assert_eq!(second[0].hour, first + 1);
        assert_eq!(
            log.hourly_stats(&other.id, first - 1..=first + 2)
                .await
                .expect("hourly"),
            vec![HourlyStats {
                hour: first,
                delivered: 1,
                failed: 0,
                latency: histogram(&[7]),
            }]
        );
        assert!(
            log.hourly_stats(&gone, first - 1..=first + 2)
                .await
                .expect("hourly")
                .is_empty()
        );
    }

    /// Walks every page of `query` (limit as set), `after` fed back; the items in page order.
    async fn walk_dead_letters(
        log: &dyn DeliveryLog,
        w: &WebhookId,
        mut q: DeadLetterQuery,
    ) -> Vec<DeadLetter> {
        let mut all = Vec::new();
        for _ in 0..100 {
            let page = log.dead_letters_page(w, &q).await.expect("page");
            assert!(page.items.len() <= q.limit);
            all.extend(page.items);
            match page.next_after {
                Some(a) => q.after = Some(a),
                None => return all,
            }
        }
        panic!("the walk never ended");
    }

    async fn walk_attempts(
        log: &dyn DeliveryLog,
        w: &WebhookId,
        mut q: AttemptQuery,
    ) -> Vec<AttemptRecord> {
        let mut all = Vec::new();
        for _ in 0..100 {
            let page = log.attempts_page(w, &q).await.expect("page");
            assert!(page.items.len() <= q.limit);
            all.extend(page.items);
            match page.next_after {
                Some(a) => q.after = Some(a),
                None => return all,
            }
        }
        panic!("the walk never ended");
    }

    pub async fn pages_list_every_match_once_with_filters(
        store: &dyn SubscriptionStore,
        log: &dyn DeliveryLog,
    ) {
        // GIVEN 20 deliveries (one every 10 s), each with one attempt 5 s after it was created
        // (every third failed, events alternating) and given up 5 s after that
        let t0 = 1_740_000_000;
        let w = sample_webhook(&fresh_owner(), &fresh_bucket(), t0);
        store.create(&w).await.expect("create");
        let mut dead = Vec::new();
        let mut attempts = Vec::new();
        for i in 0..20 {
            let mut t = task(&w.id, t0 + 10 * i);
            if i % 2 == 1 {
                t.event = EventType::AlertTriggered;
            }
            let mut a = attempt(&w.id, &t.delivery_id, 0, 1, i % 3 != 0, t0 + 10 * i + 5);
            a.event = t.event;
            log.record_attempt(&a).await.expect("record");
            attempts.push(a);
            let d = DeadLetter {
                task: t,
                error: "receiver answered HTTP 500".into(),
                attempts: 1,
                at: Timestamp::from_unix(t0 + 10 * i + 5),
            };
            log.put_dead_letter(&d).await.expect("put");
            dead.push(d);
        }
        // WHEN every page is walked, 3 at a time
        let all = walk_dead_letters(
            log,
            &w.id,
            DeadLetterQuery {
                limit: 3,
                ..Default::default()
            },
        )
        .await;
        // THEN every dead letter comes once, oldest first
        assert_eq!(all, dead, "all, oldest first");
        // AND filters select exactly their matches, whatever the page size
        let since = Timestamp::from_unix(t0 + 50);
        let until = Timestamp::from_unix(t0 + 150);
        let in_window: Vec<DeadLetter> = dead
            .iter()
            .filter(|d| d.at >= since && d.at < until)
            .cloned()
            .collect();
        assert_eq!(in_window.len(), 10);
        for limit in [1, 4, 100] {
            let got = walk_dead_letters(
                log,
                &w.id,
                DeadLetterQuery {
                    since: Some(since),
                    until: Some(until),
                    limit,
                    ..Default::default()
                },
            )
            .await;
            assert_eq!(got, in_window, "window, limit {limit}");
        }
        let alerts = walk_dead_letters(
            log,
            &w.id,
            DeadLetterQuery {
                event: Some(EventType::AlertTriggered),
                since: Some(since),
                limit: 2,
                ..Default::default()
            },
        )
        .await;
        let want: Vec<DeadLetter> = dead
            .iter()
            .filter(|d| d.task.event == EventType::AlertTriggered && d.at >= since)
            .cloned()
            .collect();
        assert_eq!(alerts, want, "event and since");
        let count = log
            .count_dead_letters(
                &w.id,
                &DeadLetterQuery {
                    since: Some(since),
                    until: Some(until),
                    ..Default::default()
                },
            )
            .await
            .expect("count");
        assert_eq!(count, 10);
        let count = log
            .count_dead_letters(
                &w.id,
                &DeadLetterQuery {
                    event: Some(EventType::AlertTriggered),
                    since: Some(since),
                    after: Some("ignored".into()),
                    limit: 1,
                    ..Default::default()
                },
            )
            .await
            .expect("count by event");
        assert_eq!(count, want.len() as u64, "a count ignores after and limit");
        // AND removing listed letters while walking does not disturb the walk
        let mut q = DeadLetterQuery {
            limit: 4,
            ..Default::default()
        };
        let mut walked = Vec::new();
        loop {
            let page = log.dead_letters_page(&w.id, &q).await.expect("page");
            for d in &page.items {
                log.remove_dead_letter(&w.id, &d.task.delivery_id)
                    .await
                    .expect("remove");
            }
            walked.extend(page.items);
            match page.next_after {
                Some(a) => q.after = Some(a),
                None => break,
            }
        }
        assert_eq!(walked, dead, "each once while removed");

        // Attempts: newest first, every one once, filters exact
        let mut newest_first = attempts.clone();
        newest_first.reverse();
        let all = walk_attempts(
            log,
            &w.id,
            AttemptQuery {
                limit: 3,
                ..Default::default()
            },
        )
        .await;
        assert_eq!(all, newest_first);
        let failed_in_window = walk_attempts(
            log,
            &w.id,
            AttemptQuery {
                status: Some(AttemptStatus::Failed),
                since: Some(since),
                until: Some(until),
                limit: 2,
                ..Default::default()
            },
        )
        .await;
        let want: Vec<AttemptRecord> = newest_first
            .iter()
            .filter(|a| a.status == AttemptStatus::Failed && a.at >= since && a.at < until)
            .cloned()
            .collect();
        assert!(!want.is_empty());
        assert_eq!(failed_in_window, want, "status and window");
        let data = walk_attempts(
            log,
            &w.id,
            AttemptQuery {
                event: Some(EventType::DataReceived),
                limit: 100,
                ..Default::default()
            },
        )
        .await;
        assert_eq!(data.len(), 10);
        assert!(data.iter().all(|a| a.event == EventType::DataReceived));
    }

    /// What a deleted webhook leaves behind (dead letters, recovery jobs, hourly aggregates) is
    /// removed, in pages (more than DynamoDB's 25 per batch), and nothing of another webhook's.
    pub async fn purging_a_webhook_removes_its_dead_letters_jobs_and_aggregates_only(
        store: &dyn SubscriptionStore,
        log: &dyn DeliveryLog,
    ) {
        use crate::hourly::hour_of;
        let t0 = 1_741_000_000;
        let gone = sample_webhook(&fresh_owner(), &fresh_bucket(), t0);
        let kept = sample_webhook(&fresh_owner(), &fresh_bucket(), t0 + 1);
        let hours = hour_of(Timestamp::from_unix(t0)) - 1..=hour_of(Timestamp::from_unix(t0)) + 2;
        for (w, n) in [(&gone, 30), (&kept, 2)] {
            // Deliveries finished in two hours: two hourly aggregates each.
            store.create(w).await.expect("create");
            for t in [t0, t0 + 3600] {
                let a = attempt(&w.id, &DeliveryId::generate(t), 0, 1, true, t);
                assert!(log.finish_delivered(&a).await.expect("finish"));
            }
            assert_eq!(
                log.hourly_stats(&w.id, hours.clone())
                    .await
                    .expect("hourly")
                    .len(),
                2
            );
            for i in 0..n {
                let d = DeadLetter {
                    task: task(&w.id, t0 + i),
                    error: "receiver answered HTTP 500".into(),
                    attempts: 4,
                    at: Timestamp::from_unix(t0 + i + 1),
                };
                log.put_dead_letter(&d).await.expect("put");
            }
            let at = Timestamp::from_unix(t0);
            let job = RecoverJob {
                id: RecoverJobId::derive(w.id.as_str()),
                webhook_id: w.id.clone(),
                since: at,
                until: at,
                state: JobState::Running,
                total: n as u64,
                done: 0,
                failed: 0,
                created_at: at,
                updated_at: at,
                after: None,
                lease_until: None,
                version: 1,
            };
            assert!(log.create_recover_job(&job).await.expect("create job"));
        }
        log.purge_webhook(&gone.id).await.expect("purge");
        assert!(
            log.dead_letters(&gone.id, 100)
                .await
                .expect("list")
                .is_empty()
        );
        let job = RecoverJobId::derive(gone.id.as_str());
        assert_eq!(log.recover_job(&gone.id, &job).await.expect("job"), None);
        assert_eq!(
            log.hourly_stats(&gone.id, hours.clone())
                .await
                .expect("hourly"),
            vec![],
            "the gone webhook's hourly aggregates"
        );
        assert_eq!(
            log.hourly_stats(&kept.id, hours.clone())
                .await
                .expect("hourly")
                .len(),
            2,
            "the other webhook's hourly aggregates are kept"
        );
        assert_eq!(
            log.dead_letters(&kept.id, 100).await.expect("list").len(),
            2
        );
        let job = RecoverJobId::derive(kept.id.as_str());
        assert!(
            log.recover_job(&kept.id, &job)
                .await
                .expect("job")
                .is_some()
        );
        log.purge_webhook(&gone.id)
            .await
            .expect("purging again is a no-op");
    }

    pub async fn recover_jobs_are_created_once_and_written_by_compare_and_set(
        log: &dyn DeliveryLog,
    ) {
        let w = sample_webhook(&fresh_owner(), &fresh_bucket(), 1_740_100_000);
        let at = Timestamp::from_unix(1_740_100_000);
        let job = RecoverJob {
            id: RecoverJobId::derive(w.id.as_str()),
            webhook_id: w.id.clone(),
            since: at,
            until: at,
            state: JobState::Running,
            total: 2_500,
            done: 0,
            failed: 0,
            created_at: at,
            updated_at: at,
            after: None,
            lease_until: None,
            version: 1,
        };
        assert_eq!(log.recover_job(&w.id, &job.id).await.expect("get"), None);
        assert!(log.create_recover_job(&job).await.expect("create"));
        let mut other = job.clone();
        other.total = 1;
        assert!(
            !log.create_recover_job(&other).await.expect("create again"),
            "never overwritten"
        );
        assert_eq!(
            log.recover_job(&w.id, &job.id).await.expect("get"),
            Some(job.clone())
        );
        let mut next = job.clone();
        next.version = 2;
        next.done = 100;
        next.after = Some("a position".into());
        next.lease_until = Some(Timestamp::from_unix(1_740_100_060));
        assert!(log.update_recover_job(&next, 1).await.expect("update"));
        let mut stale = job.clone();
        stale.version = 2;
        stale.done = 7;
        assert!(
            !log.update_recover_job(&stale, 1)
                .await
                .expect("stale update")
        );
        assert_eq!(
            log.recover_job(&w.id, &job.id).await.expect("get"),
            Some(next)
        );
        let elsewhere = sample_webhook(&fresh_owner(), &fresh_bucket(), 1_740_100_001);
        assert_eq!(
            log.recover_job(&elsewhere.id, &job.id).await.expect("get"),
            None
        );
    }

    pub async fn attempts_are_kept_per_generation_and_listed_newest_first(
        store: &dyn SubscriptionStore,
        log: &dyn DeliveryLog,
    ) {
        let w = sample_webhook(&fresh_owner(), &fresh_bucket(), 1_710_000_000);
        store.create(&w).await.expect("create");
        let d = DeliveryId::generate(1_710_000_001);
        let a1 = attempt(&w.id, &d, 0, 1, false, 1_710_000_010);
        let a2 = attempt(&w.id, &d, 0, 2, true, 1_710_000_020);
        let g1 = attempt(&w.id, &d, 1, 1, true, 1_710_000_030);
        for a in [&a1, &a2, &g1] {
            log.record_attempt(a).await.expect("record");
        }
        log.record_attempt(&a2)
            .await
            .expect("record the same attempt again");
        assert_eq!(
            log.attempts_of(&w.id, &d, 0).await.expect("attempts"),
            vec![a1.clone(), a2.clone()]
        );
        assert_eq!(
            log.attempts_of(&w.id, &d, 1).await.expect("attempts"),
            vec![g1.clone()]
        );
        assert!(
            log.attempts_of(&w.id, &DeliveryId::generate(1), 0)
                .await
                .expect("none")
                .is_empty()
        );
        let recent = log.recent_attempts(&w.id, 2).await.expect("recent");
        assert_eq!(recent, vec![g1, a2], "newest first, limited");
        let other = sample_webhook(&fresh_owner(), &fresh_bucket(), 1_710_000_100);
        assert!(
            log.recent_attempts(&other.id, 10)
                .await
                .expect("recent")
                .is_empty()
        );
    }

    pub async fn finish_counts_each_delivery_once_even_when_repeated_or_concurrent(
        store: Arc<dyn SubscriptionStore>,
        log: Arc<dyn DeliveryLog>,
        concurrent: bool,
    ) {
        let w = sample_webhook(&fresh_owner(), &fresh_bucket(), 1_720_000_000);
        store.create(&w).await.expect("create");
        let at = Timestamp::from_unix(1_720_000_050);
        let d1 = DeliveryId::generate(1_720_000_001);
        assert!(
            log.finish(&w.id, &d1, 0, DeliveryStatus::Success, at)
                .await
                .expect("finish")
        );
        assert!(
            !log.finish(&w.id, &d1, 0, DeliveryStatus::Success, at)
                .await
                .expect("again")
        );
        assert!(
            !log.finish(&w.id, &d1, 0, DeliveryStatus::Failed, at)
                .await
                .expect("other status")
        );
        assert!(
            log.finish(&w.id, &d1, 1, DeliveryStatus::Failed, at)
                .await
                .expect("next generation")
        );

        // 10 deliveries, each finished by 3 racing workers: counted 10 times in all.
        let mut tasks = tokio::task::JoinSet::new();
        let mut newly = 0;
        for i in 0..10i64 {
            let d = DeliveryId::generate(1_720_000_100 + i);
            for _ in 0..3 {
                let (log, id, d) = (log.clone(), w.id.clone(), d.clone());
                let call = async move { log.finish(&id, &d, 0, DeliveryStatus::Success, at).await };
                if concurrent {
                    tasks.spawn(call);
                } else {
                    newly += usize::from(call.await.expect("finish"));
                }
            }
        }
        while let Some(r) = tasks.join_next().await {
            newly += usize::from(r.expect("task").expect("finish"));
        }
        assert_eq!(newly, 10, "each delivery finished exactly once");
        let got = store.get(&w.id).await.expect("get").expect("exists");
        assert_eq!(
            got.stats,
            DeliveryStats {
                total_deliveries: 12,
                successful_deliveries: 11,
                failed_deliveries: 1
            }
        );
        assert_eq!(got.last_delivery_at, Some(at));

        let gone = WebhookId::generate(1_600_000_000);
        assert!(
            !log.finish(&gone, &d1, 0, DeliveryStatus::Success, at)
                .await
                .expect("missing webhook")
        );
        assert!(
            store.get(&gone).await.expect("get").is_none(),
            "finish must not create a webhook"
        );
    }

    /// `lastDeliveryAt`/`lastDeliveryStatus` are the newest outcome's, whatever order outcomes
    /// are counted in, and each outcome is still counted once (through `finish` and through
    /// `record_outcome`).
    pub async fn the_last_delivery_never_moves_backwards_when_outcomes_commit_out_of_order(
        store: &dyn SubscriptionStore,
        log: &dyn DeliveryLog,
    ) {
        // GIVEN a webhook whose newer delivery (a success at t+200) is counted first
        let t0 = 1_726_000_000;
        let w = sample_webhook(&fresh_owner(), &fresh_bucket(), t0);
        store.create(&w).await.expect("create");
        let t = |s: i64| Timestamp::from_unix(t0 + s);
        let (newer, older) = (DeliveryId::generate(t0 + 2), DeliveryId::generate(t0 + 1));
        assert!(
            log.finish(&w.id, &newer, 0, DeliveryStatus::Success, t(200))
                .await
                .expect("finish newer")
        );
        // WHEN an older failure (t+100) is counted after it, then again (a repeat)
        assert!(
            log.finish(&w.id, &older, 0, DeliveryStatus::Failed, t(100))
                .await
                .expect("finish older")
        );
        assert!(
            !log.finish(&w.id, &older, 0, DeliveryStatus::Failed, t(100))
                .await
                .expect("finish older again")
        );
        // THEN both are counted once, and the last delivery is still the newer success
        let got = store.get(&w.id).await.expect("get").expect("exists");
        assert_eq!(
            (
                got.stats.total_deliveries,
                got.stats.successful_deliveries,
                got.stats.failed_deliveries
            ),
            (2, 1, 1)
        );
        assert_eq!(got.last_delivery_at, Some(t(200)));
        assert_eq!(got.last_delivery_status, Some(DeliveryStatus::Success));

        // AND the same through record_outcome: an older success after a newer failure counts,
        // a newer one (and one at the same second) moves the last delivery on
        store
            .record_outcome(&w.id, DeliveryStatus::Failed, t(300))
            .await
            .expect("newer failure");
        store
            .record_outcome(&w.id, DeliveryStatus::Success, t(250))
            .await
            .expect("older success");
        let got = store.get(&w.id).await.expect("get").expect("exists");
        assert_eq!(got.stats.total_deliveries, 4);
        assert_eq!(got.stats.successful_deliveries, 2);
        assert_eq!(got.last_delivery_at, Some(t(300)));
        assert_eq!(got.last_delivery_status, Some(DeliveryStatus::Failed));
        store
            .record_outcome(&w.id, DeliveryStatus::Success, t(300))
            .await
            .expect("same-second success");
        let got = store.get(&w.id).await.expect("get").expect("exists");
        assert_eq!(got.stats.total_deliveries, 5);
        assert_eq!(got.last_delivery_status, Some(DeliveryStatus::Success));
    }

    pub async fn failing_since_tracks_the_current_run_of_failures(
        store: &dyn SubscriptionStore,
        log: &dyn DeliveryLog,
    ) {
        let w = sample_webhook(&fresh_owner(), &fresh_bucket(), 1_725_000_000);
        store.create(&w).await.expect("create");
        let id = &w.id;
        let failing = |s: i64| async move {
            let d = DeliveryId::generate(s);
            log.finish(id, &d, 0, DeliveryStatus::Failed, Timestamp::from_unix(s))
                .await
                .expect("finish");
            store
                .get(id)
                .await
                .expect("get")
                .expect("exists")
                .failing_since
        };
        assert_eq!(
            failing(1_725_000_100).await,
            Some(Timestamp::from_unix(1_725_000_100)),
            "first failure starts the run"
        );
        assert_eq!(
            failing(1_725_000_200).await,
            Some(Timestamp::from_unix(1_725_000_100)),
            "later failures keep its start"
        );
        let d = DeliveryId::generate(1_725_000_300);
        log.finish(
            &w.id,
            &d,
            0,
            DeliveryStatus::Success,
            Timestamp::from_unix(1_725_000_300),
        )
        .await
        .expect("finish");
        assert_eq!(
            store
                .get(&w.id)
                .await
                .expect("get")
                .expect("exists")
                .failing_since,
            None,
            "a success ends the run"
        );
        assert_eq!(
            failing(1_725_000_400).await,
            Some(Timestamp::from_unix(1_725_000_400)),
            "a new run"
        );
    }

    pub async fn dead_letters_round_trip_and_are_removable(
        store: &dyn SubscriptionStore,
        log: &dyn DeliveryLog,
    ) {
        let w = sample_webhook(&fresh_owner(), &fresh_bucket(), 1_730_000_000);
        store.create(&w).await.expect("create");
        let first = DeadLetter {
            task: task(&w.id, 1_730_000_001),
            error: "receiver answered HTTP 500".into(),
            attempts: 4,
            at: Timestamp::from_unix(1_730_000_010),
        };
        let second = DeadLetter {
            task: task(&w.id, 1_730_000_002),
            error: "timed out after 30 s".into(),
            attempts: 4,
            at: Timestamp::from_unix(1_730_000_020),
        };
        log.put_dead_letter(&second).await.expect("put");
        log.put_dead_letter(&first).await.expect("put");
        assert_eq!(
            log.dead_letters(&w.id, 10).await.expect("list"),
            vec![first.clone(), second.clone()],
            "oldest first"
        );
        assert_eq!(
            log.dead_letters(&w.id, 1).await.expect("list"),
            vec![first.clone()]
        );
        let got = log
            .dead_letter(&w.id, &first.task.delivery_id)
            .await
            .expect("get");
        assert_eq!(got.as_ref(), Some(&first));

        let mut again = first.clone();
        again.attempts = 5;
        log.put_dead_letter(&again).await.expect("replace");
        assert_eq!(
            log.dead_letters(&w.id, 10).await.expect("list").len(),
            2,
            "replaced, not added"
        );

        log.remove_dead_letter(&w.id, &first.task.delivery_id)
            .await
            .expect("remove");
        log.remove_dead_letter(&w.id, &first.task.delivery_id)
            .await
            .expect("remove twice is fine");
        assert_eq!(
            log.dead_letters(&w.id, 10).await.expect("list"),
            vec![second]
        );
        let other = sample_webhook(&fresh_owner(), &fresh_bucket(), 1_730_000_100);
        assert!(
            log.dead_letters(&other.id, 10)
                .await
                .expect("list")
                .is_empty()
        );
    }

    /// `claim_dead_letter`: a conditional delete. Eight racing claims of one dead letter: one
    /// wins; a claim naming another generation takes nothing; a missing one answers `false`.
    pub async fn a_dead_letter_is_claimed_once_and_only_in_its_generation(
        store: &dyn SubscriptionStore,
        log: Arc<dyn DeliveryLog>,
    ) {
        // GIVEN a dead letter of generation 1
        let w = sample_webhook(&fresh_owner(), &fresh_bucket(), 1_730_000_000);
        store.create(&w).await.expect("create");
        let dead = DeadLetter {
            task: DeliveryTask {
                generation: 1,
                ..task(&w.id, 1_730_000_001)
            },
            error: "receiver answered HTTP 500".into(),
            attempts: 4,
            at: Timestamp::from_unix(1_730_000_010),
        };
        let d = dead.task.delivery_id.clone();
        log.put_dead_letter(&dead).await.expect("put");

        // WHEN it is claimed as generation 0 (read before it gave up again) THEN it stays
        assert!(!log.claim_dead_letter(&w.id, &d, 0).await.expect("claim"));
        assert!(!log.claim_dead_letter(&w.id, &d, 2).await.expect("claim"));
        assert_eq!(log.dead_letter(&w.id, &d).await.expect("get"), Some(dead));

        // WHEN eight callers claim generation 1 at once THEN exactly one gets it, and it is gone
        let mut claims = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let (log, id, d) = (log.clone(), w.id.clone(), d.clone());
            claims.spawn(async move { log.claim_dead_letter(&id, &d, 1).await });
        }
        let mut wins = 0;
        while let Some(r) = claims.join_next().await {
            wins += usize::from(r.expect("task").expect("claim"));
        }
        assert_eq!(wins, 1, "one claim wins");
        assert_eq!(log.dead_letter(&w.id, &d).await.expect("get"), None);
        assert!(!log.claim_dead_letter(&w.id, &d, 1).await.expect("again"));
        let missing = DeliveryId::generate(1_730_000_002);
        assert!(
            !log.claim_dead_letter(&w.id, &missing, 0)
                .await
                .expect("missing")
        );
    }

    #[cfg(test)]
    mod tests {
        #[tokio::test]
        async fn the_memory_log_meets_the_contract() {
            let store = std::sync::Arc::new(crate::ports::memory::MemoryStore::new());
            let log = std::sync::Arc::new(crate::ports::memory::MemoryLog::new(store.clone()));
            super::run_all(store, log).await;
        }
    }
}
