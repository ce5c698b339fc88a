//! Flow control (DESIGN.md §4 and §7): the delivery settings with their defaults and bounds, and
//! the one mapping from a dispatcher decision to what the queue must do with the message.
//!
//! Both runtimes call [`QueueAction::for_result`]: the delivery Lambda (SQS) and the local
//! worker (the embedded queue) only carry the action out, each the way its queue allows:
//!
//! | [`QueueAction`] | SQS | embedded queue |
//! |---|---|---|
//! | `Ack` | left out of `batchItemFailures` (Lambda deletes it) | deleted |
//! | `RetryAfter` | `ChangeMessageVisibility` + batch item failure | visible again after the delay |
//! | `Defer` | queued again as a new message on the queue it came from (`DelaySeconds` ≤ 15 min, carrying `attemptsMade`), then acknowledged | visible again after the delay, the receipt given back; `webhook_wide`: the webhook parked until then |
//! | `MoveToSlowLane` | sent to the slow lane's queue (as `Defer`, but there), then acknowledged | (never: one queue, [`Lane::Only`]) |
//! | `DeadLetter` | sent to the dead-letter queue with its error, then acknowledged | moved to the dead-letter table |
//!
//! **What an attempt is.** An attempt is a request the receiver could have seen. Attempts are
//! numbered from the attempts recorded for the delivery (last recorded + 1), never from the
//! queue's receive count: a receipt that ends before anything was sent (a crash, a Lambda
//! cut off by its deadline, a deferral) leaves no record, so it uses up no retry. The receive
//! count only guards against a message that keeps crashing its worker (the redrive
//! `maxReceiveCount`, which must stay above the largest number of attempts plus deferrals).
//! A message that is re-queued as a *new* message (a move to another queue) carries the number
//! of attempts already made in [`DeliveryTask::attempts_made`](crate::delivery::DeliveryTask),
//! so a receipt is a [first receipt](is_first_receipt) — nothing can have been recorded yet, and
//! the attempts need not be read — only when its receive count is 1 *and* it carries no
//! attempts.
//!
//! **The slow lane** (DESIGN.md §7, AWS only). A deployment with a second queue and event
//! source of its own, small concurrency ([`Lane::Main`] and [`Lane::Slow`]) keeps the main
//! queue's concurrency for healthy endpoints: a delivery received from the main queue whose
//! webhook's breaker is open, or whose webhook is timing out (its last attempts failed and the
//! last of them timed out, [`WebhookHealth::timing_out`](crate::health::WebhookHealth)), is
//! deferred with `slow`, which on the main lane becomes [`QueueAction::MoveToSlowLane`]: the
//! message is sent to the slow queue before the received one is acknowledged (a failed send
//! leaves it to come back; a copy is harmless, the delivery's final marker counts it once).
//! Nothing is sent and no attempt is used by the move. On the slow lane the same receipt is
//! sent (or, breaker open, deferred on the slow queue): it is never moved again. The local mode
//! has one queue ([`Lane::Only`]) and gets the same effect from per-webhook scheduling.
//!
//! **Parking** (the local mode's per-webhook scheduling). A deferral that holds back every
//! delivery of its webhook for a while — the breaker is open (until its open period ends), or
//! the in-flight cap is full of attempts that have run longer than [`IN_FLIGHT_DEFER`] (a slow
//! or hanging receiver) — is `webhook_wide`. The embedded queue then parks the webhook: all of
//! its queued messages, and those enqueued meanwhile, become visible only when the deferral
//! ends, so a hanging receiver's backlog of thousands is not received, deferred and given back
//! one message at a time while other webhooks' deliveries wait behind it. Parking uses no
//! attempt and no receipt, and the first message visible when the open period ends is the
//! probe, on time. A rate limit's deferral is never webhook-wide: each delivery has its own
//! slot. SQS has no such operation: on AWS the slow lane keeps those receipts off the main
//! queue's concurrency instead.
//!
//! Must not depend on the AWS SDK, the Lambda runtime or an HTTP server.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::WebhookId;
use crate::delivery::DeliveryTask;
use crate::dispatch::{DispatchError, Outcome};

/// How long a receiver may take to answer, by default (DESIGN.md §4).
pub const DEFAULT_DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest delivery timeout a deployment may set (a Lambda runs at most 15 min).
pub const MAX_DELIVERY_TIMEOUT_SECS: u64 = 900;
/// A webhook whose deliveries have all failed for this long is disabled (as Svix and Stripe
/// do), with the reason visible in the API; a PATCH `active: true` re-enables it.
pub const DEFAULT_AUTO_DISABLE_AFTER: Duration = Duration::from_secs(5 * 24 * 3600);
/// The longest auto-disable stretch a deployment may set, in hours (a year); 0 turns it off.
pub const MAX_AUTO_DISABLE_HOURS: u64 = 8760;
/// The redrive guard (SQS `maxReceiveCount`, the embedded queue's limit): a message received
/// this many times goes to the dead letters. A receipt counts when it makes an attempt (at most
/// `maxRetries` 20 + 1 = 21) or ends without acting (a crash, a deadline cut-off, a store
/// that was unavailable); flow-control deferrals do not count (SQS: queued again as a new
/// message; embedded: the receipt is given back). 50 leaves 29 receipts that sent nothing
/// beyond the most attempts.
pub const MAX_RECEIVE_COUNT: u32 = 50;
/// When a delivery could not be processed (the store was unavailable), it is tried again after
/// this long. Nothing was sent, so no attempt is used.
pub const ERROR_RETRY_DELAY: Duration = Duration::from_secs(5);

/// Attempts in flight to one webhook at once, per instance (a Lambda instance, the local
/// process), by default: more wait, without using an attempt.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 8;
/// The shortest wait of a delivery held back by the in-flight cap. It waits as long as the
/// oldest attempt in flight to its webhook has been running (at most [`MAX_IN_FLIGHT_DEFER`]):
/// deliveries to a receiver that answers in milliseconds come back at once, deliveries to one
/// that hangs come back rarely, so they do not churn the queue.
pub const IN_FLIGHT_DEFER: Duration = Duration::from_secs(1);
/// The longest wait of a delivery held back by the in-flight cap.
pub const MAX_IN_FLIGHT_DEFER: Duration = DEFAULT_DELIVERY_TIMEOUT;

type InFlightMap = HashMap<WebhookId, Vec<(u64, Instant)>>;

/// The per-webhook in-flight cap of one instance: [`try_acquire`](Self::try_acquire) hands out
/// at most `limit` guards per webhook at once. Cheap to clone; clones share the counts.
#[derive(Debug, Clone)]
pub struct InFlight {
    limit: usize,
    state: Arc<Mutex<(u64, InFlightMap)>>,
}

/// One attempt in flight to a webhook; dropping it frees the place.
#[derive(Debug)]
pub struct InFlightGuard {
    webhook: WebhookId,
    id: u64,
    state: Arc<Mutex<(u64, InFlightMap)>>,
}

impl InFlight {
    /// A cap of `limit` (at least 1) attempts per webhook.
    pub fn new(limit: usize) -> Self {
        Self {
            limit: limit.max(1),
            state: Arc::default(),
        }
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// A place for one more attempt to `webhook`, or, when `limit` are in flight, how long the
    /// delivery should wait (see [`IN_FLIGHT_DEFER`]).
    pub fn try_acquire(&self, webhook: &WebhookId) -> Result<InFlightGuard, Duration> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let (next, map) = &mut *state;
        let running = map.entry(webhook.clone()).or_default();
        if running.len() >= self.limit {
            let oldest = running.iter().map(|(_, at)| at.elapsed()).max();
            return Err(oldest
                .unwrap_or_default()
                .clamp(IN_FLIGHT_DEFER, MAX_IN_FLIGHT_DEFER));
        }
        *next += 1;
        running.push((*next, Instant::now()));
        Ok(InFlightGuard {
            webhook: webhook.clone(),
            id: *next,
            state: Arc::clone(&self.state),
        })
    }

    /// Attempts in flight to `webhook` now.
    pub fn in_flight(&self, webhook: &WebhookId) -> usize {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.1.get(webhook).map_or(0, Vec::len)
    }
}

impl Default for InFlight {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_IN_FLIGHT)
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(running) = state.1.get_mut(&self.webhook) {
            running.retain(|(id, _)| *id != self.id);
            if running.is_empty() {
                state.1.remove(&self.webhook);
            }
        }
    }
}

/// The lowest `rateLimit` a webhook may set (deliveries per second).
pub const MIN_RATE_LIMIT: u32 = 1;
/// The highest `rateLimit` a webhook may set (deliveries per second, DESIGN.md §7).
pub const MAX_RATE_LIMIT: u32 = 10_000;

/// A webhook's `rateLimit` (deliveries per second) as sent: [`MIN_RATE_LIMIT`] to
/// [`MAX_RATE_LIMIT`] whole deliveries per second.
pub fn rate_limit_from(v: i64) -> Result<u32, SettingError> {
    u32::try_from(v)
        .ok()
        .filter(|v| (MIN_RATE_LIMIT..=MAX_RATE_LIMIT).contains(v))
        .ok_or_else(|| {
            SettingError(format!(
                "rateLimit must be a whole number of deliveries per second from {MIN_RATE_LIMIT} \
                 to {MAX_RATE_LIMIT}, or null for none; got {v}"
            ))
        })
}

/// A webhook's pace on one instance: when its next delivery may go, and when the deliveries it
/// sent back will come.
#[derive(Debug)]
struct Pace {
    /// The next send may go at this time (a send moves it on by one interval).
    next: Instant,
    /// When the deliveries deferred so far come back (ascending; past ones are forgotten).
    returns: std::collections::VecDeque<Instant>,
}

/// The per-webhook rate limit (`rateLimit`, DESIGN.md §7) of one instance: a pacer that lets a
/// webhook's deliveries go one interval (1 s / rate) apart, and hands each delivery it holds
/// back its own later slot, one interval after the previous one's, so a backlog comes back
/// spread at the rate instead of all at once. Nothing is written anywhere: the state is this
/// instance's memory.
///
/// **Error bound.** Sends are at least one interval apart, so over any window of `w` seconds a
/// receiver sees at most `rate × w + 1` deliveries from one instance: ≤ 5.5/s over 2 s at a rate
/// of 5, ≤ 1 % over the limit over 10 s at rates ≥ 10. The local mode is one instance. A
/// deployment of `n` instances (the delivery Lambda: the event source's `MaximumConcurrency`,
/// `RATE_LIMIT_SHARES`) gives each a share, `rate / n`: the receiver never sees more than the
/// limit plus `n` over any window, but fewer instances running than `n` deliver below it — the
/// price of no DynamoDB write per delivery.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    shares: u32,
    state: Arc<Mutex<HashMap<WebhookId, Pace>>>,
}

impl Default for RateLimiter {
    fn default() -> Self {
        Self::new(1)
    }
}

impl RateLimiter {
    /// A limiter of an instance that is one of `shares` (at least 1) sharing each webhook's rate.
    pub fn new(shares: u32) -> Self {
        Self {
            shares: shares.max(1),
            state: Arc::default(),
        }
    }

    /// Whether a delivery to `webhook` limited to `rate` per second may go now; if not, how long
    /// it should wait (its own slot).
    pub fn check(&self, webhook: &WebhookId, rate: u32) -> Result<(), Duration> {
        self.check_at(webhook, rate, Instant::now())
    }

    fn check_at(&self, webhook: &WebhookId, rate: u32, now: Instant) -> Result<(), Duration> {
        let interval = Duration::from_secs_f64(f64::from(self.shares) / f64::from(rate.max(1)));
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.len() > 10_000 {
            state.retain(|_, p| p.next > now || p.returns.back().is_some_and(|r| *r > now));
        }
        let pace = state.entry(webhook.clone()).or_insert(Pace {
            next: now,
            returns: Default::default(),
        });
        while pace.returns.front().is_some_and(|r| *r <= now) {
            pace.returns.pop_front();
        }
        if pace.next <= now {
            pace.next = now + interval;
            return Ok(());
        }
        let slot = match pace.returns.back() {
            Some(last) => (*last + interval).max(pace.next),
            None => pace.next,
        };
        pace.returns.push_back(slot);
        Err(slot - now)
    }
}

/// A delivery setting given by a deployment (environment variable, command-line flag) is out of
/// its bounds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SettingError(pub String);

/// The delivery timeout from whole seconds: 1 to [`MAX_DELIVERY_TIMEOUT_SECS`].
pub fn delivery_timeout_from_secs(secs: u64) -> Result<Duration, SettingError> {
    if (1..=MAX_DELIVERY_TIMEOUT_SECS).contains(&secs) {
        Ok(Duration::from_secs(secs))
    } else {
        Err(SettingError(format!(
            "must be whole seconds from 1 to {MAX_DELIVERY_TIMEOUT_SECS}, got {secs}"
        )))
    }
}

/// The auto-disable stretch from whole hours: 0 (off) to [`MAX_AUTO_DISABLE_HOURS`].
pub fn auto_disable_after_from_hours(hours: u64) -> Result<Option<Duration>, SettingError> {
    match hours {
        0 => Ok(None),
        h if h <= MAX_AUTO_DISABLE_HOURS => Ok(Some(Duration::from_secs(h * 3600))),
        h => Err(SettingError(format!(
            "must be whole hours from 0 (off) to {MAX_AUTO_DISABLE_HOURS}, got {h}"
        ))),
    }
}

/// Whether a receipt of `task` with this receive count is its first: nothing can have been
/// recorded for it yet, so the dispatcher does not read its attempts (see the
/// [module docs](self)).
pub fn is_first_receipt(task: &DeliveryTask, receive_count: u32) -> bool {
    receive_count <= 1 && task.attempts_made == 0
}

/// Which queue a message was received from (see the [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lane {
    /// The only queue of a runtime without a slow lane (the local mode; a Lambda deployment
    /// whose slow queue is not configured): every deferral stays on it.
    #[default]
    Only,
    /// The main queue of a deployment with a slow lane: deliveries of webhooks that are timing
    /// out or whose breaker is open move to the slow lane.
    Main,
    /// The slow lane: its deliveries are sent (or deferred) there, never moved again.
    Slow,
}

/// What the queue does with a received message once the dispatcher has decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueAction {
    /// Done (delivered, or nothing to send): remove the message.
    Ack,
    /// The message comes back after `delay`, and this receipt counts towards the redrive guard:
    /// an attempt failed with retries left, or the delivery could not be processed (the store
    /// was unavailable: nothing was sent, so no attempt was used, but a store that stays
    /// unavailable must end in the dead letters).
    RetryAfter { delay: Duration },
    /// The flow control held the delivery back (nothing sent, no attempt used): it comes back
    /// after `delay`. `slow`: the webhook is timing out or its breaker is open. `attempts_made`:
    /// the attempts made so far, for a queue that re-sends the message as a new one.
    ///
    /// `webhook_wide`: every delivery of the webhook would be deferred as long (its breaker is
    /// open, or its in-flight cap is held by a slow receiver): a queue that can (the embedded
    /// one) parks all of the webhook's queued messages until then, so they are not received one
    /// by one only to be deferred ([module docs](self), parking). SQS cannot: each is deferred
    /// when received (from the slow lane, whose concurrency is its own).
    Defer {
        delay: Duration,
        slow: bool,
        attempts_made: u32,
        webhook_wide: bool,
    },
    /// A delivery received from [`Lane::Main`] whose webhook is timing out or whose breaker is
    /// open: queue it on the slow lane (visible after `delay`, carrying `attempts_made`), then
    /// acknowledge the received message. Nothing sent, no attempt used.
    MoveToSlowLane { delay: Duration, attempts_made: u32 },
    /// Given up: move the message to the dead letters with `error`, after `attempts` attempts.
    DeadLetter { error: String, attempts: u32 },
}

impl QueueAction {
    /// The one mapping from the dispatcher's result for a message received from `lane` to the
    /// queue's action. `error_retry_delay` is [`ERROR_RETRY_DELAY`] outside tests.
    pub fn for_result(
        result: &Result<Outcome, DispatchError>,
        error_retry_delay: Duration,
        lane: Lane,
    ) -> Self {
        match result {
            Ok(Outcome::Delivered) | Ok(Outcome::Drop { .. }) => QueueAction::Ack,
            Ok(Outcome::Retry { after, .. }) => QueueAction::RetryAfter { delay: *after },
            Ok(Outcome::GiveUp { error, attempts }) => QueueAction::DeadLetter {
                error: error.clone(),
                attempts: *attempts,
            },
            Ok(Outcome::Defer {
                after,
                slow: true,
                attempts_made,
                ..
            }) if lane == Lane::Main => QueueAction::MoveToSlowLane {
                delay: *after,
                attempts_made: *attempts_made,
            },
            Ok(Outcome::Defer {
                after,
                slow,
                attempts_made,
                webhook_wide,
                ..
            }) => QueueAction::Defer {
                delay: *after,
                slow: *slow,
                attempts_made: *attempts_made,
                webhook_wide: *webhook_wide,
            },
            Err(_) => QueueAction::RetryAfter {
                delay: error_retry_delay,
            },
        }
    }

    /// The delay before the message comes back, for the actions that keep it.
    pub fn delay(&self) -> Option<Duration> {
        match self {
            QueueAction::RetryAfter { delay }
            | QueueAction::Defer { delay, .. }
            | QueueAction::MoveToSlowLane { delay, .. } => Some(*delay),
            QueueAction::Ack | QueueAction::DeadLetter { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_rate_limiter_spaces_sends_and_spreads_the_backlog_at_the_rate() {
        let limiter = RateLimiter::new(1);
        let w = WebhookId::generate(1_700_000_000);
        let t0 = Instant::now();
        // 20 deliveries at once, rate 5: one goes, the others get slots 200 ms apart
        assert_eq!(limiter.check_at(&w, 5, t0), Ok(()));
        let waits: Vec<Duration> = (0..19)
            .map(|_| limiter.check_at(&w, 5, t0).unwrap_err())
            .collect();
        for (i, wait) in waits.iter().enumerate() {
            let want = Duration::from_millis(200 * (i as u64 + 1));
            assert!(
                wait.abs_diff(want) < Duration::from_millis(1),
                "{i}: {wait:?}"
            );
        }
        // each comes back at its slot and goes; never two within one interval
        let mut sent = vec![t0];
        for wait in &waits {
            let at = t0 + *wait;
            assert_eq!(limiter.check_at(&w, 5, at), Ok(()), "{wait:?}");
            sent.push(at);
        }
        assert!(
            sent.windows(2)
                .all(|p| p[1] - p[0] >= Duration::from_millis(199))
        );
        // another webhook is not held back; shares divide the rate
        assert_eq!(limiter.check_at(&WebhookId::generate(1), 5, t0), Ok(()));
        let shared = RateLimiter::new(10);
        assert_eq!(shared.check_at(&w, 5, t0), Ok(()));
        assert_eq!(shared.check_at(&w, 5, t0), Err(Duration::from_secs(2)));
    }

    #[test]
    fn rate_limits_are_bounded() {
        assert_eq!(rate_limit_from(1), Ok(1));
        assert_eq!(rate_limit_from(10_000), Ok(10_000));
        for bad in [0, -1, 10_001, i64::MAX] {
            assert!(
                rate_limit_from(bad).unwrap_err().0.contains("rateLimit"),
                "{bad}"
            );
        }
    }

    use super::*;
    use crate::ports::StoreError;
    use crate::{DeliveryId, EventType, Timestamp, WebhookId};

    #[test]
    fn each_outcome_maps_to_one_queue_action() {
        let d = ERROR_RETRY_DELAY;
        let cases: Vec<(Result<Outcome, DispatchError>, QueueAction)> = vec![
            (Ok(Outcome::Delivered), QueueAction::Ack),
            (
                Ok(Outcome::Drop {
                    reason: "webhook deleted".into(),
                }),
                QueueAction::Ack,
            ),
            (
                Ok(Outcome::Retry {
                    after: Duration::from_secs(4),
                    error: "HTTP 500".into(),
                }),
                QueueAction::RetryAfter {
                    delay: Duration::from_secs(4),
                },
            ),
            (
                Ok(Outcome::GiveUp {
                    error: "HTTP 500".into(),
                    attempts: 4,
                }),
                QueueAction::DeadLetter {
                    error: "HTTP 500".into(),
                    attempts: 4,
                },
            ),
            (
                Ok(Outcome::Defer {
                    after: Duration::from_secs(30),
                    reason: "circuit breaker open".into(),
                    slow: true,
                    attempts_made: 2,
                    webhook_wide: true,
                }),
                QueueAction::Defer {
                    delay: Duration::from_secs(30),
                    slow: true,
                    attempts_made: 2,
                    webhook_wide: true,
                },
            ),
            (
                Err(DispatchError(StoreError::Unavailable("throttled".into()))),
                QueueAction::RetryAfter { delay: d },
            ),
        ];
        for (result, action) in cases {
            assert_eq!(
                QueueAction::for_result(&result, d, Lane::Only),
                action,
                "{result:?}"
            );
            // the slow lane carries every action out itself (never moves)
            assert_eq!(
                QueueAction::for_result(&result, d, Lane::Slow),
                action,
                "{result:?}"
            );
        }
        assert_eq!(QueueAction::Ack.delay(), None);
        assert_eq!(
            QueueAction::Defer {
                delay: d,
                slow: false,
                attempts_made: 0,
                webhook_wide: false,
            }
            .delay(),
            Some(ERROR_RETRY_DELAY)
        );
    }

    #[test]
    fn only_a_slow_deferral_received_from_the_main_lane_moves_to_the_slow_lane() {
        let defer = |slow: bool| -> Result<Outcome, DispatchError> {
            Ok(Outcome::Defer {
                after: Duration::from_secs(7),
                reason: "r".into(),
                slow,
                attempts_made: 3,
                webhook_wide: slow,
            })
        };
        let d = ERROR_RETRY_DELAY;
        assert_eq!(
            QueueAction::for_result(&defer(true), d, Lane::Main),
            QueueAction::MoveToSlowLane {
                delay: Duration::from_secs(7),
                attempts_made: 3
            }
        );
        // a deferral that is not about the webhook being slow (in-flight cap, rate limit)
        // stays on its lane, and so does everything received from the slow lane or one queue
        for (slow, lane) in [
            (false, Lane::Main),
            (true, Lane::Slow),
            (false, Lane::Slow),
            (true, Lane::Only),
        ] {
            assert_eq!(
                QueueAction::for_result(&defer(slow), d, lane),
                QueueAction::Defer {
                    delay: Duration::from_secs(7),
                    slow,
                    attempts_made: 3,
                    webhook_wide: slow,
                },
                "{slow} {lane:?}"
            );
        }
        // every other outcome is carried out on the lane it came from
        let delivered = Ok(Outcome::Delivered);
        assert_eq!(
            QueueAction::for_result(&delivered, d, Lane::Main),
            QueueAction::Ack
        );
        assert_eq!(
            QueueAction::MoveToSlowLane {
                delay: d,
                attempts_made: 0
            }
            .delay(),
            Some(d)
        );
        assert_eq!(Lane::default(), Lane::Only);
    }

    #[test]
    fn the_in_flight_cap_is_per_webhook_and_freed_by_dropping_the_guard() {
        let cap = InFlight::new(2);
        let (a, b) = (WebhookId::generate(1), WebhookId::generate(2));
        let g1 = cap.try_acquire(&a).unwrap();
        let g2 = cap.try_acquire(&a).unwrap();
        assert_eq!(
            cap.try_acquire(&a).unwrap_err(),
            IN_FLIGHT_DEFER,
            "a third to the same webhook waits (at least the shortest wait)"
        );
        let other = cap.try_acquire(&b);
        assert!(other.is_ok(), "another webhook is not held up");
        drop(g1);
        assert_eq!(cap.in_flight(&a), 1);
        assert!(cap.try_acquire(&a).is_ok());
        drop(g2);
        assert_eq!(InFlight::new(0).limit(), 1);
        assert_eq!(InFlight::default().limit(), DEFAULT_MAX_IN_FLIGHT);
    }

    #[test]
    fn settings_are_checked_against_their_bounds() {
        assert_eq!(
            delivery_timeout_from_secs(30).unwrap(),
            DEFAULT_DELIVERY_TIMEOUT
        );
        assert!(delivery_timeout_from_secs(900).is_ok());
        for bad in [0, 901, u64::MAX] {
            let e = delivery_timeout_from_secs(bad).unwrap_err();
            assert!(e.0.contains("1 to 900"), "{e}");
        }
        assert_eq!(auto_disable_after_from_hours(0).unwrap(), None);
        assert_eq!(
            auto_disable_after_from_hours(120).unwrap(),
            Some(DEFAULT_AUTO_DISABLE_AFTER)
        );
        assert!(auto_disable_after_from_hours(8761).is_err());
        assert!(auto_disable_after_from_hours(u64::MAX).is_err());
    }

    #[test]
    fn only_a_first_receipt_of_a_message_without_attempts_skips_the_attempts_read() {
        let mut task = DeliveryTask {
            delivery_id: DeliveryId::generate(1),
            webhook_id: WebhookId::generate(1),
            event: EventType::AlertTriggered,
            generation: 0,
            attempts_made: 0,
            body: "{}".into(),
            created_at: Timestamp::from_unix(1),
        };
        assert!(is_first_receipt(&task, 1));
        assert!(!is_first_receipt(&task, 2));
        task.attempts_made = 2; // moved to another queue after two attempts
        assert!(!is_first_receipt(&task, 1));
    }
}
