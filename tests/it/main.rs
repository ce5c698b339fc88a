//! The integration test binary (one binary, so one moto server serves every test of a run).
//!
//! - [`helpers`]: the moto server harness, `template.yaml` reading, DynamoDB fixtures.
//! - [`dynamodb`]: `DynamoDbSubscriptionStore` against DynamoDB in moto, on tables built from
//!   `template.yaml`.
//! - [`delivery_log`]: `DynamoDbDeliveryLog` against DynamoDB in moto (the core's contract).
//! - [`sqs`]: `SqsDeliveryQueue` and `SqsWorkerQueue` against SQS in moto.
//! - [`delivery`]: the delivery Lambda's handler end to end (moto queues and tables, real HTTP
//!   receivers on 127.0.0.1, the real sender).
//! - [`secrets`]: the API's JWT key read from Secrets Manager in moto (`JwtSecretId`).
//! - [`signatures`]: real deliveries verified by the guide's Node.js and Python checks.
//! - [`template`]: `template.yaml` declares what the code uses, and its deployment-critical
//!   properties (event source, queues, runtime, IAM, routes).
//! - [`events`]: every file of `events/` runs through its handler (the API Gateway ones here,
//!   through the API Lambda's glue; the SQS ones in [`delivery`]).
//! - [`fanout`]: 100 events × 100 webhooks through the API on a slow SQS (concurrent
//!   `SendMessageBatch`, the publish's time budget and its `207`).
//! - [`thousand`]: 1,000 events through SQS and the handler, every delivery accounted for.
//! - [`health`]: the circuit breaker's `DynamoDbHealthStore` (the core's contract) and the
//!   delivery Lambda's handler opening, deferring and probing on moto.
//! - [`idempotency`]: `Idempotency-Key` records in DynamoDB; keyed publishes on SQS (100
//!   concurrent repeats, a repeat after a part-way failure).
//! - [`notifications`]: operational notifications' notices in DynamoDB; a failed delivery
//!   queueing `webhook.failing` on SQS.
//!
//! - [`recovery`]: 1,000 dead letters in DynamoDB listed by cursor and recovered to SQS once by
//!   one `recover` job polled to completion.
//!
//! Needs moto and the Standard Webhooks library (`./infra/setup-venv.sh` installs both into
//! `./.venv`), `node` and `python3`; a missing moto fails the
//! tests with that instruction, it never skips them.

mod delivery;
mod delivery_log;
mod dynamodb;
mod events;
mod fanout;
mod faults;
mod filters;
mod health;
mod helpers;
mod idempotency;
mod notifications;
mod recovery;
mod secrets;
mod signatures;
mod sns;
mod sqs;
mod template;
mod thousand;
