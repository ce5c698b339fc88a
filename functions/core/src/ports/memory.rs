//! An in-process [`SubscriptionStore`] for unit tests of the core and the router. It is never
//! the only test of anything a user meets: the SQLite and DynamoDB adapters have their own.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;

use super::{ListQuery, Page, StoreError, SubscriptionStore};
use crate::webhook::{DeliveryStatus, Webhook, WebhookPatch};
use crate::{BucketId, EventType, OwnerId, Timestamp, WebhookId};

#[derive(Debug, Default)]
pub struct MemoryStore {
    webhooks: Mutex<BTreeMap<WebhookId, Webhook>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<WebhookId, Webhook>> {
        self.webhooks.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl SubscriptionStore for MemoryStore {
    async fn create(&self, webhook: &Webhook) -> Result<(), StoreError> {
        let mut map = self.lock();
        if map.contains_key(&webhook.id) {
            return Err(StoreError::Conflict(format!(
                "webhook {} exists",
                webhook.id
            )));
        }
        map.insert(webhook.id.clone(), webhook.clone());
        Ok(())
    }

    async fn get(&self, id: &WebhookId) -> Result<Option<Webhook>, StoreError> {
        Ok(self.lock().get(id).cloned())
    }

    async fn list(&self, q: &ListQuery) -> Result<Page, StoreError> {
        let map = self.lock();
        let mut items: Vec<Webhook> = map
            .values()
            .rev()
            .filter(|w| w.owner_id == q.owner)
            .filter(|w| q.bucket.as_ref().is_none_or(|b| &w.bucket_id == b))
            .filter(|w| q.after.as_ref().is_none_or(|a| &w.id < a))
            .take(q.limit + 1)
            .cloned()
            .collect();
        let more = items.len() > q.limit;
        items.truncate(q.limit);
        let next_after = if more {
            items.last().map(|w| w.id.clone())
        } else {
            None
        };
        Ok(Page { items, next_after })
    }

    async fn list_for_bucket_event(
        &self,
        bucket: &BucketId,
        event: EventType,
    ) -> Result<Vec<Webhook>, StoreError> {
        Ok(self
            .lock()
            .values()
            .filter(|w| &w.bucket_id == bucket && w.active && w.subscribes_to(event))
            .cloned()
            .collect())
    }

    async fn update(
        &self,
        owner: &OwnerId,
        id: &WebhookId,
        patch: &WebhookPatch,
        now: Timestamp,
    ) -> Result<Webhook, StoreError> {
        let mut map = self.lock();
        let w = map
            .get_mut(id)
            .filter(|w| &w.owner_id == owner)
            .ok_or(StoreError::NotFound)?;
        patch.apply(w, now);
        Ok(w.clone())
    }

    async fn delete(&self, owner: &OwnerId, id: &WebhookId) -> Result<(), StoreError> {
        let mut map = self.lock();
        match map.get(id) {
            Some(w) if &w.owner_id == owner => {
                map.remove(id);
                Ok(())
            }
            _ => Err(StoreError::NotFound),
        }
    }

    async fn record_outcome(
        &self,
        id: &WebhookId,
        status: DeliveryStatus,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        let mut map = self.lock();
        let w = map.get_mut(id).ok_or(StoreError::NotFound)?;
        w.stats.total_deliveries += 1;
        match status {
            DeliveryStatus::Success => w.stats.successful_deliveries += 1,
            DeliveryStatus::Failed => w.stats.failed_deliveries += 1,
        }
        w.last_delivery_at = Some(at);
        w.last_delivery_status = Some(status);
        Ok(())
    }
}
