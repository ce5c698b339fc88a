//! [`DynamoDbNoticeStore`]: what each webhook's owner was last told ([`NoticeStore`], see
//! [`webhooks_core::notify`]) as one item per webhook in the webhooks table, beside its stats
//! item: no table of its own.
//!
//! | attribute | value |
//! |---|---|
//! | `id` (HASH) | `<webhookId>#notice` |
//! | `level` | S: `failing`, `failingLong`, `failingLonger`, `disabled` |
//! | `failingSince` | N: unix seconds, the start of the run of failures told about |
//!
//! The item has no `ownerId` or `bucketId`, so it is in no index. It is written only when a
//! notification is decided (a transition, never per delivery): a conditional `PutItem` (or
//! `DeleteItem` when cleared) whose condition is the expected notice, i.e. a compare-and-set.
//! Reads are strongly consistent `GetItem`s (1 RCU; the notifier caches them 30 s per
//! process, so a healthy webhook's deliveries read it about twice a minute per instance).
//!
//! Must not depend on axum or the Lambda runtime; SDK types never leave this module.

use std::collections::HashMap;

use aws_config::SdkConfig;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use webhooks_core::notify::{Level, Notice, NoticeStore};
use webhooks_core::ports::StoreError;
use webhooks_core::{Timestamp, WebhookId};

use super::error::{condition_failed, unavailable};
use crate::config::DynamoDbConfig;

const LEVEL: &str = "level";
const FAILING_SINCE: &str = "failingSince";

/// The notice item's id of `webhook`.
pub fn notice_id(webhook: &WebhookId) -> String {
    format!("{webhook}#notice")
}

/// The notices, in the webhooks table. Cheap to clone.
#[derive(Debug, Clone)]
pub struct DynamoDbNoticeStore {
    client: Client,
    table: String,
}

fn key(webhook: &WebhookId) -> HashMap<String, AttributeValue> {
    HashMap::from([("id".to_owned(), AttributeValue::S(notice_id(webhook)))])
}

impl DynamoDbNoticeStore {
    pub fn new(client: Client, webhooks_table: impl Into<String>) -> Self {
        Self {
            client,
            table: webhooks_table.into(),
        }
    }

    /// On the webhooks table of `config` (`WEBHOOKS_TABLE`).
    pub fn from_config(sdk: &SdkConfig, config: &DynamoDbConfig) -> Self {
        Self::new(Client::new(sdk), config.table_name.clone())
    }
}

/// A condition expression with its attribute names and values.
type Condition = (
    String,
    Vec<(&'static str, &'static str)>,
    Vec<(&'static str, AttributeValue)>,
);

/// The condition "the stored notice is `expected`" and its names and values.
fn condition(expected: Option<&Notice>) -> Condition {
    match expected {
        None => (
            "attribute_not_exists(#id)".into(),
            vec![("#id", "id")],
            vec![],
        ),
        Some(e) => (
            "#level = :level AND #since = :since".into(),
            vec![("#level", LEVEL), ("#since", FAILING_SINCE)],
            vec![
                (":level", AttributeValue::S(e.level.as_str().to_owned())),
                (
                    ":since",
                    AttributeValue::N(e.failing_since.unix().to_string()),
                ),
            ],
        ),
    }
}

#[async_trait::async_trait]
impl NoticeStore for DynamoDbNoticeStore {
    async fn notice(&self, webhook: &WebhookId) -> Result<Option<Notice>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(webhook)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| unavailable("GetItem", e))?;
        let Some(item) = out.item else {
            return Ok(None);
        };
        let corrupt = || StoreError::Corrupt(format!("notice item of webhook {webhook}"));
        let level = match item.get(LEVEL) {
            Some(AttributeValue::S(s)) => Level::parse(s).ok_or_else(corrupt)?,
            _ => return Err(corrupt()),
        };
        let since = match item.get(FAILING_SINCE) {
            Some(AttributeValue::N(n)) => n.parse::<i64>().map_err(|_| corrupt())?,
            _ => return Err(corrupt()),
        };
        Ok(Some(Notice {
            level,
            failing_since: Timestamp::from_unix(since),
        }))
    }

    async fn replace_notice(
        &self,
        webhook: &WebhookId,
        expected: Option<&Notice>,
        new: Option<&Notice>,
    ) -> Result<bool, StoreError> {
        let (cond, names, values) = condition(expected);
        match new {
            Some(n) => {
                let mut item = key(webhook);
                item.insert(LEVEL.into(), AttributeValue::S(n.level.as_str().to_owned()));
                item.insert(
                    FAILING_SINCE.into(),
                    AttributeValue::N(n.failing_since.unix().to_string()),
                );
                let mut put = self
                    .client
                    .put_item()
                    .table_name(&self.table)
                    .set_item(Some(item))
                    .condition_expression(cond);
                for (k, v) in names {
                    put = put.expression_attribute_names(k, v);
                }
                for (k, v) in values {
                    put = put.expression_attribute_values(k, v);
                }
                match put.send().await {
                    Ok(_) => Ok(true),
                    Err(e) if condition_failed(&e) => Ok(false),
                    Err(e) => Err(unavailable("PutItem", e)),
                }
            }
            // Nothing expected, nothing to write: true when there is indeed none.
            None if expected.is_none() => Ok(self.notice(webhook).await?.is_none()),
            None => {
                let mut del = self
                    .client
                    .delete_item()
                    .table_name(&self.table)
                    .set_key(Some(key(webhook)))
                    .condition_expression(cond);
                for (k, v) in names {
                    del = del.expression_attribute_names(k, v);
                }
                for (k, v) in values {
                    del = del.expression_attribute_values(k, v);
                }
                match del.send().await {
                    Ok(_) => Ok(true),
                    Err(e) if condition_failed(&e) => Ok(false),
                    Err(e) => Err(unavailable("DeleteItem", e)),
                }
            }
        }
    }
}
