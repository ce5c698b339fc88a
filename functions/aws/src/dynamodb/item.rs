//! The stored form of a webhook: [`WebhookItem`], one DynamoDB item per webhook, camelCase
//! attribute names, converted to and from the domain [`Webhook`] here and nowhere else.
//!
//! The item is owned by this adapter on purpose (plain strings and numbers, not the API's serde
//! types), so a change to the API's JSON never silently changes what is on disk. Must not depend on
//! anything but `webhooks-core`, serde and serde_dynamo.
//!
//! | attribute | type | note |
//! |---|---|---|
//! | `id` | S | table HASH key; RANGE key of both indexes |
//! | `ownerId` | S | HASH key of `byOwnerKeys` |
//! | `bucketId` | S | HASH key of `byBucketFanOut` |
//! | `url` | S | |
//! | `secret`, `previousSecret` | S | sealed (`sealed:v1:…`, [`webhooks_core::sealing`]) by the store; a value without the prefix is a legacy plaintext one |
//! | `events` | L of S | sorted event names; the fan-out filters with `contains(events, :e)` |
//! | `description` | S | absent when there is none |
//! | `active` | BOOL | |
//! | `retryConfig` | M | `maxRetries`, `backoffMultiplier`, `initialDelaySeconds` (N) |
//! | `totalDeliveries`, `successfulDeliveries`, `failedDeliveries` | N | legacy counters: see below |
//! | `lastDeliveryAt`, `lastDeliveryStatus`, `failingSince` | S | legacy: see below |
//! | `createdAt`, `updatedAt` | S | RFC 3339 |
//! | `headers` | S | custom headers, a JSON array of `{name, value}` (values are credentials, like `secret`), sealed like it; absent when there are none |
//! | `rateLimit` | N | deliveries per second; absent when there is no limit |
//! | `filter` | S | the payload filter as the user wrote it (JSON text), absent when there is none |
//!
//! Indexes: `byOwnerKeys` (HASH `ownerId`) holds keys only; `byBucketFanOut` (HASH `bucketId`)
//! holds the keys and [`FAN_OUT_ATTRIBUTES`], what the fan-out decodes ([`SubscriberItem`]).
//! Neither holds the url, the secrets, the header values or anything the delivery side writes.
//!
//! **The outcome counters live in their own item**, [`StatsItem`], id `<webhookId>#stats` in the
//! same table (no `ownerId` or `bucketId`, so it is in no index): the delivery side adds every
//! outcome there, and never writes the webhook item or its index entries. Items written before
//! that carry their counters on the webhook item; those are never written again and are added
//! to the stats item's when read ([`StatsItem::merge_into`]): a lazy migration with nothing to
//! run, exact at every step.

use serde::{Deserialize, Serialize};
use webhooks_core::filter::Filter;
use webhooks_core::format::Format;
use webhooks_core::headers::CustomHeaders;
use webhooks_core::webhook::{
    DeliveryStats, DeliveryStatus, PreviousSecret, RetryConfig, Secret, Subscriber, Webhook,
};
use webhooks_core::{BucketId, EventType, OwnerId, Timestamp, WebhookId};

/// Attribute names, shared by the item struct (through serde) and the hand-built expressions.
pub(crate) mod attr {
    pub const ID: &str = "id";
    pub const OWNER_ID: &str = "ownerId";
    pub const BUCKET_ID: &str = "bucketId";
    pub const URL: &str = "url";
    pub const EVENTS: &str = "events";
    pub const DESCRIPTION: &str = "description";
    pub const ACTIVE: &str = "active";
    pub const RETRY_CONFIG: &str = "retryConfig";
    pub const MAX_RETRIES: &str = "maxRetries";
    pub const BACKOFF_MULTIPLIER: &str = "backoffMultiplier";
    pub const INITIAL_DELAY_SECONDS: &str = "initialDelaySeconds";
    pub const SECRET: &str = "secret";
    pub const TOTAL_DELIVERIES: &str = "totalDeliveries";
    pub const SUCCESSFUL_DELIVERIES: &str = "successfulDeliveries";
    pub const FAILED_DELIVERIES: &str = "failedDeliveries";
    pub const LAST_DELIVERY_AT: &str = "lastDeliveryAt";
    pub const LAST_DELIVERY_STATUS: &str = "lastDeliveryStatus";
    pub const UPDATED_AT: &str = "updatedAt";
    pub const FORMAT: &str = "format";
    pub const PREVIOUS_SECRET: &str = "previousSecret";
    pub const PREVIOUS_SECRET_EXPIRES_AT: &str = "previousSecretExpiresAt";
    pub const FAILING_SINCE: &str = "failingSince";
    pub const DISABLED_REASON: &str = "disabledReason";
    pub const FILTER: &str = "filter";
    pub const HEADERS: &str = "headers";
    pub const RATE_LIMIT: &str = "rateLimit";
}

/// One webhook as a DynamoDB item (see the module docs for the attributes).
///
/// `Debug` is derived safely: the secret is a [`Secret`], whose `Debug` is redacted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookItem {
    pub id: String,
    pub owner_id: String,
    pub bucket_id: String,
    pub url: String,
    pub events: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub active: bool,
    pub retry_config: RetryConfigItem,
    pub secret: Secret,
    // Counters only ever grow through `ADD`, which treats a missing attribute as 0.
    #[serde(default)]
    pub total_deliveries: u64,
    #[serde(default)]
    pub successful_deliveries: u64,
    #[serde(default)]
    pub failed_deliveries: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_delivery_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_delivery_status: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    /// `json`, `slack` or `discord`; items written before formats existed have none (= json).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_secret: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_secret_expires_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failing_since: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<String>,
    /// JSON text of the payload filter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    /// JSON text of the custom headers. Not shown by `Debug`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<StoredHeaders>,
    /// Deliveries per second; absent: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<u32>,
}

/// The `headers` attribute's text, redacted in `Debug` (it holds header values).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StoredHeaders(pub String);

impl std::fmt::Debug for StoredHeaders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoredHeaders(<redacted>)")
    }
}

/// The id of webhook `id`'s stats item.
pub(crate) fn stats_id(id: &str) -> String {
    format!("{id}{STATS_SUFFIX}")
}

/// What a webhook's id is followed by in its stats item's id.
pub const STATS_SUFFIX: &str = "#stats";

/// A webhook's outcome counters (see the module docs): written by every final outcome with
/// `ADD` and `SET` only, so concurrent outcomes are all counted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatsItem {
    pub id: String,
    #[serde(default)]
    pub total_deliveries: u64,
    #[serde(default)]
    pub successful_deliveries: u64,
    #[serde(default)]
    pub failed_deliveries: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_delivery_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_delivery_status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failing_since: Option<String>,
}

impl StatsItem {
    /// Adds these counters to `w`'s (the legacy ones of its item, zero for webhooks created
    /// since), and takes the last outcome from here when one was recorded here (every outcome
    /// since the stats item exists is). `failingSince`: a success recorded here ended any run
    /// that began earlier, so then this item's value holds; otherwise a run that began before
    /// (the webhook item's) still runs.
    pub fn merge_into(&self, w: &mut Webhook) -> Result<(), ItemError> {
        w.stats.total_deliveries += self.total_deliveries;
        w.stats.successful_deliveries += self.successful_deliveries;
        w.stats.failed_deliveries += self.failed_deliveries;
        let Some(status) = self.last_delivery_status.as_deref() else {
            return Ok(());
        };
        w.last_delivery_status = Some(DeliveryStatus::parse(status).ok_or_else(|| {
            ItemError::new(
                attr::LAST_DELIVERY_STATUS,
                format!("unknown status {status:?}"),
            )
        })?);
        w.last_delivery_at = self
            .last_delivery_at
            .as_deref()
            .map(|t| timestamp(attr::LAST_DELIVERY_AT, t))
            .transpose()?;
        let here = self
            .failing_since
            .as_deref()
            .map(|t| timestamp(attr::FAILING_SINCE, t))
            .transpose()?;
        w.failing_since = if self.successful_deliveries > 0 {
            here
        } else {
            w.failing_since.or(here)
        };
        Ok(())
    }
}

/// A webhook as the fan-out index holds it (see [`FAN_OUT_ATTRIBUTES`]): its keys and what the
/// fan-out filters and decodes, never the url, secrets or header values. Decoded from a
/// `Query` of that index into a [`Subscriber`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriberItem {
    pub id: String,
    pub bucket_id: String,
    pub owner_id: String,
    pub active: bool,
    pub events: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
}

/// The non-key attributes the fan-out index (`byBucketFanOut`, `INCLUDE`) projects: exactly
/// what [`SubscriberItem`] reads and the fan-out and the bucket list filter on (`active`,
/// `events`, `ownerId`). Its keys (`bucketId`, `id`) come with every index. `template.yaml`
/// lists the same names (a test holds the two together, and another holds [`SubscriberItem`]
/// to this list), so a field the fan-out starts to read cannot silently be missing from it.
pub const FAN_OUT_ATTRIBUTES: [&str; 5] = [
    attr::OWNER_ID,
    attr::ACTIVE,
    attr::EVENTS,
    attr::FORMAT,
    attr::FILTER,
];

impl From<&Webhook> for SubscriberItem {
    fn from(w: &Webhook) -> Self {
        let item = WebhookItem::from(w);
        Self {
            id: item.id,
            bucket_id: item.bucket_id,
            owner_id: item.owner_id,
            active: item.active,
            events: item.events,
            format: item.format,
            filter: item.filter,
        }
    }
}

impl TryFrom<SubscriberItem> for Subscriber {
    type Error = ItemError;

    fn try_from(i: SubscriberItem) -> Result<Self, ItemError> {
        // Read as the webhook item's are, so an entry the webhook would be refused for is
        // reported at publish too, not only when a delivery reads the webhook.
        events_of(&i.events)?;
        Ok(Subscriber {
            id: WebhookId::parse(&i.id).map_err(|e| ItemError::new(attr::ID, e))?,
            format: format_of(i.format.as_deref())?,
            filter: filter_of(i.filter.as_deref())?,
        })
    }
}

/// The `events` attribute: known event names, at least one.
fn events_of(events: &[String]) -> Result<Vec<EventType>, ItemError> {
    let events = events
        .iter()
        .map(|e| e.parse::<EventType>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ItemError::new(attr::EVENTS, e))?;
    if events.is_empty() {
        return Err(ItemError::new(attr::EVENTS, "empty list"));
    }
    Ok(events)
}

/// The `format` attribute (absent on items written before formats existed: json).
fn format_of(format: Option<&str>) -> Result<Format, ItemError> {
    match format {
        None => Ok(Format::Json),
        Some(f) => f
            .parse()
            .map_err(|e: String| ItemError::new(attr::FORMAT, e)),
    }
}

/// The `filter` attribute (JSON text), if any.
fn filter_of(filter: Option<&str>) -> Result<Option<Filter>, ItemError> {
    filter
        .map(Filter::from_json)
        .transpose()
        .map_err(|e| ItemError::new(attr::FILTER, e))
}

/// The `retryConfig` map of a [`WebhookItem`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetryConfigItem {
    pub max_retries: u32,
    pub backoff_multiplier: f64,
    pub initial_delay_seconds: u32,
}

/// Why a [`WebhookItem`] is not a valid [`Webhook`]: which attribute, and what is wrong with it.
/// Never carries the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("attribute `{attribute}`: {problem}")]
pub struct ItemError {
    pub attribute: &'static str,
    pub problem: String,
}

impl ItemError {
    fn new(attribute: &'static str, problem: impl ToString) -> Self {
        Self {
            attribute,
            problem: problem.to_string(),
        }
    }
}

impl From<&Webhook> for WebhookItem {
    fn from(w: &Webhook) -> Self {
        Self {
            id: w.id.to_string(),
            owner_id: w.owner_id.to_string(),
            bucket_id: w.bucket_id.to_string(),
            url: w.url.clone(),
            events: w.events.iter().map(|e| e.as_str().to_owned()).collect(),
            description: w.description.clone(),
            active: w.active,
            retry_config: RetryConfigItem {
                max_retries: w.retry_config.max_retries,
                backoff_multiplier: w.retry_config.backoff_multiplier,
                initial_delay_seconds: w.retry_config.initial_delay_seconds,
            },
            secret: w.secret.clone(),
            total_deliveries: w.stats.total_deliveries,
            successful_deliveries: w.stats.successful_deliveries,
            failed_deliveries: w.stats.failed_deliveries,
            last_delivery_at: w.last_delivery_at.map(Timestamp::to_rfc3339),
            last_delivery_status: w.last_delivery_status.map(|s| s.as_str().to_owned()),
            created_at: w.created_at.to_rfc3339(),
            updated_at: w.updated_at.to_rfc3339(),
            format: Some(w.format.as_str().to_owned()),
            previous_secret: w.previous_secret.as_ref().map(|p| p.secret.clone()),
            previous_secret_expires_at: w
                .previous_secret
                .as_ref()
                .map(|p| p.expires_at.to_rfc3339()),
            failing_since: w.failing_since.map(Timestamp::to_rfc3339),
            disabled_reason: w.disabled_reason.clone(),
            filter: w.filter.as_ref().map(Filter::to_json),
            headers: (!w.headers.is_empty()).then(|| StoredHeaders(w.headers.to_json())),
            rate_limit: w.rate_limit,
        }
    }
}

impl From<Webhook> for WebhookItem {
    fn from(w: Webhook) -> Self {
        Self::from(&w)
    }
}

fn timestamp(attribute: &'static str, s: &str) -> Result<Timestamp, ItemError> {
    Timestamp::parse(s).map_err(|e| ItemError::new(attribute, e))
}

impl TryFrom<WebhookItem> for Webhook {
    type Error = ItemError;

    fn try_from(i: WebhookItem) -> Result<Self, ItemError> {
        let events = events_of(&i.events)?;
        let last_delivery_status = match i.last_delivery_status.as_deref() {
            None => None,
            Some(s) => Some(DeliveryStatus::parse(s).ok_or_else(|| {
                ItemError::new(attr::LAST_DELIVERY_STATUS, format!("unknown status {s:?}"))
            })?),
        };
        let format = format_of(i.format.as_deref())?;
        let previous_secret = match (i.previous_secret, i.previous_secret_expires_at.as_deref()) {
            (Some(secret), Some(t)) => Some(PreviousSecret {
                secret,
                expires_at: timestamp(attr::PREVIOUS_SECRET_EXPIRES_AT, t)?,
            }),
            (None, None) => None,
            _ => {
                return Err(ItemError::new(
                    attr::PREVIOUS_SECRET,
                    "secret and expiry must be set together",
                ));
            }
        };
        let filter = filter_of(i.filter.as_deref())?;
        // The error names the attribute and the problem's code, never a header value.
        let headers = i
            .headers
            .as_ref()
            .map(|h| CustomHeaders::from_json(&h.0))
            .transpose()
            .map_err(|e| ItemError::new(attr::HEADERS, e.code))?
            .unwrap_or_default();
        Ok(Webhook {
            format,
            filter,
            headers,
            rate_limit: i.rate_limit,
            previous_secret,
            failing_since: i
                .failing_since
                .as_deref()
                .map(|t| timestamp(attr::FAILING_SINCE, t))
                .transpose()?,
            disabled_reason: i.disabled_reason,
            id: WebhookId::parse(&i.id).map_err(|e| ItemError::new(attr::ID, e))?,
            owner_id: OwnerId::parse(&i.owner_id).map_err(|e| ItemError::new(attr::OWNER_ID, e))?,
            bucket_id: BucketId::parse(&i.bucket_id)
                .map_err(|e| ItemError::new(attr::BUCKET_ID, e))?,
            url: i.url,
            events,
            description: i.description,
            active: i.active,
            retry_config: RetryConfig {
                max_retries: i.retry_config.max_retries,
                backoff_multiplier: i.retry_config.backoff_multiplier,
                initial_delay_seconds: i.retry_config.initial_delay_seconds,
            },
            secret: i.secret,
            stats: DeliveryStats {
                total_deliveries: i.total_deliveries,
                successful_deliveries: i.successful_deliveries,
                failed_deliveries: i.failed_deliveries,
            },
            last_delivery_at: i
                .last_delivery_at
                .as_deref()
                .map(|s| timestamp(attr::LAST_DELIVERY_AT, s))
                .transpose()?,
            last_delivery_status,
            created_at: timestamp("createdAt", &i.created_at)?,
            updated_at: timestamp(attr::UPDATED_AT, &i.updated_at)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::types::AttributeValue;
    use std::collections::HashMap;

    fn sample() -> Webhook {
        let owner = OwnerId::parse("user_1").unwrap();
        let bucket = BucketId::parse("507f1f77bcf86cd799439011").unwrap();
        let mut w = webhooks_core::conformance::sample_webhook(&owner, &bucket, 1_700_000_000);
        w.stats = DeliveryStats {
            total_deliveries: 3,
            successful_deliveries: 2,
            failed_deliveries: 1,
        };
        w.last_delivery_at = Some(Timestamp::from_unix(1_700_000_100));
        w.last_delivery_status = Some(DeliveryStatus::Failed);
        w
    }

    #[test]
    fn a_webhook_round_trips_through_its_dynamodb_item() {
        // GIVEN a webhook with every field set, and one with the optional ones absent
        let full = sample();
        let mut minimal = sample();
        minimal.description = None;
        minimal.last_delivery_at = None;
        minimal.last_delivery_status = None;
        for w in [full, minimal] {
            // WHEN it is turned into an attribute map and back
            let item: HashMap<String, AttributeValue> =
                serde_dynamo::to_item(WebhookItem::from(&w)).unwrap();
            let back: WebhookItem = serde_dynamo::from_item(item.clone()).unwrap();
            // THEN nothing is lost, and the attributes are the documented camelCase ones
            assert_eq!(Webhook::try_from(back).unwrap(), w);
            assert!(item.contains_key("ownerId") && item.contains_key("retryConfig"));
            assert_eq!(item.contains_key("description"), w.description.is_some());
            assert!(matches!(item.get("events"), Some(AttributeValue::L(_))));
            assert!(matches!(
                item.get("active"),
                Some(AttributeValue::Bool(true))
            ));
        }
    }

    #[test]
    fn stats_items_add_to_legacy_counters_and_keep_the_current_run_of_failures() {
        // GIVEN a webhook whose item carries legacy counters and a run of failures since t0
        let mut legacy = sample();
        legacy.failing_since = Some(Timestamp::from_unix(1_700_000_050));
        let failure = |failed: u64, successful: u64, since: Option<&str>| StatsItem {
            id: stats_id(legacy.id.as_str()),
            total_deliveries: failed + successful,
            successful_deliveries: successful,
            failed_deliveries: failed,
            last_delivery_at: Some("2023-11-14T22:20:00Z".into()),
            last_delivery_status: Some("failed".into()),
            failing_since: since.map(str::to_owned),
        };
        // WHEN only failures were counted since THEN the run that began before still runs
        let mut w = legacy.clone();
        failure(2, 0, Some("2023-11-14T22:19:00Z"))
            .merge_into(&mut w)
            .unwrap();
        assert_eq!(w.stats.total_deliveries, 5);
        assert_eq!(w.stats.failed_deliveries, 3);
        assert_eq!(w.failing_since, legacy.failing_since);
        assert_eq!(w.last_delivery_status, Some(DeliveryStatus::Failed));
        assert_eq!(
            w.last_delivery_at,
            Some(Timestamp::from_unix(1_700_000_400))
        );
        // WHEN a success was counted since THEN the stats item's run is the current one
        let mut w = legacy.clone();
        failure(1, 1, Some("2023-11-14T22:20:00Z"))
            .merge_into(&mut w)
            .unwrap();
        assert_eq!(w.failing_since, Some(Timestamp::from_unix(1_700_000_400)));
        assert_eq!(w.stats.successful_deliveries, 3);
        // WHEN nothing was counted since THEN the webhook item's values stand
        let mut w = legacy.clone();
        StatsItem::default().merge_into(&mut w).unwrap();
        assert_eq!(w, legacy);
        // AND a bad status is refused, naming the attribute
        let mut bad = failure(1, 0, None);
        bad.last_delivery_status = Some("maybe".into());
        let err = bad.merge_into(&mut legacy.clone()).unwrap_err();
        assert_eq!(err.attribute, "lastDeliveryStatus");
    }

    #[test]
    fn an_item_with_unknown_or_missing_events_is_refused_naming_the_attribute() {
        // GIVEN items whose events are not valid
        let mut bad = WebhookItem::from(&sample());
        bad.events = vec!["alert.fired".into()];
        let mut empty = WebhookItem::from(&sample());
        empty.events.clear();
        // WHEN converted THEN the error names the attribute and never shows the secret
        for item in [bad, empty] {
            let err = Webhook::try_from(item).unwrap_err();
            assert_eq!(err.attribute, "events");
            assert!(!err.to_string().contains("your_webhook_secret"));
        }
    }

    #[test]
    fn the_fan_out_decodes_only_what_its_index_projects() {
        // GIVEN a webhook with every field the fan-out may need set (format, filter) and the
        // credentials it must never see (previous secret, headers)
        let mut w = sample();
        w.format = Format::Slack;
        w.filter = Some(Filter::parse(serde_json::json!({"data.value": {"$gt": 30}})).unwrap());
        w.headers = CustomHeaders::parse([("X-Api-Key".to_owned(), "key-1".to_owned())]).unwrap();
        w.previous_secret = Some(PreviousSecret {
            secret: Secret::new("old".into()),
            expires_at: Timestamp::from_unix(1_900_000_000),
        });
        let full: HashMap<String, AttributeValue> =
            serde_dynamo::to_item(WebhookItem::from(&w)).unwrap();
        // WHEN the item is cut to what the fan-out index holds (its keys and the INCLUDE list)
        let projected: HashMap<String, AttributeValue> = full
            .into_iter()
            .filter(|(k, _)| {
                [attr::ID, attr::BUCKET_ID].contains(&k.as_str())
                    || FAN_OUT_ATTRIBUTES.contains(&k.as_str())
            })
            .collect();
        // THEN it decodes to the subscriber the whole webhook makes
        let item: SubscriberItem = serde_dynamo::from_item(projected.clone()).unwrap();
        assert_eq!(Subscriber::try_from(item.clone()).unwrap(), w.subscriber());
        // AND the decoder names no attribute outside the projection, and the projection holds
        // no credential
        let written: HashMap<String, AttributeValue> = serde_dynamo::to_item(&item).unwrap();
        let mut names: Vec<&str> = written.keys().map(String::as_str).collect();
        names.sort_unstable();
        let mut projected_names: Vec<&str> = projected.keys().map(String::as_str).collect();
        projected_names.sort_unstable();
        assert_eq!(names, projected_names);
        for credential in [
            attr::SECRET,
            attr::PREVIOUS_SECRET,
            attr::HEADERS,
            attr::URL,
        ] {
            assert!(!FAN_OUT_ATTRIBUTES.contains(&credential), "{credential}");
        }
        // AND a bad format or event is refused naming the attribute
        let mut bad = item.clone();
        bad.format = Some("xml".into());
        assert_eq!(Subscriber::try_from(bad).unwrap_err().attribute, "format");
        let mut bad = item;
        bad.events = vec!["alert.fired".into()];
        assert_eq!(Subscriber::try_from(bad).unwrap_err().attribute, "events");
    }
}
