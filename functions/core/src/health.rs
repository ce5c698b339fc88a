//! The circuit breaker per webhook (DESIGN.md §7) and the `health` a webhook shows.
//!
//! After [`FAILURES_TO_OPEN`] consecutive failed attempts (a timeout, a connection error, a 5xx)
//! the breaker opens for [`FIRST_OPEN`], doubling each time a probe fails, up to [`MAX_OPEN`].
//! While it is open, deliveries are deferred: nothing is sent and no attempt is used. When the
//! open period is over, the first receipt becomes the probe: it re-arms the breaker for the same
//! period (so the other receipts keep waiting) and is sent; its answer closes the breaker
//! (healthy) or opens it again, twice as long. Any answer below 500 (a 2xx, but also a 4xx: the
//! receiver is up) closes it; a refused target (policy) changes nothing.
//!
//! The state is written only on transitions — never for a delivery to a healthy webhook — to a
//! [`HealthStore`] of its own (not the webhook item, nor any index projected from it: the
//! DynamoDB deliveries table or the SQLite `webhook_health` table), and read through
//! [`Breaker`]'s per-instance cache of [`HEALTH_CACHE_TTL`] (one read per webhook per second
//! however many records of a batch ask at once). Every transition is a
//! compare-and-set on the state it was made from ([`HealthStore::replace`]), so two instances
//! cannot both claim the probe of one open period, and a failure another instance counted first
//! is counted again on the fresh state rather than lost. An instance may still send on a
//! cached "closed" for up to the cache's second after another opened the breaker; the breaker
//! is a flow control, not a lock, and never blocks a delivery when its store is unavailable.
//! Adapters: `MemoryHealth` (tests), the embedded `SqliteHealthStore`, and on AWS
//! `DynamoDbHealthStore` (an item per webhook in the deliveries table).
//!
//! Must not depend on the AWS SDK, the Lambda runtime or an HTTP server.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::FutureExt;
use serde::{Deserialize, Serialize};

use crate::ports::{SendError, SenderResponse, StoreError};
use crate::shared_read::SharedReads;
use crate::{Timestamp, WebhookId};

/// Consecutive failed attempts that open the breaker.
pub const FAILURES_TO_OPEN: u32 = 5;
/// How long the breaker first stays open.
pub const FIRST_OPEN: Duration = Duration::from_secs(30);
/// The longest it stays open (the period doubles while probes fail).
pub const MAX_OPEN: Duration = Duration::from_secs(600);
/// How long an instance trusts the health it read.
pub const HEALTH_CACHE_TTL: Duration = Duration::from_secs(1);
/// The longest `lastError` kept.
pub const MAX_HEALTH_ERROR_CHARS: usize = 300;
/// How many times [`Breaker::record`] makes its transition again after losing a race: enough
/// for a Lambda instance's whole batch to one webhook failing at once (10, each race won by one).
const RECORD_TRIES: u32 = 16;

/// `health.state` as the API shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum HealthState {
    /// Its last attempt was answered (or it never failed).
    Healthy,
    /// Its last attempts failed, fewer than [`FAILURES_TO_OPEN`] in a row.
    Degraded,
    /// The breaker is open: deliveries wait, then one probe decides.
    Open,
}

/// A webhook's breaker state, as stored and as the API shows it (`health`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookHealth {
    pub state: HealthState,
    /// When the webhook entered this state.
    pub since: Timestamp,
    /// Failed attempts in a row (0 when healthy).
    pub consecutive_failures: u32,
    /// The last failed attempt's error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// While open: deliveries wait until then; the first after it is the probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_until: Option<Timestamp>,
    /// While open: the current open period, in seconds (doubles per failed probe).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub open_seconds: u64,
    /// Whether the last failure was a timeout (the webhook is slow, not refusing).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub timing_out: bool,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl WebhookHealth {
    /// The stored form (JSON): deterministic, so adapters may compare it for a
    /// compare-and-set.
    pub fn to_json(&self) -> Result<String, StoreError> {
        serde_json::to_string(self).map_err(|e| StoreError::Corrupt(format!("webhook health: {e}")))
    }

    /// Reads the stored form of `webhook`'s health.
    pub fn from_json(webhook: &WebhookId, json: &str) -> Result<Self, StoreError> {
        serde_json::from_str(json)
            .map_err(|e| StoreError::Corrupt(format!("webhook health of {webhook}: {e}")))
    }

    /// The health of a webhook without a record: healthy since `since`.
    pub fn healthy(since: Timestamp) -> Self {
        Self {
            state: HealthState::Healthy,
            since,
            consecutive_failures: 0,
            last_error: None,
            open_until: None,
            open_seconds: 0,
            timing_out: false,
        }
    }
}

/// How one attempt ended, for the breaker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptClass {
    /// The receiver answered below 500: it is up.
    Answered,
    /// A timeout, a connection error or a 5xx.
    Failed { error: String, timeout: bool },
    /// Says nothing about the receiver (a target refused by policy).
    Neutral,
}

impl AttemptClass {
    /// Classifies a send's result.
    pub fn of(result: &Result<SenderResponse, SendError>) -> Self {
        match result {
            Ok(r) if r.status < 500 => AttemptClass::Answered,
            Ok(r) => AttemptClass::Failed {
                error: format!("receiver answered HTTP {}", r.status),
                timeout: false,
            },
            Err(SendError::Refused(_)) => AttemptClass::Neutral,
            Err(e) => AttemptClass::Failed {
                error: e.to_string(),
                timeout: matches!(e, SendError::Timeout(_)),
            },
        }
    }
}

/// What the breaker says about sending now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    /// Closed (healthy or degraded): send.
    Send,
    /// Open, its period over: send this one as the probe, after storing `rearmed` (the breaker
    /// re-armed for one more period, so other receipts keep waiting for the probe's answer).
    Probe { rearmed: WebhookHealth },
    /// Open: defer for `wait`.
    Wait { wait: Duration },
}

/// The gate for a webhook with `health` at `now`.
pub fn gate(health: Option<&WebhookHealth>, now: Timestamp) -> Gate {
    let Some(h) = health.filter(|h| h.state == HealthState::Open) else {
        return Gate::Send;
    };
    let until = h.open_until.unwrap_or(now);
    if until.unix() > now.unix() {
        return Gate::Wait {
            wait: Duration::from_secs((until.unix() - now.unix()) as u64),
        };
    }
    let period = h.open_seconds.max(FIRST_OPEN.as_secs());
    Gate::Probe {
        rearmed: WebhookHealth {
            open_until: Some(Timestamp::from_unix(now.unix() + period as i64)),
            ..h.clone()
        },
    }
}

/// The health after an attempt classified `class`, when it changes (a transition to store);
/// `None` when nothing changes (a healthy webhook answering: no write).
pub fn after_attempt(
    health: Option<&WebhookHealth>,
    class: &AttemptClass,
    now: Timestamp,
) -> Option<WebhookHealth> {
    match class {
        AttemptClass::Neutral => None,
        AttemptClass::Answered => match health {
            Some(h) if h.state != HealthState::Healthy || h.consecutive_failures > 0 => {
                Some(WebhookHealth {
                    last_error: h.last_error.clone(),
                    ..WebhookHealth::healthy(now)
                })
            }
            _ => None,
        },
        AttemptClass::Failed { error, timeout } => {
            let prev = health.cloned();
            let failures = prev
                .as_ref()
                .map_or(0, |h| h.consecutive_failures)
                .saturating_add(1);
            let last_error = Some(error.chars().take(MAX_HEALTH_ERROR_CHARS).collect());
            let was_open = prev.as_ref().is_some_and(|h| h.state == HealthState::Open);
            if was_open || failures >= FAILURES_TO_OPEN {
                let period = match prev.as_ref().filter(|_| was_open) {
                    // A failed probe (or a failure while open): twice as long, capped.
                    Some(h) => {
                        (h.open_seconds.max(FIRST_OPEN.as_secs()) * 2).min(MAX_OPEN.as_secs())
                    }
                    None => FIRST_OPEN.as_secs(),
                };
                Some(WebhookHealth {
                    state: HealthState::Open,
                    since: prev.as_ref().filter(|_| was_open).map_or(now, |h| h.since),
                    consecutive_failures: failures,
                    last_error,
                    open_until: Some(Timestamp::from_unix(now.unix() + period as i64)),
                    open_seconds: period,
                    timing_out: *timeout,
                })
            } else {
                Some(WebhookHealth {
                    state: HealthState::Degraded,
                    since: prev
                        .as_ref()
                        .filter(|h| h.state == HealthState::Degraded)
                        .map_or(now, |h| h.since),
                    consecutive_failures: failures,
                    last_error,
                    open_until: None,
                    open_seconds: 0,
                    timing_out: *timeout,
                })
            }
        }
    }
}

/// Where breaker states live: one small record per webhook, apart from the webhook itself.
///
/// Contract (checked against every adapter by `tests_support::check`): `get` answers `None`
/// for a webhook without a record (healthy); `replace` stores `health` only when the stored
/// record is still `expected` (`None`: no record), answers whether it did, and changes nothing
/// otherwise — a compare-and-set, so two instances that saw the same state cannot both make a
/// transition from it (one probe, not one per instance); `put` replaces the record whatever it
/// was (tests and repairs); `delete` of a missing record is not an error. Written only on
/// transitions, so no write per successful delivery. `get_recent` may answer a state up to a
/// moment old (DynamoDB: an eventually consistent read, half the read units): what the
/// breaker's gate reads through its cache, which is that old anyway; a compare-and-set that
/// lost reads `get`.
#[async_trait]
pub trait HealthStore: Send + Sync + 'static {
    async fn get(&self, webhook: &WebhookId) -> Result<Option<WebhookHealth>, StoreError>;
    async fn get_recent(&self, webhook: &WebhookId) -> Result<Option<WebhookHealth>, StoreError> {
        self.get(webhook).await
    }
    async fn replace(
        &self,
        webhook: &WebhookId,
        expected: Option<&WebhookHealth>,
        health: &WebhookHealth,
    ) -> Result<bool, StoreError>;
    async fn put(&self, webhook: &WebhookId, health: &WebhookHealth) -> Result<(), StoreError>;
    async fn delete(&self, webhook: &WebhookId) -> Result<(), StoreError>;
}

impl std::fmt::Debug for dyn HealthStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HealthStore")
    }
}

/// The breaker of one instance (a Lambda instance, the local process): the [`HealthStore`]
/// behind a cache of [`HEALTH_CACHE_TTL`] whose reads are shared (one read per webhook however
/// many of a batch's records ask at once: [`SharedReads`]). Cheap to clone; clones share the
/// cache.
#[derive(Clone)]
pub struct Breaker {
    store: Arc<dyn HealthStore>,
    cache: Arc<SharedReads<Option<WebhookHealth>>>,
}

impl std::fmt::Debug for Breaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Breaker")
            .field("cache", &self.cache)
            .finish()
    }
}

impl Breaker {
    pub fn new(store: Arc<dyn HealthStore>) -> Self {
        Self {
            store,
            cache: Arc::new(SharedReads::new(HEALTH_CACHE_TTL)),
        }
    }

    /// The health of `webhook`, from the cache when fresh (or from the read another record
    /// started). A store failure reads as healthy (logged): the breaker never holds deliveries
    /// back because its own store is down.
    pub async fn get(&self, webhook: &WebhookId) -> Option<WebhookHealth> {
        let (store, id) = (self.store.clone(), webhook.clone());
        let read =
            move || async move { store.get_recent(&id).await.map_err(|e| e.to_string()) }.boxed();
        match self.cache.get_or_read(webhook, read).await {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(error = %e, %webhook, "reading the breaker state failed; sending");
                None
            }
        }
    }

    /// Claims the probe of an open breaker whose period is over: stores `rearmed` if the state
    /// is still `current`. `Ok(rearmed)`: this receipt is the probe. `Err(fresh)`: another
    /// instance made a transition first (its probe is under way, or it closed the breaker); the
    /// caller decides again from `fresh`. A store failure lets the probe go (logged): the
    /// breaker never holds deliveries back because its own store is down.
    pub async fn claim_probe(
        &self,
        webhook: &WebhookId,
        current: &WebhookHealth,
        rearmed: WebhookHealth,
    ) -> Result<WebhookHealth, Option<WebhookHealth>> {
        match self.store.replace(webhook, Some(current), &rearmed).await {
            Ok(true) => {}
            Ok(false) => return Err(self.reread(webhook).await),
            Err(e) => tracing::warn!(error = %e, %webhook, "storing the breaker's probe failed"),
        }
        self.remember(webhook, Some(rearmed.clone()));
        Ok(rearmed)
    }

    /// Records an attempt classified `class`, sent when the breaker was `seen`: stores the
    /// transition [`after_attempt`] gives, if any, conditionally on the state still being
    /// `seen`. When another instance changed it meanwhile, the transition is made again from the
    /// fresh state (a few times), except that an attempt which was not the probe never decides
    /// for a breaker another instance opened (its failure would otherwise double the period as
    /// if a probe had failed). Best effort: a store failure is logged and the cache keeps the
    /// transition.
    pub async fn record(
        &self,
        webhook: &WebhookId,
        seen: Option<WebhookHealth>,
        class: &AttemptClass,
        now: Timestamp,
    ) {
        let mut seen = seen;
        for _ in 0..RECORD_TRIES {
            let Some(next) = after_attempt(seen.as_ref(), class, now) else {
                return;
            };
            match self.store.replace(webhook, seen.as_ref(), &next).await {
                Ok(true) => {
                    if next.state == HealthState::Open {
                        tracing::warn!(%webhook, until = ?next.open_until, "circuit breaker open");
                    }
                    self.remember(webhook, Some(next));
                    return;
                }
                Ok(false) => {
                    let fresh = self.reread(webhook).await;
                    if fresh.as_ref().is_some_and(|h| h.state == HealthState::Open) {
                        return;
                    }
                    seen = fresh;
                }
                Err(e) => {
                    tracing::warn!(error = %e, %webhook, "storing the breaker state failed");
                    self.remember(webhook, Some(next));
                    return;
                }
            }
        }
        tracing::warn!(%webhook, "the breaker state kept changing; this attempt's transition dropped");
    }

    /// The stored state, bypassing the cache (after a lost compare-and-set).
    async fn reread(&self, webhook: &WebhookId) -> Option<WebhookHealth> {
        match self.store.get(webhook).await {
            Ok(h) => {
                self.remember(webhook, h.clone());
                h
            }
            Err(e) => {
                tracing::warn!(error = %e, %webhook, "reading the breaker state failed");
                None
            }
        }
    }

    fn remember(&self, webhook: &WebhookId, health: Option<WebhookHealth>) {
        self.cache.put(webhook, health);
    }
}

/// The [`HealthStore`] contract as checks, for every adapter's tests.
#[cfg(any(test, feature = "conformance"))]
pub mod tests_support {
    use super::*;

    fn state(failures: u32, open: bool) -> WebhookHealth {
        let since = Timestamp::from_unix(1_760_000_000);
        WebhookHealth {
            state: if open {
                HealthState::Open
            } else {
                HealthState::Degraded
            },
            since,
            consecutive_failures: failures,
            last_error: Some(format!("receiver answered HTTP 503 — try {failures} «é»")),
            open_until: open.then(|| Timestamp::from_unix(since.unix() + 30)),
            open_seconds: if open { 30 } else { 0 },
            timing_out: open,
        }
    }

    /// Runs the contract's checks against `store` (fresh webhook ids, so stores may be shared).
    pub async fn check(store: &(impl HealthStore + ?Sized)) {
        let w = WebhookId::generate(1_760_000_000);
        let other = WebhookId::generate(1_760_000_000);
        let (a, b, c) = (state(1, false), state(2, false), state(5, true));

        // No record: healthy.
        assert_eq!(store.get(&w).await.expect("get"), None);
        // A first transition is made from "no record" only.
        assert!(store.replace(&w, None, &a).await.expect("replace"));
        assert_eq!(
            store.get(&w).await.expect("get"),
            Some(a.clone()),
            "round trip"
        );
        assert!(
            !store.replace(&w, None, &b).await.expect("replace"),
            "a record exists: a transition from none is refused"
        );
        assert!(
            !store.replace(&w, Some(&b), &c).await.expect("replace"),
            "a transition from a state it is not in is refused"
        );
        assert_eq!(
            store.get(&w).await.expect("get"),
            Some(a.clone()),
            "unchanged"
        );
        assert!(store.replace(&w, Some(&a), &b).await.expect("replace"));
        assert_eq!(store.get(&w).await.expect("get"), Some(b.clone()));

        // Racing transitions from one state: exactly one is made.
        let candidates: Vec<WebhookHealth> = (0..8)
            .map(|i| WebhookHealth {
                open_seconds: 30 + i,
                ..c.clone()
            })
            .collect();
        let results = futures_join_all(
            candidates
                .iter()
                .map(|next| store.replace(&w, Some(&b), next)),
        )
        .await;
        let wins: Vec<&WebhookHealth> = results
            .iter()
            .zip(&candidates)
            .filter(|(r, _)| *r.as_ref().expect("replace"))
            .map(|(_, next)| next)
            .collect();
        assert_eq!(wins.len(), 1, "one of eight racing transitions is made");
        assert_eq!(store.get(&w).await.expect("get").as_ref(), Some(wins[0]));

        // `put` replaces whatever is there; `delete` removes it (twice is fine); others untouched.
        store.put(&other, &a).await.expect("put");
        store.put(&w, &a).await.expect("put");
        assert_eq!(store.get(&w).await.expect("get"), Some(a.clone()));
        store.delete(&w).await.expect("delete");
        store.delete(&w).await.expect("delete twice");
        assert_eq!(store.get(&w).await.expect("get"), None);
        assert_eq!(store.get(&other).await.expect("get"), Some(a));
        store.delete(&other).await.expect("delete");
    }

    /// Polls all of `futures` together on this task (no runtime needed beyond the caller's).
    async fn futures_join_all<F: std::future::Future>(
        futures: impl Iterator<Item = F>,
    ) -> Vec<F::Output> {
        let mut pinned: Vec<std::pin::Pin<Box<F>>> = futures.map(Box::pin).collect();
        let mut out: Vec<Option<F::Output>> = pinned.iter().map(|_| None).collect();
        std::future::poll_fn(|cx| {
            let mut pending = false;
            for (f, o) in pinned.iter_mut().zip(out.iter_mut()) {
                if o.is_none() {
                    match f.as_mut().poll(cx) {
                        std::task::Poll::Ready(v) => *o = Some(v),
                        std::task::Poll::Pending => pending = true,
                    }
                }
            }
            if pending {
                std::task::Poll::Pending
            } else {
                std::task::Poll::Ready(())
            }
        })
        .await;
        out.into_iter().map(|o| o.expect("ready")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fail(timeout: bool) -> AttemptClass {
        AttemptClass::Failed {
            error: if timeout {
                "timed out after 30 s".into()
            } else {
                "receiver answered HTTP 500".into()
            },
            timeout,
        }
    }

    #[tokio::test]
    async fn the_memory_store_meets_the_contract() {
        tests_support::check(&crate::ports::memory::MemoryHealth::new()).await;
    }

    #[tokio::test]
    async fn two_instances_claim_one_probe_and_a_late_failure_does_not_double_the_period() {
        // GIVEN two instances sharing one store, the breaker open and its period over
        let store: Arc<dyn HealthStore> = Arc::new(crate::ports::memory::MemoryHealth::new());
        let (one, two) = (Breaker::new(store.clone()), Breaker::new(store.clone()));
        let w = WebhookId::generate(1_760_000_000);
        let now = Timestamp::from_unix(1_760_000_100);
        let open = after_attempt(
            Some(&WebhookHealth {
                consecutive_failures: 4,
                ..WebhookHealth::healthy(Timestamp::from_unix(1_760_000_000))
            }),
            &fail(true),
            Timestamp::from_unix(1_760_000_050),
        )
        .unwrap();
        store.put(&w, &open).await.unwrap();
        let (seen1, seen2) = (one.get(&w).await.unwrap(), two.get(&w).await.unwrap());
        let (Gate::Probe { rearmed: r1 }, Gate::Probe { rearmed: r2 }) =
            (gate(Some(&seen1), now), gate(Some(&seen2), now))
        else {
            panic!("both see a probe due")
        };
        // WHEN both claim the probe THEN one gets it, the other sees it under way
        assert!(one.claim_probe(&w, &seen1, r1.clone()).await.is_ok());
        let lost = two.claim_probe(&w, &seen2, r2).await.unwrap_err();
        assert!(matches!(gate(lost.as_ref(), now), Gate::Wait { .. }));
        // WHEN an attempt sent before it opened fails late, on the other instance
        let degraded = WebhookHealth {
            state: HealthState::Degraded,
            consecutive_failures: 4,
            open_until: None,
            open_seconds: 0,
            ..open.clone()
        };
        two.record(&w, Some(degraded), &fail(false), now).await;
        // THEN the open period is not doubled (only the probe decides)
        assert_eq!(store.get(&w).await.unwrap(), Some(r1.clone()));
        // WHEN the probe is answered THEN it closes
        one.record(&w, Some(r1), &AttemptClass::Answered, now).await;
        let closed = store.get(&w).await.unwrap().unwrap();
        assert_eq!(closed.state, HealthState::Healthy);
    }

    #[tokio::test]
    async fn a_failure_counted_first_elsewhere_is_counted_again_on_the_fresh_state() {
        // GIVEN two instances that both saw 3 failures
        let store: Arc<dyn HealthStore> = Arc::new(crate::ports::memory::MemoryHealth::new());
        let (one, two) = (Breaker::new(store.clone()), Breaker::new(store.clone()));
        let w = WebhookId::generate(1_760_000_000);
        let now = Timestamp::from_unix(1_760_000_100);
        let mut three = None;
        for _ in 0..3 {
            three = after_attempt(three.as_ref(), &fail(false), now);
        }
        store.put(&w, three.as_ref().unwrap()).await.unwrap();
        // WHEN each records one more failure from what it saw
        one.record(&w, three.clone(), &fail(false), now).await;
        two.record(&w, three, &fail(false), now).await;
        // THEN both are counted: 5 in a row open it
        let h = store.get(&w).await.unwrap().unwrap();
        assert_eq!((h.state, h.consecutive_failures), (HealthState::Open, 5));
    }

    #[test]
    fn five_consecutive_failures_open_it_for_30_seconds() {
        let t = |s: i64| Timestamp::from_unix(1_000 + s);
        let mut h: Option<WebhookHealth> = None;
        for n in 1..=4 {
            h = after_attempt(h.as_ref(), &fail(false), t(n)).or(h);
            let cur = h.as_ref().unwrap();
            assert_eq!(
                (cur.state, cur.consecutive_failures, cur.since),
                (HealthState::Degraded, n as u32, t(1))
            );
            assert_eq!(gate(h.as_ref(), t(n)), Gate::Send);
        }
        h = after_attempt(h.as_ref(), &fail(true), t(5)).or(h);
        let open = h.clone().unwrap();
        assert_eq!(open.state, HealthState::Open);
        assert_eq!(open.open_until, Some(t(35)));
        assert!(open.timing_out);
        assert_eq!(
            gate(h.as_ref(), t(6)),
            Gate::Wait {
                wait: Duration::from_secs(29)
            }
        );
    }

    #[test]
    fn an_answer_closes_it_and_a_healthy_answer_writes_nothing() {
        let now = Timestamp::from_unix(2_000);
        assert_eq!(after_attempt(None, &AttemptClass::Answered, now), None);
        let healthy = WebhookHealth::healthy(Timestamp::from_unix(1));
        assert_eq!(
            after_attempt(Some(&healthy), &AttemptClass::Answered, now),
            None
        );
        let degraded = after_attempt(None, &fail(false), now).unwrap();
        let closed = after_attempt(Some(&degraded), &AttemptClass::Answered, now).unwrap();
        assert_eq!(
            (closed.state, closed.consecutive_failures),
            (HealthState::Healthy, 0)
        );
        assert_eq!(
            after_attempt(Some(&degraded), &AttemptClass::Neutral, now),
            None,
            "a refused target says nothing about the receiver"
        );
    }

    #[test]
    fn a_failed_probe_doubles_the_open_period_up_to_ten_minutes() {
        let mut now = Timestamp::from_unix(10_000);
        let mut h = WebhookHealth {
            state: HealthState::Open,
            since: now,
            consecutive_failures: 5,
            last_error: None,
            open_until: Some(now),
            open_seconds: 30,
            timing_out: false,
        };
        let mut periods = Vec::new();
        for _ in 0..7 {
            // The period is over: the next receipt is the probe, the breaker re-armed.
            let Gate::Probe { rearmed } = gate(Some(&h), now) else {
                panic!("a probe is due")
            };
            assert!(matches!(gate(Some(&rearmed), now), Gate::Wait { .. }));
            h = after_attempt(Some(&rearmed), &fail(true), now).unwrap();
            periods.push(h.open_seconds);
            now = h.open_until.unwrap();
        }
        assert_eq!(periods, vec![60, 120, 240, 480, 600, 600, 600]);
        // A probe that is answered closes it.
        let Gate::Probe { rearmed } = gate(Some(&h), now) else {
            panic!()
        };
        let closed = after_attempt(Some(&rearmed), &AttemptClass::Answered, now).unwrap();
        assert_eq!(closed.state, HealthState::Healthy);
        assert_eq!(gate(Some(&closed), now), Gate::Send);
    }

    #[test]
    fn sends_are_classified_for_the_breaker() {
        let r = |status| {
            Ok(SenderResponse {
                status,
                retry_after: None,
                body_excerpt: String::new(),
            })
        };
        assert_eq!(AttemptClass::of(&r(200)), AttemptClass::Answered);
        assert_eq!(AttemptClass::of(&r(404)), AttemptClass::Answered);
        assert!(matches!(
            AttemptClass::of(&r(503)),
            AttemptClass::Failed { timeout: false, .. }
        ));
        assert!(matches!(
            AttemptClass::of(&Err(SendError::Timeout(30))),
            AttemptClass::Failed { timeout: true, .. }
        ));
        assert!(matches!(
            AttemptClass::of(&Err(SendError::Connect("refused".into()))),
            AttemptClass::Failed { timeout: false, .. }
        ));
        assert_eq!(
            AttemptClass::of(&Err(SendError::Refused("private".into()))),
            AttemptClass::Neutral
        );
    }
}
