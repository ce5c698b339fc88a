//! SQS in moto: a fresh delivery queue, slow lane's queue and dead-letter queue per test,
//! created from `template.yaml`'s `DeliveryQueue`, `SlowQueue` and `DeadLetterQueue` (attributes
//! and redrive policy, the policy's `!GetAtt DeadLetterQueue.Arn` resolved to the test's own
//! dead-letter queue), and what
//! the Lambda event source mapping does with them: receive a batch and hand it over as an
//! `SqsEvent`, then delete the messages the handler did not report failed.

use std::collections::HashMap;

use aws_config::SdkConfig;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage, SqsMessageAttribute};
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{Message, MessageSystemAttributeName, QueueAttributeName};
use webhooks_aws::{SqsConfig, SqsDeliveryQueue, SqsWorkerConfig, SqsWorkerQueue};

use super::dynamo::sdk_config_for;
use super::template;
use super::{moto, unique_name};

/// The attributes of `Resources.<logical_id>` (an `AWS::SQS::Queue`) as `CreateQueue` takes them;
/// `!GetAtt <Queue>.Arn` inside the redrive policy resolves through `arns`.
pub fn queue_attributes(
    logical_id: &str,
    arns: &HashMap<&str, String>,
) -> HashMap<QueueAttributeName, String> {
    template::queue_attributes(logical_id, arns)
        .into_iter()
        .map(|(k, v)| (QueueAttributeName::from(k.as_str()), v))
        .collect()
}

/// Creates queue `name` from `logical_id` and returns its URL and ARN.
pub async fn create_queue(
    client: &Client,
    logical_id: &str,
    name: &str,
    arns: &HashMap<&str, String>,
) -> (String, String) {
    let url = client
        .create_queue()
        .queue_name(name)
        .set_attributes(Some(queue_attributes(logical_id, arns)))
        .send()
        .await
        .unwrap_or_else(|e| panic!("create queue {name} from {logical_id}: {e:?}"))
        .queue_url
        .expect("queue url");
    let arn = client
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("queue attributes")
        .attributes
        .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
        .expect("queue arn");
    (url, arn)
}

/// A fresh delivery queue with its slow lane and dead-letter queue, and the adapters on them.
#[derive(Debug)]
pub struct Queues {
    pub client: Client,
    pub url: String,
    pub arn: String,
    pub dlq_url: String,
    pub dlq_arn: String,
    /// The slow lane's queue (DESIGN.md §7).
    pub slow_url: String,
    pub slow_arn: String,
    /// The enqueue side (the API's adapter).
    pub queue: SqsDeliveryQueue,
    /// The worker side (the delivery Lambda's adapter).
    pub worker: SqsWorkerQueue,
}

impl Queues {
    pub async fn create() -> Self {
        let endpoint = moto::endpoint();
        Self::create_on(
            endpoint,
            &unique_name("deliveries"),
            &sdk_config_for(endpoint),
        )
        .await
    }

    /// The delivery queue `name`, its slow lane `name-slow` and its dead-letter queue `name-dlq`
    /// on the emulator at `endpoint` (the same URLs again when called again with the same name,
    /// as after a restart of a dedicated emulator); the adapters on clients of `adapters`, the
    /// harness's own client on the default settings.
    pub async fn create_on(endpoint: &str, name: &str, adapters: &SdkConfig) -> Self {
        let client = Client::new(&sdk_config_for(endpoint));
        let mut arns = HashMap::new();
        let (dlq_url, dlq_arn) =
            create_queue(&client, "DeadLetterQueue", &format!("{name}-dlq"), &arns).await;
        arns.insert("DeadLetterQueue", dlq_arn.clone());
        let slow_name = format!("{name}-slow");
        let ((url, arn), (slow_url, slow_arn)) = tokio::join!(
            create_queue(&client, "DeliveryQueue", name, &arns),
            create_queue(&client, "SlowQueue", &slow_name, &arns)
        );
        // Through the same constructors and configs the Lambda mains use.
        let env = |name: &str| match name {
            "QUEUE_URL" => Some(url.clone()),
            "DLQ_URL" => Some(dlq_url.clone()),
            "SLOW_QUEUE_URL" => Some(slow_url.clone()),
            _ => None,
        };
        let queue = SqsDeliveryQueue::from_config(adapters, &SqsConfig::from_lookup(env).unwrap());
        let worker =
            SqsWorkerQueue::from_config(adapters, &SqsWorkerConfig::from_lookup(env).unwrap());
        Self {
            client,
            url,
            arn,
            dlq_url,
            dlq_arn,
            slow_url,
            slow_arn,
            queue,
            worker,
        }
    }

    /// Up to `max` (1..=10) messages of `queue_url` visible now, waiting at most `wait_secs` for
    /// the first, with every system and message attribute.
    pub async fn receive_raw(&self, queue_url: &str, max: i32, wait_secs: i32) -> Vec<Message> {
        self.client
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(max)
            .wait_time_seconds(wait_secs)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .expect("receive")
            .messages
            .unwrap_or_default()
    }

    /// What the event source mapping hands the function: up to `max` messages of the delivery
    /// queue as SQS event records.
    pub async fn receive_records(&self, max: i32, wait_secs: i32) -> Vec<SqsMessage> {
        self.receive_raw(&self.url, max, wait_secs)
            .await
            .into_iter()
            .map(|m| self.record(m))
            .collect()
    }

    /// What the slow lane's event source mapping hands the function: up to `max` messages of
    /// the slow queue as SQS event records (their `eventSourceARN` the slow queue's).
    pub async fn receive_slow_records(&self, max: i32, wait_secs: i32) -> Vec<SqsMessage> {
        self.receive_raw(&self.slow_url, max, wait_secs)
            .await
            .into_iter()
            .map(|m| {
                let mut r = self.record(m);
                r.event_source_arn = Some(self.slow_arn.clone());
                r
            })
            .collect()
    }

    /// Receives until `n` records are in hand (bounded: panics after `limit`).
    pub async fn receive_exactly(&self, n: usize, limit: std::time::Duration) -> Vec<SqsMessage> {
        let deadline = std::time::Instant::now() + limit;
        let mut records = Vec::new();
        while records.len() < n {
            assert!(
                std::time::Instant::now() < deadline,
                "received {} of {n} messages within {limit:?}",
                records.len()
            );
            let want = i32::try_from((n - records.len()).min(10)).unwrap();
            records.extend(self.receive_records(want, 1).await);
        }
        assert_eq!(records.len(), n, "more messages than expected");
        records
    }

    /// One received message as the Lambda SQS event record for it.
    pub fn record(&self, m: Message) -> SqsMessage {
        let mut r = SqsMessage::default();
        r.message_id = m.message_id;
        r.receipt_handle = m.receipt_handle;
        r.body = m.body;
        r.md5_of_body = m.md5_of_body;
        r.md5_of_message_attributes = m.md5_of_message_attributes;
        r.attributes = m
            .attributes
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k.as_str().to_owned(), v))
            .collect();
        r.message_attributes = m
            .message_attributes
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| {
                let mut a = SqsMessageAttribute::default();
                a.string_value = v.string_value;
                a.data_type = Some(v.data_type);
                (k, a)
            })
            .collect();
        r.event_source = Some("aws:sqs".into());
        r.event_source_arn = Some(self.arn.clone());
        r.aws_region = Some("us-east-1".into());
        r
    }

    /// What the event source mapping does after the function answered: deletes every record
    /// not reported in `batchItemFailures` (from the queue its `eventSourceARN` names).
    pub async fn delete_acknowledged(&self, records: &[SqsMessage], response: &SqsBatchResponse) {
        for r in records {
            let id = r.message_id.as_deref().unwrap_or_default();
            if response
                .batch_item_failures
                .iter()
                .any(|f| f.item_identifier == id)
            {
                continue;
            }
            let url = if r.event_source_arn.as_deref() == Some(self.slow_arn.as_str()) {
                &self.slow_url
            } else {
                &self.url
            };
            self.client
                .delete_message()
                .queue_url(url)
                .receipt_handle(r.receipt_handle.as_deref().expect("receipt handle"))
                .send()
                .await
                .expect("delete an acknowledged message");
        }
    }

    /// The number of messages of `queue_url` in each state: (visible, in flight).
    pub async fn counts(&self, queue_url: &str) -> (u64, u64) {
        let attrs = self
            .client
            .get_queue_attributes()
            .queue_url(queue_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .expect("queue attributes")
            .attributes
            .unwrap_or_default();
        let n = |k: QueueAttributeName| {
            attrs
                .get(&k)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        (
            n(QueueAttributeName::ApproximateNumberOfMessages),
            n(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        )
    }
}

/// `records` as the event the function is invoked with.
pub fn event_of(records: Vec<SqsMessage>) -> SqsEvent {
    let mut event = SqsEvent::default();
    event.records = records;
    event
}
