//! `/api/webhooks`: create, list, read, change, delete.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use webhooks_core::format::Format;
use webhooks_core::health::WebhookHealth;
use webhooks_core::validate::{CreateWebhook, UpdateWebhook};
use webhooks_core::webhook::{DeliveryStats, DeliveryStatus, RetryConfig, Webhook};
use webhooks_core::webhook_service::{FilterTest, FilterTestResult};
use webhooks_core::{BucketId, EventType, Timestamp, WebhookId};

use crate::AppState;
use crate::auth::Auth;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{JsonBody, query};

/// A webhook as the API shows it. The secret appears only in the create response.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookResponse {
    pub id: WebhookId,
    pub bucket_id: BucketId,
    pub url: String,
    pub events: Vec<EventType>,
    pub description: Option<String>,
    pub active: bool,
    pub retry_config: RetryConfig,
    /// `json` (the guide's envelope), `slack` or `discord`.
    pub format: Format,
    /// Only events matching it are delivered; `null`: every event of the subscribed types.
    #[schema(value_type = Option<webhooks_core::filter::FilterSchema>)]
    pub filter: Option<serde_json::Value>,
    /// Custom headers: names and hints only (values are write-only).
    pub headers: Vec<webhooks_core::headers::HeaderHint>,
    /// At most this many deliveries per second (1–10000); `null`: no limit.
    #[schema(minimum = 1, maximum = 10000)]
    pub rate_limit: Option<u32>,
    pub stats: DeliveryStats,
    pub last_delivery_at: Option<Timestamp>,
    pub last_delivery_status: Option<DeliveryStatus>,
    /// The secret's last four characters, to tell secrets apart.
    #[schema(example = "…cret")]
    pub secret_hint: String,
    /// After a rotation: until when the previous secret still signs deliveries.
    pub previous_secret_expires_at: Option<Timestamp>,
    /// When the current run of failed deliveries began (null after a success).
    pub failing_since: Option<Timestamp>,
    /// Why the service disabled the webhook (410 Gone, or failing too long); cleared when it
    /// is re-enabled with `PATCH {"active": true}`.
    pub disabled_reason: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// The circuit breaker's state (DESIGN.md §7): `healthy`, `degraded` (its last attempts
    /// failed) or `open` (deliveries wait until `openUntil`, then one probe decides), since
    /// when, and the last error. In `GET /api/webhooks/{id}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<WebhookHealth>,
    /// Only in the response to `POST /api/webhooks`: store it now, it is not shown again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

impl WebhookResponse {
    fn new(w: Webhook, with_secret: bool) -> Self {
        Self {
            secret_hint: w.secret.hint(),
            secret: with_secret.then(|| w.secret.expose().to_owned()),
            id: w.id,
            bucket_id: w.bucket_id,
            url: w.url,
            events: w.events,
            description: w.description,
            active: w.active,
            retry_config: w.retry_config,
            format: w.format,
            filter: w.filter.map(|f| f.as_json().clone()),
            headers: w.headers.hints(),
            rate_limit: w.rate_limit,
            previous_secret_expires_at: w.previous_secret.as_ref().map(|p| p.expires_at),
            failing_since: w.failing_since,
            disabled_reason: w.disabled_reason,
            stats: w.stats,
            last_delivery_at: w.last_delivery_at,
            last_delivery_status: w.last_delivery_status,
            created_at: w.created_at,
            updated_at: w.updated_at,
            health: None,
        }
    }
}

/// One page of webhooks, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookList {
    pub data: Vec<WebhookResponse>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only this bucket's webhooks.
    pub bucket_id: Option<String>,
    /// Page size, 1–100 (default 20).
    pub limit: Option<String>,
    /// `nextCursor` of the previous page.
    pub cursor: Option<String>,
}

pub const DEFAULT_LIMIT: usize = 20;
pub const MAX_LIMIT: usize = 100;

pub(crate) fn webhook_id(raw: &str) -> Result<WebhookId, ApiError> {
    WebhookId::parse(raw)
        .map_err(|e| ApiError::bad_request("invalid_id", format!("webhook id {e}")))
}

/// Create a webhook.
#[utoipa::path(
    post, path = "/api/webhooks", tag = "webhooks",
    request_body = CreateWebhook,
    responses(
        (status = 201, description = "Created; the body includes the secret, shown this once", body = WebhookResponse),
        (status = 400, description = "Invalid body (`malformed_json`, `invalid_body`, `invalid_url`, `invalid_events`, `invalid_bucket_id`, `invalid_retry_config`, `invalid_secret`, `invalid_description`, `invalid_filter`, `invalid_headers`, `invalid_rate_limit`), or `limit_exceeded` (500 webhooks per user)", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, description = "`bucket_forbidden` (a bucket the token may not use), `insufficient_scope` (a producer token)", body = ErrorBody),
        (status = 409, description = "`bucket_full`: the bucket holds 100 webhooks, all users' together (the bound of one publish's fan-out)", body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn create(
    State(state): State<AppState>,
    auth: Auth,
    JsonBody(body): JsonBody<CreateWebhook>,
) -> Result<impl IntoResponse, ApiError> {
    let w = state.webhooks.create(&auth.caller, body).await?;
    tracing::info!(webhook = %w.id, owner = %auth.caller.owner, "webhook created");
    Ok((StatusCode::CREATED, Json(WebhookResponse::new(w, true))))
}

/// List the caller's webhooks.
#[utoipa::path(
    get, path = "/api/webhooks", tag = "webhooks", params(ListParams),
    responses(
        (status = 200, body = WebhookList),
        (status = 400, description = "`invalid_query`, `invalid_bucket_id`, `invalid_cursor`", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, description = "`bucket_forbidden` (a `bucketId` the token may not use), `insufficient_scope` (a producer token)", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    auth: Auth,
    uri: Uri,
) -> Result<Json<WebhookList>, ApiError> {
    let params: ListParams = query(&uri)?;
    let bucket = params
        .bucket_id
        .as_deref()
        .map(BucketId::parse)
        .transpose()
        .map_err(|e| ApiError::bad_request("invalid_bucket_id", format!("bucketId {e}")))?;
    let limit = match params.limit.as_deref() {
        None => DEFAULT_LIMIT,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=MAX_LIMIT).contains(l))
            .ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_query",
                    "limit must be a whole number from 1 to 100",
                )
            })?,
    };
    let owner = &auth.caller.owner;
    let after = params
        .cursor
        .as_deref()
        .map(|c| state.cursors.decode(owner, bucket.as_ref(), c))
        .transpose()?;
    let page = state
        .webhooks
        .list(&auth.caller, bucket.clone(), after, limit)
        .await?;
    let next_cursor = page
        .next_after
        .map(|a| state.cursors.encode(owner, bucket.as_ref(), &a));
    Ok(Json(WebhookList {
        data: page
            .items
            .into_iter()
            .map(|w| WebhookResponse::new(w, false))
            .collect(),
        next_cursor,
    }))
}

/// One webhook, with its delivery stats.
#[utoipa::path(
    get, path = "/api/webhooks/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "Webhook id (ObjectId)")),
    responses(
        (status = 200, body = WebhookResponse),
        (status = 400, description = "`invalid_id`", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "`insufficient_scope`: a producer token", body = ErrorBody),
        (status = 404, description = "No such webhook of the caller's in a bucket its token may use", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<WebhookResponse>, ApiError> {
    let w = state.webhooks.get(&auth.caller, &webhook_id(&id)?).await?;
    let health = match &state.health {
        Some(store) => Some(
            store
                .get(&w.id)
                .await?
                .unwrap_or_else(|| WebhookHealth::healthy(w.created_at)),
        ),
        None => None,
    };
    Ok(Json(WebhookResponse {
        health,
        ..WebhookResponse::new(w, false)
    }))
}

/// Change a webhook: any of url, events, description (`null` clears), active, retryConfig
/// (fields given replace, others stay), secret, format, filter (`null` removes it), headers
/// (a string sets one, `null` removes one, others stay; `null` removes all).
#[utoipa::path(
    patch, path = "/api/webhooks/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "Webhook id (ObjectId)")),
    request_body = UpdateWebhook,
    responses(
        (status = 200, body = WebhookResponse),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, description = "`insufficient_scope`: a producer token", body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn update(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<UpdateWebhook>,
) -> Result<Json<WebhookResponse>, ApiError> {
    let id = webhook_id(&id)?;
    let w = state.webhooks.update(&auth.caller, &id, body).await?;
    tracing::info!(webhook = %w.id, "webhook updated");
    Ok(Json(WebhookResponse::new(w, false)))
}

/// `POST /api/webhooks/{id}/rotate-secret` body (optional).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RotateSecret {
    /// The new secret; generated (`whsec_…`) when omitted.
    pub secret: Option<String>,
    /// How long the old secret keeps signing, 0–604800 s (default 86400).
    pub grace_seconds: Option<i64>,
}

/// Rotate the signing secret. The response shows the new secret, once. During the grace period
/// deliveries carry both signatures: `webhook-signature` has a `v1,` entry per secret, and
/// `X-Webhook-Signature` (new secret) is joined by `X-Webhook-Signature-Previous` (old secret).
#[utoipa::path(
    post, path = "/api/webhooks/{id}/rotate-secret", tag = "webhooks",
    params(("id" = String, Path, description = "Webhook id (ObjectId)")),
    request_body(content = Option<RotateSecret>),
    responses(
        (status = 200, description = "Rotated; the body includes the new secret, shown this once", body = WebhookResponse),
        (status = 400, description = "`invalid_id`, `invalid_secret`, `invalid_grace`, `invalid_body`", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, description = "`insufficient_scope`: a producer token", body = ErrorBody), (status = 404, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn rotate_secret(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<WebhookResponse>, ApiError> {
    let id = webhook_id(&id)?;
    let req: RotateSecret = if body.iter().all(u8::is_ascii_whitespace) {
        RotateSecret::default()
    } else {
        crate::extract::require_json(&headers)?;
        // `null` is the same as no body.
        crate::extract::parse_json::<Option<RotateSecret>>(&body)?.unwrap_or_default()
    };
    let w = state
        .webhooks
        .rotate_secret(&auth.caller, &id, req.secret, req.grace_seconds)
        .await?;
    tracing::info!(webhook = %w.id, "secret rotated");
    Ok(Json(WebhookResponse::new(w, true)))
}

/// Delete a webhook.
#[utoipa::path(
    delete, path = "/api/webhooks/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "Webhook id (ObjectId)")),
    responses(
        (status = 204, description = "Deleted, with its dead letters; its pending deliveries are dropped"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, description = "`insufficient_scope`: a producer token", body = ErrorBody), (status = 404, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn delete(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = webhook_id(&id)?;
    state.webhooks.delete(&auth.caller, &id).await?;
    tracing::info!(webhook = %id, "webhook deleted");
    state.deliveries.purge_deleted(&id).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Would this event be delivered? Checks a sample event against the webhook's event types and
/// its filter (or the `filter` given in the body, to try one before saving it). Nothing is
/// stored or sent.
#[utoipa::path(
    post, path = "/api/webhooks/{id}/filter-test", tag = "webhooks",
    params(("id" = String, Path, description = "Webhook id (ObjectId)")),
    request_body = FilterTest,
    responses(
        (status = 200, body = FilterTestResult),
        (status = 400, description = "`invalid_id`, `invalid_body`, `invalid_event`, `invalid_data`, `invalid_timestamp`, `invalid_filter`", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn filter_test(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<FilterTest>,
) -> Result<Json<FilterTestResult>, ApiError> {
    let id = webhook_id(&id)?;
    Ok(Json(
        state.webhooks.filter_test(&auth.caller, &id, body).await?,
    ))
}
