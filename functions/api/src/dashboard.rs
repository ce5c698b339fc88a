//! `GET /dashboard`: the browser dashboard, plain HTML/CSS/JS compiled into the binary and served
//! from the same origin as the API (in the Lambda and in the local mode), so it needs no
//! separate hosting and no CORS. The page keeps the user's token in `sessionStorage` only and
//! never stores a webhook secret beyond its one-time display.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::AppState;
use crate::error::ApiError;

const INDEX: &str = include_str!("../dashboard/index.html");
const APP_JS: &str = include_str!("../dashboard/app.js");
const STYLE: &str = include_str!("../dashboard/style.css");

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut res = (StatusCode::OK, body).into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    res
}

pub async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX)
}

pub async fn app_js() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

pub async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

/// The local mode's development token (user `dev-user`), so the dashboard can start without
/// pasting one. Not served anywhere else (404).
pub async fn dev_token(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    match &state.dev_token {
        Some(t) => Ok(Json(serde_json::json!({ "token": t }))),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "route_not_found",
            "no development token here",
        )),
    }
}
