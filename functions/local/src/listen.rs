//! `dakkio-webhooks listen`: a local receiver for trying webhooks without ngrok. It accepts
//! deliveries on 127.0.0.1, checks both signatures (the guide's `X-Webhook-Signature` and the
//! Standard Webhooks `webhook-signature`, with the timestamp's age), prints each event on one
//! line, answers a chosen status (to try retries), and can forward the body, byte for byte, to
//! the developer's own endpoint — answering with whatever that endpoint answers.
//!
//! With `--secret`, a request whose signatures do not verify gets 401 and is neither forwarded
//! nor answered with `--status`: only the service's deliveries reach the developer's endpoint.
//! What a sender controls (event name, ids, data keys and values, path) is printed with control
//! characters escaped, so a request cannot drive the terminal with escape sequences.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use webhooks_core::signing::{verify_guide_signature, verify_standard_webhooks};
use webhooks_core::webhook::Secret;

#[derive(Debug, clap::Args)]
pub struct ListenArgs {
    /// Port on 127.0.0.1 (0 picks a free one; the address is printed).
    #[arg(long, default_value_t = 8081)]
    pub port: u16,
    /// The webhook's secret, to verify signatures (without it, nothing is verified).
    #[arg(long, env = "WEBHOOK_SECRET")]
    pub secret: Option<String>,
    /// Status to answer with (try 500 to watch retries). Ignored with --forward-to.
    #[arg(long, default_value_t = 200)]
    pub status: u16,
    /// Forward each delivery (body and webhook headers unchanged) to this URL and answer with
    /// its status.
    #[arg(long)]
    pub forward_to: Option<String>,
    /// Oldest `webhook-timestamp` accepted, in seconds.
    #[arg(long, default_value_t = 300)]
    pub tolerance_secs: i64,
}

#[derive(Clone)]
struct Listener {
    secret: Option<Secret>,
    status: StatusCode,
    forward_to: Option<String>,
    tolerance: i64,
    client: reqwest::Client,
}

pub async fn run(args: ListenArgs) -> Result<()> {
    let status =
        StatusCode::from_u16(args.status).context("--status must be an HTTP status code")?;
    let state = Listener {
        secret: args.secret.map(Secret::new),
        status,
        forward_to: args.forward_to.clone(),
        tolerance: args.tolerance_secs,
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .no_proxy()
            .build()?,
    };
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], args.port)))
        .await
        .with_context(|| format!("listening on port {}", args.port))?;
    let addr = listener.local_addr()?;
    println!("listening on http://{addr}  (point a webhook's url here; Ctrl-C to stop)");
    match (&state.secret, &args.forward_to) {
        (None, _) => println!("no --secret given: signatures are shown but not verified"),
        (Some(_), Some(f)) => println!("verifying signatures; forwarding to {f}"),
        (Some(_), None) => println!("verifying signatures; answering {status}"),
    }
    println!("ready");
    let app = Router::new().fallback(receive).with_state(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(crate::shutdown_signal())
        .await?;
    Ok(())
}

async fn receive(State(l): State<Listener>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let h = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let (verified, verdict) = match &l.secret {
        None => (true, "unverified (no --secret)".to_owned()),
        Some(secret) => verdict(secret, &headers, &body, l.tolerance),
    };
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    let field = |k: &str| {
        parsed
            .as_ref()
            .and_then(|v| v.get(k))
            .and_then(Value::as_str)
            .unwrap_or("-")
            .to_owned()
    };
    let event = if h("x-webhook-event").is_empty() {
        field("event")
    } else {
        h("x-webhook-event")
    };
    let line = format!(
        "{event}  webhook {}  delivery {}  attempt {}  {verdict}  {} {}",
        field("webhookId"),
        if h("x-webhook-id").is_empty() {
            field("deliveryId")
        } else {
            h("x-webhook-id")
        },
        if h("x-webhook-attempt").is_empty() {
            "-".to_owned()
        } else {
            h("x-webhook-attempt")
        },
        uri.path(),
        summary(parsed.as_ref().and_then(|v| v.get("data"))),
    );
    println!("{}", escape_controls(&line));
    if !verified {
        println!("  refused: 401, not forwarded");
        return (StatusCode::UNAUTHORIZED, "signature verification failed").into_response();
    }
    let Some(target) = &l.forward_to else {
        return (l.status, "").into_response();
    };
    let mut req = l.client.post(target).body(body.clone());
    for (name, value) in &headers {
        let n = name.as_str();
        if n == "content-type"
            || n == "user-agent"
            || n.starts_with("x-webhook-")
            || n.starts_with("webhook-")
        {
            req = req.header(name, value);
        }
    }
    match req.send().await {
        Ok(res) => {
            let code = res.status();
            println!("  forwarded → {code}");
            let status = StatusCode::from_u16(code.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            (status, res.bytes().await.unwrap_or_default()).into_response()
        }
        Err(e) => {
            println!("  forward failed: {}", e.without_url());
            (StatusCode::BAD_GATEWAY, "forward failed").into_response()
        }
    }
}

/// Control characters (C0, DEL, C1: ESC above all) as `\u{..}` escapes, the rest unchanged.
fn escape_controls(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

/// Whether both signatures verified (with a fresh timestamp), and "verified (sha256, v1)" or
/// what failed.
fn verdict(secret: &Secret, headers: &HeaderMap, body: &[u8], tolerance: i64) -> (bool, String) {
    let h = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    };
    let guide = verify_guide_signature(secret, body, h("x-webhook-signature"));
    let ts = h("webhook-timestamp").parse::<i64>().ok();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default();
    let fresh = ts.is_some_and(|t| (now - t).abs() <= tolerance);
    let standard = ts.is_some_and(|t| {
        verify_standard_webhooks(secret, h("webhook-id"), t, body, h("webhook-signature"))
    });
    let text = match (guide, standard, fresh) {
        (true, true, true) => return (true, "verified (sha256, v1)".to_owned()),
        (true, true, false) => "NOT verified: timestamp outside the tolerance".to_owned(),
        _ => format!(
            "NOT verified: {}{}",
            if guide {
                ""
            } else {
                "X-Webhook-Signature mismatch "
            },
            if standard {
                ""
            } else {
                "webhook-signature mismatch"
            }
        )
        .trim_end()
        .to_owned(),
    };
    (false, text)
}

/// A short, one-line view of `data`: its scalar fields, `key=value`, up to ~120 characters.
fn summary(data: Option<&Value>) -> String {
    let Some(Value::Object(m)) = data else {
        return String::new();
    };
    let mut out = String::new();
    for (k, v) in m {
        let v = match v {
            Value::String(s) => format!("{s:?}"),
            Value::Object(_) => "{…}".to_owned(),
            Value::Array(a) => format!("[{}]", a.len()),
            other => other.to_string(),
        };
        let part = format!("{k}={v} ");
        if out.len() + part.len() > 120 {
            out.push('…');
            break;
        }
        out.push_str(&part);
    }
    out.trim_end().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_show_scalars_and_stay_short() {
        let v: Value = serde_json::json!({"alertName": "High", "currentValue": 31.5, "dataPoint": {"x": 1}, "tags": [1, 2]});
        assert_eq!(
            summary(Some(&v)),
            r#"alertName="High" currentValue=31.5 dataPoint={…} tags=[2]"#
        );
        let long: Value = serde_json::json!({"a": "x".repeat(200), "b": 1});
        assert!(summary(Some(&long)).len() < 130);
    }

    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        assert_eq!(
            escape_controls("alert\u{1b}]0;pwned\u{7}\u{1b}[2J\r\nx\u{9b}31m °C"),
            "alert\\u{1b}]0;pwned\\u{7}\\u{1b}[2J\\u{d}\\u{a}x\\u{9b}31m °C"
        );
        assert_eq!(escape_controls("alert.triggered"), "alert.triggered");
    }
}
