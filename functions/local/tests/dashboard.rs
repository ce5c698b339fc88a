//! The dashboard (`/dashboard`) in a real browser: the local mode and a `TestReceiver` run here,
//! and `tests/dashboard/dashboard.test.mjs` drives headless Debian Chromium through
//! playwright-core against them: token, bucket, create (one-time secret), list, test send,
//! deliveries with auto-refresh, edit, disable, an API error in words, dead letters and
//! redelivery, delete, the 375 px layout, and basic accessibility checks.
//!
//! Needs `/usr/bin/chromium` and `tests/dashboard/node_modules`: `./infra/test.sh` (or
//! `./infra/setup-browser.sh`) installs them; this test does not install anything.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

const CHROMIUM: &str = "/usr/bin/chromium";
/// The node script bounds itself at 150 s; this is the backstop.
const LIMIT: Duration = Duration::from_secs(240);

fn preflight(dir: &Path) {
    let missing: Vec<String> = [
        (Path::new(CHROMIUM).to_owned(), "Chromium"),
        (dir.join("node_modules/playwright-core"), "playwright-core"),
    ]
    .into_iter()
    .filter(|(p, _)| !p.exists())
    .map(|(p, what)| format!("{what} ({})", p.display()))
    .collect();
    assert!(
        missing.is_empty(),
        "the dashboard browser test needs {}: run ./infra/test.sh or ./infra/setup-browser.sh",
        missing.join(" and ")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_manages_webhooks_in_a_real_browser() {
    // GIVEN the local mode, a receiver that answers 200 (and 500 on /fail), a producer token
    let root = root();
    let dir = root.join("tests/dashboard");
    preflight(&dir);
    let data = tempfile::tempdir().unwrap();
    let local = Local::start(data.path(), &[]);
    let (rx, receiver) = TestReceiver::start().await;
    rx.on("/fail", |_| status(500));
    let producer = local.mint("ingest", Some("events:publish"));
    let artifacts = root.join("target/dashboard-test");

    // WHEN the browser test runs against them
    let started = Instant::now();
    let child = tokio::process::Command::new("node")
        .arg("dashboard.test.mjs")
        .args([&local.base, &producer, &receiver])
        .current_dir(&dir)
        .env("DASHBOARD_ARTIFACTS", &artifacts)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run node (is Node.js installed? ./infra/setup-browser.sh needs it too)");
    let out = tokio::time::timeout(LIMIT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("the browser test did not finish within {LIMIT:?}"))
        .expect("wait for node");

    // THEN every step passed
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the browser test failed ({}) after {:.1} s:\n{stdout}\n{stderr}",
        out.status,
        started.elapsed().as_secs_f64()
    );
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
    println!("{stdout}");
    // and the receiver got real, signed deliveries from it
    let hooks = rx.at("/hook");
    assert!(hooks.len() >= 2, "deliveries to /hook: {}", hooks.len());
    assert!(
        hooks
            .iter()
            .all(|r| r.headers.contains_key("x-webhook-signature"))
    );
    local.stop();
}
