//! The local binary end to end: started as a user starts it (a real process on a free port, a
//! real SQLite file), driven with the real `curl` exactly as the guide writes it, stopped with
//! SIGTERM and started again on the same data directory.

mod common;

use std::process::Command;

use common::Local;
use serde_json::{Value, json};

/// Runs curl; returns (status, JSON body or Null).
fn curl(args: &[&str]) -> (u16, Value) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("run curl");
    assert!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let (body, code) = text.rsplit_once('\n').expect("status line");
    let body = if body.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(body).expect("JSON body")
    };
    (code.parse().expect("status code"), body)
}

#[test]
fn the_guides_curl_works_against_the_local_mode_and_data_survives_a_restart() {
    // GIVEN the local mode on a fresh data directory
    let dir = tempfile::tempdir().expect("tempdir");
    let local = Local::start(dir.path(), &[]);
    assert!(
        local.banner.contains("curl -X POST"),
        "banner shows the first curl:\n{}",
        local.banner
    );
    assert!(
        local.banner.contains("token --sub"),
        "banner shows how to mint tokens"
    );

    // WHEN the guide's "Via API" curl is run with the printed token
    let auth = format!("Authorization: Bearer {}", local.token);
    let url = format!("{}/api/webhooks", local.base);
    let (status, created) = curl(&[
        "-X",
        "POST",
        &url,
        "-H",
        &auth,
        "-H",
        "Content-Type: application/json",
        "-d",
        r#"{
"bucketId": "507f1f77bcf86cd799439011",
"url": "https://your-server.com/webhook",
"events": ["alert.triggered", "data.received"],
"secret": "your_webhook_secret"
}"#,
    ]);

    // THEN 201 with the webhook, and GET shows it with zeroed stats and no secret
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["secret"], "your_webhook_secret");
    let id = created["id"].as_str().expect("id").to_owned();
    let one = format!("{url}/{id}");
    let (status, got) = curl(&[&one, "-H", &auth]);
    assert_eq!(status, 200);
    assert_eq!(
        got["stats"],
        json!({"totalDeliveries": 0, "successfulDeliveries": 0, "failedDeliveries": 0})
    );
    assert_eq!(got["lastDeliveryStatus"], Value::Null);
    assert!(got.get("secret").is_none());

    // AND a local receiver on plain http://127.0.0.1 is accepted in the local mode
    let (status, body) = curl(&[
        "-X",
        "POST",
        &url,
        "-H",
        &auth,
        "-H",
        "Content-Type: application/json",
        "-d",
        r#"{"bucketId": "507f1f77bcf86cd799439011", "url": "http://127.0.0.1:3000/webhook", "events": ["bucket.updated"]}"#,
    ]);
    assert_eq!(status, 201, "{body}");

    // AND another user, with a token from the `token` command, cannot see it
    let alice = format!(
        "Authorization: Bearer {}",
        common::mint(dir.path(), "alice", None)
    );
    assert_eq!(curl(&[&one, "-H", &alice]).0, 404);
    assert_eq!(curl(&[&url, "-H", &alice]).1["data"], json!([]));

    // WHEN the process is stopped and started again on the same data directory
    local.stop();
    let again = Local::start(dir.path(), &[]);

    // THEN the webhooks are still there and the old token still works
    let auth_again = auth.clone();
    let one_again = format!("{}/api/webhooks/{id}", again.base);
    let (status, got) = curl(&[&one_again, "-H", &auth_again]);
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["url"], "https://your-server.com/webhook");
    let (_, list) = curl(&[&format!("{}/api/webhooks", again.base), "-H", &auth_again]);
    assert_eq!(list["data"].as_array().map(Vec::len), Some(2));

    // AND bad input over a real socket gets the API's error format
    let (status, err) = curl(&[
        "-X",
        "POST",
        &format!("{}/api/webhooks", again.base),
        "-H",
        &auth_again,
        "-H",
        "Content-Type: application/json",
        "-d",
        "{not json",
    ]);
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (400, Some("malformed_json"))
    );
    again.stop();
}
