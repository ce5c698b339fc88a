//! [`DynamoDbDeliveryLog`]: the [`DeliveryLog`] port on DynamoDB — delivery attempts, final
//! markers and dead letters in one table, the outcome counters in each webhook's stats item in
//! the webhooks table (`<webhookId>#stats`, see [`super::item`]).
//!
//! ## Table design (declared as `DeliveriesTable` in `template.yaml`)
//!
//! Every item of a webhook shares its partition (`webhookId`); the sort key's prefix tells the
//! kinds apart. Numbers in keys are zero-padded so that string order is numeric order.
//!
//! | item | `sk` (RANGE) | TTL `expiresAt` |
//! |---|---|---|
//! | attempt | `A#<deliveryId>#<generation:010>#<attempt:05>` | `at` + 30 days |
//! | final marker (`final` = outcome; a success's marker *is* its attempt) | `A#<deliveryId>#<generation:010>#F` | `at` + 30 days |
//! | batch record (see below) | `B#<token>` | 1 day |
//! | dead letter | `D#<deliveryId>` | none: kept until redelivered (claimed by a `DeleteItem` conditional on its `generation`) |
//! | recovery job | `J#<jobId>` | 30 days |
//! | hourly aggregate ([`webhooks_core::hourly`]): `delivered`, `failed`, `l<i>` latency bucket counters | `H#<hour:010>` (hours since the epoch) | 48 h after the hour |
//!
//! The table has **no index**. Delivery ids are ObjectIds made at publish time, so they sort by
//! time: `recent_attempts` is the table queried `A#…` descending (newest delivery first, then
//! generation and attempt; the marker, `F` after the digits, first; a late retry of an old
//! delivery is listed with its delivery), keeping the items that carry an `attempt`, and
//! `dead_letters` is `D#…` ascending (oldest delivery first), both eventually consistent.
//! `attempts_of` — the read the dispatcher bases its decisions on (was this delivery already
//! sent? which attempt is next?) — is a strongly consistent query of one delivery's `A#` prefix.
//! Recording an attempt twice keeps one record whatever its `at`, as the contract asks.
//!
//! ## Finishing: exactly once, per group
//!
//! A delivery is counted by the conditional put of its final marker (`attribute_not_exists`):
//! whoever writes it counts the outcome, a repeat finds it and counts nothing. A successful
//! attempt and its finish are one call ([`DeliveryLog::finish_delivered`]), so the marker carries
//! the attempt (at most [`SUCCESS_EXCERPT_BYTES`] of the answer) and there is no separate
//! attempt item. The delivery function's log coalesces ([`DynamoDbDeliveryLog::with_coalescing`]):
//! the finishes of one webhook wait until every record of the invocation that may still finish
//! is waiting too ([`FinishScope`]: a batch's outcomes of one webhook are one group however far
//! apart its receivers answered), or `linger` at most (a slow receiver's record); one instance
//! writes one group of a webhook at a time (the next group waits and grows meanwhile):
//! - **up to 3** deliveries: one `TransactWriteItems` — each marker's put, one update of the
//!   webhook's stats item (`<id>#stats` in the webhooks table) adding all their outcomes, and one
//!   `ADD` update per hour of the group (one, unless it straddles an hour) to the webhook's
//!   hourly aggregate `H#<hour>` (outcomes, and each delivered attempt's duration in its latency
//!   bucket). A marker that exists cancels it; that delivery drops out and the rest is tried
//!   again.
//! - **from 4**: the batch protocol. (1) put a batch record `B#<token>` naming the members;
//!   (2) put each marker on its own, conditionally, naming the batch; (3) one transaction: add
//!   the outcomes of the markers written to the stats item and delete the batch record
//!   (conditional on it existing) and add them to the hourly aggregate(s), as above. The
//!   record's removal is what makes the count happen once (the aggregate with it). A
//!   writer that dies between (2) and (3) leaves the record: the next receipt of any of its
//!   deliveries finds the marker naming a batch whose record is still there and, once it is older
//!   than the function's timeout (no writer can be left), counts the markers naming it and
//!   removes it (`settle_batch`); a younger one is answered "try again later". If any marker's
//!   write is uncertain (an error), step (3) is not made: every member's message comes back.
//!
//! The stats update sets `lastDelivery*` only if no later outcome is recorded (its condition);
//! when that fails the update is made again counting only, so outcomes committed out of order
//! never move them backwards. When the stats item is missing, the webhook either is gone
//! (nothing is counted, no marker) or predates stats items: [`super::ensure_stats`] creates it and
//! the write runs again. Transactions that collide (`TransactionConflict`) are retried with
//! jittered backoff.
//!
//! ## What a delivery costs
//!
//! A 1 KiB delivery that succeeds first time, sizes per DynamoDB's rules, at on-demand prices
//! (us-east-1: $0.625 per million write units, $0.125 per million read units; aws.amazon.com/
//! dynamodb/pricing/on-demand, read 2026-12-01). `lambda-cost` in `bench/` counts the calls one
//! by one against moto; BENCHMARKS.md has the runs (measured before this design).
//!
//! | call, per group of N deliveries of one webhook | units |
//! |---|---|
//! | `GetItem` webhook (consistent; shared by the instance for 1 s) | 1 RCU per batch |
//! | `Query` `attempts_of` | none on a first receipt |
//! | N ≤ 3: `TransactWriteItems` of N markers (~0.4 KB, the attempt inside) + the stats update + the hourly aggregate's update (~0.2 KB) | 2N + 2 + 2 WCU |
//! | N ≥ 4: batch record put + N marker puts + transaction (stats update + record delete + hourly aggregate update) | N + 1 + 6 WCU |
//!
//! (A group whose finishes straddle an hour updates two hourly aggregates: 2 WCU more.)
//! A batch of 10 to one webhook (the event source's `BatchSize`) is **17 WCU and 1 RCU: 1.7 WCU
//! and 0.1 RCU per delivery** (1.5 before the hourly aggregates; 5 WCU + 2–2.5 RCU per delivery
//! before per-group finishing: an attempt put and a per-delivery transaction; before that
//! 9–10 WCU); a lone delivery is 6 WCU. Ceilings (1,000 write units per second per item and per
//! partition): the stats item and the hour's aggregate are each written once per group (2 units
//! of the transaction per 10 deliveries: ~5,000 deliveries/s per webhook); the webhook's
//! partition of this table takes 1.5 units per delivery (marker 1, batch record put 0.1,
//! transactional delete 0.2 and hourly update 0.2: ~670 deliveries/s unless DynamoDB splits
//! it; delivery ids rise with time, so a split helps little) — that partition key, not the
//! counters, is now what bounds one webhook; sharding it (`webhookId#k`, history read from
//! every shard) is the way past it. Nothing is written per delivery under a bucket's key, so
//! a bucket has no ceiling of its own. Reading the 24 h chart is one `Query` of at most 24
//! aggregates (~2 RCU), whatever the traffic.
//!
//! Final markers expire with the attempts (30 days): longer than any delivery can stay in flight
//! (at most 21 attempts × 12 h) or in the dead-letter queue (14 days), so a late duplicate still
//! finds its marker. Dead letters never expire: they hold the only copy of the body for a
//! redelivery; the user removes them by redelivering them, and deleting a webhook removes its
//! dead letters, recovery jobs and hourly aggregates ([`DeliveryLog::purge_webhook`]).
//!
//! Must not depend on axum or the Lambda runtime; SDK types never leave this module.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, Delete, DeleteRequest, KeysAndAttributes, Put, Select, TransactWriteItem,
    Update, WriteRequest,
};
use serde::{Deserialize, Serialize};
use webhooks_core::delivery::{
    ATTEMPT_RETENTION_SECS, AttemptRecord, AttemptStatus, DeadLetter, DeliveryTask,
};
use webhooks_core::hourly::{self, HourlyStats};
use webhooks_core::ports::{AttemptQuery, DeadLetterQuery, DeliveryLog, LogPage, StoreError};
use webhooks_core::recovery::RecoverJob;
use webhooks_core::webhook::DeliveryStatus;
use webhooks_core::{DeliveryId, EventType, RecoverJobId, Timestamp, WebhookId};

use super::error::{condition_failed, unavailable};
use super::expr;
use super::item::{attr as webhook_attr, stats_id};
use crate::config::DeliveryLogConfig;

/// Attribute names of the deliveries table's keys.
pub mod key {
    /// HASH key of the table.
    pub const WEBHOOK_ID: &str = "webhookId";
    /// RANGE key of the table.
    pub const SK: &str = "sk";
    /// The TTL attribute (epoch seconds).
    pub const EXPIRES_AT: &str = "expiresAt";
}

/// How many times `finish` tries a transaction that collided with another write.
const FINISH_TRIES: u32 = 8;

/// The most of a receiver's answer kept with a *successful* attempt (bytes, cut at a character
/// boundary): with it, an attempt item stays under DynamoDB's 1 KB write unit (keys, ids, status
/// and timestamps take ~250 bytes). Failed attempts keep the whole excerpt the sender read
/// ([`webhooks_core::ports::SenderResponse::body_excerpt`], at most 1 KiB): that is where it
/// helps, and failures are the exception.
pub const SUCCESS_EXCERPT_BYTES: usize = 256;

type Item = HashMap<String, AttributeValue>;

/// The table's sort key of an attempt.
pub fn attempt_sk(delivery: &DeliveryId, generation: u32, attempt: u32) -> String {
    format!("A#{delivery}#{generation:010}#{attempt:05}")
}

/// The prefix of every attempt sort key of one delivery generation.
fn attempts_prefix(delivery: &DeliveryId, generation: u32) -> String {
    format!("A#{delivery}#{generation:010}#")
}

/// The table's sort key of the final marker of a delivery generation: inside the generation's
/// attempt prefix, after every attempt number (`F` sorts after digits), so a marker that
/// carries the successful attempt is listed with the attempts.
pub fn final_sk(delivery: &DeliveryId, generation: u32) -> String {
    format!("{}F", attempts_prefix(delivery, generation))
}

/// The attribute a final marker holds its delivery's outcome in (`success` / `failed`).
pub const FINAL: &str = "final";

/// The attribute every attempt record has (and a marker only when it carries the attempt).
pub const ATTEMPT: &str = "attempt";

/// The table's sort key of a dead letter.
pub fn dead_letter_sk(delivery: &DeliveryId) -> String {
    format!("D#{delivery}")
}

/// The table's sort key of a webhook's aggregate of `hour` ([`webhooks_core::hourly::hour_of`]).
pub fn hour_sk(hour: i64) -> String {
    format!("H#{:010}", hour.max(0))
}

/// Attribute names of an hourly aggregate: the outcomes' counters, and `l<i>` for latency
/// bucket `i` (absent = 0).
pub mod hourly_attr {
    pub const DELIVERED: &str = "delivered";
    pub const FAILED: &str = "failed";
    /// The counter of latency bucket `i`.
    pub fn latency(i: usize) -> String {
        format!("l{i}")
    }
}

/// `s` cut to at most `max` bytes, at a character boundary.
fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn expires_at(at: Timestamp) -> i64 {
    at.unix().saturating_add(ATTEMPT_RETENTION_SECS)
}

/// One attempt as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AttemptItem {
    webhook_id: String,
    sk: String,
    delivery_id: String,
    generation: u32,
    attempt: u32,
    event: String,
    status: AttemptStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    status_code: Option<u16>,
    duration_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    response_body: Option<String>,
    at: String,
    expires_at: i64,
}

impl From<&AttemptRecord> for AttemptItem {
    fn from(a: &AttemptRecord) -> Self {
        Self {
            webhook_id: a.webhook_id.to_string(),
            sk: attempt_sk(&a.delivery_id, a.generation, a.attempt),
            delivery_id: a.delivery_id.to_string(),
            generation: a.generation,
            attempt: a.attempt,
            event: a.event.as_str().to_owned(),
            status: a.status,
            status_code: a.status_code,
            duration_ms: a.duration_ms,
            error: a.error.clone(),
            response_body: match a.status {
                AttemptStatus::Success => a
                    .response_body
                    .as_deref()
                    .map(|b| cut(b, SUCCESS_EXCERPT_BYTES).to_owned()),
                _ => a.response_body.clone(),
            },
            at: a.at.to_rfc3339(),
            expires_at: expires_at(a.at),
        }
    }
}

impl TryFrom<AttemptItem> for AttemptRecord {
    type Error = String;

    fn try_from(i: AttemptItem) -> Result<Self, String> {
        Ok(AttemptRecord {
            webhook_id: WebhookId::parse(&i.webhook_id).map_err(|e| format!("webhookId: {e}"))?,
            delivery_id: DeliveryId::parse(&i.delivery_id)
                .map_err(|e| format!("deliveryId: {e}"))?,
            generation: i.generation,
            attempt: i.attempt,
            event: event(&i.event)?,
            status: i.status,
            status_code: i.status_code,
            duration_ms: i.duration_ms,
            error: i.error,
            response_body: i.response_body,
            at: timestamp("at", &i.at)?,
        })
    }
}

/// One dead letter as stored: the task's fields flattened next to why and when it gave up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeadLetterItem {
    webhook_id: String,
    sk: String,
    delivery_id: String,
    event: String,
    generation: u32,
    body: String,
    created_at: String,
    error: String,
    attempts: u32,
    at: String,
}

impl From<&DeadLetter> for DeadLetterItem {
    fn from(d: &DeadLetter) -> Self {
        Self {
            webhook_id: d.task.webhook_id.to_string(),
            sk: dead_letter_sk(&d.task.delivery_id),
            delivery_id: d.task.delivery_id.to_string(),
            event: d.task.event.as_str().to_owned(),
            generation: d.task.generation,
            body: d.task.body.clone(),
            created_at: d.task.created_at.to_rfc3339(),
            error: d.error.clone(),
            attempts: d.attempts,
            at: d.at.to_rfc3339(),
        }
    }
}

impl TryFrom<DeadLetterItem> for DeadLetter {
    type Error = String;

    fn try_from(i: DeadLetterItem) -> Result<Self, String> {
        Ok(DeadLetter {
            task: DeliveryTask {
                delivery_id: DeliveryId::parse(&i.delivery_id)
                    .map_err(|e| format!("deliveryId: {e}"))?,
                webhook_id: WebhookId::parse(&i.webhook_id)
                    .map_err(|e| format!("webhookId: {e}"))?,
                event: event(&i.event)?,
                generation: i.generation,
                attempts_made: 0,
                body: i.body,
                created_at: timestamp("createdAt", &i.created_at)?,
            },
            error: i.error,
            attempts: i.attempts,
            at: timestamp("at", &i.at)?,
        })
    }
}

fn event(s: &str) -> Result<EventType, String> {
    s.parse::<EventType>()
        .map_err(|_| format!("event: unknown event {s:?}"))
}

fn timestamp(attribute: &str, s: &str) -> Result<Timestamp, String> {
    Timestamp::parse(s).map_err(|e| format!("{attribute}: {e}"))
}

/// Decodes a raw item as `I`, then into the domain type `T`, or reports it `Corrupt`.
fn decode<I, T>(raw: Item) -> Result<T, StoreError>
where
    I: for<'de> Deserialize<'de> + TryInto<T, Error = String>,
{
    let describe = |raw: &Item| {
        let part = |k: &str| match raw.get(k) {
            Some(AttributeValue::S(v)) => v.clone(),
            _ => "?".to_owned(),
        };
        format!("{}/{}", part(key::WEBHOOK_ID), part(key::SK))
    };
    let name = describe(&raw);
    let problem = match serde_dynamo::from_item::<_, I>(raw) {
        Ok(item) => match item.try_into() {
            Ok(v) => return Ok(v),
            Err(e) => e,
        },
        Err(e) => e.to_string(),
    };
    tracing::error!(item = %name, %problem, "undecodable delivery-log item in DynamoDB");
    Err(StoreError::Corrupt(format!(
        "delivery-log item {name}: {problem}"
    )))
}

/// An hourly aggregate item as [`HourlyStats`] (a counter it lacks is 0).
fn decode_hourly(item: &Item) -> Result<HourlyStats, StoreError> {
    let sk = match item.get(key::SK) {
        Some(AttributeValue::S(v)) => v.as_str(),
        _ => "?",
    };
    let bad = |what: &str| {
        tracing::error!(sk, what, "undecodable hourly aggregate in DynamoDB");
        StoreError::Corrupt(format!("hourly aggregate {sk}: {what}"))
    };
    let hour = sk
        .strip_prefix("H#")
        .and_then(|h| h.parse::<i64>().ok())
        .ok_or_else(|| bad("sort key"))?;
    let number = |attribute: &str| match item.get(attribute) {
        None => Ok(0),
        Some(AttributeValue::N(n)) => n.parse::<u64>().map_err(|_| bad(attribute)),
        Some(_) => Err(bad(attribute)),
    };
    let mut h = HourlyStats::empty(hour);
    h.delivered = number(hourly_attr::DELIVERED)?;
    h.failed = number(hourly_attr::FAILED)?;
    for (i, n) in h.latency.counts.iter_mut().enumerate() {
        *n = number(&hourly_attr::latency(i))?;
    }
    Ok(h)
}

fn encode<T: Serialize>(item: &T, what: &str) -> Result<Item, StoreError> {
    serde_dynamo::to_item(item)
        .map_err(|e| StoreError::Corrupt(format!("{what} not encodable: {e}")))
}

/// Delivery attempts, final markers and dead letters in DynamoDB (see the module docs).
#[derive(Debug, Clone)]
pub struct DynamoDbDeliveryLog {
    client: Client,
    table: String,
    webhooks_table: String,
    /// Set by [`Self::with_coalescing`].
    coalescer: Option<Arc<Coalescer>>,
}

impl DynamoDbDeliveryLog {
    /// A log on `deliveries_table`, counting outcomes on the webhooks of `webhooks_table`.
    pub fn new(
        client: Client,
        deliveries_table: impl Into<String>,
        webhooks_table: impl Into<String>,
    ) -> Self {
        Self {
            client,
            table: deliveries_table.into(),
            webhooks_table: webhooks_table.into(),
            coalescer: None,
        }
    }

    /// A log built from the shared SDK config and the adapter's config (what the Lambda mains do
    /// at cold start).
    pub fn from_config(sdk: &SdkConfig, config: &DeliveryLogConfig) -> Self {
        Self::new(
            Client::new(sdk),
            config.deliveries_table.clone(),
            config.webhooks_table.clone(),
        )
    }

    /// The deliveries table.
    pub fn table_name(&self) -> &str {
        &self.table
    }

    fn key(webhook: &WebhookId, sk: String) -> Item {
        HashMap::from([
            (key::WEBHOOK_ID.to_owned(), s(webhook.as_str())),
            (key::SK.to_owned(), s(sk)),
        ])
    }

    /// Queries `webhookId = webhook AND begins_with(sk, prefix)`, `consistent` or not, in
    /// `forward` order, following pages until `limit` items are found or none are left.
    async fn query_prefix(
        &self,
        consistent: bool,
        webhook: &WebhookId,
        prefix: String,
        forward: bool,
        limit: Option<usize>,
    ) -> Result<Vec<Item>, StoreError> {
        let mut found = Vec::new();
        let mut start_key: Option<Item> = None;
        loop {
            let page_limit = limit.map(|l| i32::try_from(l - found.len()).unwrap_or(i32::MAX));
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .consistent_read(consistent)
                .key_condition_expression("#pk = :pk AND begins_with(#rk, :prefix)")
                .expression_attribute_names("#pk", key::WEBHOOK_ID)
                .expression_attribute_names("#rk", key::SK)
                .expression_attribute_values(":pk", s(webhook.as_str()))
                .expression_attribute_values(":prefix", s(prefix.clone()))
                .scan_index_forward(forward)
                .set_limit(page_limit)
                .set_exclusive_start_key(start_key.take())
                .send()
                .await
                .map_err(|e| unavailable("Query", e))?;
            found.extend(out.items.unwrap_or_default());
            let full = limit.is_some_and(|l| found.len() >= l);
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() && !full => start_key = Some(k),
                _ => return Ok(found),
            }
        }
    }

    /// One `Update` per hour of `counted`: `ADD` its outcomes and latencies to the webhook's
    /// aggregate of that hour (created by the first), `SET` its expiry. No condition: it is
    /// written only by the transaction that counts the finishes, so it counts what they count.
    fn hourly_updates(
        &self,
        webhook: &WebhookId,
        counted: impl IntoIterator<Item = Counted>,
    ) -> Result<Vec<Update>, aws_sdk_dynamodb::error::BuildError> {
        hourly::by_hour(counted.into_iter().map(Counted::hourly))
            .into_iter()
            .map(|h| {
                let mut e = expr::Expr::default();
                let mut adds = Vec::new();
                let mut add = |e: &mut expr::Expr, attribute: &str, n: u64| {
                    if n > 0 {
                        let name = e.name(attribute);
                        let value = e.value(attribute, AttributeValue::N(n.to_string()));
                        adds.push(format!("{name} {value}"));
                    }
                };
                add(&mut e, hourly_attr::DELIVERED, h.delivered);
                add(&mut e, hourly_attr::FAILED, h.failed);
                for (i, &n) in h.latency.counts.iter().enumerate() {
                    add(&mut e, &hourly_attr::latency(i), n);
                }
                let expires = e.name(key::EXPIRES_AT);
                let at = e.value(
                    "expires",
                    AttributeValue::N(hourly::expires_at(h.hour).to_string()),
                );
                Update::builder()
                    .table_name(&self.table)
                    .set_key(Some(Self::key(webhook, hour_sk(h.hour))))
                    .update_expression(format!("ADD {} SET {expires} = {at}", adds.join(", ")))
                    .set_expression_attribute_names(Some(e.names))
                    .set_expression_attribute_values(Some(e.values))
                    .build()
            })
            .collect()
    }

    /// One `TransactWriteItems` of a group's finish: the final marker of each delivery
    /// (conditional on its absence) and one update of the webhook's stats item adding all of
    /// their outcomes.
    async fn finish_once(
        &self,
        webhook: &WebhookId,
        group: &[&Finishing],
        part: expr::OutcomePart,
    ) -> Result<(), FinishFailure> {
        let built = |e: aws_sdk_dynamodb::error::BuildError| {
            FinishFailure::Other(StoreError::Unavailable(format!("request not built: {e}")))
        };
        let mut request = self.client.transact_write_items();
        for f in group {
            let put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(f.marker(webhook).map_err(FinishFailure::Other)?))
                .condition_expression("attribute_not_exists(#pk)")
                .expression_attribute_names("#pk", key::WEBHOOK_ID)
                .build()
                .map_err(built)?;
            request = request.transact_items(TransactWriteItem::builder().put(put).build());
        }
        let outcomes: Vec<(DeliveryStatus, Timestamp)> =
            group.iter().map(|f| (f.status, f.at)).collect();
        let hourly = self
            .hourly_updates(webhook, group.iter().map(|f| f.counted()))
            .map_err(built)?;
        let (e, condition) = expr::outcomes_update(&outcomes, part);
        let update = Update::builder()
            .table_name(&self.webhooks_table)
            .key(webhook_attr::ID, s(stats_id(webhook.as_str())))
            .update_expression(e.expression)
            .condition_expression(condition)
            .set_expression_attribute_names(Some(e.names))
            .set_expression_attribute_values(Some(e.values))
            .build()
            .map_err(built)?;
        request = request.transact_items(TransactWriteItem::builder().update(update).build());
        for h in hourly {
            request = request.transact_items(TransactWriteItem::builder().update(h).build());
        }
        let result = request.send().await;
        match result {
            Ok(_) => Ok(()),
            Err(err) => Err(match finish_failure(&err, group.len()) {
                Cancelled::Other => FinishFailure::Other(unavailable("TransactWriteItems", err)),
                Cancelled::Done(done) => FinishFailure::Done(done),
                Cancelled::NoStats => FinishFailure::NoStats,
                Cancelled::Conflict => FinishFailure::Conflict,
            }),
        }
    }

    /// Finishes `group` (deliveries of one webhook): each is counted once, in as few
    /// transactions as its duplicates allow. One result per member, in order: `true` for the
    /// ones this call counted, `false` for those counted before (or whose webhook is gone).
    async fn finish_group(
        &self,
        webhook: &WebhookId,
        group: Vec<Finishing>,
    ) -> Vec<Result<bool, StoreError>> {
        let mut results: Vec<Option<Result<bool, StoreError>>> =
            std::iter::repeat_with(|| None).take(group.len()).collect();
        // A delivery twice in one group (an SQS duplicate in the same batch) is one marker: a
        // transaction may not write one item twice. The later copies follow the first.
        let mut first_of: Vec<usize> = Vec::with_capacity(group.len());
        for (i, f) in group.iter().enumerate() {
            let first = group[..i]
                .iter()
                .position(|g| g.delivery == f.delivery && g.generation == f.generation)
                .unwrap_or(i);
            first_of.push(first);
        }
        let mut pending: Vec<usize> = (0..group.len()).filter(|&i| first_of[i] == i).collect();
        if pending.len() >= BATCH_PROTOCOL_MIN {
            let members: Vec<&Finishing> = pending.iter().map(|&i| &group[i]).collect();
            let answers = self.finish_batch(webhook, &members).await;
            for (&i, answer) in pending.iter().zip(answers) {
                results[i] = Some(answer);
            }
            pending.clear();
        }
        let mut ensured = false;
        let mut tries = 0;
        // The stats update's condition fails when a newer outcome is recorded (groups may
        // commit out of order) or when the stats item is missing: count only, then; if that
        // fails too, the item is missing (give it one and count again in full).
        let mut part = expr::OutcomePart::CountAndLatest;
        while !pending.is_empty() {
            tries += 1;
            let members: Vec<&Finishing> = pending.iter().map(|&i| &group[i]).collect();
            match self.finish_once(webhook, &members, part).await {
                Ok(()) => {
                    for &i in &pending {
                        results[i] = Some(Ok(true));
                    }
                    pending.clear();
                }
                // Counted before: those drop out, the rest is tried again at once.
                Err(FinishFailure::Done(done)) => {
                    let mut keep = Vec::with_capacity(pending.len());
                    for (position, &i) in pending.iter().enumerate() {
                        if done.contains(&position) {
                            results[i] = Some(self.after_duplicate(webhook, &group[i]).await);
                        } else {
                            keep.push(i);
                        }
                    }
                    pending = keep;
                    tries -= 1; // progress, not a collision
                }
                Err(FinishFailure::NoStats) if part == expr::OutcomePart::CountAndLatest => {
                    part = expr::OutcomePart::CountOnly;
                    tries -= 1;
                }
                Err(FinishFailure::NoStats) => {
                    part = expr::OutcomePart::CountAndLatest;
                    let exists = if ensured {
                        Ok(false)
                    } else {
                        super::ensure_stats(&self.client, &self.webhooks_table, webhook).await
                    };
                    ensured = true;
                    match exists {
                        Ok(true) => {}
                        // The webhook is gone: nothing to count, no marker.
                        Ok(false) => {
                            for &i in &pending {
                                results[i] = Some(Ok(false));
                            }
                            pending.clear();
                        }
                        Err(e) => {
                            for &i in &pending {
                                results[i] = Some(Err(copy_error(&e)));
                            }
                            pending.clear();
                        }
                    }
                }
                Err(FinishFailure::Conflict) if tries < FINISH_TRIES => {
                    tokio::time::sleep(conflict_backoff(tries)).await;
                }
                Err(FinishFailure::Conflict) => {
                    for &i in &pending {
                        results[i] = Some(Err(StoreError::Unavailable(format!(
                            "DynamoDB TransactWriteItems: still conflicting after {FINISH_TRIES} tries"
                        ))));
                    }
                    pending.clear();
                }
                Err(FinishFailure::Other(e)) => {
                    for &i in &pending {
                        results[i] = Some(Err(copy_error(&e)));
                    }
                    pending.clear();
                }
            }
        }
        (0..group.len())
            .map(|i| {
                let first = first_of[i];
                let own = if first == i { results[i].take() } else { None };
                match own {
                    Some(r) => r,
                    None => match &results[first] {
                        // Counted by its first copy (or not at all): this copy counts nothing.
                        Some(Ok(_)) => Ok(false),
                        Some(Err(e)) => Err(copy_error(e)),
                        None => Ok(false),
                    },
                }
            })
            .collect()
    }

    /// The batch protocol (see the module docs): a batch record naming the members, each
    /// marker written on its own (conditional, non-transactional, naming the batch), then the
    /// stats update and the batch record's removal in one transaction. Every member's answer is
    /// certain only when that transaction ran; otherwise all of them fail (the messages are
    /// received again, and whoever finds a marker of a stale batch finishes that batch).
    async fn finish_batch(
        &self,
        webhook: &WebhookId,
        members: &[&Finishing],
    ) -> Vec<Result<bool, StoreError>> {
        let all = |e: StoreError| members.iter().map(|_| Err(copy_error(&e))).collect();
        let token = format!("{:016x}", rand::random::<u64>());
        let now = wall_now();
        let mut record = Self::key(webhook, batch_sk(&token));
        record.insert(
            "members".into(),
            AttributeValue::L(
                members
                    .iter()
                    .map(|f| {
                        AttributeValue::M(HashMap::from([
                            ("d".to_owned(), s(f.delivery.as_str())),
                            ("g".to_owned(), AttributeValue::N(f.generation.to_string())),
                        ]))
                    })
                    .collect(),
            ),
        );
        record.insert("at".into(), s(now.to_rfc3339()));
        record.insert(
            key::EXPIRES_AT.into(),
            AttributeValue::N((now.unix() + BATCH_RECORD_TTL_SECS).to_string()),
        );
        if let Err(e) = self.put(record).await {
            return all(e);
        }
        let writes = futures_util::future::join_all(
            members
                .iter()
                .map(|f| self.write_marker(webhook, f, Some(&token))),
        )
        .await;
        let mut answers: Vec<Result<bool, StoreError>> = Vec::with_capacity(members.len());
        let mut winners: Vec<Counted> = Vec::new();
        for write in writes {
            match write {
                Ok(MarkerWrite::Written) => answers.push(Ok(true)),
                Ok(MarkerWrite::Existed(None)) => answers.push(Ok(false)),
                Ok(MarkerWrite::Existed(Some(other))) => {
                    answers.push(self.settle_batch(webhook, &other).await.map(|()| false))
                }
                Err(e) => answers.push(Err(e)),
            }
        }
        for (f, a) in members.iter().zip(&answers) {
            if matches!(a, Ok(true)) {
                winners.push(f.counted());
            }
        }
        if let Some(e) = answers.iter().find_map(|a| a.as_ref().err()) {
            // A marker whose write is uncertain: leave the batch record for its next receipt.
            let e = copy_error(e);
            return answers
                .into_iter()
                .map(|a| match a {
                    Err(own) => Err(own),
                    Ok(_) => Err(copy_error(&e)),
                })
                .collect();
        }
        match self.count_batch(webhook, &token, &winners).await {
            Ok(()) => answers,
            Err(e) => all(e),
        }
    }

    /// Writes `f`'s final marker if it is absent, naming `batch` when given.
    async fn write_marker(
        &self,
        webhook: &WebhookId,
        f: &Finishing,
        batch: Option<&str>,
    ) -> Result<MarkerWrite, StoreError> {
        let mut item = f.marker(webhook)?;
        if let Some(b) = batch {
            item.insert(BATCH.into(), s(b));
        }
        if self.put_if_absent(item).await? {
            return Ok(MarkerWrite::Written);
        }
        Ok(MarkerWrite::Existed(
            self.batch_of_marker(webhook, f)
                .await?
                .filter(|b| Some(b.as_str()) != batch),
        ))
    }

    /// The batch `f`'s existing marker names, if any (one consistent read, made only for a
    /// delivery found finished before).
    async fn batch_of_marker(
        &self,
        webhook: &WebhookId,
        f: &Finishing,
    ) -> Result<Option<String>, StoreError> {
        let existing = self
            .get_consistent(webhook, final_sk(&f.delivery, f.generation))
            .await?;
        Ok(existing.and_then(|i| match i.get(BATCH) {
            Some(AttributeValue::S(b)) => Some(b.clone()),
            _ => None,
        }))
    }

    /// A delivery found finished before: counted, unless its marker names a batch whose
    /// writer left before counting it — then that batch is finished now (see
    /// [`Self::settle_batch`]). `false` (this call counted nothing) or why it cannot tell yet.
    async fn after_duplicate(
        &self,
        webhook: &WebhookId,
        f: &Finishing,
    ) -> Result<bool, StoreError> {
        match self.batch_of_marker(webhook, f).await? {
            Some(token) => self.settle_batch(webhook, &token).await.map(|()| false),
            None => Ok(false),
        }
    }

    /// Adds `winners` to the webhook's stats and to its hourly aggregates and removes the batch
    /// record, in one transaction: the record's removal is what makes the count happen once.
    async fn count_batch(
        &self,
        webhook: &WebhookId,
        token: &str,
        winners: &[Counted],
    ) -> Result<(), StoreError> {
        if winners.is_empty() {
            return self.delete_key(webhook, batch_sk(token)).await;
        }
        let record_key = Self::key(webhook, batch_sk(token));
        let built = |e: aws_sdk_dynamodb::error::BuildError| {
            StoreError::Unavailable(format!("request not built: {e}"))
        };
        let outcomes: Vec<(DeliveryStatus, Timestamp)> =
            winners.iter().map(|c| (c.status, c.at)).collect();
        let mut ensured = false;
        let mut part = expr::OutcomePart::CountAndLatest;
        for n in 1..=FINISH_TRIES {
            let (e, condition) = expr::outcomes_update(&outcomes, part);
            let update = Update::builder()
                .table_name(&self.webhooks_table)
                .key(webhook_attr::ID, s(stats_id(webhook.as_str())))
                .update_expression(e.expression)
                .condition_expression(condition)
                .set_expression_attribute_names(Some(e.names))
                .set_expression_attribute_values(Some(e.values))
                .build()
                .map_err(built)?;
            let delete = Delete::builder()
                .table_name(&self.table)
                .set_key(Some(record_key.clone()))
                .condition_expression("attribute_exists(#pk)")
                .expression_attribute_names("#pk", key::WEBHOOK_ID)
                .build()
                .map_err(built)?;
            let mut request = self
                .client
                .transact_write_items()
                .transact_items(TransactWriteItem::builder().update(update).build())
                .transact_items(TransactWriteItem::builder().delete(delete).build());
            for h in self
                .hourly_updates(webhook, winners.iter().copied())
                .map_err(built)?
            {
                request = request.transact_items(TransactWriteItem::builder().update(h).build());
            }
            let result = request.send().await;
            let codes = match &result {
                Ok(_) => return Ok(()),
                Err(err) => cancellation_codes(err),
            };
            let code = |i: usize| codes.get(i).map(String::as_str).unwrap_or("None");
            if code(1) == "ConditionalCheckFailed" {
                // Removed by whoever finished this batch first: counted.
                return Ok(());
            }
            if code(0) == "ConditionalCheckFailed" && part == expr::OutcomePart::CountAndLatest {
                // A newer outcome is recorded already, or the stats item is missing.
                part = expr::OutcomePart::CountOnly;
                continue;
            }
            if code(0) == "ConditionalCheckFailed" {
                part = expr::OutcomePart::CountAndLatest;
                // No stats item: a webhook from before stats items, or none at all.
                if !ensured
                    && super::ensure_stats(&self.client, &self.webhooks_table, webhook).await?
                {
                    ensured = true;
                    continue;
                }
                // The webhook is gone: nothing to count; the record goes.
                return self.delete_key(webhook, batch_sk(token)).await;
            }
            if !worth_trying_again(&codes) {
                return Err(unavailable(
                    "TransactWriteItems",
                    result.expect_err("a failed transaction"),
                ));
            }
            if n < FINISH_TRIES {
                tokio::time::sleep(conflict_backoff(n)).await;
            }
        }
        Err(StoreError::Unavailable(format!(
            "DynamoDB TransactWriteItems: still conflicting after {FINISH_TRIES} tries"
        )))
    }

    /// Finishes the batch `token` if its record is still there and stale (its writer is gone:
    /// older than the coalescer's `stale_after`): counts the members whose marker names it.
    /// A record too young to judge is an error, so that the caller's message comes back later.
    async fn settle_batch(&self, webhook: &WebhookId, token: &str) -> Result<(), StoreError> {
        let Some(record) = self.get_consistent(webhook, batch_sk(token)).await? else {
            return Ok(()); // counted
        };
        let at = match record.get("at") {
            Some(AttributeValue::S(t)) => Timestamp::parse(t).ok(),
            _ => None,
        };
        let stale_after = self
            .coalescer
            .as_ref()
            .map_or(DEFAULT_STALE_AFTER, |c| c.stale_after);
        let age = at.map(|t| wall_now().unix() - t.unix());
        if age.is_some_and(|a| a >= 0 && (a as u64) < stale_after.as_secs()) {
            return Err(StoreError::Unavailable(format!(
                "counted by batch {token}, which is still being written"
            )));
        }
        let mut keys = Vec::new();
        if let Some(AttributeValue::L(members)) = record.get("members") {
            for m in members {
                let AttributeValue::M(m) = m else { continue };
                let (Some(AttributeValue::S(d)), Some(AttributeValue::N(g))) =
                    (m.get("d"), m.get("g"))
                else {
                    continue;
                };
                let (Ok(d), Ok(g)) = (DeliveryId::parse(d), g.parse::<u32>()) else {
                    continue;
                };
                keys.push(Self::key(webhook, final_sk(&d, g)));
            }
        }
        let mut winners = Vec::new();
        for chunk in keys.chunks(100) {
            let mut wanted = KeysAndAttributes::builder().consistent_read(true);
            for k in chunk {
                wanted = wanted.keys(k.clone());
            }
            let wanted = wanted
                .build()
                .map_err(|e| StoreError::Unavailable(format!("request not built: {e}")))?;
            let mut request = HashMap::from([(self.table.clone(), wanted)]);
            // Unprocessed keys are asked for again until none is left.
            while !request.is_empty() {
                let out = self
                    .client
                    .batch_get_item()
                    .set_request_items(Some(request))
                    .send()
                    .await
                    .map_err(|e| unavailable("BatchGetItem", e))?;
                for item in out
                    .responses
                    .unwrap_or_default()
                    .remove(&self.table)
                    .unwrap_or_default()
                {
                    let named = matches!(item.get(BATCH), Some(AttributeValue::S(b)) if b == token);
                    let status = match item.get(FINAL) {
                        Some(AttributeValue::S(v)) if v == "success" => DeliveryStatus::Success,
                        Some(AttributeValue::S(_)) => DeliveryStatus::Failed,
                        _ => continue,
                    };
                    let at = match item.get("at") {
                        Some(AttributeValue::S(t)) => {
                            Timestamp::parse(t).unwrap_or_else(|_| wall_now())
                        }
                        _ => wall_now(),
                    };
                    // A delivered marker carries its attempt, and so its latency.
                    let latency_ms = match item.get("durationMs") {
                        Some(AttributeValue::N(ms)) => ms.parse::<u64>().ok(),
                        _ => None,
                    };
                    if named {
                        winners.push(Counted {
                            status,
                            at,
                            latency_ms,
                        });
                    }
                }
                request = out.unprocessed_keys.unwrap_or_default();
            }
        }
        tracing::warn!(webhook_id = %webhook, batch = token, counted = winners.len(), "finished a batch its writer left");
        self.count_batch(webhook, token, &winners).await
    }

    /// Finishes one delivery: straight away, or together with the other deliveries of its
    /// webhook that finish within the coalescing window (see [`Self::with_coalescing`]).
    async fn finish_one(&self, webhook: &WebhookId, f: Finishing) -> Result<bool, StoreError> {
        let Some(coalescer) = &self.coalescer else {
            return self
                .finish_group(webhook, vec![f])
                .await
                .pop()
                .unwrap_or(Ok(false));
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        let flushed = {
            let mut groups = coalescer.groups.lock().unwrap_or_else(|e| e.into_inner());
            let group = groups.entry(webhook.clone()).or_default();
            group.push((f, tx));
            // Subscribed before this finish can call for the flush, so the writer sees it.
            (group.len() == 1).then(|| coalescer.flush.subscribe())
        };
        coalescer.waiting(1);
        if let Some(mut flushed) = flushed {
            let (log, coalescer, webhook) = (self.clone(), coalescer.clone(), webhook.clone());
            tokio::spawn(async move {
                // Until every record of the invocation still running waits here (see
                // `FinishScope`), or `linger` at most.
                tokio::select! {
                    () = tokio::time::sleep(coalescer.linger) => {}
                    _ = flushed.changed() => {}
                }
                // One write per webhook at a time: the next group waits (and grows) meanwhile,
                // and two groups of one webhook never conflict over its stats item.
                let lock = coalescer.write_lock(&webhook);
                let _writing = lock.lock().await;
                let taken = coalescer
                    .groups
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&webhook)
                    .unwrap_or_default();
                coalescer.waiting(-(taken.len() as isize));
                let mut rest = taken;
                while !rest.is_empty() {
                    let tail = rest.split_off(rest.len().min(MAX_GROUP));
                    let (group, answers): (Vec<_>, Vec<_>) = rest.into_iter().unzip();
                    let results = log.finish_group(&webhook, group).await;
                    for (answer, result) in answers.into_iter().zip(results) {
                        let _ = answer.send(result);
                    }
                    rest = tail;
                }
                drop(_writing);
                drop(lock);
                coalescer.forget_idle_locks();
            });
        }
        rx.await.unwrap_or_else(|_| {
            Err(StoreError::Unavailable(
                "the coalesced finish was dropped".into(),
            ))
        })
    }

    /// Coalesces `finish` calls: those of one webhook made within `linger` of the first are
    /// written as one group (see the module docs) — or sooner, as soon as every record of the
    /// invocation that may still finish is waiting to, when the handler tells the log about
    /// its records ([`Self::finish_scope`]). For the delivery function, whose batch's records
    /// finish at about the same time; each call still answers only when its outcome is written.
    ///
    /// `stale_after`: how old a batch record must be before someone else finishes it — longer
    /// than any invocation that writes one can run (the function's timeout).
    pub fn with_coalescing(mut self, linger: Duration, stale_after: Duration) -> Self {
        self.coalescer = Some(Arc::new(Coalescer {
            linger,
            stale_after,
            groups: Mutex::default(),
            writing: Mutex::default(),
            scope: Mutex::default(),
            flush: tokio::sync::watch::channel(0).0,
        }));
        self
    }

    /// The handle through which the delivery handler tells this (coalescing) log which records
    /// of the invocation under way may still finish ([`FinishScope`]); `None` when the log does
    /// not coalesce.
    pub fn finish_scope(&self) -> Option<FinishScope> {
        self.coalescer
            .clone()
            .map(|coalescer| FinishScope { coalescer })
    }
}

/// The records of the delivery function's invocation under way, for a coalescing log: a
/// group of finishes is written as soon as every record that may still finish waits for its
/// finish — a whole batch's outcomes of one webhook as one group however far apart its
/// receivers answered — instead of after the log's `linger` (which stays the longest wait, for
/// a record whose receiver is slow). An instance handles one invocation at a time:
/// [`FinishScope::begin`] starts the next one and forgets what is left of the last (a record
/// cut off at its deadline).
#[derive(Clone)]
pub struct FinishScope {
    coalescer: Arc<Coalescer>,
}

impl std::fmt::Debug for FinishScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FinishScope").finish_non_exhaustive()
    }
}

impl FinishScope {
    /// An invocation of `records` records starts. Each record holds the answer's guard until
    /// it ends (dropping it, also by a panic or an abort, says it will not finish any more).
    pub fn begin(&self, records: usize) -> Vec<RecordInScope> {
        let epoch = {
            let mut scope = self.coalescer.scope();
            scope.epoch += 1;
            scope.running = records;
            scope.scoped = true;
            scope.epoch
        };
        self.coalescer.maybe_flush();
        (0..records)
            .map(|_| RecordInScope {
                coalescer: self.coalescer.clone(),
                epoch,
            })
            .collect()
    }
}

/// One record of the invocation under way ([`FinishScope::begin`]); dropped when it ends.
pub struct RecordInScope {
    coalescer: Arc<Coalescer>,
    epoch: u64,
}

impl std::fmt::Debug for RecordInScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordInScope")
            .field("epoch", &self.epoch)
            .finish()
    }
}

impl Drop for RecordInScope {
    fn drop(&mut self) {
        {
            let mut scope = self.coalescer.scope();
            if scope.epoch != self.epoch {
                return;
            }
            scope.running = scope.running.saturating_sub(1);
        }
        self.coalescer.maybe_flush();
    }
}

/// How many records of the invocation may still finish, and how many finishes wait.
#[derive(Debug, Default)]
struct ScopeCount {
    /// Set by the first [`FinishScope::begin`]: until then only `linger` ends a wait.
    scoped: bool,
    epoch: u64,
    running: usize,
    waiting: usize,
}

/// The most deliveries one `finish` group writes: DynamoDB's 100 actions per
/// `TransactWriteItems` (one of which is the stats update) and 100 keys per `BatchGetItem`.
const MAX_GROUP: usize = 99;

/// From this many deliveries of one webhook, a group is finished by the batch protocol
/// (N + 5 write units) rather than one transaction (2N + 2): 4 is where it starts to cost less.
const BATCH_PROTOCOL_MIN: usize = 4;

/// The marker attribute naming the batch record (`B#<token>`) a marker was written under.
pub const BATCH: &str = "batch";

/// The table's sort key of a batch record.
pub fn batch_sk(token: &str) -> String {
    format!("B#{token}")
}

/// The wall clock (batch records are judged stale by it).
fn wall_now() -> Timestamp {
    use webhooks_core::ports::Clock;
    webhooks_core::time::SystemClock.now()
}

/// `stale_after` of a log that does not coalesce: Lambda's longest timeout.
const DEFAULT_STALE_AFTER: Duration = Duration::from_secs(900);

/// How long a batch record is kept when nobody removes it (its deliveries were never written).
const BATCH_RECORD_TTL_SECS: i64 = 86_400;

/// What writing one member's marker found.
enum MarkerWrite {
    /// Written under this batch.
    Written,
    /// Already there: counted, or to be counted by the batch it names (if any).
    Existed(Option<String>),
}

/// A delivery's final outcome on its way to the table.
#[derive(Debug)]
struct Finishing {
    delivery: DeliveryId,
    generation: u32,
    status: DeliveryStatus,
    at: Timestamp,
    /// The successful attempt the marker carries ([`DeliveryLog::finish_delivered`]).
    attempt: Option<AttemptItem>,
}

/// A finish as it is counted: the stats' outcome and time, and its hour's latency.
#[derive(Debug, Clone, Copy)]
struct Counted {
    status: DeliveryStatus,
    at: Timestamp,
    /// The delivering attempt's duration (delivered ones carry their attempt).
    latency_ms: Option<u64>,
}

impl Counted {
    fn hourly(self) -> HourlyStats {
        HourlyStats::of_finish(
            self.status == DeliveryStatus::Success,
            self.at,
            self.latency_ms,
        )
    }
}

impl Finishing {
    fn counted(&self) -> Counted {
        Counted {
            status: self.status,
            at: self.at,
            latency_ms: self.attempt.as_ref().map(|a| a.duration_ms),
        }
    }

    /// The final marker: the attempt's item when it carries one, under the marker's key.
    fn marker(&self, webhook: &WebhookId) -> Result<Item, StoreError> {
        let mut item = match &self.attempt {
            Some(a) => encode(a, "attempt")?,
            None => {
                let mut item = DynamoDbDeliveryLog::key(webhook, String::new());
                item.insert("at".into(), s(self.at.to_rfc3339()));
                item
            }
        };
        item.insert(key::SK.into(), s(final_sk(&self.delivery, self.generation)));
        item.insert(FINAL.into(), s(self.status.as_str()));
        item.insert(
            key::EXPIRES_AT.into(),
            AttributeValue::N(expires_at(self.at).to_string()),
        );
        Ok(item)
    }
}

type Answer = tokio::sync::oneshot::Sender<Result<bool, StoreError>>;

/// The finishes waiting for their webhook's next transaction.
#[derive(Debug)]
struct Coalescer {
    linger: Duration,
    stale_after: Duration,
    groups: Mutex<HashMap<WebhookId, Vec<(Finishing, Answer)>>>,
    /// Held while a webhook's group is written.
    writing: Mutex<HashMap<WebhookId, Arc<tokio::sync::Mutex<()>>>>,
    /// The invocation's records ([`FinishScope`]).
    scope: Mutex<ScopeCount>,
    /// Bumped when every running record waits: the groups' writers stop lingering.
    flush: tokio::sync::watch::Sender<u64>,
}

impl Coalescer {
    fn scope(&self) -> std::sync::MutexGuard<'_, ScopeCount> {
        self.scope.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `n` more (or, negative, fewer) finishes wait for their group's write.
    fn waiting(&self, n: isize) {
        {
            let mut scope = self.scope();
            scope.waiting = scope.waiting.saturating_add_signed(n);
        }
        if n > 0 {
            self.maybe_flush();
        }
    }

    /// Tells the writers to write now when every record still running waits for its finish.
    fn maybe_flush(&self) {
        let now = {
            let scope = self.scope();
            scope.scoped && scope.waiting > 0 && scope.waiting >= scope.running
        };
        if now {
            self.flush.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    fn write_lock(&self, webhook: &WebhookId) -> Arc<tokio::sync::Mutex<()>> {
        self.writing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(webhook.clone())
            .or_default()
            .clone()
    }

    /// Drops the locks nobody holds or waits for.
    fn forget_idle_locks(&self) {
        self.writing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, lock| Arc::strong_count(lock) > 1);
    }
}

/// The same error again, for every member of a group it failed.
fn copy_error(e: &StoreError) -> StoreError {
    match e {
        StoreError::NotFound => StoreError::NotFound,
        StoreError::Conflict(m) => StoreError::Conflict(m.clone()),
        StoreError::Unavailable(m) => StoreError::Unavailable(m.clone()),
        StoreError::Corrupt(m) => StoreError::Corrupt(m.clone()),
    }
}

/// The most `Query` calls one page of a filtered list makes: a filter that skips many items
/// answers a short page with a cursor rather than reading the whole partition in one request.
const MAX_QUERIES_PER_PAGE: usize = 10;

/// The sort keys a list walks: those starting with `prefix`, below `prefix` + `upper` when set.
struct SkRange {
    prefix: &'static str,
    upper: Option<String>,
}

/// A `FilterExpression` under construction (conditions joined by AND).
#[derive(Default)]
struct Filter {
    conditions: Vec<&'static str>,
    names: Vec<(&'static str, &'static str)>,
    values: Vec<(&'static str, AttributeValue)>,
}

impl Filter {
    fn add(
        &mut self,
        condition: &'static str,
        name: (&'static str, &'static str),
        value: (&'static str, AttributeValue),
    ) {
        self.conditions.push(condition);
        if !self.names.contains(&name) {
            self.names.push(name);
        }
        self.values.push(value);
    }

    /// `at` (RFC 3339 text, which sorts as time) in [since, until).
    fn window(&mut self, since: Option<Timestamp>, until: Option<Timestamp>) {
        if let Some(t) = since {
            self.add(
                "#fat >= :fsince",
                ("#fat", "at"),
                (":fsince", s(t.to_rfc3339())),
            );
        }
        if let Some(t) = until {
            self.add(
                "#fat < :funtil",
                ("#fat", "at"),
                (":funtil", s(t.to_rfc3339())),
            );
        }
    }
}

/// The start of the ObjectIds made at `t`: every id made before `t` sorts below it.
fn time_prefix(t: Timestamp) -> String {
    format!("{:08x}", t.unix().clamp(0, i64::from(u32::MAX)))
}

/// The sort key of a recovery job.
pub fn job_sk(id: &RecoverJobId) -> String {
    format!("J#{id}")
}

fn job_item(job: &RecoverJob) -> Result<Item, StoreError> {
    let value: AttributeValue = serde_dynamo::to_attribute_value(job)
        .map_err(|e| StoreError::Corrupt(format!("recover job {} not encodable: {e}", job.id)))?;
    let mut item = DynamoDbDeliveryLog::key(&job.webhook_id, job_sk(&job.id));
    item.insert("version".into(), AttributeValue::N(job.version.to_string()));
    item.insert("job".into(), value);
    // Kept as long as the attempts it redelivered.
    item.insert(
        key::EXPIRES_AT.into(),
        AttributeValue::N(expires_at(job.updated_at).to_string()),
    );
    Ok(item)
}

impl DynamoDbDeliveryLog {
    /// One page of `range` in `forward` order: items passing `filter`, after the sort key
    /// `after`, at most `limit`; and the sort key to continue after when more may follow.
    async fn query_page(
        &self,
        webhook: &WebhookId,
        range: &SkRange,
        forward: bool,
        filter: Filter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<Item>, Option<String>), StoreError> {
        let sk_of = |item: &Item| match item.get(key::SK) {
            Some(AttributeValue::S(v)) => Some(v.clone()),
            _ => None,
        };
        if let Some(a) = after
            && !a.starts_with(range.prefix)
        {
            return Err(StoreError::Corrupt(format!(
                "not a position in {}…: {a:?}",
                range.prefix
            )));
        }
        let mut start: Option<Item> = after.map(|a| Self::key(webhook, a.to_owned()));
        let mut found: Vec<Item> = Vec::new();
        for _ in 0..MAX_QUERIES_PER_PAGE {
            // One more than is wanted: if it comes, there is a next page.
            let want = i32::try_from(limit - found.len() + 1).unwrap_or(i32::MAX);
            let out = self
                .range_query(webhook, range, &filter)
                .scan_index_forward(forward)
                .limit(want)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| unavailable("Query", e))?;
            found.extend(out.items.unwrap_or_default());
            if found.len() > limit {
                found.truncate(limit);
                let next = found.last().and_then(sk_of);
                return Ok((found, next));
            }
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok((found, None)),
            }
        }
        // Read enough for one request: continue where the reading stopped.
        let next = start.as_ref().and_then(sk_of);
        Ok((found, next))
    }

    /// A `Query` of `webhook`'s sort keys in `range`, with `filter` (order, limit and start are
    /// the caller's).
    fn range_query(
        &self,
        webhook: &WebhookId,
        range: &SkRange,
        filter: &Filter,
    ) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder {
        let upper = format!(
            "{}{}",
            range.prefix,
            range.upper.as_deref().unwrap_or("g") // above every hex id
        );
        let mut query = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("#pk = :pk AND #rk BETWEEN :lo AND :hi")
            .expression_attribute_names("#pk", key::WEBHOOK_ID)
            .expression_attribute_names("#rk", key::SK)
            .expression_attribute_values(":pk", s(webhook.as_str()))
            .expression_attribute_values(":lo", s(range.prefix))
            .expression_attribute_values(":hi", s(upper));
        if !filter.conditions.is_empty() {
            query = query.filter_expression(filter.conditions.join(" AND "));
            for (n, v) in &filter.names {
                query = query.expression_attribute_names(*n, *v);
            }
            for (n, v) in &filter.values {
                query = query.expression_attribute_values(*n, v.clone());
            }
        }
        query
    }

    /// The sort keys and the filter of the dead letters `q` asks for (its position and limit
    /// aside). A letter given up before `until` belongs to a delivery created before it.
    fn dead_letter_scope(q: &DeadLetterQuery) -> (SkRange, Filter) {
        let mut filter = Filter::default();
        if let Some(e) = q.event {
            filter.add("#fev = :fev", ("#fev", "event"), (":fev", s(e.as_str())));
        }
        filter.window(q.since, q.until);
        let range = SkRange {
            prefix: "D#",
            upper: q.until.map(time_prefix),
        };
        (range, filter)
    }
}

/// Why a `finish` transaction did not write.
#[derive(Debug)]
enum FinishFailure {
    /// These markers (positions in the group) exist: those deliveries were counted before.
    Done(Vec<usize>),
    /// The webhook's stats item is missing (the webhook is gone, or predates stats items).
    NoStats,
    /// It collided with another write of one of its items, or DynamoDB asked to try again.
    Conflict,
    Other(StoreError),
}

/// How a `finish` transaction was cancelled.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Cancelled {
    Done(Vec<usize>),
    NoStats,
    Conflict,
    Other,
}

fn finish_failure<R>(err: &SdkError<TransactWriteItemsError, R>, markers: usize) -> Cancelled {
    let codes = cancellation_codes(err);
    classify_cancellation(
        &codes.iter().map(String::as_str).collect::<Vec<_>>(),
        markers,
    )
}

/// Why a transaction was cancelled, one code per item (`None` for an item that was fine); a
/// transaction still in progress elsewhere is a conflict; any other failure, no codes.
fn cancellation_codes<R>(err: &SdkError<TransactWriteItemsError, R>) -> Vec<String> {
    match err.as_service_error() {
        Some(TransactWriteItemsError::TransactionCanceledException(e)) => e
            .cancellation_reasons()
            .iter()
            .map(|r| r.code().unwrap_or("None").to_owned())
            .collect(),
        Some(TransactWriteItemsError::TransactionInProgressException(_)) => {
            vec!["TransactionConflict".into()]
        }
        _ => Vec::new(),
    }
}

/// Whether a transaction cancelled for `codes` may succeed as it is when tried again
/// (collisions and throttling only).
fn worth_trying_again<S: AsRef<str>>(codes: &[S]) -> bool {
    !codes.is_empty()
        && codes.iter().all(|c| {
            matches!(
                c.as_ref(),
                "TransactionConflict"
                    | "ThrottlingError"
                    | "ProvisionedThroughputExceeded"
                    | "None"
            )
        })
}

/// The reasons of a cancelled `finish`, one per item (the `markers` markers, the stats update,
/// then the hourly aggregates' updates, which have no condition), as a decision.
fn classify_cancellation(codes: &[&str], markers: usize) -> Cancelled {
    let benign = |c: &&str| {
        matches!(
            *c,
            "ConditionalCheckFailed" | "None" | "TransactionConflict"
        )
    };
    // A failed condition decides (trying again as it is cannot succeed), unless another item
    // failed for a reason that points at a bug. The markers' decide first: counted before.
    if markers >= 1 && codes.len() > markers && codes.iter().all(benign) {
        let (markers, stats) = codes.split_at(markers);
        let done: Vec<usize> = markers
            .iter()
            .enumerate()
            .filter(|(_, c)| **c == "ConditionalCheckFailed")
            .map(|(i, _)| i)
            .collect();
        if !done.is_empty() {
            return Cancelled::Done(done);
        }
        if stats[0] == "ConditionalCheckFailed" {
            return Cancelled::NoStats;
        }
    }
    if worth_trying_again(codes) {
        return Cancelled::Conflict;
    }
    Cancelled::Other
}

/// The wait before try `n` (1-based) of a conflicting transaction: full jitter up to
/// 25 ms × 2^(n-1), at most 1 s.
fn conflict_backoff(n: u32) -> Duration {
    let cap = 25u64
        .saturating_mul(1 << n.saturating_sub(1).min(6))
        .min(1000);
    Duration::from_millis(rand::random_range(1..=cap))
}

impl DynamoDbDeliveryLog {
    /// Deletes the items of `keys` (at most 25) with `BatchWriteItem`, asking again for what
    /// DynamoDB left unprocessed (throttling) a bounded number of times.
    async fn delete_batch(&self, keys: Vec<Item>) -> Result<(), StoreError> {
        let built = |e: aws_sdk_dynamodb::error::BuildError| {
            StoreError::Unavailable(format!("request not built: {e}"))
        };
        let mut requests = keys
            .into_iter()
            .map(|k| {
                DeleteRequest::builder()
                    .set_key(Some(k))
                    .build()
                    .map(|d| WriteRequest::builder().delete_request(d).build())
                    .map_err(built)
            })
            .collect::<Result<Vec<_>, _>>()?;
        for n in 1..=FINISH_TRIES {
            if requests.is_empty() {
                return Ok(());
            }
            let out = self
                .client
                .batch_write_item()
                .request_items(&self.table, std::mem::take(&mut requests))
                .send()
                .await
                .map_err(|e| unavailable("BatchWriteItem", e))?;
            requests = out
                .unprocessed_items
                .and_then(|mut u| u.remove(&self.table))
                .unwrap_or_default();
            if !requests.is_empty() {
                tokio::time::sleep(conflict_backoff(n)).await;
            }
        }
        if requests.is_empty() {
            Ok(())
        } else {
            Err(StoreError::Unavailable(format!(
                "DynamoDB BatchWriteItem: {} deletes still unprocessed",
                requests.len()
            )))
        }
    }

    /// One unconditional `PutItem` into the deliveries table (attempts and dead letters are
    /// keyed so that writing one again replaces it: the contract's idempotency).
    async fn put(&self, item: HashMap<String, AttributeValue>) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| unavailable("PutItem", e))?;
        Ok(())
    }

    /// A `PutItem` of `item` only if no item has its key: `false` when one had.
    async fn put_if_absent(&self, item: Item) -> Result<bool, StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", key::WEBHOOK_ID)
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if condition_failed(&e) => Ok(false),
            Err(e) => Err(unavailable("PutItem", e)),
        }
    }

    /// The item of `webhook` at `sk`, read consistently.
    async fn get_consistent(
        &self,
        webhook: &WebhookId,
        sk: String,
    ) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(webhook, sk)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| unavailable("GetItem", e))?;
        Ok(out.item)
    }

    /// An unconditional `DeleteItem` of `webhook`'s item at `sk`.
    async fn delete_key(&self, webhook: &WebhookId, sk: String) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(webhook, sk)))
            .send()
            .await
            .map_err(|e| unavailable("DeleteItem", e))?;
        Ok(())
    }
}

#[async_trait]
impl DeliveryLog for DynamoDbDeliveryLog {
    async fn record_attempt(&self, attempt: &AttemptRecord) -> Result<(), StoreError> {
        self.put(encode(&AttemptItem::from(attempt), "attempt")?)
            .await
    }

    async fn attempts_of(
        &self,
        webhook: &WebhookId,
        delivery: &DeliveryId,
        generation: u32,
    ) -> Result<Vec<AttemptRecord>, StoreError> {
        // Ascending sort keys are ascending attempt numbers (zero-padded).
        self.query_prefix(
            true,
            webhook,
            attempts_prefix(delivery, generation),
            true,
            None,
        )
        .await?
        .into_iter()
        .filter(|item| item.contains_key(ATTEMPT))
        .map(decode::<AttemptItem, AttemptRecord>)
        .collect()
    }

    async fn attempts_page(
        &self,
        webhook: &WebhookId,
        q: &AttemptQuery,
    ) -> Result<LogPage<AttemptRecord>, StoreError> {
        // Descending sort keys: newest delivery first (ids are time-ordered), then generation
        // and attempt, all descending. An attempt made before `until` belongs to a delivery
        // created before it: its key is below `A#<until as an ObjectId's time>`.
        let mut filter = Filter::default();
        if let Some(st) = q.status {
            let v = match st {
                AttemptStatus::Success => "success",
                AttemptStatus::Failed => "failed",
            };
            filter.add("#fst = :fst", ("#fst", "status"), (":fst", s(v)));
        }
        if let Some(e) = q.event {
            filter.add("#fev = :fev", ("#fev", "event"), (":fev", s(e.as_str())));
        }
        filter.window(q.since, q.until);
        // Final markers that carry no attempt (failures, late counts) are not attempts.
        filter.conditions.push("attribute_exists(#fattempt)");
        filter.names.push(("#fattempt", ATTEMPT));
        let range = SkRange {
            prefix: "A#",
            upper: q.until.map(time_prefix),
        };
        let (items, next_after) = self
            .query_page(webhook, &range, false, filter, q.after.as_deref(), q.limit)
            .await?;
        Ok(LogPage {
            items: items
                .into_iter()
                .map(decode::<AttemptItem, AttemptRecord>)
                .collect::<Result<_, _>>()?,
            next_after,
        })
    }

    async fn finish(
        &self,
        webhook: &WebhookId,
        delivery: &DeliveryId,
        generation: u32,
        status: DeliveryStatus,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        let f = Finishing {
            delivery: delivery.clone(),
            generation,
            status,
            at,
            attempt: None,
        };
        self.finish_one(webhook, f).await
    }

    async fn finish_delivered(&self, attempt: &AttemptRecord) -> Result<bool, StoreError> {
        let f = Finishing {
            delivery: attempt.delivery_id.clone(),
            generation: attempt.generation,
            status: DeliveryStatus::Success,
            at: attempt.at,
            attempt: Some(AttemptItem::from(attempt)),
        };
        match self.finish_one(&attempt.webhook_id, f).await {
            Ok(counted) => Ok(counted),
            Err(e) => {
                // Not written: keep at least the attempt, so that the retry of this message
                // finds it was sent and counts it without sending it again.
                if let Err(second) = self.record_attempt(attempt).await {
                    tracing::warn!(error = %second, "the successful attempt could not be recorded either");
                }
                Err(e)
            }
        }
    }

    async fn hourly_stats(
        &self,
        webhook: &WebhookId,
        hours: std::ops::RangeInclusive<i64>,
    ) -> Result<Vec<HourlyStats>, StoreError> {
        // At most one item per hour of the range (24 for the chart: ~2 RCU eventually
        // consistent); a page limit is not needed.
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("#pk = :pk AND #rk BETWEEN :lo AND :hi")
            .expression_attribute_names("#pk", key::WEBHOOK_ID)
            .expression_attribute_names("#rk", key::SK)
            .expression_attribute_values(":pk", s(webhook.as_str()))
            .expression_attribute_values(":lo", s(hour_sk(*hours.start())))
            .expression_attribute_values(":hi", s(hour_sk(*hours.end())))
            .send()
            .await
            .map_err(|e| unavailable("Query", e))?;
        out.items
            .unwrap_or_default()
            .iter()
            .map(decode_hourly)
            .collect()
    }

    async fn put_dead_letter(&self, dead: &DeadLetter) -> Result<(), StoreError> {
        self.put(encode(&DeadLetterItem::from(dead), "dead letter")?)
            .await
    }

    async fn dead_letters_page(
        &self,
        webhook: &WebhookId,
        q: &DeadLetterQuery,
    ) -> Result<LogPage<DeadLetter>, StoreError> {
        // Ascending sort keys: oldest delivery first.
        let (range, filter) = Self::dead_letter_scope(q);
        let (items, next_after) = self
            .query_page(webhook, &range, true, filter, q.after.as_deref(), q.limit)
            .await?;
        Ok(LogPage {
            items: items
                .into_iter()
                .map(decode::<DeadLetterItem, DeadLetter>)
                .collect::<Result<_, _>>()?,
            next_after,
        })
    }

    async fn count_dead_letters(
        &self,
        webhook: &WebhookId,
        q: &DeadLetterQuery,
    ) -> Result<u64, StoreError> {
        // `Select: COUNT`: DynamoDB reads (and charges for) the same items, but answers only
        // their number, up to 1 MB of them per call (a few thousand dead letters) instead of
        // pages of whole items.
        let (range, filter) = Self::dead_letter_scope(q);
        let mut start: Option<Item> = None;
        let mut n = 0u64;
        loop {
            let out = self
                .range_query(webhook, &range, &filter)
                .select(Select::Count)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| unavailable("Query", e))?;
            n += u64::try_from(out.count).unwrap_or(0);
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(n),
            }
        }
    }

    async fn dead_letter(
        &self,
        webhook: &WebhookId,
        delivery: &DeliveryId,
    ) -> Result<Option<DeadLetter>, StoreError> {
        self.get_consistent(webhook, dead_letter_sk(delivery))
            .await?
            .map(decode::<DeadLetterItem, DeadLetter>)
            .transpose()
    }

    async fn remove_dead_letter(
        &self,
        webhook: &WebhookId,
        delivery: &DeliveryId,
    ) -> Result<(), StoreError> {
        self.delete_key(webhook, dead_letter_sk(delivery)).await
    }

    async fn claim_dead_letter(
        &self,
        webhook: &WebhookId,
        delivery: &DeliveryId,
        generation: u32,
    ) -> Result<bool, StoreError> {
        let deleted = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(webhook, dead_letter_sk(delivery))))
            .condition_expression("attribute_exists(#sk) AND #generation = :generation")
            .expression_attribute_names("#sk", key::SK)
            .expression_attribute_names("#generation", "generation")
            .expression_attribute_values(":generation", AttributeValue::N(generation.to_string()))
            .send()
            .await;
        match deleted {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(unavailable("DeleteItem", e)),
        }
    }

    async fn purge_webhook(&self, webhook: &WebhookId) -> Result<(), StoreError> {
        // Keys only (a dead letter holds a whole body), a page at a time, deleted 25 per
        // BatchWriteItem; dead letters (`D#`), recovery jobs (`J#`) and hourly aggregates (`H#`,
        // at most 49 of them, which would expire by themselves within 49 hours).
        for prefix in ["D#", "J#", "H#"] {
            let mut start_key: Option<Item> = None;
            loop {
                let out = self
                    .client
                    .query()
                    .table_name(&self.table)
                    .key_condition_expression("#pk = :pk AND begins_with(#sk, :prefix)")
                    .projection_expression("#pk, #sk")
                    .expression_attribute_names("#pk", key::WEBHOOK_ID)
                    .expression_attribute_names("#sk", key::SK)
                    .expression_attribute_values(":pk", s(webhook.as_str()))
                    .expression_attribute_values(":prefix", s(prefix))
                    .set_exclusive_start_key(start_key.take())
                    .send()
                    .await
                    .map_err(|e| unavailable("Query", e))?;
                let keys = out.items.unwrap_or_default();
                for chunk in keys.chunks(25) {
                    self.delete_batch(chunk.to_vec()).await?;
                }
                match out.last_evaluated_key {
                    Some(k) if !k.is_empty() => start_key = Some(k),
                    _ => break,
                }
            }
        }
        Ok(())
    }

    async fn create_recover_job(&self, job: &RecoverJob) -> Result<bool, StoreError> {
        self.put_if_absent(job_item(job)?).await
    }

    async fn recover_job(
        &self,
        webhook: &WebhookId,
        id: &RecoverJobId,
    ) -> Result<Option<RecoverJob>, StoreError> {
        let Some(item) = self.get_consistent(webhook, job_sk(id)).await? else {
            return Ok(None);
        };
        match item.get("job") {
            Some(v) => serde_dynamo::from_attribute_value(v.clone())
                .map(Some)
                .map_err(|e| StoreError::Corrupt(format!("recover job {id}: {e}"))),
            None => Err(StoreError::Corrupt(format!("recover job {id}: no job"))),
        }
    }

    async fn update_recover_job(
        &self,
        job: &RecoverJob,
        expected_version: u64,
    ) -> Result<bool, StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(job_item(job)?))
            .condition_expression("#v = :expected")
            .expression_attribute_names("#v", "version")
            .expression_attribute_values(
                ":expected",
                AttributeValue::N(expected_version.to_string()),
            )
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if condition_failed(&e) => Ok(false),
            Err(e) => Err(unavailable("PutItem", e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(at: i64, generation: u32, attempt: u32) -> AttemptRecord {
        AttemptRecord {
            webhook_id: WebhookId::parse("507f1f77bcf86cd799439011").unwrap(),
            delivery_id: DeliveryId::parse("65a4e5f0aabbccddeeff0011").unwrap(),
            generation,
            attempt,
            event: EventType::AlertTriggered,
            status: AttemptStatus::Failed,
            status_code: Some(500),
            duration_ms: 7,
            error: Some("receiver answered HTTP 500".into()),
            response_body: None,
            at: Timestamp::from_unix(at),
        }
    }

    #[test]
    fn sort_keys_order_attempts_newest_delivery_first_without_a_time_index() {
        // GIVEN attempts of an older and a newer delivery (ids are time-ordered), generations
        // and attempt numbers (10 > 9 > 2)
        let mut newer = record(1_700_000_000, 0, 2);
        newer.delivery_id = DeliveryId::parse("65a4e5f1aabbccddeeff0011").unwrap();
        let keys: Vec<String> = [
            record(1_700_000_000, 0, 2),
            record(1_700_000_000, 0, 10),
            newer.clone(),
            record(1_700_000_000, 1, 9),
        ]
        .iter()
        .map(|a| attempt_sk(&a.delivery_id, a.generation, a.attempt))
        .collect();
        // WHEN sorted as strings, descending (a Query with ScanIndexForward=false)
        let mut sorted = keys.clone();
        sorted.sort_by(|a, b| b.cmp(a));
        // THEN it is by delivery, then generation, then attempt, all descending
        assert_eq!(
            sorted,
            vec![
                keys[2].clone(),
                keys[3].clone(),
                keys[1].clone(),
                keys[0].clone()
            ]
        );
        // AND the key of an attempt ignores its time (recording it again replaces it)
        let (a, b) = (record(1, 0, 2), record(2, 0, 2));
        assert_eq!(
            attempt_sk(&a.delivery_id, 0, 2),
            attempt_sk(&b.delivery_id, 0, 2)
        );
        assert!(attempt_sk(&a.delivery_id, 0, 2).starts_with(&attempts_prefix(&a.delivery_id, 0)));
        assert!(!attempt_sk(&a.delivery_id, 1, 2).starts_with(&attempts_prefix(&a.delivery_id, 0)));
    }

    #[test]
    fn a_successful_attempt_keeps_a_short_excerpt_and_a_failed_one_all_of_it() {
        // GIVEN a long answer (multi-byte characters around the cut) to a success and a failure
        let body = "é".repeat(600);
        let mut ok = record(1, 0, 1);
        ok.status = AttemptStatus::Success;
        ok.response_body = Some(body.clone());
        let mut failed = record(1, 0, 2);
        failed.response_body = Some(body.clone());
        // WHEN stored
        let (ok, failed) = (AttemptItem::from(&ok), AttemptItem::from(&failed));
        // THEN the success keeps at most SUCCESS_EXCERPT_BYTES, cut at a character boundary
        let kept = ok.response_body.clone().expect("excerpt");
        assert!(kept.len() <= SUCCESS_EXCERPT_BYTES && kept.len() >= SUCCESS_EXCERPT_BYTES - 1);
        assert!(body.starts_with(&kept));
        assert_eq!(failed.response_body, Some(body));
        // AND no attempt carries a time-index key any more
        let item = encode(&ok, "attempt").unwrap();
        assert!(item.keys().all(|k| k != "listKey"));
    }

    #[test]
    fn attempts_and_dead_letters_round_trip_through_their_items() {
        // GIVEN an attempt and a dead letter
        let a = record(1_700_000_000, 2, 3);
        let dead = DeadLetter {
            task: DeliveryTask {
                delivery_id: a.delivery_id.clone(),
                webhook_id: a.webhook_id.clone(),
                event: EventType::DataReceived,
                generation: 1,
                attempts_made: 0,
                body: r#"{"v":"°C"}"#.into(),
                created_at: Timestamp::from_unix(1_699_999_000),
            },
            error: "timed out after 30 s".into(),
            attempts: 4,
            at: Timestamp::from_unix(1_700_000_100),
        };
        // WHEN encoded and decoded
        let item = encode(&AttemptItem::from(&a), "attempt").unwrap();
        let back: AttemptRecord = decode::<AttemptItem, _>(item.clone()).unwrap();
        let dead_item = encode(&DeadLetterItem::from(&dead), "dead").unwrap();
        let dead_back: DeadLetter = decode::<DeadLetterItem, _>(dead_item.clone()).unwrap();
        // THEN nothing is lost; attempts expire 30 days after `at`, dead letters never
        assert_eq!(back, a);
        assert_eq!(dead_back, dead);
        assert_eq!(
            item.get(key::EXPIRES_AT),
            Some(&AttributeValue::N(
                (1_700_000_000 + 30 * 86_400).to_string()
            ))
        );
        assert!(!dead_item.contains_key(key::EXPIRES_AT));
        assert!(!item.contains_key("responseBody"));
    }

    #[test]
    fn an_undecodable_item_is_corrupt_and_named() {
        let mut item = encode(&AttemptItem::from(&record(1, 0, 1)), "attempt").unwrap();
        item.insert("event".into(), s("alert.fired"));
        let err = decode::<AttemptItem, AttemptRecord>(item).unwrap_err();
        assert!(
            matches!(&err, StoreError::Corrupt(m) if m.contains("alert.fired") && m.contains("A#")),
            "{err:?}"
        );
    }

    #[test]
    fn cancellation_reasons_decide_between_already_done_no_stats_conflict_and_failure() {
        use Cancelled::*;
        let cases: [(&[&str], Cancelled); 12] = [
            (&["ConditionalCheckFailed", "None"], Done(vec![0])),
            (
                &["ConditionalCheckFailed", "ConditionalCheckFailed"],
                Done(vec![0]),
            ),
            (
                &["ConditionalCheckFailed", "TransactionConflict"],
                Done(vec![0]),
            ),
            (
                &[
                    "None",
                    "ConditionalCheckFailed",
                    "None",
                    "ConditionalCheckFailed",
                    "None",
                ],
                Done(vec![1, 3]),
            ),
            (&["None", "None", "ConditionalCheckFailed"], NoStats),
            (&["None", "ConditionalCheckFailed"], NoStats),
            (&["TransactionConflict", "ConditionalCheckFailed"], NoStats),
            (&["TransactionConflict", "None"], Conflict),
            (&["None", "ThrottlingError"], Conflict),
            (&["ValidationError", "None"], Other),
            (
                &["ConditionalCheckFailed", "ItemCollectionSizeLimitExceeded"],
                Other,
            ),
            (&[], Other),
        ];
        for (codes, want) in cases {
            let markers = codes.len().saturating_sub(1);
            assert_eq!(
                classify_cancellation(codes, markers),
                want.clone(),
                "{codes:?}"
            );
        }
        // The hourly aggregates' updates follow the stats update and never decide.
        let with_hours: [(&[&str], Cancelled); 3] = [
            (&["ConditionalCheckFailed", "None", "None"], Done(vec![0])),
            (&["None", "ConditionalCheckFailed", "None", "None"], NoStats),
            (&["None", "None", "TransactionConflict"], Conflict),
        ];
        for (codes, want) in with_hours {
            assert_eq!(classify_cancellation(codes, 1), want, "{codes:?}");
        }
        for n in 1..=FINISH_TRIES {
            assert!(conflict_backoff(n) <= Duration::from_secs(1));
        }
    }
}
