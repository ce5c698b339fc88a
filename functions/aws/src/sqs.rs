//! The delivery queue on SQS: [`SqsDeliveryQueue`] (the [`DeliveryQueue`] port: what the API
//! enqueues) and [`SqsWorkerQueue`] (what the delivery Lambda does to a message it received:
//! make it visible again later, queue it again — on its own queue or, moving it, on the slow
//! lane's — or move it to the dead-letter queue).
//!
//! ## Messages
//!
//! | | delivery queue | dead-letter queue |
//! |---|---|---|
//! | body | `QueueTask::DeliveryV1(task).to_json()` — never a secret | the same body (or, for a message that could not be read, the body as received) |
//! | attributes | `deliveryId` (String) | `error` (String, at most 1 KiB), `attempts` (Number: attempts made, i.e. requests sent; 0 for an unreadable body), `deliveryId` (String, when known) |
//!
//! A message's size counts its body and its attributes (name, type and value). The `deliveryId`
//! attribute is an operator's convenience (it shows in the console without opening the body);
//! a message whose body alone fills the queue's limit goes without it, and a dead letter's
//! `error` is shortened to fit, so no delivery the core accepted is ever refused for its
//! attributes.
//!
//! ## Enqueueing
//!
//! `SendMessageBatch` in batches of at most 10 messages and 256 KiB in all, up to
//! [`ENQUEUE_CONCURRENCY`] requests at once (a fan-out of 10,000 deliveries is 1,000 requests:
//! one after another at ~15 ms each they would take 15 s, the API function's whole timeout).
//! Entries the service reports failed through no fault of the sender (throttling, internal
//! errors), and whole batches that failed in a retryable way (throttling, 5xx, timeouts,
//! unreachable endpoint), are sent again, up to [`ENQUEUE_ROUNDS`] rounds with growing, jittered
//! waits. What still failed, or was refused as the sender's fault, is reported in
//! [`EnqueueError::failed`]; everything else is queued. With a deadline
//! ([`DeliveryQueue::enqueue_by`]) the call returns by then: requests still in flight are
//! abandoned and, with the batches not yet sent, reported as failed. A batch that timed out may have been queued anyway, so a retry can queue a delivery
//! twice: delivery is at-least-once, and the dispatcher counts each delivery once whatever.
//!
//! Must not depend on axum or the Lambda runtime; SDK types never leave this module.

use std::collections::HashSet;
use std::time::Duration;

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::{MessageAttributeValue, SendMessageBatchRequestEntry};
use webhooks_core::delivery::{DeliveryTask, QueueTask};
use webhooks_core::flow::Lane;
use webhooks_core::ports::{DeliveryQueue, EnqueueError};

use crate::config::{SqsConfig, SqsWorkerConfig};

/// SQS's limit on one message (body and attributes) and on one batch, in bytes (core's
/// [`MAX_MESSAGE_BYTES`](webhooks_core::delivery::MAX_MESSAGE_BYTES), the one home of it).
pub const MAX_SQS_MESSAGE_BYTES: usize = webhooks_core::delivery::MAX_MESSAGE_BYTES;
/// SQS's limit on the entries of one batch request.
pub const MAX_BATCH_ENTRIES: usize = 10;
/// SQS's longest visibility timeout (12 h), in seconds (core's
/// [`RetryConfig::MAX_DELAY_SECONDS`](webhooks_core::webhook::RetryConfig::MAX_DELAY_SECONDS),
/// the one home of it).
pub const MAX_VISIBILITY_SECS: u64 = webhooks_core::webhook::RetryConfig::MAX_DELAY_SECONDS;
/// How many rounds `enqueue` sends (the first and the retries of what failed retryably).
pub const ENQUEUE_ROUNDS: u32 = 4;
/// How many `SendMessageBatch` requests `enqueue` has in flight at once: enough to queue 10,000
/// deliveries (1,000 requests) in about a second at SQS's usual 10-20 ms per request, few enough
/// that one API function does not meet SQS's throttling or exhaust its connection pool.
pub const ENQUEUE_CONCURRENCY: usize = 16;
/// The longest `error` attribute of a dead letter, in bytes.
pub const MAX_ERROR_ATTRIBUTE_BYTES: usize = 1024;

/// Message attribute names.
pub mod attribute {
    pub const DELIVERY_ID: &str = "deliveryId";
    pub const ERROR: &str = "error";
    pub const ATTEMPTS: &str = "attempts";
}

/// A worker-side queue action failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    /// SQS refused the request as the sender's fault (unknown receipt handle, too large, bad
    /// value): trying again will not help.
    #[error("SQS {op} refused: {detail}")]
    Rejected { op: &'static str, detail: String },
    /// SQS could not be reached or answered with a server-side error: safe to retry.
    #[error("SQS {op} unavailable: {detail}")]
    Unavailable { op: &'static str, detail: String },
}

impl QueueError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, QueueError::Unavailable { .. })
    }
}

/// Whether an SDK error is worth trying again (throttled, server-side, timed out, unreachable),
/// and a one-line description of it that names the error code.
fn classify<E, R>(err: &SdkError<E, R>) -> (bool, String)
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    match err {
        SdkError::TimeoutError(_) => (true, "timed out".to_owned()),
        SdkError::DispatchFailure(_) => (
            true,
            format!("could not reach SQS: {}", DisplayErrorContext(err)),
        ),
        SdkError::ResponseError(_) => (true, "unreadable response from SQS".to_owned()),
        SdkError::ServiceError(e) => {
            let code = e.err().code().unwrap_or("unknown error");
            let detail = match e.err().message() {
                Some(m) => format!("{code}: {m}"),
                None => code.to_owned(),
            };
            (retryable_code(code), detail)
        }
        _ => (false, DisplayErrorContext(err).to_string()),
    }
}

/// SQS error codes (for a whole request, or one batch entry) that a later try may not meet.
fn retryable_code(code: &str) -> bool {
    let code = code.rsplit('.').next().unwrap_or(code);
    matches!(
        code,
        "RequestThrottled"
            | "ThrottlingException"
            | "Throttling"
            | "ServiceUnavailable"
            | "InternalError"
            | "InternalFailure"
            | "KmsThrottled"
            | "KmsInternalError"
            | "RequestTimeout"
    )
}

fn error_of<E, R>(op: &'static str, err: SdkError<E, R>) -> QueueError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    match classify(&err) {
        (true, detail) => QueueError::Unavailable { op, detail },
        (false, detail) => QueueError::Rejected { op, detail },
    }
}

/// The size SQS counts for a String/Number attribute: name, data type and value.
fn attribute_size(name: &str, data_type: &str, value: &str) -> usize {
    name.len() + data_type.len() + value.len()
}

fn string_attribute(value: impl Into<String>) -> MessageAttributeValue {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()
        .unwrap_or_else(|_| unreachable!("data_type is set"))
}

/// One message to enqueue: its body, whether the `deliveryId` attribute fits, and its size.
#[derive(Debug, Clone)]
struct Outgoing {
    body: String,
    delivery_id: String,
    with_attribute: bool,
    size: usize,
}

impl Outgoing {
    fn new(task: &DeliveryTask) -> Self {
        let body = QueueTask::DeliveryV1(task.clone()).to_json();
        let delivery_id = task.delivery_id.to_string();
        let attr = attribute_size(attribute::DELIVERY_ID, "String", &delivery_id);
        let with_attribute = body.len() + attr <= MAX_SQS_MESSAGE_BYTES;
        let size = body.len() + if with_attribute { attr } else { 0 };
        Self {
            body,
            delivery_id,
            with_attribute,
            size,
        }
    }
}

/// Splits messages (by size, in order) into batches of at most [`MAX_BATCH_ENTRIES`] entries and
/// [`MAX_SQS_MESSAGE_BYTES`] in all. Returns the indexes of each batch.
fn batches(sizes: &[(usize, usize)]) -> Vec<Vec<usize>> {
    let mut out: Vec<Vec<usize>> = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    let mut bytes = 0;
    for &(index, size) in sizes {
        if !current.is_empty()
            && (current.len() == MAX_BATCH_ENTRIES || bytes + size > MAX_SQS_MESSAGE_BYTES)
        {
            out.push(std::mem::take(&mut current));
            bytes = 0;
        }
        current.push(index);
        bytes += size;
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// The wait before retry round `round` (1-based): full jitter up to 100 ms × 4^(round-1).
fn enqueue_backoff(round: u32) -> Duration {
    let cap = 100u64 * 4u64.pow(round.saturating_sub(1).min(4));
    Duration::from_millis(rand::random_range(cap / 2..=cap))
}

/// What one batch request did to its entries.
#[derive(Debug, Default)]
struct BatchResult {
    /// Failed in a way a later try may not meet.
    retry: Vec<usize>,
    /// Refused for good.
    failed: Vec<usize>,
    /// Why the last entry failed (for the error message).
    reason: Option<String>,
}

/// The [`DeliveryQueue`] on an SQS queue (see the module docs).
#[derive(Debug, Clone)]
pub struct SqsDeliveryQueue {
    client: Client,
    queue_url: String,
}

impl SqsDeliveryQueue {
    /// A queue at `queue_url` through `client` (tests configure the client).
    pub fn new(client: Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
        }
    }

    /// A queue built from the shared SDK config and the adapter's config (what the API's main
    /// does at cold start).
    pub fn from_config(sdk: &SdkConfig, config: &SqsConfig) -> Self {
        Self::new(Client::new(sdk), config.queue_url.clone())
    }

    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }

    async fn send_batch(&self, messages: &[Outgoing], batch: &[usize]) -> BatchResult {
        let entries = batch
            .iter()
            .map(|&i| {
                let m = &messages[i];
                SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(&m.body)
                    .set_message_attributes(m.with_attribute.then(|| {
                        [(
                            attribute::DELIVERY_ID.to_owned(),
                            string_attribute(&m.delivery_id),
                        )]
                        .into()
                    }))
                    .build()
                    .unwrap_or_else(|_| unreachable!("id and body are set"))
            })
            .collect();
        let out = self
            .client
            .send_message_batch()
            .queue_url(&self.queue_url)
            .set_entries(Some(entries))
            .send()
            .await;
        let mut result = BatchResult::default();
        match out {
            Err(err) => {
                let (retryable, detail) = classify(&err);
                tracing::warn!(entries = batch.len(), retryable, error = %detail, "SQS SendMessageBatch failed");
                if retryable {
                    result.retry = batch.to_vec();
                } else {
                    result.failed = batch.to_vec();
                }
                result.reason = Some(format!("SQS SendMessageBatch: {detail}"));
            }
            Ok(out) => {
                let ok: HashSet<&str> = out.successful().iter().map(|e| e.id()).collect();
                for &i in batch {
                    let id = i.to_string();
                    if ok.contains(id.as_str()) {
                        continue;
                    }
                    match out.failed().iter().find(|f| f.id() == id) {
                        Some(f) => {
                            let retryable = !f.sender_fault() || retryable_code(f.code());
                            let detail = match f.message() {
                                Some(m) => format!("{}: {m}", f.code()),
                                None => f.code().to_owned(),
                            };
                            tracing::warn!(delivery_id = %messages[i].delivery_id, retryable, error = %detail, "SQS refused one message of a batch");
                            result.reason = Some(format!("SQS SendMessageBatch entry: {detail}"));
                            if retryable {
                                result.retry.push(i);
                            } else {
                                result.failed.push(i);
                            }
                        }
                        // Neither listed as sent nor as failed: not known to be queued.
                        None => result.retry.push(i),
                    }
                }
            }
        }
        result
    }
}

#[async_trait]
impl DeliveryQueue for SqsDeliveryQueue {
    async fn enqueue(&self, tasks: &[DeliveryTask]) -> Result<(), EnqueueError> {
        self.enqueue_until(tasks, None).await
    }

    async fn enqueue_by(
        &self,
        tasks: &[DeliveryTask],
        deadline: std::time::Instant,
    ) -> Result<(), EnqueueError> {
        self.enqueue_until(tasks, Some(tokio::time::Instant::from_std(deadline)))
            .await
    }
}

impl SqsDeliveryQueue {
    /// Sends `batches` of `messages`, [`ENQUEUE_CONCURRENCY`] at a time, until `deadline`.
    /// Returns what each finished batch did, and the indexes of the messages of every batch
    /// that did not finish (in flight at the deadline, or never started).
    async fn send_concurrently(
        &self,
        messages: &[Outgoing],
        batches: Vec<Vec<usize>>,
        deadline: Option<tokio::time::Instant>,
    ) -> (Vec<BatchResult>, Vec<usize>) {
        use futures_util::StreamExt;

        let mut done: Vec<(usize, BatchResult)> = Vec::new();
        // Owned batches: a borrowed stream item trips the compiler's higher-ranked `Send` check
        // inside `#[async_trait]`.
        let all = futures_util::stream::iter(batches.clone().into_iter().enumerate())
            .map(|(n, batch)| async move { (n, self.send_batch(messages, &batch).await) })
            .buffer_unordered(ENQUEUE_CONCURRENCY)
            .for_each(|r| {
                done.push(r);
                std::future::ready(())
            });
        match deadline {
            None => all.await,
            Some(at) => {
                if tokio::time::timeout_at(at, all).await.is_err() {
                    tracing::warn!(
                        finished = done.len(),
                        of = batches.len(),
                        "SQS SendMessageBatch: the deadline came before every batch was sent"
                    );
                }
            }
        }
        let finished: HashSet<usize> = done.iter().map(|(n, _)| *n).collect();
        let cut_off = batches
            .iter()
            .enumerate()
            .filter(|(n, _)| !finished.contains(n))
            .flat_map(|(_, b)| b.iter().copied())
            .collect();
        (done.into_iter().map(|(_, r)| r).collect(), cut_off)
    }

    async fn enqueue_until(
        &self,
        tasks: &[DeliveryTask],
        deadline: Option<tokio::time::Instant>,
    ) -> Result<(), EnqueueError> {
        let messages: Vec<Outgoing> = tasks.iter().map(Outgoing::new).collect();
        let mut pending: Vec<usize> = (0..messages.len()).collect();
        let mut failed: Vec<usize> = Vec::new();
        let mut reason = String::new();
        for round in 0..ENQUEUE_ROUNDS {
            if pending.is_empty() {
                break;
            }
            if round > 0 {
                let wake = tokio::time::Instant::now() + enqueue_backoff(round);
                if deadline.is_some_and(|d| wake >= d) {
                    break; // no time for another round: what is pending is reported
                }
                tokio::time::sleep_until(wake).await;
            }
            let sizes: Vec<(usize, usize)> =
                pending.iter().map(|&i| (i, messages[i].size)).collect();
            let (results, cut_off) = self
                .send_concurrently(&messages, batches(&sizes), deadline)
                .await;
            let mut retry = Vec::new();
            for r in results {
                retry.extend(r.retry);
                failed.extend(r.failed);
                if let Some(r) = r.reason {
                    reason = r;
                }
            }
            if !cut_off.is_empty() {
                failed.extend(cut_off);
                failed.extend(retry);
                pending = Vec::new();
                reason = "the time budget ran out before SQS confirmed these".to_owned();
                break;
            }
            pending = retry;
        }
        failed.extend(pending);
        if failed.is_empty() {
            return Ok(());
        }
        failed.sort_unstable();
        tracing::error!(
            failed = failed.len(),
            of = tasks.len(),
            %reason,
            "deliveries could not be enqueued"
        );
        Err(EnqueueError {
            failed: failed
                .into_iter()
                .map(|i| tasks[i].delivery_id.clone())
                .collect(),
            reason,
        })
    }
}

/// What the delivery worker does to a message it received (see the module docs), on the queue
/// it was received from: the delivery queue, or the slow lane's queue
/// ([`Lane`], DESIGN.md §7).
#[derive(Debug, Clone)]
pub struct SqsWorkerQueue {
    client: Client,
    queue_url: String,
    dead_letter_queue_url: String,
    slow_queue_url: Option<String>,
}

impl SqsWorkerQueue {
    /// A worker queue without a slow lane (see [`Self::with_slow_lane`]).
    pub fn new(
        client: Client,
        queue_url: impl Into<String>,
        dead_letter_queue_url: impl Into<String>,
    ) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
            dead_letter_queue_url: dead_letter_queue_url.into(),
            slow_queue_url: None,
        }
    }

    /// The same, with the slow lane's queue at `slow_queue_url`.
    pub fn with_slow_lane(mut self, slow_queue_url: impl Into<String>) -> Self {
        self.slow_queue_url = Some(slow_queue_url.into());
        self
    }

    /// Built from the shared SDK config and the worker's config (the delivery Lambda's main).
    pub fn from_config(sdk: &SdkConfig, config: &SqsWorkerConfig) -> Self {
        let queue = Self::new(
            Client::new(sdk),
            config.queue_url.clone(),
            config.dead_letter_queue_url.clone(),
        );
        match &config.slow_queue_url {
            Some(url) => queue.with_slow_lane(url.clone()),
            None => queue,
        }
    }

    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }

    pub fn dead_letter_queue_url(&self) -> &str {
        &self.dead_letter_queue_url
    }

    pub fn slow_queue_url(&self) -> Option<&str> {
        self.slow_queue_url.as_deref()
    }

    /// The URL of `lane`'s queue: the slow lane's when there is one, else the delivery queue.
    pub fn url_of(&self, lane: Lane) -> &str {
        match (lane, &self.slow_queue_url) {
            (Lane::Slow, Some(url)) => url,
            _ => &self.queue_url,
        }
    }

    /// The lane of a record whose `eventSourceARN` is `event_source_arn`: [`Lane::Slow`] for
    /// the slow lane's queue, [`Lane::Main`] for another when a slow lane is configured, else
    /// [`Lane::Only`].
    pub fn lane_of(&self, event_source_arn: &str) -> Lane {
        match &self.slow_queue_url {
            None => Lane::Only,
            Some(url) if is_queue(event_source_arn, url) => Lane::Slow,
            Some(_) => Lane::Main,
        }
    }

    /// Whether `event_source_arn` is the dead-letter queue's ARN.
    pub fn is_dead_letter_queue(&self, event_source_arn: &str) -> bool {
        is_queue(event_source_arn, &self.dead_letter_queue_url)
    }

    /// Makes the message received from `lane`'s queue visible again `after` from now
    /// (`ChangeMessageVisibility`), clamped to SQS's 0..=12 h. SQS also refuses a timeout that
    /// would keep the message invisible for more than 12 h since it was received: callers leave
    /// room for that.
    pub async fn change_visibility(
        &self,
        lane: Lane,
        receipt_handle: &str,
        after: Duration,
    ) -> Result<(), QueueError> {
        let secs = after.as_secs().min(MAX_VISIBILITY_SECS);
        self.client
            .change_message_visibility()
            .queue_url(self.url_of(lane))
            .receipt_handle(receipt_handle)
            .visibility_timeout(i32::try_from(secs).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(|e| error_of("ChangeMessageVisibility", e))?;
        Ok(())
    }

    /// Longest `DelaySeconds` SQS accepts.
    pub const MAX_DELAY: Duration = Duration::from_secs(900);

    /// Queues `body` as a new message on `lane`'s queue, hidden for `delay` (at most
    /// [`Self::MAX_DELAY`], SQS's limit), with its `deliveryId` attribute: a flow-control
    /// deferral (the core's `QueueAction::Defer`, on the lane it came from) or a move to the
    /// slow lane (`QueueAction::MoveToSlowLane`), whose new message starts its receive count
    /// again.
    pub async fn send_delayed(
        &self,
        lane: Lane,
        body: &str,
        delay: Duration,
        delivery_id: &str,
    ) -> Result<(), QueueError> {
        // Rounded up: a rate-limit slot 1.4 s away must not come back at 1 s and be deferred
        // again (or at 0 s, at once).
        let secs = delay.min(Self::MAX_DELAY).as_millis().div_ceil(1000);
        self.client
            .send_message()
            .queue_url(self.url_of(lane))
            .message_body(body)
            .delay_seconds(i32::try_from(secs).unwrap_or(900))
            .message_attributes(attribute::DELIVERY_ID, string_attribute(delivery_id))
            .send()
            .await
            .map_err(|e| error_of("SendMessage", e))?;
        Ok(())
    }

    /// Sends `body` to the dead-letter queue with why it gave up (`error`, shortened to at most
    /// [`MAX_ERROR_ATTRIBUTE_BYTES`] and to what fits), after how many `attempts`, and the
    /// delivery's id when known. Returns the new message's id.
    pub async fn send_to_dead_letter(
        &self,
        body: &str,
        error: &str,
        attempts: u32,
        delivery_id: Option<&str>,
    ) -> Result<String, QueueError> {
        let body = if body.is_empty() {
            "(empty body)"
        } else {
            body
        };
        let attempts = attempts.to_string();
        let mut used = body.len() + attribute_size(attribute::ATTEMPTS, "Number", &attempts);
        let mut req = self
            .client
            .send_message()
            .queue_url(&self.dead_letter_queue_url)
            .message_body(body)
            .message_attributes(
                attribute::ATTEMPTS,
                MessageAttributeValue::builder()
                    .data_type("Number")
                    .string_value(attempts)
                    .build()
                    .unwrap_or_else(|_| unreachable!("data_type is set")),
            );
        if let Some(id) = delivery_id.filter(|id| !id.is_empty()) {
            let size = attribute_size(attribute::DELIVERY_ID, "String", id);
            if used + size <= MAX_SQS_MESSAGE_BYTES {
                used += size;
                req = req.message_attributes(attribute::DELIVERY_ID, string_attribute(id));
            }
        }
        let room = MAX_SQS_MESSAGE_BYTES
            .saturating_sub(used + attribute_size(attribute::ERROR, "String", ""))
            .min(MAX_ERROR_ATTRIBUTE_BYTES);
        let error = truncate(
            if error.is_empty() {
                "unknown error"
            } else {
                error
            },
            room,
        );
        if !error.is_empty() {
            req = req.message_attributes(attribute::ERROR, string_attribute(error));
        }
        let out = req.send().await.map_err(|e| error_of("SendMessage", e))?;
        Ok(out.message_id().unwrap_or_default().to_owned())
    }
}

/// Whether the queue of ARN `arn` is the queue at `url` (an ARN ends with `:<name>`, a URL
/// with `/<name>`; a queue's name is unique in its account and region).
fn is_queue(arn: &str, url: &str) -> bool {
    let name = |sep: char, of: &str| of.rsplit(sep).next().map(str::to_owned);
    !arn.is_empty() && !url.is_empty() && name(':', arn) == name('/', url)
}

/// `s` cut to at most `max` bytes on a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_s_lane_is_told_by_its_queue_s_name() {
        let client = Client::from_conf(
            aws_sdk_sqs::Config::builder()
                .behavior_version(aws_config::BehaviorVersion::latest())
                .region(aws_sdk_sqs::config::Region::new("us-east-1"))
                .build(),
        );
        let base = "https://sqs.us-east-1.amazonaws.com/123456789012";
        let arn = |name: &str| format!("arn:aws:sqs:us-east-1:123456789012:{name}");
        let one = SqsWorkerQueue::new(client, format!("{base}/d"), format!("{base}/dlq"));
        // GIVEN no slow lane THEN every record is of the one lane, and acts on the delivery queue
        assert_eq!(one.lane_of(&arn("d")), Lane::Only);
        assert_eq!(one.url_of(Lane::Slow), format!("{base}/d"));
        assert!(one.is_dead_letter_queue(&arn("dlq")));
        assert!(!one.is_dead_letter_queue(&arn("d")));
        assert!(!one.is_dead_letter_queue(""));
        // GIVEN a slow lane THEN its records are Slow, the others Main, each acting on its queue
        let two = one.with_slow_lane(format!("{base}/d-slow"));
        assert_eq!(two.lane_of(&arn("d-slow")), Lane::Slow);
        assert_eq!(two.lane_of(&arn("d")), Lane::Main);
        assert_eq!(two.lane_of(""), Lane::Main);
        assert_eq!(two.url_of(Lane::Slow), format!("{base}/d-slow"));
        assert_eq!(two.url_of(Lane::Main), format!("{base}/d"));
        assert_eq!(
            two.slow_queue_url(),
            Some(format!("{base}/d-slow").as_str())
        );
    }

    #[test]
    fn batches_hold_at_most_ten_messages_and_256_kib() {
        // GIVEN 25 small messages
        let small: Vec<(usize, usize)> = (0..25).map(|i| (i, 1_000)).collect();
        // WHEN batched THEN 10 + 10 + 5, in order
        let b = batches(&small);
        assert_eq!(b.iter().map(Vec::len).collect::<Vec<_>>(), vec![10, 10, 5]);
        assert_eq!(b.concat(), (0..25).collect::<Vec<_>>());

        // GIVEN messages of 100 KiB and one of the full 256 KiB
        let big = [
            (0, 100 * 1024),
            (1, 100 * 1024),
            (2, 100 * 1024),
            (3, MAX_SQS_MESSAGE_BYTES),
            (4, 10),
        ];
        // WHEN batched THEN no batch exceeds 256 KiB, and the full one travels alone
        let b = batches(&big);
        assert_eq!(b, vec![vec![0, 1], vec![2], vec![3], vec![4]]);
        assert!(batches(&[]).is_empty());
    }

    #[test]
    fn a_message_that_fills_the_limit_goes_without_its_attribute() {
        // GIVEN a task whose message is exactly at the limit, and a small one
        let mut task = DeliveryTask {
            delivery_id: webhooks_core::DeliveryId::generate(1_700_000_000),
            webhook_id: webhooks_core::WebhookId::generate(1_700_000_000),
            event: webhooks_core::EventType::DataReceived,
            generation: 0,
            attempts_made: 0,
            body: String::new(),
            created_at: webhooks_core::Timestamp::from_unix(1_700_000_000),
        };
        let small = Outgoing::new(&task);
        task.body = "x".repeat(MAX_SQS_MESSAGE_BYTES - task.message_len());
        assert_eq!(task.message_len(), MAX_SQS_MESSAGE_BYTES);
        // WHEN prepared THEN the big one fits without the attribute, the small one has it
        let big = Outgoing::new(&task);
        assert!(!big.with_attribute && big.size == MAX_SQS_MESSAGE_BYTES);
        assert!(small.with_attribute && small.size == small.body.len() + 40);
    }

    #[test]
    fn throttling_and_server_errors_are_retryable_and_bad_requests_are_not() {
        for code in [
            "RequestThrottled",
            "ServiceUnavailable",
            "InternalError",
            "KmsThrottled",
        ] {
            assert!(retryable_code(code), "{code}");
        }
        assert!(retryable_code("AWS.SimpleQueueService.RequestThrottled"));
        for code in [
            "InvalidParameterValue",
            "BatchRequestTooLong",
            "AWS.SimpleQueueService.NonExistentQueue",
            "ReceiptHandleIsInvalid",
            "AccessDenied",
        ] {
            assert!(!retryable_code(code), "{code}");
        }
        assert!(enqueue_backoff(1) <= Duration::from_millis(100));
        assert!(enqueue_backoff(3) <= Duration::from_millis(1600));
    }

    mod scripted {
        //! `SqsDeliveryQueue::enqueue` against scripted SQS answers (aws-smithy-mocks): the
        //! partial and whole-batch failures moto cannot produce.

        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};

        use aws_sdk_sqs::config::retry::RetryConfig;
        use aws_sdk_sqs::error::ErrorMetadata;
        use aws_sdk_sqs::operation::send_message_batch::{
            SendMessageBatchError, SendMessageBatchOutput,
        };
        use aws_sdk_sqs::types::error::{BatchRequestTooLong, RequestThrottled};
        use aws_sdk_sqs::types::{BatchResultErrorEntry, SendMessageBatchResultEntry};
        use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
        use webhooks_core::{DeliveryId, EventType, Timestamp, WebhookId};

        use super::super::*;

        fn tasks(n: usize) -> Vec<DeliveryTask> {
            (0..n)
                .map(|i| DeliveryTask {
                    delivery_id: DeliveryId::generate(1_700_000_000 + i as i64),
                    webhook_id: WebhookId::generate(1_700_000_000),
                    event: EventType::AlertTriggered,
                    generation: 0,
                    attempts_made: 0,
                    body: "{}".into(),
                    created_at: Timestamp::from_unix(1_700_000_000),
                })
                .collect()
        }

        fn queue(rule: &Rule) -> SqsDeliveryQueue {
            // SDK retries off: what is tested is the adapter's own retrying.
            let client = mock_client!(aws_sdk_sqs, RuleMode::MatchAny, [rule], |c| c
                .retry_config(RetryConfig::disabled()));
            SqsDeliveryQueue::new(client, "https://sqs.test/q")
        }

        fn ok(id: &str) -> SendMessageBatchResultEntry {
            SendMessageBatchResultEntry::builder()
                .id(id)
                .message_id(format!("m-{id}"))
                .md5_of_message_body("x")
                .build()
                .unwrap()
        }

        fn failed(id: &str, code: &str, sender_fault: bool) -> BatchResultErrorEntry {
            BatchResultErrorEntry::builder()
                .id(id)
                .code(code)
                .sender_fault(sender_fault)
                .message("scripted")
                .build()
                .unwrap()
        }

        fn throttled() -> SendMessageBatchError {
            SendMessageBatchError::RequestThrottled(
                RequestThrottled::builder()
                    .message("Rate exceeded")
                    .meta(ErrorMetadata::builder().code("RequestThrottled").build())
                    .build(),
            )
        }

        #[tokio::test]
        async fn entries_failed_by_the_service_are_resent_and_sender_faults_are_reported() {
            // GIVEN SQS takes entry 0, fails entry 1 on its side and refuses entry 2, then
            // takes whatever is sent again
            let calls = Arc::new(AtomicUsize::new(0));
            let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
            let (c, s) = (calls.clone(), seen.clone());
            let rule =
                mock!(aws_sdk_sqs::Client::send_message_batch).then_compute_output(move |req| {
                    let ids: Vec<String> =
                        req.entries().iter().map(|e| e.id().to_owned()).collect();
                    s.lock().unwrap().push(ids.clone());
                    if c.fetch_add(1, Ordering::SeqCst) == 0 {
                        SendMessageBatchOutput::builder()
                            .successful(ok("0"))
                            .failed(failed("1", "InternalError", false))
                            .failed(failed("2", "InvalidParameterValue", true))
                            .build()
                            .unwrap()
                    } else {
                        let mut out = SendMessageBatchOutput::builder().set_failed(Some(vec![]));
                        for id in &ids {
                            out = out.successful(ok(id));
                        }
                        out.build().unwrap()
                    }
                });
            let tasks = tasks(3);
            // WHEN enqueued
            let err = queue(&rule).enqueue(&tasks).await.expect_err("one refused");
            // THEN entry 1 was sent again (alone), entry 2 is reported, the rest queued
            assert_eq!(err.failed, vec![tasks[2].delivery_id.clone()]);
            assert!(
                err.reason.contains("InvalidParameterValue"),
                "{}",
                err.reason
            );
            assert_eq!(
                *seen.lock().unwrap(),
                vec![
                    vec!["0".to_owned(), "1".into(), "2".into()],
                    vec!["1".to_owned()]
                ]
            );
        }

        #[tokio::test]
        async fn a_throttled_batch_is_resent_and_a_lasting_outage_reports_every_task() {
            // GIVEN SQS throttles the first request, then takes everything
            let calls = Arc::new(AtomicUsize::new(0));
            let c = calls.clone();
            let rule =
                mock!(aws_sdk_sqs::Client::send_message_batch).then_compute_response(move |req| {
                    if c.fetch_add(1, Ordering::SeqCst) == 0 {
                        aws_smithy_mocks::MockResponse::Error(throttled())
                    } else {
                        let mut out = SendMessageBatchOutput::builder().set_failed(Some(vec![]));
                        for e in req.entries() {
                            out = out.successful(ok(e.id()));
                        }
                        aws_smithy_mocks::MockResponse::Output(out.build().unwrap())
                    }
                });
            // WHEN 12 tasks (two batches) are enqueued THEN all are queued after one resend
            queue(&rule).enqueue(&tasks(12)).await.expect("queued");
            assert_eq!(calls.load(Ordering::SeqCst), 3, "2 batches + 1 resend");

            // GIVEN SQS throttles every request
            let rule = mock!(aws_sdk_sqs::Client::send_message_batch).then_error(throttled);
            let tasks = tasks(3);
            // WHEN enqueued THEN every task is reported after the rounds, naming the cause
            let err = queue(&rule).enqueue(&tasks).await.expect_err("outage");
            assert_eq!(err.failed.len(), 3);
            assert!(err.reason.contains("RequestThrottled"), "{}", err.reason);
            assert_eq!(rule.num_calls(), ENQUEUE_ROUNDS as usize);

            // GIVEN SQS refuses the request as malformed
            let rule = mock!(aws_sdk_sqs::Client::send_message_batch).then_error(|| {
                SendMessageBatchError::BatchRequestTooLong(
                    BatchRequestTooLong::builder()
                        .meta(ErrorMetadata::builder().code("BatchRequestTooLong").build())
                        .build(),
                )
            });
            // WHEN enqueued THEN it is reported at once, not resent
            let err = queue(&rule).enqueue(&tasks).await.expect_err("refused");
            assert_eq!(err.failed.len(), 3);
            assert_eq!(rule.num_calls(), 1);
        }
    }

    #[test]
    fn truncation_keeps_whole_characters() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("héllo", 3), "hé");
        assert_eq!(truncate("abc", 10), "abc");
    }
}
