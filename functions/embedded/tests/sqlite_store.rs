//! `SqliteStore` against a real SQLite file: the shared store contract, persistence across
//! restarts, and what happens when a row cannot be read back.

use std::path::Path;
use std::sync::Arc;

use webhooks_core::conformance::{run_all, sample_webhook};
use webhooks_core::headers::CustomHeaders;
use webhooks_core::ports::{ListQuery, StoreError, SubscriptionStore};
use webhooks_core::webhook::{DeliveryStatus, PreviousSecret, Secret, WebhookPatch};
use webhooks_core::{BucketId, EventType, OwnerId, Timestamp};
use webhooks_embedded::SqliteStore;

fn owner(name: &str) -> OwnerId {
    OwnerId::parse(name).unwrap()
}

/// A second, raw connection to the file, as the `sqlite3` shell or another tool would open it.
fn raw(path: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(path).unwrap()
}

fn user_version(path: &Path) -> i64 {
    raw(path)
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_sqlite_store_meets_the_subscription_store_contract() {
    // Arrange
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("webhooks.db")).expect("open");

    // Act + Assert: the checks every adapter passes (panics on the first failure).
    run_all(Arc::new(store)).await;
}

#[tokio::test]
async fn data_survives_a_restart() {
    // Arrange: a webhook created, counted and edited, then the process "stops".
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("webhooks.db");
    let me = owner("user_1");
    let bucket = BucketId::generate(1_700_000_000);
    let store = SqliteStore::open(&path).expect("open");
    let w = sample_webhook(&me, &bucket, 1_700_000_000);
    store.create(&w).await.unwrap();
    store
        .record_outcome(
            &w.id,
            DeliveryStatus::Failed,
            Timestamp::from_unix(1_700_000_050),
        )
        .await
        .unwrap();
    let patch = WebhookPatch {
        url: Some("https://example.com/moved".into()),
        ..Default::default()
    };
    let before = store
        .update(&me, &w.id, &patch, Timestamp::from_unix(1_700_000_060))
        .await
        .unwrap();
    drop(store);

    // Act
    let store = SqliteStore::open(&path).expect("reopen");

    // Assert
    let got = store.get(&w.id).await.unwrap();
    assert_eq!(
        got.as_ref(),
        Some(&before),
        "every field, counters and edit included"
    );
    assert_eq!(before.stats.failed_deliveries, 1);
    let page = store
        .list(&ListQuery {
            owner: me,
            bucket: None,
            after: None,
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(page.items, vec![before]);
    assert_eq!(page.next_after, None);
}

#[tokio::test]
async fn reopening_an_existing_file_keeps_its_data_and_schema_version() {
    // Arrange
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("webhooks.db");
    let store = SqliteStore::open(&path).expect("open");
    let w = sample_webhook(&owner("user_2"), &BucketId::generate(1), 1_700_000_100);
    store.create(&w).await.unwrap();
    drop(store);
    let version = user_version(&path);

    // Act: open it twice more.
    drop(SqliteStore::open(&path).expect("second open"));
    let store = SqliteStore::open(&path).expect("third open");

    // Assert
    assert!(version > 0, "schema recorded in user_version");
    assert_eq!(user_version(&path), version, "no migration ran again");
    assert_eq!(store.get(&w.id).await.unwrap(), Some(w));
}

#[tokio::test]
async fn a_row_that_cannot_be_read_back_is_corrupt_not_a_panic() {
    // GIVEN rows damaged behind the store's back, one column each
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("webhooks.db");
    let store = SqliteStore::open(&path).expect("open");
    let me = owner("user_3");
    let damage = [
        ("events", "'not json'"),
        ("events", "'[\"alert.fired\"]'"),
        ("events", "'{}'"),
        ("bucket_id", "'not-an-object-id'"),
        ("owner_id", "''"),
        ("max_retries", "-1"),
        ("total_deliveries", "-5"),
    ];
    for (i, (column, value)) in damage.into_iter().enumerate() {
        let bucket = BucketId::generate(1_700_000_000);
        let w = sample_webhook(&me, &bucket, 1_700_000_200 + i as i64);
        store.create(&w).await.unwrap();
        raw(&path)
            .execute(
                &format!("UPDATE webhooks SET {column} = {value} WHERE id = ?1"),
                [w.id.as_str()],
            )
            .unwrap();

        // WHEN it is read in every way the store reads that still finds the row (a damaged
        // bucket or owner no longer matches the fan-out or the owner-scoped update)
        let mut results = vec![("get", store.get(&w.id).await.map(|_| ()))];
        if column != "bucket_id" {
            // The fan-out answers: the row is skipped and reported, not delivered to.
            let mut fan_out = store
                .list_for_bucket_event(&bucket, EventType::AlertTriggered)
                .await
                .expect("a fan-out skips a corrupt row");
            assert!(fan_out.webhooks.is_empty(), "{column}: not delivered to");
            let skipped = fan_out
                .unreadable
                .pop()
                .expect("the corrupt row is reported");
            assert_eq!(skipped.id, w.id.as_str());
            results.push(("fan-out", Err(StoreError::Corrupt(skipped.problem))));
        }
        if column != "owner_id" {
            let patch = WebhookPatch {
                active: Some(false),
                ..Default::default()
            };
            let updated = store
                .update(&me, &w.id, &patch, Timestamp::from_unix(1_700_001_000))
                .await;
            results.push(("update", updated.map(|_| ())));
        }

        // THEN each read says Corrupt, names the webhook and column, and never shows the secret
        for (call, result) in results {
            let err = result.expect_err(call);
            let message = err.to_string();
            assert!(
                matches!(err, StoreError::Corrupt(_)),
                "{column} = {value}, {call}: {err:?}"
            );
            assert!(!err.is_retryable());
            assert!(!message.contains(w.secret.expose()), "secret in {message}");
            assert!(
                message.contains(w.id.as_str()),
                "{message} names the webhook"
            );
            assert!(message.contains(column), "{message} names {column}");
        }
        // AND the owner can still delete it to recover (owner_id damage aside)
        if column != "owner_id" {
            store.delete(&me, &w.id).await.expect("delete corrupt row");
        }
    }
}

#[tokio::test]
async fn a_list_with_a_corrupt_row_reports_it_instead_of_skipping_it() {
    // Arrange
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("webhooks.db");
    let store = SqliteStore::open(&path).expect("open");
    let me = owner("user_4");
    let w = sample_webhook(&me, &BucketId::generate(1), 1_700_000_300);
    store.create(&w).await.unwrap();
    raw(&path)
        .execute(
            "UPDATE webhooks SET last_delivery_at = 'yesterday' WHERE id = ?1",
            [w.id.as_str()],
        )
        .expect_err("STRICT table refuses text in an INTEGER column");
    raw(&path)
        .execute(
            "UPDATE webhooks SET events = '[' WHERE id = ?1",
            [w.id.as_str()],
        )
        .unwrap();

    // Act
    let err = store
        .list(&ListQuery {
            owner: me,
            bucket: None,
            after: None,
            limit: 10,
        })
        .await
        .expect_err("corrupt row");

    // Assert
    assert!(
        matches!(err, StoreError::Corrupt(ref m) if m.contains(w.id.as_str())),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_write_blocked_by_another_connection_fails_as_unavailable_not_corrupt() {
    // Arrange: another process holds the write lock past the store's busy timeout.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("webhooks.db");
    let store = SqliteStore::open(&path).expect("open");
    let w = sample_webhook(&owner("user_5"), &BucketId::generate(1), 1_700_000_400);
    let other = raw(&path);
    other.execute_batch("BEGIN IMMEDIATE").unwrap();

    // Act
    let err = store.create(&w).await.expect_err("locked");
    other.execute_batch("ROLLBACK").unwrap();

    // Assert
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(err.is_retryable());
    store.create(&w).await.expect("works once the lock is gone");
}

#[tokio::test]
async fn the_delivery_read_sees_every_change_made_through_any_store_at_once() {
    // GIVEN a webhook read once for delivery (so it is cached), and a second store on the same
    // database, as the API and the worker may hold
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("webhooks.db")).expect("open");
    let api = SqliteStore::new(store.database().clone());
    let me = owner("user_1");
    let w = sample_webhook(&me, &BucketId::generate(1_700_000_000), 1_700_000_000);
    store.create(&w).await.unwrap();
    let cached = store.get_for_delivery(&w.id).await.unwrap().unwrap();
    assert_eq!(cached.url, w.url);

    // WHEN the other store changes the url and the secret
    let patch = WebhookPatch {
        url: Some("https://example.com/moved".into()),
        active: Some(false),
        ..Default::default()
    };
    api.update(&me, &w.id, &patch, Timestamp::from_unix(1_700_000_100))
        .await
        .unwrap();

    // THEN the very next delivery read has them
    let now = store.get_for_delivery(&w.id).await.unwrap().unwrap();
    assert_eq!(now.url, "https://example.com/moved");
    assert!(!now.active);

    // AND a delete is seen at once too
    api.delete(&me, &w.id).await.unwrap();
    assert!(store.get_for_delivery(&w.id).await.unwrap().is_none());
}

#[tokio::test]
async fn a_change_by_another_process_reaches_the_delivery_read_within_the_cache_ttl() {
    // GIVEN a webhook read once for delivery
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("webhooks.db");
    let store = SqliteStore::open(&path).expect("open");
    let me = owner("user_1");
    let w = sample_webhook(&me, &BucketId::generate(1_700_000_000), 1_700_000_000);
    store.create(&w).await.unwrap();
    store.get_for_delivery(&w.id).await.unwrap().unwrap();

    // WHEN another process (a raw connection) moves it
    raw(&path)
        .execute(
            "UPDATE webhooks SET url = 'https://example.com/elsewhere' WHERE id = ?1",
            [w.id.as_str()],
        )
        .unwrap();

    // THEN `get` sees it at once, the delivery read (cached) only after the TTL
    assert_eq!(
        store.get(&w.id).await.unwrap().unwrap().url,
        "https://example.com/elsewhere"
    );
    assert_eq!(
        store.get_for_delivery(&w.id).await.unwrap().unwrap().url,
        w.url,
        "served from the cache within the TTL"
    );
    tokio::time::sleep(
        webhooks_embedded::store::DELIVERY_CACHE_TTL + std::time::Duration::from_millis(50),
    )
    .await;
    assert_eq!(
        store.get_for_delivery(&w.id).await.unwrap().unwrap().url,
        "https://example.com/elsewhere"
    );
}

/// Every byte of the database's files (the file, its WAL and shared memory), as someone who
/// copies the data directory's database without its key would have them.
fn database_bytes(path: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    for suffix in ["", "-wal", "-shm"] {
        let file = format!("{}{suffix}", path.display());
        if let Ok(bytes) = std::fs::read(&file) {
            all.extend(bytes);
        }
    }
    all
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn secrets_and_header_values_are_never_in_the_database_files() {
    // GIVEN a webhook with a secret, a custom header, and a rotated-out previous secret
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("webhooks.db");
    let store = SqliteStore::open(&path).expect("open");
    let me = owner("user_sealed");
    let mut w = sample_webhook(&me, &BucketId::generate(1_700_000_000), 1_700_000_000);
    w.secret = Secret::new("whsec_Y3VycmVudC1zZWNyZXQtYnl0ZXMtMTIzNDU2".into());
    w.headers =
        CustomHeaders::parse([("X-Api-Key".into(), "header-value-0123456789abcdef".into())])
            .unwrap();
    store.create(&w).await.unwrap();
    let rotated = WebhookPatch {
        secret: Some(Secret::new(
            "whsec_bmV3LXNlY3JldC1ieXRlcy0xMjM0NTY3OA==".into(),
        )),
        previous_secret: Some(Some(PreviousSecret {
            secret: w.secret.clone(),
            expires_at: Timestamp::from_unix(1_900_000_000),
        })),
        ..Default::default()
    };
    store
        .update(&me, &w.id, &rotated, Timestamp::from_unix(1_700_000_100))
        .await
        .unwrap();
    // WHEN the database files are read byte by byte (the WAL included: nothing checkpointed yet)
    let bytes = database_bytes(&path);
    // THEN no secret and no header value is in them, in clear or in their base64's middle
    for needle in [
        "whsec_Y3VycmVudC1zZWNyZXQtYnl0ZXMtMTIzNDU2",
        "Y3VycmVudC1zZWNyZXQ",
        "whsec_bmV3LXNlY3JldC1ieXRlcy0xMjM0NTY3OA==",
        "bmV3LXNlY3JldC1ieXRlcy",
        "header-value-0123456789abcdef",
    ] {
        assert!(
            !contains(&bytes, needle),
            "{needle} found in the database files"
        );
    }
    assert!(contains(&bytes, "sealed:v1:"), "sealed values are there");
    // AND the store reads them back in clear (signing uses the opened secret)
    let back = store.get(&w.id).await.unwrap().expect("found");
    assert_eq!(
        back.secret.expose(),
        "whsec_bmV3LXNlY3JldC1ieXRlcy0xMjM0NTY3OA=="
    );
    assert_eq!(back.previous_secret.unwrap().secret, w.secret);
    assert_eq!(back.headers, w.headers);
    // AND after a restart too (the key file is read again, the same key)
    drop(store);
    let store = SqliteStore::open(&path).expect("reopen");
    assert_eq!(
        store.get(&w.id).await.unwrap().expect("found").headers,
        w.headers
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(dir.path().join("secret-key"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
}

#[tokio::test]
async fn old_secrets_and_deleted_webhooks_do_not_linger_in_the_file() {
    // GIVEN two webhooks, each with a secret and ten 1 KiB header values (a row larger than a
    // page: overflow pages), and their sealed values as stored
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("webhooks.db");
    let store = SqliteStore::open(&path).expect("open");
    let me = owner("user_erased");
    let bucket = BucketId::generate(1_700_000_000);
    let headers =
        CustomHeaders::parse((0..10).map(|i| (format!("X-Key-{i}"), format!("{i}").repeat(1000))))
            .unwrap();
    let mut kept = sample_webhook(&me, &bucket, 1_700_000_000);
    kept.headers = headers.clone();
    let mut deleted = sample_webhook(&me, &bucket, 1_700_000_001);
    deleted.headers = headers;
    store.create(&kept).await.unwrap();
    store.create(&deleted).await.unwrap();
    let sealed = |id: &str| -> (String, String) {
        raw(&path)
            .query_row(
                "SELECT secret, headers FROM webhooks WHERE id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap()
    };
    let (old_secret, old_headers) = sealed(kept.id.as_str());
    let (deleted_secret, deleted_headers) = sealed(deleted.id.as_str());
    let checkpoint = || {
        raw(&path)
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .unwrap()
    };
    checkpoint();
    let tail = |v: &str| v[v.len() - 40..].to_owned();
    assert!(contains(&database_bytes(&path), &tail(&old_secret)));
    // WHEN the first's secret is rotated with no grace (no previous secret kept) and its headers
    // replaced, the second is deleted, and the log is checkpointed into the file
    let rotated = WebhookPatch {
        secret: Some(Secret::new(
            "whsec_bmV3LXNlY3JldC1ieXRlcy0xMjM0NTY3OA==".into(),
        )),
        previous_secret: Some(None),
        headers: Some(CustomHeaders::parse([("X-Key-0".into(), "short".into())]).unwrap()),
        ..Default::default()
    };
    store
        .update(&me, &kept.id, &rotated, Timestamp::from_unix(1_700_000_100))
        .await
        .unwrap();
    store.delete(&me, &deleted.id).await.unwrap();
    checkpoint();
    // THEN none of the old sealed values is anywhere in the files (not even in free space)
    let bytes = database_bytes(&path);
    for (what, value) in [
        ("the rotated-out secret", &old_secret),
        ("the replaced header values", &old_headers),
        ("the deleted webhook's secret", &deleted_secret),
        ("the deleted webhook's header values", &deleted_headers),
    ] {
        // Any 40 characters of the base64 ciphertext would do; both ends are checked.
        let mid = value.len() / 2;
        for needle in [tail(value), value[mid - 20..mid + 20].to_owned()] {
            assert!(!contains(&bytes, &needle), "{what} lingers in the file");
        }
    }
    // AND the new secret is there, sealed
    let (new_secret, _) = sealed(kept.id.as_str());
    assert!(contains(&bytes, &tail(&new_secret)));
}

#[tokio::test]
async fn a_legacy_plaintext_row_still_reads_and_is_sealed_by_its_next_write() {
    // GIVEN a row written before sealing existed: secret and headers in clear
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("webhooks.db");
    let store = SqliteStore::open(&path).expect("open");
    let me = owner("user_legacy");
    let w = sample_webhook(&me, &BucketId::generate(1_700_000_000), 1_700_000_000);
    store.create(&w).await.unwrap();
    raw(&path)
        .execute(
            "UPDATE webhooks SET secret = 'legacy-plain-secret',
                 headers = '[{\"name\":\"X-Token\",\"value\":\"legacy-header-value\"}]'
             WHERE id = ?1",
            [w.id.as_str()],
        )
        .unwrap();
    let fresh = SqliteStore::open(&path).expect("reopen");
    // WHEN it is read THEN it reads as it is (a delivery would sign with it)
    let legacy = fresh.get_for_delivery(&w.id).await.unwrap().expect("found");
    assert_eq!(legacy.secret.expose(), "legacy-plain-secret");
    assert_eq!(legacy.headers.hints()[0].name, "X-Token");
    // WHEN anything of it is changed
    let patch = WebhookPatch {
        description: Some(Some("touched".into())),
        ..Default::default()
    };
    fresh
        .update(&me, &w.id, &patch, Timestamp::from_unix(1_700_000_200))
        .await
        .unwrap();
    // THEN its row holds sealed values only, which read back the same
    let (secret, headers): (String, String) = raw(&path)
        .query_row(
            "SELECT secret, headers FROM webhooks WHERE id = ?1",
            [w.id.as_str()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert!(secret.starts_with("sealed:v1:") && headers.starts_with("sealed:v1:"));
    assert!(!secret.contains("legacy") && !headers.contains("legacy"));
    let after = fresh.get(&w.id).await.unwrap().expect("found");
    assert_eq!(after.secret.expose(), "legacy-plain-secret");
    assert_eq!(after.headers, legacy.headers);
}

#[tokio::test]
async fn a_row_copied_under_another_id_does_not_open_and_says_why() {
    // GIVEN webhook A, and B whose sealed secret is replaced by A's (a copied value)
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("webhooks.db");
    let store = SqliteStore::open(&path).expect("open");
    let me = owner("user_copy");
    let bucket = BucketId::generate(1_700_000_000);
    let a = sample_webhook(&me, &bucket, 1_700_000_000);
    let b = sample_webhook(&me, &bucket, 1_700_000_001);
    store.create(&a).await.unwrap();
    store.create(&b).await.unwrap();
    raw(&path)
        .execute(
            "UPDATE webhooks SET secret = (SELECT secret FROM webhooks WHERE id = ?1) WHERE id = ?2",
            [a.id.as_str(), b.id.as_str()],
        )
        .unwrap();
    let fresh = SqliteStore::open(&path).expect("reopen");
    // WHEN B is read THEN it is Corrupt, naming B and the column, without a panic or a value
    let err = fresh.get(&b.id).await.expect_err("must not open");
    let msg = err.to_string();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
    assert!(
        msg.contains(b.id.as_str()) && msg.contains("secret"),
        "{msg}"
    );
    assert!(msg.contains("does not open"), "{msg}");
    // AND A still reads
    assert_eq!(fresh.get(&a.id).await.unwrap().expect("A").secret, a.secret);
}

#[tokio::test]
async fn a_database_opened_with_another_key_file_names_the_key_instead_of_misreading() {
    // GIVEN a webhook sealed under one key file, and then the key file replaced
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("webhooks.db");
    let store = SqliteStore::open(&path).expect("open");
    let w = sample_webhook(
        &owner("user_k"),
        &BucketId::generate(1_700_000_000),
        1_700_000_000,
    );
    store.create(&w).await.unwrap();
    drop(store);
    std::fs::remove_file(dir.path().join("secret-key")).unwrap();
    // WHEN the database is opened again (a new key is made) and the webhook read
    let store = SqliteStore::open(&path).expect("reopen");
    let err = store.get(&w.id).await.expect_err("another key");
    // THEN the error says the value was sealed with a key this process does not have
    assert!(
        err.to_string().contains("key this process does not have"),
        "{err}"
    );
}

#[tokio::test]
async fn a_publish_skips_a_corrupt_row_and_queues_the_bucket_s_other_deliveries() {
    // GIVEN a bucket with three webhooks on the real file, the middle one damaged behind the
    // store's back (its events column no longer JSON)
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("webhooks.db");
    let db = webhooks_embedded::Database::open(&path).expect("open");
    let store = Arc::new(SqliteStore::new(db.clone()));
    let queue = Arc::new(webhooks_embedded::SqliteQueue::new(db.clone()));
    let me = owner("user_corrupt_publish");
    let bucket = BucketId::generate(1_700_000_000);
    let mut ids = Vec::new();
    for i in 0..3 {
        let w = sample_webhook(&me, &bucket, 1_700_000_400 + i);
        store.create(&w).await.unwrap();
        ids.push(w.id);
    }
    raw(&path)
        .execute(
            "UPDATE webhooks SET events = 'not json' WHERE id = ?1",
            [ids[1].as_str()],
        )
        .unwrap();
    let service = webhooks_core::delivery_service::DeliveryService::new(
        store.clone(),
        Arc::new(webhooks_embedded::SqliteDeliveryLog::new(db)),
        queue.clone(),
        Arc::new(webhooks_core::time::SystemClock),
    );
    let caller = webhooks_core::webhook_service::Caller {
        owner: me.clone(),
        buckets: None,
    };
    let skipped_before = webhooks_core::delivery_service::unreadable_webhooks_skipped();

    // WHEN an alert is published to the bucket
    let event = webhooks_core::delivery_service::ValidEvent {
        bucket_id: bucket.clone(),
        event: EventType::AlertTriggered,
        data: serde_json::json!({"alertId": "507f1f77bcf86cd799439013"}),
        timestamp: Timestamp::from_unix(1_700_000_500),
    };
    let queued = service
        .publish(&caller, vec![event])
        .await
        .expect("the publish succeeds for the readable webhooks");

    // THEN the two good webhooks get a delivery each, in the queue's table; the damaged none
    let got: Vec<_> = queued.iter().map(|q| q.webhook_id.clone()).collect();
    assert_eq!(got, vec![ids[0].clone(), ids[2].clone()]);
    assert_eq!(queue.len().await.unwrap(), 2);
    // AND the skip is counted
    assert!(webhooks_core::delivery_service::unreadable_webhooks_skipped() > skipped_before);
}

#[tokio::test]
async fn the_bucket_bound_is_counted_across_owners_on_the_file() {
    // GIVEN a bucket holding the bound of webhooks of two owners on the real file
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("webhooks.db")).expect("open"));
    let service = webhooks_core::webhook_service::WebhookService::new(
        store.clone(),
        Arc::new(webhooks_core::time::SystemClock),
        webhooks_core::validate::UrlPolicy::PRODUCTION,
    );
    let bucket = "507f1f77bcf86cd799439011";
    let body = || -> webhooks_core::validate::CreateWebhook {
        serde_json::from_value(serde_json::json!({
            "bucketId": bucket,
            "url": "https://your-server.com/webhook",
            "events": ["alert.triggered"],
        }))
        .unwrap()
    };
    let caller = |sub: &str| webhooks_core::webhook_service::Caller {
        owner: owner(sub),
        buckets: None,
    };
    for i in 0..webhooks_core::webhook_service::MAX_WEBHOOKS_PER_BUCKET {
        let who = if i % 2 == 0 { "alice" } else { "bob" };
        service.create(&caller(who), body()).await.unwrap();
    }
    // WHEN a third owner creates one more there
    let err = service.create(&caller("carol"), body()).await.unwrap_err();
    // THEN it is refused and the bucket still holds the bound
    assert!(
        matches!(
            err,
            webhooks_core::webhook_service::ServiceError::BucketFull(_)
        ),
        "{err:?}"
    );
    let b = BucketId::parse(bucket).unwrap();
    assert_eq!(
        store.count_in_bucket(&b, 1_000).await.unwrap(),
        webhooks_core::webhook_service::MAX_WEBHOOKS_PER_BUCKET
    );
}
