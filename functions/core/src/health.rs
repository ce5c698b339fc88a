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
//! [`Breaker`]'s per-instance cache of [`HEALTH_CACHE_TTL`]: several Lambda instances may each
//! let a probe through, and each may count a failure the others have not seen yet; the breaker
//! is a flow control, not a lock, and never blocks a delivery when its store is unavailable.
//!
//! Must not depend on the AWS SDK, the Lambda runtime or an HTTP server.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::ports::{SendError, SenderResponse, StoreError};
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
/// Contract: `put` replaces the record (last writer wins); `get` answers `None` for a webhook
/// without one (healthy); `delete` of a missing record is not an error. Written only on
/// transitions, so no write per successful delivery.
#[async_trait]
pub trait HealthStore: Send + Sync + 'static {
    async fn get(&self, webhook: &WebhookId) -> Result<Option<WebhookHealth>, StoreError>;
    async fn put(&self, webhook: &WebhookId, health: &WebhookHealth) -> Result<(), StoreError>;
    async fn delete(&self, webhook: &WebhookId) -> Result<(), StoreError>;
}

impl std::fmt::Debug for dyn HealthStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HealthStore")
    }
}

/// When each webhook's health was read, and what it was.
type HealthCache = HashMap<WebhookId, (Instant, Option<WebhookHealth>)>;

/// The breaker of one instance (a Lambda instance, the local process): the [`HealthStore`]
/// behind a cache of [`HEALTH_CACHE_TTL`]. Cheap to clone; clones share the cache.
#[derive(Clone)]
pub struct Breaker {
    store: Arc<dyn HealthStore>,
    cache: Arc<Mutex<HealthCache>>,
    ttl: Duration,
}

impl std::fmt::Debug for Breaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Breaker").field("ttl", &self.ttl).finish()
    }
}

impl Breaker {
    pub fn new(store: Arc<dyn HealthStore>) -> Self {
        Self {
            store,
            cache: Arc::default(),
            ttl: HEALTH_CACHE_TTL,
        }
    }

    /// The health of `webhook`, from the cache when fresh. A store failure reads as healthy
    /// (logged): the breaker never holds deliveries back because its own store is down.
    pub async fn get(&self, webhook: &WebhookId) -> Option<WebhookHealth> {
        {
            let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some((at, h)) = cache.get(webhook)
                && at.elapsed() < self.ttl
            {
                return h.clone();
            }
        }
        match self.store.get(webhook).await {
            Ok(h) => {
                self.remember(webhook, h.clone());
                h
            }
            Err(e) => {
                tracing::warn!(error = %e, %webhook, "reading the breaker state failed; sending");
                None
            }
        }
    }

    /// Stores a transition (best effort: a failure is logged; the cache keeps it either way).
    pub async fn put(&self, webhook: &WebhookId, health: WebhookHealth) {
        if let Err(e) = self.store.put(webhook, &health).await {
            tracing::warn!(error = %e, %webhook, "storing the breaker state failed");
        }
        if health.state == HealthState::Open {
            tracing::warn!(%webhook, until = ?health.open_until, "circuit breaker open");
        }
        self.remember(webhook, Some(health));
    }

    fn remember(&self, webhook: &WebhookId, health: Option<WebhookHealth>) {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() > 10_000 {
            let ttl = self.ttl;
            cache.retain(|_, (at, _)| at.elapsed() < ttl);
        }
        cache.insert(webhook.clone(), (Instant::now(), health));
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
