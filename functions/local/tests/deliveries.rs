//! The local mode delivering for real: the `dakkio-webhooks` binary (API + embedded queue +
//! worker on SQLite) posting to `TestReceiver`s on 127.0.0.1, with the retry schedule, the
//! dead-letter table, stats, the guide's signature checks in real `node` and `python3`, a crash
//! in the middle of a delivery, and one between a receipt and its send.

mod common;

use std::time::Duration;

use common::*;
use reqwest::Method;
use serde_json::{Value, json};

const BUCKET: &str = "507f1f77bcf86cd799439011";
const SECRET: &str = "your_webhook_secret";

fn hook(url: String, events: Value, retry: Value) -> Value {
    json!({"bucketId": BUCKET, "url": url, "events": events, "secret": SECRET, "retryConfig": retry})
}

fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 100.0).round() / 100.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_batch_ends_each_delivery_as_its_receiver_dictates() {
    // GIVEN receivers that succeed, fail twice then succeed, always fail, answer 410, answer 503
    // with Retry-After, hang past the timeout, and close the connection
    let dir = tempfile::tempdir().unwrap();
    let local = Local::start(dir.path(), &["--delivery-timeout-secs", "2"]);
    let api = Api::new(&local.base);
    let (rx, base) = TestReceiver::start().await;
    rx.on("/flaky", |n| status(if n < 2 { 500 } else { 200 }));
    rx.on("/fail", |_| status(500));
    rx.on("/gone", |_| status(410));
    rx.on("/busy", |n| {
        if n == 0 {
            status_with_retry_after(503, 3)
        } else {
            status(200)
        }
    });
    rx.delay("/hang", |_| Duration::from_secs(4));
    let closer = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let close_url = format!("http://{}/close", closer.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((sock, _)) = closer.accept().await {
            drop(sock);
        }
    });
    let user = &local.token;
    let default_retry = json!({});
    let no_retry = json!({"maxRetries": 0});
    let mut ids = std::collections::BTreeMap::new();
    for (name, url, retry) in [
        ("ok", format!("{base}/ok"), &default_retry),
        ("flaky", format!("{base}/flaky"), &default_retry),
        ("fail", format!("{base}/fail"), &default_retry),
        ("gone", format!("{base}/gone"), &default_retry),
        ("busy", format!("{base}/busy"), &default_retry),
        ("hang", format!("{base}/hang"), &no_retry),
        ("close", close_url.clone(), &no_retry),
    ] {
        ids.insert(
            name,
            api.create(user, hook(url, json!(["alert.triggered"]), retry.clone()))
                .await,
        );
    }

    // WHEN one alert is published to the bucket
    let producer = local.mint("ingest", Some("events:publish"));
    let event = json!({"bucketId": BUCKET, "event": "alert.triggered", "data": {"alertName": "High Temperature Warning", "currentValue": 31.5, "threshold": 30.0}});
    let (s, res) = api
        .call(Method::POST, "/api/events", &producer, Some(event))
        .await;
    assert_eq!(s, 202, "{res}");
    assert_eq!(res["deliveries"].as_array().unwrap().len(), 7);

    // THEN every delivery reaches its final outcome, counted once
    for (name, id) in &ids {
        eventually(
            Duration::from_secs(40),
            &format!("{name} finished"),
            async || {
                let w = api.webhook(user, id).await;
                (w["stats"]["totalDeliveries"] == 1).then_some(())
            },
        )
        .await;
    }
    let stats = |w: &Value| {
        (
            w["stats"]["successfulDeliveries"].as_u64().unwrap(),
            w["stats"]["failedDeliveries"].as_u64().unwrap(),
            w["lastDeliveryStatus"].as_str().unwrap().to_owned(),
        )
    };
    for (name, want_ok) in [
        ("ok", true),
        ("flaky", true),
        ("busy", true),
        ("fail", false),
        ("gone", false),
        ("hang", false),
        ("close", false),
    ] {
        let w = api.webhook(user, &ids[name]).await;
        let want = if want_ok {
            (1, 0, "success".to_owned())
        } else {
            (0, 1, "failed".to_owned())
        };
        assert_eq!(stats(&w), want, "{name}: {w}");
    }

    // AND the flaky receiver got attempts 1, 2, 3 about 1 s then 2 s apart
    let flaky = rx.at("/flaky");
    let attempts: Vec<&str> = flaky
        .iter()
        .map(|r| r.headers["x-webhook-attempt"].as_str())
        .collect();
    assert_eq!(attempts, ["1", "2", "3"]);
    let gaps = [flaky[1].at - flaky[0].at, flaky[2].at - flaky[1].at];
    eprintln!("flaky retry spacing: {:?} s", gaps.map(secs));
    assert!(
        gaps[0] >= Duration::from_millis(900) && gaps[0] < Duration::from_millis(2500),
        "{gaps:?}"
    );
    assert!(
        gaps[1] >= Duration::from_millis(1900) && gaps[1] < Duration::from_millis(3500),
        "{gaps:?}"
    );
    assert!(
        flaky.iter().all(
            |r| r.headers["x-webhook-id"] == flaky[0].headers["x-webhook-id"]
                && r.body == flaky[0].body
        ),
        "same id and body on every attempt"
    );

    // AND the always-failing one got 4 attempts (1 + 3 retries, 1 s, 2 s, 4 s) and is a dead letter
    let fail = rx.at("/fail");
    assert_eq!(fail.len(), 4);
    let gaps: Vec<f64> = fail.windows(2).map(|w| secs(w[1].at - w[0].at)).collect();
    eprintln!("always-500 retry spacing: {gaps:?} s");
    let (_, dead) = api
        .call(
            Method::GET,
            &format!("/api/webhooks/{}/dead-letters", ids["fail"]),
            user,
            None,
        )
        .await;
    assert_eq!(dead["data"][0]["attempts"], 4, "{dead}");
    assert_eq!(dead["data"][0]["error"], "receiver answered HTTP 500");

    // AND 410 disabled its webhook after one attempt
    assert_eq!(rx.at("/gone").len(), 1);
    assert_eq!(api.webhook(user, &ids["gone"]).await["active"], false);

    // AND Retry-After: 3 stretched the first retry past the 1 s schedule
    let busy = rx.at("/busy");
    assert_eq!(busy.len(), 2);
    assert!(
        busy[1].at - busy[0].at >= Duration::from_millis(2900),
        "{:?}",
        busy[1].at - busy[0].at
    );

    // AND the hanging and the closing receivers were recorded with their errors
    let (_, hist) = api
        .call(
            Method::GET,
            &format!("/api/webhooks/{}/deliveries", ids["hang"]),
            user,
            None,
        )
        .await;
    assert!(
        hist["data"][0]["error"]
            .as_str()
            .unwrap()
            .contains("timed out"),
        "{hist}"
    );
    let (_, hist) = api
        .call(
            Method::GET,
            &format!("/api/webhooks/{}/deliveries", ids["close"]),
            user,
            None,
        )
        .await;
    assert_eq!(hist["data"][0]["status"], "failed", "{hist}");

    // AND a dead letter can be redelivered
    rx.on("/fail", |_| status(200));
    let delivery = dead["data"][0]["deliveryId"].as_str().unwrap().to_owned();
    let (s, _) = api
        .call(
            Method::POST,
            &format!(
                "/api/webhooks/{}/deliveries/{delivery}/redeliver",
                ids["fail"]
            ),
            user,
            None,
        )
        .await;
    assert_eq!(s, 202);
    eventually(Duration::from_secs(20), "redelivery", async || {
        (rx.at("/fail").len() == 5).then_some(())
    })
    .await;
    assert_eq!(rx.at("/fail")[4].headers["x-webhook-id"], delivery);
    local.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_delivery_verifies_with_the_guides_node_and_python_checks_and_standard_webhooks() {
    // GIVEN a webhook with the guide's secret and one with a generated whsec_ secret
    let dir = tempfile::tempdir().unwrap();
    let local = Local::start(dir.path(), &[]);
    let api = Api::new(&local.base);
    let (rx, base) = TestReceiver::start().await;
    let user = &local.token;
    api.create(
        user,
        hook(
            format!("{base}/guide"),
            json!(["data.received", "alert.triggered", "bucket.updated"]),
            json!({}),
        ),
    )
    .await;
    let (s, generated) = api
        .call(Method::POST, "/api/webhooks", user, Some(json!({"bucketId": BUCKET, "url": format!("{base}/whsec"), "events": ["data.received"]})))
        .await;
    assert_eq!(s, 201);
    let whsec = generated["secret"].as_str().unwrap().to_owned();

    // WHEN events with floats, unicode, escapes, and large and tiny numbers are published, as raw JSON
    let producer = local.mint("ingest", Some("events:publish"));
    let tricky = [
        r#"{"dataSourceName":"Temperature Sensor - Room A","condition":"Temperature exceeds 30°C for 5 minutes","currentValue":31.5,"threshold":30.0}"#,
        r#"{"big":12345678901234567890,"max":1.7976931348623157e308,"tiny":5e-324,"neg":-0.0,"e21":1e21,"small":0.0000001,"sum":0.30000000000000004}"#,
        r#"{"quote":"say \"hi\"","slash":"a\/b","ctl":"\u0001\u001f\b\f\n\r\t","bs":"c:\\temp","ls":"\u2028\u2029","emoji":"😀 \ud83d\ude00","nul":"a\u0000b","del":""}"#,
        r#"{"b":1,"10":2,"a":{"2":[1.50,2.0,{"z":null,"1":true}]},"1":"one","01":"zero-one","-1":"neg"}"#,
        r#"{"dataPoint":{"_id":"507f1f77bcf86cd799439017","timestamp":"2024-01-15T10:30:00Z","values":{"temperature":22.5,"humidity":65},"metadata":{"deviceId":"ESP32-001"}}}"#,
    ];
    for data in tricky {
        let body = format!(r#"{{"bucketId":"{BUCKET}","event":"data.received","data":{data}}}"#);
        let res = reqwest::Client::new()
            .post(format!("{}/api/events", local.base))
            .bearer_auth(&producer)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 202, "{}", res.text().await.unwrap());
    }
    let (s, _) = api
        .call(Method::POST, "/api/events", &producer, Some(json!({"bucketId": BUCKET, "event": "bucket.updated", "data": {"changes": {"retentionDays": {"old": 30, "new": 365}}}})))
        .await;
    assert_eq!(s, 202);
    let guide_id = api.call(Method::GET, "/api/webhooks", user, None).await.1["data"][1]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (s, _) = api
        .call(
            Method::POST,
            &format!("/api/webhooks/{guide_id}/test"),
            user,
            Some(json!({"event": "alert.triggered"})),
        )
        .await;
    assert_eq!(s, 202);

    // THEN every delivery verifies with all three checks
    eventually(Duration::from_secs(20), "all deliveries", async || {
        (rx.at("/guide").len() == 7 && rx.at("/whsec").len() == 5).then_some(())
    })
    .await;
    let guide = rx.at("/guide");
    let results = verify_with_node_and_python(&guide, SECRET);
    for (r, ok) in guide.iter().zip(&results) {
        assert_eq!(
            ok,
            &[true, true, true],
            "[node guide, python guide, standardwebhooks] for body {}",
            r.body
        );
    }
    let results = verify_with_node_and_python(&rx.at("/whsec"), &whsec);
    assert!(
        results.iter().all(|r| r == &[true, true, true]),
        "{results:?}"
    );

    // AND the bodies are the guide's envelope in JavaScript's form (found by content: the worker
    // delivers concurrently, so arrival order is not publish order)
    let with = |needle: &str| {
        guide
            .iter()
            .find(|r| r.body.contains(needle))
            .unwrap_or_else(|| panic!("no delivery contains {needle}"))
            .body
            .clone()
    };
    for r in &guide {
        let v: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(
            v.as_object().unwrap().keys().collect::<Vec<_>>(),
            [
                "event",
                "timestamp",
                "webhookId",
                "bucketId",
                "deliveryId",
                "data"
            ]
        );
    }
    let alert = with("Temperature exceeds");
    assert!(
        alert.contains(r#""threshold":30}"#) && alert.contains("30°C"),
        "{alert}"
    );
    let numbers = with(r#""big":"#);
    assert!(
        numbers.contains(r#""big":12345678901234567000"#)
            && numbers.contains(r#""e21":1e+21"#)
            && numbers.contains(r#""neg":0"#),
        "{numbers}"
    );
    let keys = with(r#""01":"zero-one""#);
    assert!(keys.contains(r#"{"1":"one","10":2,"b":1,"a":{"2":[1.5,2,{"1":true,"z":null}]},"01":"zero-one","-1":"neg"}"#), "{keys}");
    for r in &guide {
        assert_eq!(r.headers["content-type"], "application/json");
        assert!(r.headers["user-agent"].starts_with("dakkio-webhooks/"));
        assert_eq!(r.headers["x-webhook-id"], r.headers["webhook-id"]);
        assert!(
            r.headers.contains_key("x-webhook-event")
                && r.headers.contains_key("x-webhook-timestamp")
        );
    }
    let test: Value = serde_json::from_str(&with("webhook.test")).unwrap();
    assert_eq!(
        (test["event"].as_str(), test["data"]["test"].as_bool()),
        (Some("webhook.test"), Some(true))
    );
    local.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_retry_is_not_sent_after_its_webhook_is_deleted_or_disabled() {
    let dir = tempfile::tempdir().unwrap();
    let local = Local::start(dir.path(), &[]);
    let api = Api::new(&local.base);
    let (rx, base) = TestReceiver::start().await;
    rx.on("/deleted", |_| status(500));
    rx.on("/disabled", |_| status(500));
    let user = &local.token;
    let slow = json!({"initialDelaySeconds": 3});
    let deleted = api
        .create(
            user,
            hook(
                format!("{base}/deleted"),
                json!(["bucket.updated"]),
                slow.clone(),
            ),
        )
        .await;
    let disabled = api
        .create(
            user,
            hook(format!("{base}/disabled"), json!(["bucket.updated"]), slow),
        )
        .await;
    let producer = local.mint("ingest", Some("events:publish"));
    api.call(
        Method::POST,
        "/api/events",
        &producer,
        Some(json!({"bucketId": BUCKET, "event": "bucket.updated", "data": {}})),
    )
    .await;
    eventually(Duration::from_secs(10), "first attempts", async || {
        (rx.all().len() == 2).then_some(())
    })
    .await;

    // WHEN, during the 3 s wait, one webhook is deleted and the other disabled
    assert_eq!(
        api.call(
            Method::DELETE,
            &format!("/api/webhooks/{deleted}"),
            user,
            None
        )
        .await
        .0,
        204
    );
    api.call(
        Method::PATCH,
        &format!("/api/webhooks/{disabled}"),
        user,
        Some(json!({"active": false})),
    )
    .await;

    // THEN neither is sent again; the disabled one ends as a dead letter, counted failed
    eventually(
        Duration::from_secs(15),
        "disabled webhook's delivery ends",
        async || {
            (api.webhook(user, &disabled).await["stats"]["failedDeliveries"] == 1).then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await; // the deleted one's retry was due by now too
    assert_eq!(rx.at("/deleted").len(), 1);
    assert_eq!(rx.at("/disabled").len(), 1);
    local.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_mid_delivery_loses_nothing_and_counts_once() {
    // GIVEN a receiver that holds the first request for 3 s
    let dir = tempfile::tempdir().unwrap();
    let local = Local::start(dir.path(), &["--delivery-timeout-secs", "2"]);
    let api = Api::new(&local.base);
    let (rx, base) = TestReceiver::start().await;
    rx.delay("/slow", |n| Duration::from_secs(if n == 0 { 3 } else { 0 }));
    let user = local.token.clone();
    let id = api
        .create(
            &user,
            hook(format!("{base}/slow"), json!(["data.received"]), json!({})),
        )
        .await;
    let producer = local.mint("ingest", Some("events:publish"));
    api.call(
        Method::POST,
        "/api/events",
        &producer,
        Some(json!({"bucketId": BUCKET, "event": "data.received", "data": {"v": 1}})),
    )
    .await;

    // WHEN the process is killed while that request is in flight, then started again
    eventually(Duration::from_secs(10), "request in flight", async || {
        (!rx.at("/slow").is_empty()).then_some(())
    })
    .await;
    local.crash();
    let again = Local::start(dir.path(), &["--delivery-timeout-secs", "2"]);
    let api = Api::new(&again.base);

    // THEN the delivery comes back (same id and body) and is counted exactly once
    let w = eventually(
        Duration::from_secs(60),
        "redelivered after the crash",
        async || {
            let w = api.webhook(&user, &id).await;
            (w["stats"]["totalDeliveries"] == 1).then_some(w)
        },
    )
    .await;
    assert_eq!(w["stats"]["successfulDeliveries"], 1);
    let got = rx.at("/slow");
    assert!(got.len() >= 2, "sent again after the crash");
    assert!(got.iter().all(
        |r| r.headers["x-webhook-id"] == got[0].headers["x-webhook-id"] && r.body == got[0].body
    ));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        api.webhook(&user, &id).await["stats"]["totalDeliveries"],
        1,
        "still counted once"
    );
    again.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkill_between_receipt_and_send_uses_no_attempt_the_receiver_sees_every_attempt_without_a_gap()
 {
    // GIVEN a receiver that always answers 500, a webhook with 2 retries 1 s apart, and the local
    // mode set to SIGKILL itself at its 2nd receipt, once received and before sending (the
    // receipt of attempt 1's retry)
    let dir = tempfile::tempdir().unwrap();
    let flags = ["--delivery-timeout-secs", "1", "--no-circuit-breaker"];
    let local = Local::start(
        dir.path(),
        &[&flags[..], &["--crash-before-send-at", "2"]].concat(),
    );
    let api = Api::new(&local.base);
    let (rx, base) = TestReceiver::start().await;
    rx.on("/fail", |_| status(500));
    let user = local.token.clone();
    let id = api
        .create(
            &user,
            hook(
                format!("{base}/fail"),
                json!(["data.received"]),
                json!({"maxRetries": 2, "initialDelaySeconds": 1, "backoffMultiplier": 1}),
            ),
        )
        .await;
    let producer = local.mint("ingest", Some("events:publish"));
    api.call(
        Method::POST,
        "/api/events",
        &producer,
        Some(json!({"bucketId": BUCKET, "event": "data.received", "data": {"v": 1}})),
    )
    .await;

    // WHEN attempt 1 fails and the process is killed at its retry's receipt
    let mut local = local;
    let exit = eventually(Duration::from_secs(30), "the SIGKILL", async || {
        local.child.try_wait().expect("try_wait")
    })
    .await;
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(exit.signal(), Some(9), "{exit}");
    assert_eq!(rx.at("/fail").len(), 1, "killed before sending the retry");

    // AND the local mode is started again (no hook)
    let again = Local::start(dir.path(), &flags);
    let api = Api::new(&again.base);

    // THEN once the message comes back (after its visibility timeout) the delivery carries on
    // from the attempt recorded: the receiver sees maxRetries + 1 = 3 attempts, 1, 2, 3, and
    // the delivery is counted failed once
    let w = eventually(
        Duration::from_secs(60),
        "the delivery to give up",
        async || {
            let w = api.webhook(&user, &id).await;
            (w["stats"]["failedDeliveries"] == 1).then_some(w)
        },
    )
    .await;
    assert_eq!(w["stats"]["totalDeliveries"], 1);
    let attempts: Vec<String> = rx
        .at("/fail")
        .iter()
        .map(|r| r.headers["x-webhook-attempt"].clone())
        .collect();
    assert_eq!(attempts, ["1", "2", "3"]);
    again.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_events_to_healthy_and_failing_receivers_lose_nothing() {
    // GIVEN one healthy receiver, one that fails the first attempt of every delivery, one that
    // always fails (the circuit breaker off: it would hold the failing ones for minutes)
    let dir = tempfile::tempdir().unwrap();
    let local = Local::start(dir.path(), &["--no-circuit-breaker"]);
    let api = Api::new(&local.base);
    let (rx, base) = TestReceiver::start().await;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
    rx.on("/down", |_| status(500));
    let user = &local.token;
    let retry = json!({"maxRetries": 1, "initialDelaySeconds": 1});
    let healthy = api
        .create(
            user,
            hook(
                format!("{base}/healthy"),
                json!(["data.received"]),
                retry.clone(),
            ),
        )
        .await;
    let flaky = api
        .create(
            user,
            hook(
                format!("{base}/flaky"),
                json!(["data.received"]),
                retry.clone(),
            ),
        )
        .await;
    let down = api
        .create(
            user,
            hook(format!("{base}/down"), json!(["data.received"]), retry),
        )
        .await;
    let rx2 = rx.clone();
    let seen2 = seen.clone();
    rx.on("/flaky", move |n| {
        let id = rx2.at("/flaky")[n].headers["x-webhook-id"].clone();
        status(if seen2.lock().unwrap().insert(id) {
            500
        } else {
            200
        })
    });

    // WHEN 1,000 events are published in batches of 100
    let producer = local.mint("ingest", Some("events:publish"));
    for batch in 0..10 {
        let events: Vec<Value> = (0..100)
            .map(|i| json!({"bucketId": BUCKET, "event": "data.received", "data": {"seq": batch * 100 + i, "temperature": 21.5}}))
            .collect();
        let (s, res) = api
            .call(
                Method::POST,
                "/api/events",
                &producer,
                Some(json!({"events": events})),
            )
            .await;
        assert_eq!(s, 202, "{res}");
    }

    // THEN all 3,000 deliveries end: delivered or dead-lettered, none lost, stats exact
    let total = |w: &Value| w["stats"]["totalDeliveries"].as_u64().unwrap();
    eventually(
        Duration::from_secs(300),
        "3,000 deliveries finished",
        async || {
            let mut sum = 0;
            for id in [&healthy, &flaky, &down] {
                sum += total(&api.webhook(user, id).await);
            }
            (sum == 3000).then_some(())
        },
    )
    .await;
    let unique = |path: &str| {
        rx.at(path)
            .iter()
            .map(|r| r.headers["x-webhook-id"].clone())
            .collect::<std::collections::HashSet<_>>()
            .len()
    };
    let h = api.webhook(user, &healthy).await;
    let f = api.webhook(user, &flaky).await;
    let d = api.webhook(user, &down).await;
    assert_eq!(
        (
            h["stats"]["successfulDeliveries"].as_u64(),
            unique("/healthy")
        ),
        (Some(1000), 1000)
    );
    assert_eq!(
        (
            f["stats"]["successfulDeliveries"].as_u64(),
            unique("/flaky")
        ),
        (Some(1000), 1000)
    );
    assert_eq!(
        rx.at("/flaky").len(),
        2000,
        "each flaky delivery took exactly 2 attempts"
    );
    assert_eq!(
        (
            d["stats"]["failedDeliveries"].as_u64(),
            unique("/down"),
            rx.at("/down").len()
        ),
        (Some(1000), 1000, 2000)
    );
    let mut dead = 0;
    let mut seqs = std::collections::HashSet::new();
    for r in rx.at("/down") {
        let v: Value = serde_json::from_str(&r.body).unwrap();
        seqs.insert(v["data"]["seq"].as_u64().unwrap());
    }
    assert_eq!(seqs.len(), 1000, "every event reached the failing receiver");
    let (_, dl) = api
        .call(
            Method::GET,
            &format!("/api/webhooks/{down}/dead-letters?limit=100"),
            user,
            None,
        )
        .await;
    dead += dl["data"].as_array().unwrap().len();
    assert_eq!(dead, 100, "dead letters listed (first page of 1,000)");
    local.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_format_and_a_rotated_secret_still_verify_with_every_check() {
    // GIVEN a Slack-format webhook and a JSON one whose secret is rotated with a grace period
    let dir = tempfile::tempdir().unwrap();
    let local = Local::start(dir.path(), &[]);
    let api = Api::new(&local.base);
    let (rx, base) = TestReceiver::start().await;
    let user = &local.token;
    let mut slack = hook(
        format!("{base}/slack"),
        json!(["alert.triggered"]),
        json!({}),
    );
    slack["format"] = json!("slack");
    api.create(user, slack).await;
    let rotated = api
        .create(
            user,
            hook(
                format!("{base}/rotated"),
                json!(["alert.triggered"]),
                json!({}),
            ),
        )
        .await;
    let (s, r) = api
        .call(
            Method::POST,
            &format!("/api/webhooks/{rotated}/rotate-secret"),
            user,
            Some(json!({"graceSeconds": 3600})),
        )
        .await;
    assert_eq!(s, 200, "{r}");
    let new_secret = r["secret"].as_str().unwrap().to_owned();

    // WHEN an alert is published
    let producer = local.mint("ingest", Some("events:publish"));
    let alert =
        json!({"bucketId": BUCKET, "event": "alert.triggered", "data": crate_sample_alert()});
    assert_eq!(
        api.call(Method::POST, "/api/events", &producer, Some(alert))
            .await
            .0,
        202
    );
    eventually(Duration::from_secs(20), "both delivered", async || {
        (rx.at("/slack").len() == 1 && rx.at("/rotated").len() == 1).then_some(())
    })
    .await;

    // THEN the Slack body is a Slack message, signed like any delivery
    let slack = rx.at("/slack");
    let msg: Value = serde_json::from_str(&slack[0].body).unwrap();
    assert_eq!(msg["text"], "🚨 Alert: High Temperature Warning");
    assert_eq!(msg["blocks"][0]["type"], "section");
    assert_eq!(
        verify_with_node_and_python(&slack, SECRET),
        vec![[true, true, true]]
    );

    // AND the rotated webhook's delivery verifies with the new secret, and with the old one via
    // X-Webhook-Signature-Previous and the second Standard Webhooks signature
    let got = rx.at("/rotated");
    assert_eq!(got[0].headers["webhook-signature"].split(' ').count(), 2);
    assert_eq!(
        verify_with_node_and_python(&got, &new_secret),
        vec![[true, true, true]]
    );
    let mut previous = got.clone();
    previous[0].headers.insert(
        "x-webhook-signature".into(),
        got[0].headers["x-webhook-signature-previous"].clone(),
    );
    assert_eq!(
        verify_with_node_and_python(&previous, SECRET),
        vec![[true, true, true]]
    );
    local.stop();
}

fn crate_sample_alert() -> Value {
    json!({
        "alertId": "507f1f77bcf86cd799439015", "alertName": "High Temperature Warning",
        "dataSourceId": "507f1f77bcf86cd799439012", "dataSourceName": "Temperature Sensor - Room A",
        "condition": "Temperature exceeds 30°C for 5 minutes", "currentValue": 31.5, "threshold": 30,
        "operator": ">", "triggeredAt": "2024-01-15T10:30:00Z"
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_redeliveries_of_one_dead_letter_send_it_once_and_count_it_once() {
    // GIVEN a dead letter (maxRetries 0, the receiver failed), and the receiver healthy again
    let dir = tempfile::tempdir().unwrap();
    let local = Local::start(dir.path(), &["--no-circuit-breaker"]);
    let api = Api::new(&local.base);
    let (rx, base) = TestReceiver::start().await;
    rx.on("/once", |n| status(if n == 0 { 500 } else { 200 }));
    let user = local.token.clone();
    let id = api
        .create(
            &user,
            hook(
                format!("{base}/once"),
                json!(["data.received"]),
                json!({"maxRetries": 0}),
            ),
        )
        .await;
    let producer = local.mint("ingest", Some("events:publish"));
    let (s, _) = api
        .call(
            Method::POST,
            "/api/events",
            &producer,
            Some(json!({"bucketId": BUCKET, "event": "data.received", "data": {"v": 1}})),
        )
        .await;
    assert_eq!(s, 202);
    let dead = eventually(Duration::from_secs(20), "dead-lettered", async || {
        let (_, d) = api
            .call(
                Method::GET,
                &format!("/api/webhooks/{id}/dead-letters"),
                &user,
                None,
            )
            .await;
        d["data"][0]["deliveryId"].as_str().map(str::to_owned)
    })
    .await;

    // WHEN eight redeliveries of it (four of that one, four of all) race
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..8 {
        let path = if i % 2 == 0 {
            format!("/api/webhooks/{id}/deliveries/{dead}/redeliver")
        } else {
            format!("/api/webhooks/{id}/deliveries/redeliver")
        };
        let (api, user) = (api.clone(), user.clone());
        calls.spawn(async move { api.call(Method::POST, &path, &user, None).await });
    }
    let answers = calls.join_all().await;

    // THEN one call queued it, the others queued nothing (404 for that one, an empty list)
    let queued: usize = answers
        .iter()
        .map(|(s, body)| {
            assert!(*s == 202 || *s == 404, "{s} {body}");
            body["deliveries"].as_array().map_or(0, Vec::len)
        })
        .sum();
    assert_eq!(queued, 1, "{answers:?}");
    // AND the receiver gets it once more, and it is counted once more
    let w = eventually(Duration::from_secs(20), "redelivered", async || {
        let w = api.webhook(&user, &id).await;
        (w["stats"]["totalDeliveries"] == 2).then_some(w)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await; // a second copy would have been sent by now
    assert_eq!(rx.at("/once").len(), 2);
    let w2 = api.webhook(&user, &id).await;
    assert_eq!(w2["stats"], w["stats"]);
    assert_eq!(w["stats"]["successfulDeliveries"], 1);
    local.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_webhook_receives_at_most_its_rate_all_delivered_on_the_first_attempt() {
    // GIVEN a webhook with rateLimit 5 (and a bad rateLimit refused with a clear 400)
    let dir = tempfile::tempdir().unwrap();
    let local = Local::start(dir.path(), &[]);
    let api = Api::new(&local.base);
    let (rx, base) = TestReceiver::start().await;
    for bad in [json!(0), json!(10_001), json!(2.5), json!("5")] {
        let mut body = hook(format!("{base}/r"), json!(["alert.triggered"]), json!({}));
        body["rateLimit"] = bad.clone();
        let (s, e) = api
            .call(Method::POST, "/api/webhooks", &local.token, Some(body))
            .await;
        assert_eq!(s, 400, "rateLimit {bad}: {e}");
    }
    let mut body = hook(format!("{base}/r"), json!(["alert.triggered"]), json!({}));
    body["rateLimit"] = json!(5);
    let id = api.create(&local.token, body).await;
    assert_eq!(api.webhook(&local.token, &id).await["rateLimit"], 5);

    // WHEN 40 events are published at 20/s
    let producer = local.mint("ingest", Some("events:publish"));
    let started = std::time::Instant::now();
    for i in 0..40 {
        let event = json!({"bucketId": BUCKET, "event": "alert.triggered", "data": {"n": i}});
        let (s, b) = api
            .call(Method::POST, "/api/events", &producer, Some(event))
            .await;
        assert_eq!(s, 202, "{b}");
        tokio::time::sleep_until((started + Duration::from_millis(50 * (i + 1))).into()).await;
    }

    // THEN all 40 arrive, each on its first attempt, never more than 11 in any 2 s (5.5/s)
    let got = eventually(Duration::from_secs(30), "40 deliveries", async || {
        let got = rx.at("/r");
        (got.len() >= 40).then_some(got)
    })
    .await;
    assert_eq!(got.len(), 40);
    assert!(got.iter().all(|r| r.headers["x-webhook-attempt"] == "1"));
    let times: Vec<std::time::Instant> = got.iter().map(|r| r.at).collect();
    let worst = times
        .iter()
        .map(|t0| {
            times
                .iter()
                .filter(|t| **t >= *t0 && **t - *t0 < Duration::from_secs(2))
                .count()
        })
        .max()
        .unwrap();
    assert!(
        worst <= 11,
        "{worst} deliveries within 2 s at a rate limit of 5/s"
    );
    let span = times
        .iter()
        .max()
        .unwrap()
        .duration_since(*times.iter().min().unwrap());
    assert!(
        span >= Duration::from_secs(7),
        "40 at 5/s take ~8 s, took {span:?}"
    );

    // AND PATCH null removes the limit, a bad value is refused and changes nothing
    let path = format!("/api/webhooks/{id}");
    let (s, e) = api
        .call(
            Method::PATCH,
            &path,
            &local.token,
            Some(json!({"rateLimit": -1})),
        )
        .await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (400, Some("invalid_rate_limit")),
        "{e}"
    );
    assert_eq!(api.webhook(&local.token, &id).await["rateLimit"], 5);
    let (s, w) = api
        .call(
            Method::PATCH,
            &path,
            &local.token,
            Some(json!({"rateLimit": null})),
        )
        .await;
    assert_eq!((s, &w["rateLimit"]), (200, &Value::Null), "{w}");
    local.stop();
}
