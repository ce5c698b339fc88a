//! # webhooks-core
//!
//! The domain of dakkio webhooks: ids, events, webhooks, validation of user input, the ports
//! (traits) the adapters implement, and the services the API and the delivery worker call.
//!
//! This crate must not depend on the AWS SDK, the Lambda runtime or an HTTP server: the adapters
//! (`webhooks-aws`, `webhooks-embedded`) and entry points (`webhooks-api`, `webhooks-local`) depend
//! on it, never the other way round.
//!
//! ## Layout
//! - [`ids`]: ObjectId-form identifiers (`WebhookId`, `BucketId`, `DeliveryId`) and `OwnerId`.
//! - [`event`]: the event names a webhook can subscribe to.
//! - [`time`]: [`Timestamp`] (RFC 3339, UTC, `Z`, whole seconds) and the [`Clock`](ports::Clock) port's impls.
//! - [`webhook`]: the stored [`Webhook`](webhook::Webhook), its retry policy, stats and secret.
//! - [`filter`]: payload filters: a webhook's `filter`, parsed once, matched at publish time.
//! - [`headers`]: a webhook's custom headers (write-only values, sent with every attempt).
//! - [`validate`]: request bodies as users send them, and their validation into domain values.
//! - [`ports`]: the ports the adapters implement — `SubscriptionStore`, `DeliveryQueue`,
//!   `DeliveryLog`, `WebhookSender`, `Clock` — and their error types (`HealthStore` is in
//!   [`health`]).
//! - [`webhook_service`]: `WebhookService`, the use cases behind the HTTP API (ownership, bucket access).
//! - [`jsjson`]: JSON written exactly as JavaScript's `JSON.stringify` writes it (delivery bodies).
//! - [`signing`]: the guide's `sha256=` signature and Standard Webhooks' `v1,` signature.
//! - [`delivery`]: queue tasks, the envelope, request headers, retry schedule, attempt records.
//! - [`delivery_service`]: `DeliveryService`: fan-out of published events, test sends, redelivery, history.
//! - [`hourly`]: a webhook's hourly delivery aggregates (outcomes, a fixed latency histogram,
//!   p50/p95) that the stores keep as deliveries finish, and the 24 h chart made of them.
//! - [`recovery`]: recovery jobs: every dead letter of a time window redelivered, in steps.
//! - [`idempotency`]: `Idempotency-Key` on publish: the decision, keyed delivery ids, the
//!   `IdempotencyStore` port.
//! - [`notify`]: operational notifications (`webhook.failing`/`disabled`/`recovered`): the
//!   decision, the notice store port, the notification endpoint.
//! - [`dispatch`]: `Dispatcher`: one attempt of one delivery and the [`Outcome`](dispatch::Outcome).
//! - [`shared_read`]: per-instance reads by webhook, cached for a moment and single flight.
//! - [`health`]: the circuit breaker per webhook, its `health`, and the `HealthStore` port.
//! - [`flow`]: delivery settings (defaults, bounds), what an attempt is, and the one mapping
//!   from an outcome to the queue's action that both runtimes carry out.
//! - [`metrics`]: metric names and the one mapping from a processed receipt or a publish to
//!   metric values (printed as EMF on AWS, served as Prometheus text locally).
//! - [`format`]: the native Slack and Discord message formats.
//! - [`sealing`]: secrets at rest: envelope encryption of secrets and header values, the
//!   `KeyRing` port.
//! - [`samples`]: the guide's example payloads, for test sends.

pub mod delivery;
pub mod delivery_service;
pub mod dispatch;
pub mod event;
pub mod filter;
pub mod flow;
pub mod format;
pub mod headers;
pub mod health;
pub mod hourly;
pub mod idempotency;
pub mod ids;
pub mod jsjson;
pub mod metrics;
pub mod notify;
pub mod ports;
pub mod recovery;
pub mod samples;
pub mod sealing;
pub mod shared_read;
pub mod signing;
pub mod time;
pub mod validate;
pub mod webhook;
pub mod webhook_service;

#[cfg(feature = "conformance")]
pub mod conformance;

pub use event::EventType;
pub use ids::{BucketId, DeliveryId, IdError, OwnerId, RecoverJobId, WebhookId};
pub use time::Timestamp;
