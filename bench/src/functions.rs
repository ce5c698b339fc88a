//! What both Lambda benches (`lambda-bench`, `lambda-cost`) need to run the functions: the
//! environment Lambda gives a function, the API's tokens, and one HTTP request through the API
//! function as an API Gateway v2 event.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use serde_json::Value;

use crate::runtime_api::{FunctionProcess, Reply};

/// `JWT_SECRET` of the API function (at least 32 bytes).
pub const JWT_SECRET: &str = "lambda-bench-jwt-secret-5f0c2e9a7b3d1e4f6a8c";

/// The environment Lambda gives a `provided.al2023` function (minus `AWS_LAMBDA_RUNTIME_API`,
/// set per process), pointed at moto, plus its tables and queues (`resources`, from
/// [`Resources::env_of`](crate::moto::Resources::env_of)) and its own configuration.
pub fn function_env(
    function: &str,
    memory_mb: &str,
    endpoint: &str,
    rust_log: &str,
    resources: &[(String, String)],
    own: &[(&str, &str)],
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = [
        ("AWS_LAMBDA_FUNCTION_NAME", function),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", memory_mb),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
        (
            "AWS_LAMBDA_LOG_STREAM_NAME",
            "2026/01/01/[$LATEST]0123456789abcdef0123456789abcdef",
        ),
        ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_SESSION_TOKEN", "test"),
        ("AWS_ENDPOINT_URL", endpoint),
        ("_HANDLER", "bootstrap"),
        ("TZ", ":UTC"),
        ("LANG", "en_US.UTF-8"),
        ("PATH", "/usr/local/bin:/usr/bin:/bin"),
        ("RUST_LOG", rust_log),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    env.push((
        "AWS_LAMBDA_LOG_GROUP_NAME".into(),
        format!("/aws/lambda/{function}"),
    ));
    env.extend(resources.iter().cloned());
    env.extend(own.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    env
}

/// An HS256 token signed with the API's `JWT_SECRET`.
pub fn mint(claims: &Value) -> Result<String> {
    let key = jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes())?;
    Ok(jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &key,
    )?)
}

/// One HTTP request through the API function: an API Gateway v2 event built on `template`,
/// whose response must have `status`; returns its JSON body.
pub async fn http_call(
    api: &mut FunctionProcess,
    template: &str,
    method: &str,
    path: &str,
    token: &str,
    body: Option<String>,
    status: u64,
) -> Result<Value> {
    let mut event: Value = serde_json::from_str(template).context("an event in events/")?;
    let now = chrono::Utc::now();
    event["rawPath"] = path.into();
    event["headers"]["authorization"] = format!("Bearer {token}").into();
    event["requestContext"]["http"]["method"] = method.into();
    event["requestContext"]["http"]["path"] = path.into();
    event["requestContext"]["requestId"] = format!("lb{}", now.timestamp_micros()).into();
    event["requestContext"]["time"] = now.format("%d/%b/%Y:%H:%M:%S +0000").to_string().into();
    event["requestContext"]["timeEpoch"] = now.timestamp_millis().into();
    event["isBase64Encoded"] = false.into();
    match body {
        Some(b) => {
            event["headers"]["content-type"] = "application/json".into();
            event["body"] = b.into();
        }
        None => {
            if let Some(h) = event["headers"].as_object_mut() {
                h.remove("content-type");
            }
            if let Some(e) = event.as_object_mut() {
                e.remove("body");
            }
        }
    }
    let event = Bytes::from(serde_json::to_vec(&event)?);
    let reply = api.invoke(event, Duration::from_secs(60)).await?;
    let out = match reply {
        Reply::Response(b) => b,
        Reply::Error(b) => bail!(
            "{method} {path}: {} reported an error: {}",
            api.name,
            String::from_utf8_lossy(&b)
        ),
    };
    let res: Value = serde_json::from_slice(&out).with_context(|| {
        format!(
            "{method} {path}: the response is not JSON: {}",
            String::from_utf8_lossy(&out)
        )
    })?;
    if res["isBase64Encoded"].as_bool() == Some(true) {
        bail!("{method} {path}: unexpected base64 response body: {res}");
    }
    let got = res["statusCode"].as_u64();
    let text = res["body"].as_str().unwrap_or_default();
    if got != Some(status) {
        bail!("{method} {path}: HTTP {got:?} (expected {status}): {text}");
    }
    serde_json::from_str(text)
        .with_context(|| format!("{method} {path}: the body is not JSON: {text}"))
}
