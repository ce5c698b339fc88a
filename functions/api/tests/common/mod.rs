//! Shared by the API's in-process tests (`filters`, `headers`, `deliveries`, `scope`): the
//! Router on the in-memory ports, tokens signed with the test key, and one request through it.
#![allow(dead_code)] // each test binary uses a different part

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;
use webhooks_api::auth::{Authenticator, Claims, Scope, TokenRules};
use webhooks_api::{AppState, Ports, router};
use webhooks_core::dispatch::Dispatcher;
use webhooks_core::ports::memory::{MemoryLog, MemoryQueue, MemoryStore, RecordingSender};
use webhooks_core::time::SystemClock;
use webhooks_core::validate::UrlPolicy;

pub const SECRET: &[u8] = b"router-test-secret-router-test-secret";
pub const BUCKET: &str = "507f1f77bcf86cd799439011";

/// The Router's state on in-memory ports, with handles on the ports to look behind the API.
pub struct App {
    pub state: AppState,
    pub store: Arc<MemoryStore>,
    pub log: Arc<MemoryLog>,
    pub queue: Arc<MemoryQueue>,
    /// What [`App::dispatcher`] sends with.
    pub sender: Arc<RecordingSender>,
}

/// Production URL policy and these token rules.
pub fn app_with(rules: &TokenRules) -> App {
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
        .with_token_rules(rules);
    App {
        state,
        store,
        log,
        queue,
        sender: Arc::new(RecordingSender::new()),
    }
}

/// Open buckets: a token without `buckets` may use any bucket (bucket scope has its own tests,
/// tests/scope.rs, on the production rules).
pub fn app() -> App {
    app_with(&TokenRules {
        open_buckets: true,
        ..Default::default()
    })
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

pub fn mint(claims: Claims) -> String {
    Authenticator::new(SECRET).unwrap().mint(&claims).unwrap()
}

/// A token for `sub`, valid 1 h, with this `scope` and `buckets` claim.
pub fn token(sub: &str, scope: Option<&str>, buckets: Option<&[&str]>) -> String {
    mint(Claims {
        sub: sub.into(),
        exp: now() + 3600,
        buckets: buckets.map(|b| b.iter().map(|s| s.to_string()).collect()),
        scope: scope.map(|s| Scope::Text(s.into())),
        ..Default::default()
    })
}

/// A request body: JSON, or none (`None`, or `Value::Null`).
pub trait JsonBody {
    fn json(self) -> Option<Value>;
}

impl JsonBody for Value {
    fn json(self) -> Option<Value> {
        (!self.is_null()).then_some(self)
    }
}

impl JsonBody for Option<Value> {
    fn json(self) -> Option<Value> {
        self
    }
}

impl App {
    /// One request through the Router: its status and JSON body (`Null` when empty or not JSON).
    pub async fn call(
        &self,
        method: Method,
        uri: &str,
        token: &str,
        body: impl JsonBody,
    ) -> (StatusCode, Value) {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Bearer {token}"));
        let req = match body.json() {
            Some(b) => req
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(b.to_string())),
            None => req.body(Body::empty()),
        }
        .unwrap();
        let res = router(self.state.clone()).oneshot(req).await.unwrap();
        let status = res.status();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// The delivery worker's dispatcher on the same ports, sending with [`App::sender`].
    pub fn dispatcher(&self) -> Dispatcher {
        Dispatcher::new(
            self.store.clone(),
            self.log.clone(),
            self.sender.clone(),
            Arc::new(SystemClock),
        )
    }
}
