//! The stored webhook subscription and the values it is made of.

use std::fmt;

use base64::Engine;
use rand::RngCore;
use serde::{Deserialize, Serialize, Serializer};

use crate::filter::Filter;
use crate::format::Format;
use crate::headers::CustomHeaders;
use crate::{BucketId, EventType, OwnerId, Timestamp, WebhookId};

/// A webhook's signing secret. `Debug` and `Display` never show it; it is serialized only by the
/// storage adapters (which must keep it) and once in the create response.
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Prefix of generated secrets, as Standard Webhooks / Svix write them: `whsec_<base64 key>`.
    pub const GENERATED_PREFIX: &'static str = "whsec_";

    pub fn new(s: String) -> Self {
        Self(s)
    }

    /// 32 random bytes from the thread-local CSPRNG (ChaCha, seeded from the OS), `whsec_`-prefixed base64: the string goes into a
    /// Standard Webhooks library as it is, and into the guide's HMAC snippets as UTF-8.
    pub fn generate() -> Self {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        Self(format!(
            "{}{}",
            Self::GENERATED_PREFIX,
            base64::engine::general_purpose::STANDARD.encode(key)
        ))
    }

    /// The secret itself. Call sites are few on purpose: signing, storage, the create response.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The last four characters, so a user can tell secrets apart without seeing them.
    pub fn hint(&self) -> String {
        let n = self.0.chars().count();
        let tail: String = self.0.chars().skip(n.saturating_sub(4)).collect();
        format!("…{tail}")
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Serializes a float the way JavaScript does for integral values (`2`, not `2.0`), so the API's
/// JSON matches the guide's examples.
pub(crate) fn js_number<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    if v.fract() == 0.0 && v.abs() < 9_007_199_254_740_992.0 {
        s.serialize_i64(*v as i64)
    } else {
        s.serialize_f64(*v)
    }
}

/// How a failed delivery is retried (DESIGN.md §4): `maxRetries` retries after the first attempt,
/// retry `n` waiting `initialDelaySeconds × backoffMultiplier^(n-1)`, each wait capped at 12 h.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetryConfig {
    /// Retries after the first attempt, 0–20.
    #[schema(minimum = 0, maximum = 20, example = 3)]
    pub max_retries: u32,
    /// Factor between successive waits, 1–10.
    #[serde(serialize_with = "js_number")]
    #[schema(minimum = 1, maximum = 10, example = 2)]
    pub backoff_multiplier: f64,
    /// Wait before the first retry, 1–3600 s.
    #[schema(minimum = 1, maximum = 3600, example = 1)]
    pub initial_delay_seconds: u32,
}

impl RetryConfig {
    pub const MAX_RETRIES: u32 = 20;
    pub const MAX_BACKOFF: f64 = 10.0;
    pub const MAX_INITIAL_DELAY: u32 = 3600;
    /// SQS's longest visibility timeout: no single wait is longer.
    pub const MAX_DELAY_SECONDS: u64 = 12 * 60 * 60;
}

impl Default for RetryConfig {
    /// The guide's numbers: 3 retries, 1 s, 2 s, 4 s.
    fn default() -> Self {
        Self {
            max_retries: 3,
            backoff_multiplier: 2.0,
            initial_delay_seconds: 1,
        }
    }
}

/// The final outcome of a delivery, as `lastDeliveryStatus` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    Success,
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Success => "success",
            DeliveryStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "success" => Some(Self::Success),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }
}

/// Delivery counters. Invariant kept by every store: `total = successful + failed`, each final
/// outcome counted exactly once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryStats {
    pub total_deliveries: u64,
    pub successful_deliveries: u64,
    pub failed_deliveries: u64,
}

/// The secret a rotation replaced, still signing deliveries until `expires_at` so receivers can
/// switch over without a gap.
#[derive(Debug, Clone, PartialEq)]
pub struct PreviousSecret {
    pub secret: Secret,
    pub expires_at: Timestamp,
}

/// A webhook subscription as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Webhook {
    pub id: WebhookId,
    pub owner_id: OwnerId,
    pub bucket_id: BucketId,
    pub url: String,
    /// Sorted, no duplicates.
    pub events: Vec<EventType>,
    pub description: Option<String>,
    pub active: bool,
    pub retry_config: RetryConfig,
    pub secret: Secret,
    /// Set by a rotation, for its grace period.
    pub previous_secret: Option<PreviousSecret>,
    /// What the request body looks like (`json`, `slack`, `discord`).
    pub format: Format,
    /// Which events of its types it wants ([`crate::filter`]); `None`: all of them.
    pub filter: Option<Filter>,
    /// Static headers sent with every attempt; values are write-only, like the secret.
    pub headers: CustomHeaders,
    /// At most this many deliveries per second ([`crate::flow::RateLimiter`]); `None`: no limit.
    pub rate_limit: Option<u32>,
    pub stats: DeliveryStats,
    pub last_delivery_at: Option<Timestamp>,
    pub last_delivery_status: Option<DeliveryStatus>,
    /// When the current run of failed deliveries began (`None` after a success). Kept by the
    /// delivery log's `finish`, atomically with the stats.
    pub failing_since: Option<Timestamp>,
    /// Why the service disabled the webhook (410 Gone, failing too long); cleared on re-enable.
    pub disabled_reason: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[cfg(any(test, feature = "conformance"))]
impl Webhook {
    /// A plain webhook for tests: `alert.triggered` to `https://example.com/hook`, default
    /// retries, the guide's secret, no optional field set, created at `at` (its id and bucket
    /// generated from `at`).
    pub fn for_tests(owner: OwnerId, at: Timestamp) -> Webhook {
        Webhook {
            id: WebhookId::generate(at.unix()),
            owner_id: owner,
            bucket_id: BucketId::generate(at.unix()),
            url: "https://example.com/hook".into(),
            events: vec![EventType::AlertTriggered],
            description: None,
            active: true,
            retry_config: RetryConfig::default(),
            secret: Secret::new("your_webhook_secret".into()),
            previous_secret: None,
            format: Format::Json,
            filter: None,
            headers: Default::default(),
            rate_limit: None,
            stats: DeliveryStats::default(),
            last_delivery_at: None,
            last_delivery_status: None,
            failing_since: None,
            disabled_reason: None,
            created_at: at,
            updated_at: at,
        }
    }
}

impl Webhook {
    pub fn subscribes_to(&self, event: EventType) -> bool {
        self.events.contains(&event)
    }

    /// Whether an event, as its envelope, passes the webhook's filter (always, without one).
    pub fn wants(&self, envelope: &serde_json::Value) -> bool {
        self.filter.as_ref().is_none_or(|f| f.matches(envelope))
    }

    /// What a publish's fan-out needs of this webhook (see [`Subscriber`]).
    pub fn subscriber(&self) -> Subscriber {
        Subscriber {
            id: self.id.clone(),
            format: self.format,
            filter: self.filter.clone(),
        }
    }

    /// The secrets deliveries are signed with at `now`: the current one, then the previous one
    /// while its grace period lasts.
    pub fn signing_secrets(&self, now: Timestamp) -> Vec<&Secret> {
        let mut v = vec![&self.secret];
        if let Some(p) = self.previous_secret.as_ref().filter(|p| p.expires_at > now) {
            v.push(&p.secret);
        }
        v
    }
}

/// A webhook as a publish's fan-out sees it: which webhook, the body's format and its filter —
/// nothing more, so a store may answer the fan-out from an index that holds only these (on
/// DynamoDB the url, secrets and header values are not copied into the fan-out index; the
/// delivery side reads them from the webhook when it sends).
#[derive(Debug, Clone, PartialEq)]
pub struct Subscriber {
    pub id: WebhookId,
    pub format: Format,
    pub filter: Option<Filter>,
}

impl Subscriber {
    /// Whether an event, as its envelope, passes the filter (always, without one).
    pub fn wants(&self, envelope: &serde_json::Value) -> bool {
        self.filter.as_ref().is_none_or(|f| f.matches(envelope))
    }
}

/// A validated change to a webhook: `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WebhookPatch {
    pub url: Option<String>,
    pub events: Option<Vec<EventType>>,
    /// `Some(None)` clears the description.
    pub description: Option<Option<String>>,
    pub active: Option<bool>,
    pub max_retries: Option<u32>,
    pub backoff_multiplier: Option<f64>,
    pub initial_delay_seconds: Option<u32>,
    pub secret: Option<Secret>,
    /// `Some(None)` forgets a rotated-out secret.
    pub previous_secret: Option<Option<PreviousSecret>>,
    pub format: Option<Format>,
    /// `Some(None)` removes the filter.
    pub filter: Option<Option<Filter>>,
    /// The complete new set of custom headers (the service merges a request's changes into
    /// the current set).
    pub headers: Option<CustomHeaders>,
    /// `Some(None)` clears the reason (re-enabling does this).
    pub disabled_reason: Option<Option<String>>,
    /// `Some(None)` removes the rate limit.
    pub rate_limit: Option<Option<u32>>,
}

impl WebhookPatch {
    /// Applies the patch in memory (the embedded store and the in-process fake use this; the
    /// DynamoDB store turns the same patch into one `UpdateItem`).
    pub fn apply(&self, w: &mut Webhook, now: Timestamp) {
        if let Some(url) = &self.url {
            w.url.clone_from(url);
        }
        if let Some(events) = &self.events {
            w.events.clone_from(events);
        }
        if let Some(d) = &self.description {
            w.description.clone_from(d);
        }
        if let Some(a) = self.active {
            w.active = a;
        }
        if let Some(v) = self.max_retries {
            w.retry_config.max_retries = v;
        }
        if let Some(v) = self.backoff_multiplier {
            w.retry_config.backoff_multiplier = v;
        }
        if let Some(v) = self.initial_delay_seconds {
            w.retry_config.initial_delay_seconds = v;
        }
        if let Some(s) = &self.secret {
            w.secret = s.clone();
        }
        if let Some(p) = &self.previous_secret {
            w.previous_secret.clone_from(p);
        }
        if let Some(f) = self.format {
            w.format = f;
        }
        if let Some(f) = &self.filter {
            w.filter.clone_from(f);
        }
        if let Some(h) = &self.headers {
            w.headers.clone_from(h);
        }
        if let Some(r) = &self.disabled_reason {
            w.disabled_reason.clone_from(r);
        }
        if let Some(r) = self.rate_limit {
            w.rate_limit = r;
        }
        w.updated_at = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_show_in_debug_and_generated_ones_are_whsec_base64_of_32_bytes() {
        let s = Secret::generate();
        assert!(!format!("{s:?}").contains(s.expose()));
        let b64 = s.expose().strip_prefix("whsec_").unwrap();
        let key = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        assert_eq!(key.len(), 32);
        assert_ne!(Secret::generate(), s);
        assert_eq!(Secret::new("your_webhook_secret".into()).hint(), "…cret");
    }

    #[test]
    fn retry_config_defaults_to_the_guide_and_serializes_like_javascript() {
        let json = serde_json::to_string(&RetryConfig::default()).unwrap();
        assert_eq!(
            json,
            r#"{"maxRetries":3,"backoffMultiplier":2,"initialDelaySeconds":1}"#
        );
        let half = RetryConfig {
            backoff_multiplier: 1.5,
            ..RetryConfig::default()
        };
        assert!(
            serde_json::to_string(&half)
                .unwrap()
                .contains("\"backoffMultiplier\":1.5")
        );
    }
}
