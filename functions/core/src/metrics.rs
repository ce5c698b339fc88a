//! Metrics: their names, and the one mapping from what happened (a receipt processed by the
//! [`Dispatcher`](crate::dispatch::Dispatcher), a publish) to metric values. The runtimes only
//! carry the values out: the Lambda functions print them as CloudWatch Embedded Metric Format
//! lines (`webhooks_aws::emf`), the local mode serves them at `GET /metrics` in the Prometheus
//! text format.
//!
//! | what | CloudWatch (namespace [`NAMESPACE`], dimension `Function`) | Prometheus |
//! |---|---|---|
//! | an attempt delivered (2xx) | `Delivered` | `webhooks_deliveries_total{outcome="delivered"}` |
//! | an attempt failed, a retry scheduled | `Retried` | `…{outcome="retried"}` |
//! | given up: moved to the dead letters | `DeadLettered` | `…{outcome="dead_lettered"}` |
//! | held back by the flow control (nothing sent) | `Deferred` | `…{outcome="deferred"}` |
//! | nothing to send (the webhook is gone) | `Dropped` | `…{outcome="dropped"}` |
//! | could not be processed (store unavailable) | `Errored` | `…{outcome="errored"}` |
//! | time to process a receipt that sent a request | `AttemptLatency` (ms) | `webhooks_attempt_latency_seconds` |
//! | publish → delivered | `DeliveryLag` (ms) | `webhooks_delivery_lag_seconds` |
//! | events in one publish call | `PublishEvents` | `webhooks_publish_events` |
//! | deliveries one publish call queued | `PublishDeliveries` | `webhooks_publish_deliveries` |
//!
//! Dimensions stay low-cardinality: no webhook or delivery id is ever a dimension or a label
//! (the EMF line carries the webhook ids of its batch as a plain field, searchable in Logs
//! Insights, not a metric).
//!
//! Must not depend on the AWS SDK, the Lambda runtime or an HTTP server.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use crate::Timestamp;
use crate::delivery::DeliveryTask;
use crate::dispatch::{DispatchError, Outcome};

/// The CloudWatch namespace of the functions' metrics (`template.yaml`'s dashboard and alarms
/// read it).
pub const NAMESPACE: &str = "DakkioWebhooks";

/// A counted outcome of one receipt of a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DeliveryOutcome {
    Delivered,
    Retried,
    DeadLettered,
    Deferred,
    Dropped,
    Errored,
}

impl DeliveryOutcome {
    pub const ALL: [DeliveryOutcome; 6] = [
        DeliveryOutcome::Delivered,
        DeliveryOutcome::Retried,
        DeliveryOutcome::DeadLettered,
        DeliveryOutcome::Deferred,
        DeliveryOutcome::Dropped,
        DeliveryOutcome::Errored,
    ];

    /// The CloudWatch metric name.
    pub fn metric(self) -> &'static str {
        match self {
            DeliveryOutcome::Delivered => "Delivered",
            DeliveryOutcome::Retried => "Retried",
            DeliveryOutcome::DeadLettered => "DeadLettered",
            DeliveryOutcome::Deferred => "Deferred",
            DeliveryOutcome::Dropped => "Dropped",
            DeliveryOutcome::Errored => "Errored",
        }
    }

    /// The Prometheus `outcome` label of [`PROM_DELIVERIES`].
    pub fn label(self) -> &'static str {
        match self {
            DeliveryOutcome::Delivered => "delivered",
            DeliveryOutcome::Retried => "retried",
            DeliveryOutcome::DeadLettered => "dead_lettered",
            DeliveryOutcome::Deferred => "deferred",
            DeliveryOutcome::Dropped => "dropped",
            DeliveryOutcome::Errored => "errored",
        }
    }

    /// The one mapping from a dispatcher result to its counted outcome.
    pub fn of(result: &Result<Outcome, DispatchError>) -> Self {
        match result {
            Ok(Outcome::Delivered) => DeliveryOutcome::Delivered,
            Ok(Outcome::Retry { .. }) => DeliveryOutcome::Retried,
            Ok(Outcome::GiveUp { .. }) => DeliveryOutcome::DeadLettered,
            Ok(Outcome::Defer { .. }) => DeliveryOutcome::Deferred,
            Ok(Outcome::Drop { .. }) => DeliveryOutcome::Dropped,
            Err(_) => DeliveryOutcome::Errored,
        }
    }

    /// Whether a request went out to the receiver (its time is an attempt's latency).
    pub fn sent(self) -> bool {
        matches!(
            self,
            DeliveryOutcome::Delivered | DeliveryOutcome::Retried | DeliveryOutcome::DeadLettered
        )
    }
}

/// A distribution of values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Distribution {
    AttemptLatency,
    DeliveryLag,
    PublishEvents,
    PublishDeliveries,
}

impl Distribution {
    pub const ALL: [Distribution; 4] = [
        Distribution::AttemptLatency,
        Distribution::DeliveryLag,
        Distribution::PublishEvents,
        Distribution::PublishDeliveries,
    ];

    /// The CloudWatch metric name.
    pub fn metric(self) -> &'static str {
        match self {
            Distribution::AttemptLatency => "AttemptLatency",
            Distribution::DeliveryLag => "DeliveryLag",
            Distribution::PublishEvents => "PublishEvents",
            Distribution::PublishDeliveries => "PublishDeliveries",
        }
    }

    /// The CloudWatch unit of the values ([`Measurements::values`]).
    pub fn unit(self) -> &'static str {
        match self {
            Distribution::AttemptLatency | Distribution::DeliveryLag => "Milliseconds",
            Distribution::PublishEvents | Distribution::PublishDeliveries => "Count",
        }
    }

    /// The Prometheus histogram's name (seconds for times, as Prometheus wants).
    pub fn prometheus(self) -> &'static str {
        match self {
            Distribution::AttemptLatency => "webhooks_attempt_latency_seconds",
            Distribution::DeliveryLag => "webhooks_delivery_lag_seconds",
            Distribution::PublishEvents => "webhooks_publish_events",
            Distribution::PublishDeliveries => "webhooks_publish_deliveries",
        }
    }

    /// The Prometheus value of a value in [`unit`](Self::unit) (milliseconds → seconds).
    pub fn prometheus_value(self, v: f64) -> f64 {
        match self.unit() {
            "Milliseconds" => v / 1000.0,
            _ => v,
        }
    }

    /// The Prometheus help text.
    pub fn help(self) -> &'static str {
        match self {
            Distribution::AttemptLatency => {
                "Time to process a receipt that sent a request (send and bookkeeping)"
            }
            Distribution::DeliveryLag => "Time from publish (or redelivery) to delivered",
            Distribution::PublishEvents => "Events in one publish call",
            Distribution::PublishDeliveries => "Deliveries one publish call queued",
        }
    }
}

/// The Prometheus counter of receipts by outcome (label `outcome`, [`DeliveryOutcome::label`]).
pub const PROM_DELIVERIES: &str = "webhooks_deliveries";
/// Its help text.
pub const PROM_DELIVERIES_HELP: &str =
    "Receipts of deliveries processed, by outcome (one per attempt, deferral or drop)";

/// Metric values of one unit of work (one receipt, one batch, one publish): counts per
/// outcome and the values of each distribution, plus the webhooks involved (for the log line,
/// never a dimension).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Measurements {
    counts: [u64; DeliveryOutcome::ALL.len()],
    values: [Vec<f64>; Distribution::ALL.len()],
    webhooks: Vec<String>,
}

impl Measurements {
    /// One receipt of `task` processed by the dispatcher in `took`, ending with `result` at
    /// `now`.
    pub fn delivery(
        task: &DeliveryTask,
        result: &Result<Outcome, DispatchError>,
        took: Duration,
        now: Timestamp,
    ) -> Self {
        let mut m = Self::default();
        let outcome = DeliveryOutcome::of(result);
        m.counts[outcome as usize] = 1;
        if outcome.sent() {
            m.values[Distribution::AttemptLatency as usize].push(took.as_secs_f64() * 1000.0);
        }
        if outcome == DeliveryOutcome::Delivered {
            let lag_ms = (now.unix() - task.created_at.unix()).max(0) as f64 * 1000.0;
            m.values[Distribution::DeliveryLag as usize].push(lag_ms);
        }
        m.webhooks.push(task.webhook_id.to_string());
        m
    }

    /// One publish call of `events` events that queued `deliveries` deliveries.
    pub fn publish(events: usize, deliveries: usize) -> Self {
        let mut m = Self::default();
        m.values[Distribution::PublishEvents as usize].push(events as f64);
        m.values[Distribution::PublishDeliveries as usize].push(deliveries as f64);
        m
    }

    /// Adds `other` to these.
    pub fn merge(&mut self, other: &Measurements) {
        for (a, b) in self.counts.iter_mut().zip(other.counts) {
            *a += b;
        }
        for (a, b) in self.values.iter_mut().zip(&other.values) {
            a.extend_from_slice(b);
        }
        for w in &other.webhooks {
            if !self.webhooks.contains(w) {
                self.webhooks.push(w.clone());
            }
        }
    }

    pub fn count(&self, outcome: DeliveryOutcome) -> u64 {
        self.counts[outcome as usize]
    }

    /// The values of `d`, in its [`unit`](Distribution::unit).
    pub fn values(&self, d: Distribution) -> &[f64] {
        &self.values[d as usize]
    }

    /// The webhooks whose deliveries these count (each once).
    pub fn webhooks(&self) -> &[String] {
        &self.webhooks
    }

    pub fn is_empty(&self) -> bool {
        self.counts.iter().all(|c| *c == 0) && self.values.iter().all(Vec::is_empty)
    }
}

/// Where a runtime's metric values go. Recording must be cheap and never fail the work it
/// measures (a sink that cannot write logs it).
pub trait MetricsSink: Send + Sync + std::fmt::Debug {
    fn record(&self, m: &Measurements);
}

/// Records nothing (the default).
#[derive(Debug, Default)]
pub struct NoMetrics;

impl MetricsSink for NoMetrics {
    fn record(&self, _: &Measurements) {}
}

/// Sums what is recorded until [`take`](Self::take)n: the delivery Lambda writes one EMF line
/// per batch from it.
#[derive(Debug, Default)]
pub struct Accumulator {
    sum: Mutex<Measurements>,
}

impl Accumulator {
    /// What was recorded since the last call, and starts again from nothing.
    pub fn take(&self) -> Measurements {
        std::mem::take(&mut *self.sum.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl MetricsSink for Accumulator {
    fn record(&self, m: &Measurements) {
        self.sum
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .merge(m);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::StoreError;
    use crate::{DeliveryId, EventType, WebhookId};

    fn task(created: i64) -> DeliveryTask {
        DeliveryTask {
            delivery_id: DeliveryId::generate(created),
            webhook_id: WebhookId::parse("507f1f77bcf86cd799439011").unwrap(),
            event: EventType::AlertTriggered,
            generation: 0,
            attempts_made: 0,
            body: "{}".into(),
            created_at: Timestamp::from_unix(created),
        }
    }

    #[test]
    fn each_dispatcher_result_counts_once_under_its_outcome_with_latency_only_when_sent() {
        let now = Timestamp::from_unix(1_000);
        let results: Vec<(Result<Outcome, DispatchError>, DeliveryOutcome)> = vec![
            (Ok(Outcome::Delivered), DeliveryOutcome::Delivered),
            (
                Ok(Outcome::Retry {
                    after: Duration::from_secs(1),
                    error: "HTTP 500".into(),
                }),
                DeliveryOutcome::Retried,
            ),
            (
                Ok(Outcome::GiveUp {
                    error: "HTTP 500".into(),
                    attempts: 4,
                }),
                DeliveryOutcome::DeadLettered,
            ),
            (
                Ok(Outcome::Defer {
                    after: Duration::from_secs(1),
                    reason: "breaker open".into(),
                    slow: true,
                    attempts_made: 1,
                    webhook_wide: true,
                }),
                DeliveryOutcome::Deferred,
            ),
            (
                Ok(Outcome::Drop {
                    reason: "webhook deleted".into(),
                }),
                DeliveryOutcome::Dropped,
            ),
            (
                Err(DispatchError(StoreError::Unavailable("down".into()))),
                DeliveryOutcome::Errored,
            ),
        ];
        let mut sum = Measurements::default();
        for (result, outcome) in &results {
            let m = Measurements::delivery(&task(990), result, Duration::from_millis(250), now);
            for o in DeliveryOutcome::ALL {
                assert_eq!(m.count(o), u64::from(o == *outcome), "{result:?}");
            }
            let latencies = m.values(Distribution::AttemptLatency);
            assert_eq!(latencies.len(), usize::from(outcome.sent()), "{result:?}");
            sum.merge(&m);
        }
        // The lag is counted for deliveries only: published 10 s before.
        assert_eq!(sum.values(Distribution::DeliveryLag), &[10_000.0]);
        assert_eq!(sum.values(Distribution::AttemptLatency), &[250.0; 3]);
        assert_eq!(sum.webhooks().len(), 1, "each webhook once");
        let acc = Accumulator::default();
        acc.record(&sum);
        acc.record(&Measurements::publish(3, 7));
        let taken = acc.take();
        assert_eq!(taken.count(DeliveryOutcome::Delivered), 1);
        assert_eq!(taken.values(Distribution::PublishEvents), &[3.0]);
        assert_eq!(taken.values(Distribution::PublishDeliveries), &[7.0]);
        assert!(acc.take().is_empty(), "taken means gone");
    }
}
