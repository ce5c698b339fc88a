//! The delivery side assembled as the delivery Lambda's `main` assembles it, on moto and real
//! HTTP: both tables and both queues from `template.yaml`, the real reqwest sender (loopback
//! allowed, a short timeout), the core's dispatcher, and [`webhooks_delivery::handle`] invoked
//! the way the SQS event source invokes it.

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsMessage};
use lambda_runtime::{Context, LambdaEvent};
use webhooks_aws::{DynamoDbDeliveryLog, DynamoDbSubscriptionStore};
use webhooks_core::conformance::sample_webhook;
use webhooks_core::delivery::{DeliveryTask, envelope};
use webhooks_core::dispatch::Dispatcher;
use webhooks_core::ports::{Clock, DeliveryQueue, SubscriptionStore};
use webhooks_core::time::SystemClock;
use webhooks_core::webhook::{RetryConfig, Webhook};
use webhooks_core::{BucketId, DeliveryId, EventType, OwnerId, Timestamp, jsjson};
use webhooks_delivery::{Ports, handle};
use webhooks_sender::{ReqwestWebhookSender, SenderConfig};

use super::dynamo::DeliveryTables;
use super::receiver::Receiver;
use super::sqs::{Queues, event_of};

#[derive(Debug)]
pub struct World {
    pub queues: Queues,
    pub receiver: Receiver,
    pub store: Arc<DynamoDbSubscriptionStore>,
    pub log: Arc<DynamoDbDeliveryLog>,
    pub ports: Ports,
    pub owner: OwnerId,
    pub bucket: BucketId,
}

impl World {
    /// Everything fresh, the sender timing out after `timeout`.
    pub async fn create(timeout: Duration) -> Self {
        let (tables, queues, receiver) = tokio::join!(
            DeliveryTables::create(),
            Queues::create(),
            Receiver::start()
        );
        let store = Arc::new(tables.webhooks.store.clone());
        // The delivery function's log: a batch's finishes of one webhook coalesced (main.rs).
        let log = Arc::new(tables.log.clone().with_coalescing(
            webhooks_delivery::FINISH_LINGER,
            webhooks_delivery::DEFAULT_FUNCTION_TIMEOUT,
        ));
        let sender = ReqwestWebhookSender::new(SenderConfig {
            timeout,
            allow_private: true,
        })
        .expect("sender");
        let dispatcher = Dispatcher::new(
            store.clone(),
            log.clone(),
            Arc::new(sender),
            Arc::new(SystemClock),
        );
        let ports = Ports {
            finish_scope: log.finish_scope(),
            ..Ports::new(dispatcher, Arc::new(queues.worker.clone()))
        };
        Self {
            queues,
            receiver,
            store,
            log,
            ports,
            owner: OwnerId::parse("user-delivery-tests").unwrap(),
            bucket: BucketId::generate(1_760_000_000),
        }
    }

    /// What `template.yaml` passes the delivery function, for these tables and queues (the
    /// receiver on loopback allowed, `timeout` per attempt).
    pub fn function_env(&self, timeout: Duration) -> Vec<(String, String)> {
        [
            ("WEBHOOKS_TABLE", self.store.table_name().to_owned()),
            ("SECRETS_KEY_ARN", super::dynamo::secrets_key_created()),
            ("DELIVERIES_TABLE", self.log.table_name().to_owned()),
            ("QUEUE_URL", self.queues.url.clone()),
            ("DLQ_URL", self.queues.dlq_url.clone()),
            ("SLOW_QUEUE_URL", self.queues.slow_url.clone()),
            (
                "DELIVERY_TIMEOUT_SECONDS",
                timeout.as_secs().max(1).to_string(),
            ),
            ("ALLOW_PRIVATE_TARGETS", "true".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// A new active webhook at `url`, subscribed to alert.triggered, with `retry`.
    pub async fn webhook(&self, url: &str, retry: RetryConfig) -> Webhook {
        let mut w = sample_webhook(&self.owner, &self.bucket, now().unix());
        w.url = url.to_owned();
        w.events = vec![EventType::AlertTriggered];
        w.retry_config = retry;
        self.store.create(&w).await.expect("create webhook");
        w
    }

    /// A delivery of an alert to `w`, its body rendered as the publish path renders it.
    pub fn task(&self, w: &Webhook) -> DeliveryTask {
        let now = now();
        let delivery_id = DeliveryId::generate(now.unix());
        let data = serde_json::json!({
            "alertId": "507f1f77bcf86cd799439013",
            "alertName": "High Temperature Alert",
            "currentValue": 31.5,
            "threshold": 30.0,
        });
        let body = jsjson::to_string(&envelope(
            EventType::AlertTriggered,
            now,
            &w.id,
            &w.bucket_id,
            &delivery_id,
            data,
        ));
        DeliveryTask {
            delivery_id,
            webhook_id: w.id.clone(),
            event: EventType::AlertTriggered,
            generation: 0,
            attempts_made: 0,
            body,
            created_at: now,
        }
    }

    /// Queues `task` through the API's adapter and receives it back as the event source would
    /// hand it to the function (one record).
    pub async fn queued(&self, task: &DeliveryTask) -> Vec<SqsMessage> {
        self.queues
            .queue
            .enqueue(std::slice::from_ref(task))
            .await
            .expect("enqueue");
        self.queues
            .receive_exactly(1, Duration::from_secs(10))
            .await
    }

    /// Invokes the handler with `records` (a `Context` without deadline), then does what the
    /// event source does: deletes the acknowledged messages.
    pub async fn invoke(&self, records: Vec<SqsMessage>) -> SqsBatchResponse {
        let response = self.handle(records.clone()).await;
        self.queues.delete_acknowledged(&records, &response).await;
        response
    }

    /// Invokes the handler only (for records that are not on the queue, like the fixtures').
    pub async fn handle(&self, records: Vec<SqsMessage>) -> SqsBatchResponse {
        handle(
            LambdaEvent::new(event_of(records), Context::default()),
            &self.ports,
        )
        .await
        .expect("the handler answers every batch")
    }

    pub async fn get(&self, w: &Webhook) -> Webhook {
        self.store
            .get(&w.id)
            .await
            .expect("get")
            .expect("webhook exists")
    }
}

/// The message ids of `response`'s batch item failures, sorted.
pub fn failures(response: &SqsBatchResponse) -> Vec<String> {
    let mut ids: Vec<String> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect();
    ids.sort();
    ids
}

/// The message id of the record whose task is `task`.
pub fn message_id_of(records: &[SqsMessage], task: &DeliveryTask) -> String {
    records
        .iter()
        .find(|r| {
            r.body
                .as_deref()
                .is_some_and(|b| b.contains(task.delivery_id.as_str()))
        })
        .and_then(|r| r.message_id.clone())
        .expect("a record of the task")
}

/// A retry policy of `retries` retries, 1 s apart.
pub fn every_second(retries: u32) -> RetryConfig {
    RetryConfig {
        max_retries: retries,
        backoff_multiplier: 1.0,
        initial_delay_seconds: 1,
    }
}

fn now() -> Timestamp {
    SystemClock.now()
}
