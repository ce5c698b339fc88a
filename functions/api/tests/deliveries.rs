//! The delivery routes driven in-process: publishing (fan-out, scope, limits, bad input,
//! enqueue failures), test sends, history, dead letters and redelivery. The queue is the
//! in-memory fake and attempts are made by core's `Dispatcher` with a scripted sender.

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use webhooks_core::delivery::MAX_MESSAGE_BYTES;
use webhooks_core::dispatch::Outcome;
use webhooks_core::ports::memory::RecordingSender;

mod common;

use common::{App, BUCKET, app, token};

impl App {
    async fn webhook(&self, owner: &str, events: Value) -> String {
        let body = json!({"bucketId": BUCKET, "url": "https://example.com/hook", "events": events, "secret": "your_webhook_secret"});
        let (s, w) = self
            .call(
                Method::POST,
                "/api/webhooks",
                &token(owner, None, None),
                Some(body),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED);
        w["id"].as_str().unwrap().to_owned()
    }
}

fn alert() -> Value {
    json!({
        "bucketId": BUCKET,
        "event": "alert.triggered",
        "timestamp": "2024-01-15T10:30:00Z",
        "data": {"alertName": "High Temperature Warning", "currentValue": 31.5, "threshold": 30.0}
    })
}

#[tokio::test]
async fn publishing_fans_out_to_every_active_subscribed_webhook_of_the_bucket() {
    // GIVEN two alert subscribers (different owners), one data-only and one disabled webhook
    let app = app();
    let a = app.webhook("alice", json!(["alert.triggered"])).await;
    let b = app
        .webhook("bob", json!(["alert.triggered", "data.received"]))
        .await;
    app.webhook("carol", json!(["data.received"])).await;
    let off = app.webhook("dave", json!(["alert.triggered"])).await;
    app.call(
        Method::PATCH,
        &format!("/api/webhooks/{off}"),
        &token("dave", None, None),
        Some(json!({"active": false})),
    )
    .await;

    // WHEN a producer publishes one alert
    let producer = token("ingest", Some("events:publish"), None);
    let (status, res) = app
        .call(Method::POST, "/api/events", &producer, Some(alert()))
        .await;

    // THEN one delivery per active alert subscriber is queued, each with its own id and envelope
    assert_eq!(status, StatusCode::ACCEPTED, "{res}");
    assert_eq!(res["events"], 1);
    let tasks = app.queue.tasks();
    let mut targets: Vec<String> = tasks.iter().map(|t| t.webhook_id.to_string()).collect();
    targets.sort();
    let mut want = vec![a.clone(), b.clone()];
    want.sort();
    assert_eq!(targets, want);
    assert_ne!(tasks[0].delivery_id, tasks[1].delivery_id);
    for t in &tasks {
        let body: Value = serde_json::from_str(&t.body).unwrap();
        let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "event",
                "timestamp",
                "webhookId",
                "bucketId",
                "deliveryId",
                "data"
            ]
        );
        assert_eq!(body["webhookId"], t.webhook_id.to_string());
        assert_eq!(body["deliveryId"], t.delivery_id.to_string());
        assert_eq!(body["timestamp"], "2024-01-15T10:30:00Z");
        assert!(
            t.body.contains(r#""threshold":30}"#),
            "JS number form: {}",
            t.body
        );
        assert!(!t.body.contains("your_webhook_secret"));
    }

    // AND a batch publishes several events at once
    let batch = json!({"events": [alert(), {"bucketId": BUCKET, "event": "data.received", "data": {"v": 1}}]});
    let (status, res) = app
        .call(Method::POST, "/api/events", &producer, Some(batch))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(
        (
            res["events"].as_u64(),
            res["deliveries"].as_array().unwrap().len()
        ),
        (Some(2), 4),
        "alert: alice+bob, data: bob+carol"
    );
}

#[tokio::test]
async fn bad_publishes_get_a_clear_error_and_queue_nothing() {
    let app = app();
    app.webhook("alice", json!(["alert.triggered"])).await;
    let producer = token("ingest", Some("events:publish"), None);
    let with = |f: &dyn Fn(&mut Value)| {
        let mut b = alert();
        f(&mut b);
        b
    };
    let huge = "x".repeat(MAX_MESSAGE_BYTES);
    let cases: Vec<(&str, String, Value, StatusCode, &str)> = vec![
        (
            "no scope",
            token("ingest", None, None),
            alert(),
            StatusCode::FORBIDDEN,
            "insufficient_scope",
        ),
        (
            "other scope",
            token("ingest", Some("webhooks:read"), None),
            alert(),
            StatusCode::FORBIDDEN,
            "insufficient_scope",
        ),
        (
            "bucket not allowed",
            token(
                "ingest",
                Some("events:publish"),
                Some(&["507f1f77bcf86cd799439099"]),
            ),
            alert(),
            StatusCode::FORBIDDEN,
            "bucket_forbidden",
        ),
        (
            "unknown event",
            producer.clone(),
            with(&|b| b["event"] = json!("alert.fired")),
            StatusCode::BAD_REQUEST,
            "invalid_event",
        ),
        (
            "test event",
            producer.clone(),
            with(&|b| b["event"] = json!("webhook.test")),
            StatusCode::BAD_REQUEST,
            "invalid_event",
        ),
        (
            "data not an object",
            producer.clone(),
            with(&|b| b["data"] = json!([1, 2])),
            StatusCode::BAD_REQUEST,
            "invalid_data",
        ),
        (
            "bad timestamp",
            producer.clone(),
            with(&|b| b["timestamp"] = json!("yesterday")),
            StatusCode::BAD_REQUEST,
            "invalid_timestamp",
        ),
        (
            "bad bucket",
            producer.clone(),
            with(&|b| b["bucketId"] = json!("b1")),
            StatusCode::BAD_REQUEST,
            "invalid_bucket_id",
        ),
        (
            "unknown field",
            producer.clone(),
            with(&|b| b["priority"] = json!(1)),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            "missing data",
            producer.clone(),
            json!({"bucketId": BUCKET, "event": "alert.triggered"}),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            "empty batch",
            producer.clone(),
            json!({"events": []}),
            StatusCode::BAD_REQUEST,
            "invalid_batch",
        ),
        (
            "101 events",
            producer.clone(),
            json!({"events": vec![alert(); 101]}),
            StatusCode::BAD_REQUEST,
            "invalid_batch",
        ),
        (
            "one bad event in a batch",
            producer.clone(),
            json!({"events": [alert(), with(&|b| b["event"] = json!("nope"))]}),
            StatusCode::BAD_REQUEST,
            "invalid_event",
        ),
        (
            "too large for the queue",
            producer.clone(),
            json!({"events": [alert(), with(&|b| b["data"]["blob"] = json!(huge.clone()))]}),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
    ];
    for (what, tok, body, status, code) in cases {
        let (s, res) = app
            .call(Method::POST, "/api/events", &tok, Some(body))
            .await;
        assert_eq!(
            (s, res["error"]["code"].as_str()),
            (status, Some(code)),
            "{what}: {res}"
        );
        assert!(app.queue.tasks().is_empty(), "{what}: something was queued");
    }
    let (_, res) = app
        .call(
            Method::POST,
            "/api/events",
            &producer,
            Some(json!({"events": [alert(), with(&|b| b["event"] = json!("nope"))]})),
        )
        .await;
    assert!(
        res["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("events[1]:"),
        "{res}"
    );
}

#[tokio::test]
async fn an_enqueue_failure_is_reported_with_the_deliveries_not_queued() {
    let app = app();
    app.webhook("alice", json!(["alert.triggered"])).await;
    app.queue.fail_with(Some("queue unreachable"));
    let (status, res) = app
        .call(
            Method::POST,
            "/api/events",
            &token("i", Some("events:publish"), None),
            Some(alert()),
        )
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res["error"]["code"], "enqueue_failed");
    assert!(
        res["error"]["message"]
            .as_str()
            .unwrap()
            .contains("1 deliveries could not be confirmed as queued"),
        "{res}"
    );
}

#[tokio::test]
async fn a_test_send_queues_a_signed_webhook_test_with_the_chosen_sample() {
    let app = app();
    let id = app.webhook("alice", json!(["data.received"])).await;
    let alice = token("alice", None, None);
    let (status, res) = app
        .call(
            Method::POST,
            &format!("/api/webhooks/{id}/test"),
            &alice,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{res}");
    assert_eq!(res["event"], "webhook.test");
    let (status, _) = app
        .call(
            Method::POST,
            &format!("/api/webhooks/{id}/test"),
            &alice,
            Some(json!({"event": "bucket.updated"})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let tasks = app.queue.tasks();
    let first: Value = serde_json::from_str(&tasks[0].body).unwrap();
    assert_eq!(
        (first["event"].as_str(), first["data"]["test"].as_bool()),
        (Some("webhook.test"), Some(true))
    );
    assert_eq!(
        first["data"]["dataPoint"]["_id"], "507f1f77bcf86cd799439017",
        "data.received sample"
    );
    let second: Value = serde_json::from_str(&tasks[1].body).unwrap();
    assert_eq!(second["data"]["changes"]["retentionDays"]["new"], 365);

    // Bad input and others' webhooks
    let (s, r) = app
        .call(
            Method::POST,
            &format!("/api/webhooks/{id}/test"),
            &alice,
            Some(json!({"event": "nope"})),
        )
        .await;
    assert_eq!(
        (s, r["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_event"))
    );
    let (s, r) = app
        .call(
            Method::POST,
            &format!("/api/webhooks/{id}/test"),
            &alice,
            Some(json!({"evnt": "x"})),
        )
        .await;
    assert_eq!(
        (s, r["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_body"))
    );
    let (s, _) = app
        .call(
            Method::POST,
            &format!("/api/webhooks/{id}/test"),
            &token("bob", None, None),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    app.call(
        Method::PATCH,
        &format!("/api/webhooks/{id}"),
        &alice,
        Some(json!({"active": false})),
    )
    .await;
    let (s, r) = app
        .call(
            Method::POST,
            &format!("/api/webhooks/{id}/test"),
            &alice,
            None,
        )
        .await;
    assert_eq!(
        (s, r["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("webhook_inactive"))
    );
    assert_eq!(app.queue.tasks().len(), 2);
}

#[tokio::test]
async fn history_dead_letters_and_redelivery_follow_the_dispatcher() {
    // GIVEN a delivery that failed 4 times and was given up
    let app = app();
    let id = app.webhook("alice", json!(["alert.triggered"])).await;
    let alice = token("alice", None, None);
    app.call(
        Method::POST,
        "/api/events",
        &token("i", Some("events:publish"), None),
        Some(alert()),
    )
    .await;
    let task = app.queue.tasks().pop().unwrap();
    app.sender
        .answer((0..4).map(|_| RecordingSender::status(500)));
    let d = app.dispatcher();
    for n in 1..=4 {
        let out = d.process(&task, n).await.unwrap();
        assert_eq!(matches!(out, Outcome::GiveUp { .. }), n == 4);
    }

    // THEN the history lists 4 attempts newest first, the stats count one failure
    let (s, hist) = app
        .call(
            Method::GET,
            &format!("/api/webhooks/{id}/deliveries"),
            &alice,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let attempts: Vec<u64> = hist["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["attempt"].as_u64().unwrap())
        .collect();
    assert_eq!(attempts, vec![4, 3, 2, 1]);
    let a = &hist["data"][0];
    assert_eq!(
        (
            a["status"].as_str(),
            a["statusCode"].as_u64(),
            a["deliveryId"].as_str()
        ),
        (Some("failed"), Some(500), Some(task.delivery_id.as_str()))
    );
    assert_eq!(a["error"], "receiver answered HTTP 500");
    let (_, w) = app
        .call(Method::GET, &format!("/api/webhooks/{id}"), &alice, None)
        .await;
    assert_eq!(
        w["stats"],
        json!({"totalDeliveries": 1, "successfulDeliveries": 0, "failedDeliveries": 1})
    );
    assert_eq!(w["lastDeliveryStatus"], "failed");

    // AND the dead letter is listed and can be redelivered, same id and body, generation 1
    let (_, dead) = app
        .call(
            Method::GET,
            &format!("/api/webhooks/{id}/dead-letters"),
            &alice,
            None,
        )
        .await;
    assert_eq!(dead["data"][0]["deliveryId"], task.delivery_id.as_str());
    assert_eq!(dead["data"][0]["attempts"], 4);
    let uri = format!(
        "/api/webhooks/{id}/deliveries/{}/redeliver",
        task.delivery_id
    );
    let (s, _) = app
        .call(Method::POST, &uri, &token("bob", None, None), None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "bob cannot redeliver alice's");
    let (s, res) = app.call(Method::POST, &uri, &alice, None).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{res}");
    let again = app.queue.tasks().pop().unwrap();
    assert_eq!(
        (
            again.delivery_id.clone(),
            again.body.clone(),
            again.generation
        ),
        (task.delivery_id.clone(), task.body.clone(), 1)
    );
    let (s, r) = app.call(Method::POST, &uri, &alice, None).await;
    assert_eq!(
        (s, r["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found")),
        "already redelivered"
    );

    // WHEN the redelivery succeeds, it counts as a new outcome
    assert_eq!(d.process(&again, 1).await.unwrap(), Outcome::Delivered);
    let (_, w) = app
        .call(Method::GET, &format!("/api/webhooks/{id}"), &alice, None)
        .await;
    assert_eq!(
        w["stats"],
        json!({"totalDeliveries": 2, "successfulDeliveries": 1, "failedDeliveries": 1})
    );

    // Bad ids and limits
    let (s, r) = app
        .call(
            Method::POST,
            &format!("/api/webhooks/{id}/deliveries/nope/redeliver"),
            &alice,
            None,
        )
        .await;
    assert_eq!(
        (s, r["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_id"))
    );
    let (s, r) = app
        .call(
            Method::GET,
            &format!("/api/webhooks/{id}/deliveries?limit=0"),
            &alice,
            None,
        )
        .await;
    assert_eq!(
        (s, r["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_query"))
    );
    let (s, _) = app
        .call(
            Method::GET,
            &format!("/api/webhooks/{id}/deliveries"),
            &token("bob", None, None),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, r) = app
        .call(
            Method::POST,
            &format!("/api/webhooks/{id}/deliveries/redeliver"),
            &alice,
            None,
        )
        .await;
    assert_eq!(
        (s, r["deliveries"].as_array().map(Vec::len)),
        (StatusCode::ACCEPTED, Some(0))
    );
}

#[tokio::test]
async fn deleting_a_webhook_removes_its_dead_letters_and_later_redeliveries_answer_404() {
    use webhooks_core::delivery::{DeadLetter, DeliveryTask};
    use webhooks_core::ports::DeliveryLog;
    use webhooks_core::{DeliveryId, EventType, Timestamp, WebhookId};
    // GIVEN two webhooks, each with dead letters
    let app = app();
    let alice = token("alice", None, None);
    let body = json!({"bucketId": BUCKET, "url": "https://example.com/hook", "events": ["alert.triggered"]});
    let mut ids = Vec::new();
    for _ in 0..2 {
        let (s, w) = app
            .call(Method::POST, "/api/webhooks", &alice, body.clone())
            .await;
        assert_eq!(s, StatusCode::CREATED);
        ids.push(w["id"].as_str().unwrap().to_owned());
    }
    let letter = |w: &str, n: i64| DeadLetter {
        task: DeliveryTask {
            delivery_id: DeliveryId::generate(1_760_000_000 + n),
            webhook_id: WebhookId::parse(w).unwrap(),
            event: EventType::AlertTriggered,
            generation: 0,
            attempts_made: 0,
            body: format!("{{\"n\":{n}}}"),
            created_at: Timestamp::from_unix(1_760_000_000 + n),
        },
        error: "receiver answered HTTP 500".into(),
        attempts: 4,
        at: Timestamp::from_unix(1_760_000_010 + n),
    };
    for (i, w) in ids.iter().enumerate() {
        for n in 0..3 {
            app.log
                .put_dead_letter(&letter(w, 10 * i as i64 + n))
                .await
                .unwrap();
        }
    }
    let gone = letter(&ids[0], 0).task.delivery_id;

    // WHEN the first is deleted
    let (s, _) = app
        .call(
            Method::DELETE,
            &format!("/api/webhooks/{}", ids[0]),
            &alice,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);

    // THEN its dead letters are gone, the other webhook's are kept
    let first = WebhookId::parse(&ids[0]).unwrap();
    let second = WebhookId::parse(&ids[1]).unwrap();
    assert!(app.log.dead_letters(&first, 100).await.unwrap().is_empty());
    assert_eq!(app.log.dead_letters(&second, 100).await.unwrap().len(), 3);
    // AND redelivering or recovering it answers 404, queueing nothing
    for (uri, body) in [
        (
            format!("/api/webhooks/{}/deliveries/{gone}/redeliver", ids[0]),
            None,
        ),
        (
            format!("/api/webhooks/{}/deliveries/redeliver", ids[0]),
            None,
        ),
        (
            format!("/api/webhooks/{}/recover", ids[0]),
            Some(json!({"since": "2025-01-01T00:00:00Z"})),
        ),
    ] {
        let (s, b) = app.call(Method::POST, &uri, &alice, body).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{uri}: {b}");
        assert_eq!(b["error"]["code"], "not_found");
    }
    assert!(app.queue.tasks().is_empty());
}

#[tokio::test]
async fn a_full_bucket_answers_409_bucket_full_whoever_asks_and_stores_nothing() {
    // GIVEN a bucket filled by two users
    let app = app();
    let body = json!({"bucketId": BUCKET, "url": "https://example.com/hook", "events": ["alert.triggered"]});
    for i in 0..webhooks_core::webhook_service::MAX_WEBHOOKS_PER_BUCKET {
        let who = if i % 2 == 0 { "alice" } else { "bob" };
        let (s, _) = app
            .call(
                Method::POST,
                "/api/webhooks",
                &token(who, None, None),
                body.clone(),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED);
    }
    // WHEN a third user creates one more there
    let (s, b) = app
        .call(
            Method::POST,
            "/api/webhooks",
            &token("carol", None, None),
            body,
        )
        .await;
    // THEN 409 bucket_full, and nothing is stored
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    assert_eq!(b["error"]["code"], "bucket_full");
    assert_eq!(
        app.store.len(),
        webhooks_core::webhook_service::MAX_WEBHOOKS_PER_BUCKET
    );
}

#[tokio::test]
async fn the_hourly_chart_counts_finished_deliveries_by_outcome_with_latency() {
    // GIVEN alice's webhook with three deliveries: two delivered, one given up after 4 attempts
    let app = app();
    let id = app.webhook("alice", json!(["alert.triggered"])).await;
    let alice = token("alice", None, None);
    let producer = token("i", Some("events:publish"), None);
    for _ in 0..3 {
        app.call(Method::POST, "/api/events", &producer, Some(alert()))
            .await;
    }
    let tasks = app.queue.tasks();
    app.sender.answer(
        [RecordingSender::status(200), RecordingSender::status(200)]
            .into_iter()
            .chain((0..4).map(|_| RecordingSender::status(500))),
    );
    let d = app.dispatcher();
    d.process(&tasks[0], 1).await.unwrap();
    d.process(&tasks[1], 1).await.unwrap();
    for n in 1..=4 {
        d.process(&tasks[2], n).await.unwrap();
    }
    // AND one delivered again (a duplicate receipt), which counts nothing
    d.process(&tasks[0], 2).await.unwrap();

    // WHEN alice reads the webhook's hourly stats
    let uri = format!("/api/webhooks/{id}/stats/hourly");
    let (s, body) = app.call(Method::GET, &uri, &alice, None).await;

    // THEN 24 hours, oldest first, one hour apart, with the three deliveries counted once
    assert_eq!(s, StatusCode::OK, "{body}");
    let hours = body["data"].as_array().unwrap();
    assert_eq!(hours.len(), 24);
    let starts: Vec<i64> = hours
        .iter()
        .map(|h| {
            webhooks_core::Timestamp::parse(h["hour"].as_str().unwrap())
                .unwrap()
                .unix()
        })
        .collect();
    assert!(starts.windows(2).all(|w| w[1] - w[0] == 3600), "{starts:?}");
    assert_eq!(starts[0] % 3600, 0);
    let sum = |k: &str| hours.iter().map(|h| h[k].as_u64().unwrap()).sum::<u64>();
    assert_eq!((sum("delivered"), sum("failed")), (2, 1));
    let busy: Vec<&Value> = hours
        .iter()
        .filter(|h| h["delivered"].as_u64() > Some(0))
        .collect();
    assert!(
        busy.iter()
            .all(|h| h["latencyP50Ms"].is_u64() && h["latencyP95Ms"].is_u64())
    );
    let quiet = hours
        .iter()
        .filter(|h| h["delivered"] == 0 && h["failed"] == 0)
        .count();
    assert!(quiet >= 22);
    assert!(
        hours
            .iter()
            .filter(|h| h["delivered"] == 0)
            .all(|h| h["latencyP50Ms"].is_null()),
        "no latency without a delivered attempt"
    );

    // AND bad requests get their error: a query parameter, a bad id, someone else's webhook,
    // a producer token
    let (s, e) = app
        .call(Method::GET, &format!("{uri}?hours=48"), &alice, None)
        .await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_query"))
    );
    let (s, e) = app
        .call(Method::GET, "/api/webhooks/nope/stats/hourly", &alice, None)
        .await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_id"))
    );
    let (s, _) = app
        .call(Method::GET, &uri, &token("bob", None, None), None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = app.call(Method::GET, &uri, &producer, None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
}
