//! Request bodies as users send them (camelCase JSON, unknown fields refused) and their
//! validation into domain values. A body that fails here never reaches a store.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use base64::Engine;
use serde::{Deserialize, Deserializer};
use url::{Host, Url};

use crate::filter::Filter;
use crate::format::Format;
use crate::headers::{CustomHeaders, HeadersChange};
use crate::webhook::{RetryConfig, Secret, WebhookPatch};
use crate::{BucketId, EventType};

/// A value the user sent that cannot be used: the API answers it as a 400 with `code`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ValidationError {
    pub code: &'static str,
    pub message: String,
}

impl ValidationError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

pub const MAX_URL_LEN: usize = 2048;
pub const MAX_DESCRIPTION_CHARS: usize = 1000;
pub const MIN_SECRET_CHARS: usize = 8;
pub const MAX_SECRET_CHARS: usize = 512;

/// Which webhook targets a deployment accepts. Production refuses both; the local mode allows
/// both (receivers run on the developer's machine).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UrlPolicy {
    /// Accept `http://` as well as `https://`.
    pub allow_http: bool,
    /// Accept loopback, private, link-local and other non-public hosts.
    pub allow_private: bool,
}

impl UrlPolicy {
    pub const PRODUCTION: UrlPolicy = UrlPolicy {
        allow_http: false,
        allow_private: false,
    };
    pub const LOCAL: UrlPolicy = UrlPolicy {
        allow_http: true,
        allow_private: true,
    };
}

/// `POST /api/webhooks` body.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateWebhook {
    /// The bucket whose events this webhook receives (an ObjectId the caller may use).
    #[schema(example = "507f1f77bcf86cd799439011", pattern = "^[0-9a-f]{24}$")]
    pub bucket_id: String,
    /// Absolute `https://` URL the events are POSTed to.
    #[schema(example = "https://your-server.com/webhook")]
    pub url: String,
    /// Events to receive: `alert.triggered`, `data.received`, `bucket.updated`.
    #[schema(example = json!(["alert.triggered", "data.received"]))]
    pub events: Vec<String>,
    /// Signing secret (8–512 characters). Generated as `whsec_…` when omitted. Returned once.
    pub secret: Option<String>,
    pub description: Option<String>,
    /// Defaults to `true`.
    pub active: Option<bool>,
    pub retry_config: Option<RetryConfigInput>,
    /// `json` (default: the guide's envelope), `slack` or `discord` (the platform's message, so
    /// the url can be a Slack or Discord incoming webhook).
    #[schema(value_type = Option<Format>, example = "json")]
    pub format: Option<String>,
    /// Only events whose envelope matches this filter are delivered (see `Filter`); omitted or
    /// `null`: every event of the subscribed types.
    #[schema(value_type = Option<crate::filter::FilterSchema>)]
    pub filter: Option<serde_json::Value>,
    /// Static headers sent with every attempt and test send, `{"X-Api-Key": "…"}`: at most 10;
    /// RFC 9110 token names, not `Host`, `Content-Length`, `Content-Type`, `User-Agent`,
    /// `X-Webhook-*`, `webhook-*` or hop-by-hop headers; printable ASCII values of at most
    /// 1 KiB. Write-only: responses show names and hints.
    #[schema(value_type = Option<HashMap<String, String>>, example = json!({"X-Api-Key": "sk_live_0123456789abcdef"}))]
    pub headers: Option<serde_json::Map<String, serde_json::Value>>,
    /// At most this many deliveries per second, 1–10000; omitted or `null`: no limit.
    /// Deliveries over it wait (no attempt used).
    #[schema(minimum = 1, maximum = 10000, example = 50)]
    pub rate_limit: Option<i64>,
}

/// `retryConfig` as sent; omitted fields take the defaults (create) or stay as they are (update).
#[derive(Debug, Clone, Copy, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetryConfigInput {
    #[schema(minimum = 0, maximum = 20)]
    pub max_retries: Option<i64>,
    #[schema(minimum = 1, maximum = 10)]
    pub backoff_multiplier: Option<f64>,
    #[schema(minimum = 1, maximum = 3600)]
    pub initial_delay_seconds: Option<i64>,
}

/// `PATCH /api/webhooks/{id}` body: every field optional; `description: null` clears it.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateWebhook {
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
    pub active: Option<bool>,
    pub retry_config: Option<RetryConfigInput>,
    /// A new signing secret (not returned); replaces the old one at once — use
    /// `POST /api/webhooks/{id}/rotate-secret` for a grace period.
    pub secret: Option<String>,
    /// `json`, `slack` or `discord`.
    #[schema(value_type = Option<Format>)]
    pub format: Option<String>,
    /// A new filter (replaces the old one); `null` removes it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<crate::filter::FilterSchema>)]
    pub filter: Option<Option<serde_json::Value>>,
    /// Header changes: a string sets that header, `null` removes it, headers not named stay;
    /// `"headers": null` removes them all.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<HashMap<String, Option<String>>>)]
    pub headers: Option<Option<serde_json::Map<String, serde_json::Value>>>,
    /// A new rate limit (deliveries per second, 1–10000); `null` removes it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u32>, minimum = 1, maximum = 10000)]
    pub rate_limit: Option<Option<i64>>,
}

/// Distinguishes an absent field (`None`, via `default`) from an explicit `null` (`Some(None)`).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// A validated `POST /api/webhooks` body.
#[derive(Debug, Clone, PartialEq)]
pub struct NewWebhook {
    pub bucket_id: BucketId,
    pub url: String,
    pub events: Vec<EventType>,
    pub secret: Option<Secret>,
    pub description: Option<String>,
    pub active: bool,
    pub retry_config: RetryConfig,
    pub format: Format,
    pub filter: Option<Filter>,
    pub headers: CustomHeaders,
    pub rate_limit: Option<u32>,
}

fn validate_rate_limit(v: i64) -> Result<u32, ValidationError> {
    crate::flow::rate_limit_from(v).map_err(|e| ValidationError::new("invalid_rate_limit", e.0))
}

fn validate_format(f: &str) -> Result<Format, ValidationError> {
    f.parse()
        .map_err(|m: String| ValidationError::new("invalid_format", m))
}

impl CreateWebhook {
    pub fn validate(self, policy: UrlPolicy) -> Result<NewWebhook, ValidationError> {
        let bucket_id = BucketId::parse(&self.bucket_id)
            .map_err(|e| ValidationError::new("invalid_bucket_id", format!("bucketId {e}")))?;
        let url = validate_url(&self.url, policy)?;
        let events = validate_events(&self.events)?;
        let secret = self.secret.map(validate_secret).transpose()?;
        let description = self.description.map(validate_description).transpose()?;
        let retry_config = self
            .retry_config
            .unwrap_or_default()
            .validate(RetryConfig::default())?;
        Ok(NewWebhook {
            bucket_id,
            url,
            events,
            secret,
            description,
            active: self.active.unwrap_or(true),
            retry_config,
            format: self
                .format
                .as_deref()
                .map(validate_format)
                .transpose()?
                .unwrap_or_default(),
            filter: self.filter.map(Filter::parse).transpose()?,
            headers: self
                .headers
                .map(crate::headers::from_request)
                .transpose()?
                .unwrap_or_default(),
            rate_limit: self.rate_limit.map(validate_rate_limit).transpose()?,
        })
    }
}

impl UpdateWebhook {
    /// Takes the `headers` change out of the body, checked (`None`: headers not mentioned).
    pub fn headers_change(&mut self) -> Result<Option<HeadersChange>, ValidationError> {
        self.headers.take().map(HeadersChange::parse).transpose()
    }

    pub fn validate(self, policy: UrlPolicy) -> Result<WebhookPatch, ValidationError> {
        let retry = self.retry_config.unwrap_or_default();
        let (max_retries, backoff_multiplier, initial_delay_seconds) = retry.checked()?;
        Ok(WebhookPatch {
            url: self.url.map(|u| validate_url(&u, policy)).transpose()?,
            events: self.events.map(|e| validate_events(&e)).transpose()?,
            description: self
                .description
                .map(|d| d.map(validate_description).transpose())
                .transpose()?,
            active: self.active,
            max_retries,
            backoff_multiplier,
            initial_delay_seconds,
            secret: self.secret.map(validate_secret).transpose()?,
            previous_secret: None,
            format: self.format.as_deref().map(validate_format).transpose()?,
            filter: self
                .filter
                .map(|f| f.map(Filter::parse).transpose())
                .transpose()?,
            // Set by the service, which merges [`UpdateWebhook::headers_change`] into the
            // current headers.
            headers: None,
            // Re-enabling clears why the service disabled it.
            disabled_reason: (self.active == Some(true)).then_some(None),
            rate_limit: self
                .rate_limit
                .map(|r| r.map(validate_rate_limit).transpose())
                .transpose()?,
        })
    }
}

/// `maxRetries`, `backoffMultiplier`, `initialDelaySeconds`, each when present.
type RetryFields = (Option<u32>, Option<f64>, Option<u32>);

impl RetryConfigInput {
    /// Range-checks the fields that are present.
    fn checked(self) -> Result<RetryFields, ValidationError> {
        let bad = |m: String| ValidationError::new("invalid_retry_config", m);
        let max_retries = self
            .max_retries
            .map(|v| {
                u32::try_from(v)
                    .ok()
                    .filter(|v| *v <= RetryConfig::MAX_RETRIES)
                    .ok_or_else(|| bad(format!("retryConfig.maxRetries must be 0 to 20, got {v}")))
            })
            .transpose()?;
        let backoff = self
            .backoff_multiplier
            .map(|v| {
                if v.is_finite() && (1.0..=RetryConfig::MAX_BACKOFF).contains(&v) {
                    Ok(v)
                } else {
                    Err(bad(format!(
                        "retryConfig.backoffMultiplier must be 1 to 10, got {v}"
                    )))
                }
            })
            .transpose()?;
        let initial = self
            .initial_delay_seconds
            .map(|v| {
                u32::try_from(v)
                    .ok()
                    .filter(|v| (1..=RetryConfig::MAX_INITIAL_DELAY).contains(v))
                    .ok_or_else(|| {
                        bad(format!(
                            "retryConfig.initialDelaySeconds must be 1 to 3600, got {v}"
                        ))
                    })
            })
            .transpose()?;
        Ok((max_retries, backoff, initial))
    }

    /// The full config: present fields checked, absent ones from `base`.
    pub fn validate(self, base: RetryConfig) -> Result<RetryConfig, ValidationError> {
        let (m, b, i) = self.checked()?;
        Ok(RetryConfig {
            max_retries: m.unwrap_or(base.max_retries),
            backoff_multiplier: b.unwrap_or(base.backoff_multiplier),
            initial_delay_seconds: i.unwrap_or(base.initial_delay_seconds),
        })
    }
}

/// Checks a webhook URL and returns its normalized form (`url` crate / WHATWG: lowercased host,
/// IPv4 literals in any notation — decimal, octal, hex — rewritten to dotted decimal).
pub fn validate_url(raw: &str, policy: UrlPolicy) -> Result<String, ValidationError> {
    let bad = |m: &str| ValidationError::new("invalid_url", m);
    if raw.len() > MAX_URL_LEN {
        return Err(bad("url must be at most 2048 characters"));
    }
    let url = Url::parse(raw).map_err(|e| {
        ValidationError::new(
            "invalid_url",
            format!("url must be an absolute https:// URL ({e})"),
        )
    })?;
    match url.scheme() {
        "https" => {}
        "http" if policy.allow_http => {}
        "http" => {
            return Err(bad(
                "url must use https:// (plain http:// is not allowed here)",
            ));
        }
        _ => return Err(bad("url must be an absolute https:// URL")),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("url must not contain credentials (user:password@)"));
    }
    let private = match url.host() {
        None => return Err(bad("url must have a host")),
        Some(Host::Ipv4(ip)) => !is_public_ip(IpAddr::V4(ip)),
        Some(Host::Ipv6(ip)) => !is_public_ip(IpAddr::V6(ip)),
        Some(Host::Domain(d)) => is_private_name(d),
    };
    if private && !policy.allow_private {
        return Err(bad(
            "url must point to a public host (loopback, private and link-local targets are not allowed)",
        ));
    }
    Ok(url.into())
}

/// Names that resolve to the local machine or a private network by convention. Names that
/// resolve to private addresses through DNS are caught at connect time by the sender.
fn is_private_name(d: &str) -> bool {
    let d = d.trim_end_matches('.');
    d == "localhost"
        || [".localhost", ".local", ".internal", ".lan", ".home.arpa"]
            .iter()
            .any(|s| d.ends_with(s))
        || !d.contains('.')
}

/// Whether `ip` is a public unicast address a webhook may reach in production.
pub fn is_public_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_multicast()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared / CGNAT 100.64.0.0/10
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments 192.0.0.0/24
        || (a == 198 && (b == 18 || b == 19)) // benchmarking 198.18.0.0/15
        || a >= 240) // reserved 240.0.0.0/4
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let s = ip.segments();
    // NAT64 64:ff9b::/96 and IPv4-compatible ::/96 embed an IPv4 address in the last 32 bits.
    if (s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0; 4]) || s[..6] == [0; 6] {
        let [a, b] = s[6].to_be_bytes();
        let [c, d] = s[7].to_be_bytes();
        if ip.is_unspecified() || ip.is_loopback() {
            return false;
        }
        return is_public_v4(Ipv4Addr::new(a, b, c, d));
    }
    if s[0] == 0x2002 {
        // 6to4 2002::/16 embeds an IPv4 address in bits 16..48.
        let [a, b] = s[1].to_be_bytes();
        let [c, d] = s[2].to_be_bytes();
        return is_public_v4(Ipv4Addr::new(a, b, c, d));
    }
    !(ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
        || (s[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
        || (s[0] & 0xffc0) == 0xfec0 // site-local fec0::/10 (deprecated)
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation 2001:db8::/32
        || (s[0] == 0x2001 && s[1] == 0x0000) // Teredo 2001::/32 (tunnels to any IPv4, RFC 4380)
        || (s[0] == 0x0064 && s[1] == 0xff9b && s[2] == 0x0001) // local-use NAT64 64:ff9b:1::/48 (RFC 8215)
        || (s[0] == 0x0100 && s[1..4] == [0; 3])) // discard-only 100::/64
}

/// Non-empty, known subscribable names, no duplicates; returned sorted.
pub fn validate_events(names: &[String]) -> Result<Vec<EventType>, ValidationError> {
    let bad = |m: String| ValidationError::new("invalid_events", m);
    if names.is_empty() {
        return Err(bad("events must list at least one event".into()));
    }
    let known = EventType::SUBSCRIBABLE.map(EventType::as_str).join(", ");
    let mut seen = BTreeSet::new();
    for name in names {
        let e: EventType = name
            .parse()
            .ok()
            .filter(|e| EventType::SUBSCRIBABLE.contains(e))
            .ok_or_else(|| bad(format!("unknown event {name:?}; known events: {known}")))?;
        if !seen.insert(e) {
            return Err(bad(format!("event {name:?} is listed twice")));
        }
    }
    Ok(seen.into_iter().collect())
}

fn validate_description(d: String) -> Result<String, ValidationError> {
    if d.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(ValidationError::new(
            "invalid_description",
            "description must be at most 1000 characters",
        ));
    }
    Ok(d)
}

/// A user-chosen secret: 8–512 characters, no control characters. One in the generated form
/// (`whsec_…`) must carry a base64 key, since Standard Webhooks signatures use the decoded bytes.
pub fn validate_secret(s: String) -> Result<Secret, ValidationError> {
    let bad = |m: &str| ValidationError::new("invalid_secret", m);
    let n = s.chars().count();
    if !(MIN_SECRET_CHARS..=MAX_SECRET_CHARS).contains(&n) {
        return Err(bad("secret must be 8 to 512 characters"));
    }
    if s.chars().any(char::is_control) || s.trim() != s {
        return Err(bad(
            "secret must not contain control characters or surrounding spaces",
        ));
    }
    // A stored secret with this prefix is a sealed one (crate::sealing): a plaintext secret
    // that looked like one would not read back.
    if s.starts_with(crate::sealing::RESERVED_SECRET_PREFIX) {
        return Err(bad("secret must not start with \"sealed:\""));
    }
    if let Some(key) = s.strip_prefix(Secret::GENERATED_PREFIX) {
        let ok = base64::engine::general_purpose::STANDARD
            .decode(key)
            .is_ok_and(|k| (16..=64).contains(&k.len()));
        if !ok {
            return Err(bad(
                "a secret starting with whsec_ must continue with base64 of a 16 to 64 byte key",
            ));
        }
    }
    Ok(Secret::new(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `minimum`/`maximum` of property `name` of `T`'s OpenAPI schema.
    fn bounds<T: utoipa::PartialSchema>(name: &str) -> (f64, f64) {
        let schema = serde_json::to_value(T::schema()).unwrap();
        let p = &schema["properties"][name];
        let n = |k: &str| {
            p[k].as_f64()
                .unwrap_or_else(|| panic!("{name} has no {k}: {p}"))
        };
        (n("minimum"), n("maximum"))
    }

    /// The schema attributes are literals (utoipa takes no constants there): this holds them to
    /// the constants the validation uses, so the OpenAPI document cannot drift from the rules.
    #[test]
    fn the_openapi_bounds_are_the_validation_bounds() {
        use crate::flow::{MAX_RATE_LIMIT, MIN_RATE_LIMIT};
        let rate = (f64::from(MIN_RATE_LIMIT), f64::from(MAX_RATE_LIMIT));
        assert_eq!(bounds::<CreateWebhook>("rateLimit"), rate);
        assert_eq!(bounds::<UpdateWebhook>("rateLimit"), rate);
        for retry in [
            bounds::<RetryConfigInput>("maxRetries"),
            bounds::<RetryConfig>("maxRetries"),
        ] {
            assert_eq!(retry, (0.0, f64::from(RetryConfig::MAX_RETRIES)));
        }
        for backoff in [
            bounds::<RetryConfigInput>("backoffMultiplier"),
            bounds::<RetryConfig>("backoffMultiplier"),
        ] {
            assert_eq!(backoff, (1.0, RetryConfig::MAX_BACKOFF));
        }
        for delay in [
            bounds::<RetryConfigInput>("initialDelaySeconds"),
            bounds::<RetryConfig>("initialDelaySeconds"),
        ] {
            assert_eq!(delay, (1.0, f64::from(RetryConfig::MAX_INITIAL_DELAY)));
        }
    }

    fn url(u: &str) -> Result<String, ValidationError> {
        validate_url(u, UrlPolicy::PRODUCTION)
    }

    #[test]
    fn https_urls_are_accepted_and_normalized() {
        assert_eq!(
            url("https://your-server.com/webhook").unwrap(),
            "https://your-server.com/webhook"
        );
        assert_eq!(
            url("https://Hooks.Slack.com").unwrap(),
            "https://hooks.slack.com/"
        );
        assert_eq!(
            url("https://93.184.216.34:8443/x?y=1").unwrap(),
            "https://93.184.216.34:8443/x?y=1"
        );
    }

    #[test]
    fn non_https_relative_credentialed_and_private_urls_are_refused_in_production() {
        for bad in [
            "http://your-server.com/webhook",
            "ftp://your-server.com/",
            "/webhook",
            "your-server.com/webhook",
            "",
            "https://user:pw@your-server.com/",
            "https://public@10.0.0.1/",
            "https://localhost/x",
            "https://api.localhost/x",
            "https://intranet/x",
            "https://127.0.0.1/",
            "https://2130706433/",
            "https://0x7f.1/",
            "https://017700000001/",
            "https://10.1.2.3/",
            "https://172.16.0.1/",
            "https://192.168.1.1/",
            "https://169.254.169.254/latest/meta-data",
            "https://100.64.0.1/",
            "https://0.0.0.0/",
            "https://[::1]/",
            "https://[::ffff:127.0.0.1]/",
            "https://[fd00::1]/",
            "https://[fe80::1]/",
            "https://[64:ff9b::a00:1]/",
            "https://[2002:c0a8:0101::1]/",
            "https://[64:ff9b:1::a00:1]/",
            "https://[64:ff9b:1:ffff::8.8.8.8]/",
            "https://[2001::1]/",
            "https://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/",
        ] {
            let e = url(bad).expect_err(bad);
            assert_eq!(e.code, "invalid_url", "{bad}");
        }
        assert!(url(&format!("https://a.com/{}", "x".repeat(2100))).is_err());
    }

    #[test]
    fn local_policy_allows_http_and_loopback() {
        assert_eq!(
            validate_url("http://127.0.0.1:3000/webhook", UrlPolicy::LOCAL).unwrap(),
            "http://127.0.0.1:3000/webhook"
        );
        assert!(validate_url("http://localhost/x", UrlPolicy::LOCAL).is_ok());
        assert!(validate_url("ftp://localhost/x", UrlPolicy::LOCAL).is_err());
    }

    #[test]
    fn events_must_be_known_unique_and_non_empty() {
        let ok = validate_events(&["data.received".into(), "alert.triggered".into()]).unwrap();
        assert_eq!(ok, vec![EventType::AlertTriggered, EventType::DataReceived]);
        for bad in [
            vec![],
            vec!["alert.fired".to_string()],
            vec!["webhook.test".to_string()],
            vec!["data.received".to_string(), "data.received".to_string()],
        ] {
            assert_eq!(validate_events(&bad).unwrap_err().code, "invalid_events");
        }
    }

    #[test]
    fn retry_config_ranges_are_enforced_and_defaults_fill_gaps() {
        let ok = RetryConfigInput {
            max_retries: Some(20),
            backoff_multiplier: Some(1.5),
            initial_delay_seconds: None,
        };
        let c = ok.validate(RetryConfig::default()).unwrap();
        assert_eq!(
            (c.max_retries, c.backoff_multiplier, c.initial_delay_seconds),
            (20, 1.5, 1)
        );
        for bad in [
            RetryConfigInput {
                max_retries: Some(21),
                ..Default::default()
            },
            RetryConfigInput {
                max_retries: Some(-1),
                ..Default::default()
            },
            RetryConfigInput {
                backoff_multiplier: Some(0.5),
                ..Default::default()
            },
            RetryConfigInput {
                backoff_multiplier: Some(10.5),
                ..Default::default()
            },
            RetryConfigInput {
                initial_delay_seconds: Some(0),
                ..Default::default()
            },
            RetryConfigInput {
                initial_delay_seconds: Some(3601),
                ..Default::default()
            },
        ] {
            assert_eq!(
                bad.validate(RetryConfig::default()).unwrap_err().code,
                "invalid_retry_config"
            );
        }
    }

    #[test]
    fn secrets_are_checked() {
        assert!(validate_secret("your_webhook_secret".into()).is_ok());
        assert!(
            validate_secret("sealed:v1:k0:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into())
                .is_err()
        );
        assert!(validate_secret(Secret::generate().expose().to_owned()).is_ok());
        for bad in [
            "short",
            " padded-secret ",
            "line\nbreak!",
            "whsec_not*base64*at*all",
        ] {
            assert_eq!(
                validate_secret(bad.into()).unwrap_err().code,
                "invalid_secret",
                "{bad}"
            );
        }
    }

    #[test]
    fn unknown_fields_and_explicit_null_description_are_told_apart() {
        let e = serde_json::from_str::<CreateWebhook>(
            r#"{"bucketId":"507f1f77bcf86cd799439011","url":"https://a.com","events":["data.received"],"colour":"red"}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("unknown field `colour`"), "{e}");
        let clear: UpdateWebhook = serde_json::from_str(r#"{"description":null}"#).unwrap();
        assert_eq!(clear.description, Some(None));
        let keep: UpdateWebhook = serde_json::from_str(r#"{}"#).unwrap();
        assert_eq!(keep.description, None);
    }
}
