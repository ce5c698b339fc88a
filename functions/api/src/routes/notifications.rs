//! `/api/notifications`: the caller's operational notification endpoint (one per user), told
//! `webhook.failing`, `webhook.disabled` and `webhook.recovered` about the caller's webhooks
//! (see `webhooks_core::notify`). User tokens only, like `/api/webhooks`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use webhooks_core::notify::{Endpoint, PutNotifications};
use webhooks_core::webhook::{DeliveryStats, DeliveryStatus, Webhook};
use webhooks_core::webhook_service::ServiceError;
use webhooks_core::{Timestamp, WebhookId};

use crate::AppState;
use crate::auth::Auth;
use crate::error::{ApiError, ErrorBody};
use crate::extract::JsonBody;

/// The notification endpoint as the API shows it. The secret appears only in the answer of
/// the PUT that set it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotificationsResponse {
    /// The endpoint's id: its deliveries are signed with `X-Webhook-Id`s of their own, and
    /// counted in `stats`.
    pub id: WebhookId,
    pub url: String,
    /// False when the service disabled it (its receiver answered 410, or failed for days); a
    /// PUT enables it again.
    pub active: bool,
    pub disabled_reason: Option<String>,
    /// The secret's last four characters.
    #[schema(example = "…cret")]
    pub secret_hint: String,
    pub stats: DeliveryStats,
    pub last_delivery_at: Option<Timestamp>,
    pub last_delivery_status: Option<DeliveryStatus>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Only in the answer of the PUT that set it (given, or generated `whsec_…`): store it
    /// now, it is not shown again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

impl NotificationsResponse {
    fn new(w: Webhook, secret: Option<String>) -> Self {
        Self {
            id: w.id,
            url: w.url,
            active: w.active,
            disabled_reason: w.disabled_reason,
            secret_hint: w.secret.hint(),
            stats: w.stats,
            last_delivery_at: w.last_delivery_at,
            last_delivery_status: w.last_delivery_status,
            created_at: w.created_at,
            updated_at: w.updated_at,
            secret,
        }
    }
}

fn none_set(e: ServiceError) -> ApiError {
    match e {
        ServiceError::NotFound => ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no notification endpoint is set; PUT /api/notifications sets one",
        ),
        other => other.into(),
    }
}

/// Set the notification endpoint (create or replace).
#[utoipa::path(
    put, path = "/api/notifications", tag = "notifications",
    request_body = PutNotifications,
    responses(
        (status = 200, description = "Set; the body includes the secret when this request set it (given or generated), shown this once", body = NotificationsResponse),
        (status = 400, description = "`malformed_json`, `invalid_body`, `invalid_url`, `invalid_secret`", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, description = "`insufficient_scope` (a producer token)", body = ErrorBody),
        (status = 409, description = "Set by a concurrent request; try again", body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn put(
    State(state): State<AppState>,
    auth: Auth,
    JsonBody(body): JsonBody<PutNotifications>,
) -> Result<Json<NotificationsResponse>, ApiError> {
    let Endpoint {
        webhook,
        new_secret,
    } = state.notifications.put(&auth.caller, body).await?;
    tracing::info!(owner = %auth.caller.owner, endpoint = %webhook.id, "notification endpoint set");
    let secret = new_secret.map(|s| s.expose().to_owned());
    Ok(Json(NotificationsResponse::new(webhook, secret)))
}

/// The notification endpoint (without its secret).
#[utoipa::path(
    get, path = "/api/notifications", tag = "notifications",
    responses(
        (status = 200, body = NotificationsResponse),
        (status = 401, body = ErrorBody), (status = 403, description = "`insufficient_scope` (a producer token)", body = ErrorBody),
        (status = 404, description = "None is set", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    auth: Auth,
) -> Result<Json<NotificationsResponse>, ApiError> {
    let w = state
        .notifications
        .get(&auth.caller)
        .await
        .map_err(none_set)?;
    Ok(Json(NotificationsResponse::new(w, None)))
}

/// Remove the notification endpoint; notifications queued for it are dropped.
#[utoipa::path(
    delete, path = "/api/notifications", tag = "notifications",
    responses(
        (status = 204, description = "Removed"),
        (status = 401, body = ErrorBody), (status = 403, description = "`insufficient_scope` (a producer token)", body = ErrorBody),
        (status = 404, description = "None is set", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn delete(State(state): State<AppState>, auth: Auth) -> Result<StatusCode, ApiError> {
    state
        .notifications
        .delete(&auth.caller)
        .await
        .map_err(none_set)?;
    tracing::info!(owner = %auth.caller.owner, "notification endpoint removed");
    Ok(StatusCode::NO_CONTENT)
}
