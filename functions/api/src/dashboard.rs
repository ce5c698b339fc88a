//! `GET /dashboard`: the browser dashboard, plain HTML/CSS/JS compiled into the binary and served
//! from the same origin as the API (in the Lambda and in the local mode), so it needs no
//! separate hosting and no CORS. The page keeps the user's token in `sessionStorage` only and
//! never stores a webhook secret beyond its one-time display.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
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
/// pasting one. Not served anywhere else (404): the local mode sets it only on a loopback bind.
/// Even then it goes only to a request whose `Host` is a loopback name (`localhost`,
/// `127.0.0.1`, `[::1]`, any port) and whose `Origin`, if any, is that same origin — a page
/// whose name was rebound to 127.0.0.1 (DNS rebinding) sends its own name as `Host`, and a
/// foreign page sends its own `Origin` — with `Cache-Control: no-store`.
pub async fn dev_token(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some(token) = &state.dev_token else {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "route_not_found",
            "no development token here",
        )
        .into_response();
    };
    let mut res = if dev_token_allowed(&headers) {
        Json(serde_json::json!({ "token": &**token })).into_response()
    } else {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "dev_token_refused",
            "the development token is given only to pages of http://localhost, http://127.0.0.1 or http://[::1] on this server",
        )
        .into_response()
    };
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// `Host` is a loopback name (any port) and `Origin` is absent or `http://` + that `Host`.
fn dev_token_allowed(headers: &HeaderMap) -> bool {
    let Some(host) = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_ascii_lowercase)
    else {
        return false;
    };
    let name = match host.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((inside, port)) if port.is_empty() || valid_port(port) => {
                return loopback_host(&format!("[{inside}]")) && same_origin(headers, &host);
            }
            _ => return false,
        },
        None => match host.split_once(':') {
            Some((name, port)) if valid_port(&format!(":{port}")) => name,
            Some(_) => return false,
            None => host.as_str(),
        },
    };
    loopback_host(name) && same_origin(headers, &host)
}

fn valid_port(p: &str) -> bool {
    p.strip_prefix(':')
        .is_some_and(|d| !d.is_empty() && d.len() <= 5 && d.bytes().all(|b| b.is_ascii_digit()))
}

fn loopback_host(name: &str) -> bool {
    matches!(name, "localhost" | "127.0.0.1" | "[::1]")
}

fn same_origin(headers: &HeaderMap, host: &str) -> bool {
    match headers.get(header::ORIGIN) {
        None => true,
        Some(o) => o
            .to_str()
            .is_ok_and(|o| o.eq_ignore_ascii_case(&format!("http://{host}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(host: Option<&str>, origin: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(v) = host {
            h.insert(header::HOST, HeaderValue::from_str(v).unwrap());
        }
        if let Some(v) = origin {
            h.insert(header::ORIGIN, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn only_loopback_hosts_of_the_same_origin_get_the_dev_token() {
        for (host, origin) in [
            ("localhost:8080", None),
            ("127.0.0.1:8080", Some("http://127.0.0.1:8080")),
            ("[::1]:9000", Some("http://[::1]:9000")),
            ("LOCALHOST", Some("http://localhost")),
            ("127.0.0.1", None),
        ] {
            assert!(
                dev_token_allowed(&headers(Some(host), origin)),
                "{host} {origin:?}"
            );
        }
        for (host, origin) in [
            (None, None),
            (Some("attacker.example:8080"), None), // DNS rebinding: the page's own name
            (Some("127.0.0.1.nip.io:8080"), None),
            (Some("localhost.attacker.example"), None),
            (Some("127.0.0.2:8080"), None),
            (Some("0.0.0.0:8080"), None),
            (Some("localhost:8080"), Some("http://attacker.example")), // foreign page
            (Some("localhost:8080"), Some("null")),
            (Some("localhost:8080"), Some("http://localhost:9999")),
            (Some("localhost:8080"), Some("https://localhost:8080")),
            (Some("localhost:80:80"), None),
            (Some("localhost:http"), None),
            (Some("[::1]x"), None),
            (Some("[::2]:80"), None),
        ] {
            assert!(
                !dev_token_allowed(&headers(host, origin)),
                "{host:?} {origin:?}"
            );
        }
    }
}
