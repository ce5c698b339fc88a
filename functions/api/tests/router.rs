//! The Router driven in-process (`tower::ServiceExt::oneshot`) on the in-memory store: every
//! route, and every bad input of the subscriptions API with its status, code, and proof that
//! nothing was stored or changed. The real stores are tested in their own crates.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use webhooks_api::auth::{Authenticator, Claims, TokenRules};
use webhooks_api::{AppState, Ports, router};
use webhooks_core::ports::SubscriptionStore;
use webhooks_core::ports::memory::{MemoryLog, MemoryQueue, MemoryStore};
use webhooks_core::time::SystemClock;
use webhooks_core::validate::UrlPolicy;

const SECRET: &[u8] = b"router-test-secret-router-test-secret";
const BUCKET: &str = "507f1f77bcf86cd799439011";

struct App {
    state: AppState,
    store: Arc<MemoryStore>,
}

fn app_with(policy: UrlPolicy) -> App {
    let store = Arc::new(MemoryStore::new());
    let ports = Ports {
        store: store.clone(),
        log: Arc::new(MemoryLog::new(store.clone())),
        queue: Arc::new(MemoryQueue::new()),
        clock: Arc::new(SystemClock),
    };
    // Most tests here are about validation, not bucket scope (tests/scope.rs): a token without
    // `buckets` may use any bucket.
    let state = AppState::new(ports, policy, SECRET)
        .unwrap()
        .with_token_rules(&TokenRules {
            open_buckets: true,
            ..Default::default()
        });
    App { state, store }
}

fn app() -> App {
    app_with(UrlPolicy::PRODUCTION)
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn token_for(sub: &str) -> String {
    Authenticator::new(SECRET)
        .unwrap()
        .mint(&Claims {
            sub: sub.into(),
            exp: now() + 3600,
            buckets: None,
            scope: None,
            ..Default::default()
        })
        .unwrap()
}

struct Resp {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Value,
}

impl App {
    async fn send(&self, req: Request<Body>) -> Resp {
        let res = router(self.state.clone()).oneshot(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        Resp {
            status,
            headers,
            body,
        }
    }

    async fn call(
        &self,
        method: Method,
        uri: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Resp {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let req = match body {
            Some(b) => req
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(b.to_string()))
                .unwrap(),
            None => req.body(Body::empty()).unwrap(),
        };
        self.send(req).await
    }

    async fn create(&self, token: &str, body: Value) -> Resp {
        self.call(Method::POST, "/api/webhooks", Some(token), Some(body))
            .await
    }
}

fn guide_body() -> Value {
    json!({
        "bucketId": BUCKET,
        "url": "https://your-server.com/webhook",
        "events": ["alert.triggered", "data.received"],
        "secret": "your_webhook_secret"
    })
}

fn assert_error(r: &Resp, status: StatusCode, code: &str, what: &str) {
    assert_eq!(r.status, status, "{what}: {:?}", r.body);
    assert_eq!(r.body["error"]["code"], code, "{what}: {:?}", r.body);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{what}: error message missing"
    );
}

#[tokio::test]
async fn the_guides_curl_creates_a_webhook_that_get_shows_with_zero_stats() {
    // GIVEN the guide's "Via API" body and a valid token
    let app = app();
    let alice = token_for("alice");
    // WHEN it is posted
    let created = app.create(&alice, guide_body()).await;
    // THEN 201 with the webhook and its secret, once
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    let w = &created.body;
    assert_eq!(w["bucketId"], BUCKET);
    assert_eq!(w["url"], "https://your-server.com/webhook");
    assert_eq!(w["events"], json!(["alert.triggered", "data.received"]));
    assert_eq!(w["secret"], "your_webhook_secret");
    assert_eq!(w["active"], true);
    assert_eq!(
        w["retryConfig"],
        json!({"maxRetries": 3, "backoffMultiplier": 2, "initialDelaySeconds": 1})
    );
    let id = w["id"].as_str().unwrap();
    assert!(id.len() == 24 && id.bytes().all(|b| b.is_ascii_hexdigit()));

    // AND GET shows it with zeroed stats and no secret
    let got = app
        .call(
            Method::GET,
            &format!("/api/webhooks/{id}"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(
        got.body["stats"],
        json!({"totalDeliveries": 0, "successfulDeliveries": 0, "failedDeliveries": 0})
    );
    assert_eq!(got.body["lastDeliveryAt"], Value::Null);
    assert_eq!(got.body["lastDeliveryStatus"], Value::Null);
    assert!(
        got.body.get("secret").is_none(),
        "secret shown after creation"
    );
    assert_eq!(got.body["secretHint"], "…cret");
    assert!(!got.body.to_string().contains("your_webhook_secret"));
}

#[tokio::test]
async fn an_omitted_secret_is_generated_in_whsec_form_and_shown_only_once() {
    let app = app();
    let alice = token_for("alice");
    let mut body = guide_body();
    body.as_object_mut().unwrap().remove("secret");
    let created = app.create(&alice, body).await;
    assert_eq!(created.status, StatusCode::CREATED);
    let secret = created.body["secret"].as_str().unwrap().to_owned();
    assert!(
        secret.starts_with("whsec_") && secret.len() > 40,
        "{secret}"
    );
    let list = app
        .call(Method::GET, "/api/webhooks", Some(&alice), None)
        .await;
    assert!(!list.body.to_string().contains(&secret));
}

#[tokio::test]
async fn list_is_paginated_newest_first_with_a_bucket_filter() {
    let app = app();
    let alice = token_for("alice");
    let other_bucket = "507f1f77bcf86cd799439099";
    let mut ids = Vec::new();
    for i in 0..5 {
        let mut body = guide_body();
        body["bucketId"] = json!(if i < 3 { BUCKET } else { other_bucket });
        body["description"] = json!(format!("hook {i}"));
        let r = app.create(&alice, body).await;
        ids.push(r.body["id"].as_str().unwrap().to_owned());
    }
    app.create(&token_for("bob"), guide_body()).await;
    ids.reverse();

    let mut seen = Vec::new();
    let mut uri = "/api/webhooks?limit=2".to_owned();
    loop {
        let page = app.call(Method::GET, &uri, Some(&alice), None).await;
        assert_eq!(page.status, StatusCode::OK, "{:?}", page.body);
        let data = page.body["data"].as_array().unwrap();
        assert!(data.len() <= 2);
        seen.extend(data.iter().map(|w| w["id"].as_str().unwrap().to_owned()));
        match page.body["nextCursor"].as_str() {
            Some(c) => uri = format!("/api/webhooks?limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(
        seen, ids,
        "every webhook of alice's once, newest first; none of bob's"
    );

    let page = app
        .call(
            Method::GET,
            &format!("/api/webhooks?bucketId={other_bucket}"),
            Some(&alice),
            None,
        )
        .await;
    let got: Vec<&str> = page.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["id"].as_str().unwrap())
        .collect();
    assert_eq!(got, ids[..2].iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(page.body["nextCursor"], Value::Null);
}

#[tokio::test]
async fn patch_changes_only_what_it_names_and_never_echoes_the_secret() {
    let app = app();
    let alice = token_for("alice");
    let mut body = guide_body();
    body["description"] = json!("first");
    body["retryConfig"] = json!({"maxRetries": 5, "backoffMultiplier": 3});
    let id = app.create(&alice, body).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let uri = format!("/api/webhooks/{id}");

    let r = app
        .call(
            Method::PATCH,
            &uri,
            Some(&alice),
            Some(json!({
                "url": "https://example.com/new",
                "events": ["bucket.updated"],
                "description": null,
                "active": false,
                "retryConfig": {"initialDelaySeconds": 60},
                "secret": "a-brand-new-secret"
            })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["url"], "https://example.com/new");
    assert_eq!(r.body["events"], json!(["bucket.updated"]));
    assert_eq!(r.body["description"], Value::Null);
    assert_eq!(r.body["active"], false);
    assert_eq!(
        r.body["retryConfig"],
        json!({"maxRetries": 5, "backoffMultiplier": 3, "initialDelaySeconds": 60})
    );
    assert!(r.body.get("secret").is_none());
    assert_eq!(r.body["secretHint"], "…cret");
    assert!(!r.body.to_string().contains("a-brand-new-secret"));

    let stored = app.store.len();
    let r = app
        .call(
            Method::PATCH,
            &uri,
            Some(&alice),
            Some(json!({"active": true})),
        )
        .await;
    assert_eq!(
        (r.status, &r.body["active"], &r.body["url"]),
        (
            StatusCode::OK,
            &json!(true),
            &json!("https://example.com/new")
        )
    );
    assert_eq!(app.store.len(), stored);
}

#[tokio::test]
async fn delete_answers_204_then_the_webhook_is_gone() {
    let app = app();
    let alice = token_for("alice");
    let id = app.create(&alice, guide_body()).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let uri = format!("/api/webhooks/{id}");
    let r = app.call(Method::DELETE, &uri, Some(&alice), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_error(
        &app.call(Method::GET, &uri, Some(&alice), None).await,
        StatusCode::NOT_FOUND,
        "not_found",
        "get deleted",
    );
    assert_error(
        &app.call(Method::DELETE, &uri, Some(&alice), None).await,
        StatusCode::NOT_FOUND,
        "not_found",
        "delete twice",
    );
    assert!(app.store.is_empty());
}

#[tokio::test]
async fn another_users_webhook_answers_404_everywhere_and_stays_unchanged() {
    let app = app();
    let alice = token_for("alice");
    let bob = token_for("bob");
    let created = app.create(&alice, guide_body()).await.body;
    let id = created["id"].as_str().unwrap();
    let uri = format!("/api/webhooks/{id}");
    for (method, body) in [
        (Method::GET, None),
        (Method::PATCH, Some(json!({"active": false}))),
        (Method::DELETE, None),
    ] {
        let r = app.call(method.clone(), &uri, Some(&bob), body).await;
        assert_error(
            &r,
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("bob {method}"),
        );
    }
    let mine = app.call(Method::GET, &uri, Some(&alice), None).await;
    assert_eq!(mine.body["active"], true);
    assert_eq!(mine.body["updatedAt"], created["updatedAt"]);
    let list = app
        .call(Method::GET, "/api/webhooks", Some(&bob), None)
        .await;
    assert_eq!(list.body["data"], json!([]));
}

#[tokio::test]
async fn bad_create_bodies_get_a_clear_error_and_store_nothing() {
    let app = app();
    let alice = token_for("alice");
    let with = |f: &dyn Fn(&mut Value)| {
        let mut b = guide_body();
        f(&mut b);
        b
    };
    let cases: Vec<(&str, Value, StatusCode, &str)> = vec![
        (
            "unknown field",
            with(&|b| b["colour"] = json!("red")),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            "missing events",
            with(&|b| {
                b.as_object_mut().unwrap().remove("events");
            }),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            "missing url",
            with(&|b| {
                b.as_object_mut().unwrap().remove("url");
            }),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            "events not a list",
            with(&|b| b["events"] = json!("alert.triggered")),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            "body is an array",
            json!([guide_body()]),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            "empty events",
            with(&|b| b["events"] = json!([])),
            StatusCode::BAD_REQUEST,
            "invalid_events",
        ),
        (
            "duplicate events",
            with(&|b| b["events"] = json!(["data.received", "data.received"])),
            StatusCode::BAD_REQUEST,
            "invalid_events",
        ),
        (
            "unknown event",
            with(&|b| b["events"] = json!(["alert.fired"])),
            StatusCode::BAD_REQUEST,
            "invalid_events",
        ),
        (
            "test event",
            with(&|b| b["events"] = json!(["webhook.test"])),
            StatusCode::BAD_REQUEST,
            "invalid_events",
        ),
        (
            "http url",
            with(&|b| b["url"] = json!("http://your-server.com/webhook")),
            StatusCode::BAD_REQUEST,
            "invalid_url",
        ),
        (
            "relative url",
            with(&|b| b["url"] = json!("/webhook")),
            StatusCode::BAD_REQUEST,
            "invalid_url",
        ),
        (
            "loopback url",
            with(&|b| b["url"] = json!("https://127.0.0.1/webhook")),
            StatusCode::BAD_REQUEST,
            "invalid_url",
        ),
        (
            "localhost url",
            with(&|b| b["url"] = json!("https://localhost:3000/webhook")),
            StatusCode::BAD_REQUEST,
            "invalid_url",
        ),
        (
            "metadata url",
            with(&|b| b["url"] = json!("https://169.254.169.254/latest")),
            StatusCode::BAD_REQUEST,
            "invalid_url",
        ),
        (
            "url with credentials",
            with(&|b| b["url"] = json!("https://u:p@your-server.com/")),
            StatusCode::BAD_REQUEST,
            "invalid_url",
        ),
        (
            "bucketId not an ObjectId",
            with(&|b| b["bucketId"] = json!("bucket-1")),
            StatusCode::BAD_REQUEST,
            "invalid_bucket_id",
        ),
        (
            "maxRetries 21",
            with(&|b| b["retryConfig"] = json!({"maxRetries": 21})),
            StatusCode::BAD_REQUEST,
            "invalid_retry_config",
        ),
        (
            "maxRetries -1",
            with(&|b| b["retryConfig"] = json!({"maxRetries": -1})),
            StatusCode::BAD_REQUEST,
            "invalid_retry_config",
        ),
        (
            "backoff 0.5",
            with(&|b| b["retryConfig"] = json!({"backoffMultiplier": 0.5})),
            StatusCode::BAD_REQUEST,
            "invalid_retry_config",
        ),
        (
            "backoff 11",
            with(&|b| b["retryConfig"] = json!({"backoffMultiplier": 11})),
            StatusCode::BAD_REQUEST,
            "invalid_retry_config",
        ),
        (
            "initial delay 0",
            with(&|b| b["retryConfig"] = json!({"initialDelaySeconds": 0})),
            StatusCode::BAD_REQUEST,
            "invalid_retry_config",
        ),
        (
            "initial delay 3601",
            with(&|b| b["retryConfig"] = json!({"initialDelaySeconds": 3601})),
            StatusCode::BAD_REQUEST,
            "invalid_retry_config",
        ),
        (
            "unknown retry field",
            with(&|b| b["retryConfig"] = json!({"jitter": true})),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            "short secret",
            with(&|b| b["secret"] = json!("abc")),
            StatusCode::BAD_REQUEST,
            "invalid_secret",
        ),
        (
            "long description",
            with(&|b| b["description"] = json!("x".repeat(1001))),
            StatusCode::BAD_REQUEST,
            "invalid_description",
        ),
    ];
    for (what, body, status, code) in cases {
        let r = app.create(&alice, body).await;
        assert_error(&r, status, code, what);
        assert!(app.store.is_empty(), "{what}: something was stored");
    }
}

#[tokio::test]
async fn malformed_wrongly_typed_and_oversized_bodies_are_refused_before_anything_is_stored() {
    let app = app();
    let alice = token_for("alice");
    let raw = |ct: Option<&str>, body: Vec<u8>| {
        let mut req = Request::builder()
            .method(Method::POST)
            .uri("/api/webhooks")
            .header(header::AUTHORIZATION, format!("Bearer {alice}"));
        if let Some(ct) = ct {
            req = req.header(header::CONTENT_TYPE, ct);
        }
        req.body(Body::from(body)).unwrap()
    };
    let guide = guide_body().to_string().into_bytes();

    let r = app
        .send(raw(Some("application/json"), b"{\"bucketId\": ".to_vec()))
        .await;
    assert_error(
        &r,
        StatusCode::BAD_REQUEST,
        "malformed_json",
        "truncated JSON",
    );
    let r = app
        .send(raw(Some("application/json"), b"{'url': 1}".to_vec()))
        .await;
    assert_error(
        &r,
        StatusCode::BAD_REQUEST,
        "malformed_json",
        "single quotes",
    );
    let r = app.send(raw(Some("text/plain"), guide.clone())).await;
    assert_error(
        &r,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        "text/plain",
    );
    let r = app.send(raw(None, guide.clone())).await;
    assert_error(
        &r,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        "no content type",
    );
    let mut big = guide_body();
    big["description"] = json!("x".repeat(300 * 1024));
    let r = app
        .send(raw(Some("application/json"), big.to_string().into_bytes()))
        .await;
    assert_error(
        &r,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        "300 KiB body",
    );
    assert!(app.store.is_empty());

    // A JSON content type with parameters is fine.
    let r = app
        .send(raw(Some("application/json; charset=utf-8"), guide))
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
}

#[tokio::test]
async fn bad_tokens_get_401_with_a_reason_and_store_nothing() {
    use base64::Engine;
    let app = app();
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let auth = Authenticator::new(SECRET).unwrap();
    let expired = auth
        .mint(&Claims {
            sub: "alice".into(),
            exp: now() - 600,
            buckets: None,
            scope: None,
            ..Default::default()
        })
        .unwrap();
    let forged = Authenticator::new(b"some-other-secret-some-other-secret")
        .unwrap()
        .mint(&Claims {
            sub: "alice".into(),
            exp: now() + 600,
            buckets: None,
            scope: None,
            ..Default::default()
        })
        .unwrap();
    let none = format!(
        "{}.{}.",
        b64(r#"{"alg":"none","typ":"JWT"}"#),
        b64(&format!(r#"{{"sub":"alice","exp":{}}}"#, now() + 600))
    );
    let hs512 = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS512),
        &Claims {
            sub: "alice".into(),
            exp: now() + 600,
            buckets: None,
            scope: None,
            ..Default::default()
        },
        &jsonwebtoken::EncodingKey::from_secret(SECRET).unwrap(),
    )
    .unwrap();
    let no_exp = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub": "alice"}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET).unwrap(),
    )
    .unwrap();
    let empty_sub = auth
        .mint(&Claims {
            sub: "".into(),
            exp: now() + 600,
            buckets: None,
            scope: None,
            ..Default::default()
        })
        .unwrap();
    let bad_buckets = auth
        .mint(&Claims {
            sub: "alice".into(),
            exp: now() + 600,
            buckets: Some(vec!["nope".into()]),
            scope: None,
            ..Default::default()
        })
        .unwrap();
    let cases: Vec<(&str, Option<String>)> = vec![
        ("no header", None),
        ("basic auth", Some("Basic YWxpY2U6cHc=".into())),
        ("empty bearer", Some("Bearer ".into())),
        ("malformed", Some("Bearer not-a-jwt".into())),
        ("expired", Some(format!("Bearer {expired}"))),
        ("wrongly signed", Some(format!("Bearer {forged}"))),
        ("alg none", Some(format!("Bearer {none}"))),
        ("alg HS512", Some(format!("Bearer {hs512}"))),
        ("no exp", Some(format!("Bearer {no_exp}"))),
        ("empty sub", Some(format!("Bearer {empty_sub}"))),
        (
            "buckets not ObjectIds",
            Some(format!("Bearer {bad_buckets}")),
        ),
    ];
    for (what, value) in cases {
        for method in [Method::POST, Method::GET] {
            let mut req = Request::builder()
                .method(method.clone())
                .uri("/api/webhooks");
            if let Some(v) = &value {
                req = req.header(header::AUTHORIZATION, v);
            }
            let req = req
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(guide_body().to_string()))
                .unwrap();
            let r = app.send(req).await;
            assert_error(
                &r,
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                &format!("{what} {method}"),
            );
            assert_eq!(r.headers.get(header::WWW_AUTHENTICATE).unwrap(), "Bearer");
        }
        assert!(app.store.is_empty(), "{what}: stored");
    }
}

#[tokio::test]
async fn a_bucket_outside_the_tokens_buckets_claim_is_forbidden() {
    let app = app();
    let limited = Authenticator::new(SECRET)
        .unwrap()
        .mint(&Claims {
            sub: "alice".into(),
            exp: now() + 600,
            buckets: Some(vec!["507f1f77bcf86cd799439099".into()]),
            scope: None,
            ..Default::default()
        })
        .unwrap();
    let r = app.create(&limited, guide_body()).await;
    assert_error(
        &r,
        StatusCode::FORBIDDEN,
        "bucket_forbidden",
        "create in other bucket",
    );
    assert!(app.store.is_empty());
    let r = app
        .call(
            Method::GET,
            &format!("/api/webhooks?bucketId={BUCKET}"),
            Some(&limited),
            None,
        )
        .await;
    assert_error(
        &r,
        StatusCode::FORBIDDEN,
        "bucket_forbidden",
        "list other bucket",
    );
    let mut body = guide_body();
    body["bucketId"] = json!("507f1f77bcf86cd799439099");
    assert_eq!(app.create(&limited, body).await.status, StatusCode::CREATED);
}

#[tokio::test]
async fn ids_that_are_not_object_ids_are_refused() {
    let app = app();
    let alice = token_for("alice");
    for id in [
        "123",
        "507F1F77BCF86CD799439011",
        "507f1f77bcf86cd79943901z",
        "..%2F..%2Fetc",
    ] {
        let uri = format!("/api/webhooks/{id}");
        for (method, body) in [
            (Method::GET, None),
            (Method::PATCH, Some(json!({"active": false}))),
            (Method::DELETE, None),
        ] {
            let r = app.call(method.clone(), &uri, Some(&alice), body).await;
            assert_error(
                &r,
                StatusCode::BAD_REQUEST,
                "invalid_id",
                &format!("{method} {id}"),
            );
        }
    }
}

#[tokio::test]
async fn bad_patches_change_nothing() {
    let app = app();
    let alice = token_for("alice");
    let created = app.create(&alice, guide_body()).await.body;
    let uri = format!("/api/webhooks/{}", created["id"].as_str().unwrap());
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "bucketId is not changeable",
            json!({"bucketId": "507f1f77bcf86cd799439099"}),
            "invalid_body",
        ),
        ("unknown field", json!({"enabled": false}), "invalid_body"),
        (
            "http url",
            json!({"url": "http://example.com/", "active": false}),
            "invalid_url",
        ),
        (
            "empty events",
            json!({"events": [], "active": false}),
            "invalid_events",
        ),
        (
            "retry out of range",
            json!({"retryConfig": {"maxRetries": 99}, "active": false}),
            "invalid_retry_config",
        ),
        (
            "short secret",
            json!({"secret": "x", "active": false}),
            "invalid_secret",
        ),
        ("active not a bool", json!({"active": "no"}), "invalid_body"),
    ];
    for (what, body, code) in cases {
        let r = app
            .call(Method::PATCH, &uri, Some(&alice), Some(body))
            .await;
        assert_error(&r, StatusCode::BAD_REQUEST, code, what);
        let now = app.call(Method::GET, &uri, Some(&alice), None).await.body;
        let mut before = created.clone();
        before.as_object_mut().unwrap().remove("secret");
        assert_eq!(now, before, "{what}: webhook changed");
    }
}

#[tokio::test]
async fn bad_list_queries_and_tampered_cursors_are_refused() {
    let app = app();
    let alice = token_for("alice");
    for _ in 0..3 {
        app.create(&alice, guide_body()).await;
    }
    let page = app
        .call(Method::GET, "/api/webhooks?limit=1", Some(&alice), None)
        .await;
    let cursor = page.body["nextCursor"].as_str().unwrap().to_owned();
    let mut tampered = cursor.clone();
    let flip = if tampered.starts_with('e') { "f" } else { "e" };
    tampered.replace_range(0..1, flip);
    let cases = [
        (format!("/api/webhooks?cursor={tampered}"), "invalid_cursor"),
        ("/api/webhooks?cursor=garbage".to_owned(), "invalid_cursor"),
        (
            format!("/api/webhooks?cursor={cursor}&bucketId={BUCKET}"),
            "invalid_cursor",
        ),
        ("/api/webhooks?limit=0".to_owned(), "invalid_query"),
        ("/api/webhooks?limit=101".to_owned(), "invalid_query"),
        ("/api/webhooks?limit=ten".to_owned(), "invalid_query"),
        ("/api/webhooks?bucket_id=x".to_owned(), "invalid_query"),
        (
            "/api/webhooks?bucketId=nope".to_owned(),
            "invalid_bucket_id",
        ),
    ];
    for (uri, code) in cases {
        let r = app.call(Method::GET, &uri, Some(&alice), None).await;
        assert_error(&r, StatusCode::BAD_REQUEST, code, &uri);
    }
    // Bob cannot use alice's cursor either.
    let r = app
        .call(
            Method::GET,
            &format!("/api/webhooks?cursor={cursor}"),
            Some(&token_for("bob")),
            None,
        )
        .await;
    assert_error(
        &r,
        StatusCode::BAD_REQUEST,
        "invalid_cursor",
        "bob with alice's cursor",
    );
}

#[tokio::test]
async fn the_local_policy_accepts_http_loopback_receivers() {
    let app = app_with(UrlPolicy::LOCAL);
    let mut body = guide_body();
    body["url"] = json!("http://127.0.0.1:3000/webhook");
    let r = app.create(&token_for("alice"), body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
}

#[tokio::test]
async fn openapi_health_and_unknown_routes_answer() {
    let app = app();
    let doc = app.call(Method::GET, "/api/openapi.json", None, None).await;
    assert_eq!(doc.status, StatusCode::OK);
    assert!(doc.body["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc.body["paths"].as_object().unwrap();
    assert!(
        paths["/api/webhooks"].get("post").is_some() && paths["/api/webhooks"].get("get").is_some()
    );
    for m in ["get", "patch", "delete"] {
        assert!(paths["/api/webhooks/{id}"].get(m).is_some(), "{m} missing");
    }
    let schemas = doc.body["components"]["schemas"].as_object().unwrap();
    for s in [
        "CreateWebhook",
        "UpdateWebhook",
        "WebhookResponse",
        "WebhookList",
        "ErrorBody",
        "RetryConfig",
    ] {
        assert!(schemas.contains_key(s), "schema {s} missing");
    }
    assert!(doc.body["components"]["securitySchemes"]["bearer"].is_object());

    let h = app.call(Method::GET, "/health", None, None).await;
    assert_eq!(
        (h.status, &h.body["status"]),
        (StatusCode::OK, &json!("ok"))
    );
    assert_error(
        &app.call(Method::GET, "/nope", None, None).await,
        StatusCode::NOT_FOUND,
        "route_not_found",
        "unknown route",
    );
    assert_error(
        &app.call(Method::PUT, "/api/webhooks", Some(&token_for("a")), None)
            .await,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "PUT",
    );
}

#[tokio::test]
async fn formats_are_chosen_at_create_and_patch_and_unknown_ones_refused() {
    let app = app();
    let alice = token_for("alice");
    let mut body = guide_body();
    body["format"] = json!("slack");
    let created = app.create(&alice, body).await;
    assert_eq!(
        (created.status, &created.body["format"]),
        (StatusCode::CREATED, &json!("slack"))
    );
    let id = created.body["id"].as_str().unwrap().to_owned();
    let r = app
        .call(
            Method::PATCH,
            &format!("/api/webhooks/{id}"),
            Some(&alice),
            Some(json!({"format": "discord"})),
        )
        .await;
    assert_eq!(r.body["format"], "discord");
    let mut bad = guide_body();
    bad["format"] = json!("teams");
    let r = app.create(&alice, bad).await;
    assert_error(
        &r,
        StatusCode::BAD_REQUEST,
        "invalid_format",
        "unknown format",
    );
    let r = app
        .call(
            Method::PATCH,
            &format!("/api/webhooks/{id}"),
            Some(&alice),
            Some(json!({"format": "xml"})),
        )
        .await;
    assert_error(
        &r,
        StatusCode::BAD_REQUEST,
        "invalid_format",
        "unknown format in patch",
    );
    assert_eq!(app.store.len(), 1);
    let plain = app.create(&alice, guide_body()).await;
    assert_eq!(plain.body["format"], "json", "the default");
}

#[tokio::test]
async fn rotating_the_secret_shows_the_new_one_once_and_keeps_the_old_one_signing_for_the_grace() {
    let app = app();
    let alice = token_for("alice");
    let id = app.create(&alice, guide_body()).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let uri = format!("/api/webhooks/{id}/rotate-secret");

    let r = app.call(Method::POST, &uri, Some(&alice), None).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let new = r.body["secret"].as_str().unwrap().to_owned();
    assert!(new.starts_with("whsec_"));
    assert!(
        r.body["previousSecretExpiresAt"].is_string(),
        "{:?}",
        r.body
    );
    let w = app
        .store
        .get(&webhooks_core::WebhookId::parse(&id).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(w.secret.expose(), new);
    assert_eq!(
        w.previous_secret.as_ref().unwrap().secret.expose(),
        "your_webhook_secret"
    );
    let got = app
        .call(
            Method::GET,
            &format!("/api/webhooks/{id}"),
            Some(&alice),
            None,
        )
        .await;
    assert!(got.body.get("secret").is_none() && !got.body.to_string().contains(&new));

    // A chosen secret with no grace replaces at once.
    let r = app
        .call(
            Method::POST,
            &uri,
            Some(&alice),
            Some(json!({"secret": "chosen-secret-123", "graceSeconds": 0})),
        )
        .await;
    assert_eq!(
        (
            r.status,
            &r.body["secret"],
            &r.body["previousSecretExpiresAt"]
        ),
        (StatusCode::OK, &json!("chosen-secret-123"), &Value::Null)
    );

    // Bad input changes nothing.
    for (what, body, code) in [
        (
            "grace too long",
            json!({"graceSeconds": 604801}),
            "invalid_grace",
        ),
        (
            "negative grace",
            json!({"graceSeconds": -1}),
            "invalid_grace",
        ),
        ("short secret", json!({"secret": "x"}), "invalid_secret"),
        (
            "same secret",
            json!({"secret": "chosen-secret-123"}),
            "invalid_secret",
        ),
        (
            "unknown field",
            json!({"secret": "abcdefghij", "keepOld": true}),
            "invalid_body",
        ),
    ] {
        let r = app.call(Method::POST, &uri, Some(&alice), Some(body)).await;
        assert_error(&r, StatusCode::BAD_REQUEST, code, what);
    }
    let w = app
        .store
        .get(&webhooks_core::WebhookId::parse(&id).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(w.secret.expose(), "chosen-secret-123");
    let r = app
        .call(Method::POST, &uri, Some(&token_for("bob")), None)
        .await;
    assert_error(
        &r,
        StatusCode::NOT_FOUND,
        "not_found",
        "bob rotating alice's",
    );
}

#[tokio::test]
async fn re_enabling_clears_the_reason_the_service_disabled_a_webhook() {
    let app = app();
    let alice = token_for("alice");
    let id = app.create(&alice, guide_body()).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let wid = webhooks_core::WebhookId::parse(&id).unwrap();
    let patch = webhooks_core::webhook::WebhookPatch {
        active: Some(false),
        disabled_reason: Some(Some("the receiver answered HTTP 410 Gone".into())),
        ..Default::default()
    };
    let owner = webhooks_core::OwnerId::parse("alice").unwrap();
    app.store
        .update(&owner, &wid, &patch, webhooks_core::Timestamp::from_unix(1))
        .await
        .unwrap();
    let got = app
        .call(
            Method::GET,
            &format!("/api/webhooks/{id}"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(
        (
            got.body["active"].as_bool(),
            got.body["disabledReason"].as_str()
        ),
        (Some(false), Some("the receiver answered HTTP 410 Gone"))
    );
    let r = app
        .call(
            Method::PATCH,
            &format!("/api/webhooks/{id}"),
            Some(&alice),
            Some(json!({"active": true})),
        )
        .await;
    assert_eq!(
        (r.body["active"].as_bool(), &r.body["disabledReason"]),
        (Some(true), &Value::Null)
    );
}

#[tokio::test]
async fn get_shows_the_circuit_breakers_health_when_the_deployment_keeps_it() {
    use webhooks_core::health::{HealthState, HealthStore, WebhookHealth};
    use webhooks_core::ports::memory::MemoryHealth;
    // GIVEN an API with breaker states, and a webhook
    let mut app = app();
    let health = Arc::new(MemoryHealth::new());
    app.state = app.state.clone().with_health(health.clone());
    let t = token_for("user_health");
    let created = app.create(&t, guide_body()).await;
    let id = created.body["id"].as_str().unwrap().to_owned();
    let uri = format!("/api/webhooks/{id}");
    // WHEN it never failed THEN it is healthy since its creation
    let r = app.call(Method::GET, &uri, Some(&t), None).await;
    assert_eq!(r.body["health"]["state"], "healthy", "{:?}", r.body);
    assert_eq!(r.body["health"]["since"], created.body["createdAt"]);
    // WHEN its breaker is open THEN GET shows it, since when, until when, and the last error
    let open = WebhookHealth {
        state: HealthState::Open,
        since: webhooks_core::Timestamp::from_unix(1_700_000_000),
        consecutive_failures: 5,
        last_error: Some("timed out after 30 s".into()),
        open_until: Some(webhooks_core::Timestamp::from_unix(1_700_000_030)),
        open_seconds: 30,
        timing_out: true,
    };
    health
        .put(&webhooks_core::WebhookId::parse(&id).unwrap(), &open)
        .await
        .unwrap();
    let r = app.call(Method::GET, &uri, Some(&t), None).await;
    assert_eq!(r.body["health"]["state"], "open");
    assert_eq!(r.body["health"]["since"], "2023-11-14T22:13:20Z");
    assert_eq!(r.body["health"]["openUntil"], "2023-11-14T22:13:50Z");
    assert_eq!(r.body["health"]["lastError"], "timed out after 30 s");
    assert_eq!(r.body["health"]["consecutiveFailures"], 5);
    // AND a deployment without breaker states shows none
    let plain = self::app();
    let created = plain.create(&t, guide_body()).await;
    let r = plain
        .call(
            Method::GET,
            &format!("/api/webhooks/{}", created.body["id"].as_str().unwrap()),
            Some(&t),
            None,
        )
        .await;
    assert!(r.body.get("health").is_none(), "{:?}", r.body);
}
