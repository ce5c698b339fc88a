//! `Idempotency-Key` on the real local binary and its SQLite file: 100 concurrent identical keyed
//! publishes make one set of deliveries, and a publish cut off by SIGKILL at any point, retried
//! with its key after a restart, delivers every event under the answer's ids and no others.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::{Local, TestReceiver};
use serde_json::{Value, json};

const BUCKET: &str = "507f1f77bcf86cd799439011";

/// One keyed publish: status, `Retry-After` (for 409) and body.
async fn publish(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    key: &str,
    body: &Value,
) -> Result<(u16, Value), reqwest::Error> {
    let res = client
        .post(format!("{base}/api/events"))
        .bearer_auth(token)
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await?;
    let status = res.status().as_u16();
    let text = res.text().await?;
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

/// Publishes until the answer is final (202): a 409 (the first request still publishing) is
/// retried after a moment, as a producer following `Retry-After` would.
async fn publish_until_done(base: &str, token: &str, key: &str, body: &Value) -> Value {
    let client = reqwest::Client::new();
    for _ in 0..200 {
        match publish(&client, base, token, key, body).await {
            Ok((202, answer)) => return answer,
            Ok((409, _)) | Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            Ok((status, answer)) => panic!("keyed publish answered {status}: {answer}"),
        }
    }
    panic!("the keyed publish never completed");
}

fn delivery_ids(answer: &Value) -> BTreeSet<String> {
    answer["deliveries"]
        .as_array()
        .expect("deliveries")
        .iter()
        .map(|d| d["deliveryId"].as_str().expect("deliveryId").to_owned())
        .collect()
}

/// Waits until the receiver has `want` requests and no more arrive for a moment; returns the
/// count per `X-Webhook-Id`.
async fn received_settled(rx: &TestReceiver, want: usize) -> BTreeMap<String, usize> {
    let per_id = || {
        let mut per_id = BTreeMap::new();
        for r in rx.all() {
            *per_id.entry(r.headers["x-webhook-id"].clone()).or_insert(0) += 1;
        }
        per_id
    };
    let start = std::time::Instant::now();
    while per_id().len() < want && start.elapsed() < Duration::from_secs(180) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    per_id()
}

fn batch(events: usize, run: &str) -> Value {
    json!({"events": (0..events).map(|i| json!({
        "bucketId": BUCKET,
        "event": "data.received",
        "data": {"run": run, "reading": i, "dataSourceId": format!("pump-{}", i % 10)},
    })).collect::<Vec<_>>()})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_concurrent_identical_keyed_publishes_make_one_set_of_deliveries() {
    // GIVEN the local mode with two webhooks on a receiver
    let dir = tempfile::tempdir().unwrap();
    let local = Local::start(dir.path(), &[]);
    let (rx, receiver) = TestReceiver::start().await;
    let api = common::Api::new(&local.base);
    for n in 0..2 {
        api.create(
            &local.token,
            json!({"bucketId": BUCKET, "url": format!("{receiver}/hook{n}"), "events": ["data.received"]}),
        )
        .await;
    }
    let producer = local.mint("ingest", Some("events:publish"));
    let body = batch(5, "concurrent");

    // WHEN the same keyed publish is sent 100 times at once
    let answers = futures_join_all((0..100).map(|_| {
        let (base, producer, body) = (local.base.clone(), producer.clone(), body.clone());
        async move { publish_until_done(&base, &producer, "readings-batch-0001", &body).await }
    }))
    .await;

    // THEN every caller got the same answer, and each of its 10 deliveries arrived exactly once
    let ids = delivery_ids(&answers[0]);
    assert_eq!(ids.len(), 10, "{}", answers[0]);
    for a in &answers {
        assert_eq!(delivery_ids(a), ids);
    }
    let per_id = received_settled(&rx, 10).await;
    assert_eq!(per_id.keys().cloned().collect::<BTreeSet<_>>(), ids);
    assert!(per_id.values().all(|&n| n == 1), "{per_id:?}");
    // AND the same key with another body is refused
    let client = reqwest::Client::new();
    let (status, answer) = publish(
        &client,
        &local.base,
        &producer,
        "readings-batch-0001",
        &batch(5, "other"),
    )
    .await
    .unwrap();
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (422, Some("idempotency_key_reused"))
    );
    local.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_keyed_publish_cut_off_by_sigkill_and_retried_makes_one_set_of_deliveries() {
    let dir = tempfile::tempdir().unwrap();
    let (rx, receiver) = TestReceiver::start().await;
    let mut local = Local::start(dir.path(), &[]);
    let api = common::Api::new(&local.base);
    for n in 0..5 {
        api.create(
            &local.token,
            json!({"bucketId": BUCKET, "url": format!("{receiver}/hook{n}"), "events": ["data.received"]}),
        )
        .await;
    }
    let producer = local.mint("ingest", Some("events:publish"));
    let mut expected = BTreeSet::new();
    // Killed before, during or after the publish (100 events × 5 webhooks = 500 deliveries in
    // one request takes tens of milliseconds here): every round must end the same way.
    for (round, kill_after_ms) in [0u64, 5, 15, 40, 120].into_iter().enumerate() {
        let key = format!("batch-{round}");
        let body = batch(100, &key);
        // GIVEN a keyed publish in flight
        let sending = {
            let (base, producer, body, key) = (
                local.base.clone(),
                producer.clone(),
                body.clone(),
                key.clone(),
            );
            tokio::spawn(async move {
                publish(&reqwest::Client::new(), &base, &producer, &key, &body).await
            })
        };
        tokio::time::sleep(Duration::from_millis(kill_after_ms)).await;
        // WHEN the local mode is SIGKILLed, restarted on the same file, and the publish retried
        local.crash();
        let _ = sending.await;
        local = Local::start(dir.path(), &[]);
        let answer = publish_until_done(&local.base, &producer, &key, &body).await;
        // THEN the answer names 500 deliveries
        let ids = delivery_ids(&answer);
        assert_eq!(ids.len(), 500, "round {round}: {answer}");
        expected.extend(ids);
    }
    // AND every one of them arrived, under the answer's ids only: no second set of deliveries.
    // (A delivery being sent at the moment of a kill may arrive twice with the same id — the
    // at-least-once every receiver dedupes on `X-Webhook-Id` — but never under a new id.)
    let per_id = received_settled(&rx, expected.len()).await;
    let got: BTreeSet<String> = per_id.keys().cloned().collect();
    assert_eq!(
        got.difference(&expected).count(),
        0,
        "deliveries no answer named"
    );
    let lost: Vec<_> = expected.difference(&got).collect();
    assert!(
        lost.is_empty(),
        "{} of {} deliveries lost, e.g. {:?}",
        lost.len(),
        expected.len(),
        lost.iter().take(3).collect::<Vec<_>>()
    );
    local.stop();
}

/// `futures::future::join_all` without the dependency: spawn each, await all in order.
async fn futures_join_all<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("task"));
    }
    out
}
