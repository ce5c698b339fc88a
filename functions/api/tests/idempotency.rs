//! `Idempotency-Key` on `POST /api/events`, in-process: the header's validation (400, nothing
//! stored or queued), replays (`202`, same deliveryIds, `Idempotent-Replayed`), another body
//! (`422`), a request in progress (`409` + `Retry-After`), a repeat after a `207`, and the
//! OpenAPI document. The stores' adapters have their own tests (SQLite, DynamoDB on moto).

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use webhooks_api::auth::{Authenticator, Claims, Scope, TokenRules};
use webhooks_api::{AppState, Ports, router};
use webhooks_core::delivery_service::PublishEvent;
use webhooks_core::idempotency::{
    IdempotencyKey, IdempotencyRecord, IdempotencyStore, MemoryIdempotencyStore, request_hash,
};
use webhooks_core::ports::memory::{MemoryLog, MemoryQueue, MemoryStore};
use webhooks_core::time::SystemClock;
use webhooks_core::validate::UrlPolicy;
use webhooks_core::{OwnerId, Timestamp};

const SECRET: &[u8] = b"router-test-secret-router-test-secret";
const BUCKET: &str = "507f1f77bcf86cd799439011";

struct App {
    state: AppState,
    queue: Arc<MemoryQueue>,
    keys: Arc<MemoryIdempotencyStore>,
}

fn app() -> App {
    let store = Arc::new(MemoryStore::new());
    let queue = Arc::new(MemoryQueue::new());
    let keys = Arc::new(MemoryIdempotencyStore::new());
    let ports = Ports {
        store: store.clone(),
        log: Arc::new(MemoryLog::new(store.clone())),
        queue: queue.clone(),
        clock: Arc::new(SystemClock),
    };
    App {
        state: AppState::new(ports, UrlPolicy::PRODUCTION, SECRET)
            .unwrap()
            .with_token_rules(&TokenRules {
                open_buckets: true,
                ..Default::default()
            })
            .with_idempotency(keys.clone()),
        queue,
        keys,
    }
}

fn token(sub: &str, scope: Option<&str>) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    Authenticator::new(SECRET)
        .unwrap()
        .mint(&Claims {
            sub: sub.into(),
            exp: now + 3600,
            buckets: None,
            scope: scope.map(|s| Scope::Text(s.into())),
            ..Default::default()
        })
        .unwrap()
}

impl App {
    async fn call(
        &self,
        method: Method,
        uri: &str,
        token: &str,
        keys: &[&[u8]],
        body: Value,
    ) -> (StatusCode, HeaderMap, Value) {
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::CONTENT_TYPE, "application/json");
        for k in keys {
            req = req.header("Idempotency-Key", *k);
        }
        let req = req.body(Body::from(body.to_string())).unwrap();
        let res = router(self.state.clone()).oneshot(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        let v = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        (status, headers, v)
    }

    async fn publish(&self, key: &[u8], body: Value) -> (StatusCode, HeaderMap, Value) {
        self.call(
            Method::POST,
            "/api/events",
            &token("sensor-gateway", Some("events:publish")),
            &[key],
            body,
        )
        .await
    }

    /// Two webhooks on the bucket.
    async fn setup(&self) {
        for url in ["https://example.com/a", "https://example.com/b"] {
            let (s, w) = self
                .call(
                    Method::POST,
                    "/api/webhooks",
                    &token("alice", None),
                    &[],
                    json!({"bucketId": BUCKET, "url": url, "events": ["data.received"]}),
                )
                .await
                .into_status_body();
            assert_eq!(s, StatusCode::CREATED, "{w}");
        }
    }
}

trait StatusBody {
    fn into_status_body(self) -> (StatusCode, Value);
}

impl StatusBody for (StatusCode, HeaderMap, Value) {
    fn into_status_body(self) -> (StatusCode, Value) {
        (self.0, self.2)
    }
}

fn reading(value: i64) -> Value {
    json!({"events": [
        {"bucketId": BUCKET, "event": "data.received", "data": {"device": "pump-1", "v": value}},
        {"bucketId": BUCKET, "event": "data.received", "data": {"device": "pump-2", "v": value}},
    ]})
}

fn ids(body: &Value) -> Vec<String> {
    let mut v: Vec<String> = body["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["deliveryId"].as_str().unwrap().to_owned())
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn a_repeat_answers_the_original_202_and_queues_nothing() {
    let app = app();
    app.setup().await;
    let (s, h, first) = app.publish(b"batch-0001", reading(1)).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{first}");
    assert!(h.get("idempotent-replayed").is_none());
    assert_eq!(ids(&first).len(), 4);
    // Same body with its keys in another order: the same request.
    let reordered = json!({"events": [
        {"data": {"v": 1, "device": "pump-1"}, "event": "data.received", "bucketId": BUCKET},
        {"bucketId": BUCKET, "data": {"device": "pump-2", "v": 1}, "event": "data.received"},
    ]});
    let (s, h, again) = app.publish(b"batch-0001", reordered).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{again}");
    assert_eq!(h.get("idempotent-replayed").unwrap(), "true");
    assert_eq!(again, first);
    assert_eq!(app.queue.tasks().len(), 4);
}

#[tokio::test]
async fn another_body_with_the_same_key_is_422_and_queues_nothing() {
    let app = app();
    app.setup().await;
    let (s, _, _) = app.publish(b"k", reading(1)).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let (s, _, e) = app.publish(b"k", reading(2)).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert_eq!(e["error"]["code"], "idempotency_key_reused");
    assert_eq!(app.queue.tasks().len(), 4);
}

#[tokio::test]
async fn a_repeat_while_the_first_is_publishing_is_409_with_retry_after() {
    // GIVEN a key claimed just now by a request still publishing
    let app = app();
    app.setup().await;
    let body = reading(1);
    let events: Vec<PublishEvent> = body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| serde_json::from_value(e.clone()).unwrap())
        .collect();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let claim = IdempotencyRecord::claim(
        &OwnerId::parse("sensor-gateway").unwrap(),
        &IdempotencyKey::parse("busy").unwrap(),
        request_hash(&events),
        Timestamp::from_unix(now),
    );
    assert_eq!(app.keys.insert_or_get(&claim).await.unwrap(), None);
    // WHEN the same request comes
    let (s, h, e) = app.publish(b"busy", body).await;
    // THEN 409 with Retry-After, nothing queued
    assert_eq!(s, StatusCode::CONFLICT, "{e}");
    assert_eq!(e["error"]["code"], "idempotency_key_in_progress");
    assert_eq!(h.get(header::RETRY_AFTER).unwrap(), "1");
    assert!(app.queue.tasks().is_empty());
}

#[tokio::test]
async fn a_repeat_after_a_207_or_503_queues_the_missing_deliveries_with_the_same_ids() {
    // GIVEN a publish the queue refused entirely (503, every delivery listed as unconfirmed)
    let app = app();
    app.setup().await;
    app.queue.fail_with(Some("queue down"));
    let (s, _, e) = app.publish(b"retry-me", reading(1)).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{e}");
    assert!(app.queue.tasks().is_empty());
    // WHEN the queue is back and the producer repeats
    app.queue.fail_with(None);
    let (s, _, ok) = app.publish(b"retry-me", reading(1)).await;
    // THEN the deliveries are queued once, with the ids the 503 named
    assert_eq!(s, StatusCode::ACCEPTED, "{ok}");
    let message = e["error"]["message"].as_str().unwrap();
    for id in ids(&ok) {
        assert!(message.contains(&id), "{id} not in {message}");
    }
    assert_eq!(app.queue.tasks().len(), 4);
    let (s, h, replay) = app.publish(b"retry-me", reading(1)).await;
    assert_eq!((s, &replay), (StatusCode::ACCEPTED, &ok));
    assert_eq!(h.get("idempotent-replayed").unwrap(), "true");
    assert_eq!(app.queue.tasks().len(), 4);
}

#[tokio::test]
async fn bad_keys_are_400_and_store_and_queue_nothing() {
    let app = app();
    app.setup().await;
    let long = vec![b'x'; 256];
    for bad in [&b""[..], &long[..], b"tab\there", "caf\u{e9}".as_bytes()] {
        let (s, _, e) = app.publish(bad, reading(1)).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad:?}: {e}");
        assert_eq!(e["error"]["code"], "invalid_idempotency_key", "{bad:?}");
    }
    let (s, _, e) = app
        .call(
            Method::POST,
            "/api/events",
            &token("sensor-gateway", Some("events:publish")),
            &[b"one", b"two"],
            reading(1),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
    assert_eq!(e["error"]["code"], "invalid_idempotency_key");
    // A bad event with a good key stores nothing: the key is free for the corrected body.
    let bad_event = json!({"bucketId": BUCKET, "event": "nope", "data": {}});
    let (s, _, _) = app.publish(b"fixed-later", bad_event).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(app.queue.tasks().is_empty());
    let (s, _, ok) = app.publish(b"fixed-later", reading(1)).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{ok}");
    // 255 characters is fine.
    let (s, _, ok) = app.publish(&[b'k'; 255], reading(3)).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{ok}");
}

#[tokio::test]
async fn keys_are_per_producer() {
    let app = app();
    app.setup().await;
    let (_, _, a) = app.publish(b"shared", reading(1)).await;
    let (s, h, b) = app
        .call(
            Method::POST,
            "/api/events",
            &token("other-gateway", Some("events:publish")),
            &[b"shared"],
            reading(2),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    assert!(h.get("idempotent-replayed").is_none());
    assert_ne!(ids(&a), ids(&b));
    assert_eq!(app.queue.tasks().len(), 8);
}

#[tokio::test]
async fn the_openapi_document_describes_the_header_and_its_answers() {
    let app = app();
    let (_, _, doc) = app
        .call(Method::GET, "/api/openapi.json", "", &[], Value::Null)
        .await;
    let op = &doc["paths"]["/api/events"]["post"];
    let param = op["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "Idempotency-Key")
        .expect("Idempotency-Key parameter");
    assert_eq!(param["in"], "header");
    assert_eq!(param["schema"]["maxLength"], 255);
    for code in ["409", "422"] {
        assert!(op["responses"][code].is_object(), "{code}");
    }
    assert!(
        op["responses"]["409"]["headers"]["Retry-After"].is_object(),
        "{}",
        op["responses"]["409"]
    );
}
