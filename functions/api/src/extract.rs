//! Extractors that answer bad input in the API's error format: JSON bodies (content type,
//! size, syntax, shape), query strings, and ObjectId path segments.

use axum::body::Bytes;
use axum::extract::{FromRequest, Query, Request};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// Largest request body accepted (DESIGN.md §3): the largest queue message (core's
/// `MAX_MESSAGE_BYTES`, SQS's limit), since a larger event could never be queued anyway.
pub const MAX_BODY_BYTES: usize = webhooks_core::delivery::MAX_MESSAGE_BYTES;

/// A JSON request body. Refuses: a missing or non-JSON `Content-Type` (415), a body over
/// 256 KiB (413), malformed JSON (400 `malformed_json`), and JSON of the wrong shape — unknown
/// or missing fields, wrong types (400 `invalid_body`).
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        require_json(req.headers())?;
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    format!("request body must be at most {} KiB", MAX_BODY_BYTES / 1024),
                )
            } else {
                ApiError::bad_request(
                    "invalid_body",
                    format!("could not read the request body: {e}"),
                )
            }
        })?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// 415 unless `Content-Type` is JSON (`application/json`, with parameters, or `application/*+json`).
pub fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|m| {
            let m = m.trim().to_ascii_lowercase();
            m == "application/json" || (m.starts_with("application/") && m.ends_with("+json"))
        })
        .unwrap_or(false);
    if is_json {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "request body must be JSON with `Content-Type: application/json`",
        ))
    }
}

/// Parses JSON with the API's error codes.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        use serde_json::error::Category;
        match e.classify() {
            Category::Syntax | Category::Eof | Category::Io => ApiError::bad_request(
                "malformed_json",
                format!("request body is not valid JSON: {e}"),
            ),
            Category::Data => ApiError::bad_request("invalid_body", e.to_string()),
        }
    })
}

/// Parses the query string into `T` (400 `invalid_query` when it does not fit).
pub fn query<T: DeserializeOwned>(uri: &Uri) -> Result<T, ApiError> {
    Query::<T>::try_from_uri(uri)
        .map(|Query(q)| q)
        .map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))
}
