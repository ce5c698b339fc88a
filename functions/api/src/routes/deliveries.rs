//! A webhook's deliveries: test sends, the attempt history, dead letters and their redelivery.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use serde::{Deserialize, Serialize};
use webhooks_core::delivery::{AttemptRecord, DeadLetter};
use webhooks_core::publish::QueuedDelivery;
use webhooks_core::{DeliveryId, EventType, Timestamp};

use crate::AppState;
use crate::auth::Auth;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{parse_json, query, require_json};
use crate::routes::webhooks::webhook_id;

/// `POST /api/webhooks/{id}/test` body (optional).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TestRequest {
    /// Which event's sample to send (default: the webhook's first event).
    pub event: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttemptList {
    pub data: Vec<AttemptRecord>,
}

/// A dead letter as listed (the body is not repeated here).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetterView {
    pub delivery_id: DeliveryId,
    pub event: EventType,
    pub error: String,
    pub attempts: u32,
    pub at: Timestamp,
}

impl From<DeadLetter> for DeadLetterView {
    fn from(d: DeadLetter) -> Self {
        Self {
            delivery_id: d.task.delivery_id,
            event: d.task.event,
            error: d.error,
            attempts: d.attempts,
            at: d.at,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetterList {
    pub data: Vec<DeadLetterView>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Redelivered {
    pub deliveries: Vec<QueuedDelivery>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LimitParams {
    /// 1–100 (default 50).
    pub limit: Option<String>,
}

fn limit(uri: &Uri) -> Result<usize, ApiError> {
    let p: LimitParams = query(uri)?;
    match p.limit.as_deref() {
        None => Ok(50),
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=100).contains(l))
            .ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_query",
                    "limit must be a whole number from 1 to 100",
                )
            }),
    }
}

/// Send a signed `webhook.test` delivery now.
#[utoipa::path(
    post, path = "/api/webhooks/{id}/test", tag = "deliveries",
    params(("id" = String, Path, description = "Webhook id")),
    request_body(content = Option<TestRequest>, description = "Optional: which event's sample to send"),
    responses(
        (status = 202, description = "Queued", body = QueuedDelivery),
        (status = 400, description = "`invalid_id`, `invalid_event`, `webhook_inactive`", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, description = "`insufficient_scope`: a producer token", body = ErrorBody), (status = 404, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn test(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<QueuedDelivery>), ApiError> {
    let id = webhook_id(&id)?;
    let req: TestRequest = if body.iter().all(u8::is_ascii_whitespace) {
        TestRequest::default()
    } else {
        require_json(&headers)?;
        // `null` is the same as no body.
        parse_json::<Option<TestRequest>>(&body)?.unwrap_or_default()
    };
    let sample = req
        .event
        .map(|e| {
            e.parse::<EventType>()
                .ok()
                .filter(|e| EventType::SUBSCRIBABLE.contains(e))
                .ok_or_else(|| {
                    ApiError::bad_request("invalid_event", format!("unknown event {e:?}"))
                })
        })
        .transpose()?;
    let queued = state
        .deliveries
        .send_test(&auth.caller, &id, sample)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(queued)))
}

/// Recent delivery attempts, newest first.
#[utoipa::path(
    get, path = "/api/webhooks/{id}/deliveries", tag = "deliveries",
    params(("id" = String, Path, description = "Webhook id"), LimitParams),
    responses((status = 200, body = AttemptList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, description = "`insufficient_scope`: a producer token", body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    uri: Uri,
) -> Result<Json<AttemptList>, ApiError> {
    let id = webhook_id(&id)?;
    let limit = limit(&uri)?;
    Ok(Json(AttemptList {
        data: state.deliveries.history(&auth.caller, &id, limit).await?,
    }))
}

/// Deliveries that failed for good and can be redelivered, oldest first.
#[utoipa::path(
    get, path = "/api/webhooks/{id}/dead-letters", tag = "deliveries",
    params(("id" = String, Path, description = "Webhook id"), LimitParams),
    responses((status = 200, body = DeadLetterList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, description = "`insufficient_scope`: a producer token", body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn dead_letters(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    uri: Uri,
) -> Result<Json<DeadLetterList>, ApiError> {
    let id = webhook_id(&id)?;
    let limit = limit(&uri)?;
    let data = state
        .deliveries
        .dead_letters(&auth.caller, &id, limit)
        .await?;
    Ok(Json(DeadLetterList {
        data: data.into_iter().map(Into::into).collect(),
    }))
}

/// Redeliver one dead letter: same `deliveryId` and body, attempts counted from 1 again.
#[utoipa::path(
    post, path = "/api/webhooks/{id}/deliveries/{deliveryId}/redeliver", tag = "deliveries",
    params(("id" = String, Path, description = "Webhook id"), ("deliveryId" = String, Path, description = "Delivery id")),
    responses(
        (status = 202, body = Redelivered), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, description = "`insufficient_scope`: a producer token", body = ErrorBody),
        (status = 404, description = "No such webhook, or no dead letter with that id (already redelivered, possibly by a concurrent call: each dead letter is claimed by exactly one)", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn redeliver_one(
    State(state): State<AppState>,
    auth: Auth,
    Path((id, delivery)): Path<(String, String)>,
) -> Result<(StatusCode, Json<Redelivered>), ApiError> {
    let id = webhook_id(&id)?;
    let delivery = DeliveryId::parse(&delivery)
        .map_err(|e| ApiError::bad_request("invalid_id", format!("delivery id {e}")))?;
    let deliveries = state
        .deliveries
        .redeliver(&auth.caller, &id, Some(&delivery), 1)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(Redelivered { deliveries })))
}

/// Redeliver all of a webhook's dead letters (up to 100 per call). A dead letter a concurrent
/// call claimed first is left to it (each is queued once).
#[utoipa::path(
    post, path = "/api/webhooks/{id}/deliveries/redeliver", tag = "deliveries",
    params(("id" = String, Path, description = "Webhook id")),
    responses((status = 202, body = Redelivered), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, description = "`insufficient_scope`: a producer token", body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn redeliver_all(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Redelivered>), ApiError> {
    let id = webhook_id(&id)?;
    let deliveries = state
        .deliveries
        .redeliver(&auth.caller, &id, None, 100)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(Redelivered { deliveries })))
}
