//! Who may do what, on a production-mode Router (strict token rules): the `buckets` claim scopes
//! every route, a token without it may use no bucket, a producer token publishes only, and
//! hostile tokens (`nbf`/`iat` in the future, `kid`/`jku` headers, algorithm confusion, wrong
//! `aud`/`iss`) get 401. Each attempt also proves that nothing changed.

use axum::http::{Method, StatusCode};
use base64::Engine;
use serde_json::{Value, json};
use webhooks_api::auth::{Authenticator, Claims, Scope, TokenRules};
use webhooks_core::delivery::{DeadLetter, DeliveryTask};
use webhooks_core::ports::{DeliveryLog, SubscriptionStore};
use webhooks_core::{DeliveryId, EventType, Timestamp, WebhookId};

mod common;

use common::{App, SECRET, app_with, mint, now};

const BUCKET_A: &str = "507f1f77bcf86cd7994390aa";
const BUCKET_B: &str = "507f1f77bcf86cd7994390bb";

/// Production defaults: no open buckets, no `aud`/`iss` required.
fn app() -> App {
    app_with(&TokenRules::default())
}

fn user(sub: &str, buckets: Option<&[&str]>) -> String {
    mint(Claims {
        sub: sub.into(),
        exp: now() + 600,
        buckets: buckets.map(|b| b.iter().map(|s| s.to_string()).collect()),
        ..Default::default()
    })
}

fn producer(buckets: Option<&[&str]>) -> String {
    mint(Claims {
        sub: "ingest".into(),
        exp: now() + 600,
        buckets: buckets.map(|b| b.iter().map(|s| s.to_string()).collect()),
        scope: Some(Scope::Text("events:publish".into())),
        ..Default::default()
    })
}

impl App {
    /// A webhook of alice's in `bucket`, with one dead letter, created with a token for it.
    async fn webhook_in(&self, bucket: &str) -> (String, String) {
        let (status, body) = self
            .call(
                Method::POST,
                "/api/webhooks",
                &user("alice", Some(&[bucket])),
                Some(json!({
                    "bucketId": bucket,
                    "url": "https://receiver.example.com/hook",
                    "events": ["alert.triggered"],
                })),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let id = body["id"].as_str().unwrap().to_owned();
        let delivery = DeliveryId::generate(now());
        self.log
            .put_dead_letter(&DeadLetter {
                task: DeliveryTask {
                    delivery_id: delivery.clone(),
                    webhook_id: WebhookId::parse(&id).unwrap(),
                    event: EventType::AlertTriggered,
                    generation: 0,
                    attempts_made: 0,
                    body: "{}".into(),
                    created_at: Timestamp::from_unix(now()),
                },
                error: "HTTP 500".into(),
                attempts: 4,
                at: Timestamp::from_unix(now()),
            })
            .await
            .unwrap();
        (id, delivery.to_string())
    }
}

/// Every route that names a webhook, as (method, uri, body).
fn webhook_routes(id: &str, delivery: &str) -> Vec<(Method, String, Option<Value>)> {
    vec![
        (Method::GET, format!("/api/webhooks/{id}"), None),
        (
            Method::PATCH,
            format!("/api/webhooks/{id}"),
            Some(json!({"url": "https://attacker.example.com/steal"})),
        ),
        (Method::POST, format!("/api/webhooks/{id}/test"), None),
        (
            Method::POST,
            format!("/api/webhooks/{id}/rotate-secret"),
            Some(json!({"graceSeconds": 0})),
        ),
        (
            Method::POST,
            format!("/api/webhooks/{id}/filter-test"),
            Some(json!({"event": {"event": "alert.triggered", "data": {}}})),
        ),
        (Method::GET, format!("/api/webhooks/{id}/deliveries"), None),
        (
            Method::GET,
            format!("/api/webhooks/{id}/stats/hourly"),
            None,
        ),
        (
            Method::GET,
            format!("/api/webhooks/{id}/dead-letters"),
            None,
        ),
        (
            Method::POST,
            format!("/api/webhooks/{id}/deliveries/{delivery}/redeliver"),
            None,
        ),
        (
            Method::POST,
            format!("/api/webhooks/{id}/deliveries/redeliver"),
            None,
        ),
        (Method::DELETE, format!("/api/webhooks/{id}"), None),
    ]
}

#[tokio::test]
async fn a_webhook_in_another_bucket_does_not_exist_for_a_bucket_limited_token_on_any_route() {
    // GIVEN alice's webhook in bucket B, and alice's token limited to bucket A
    let app = app();
    let (id, delivery) = app.webhook_in(BUCKET_B).await;
    let before = app
        .store
        .get(&WebhookId::parse(&id).unwrap())
        .await
        .unwrap();
    let limited = user("alice", Some(&[BUCKET_A]));
    // WHEN the A token uses every route on the B webhook
    for (method, uri, body) in webhook_routes(&id, &delivery) {
        let (status, answer) = app.call(method.clone(), &uri, &limited, body).await;
        // THEN each answers 404, as for a webhook that does not exist
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {uri}: {answer}");
        assert_eq!(answer["error"]["code"], "not_found", "{method} {uri}");
    }
    // AND nothing changed: same webhook, nothing queued, the dead letter still there
    let after = app
        .store
        .get(&WebhookId::parse(&id).unwrap())
        .await
        .unwrap();
    assert_eq!(before, after);
    assert!(app.queue.tasks().is_empty());
    let wid = WebhookId::parse(&id).unwrap();
    assert_eq!(app.log.dead_letters(&wid, 10).await.unwrap().len(), 1);

    // The unfiltered list leaves it out, the filtered list of B is refused.
    let (status, list) = app.call(Method::GET, "/api/webhooks", &limited, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["data"], json!([]));
    let (status, err) = app
        .call(
            Method::GET,
            &format!("/api/webhooks?bucketId={BUCKET_B}"),
            &limited,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(err["error"]["code"], "bucket_forbidden");

    // The control: a token for both buckets reaches it on every route (so the 404s above are
    // the scope, not a broken route).
    let both = user("alice", Some(&[BUCKET_A, BUCKET_B]));
    let (status, list) = app.call(Method::GET, "/api/webhooks", &both, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["data"][0]["id"], id.as_str());
    for (method, uri, body) in webhook_routes(&id, &delivery) {
        let (status, answer) = app.call(method.clone(), &uri, &both, body).await;
        assert!(status.is_success(), "{method} {uri}: {status} {answer}");
    }
}

#[tokio::test]
async fn in_production_a_token_without_buckets_may_use_no_bucket() {
    // GIVEN a webhook in bucket A, and alice's token with no `buckets` claim
    let app = app();
    let (id, delivery) = app.webhook_in(BUCKET_A).await;
    let unscoped = user("alice", None);
    // WHEN/THEN it cannot create, list, see or touch anything
    let (status, err) = app
        .call(
            Method::POST,
            "/api/webhooks",
            &unscoped,
            Some(json!({
                "bucketId": BUCKET_A,
                "url": "https://receiver.example.com/hook",
                "events": ["alert.triggered"],
            })),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(err["error"]["code"], "bucket_forbidden");
    assert_eq!(app.store.len(), 1);
    let (status, list) = app
        .call(Method::GET, "/api/webhooks", &unscoped, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["data"], json!([]));
    for (method, uri, body) in webhook_routes(&id, &delivery) {
        let (status, _) = app.call(method.clone(), &uri, &unscoped, body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {uri}");
    }
    // Nor can a producer token without `buckets` publish.
    let (status, err) = app
        .call(
            Method::POST,
            "/api/events",
            &producer(None),
            Some(json!({"bucketId": BUCKET_A, "event": "alert.triggered", "data": {}})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(err["error"]["code"], "bucket_forbidden");
    assert!(app.queue.tasks().is_empty());

    // A deployment that opts into open buckets lets the same token in.
    let open = app_with(&TokenRules {
        open_buckets: true,
        ..Default::default()
    });
    let (status, _) = open
        .call(
            Method::POST,
            "/api/webhooks",
            &unscoped,
            Some(json!({
                "bucketId": BUCKET_A,
                "url": "https://receiver.example.com/hook",
                "events": ["alert.triggered"],
            })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
}

#[tokio::test]
async fn a_producer_token_publishes_and_manages_nothing() {
    // GIVEN a webhook in bucket A, and a producer token for bucket A
    let app = app();
    let (id, delivery) = app.webhook_in(BUCKET_A).await;
    let before = app
        .store
        .get(&WebhookId::parse(&id).unwrap())
        .await
        .unwrap();
    let producer = producer(Some(&[BUCKET_A]));
    // WHEN it calls every management route
    let mut routes = webhook_routes(&id, &delivery);
    routes.push((Method::GET, "/api/webhooks".into(), None));
    routes.push((
        Method::POST,
        "/api/webhooks".into(),
        Some(json!({
            "bucketId": BUCKET_A,
            "url": "https://receiver.example.com/hook",
            "events": ["alert.triggered"],
        })),
    ));
    for (method, uri, body) in routes {
        let (status, err) = app.call(method.clone(), &uri, &producer, body).await;
        // THEN 403 insufficient_scope, and nothing changes
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {uri}: {err}");
        assert_eq!(err["error"]["code"], "insufficient_scope", "{method} {uri}");
    }
    assert_eq!(app.store.len(), 1);
    let after = app
        .store
        .get(&WebhookId::parse(&id).unwrap())
        .await
        .unwrap();
    assert_eq!(before, after);
    assert!(app.queue.tasks().is_empty());
    // It does publish to its bucket, and not to another.
    let event = |bucket: &str| json!({"bucketId": bucket, "event": "alert.triggered", "data": {}});
    let (status, body) = app
        .call(
            Method::POST,
            "/api/events",
            &producer,
            Some(event(BUCKET_A)),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(app.queue.tasks().len(), 1);
    let (status, err) = app
        .call(
            Method::POST,
            "/api/events",
            &producer,
            Some(event(BUCKET_B)),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(err["error"]["code"], "bucket_forbidden");
    // And a user token may not publish.
    let (status, err) = app
        .call(
            Method::POST,
            "/api/events",
            &user("alice", Some(&[BUCKET_A])),
            Some(event(BUCKET_A)),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(err["error"]["code"], "insufficient_scope");
    assert_eq!(app.queue.tasks().len(), 1);
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

/// A token with any header, HMAC-SHA256-signed with `key`.
fn signed_with(header: Value, claims: Value, key: &[u8]) -> String {
    use hmac::{KeyInit, Mac};
    let input = format!("{}.{}", b64(&header.to_string()), b64(&claims.to_string()));
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    mac.update(input.as_bytes());
    let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{input}.{sig}")
}

#[tokio::test]
async fn hostile_tokens_get_401_and_change_nothing() {
    let app = app_with(&TokenRules {
        open_buckets: false,
        audience: Some("dakkio-webhooks".into()),
        issuer: Some("https://auth.dakkio.io".into()),
    });
    let good = json!({
        "sub": "alice", "exp": now() + 600, "buckets": [BUCKET_A],
        "aud": "dakkio-webhooks", "iss": "https://auth.dakkio.io",
    });
    let with = |k: &str, v: Value| {
        let mut c = good.clone();
        c[k] = v;
        c
    };
    let without = |k: &str| {
        let mut c = good.clone();
        c.as_object_mut().unwrap().remove(k);
        c
    };
    let hs256 = json!({"alg": "HS256", "typ": "JWT"});
    let attacker = b"attacker-key-attacker-key-attacker-key";
    let cases: Vec<(&str, String)> = vec![
        (
            "nbf an hour ahead",
            signed_with(hs256.clone(), with("nbf", json!(now() + 3600)), SECRET),
        ),
        (
            "nbf beyond the leeway",
            signed_with(hs256.clone(), with("nbf", json!(now() + 60)), SECRET),
        ),
        (
            "iat an hour ahead",
            signed_with(hs256.clone(), with("iat", json!(now() + 3600)), SECRET),
        ),
        (
            "nbf not a number",
            signed_with(hs256.clone(), with("nbf", json!("soon")), SECRET),
        ),
        (
            "kid naming another key, signed with it",
            signed_with(
                json!({"alg": "HS256", "typ": "JWT", "kid": "attacker"}),
                good.clone(),
                attacker,
            ),
        ),
        (
            "jku pointing at the attacker's key set",
            signed_with(
                json!({"alg": "HS256", "jku": "https://attacker.example.com/jwks.json"}),
                good.clone(),
                attacker,
            ),
        ),
        (
            "embedded jwk",
            signed_with(
                json!({"alg": "HS256", "jwk": {"kty": "oct", "k": b64("attacker-key-attacker-key-attacker-key")}}),
                good.clone(),
                attacker,
            ),
        ),
        (
            "alg HS384 with the right key",
            jsonwebtoken::encode(
                &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS384),
                &good,
                &jsonwebtoken::EncodingKey::from_secret(SECRET).unwrap(),
            )
            .unwrap(),
        ),
        (
            "alg RS256 header over an HMAC signature (key confusion)",
            signed_with(json!({"alg": "RS256", "typ": "JWT"}), good.clone(), SECRET),
        ),
        (
            "alg none",
            format!("{}.{}.", b64(r#"{"alg":"none"}"#), b64(&good.to_string())),
        ),
        (
            "wrong audience",
            signed_with(hs256.clone(), with("aud", json!("another-service")), SECRET),
        ),
        (
            "no audience",
            signed_with(hs256.clone(), without("aud"), SECRET),
        ),
        (
            "wrong issuer",
            signed_with(
                hs256.clone(),
                with("iss", json!("https://evil.example")),
                SECRET,
            ),
        ),
        (
            "no issuer",
            signed_with(hs256.clone(), without("iss"), SECRET),
        ),
    ];
    let create = json!({
        "bucketId": BUCKET_A,
        "url": "https://receiver.example.com/hook",
        "events": ["alert.triggered"],
    });
    for (what, token) in &cases {
        let (status, err) = app
            .call(Method::POST, "/api/webhooks", token, Some(create.clone()))
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {err}");
        assert_eq!(err["error"]["code"], "unauthorized", "{what}");
    }
    assert!(app.store.is_empty());
    // The control: the good claims (also with nbf/iat now, and aud as a list) are accepted.
    for (what, claims) in [
        ("good", good.clone()),
        ("nbf and iat now", with("nbf", json!(now())).clone()),
        ("iat within the leeway", with("iat", json!(now() + 2))),
        (
            "aud as a list",
            with("aud", json!(["other", "dakkio-webhooks"])),
        ),
    ] {
        let token = signed_with(hs256.clone(), claims, SECRET);
        let (status, err) = app
            .call(Method::POST, "/api/webhooks", &token, Some(create.clone()))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{what}: {err}");
    }
    // The messages say why.
    let auth = Authenticator::with_rules(
        SECRET,
        &TokenRules {
            audience: Some("dakkio-webhooks".into()),
            ..Default::default()
        },
    )
    .unwrap();
    for (claims, why) in [
        (with("nbf", json!(now() + 3600)), "token is not valid yet"),
        (
            with("iat", json!(now() + 3600)),
            "token is issued in the future",
        ),
        (
            with("aud", json!("x")),
            "token audience is not this service",
        ),
    ] {
        let token = signed_with(hs256.clone(), claims, SECRET);
        assert_eq!(auth.verify(&token).await.unwrap_err().message, why);
    }
}
