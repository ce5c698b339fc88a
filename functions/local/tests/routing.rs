//! Routing in the local mode, end to end (the real binary on SQLite, `TestReceiver`s on
//! 127.0.0.1): payload filters at volume, and custom headers that reach the receiver on every
//! attempt but never a log line.

mod common;

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use common::*;
use reqwest::Method;
use serde_json::{Value, json};
use webhooks_core::signing::{verify_guide_signature, verify_standard_webhooks};
use webhooks_core::webhook::Secret;

const BUCKET: &str = "507f1f77bcf86cd799439011";
const SECRET: &str = "your_webhook_secret";
const DEVICES: usize = 10;
const EVENTS: usize = 1000;

fn device(i: usize) -> String {
    format!("device-{}", i % DEVICES)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_readings_of_ten_devices_reach_exactly_the_webhooks_whose_filters_match() {
    // GIVEN webhooks filtering on one device, on three, and on all ten ($startsWith)
    let dir = tempfile::tempdir().unwrap();
    let local = Local::start(dir.path(), &[]);
    let api = Api::new(&local.base);
    let (rx, base) = TestReceiver::start().await;
    let hooks = [
        ("/one", json!({"data.dataSourceId": "device-7"}), 1),
        (
            "/three",
            json!({"data.dataSourceId": {"$in": ["device-0", "device-3", "device-9"]}}),
            3,
        ),
        (
            "/all",
            json!({"data.dataSourceId": {"$startsWith": "device-"}}),
            DEVICES,
        ),
    ];
    let mut ids = BTreeMap::new();
    for (path, filter, _) in &hooks {
        let body = json!({"bucketId": BUCKET, "url": format!("{base}{path}"),
            "events": ["data.received"], "secret": SECRET, "filter": filter});
        ids.insert(*path, api.create(&local.token, body).await);
    }

    // WHEN 1,000 readings, 100 per device, are published in batches of 100
    let producer = local.mint("ingest", Some("events:publish"));
    let mut queued = 0;
    for batch in 0..EVENTS / 100 {
        let events: Vec<Value> = (batch * 100..(batch + 1) * 100)
            .map(|i| {
                json!({"bucketId": BUCKET, "event": "data.received",
                    "data": {"dataSourceId": device(i), "seq": i, "dataPoint": {"values": {"temperature": 20.5}}}})
            })
            .collect();
        let (s, r) = api
            .call(
                Method::POST,
                "/api/events",
                &producer,
                Some(json!({"events": events})),
            )
            .await;
        assert_eq!(s, 202, "{r}");
        queued += r["deliveries"].as_array().unwrap().len();
    }
    // THEN only matching pairs were queued: 100 + 300 + 1,000
    let want_total = EVENTS / DEVICES * (1 + 3 + DEVICES);
    assert_eq!(queued, want_total);
    eventually(
        Duration::from_secs(120),
        "every delivery received",
        async || (rx.all().len() >= want_total).then_some(()),
    )
    .await;
    // Nothing more arrives (no unwanted delivery was queued behind the wanted ones).
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rx.all().len(), want_total);

    // AND each receiver got exactly its devices' events, each once, every signature valid
    let secret = Secret::new(SECRET.into());
    for (path, filter, devices) in &hooks {
        let got = rx.at(path);
        let mut per_device: BTreeMap<String, usize> = BTreeMap::new();
        let mut seqs = std::collections::BTreeSet::new();
        for r in &got {
            let body: Value = serde_json::from_str(&r.body).unwrap();
            let d = body["data"]["dataSourceId"].as_str().unwrap().to_owned();
            *per_device.entry(d).or_default() += 1;
            assert!(
                seqs.insert(body["data"]["seq"].as_u64().unwrap()),
                "{path}: twice"
            );
            let h = |n: &str| r.headers.get(n).map(String::as_str).unwrap_or_default();
            assert!(verify_guide_signature(
                &secret,
                r.body.as_bytes(),
                h("x-webhook-signature")
            ));
            let ts: i64 = h("webhook-timestamp").parse().unwrap();
            assert!(verify_standard_webhooks(
                &secret,
                h("webhook-id"),
                ts,
                r.body.as_bytes(),
                h("webhook-signature")
            ));
        }
        assert_eq!(
            per_device.len(),
            *devices,
            "{path} {filter}: {per_device:?}"
        );
        assert!(
            per_device.values().all(|n| *n == EVENTS / DEVICES),
            "{path}: {per_device:?}"
        );
        if *path == "/three" {
            let names: Vec<&str> = per_device.keys().map(String::as_str).collect();
            assert_eq!(names, ["device-0", "device-3", "device-9"]);
        }
        // AND the stats count only those deliveries
        let id = &ids[path];
        let stats = eventually(Duration::from_secs(30), "stats", async || {
            let w = api.webhook(&local.token, id).await;
            let total = w["stats"]["totalDeliveries"].as_u64().unwrap() as usize;
            (total >= got.len()).then_some(w["stats"].clone())
        })
        .await;
        let n = (EVENTS / DEVICES * devices) as u64;
        assert_eq!(
            stats,
            json!({"totalDeliveries": n, "successfulDeliveries": n, "failedDeliveries": 0}),
            "{path}"
        );
    }
    local.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_headers_arrive_on_every_attempt_and_test_send_and_never_in_the_log() {
    // GIVEN the local mode logging everything (debug) to a file, and a webhook with a custom
    // header whose receiver fails the first attempt
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("stderr.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let data = dir.path().join("data");
    let local = Local::start_logging(&data, &[], "debug", Stdio::from(log));
    let api = Api::new(&local.base);
    let (rx, base) = TestReceiver::start().await;
    rx.on("/gw", |n| status(if n == 0 { 500 } else { 200 }));
    const VALUE: &str = "sk_live_VALUE_NEVER_LOGGED_42";
    let body = json!({"bucketId": BUCKET, "url": format!("{base}/gw"), "events": ["alert.triggered"],
        "secret": SECRET, "headers": {"X-Api-Key": VALUE}});
    let (s, created) = api
        .call(Method::POST, "/api/webhooks", &local.token, Some(body))
        .await;
    assert_eq!(s, 201);
    assert!(!created.to_string().contains(VALUE), "{created}");
    let id = created["id"].as_str().unwrap();

    // WHEN an event is published (attempt 1 fails, attempt 2 succeeds) and a test is sent
    let producer = local.mint("ingest", Some("events:publish"));
    let event =
        json!({"bucketId": BUCKET, "event": "alert.triggered", "data": {"alertName": "High"}});
    let (s, _) = api
        .call(Method::POST, "/api/events", &producer, Some(event))
        .await;
    assert_eq!(s, 202);
    eventually(Duration::from_secs(30), "two attempts", async || {
        (rx.at("/gw").len() >= 2).then_some(())
    })
    .await;
    let (s, _) = api
        .call(
            Method::POST,
            &format!("/api/webhooks/{id}/test"),
            &local.token,
            None,
        )
        .await;
    assert_eq!(s, 202);
    eventually(Duration::from_secs(30), "the test send", async || {
        (rx.at("/gw").len() >= 3).then_some(())
    })
    .await;

    // THEN all three requests carried the header
    let got = rx.at("/gw");
    for r in &got {
        assert_eq!(r.headers.get("x-api-key").map(String::as_str), Some(VALUE));
    }
    assert_eq!(got[2].headers["x-webhook-event"], "webhook.test");
    // AND no response and no log line shows the value (the log is not empty: debug is on)
    let (_, shown) = api
        .call(
            Method::GET,
            &format!("/api/webhooks/{id}"),
            &local.token,
            None,
        )
        .await;
    assert!(!shown.to_string().contains(VALUE), "{shown}");
    let (_, history) = api
        .call(
            Method::GET,
            &format!("/api/webhooks/{id}/deliveries"),
            &local.token,
            None,
        )
        .await;
    assert!(!history.to_string().contains(VALUE), "{history}");
    local.stop();
    let text = std::fs::read_to_string(&log_path).unwrap();
    assert!(!text.is_empty(), "debug logging produced nothing");
    assert!(!text.contains(VALUE), "a log line shows the header value");
}
