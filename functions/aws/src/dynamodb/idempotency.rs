//! [`DynamoDbIdempotencyStore`]: the `Idempotency-Key` records of `POST /api/events`
//! ([`IdempotencyStore`], see [`webhooks_core::idempotency`]) as items of the deliveries table
//! (`DeliveriesTable` in `template.yaml`), which already has the TTL they need: no table of
//! their own to deploy, configure or pay a minimum for.
//!
//! | attribute | value |
//! |---|---|
//! | `webhookId` (HASH) | `I#` + 32 hex of SHA-256 over (producer, key), length-prefixed: one partition per key, so no producer has a hot partition and no webhook id (24 hex) can collide |
//! | `sk` (RANGE) | `I` |
//! | `expiresAt` (TTL) | the record's `expires_at` (24 h after the first request) |
//! | `version` | the condition of every write |
//! | `record` | the `IdempotencyRecord` as JSON (producer, key, request hash, state, answer) |
//!
//! `insert_or_get` is a `PutItem` conditional on "absent or expired" (DynamoDB's TTL deletes
//! items up to days late, so the condition compares `expiresAt` with the request's time), and on
//! a failed condition a strongly consistent `GetItem` of the live record. `replace` and
//! `remove` are conditional on `version`. A keyed publish costs two writes (the claim and the
//! answer: 1 WCU each for up to ~40 deliveries, an answer takes ~28 bytes per delivery) and a
//! repeat one write plus one read; the items never enter an index (the table has none).
//!
//! Must not depend on axum or the Lambda runtime; SDK types never leave this module.

use aws_config::SdkConfig;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use webhooks_core::idempotency::{IdempotencyKey, IdempotencyRecord, IdempotencyStore, storage_id};
use webhooks_core::ports::StoreError;
use webhooks_core::{OwnerId, Timestamp};

use super::delivery_log::key::{EXPIRES_AT, SK, WEBHOOK_ID};
use super::error::{condition_failed, unavailable};
use crate::config::DeliveryLogConfig;

/// The sort key of every idempotency item.
pub const IDEMPOTENCY_SK: &str = "I";

/// How many times `insert_or_get` goes round "put failed, but the record is gone (expired or
/// removed) by the time it is read".
const CLAIM_TRIES: u32 = 3;

/// The partition key of (`scope`, `key`)'s record.
pub fn idempotency_pk(scope: &OwnerId, key: &IdempotencyKey) -> String {
    format!("I#{}", storage_id(scope, key))
}

/// The records, in the deliveries table. Cheap to clone.
#[derive(Debug, Clone)]
pub struct DynamoDbIdempotencyStore {
    client: Client,
    table: String,
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn key_of(scope: &OwnerId, key: &IdempotencyKey) -> [(String, AttributeValue); 2] {
    [
        (
            WEBHOOK_ID.to_owned(),
            AttributeValue::S(idempotency_pk(scope, key)),
        ),
        (SK.to_owned(), AttributeValue::S(IDEMPOTENCY_SK.to_owned())),
    ]
}

fn item_of(r: &IdempotencyRecord) -> Result<Vec<(String, AttributeValue)>, StoreError> {
    let json = r.to_json()?;
    let mut item: Vec<(String, AttributeValue)> = key_of(&r.scope, &r.key).into();
    item.push((EXPIRES_AT.to_owned(), n(r.expires_at.unix())));
    item.push(("version".to_owned(), n(r.version)));
    item.push(("record".to_owned(), AttributeValue::S(json)));
    Ok(item)
}

impl DynamoDbIdempotencyStore {
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

    /// The live record of (`scope`, `key`) at `now`, read strongly consistently.
    async fn get_live(
        &self,
        scope: &OwnerId,
        key: &IdempotencyKey,
        now: Timestamp,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key_of(scope, key).into_iter().collect()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| unavailable("GetItem", e))?;
        let Some(item) = out.item else {
            return Ok(None);
        };
        let Some(AttributeValue::S(json)) = item.get("record") else {
            return Err(StoreError::Corrupt(
                "idempotency item without a record".into(),
            ));
        };
        let record = IdempotencyRecord::from_json(json)?;
        Ok(record.is_live(now).then_some(record))
    }
}

#[async_trait::async_trait]
impl IdempotencyStore for DynamoDbIdempotencyStore {
    async fn insert_or_get(
        &self,
        record: &IdempotencyRecord,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        let item = item_of(record)?;
        for _ in 0..CLAIM_TRIES {
            let put = self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(item.iter().cloned().collect()))
                .condition_expression("attribute_not_exists(#pk) OR #exp <= :now")
                .expression_attribute_names("#pk", WEBHOOK_ID)
                .expression_attribute_names("#exp", EXPIRES_AT)
                .expression_attribute_values(":now", n(record.created_at.unix()))
                .send()
                .await;
            match put {
                Ok(_) => return Ok(None),
                Err(e) if condition_failed(&e) => {
                    if let Some(live) = self
                        .get_live(&record.scope, &record.key, record.created_at)
                        .await?
                    {
                        return Ok(Some(live));
                    }
                    // Expired or removed between the put and the read: claim again.
                }
                Err(e) => return Err(unavailable("PutItem", e)),
            }
        }
        Err(StoreError::Unavailable(
            "DynamoDB PutItem: the idempotency record kept changing".into(),
        ))
    }

    async fn replace(&self, record: &IdempotencyRecord, expected: u64) -> Result<bool, StoreError> {
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item_of(record)?.into_iter().collect()))
            .condition_expression("#v = :expected")
            .expression_attribute_names("#v", "version")
            .expression_attribute_values(":expected", n(expected))
            .send()
            .await;
        match put {
            Ok(_) => Ok(true),
            Err(e) if condition_failed(&e) => Ok(false),
            Err(e) => Err(unavailable("PutItem", e)),
        }
    }

    async fn remove(
        &self,
        scope: &OwnerId,
        key: &IdempotencyKey,
        expected: u64,
    ) -> Result<(), StoreError> {
        let del = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key_of(scope, key).into_iter().collect()))
            .condition_expression("#v = :expected")
            .expression_attribute_names("#v", "version")
            .expression_attribute_values(":expected", n(expected))
            .send()
            .await;
        match del {
            Ok(_) => Ok(()),
            Err(e) if condition_failed(&e) => Ok(()),
            Err(e) => Err(unavailable("DeleteItem", e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_keys_are_per_producer_and_key_and_never_a_webhook_id() {
        let k = |s: &str| IdempotencyKey::parse(s).unwrap();
        let o = |s: &str| OwnerId::parse(s).unwrap();
        let a = idempotency_pk(&o("ab"), &k("c"));
        assert_eq!(a, idempotency_pk(&o("ab"), &k("c")));
        assert_ne!(a, idempotency_pk(&o("a"), &k("bc")));
        assert_ne!(a, idempotency_pk(&o("other"), &k("c")));
        assert!(a.starts_with("I#") && a.len() == 34);
        assert!(webhooks_core::WebhookId::parse(&a).is_err());
    }
}
