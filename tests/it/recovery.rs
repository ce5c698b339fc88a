//! Recovery on AWS's adapters (DynamoDB and SQS in moto) through the API's Router, run the
//! Lambda's way (each request on a running job works on it within the publish budget): 1,000
//! dead letters (`RECOVERY_LETTERS=2500` for the figure), written in `BatchWriteItem`s
//! of the adapter's own item (one put through it, the others its copies), are listed
//! completely through the signed cursor, and one `recover` polled to completion queues each
//! exactly once (every SQS message read back, every delivery id once); asking again queues
//! nothing. Under load each step's budget runs out part-way: no letter may be skipped or
//! counted failed for it.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use webhooks_api::Ports;
use webhooks_aws::dynamodb::delivery_log::dead_letter_sk;
use webhooks_core::conformance::sample_webhook;
use webhooks_core::delivery::{DeadLetter, DeliveryTask, QueueTask};
use webhooks_core::ports::{Clock, DeliveryLog, SubscriptionStore};
use webhooks_core::time::SystemClock;
use webhooks_core::{BucketId, DeliveryId, EventType, OwnerId, Timestamp};

use crate::helpers::api::Api;
use crate::helpers::dynamo::DeliveryTables;
use crate::helpers::sqs::Queues;

const OWNER: &str = "user-recovery";
/// 1,000 by default (moto takes ~50-100 ms per conditional delete on a loaded machine);
/// `RECOVERY_LETTERS=2500` runs the full figure.
const LETTERS: i64 = 1_000;

/// Each request's step budget here (the API's is `PUBLISH_BUDGET`, 10 s).
const STEP_BUDGET: std::time::Duration = std::time::Duration::from_secs(30);

fn letters() -> i64 {
    std::env::var("RECOVERY_LETTERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(LETTERS)
}

/// One request of the owner of the test's webhook: status and JSON body.
async fn call(api: &Api, method: Method, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
    let (status, body, _) = api
        .call(method, uri, &Api::user_token(OWNER), body.as_ref())
        .await;
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_dead_letters_on_dynamodb_are_listed_by_cursor_and_recovered_to_sqs_once() {
    let started = Instant::now();
    // GIVEN a webhook in DynamoDB with 1,000 dead letters of the last hours, and the API on
    // DynamoDB and SQS the way the API Lambda runs it
    let (tables, queues) = tokio::join!(DeliveryTables::create(), Queues::create());
    let owner = OwnerId::parse(OWNER).unwrap();
    let now = SystemClock.now().unix();
    let webhook = sample_webhook(&owner, &BucketId::generate(now), now);
    tables
        .webhooks
        .store
        .create(&webhook)
        .await
        .expect("create");
    let first = now - 3 * 3600;
    let n = letters();
    let dead = |i: i64| DeadLetter {
        task: DeliveryTask {
            delivery_id: DeliveryId::generate(first + i),
            webhook_id: webhook.id.clone(),
            event: EventType::AlertTriggered,
            generation: 0,
            attempts_made: 0,
            body: format!("{{\"n\":{i}}}"),
            created_at: Timestamp::from_unix(first + i),
        },
        error: "receiver answered HTTP 500".into(),
        attempts: 4,
        at: Timestamp::from_unix(first + i + 1),
    };
    // The first through the adapter; its item, as the adapter wrote it, is the template of the
    // others (only the per-letter attributes change), so the setup uses the adapter's encoding
    // and the listing below decodes every one.
    let model = dead(0);
    tables.log.put_dead_letter(&model).await.expect("put");
    let key = HashMap::from([
        (
            "webhookId".to_owned(),
            AttributeValue::S(webhook.id.to_string()),
        ),
        (
            "sk".to_owned(),
            AttributeValue::S(dead_letter_sk(&model.task.delivery_id)),
        ),
    ]);
    let template = tables
        .webhooks
        .client
        .get_item()
        .table_name(&tables.deliveries_name)
        .set_key(Some(key))
        .send()
        .await
        .expect("get the adapter's item")
        .item
        .expect("the adapter's item");
    let items: Vec<WriteRequest> = (1..n)
        .map(|i| {
            let d = dead(i);
            let mut item = template.clone();
            for (name, value) in [
                ("sk", dead_letter_sk(&d.task.delivery_id)),
                ("deliveryId", d.task.delivery_id.to_string()),
                ("body", d.task.body.clone()),
                ("createdAt", d.task.created_at.to_rfc3339()),
                ("at", d.at.to_rfc3339()),
            ] {
                assert!(item.contains_key(name), "the adapter's item has no {name}");
                item.insert(name.to_owned(), AttributeValue::S(value));
            }
            let put = PutRequest::builder()
                .set_item(Some(item))
                .build()
                .expect("put request");
            WriteRequest::builder().put_request(put).build()
        })
        .collect();
    for chunk in items.chunks(25) {
        let mut pending = HashMap::from([(tables.deliveries_name.clone(), chunk.to_vec())]);
        while !pending.is_empty() {
            let out = tables
                .webhooks
                .client
                .batch_write_item()
                .set_request_items(Some(pending))
                .send()
                .await
                .expect("batch write");
            pending = out.unprocessed_items.unwrap_or_default();
            pending.retain(|_, v| !v.is_empty());
        }
    }
    let seeded = started.elapsed();
    let mut api = Api::open(Ports {
        store: Arc::new(tables.webhooks.store.clone()),
        log: Arc::new(tables.log.clone()),
        queue: Arc::new(queues.queue.clone()),
        clock: Arc::new(SystemClock),
    });
    // A test-sized step budget, as the other moto tests of publishing have: moto, shared with
    // the tests beside it on a loaded machine, can take seconds per SendMessageBatch (real SQS:
    // 10-20 ms), and a send cut off in flight at the budget may still be queued, then put back
    // and queued again by the next step (at-least-once, same deliveryId). What a step does with
    // letters it could not queue is the core's unit tests' (recovery::tests).
    api.state.deliveries = api.state.deliveries.clone().with_budget(STEP_BUDGET);
    let id = webhook.id.to_string();

    // WHEN they are listed 100 at a time through nextCursor
    let mut listed = BTreeSet::new();
    let mut uri = format!("/api/webhooks/{id}/dead-letters?limit=100");
    loop {
        let (s, page) = call(&api, Method::GET, &uri, None).await;
        assert_eq!(s, StatusCode::OK, "{page}");
        for d in page["data"].as_array().unwrap() {
            let d = d["deliveryId"].as_str().unwrap().to_owned();
            assert!(listed.insert(d), "listed twice");
        }
        match page["nextCursor"].as_str() {
            Some(c) => uri = format!("/api/webhooks/{id}/dead-letters?limit=100&cursor={c}"),
            None => break,
        }
    }
    // THEN every one is listed once
    assert_eq!(listed.len(), n as usize);
    let listed_at = started.elapsed();

    // WHEN one recover request asks for everything since the outage began, and its job is polled
    let body = json!({"since": Timestamp::from_unix(first).to_rfc3339()});
    let recover = format!("/api/webhooks/{id}/recover");
    let (s, mut job) = call(&api, Method::POST, &recover, Some(body.clone())).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{job}");
    assert_eq!(job["total"], n);
    let job_uri = format!("{recover}/{}", job["id"].as_str().unwrap());
    let mut requests = 1;
    while job["state"] != "completed" {
        assert!(requests < 40, "the job does not finish: {job}");
        // No step counts a letter failed: the webhook exists, the queue works.
        assert_eq!(job["failed"], 0, "{job}");
        let (s, j) = call(&api, Method::GET, &job_uri, None).await;
        assert_eq!(s, StatusCode::OK, "{j}");
        job = j;
        requests += 1;
        eprintln!(
            "step {requests} at {:?}: done {}",
            started.elapsed(),
            job["done"]
        );
    }
    let recovered_at = started.elapsed();
    // THEN every dead letter was queued once: done = total, none failed, none left
    assert_eq!(
        (job["done"].as_i64(), job["failed"].as_i64()),
        (Some(n), Some(0)),
        "{job}"
    );
    let (_, left) = call(
        &api,
        Method::GET,
        &format!("/api/webhooks/{id}/dead-letters"),
        None,
    )
    .await;
    assert_eq!(left["data"].as_array().map(Vec::len), Some(0), "{left}");
    // AND every dead letter was queued as its redelivery (generation 1), none left out. Copies
    // of one letter are possible on a loaded moto, as on SQS: an SDK attempt that outlives its
    // 3 s timeout (`SDK_ATTEMPT_TIMEOUT`) is sent again although the first may have been queued.
    // They carry the same deliveryId and generation, so the delivery function's final marker
    // turns every copy after the first into a drop (the conformance suite's duplicate cases);
    // here they are counted and bounded, never a letter missing.
    let mut messages = HashSet::new();
    let mut per_letter: HashMap<String, usize> = HashMap::new();
    let mut empty_receives = 0;
    while empty_receives < 3 {
        let got = queues.receive_records(10, 0).await;
        if got.is_empty() {
            empty_receives += 1;
            continue;
        }
        empty_receives = 0;
        for m in got {
            if !messages.insert(m.message_id.clone().unwrap()) {
                continue; // seen before: its visibility timeout ran out while draining
            }
            let task = QueueTask::from_json(m.body.as_deref().unwrap()).unwrap();
            let task = task.delivery();
            assert_eq!(task.generation, 1, "a redelivery: {task:?}");
            assert!(listed.contains(task.delivery_id.as_str()), "{task:?}");
            *per_letter.entry(task.delivery_id.to_string()).or_default() += 1;
        }
    }
    let copies = messages.len() - per_letter.len();
    assert_eq!(per_letter.len(), n as usize, "every letter queued");
    assert!(
        copies <= n as usize / 20,
        "{copies} extra copies of {n} letters"
    );

    // WHEN the same window is asked for again
    let (s, again) = call(&api, Method::POST, &recover, Some(body)).await;
    // THEN it is the same completed job and nothing more is queued
    assert_eq!(s, StatusCode::ACCEPTED);
    assert_eq!(
        (again["id"].clone(), again["state"].as_str()),
        (job["id"].clone(), Some("completed"))
    );
    let (visible, in_flight) = queues.counts(&queues.url).await;
    assert_eq!(
        visible + in_flight,
        messages.len() as u64,
        "nothing queued again"
    );
    eprintln!(
        "recovery of {n} on moto ({copies} extra copies): seeded {:.1} s, listed {:.1} s, recovered in {requests} requests {:.1} s, total {:.1} s",
        seeded.as_secs_f64(),
        (listed_at - seeded).as_secs_f64(),
        (recovered_at - listed_at).as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}
