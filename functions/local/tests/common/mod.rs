//! Shared by the local mode's end-to-end tests: start the real binary, talk to it, and a
//! `TestReceiver` (axum on 127.0.0.1:0) that records every request and answers per path.
#![allow(dead_code)] // each test binary uses a different part

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

pub const BIN: &str = env!("CARGO_BIN_EXE_dakkio-webhooks");

/// The local mode, running.
pub struct Local {
    pub child: Child,
    pub base: String,
    pub token: String,
    pub banner: String,
    pub data_dir: PathBuf,
}

impl Local {
    pub fn start(data_dir: &Path, extra: &[&str]) -> Local {
        Self::start_logging(data_dir, extra, "error", Stdio::inherit())
    }

    /// [`start`](Self::start) with `RUST_LOG=rust_log` and the log (stderr) sent to `log`.
    pub fn start_logging(data_dir: &Path, extra: &[&str], rust_log: &str, log: Stdio) -> Local {
        let mut child = Command::new(BIN)
            .arg("--data-dir")
            .arg(data_dir)
            .args(["serve", "--addr", "127.0.0.1:0"])
            .args(extra)
            .env_remove("JWT_SECRET")
            .env("RUST_LOG", rust_log)
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawn dakkio-webhooks");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut banner = String::new();
        loop {
            let line = rx
                .recv_timeout(Duration::from_secs(30))
                .expect("local mode did not print `ready` within 30 s");
            banner.push_str(&line);
            banner.push('\n');
            if line == "ready" {
                break;
            }
        }
        let base = banner
            .lines()
            .find_map(|l| l.split("listening on ").nth(1))
            .expect("address line")
            .trim()
            .to_owned();
        let token = banner
            .lines()
            .find_map(|l| l.trim().strip_prefix("export TOKEN="))
            .expect("token line")
            .to_owned();
        Local {
            child,
            base,
            token,
            banner,
            data_dir: data_dir.to_owned(),
        }
    }

    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// SIGTERM, and the process must exit cleanly.
    pub fn stop(mut self) {
        self.signal("-TERM");
        let exit = self.child.wait().expect("wait");
        assert!(
            exit.success(),
            "local mode exited with {exit} after SIGTERM"
        );
    }

    /// SIGKILL: a crash, nothing gets to clean up.
    pub fn crash(mut self) {
        self.signal("-KILL");
        self.child.wait().expect("wait");
    }

    pub fn mint(&self, sub: &str, scope: Option<&str>) -> String {
        mint(&self.data_dir, sub, scope)
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.child.kill().ok();
            self.child.wait().ok();
        }
    }
}

pub fn mint(data_dir: &Path, sub: &str, scope: Option<&str>) -> String {
    let mut cmd = Command::new(BIN);
    cmd.arg("--data-dir")
        .arg(data_dir)
        .args(["token", "--sub", sub])
        .env_remove("JWT_SECRET");
    if let Some(s) = scope {
        cmd.args(["--scope", s]);
    }
    let out = cmd.output().expect("token command");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_owned()
}

/// A small JSON client for the API.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub client: reqwest::Client,
}

impl Api {
    pub fn new(base: &str) -> Self {
        Self {
            base: base.to_owned(),
            client: reqwest::Client::new(),
        }
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.expect("API request");
        let status = res.status().as_u16();
        let text = res.text().await.expect("body");
        (
            status,
            if text.is_empty() {
                Value::Null
            } else {
                serde_json::from_str(&text).expect("JSON")
            },
        )
    }

    pub async fn create(&self, token: &str, body: Value) -> String {
        let (s, w) = self
            .call(reqwest::Method::POST, "/api/webhooks", token, Some(body))
            .await;
        assert_eq!(s, 201, "{w}");
        w["id"].as_str().expect("id").to_owned()
    }

    pub async fn webhook(&self, token: &str, id: &str) -> Value {
        let (s, w) = self
            .call(
                reqwest::Method::GET,
                &format!("/api/webhooks/{id}"),
                token,
                None,
            )
            .await;
        assert_eq!(s, 200, "{w}");
        w
    }
}

/// One request a receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: String,
    pub at: Instant,
}

/// How a path answers its n-th request (0-based).
pub type Behaviour = Arc<dyn Fn(usize) -> Response + Send + Sync>;

#[derive(Clone, Default)]
pub struct TestReceiver {
    pub received: Arc<Mutex<Vec<Received>>>,
    behaviours: Arc<Mutex<HashMap<String, Behaviour>>>,
    delays: Arc<Mutex<HashMap<String, Delay>>>,
}

/// How long a path waits before answering its n-th request.
pub type Delay = Arc<dyn Fn(usize) -> Duration + Send + Sync>;

impl TestReceiver {
    /// Starts on 127.0.0.1:0; returns it and its base URL.
    pub async fn start() -> (TestReceiver, String) {
        let rx = TestReceiver::default();
        let app = Router::new().fallback(handle).with_state(rx.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await.expect("receiver") });
        (rx, format!("http://{addr}"))
    }

    pub fn on(&self, path: &str, f: impl Fn(usize) -> Response + Send + Sync + 'static) {
        self.behaviours
            .lock()
            .expect("lock")
            .insert(path.to_owned(), Arc::new(f));
    }

    /// Makes `path` wait `f(n)` before answering its n-th request (without blocking others).
    pub fn delay(&self, path: &str, f: impl Fn(usize) -> Duration + Send + Sync + 'static) {
        self.delays
            .lock()
            .expect("lock")
            .insert(path.to_owned(), Arc::new(f));
    }

    pub fn at(&self, path: &str) -> Vec<Received> {
        self.received
            .lock()
            .expect("lock")
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    pub fn all(&self) -> Vec<Received> {
        self.received.lock().expect("lock").clone()
    }
}

async fn handle(
    State(rx): State<TestReceiver>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let headers = headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                v.to_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let n = {
        let mut all = rx.received.lock().expect("lock");
        let n = all.iter().filter(|r| r.path == path).count();
        all.push(Received {
            path: path.clone(),
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
            at: Instant::now(),
        });
        n
    };
    let delay = rx.delays.lock().expect("lock").get(&path).map(|d| d(n));
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    let behaviour = rx.behaviours.lock().expect("lock").get(&path).cloned();
    match behaviour {
        Some(f) => f(n),
        None => (StatusCode::OK, "ok").into_response(),
    }
}

pub fn status(code: u16) -> Response {
    (StatusCode::from_u16(code).expect("status"), "").into_response()
}

pub fn status_with_retry_after(code: u16, secs: u64) -> Response {
    (
        StatusCode::from_u16(code).expect("status"),
        [(header::RETRY_AFTER, secs.to_string())],
        "busy",
    )
        .into_response()
}

/// Polls `f` every 50 ms until it returns Some, or panics after `limit`.
pub async fn eventually<T>(
    limit: Duration,
    what: &str,
    mut f: impl AsyncFnMut() -> Option<T>,
) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The workspace root (for tests/verify and .venv).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("root")
}

/// Runs the guide's Node.js and Python checks and the Standard Webhooks library on deliveries;
/// returns, per delivery, [node guide, python guide, python standardwebhooks].
pub fn verify_with_node_and_python(received: &[Received], secret: &str) -> Vec<[bool; 3]> {
    let items: Vec<Value> = received
        .iter()
        .map(|r| {
            json!({
                "body": r.body,
                "signature": r.headers.get("x-webhook-signature").cloned().unwrap_or_default(),
                "secret": secret,
                "headers": {
                    "webhook-id": r.headers.get("webhook-id"),
                    "webhook-timestamp": r.headers.get("webhook-timestamp"),
                    "webhook-signature": r.headers.get("webhook-signature"),
                }
            })
        })
        .collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("deliveries.json");
    std::fs::write(&file, serde_json::to_vec(&items).expect("json")).expect("write");
    let verify = root().join("tests/verify");
    let node = Command::new("node")
        .arg(verify.join("guide_check.js"))
        .arg(&file)
        .output()
        .expect("run node (is Node.js installed?)");
    assert!(
        node.status.success(),
        "node: {}",
        String::from_utf8_lossy(&node.stderr)
    );
    let python_bin = root().join(".venv/bin/python");
    assert!(
        python_bin.exists(),
        "{} missing: run ./infra/test.sh (or ./infra/setup-venv.sh)",
        python_bin.display()
    );
    let py = Command::new(python_bin)
        .arg(verify.join("guide_check.py"))
        .arg(&file)
        .output()
        .expect("run python");
    assert!(
        py.status.success(),
        "python: {}",
        String::from_utf8_lossy(&py.stderr)
    );
    let node: Vec<bool> = serde_json::from_slice(&node.stdout).expect("node output");
    let py: Vec<[bool; 2]> = serde_json::from_slice(&py.stdout).expect("python output");
    node.into_iter()
        .zip(py)
        .map(|(n, [p, s])| [n, p, s])
        .collect()
}
