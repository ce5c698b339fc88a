//! `SqliteIdempotencyStore` and the queue's `enqueue_new_at` on a real SQLite file: the
//! `IdempotencyStore` contract, concurrent claims, leases ended at start, pruning of expired
//! keys, durability across a reopen, and a repeat that never queues a delivery twice.

use std::path::Path;
use std::sync::Arc;

use webhooks_core::Timestamp;
use webhooks_core::delivery::AttemptRecord;
use webhooks_core::delivery::AttemptStatus;
use webhooks_core::idempotency::{
    IdempotencyKey, IdempotencyRecord, IdempotencyStore, KEY_TTL_SECS, KeyState, LEASE_SECS,
    tests_support,
};
use webhooks_core::ports::DeliveryLog;
use webhooks_embedded::{Database, SqliteDeliveryLog, SqliteIdempotencyStore, SqliteQueue};

mod common;
use common::{secs, t0, task};

fn owner(s: &str) -> webhooks_core::OwnerId {
    webhooks_core::OwnerId::parse(s).unwrap()
}

fn key(s: &str) -> IdempotencyKey {
    IdempotencyKey::parse(s).unwrap()
}

fn count(path: &Path) -> i64 {
    rusqlite::Connection::open(path)
        .unwrap()
        .query_row("SELECT count(*) FROM idempotency_keys", [], |r| r.get(0))
        .unwrap()
}

#[tokio::test]
async fn the_sqlite_store_keeps_the_contract_and_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("webhooks.db");
    let store = SqliteIdempotencyStore::new(Database::open(&path).unwrap());
    tests_support::check(&store).await;

    let r = IdempotencyRecord::claim(
        &owner("p"),
        &key("k"),
        "h".into(),
        Timestamp::from_unix(100),
    );
    assert_eq!(store.insert_or_get(&r).await.unwrap(), None);
    drop(store);
    let reopened = SqliteIdempotencyStore::new(Database::open(&path).unwrap());
    assert_eq!(reopened.insert_or_get(&r).await.unwrap(), Some(r));
}

#[tokio::test]
async fn of_100_concurrent_claims_exactly_one_wins() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteIdempotencyStore::new(
        Database::open(&dir.path().join("webhooks.db")).unwrap(),
    ));
    let mut handles = Vec::new();
    for i in 0..100 {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            let r = IdempotencyRecord::claim(
                &owner("p"),
                &key("burst"),
                format!("h{}", i % 2),
                Timestamp::from_unix(1_000),
            );
            store.insert_or_get(&r).await.unwrap().is_none()
        }));
    }
    let mut won = 0;
    for h in handles {
        won += usize::from(h.await.unwrap());
    }
    assert_eq!(won, 1);
}

#[tokio::test]
async fn leases_left_by_a_dead_process_end_at_start_and_answers_stay() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteIdempotencyStore::new(Database::open(&dir.path().join("w.db")).unwrap());
    let now = Timestamp::from_unix(5_000);
    let running = IdempotencyRecord::claim(&owner("p"), &key("running"), "h".into(), now);
    let done = IdempotencyRecord::claim(&owner("p"), &key("done"), "h".into(), now);
    store.insert_or_get(&running).await.unwrap();
    store.insert_or_get(&done).await.unwrap();
    let done2 = done.next(KeyState::Done {
        answer: Default::default(),
    });
    assert!(store.replace(&done2, 1).await.unwrap());

    assert_eq!(store.release_leases().await.unwrap(), 1);

    let probe = IdempotencyRecord::claim(&owner("p"), &key("running"), "h".into(), now);
    let got = store.insert_or_get(&probe).await.unwrap().unwrap();
    assert_eq!(
        got.state,
        KeyState::InProgress {
            until: Timestamp::from_unix(0)
        },
        "the lease is over: a repeat takes over now, not after {LEASE_SECS} s"
    );
    assert_eq!(
        got.version, 1,
        "same version: a repeat's replace still applies"
    );
    let probe = IdempotencyRecord::claim(&owner("p"), &key("done"), "h".into(), now);
    assert_eq!(store.insert_or_get(&probe).await.unwrap(), Some(done2));
}

#[tokio::test]
async fn expired_keys_are_pruned_by_later_claims() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.db");
    let store = SqliteIdempotencyStore::new(Database::open(&path).unwrap());
    for i in 0..10 {
        let r = IdempotencyRecord::claim(
            &owner("p"),
            &key(&format!("old-{i}")),
            "h".into(),
            Timestamp::from_unix(1_000),
        );
        store.insert_or_get(&r).await.unwrap();
    }
    assert_eq!(count(&path), 10);
    let later = IdempotencyRecord::claim(
        &owner("p"),
        &key("new"),
        "h".into(),
        Timestamp::from_unix(1_000 + KEY_TTL_SECS),
    );
    store.insert_or_get(&later).await.unwrap();
    assert_eq!(count(&path), 1);
}

#[tokio::test]
async fn enqueue_new_skips_deliveries_the_queue_holds_or_has_attempted() {
    // GIVEN a queue holding delivery 1, and delivery 2 delivered (attempt recorded, acked)
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(&dir.path().join("w.db")).unwrap();
    let queue = SqliteQueue::new(db.clone());
    let log = SqliteDeliveryLog::new(db);
    let (t1, t2, t3) = (task(1), task(2), task(3));
    queue
        .enqueue_at(&[t1.clone(), t2.clone()], t0())
        .await
        .unwrap();
    let got = queue.receive(10, secs(30), t0()).await.unwrap();
    let second = got.iter().find(|r| r.task == t2).unwrap();
    log.record_attempt(&AttemptRecord {
        delivery_id: t2.delivery_id.clone(),
        webhook_id: t2.webhook_id.clone(),
        generation: 0,
        attempt: 1,
        event: t2.event,
        status: AttemptStatus::Success,
        status_code: Some(200),
        duration_ms: 3,
        error: None,
        response_body: None,
        at: Timestamp::from_unix(1_700_000_000),
    })
    .await
    .unwrap();
    assert!(queue.ack(&second.receipt).await.unwrap());
    assert_eq!(queue.len().await.unwrap(), 1);

    // WHEN a repeat enqueues all three again
    queue
        .enqueue_new_at(&[t1.clone(), t2, t3.clone()], t0())
        .await
        .unwrap();

    // THEN only delivery 3 was added
    assert_eq!(queue.len().await.unwrap(), 2);
    let waiting = queue.receive(10, secs(30), t0() + secs(60)).await.unwrap();
    let mut ids: Vec<String> = waiting
        .iter()
        .map(|r| r.task.delivery_id.to_string())
        .collect();
    ids.sort();
    let mut want = vec![t1.delivery_id.to_string(), t3.delivery_id.to_string()];
    want.sort();
    assert_eq!(ids, want);
}
