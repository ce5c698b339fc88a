//! Deliveries (DESIGN.md §4): what goes on the queue, what is recorded per attempt, the request
//! a receiver gets, and the retry schedule.
//!
//! A delivery is one (event, webhook) pair with its own `deliveryId`. Its body is rendered once,
//! at publish time, in JavaScript's JSON form ([`crate::jsjson`]), and sent unchanged on every
//! attempt. The queue message carries the body but never the secret: the worker reads url,
//! secret, retry policy and `active` from the store at send time, so edits apply to retries.

use std::borrow::Cow;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::signing;
use crate::webhook::{RetryConfig, Secret, Webhook};
use crate::{BucketId, DeliveryId, EventType, Timestamp, WebhookId};

/// Largest queue message (SQS's limit). A publish whose message would be larger is refused
/// with 413 before anything is enqueued.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;
/// How much of a receiver's response body the history keeps.
pub const MAX_RESPONSE_EXCERPT: usize = 1024;
/// How long attempts are kept (DynamoDB TTL; the embedded store prunes).
pub const ATTEMPT_RETENTION_SECS: i64 = 30 * 24 * 3600;
/// Sent as `User-Agent`.
pub const USER_AGENT: &str = concat!("dakkio-webhooks/", env!("CARGO_PKG_VERSION"));

/// A queue message. Versioned and tagged so the format can evolve while old messages drain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum QueueTask {
    #[serde(rename = "delivery.v1")]
    DeliveryV1(DeliveryTask),
}

impl QueueTask {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| unreachable!("a task always serializes"))
    }

    pub fn from_json(s: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(s)
    }

    pub fn delivery(&self) -> &DeliveryTask {
        match self {
            QueueTask::DeliveryV1(d) => d,
        }
    }
}

/// One delivery: everything needed to send it except what the store holds (url, secret, policy).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryTask {
    pub delivery_id: DeliveryId,
    pub webhook_id: WebhookId,
    pub event: EventType,
    /// 0 for the original; +1 for each redelivery of a dead letter (attempts restart at 1).
    #[serde(default)]
    pub generation: u32,
    /// Attempts of this generation already made when this message was queued: 0 for a message
    /// queued by a publish, a test send or a redelivery; set when a delivery moves to another
    /// queue as a new message (its receive count starts again at 1). See
    /// [`crate::flow::is_first_receipt`]. Omitted from the message when 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub attempts_made: u32,
    /// The exact request body, already in JavaScript's JSON form.
    pub body: String,
    pub created_at: Timestamp,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl DeliveryTask {
    /// Size of this task as a queue message.
    pub fn message_len(&self) -> usize {
        QueueTask::DeliveryV1(self.clone()).to_json().len()
    }
}

/// The envelope of DESIGN.md §2, in its key order, as the body's JSON value.
pub fn envelope(
    event: EventType,
    timestamp: Timestamp,
    webhook: &WebhookId,
    bucket: &BucketId,
    delivery: &DeliveryId,
    data: Value,
) -> Value {
    let mut m = serde_json::Map::new();
    m.insert("event".into(), Value::String(event.as_str().into()));
    m.insert("timestamp".into(), Value::String(timestamp.to_rfc3339()));
    m.insert("webhookId".into(), Value::String(webhook.to_string()));
    m.insert("bucketId".into(), Value::String(bucket.to_string()));
    m.insert("deliveryId".into(), Value::String(delivery.to_string()));
    m.insert("data".into(), data);
    Value::Object(m)
}

/// The headers of one attempt (DESIGN.md §4), both signatures included. `secrets` are the
/// webhook's signing secrets, current first ([`crate::webhook::Webhook::signing_secrets`]):
/// during a rotation's grace period the previous secret also signs — Standard Webhooks carries
/// both `v1,` signatures in `webhook-signature` (its libraries accept any), and the guide's
/// scheme adds `X-Webhook-Signature-Previous`, since `X-Webhook-Signature` holds exactly one.
pub fn request_headers(
    task: &DeliveryTask,
    secrets: &[&Secret],
    attempt: u32,
    now: Timestamp,
) -> Vec<(&'static str, String)> {
    let id = task.delivery_id.to_string();
    let ts = now.unix();
    let body = task.body.as_bytes();
    let mut headers = vec![
        ("content-type", "application/json".to_owned()),
        ("user-agent", USER_AGENT.to_owned()),
        ("x-webhook-event", task.event.as_str().to_owned()),
        ("x-webhook-id", id.clone()),
        ("x-webhook-timestamp", ts.to_string()),
        ("x-webhook-attempt", attempt.to_string()),
        ("webhook-id", id.clone()),
        ("webhook-timestamp", ts.to_string()),
    ];
    if let Some(current) = secrets.first() {
        headers.push((
            "x-webhook-signature",
            signing::guide_signature(current, body),
        ));
    }
    if let Some(previous) = secrets.get(1) {
        headers.push((
            "x-webhook-signature-previous",
            signing::guide_signature(previous, body),
        ));
    }
    let standard: Vec<String> = secrets
        .iter()
        .map(|s| signing::standard_webhooks_signature(s, &id, ts, body))
        .collect();
    headers.push(("webhook-signature", standard.join(" ")));
    headers
}

/// Every header of one attempt to `webhook`: [`request_headers`] (signed with its current
/// secrets) and its custom headers, read from the store at send time like the secret — never
/// from the queue message.
pub fn webhook_request_headers(
    task: &DeliveryTask,
    webhook: &Webhook,
    attempt: u32,
    now: Timestamp,
) -> Vec<(Cow<'static, str>, String)> {
    let custom = webhook
        .headers
        .expose()
        .map(|(n, v)| (Cow::Owned(n.to_owned()), v.to_owned()));
    request_headers(task, &webhook.signing_secrets(now), attempt, now)
        .into_iter()
        .map(|(n, v)| (Cow::Borrowed(n), v))
        .chain(custom)
        .collect()
}

impl RetryConfig {
    /// Attempts in all: the first plus `maxRetries`.
    pub fn max_attempts(&self) -> u32 {
        self.max_retries + 1
    }

    /// The wait before retry `n` (n ≥ 1): `initialDelaySeconds × backoffMultiplier^(n-1)`,
    /// rounded up to whole seconds (SQS's unit), capped at 12 h. No jitter: the guide promises
    /// 1 s, 2 s, 4 s.
    pub fn delay_before_retry(&self, n: u32) -> Duration {
        let exp = n.saturating_sub(1).min(64) as i32;
        let secs = f64::from(self.initial_delay_seconds) * self.backoff_multiplier.powi(exp);
        let capped = secs
            .ceil()
            .clamp(1.0, RetryConfig::MAX_DELAY_SECONDS as f64);
        Duration::from_secs(capped as u64)
    }
}

/// `Retry-After` as seconds: delta-seconds or an HTTP date (RFC 9110 §10.2.3).
pub fn parse_retry_after(value: &str, now: Timestamp) -> Option<u64> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(secs);
    }
    let date = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    Some(u64::try_from(date.timestamp() - now.unix()).unwrap_or(0))
}

/// The result of one attempt, as recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AttemptStatus {
    Success,
    Failed,
}

/// One recorded attempt (kept 30 days).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttemptRecord {
    pub webhook_id: WebhookId,
    pub delivery_id: DeliveryId,
    pub generation: u32,
    /// 1 for the first attempt.
    pub attempt: u32,
    pub event: EventType,
    pub status: AttemptStatus,
    /// The receiver's status code, when it answered.
    pub status_code: Option<u16>,
    pub duration_ms: u64,
    /// Why the attempt failed (timeout, refused connection, status, …).
    pub error: Option<String>,
    /// The start of the receiver's response body (at most 1 KiB).
    pub response_body: Option<String>,
    pub at: Timestamp,
}

/// A delivery that exhausted its retries (or was given up): its body is kept so it can be
/// redelivered (`POST /api/webhooks/{id}/deliveries/{deliveryId}/redeliver`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    pub task: DeliveryTask,
    pub error: String,
    pub attempts: u32,
    pub at: Timestamp,
}

/// Truncates a response body to [`MAX_RESPONSE_EXCERPT`] bytes on a character boundary.
pub fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(MAX_RESPONSE_EXCERPT + 4)]);
    let mut end = text.len().min(MAX_RESPONSE_EXCERPT);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_schedule_is_the_guides_1_2_4_seconds() {
        let c = RetryConfig::default();
        let d: Vec<u64> = (1..=3).map(|n| c.delay_before_retry(n).as_secs()).collect();
        assert_eq!(d, vec![1, 2, 4]);
        assert_eq!(c.max_attempts(), 4);
    }

    #[test]
    fn delays_round_up_and_cap_at_twelve_hours() {
        let c = RetryConfig {
            max_retries: 20,
            backoff_multiplier: 1.5,
            initial_delay_seconds: 1,
        };
        assert_eq!(c.delay_before_retry(2).as_secs(), 2); // 1.5 → 2
        let big = RetryConfig {
            max_retries: 20,
            backoff_multiplier: 10.0,
            initial_delay_seconds: 3600,
        };
        assert_eq!(big.delay_before_retry(20).as_secs(), 12 * 3600);
        assert_eq!(big.delay_before_retry(1).as_secs(), 3600);
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = Timestamp::parse("2015-10-21T07:28:00Z").unwrap();
        assert_eq!(parse_retry_after("120", now), Some(120));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:30:00 GMT", now),
            Some(120)
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(0)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn tasks_round_trip_through_the_versioned_message_without_any_secret() {
        let task = DeliveryTask {
            delivery_id: DeliveryId::generate(1),
            webhook_id: WebhookId::generate(1),
            event: EventType::AlertTriggered,
            generation: 0,
            attempts_made: 0,
            body: r#"{"event":"alert.triggered"}"#.into(),
            created_at: Timestamp::from_unix(1),
        };
        let json = QueueTask::DeliveryV1(task.clone()).to_json();
        assert!(json.starts_with(r#"{"type":"delivery.v1","#), "{json}");
        assert_eq!(QueueTask::from_json(&json).unwrap().delivery(), &task);
        assert!(!json.to_lowercase().contains("secret"));
    }

    #[test]
    fn excerpts_are_cut_on_character_boundaries() {
        let body = "é".repeat(1000);
        let e = excerpt(body.as_bytes());
        assert!(e.len() <= MAX_RESPONSE_EXCERPT && e.chars().all(|c| c == 'é'));
        assert_eq!(excerpt(b"short"), "short");
    }
}
