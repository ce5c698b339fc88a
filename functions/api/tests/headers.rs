//! Custom headers through the API, in-process: validation (400 `invalid_headers`, nothing
//! stored), write-only values (names and hints in every response), PATCH merges, and the
//! headers on every attempt and test send — read at send time, never from the queue message.

use std::sync::Arc;

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use webhooks_core::dispatch::{Dispatcher, Outcome};
use webhooks_core::ports::memory::RecordingSender;
use webhooks_core::time::SystemClock;

mod common;

use common::{App, BUCKET, app, token};

impl App {
    async fn create(&self, headers: Value) -> (StatusCode, Value) {
        let body = json!({"bucketId": BUCKET, "url": "https://example.com/hook",
            "events": ["data.received", "alert.triggered"], "headers": headers});
        self.call(
            Method::POST,
            "/api/webhooks",
            &token("alice", None, None),
            body,
        )
        .await
    }
}

const KEY: &str = "sk_live_0123456789abcdef-KEY";
const BEARER: &str = "Bearer gateway-token-xyz";

fn sent(req: &webhooks_core::ports::OutgoingRequest, name: &str) -> Option<String> {
    req.headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.clone())
}

#[tokio::test]
async fn headers_are_sent_on_every_attempt_and_test_send_and_their_values_never_shown() {
    // GIVEN a webhook with two custom headers
    let app = app();
    let alice = token("alice", None, None);
    let (s, created) = app
        .create(json!({"X-Api-Key": KEY, "Authorization": BEARER}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let uri = format!("/api/webhooks/{id}");
    // THEN responses show names and hints, never a value (create, get, list, patch)
    let (_, got) = app.call(Method::GET, &uri, &alice, Value::Null).await;
    let (_, list) = app
        .call(Method::GET, "/api/webhooks", &alice, Value::Null)
        .await;
    let (_, patched) = app
        .call(Method::PATCH, &uri, &alice, json!({"description": "x"}))
        .await;
    assert_eq!(
        got["headers"],
        json!([{"name": "X-Api-Key", "hint": "…-KEY"}, {"name": "Authorization", "hint": "…-xyz"}])
    );
    for v in [&created, &got, &list, &patched] {
        let text = v.to_string();
        assert!(
            !text.contains(KEY) && !text.contains("gateway-token"),
            "{text}"
        );
    }

    // WHEN an event is published and its delivery fails once, then succeeds; and a test send
    let producer = token("ingest", Some("events:publish"), None);
    let event =
        json!({"bucketId": BUCKET, "event": "data.received", "data": {"dataSourceId": "pump-1"}});
    let (s, _) = app
        .call(Method::POST, "/api/events", &producer, event)
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let (s, _) = app
        .call(Method::POST, &format!("{uri}/test"), &alice, Value::Null)
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let tasks = app.queue.tasks();
    assert_eq!(tasks.len(), 2);
    // THEN no queue message carries a value
    for t in &tasks {
        let message = webhooks_core::delivery::QueueTask::DeliveryV1(t.clone()).to_json();
        assert!(
            !message.contains(KEY) && !message.contains("gateway-token"),
            "{message}"
        );
    }
    let sender = Arc::new(RecordingSender::new());
    sender.answer([RecordingSender::status(500)]);
    let d = Dispatcher::new(
        app.store.clone(),
        app.log.clone(),
        sender.clone(),
        Arc::new(SystemClock),
    );
    assert!(matches!(
        d.process(&tasks[0], 1).await.unwrap(),
        Outcome::Retry { .. }
    ));
    assert_eq!(d.process(&tasks[0], 2).await.unwrap(), Outcome::Delivered);
    assert_eq!(d.process(&tasks[1], 1).await.unwrap(), Outcome::Delivered);
    // AND all three requests (two attempts, one test send) carried both headers, once each
    let requests = sender.requests();
    assert_eq!(requests.len(), 3);
    for r in &requests {
        assert_eq!(sent(r, "x-api-key").as_deref(), Some(KEY));
        assert_eq!(sent(r, "authorization").as_deref(), Some(BEARER));
        assert_eq!(
            r.headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case("x-api-key"))
                .count(),
            1
        );
        assert!(sent(r, "x-webhook-signature").is_some());
        // The request's Debug (what a log line could show) has names only.
        assert!(!format!("{r:?}").contains(KEY));
    }

    // WHEN the key is changed, one header removed and one added (others named nowhere stay)
    let (s, got) = app
        .call(Method::PATCH, &uri, &alice, json!({"headers": {"x-api-key": "rotated-key-0000000000", "Authorization": null, "X-Tenant": "acme"}}))
        .await;
    assert_eq!(s, StatusCode::OK, "{got}");
    assert_eq!(
        got["headers"],
        json!([{"name": "x-api-key", "hint": "…0000"}, {"name": "X-Tenant", "hint": "…"}])
    );
    // THEN the next attempt (of an already queued delivery) sends the new set
    let (_, _) = app
        .call(Method::POST, &format!("{uri}/test"), &alice, Value::Null)
        .await;
    let last = app.queue.tasks().pop().unwrap();
    d.process(&last, 1).await.unwrap();
    let r = sender.requests().pop().unwrap();
    assert_eq!(
        sent(&r, "x-api-key").as_deref(),
        Some("rotated-key-0000000000")
    );
    assert_eq!(sent(&r, "x-tenant").as_deref(), Some("acme"));
    assert_eq!(sent(&r, "authorization"), None);
    // AND `"headers": null` removes them all
    let (_, got) = app
        .call(Method::PATCH, &uri, &alice, json!({"headers": null}))
        .await;
    assert_eq!(got["headers"], json!([]));
}

#[tokio::test]
async fn forbidden_names_and_bad_values_are_a_400_that_changes_nothing() {
    // GIVEN a webhook with one header
    let app = app();
    let alice = token("alice", None, None);
    let (_, w) = app.create(json!({"X-Api-Key": KEY})).await;
    let uri = format!("/api/webhooks/{}", w["id"].as_str().unwrap());
    let eleven: serde_json::Map<String, Value> =
        (0..11).map(|i| (format!("X-H{i}"), json!("v"))).collect();
    for bad in [
        json!({"Host": "evil.example"}),
        json!({"Content-Type": "text/plain"}),
        json!({"Content-Length": "1"}),
        json!({"User-Agent": "me"}),
        json!({"X-Webhook-Signature": "sha256=00"}),
        json!({"webhook-id": "x"}),
        json!({"Transfer-Encoding": "chunked"}),
        json!({"Connection": "close"}),
        json!({"Bad Name": "v"}),
        json!({"X-A": "line\r\nX-Injected: 1"}),
        json!({"X-A": "x".repeat(1025)}),
        json!({"X-A": 42}),
        json!({"X-A": ""}),
        Value::Object(eleven),
    ] {
        // WHEN sent on create or PATCH
        let (s, e) = app.create(bad.clone()).await;
        // THEN 400 invalid_headers, and nothing is stored or changed
        assert_eq!(
            (s, e["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_headers")),
            "{bad}: {e}"
        );
        let (s, e) = app
            .call(
                Method::PATCH,
                &uri,
                &alice,
                json!({"headers": bad, "active": false}),
            )
            .await;
        assert_eq!(
            (s, e["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_headers")),
            "{bad}: {e}"
        );
    }
    assert_eq!(app.store.len(), 1);
    let (_, got) = app.call(Method::GET, &uri, &alice, Value::Null).await;
    assert_eq!(got["active"], true);
    assert_eq!(
        got["headers"],
        json!([{"name": "X-Api-Key", "hint": "…-KEY"}])
    );
}
