//! # webhooks-aws
//!
//! The AWS adapters of dakkio webhooks: [`DynamoDbSubscriptionStore`] (the
//! [`SubscriptionStore`](webhooks_core::ports::SubscriptionStore) port on DynamoDB),
//! [`DynamoDbDeliveryLog`] (the [`DeliveryLog`](webhooks_core::ports::DeliveryLog) port),
//! [`SqsDeliveryQueue`] (the [`DeliveryQueue`](webhooks_core::ports::DeliveryQueue) port on SQS),
//! [`SqsWorkerQueue`] (what the delivery Lambda does to a received message: change its
//! visibility, move it to the dead-letter queue), and the loading of the AWS SDK configuration the
//! Lambda entry points share.
//!
//! This crate depends on `webhooks-core` and the AWS SDK only. It must not depend on axum, the
//! Lambda runtime or any entry point: the Lambda mains (`webhooks-api` behind its default
//! `lambda` feature, `webhooks-delivery`), the benchmarks and the integration tests depend on it,
//! never the other way round; the local binary does not. SDK types stay inside: every
//! port method answers with domain values and [`StoreError`](webhooks_core::ports::StoreError),
//! [`EnqueueError`](webhooks_core::ports::EnqueueError) or [`QueueError`].
//!
//! ## Layout
//! - [`config`]: [`load_sdk_config`] and the typed configs read from the environment
//!   (`WEBHOOKS_TABLE`, `SECRETS_KEY_ARN`, `DELIVERIES_TABLE`, `QUEUE_URL`, `DLQ_URL`).
//! - [`dynamodb`]: the store, its item mapping (`WebhookItem`), expressions and error mapping;
//!   [`dynamodb::delivery_log`]: the delivery log and its table design;
//!   [`dynamodb::idempotency`]: `Idempotency-Key` records, items of the deliveries table;
//!   [`dynamodb::health`]: the circuit breakers' states, items of the deliveries table;
//!   [`dynamodb::notices`]: operational notifications' notices, items of the webhooks table.
//! - [`emf`]: the functions' metrics as CloudWatch Embedded Metric Format lines.
//! - [`kms`]: [`KmsKeyRing`](kms::KmsKeyRing), the data keys that seal webhook secrets at rest.
//! - [`secrets`]: the API function's JWT key read from Secrets Manager at cold start.
//! - `sns` (feature `sns`, turned on by the delivery function only): operators' alerts
//!   (`webhook.disabled`) published to an SNS topic.
//! - [`sqs`]: the delivery queue (enqueue in batches) and the worker-side actions.
//!
//! The table and queue designs are documented in their modules and declared in the repository's
//! `template.yaml`, from which the integration tests build their emulator tables and queues.

pub mod config;
pub mod dynamodb;
pub mod emf;
pub mod kms;
pub mod secrets;
#[cfg(feature = "sns")]
pub mod sns;
pub mod sqs;

pub use config::{
    ConfigError, DeliveryLogConfig, DynamoDbConfig, SqsConfig, SqsWorkerConfig, load_sdk_config,
};
pub use dynamodb::health::DynamoDbHealthStore;
pub use dynamodb::idempotency::DynamoDbIdempotencyStore;
pub use dynamodb::notices::DynamoDbNoticeStore;
pub use dynamodb::{DynamoDbDeliveryLog, DynamoDbSubscriptionStore, FinishScope, RecordInScope};
#[cfg(feature = "sns")]
pub use sns::SnsOperatorAlerts;
pub use sqs::{QueueError, SqsDeliveryQueue, SqsWorkerQueue};
