//! [`DynamoDbHealthStore`]: the circuit breakers' states ([`HealthStore`], see
//! [`webhooks_core::health`]) as items of the deliveries table (`DeliveriesTable` in
//! `template.yaml`), which has no index and already has the TTL they need. Both functions
//! already hold the permissions (the delivery function `GetItem`/`PutItem`/`DeleteItem`, the API
//! function `GetItem` for `health` on `GET /api/webhooks/{id}`).
//!
//! | attribute | value |
//! |---|---|
//! | `webhookId` (HASH) | `<webhookId>#health`: a partition of its own, apart from the webhook's delivery history (no query of that history meets it) |
//! | `sk` (RANGE) | `H` |
//! | `health` | the `WebhookHealth` as JSON |
//! | `expiresAt` (TTL) | last written + 30 days: a deleted webhook's item goes by itself, and a webhook that has not failed for a month starts healthy |
//!
//! Written only on the breaker's transitions (never for a delivery to a healthy webhook): each
//! is one `PutItem` conditional on the state it was made from (`health = :expected`, or no item
//! for a first failure), so two Lambda instances cannot both claim one probe. The compare is on
//! the JSON this adapter wrote, which is deterministic (a struct's fields in order). The
//! breaker's gate reads it eventually consistently (`get_recent`: 0.5 RCU), at most once a
//! second per webhook and instance however many records ask ([`webhooks_core::health::Breaker`]'s
//! cache, whose state is up to a second old anyway); after a lost compare-and-set, and for the
//! API's `health`, strongly consistently (`get`: 1 RCU).
//!
//! Must not depend on axum or the Lambda runtime; SDK types never leave this module.

use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use webhooks_core::WebhookId;
use webhooks_core::delivery::ATTEMPT_RETENTION_SECS;
use webhooks_core::health::{HealthStore, WebhookHealth};
use webhooks_core::ports::StoreError;

use super::delivery_log::key::{EXPIRES_AT, SK, WEBHOOK_ID};
use super::error::{condition_failed, unavailable};
use crate::config::DeliveryLogConfig;

/// The sort key of every health item.
pub const HEALTH_SK: &str = "H";
/// What a webhook's id is followed by in its health item's partition key.
pub const HEALTH_SUFFIX: &str = "#health";
/// The attribute holding the state (JSON).
const HEALTH: &str = "health";

/// The breakers' states, in the deliveries table. Cheap to clone.
#[derive(Debug, Clone)]
pub struct DynamoDbHealthStore {
    client: Client,
    table: String,
}

fn key_of(webhook: &WebhookId) -> [(String, AttributeValue); 2] {
    [
        (
            WEBHOOK_ID.to_owned(),
            AttributeValue::S(format!("{webhook}{HEALTH_SUFFIX}")),
        ),
        (SK.to_owned(), AttributeValue::S(HEALTH_SK.to_owned())),
    ]
}

fn item_of(
    webhook: &WebhookId,
    health: &WebhookHealth,
) -> Result<Vec<(String, AttributeValue)>, StoreError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let mut item: Vec<(String, AttributeValue)> = key_of(webhook).into();
    item.push((HEALTH.to_owned(), AttributeValue::S(health.to_json()?)));
    item.push((
        EXPIRES_AT.to_owned(),
        AttributeValue::N((now + ATTEMPT_RETENTION_SECS).to_string()),
    ));
    Ok(item)
}

impl DynamoDbHealthStore {
    pub fn new(client: Client, deliveries_table: impl Into<String>) -> Self {
        Self {
            client,
            table: deliveries_table.into(),
        }
    }

    /// On the deliveries table of `config` (`DELIVERIES_TABLE`).
    pub fn from_config(sdk: &SdkConfig, config: &DeliveryLogConfig) -> Self {
        Self::new(Client::new(sdk), config.deliveries_table.clone())
    }
}

impl DynamoDbHealthStore {
    /// The item read consistently or not (half the read units; the breaker's gate, which reads
    /// through a cache of its own, takes that).
    async fn read(
        &self,
        webhook: &WebhookId,
        consistent: bool,
    ) -> Result<Option<WebhookHealth>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key_of(webhook).into_iter().collect()))
            .consistent_read(consistent)
            .send()
            .await
            .map_err(|e| unavailable("GetItem", e))?;
        let Some(item) = out.item else {
            return Ok(None);
        };
        match item.get(HEALTH) {
            Some(AttributeValue::S(json)) => WebhookHealth::from_json(webhook, json).map(Some),
            _ => Err(StoreError::Corrupt(format!(
                "webhook health of {webhook}: no {HEALTH} attribute"
            ))),
        }
    }
}

#[async_trait]
impl HealthStore for DynamoDbHealthStore {
    async fn get(&self, webhook: &WebhookId) -> Result<Option<WebhookHealth>, StoreError> {
        self.read(webhook, true).await
    }

    async fn get_recent(&self, webhook: &WebhookId) -> Result<Option<WebhookHealth>, StoreError> {
        self.read(webhook, false).await
    }

    async fn replace(
        &self,
        webhook: &WebhookId,
        expected: Option<&WebhookHealth>,
        health: &WebhookHealth,
    ) -> Result<bool, StoreError> {
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item_of(webhook, health)?.into_iter().collect()))
            .expression_attribute_names("#pk", WEBHOOK_ID);
        let put = match expected {
            None => put.condition_expression("attribute_not_exists(#pk)"),
            Some(h) => put
                .condition_expression("attribute_exists(#pk) AND #h = :expected")
                .expression_attribute_names("#h", HEALTH)
                .expression_attribute_values(":expected", AttributeValue::S(h.to_json()?)),
        };
        match put.send().await {
            Ok(_) => Ok(true),
            Err(e) if condition_failed(&e) => Ok(false),
            Err(e) => Err(unavailable("PutItem", e)),
        }
    }

    async fn put(&self, webhook: &WebhookId, health: &WebhookHealth) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item_of(webhook, health)?.into_iter().collect()))
            .send()
            .await
            .map_err(|e| unavailable("PutItem", e))?;
        Ok(())
    }

    async fn delete(&self, webhook: &WebhookId) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key_of(webhook).into_iter().collect()))
            .send()
            .await
            .map_err(|e| unavailable("DeleteItem", e))?;
        Ok(())
    }
}
