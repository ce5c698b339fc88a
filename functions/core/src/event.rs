//! Event names (DESIGN.md §2).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An event a webhook can receive.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
pub enum EventType {
    #[serde(rename = "alert.triggered")]
    AlertTriggered,
    #[serde(rename = "data.received")]
    DataReceived,
    #[serde(rename = "bucket.updated")]
    BucketUpdated,
    /// Sent only by `POST /api/webhooks/{id}/test`; not something to subscribe to.
    #[serde(rename = "webhook.test")]
    WebhookTest,
    /// Operational events ([`crate::notify`]), sent only to a user's notification endpoint;
    /// not something to subscribe to.
    #[serde(rename = "webhook.failing")]
    WebhookFailing,
    #[serde(rename = "webhook.disabled")]
    WebhookDisabled,
    #[serde(rename = "webhook.recovered")]
    WebhookRecovered,
}

impl EventType {
    /// The events a webhook may list in `events`.
    pub const SUBSCRIBABLE: [EventType; 3] = [
        EventType::AlertTriggered,
        EventType::DataReceived,
        EventType::BucketUpdated,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::AlertTriggered => "alert.triggered",
            EventType::DataReceived => "data.received",
            EventType::BucketUpdated => "bucket.updated",
            EventType::WebhookTest => "webhook.test",
            EventType::WebhookFailing => "webhook.failing",
            EventType::WebhookDisabled => "webhook.disabled",
            EventType::WebhookRecovered => "webhook.recovered",
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The name is not one of [`EventType`]'s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown event {0:?}")]
pub struct UnknownEvent(pub String);

impl FromStr for EventType {
    type Err = UnknownEvent;
    fn from_str(s: &str) -> Result<Self, UnknownEvent> {
        [
            EventType::AlertTriggered,
            EventType::DataReceived,
            EventType::BucketUpdated,
            EventType::WebhookTest,
            EventType::WebhookFailing,
            EventType::WebhookDisabled,
            EventType::WebhookRecovered,
        ]
        .into_iter()
        .find(|e| e.as_str() == s)
        .ok_or_else(|| UnknownEvent(s.chars().take(64).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_str_and_serde() {
        for e in EventType::SUBSCRIBABLE {
            assert_eq!(e.as_str().parse::<EventType>().unwrap(), e);
            assert_eq!(serde_json::to_string(&e).unwrap(), format!("\"{e}\""));
        }
        assert!("alert.fired".parse::<EventType>().is_err());
    }
}
