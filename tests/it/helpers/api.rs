//! The API Lambda's Router on given ports, called in-process as API Gateway would call it, with
//! tokens signed by the tests' platform secret; and webhooks written straight into a store.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::{Value, json};
use tower::ServiceExt;
use webhooks_api::auth::{Authenticator, Claims, Scope, TokenRules};
use webhooks_api::{AppState, Ports, router};
use webhooks_core::conformance::sample_webhook;
use webhooks_core::ports::{Clock, SubscriptionStore};
use webhooks_core::time::SystemClock;
use webhooks_core::validate::UrlPolicy;
use webhooks_core::webhook::Webhook;
use webhooks_core::{BucketId, OwnerId};

/// The platform's HS256 secret of every token these tests mint.
pub const JWT_SECRET: &[u8] = b"it-tests-platform-secret-it-tests-platform-secret";

/// The API on a set of ports.
pub struct Api {
    pub state: AppState,
}

impl Api {
    /// The API on `ports`, production URL rules; a token without `buckets` may use any bucket
    /// (the tests using this are not about bucket scope: `functions/api/tests/scope.rs` is).
    pub fn open(ports: Ports) -> Self {
        let state = AppState::new(ports, UrlPolicy::PRODUCTION, JWT_SECRET)
            .expect("state")
            .with_token_rules(&TokenRules {
                open_buckets: true,
                ..Default::default()
            });
        Self { state }
    }

    /// A user token for `sub` (manages webhooks), valid for an hour.
    pub fn user_token(sub: &str) -> String {
        Self::mint(Claims {
            sub: sub.into(),
            exp: SystemClock.now().unix() + 3600,
            ..Default::default()
        })
    }

    /// A producer token (`events:publish` only), valid for an hour.
    pub fn producer_token() -> String {
        Self::mint(Claims {
            sub: "ingest".into(),
            exp: SystemClock.now().unix() + 3600,
            buckets: None,
            scope: Some(Scope::Text("events:publish".into())),
            ..Default::default()
        })
    }

    fn mint(claims: Claims) -> String {
        Authenticator::new(JWT_SECRET)
            .unwrap()
            .mint(&claims)
            .unwrap()
    }

    /// One request with `token`: the status, the body as JSON (`null` when it is not JSON),
    /// how long it took.
    pub async fn call(
        &self,
        method: Method,
        uri: &str,
        token: &str,
        body: Option<&Value>,
    ) -> (StatusCode, Value, Duration) {
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Bearer {token}"));
        let body = match body {
            Some(b) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                Body::from(b.to_string())
            }
            None => Body::empty(),
        };
        let started = Instant::now();
        let res = router(self.state.clone())
            .oneshot(req.body(body).unwrap())
            .await
            .unwrap();
        let status = res.status();
        let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
            .await
            .unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            started.elapsed(),
        )
    }

    /// `POST /api/events` with a producer token: one alert for `bucket` (`events` = 1), or a
    /// list of `events` of them.
    pub async fn publish_alerts(
        &self,
        bucket: &BucketId,
        events: usize,
    ) -> (StatusCode, Value, Duration) {
        let one = json!({
            "bucketId": bucket.to_string(),
            "event": "alert.triggered",
            "data": {"alertName": "High Temperature Alert", "currentValue": 31.5, "threshold": 30.0},
        });
        let body = if events == 1 {
            one
        } else {
            json!({ "events": vec![one; events] })
        };
        self.call(
            Method::POST,
            "/api/events",
            &Self::producer_token(),
            Some(&body),
        )
        .await
    }
}

/// The `deliveryId`s of the list `key` of a publish answer (`deliveries`, `notQueued`).
pub fn delivery_ids(body: &Value, key: &str) -> Vec<String> {
    body[key]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|d| d["deliveryId"].as_str().expect("deliveryId").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// `n` active webhooks of `owner` on `bucket` subscribed to alert.triggered, straight into
/// `store`.
pub async fn subscribe(
    store: &dyn SubscriptionStore,
    owner: &str,
    bucket: &BucketId,
    n: usize,
) -> Vec<Webhook> {
    let owner = OwnerId::parse(owner).unwrap();
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let w = sample_webhook(&owner, bucket, SystemClock.now().unix());
        store.create(&w).await.expect("create webhook");
        out.push(w);
    }
    out
}
