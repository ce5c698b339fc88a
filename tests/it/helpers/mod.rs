//! Test harness shared by the integration tests: nothing here is a test.
//!
//! - [`api`]: the API's Router on given ports, called in-process with the tests' tokens.
//! - [`moto`]: one moto server per test process, started lazily on a free port, killed with it.
//! - [`template`]: `template.yaml` read as data (CloudFormation tags and all).
//! - [`dynamo`]: SDK configs pointed at moto, per-test tables created from `template.yaml`.
//! - [`sqs`]: per-test delivery and dead-letter queues created from `template.yaml`, and what the
//!   Lambda event source does with them (receive a batch as an `SqsEvent`, delete what succeeded).
//! - [`receiver`]: HTTP receivers on 127.0.0.1 that record what they get and answer as told.
//! - [`fixtures`]: what the files of `events/` refer to, seeded the same way everywhere.
//! - [`lambda`]: the function binaries as processes under cargo-lambda's Lambda emulator.
//! - [`world`]: the delivery side wired as the delivery Lambda wires it, on all of the above.

pub mod api;
pub mod dynamo;
pub mod fixtures;
pub mod lambda;
pub mod moto;
pub mod receiver;
pub mod sqs;
pub mod template;
pub mod world;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// `<prefix>-<pid>-<n>`: a table or queue name no other test (or test process) uses.
pub fn unique_name(prefix: &str) -> String {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

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
