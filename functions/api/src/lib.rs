//! # webhooks-api
//!
//! The HTTP API of dakkio webhooks (DESIGN.md §3) as one axum [`Router`]: the API Lambda serves
//! it through `lambda_http` (`src/main.rs`), the local mode through plain axum. Handlers extract
//! input, call one `webhooks_core` service method and map the result; they never touch an SDK.
//!
//! ## Layout
//! - [`auth`]: JWT verification (and minting, for the local mode and tests); [`jwks`]: the
//!   deployment's key set for RS256/ES256 tokens.
//! - [`cursor`]: signed pagination cursors.
//! - [`extract`]: body/query extractors that answer in the API's error format.
//! - [`error`]: `ApiError` → status + `{"error": {"code", "message"}}`.
//! - [`routes`]: the handlers. [`openapi`]: the OpenAPI 3 document.
//! - [`config`]: the API Lambda's environment.

pub mod auth;
pub mod config;
pub mod cursor;
pub mod dashboard;
pub mod error;
pub mod extract;
pub mod jwks;
pub mod openapi;
pub mod routes;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, FromRef};
use axum::http::{StatusCode, Uri};
use axum::routing::{get, post};
use axum::{Json, Router};
use webhooks_core::delivery_service::DeliveryService;
use webhooks_core::ports::{Clock, DeliveryLog, DeliveryQueue, SubscriptionStore};
use webhooks_core::validate::UrlPolicy;
use webhooks_core::webhook_service::WebhookService;

use crate::auth::{Authenticator, TokenRules};
use crate::cursor::CursorCodec;
use crate::error::ApiError;

/// How long one fan-out query serves an API Lambda instance's publishes
/// (`DynamoDbSubscriptionStore::with_fan_out_cache`): publishes of one instance to a bucket
/// share a `Query` of the fan-out index (0.5 read units, most of what a one-event publish reads)
/// per event type per second. The instance's own webhook writes are seen by its next publish;
/// a webhook created, changed or deleted through another instance is seen at most this much
/// later, a moment like the index's own lag (a deleted or disabled webhook's deliveries queued
/// meanwhile are dropped or dead-lettered when sent, as for any pending delivery).
pub const SUBSCRIBERS_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(1);

/// What every handler may use. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    pub webhooks: WebhookService,
    pub deliveries: DeliveryService,
    /// `/api/notifications` (`webhooks_core::notify`).
    pub notifications: webhooks_core::notify::NotificationService,
    pub auth: Arc<Authenticator>,
    pub cursors: Arc<CursorCodec>,
    /// Served at `/dashboard/dev-token` when set (the local mode only).
    pub dev_token: Option<Arc<str>>,
    /// The circuit breakers' states, shown as a webhook's `health` when set
    /// ([`AppState::with_health`]).
    pub health: Option<Arc<dyn webhooks_core::health::HealthStore>>,
    /// Recovery jobs run as background tasks (the local mode); otherwise each request on a
    /// running job works on it before answering (the API Lambda). See
    /// `webhooks_core::recovery`.
    pub recover_in_background: bool,
    /// Where each publish's metric values go (`webhooks_core::metrics`): EMF lines on AWS, the
    /// Prometheus registry locally; none by default.
    pub metrics: Arc<dyn webhooks_core::metrics::MetricsSink>,
}

/// The adapters the API runs on.
#[derive(Clone)]
pub struct Ports {
    pub store: Arc<dyn SubscriptionStore>,
    pub log: Arc<dyn DeliveryLog>,
    pub queue: Arc<dyn DeliveryQueue>,
    pub clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Ports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ports")
    }
}

impl AppState {
    /// `jwt_secret` verifies user tokens (strict [`TokenRules`]: see
    /// [`AppState::with_token_rules`]); a key for pagination cursors is derived from it.
    pub fn new(
        ports: Ports,
        policy: UrlPolicy,
        jwt_secret: &[u8],
    ) -> Result<Self, jsonwebtoken::errors::Error> {
        let Ports {
            store,
            log,
            queue,
            clock,
        } = ports;
        Ok(Self {
            deliveries: DeliveryService::new(store.clone(), log, queue, clock.clone()),
            notifications: webhooks_core::notify::NotificationService::new(
                store.clone(),
                clock.clone(),
                policy,
            ),
            webhooks: WebhookService::new(store, clock, policy),
            auth: Arc::new(Authenticator::new(jwt_secret)?),
            cursors: Arc::new(CursorCodec::new(jwt_secret)),
            dev_token: None,
            health: None,
            recover_in_background: false,
            metrics: Arc::new(webhooks_core::metrics::NoMetrics),
        })
    }

    /// Records each publish's metric values into `sink`.
    pub fn with_metrics(mut self, sink: Arc<dyn webhooks_core::metrics::MetricsSink>) -> Self {
        self.metrics = sink;
        self
    }

    /// Runs recovery jobs as tasks of this process (a long-lived server, not a Lambda).
    pub fn with_background_recovery(mut self) -> Self {
        self.recover_in_background = true;
        self
    }

    /// Keeps `Idempotency-Key` records of `POST /api/events` in `keys` (DynamoDB on AWS, SQLite
    /// locally). Without this call they are kept in process memory (tests only).
    pub fn with_idempotency(
        mut self,
        keys: Arc<dyn webhooks_core::idempotency::IdempotencyStore>,
    ) -> Self {
        self.deliveries = self.deliveries.with_idempotency(keys);
        self
    }

    /// Shows each webhook's circuit breaker state (`health`) from `store`.
    pub fn with_health(mut self, store: Arc<dyn webhooks_core::health::HealthStore>) -> Self {
        self.health = Some(store);
        self
    }
}

impl AppState {
    /// The deployment's token rules (open buckets, `aud`, `iss`); [`AppState::new`] starts with
    /// the strict default.
    pub fn with_token_rules(mut self, rules: &TokenRules) -> Self {
        self.auth = Arc::new(self.auth.rules(rules));
        self
    }
}

impl AppState {
    /// Also accepts RS256/ES256 tokens signed with a key of the deployment's JWKS
    /// (`JWKS_URL`); HS256 with the platform secret keeps working beside it.
    pub fn with_jwks(mut self, jwks: Arc<jwks::Jwks>) -> Self {
        self.auth = Arc::new(self.auth.with_jwks(jwks));
        self
    }
}

impl FromRef<AppState> for Arc<Authenticator> {
    fn from_ref(s: &AppState) -> Self {
        s.auth.clone()
    }
}

/// The whole API.
pub fn router(state: AppState) -> Router {
    use routes::{deliveries, events, notifications, webhooks};
    Router::new()
        .route("/api/webhooks", get(webhooks::list).post(webhooks::create))
        .route(
            "/api/webhooks/{id}",
            get(webhooks::get)
                .patch(webhooks::update)
                .delete(webhooks::delete),
        )
        .route("/api/webhooks/{id}/test", post(deliveries::test))
        .route(
            "/api/webhooks/{id}/filter-test",
            post(webhooks::filter_test),
        )
        .route(
            "/api/webhooks/{id}/rotate-secret",
            post(webhooks::rotate_secret),
        )
        .route("/api/webhooks/{id}/deliveries", get(deliveries::list))
        .route("/api/webhooks/{id}/stats/hourly", get(deliveries::hourly))
        .route(
            "/api/webhooks/{id}/dead-letters",
            get(deliveries::dead_letters),
        )
        .route("/api/webhooks/{id}/recover", post(deliveries::recover))
        .route(
            "/api/webhooks/{id}/recover/{job_id}",
            get(deliveries::recover_job),
        )
        .route(
            "/api/webhooks/{id}/deliveries/redeliver",
            post(deliveries::redeliver_all),
        )
        .route(
            "/api/webhooks/{id}/deliveries/{delivery_id}/redeliver",
            post(deliveries::redeliver_one),
        )
        .route("/api/events", post(events::publish))
        .route(
            "/api/notifications",
            get(notifications::get)
                .put(notifications::put)
                .delete(notifications::delete),
        )
        .route("/api/openapi.json", get(openapi::serve))
        .route("/health", get(health))
        .route("/dashboard", get(dashboard::index))
        .route("/dashboard/", get(dashboard::index))
        .route("/dashboard/app.js", get(dashboard::app_js))
        .route("/dashboard/style.css", get(dashboard::style))
        .route("/dashboard/dev-token", get(dashboard::dev_token))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(extract::MAX_BODY_BYTES))
        .with_state(state)
}

async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION") }))
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "route_not_found",
        format!("no route for {}", uri.path()),
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this route",
    )
}
