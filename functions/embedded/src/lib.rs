//! # webhooks-embedded
//!
//! The local mode's persistent storage and delivery side, on one embedded SQLite database file,
//! so data survives a restart with no AWS and no server to run: the webhooks
//! [`SubscriptionStore`], the [`DeliveryLog`], the delivery queue with SQS's semantics
//! (visibility timeout, receive count, dead letters, redrive), and the in-process worker that
//! drives the core's dispatcher from that queue.
//!
//! This crate must not depend on the AWS SDK, the Lambda runtime or an HTTP server. It depends on
//! `webhooks-core` for the ports it implements, and only `webhooks-local` and tests depend on it.
//!
//! ## Why SQLite
//! - Transactions and conditional writes are plain SQL (`INSERT … ON CONFLICT DO NOTHING`,
//!   `UPDATE … WHERE id = ? AND owner_id = ?`, `SET total = total + 1`), which is exactly what
//!   the DynamoDB adapter gets from condition and update expressions, so both keep one contract.
//! - One file, compiled in (`bundled`): nothing to install, nothing to start.
//! - Mature and durable: in WAL mode with `synchronous=FULL`, a write that was acknowledged is on
//!   disk, through a crash of the process or of the machine.
//! - Secondary indexes for free: an owner's webhooks newest first and a bucket's subscribers are
//!   index lookups. An embedded key-value store such as `redb` was considered; it has no SQL and
//!   no secondary indexes, so we would hand-roll and keep consistent the owner and bucket indexes
//!   ourselves.
//!
//! ## Layout
//! - [`db`]: [`Database`], the file shared by every table's adapter: opening, pragmas, the writer
//!   thread that group-commits every write call, and the read-only connections reads run on;
//!   `db/schema.rs` the versioned migrations (`PRAGMA user_version`), `db/error.rs` [`DbError`].
//! - `rows`: what every table's adapter answers with the ports' `StoreError` (a rusqlite error
//!   as that error, `Corrupt` naming the row and the column of a value this build cannot read).
//! - [`secret_key`]: the `secret-key` file beside the database: the data key webhook secrets
//!   and header values are sealed with at rest.
//! - [`store`]: [`SqliteStore`], the [`SubscriptionStore`] on the `webhooks` table.
//! - [`delivery_log`]: [`SqliteDeliveryLog`], the [`DeliveryLog`]: attempts, finished markers
//!   (its `finish` updates the `webhooks` counters in the same transaction), dead letters.
//! - [`health`]: [`SqliteHealthStore`], the circuit breakers' states (`webhook_health`).
//! - [`idempotency`]: [`SqliteIdempotencyStore`], the `Idempotency-Key` records of publishing
//!   (`idempotency_keys`).
//! - [`notices`]: [`SqliteNoticeStore`], what each webhook's owner was last told
//!   (`webhook_notices`, operational notifications).
//! - [`queue`]: [`SqliteQueue`], the [`DeliveryQueue`] and its worker side (receive, ack,
//!   retry-after, dead-letter).
//! - [`worker`]: [`Worker`] / [`run_worker`], the poller the local mode runs next to the API.
//!
//! [`SubscriptionStore`]: webhooks_core::ports::SubscriptionStore
//! [`DeliveryLog`]: webhooks_core::ports::DeliveryLog
//! [`DeliveryQueue`]: webhooks_core::ports::DeliveryQueue

pub mod db;
pub mod delivery_log;
pub mod health;
pub mod idempotency;
pub mod notices;
pub mod queue;
mod rows;
pub mod secret_key;
pub mod store;
pub mod worker;

pub use db::{Database, DbError};
pub use delivery_log::SqliteDeliveryLog;
pub use health::SqliteHealthStore;
pub use idempotency::SqliteIdempotencyStore;
pub use notices::SqliteNoticeStore;
pub use queue::{DlqMessage, MAX_RECEIVE_COUNT, Receipt, Received, SqliteQueue};
pub use store::SqliteStore;
pub use worker::{Worker, WorkerConfig, WorkerSummary, run_worker};
