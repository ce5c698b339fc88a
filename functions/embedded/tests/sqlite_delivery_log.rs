//! `SqliteDeliveryLog` against a real SQLite file: the shared delivery-log contract, pruning after
//! the retention, and the atomicity of `finish` with the webhook's counters.

use std::path::Path;
use std::sync::Arc;

use webhooks_core::conformance::{delivery_log, sample_webhook};
use webhooks_core::delivery::{ATTEMPT_RETENTION_SECS, AttemptRecord, AttemptStatus, DeadLetter};
use webhooks_core::ports::{DeliveryLog, DeliveryQueue, SubscriptionStore};
use webhooks_core::webhook::{DeliveryStats, DeliveryStatus};
use webhooks_core::{BucketId, DeliveryId, EventType, OwnerId, Timestamp, WebhookId};
use webhooks_embedded::{Database, SqliteDeliveryLog, SqliteQueue, SqliteStore};

mod common;

struct Backend {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    store: SqliteStore,
    log: SqliteDeliveryLog,
    queue: SqliteQueue,
}

fn backend() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("webhooks.db");
    let db = Database::open(&path).expect("open");
    Backend {
        store: SqliteStore::new(db.clone()),
        log: SqliteDeliveryLog::new(db.clone()),
        queue: SqliteQueue::new(db),
        path,
        _dir: dir,
    }
}

fn raw_count(path: &Path, table: &str) -> i64 {
    rusqlite::Connection::open(path)
        .unwrap()
        .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

fn attempt(w: &WebhookId, d: &DeliveryId, n: u32, at: i64) -> AttemptRecord {
    AttemptRecord {
        webhook_id: w.clone(),
        delivery_id: d.clone(),
        generation: 0,
        attempt: n,
        event: EventType::DataReceived,
        status: AttemptStatus::Failed,
        status_code: None,
        duration_ms: 30_000,
        error: Some("timed out after 30 s".into()),
        response_body: None,
        at: Timestamp::from_unix(at),
    }
}

async fn new_webhook(store: &SqliteStore, t: i64) -> WebhookId {
    let w = sample_webhook(
        &OwnerId::parse("user_log").unwrap(),
        &BucketId::generate(t),
        t,
    );
    store.create(&w).await.unwrap();
    w.id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_sqlite_log_meets_the_delivery_log_contract() {
    // GIVEN a store and a log on one SQLite file
    let b = backend();

    // WHEN / THEN: the checks every adapter passes (panics on the first failure)
    delivery_log::run_all(Arc::new(b.store), Arc::new(b.log)).await;
}

#[tokio::test]
async fn attempts_older_than_the_retention_are_pruned_when_newer_ones_are_recorded() {
    // GIVEN an attempt recorded at t
    let b = backend();
    let t = 1_700_000_000;
    let w = new_webhook(&b.store, t).await;
    let (old, new) = (DeliveryId::generate(t), DeliveryId::generate(t + 1));
    b.log
        .record_attempt(&attempt(&w, &old, 1, t))
        .await
        .unwrap();

    // WHEN another is recorded just within, then just past, the retention
    b.log
        .record_attempt(&attempt(&w, &new, 1, t + ATTEMPT_RETENTION_SECS))
        .await
        .unwrap();
    let kept = b.log.attempts_of(&w, &old, 0).await.unwrap().len();
    b.log
        .record_attempt(&attempt(&w, &new, 2, t + ATTEMPT_RETENTION_SECS + 3601))
        .await
        .unwrap();

    // THEN the old attempt was kept exactly 30 days and is gone after; the new ones are kept
    assert_eq!(kept, 1, "not older than the retention yet");
    assert!(b.log.attempts_of(&w, &old, 0).await.unwrap().is_empty());
    assert_eq!(b.log.attempts_of(&w, &new, 0).await.unwrap().len(), 2);
    assert_eq!(b.log.recent_attempts(&w, 10).await.unwrap().len(), 2);
}

#[tokio::test]
async fn pruning_keeps_the_finished_markers_of_deliveries_still_queued() {
    // GIVEN two deliveries finished long ago, one of which still has a message in the queue
    // (a worker stopped for longer than the retention)
    let b = backend();
    let t = 1_700_000_000;
    let w = new_webhook(&b.store, t).await;
    let queued = common::task_for(&w, 1);
    let done = common::task_for(&w, 2);
    b.queue
        .enqueue(std::slice::from_ref(&queued))
        .await
        .unwrap();
    for d in [&queued.delivery_id, &done.delivery_id] {
        // (finished after they were created, as every delivery is)
        let at = Timestamp::from_unix(t + 2);
        assert!(
            b.log
                .finish(&w, d, 0, DeliveryStatus::Success, at)
                .await
                .unwrap()
        );
    }

    // WHEN the log is pruned past the retention
    let pruned = b
        .log
        .prune(Timestamp::from_unix(t + 2 + ATTEMPT_RETENTION_SECS + 1))
        .await
        .unwrap();

    // THEN only the marker of the delivery no message can bring back is gone: the queued one
    // still cannot be counted twice
    assert_eq!(pruned.finished, 1);
    let later = Timestamp::from_unix(t + 2 + ATTEMPT_RETENTION_SECS + 2);
    assert!(
        !b.log
            .finish(&w, &queued.delivery_id, 0, DeliveryStatus::Success, later)
            .await
            .unwrap(),
        "still marked final"
    );
    assert_eq!(raw_count(&b.path, "finished_deliveries"), 1);
}

#[tokio::test]
async fn finish_for_a_deleted_webhook_counts_nothing_and_leaves_no_marker() {
    // GIVEN a delivery of a webhook that no longer exists
    let b = backend();
    let gone = WebhookId::generate(1_600_000_000);
    let d = DeliveryId::generate(1_700_000_000);

    // WHEN it is finished
    let counted = b
        .log
        .finish(
            &gone,
            &d,
            0,
            DeliveryStatus::Failed,
            Timestamp::from_unix(1),
        )
        .await
        .unwrap();

    // THEN nothing is counted, and the marker was rolled back with the counter update
    assert!(!counted);
    assert_eq!(raw_count(&b.path, "finished_deliveries"), 0);
    assert_eq!(raw_count(&b.path, "webhooks"), 0, "no webhook created");
}

#[tokio::test]
async fn history_dead_letters_and_counters_survive_a_restart() {
    // GIVEN an attempt, a dead letter and a finished delivery, then the process stops
    let b = backend();
    let t = 1_700_000_000;
    let w = new_webhook(&b.store, t).await;
    let task = common::task_for(&w, 3);
    let a = attempt(&w, &task.delivery_id, 1, t + 5);
    b.log.record_attempt(&a).await.unwrap();
    let dead = DeadLetter {
        task: task.clone(),
        error: "timed out after 30 s".into(),
        attempts: 1,
        at: Timestamp::from_unix(t + 6),
    };
    b.log.put_dead_letter(&dead).await.unwrap();
    let at = Timestamp::from_unix(t + 6);
    b.log
        .finish(&w, &task.delivery_id, 0, DeliveryStatus::Failed, at)
        .await
        .unwrap();
    let Backend {
        _dir: _kept,
        path,
        store,
        log,
        queue,
    } = b;
    drop((store, log, queue)); // the last handles: the connection closes

    // WHEN the file is opened again
    let db = Database::open(&path).unwrap();
    let (store, log) = (SqliteStore::new(db.clone()), SqliteDeliveryLog::new(db));

    // THEN everything is there, and the delivery is still final
    assert_eq!(log.recent_attempts(&w, 10).await.unwrap(), vec![a]);
    assert_eq!(
        log.dead_letter(&w, &task.delivery_id).await.unwrap(),
        Some(dead)
    );
    let got = store.get(&w).await.unwrap().unwrap();
    assert_eq!(
        got.stats,
        DeliveryStats {
            total_deliveries: 1,
            successful_deliveries: 0,
            failed_deliveries: 1
        }
    );
    assert!(
        !log.finish(&w, &task.delivery_id, 0, DeliveryStatus::Failed, at)
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn the_last_delivery_never_moves_backwards_when_outcomes_commit_out_of_order() {
    // GIVEN a webhook whose newer delivery (a success at t+200) is counted first
    let b = backend();
    let id = new_webhook(&b.store, 1_760_000_000).await;
    let (newer, older) = (
        DeliveryId::generate(1_760_000_002),
        DeliveryId::generate(1_760_000_001),
    );
    let t = |s: i64| Timestamp::from_unix(1_760_000_000 + s);
    assert!(
        b.log
            .finish(&id, &newer, 0, DeliveryStatus::Success, t(200))
            .await
            .unwrap()
    );

    // WHEN an older failure (t+100) is counted after it
    assert!(
        b.log
            .finish(&id, &older, 0, DeliveryStatus::Failed, t(100))
            .await
            .unwrap()
    );

    // THEN both are counted, and the last delivery is still the newer success
    let w = b.store.get(&id).await.unwrap().unwrap();
    assert_eq!(
        (w.stats.total_deliveries, w.stats.failed_deliveries),
        (2, 1)
    );
    assert_eq!(w.last_delivery_at, Some(t(200)));
    assert_eq!(w.last_delivery_status, Some(DeliveryStatus::Success));
}

#[tokio::test]
async fn deleting_a_webhook_removes_its_dead_letters_in_the_same_transaction() {
    // GIVEN a webhook with dead letters on the real file, and another webhook's
    let b = backend();
    let t = 1_760_100_000;
    let (gone, kept) = (
        new_webhook(&b.store, t).await,
        new_webhook(&b.store, t + 1).await,
    );
    for (w, n) in [(&gone, 3), (&kept, 1)] {
        for i in 0..n {
            let dead = DeadLetter {
                task: common::task_for(w, i),
                error: "receiver answered HTTP 500".into(),
                attempts: 4,
                at: Timestamp::from_unix(t + 10),
            };
            b.log.put_dead_letter(&dead).await.unwrap();
        }
    }
    assert_eq!(raw_count(&b.path, "dead_letters"), 4);

    // WHEN the store deletes it (no purge call: the delete alone)
    let owner = OwnerId::parse("user_log").unwrap();
    b.store.delete(&owner, &gone).await.unwrap();

    // THEN its dead letters went with it; the other webhook's stay
    assert_eq!(raw_count(&b.path, "dead_letters"), 1);
    assert!(b.log.dead_letters(&gone, 10).await.unwrap().is_empty());
    assert_eq!(b.log.dead_letters(&kept, 10).await.unwrap().len(), 1);
}
