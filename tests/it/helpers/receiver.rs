//! Webhook receivers on 127.0.0.1 for the delivery tests: a real HTTP server (axum, port 0) that
//! records every request (raw body and headers) and answers by path, and a listener that
//! accepts connections and closes them without answering.
//!
//! | path | answer |
//! |---|---|
//! | `/ok` | 200 `{"received":true}` |
//! | `/fail` | 500 |
//! | `/gone` | 410 |
//! | `/hang` | nothing for 60 s (longer than any sender timeout of the tests), then 200 |
//! | anything else | 200 |

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use tokio::net::TcpListener;

/// One request as the receiver got it.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    /// Lowercase names, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The raw body, byte for byte.
    pub body: Bytes,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn body_text(&self) -> &str {
        std::str::from_utf8(&self.body).expect("a UTF-8 body")
    }
}

#[derive(Debug, Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    /// Starts a receiver on a free port of 127.0.0.1 (it lives as long as the test's runtime).
    pub async fn start() -> Self {
        let received = Arc::new(Mutex::new(Vec::new()));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let app = Router::new().fallback(answer).with_state(received.clone());
        tokio::spawn(async move {
            axum::serve(listener, app).await.expect("receiver serves");
        });
        Self { addr, received }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Requests received on `path`, oldest first.
    pub fn at(&self, path: &str) -> Vec<Received> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }
}

async fn answer(
    State(received): State<Arc<Mutex<Vec<Received>>>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, &'static str) {
    let path = uri.path().to_owned();
    let marker: &[u8] = br#""fail":true"#;
    let fail_marked = body.windows(marker.len()).any(|w| w == marker);
    received.lock().unwrap().push(Received {
        path: path.clone(),
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    v.to_str().unwrap_or_default().to_owned(),
                )
            })
            .collect(),
        body,
    });
    match path.as_str() {
        "/fail" => (StatusCode::INTERNAL_SERVER_ERROR, "boom"),
        // Fails the deliveries whose data says `"fail":true`, answers 200 to the others.
        "/mixed" if fail_marked => (StatusCode::INTERNAL_SERVER_ERROR, "marked to fail"),
        "/gone" => (StatusCode::GONE, "this endpoint is gone"),
        "/hang" => {
            tokio::time::sleep(Duration::from_secs(60)).await;
            (StatusCode::OK, "too late")
        }
        _ => (StatusCode::OK, r#"{"received":true}"#),
    }
}

/// A URL whose server accepts each connection and closes it at once, never answering.
pub async fn closing_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            drop(socket);
        }
    });
    format!("http://{addr}/closed")
}
