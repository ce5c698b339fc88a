//! `POST /api/events`: producers publish one event or a batch; each is fanned out to every active
//! webhook of its bucket subscribed to it, one queued delivery per pair.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use serde_json::Value;
use webhooks_core::publish::{
    MAX_EVENTS_PER_PUBLISH, PublishBatch, PublishError, PublishEvent, QueuedDelivery, ValidEvent,
};

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
    responses(
        (status = 202, description = "Queued", body = PublishResponse),
        (status = 207, description = "Partly queued: `deliveries` are queued, `notQueued` are not confirmed (the queue failed for them, or the 10 s time budget ran out first; each may still arrive) and `error` says why (`enqueue_failed`). Retry the events of `notQueued`", body = PublishResponse),
        (status = 400, description = "`malformed_json`, `invalid_body`, `invalid_batch`, `invalid_bucket_id`, `invalid_event`, `invalid_data`, `invalid_timestamp` (message names the event index)", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "`insufficient_scope`, `bucket_forbidden`", body = ErrorBody),
        (status = 413, description = "A delivery would exceed the queue's message limit; nothing queued", body = ErrorBody),
        (status = 415, description = "`Content-Type` is not JSON", body = ErrorBody),
        (status = 503, description = "`enqueue_failed`: no delivery could be confirmed as queued (all listed in the message); retry the events", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn publish(
    State(state): State<AppState>,
    auth: Producer,
    JsonBody(body): JsonBody<Value>,
) -> Result<(StatusCode, Json<PublishResponse>), ApiError> {
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
    let events = raw
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            e.validate(now)
                .map_err(|v| ApiError::bad_request(v.code, format!("events[{i}]: {}", v.message)))
        })
        .collect::<Result<Vec<ValidEvent>, ApiError>>()?;
    let count = events.len();
    match state.deliveries.publish(&auth.caller, events).await {
        Ok(deliveries) => {
            tracing::info!(events = count, deliveries = deliveries.len(), "published");
            Ok((
                StatusCode::ACCEPTED,
                Json(PublishResponse {
                    events: count,
                    deliveries,
                    not_queued: Vec::new(),
                    error: None,
                }),
            ))
        }
        // Some queued, some not: say which (a 503 would hide the queued ones, and a producer
        // retrying every event would queue them twice).
        Err(PublishError::Enqueue {
            source,
            queued,
            not_queued,
        }) if !queued.is_empty() => {
            tracing::error!(error = %source, queued = queued.len(), not_queued = not_queued.len(), "published in part");
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
            ))
        }
        Err(e) => Err(e.into()),
    }
}
