//! [`DynamoDbSubscriptionStore`]: the [`SubscriptionStore`] port on one DynamoDB table; and
//! [`DynamoDbDeliveryLog`] (module [`delivery_log`]): the delivery history on a second one.
//!
//! ## Table design (declared as `WebhooksTable` in `template.yaml`)
//!
//! | | HASH | RANGE | used for |
//! |---|---|---|---|
//! | table | `id` (S) | | `get`, every write; a webhook's stats item (`<id>#stats`) |
//! | GSI `byOwnerKeys` (`KEYS_ONLY`) | `ownerId` (S) | `id` (S) | an owner's list, newest first |
//! | GSI `byBucketFanOut` (`INCLUDE` [`FAN_OUT_ATTRIBUTES`]) | `bucketId` (S) | `id` (S) | fan-out; an owner's list of one bucket |
//!
//! **The indexes hold only what their queries read.** The fan-out decodes a [`Subscriber`]
//! (id, format, filter) straight from `byBucketFanOut`, which projects that, the `active` and
//! `events` its query filters on and the `ownerId` the bucket list filters on — never the url,
//! the secrets or the header values (the delivery side reads those from the webhook item when
//! it sends). A list reads only ids from its index (`byOwnerKeys` holds nothing else; the bucket
//! list filters `byBucketFanOut` by owner) and then the page's webhook items and their stats
//! items with `BatchGetItem` (consistent, 100 keys a request, unprocessed keys asked again), in
//! the index's order: a webhook deleted in between is left out of the page, the cursor still
//! follows the index. An index entry is written on create, patch and delete only.
//!
//! **Upgrading a stack whose indexes are `byOwner`/`byBucket` (projection `ALL`)**: a
//! projection cannot change in place and CloudFormation creates or deletes at most one index
//! per stack update, so `template.yaml`'s parameter `WebhookIndexUpgrade` takes the table there
//! in four deploys (`1`: add `byBucketFanOut`, the API still lists from `byOwner`
//! ([`DynamoDbConfig::owner_index`]); `2`: add `byOwnerKeys` and list from it; `3`: drop
//! `byOwner`; `done`: drop `byBucket`). CloudFormation builds an index before it updates the
//! functions that read it, and this code reads only the new fan-out index, so every step serves.
//!
//! A webhook's outcome counters (`stats`, `lastDelivery*`, `failingSince`) are in its **stats
//! item** ([`StatsItem`], see [`item`]), not on the webhook item: the delivery side writes only
//! that item, so a delivery never rewrites the webhook item or its two index entries. `get`,
//! `list` and `update` read the stats items and add them in (`get`: two `GetItem`s at once;
//! `list`: the page's items and stats items in one `BatchGetItem` per 50 webhooks);
//! `get_for_delivery` reads the webhook item alone (its counters may be out of date, as the port
//! allows). `create` puts an empty stats item after the webhook; a webhook without one (created
//! before stats items existed, or by a `create` that stopped in between) gets it from the first
//! outcome that finds it missing ([`ensure_stats`]).
//!
//! **Secrets at rest**: the store seals `secret`, `previousSecret` and `headers` before every
//! write and opens them after every read ([`SecretCipher`] on a [`KmsKeyRing`]), so the item,
//! its index copies and backups hold ciphertext bound to the webhook's id. [`WebhookItem`]
//! itself carries whatever is stored; sealing happens here, around it. An update that leaves a
//! legacy plaintext value in place seals it with a second, conditional `UpdateItem`.
//!
//! Ids are ObjectIds, which sort by creation time, so "newest first" is a descending query on
//! `id` (`ScanIndexForward = false`) and the cursor is `id < :after`.
//!
//! Writes are single conditional requests, so each is atomic and a failed one changes nothing:
//! `create` is a `PutItem` with `attribute_not_exists(id)`; `update` and `delete` carry
//! `attribute_exists(id) AND ownerId = :owner` (a stranger's webhook looks exactly like a
//! missing one); `record_outcome` is one `UpdateItem` with `ADD` counters on the stats item,
//! which sets `lastDelivery*` only if no later outcome is recorded (outcomes may commit out of
//! order): when that condition fails, a second `UpdateItem` counts without them.
//!
//! The index queries read eventually consistent data (DynamoDB offers nothing else on a GSI), so
//! lists may lag a completed write by a moment; `get` reads consistently.
//!
//! Must not depend on axum or the Lambda runtime; SDK types never leave this module.

pub mod delivery_log;
pub mod health;
pub mod idempotency;
pub mod item;
pub mod notices;

mod error;
mod expr;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, ReturnValue, Select};
use webhooks_core::ports::{
    ListQuery, MAX_WEBHOOKS_PER_BUCKET, Page, StoreError, Subscribers, SubscriptionStore,
    Unreadable,
};
use webhooks_core::sealing::{SecretCipher, is_sealed};
use webhooks_core::webhook::{DeliveryStatus, Secret, Subscriber, Webhook, WebhookPatch};
use webhooks_core::{BucketId, EventType, OwnerId, Timestamp, WebhookId};

use self::error::{condition_failed, corrupt, id_taken, redact, redact_str, unavailable};
use self::expr::SealedPatch;
pub use self::item::FAN_OUT_ATTRIBUTES;
use self::item::{StatsItem, StoredHeaders, SubscriberItem, WebhookItem, attr, stats_id};
use crate::config::DynamoDbConfig;
use crate::kms::KmsKeyRing;

pub use self::delivery_log::{DynamoDbDeliveryLog, FinishScope, RecordInScope};

/// The GSI of an owner's webhooks: HASH `ownerId`, RANGE `id`, keys only.
pub const BY_OWNER_INDEX: &str = "byOwnerKeys";
/// The GSI of a bucket's webhooks: HASH `bucketId`, RANGE `id`, projecting
/// [`FAN_OUT_ATTRIBUTES`].
pub const BY_BUCKET_INDEX: &str = "byBucketFanOut";
/// The owner index of stacks from before the narrow projections (`ALL`), listed from while a
/// stack is between the upgrade's steps (see the module docs).
pub const LEGACY_BY_OWNER_INDEX: &str = "byOwner";

type Item = HashMap<String, AttributeValue>;

/// Webhooks in one DynamoDB table (see the module docs for its design).
#[derive(Debug, Clone)]
pub struct DynamoDbSubscriptionStore {
    client: Client,
    table: String,
    cipher: SecretCipher,
    /// The index an owner's list reads ids from: [`BY_OWNER_INDEX`] unless an upgrade says
    /// otherwise ([`Self::with_owner_index`]).
    owner_index: String,
    /// Set by [`Self::with_delivery_cache`].
    delivery_cache: Option<Arc<DeliveryCache>>,
    /// Set by [`Self::with_fan_out_cache`].
    fan_out_cache: Option<Arc<FanOutCache>>,
}

/// One fan-out query shared by the publishes that need it within a moment (see
/// [`DynamoDbSubscriptionStore::with_fan_out_cache`]).
type SharedFanOut = Arc<tokio::sync::OnceCell<Subscribers>>;

/// `list_for_bucket_event`'s answers of the last `ttl`, per bucket and event.
#[derive(Debug)]
struct FanOutCache {
    ttl: std::time::Duration,
    entries: std::sync::Mutex<HashMap<(BucketId, EventType), (std::time::Instant, SharedFanOut)>>,
}

impl FanOutCache {
    /// Forgets every answer: the next publish reads again (after this instance's own writes).
    fn forget(&self) {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}

/// One webhook read shared by the deliveries that need it within a moment (see
/// [`DynamoDbSubscriptionStore::with_delivery_cache`]).
type SharedRead = Arc<tokio::sync::OnceCell<Option<Webhook>>>;

/// `get_for_delivery`'s reads of the last `ttl`, per webhook.
#[derive(Debug)]
struct DeliveryCache {
    ttl: std::time::Duration,
    entries: std::sync::Mutex<HashMap<WebhookId, (std::time::Instant, SharedRead)>>,
}

impl DynamoDbSubscriptionStore {
    /// A store on `table` through `client` (tests configure the client: endpoint, timeouts,
    /// retries), sealing secrets and header values with `cipher`.
    pub fn new(client: Client, table: impl Into<String>, cipher: SecretCipher) -> Self {
        Self {
            client,
            table: table.into(),
            cipher,
            owner_index: BY_OWNER_INDEX.to_owned(),
            delivery_cache: None,
            fan_out_cache: None,
        }
    }

    /// `list_for_bucket_event` answers from one query per (bucket, event) per `ttl` (the
    /// publishes of an instance to one bucket share a single `Query` of the fan-out index;
    /// concurrent ones wait for it): for the API function, where that query is most of a
    /// publish's read units. Every create, update or delete made through this store forgets
    /// what it holds, so this instance's next publish sees its own writes; a write made through
    /// another instance reaches this one's publishes at most `ttl` later (plus the index's own
    /// lag). A failed query is not kept.
    pub fn with_fan_out_cache(mut self, ttl: std::time::Duration) -> Self {
        self.fan_out_cache = Some(Arc::new(FanOutCache {
            ttl,
            entries: std::sync::Mutex::default(),
        }));
        self
    }

    /// Forgets the fan-out cache's answers (after a write through this store).
    fn forget_fan_outs(&self) {
        if let Some(cache) = &self.fan_out_cache {
            cache.forget();
        }
    }

    /// Lists an owner's webhooks from `index` (HASH `ownerId`, RANGE `id`, any projection)
    /// instead of [`BY_OWNER_INDEX`]: [`LEGACY_BY_OWNER_INDEX`] during the index upgrade.
    pub fn with_owner_index(mut self, index: impl Into<String>) -> Self {
        self.owner_index = index.into();
        self
    }

    /// `get_for_delivery` answers from one read per webhook per `ttl` (the records of a batch
    /// that go to one webhook share a single `GetItem`; concurrent ones wait for it): for the
    /// delivery function, where it is most of the read units. A change to the webhook (disabled,
    /// new url or secret) reaches deliveries at most `ttl` later; `get` and every API read stay
    /// uncached.
    pub fn with_delivery_cache(mut self, ttl: std::time::Duration) -> Self {
        self.delivery_cache = Some(Arc::new(DeliveryCache {
            ttl,
            entries: std::sync::Mutex::default(),
        }));
        self
    }

    /// The webhook item alone, read consistently.
    async fn webhook_item(&self, id: &WebhookId) -> Result<Option<Webhook>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| unavailable("GetItem", e))?;
        match out.item {
            Some(raw) => self.decode(raw).await.map(Some),
            None => Ok(None),
        }
    }

    /// A store built from the shared SDK config and the adapter's config (what the Lambda mains
    /// do at cold start): secrets sealed with data keys of the configured KMS key.
    pub fn from_config(sdk: &SdkConfig, config: &DynamoDbConfig) -> Self {
        let ring = KmsKeyRing::from_config(sdk, config.secrets_key_arn.clone());
        let store = Self::new(
            Client::new(sdk),
            config.table_name.clone(),
            SecretCipher::new(Arc::new(ring)),
        );
        match &config.owner_index {
            Some(index) => store.with_owner_index(index.clone()),
            None => store,
        }
    }

    /// `plaintext` sealed for webhook `id`. A key service that cannot answer (or refuses the
    /// configured key) makes the write `Unavailable`: nothing is written in clear instead.
    async fn seal(&self, id: &WebhookId, plaintext: &str) -> Result<String, StoreError> {
        self.cipher
            .seal(id, plaintext)
            .await
            .map_err(|e| StoreError::Unavailable(format!("sealing a secret of webhook {id}: {e}")))
    }

    /// A stored value of `attribute` in clear (legacy values as they are).
    async fn open(
        &self,
        id: &WebhookId,
        attribute: &'static str,
        stored: &str,
    ) -> Result<String, StoreError> {
        self.cipher.open(id, stored).await.map_err(|e| {
            if e.is_retryable() {
                StoreError::Unavailable(format!("opening `{attribute}` of webhook {id}: {e}"))
            } else {
                corrupt(id.as_str(), format!("attribute `{attribute}`: {e}"))
            }
        })
    }

    /// An item as read back, its sealed values opened, decoded into the domain type (or
    /// `Corrupt`, or `Unavailable` when KMS did not answer).
    async fn decode(&self, raw: Item) -> Result<Webhook, StoreError> {
        let mut item = decode_item(raw)?;
        let raw_id = item.id.clone();
        let id = WebhookId::parse(&raw_id).map_err(|e| corrupt(&raw_id, e))?;
        item.secret = Secret::new(self.open(&id, attr::SECRET, item.secret.expose()).await?);
        if let Some(p) = &item.previous_secret {
            let opened = self.open(&id, attr::PREVIOUS_SECRET, p.expose()).await?;
            item.previous_secret = Some(Secret::new(opened));
        }
        if let Some(h) = &item.headers {
            item.headers = Some(StoredHeaders(self.open(&id, attr::HEADERS, &h.0).await?));
        }
        let secret = item.secret.clone();
        Webhook::try_from(item).map_err(|e| corrupt(&raw_id, redact_str(e.to_string(), &secret)))
    }

    /// `w` as the item to put, its credentials sealed.
    async fn sealed_item(&self, w: &Webhook) -> Result<WebhookItem, StoreError> {
        let mut item = WebhookItem::from(w);
        item.secret = Secret::new(self.seal(&w.id, w.secret.expose()).await?);
        if let Some(p) = &w.previous_secret {
            item.previous_secret = Some(Secret::new(self.seal(&w.id, p.secret.expose()).await?));
        }
        if !w.headers.is_empty() {
            item.headers = Some(StoredHeaders(self.seal(&w.id, &w.headers.to_json()).await?));
        }
        Ok(item)
    }

    /// The sealed forms of what `patch` sets.
    async fn sealed_patch(
        &self,
        id: &WebhookId,
        patch: &WebhookPatch,
    ) -> Result<SealedPatch, StoreError> {
        let mut sealed = SealedPatch::default();
        if let Some(secret) = &patch.secret {
            sealed.secret = Some(self.seal(id, secret.expose()).await?);
        }
        if let Some(Some(p)) = &patch.previous_secret {
            sealed.previous_secret = Some(self.seal(id, p.secret.expose()).await?);
        }
        if let Some(h) = patch.headers.as_ref().filter(|h| !h.is_empty()) {
            sealed.headers = Some(self.seal(id, &h.to_json()).await?);
        }
        Ok(sealed)
    }

    /// Seals the values of `item` (as an update left it) that are still in clear — written
    /// before sealing existed and not replaced by the update. Each is replaced only if it is
    /// still the value read (`#attr = :old`), so a concurrent write is never undone; a lost race
    /// or a failure leaves the value to the next write.
    async fn reseal_legacy(&self, id: &WebhookId, item: &Item) {
        let mut e = expr::Expr::default();
        let (mut set, mut conditions) = (Vec::new(), Vec::new());
        for attribute in [attr::SECRET, attr::PREVIOUS_SECRET, attr::HEADERS] {
            let Some(AttributeValue::S(stored)) = item.get(attribute) else {
                continue;
            };
            if is_sealed(stored) {
                continue;
            }
            let sealed = match self.seal(id, stored).await {
                Ok(sealed) => sealed,
                Err(err) => {
                    tracing::warn!(webhook_id = %id, error = %err, "legacy secret not sealed; the next write will");
                    return;
                }
            };
            let name = e.name(attribute);
            let new = e.value(&format!("{attribute}New"), s(sealed));
            let old = e.value(&format!("{attribute}Old"), s(stored.clone()));
            set.push(format!("{name} = {new}"));
            conditions.push(format!("{name} = {old}"));
        }
        if set.is_empty() {
            return;
        }
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(id)))
            .update_expression(format!("SET {}", set.join(", ")))
            .condition_expression(conditions.join(" AND "))
            .set_expression_attribute_names(Some(e.names))
            .set_expression_attribute_values(Some(e.values))
            .send()
            .await;
        match result {
            Ok(_) => tracing::info!(webhook_id = %id, "legacy plaintext secrets sealed"),
            Err(err) if condition_failed(&err) => {}
            Err(err) => {
                // The message may quote the request's values: name the code only.
                let code = err
                    .as_service_error()
                    .and_then(|e| e.code())
                    .unwrap_or("error");
                tracing::warn!(webhook_id = %id, code, "legacy secret not sealed; the next write will");
            }
        }
    }

    /// The table this store reads and writes.
    pub fn table_name(&self) -> &str {
        &self.table
    }

    fn key(id: &WebhookId) -> Item {
        HashMap::from([(attr::ID.to_owned(), AttributeValue::S(id.to_string()))])
    }

    /// The webhooks `ids` with their stats added in, in the order of `ids`, leaving out any
    /// that no longer exists: their items and stats items read consistently, 50 webhooks (100
    /// keys) per `BatchGetItem`; unprocessed keys (throttling) are asked again.
    async fn webhooks_of(&self, ids: &[WebhookId]) -> Result<Vec<Webhook>, StoreError> {
        let mut found: HashMap<String, Item> = HashMap::new();
        for chunk in ids.chunks(50) {
            let mut keys: Vec<Item> = chunk
                .iter()
                .flat_map(|id| [Self::key(id), stats_key(id.as_str())])
                .collect();
            // DynamoDB always makes progress on a batch, so this ends.
            while !keys.is_empty() {
                let request = KeysAndAttributes::builder()
                    .set_keys(Some(std::mem::take(&mut keys)))
                    .consistent_read(true)
                    .build()
                    .map_err(|e| StoreError::Unavailable(format!("request not built: {e}")))?;
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, request)
                    .send()
                    .await
                    .map_err(|e| unavailable("BatchGetItem", e))?;
                for raw in out
                    .responses
                    .and_then(|mut r| r.remove(&self.table))
                    .unwrap_or_default()
                {
                    if let Some(AttributeValue::S(id)) = raw.get(attr::ID) {
                        found.insert(id.clone(), raw);
                    }
                }
                keys = out
                    .unprocessed_keys
                    .and_then(|mut u| u.remove(&self.table))
                    .map(|k| k.keys)
                    .unwrap_or_default();
            }
        }
        let mut webhooks = Vec::with_capacity(ids.len());
        for id in ids {
            let Some(raw) = found.remove(id.as_str()) else {
                continue;
            };
            let stats = found
                .remove(&stats_id(id.as_str()))
                .map(decode_stats)
                .transpose()?;
            webhooks.push(with_stats(self.decode(raw).await?, stats.as_ref())?);
        }
        Ok(webhooks)
    }

    /// The stats item of `id`, if it has one.
    async fn stats_item(&self, id: &WebhookId) -> Result<Option<StatsItem>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(stats_key(id.as_str())))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| unavailable("GetItem", e))?;
        out.item.map(decode_stats).transpose()
    }

    /// The ids `index` holds under `key_condition`, newest first, following pages until `want`
    /// passed the filter or the index is exhausted. `Limit` counts items *before* the filter, so
    /// a filtered query may need many pages to find `want` matches.
    async fn ids_newest_first(
        &self,
        index: &str,
        key_condition: String,
        filter: Option<String>,
        names: HashMap<String, String>,
        values: Item,
        want: usize,
    ) -> Result<Vec<WebhookId>, StoreError> {
        let mut found = Vec::new();
        let mut start_key: Option<Item> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(index)
                .key_condition_expression(key_condition.clone())
                .set_filter_expression(filter.clone())
                .set_expression_attribute_names(Some(names.clone()))
                .set_expression_attribute_values(Some(values.clone()))
                .scan_index_forward(false)
                .limit(i32::try_from(want).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start_key.take())
                .send()
                .await
                .map_err(|e| unavailable("Query", e))?;
            for raw in out.items.unwrap_or_default() {
                let id = match raw.get(attr::ID) {
                    Some(AttributeValue::S(id)) => id,
                    _ => return Err(corrupt("<no id>", format!("an entry of index {index}"))),
                };
                found.push(WebhookId::parse(id).map_err(|e| corrupt(id, e))?);
            }
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() && found.len() < want => start_key = Some(k),
                _ => return Ok(found),
            }
        }
    }

    /// The fan-out query itself (see [`SubscriptionStore::list_for_bucket_event`]).
    async fn query_subscribers(
        &self,
        bucket: &BucketId,
        event: EventType,
    ) -> Result<Subscribers, StoreError> {
        // The oldest bound-many of the bucket's index entries: `Limit` counts the items read
        // before the filter, so the pages together read at most the bound, active or not.
        let mut found = Subscribers::default();
        let mut read = 0usize;
        let mut start_key: Option<Item> = None;
        while read < MAX_WEBHOOKS_PER_BUCKET {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(BY_BUCKET_INDEX)
                .key_condition_expression("#bucketId = :bucket")
                .filter_expression("#active = :true AND contains(#events, :event)")
                .set_expression_attribute_names(Some(names([
                    attr::BUCKET_ID,
                    attr::ACTIVE,
                    attr::EVENTS,
                ])))
                .expression_attribute_values(":bucket", s(bucket.as_str()))
                .expression_attribute_values(":true", AttributeValue::Bool(true))
                .expression_attribute_values(":event", s(event.as_str()))
                .limit(i32::try_from(MAX_WEBHOOKS_PER_BUCKET - read).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start_key.take())
                .send()
                .await
                .map_err(|e| unavailable("Query", e))?;
            let items = out.items.unwrap_or_default();
            let scanned = usize::try_from(out.scanned_count).unwrap_or(0);
            // At least one per page, so the loop ends whatever the backend reports.
            read += scanned.max(items.len()).max(1);
            for raw in items {
                let id = match raw.get(attr::ID) {
                    Some(AttributeValue::S(id)) => id.clone(),
                    _ => "<no id>".to_owned(),
                };
                // A corrupt entry is skipped and reported.
                match decode_subscriber(raw) {
                    Ok(w) => found.webhooks.push(w),
                    Err(e) => found.unreadable.push(Unreadable::from_error(&id, e)?),
                }
            }
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start_key = Some(k),
                _ => break,
            }
        }
        Ok(found)
    }
}

/// The key of webhook `id`'s stats item.
fn stats_key(id: &str) -> Item {
    HashMap::from([(attr::ID.to_owned(), AttributeValue::S(stats_id(id)))])
}

/// A fan-out index entry as the [`Subscriber`] it holds, or `Corrupt` (it holds no secret, so
/// the message may quote what serde says).
fn decode_subscriber(raw: Item) -> Result<Subscriber, StoreError> {
    let id = match raw.get(attr::ID) {
        Some(AttributeValue::S(id)) => id.clone(),
        _ => "<no id>".to_owned(),
    };
    let item: SubscriberItem = serde_dynamo::from_item(raw).map_err(|e| corrupt(&id, e))?;
    Subscriber::try_from(item).map_err(|e| corrupt(&id, e))
}

/// A stats item as read back, or `Corrupt`.
fn decode_stats(raw: Item) -> Result<StatsItem, StoreError> {
    let id = match raw.get(attr::ID) {
        Some(AttributeValue::S(id)) => id.clone(),
        _ => "<no id>".to_owned(),
    };
    serde_dynamo::from_item(raw).map_err(|e| corrupt(&id, e))
}

/// `w` with the counters of its stats item added in (see [`StatsItem::merge_into`]).
fn with_stats(mut w: Webhook, stats: Option<&StatsItem>) -> Result<Webhook, StoreError> {
    if let Some(stats) = stats {
        stats
            .merge_into(&mut w)
            .map_err(|e| corrupt(&stats.id, e))?;
    }
    Ok(w)
}

/// Gives webhook `id` of `table` its (empty) stats item if it exists and has none; whether the
/// webhook exists. The outcome updates call this when their condition (the stats item exists)
/// failed, then try again.
pub(crate) async fn ensure_stats(
    client: &Client,
    table: &str,
    id: &WebhookId,
) -> Result<bool, StoreError> {
    let out = client
        .get_item()
        .table_name(table)
        .key(attr::ID, AttributeValue::S(id.to_string()))
        .consistent_read(true)
        .send()
        .await
        .map_err(|e| unavailable("GetItem", e))?;
    if out.item.is_none() {
        return Ok(false);
    }
    put_empty_stats(client, table, id).await?;
    Ok(true)
}

/// Creates webhook `id`'s stats item with no counts, unless it has one already (an `UpdateItem`
/// that creates: the delivery function may update webhook items, never put one).
async fn put_empty_stats(client: &Client, table: &str, id: &WebhookId) -> Result<(), StoreError> {
    let zero = AttributeValue::N("0".into());
    match client
        .update_item()
        .table_name(table)
        .key(attr::ID, AttributeValue::S(stats_id(id.as_str())))
        .update_expression("SET #total = :zero, #ok = :zero, #failed = :zero")
        .condition_expression("attribute_not_exists(#id)")
        .expression_attribute_names("#id", attr::ID)
        .expression_attribute_names("#total", attr::TOTAL_DELIVERIES)
        .expression_attribute_names("#ok", attr::SUCCESSFUL_DELIVERIES)
        .expression_attribute_names("#failed", attr::FAILED_DELIVERIES)
        .expression_attribute_values(":zero", zero)
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if condition_failed(&e) => Ok(()),
        Err(e) => Err(unavailable("UpdateItem", e)),
    }
}

/// An item as read back from DynamoDB, as its [`WebhookItem`] (values still sealed) or reported
/// `Corrupt`.
fn decode_item(raw: Item) -> Result<WebhookItem, StoreError> {
    let id = match raw.get(attr::ID) {
        Some(AttributeValue::S(id)) => id.clone(),
        _ => "<no id>".to_owned(),
    };
    // The secret is the only value that must never reach a message: strip it from whatever the
    // decoder says (serde errors may quote values; a legacy item's secret is in clear).
    let secret = match raw.get(attr::SECRET) {
        Some(AttributeValue::S(s) | AttributeValue::N(s)) => Some(Secret::new(s.clone())),
        _ => None,
    };
    let problem = match serde_dynamo::from_item::<_, WebhookItem>(raw) {
        Ok(item) => return Ok(item),
        Err(e) => e.to_string(),
    };
    let problem = match secret {
        Some(secret) => redact_str(problem, &secret),
        None => problem,
    };
    Err(corrupt(&id, problem))
}

fn names<const N: usize>(pairs: [&str; N]) -> HashMap<String, String> {
    pairs
        .into_iter()
        .map(|a| (format!("#{a}"), a.to_owned()))
        .collect()
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

#[async_trait]
impl SubscriptionStore for DynamoDbSubscriptionStore {
    async fn create(&self, webhook: &Webhook) -> Result<(), StoreError> {
        let item: Item = serde_dynamo::to_item(self.sealed_item(webhook).await?).map_err(|e| {
            let problem = redact_str(format!("not encodable: {e}"), &webhook.secret);
            corrupt(webhook.id.as_str(), problem)
        })?;
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#id)")
            .expression_attribute_names("#id", attr::ID)
            .send()
            .await
            .map_err(|e| {
                if condition_failed(&e) {
                    id_taken(&webhook.id)
                } else {
                    redact(unavailable("PutItem", e), &webhook.secret)
                }
            })?;
        self.forget_fan_outs();
        // If this fails, the first outcome puts it (ensure_stats): the webhook is created.
        if let Err(e) = put_empty_stats(&self.client, &self.table, &webhook.id).await {
            tracing::warn!(webhook_id = %webhook.id, error = %e, "stats item not created; the first outcome will create it");
        }
        Ok(())
    }

    async fn get(&self, id: &WebhookId) -> Result<Option<Webhook>, StoreError> {
        let (webhook, stats) = tokio::join!(self.webhook_item(id), self.stats_item(id));
        match webhook? {
            Some(w) => with_stats(w, stats?.as_ref()).map(Some),
            None => Ok(None),
        }
    }

    /// The webhook item alone: its counters are the legacy ones (see the module docs), which the
    /// port allows here, and it saves the stats item's read on every delivery. Through the
    /// delivery cache when there is one.
    async fn get_for_delivery(&self, id: &WebhookId) -> Result<Option<Webhook>, StoreError> {
        let Some(cache) = &self.delivery_cache else {
            return self.webhook_item(id).await;
        };
        let shared = {
            let mut entries = cache.entries.lock().unwrap_or_else(|e| e.into_inner());
            entries.retain(|_, (at, _)| at.elapsed() < cache.ttl);
            entries
                .entry(id.clone())
                .or_insert_with(|| (std::time::Instant::now(), SharedRead::default()))
                .1
                .clone()
        };
        // A failed read leaves the cell empty: the next caller reads again.
        shared
            .get_or_try_init(|| self.webhook_item(id))
            .await
            .cloned()
    }

    async fn list(&self, q: &ListQuery) -> Result<Page, StoreError> {
        let want = q.limit.saturating_add(1);
        let mut values = HashMap::from([(":owner".to_owned(), s(q.owner.as_str()))]);
        let mut names = names([attr::OWNER_ID]);
        // DynamoDB refuses placeholders an expression does not use: add `#id` only with a cursor.
        let after = match &q.after {
            Some(a) => {
                values.insert(":after".to_owned(), s(a.as_str()));
                names.insert("#id".to_owned(), attr::ID.to_owned());
                " AND #id < :after"
            }
            None => "",
        };
        let mut ids = match &q.bucket {
            None => {
                let cond = format!("#ownerId = :owner{after}");
                self.ids_newest_first(&self.owner_index, cond, None, names, values, want)
                    .await?
            }
            Some(bucket) => {
                // The bucket index has the bucket in its key; the owner can only be a filter,
                // which DynamoDB applies after `Limit`, hence the page loop in ids_newest_first.
                values.insert(":bucket".to_owned(), s(bucket.as_str()));
                names.insert("#bucketId".to_owned(), attr::BUCKET_ID.to_owned());
                let cond = format!("#bucketId = :bucket{after}");
                let filter = Some("#ownerId = :owner".to_owned());
                self.ids_newest_first(BY_BUCKET_INDEX, cond, filter, names, values, want)
                    .await?
            }
        };
        let more = ids.len() > q.limit;
        ids.truncate(q.limit);
        // The cursor follows the index, also past a webhook deleted since it was read there.
        let next_after = if more { ids.last().cloned() } else { None };
        let items = self.webhooks_of(&ids).await?;
        Ok(Page { items, next_after })
    }

    async fn list_for_bucket_event(
        &self,
        bucket: &BucketId,
        event: EventType,
    ) -> Result<Subscribers, StoreError> {
        let Some(cache) = &self.fan_out_cache else {
            return self.query_subscribers(bucket, event).await;
        };
        let shared = {
            let mut entries = cache.entries.lock().unwrap_or_else(|e| e.into_inner());
            entries.retain(|_, (at, _)| at.elapsed() < cache.ttl);
            entries
                .entry((bucket.clone(), event))
                .or_insert_with(|| (std::time::Instant::now(), SharedFanOut::default()))
                .1
                .clone()
        };
        // A failed query leaves the cell empty: the next caller queries again.
        shared
            .get_or_try_init(|| self.query_subscribers(bucket, event))
            .await
            .cloned()
    }

    async fn count_in_bucket(&self, bucket: &BucketId, up_to: usize) -> Result<usize, StoreError> {
        // `Select COUNT` with `Limit`: DynamoDB counts index entries without returning them,
        // and stops after `up_to`.
        let mut count = 0usize;
        let mut start_key: Option<Item> = None;
        while count < up_to {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(BY_BUCKET_INDEX)
                .key_condition_expression("#bucketId = :bucket")
                .set_expression_attribute_names(Some(names([attr::BUCKET_ID])))
                .expression_attribute_values(":bucket", s(bucket.as_str()))
                .select(Select::Count)
                .limit(i32::try_from(up_to - count).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start_key.take())
                .send()
                .await
                .map_err(|e| unavailable("Query", e))?;
            count += usize::try_from(out.count).unwrap_or(0);
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start_key = Some(k),
                _ => break,
            }
        }
        Ok(count)
    }

    async fn update(
        &self,
        owner: &OwnerId,
        id: &WebhookId,
        patch: &WebhookPatch,
        now: Timestamp,
    ) -> Result<Webhook, StoreError> {
        let sealed = self.sealed_patch(id, patch).await?;
        let mut e = expr::patch_update(patch, &sealed, now);
        let condition = expr::owned_by(&mut e, owner.as_str());
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(id)))
            .update_expression(e.expression)
            .condition_expression(condition)
            .set_expression_attribute_names(Some(e.names))
            .set_expression_attribute_values(Some(e.values))
            .return_values(ReturnValue::AllNew)
            .send()
            .await
            .map_err(|err| {
                if condition_failed(&err) {
                    return StoreError::NotFound;
                }
                let err = unavailable("UpdateItem", err);
                match &patch.secret {
                    Some(secret) => redact(err, secret),
                    None => err,
                }
            })?;
        self.forget_fan_outs();
        let webhook = match out.attributes {
            Some(attributes) if !attributes.is_empty() => {
                self.reseal_legacy(id, &attributes).await;
                self.decode(attributes).await?
            }
            _ => return Err(corrupt(id.as_str(), "UpdateItem returned no attributes")),
        };
        with_stats(webhook, self.stats_item(id).await?.as_ref())
    }

    async fn delete(&self, owner: &OwnerId, id: &WebhookId) -> Result<(), StoreError> {
        let mut e = expr::Expr::default();
        let condition = expr::owned_by(&mut e, owner.as_str());
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(id)))
            .condition_expression(condition)
            .set_expression_attribute_names(Some(e.names))
            .set_expression_attribute_values(Some(e.values))
            .send()
            .await
            .map_err(|err| {
                if condition_failed(&err) {
                    StoreError::NotFound
                } else {
                    unavailable("DeleteItem", err)
                }
            })?;
        self.forget_fan_outs();
        // The webhook is gone; a stats item left behind (this failing) is never read again.
        if let Err(e) = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(stats_key(id.as_str())))
            .send()
            .await
        {
            tracing::warn!(webhook_id = %id, error = %unavailable("DeleteItem", e), "stats item of a deleted webhook not removed");
        }
        Ok(())
    }

    async fn record_outcome(
        &self,
        id: &WebhookId,
        status: DeliveryStatus,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        // As the delivery log's `finish`: in full; counting only when a newer outcome is
        // recorded; and once more in full after giving a webhook without one its stats item.
        let mut ensured = false;
        let mut part = expr::OutcomePart::CountAndLatest;
        loop {
            let (e, condition) = expr::outcome_update(status, at, part);
            let result = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(stats_key(id.as_str())))
                .update_expression(e.expression)
                .condition_expression(condition)
                .set_expression_attribute_names(Some(e.names))
                .set_expression_attribute_values(Some(e.values))
                .send()
                .await;
            match result {
                Ok(_) => return Ok(()),
                Err(err) if condition_failed(&err) => {
                    if part == expr::OutcomePart::CountAndLatest {
                        part = expr::OutcomePart::CountOnly;
                        continue;
                    }
                    // No stats item: a webhook from before stats items, or none at all.
                    if ensured || !ensure_stats(&self.client, &self.table, id).await? {
                        return Err(StoreError::NotFound);
                    }
                    ensured = true;
                    part = expr::OutcomePart::CountAndLatest;
                }
                Err(err) => return Err(unavailable("UpdateItem", err)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item_of(w: &Webhook) -> Item {
        serde_dynamo::to_item(WebhookItem::from(w)).expect("encode")
    }

    /// A store whose client is never called (decoding a plaintext item asks no key service).
    fn offline_store() -> DynamoDbSubscriptionStore {
        let config = aws_sdk_dynamodb::Config::builder()
            .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
            .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
            .build();
        let key = webhooks_core::sealing::DataKey::fingerprinted(&[9; 32]).unwrap();
        DynamoDbSubscriptionStore::new(Client::from_conf(config), "t", SecretCipher::with_key(key))
    }

    #[tokio::test]
    async fn an_undecodable_item_is_corrupt_and_its_message_never_quotes_the_secret() {
        // GIVEN an item whose `events` quotes the secret, and one with `active` as a string
        let owner = OwnerId::parse("user_1").unwrap();
        let bucket = BucketId::parse("507f1f77bcf86cd799439011").unwrap();
        let w = webhooks_core::conformance::sample_webhook(&owner, &bucket, 1_700_000_000);
        let mut quoting = item_of(&w);
        quoting.insert(
            "events".into(),
            AttributeValue::L(vec![s("your_webhook_secret")]),
        );
        let mut mistyped = item_of(&w);
        mistyped.insert("active".into(), s("your_webhook_secret"));
        let store = offline_store();
        for raw in [quoting, mistyped] {
            // WHEN decoded
            let err = store.decode(raw).await.expect_err("must not decode");
            // THEN it is Corrupt, names the webhook, and the secret is redacted
            let msg = err.to_string();
            assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
            assert!(msg.contains(w.id.as_str()), "{msg}");
            assert!(!msg.contains("your_webhook_secret"), "{msg}");
        }
        // AND a sound item decodes to the webhook
        assert_eq!(store.decode(item_of(&w)).await.expect("decode"), w);
    }
}
