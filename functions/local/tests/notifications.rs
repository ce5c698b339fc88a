//! Operational notifications on the real local binary, time compressed by its flags: a webhook
//! whose receiver fails makes the owner's notification endpoint get `webhook.failing` (when
//! the run starts, and again at each repeat threshold), then `webhook.disabled` (auto-disable),
//! each once and signed like any delivery (the guide's Node.js and Python checks and the
//! Standard Webhooks library verify them); re-enabled and delivering again, `webhook.recovered`.
//! And `/api/notifications` refusing bad input.

mod common;

use std::time::Duration;

use common::*;
use reqwest::Method;
use serde_json::{Value, json};

const BUCKET: &str = "507f1f77bcf86cd799439011";

fn events_of(rx: &TestReceiver) -> Vec<Value> {
    rx.at("/notify")
        .iter()
        .map(|r| serde_json::from_str(&r.body).expect("JSON body"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_webhook_tells_failing_then_disabled_then_recovered_signed_and_once_each() {
    // GIVEN the local mode with repeats at 1 s and 2 s and auto-disable after 3 s of failures,
    // a notification endpoint, and a webhook (no retries) whose receiver answers 500
    let dir = tempfile::tempdir().unwrap();
    let local = Local::start(
        dir.path(),
        &[
            "--no-circuit-breaker",
            "--failing-notice-after-secs",
            "1,2",
            "--auto-disable-after-secs",
            "3",
        ],
    );
    let api = Api::new(&local.base);
    let (rx, base) = TestReceiver::start().await;
    rx.on("/down", |_| status(500));
    let user = &local.token;
    let (s, endpoint) = api
        .call(
            Method::PUT,
            "/api/notifications",
            user,
            Some(json!({"url": format!("{base}/notify")})),
        )
        .await;
    assert_eq!(s, 200, "{endpoint}");
    let secret = endpoint["secret"]
        .as_str()
        .expect("the secret, once")
        .to_owned();
    assert!(secret.starts_with("whsec_"), "{secret}");
    let (s, shown) = api
        .call(Method::GET, "/api/notifications", user, None)
        .await;
    assert_eq!(s, 200, "{shown}");
    assert!(shown.get("secret").is_none(), "never shown again: {shown}");
    assert_eq!(shown["url"], format!("{base}/notify"));
    let id = api
        .create(
            user,
            json!({"bucketId": BUCKET, "url": format!("{base}/down"), "events": ["alert.triggered"], "retryConfig": {"maxRetries": 0}}),
        )
        .await;
    // The endpoint is not one of the user's webhooks
    let (_, list) = api.call(Method::GET, "/api/webhooks", user, None).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1, "{list}");

    // WHEN alerts are published until the webhook is disabled
    let producer = local.mint("ingest", Some("events:publish"));
    let event = json!({"bucketId": BUCKET, "event": "alert.triggered", "data": {"alertName": "Hot", "currentValue": 31.5}});
    eventually(Duration::from_secs(40), "webhook.disabled", async || {
        let (s, res) = api
            .call(Method::POST, "/api/events", &producer, Some(event.clone()))
            .await;
        assert_eq!(s, 202, "{res}");
        tokio::time::sleep(Duration::from_millis(400)).await;
        events_of(&rx)
            .iter()
            .any(|e| e["event"] == "webhook.disabled")
            .then_some(())
    })
    .await;

    // THEN the endpoint got failing (started, ≥ 1 s, ≥ 2 s), then disabled, once each
    let mut got = events_of(&rx);
    let name = |e: &Value| match e["event"].as_str().unwrap() {
        "webhook.failing" => format!("failing:{}", e["data"]["level"].as_str().unwrap()),
        other => other.to_owned(),
    };
    // Arrival order may differ from decision order (each is its own delivery): sort by the
    // envelope's timestamp, stable on the names' rank.
    let rank = |e: &Value| {
        [
            "failing:failing",
            "failing:failingLong",
            "failing:failingLonger",
            "webhook.disabled",
        ]
        .iter()
        .position(|n| *n == name(e))
        .unwrap_or(9)
    };
    got.sort_by_key(|e| (e["timestamp"].as_str().unwrap().to_owned(), rank(e)));
    let names: Vec<String> = got.iter().map(name).collect();
    assert_eq!(
        names,
        [
            "failing:failing",
            "failing:failingLong",
            "failing:failingLonger",
            "webhook.disabled"
        ],
        "{got:#?}"
    );
    let w = api.webhook(user, &id).await;
    assert_eq!(w["active"], false);
    let since = |v: &Value| {
        webhooks_core::Timestamp::parse(v.as_str().unwrap())
            .unwrap()
            .unix()
    };
    for e in &got {
        assert_eq!(e["webhookId"], id.as_str());
        assert_eq!(e["bucketId"], BUCKET);
        assert_eq!(e["data"]["webhookId"], id.as_str());
        assert_eq!(e["data"]["url"], format!("{base}/down"));
        // One run: the same start in each, the webhook's (within the second the local worker
        // commits the first failure in)
        assert_eq!(e["data"]["failingSince"], got[0]["data"]["failingSince"]);
        assert!((since(&e["data"]["failingSince"]) - since(&w["failingSince"])).abs() <= 1);
    }
    assert_eq!(got[0]["data"]["lastError"], "receiver answered HTTP 500");
    assert_eq!(got[3]["data"]["reason"], w["disabledReason"]);

    // WHEN the receiver is fixed, the webhook re-enabled, and one alert published
    rx.on("/down", |_| status(200));
    let (s, res) = api
        .call(
            Method::PATCH,
            &format!("/api/webhooks/{id}"),
            user,
            Some(json!({"active": true})),
        )
        .await;
    assert_eq!(s, 200, "{res}");
    let (s, res) = api
        .call(Method::POST, "/api/events", &producer, Some(event.clone()))
        .await;
    assert_eq!(s, 202, "{res}");

    // THEN webhook.recovered follows, once
    eventually(Duration::from_secs(20), "webhook.recovered", async || {
        events_of(&rx)
            .iter()
            .any(|e| e["event"] == "webhook.recovered")
            .then_some(())
    })
    .await;
    let (s, res) = api
        .call(Method::POST, "/api/events", &producer, Some(event.clone()))
        .await;
    assert_eq!(s, 202, "{res}");
    eventually(
        Duration::from_secs(20),
        "the next alert delivered",
        async || {
            let w = api.webhook(user, &id).await;
            (w["stats"]["successfulDeliveries"] == 2).then_some(())
        },
    )
    .await;
    let first_since = got[0]["data"]["failingSince"].clone();
    let got = events_of(&rx);
    assert_eq!(got.len(), 5, "{got:#?}");
    assert_eq!(got[4]["event"], "webhook.recovered");
    assert_eq!(got[4]["data"]["failingSince"], first_since);

    // AND every notification is signed like a delivery: the guide's checks and Standard
    // Webhooks verify them with the endpoint's secret; ids and headers are a delivery's
    let received = rx.at("/notify");
    let verified = verify_with_node_and_python(&received, &secret);
    assert_eq!(verified, vec![[true, true, true]; received.len()]);
    for (r, e) in received.iter().zip(&got) {
        assert_eq!(r.headers["x-webhook-event"], e["event"].as_str().unwrap());
        assert_eq!(r.headers["x-webhook-id"], e["deliveryId"].as_str().unwrap());
    }
    let (_, shown) = api
        .call(Method::GET, "/api/notifications", user, None)
        .await;
    assert_eq!(shown["stats"]["successfulDeliveries"], 5, "{shown}");
    local.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_notification_endpoint_refuses_bad_input_producer_tokens_and_strangers() {
    // GIVEN the local mode
    let dir = tempfile::tempdir().unwrap();
    let local = Local::start(dir.path(), &[]);
    let api = Api::new(&local.base);
    let user = &local.token;
    let put = |body: Value| {
        let api = api.clone();
        let token = user.clone();
        async move {
            api.call(Method::PUT, "/api/notifications", &token, Some(body))
                .await
        }
    };

    // WHEN bad bodies are PUT THEN each is refused with its code, and nothing is set
    for (body, code) in [
        (json!({"url": "ftp://example.com/x"}), "invalid_url"),
        (json!({"url": "not a url"}), "invalid_url"),
        (
            json!({"url": "https://example.com/x", "secret": "short"}),
            "invalid_secret",
        ),
        (
            json!({"url": "https://example.com/x", "events": []}),
            "invalid_body",
        ),
        (json!({}), "invalid_body"),
    ] {
        let (s, res) = put(body.clone()).await;
        assert_eq!(
            (s, res["error"]["code"].as_str()),
            (400, Some(code)),
            "{body}: {res}"
        );
    }
    let (s, res) = api
        .call(Method::GET, "/api/notifications", user, None)
        .await;
    assert_eq!(
        (s, res["error"]["code"].as_str()),
        (404, Some("not_found")),
        "{res}"
    );

    // A producer token may not set, read or remove it
    let producer = local.mint("ingest", Some("events:publish"));
    for method in [Method::PUT, Method::GET, Method::DELETE] {
        let (s, res) = api
            .call(
                method.clone(),
                "/api/notifications",
                &producer,
                Some(json!({"url": "https://example.com/x"})),
            )
            .await;
        assert_eq!(s, 403, "{method}: {res}");
    }

    // Another user sees none of alice's
    let (s, res) =
        put(json!({"url": "https://example.com/alice", "secret": "alice-secret-1"})).await;
    assert_eq!(s, 200, "{res}");
    assert_eq!(res["secret"], "alice-secret-1");
    let bob = local.mint("bob", None);
    let (s, _) = api
        .call(Method::GET, "/api/notifications", &bob, None)
        .await;
    assert_eq!(s, 404);
    let (s, _) = api
        .call(Method::DELETE, "/api/notifications", &bob, None)
        .await;
    assert_eq!(s, 404);
    // Nor can the endpoint be reached as a webhook
    let endpoint = res["id"].as_str().unwrap();
    let (s, _) = api
        .call(
            Method::GET,
            &format!("/api/webhooks/{endpoint}"),
            user,
            None,
        )
        .await;
    assert_eq!(s, 404);
    // Alice removes hers
    let (s, _) = api
        .call(Method::DELETE, "/api/notifications", user, None)
        .await;
    assert_eq!(s, 204);
    let (s, _) = api
        .call(Method::GET, "/api/notifications", user, None)
        .await;
    assert_eq!(s, 404);
    local.stop();
}
