//! Recovery through the API (in-process, memory ports, the AWS way: each request on a running
//! job works on it): 2,500 dead letters listed completely through the signed cursor and all
//! redelivered by one `recover` request followed by polling its job; asking again redelivers
//! nothing twice; bad filters, windows and cursors get a clear 400.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use webhooks_api::auth::{Authenticator, Claims, TokenRules};
use webhooks_api::{AppState, Ports, router};
use webhooks_core::delivery::{DeadLetter, DeliveryTask};
use webhooks_core::ports::DeliveryLog;
use webhooks_core::ports::memory::{MemoryLog, MemoryQueue, MemoryStore};
use webhooks_core::time::SystemClock;
use webhooks_core::validate::UrlPolicy;
use webhooks_core::{DeliveryId, EventType, Timestamp, WebhookId};

const SECRET: &[u8] = b"recovery-test-secret-recovery-test-secret";
const BUCKET: &str = "507f1f77bcf86cd799439011";
const LETTERS: i64 = 2_500;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn token(sub: &str) -> String {
    Authenticator::new(SECRET)
        .unwrap()
        .mint(&Claims {
            sub: sub.into(),
            exp: now() + 3600,
            ..Default::default()
        })
        .unwrap()
}

async fn call(
    state: &AppState,
    method: Method,
    uri: &str,
    who: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {}", token(who)));
    let body = match body {
        Some(b) => {
            req = req.header(header::CONTENT_TYPE, "application/json");
            Body::from(b.to_string())
        }
        None => Body::empty(),
    };
    let res = router(state.clone())
        .oneshot(req.body(body).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn twenty_five_hundred_dead_letters_are_listed_by_cursor_and_recovered_once_by_one_request() {
    // GIVEN a webhook with 2,500 dead letters given up over the last hours
    let store = Arc::new(MemoryStore::new());
    let log = Arc::new(MemoryLog::new(store.clone()));
    let queue = Arc::new(MemoryQueue::new());
    let ports = Ports {
        store: store.clone(),
        log: log.clone(),
        queue: queue.clone(),
        clock: Arc::new(SystemClock),
    };
    let state = AppState::new(ports, UrlPolicy::PRODUCTION, SECRET)
        .unwrap()
        .with_token_rules(&TokenRules {
            open_buckets: true,
            ..Default::default()
        });
    let (s, w) = call(
        &state,
        Method::POST,
        "/api/webhooks",
        "alice",
        Some(json!({"bucketId": BUCKET, "url": "https://example.com/hook", "events": ["alert.triggered"]})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let id = w["id"].as_str().unwrap().to_owned();
    let webhook = WebhookId::parse(&id).unwrap();
    let start = now() - 3 * 3600;
    for i in 0..LETTERS {
        log.put_dead_letter(&DeadLetter {
            task: DeliveryTask {
                delivery_id: DeliveryId::generate(start + i),
                webhook_id: webhook.clone(),
                event: if i % 2 == 0 {
                    EventType::AlertTriggered
                } else {
                    EventType::DataReceived
                },
                generation: 0,
                attempts_made: 0,
                body: format!("{{\"n\":{i}}}"),
                created_at: Timestamp::from_unix(start + i),
            },
            error: "receiver answered HTTP 500".into(),
            attempts: 4,
            at: Timestamp::from_unix(start + i + 1),
        })
        .await
        .unwrap();
    }

    // WHEN they are listed 100 at a time through nextCursor
    let mut seen = std::collections::BTreeSet::new();
    let mut uri = format!("/api/webhooks/{id}/dead-letters?limit=100");
    let mut pages = 0;
    loop {
        let (s, page) = call(&state, Method::GET, &uri, "alice", None).await;
        assert_eq!(s, StatusCode::OK, "{page}");
        pages += 1;
        for d in page["data"].as_array().unwrap() {
            assert!(
                seen.insert(d["deliveryId"].as_str().unwrap().to_owned()),
                "listed twice"
            );
        }
        match page["nextCursor"].as_str() {
            Some(c) => uri = format!("/api/webhooks/{id}/dead-letters?limit=100&cursor={c}"),
            None => break,
        }
    }
    // THEN every one is listed once
    assert_eq!(seen.len(), LETTERS as usize);
    assert_eq!(pages, 25);
    // AND a filter selects exactly its share, through its own cursors
    let (_, half) = call(
        &state,
        Method::GET,
        &format!("/api/webhooks/{id}/dead-letters?limit=100&event=data.received"),
        "alice",
        None,
    )
    .await;
    let cursor = half["nextCursor"].as_str().unwrap().to_owned();
    assert!(
        half["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["event"] == "data.received")
    );
    let (s, e) = call(
        &state,
        Method::GET,
        &format!("/api/webhooks/{id}/dead-letters?cursor={cursor}"),
        "alice",
        None,
    )
    .await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_cursor")),
        "a cursor of other filters"
    );

    // WHEN one recover request asks for everything since the outage began, and its job is polled
    let since = Timestamp::from_unix(start).to_rfc3339();
    let body = json!({"since": since});
    let (s, job) = call(
        &state,
        Method::POST,
        &format!("/api/webhooks/{id}/recover"),
        "alice",
        Some(body.clone()),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{job}");
    assert_eq!(job["total"], LETTERS);
    let job_id = job["id"].as_str().unwrap().to_owned();
    let mut job = job;
    for _ in 0..50 {
        if job["state"] == "completed" {
            break;
        }
        let (s, j) = call(
            &state,
            Method::GET,
            &format!("/api/webhooks/{id}/recover/{job_id}"),
            "alice",
            None,
        )
        .await;
        assert_eq!(s, StatusCode::OK);
        job = j;
    }
    // THEN every dead letter is queued once, as its next generation, and none is left
    assert_eq!(
        (
            job["state"].as_str(),
            job["done"].as_u64(),
            job["failed"].as_u64()
        ),
        (Some("completed"), Some(2_500), Some(0))
    );
    let tasks = queue.tasks();
    assert_eq!(tasks.len(), LETTERS as usize);
    let ids: std::collections::BTreeSet<String> =
        tasks.iter().map(|t| t.delivery_id.to_string()).collect();
    assert_eq!(ids, seen);
    assert!(tasks.iter().all(|t| t.generation == 1));
    let (_, left) = call(
        &state,
        Method::GET,
        &format!("/api/webhooks/{id}/dead-letters"),
        "alice",
        None,
    )
    .await;
    assert_eq!(left["data"].as_array().unwrap().len(), 0);

    // AND asking again names the same job and queues nothing more
    let (s, again) = call(
        &state,
        Method::POST,
        &format!("/api/webhooks/{id}/recover"),
        "alice",
        Some(body),
    )
    .await;
    assert_eq!(
        (s, again["id"].as_str()),
        (StatusCode::ACCEPTED, Some(job_id.as_str()))
    );
    assert_eq!(queue.tasks().len(), LETTERS as usize);
    // AND nobody else sees the job
    let (s, _) = call(
        &state,
        Method::GET,
        &format!("/api/webhooks/{id}/recover/{job_id}"),
        "bob",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn bad_filters_windows_and_cursors_are_a_clear_400() {
    let store = Arc::new(MemoryStore::new());
    let log = Arc::new(MemoryLog::new(store.clone()));
    let ports = Ports {
        store: store.clone(),
        log,
        queue: Arc::new(MemoryQueue::new()),
        clock: Arc::new(SystemClock),
    };
    let state = AppState::new(ports, UrlPolicy::PRODUCTION, SECRET)
        .unwrap()
        .with_token_rules(&TokenRules {
            open_buckets: true,
            ..Default::default()
        });
    let (_, w) = call(
        &state,
        Method::POST,
        "/api/webhooks",
        "alice",
        Some(json!({"bucketId": BUCKET, "url": "https://example.com/hook", "events": ["alert.triggered"]})),
    )
    .await;
    let id = w["id"].as_str().unwrap();
    for (query, code) in [
        ("deliveries?status=ok", "invalid_status"),
        ("deliveries?event=alert.fired", "invalid_event"),
        ("deliveries?since=yesterday", "invalid_time"),
        (
            "deliveries?since=2024-01-15T10:00:00Z&until=2024-01-15T09:00:00Z",
            "invalid_time",
        ),
        ("deliveries?limit=0", "invalid_query"),
        ("deliveries?cursor=abc.def", "invalid_cursor"),
        ("deliveries?colour=red", "invalid_query"),
        ("dead-letters?status=failed", "invalid_query"),
        ("dead-letters?until=tomorrow", "invalid_time"),
        ("dead-letters?cursor=", "invalid_cursor"),
    ] {
        let (s, e) = call(
            &state,
            Method::GET,
            &format!("/api/webhooks/{id}/{query}"),
            "alice",
            None,
        )
        .await;
        assert_eq!(
            (s, e["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some(code)),
            "{query}"
        );
    }
    for (body, code) in [
        (json!({}), "invalid_body"),
        (json!({"since": "soon"}), "invalid_window"),
        (json!({"since": "2999-01-01T00:00:00Z"}), "invalid_window"),
        (
            json!({"since": "2024-01-15T10:00:00Z", "until": "2024-01-15T10:00:00Z"}),
            "invalid_window",
        ),
        (
            json!({"since": "2024-01-15T10:00:00Z", "extra": 1}),
            "invalid_body",
        ),
    ] {
        let (s, e) = call(
            &state,
            Method::POST,
            &format!("/api/webhooks/{id}/recover"),
            "alice",
            Some(body.clone()),
        )
        .await;
        assert_eq!(
            (s, e["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some(code)),
            "{body}"
        );
    }
    let (s, e) = call(
        &state,
        Method::GET,
        &format!("/api/webhooks/{id}/recover/nope"),
        "alice",
        None,
    )
    .await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_id"))
    );
}
