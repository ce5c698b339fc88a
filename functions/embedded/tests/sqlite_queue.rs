//! `SqliteQueue` against a real SQLite file: the SQS semantics the worker relies on (visibility
//! timeout, receive count, retry delays, dead letters, redrive), atomic enqueue, wake-ups, and
//! durability across a restart. Time is explicit (`common::t0()` plus offsets).

use std::path::{Path, PathBuf};
use std::time::Duration;

use webhooks_core::delivery::{DeliveryTask, MAX_MESSAGE_BYTES, QueueTask};
use webhooks_core::ports::DeliveryQueue;
use webhooks_embedded::{Database, MAX_RECEIVE_COUNT, SqliteQueue};

mod common;
use common::{ms, secs, t0, task};

const VISIBILITY: Duration = Duration::from_secs(30);

fn open(path: &Path) -> SqliteQueue {
    SqliteQueue::new(Database::open(path).expect("open"))
}

fn new_queue() -> (tempfile::TempDir, PathBuf, SqliteQueue) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("webhooks.db");
    let queue = open(&path);
    (dir, path, queue)
}

fn raw(path: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(path).unwrap()
}

fn ids(tasks: &[DeliveryTask]) -> Vec<String> {
    tasks.iter().map(|t| t.delivery_id.to_string()).collect()
}

#[tokio::test]
async fn an_enqueued_task_is_received_then_gone_once_acknowledged() {
    // GIVEN one enqueued task
    let (_dir, _path, q) = new_queue();
    let t = task(1);
    q.enqueue_at(std::slice::from_ref(&t), t0()).await.unwrap();
    assert_eq!(q.len().await.unwrap(), 1);

    // WHEN a worker receives it
    let got = q.receive(10, VISIBILITY, t0()).await.unwrap();

    // THEN it is the same task, received for the first time, and in flight
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].task, t);
    assert_eq!(got[0].receive_count, 1);
    assert_eq!(q.in_flight(t0()).await.unwrap(), 1);

    // AND once acknowledged it is gone for good
    assert!(q.ack(&got[0].receipt).await.unwrap());
    assert_eq!(q.len().await.unwrap(), 0);
    assert!(q.is_empty().await.unwrap());
    assert!(
        q.receive(10, VISIBILITY, t0() + secs(3600))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(q.next_visible_at().await.unwrap(), None);
    assert!(
        !q.ack(&got[0].receipt).await.unwrap(),
        "a second ack is a no-op"
    );
}

#[tokio::test]
async fn a_received_message_is_invisible_to_other_receivers_while_in_flight() {
    // GIVEN a message received with a 30 s visibility timeout
    let (_dir, _path, q) = new_queue();
    q.enqueue_at(&[task(1)], t0()).await.unwrap();
    assert_eq!(q.receive(10, VISIBILITY, t0()).await.unwrap().len(), 1);

    // WHEN other receivers look before the timeout
    let during = q
        .receive(10, VISIBILITY, t0() + VISIBILITY - ms(1))
        .await
        .unwrap();

    // THEN they get nothing, and the queue says when it comes back
    assert!(during.is_empty());
    assert_eq!(q.len().await.unwrap(), 1);
    assert_eq!(q.in_flight(t0() + secs(1)).await.unwrap(), 1);
    assert_eq!(q.next_visible_at().await.unwrap(), Some(t0() + VISIBILITY));
}

#[tokio::test]
async fn a_message_not_acknowledged_reappears_after_its_visibility_timeout_with_receive_count_2() {
    // GIVEN a message received by a worker that then died without acting on it
    let (_dir, _path, q) = new_queue();
    let t = task(1);
    q.enqueue_at(std::slice::from_ref(&t), t0()).await.unwrap();
    let first = q.receive(10, VISIBILITY, t0()).await.unwrap().remove(0);

    // WHEN the visibility timeout has passed
    let again = q.receive(10, VISIBILITY, t0() + VISIBILITY).await.unwrap();

    // THEN it is handed out again, counted as the second receipt
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].task, t);
    assert_eq!(again[0].receive_count, 2);
    assert_eq!(again[0].receipt.message_id(), first.receipt.message_id());

    // AND the dead worker's stale receipt can no longer act on it; the new one can
    assert!(!q.ack(&first.receipt).await.unwrap());
    assert!(!q.retry_after(&first.receipt, secs(1), t0()).await.unwrap());
    assert!(!q.move_to_dlq(&first.receipt, "stale", t0()).await.unwrap());
    assert_eq!(q.len().await.unwrap(), 1);
    assert!(q.ack(&again[0].receipt).await.unwrap());
    assert_eq!(q.len().await.unwrap(), 0);
}

#[tokio::test]
async fn retry_after_hides_the_message_for_exactly_the_delay() {
    // GIVEN a received message whose attempt failed at t0 + 1 s
    let (_dir, _path, q) = new_queue();
    q.enqueue_at(&[task(1)], t0()).await.unwrap();
    let got = q.receive(10, VISIBILITY, t0()).await.unwrap().remove(0);

    // WHEN the worker schedules the retry 4 s later
    assert!(
        q.retry_after(&got.receipt, secs(4), t0() + secs(1))
            .await
            .unwrap()
    );

    // THEN it is visible again at t0 + 5 s (not after the 30 s visibility timeout), as receipt 2
    assert_eq!(q.next_visible_at().await.unwrap(), Some(t0() + secs(5)));
    let early = q
        .receive(10, VISIBILITY, t0() + secs(5) - ms(1))
        .await
        .unwrap();
    assert!(early.is_empty());
    let later = q.receive(10, VISIBILITY, t0() + secs(5)).await.unwrap();
    assert_eq!(later.len(), 1);
    assert_eq!(later[0].receive_count, 2);
}

#[tokio::test]
async fn dead_letter_moves_the_message_to_the_dead_letter_table_with_its_error() {
    // GIVEN a received message the dispatcher gave up on
    let (_dir, _path, q) = new_queue();
    let t = task(1);
    q.enqueue_at(std::slice::from_ref(&t), t0()).await.unwrap();
    let got = q.receive(10, VISIBILITY, t0()).await.unwrap().remove(0);

    // WHEN the worker dead-letters it
    let moved = q
        .move_to_dlq(&got.receipt, "receiver answered HTTP 500", t0() + secs(2))
        .await
        .unwrap();

    // THEN it left the queue and is in the dead-letter table, body unchanged
    assert!(moved);
    assert_eq!(q.len().await.unwrap(), 0);
    assert_eq!(q.dlq_len().await.unwrap(), 1);
    let dead = q.dlq_messages(10).await.unwrap().remove(0);
    assert_eq!(dead.message_id, got.receipt.message_id());
    assert_eq!(dead.body, QueueTask::DeliveryV1(t).to_json());
    assert_eq!(dead.error, "receiver answered HTTP 500");
    assert_eq!(dead.receive_count, 1);
    assert_eq!((dead.enqueued_at, dead.dead_at), (t0(), t0() + secs(2)));
    assert!(
        q.receive(10, VISIBILITY, t0() + secs(3600))
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn the_redrive_guard_marks_a_message_received_more_than_the_limit_for_finishing() {
    // GIVEN a message received the limit of times and never acted on (a worker crashing on it)
    let (_dir, _path, q) = new_queue();
    q.enqueue_at(&[task(1)], t0()).await.unwrap();
    for n in 1..=MAX_RECEIVE_COUNT {
        let now = t0() + secs(u64::from(n) * 2);
        let got = q.receive(10, secs(1), now).await.unwrap();
        assert_eq!(got.len(), 1, "receipt {n}");
        assert_eq!(got[0].receive_count, n);
        assert!(!got[0].redriven, "receipt {n}");
    }

    // WHEN it becomes visible once more
    let got = q.receive(10, secs(1), t0() + secs(3600)).await.unwrap();

    // THEN it is handed out marked redriven (to be finished, not delivered), and the worker's
    // dead-letter move takes it out of the queue saying why
    assert_eq!(got.len(), 1);
    assert!(got[0].redriven);
    assert_eq!(got[0].receive_count, MAX_RECEIVE_COUNT + 1);
    let reason = webhooks_core::dispatch::redriven_error();
    assert!(
        q.move_to_dlq(&got[0].receipt, &reason, t0() + secs(3600))
            .await
            .unwrap()
    );
    assert_eq!(q.len().await.unwrap(), 0);
    let dead = q.dlq_messages(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].receive_count, MAX_RECEIVE_COUNT + 1);
    assert!(dead[0].error.contains("redrive"), "{}", dead[0].error);
}

#[tokio::test]
async fn an_unreadable_message_is_dead_lettered_with_the_reason_and_the_rest_delivered() {
    // GIVEN a good message between two that no build can read (written behind the queue's back)
    let (_dir, path, q) = new_queue();
    let bad = ["{not json", r#"{"type":"delivery.v9","deliveryId":"x"}"#];
    raw(&path)
        .execute(
            "INSERT INTO queue_messages (body, visible_at, enqueued_at) VALUES (?1, 0, 0)",
            [bad[0]],
        )
        .unwrap();
    let good = task(1);
    q.enqueue_at(std::slice::from_ref(&good), t0())
        .await
        .unwrap();
    raw(&path)
        .execute(
            "INSERT INTO queue_messages (body, visible_at, enqueued_at) VALUES (?1, 0, 0)",
            [bad[1]],
        )
        .unwrap();

    // WHEN a worker receives
    let got = q.receive(10, VISIBILITY, t0()).await.unwrap();

    // THEN it gets only the good one; the others are kept, unchanged, with the reason
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].task, good);
    let dead = q.dlq_messages(10).await.unwrap();
    let mut bodies: Vec<&str> = dead.iter().map(|d| d.body.as_str()).collect();
    bodies.sort();
    let mut want = bad.to_vec();
    want.sort();
    assert_eq!(bodies, want);
    assert!(
        dead.iter()
            .all(|d| d.error.starts_with("unreadable message")),
        "{dead:?}"
    );
    assert_eq!(q.len().await.unwrap(), 1, "only the good one is left");
}

#[tokio::test]
async fn receive_takes_at_most_max_messages_oldest_first() {
    // GIVEN three tasks enqueued in order
    let (_dir, _path, q) = new_queue();
    let tasks = [task(1), task(2), task(3)];
    q.enqueue_at(&tasks, t0()).await.unwrap();

    // WHEN a worker with two free slots receives, then again
    let first = q.receive(2, VISIBILITY, t0()).await.unwrap();
    let second = q.receive(2, VISIBILITY, t0()).await.unwrap();

    // THEN it gets two, then the third
    let got: Vec<DeliveryTask> = first
        .iter()
        .chain(&second)
        .map(|r| r.task.clone())
        .collect();
    assert_eq!(first.len(), 2);
    assert_eq!(got, tasks.to_vec());
    assert!(q.receive(0, VISIBILITY, t0()).await.unwrap().is_empty());
}

#[tokio::test]
async fn enqueue_is_all_or_nothing_and_a_failure_lists_every_task() {
    // GIVEN a batch whose third insert fails (a trigger stands in for a disk error)
    let (_dir, path, q) = new_queue();
    let batch = [task(1), task(2), task(3), task(4)];
    raw(&path)
        .execute_batch(&format!(
            "CREATE TRIGGER fail_third BEFORE INSERT ON queue_messages
             WHEN NEW.delivery_id = '{}' BEGIN SELECT RAISE(ABORT, 'disk on fire'); END;",
            batch[2].delivery_id
        ))
        .unwrap();

    // WHEN it is enqueued
    let err = q.enqueue(&batch).await.expect_err("third insert fails");

    // THEN nothing was queued, and the error names all four
    assert_eq!(q.len().await.unwrap(), 0, "the first two were rolled back");
    let failed: Vec<String> = err.failed.iter().map(ToString::to_string).collect();
    assert_eq!(failed, ids(&batch));
    assert!(err.reason.contains("disk on fire"), "{}", err.reason);

    // AND once the fault is gone, the same batch goes in whole
    raw(&path).execute_batch("DROP TRIGGER fail_third").unwrap();
    q.enqueue(&batch).await.unwrap();
    assert_eq!(q.len().await.unwrap(), 4);
}

#[tokio::test]
async fn an_oversized_task_is_refused_and_the_others_are_queued() {
    // GIVEN a batch with one task over SQS's message limit
    let (_dir, _path, q) = new_queue();
    let mut big = task(2);
    big.body = format!(r#"{{"s":"{}"}}"#, "x".repeat(MAX_MESSAGE_BYTES));
    let batch = [task(1), big.clone(), task(3)];

    // WHEN it is enqueued
    let err = q.enqueue(&batch).await.expect_err("too large");

    // THEN only the big one is reported, and the others are queued
    assert_eq!(err.failed, vec![big.delivery_id]);
    assert_eq!(q.len().await.unwrap(), 2);
}

#[tokio::test]
async fn enqueue_wakes_a_waiting_worker_at_once() {
    // GIVEN a worker waiting for work
    let (_dir, _path, q) = new_queue();
    let waiter = tokio::spawn({
        let q = q.clone();
        async move { q.notified().await }
    });
    tokio::task::yield_now().await;

    // WHEN a task is enqueued
    q.enqueue(&[task(1)]).await.unwrap();

    // THEN the waiter wakes (well before any poll interval)
    tokio::time::timeout(secs(5), waiter)
        .await
        .expect("woken")
        .unwrap();
}

#[tokio::test]
async fn queued_and_in_flight_messages_and_dead_letters_survive_closing_and_reopening() {
    // GIVEN one waiting message, one in flight and one dead letter, then the process stops
    let (_dir, path, q) = new_queue();
    let (waiting, in_flight, dead) = (task(1), task(2), task(3));
    q.enqueue_at(&[in_flight.clone(), dead.clone()], t0())
        .await
        .unwrap();
    let got = q.receive(2, VISIBILITY, t0()).await.unwrap();
    assert_eq!(got.len(), 2);
    assert!(
        q.move_to_dlq(&got[1].receipt, "gave up", t0())
            .await
            .unwrap()
    );
    q.enqueue_at(std::slice::from_ref(&waiting), t0() + secs(1))
        .await
        .unwrap();
    drop(q);

    // WHEN the file is opened again
    let q = open(&path);

    // THEN the waiting message is there at once, the in-flight one after its visibility
    // timeout (with its receive count kept), and the dead letter is kept
    assert_eq!(q.len().await.unwrap(), 2);
    assert_eq!(q.dlq_len().await.unwrap(), 1);
    let now = q.receive(10, VISIBILITY, t0() + secs(1)).await.unwrap();
    assert_eq!(now.len(), 1);
    assert_eq!((&now[0].task, now[0].receive_count), (&waiting, 1));
    let later = q.receive(10, VISIBILITY, t0() + VISIBILITY).await.unwrap();
    assert_eq!(later.len(), 1);
    assert_eq!((&later[0].task, later[0].receive_count), (&in_flight, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_answered_before_their_commit_are_still_exclusive_and_then_durable() {
    // GIVEN 50 queued tasks
    let (_dir, path, q) = new_queue();
    let tasks: Vec<DeliveryTask> = (1..=50).map(task).collect();
    q.enqueue_at(&tasks, t0()).await.unwrap();

    // WHEN four receivers take them at once, each answered before its receipt is committed
    let mut receivers = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let q = q.clone();
        receivers.spawn(async move {
            let mut got = Vec::new();
            loop {
                let batch = q
                    .receive_answered_before_commit(7, VISIBILITY, t0())
                    .await
                    .unwrap();
                if batch.is_empty() {
                    return got;
                }
                got.extend(batch);
            }
        });
    }
    let received: Vec<_> = receivers.join_all().await.into_iter().flatten().collect();

    // THEN every task went to exactly one receiver, received for the first time
    let mut got: Vec<String> = received
        .iter()
        .map(|r| r.task.delivery_id.to_string())
        .collect();
    got.sort();
    let mut want = ids(&tasks);
    want.sort();
    assert_eq!(got, want);
    assert!(received.iter().all(|r| r.receive_count == 1));

    // AND once a later write has been answered, the receipts are committed: in flight for
    // every reader, and on disk for another connection
    assert!(q.ack(&received[0].receipt).await.unwrap());
    assert_eq!(q.in_flight(t0()).await.unwrap(), 49);
    let on_disk: i64 = raw(&path)
        .query_row(
            "SELECT count(*) FROM queue_messages WHERE receive_count = 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(on_disk, 49);
}

#[tokio::test]
async fn a_parked_webhooks_messages_are_not_handed_out_until_the_park_ends_and_others_are() {
    // GIVEN webhook A with three queued messages (one waiting, one in flight, one waiting for
    // its retry at t0 + 5 s) and webhook B with two
    let (_dir, _path, q) = new_queue();
    let (a, b) = (
        webhooks_core::WebhookId::generate(1_700_000_001),
        webhooks_core::WebhookId::generate(1_700_000_002),
    );
    let a_tasks: Vec<DeliveryTask> = (1..=3).map(|n| common::task_for(&a, n)).collect();
    q.enqueue_at(&a_tasks, t0()).await.unwrap();
    let taken = q.receive(2, VISIBILITY, t0()).await.unwrap();
    assert!(
        q.retry_after(&taken[1].receipt, secs(5), t0())
            .await
            .unwrap()
    );
    let b_tasks: Vec<DeliveryTask> = (4..=5).map(|n| common::task_for(&b, n)).collect();
    q.enqueue_at(&b_tasks, t0()).await.unwrap();

    // WHEN A is parked until t0 + 20 s, and a message for A is enqueued meanwhile
    let until = t0() + secs(20);
    let moved = q.park(&a, until, t0() + secs(1)).await.unwrap();
    assert_eq!(
        moved, 2,
        "the waiting one and the retry; not the one in flight"
    );
    let during = common::task_for(&a, 6);
    q.enqueue_at(std::slice::from_ref(&during), t0() + secs(2))
        .await
        .unwrap();
    assert_eq!(
        q.parked_until(&a, t0() + secs(2)).await.unwrap(),
        Some(until)
    );
    assert_eq!(q.parked_until(&b, t0() + secs(2)).await.unwrap(), None);

    // THEN only B's messages are handed out before then, however long one waits
    let before = q.receive(10, VISIBILITY, t0() + secs(6)).await.unwrap();
    assert_eq!(ids_of(&before), ids(&b_tasks));
    assert!(
        q.receive(10, VISIBILITY, until - ms(1))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(q.next_visible_at().await.unwrap(), Some(until));

    // AND at its end A's three come back, none of its receipts used by parking (the retried
    // one on its second receipt), and the one in flight stays in flight
    let after = q.receive(10, VISIBILITY, until).await.unwrap();
    let mut got: Vec<(String, u32)> = after
        .iter()
        .map(|m| (m.task.delivery_id.to_string(), m.receive_count))
        .collect();
    got.sort();
    let mut want = vec![
        (a_tasks[1].delivery_id.to_string(), 2),
        (a_tasks[2].delivery_id.to_string(), 1),
        (during.delivery_id.to_string(), 1),
    ];
    want.sort();
    assert_eq!(got, want);
    assert!(q.ack(&taken[0].receipt).await.unwrap(), "still its receipt");
    assert_eq!(q.parked_until(&a, until).await.unwrap(), None, "over");
    q.enqueue_at(&[common::task_for(&a, 7)], until)
        .await
        .unwrap();
    assert_eq!(q.receive(10, VISIBILITY, until).await.unwrap().len(), 1);
}

fn ids_of(received: &[webhooks_embedded::Received]) -> Vec<String> {
    received
        .iter()
        .map(|m| m.task.delivery_id.to_string())
        .collect()
}

#[tokio::test]
async fn a_park_survives_a_restart_and_only_a_later_end_moves_it() {
    // GIVEN webhook A parked until t0 + 20 s with a queued message
    let (_dir, path, q) = new_queue();
    let a = webhooks_core::WebhookId::generate(1_700_000_001);
    q.enqueue_at(&[common::task_for(&a, 1)], t0())
        .await
        .unwrap();
    assert_eq!(q.park(&a, t0() + secs(20), t0()).await.unwrap(), 1);
    drop(q);

    // WHEN the process restarts and enqueues another message for A
    let q = open(&path);
    q.enqueue_at(&[common::task_for(&a, 2)], t0() + secs(1))
        .await
        .unwrap();

    // THEN both wait for the park's end
    assert!(
        q.receive(10, VISIBILITY, t0() + secs(19))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(q.next_visible_at().await.unwrap(), Some(t0() + secs(20)));

    // AND a park ending sooner, or within the slack, changes nothing; a later one moves both
    assert_eq!(
        q.park(&a, t0() + secs(10), t0() + secs(2)).await.unwrap(),
        0
    );
    assert_eq!(
        q.park(
            &a,
            t0() + secs(20) + webhooks_embedded::queue::PARK_SLACK,
            t0() + secs(2)
        )
        .await
        .unwrap(),
        0
    );
    assert_eq!(
        q.parked_until(&a, t0() + secs(2)).await.unwrap(),
        Some(t0() + secs(20))
    );
    assert_eq!(
        q.park(&a, t0() + secs(40), t0() + secs(3)).await.unwrap(),
        2
    );
    assert!(
        q.receive(10, VISIBILITY, t0() + secs(39))
            .await
            .unwrap()
            .is_empty()
    );
    let back = q.receive(10, VISIBILITY, t0() + secs(40)).await.unwrap();
    assert_eq!(back.len(), 2);
    assert!(back.iter().all(|m| m.receive_count == 1));
}
