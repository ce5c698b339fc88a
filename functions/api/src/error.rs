//! `ApiError`: every failure the API answers, as a status and
//! `{"error": {"code": "...", "message": "..."}}`. Internal causes are logged, never sent.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use webhooks_core::delivery_service::PublishError;
use webhooks_core::idempotency::RETRY_AFTER_SECS;
use webhooks_core::ports::{EnqueueError, StoreError};
use webhooks_core::validate::ValidationError;
use webhooks_core::webhook_service::ServiceError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

/// The error body, for the OpenAPI document.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable (`invalid_url`, `not_found`, …).
    #[schema(example = "invalid_url")]
    pub code: String,
    /// For people; may change.
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "webhook not found")
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; it has been logged",
        )
    }
}

impl From<ValidationError> for ApiError {
    fn from(e: ValidationError) -> Self {
        Self::bad_request(e.code, e.message)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => Self::not_found(),
            StoreError::Conflict(_) => {
                tracing::warn!(error = %e, "store conflict");
                Self::new(
                    StatusCode::CONFLICT,
                    "conflict",
                    "the webhook changed concurrently; try again",
                )
            }
            StoreError::Unavailable(_) => {
                tracing::error!(error = %e, "store unavailable");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "storage is temporarily unavailable; try again shortly",
                )
            }
            StoreError::Corrupt(_) => {
                tracing::error!(error = %e, "corrupt record");
                Self::internal()
            }
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Invalid(v) => v.into(),
            ServiceError::BucketForbidden(b) => Self::new(
                StatusCode::FORBIDDEN,
                "bucket_forbidden",
                format!("bucket {b} is not one this token may use"),
            ),
            ServiceError::NotFound => Self::not_found(),
            ServiceError::BucketFull(b) => Self::new(
                StatusCode::CONFLICT,
                "bucket_full",
                format!(
                    "bucket {b} holds {} webhooks (all users together), the most a bucket may \
                     have; delete one first",
                    webhooks_core::webhook_service::MAX_WEBHOOKS_PER_BUCKET
                ),
            ),
            ServiceError::Store(s) => s.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message,
            },
        };
        let mut res = (self.status, Json(body)).into_response();
        match self.status {
            StatusCode::UNAUTHORIZED => {
                res.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                res.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            StatusCode::CONFLICT if self.code == "idempotency_key_in_progress" => {
                res.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
            }
            _ => {}
        }
        res
    }
}

impl From<PublishError> for ApiError {
    fn from(e: PublishError) -> Self {
        match e {
            PublishError::Service(s) => s.into(),
            PublishError::KeyReused => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                "this Idempotency-Key was used in the last 24 h for a request with another \
                 body; use a new key for a new request",
            ),
            PublishError::KeyInProgress => Self::new(
                StatusCode::CONFLICT,
                "idempotency_key_in_progress",
                format!(
                    "a request with this Idempotency-Key is being published; retry after \
                     {RETRY_AFTER_SECS} s to get its answer"
                ),
            ),
            PublishError::TooLarge { .. } => Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                e.to_string(),
            ),
            PublishError::Enqueue {
                source,
                queued,
                not_queued,
            } => {
                tracing::error!(error = %source, queued = queued.len(), not_queued = not_queued.len(), "enqueue failed");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "enqueue_failed",
                    enqueue_failed_message(&source, queued.len(), /* listed */ true),
                )
            }
        }
    }
}

/// The message of an `enqueue_failed` error: how many deliveries were and were not confirmed as
/// queued, and what that means. A `503` lists the unconfirmed ids here (`unconfirmed: [..]`); a
/// `207` lists them in its `notQueued` instead (`listed = false`).
pub fn enqueue_failed_message(source: &EnqueueError, queued: usize, listed: bool) -> String {
    let which = if listed {
        let ids: Vec<String> = source.failed.iter().map(ToString::to_string).collect();
        format!("unconfirmed: [{}]", ids.join(", "))
    } else {
        "the unconfirmed ones are listed in notQueued".to_owned()
    };
    format!(
        "{} deliveries could not be confirmed as queued and {} were; {which}. \
         An unconfirmed delivery may still arrive (with its deliveryId). Repeating the \
         request with the same Idempotency-Key queues only the missing deliveries, with \
         the same deliveryIds; without a key, publishing again queues new deliveries",
        source.failed.len(),
        queued,
    )
}
