//! The delivery Lambda's handler end to end: messages enqueued by `SqsDeliveryQueue` into a
//! moto queue built from `template.yaml`, received as the event source receives them, handled
//! by `webhooks_delivery::handle` with the real reqwest sender against receivers on 127.0.0.1,
//! recorded in DynamoDB (moto), retried through the message visibility, dead-lettered into the
//! moto dead-letter queue.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::SqsEvent;
use webhooks_core::conformance::sample_webhook;
use webhooks_core::delivery::{AttemptRecord, AttemptStatus, DeadLetter, DeliveryTask, QueueTask};
use webhooks_core::delivery_service::DeliveryService;
use webhooks_core::flow::Lane;
use webhooks_core::ports::Clock;
use webhooks_core::ports::{DeliveryLog, DeliveryQueue, SubscriptionStore};
use webhooks_core::signing::guide_signature;
use webhooks_core::time::SystemClock;
use webhooks_core::webhook::{DeliveryStats, DeliveryStatus, RetryConfig};
use webhooks_core::webhook_service::Caller;

use crate::helpers::lambda::{Emulator, aws_env, function_binary};
use crate::helpers::receiver::closing_url;
use crate::helpers::world::{World, every_second, failures, message_id_of};
use crate::helpers::{fixtures, moto, poll_until};

const TIMEOUT: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_to_a_200_receiver_is_acknowledged_and_counted_a_success() {
    // GIVEN a webhook whose receiver answers 200, and its delivery on the queue
    let world = World::create(TIMEOUT).await;
    let w = world
        .webhook(&world.receiver.url("/ok"), RetryConfig::default())
        .await;
    let task = world.task(&w);
    let records = world.queued(&task).await;

    // WHEN the batch is handled
    let response = world.invoke(records).await;

    // THEN the message is acknowledged (and so deleted), the receiver got the body signed, and
    // the webhook counts one success
    assert!(failures(&response).is_empty(), "{response:?}");
    let got = world.receiver.at("/ok");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body_text(), task.body);
    assert_eq!(
        got[0].header("x-webhook-id"),
        Some(task.delivery_id.as_str())
    );
    assert_eq!(got[0].header("x-webhook-attempt"), Some("1"));
    assert!(
        got[0]
            .header("x-webhook-signature")
            .unwrap()
            .starts_with("sha256=")
    );
    let stored = world.get(&w).await;
    assert_eq!(
        stored.stats,
        DeliveryStats {
            total_deliveries: 1,
            successful_deliveries: 1,
            failed_deliveries: 0
        }
    );
    assert_eq!(stored.last_delivery_status, Some(DeliveryStatus::Success));
    assert_eq!(world.queues.counts(&world.queues.url).await, (0, 0));
    let history = world.log.recent_attempts(&w.id, 10).await.expect("history");
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].status_code, Some(200));
    assert_eq!(
        history[0].response_body.as_deref(),
        Some(r#"{"received":true}"#)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_500_receiver_is_retried_through_the_visibility_and_then_dead_lettered() {
    // GIVEN a webhook whose receiver answers 500, 3 retries 1 s apart, and its delivery queued
    let world = World::create(TIMEOUT).await;
    let w = world
        .webhook(&world.receiver.url("/fail"), every_second(3))
        .await;
    let task = world.task(&w);
    world
        .queues
        .queue
        .enqueue(std::slice::from_ref(&task))
        .await
        .expect("enqueue");

    let mut handled_at: Option<Instant> = None;
    for receipt in 1..=4u32 {
        // WHEN the message is received (after the retry delay, for the later receipts)
        let records = world
            .queues
            .receive_exactly(1, Duration::from_secs(15))
            .await;
        if let Some(t) = handled_at {
            let waited = t.elapsed();
            assert!(
                waited >= Duration::from_millis(800) && waited < Duration::from_secs(10),
                "receipt {receipt} came back after {waited:?}, not after the 1 s retry delay"
            );
        }
        assert_eq!(
            records[0].attributes["ApproximateReceiveCount"],
            receipt.to_string()
        );
        let id = records[0].message_id.clone().unwrap();
        // AND handled
        let response = world.invoke(records).await;
        handled_at = Some(Instant::now());

        if receipt < 4 {
            // THEN it is a batch item failure and invisible for now (the visibility changed)
            assert_eq!(failures(&response), vec![id], "receipt {receipt}");
            assert!(
                world.queues.receive_records(1, 0).await.is_empty(),
                "invisible right after receipt {receipt}"
            );
        } else {
            // THEN the last one is acknowledged after moving to the dead-letter queue
            assert!(failures(&response).is_empty(), "{response:?}");
        }
    }

    // THEN the DLQ holds the delivery with its last error, attempts and id
    let dead = world
        .queues
        .receive_raw(&world.queues.dlq_url, 1, 2)
        .await
        .pop()
        .expect("a message in the dead-letter queue");
    assert_eq!(
        QueueTask::from_json(dead.body.as_deref().unwrap())
            .unwrap()
            .delivery(),
        &task
    );
    let attrs = dead.message_attributes.unwrap_or_default();
    assert_eq!(
        attrs["error"].string_value.as_deref(),
        Some("receiver answered HTTP 500")
    );
    assert_eq!(attrs["attempts"].string_value.as_deref(), Some("4"));
    assert_eq!(
        attrs["deliveryId"].string_value.as_deref(),
        Some(task.delivery_id.as_str())
    );
    // AND the receiver got attempts 1 to 4, the stats count one failure, the log has the dead
    // letter and four failed attempts, and the delivery queue is empty
    let attempts: Vec<String> = world
        .receiver
        .at("/fail")
        .iter()
        .map(|r| r.header("x-webhook-attempt").unwrap().to_owned())
        .collect();
    assert_eq!(attempts, ["1", "2", "3", "4"]);
    let stored = world.get(&w).await;
    assert_eq!(
        stored.stats,
        DeliveryStats {
            total_deliveries: 1,
            successful_deliveries: 0,
            failed_deliveries: 1
        }
    );
    assert_eq!(stored.last_delivery_status, Some(DeliveryStatus::Failed));
    let dead_letter = world
        .log
        .dead_letter(&w.id, &task.delivery_id)
        .await
        .expect("log")
        .expect("dead letter in the log");
    assert_eq!((dead_letter.attempts, &dead_letter.task), (4, &task));
    let recorded = world
        .log
        .attempts_of(&w.id, &task.delivery_id, 0)
        .await
        .expect("attempts");
    assert_eq!(recorded.len(), 4);
    assert!(recorded.iter().all(|a| a.status == AttemptStatus::Failed));
    assert_eq!(world.queues.counts(&world.queues.url).await, (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_410_receiver_disables_the_webhook_and_the_delivery_is_dead_lettered() {
    // GIVEN a webhook whose receiver answers 410 Gone
    let world = World::create(TIMEOUT).await;
    let w = world
        .webhook(&world.receiver.url("/gone"), RetryConfig::default())
        .await;
    world
        .queues
        .queue
        .enqueue(&[world.task(&w)])
        .await
        .expect("enqueue");
    let records = world
        .queues
        .receive_exactly(1, Duration::from_secs(10))
        .await;

    // WHEN handled
    let response = world.invoke(records).await;

    // THEN acknowledged at once (no retry), the webhook is disabled, the failure counted, and
    // the delivery is in the dead-letter queue
    assert!(failures(&response).is_empty(), "{response:?}");
    let stored = world.get(&w).await;
    assert!(!stored.active, "disabled");
    assert_eq!(stored.stats.failed_deliveries, 1);
    let dead = world
        .queues
        .receive_raw(&world.queues.dlq_url, 1, 2)
        .await
        .pop()
        .expect("in the DLQ");
    let error = dead.message_attributes.unwrap()["error"]
        .string_value
        .clone()
        .unwrap();
    assert!(error.contains("410"), "{error}");
    assert_eq!(world.receiver.at("/gone").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_batch_finishes_in_about_one_timeout_with_each_record_on_its_own() {
    // GIVEN one batch of deliveries to receivers answering 200, 500, never (three of them) and
    // closing the connection, with a 2 s send timeout
    let world = World::create(TIMEOUT).await;
    let closed = closing_url().await;
    let urls = [
        world.receiver.url("/ok"),
        world.receiver.url("/fail"),
        world.receiver.url("/hang"),
        world.receiver.url("/hang"),
        world.receiver.url("/hang"),
        closed,
    ];
    let mut webhooks = Vec::new();
    let mut tasks = Vec::new();
    for url in &urls {
        let w = world.webhook(url, RetryConfig::default()).await;
        tasks.push(world.task(&w));
        webhooks.push(w);
    }
    world.queues.queue.enqueue(&tasks).await.expect("enqueue");
    let records = world
        .queues
        .receive_exactly(6, Duration::from_secs(10))
        .await;

    // WHEN the batch is handled
    let started = Instant::now();
    let response = world.invoke(records.clone()).await;
    let took = started.elapsed();

    // THEN it took about one timeout, not the sum of three
    assert!(
        took >= TIMEOUT && took < TIMEOUT + Duration::from_secs(3),
        "the batch took {took:?}"
    );
    // AND only the 200 is acknowledged; every other record is a failure of its own
    let mut want: Vec<String> = tasks[1..]
        .iter()
        .map(|t| message_id_of(&records, t))
        .collect();
    want.sort();
    assert_eq!(failures(&response), want);
    assert_eq!(world.get(&webhooks[0]).await.stats.successful_deliveries, 1);
    // AND each failure is recorded with its own cause
    let error_of = |i: usize| {
        let (log, w, t) = (world.log.clone(), webhooks[i].id.clone(), tasks[i].clone());
        async move {
            let a = log
                .attempts_of(&w, &t.delivery_id, 0)
                .await
                .expect("attempts");
            assert_eq!(a.len(), 1, "one attempt of record {i}");
            a[0].error.clone().unwrap_or_default()
        }
    };
    assert_eq!(error_of(1).await, "receiver answered HTTP 500");
    for i in 2..5 {
        assert_eq!(error_of(i).await, "timed out after 2 s");
    }
    let closed_error = error_of(5).await;
    assert!(
        !closed_error.is_empty() && !closed_error.contains("timed out"),
        "{closed_error}"
    );
    // AND none is final yet: the failures come back after their 1 s delay
    for w in &webhooks[1..] {
        assert_eq!(world.get(w).await.stats.total_deliveries, 0);
    }
    let back = world
        .queues
        .receive_exactly(5, Duration::from_secs(15))
        .await;
    assert!(
        back.iter()
            .all(|r| r.attributes["ApproximateReceiveCount"] == "2")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_message_goes_to_the_dead_letter_queue_and_is_acknowledged() {
    // GIVEN a message on the delivery queue that is not a QueueTask
    let world = World::create(TIMEOUT).await;
    world
        .queues
        .client
        .send_message()
        .queue_url(&world.queues.url)
        .message_body(r#"{"type":"delivery.v0","hello":"world"}"#)
        .send()
        .await
        .expect("send");
    let records = world
        .queues
        .receive_exactly(1, Duration::from_secs(10))
        .await;

    // WHEN handled
    let response = world.invoke(records).await;

    // THEN it is acknowledged, and the DLQ holds it as it was with the reason
    assert!(failures(&response).is_empty(), "{response:?}");
    let dead = world
        .queues
        .receive_raw(&world.queues.dlq_url, 1, 2)
        .await
        .pop()
        .expect("in the DLQ");
    assert_eq!(
        dead.body.as_deref(),
        Some(r#"{"type":"delivery.v0","hello":"world"}"#)
    );
    let attrs = dead.message_attributes.unwrap();
    assert!(
        attrs["error"]
            .string_value
            .as_deref()
            .unwrap()
            .contains("unreadable queue message"),
        "{attrs:?}"
    );
    // (no attempt was made: `attempts` counts requests sent, not receives)
    assert_eq!(attrs["attempts"].string_value.as_deref(), Some("0"));
    assert_eq!(world.queues.counts(&world.queues.url).await, (0, 0));
}

/// The README's "Run a function locally" path, for real: the `webhooks-delivery` binary as a
/// process under cargo-lambda's Lambda emulator (whose deadline header is a moment in 1970), each
/// SQS fixture sent with `cargo lambda invoke`, its webhooks seeded and pointed at a receiver.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sqs_event_fixture_is_delivered_by_the_real_binary_under_cargo_lambda() {
    let emulator = Emulator::start().await;
    let binary = function_binary("webhooks-delivery");
    let files = fixtures::sqs_fixture_files();
    assert!(files.len() >= 3, "{files:?}");
    for file in files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        // GIVEN the fixture's webhooks, pointed at a receiver, and a cold function on them
        let world = World::create(TIMEOUT).await;
        let webhooks = fixtures::seed_sqs_webhooks(&*world.store, &world.receiver.url("/ok")).await;
        let mut env = world.function_env(TIMEOUT);
        env.extend(aws_env(moto::endpoint()));
        let function = emulator.run(&binary, &env);
        // WHEN the fixture is invoked as a user invokes it
        let answer = emulator.invoke(&file, &function).await;
        // THEN no record comes back, and the receiver got each delivery once, signed
        assert_eq!(
            answer,
            serde_json::json!({ "batchItemFailures": [] }),
            "{name}: {}",
            function.log()
        );
        let tasks = fixtures::tasks_of(&file);
        let got = world.receiver.at("/ok");
        assert_eq!(got.len(), tasks.len(), "{name}");
        for task in &tasks {
            let secret = &webhooks
                .iter()
                .find(|w| w.id == task.webhook_id)
                .expect("seeded")
                .secret;
            let r = got
                .iter()
                .find(|r| r.body_text() == task.body)
                .unwrap_or_else(|| panic!("{name}: {} not received", task.delivery_id));
            assert_eq!(
                r.header("x-webhook-signature"),
                Some(guide_signature(secret, task.body.as_bytes()).as_str()),
                "{name}"
            );
            assert_eq!(
                r.header("x-webhook-id"),
                Some(task.delivery_id.as_str()),
                "{name}"
            );
        }
        function.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sqs_event_fixture_runs_through_the_handler() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../events");
    let mut fixtures: Vec<_> = std::fs::read_dir(&dir)
        .expect("events/")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("sqs-") && n.ends_with(".json"))
        })
        .collect();
    fixtures.sort();
    assert!(fixtures.len() >= 3, "{fixtures:?}");

    for path in fixtures {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let event: SqsEvent = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
            .unwrap_or_else(|e| panic!("{name} is not an SQS event: {e}"));
        let records = event.records;

        // (The fixtures' receipt handles are made up: the records are handed to the handler as
        // `sam local invoke -e` would, not received from the queue.)
        // GIVEN fresh tables where none of the fixture's webhooks exist
        let world = World::create(TIMEOUT).await;
        // WHEN the fixture is handled
        let response = world.handle(records.clone()).await;
        // THEN every record is dropped cleanly: acknowledged, nothing sent
        assert_eq!(
            serde_json::to_value(&response).unwrap(),
            serde_json::json!({ "batchItemFailures": [] }),
            "{name}"
        );
        assert!(world.receiver.at("/ok").is_empty(), "{name}");

        // GIVEN the fixture's webhooks exist, pointed at a 200 receiver
        for r in &records {
            let task = QueueTask::from_json(r.body.as_deref().unwrap()).unwrap();
            let id = task.delivery().webhook_id.clone();
            if world.store.get(&id).await.unwrap().is_none() {
                let mut w = sample_webhook(&world.owner, &world.bucket, 1_705_314_600);
                w.id = id;
                w.url = world.receiver.url("/ok");
                w.events = vec![task.delivery().event];
                world.store.create(&w).await.expect("create");
            }
        }
        // WHEN handled
        let response = world.handle(records.clone()).await;
        // THEN every record is delivered with its exact body and acknowledged
        assert_eq!(
            serde_json::to_value(&response).unwrap(),
            serde_json::json!({ "batchItemFailures": [] }),
            "{name}"
        );
        let mut sent: Vec<String> = world
            .receiver
            .at("/ok")
            .iter()
            .map(|r| r.body_text().to_owned())
            .collect();
        let mut want: Vec<String> = records
            .iter()
            .map(|r| {
                QueueTask::from_json(r.body.as_deref().unwrap())
                    .unwrap()
                    .delivery()
                    .body
                    .clone()
            })
            .collect();
        sent.sort();
        want.sort();
        assert_eq!(sent, want, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_message_after_success_is_not_sent_or_counted_again() {
    // GIVEN a delivery that succeeded but whose message came back (the ack was lost)
    let world = World::create(TIMEOUT).await;
    let w = world
        .webhook(&world.receiver.url("/ok"), RetryConfig::default())
        .await;
    world
        .queues
        .queue
        .enqueue(&[world.task(&w)])
        .await
        .expect("enqueue");
    let records = world
        .queues
        .receive_exactly(1, Duration::from_secs(10))
        .await;
    let response = world.handle(records.clone()).await;
    assert!(failures(&response).is_empty());
    // (no delete: the event source crashed) — make it visible again at once
    world
        .queues
        .worker
        .change_visibility(
            Lane::Main,
            records[0].receipt_handle.as_deref().unwrap(),
            Duration::ZERO,
        )
        .await
        .expect("visible again");

    // WHEN it is received and handled again
    let again = poll_until(
        "the message to come back",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || async { world.queues.receive_records(1, 0).await.pop() },
    )
    .await;
    let response = world.invoke(vec![again]).await;

    // THEN it is acknowledged without a second request, and counted once
    assert!(failures(&response).is_empty());
    assert_eq!(world.receiver.at("/ok").len(), 1);
    assert_eq!(world.get(&w).await.stats.total_deliveries, 1);
    assert_eq!(world.queues.counts(&world.queues.url).await, (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_redeliveries_of_dead_letters_queue_each_once_on_dynamodb_and_sqs() {
    // GIVEN a webhook with five dead letters in DynamoDB
    let world = World::create(TIMEOUT).await;
    let w = world
        .webhook(&world.receiver.url("/ok"), RetryConfig::default())
        .await;
    for _ in 0..5 {
        let dead = DeadLetter {
            task: world.task(&w),
            error: "receiver answered HTTP 500".into(),
            attempts: 4,
            at: SystemClock.now(),
        };
        world.log.put_dead_letter(&dead).await.expect("dead letter");
    }
    let service = DeliveryService::new(
        world.store.clone(),
        world.log.clone(),
        Arc::new(world.queues.queue.clone()),
        Arc::new(SystemClock),
    );
    let caller = Caller {
        owner: w.owner_id.clone(),
        buckets: None,
    };

    // WHEN four callers redeliver all of them at once
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let (service, caller, id) = (service.clone(), caller.clone(), w.id.clone());
        calls.spawn(async move { service.redeliver(&caller, &id, None, 100).await });
    }
    let queued: usize = calls
        .join_all()
        .await
        .into_iter()
        .map(|r| r.expect("redeliver").len())
        .sum();

    // THEN five were queued in all, the queue holds exactly five messages, one per delivery
    assert_eq!(queued, 5);
    let records = world
        .queues
        .receive_exactly(5, Duration::from_secs(10))
        .await;
    let ids: std::collections::HashSet<_> = records
        .iter()
        .map(|r| {
            let task = QueueTask::from_json(r.body.as_deref().unwrap()).unwrap();
            assert_eq!(task.delivery().generation, 1);
            task.delivery().delivery_id.clone()
        })
        .collect();
    assert_eq!(ids.len(), 5);
    assert!(
        world.queues.receive_records(10, 1).await.is_empty(),
        "no second copy"
    );
    assert!(world.log.dead_letters(&w.id, 100).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_redrive_policy_moved_is_reconciled_from_the_dead_letter_queue_and_redelivered() {
    // GIVEN on the dead-letter queue: a delivery with one failed attempt that the redrive
    // policy moved (the body only, as SQS moves it), a give-up the function recorded and sent
    // there itself (with its attributes) and a second copy of it (the function was cut off
    // after that send, before acknowledging, and the redrive policy moved the source message
    // too), and an unreadable body
    let world = World::create(TIMEOUT).await;
    let w = world
        .webhook(&world.receiver.url("/ok"), RetryConfig::default())
        .await;
    let now = SystemClock.now();
    let redriven = world.task(&w);
    world
        .log
        .record_attempt(&AttemptRecord {
            webhook_id: w.id.clone(),
            delivery_id: redriven.delivery_id.clone(),
            generation: 0,
            attempt: 1,
            event: redriven.event,
            status: AttemptStatus::Failed,
            status_code: Some(500),
            duration_ms: 5,
            error: Some("receiver answered HTTP 500".into()),
            response_body: None,
            at: now,
        })
        .await
        .expect("attempt");
    let gave_up = world.task(&w);
    let given_up = DeadLetter {
        task: gave_up.clone(),
        error: "receiver answered HTTP 500".into(),
        attempts: 4,
        at: now,
    };
    world.log.put_dead_letter(&given_up).await.expect("dead");
    assert!(
        world
            .log
            .finish(&w.id, &gave_up.delivery_id, 0, DeliveryStatus::Failed, now)
            .await
            .expect("finish")
    );
    let dlq = &world.queues.dlq_url;
    let body = |t: &DeliveryTask| QueueTask::DeliveryV1(t.clone()).to_json();
    for raw in [body(&redriven), body(&gave_up), "not a task".to_owned()] {
        world
            .queues
            .client
            .send_message()
            .queue_url(dlq)
            .message_body(raw)
            .send()
            .await
            .expect("send to the DLQ");
    }
    world
        .queues
        .worker
        .send_to_dead_letter(
            &body(&gave_up),
            "receiver answered HTTP 500",
            4,
            Some(gave_up.delivery_id.as_str()),
        )
        .await
        .expect("the function's own give-up");

    // WHEN the dead-letter queue's event source hands them to the function
    let receive_dlq = || async {
        let mut records = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while records.len() < 4 && Instant::now() < deadline {
            for m in world.queues.receive_raw(dlq, 10, 1).await {
                let mut r = world.queues.record(m);
                r.event_source_arn = Some(world.queues.dlq_arn.clone());
                records.push(r);
            }
        }
        records
    };
    let records = receive_dlq().await;
    assert_eq!(records.len(), 4);
    let response = world.handle(records.clone()).await;

    // THEN only the unreadable one stays on the queue (for inspection)
    let unreadable = records
        .iter()
        .find(|r| r.body.as_deref() == Some("not a task"))
        .unwrap();
    assert_eq!(
        failures(&response),
        vec![unreadable.message_id.clone().unwrap()]
    );
    // AND the redriven delivery is counted failed once, beside the give-up counted before (both
    // of its copies acknowledged, neither counted again)
    let stats = world.get(&w).await.stats;
    assert_eq!(
        (stats.total_deliveries, stats.failed_deliveries),
        (2, 1 + 1)
    );
    // AND it is a dead letter with its one attempt and the reason; the give-up's is unchanged
    let dead = world
        .log
        .dead_letter(&w.id, &redriven.delivery_id)
        .await
        .unwrap()
        .expect("the redriven delivery is a dead letter");
    assert_eq!(dead.attempts, 1);
    assert_eq!(dead.error, webhooks_core::dispatch::redriven_error());
    assert_eq!(
        world
            .log
            .dead_letter(&w.id, &gave_up.delivery_id)
            .await
            .unwrap(),
        Some(given_up)
    );
    // AND the same records handled again (a lost acknowledgement) change nothing
    world.handle(records).await;
    assert_eq!(world.get(&w).await.stats, stats);

    // WHEN the API redelivers it THEN it is sent and counted as a new outcome
    let service = DeliveryService::new(
        world.store.clone(),
        world.log.clone(),
        Arc::new(world.queues.queue.clone()),
        Arc::new(SystemClock),
    );
    let caller = Caller {
        owner: w.owner_id.clone(),
        buckets: None,
    };
    let queued = service
        .redeliver(&caller, &w.id, Some(&redriven.delivery_id), 1)
        .await
        .expect("redeliver");
    assert_eq!(queued.len(), 1);
    let again = world
        .queues
        .receive_exactly(1, Duration::from_secs(10))
        .await;
    assert!(failures(&world.invoke(again).await).is_empty());
    assert_eq!(world.receiver.at("/ok").len(), 1);
    let stats = world.get(&w).await.stats;
    assert_eq!(
        (stats.total_deliveries, stats.successful_deliveries),
        (3, 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invocation_cut_off_by_its_deadline_uses_no_attempt_and_the_receiver_sees_attempts_1_to_n()
 {
    // GIVEN a webhook whose receiver never answers in time (attempts time out after 3 s), with 2
    // retries 1 s apart, and its delivery received from the queue
    let world = World::create(Duration::from_secs(3)).await;
    let w = world
        .webhook(&world.receiver.url("/hang"), every_second(2))
        .await;
    let task = world.task(&w);
    let records = world.queued(&task).await;

    // WHEN the invocation's deadline comes 1.5 s after it starts: before the attempt can end
    let mut context = lambda_runtime::Context::default();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    context.deadline = now_ms
        + (webhooks_delivery::DEADLINE_MARGIN + Duration::from_millis(1500)).as_millis() as u64;
    let response = webhooks_delivery::handle(
        lambda_runtime::LambdaEvent::new(crate::helpers::sqs::event_of(records.clone()), context),
        &world.ports,
    )
    .await
    .expect("the handler answers");

    // THEN the record is reported failed (it comes back) and no attempt is recorded
    assert_eq!(failures(&response).len(), 1, "{response:?}");
    let recorded = || async {
        let mut n: Vec<u32> = world
            .log
            .attempts_of(&w.id, &task.delivery_id, 0)
            .await
            .expect("attempts")
            .iter()
            .map(|a| a.attempt)
            .collect();
        n.sort();
        n.dedup();
        n
    };
    assert!(
        recorded().await.is_empty(),
        "a cut-off receipt uses no attempt"
    );
    // (it would come back after the queue's visibility timeout: at once here)
    world
        .queues
        .worker
        .change_visibility(
            Lane::Main,
            records[0].receipt_handle.as_deref().unwrap(),
            Duration::ZERO,
        )
        .await
        .expect("visible again");

    // WHEN the function handles the queue until the delivery ends (no deadline)
    poll_until(
        "the delivery to give up",
        Duration::from_secs(90),
        Duration::ZERO,
        || async {
            let records = world.queues.receive_records(10, 1).await;
            if !records.is_empty() {
                world.invoke(records).await;
            }
            (world.get(&w).await.stats.failed_deliveries == 1).then_some(())
        },
    )
    .await;

    // THEN the receiver saw attempts 1, 2 and 3 — maxRetries + 1, no gap (a request the cut-off
    // receipt had sent is sent again under the same number) — all recorded, counted once
    let seen: std::collections::BTreeSet<String> = world
        .receiver
        .at("/hang")
        .iter()
        .filter(|r| r.header("x-webhook-id") == Some(task.delivery_id.as_str()))
        .filter_map(|r| r.header("x-webhook-attempt").map(str::to_owned))
        .collect();
    assert_eq!(seen, ["1", "2", "3"].map(str::to_owned).into());
    assert_eq!(recorded().await, [1, 2, 3]);
    assert_eq!(world.get(&w).await.stats.total_deliveries, 1);
}
