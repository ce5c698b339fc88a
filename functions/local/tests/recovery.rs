//! Recovery in the local mode's shape: the API on SQLite (store, delivery log and queue on one
//! file) with recovery jobs as background tasks, served over HTTP. 2,500 dead letters seeded
//! through the log are listed completely through the cursor, and one `recover` request queues
//! each exactly once (its job polled until completed); asking again queues nothing.

use std::sync::Arc;

use serde_json::{Value, json};
use webhooks_api::auth::{Authenticator, Claims, TokenRules};
use webhooks_api::{AppState, Ports, router};
use webhooks_core::delivery::{DeadLetter, DeliveryTask};
use webhooks_core::ports::DeliveryLog;
use webhooks_core::time::SystemClock;
use webhooks_core::validate::UrlPolicy;
use webhooks_core::{DeliveryId, EventType, Timestamp, WebhookId};
use webhooks_embedded::db::Database;
use webhooks_embedded::{SqliteDeliveryLog, SqliteQueue, SqliteStore};

const SECRET: &[u8] = b"local-recovery-secret-local-recovery-secret";
const LETTERS: i64 = 2_500;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_five_hundred_dead_letters_are_listed_and_recovered_once_in_the_background() {
    // GIVEN the API on one SQLite file, recovery in the background, and a webhook
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(&dir.path().join("webhooks.db")).unwrap();
    let log = SqliteDeliveryLog::new(db.clone());
    let queue = SqliteQueue::new(db.clone());
    let ports = Ports {
        store: Arc::new(SqliteStore::new(db.clone())),
        log: Arc::new(log.clone()),
        queue: Arc::new(queue.clone()),
        clock: Arc::new(SystemClock),
    };
    let state = AppState::new(ports, UrlPolicy::PRODUCTION, SECRET)
        .unwrap()
        .with_token_rules(&TokenRules {
            open_buckets: true,
            ..Default::default()
        })
        .with_background_recovery();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router(state)).await });
    let token = Authenticator::new(SECRET)
        .unwrap()
        .mint(&Claims {
            sub: "alice".into(),
            exp: now() + 3600,
            ..Default::default()
        })
        .unwrap();
    let http = reqwest::Client::new();
    let call = |method: reqwest::Method, path: String, body: Option<Value>| {
        let mut r = http
            .request(method, format!("{base}{path}"))
            .bearer_auth(&token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        async move {
            let res = r.send().await.expect("request");
            (
                res.status().as_u16(),
                res.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let (s, w) = call(
        reqwest::Method::POST,
        "/api/webhooks".into(),
        Some(json!({"bucketId": "507f1f77bcf86cd799439011", "url": "https://example.com/hook", "events": ["alert.triggered"]})),
    )
    .await;
    assert_eq!(s, 201, "{w}");
    let id = w["id"].as_str().unwrap().to_owned();
    let webhook = WebhookId::parse(&id).unwrap();
    // AND 2,500 dead letters, seeded through the log
    let start = now() - 3 * 3600;
    for i in 0..LETTERS {
        log.put_dead_letter(&DeadLetter {
            task: DeliveryTask {
                delivery_id: DeliveryId::generate(start + i),
                webhook_id: webhook.clone(),
                event: EventType::AlertTriggered,
                generation: 0,
                attempts_made: 0,
                body: format!("{{\"n\":{i}}}"),
                created_at: Timestamp::from_unix(start + i),
            },
            error: "receiver answered HTTP 500".into(),
            attempts: 4,
            at: Timestamp::from_unix(start + i / 2),
        })
        .await
        .unwrap();
    }

    // WHEN they are listed through nextCursor, 100 at a time
    let mut seen = std::collections::BTreeSet::new();
    let mut path = format!("/api/webhooks/{id}/dead-letters?limit=100");
    loop {
        let (s, page) = call(reqwest::Method::GET, path.clone(), None).await;
        assert_eq!(s, 200, "{page}");
        for d in page["data"].as_array().unwrap() {
            assert!(
                seen.insert(d["deliveryId"].as_str().unwrap().to_owned()),
                "listed twice"
            );
        }
        match page["nextCursor"].as_str() {
            Some(c) => path = format!("/api/webhooks/{id}/dead-letters?limit=100&cursor={c}"),
            None => break,
        }
    }
    // THEN each is listed once
    assert_eq!(seen.len(), LETTERS as usize);

    // WHEN one recover request asks for all of them, and the job is polled
    let body = json!({"since": Timestamp::from_unix(start).to_rfc3339()});
    let (s, job) = call(
        reqwest::Method::POST,
        format!("/api/webhooks/{id}/recover"),
        Some(body.clone()),
    )
    .await;
    assert_eq!(s, 202, "{job}");
    assert_eq!(job["total"], LETTERS);
    let job_id = job["id"].as_str().unwrap().to_owned();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let job = loop {
        let (s, j) = call(
            reqwest::Method::GET,
            format!("/api/webhooks/{id}/recover/{job_id}"),
            None,
        )
        .await;
        assert_eq!(s, 200);
        if j["state"] == "completed" {
            break j;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not completed in time: {j}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    // THEN all 2,500 are queued once and none is left a dead letter
    assert_eq!(
        (job["done"].as_u64(), job["failed"].as_u64()),
        (Some(2_500), Some(0))
    );
    assert_eq!(queue.len().await.unwrap(), LETTERS as usize);
    assert!(log.dead_letters(&webhook, 10).await.unwrap().is_empty());
    // AND asking again names the same job and queues nothing more
    let (s, again) = call(
        reqwest::Method::POST,
        format!("/api/webhooks/{id}/recover"),
        Some(body),
    )
    .await;
    assert_eq!((s, again["id"].as_str()), (202, Some(job_id.as_str())));
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(queue.len().await.unwrap(), LETTERS as usize);
}
