//! # webhooks-aws
//!
//! The AWS adapters of dakkio webhooks: [`DynamoDbSubscriptionStore`] (the
//! [`SubscriptionStore`](webhooks_core::ports::SubscriptionStore) port on DynamoDB) and the loading
//! of the AWS SDK configuration the Lambda entry points share.
//!
//! This crate depends on `webhooks-core` and the AWS SDK only. It must not depend on axum, the
//! Lambda runtime or any entry point: the Lambda mains, the local binary (for its AWS option) and
//! the integration tests depend on it, never the other way round. SDK types stay inside: every
//! port method answers with domain values and [`StoreError`](webhooks_core::ports::StoreError).
//!
//! ## Layout
//! - [`config`]: [`load_sdk_config`] and the typed [`DynamoDbConfig`] read from the environment.
//! - [`dynamodb`]: the store, its item mapping (`WebhookItem`), expressions and error mapping.
//!   The table design (key schema, the `byOwner` and `byBucket` indexes) is documented there and
//!   declared in the repository's `template.yaml`, from which the integration tests build their
//!   emulator tables.

pub mod config;
pub mod dynamodb;

pub use config::{ConfigError, DynamoDbConfig, load_sdk_config};
pub use dynamodb::DynamoDbSubscriptionStore;
