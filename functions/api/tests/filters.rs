//! Payload filters through the API, in-process: `filter` on create / PATCH (null removes it) /
//! GET, `invalid_filter` answers that store nothing, `filter-test`, and publishing that queues
//! only the events a webhook's filter lets through.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use webhooks_api::router;

mod common;

use common::{App, BUCKET, app, token};

impl App {
    async fn create(&self, filter: Value) -> (StatusCode, Value) {
        let body = json!({"bucketId": BUCKET, "url": "https://example.com/hook",
            "events": ["data.received", "alert.triggered"], "filter": filter});
        self.call(
            Method::POST,
            "/api/webhooks",
            &token("alice", None, None),
            body,
        )
        .await
    }
}

fn reading(device: &str, temperature: f64) -> Value {
    json!({"bucketId": BUCKET, "event": "data.received", "timestamp": "2024-01-15T10:30:00Z",
        "data": {"dataSourceId": device, "dataPoint": {"values": {"temperature": temperature}}}})
}

#[tokio::test]
async fn a_filter_is_stored_shown_replaced_and_removed() {
    // GIVEN a webhook created with a filter
    let app = app();
    let alice = token("alice", None, None);
    let filter = json!({"data.dataSourceId": {"$in": ["pump-1", "pump-3"]}});
    let (s, w) = app.create(filter.clone()).await;
    assert_eq!(s, StatusCode::CREATED, "{w}");
    assert_eq!(w["filter"], filter);
    let uri = format!("/api/webhooks/{}", w["id"].as_str().unwrap());
    // WHEN it is read, THEN the filter is shown as written
    let (_, got) = app.call(Method::GET, &uri, &alice, Value::Null).await;
    assert_eq!(got["filter"], filter);
    // WHEN another field is patched, THEN the filter stays; a new filter replaces it
    let (s, got) = app
        .call(Method::PATCH, &uri, &alice, json!({"active": true}))
        .await;
    assert_eq!((s, &got["filter"]), (StatusCode::OK, &filter));
    let other = json!({"data.dataPoint.values.temperature": {"$gte": 30}});
    let (_, got) = app
        .call(Method::PATCH, &uri, &alice, json!({"filter": other}))
        .await;
    assert_eq!(got["filter"], other);
    // WHEN patched with null, THEN it is gone; a webhook without one shows null
    let (_, got) = app
        .call(Method::PATCH, &uri, &alice, json!({"filter": null}))
        .await;
    assert_eq!(got["filter"], Value::Null);
    let (s, w) = app.create(Value::Null).await;
    assert_eq!((s, &w["filter"]), (StatusCode::CREATED, &Value::Null));
}

#[tokio::test]
async fn an_invalid_filter_is_a_400_naming_the_path_and_changes_nothing() {
    // GIVEN an app with one filtered webhook
    let app = app();
    let alice = token("alice", None, None);
    let good = json!({"data.severity": "high"});
    let (_, w) = app.create(good.clone()).await;
    let uri = format!("/api/webhooks/{}", w["id"].as_str().unwrap());
    for (bad, path) in [
        (json!({}), "filter:"),
        (json!("data.severity == high"), "filter:"),
        (json!({"severity": "high"}), "filter.severity:"),
        (
            json!({"$or": [{"data.a": 1}, {"data.b": {"$regex": "^x"}}]}),
            "filter.$or[1].data.b.$regex:",
        ),
        (json!({"data.a": {"$gt": [1]}}), "filter.data.a.$gt:"),
    ] {
        // WHEN it is sent on create or PATCH
        let (s, e) = app.create(bad.clone()).await;
        // THEN 400 invalid_filter with the path, and nothing stored or changed
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}: {e}");
        assert_eq!(e["error"]["code"], "invalid_filter", "{bad}");
        let message = e["error"]["message"].as_str().unwrap();
        assert!(message.starts_with(path), "{bad}: {message}");
        let (s, e) = app
            .call(
                Method::PATCH,
                &uri,
                &alice,
                json!({"filter": bad, "active": false}),
            )
            .await;
        assert_eq!(
            (s, e["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_filter"))
        );
    }
    assert_eq!(app.store.len(), 1);
    let (_, got) = app.call(Method::GET, &uri, &alice, Value::Null).await;
    assert_eq!(
        (got["filter"].clone(), got["active"].clone()),
        (good, json!(true))
    );
}

#[tokio::test]
async fn publishing_queues_only_the_events_a_webhooks_filter_lets_through() {
    // GIVEN a webhook for pump-1 and pump-3 at 30 °C or more, and one without a filter
    let app = app();
    let (_, hot) = app
        .create(json!({"data.dataSourceId": {"$in": ["pump-1", "pump-3"]},
            "data.dataPoint.values.temperature": {"$gte": 30}}))
        .await;
    let (_, all) = app.create(Value::Null).await;
    // WHEN readings of three pumps at two temperatures are published
    let events: Vec<Value> = ["pump-1", "pump-2", "pump-3"]
        .iter()
        .flat_map(|d| [reading(d, 29.5), reading(d, 30.0)])
        .collect();
    let producer = token("ingest", Some("events:publish"), None);
    let (s, r) = app
        .call(
            Method::POST,
            "/api/events",
            &producer,
            json!({"events": events}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{r}");
    // THEN the filtered webhook gets pump-1 and pump-3 at 30.0 only; the other gets all six
    let for_webhook = |w: &Value| {
        let id = w["id"].as_str().unwrap().to_owned();
        app.queue
            .tasks()
            .into_iter()
            .filter(|t| t.webhook_id.as_str() == id)
            .map(|t| serde_json::from_str::<Value>(&t.body).unwrap()["data"].clone())
            .collect::<Vec<_>>()
    };
    let got = for_webhook(&hot);
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0]["dataSourceId"], "pump-1");
    assert_eq!(got[1]["dataSourceId"], "pump-3");
    assert_eq!(for_webhook(&all).len(), 6);
    // AND the answer lists exactly the queued deliveries
    assert_eq!(r["deliveries"].as_array().unwrap().len(), 8);
    assert_eq!(app.queue.tasks().len(), 8);
}

#[tokio::test]
async fn filter_test_answers_for_the_stored_filter_or_a_proposed_one() {
    // GIVEN a data.received/alert.triggered webhook filtering on pump-1
    let app = app();
    let alice = token("alice", None, None);
    let (_, w) = app.create(json!({"data.dataSourceId": "pump-1"})).await;
    let uri = format!("/api/webhooks/{}/filter-test", w["id"].as_str().unwrap());
    let sample =
        |device: &str, event: &str| json!({"event": event, "data": {"dataSourceId": device}});
    let cases = [
        (
            json!({"event": sample("pump-1", "data.received")}),
            (true, true, true),
        ),
        (
            json!({"event": sample("pump-2", "data.received")}),
            (false, true, false),
        ),
        (
            json!({"event": sample("pump-1", "bucket.updated")}),
            (false, false, true),
        ),
        // A proposed filter is tried instead of the stored one, and not saved.
        (
            json!({"event": sample("pump-2", "data.received"), "filter": {"data.dataSourceId": {"$startsWith": "pump"}}}),
            (true, true, true),
        ),
    ];
    for (body, (matches, subscribed, filter_matches)) in cases {
        // WHEN it is asked
        let (s, r) = app.call(Method::POST, &uri, &alice, body.clone()).await;
        // THEN it says whether the event would be delivered, and why
        assert_eq!(s, StatusCode::OK, "{body}: {r}");
        assert_eq!(
            r,
            json!({"matches": matches, "subscribed": subscribed, "filterMatches": filter_matches}),
            "{body}"
        );
    }
    let (_, got) = app
        .call(
            Method::GET,
            &format!("/api/webhooks/{}", w["id"].as_str().unwrap()),
            &alice,
            Value::Null,
        )
        .await;
    assert_eq!(got["filter"], json!({"data.dataSourceId": "pump-1"}));
    assert!(app.queue.tasks().is_empty(), "filter-test queued something");
    // Bad input: 400s with their codes; someone else's webhook: 404.
    for (body, code) in [
        (
            json!({"event": sample("pump-1", "data.exploded")}),
            "invalid_event",
        ),
        (
            json!({"event": {"event": "data.received", "data": 1}}),
            "invalid_data",
        ),
        (
            json!({"event": sample("pump-1", "data.received"), "filter": {"x": 1}}),
            "invalid_filter",
        ),
        (json!({"sample": {}}), "invalid_body"),
    ] {
        let (s, r) = app.call(Method::POST, &uri, &alice, body.clone()).await;
        assert_eq!(
            (s, r["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some(code)),
            "{body}"
        );
    }
    let (s, _) = app
        .call(
            Method::POST,
            &uri,
            &token("bob", None, None),
            json!({"event": sample("pump-1", "data.received")}),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_openapi_document_describes_filters_and_filter_test() {
    // GIVEN the served document
    let app = app();
    let req = Request::builder()
        .uri("/api/openapi.json")
        .body(Body::empty())
        .unwrap();
    let res = router(app.state.clone()).oneshot(req).await.unwrap();
    let doc: Value =
        serde_json::from_slice(&res.into_body().collect().await.unwrap().to_bytes()).unwrap();
    // THEN the filter language is a component with its limits, used by the bodies, and the
    // route is there
    let filter = &doc["components"]["schemas"]["Filter"];
    assert_eq!(filter["type"], "object", "{filter}");
    let description = filter["description"].as_str().unwrap();
    for word in ["$startsWith", "$nin", "50 operators", "invalid_filter"] {
        assert!(description.contains(word), "{word}: {description}");
    }
    let create = doc["components"]["schemas"]["CreateWebhook"]["properties"]["filter"].to_string();
    assert!(create.contains("#/components/schemas/Filter"), "{create}");
    assert!(doc["paths"]["/api/webhooks/{id}/filter-test"]["post"].is_object());
}
