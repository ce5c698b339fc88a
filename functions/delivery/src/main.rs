//! The delivery Lambda: wiring only (STYLE.md §3). Tracing as JSON, the configuration from the
//! environment `template.yaml` sets, the SDK clients and adapters built once, then
//! `lambda_runtime` hands each SQS batch to [`webhooks_delivery::handle`].

use std::sync::Arc;

use lambda_runtime::{LambdaEvent, service_fn};
use webhooks_aws::{
    DynamoDbDeliveryLog, DynamoDbHealthStore, DynamoDbNoticeStore, DynamoDbSubscriptionStore,
    SnsOperatorAlerts, SqsConfig, SqsDeliveryQueue, SqsWorkerQueue, load_sdk_config,
};
use webhooks_core::dispatch::Dispatcher;
use webhooks_core::notify::Notifier;
use webhooks_core::time::SystemClock;
use webhooks_delivery::{DeliveryConfig, Ports, handle};
use webhooks_sender::{ReqwestWebhookSender, SenderConfig};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_current_span(true)
        .with_target(false)
        // CloudWatch stamps every line already.
        .without_time()
        .init();

    // Fail the cold start with a log line that names what is wrong (the runtime prints only the
    // error's Debug form).
    let config = DeliveryConfig::from_env().inspect_err(|e| {
        tracing::error!(error = %e, "delivery function misconfigured");
    })?;
    let sdk = load_sdk_config().await;
    let store = DynamoDbSubscriptionStore::from_config(&sdk, &config.webhooks)
        .with_delivery_cache(webhooks_delivery::WEBHOOK_CACHE_TTL);
    let log = DynamoDbDeliveryLog::from_config(&sdk, &config.log)
        // A batch record older than the function's timeout has no writer left.
        .with_coalescing(webhooks_delivery::FINISH_LINGER, config.function_timeout);
    let finish_scope = log.finish_scope();
    let queue = SqsWorkerQueue::from_config(&sdk, &config.queues);
    let sender = ReqwestWebhookSender::new(SenderConfig {
        timeout: config.timeout,
        allow_private: config.allow_private,
    })
    .inspect_err(|e| tracing::error!(error = %e, "could not build the HTTP client"))?;
    let store = Arc::new(store);
    // Operational notifications are queued as deliveries on the delivery queue.
    let notify_queue = SqsDeliveryQueue::from_config(
        &sdk,
        &SqsConfig {
            queue_url: config.queues.queue_url.clone(),
        },
    );
    let mut notifier = Notifier::new(
        Arc::new(DynamoDbNoticeStore::from_config(&sdk, &config.webhooks)),
        store.clone(),
        Arc::new(notify_queue),
        Arc::new(SystemClock),
    )
    .with_thresholds(config.failing_notice);
    if let Some(topic) = &config.operator_topic_arn {
        notifier = notifier.with_operators(Arc::new(SnsOperatorAlerts::from_config(&sdk, topic)));
    }
    let dispatcher = Dispatcher::new(
        store,
        Arc::new(log),
        Arc::new(sender),
        Arc::new(SystemClock),
    )
    .with_auto_disable_after(config.auto_disable_after)
    .with_breaker(Arc::new(DynamoDbHealthStore::from_config(
        &sdk,
        &config.log,
    )))
    .with_notifier(Arc::new(notifier))
    .with_max_in_flight(webhooks_delivery::MAX_IN_FLIGHT_PER_WEBHOOK)
    .with_rate_limit_shares(config.rate_limit_shares);
    let ports = Ports {
        function_timeout: config.function_timeout,
        finish_scope,
        ..Ports::new(dispatcher, Arc::new(queue))
    };
    tracing::info!(
        timeout_secs = config.timeout.as_secs(),
        allow_private = config.allow_private,
        slow_lane = config.queues.slow_queue_url.is_some(),
        operator_topic = config.operator_topic_arn.is_some(),
        "delivery function ready"
    );

    lambda_runtime::run(service_fn(|event: LambdaEvent<_>| handle(event, &ports))).await
}
