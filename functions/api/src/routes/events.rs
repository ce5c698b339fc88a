//! `POST /api/events`: producers publish one event or a batch; each is fanned out to every active
//! webhook of its bucket subscribed to it, one queued delivery per pair.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;
use webhooks_core::delivery_service::{
    MAX_EVENTS_PER_PUBLISH, PublishBatch, PublishError, PublishEvent, QueuedDelivery,
    validate_events,
};
use webhooks_core::idempotency::IdempotencyKey;
use webhooks_core::metrics::Measurements;

use crate::AppState;
use crate::auth::Producer;
use crate::error::{ApiError, ErrorBody, ErrorDetail, enqueue_failed_message};
use crate::extract::{JsonBody, parse_json};

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PublishResponse {
    /// Events accepted.
    pub events: usize,
    /// One per (event, subscribed webhook): the deliveries now queued.
    pub deliveries: Vec<QueuedDelivery>,
    /// `207` only: the deliveries not confirmed as queued (the queue failed, or the publish's
    /// time budget ran out first). Each may still arrive, with its `deliveryId`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_queued: Vec<QueuedDelivery>,
    /// `207` only: why some deliveries are not confirmed (`enqueue_failed`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorDetail>,
}

/// Publish events (producers; token scope `events:publish`).
#[utoipa::path(
    post, path = "/api/events", tag = "events",
    request_body(content = PublishBatch, description = "One event (`{bucketId, event, data, timestamp?}`) or `{events: [...]}` (1–100)"),
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "Makes the publish idempotent for 24 h, per producer (token `sub`): 1–255 printable ASCII characters. A repeat with the same body answers the original `202` (same `deliveryId`s, header `Idempotent-Replayed: true`) and queues nothing; with another body, `422 idempotency_key_reused`; while the first is still being published, `409 idempotency_key_in_progress` with `Retry-After`. A repeat after a `207`/`503` (or a lost answer) queues only the deliveries still missing, with the same `deliveryId`s.", min_length = 1, max_length = 255, pattern = "^[ -~]{1,255}$", example = "reading-7f3a-2024-01-15T10:30:00Z"),
    ),
    responses(
        (status = 202, description = "Queued (or, with an `Idempotency-Key` already answered, the original answer replayed: header `Idempotent-Replayed: true`)", body = PublishResponse),
        (status = 207, description = "Partly queued: `deliveries` are queued, `notQueued` are not confirmed (the queue failed for them, or the 10 s time budget ran out first; each may still arrive) and `error` says why (`enqueue_failed`). Retry the events of `notQueued`", body = PublishResponse),
        (status = 400, description = "`malformed_json`, `invalid_body`, `invalid_batch`, `invalid_bucket_id`, `invalid_event`, `invalid_data`, `invalid_timestamp` (message names the event index), `invalid_idempotency_key`", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "`insufficient_scope`, `bucket_forbidden`", body = ErrorBody),
        (status = 409, description = "`idempotency_key_in_progress`: the first request with this key is still being published; retry after `Retry-After` seconds to get its answer", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 413, description = "A delivery would exceed the queue's message limit; nothing queued", body = ErrorBody),
        (status = 415, description = "`Content-Type` is not JSON", body = ErrorBody),
        (status = 422, description = "`idempotency_key_reused`: this key was used in the last 24 h for a request with another body; nothing queued", body = ErrorBody),
        (status = 503, description = "`enqueue_failed`: no delivery could be confirmed as queued (all listed in the message); retry the events", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn publish(
    State(state): State<AppState>,
    auth: Producer,
    headers: HeaderMap,
    JsonBody(body): JsonBody<Value>,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    let raw: Vec<PublishEvent> = if body.get("events").is_some() {
        let batch: PublishBatch = parse_json(body.to_string().as_bytes())?;
        if batch.events.is_empty() || batch.events.len() > MAX_EVENTS_PER_PUBLISH {
            return Err(ApiError::bad_request(
                "invalid_batch",
                format!(
                    "events must hold 1 to {MAX_EVENTS_PER_PUBLISH} events, got {}",
                    batch.events.len()
                ),
            ));
        }
        batch.events
    } else {
        vec![
            serde_json::from_value(body)
                .map_err(|e| ApiError::bad_request("invalid_body", e.to_string()))?,
        ]
    };
    let now = state.deliveries.now();
    let count = raw.len();
    let result = match key {
        None => {
            let events = validate_events(raw, now)?;
            state
                .deliveries
                .publish(&auth.caller, events)
                .await
                .map(|d| (d, false))
        }
        Some(key) => {
            // Bad events are refused before the key is claimed: a bad request stores nothing.
            validate_events(raw.clone(), now)?;
            state
                .deliveries
                .publish_keyed(&auth.caller, &key, raw)
                .await
                .map(|k| (k.deliveries, k.replayed))
        }
    };
    match result {
        Ok((deliveries, replayed)) => {
            if !replayed {
                state
                    .metrics
                    .record(&Measurements::publish(count, deliveries.len()));
            }
            tracing::info!(
                events = count,
                deliveries = deliveries.len(),
                replayed,
                "published"
            );
            let mut res = (
                StatusCode::ACCEPTED,
                Json(PublishResponse {
                    events: count,
                    deliveries,
                    not_queued: Vec::new(),
                    error: None,
                }),
            )
                .into_response();
            if replayed {
                res.headers_mut()
                    .insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
            }
            Ok(res)
        }
        // Some queued, some not: say which (a 503 would hide the queued ones, and a producer
        // retrying every event would queue them twice).
        Err(PublishError::Enqueue {
            source,
            queued,
            not_queued,
        }) if !queued.is_empty() => {
            tracing::error!(error = %source, queued = queued.len(), not_queued = not_queued.len(), "published in part");
            state
                .metrics
                .record(&Measurements::publish(count, queued.len()));
            Ok((
                StatusCode::MULTI_STATUS,
                Json(PublishResponse {
                    events: count,
                    error: Some(ErrorDetail {
                        code: "enqueue_failed".into(),
                        message: enqueue_failed_message(
                            &source,
                            queued.len(),
                            /* listed */ false,
                        ),
                    }),
                    deliveries: queued,
                    not_queued,
                }),
            )
                .into_response())
        }
        Err(e) => Err(e.into()),
    }
}

/// The request header that makes a publish idempotent (see `webhooks_core::idempotency`).
pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";
/// Set (`true`) on the answer of a repeat: the original answer, nothing queued now.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";

/// The `Idempotency-Key`, if any: one header of 1–255 printable ASCII characters, else 400
/// `invalid_idempotency_key`.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<IdempotencyKey>, ApiError> {
    let mut values = headers.get_all(IDEMPOTENCY_KEY_HEADER).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(ApiError::bad_request(
            "invalid_idempotency_key",
            "send one Idempotency-Key header, not several",
        ));
    }
    let text = value.to_str().map_err(|_| {
        ApiError::bad_request(
            "invalid_idempotency_key",
            "Idempotency-Key must be printable ASCII characters",
        )
    })?;
    Ok(Some(IdempotencyKey::parse(text)?))
}
