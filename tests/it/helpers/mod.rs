//! Test harness shared by the integration tests: nothing here is a test.
//!
//! - [`moto`]: one moto server per test process, started lazily on a free port, killed with it.
//! - [`template`]: `template.yaml` read as data (CloudFormation tags and all).
//! - [`dynamo`]: SDK configs pointed at moto, per-test tables created from `template.yaml`.

pub mod dynamo;
pub mod moto;
pub mod template;

use std::time::{Duration, Instant};

/// Polls `check` every `every` until it returns `Some`, for at most `limit`; panics naming `what`
/// when time runs out. The only way tests wait: never a bare sleep.
pub async fn poll_until<T, F, Fut>(what: &str, limit: Duration, every: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(every).await;
    }
}
