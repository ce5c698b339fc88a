//! Idempotent publishing (DESIGN.md §8): `POST /api/events` with an `Idempotency-Key`.
//!
//! A producer that publishes at least once (MQTT QoS 1, SQS, Lambda retries) sends the same
//! request again after a timeout or a crash. With a key, the repeat does not queue the events a
//! second time:
//!
//! - The key (1–[`MAX_KEY_CHARS`] printable ASCII characters) is scoped to the producer (the
//!   token's `sub`) and kept [`KEY_TTL_SECS`] (24 h) from the first request.
//! - The first request **claims** the key ([`IdempotencyStore::insert_or_get`], a conditional
//!   write) with a hash of the request ([`request_hash`]: every event's bucket, name, data and
//!   timestamp, objects with their keys sorted) and a lease of [`LEASE_SECS`], publishes, and
//!   stores its answer on the record.
//! - A repeat with the same body gets the original answer (same `deliveryId`s) and queues
//!   nothing. A repeat with another body: `422 idempotency_key_reused`. A repeat while the
//!   first is still running (lease not over): `409 idempotency_key_in_progress` with
//!   `Retry-After` ([`RETRY_AFTER_SECS`]), as Stripe answers; the producer tries again.
//! - Delivery ids of a keyed publish are not random: [`delivery_id`] derives each from the
//!   producer, the key, the record's creation time, the event's index and the webhook. So a
//!   repeat after a part-way failure — an answer `207`/`503` naming `notQueued` deliveries, or a
//!   process that died mid-publish (its lease runs out) — rebuilds exactly the same deliveries
//!   and queues **only the missing ones**: the `notQueued` ones of the stored answer; after a
//!   crash (no answer stored) all of them again through
//!   [`DeliveryQueue::enqueue_new_by`](crate::ports::DeliveryQueue::enqueue_new_by), which the
//!   embedded queue makes a no-op for a delivery id it already holds or has delivered, and
//!   which on SQS may queue a second copy of one the dead process had queued: that copy carries
//!   the same `deliveryId` and is counted once in the stats (the final marker is keyed by
//!   delivery), and receivers deduplicate on `deliveryId` (at-least-once, DESIGN.md §4).
//!
//! **The guarantee**: within 24 h, every publish of one (producer, key, body) yields one set of
//! deliveries with one set of `deliveryId`s, whatever the number of repeats, concurrent or not;
//! each is counted once in its webhook's stats. The set is fixed by the first publish that
//! reached the queue: webhooks created later get none of it; a webhook deleted or disabled in
//! between gets nothing (its pending deliveries are dropped, as always).
//!
//! The decision ([`decide`]) is here; the stores only keep records (conditional writes on the
//! record's `version`): `MemoryIdempotencyStore` for unit tests, SQLite in the local mode,
//! DynamoDB items with a TTL on AWS.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::delivery_service::{PublishEvent, QueuedDelivery};
use crate::ports::StoreError;
use crate::validate::ValidationError;
use crate::{DeliveryId, EventType, OwnerId, Timestamp, WebhookId};

/// Longest `Idempotency-Key`, in characters (Stripe's limit).
pub const MAX_KEY_CHARS: usize = 255;
/// How long a key is remembered from its first request.
pub const KEY_TTL_SECS: i64 = 24 * 3600;
/// How long a request that claimed a key may run before a repeat takes over: longer than the
/// API function's timeout (15 s, `template.yaml`), after which nobody can still be working on it.
pub const LEASE_SECS: i64 = 20;
/// `Retry-After` of a `409 idempotency_key_in_progress`: a publish takes milliseconds, seldom
/// more than the queue's time budget.
pub const RETRY_AFTER_SECS: u64 = 1;

/// A validated `Idempotency-Key`: 1–255 printable ASCII characters (space to `~`).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        if s.is_empty() || s.len() > MAX_KEY_CHARS || !s.bytes().all(|b| (0x20..=0x7e).contains(&b))
        {
            return Err(ValidationError::new(
                "invalid_idempotency_key",
                format!(
                    "Idempotency-Key must be 1 to {MAX_KEY_CHARS} printable ASCII characters \
                     (got {} bytes)",
                    s.len()
                ),
            ));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for IdempotencyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IdempotencyKey({:?})", self.0)
    }
}

impl TryFrom<String> for IdempotencyKey {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s).map_err(|e| e.message)
    }
}

impl From<IdempotencyKey> for String {
    fn from(k: IdempotencyKey) -> String {
        k.0
    }
}

/// The hash a repeat is compared with: SHA-256 (hex) of the events as published — bucket,
/// event name, data and timestamp of each, in order — with object keys sorted, so the same
/// events match whatever the key order or whitespace, and one event sent alone or as a batch
/// of one match too.
pub fn request_hash(events: &[PublishEvent]) -> String {
    let canonical: Vec<Value> = events
        .iter()
        .map(|e| {
            Value::Array(vec![
                Value::String(e.bucket_id.clone()),
                Value::String(e.event.clone()),
                sorted(&e.data),
                e.timestamp.clone().map_or(Value::Null, Value::String),
            ])
        })
        .collect();
    hex::encode(Sha256::digest(Value::Array(canonical).to_string()))
}

fn sorted(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), sorted(&m[k])))
                    .collect(),
            )
        }
        Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

/// The delivery id of event `index` to `webhook` in the keyed publish of (`scope`, `key`)
/// first claimed at `created_at`: an ObjectId (it sorts by time like generated ones) of the
/// creation time's 4 bytes and 8 bytes of SHA-256 over the rest. Repeats rebuild the same ids.
pub fn delivery_id(
    scope: &OwnerId,
    key: &IdempotencyKey,
    created_at: Timestamp,
    index: usize,
    webhook: &WebhookId,
) -> DeliveryId {
    let mut h = Sha256::new();
    for part in [
        scope.as_str(),
        key.as_str(),
        &index.to_string(),
        webhook.as_str(),
    ] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    let digest = h.finalize();
    let mut bytes = [0u8; 12];
    let secs = created_at.unix().clamp(0, u32::MAX as i64) as u32;
    bytes[..4].copy_from_slice(&secs.to_be_bytes());
    bytes[4..].copy_from_slice(&digest[..8]);
    DeliveryId::parse(&hex::encode(bytes)).unwrap_or_else(|_| unreachable!("24 hex characters"))
}

/// A fixed-size name for (`scope`, `key`), for stores that key records by one string (the
/// DynamoDB item's partition key): 32 hex characters of SHA-256 over both, length-prefixed, so
/// ("ab", "c") and ("a", "bc") differ.
pub fn storage_id(scope: &OwnerId, key: &IdempotencyKey) -> String {
    let mut h = Sha256::new();
    for part in [scope.as_str(), key.as_str()] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    hex::encode(&h.finalize()[..16])
}

/// One delivery of a keyed publish, as stored: the event's index and the webhook (its id and
/// event name follow from them), written `"<index>:<webhookId>"` to keep records small (a
/// publish may make 100 events × 100 webhooks; a DynamoDB item holds 400 KB).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Planned {
    pub index: usize,
    pub webhook: WebhookId,
}

impl Serialize for Planned {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{}:{}", self.index, self.webhook))
    }
}

impl<'de> Deserialize<'de> for Planned {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let (i, w) = s
            .split_once(':')
            .ok_or_else(|| serde::de::Error::custom("expected <index>:<webhookId>"))?;
        Ok(Planned {
            index: i.parse().map_err(serde::de::Error::custom)?,
            webhook: WebhookId::parse(w).map_err(serde::de::Error::custom)?,
        })
    }
}

/// What a keyed publish answered: the events' names (by index), the deliveries confirmed as
/// queued, and those not confirmed (empty once everything is queued).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredAnswer {
    pub events: Vec<EventType>,
    pub queued: Vec<Planned>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_queued: Vec<Planned>,
}

/// Where a key stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "camelCase")]
pub enum KeyState {
    /// A request is publishing; a repeat before `until` gets `409`, after it takes over.
    InProgress { until: Timestamp },
    /// Answered: in full (`not_queued` empty: repeats replay it), or in part (repeats queue the
    /// missing deliveries).
    Done { answer: StoredAnswer },
}

/// One (producer, key) and what became of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IdempotencyRecord {
    pub scope: OwnerId,
    pub key: IdempotencyKey,
    pub request_hash: String,
    /// The time base of its delivery ids and of events published without a timestamp.
    pub created_at: Timestamp,
    /// `created_at` + 24 h: the record is ignored from then on (and pruned).
    pub expires_at: Timestamp,
    /// 1 when created, one more on each replace: the condition of every write.
    pub version: u64,
    pub state: KeyState,
}

impl IdempotencyRecord {
    /// A fresh claim at `now`.
    pub fn claim(
        scope: &OwnerId,
        key: &IdempotencyKey,
        request_hash: String,
        now: Timestamp,
    ) -> Self {
        Self {
            scope: scope.clone(),
            key: key.clone(),
            request_hash,
            created_at: now,
            expires_at: Timestamp::from_unix(now.unix() + KEY_TTL_SECS),
            version: 1,
            state: KeyState::InProgress {
                until: Timestamp::from_unix(now.unix() + LEASE_SECS),
            },
        }
    }

    /// The record as JSON, the form both stores keep it in.
    pub fn to_json(&self) -> Result<String, StoreError> {
        serde_json::to_string(self)
            .map_err(|e| StoreError::Corrupt(format!("idempotency record: {e}")))
    }

    /// A record from [`to_json`](Self::to_json)'s JSON (`Corrupt` if it is not one).
    pub fn from_json(json: &str) -> Result<Self, StoreError> {
        serde_json::from_str(json)
            .map_err(|e| StoreError::Corrupt(format!("idempotency record: {e}")))
    }

    /// Whether it still counts at `now`.
    pub fn is_live(&self, now: Timestamp) -> bool {
        now < self.expires_at
    }

    /// The next version of this record in `state`.
    pub fn next(&self, state: KeyState) -> Self {
        Self {
            version: self.version + 1,
            state,
            ..self.clone()
        }
    }

    /// The delivery id of a planned delivery of this publish.
    pub fn delivery_id(&self, p: &Planned) -> DeliveryId {
        delivery_id(&self.scope, &self.key, self.created_at, p.index, &p.webhook)
    }

    /// The answer's deliveries with their ids: (queued, not queued).
    pub fn deliveries(&self, answer: &StoredAnswer) -> (Vec<QueuedDelivery>, Vec<QueuedDelivery>) {
        let q = |p: &Planned| QueuedDelivery {
            delivery_id: self.delivery_id(p),
            webhook_id: p.webhook.clone(),
            event: answer
                .events
                .get(p.index)
                .copied()
                .unwrap_or(EventType::DataReceived),
        };
        (
            answer.queued.iter().map(q).collect(),
            answer.not_queued.iter().map(q).collect(),
        )
    }
}

/// What a request with a key already on record gets.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// The same request was answered in full: answer it again, queue nothing.
    Replay(StoredAnswer),
    /// The same request was answered in part, or its publisher died (lease over): take the key
    /// over and queue what is missing.
    TakeOver,
    /// The same request is being published now: `409` with `Retry-After`.
    InProgress,
    /// Another request used this key: `422`.
    Reused,
}

/// The one decision for a repeat: `existing` is the live record of (producer, key).
pub fn decide(existing: &IdempotencyRecord, request_hash: &str, now: Timestamp) -> Decision {
    if existing.request_hash != request_hash {
        return Decision::Reused;
    }
    match &existing.state {
        KeyState::InProgress { until } if now < *until => Decision::InProgress,
        KeyState::InProgress { .. } => Decision::TakeOver,
        KeyState::Done { answer } if answer.not_queued.is_empty() => {
            Decision::Replay(answer.clone())
        }
        KeyState::Done { .. } => Decision::TakeOver,
    }
}

/// Where idempotency records live.
///
/// Contract for every adapter (checked by `conformance::idempotency_store`):
/// - Records are keyed by (`scope`, `key`). A record whose `expires_at` is not after the new
///   record's `created_at` (the caller's clock) is treated as absent by `insert_or_get`
///   (DynamoDB's TTL deletes late, so the adapters compare the times themselves).
/// - `insert_or_get` is one conditional write: it stores `record` if no live record of its
///   (scope, key) exists (replacing an expired one) and answers `None`, or answers the live one
///   and changes nothing. Of concurrent calls for one key, exactly one gets `None`.
/// - `replace` stores `record` only if the stored live record has version `expected`
///   (`record.version` is `expected + 1`); `Ok(false)` when it does not (someone else wrote).
/// - `remove` deletes the record if its version is `expected`; otherwise it does nothing.
#[async_trait]
pub trait IdempotencyStore: Send + Sync + 'static {
    async fn insert_or_get(
        &self,
        record: &IdempotencyRecord,
    ) -> Result<Option<IdempotencyRecord>, StoreError>;

    async fn replace(&self, record: &IdempotencyRecord, expected: u64) -> Result<bool, StoreError>;

    async fn remove(
        &self,
        scope: &OwnerId,
        key: &IdempotencyKey,
        expected: u64,
    ) -> Result<(), StoreError>;
}

impl std::fmt::Debug for dyn IdempotencyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IdempotencyStore")
    }
}

/// An in-process [`IdempotencyStore`] for unit tests (and the default of a `DeliveryService`
/// built without a store: keys then hold per process only; both deployments wire theirs).
#[derive(Debug, Default)]
pub struct MemoryIdempotencyStore {
    records: Mutex<HashMap<(OwnerId, IdempotencyKey), IdempotencyRecord>>,
}

impl MemoryIdempotencyStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<(OwnerId, IdempotencyKey), IdempotencyRecord>> {
        self.records.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl IdempotencyStore for MemoryIdempotencyStore {
    async fn insert_or_get(
        &self,
        record: &IdempotencyRecord,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        let mut map = self.lock();
        let k = (record.scope.clone(), record.key.clone());
        match map.get(&k) {
            Some(existing) if existing.is_live(record.created_at) => Ok(Some(existing.clone())),
            _ => {
                map.insert(k, record.clone());
                Ok(None)
            }
        }
    }

    async fn replace(&self, record: &IdempotencyRecord, expected: u64) -> Result<bool, StoreError> {
        let mut map = self.lock();
        let k = (record.scope.clone(), record.key.clone());
        match map.get(&k) {
            Some(existing) if existing.version == expected => {
                map.insert(k, record.clone());
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn remove(
        &self,
        scope: &OwnerId,
        key: &IdempotencyKey,
        expected: u64,
    ) -> Result<(), StoreError> {
        let mut map = self.lock();
        let k = (scope.clone(), key.clone());
        if map.get(&k).is_some_and(|r| r.version == expected) {
            map.remove(&k);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(s: &str) -> OwnerId {
        OwnerId::parse(s).unwrap()
    }

    fn key(s: &str) -> IdempotencyKey {
        IdempotencyKey::parse(s).unwrap()
    }

    fn ev(data: Value) -> PublishEvent {
        PublishEvent {
            bucket_id: "507f1f77bcf86cd799439011".into(),
            event: "data.received".into(),
            data,
            timestamp: None,
        }
    }

    #[test]
    fn keys_are_1_to_255_printable_ascii_characters() {
        for ok in ["a", "order-42 retry", &"x".repeat(255), "~!@#$%^&*()"] {
            assert!(IdempotencyKey::parse(ok).is_ok(), "{ok:?}");
        }
        for bad in [
            "",
            &"x".repeat(256),
            "tab\there",
            "new\nline",
            "é",
            "\u{7f}",
        ] {
            let e = IdempotencyKey::parse(bad).unwrap_err();
            assert_eq!(e.code, "invalid_idempotency_key", "{bad:?}");
        }
    }

    #[test]
    fn the_hash_ignores_key_order_but_not_values_buckets_or_timestamps() {
        let a = ev(serde_json::json!({"a": 1, "b": {"x": [1, {"q": 2, "p": 3}]}}));
        let b = ev(serde_json::json!({"b": {"x": [1, {"p": 3, "q": 2}]}, "a": 1}));
        let ha = request_hash(std::slice::from_ref(&a));
        assert_eq!(ha, request_hash(&[b]));
        let c = ev(serde_json::json!({"a": 2, "b": {"x": [1, {"q": 2, "p": 3}]}}));
        assert_ne!(ha, request_hash(&[c]));
        let mut other_bucket = a.clone();
        other_bucket.bucket_id = "507f1f77bcf86cd799439012".into();
        assert_ne!(ha, request_hash(&[other_bucket]));
        let mut stamped = a.clone();
        stamped.timestamp = Some("2024-01-15T10:30:00Z".into());
        assert_ne!(ha, request_hash(&[stamped]));
        assert_ne!(ha, request_hash(&[a.clone(), a]));
    }

    #[test]
    fn keyed_delivery_ids_are_stable_time_ordered_and_distinct() {
        let (u, k) = (owner("producer-1"), key("k-1"));
        let w1 = WebhookId::parse("507f1f77bcf86cd799439011").unwrap();
        let w2 = WebhookId::parse("507f1f77bcf86cd799439012").unwrap();
        let t = Timestamp::from_unix(1_700_000_000);
        let id = delivery_id(&u, &k, t, 0, &w1);
        assert_eq!(id, delivery_id(&u, &k, t, 0, &w1));
        assert!(
            id.as_str()
                .starts_with(&format!("{:08x}", 1_700_000_000u32))
        );
        let others = [
            delivery_id(&u, &k, t, 1, &w1),
            delivery_id(&u, &k, t, 0, &w2),
            delivery_id(&owner("producer-2"), &k, t, 0, &w1),
            delivery_id(&u, &key("k-2"), t, 0, &w1),
            delivery_id(&u, &k, Timestamp::from_unix(1_700_000_001), 0, &w1),
        ];
        for o in others {
            assert_ne!(o, id);
        }
        // Length-prefixed parts: ("ab", "c") and ("a", "bc") are different scopes and keys.
        assert_ne!(
            delivery_id(&owner("ab"), &key("c"), t, 0, &w1),
            delivery_id(&owner("a"), &key("bc"), t, 0, &w1)
        );
    }

    fn record(state: KeyState) -> IdempotencyRecord {
        IdempotencyRecord {
            state,
            ..IdempotencyRecord::claim(
                &owner("p"),
                &key("k"),
                "h1".into(),
                Timestamp::from_unix(1_000),
            )
        }
    }

    #[test]
    fn a_repeat_is_replayed_refused_told_to_wait_or_takes_over() {
        let w = WebhookId::parse("507f1f77bcf86cd799439011").unwrap();
        let full = StoredAnswer {
            events: vec![EventType::DataReceived],
            queued: vec![Planned {
                index: 0,
                webhook: w.clone(),
            }],
            not_queued: vec![],
        };
        let partial = StoredAnswer {
            not_queued: vec![Planned {
                index: 0,
                webhook: w,
            }],
            queued: vec![],
            ..full.clone()
        };
        let at = Timestamp::from_unix;
        let running = record(KeyState::InProgress { until: at(1_020) });
        assert_eq!(decide(&running, "h1", at(1_019)), Decision::InProgress);
        assert_eq!(decide(&running, "h1", at(1_020)), Decision::TakeOver);
        assert_eq!(decide(&running, "h2", at(1_001)), Decision::Reused);
        let done = record(KeyState::Done {
            answer: full.clone(),
        });
        assert_eq!(decide(&done, "h1", at(1_001)), Decision::Replay(full));
        assert_eq!(decide(&done, "h2", at(1_001)), Decision::Reused);
        let part = record(KeyState::Done { answer: partial });
        assert_eq!(decide(&part, "h1", at(1_001)), Decision::TakeOver);
        assert_eq!(decide(&part, "h2", at(1_001)), Decision::Reused);
    }

    #[test]
    fn records_round_trip_as_json_compactly() {
        let w = WebhookId::parse("507f1f77bcf86cd799439011").unwrap();
        let r = record(KeyState::Done {
            answer: StoredAnswer {
                events: vec![EventType::AlertTriggered],
                queued: vec![Planned {
                    index: 7,
                    webhook: w,
                }],
                not_queued: vec![],
            },
        });
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.contains("\"7:507f1f77bcf86cd799439011\""), "{json}");
        assert_eq!(serde_json::from_str::<IdempotencyRecord>(&json).unwrap(), r);
        assert!(serde_json::from_str::<Planned>("\"x:507f1f77bcf86cd799439011\"").is_err());
        assert!(serde_json::from_str::<IdempotencyKey>("\"\"").is_err());
    }

    #[tokio::test]
    async fn the_memory_store_keeps_the_contract() {
        tests_support::check(&MemoryIdempotencyStore::new()).await;
    }
}

/// The [`IdempotencyStore`] contract as checks, for every adapter's tests.
#[cfg(any(test, feature = "conformance"))]
pub mod tests_support {
    use super::*;

    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

    /// Runs the contract's checks against `store` (fresh scopes, so stores may be shared);
    /// panics with the failing check.
    pub async fn check(store: &dyn IdempotencyStore) {
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let scope = OwnerId::parse(&format!("conformance-{}-{n}", std::process::id())).unwrap();
        let key = IdempotencyKey::parse("key 1/ascii ~!").unwrap();
        let now = Timestamp::from_unix(1_800_000_000);
        let first = IdempotencyRecord::claim(&scope, &key, "h".into(), now);

        // The first claim stores; a second one answers the stored record unchanged.
        assert_eq!(store.insert_or_get(&first).await.unwrap(), None);
        let again = IdempotencyRecord::claim(&scope, &key, "other".into(), now);
        assert_eq!(
            store.insert_or_get(&again).await.unwrap(),
            Some(first.clone())
        );

        // Another producer's same key is another record.
        let other_scope = OwnerId::parse(&format!("{scope}-other")).unwrap();
        let theirs = IdempotencyRecord::claim(&other_scope, &key, "h".into(), now);
        assert_eq!(store.insert_or_get(&theirs).await.unwrap(), None);

        // replace is conditional on the version.
        let done = first.next(KeyState::Done {
            answer: StoredAnswer {
                events: vec![EventType::DataReceived],
                queued: vec![Planned {
                    index: 0,
                    webhook: WebhookId::parse("507f1f77bcf86cd799439011").unwrap(),
                }],
                not_queued: vec![],
            },
        });
        assert!(!store.replace(&done, 7).await.unwrap(), "wrong version");
        assert!(store.replace(&done, 1).await.unwrap());
        assert!(!store.replace(&done, 1).await.unwrap(), "stale version");
        assert_eq!(
            store.insert_or_get(&again).await.unwrap(),
            Some(done.clone())
        );

        // remove is conditional on the version too.
        store.remove(&scope, &key, 1).await.unwrap();
        assert_eq!(
            store.insert_or_get(&again).await.unwrap(),
            Some(done.clone())
        );
        store.remove(&scope, &key, 2).await.unwrap();
        assert_eq!(store.insert_or_get(&again).await.unwrap(), None);

        // An expired record counts as absent: a claim after 24 h replaces it.
        let old_key = IdempotencyKey::parse("expired").unwrap();
        let old = IdempotencyRecord::claim(
            &scope,
            &old_key,
            "h".into(),
            Timestamp::from_unix(now.unix() - KEY_TTL_SECS - 1),
        );
        assert_eq!(store.insert_or_get(&old).await.unwrap(), None);
        let fresh = IdempotencyRecord::claim(&scope, &old_key, "new".into(), now);
        assert_eq!(store.insert_or_get(&fresh).await.unwrap(), None);
        assert_eq!(
            store.insert_or_get(&fresh).await.unwrap(),
            Some(fresh.clone())
        );
    }
}
