//! # webhooks-embedded
//!
//! The local mode's persistent storage: the webhooks [`SubscriptionStore`] on an embedded SQLite
//! database, one file on disk, so data survives a restart with no AWS and no server to run.
//! The delivery queue of the local mode (SQS semantics: visibility timeout, receive count, dead
//! letters) is meant to live in the same file, as more tables on the same [`Database`].
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
//! - [`db`]: [`Database`], the connection shared by every table's adapter: opening, pragmas,
//!   versioned migrations (`PRAGMA user_version`), and running calls off the async runtime.
//! - [`store`]: [`SqliteStore`], the [`SubscriptionStore`] on the `webhooks` table.
//!
//! [`SubscriptionStore`]: webhooks_core::ports::SubscriptionStore

pub mod db;
pub mod store;

pub use db::{Database, DbError};
pub use store::SqliteStore;
