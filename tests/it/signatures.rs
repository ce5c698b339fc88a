//! The guide's signature checks on real deliveries (DESIGN.md §4): events published through the
//! core's `DeliveryService` into the SQS queue (moto), delivered by the delivery handler with
//! the real sender to a receiver that records the raw body and headers, then verified by real
//! `node` running the guide's `verifyWebhookSignature` over `JSON.stringify(JSON.parse(body))`
//! and real `python3` running the guide's `verify_webhook_signature` over the raw body, plus the
//! Standard Webhooks reference library. Scripts: `tests/verify/guide_check.{js,py}`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use webhooks_core::Timestamp;
use webhooks_core::delivery_service::{DeliveryService, ValidEvent};
use webhooks_core::time::SystemClock;
use webhooks_core::webhook::{RetryConfig, Secret};
use webhooks_core::webhook_service::Caller;
use webhooks_core::{EventType, ports::SubscriptionStore};

use crate::helpers::world::{World, failures};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The venv's Python (it has the Standard Webhooks library); fails with how to install it.
fn python() -> PathBuf {
    let py = workspace().join(".venv/bin/python");
    assert!(
        py.is_file(),
        "{} not found: run ./infra/setup-venv.sh (installs moto and standardwebhooks into ./.venv)",
        py.display()
    );
    py
}

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("run {cmd:?}: {e} (is it installed?)"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_deliveries_verify_with_the_guides_node_and_python_checks() {
    // GIVEN two webhooks of one bucket, one with a generated `whsec_` secret and one with the
    // guide's plain secret, and events whose data has floats, integral floats, huge and tiny
    // numbers, unicode, escapes and control characters
    let world = World::create(Duration::from_secs(5)).await;
    let mut webhooks = Vec::new();
    for (path, secret) in [
        ("/sig-generated", Secret::generate()),
        ("/sig-guide", Secret::new("your_webhook_secret".into())),
    ] {
        let mut w = world
            .webhook(&world.receiver.url(path), RetryConfig::default())
            .await;
        w.secret = secret.clone();
        world
            .store
            .delete(&w.owner_id, &w.id)
            .await
            .expect("delete");
        world.store.create(&w).await.expect("create with secret");
        webhooks.push((path, w));
    }
    let data = [
        serde_json::json!({
            "alertName": "High Temperature Alert",
            "currentValue": 31.5,
            "threshold": 30.0,
            "tiny": 1e-7,
            "huge": 1e21,
            "big": 12345678901234567890u64,
            "negative": -0.5,
            "exp": 2.5e-300,
        }),
        serde_json::json!({
            "dataSourceName": "Temperature Sensor — Room A (°C) 🌡️",
            "note": "line\nbreak\t\"quoted\" back\\slash \u{1} ctl \u{2028} sep </script>",
            "emptyObject": {},
            "list": [1, 2.0, "3", null, true, false, []],
            "nested": {"z": 1, "a": {"b": [0.1, 0.2, 0.30000000000000004]}},
        }),
    ];
    let events: Vec<ValidEvent> = data
        .into_iter()
        .map(|d| ValidEvent {
            bucket_id: world.bucket.clone(),
            event: EventType::AlertTriggered,
            data: d,
            timestamp: Timestamp::parse("2024-01-15T10:30:00Z").unwrap(),
        })
        .collect();

    // WHEN they are published (fan-out into SQS), received and handled
    let service = DeliveryService::new(
        world.store.clone(),
        world.log.clone(),
        Arc::new(world.queues.queue.clone()),
        Arc::new(SystemClock),
    );
    let caller = Caller {
        owner: world.owner.clone(),
        buckets: None,
    };
    let queued = service.publish(&caller, events).await.expect("publish");
    assert_eq!(queued.len(), 4, "2 events x 2 webhooks");
    let records = world
        .queues
        .receive_exactly(4, Duration::from_secs(10))
        .await;
    let response = world.invoke(records).await;
    assert!(failures(&response).is_empty(), "{response:?}");

    // THEN every delivery verifies with the guide's Node.js check (over the re-serialized body),
    // its Python check (over the raw body) and the Standard Webhooks library
    let mut deliveries = Vec::new();
    for (path, w) in &webhooks {
        let got = world.receiver.at(path);
        assert_eq!(got.len(), 2, "{path}");
        for r in got {
            deliveries.push(serde_json::json!({
                "body": r.body_text(),
                "signature": r.header("x-webhook-signature").unwrap(),
                "secret": w.secret.expose(),
                "headers": {
                    "webhook-id": r.header("webhook-id").unwrap(),
                    "webhook-timestamp": r.header("webhook-timestamp").unwrap(),
                    "webhook-signature": r.header("webhook-signature").unwrap(),
                },
            }));
        }
    }
    let file = std::env::temp_dir().join(format!(
        "webhooks-it-deliveries-{}-{}.json",
        std::process::id(),
        world.bucket
    ));
    std::fs::write(&file, serde_json::to_vec(&deliveries).unwrap()).expect("write deliveries");
    let verify = workspace().join("tests/verify");

    let node = run(Command::new("node")
        .arg(verify.join("guide_check.js"))
        .arg(&file));
    let node: Vec<bool> = serde_json::from_str(node.trim()).expect("node prints a JSON array");
    assert_eq!(node, vec![true; 4], "node: {node:?}");

    let py = run(Command::new(python())
        .arg(verify.join("guide_check.py"))
        .arg(&file));
    let py: Vec<[bool; 2]> = serde_json::from_str(py.trim()).expect("python prints a JSON array");
    assert_eq!(
        py,
        vec![[true, true]; 4],
        "python [guide, standard webhooks]: {py:?}"
    );
    std::fs::remove_file(&file).ok();
}
