//! `WebhookService`: the use cases behind `/api/webhooks`. It validates input, enforces who may
//! see and change what, and calls the store. Ownership rule (DESIGN.md §3): a webhook belongs to
//! the `sub` that created it; to anyone else it does not exist (`NotFound`, never "forbidden").

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::filter::Filter;
use crate::ports::{Clock, ListQuery, Page, StoreError, SubscriptionStore};
use crate::validate::{CreateWebhook, UpdateWebhook, UrlPolicy, ValidationError};
use crate::webhook::{DeliveryStats, PreviousSecret, Secret, Webhook, WebhookPatch};

pub use crate::ports::MAX_WEBHOOKS_PER_BUCKET;
/// Most webhooks one user may have in all.
pub const MAX_WEBHOOKS_PER_OWNER: usize = 500;

/// How long a rotated-out secret keeps signing by default.
pub const DEFAULT_ROTATION_GRACE_SECONDS: i64 = 24 * 3600;
/// The longest grace period a rotation may ask for.
pub const MAX_ROTATION_GRACE_SECONDS: i64 = 7 * 24 * 3600;
use crate::{BucketId, OwnerId, WebhookId};

/// Who is calling: the token's `sub` and the buckets it may use.
///
/// Bucket scope (DESIGN.md §3) applies to every use case: a webhook in a bucket the caller may
/// not use does not exist for it ([`Caller::sees`]), lists show only allowed buckets, and
/// creating or publishing in another bucket is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub owner: OwnerId,
    /// `Some(list)`: only these buckets (an empty list: none). `None`: any bucket — only for a
    /// token without a `buckets` claim on a deployment that opted into open buckets.
    pub buckets: Option<Vec<BucketId>>,
}

impl Caller {
    /// The caller a verified token stands for. Fail closed: a token without a `buckets` claim
    /// may use no bucket, unless the deployment opts into open buckets (`open_buckets`; the
    /// local mode's development setup does, production deployments do not by default).
    pub fn from_token(owner: OwnerId, claimed: Option<Vec<BucketId>>, open_buckets: bool) -> Self {
        let buckets = match claimed {
            Some(list) => Some(list),
            None if open_buckets => None,
            None => Some(Vec::new()),
        };
        Self { owner, buckets }
    }

    /// Whether the caller may use `bucket`. Never the reserved bucket of notification endpoints
    /// ([`crate::notify::NOTIFICATIONS_BUCKET`]): they are reached through `/api/notifications`.
    pub fn may_use(&self, bucket: &BucketId) -> bool {
        bucket.as_str() != crate::notify::NOTIFICATIONS_BUCKET
            && self.buckets.as_ref().is_none_or(|b| b.contains(bucket))
    }

    /// Whether `webhook` exists for this caller: its own, in a bucket it may use.
    pub fn sees(&self, webhook: &Webhook) -> bool {
        webhook.owner_id == self.owner && self.may_use(&webhook.bucket_id)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error("bucket {0} is not one this token may use")]
    BucketForbidden(BucketId),
    #[error("webhook not found")]
    NotFound,
    /// The bucket holds [`MAX_WEBHOOKS_PER_BUCKET`] webhooks (all owners together).
    #[error("bucket {0} holds {MAX_WEBHOOKS_PER_BUCKET} webhooks, the most a bucket may have")]
    BucketFull(BucketId),
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ServiceError::NotFound,
            other => ServiceError::Store(other),
        }
    }
}

/// `POST /api/webhooks/{id}/filter-test` body.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FilterTest {
    /// A sample event, as a producer would publish it (the bucket is the webhook's).
    pub event: SampleEvent,
    /// A filter to try instead of the stored one (not saved).
    #[schema(value_type = Option<crate::filter::FilterSchema>)]
    pub filter: Option<serde_json::Value>,
}

/// An event as `POST /api/events` takes it, without `bucketId`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SampleEvent {
    /// `alert.triggered`, `data.received` or `bucket.updated`.
    #[schema(example = "data.received")]
    pub event: String,
    /// The event's data (an object).
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
    /// RFC 3339; defaults to now.
    pub timestamp: Option<String>,
}

/// `POST /api/webhooks/{id}/filter-test` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FilterTestResult {
    /// Whether the event would be delivered: `subscribed` and `filterMatches`.
    pub matches: bool,
    /// Whether the webhook subscribes to the event's type.
    pub subscribed: bool,
    /// Whether the event passes the filter (true without one).
    pub filter_matches: bool,
}

#[derive(Clone)]
pub struct WebhookService {
    store: Arc<dyn SubscriptionStore>,
    clock: Arc<dyn Clock>,
    policy: UrlPolicy,
}

impl std::fmt::Debug for WebhookService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookService")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl WebhookService {
    pub fn new(
        store: Arc<dyn SubscriptionStore>,
        clock: Arc<dyn Clock>,
        policy: UrlPolicy,
    ) -> Self {
        Self {
            store,
            clock,
            policy,
        }
    }

    pub fn store(&self) -> &Arc<dyn SubscriptionStore> {
        &self.store
    }

    pub fn policy(&self) -> UrlPolicy {
        self.policy
    }

    /// Creates a webhook. The returned webhook carries its secret (given or generated): the
    /// create response is the one place it is shown.
    pub async fn create(
        &self,
        caller: &Caller,
        body: CreateWebhook,
    ) -> Result<Webhook, ServiceError> {
        let new = body.validate(self.policy)?;
        if !caller.may_use(&new.bucket_id) {
            return Err(ServiceError::BucketForbidden(new.bucket_id));
        }
        // The bucket's bound counts every owner's webhooks: a shared bucket's fan-out (what one
        // publish reads and queues) must have a ceiling, whoever creates them. Checked by
        // counting before the create and again after it (below), since creates are rare.
        if self
            .store
            .count_in_bucket(&new.bucket_id, MAX_WEBHOOKS_PER_BUCKET)
            .await?
            >= MAX_WEBHOOKS_PER_BUCKET
        {
            return Err(ServiceError::BucketFull(new.bucket_id));
        }
        if self.count_up_to(caller, MAX_WEBHOOKS_PER_OWNER).await? >= MAX_WEBHOOKS_PER_OWNER {
            return Err(ValidationError::new(
                "limit_exceeded",
                format!("at most {MAX_WEBHOOKS_PER_OWNER} webhooks per user; delete one first"),
            )
            .into());
        }
        let now = self.clock.now();
        let webhook = Webhook {
            id: WebhookId::generate(now.unix()),
            owner_id: caller.owner.clone(),
            bucket_id: new.bucket_id,
            url: new.url,
            events: new.events,
            description: new.description,
            active: new.active,
            retry_config: new.retry_config,
            secret: new.secret.unwrap_or_else(Secret::generate),
            previous_secret: None,
            format: new.format,
            filter: new.filter,
            headers: new.headers,
            rate_limit: new.rate_limit,
            stats: DeliveryStats::default(),
            last_delivery_at: None,
            last_delivery_status: None,
            failing_since: None,
            disabled_reason: None,
            created_at: now,
            updated_at: now,
        };
        self.store.create(&webhook).await?;
        // Creates racing for the bucket's last places may all have passed the first count: any
        // that finds the bucket over its bound takes its webhook back (so racers may all be
        // refused, and a retry then fits; never more than the bound stay).
        let held = self
            .store
            .count_in_bucket(&webhook.bucket_id, MAX_WEBHOOKS_PER_BUCKET + 1)
            .await?;
        if held > MAX_WEBHOOKS_PER_BUCKET {
            self.store.delete(&webhook.owner_id, &webhook.id).await?;
            return Err(ServiceError::BucketFull(webhook.bucket_id));
        }
        Ok(webhook)
    }

    /// How many webhooks the caller has, counting no further than `max`.
    async fn count_up_to(&self, caller: &Caller, max: usize) -> Result<usize, ServiceError> {
        let mut count = 0;
        let mut after = None;
        while count < max {
            let query = ListQuery {
                owner: caller.owner.clone(),
                bucket: None,
                after,
                limit: 100,
            };
            let page = self.store.list(&query).await?;
            count += page.items.len();
            match page.next_after {
                Some(a) => after = Some(a),
                None => break,
            }
        }
        Ok(count)
    }

    /// The caller's webhooks, newest first; only `bucket`'s when given, and only in buckets the
    /// caller may use.
    pub async fn list(
        &self,
        caller: &Caller,
        bucket: Option<BucketId>,
        after: Option<WebhookId>,
        limit: usize,
    ) -> Result<Page, ServiceError> {
        if let Some(b) = bucket.as_ref().filter(|b| !caller.may_use(b)) {
            return Err(ServiceError::BucketForbidden(b.clone()));
        }
        let query = |bucket: Option<BucketId>, after: Option<WebhookId>, limit: usize| ListQuery {
            owner: caller.owner.clone(),
            bucket,
            after,
            limit,
        };
        let allowed = match (&caller.buckets, bucket) {
            (_, Some(b)) => return Ok(self.store.list(&query(Some(b), after, limit)).await?),
            (None, None) => None,
            (Some(allowed), None) => Some(allowed.as_slice()),
        };
        match allowed {
            Some([]) => Ok(Page {
                items: Vec::new(),
                next_after: None,
            }),
            Some([only]) => Ok(self
                .store
                .list(&query(Some(only.clone()), after, limit))
                .await?),
            // Several buckets, or any bucket but the reserved one of notification endpoints:
            // walk the owner's list (at most MAX_WEBHOOKS_PER_OWNER items) and keep the
            // allowed ones, so a page is full unless the list ends.
            _ => {
                let mut items: Vec<Webhook> = Vec::with_capacity(limit);
                let mut cursor = after;
                loop {
                    let page = self.store.list(&query(None, cursor, 100)).await?;
                    for w in page
                        .items
                        .into_iter()
                        .filter(|w| caller.may_use(&w.bucket_id))
                    {
                        if items.len() == limit {
                            let next_after = items.last().map(|w| w.id.clone());
                            return Ok(Page { items, next_after });
                        }
                        items.push(w);
                    }
                    match page.next_after {
                        Some(a) => cursor = Some(a),
                        None => {
                            return Ok(Page {
                                items,
                                next_after: None,
                            });
                        }
                    }
                }
            }
        }
    }

    pub async fn get(&self, caller: &Caller, id: &WebhookId) -> Result<Webhook, ServiceError> {
        match self.store.get(id).await? {
            Some(w) if caller.sees(&w) => Ok(w),
            _ => Err(ServiceError::NotFound),
        }
    }

    /// For owner-scoped writes: a caller limited to some buckets first proves the webhook is in
    /// one of them (a webhook's bucket never changes, so the check cannot go stale).
    async fn check_scope(&self, caller: &Caller, id: &WebhookId) -> Result<(), ServiceError> {
        if caller.buckets.is_some() {
            self.get(caller, id).await?;
        }
        Ok(())
    }

    pub async fn update(
        &self,
        caller: &Caller,
        id: &WebhookId,
        mut body: UpdateWebhook,
    ) -> Result<Webhook, ServiceError> {
        let headers = body.headers_change()?;
        let mut patch = body.validate(self.policy)?;
        match headers {
            Some(change) => {
                // Values are write-only, so a change names only what it sets or removes; the
                // rest comes from the stored webhook (read in scope). Two concurrent header
                // edits: the last one wins.
                let current = self.get(caller, id).await?;
                patch.headers = Some(change.apply(&current.headers)?);
            }
            None => self.check_scope(caller, id).await?,
        }
        Ok(self
            .store
            .update(&caller.owner, id, &patch, self.clock.now())
            .await?)
    }

    /// Replaces the secret (with `new`, or a generated one) and keeps the old one signing for
    /// `grace_seconds` (0–7 days; default 24 h) so receivers can switch without a gap. The
    /// returned webhook carries the new secret: the response is the one place it is shown.
    pub async fn rotate_secret(
        &self,
        caller: &Caller,
        id: &WebhookId,
        new: Option<String>,
        grace_seconds: Option<i64>,
    ) -> Result<Webhook, ServiceError> {
        let grace = grace_seconds.unwrap_or(DEFAULT_ROTATION_GRACE_SECONDS);
        if !(0..=MAX_ROTATION_GRACE_SECONDS).contains(&grace) {
            return Err(ValidationError::new(
                "invalid_grace",
                "graceSeconds must be 0 to 604800 (7 days)",
            )
            .into());
        }
        let secret = new
            .map(crate::validate::validate_secret)
            .transpose()?
            .unwrap_or_else(Secret::generate);
        let current = self.get(caller, id).await?;
        if current.secret == secret {
            return Err(ValidationError::new(
                "invalid_secret",
                "the new secret must differ from the current one",
            )
            .into());
        }
        let now = self.clock.now();
        let previous = (grace > 0).then(|| PreviousSecret {
            secret: current.secret.clone(),
            expires_at: crate::Timestamp::from_unix(now.unix() + grace),
        });
        let patch = WebhookPatch {
            secret: Some(secret),
            previous_secret: Some(previous),
            ..Default::default()
        };
        Ok(self.store.update(&caller.owner, id, &patch, now).await?)
    }

    /// Whether `body.event` would be delivered to the webhook: its type is subscribed and it
    /// passes the filter — the stored one, or `body.filter` when given (to try a filter before
    /// saving it). Nothing is stored or queued.
    pub async fn filter_test(
        &self,
        caller: &Caller,
        id: &WebhookId,
        body: FilterTest,
    ) -> Result<FilterTestResult, ServiceError> {
        let webhook = self.get(caller, id).await?;
        let filter = match body.filter {
            Some(f) => Some(Filter::parse(f)?),
            None => webhook.filter.clone(),
        };
        let now = self.clock.now();
        let sample = crate::delivery_service::PublishEvent {
            bucket_id: webhook.bucket_id.to_string(),
            event: body.event.event,
            data: body.event.data,
            timestamp: body.event.timestamp,
        }
        .validate(now)?;
        let env = crate::delivery::envelope(
            sample.event,
            sample.timestamp,
            &webhook.id,
            &webhook.bucket_id,
            &crate::DeliveryId::generate(now.unix()),
            sample.data,
        );
        let filter_matches = filter.as_ref().is_none_or(|f| f.matches(&env));
        let subscribed = webhook.subscribes_to(sample.event);
        Ok(FilterTestResult {
            matches: subscribed && filter_matches,
            subscribed,
            filter_matches,
        })
    }

    pub async fn delete(&self, caller: &Caller, id: &WebhookId) -> Result<(), ServiceError> {
        self.check_scope(caller, id).await?;
        Ok(self.store.delete(&caller.owner, id).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Timestamp;
    use crate::ports::memory::MemoryStore;
    use crate::time::FixedClock;

    fn service() -> (WebhookService, Arc<MemoryStore>) {
        let store = Arc::new(MemoryStore::new());
        let clock = Arc::new(FixedClock::at(
            Timestamp::parse("2024-01-15T10:30:00Z").unwrap(),
        ));
        (
            WebhookService::new(store.clone(), clock, UrlPolicy::PRODUCTION),
            store,
        )
    }

    fn caller(sub: &str) -> Caller {
        Caller {
            owner: OwnerId::parse(sub).unwrap(),
            buckets: None,
        }
    }

    fn body() -> CreateWebhook {
        serde_json::from_value(serde_json::json!({
            "bucketId": "507f1f77bcf86cd799439011",
            "url": "https://your-server.com/webhook",
            "events": ["alert.triggered", "data.received"],
            "secret": "your_webhook_secret"
        }))
        .unwrap()
    }

    #[tokio::test]
    async fn the_guides_webhook_is_created_with_defaults_and_zero_stats() {
        let (svc, _) = service();
        let w = svc.create(&caller("alice"), body()).await.unwrap();
        assert_eq!(w.secret.expose(), "your_webhook_secret");
        assert!(w.active);
        assert_eq!(w.retry_config, crate::webhook::RetryConfig::default());
        assert_eq!(w.stats, DeliveryStats::default());
        assert_eq!(w.created_at.to_rfc3339(), "2024-01-15T10:30:00Z");
    }

    #[tokio::test]
    async fn other_owners_webhooks_do_not_exist_for_the_caller() {
        let (svc, store) = service();
        let w = svc.create(&caller("alice"), body()).await.unwrap();
        let bob = caller("bob");
        assert!(matches!(
            svc.get(&bob, &w.id).await,
            Err(ServiceError::NotFound)
        ));
        assert!(matches!(
            svc.delete(&bob, &w.id).await,
            Err(ServiceError::NotFound)
        ));
        let patch = UpdateWebhook {
            active: Some(false),
            ..Default::default()
        };
        assert!(matches!(
            svc.update(&bob, &w.id, patch).await,
            Err(ServiceError::NotFound)
        ));
        assert!(
            svc.list(&bob, None, None, 10)
                .await
                .unwrap()
                .items
                .is_empty()
        );
        assert!(
            store.get(&w.id).await.unwrap().unwrap().active,
            "bob changed alice's webhook"
        );
    }

    #[tokio::test]
    async fn a_bucket_holds_at_most_the_bound_of_webhooks_of_all_owners_together() {
        // GIVEN a bucket filled by two users
        let (svc, store) = service();
        let (alice, bob) = (caller("alice"), caller("bob"));
        for i in 0..MAX_WEBHOOKS_PER_BUCKET {
            let who = if i % 2 == 0 { &alice } else { &bob };
            svc.create(who, body()).await.unwrap();
        }
        // WHEN a third user (or either of them) creates one more there
        for who in [caller("carol"), alice.clone()] {
            let err = svc.create(&who, body()).await.unwrap_err();
            // THEN it is refused and nothing is stored
            assert!(matches!(err, ServiceError::BucketFull(_)), "{err:?}");
        }
        assert_eq!(store.len(), MAX_WEBHOOKS_PER_BUCKET);
        // Another bucket is not affected; a deleted one frees a place.
        let mut other = body();
        other.bucket_id = "507f1f77bcf86cd799439099".into();
        svc.create(&caller("carol"), other).await.unwrap();
        let first = svc.list(&alice, None, None, 1).await.unwrap().items[0]
            .id
            .clone();
        svc.delete(&alice, &first).await.unwrap();
        svc.create(&caller("carol"), body()).await.unwrap();
    }

    #[tokio::test]
    async fn a_create_that_finds_the_bucket_over_its_bound_takes_its_webhook_back() {
        // GIVEN a bucket one short of full, and a racing create that lands between this
        // create's first count and its insert (simulated: the store holds one more afterwards)
        let (svc, store) = service();
        let alice = caller("alice");
        for _ in 0..MAX_WEBHOOKS_PER_BUCKET - 1 {
            svc.create(&alice, body()).await.unwrap();
        }
        let racing = RacingStore {
            inner: store.clone(),
            racer: std::sync::Mutex::new(Some(crate::conformance::sample_webhook(
                &OwnerId::parse("bob").unwrap(),
                &BucketId::parse("507f1f77bcf86cd799439011").unwrap(),
                1_700_000_000,
            ))),
        };
        let svc = WebhookService::new(
            Arc::new(racing),
            Arc::new(FixedClock::at(Timestamp::from_unix(1_705_314_600))),
            UrlPolicy::PRODUCTION,
        );
        // WHEN alice creates the 100th
        let err = svc.create(&alice, body()).await.unwrap_err();
        // THEN she is refused and the bucket holds the bound, not one more
        assert!(matches!(err, ServiceError::BucketFull(_)), "{err:?}");
        assert_eq!(store.len(), MAX_WEBHOOKS_PER_BUCKET);
    }

    /// A store where another create lands right after this one's first count.
    struct RacingStore {
        inner: Arc<MemoryStore>,
        racer: std::sync::Mutex<Option<Webhook>>,
    }

    #[async_trait::async_trait]
    impl SubscriptionStore for RacingStore {
        async fn create(&self, w: &Webhook) -> Result<(), StoreError> {
            let racer = self.racer.lock().unwrap().take();
            if let Some(r) = racer {
                self.inner.create(&r).await?;
            }
            self.inner.create(w).await
        }
        async fn get(&self, id: &WebhookId) -> Result<Option<Webhook>, StoreError> {
            self.inner.get(id).await
        }
        async fn list(&self, q: &ListQuery) -> Result<Page, StoreError> {
            self.inner.list(q).await
        }
        async fn list_for_bucket_event(
            &self,
            b: &BucketId,
            e: crate::EventType,
        ) -> Result<crate::ports::Subscribers, StoreError> {
            self.inner.list_for_bucket_event(b, e).await
        }
        async fn count_in_bucket(&self, b: &BucketId, up_to: usize) -> Result<usize, StoreError> {
            self.inner.count_in_bucket(b, up_to).await
        }
        async fn update(
            &self,
            o: &OwnerId,
            id: &WebhookId,
            p: &WebhookPatch,
            now: Timestamp,
        ) -> Result<Webhook, StoreError> {
            self.inner.update(o, id, p, now).await
        }
        async fn delete(&self, o: &OwnerId, id: &WebhookId) -> Result<(), StoreError> {
            self.inner.delete(o, id).await
        }
        async fn record_outcome(
            &self,
            id: &WebhookId,
            s: crate::webhook::DeliveryStatus,
            at: Timestamp,
        ) -> Result<(), StoreError> {
            self.inner.record_outcome(id, s, at).await
        }
    }

    #[tokio::test]
    async fn a_bucket_outside_the_tokens_buckets_is_refused_and_nothing_stored() {
        let (svc, store) = service();
        let limited = Caller {
            owner: OwnerId::parse("alice").unwrap(),
            buckets: Some(vec![BucketId::parse("507f1f77bcf86cd799439099").unwrap()]),
        };
        assert!(matches!(
            svc.create(&limited, body()).await,
            Err(ServiceError::BucketForbidden(_))
        ));
        assert!(store.is_empty());
    }

    fn limited(sub: &str, buckets: &[&str]) -> Caller {
        Caller::from_token(
            OwnerId::parse(sub).unwrap(),
            Some(
                buckets
                    .iter()
                    .map(|b| BucketId::parse(b).unwrap())
                    .collect(),
            ),
            /* open_buckets */ false,
        )
    }

    #[test]
    fn a_token_without_buckets_may_use_none_unless_the_deployment_opens_them() {
        let owner = OwnerId::parse("alice").unwrap();
        let bucket = BucketId::parse("507f1f77bcf86cd799439011").unwrap();
        let closed = Caller::from_token(owner.clone(), None, /* open_buckets */ false);
        assert!(!closed.may_use(&bucket));
        let open = Caller::from_token(owner.clone(), None, /* open_buckets */ true);
        assert!(open.may_use(&bucket));
        // A claim always wins, open or not.
        let claimed = Caller::from_token(owner, Some(vec![]), /* open_buckets */ true);
        assert!(!claimed.may_use(&bucket));
    }

    #[tokio::test]
    async fn a_webhook_outside_the_callers_buckets_does_not_exist_for_it() {
        // GIVEN alice's webhook in bucket ...011, and alice's token limited to bucket ...099
        let (svc, store) = service();
        let w = svc.create(&caller("alice"), body()).await.unwrap();
        let other = limited("alice", &["507f1f77bcf86cd799439099"]);
        // WHEN/THEN every use case answers NotFound and nothing changes
        assert!(matches!(
            svc.get(&other, &w.id).await,
            Err(ServiceError::NotFound)
        ));
        let patch = UpdateWebhook {
            active: Some(false),
            ..Default::default()
        };
        assert!(matches!(
            svc.update(&other, &w.id, patch).await,
            Err(ServiceError::NotFound)
        ));
        assert!(matches!(
            svc.rotate_secret(&other, &w.id, None, Some(0)).await,
            Err(ServiceError::NotFound)
        ));
        assert!(matches!(
            svc.delete(&other, &w.id).await,
            Err(ServiceError::NotFound)
        ));
        assert_eq!(store.get(&w.id).await.unwrap().unwrap(), w);
        assert!(
            svc.list(&other, None, None, 10)
                .await
                .unwrap()
                .items
                .is_empty()
        );
        // The right bucket sees it.
        let right = limited("alice", &["507f1f77bcf86cd799439011"]);
        assert_eq!(svc.get(&right, &w.id).await.unwrap().id, w.id);
    }

    #[tokio::test]
    async fn an_unfiltered_list_pages_through_the_allowed_buckets_only() {
        // GIVEN 7 webhooks in each of 3 buckets
        let (svc, _) = service();
        let alice = caller("alice");
        let buckets = [
            "507f1f77bcf86cd799439011",
            "507f1f77bcf86cd799439022",
            "507f1f77bcf86cd799439033",
        ];
        for i in 0..21 {
            let mut b = body();
            b.bucket_id = buckets[i % 3].into();
            svc.create(&alice, b).await.unwrap();
        }
        // WHEN a token for two of them lists 5 at a time
        let two = limited("alice", &buckets[..2]);
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = svc.list(&two, None, after, 5).await.unwrap();
            assert!(page.items.len() == 5 || page.next_after.is_none());
            seen.extend(page.items);
            match page.next_after {
                Some(a) => after = Some(a),
                None => break,
            }
        }
        // THEN it sees exactly the 14 of those two buckets, newest first, none twice
        assert_eq!(seen.len(), 14);
        assert!(seen.iter().all(|w| w.bucket_id.to_string() != buckets[2]));
        assert!(seen.windows(2).all(|p| p[0].id > p[1].id));
        // A token with no buckets sees nothing.
        assert!(
            svc.list(&limited("alice", &[]), None, None, 100)
                .await
                .unwrap()
                .items
                .is_empty()
        );
    }
}
