//! Helpers shared by the delivery-side tests: tasks, a fixed start time, bounded polling.
#![allow(dead_code)] // each test binary uses a different part

use std::future::Future;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use webhooks_core::delivery::DeliveryTask;
use webhooks_core::{DeliveryId, EventType, Timestamp, WebhookId};

/// A fixed "now" for queue tests (2023-11-14T22:13:20Z), so visibility arithmetic is exact.
pub fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

pub fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

pub fn ms(m: u64) -> Duration {
    Duration::from_millis(m)
}

/// A delivery of `webhook`; `n` makes the delivery id unique and time-ordered.
pub fn task_for(webhook: &WebhookId, n: i64) -> DeliveryTask {
    DeliveryTask {
        delivery_id: DeliveryId::generate(1_700_000_000 + n),
        webhook_id: webhook.clone(),
        event: EventType::AlertTriggered,
        generation: 0,
        attempts_made: 0,
        body: format!(r#"{{"event":"alert.triggered","data":{{"n":{n},"v":30.5,"s":"°C"}}}}"#),
        created_at: Timestamp::from_unix(1_700_000_000 + n),
    }
}

pub fn task(n: i64) -> DeliveryTask {
    task_for(&WebhookId::generate(1_700_000_000), n)
}

/// Polls `check` every 20 ms until it holds; panics naming `what` after `timeout`.
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
