//! The local mode at the door: the development token only for a loopback `Host` of the same
//! origin, a slowloris connection closed within the header timeout, a private data directory,
//! and `serve --strict` applying the production target and token rules.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use reqwest::Method;
use serde_json::json;

const BUCKET: &str = "507f1f77bcf86cd799439011";

/// One raw HTTP/1.1 request (so `Host` and `Origin` are exactly what a browser could send);
/// returns the status line's code and the whole answer.
fn raw_get(base: &str, path: &str, host: &str, origin: Option<&str>) -> (u16, String) {
    let addr = base.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let origin = origin
        .map(|o| format!("Origin: {o}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\n{origin}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let code = answer
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, answer)
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn the_dev_token_goes_only_to_a_loopback_host_of_the_same_origin_and_is_not_cached() {
    // GIVEN the local mode on 127.0.0.1
    let dir = tempfile::tempdir().unwrap();
    let local = Local::start(dir.path(), &[]);
    let port = local.base.rsplit(':').next().unwrap().to_owned();
    // WHEN the dashboard of this server asks (Host 127.0.0.1, localhost or [::1], same origin)
    for (host, origin) in [
        (format!("127.0.0.1:{port}"), None),
        (
            format!("localhost:{port}"),
            Some(format!("http://localhost:{port}")),
        ),
        (format!("[::1]:{port}"), None),
    ] {
        let (code, answer) = raw_get(
            &local.base,
            "/dashboard/dev-token",
            &host,
            origin.as_deref(),
        );
        // THEN it gets the token, marked no-store
        assert_eq!(code, 200, "{host}: {answer}");
        assert!(answer.contains(&local.token), "{host}");
        assert!(
            answer
                .to_ascii_lowercase()
                .contains("cache-control: no-store"),
            "{answer}"
        );
    }
    // WHEN a page whose name was rebound to 127.0.0.1 asks (its own name as Host), or a foreign
    // page asks with its Origin
    for (host, origin) in [
        (format!("attacker.example:{port}"), None),
        (
            format!("attacker.example:{port}"),
            Some(format!("http://attacker.example:{port}")),
        ),
        (format!("127.0.0.1.nip.io:{port}"), None),
        (
            format!("localhost:{port}"),
            Some("http://attacker.example".to_owned()),
        ),
        (format!("localhost:{port}"), Some("null".to_owned())),
    ] {
        let (code, answer) = raw_get(
            &local.base,
            "/dashboard/dev-token",
            &host,
            origin.as_deref(),
        );
        // THEN no token, and no-store still
        assert_eq!(code, 403, "{host} {origin:?}: {answer}");
        assert!(!answer.contains(&local.token), "{host} {origin:?}");
        assert!(answer.contains("dev_token_refused"), "{answer}");
        assert!(
            answer
                .to_ascii_lowercase()
                .contains("cache-control: no-store")
        );
    }
    local.stop();
}

#[test]
fn a_slowloris_connection_is_closed_within_the_header_timeout() {
    // GIVEN the local mode
    let dir = tempfile::tempdir().unwrap();
    let local = Local::start(dir.path(), &[]);
    let addr = local.base.trim_start_matches("http://").to_owned();
    // WHEN a client sends half a request's headers and then nothing
    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let started = Instant::now();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: 1")
        .unwrap();
    // THEN the server closes the connection within the header timeout (10 s) plus a margin
    let mut buf = [0u8; 512];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {} // a 408 answer before the close is fine
        }
        assert!(started.elapsed() < Duration::from_secs(20), "still open");
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(9) && took < Duration::from_secs(15),
        "closed after {took:?}"
    );
    // AND the server still answers others
    let (code, _) = raw_get(&local.base, "/health", "127.0.0.1", None);
    assert_eq!(code, 200);
    local.stop();
}

#[test]
fn the_data_directory_is_private_and_an_existing_one_is_fixed() {
    // GIVEN a data directory and files left world-readable by an older version
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("data");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(dir.join("webhooks.db"), b"").unwrap();
    std::fs::set_permissions(
        dir.join("webhooks.db"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    // WHEN the local mode starts and writes (a webhook: WAL files appear)
    let local = Local::start(&dir, &[]);
    let api = Api::new(&local.base);
    rt().block_on(api.create(
        &local.token,
        json!({"bucketId": BUCKET, "url": "http://127.0.0.1:9/x", "events": ["alert.triggered"]}),
    ));
    // THEN the directory is 0700 and every file in it 0600
    assert_eq!(mode(&dir), 0o700);
    let mut files = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let p = entry.unwrap().path();
        assert_eq!(mode(&p), 0o600, "{}", p.display());
        files += 1;
    }
    assert!(files >= 2, "webhooks.db and jwt-secret at least");
    local.stop();

    // AND a fresh directory is created private
    let fresh = parent.path().join("fresh");
    let local = Local::start(&fresh, &[]);
    assert_eq!(mode(&fresh), 0o700);
    assert_eq!(mode(&fresh.join("webhooks.db")), 0o600);
    assert_eq!(mode(&fresh.join("jwt-secret")), 0o600);
    local.stop();
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn mint_for_bucket(data_dir: &Path, sub: &str, bucket: &str) -> String {
    let out = Command::new(BIN)
        .arg("--data-dir")
        .arg(data_dir)
        .args(["token", "--sub", sub, "--bucket", bucket])
        .env_remove("JWT_SECRET")
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_mode_applies_the_production_target_and_token_rules() {
    // GIVEN `serve --strict`, whose banner offers a bucket-scoped token instead of a dev token
    let dir = tempfile::tempdir().unwrap();
    let local = Local::start(dir.path(), &["--strict"]);
    assert!(local.banner.contains("strict:"), "{}", local.banner);
    let api = Api::new(&local.base);
    let token = mint_for_bucket(dir.path(), "alice", BUCKET);
    // WHEN webhooks are created for loopback, private, link-local and encoded targets, or http
    for url in [
        "http://example.com/hook",
        "http://127.0.0.1:9/hook",
        "https://127.0.0.1/hook",
        "https://localhost/hook",
        "https://10.0.0.1/hook",
        "https://192.168.1.10/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/hook",
        "https://[fe80::1]/hook",
        "https://[::ffff:127.0.0.1]/hook",
        "https://2130706433/hook",
        "https://0x7f.1/hook",
        "https://017700000001/hook",
        "https://[64:ff9b:1::a00:1]/hook",
    ] {
        let (status, body) = api
            .call(
                Method::POST,
                "/api/webhooks",
                &token,
                Some(json!({"bucketId": BUCKET, "url": url, "events": ["alert.triggered"]})),
            )
            .await;
        // THEN each is refused
        assert_eq!(status, 400, "{url}: {body}");
        assert_eq!(body["error"]["code"], "invalid_url", "{url}");
    }
    // AND a public https target is accepted
    let (status, body) = api
        .call(
            Method::POST,
            "/api/webhooks",
            &token,
            Some(json!({"bucketId": BUCKET, "url": "https://receiver.example.com/hook", "events": ["alert.triggered"]})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    // AND a token without `buckets` may use no bucket
    let unscoped = local.mint("alice", None);
    let (status, body) = api
        .call(
            Method::POST,
            "/api/webhooks",
            &unscoped,
            Some(json!({"bucketId": BUCKET, "url": "https://receiver.example.com/hook", "events": ["alert.triggered"]})),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "bucket_forbidden");
    let (status, list) = api
        .call(Method::GET, "/api/webhooks", &unscoped, None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(list["data"], json!([]));
    // AND there is no development token
    let (code, _) = raw_get(&local.base, "/dashboard/dev-token", "127.0.0.1", None);
    assert_eq!(code, 404);
    local.stop();
}
