//! `dakkio-webhooks listen` end to end with the local mode: real deliveries verified and
//! printed, a tampered signature reported, and `--forward-to` passing bodies through unchanged.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use reqwest::Method;
use serde_json::json;

const BUCKET: &str = "507f1f77bcf86cd799439011";

struct Listen {
    child: Child,
    url: String,
    lines: mpsc::Receiver<String>,
}

impl Listen {
    fn start(args: &[&str]) -> Listen {
        let mut child = Command::new(BIN)
            .args(["listen", "--port", "0"])
            .args(args)
            .env_remove("WEBHOOK_SECRET")
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn listen");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut url = String::new();
        loop {
            let line = lines
                .recv_timeout(Duration::from_secs(20))
                .expect("listen did not start");
            if let Some(rest) = line.strip_prefix("listening on ") {
                url = rest
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_owned();
            }
            if line == "ready" {
                break;
            }
        }
        Listen { child, url, lines }
    }

    /// The next printed line that mentions `needle`.
    fn line_with(&self, needle: &str) -> String {
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(20))
                .unwrap_or_else(|_| panic!("no line with {needle:?}"));
            if line.contains(needle) {
                return line;
            }
        }
    }
}

impl Drop for Listen {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_verifies_real_deliveries_and_reports_tampered_ones() {
    // GIVEN the local mode and `listen` with the webhook's secret
    let dir = tempfile::tempdir().unwrap();
    let local = Local::start(dir.path(), &[]);
    let api = Api::new(&local.base);
    let listen = Listen::start(&["--secret", "your_webhook_secret"]);
    let id = api
        .create(&local.token, json!({"bucketId": BUCKET, "url": format!("{}/webhook", listen.url), "events": ["alert.triggered"], "secret": "your_webhook_secret"}))
        .await;

    // WHEN an alert is published
    let producer = local.mint("ingest", Some("events:publish"));
    let (s, _) = api
        .call(Method::POST, "/api/events", &producer, Some(json!({"bucketId": BUCKET, "event": "alert.triggered", "data": {"alertName": "High Temperature Warning", "currentValue": 31.5}})))
        .await;
    assert_eq!(s, 202);

    // THEN listen prints it, verified, with its summary
    let line = listen.line_with("alert.triggered");
    assert!(
        line.contains("verified (sha256, v1)") && !line.contains("NOT"),
        "{line}"
    );
    assert!(
        line.contains(&format!("webhook {id}")) && line.contains("attempt 1"),
        "{line}"
    );
    assert!(
        line.contains(r#"alertName="High Temperature Warning" currentValue=31.5"#),
        "{line}"
    );

    // WHEN a request arrives with a tampered signature
    let res = reqwest::Client::new()
        .post(format!("{}/webhook", listen.url))
        .header("content-type", "application/json")
        .header("x-webhook-signature", "sha256=test")
        .header("x-webhook-event", "alert.triggered")
        .body(r#"{"event":"alert.triggered","timestamp":"2024-01-15T10:30:00Z","data":{"alertName":"Test Alert","currentValue":35,"threshold":30}}"#)
        .send()
        .await
        .unwrap();
    // THEN it is refused with 401 and reported as not verified
    assert_eq!(res.status(), 401);
    let line = listen.line_with("Test Alert");
    assert!(line.contains("NOT verified"), "{line}");
    local.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_refuses_unverified_requests_without_forwarding_and_escapes_what_it_prints() {
    // GIVEN listen with a secret, forwarding to a receiver
    let (rx, base) = TestReceiver::start().await;
    rx.on("/app", |_| status(200));
    let listen = Listen::start(&[
        "--secret",
        "your_webhook_secret",
        "--forward-to",
        &format!("{base}/app"),
    ]);
    // WHEN a forged request carries terminal escape sequences in its event and data
    let res = reqwest::Client::new()
        .post(format!("{}/webhook", listen.url))
        .header("content-type", "application/json")
        .header("x-webhook-signature", "sha256=forged")
        .body(
            json!({"event": "alert\u{1b}]0;pwned\u{7}", "webhookId": "w\u{1b}[2J", "data": {"k\u{1b}[31m": "v\u{1b}[0m"}})
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    // THEN it gets 401, is not forwarded, and the printed line holds no raw control character
    assert_eq!(res.status(), 401);
    let line = listen.line_with("pwned");
    assert!(!line.chars().any(char::is_control), "{line:?}");
    assert!(
        line.contains(r"\u{1b}]0;pwned\u{7}") && line.contains("NOT verified"),
        "{line}"
    );
    assert!(line.contains(r"\u{1b}[31m"), "data keys escaped: {line}");
    assert!(listen.line_with("refused").contains("401"));
    // (a forward would have happened before the answer)
    assert!(rx.at("/app").is_empty(), "forwarded a forged request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_forwards_bodies_byte_for_byte_and_answers_with_the_targets_status() {
    let dir = tempfile::tempdir().unwrap();
    let local = Local::start(dir.path(), &[]);
    let api = Api::new(&local.base);
    let (rx, base) = TestReceiver::start().await;
    rx.on("/app", |n| status(if n == 0 { 500 } else { 200 }));
    let listen = Listen::start(&[
        "--secret",
        "your_webhook_secret",
        "--forward-to",
        &format!("{base}/app"),
    ]);
    let id = api
        .create(&local.token, json!({"bucketId": BUCKET, "url": format!("{}/in", listen.url), "events": ["data.received"], "secret": "your_webhook_secret"}))
        .await;
    let producer = local.mint("ingest", Some("events:publish"));
    api.call(
        Method::POST,
        "/api/events",
        &producer,
        Some(
            json!({"bucketId": BUCKET, "event": "data.received", "data": {"v": 1.0, "unit": "°C"}}),
        ),
    )
    .await;

    // The forward target's 500 makes the service retry; the second attempt succeeds.
    eventually(
        Duration::from_secs(20),
        "two forwarded attempts",
        async || (rx.at("/app").len() == 2).then_some(()),
    )
    .await;
    let w = eventually(Duration::from_secs(10), "delivery counted", async || {
        let w = api.webhook(&local.token, &id).await;
        (w["stats"]["totalDeliveries"] == 1).then_some(w)
    })
    .await;
    assert_eq!(w["lastDeliveryStatus"], "success");
    let got = rx.at("/app");
    assert!(
        got[0].body.contains(r#""data":{"v":1,"unit":"°C"}"#),
        "{}",
        got[0].body
    );
    assert_eq!(got[0].body, got[1].body);
    let verified = verify_with_node_and_python(&got, "your_webhook_secret");
    assert!(
        verified.iter().all(|r| r == &[true, true, true]),
        "forwarded bodies and headers still verify: {verified:?}"
    );
    assert!(listen.line_with("forwarded").contains("500"));
    local.stop();
}
