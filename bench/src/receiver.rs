//! The receiver: a plain hyper HTTP/1.1 server on 127.0.0.1 (keep-alive, on the bench's
//! multi-threaded runtime) that verifies every delivery's signatures and records its arrival.
//!
//! Paths: `/h/{i}` answers 200, `/f/{i}` answers 500 (a failing receiver), `/r/{i}` answers 400
//! (a receiver that rejects every delivery: retried like a 500, but the circuit breaker stays
//! closed — the receiver is up — so every delivery gets all its attempts), `/hang/{i}` answers
//! 200 only after [`Receiver::with_hang`]'s time (a hanging receiver: the noisy neighbour); `i`
//! is the webhook's index, which gives its secret. Every request, on any path, is checked:
//! - `X-Webhook-Signature` (the guide's `sha256=` HMAC of the raw body with the secret string),
//! - `webhook-signature` (Standard Webhooks, over `{webhook-id}.{webhook-timestamp}.{body}`),
//! - `X-Webhook-Id` = `webhook-id` = the body's `deliveryId`,
//!
//! all with the core's constant-time verifiers. A request that fails any check is counted
//! (`signature_failures`) and still answered as its path says, so the run's accounting holds.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Result;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use webhooks_core::signing::{verify_guide_signature, verify_standard_webhooks};
use webhooks_core::webhook::Secret;

/// Nanoseconds since the bench started, shared by the publisher (`data.sentAtNanos`) and the
/// receiver (arrival), both in this process.
#[derive(Debug, Clone, Copy)]
pub struct BenchClock(Instant);

impl Default for BenchClock {
    fn default() -> Self {
        Self::new()
    }
}

impl BenchClock {
    pub fn new() -> Self {
        Self(Instant::now())
    }

    pub fn now_ns(&self) -> u64 {
        self.0.elapsed().as_nanos() as u64
    }
}

/// What the receiver saw; reset between runs.
#[derive(Debug, Default)]
struct Seen {
    /// deliveryId (12 bytes) → first arrival (ns), successful path only.
    first_arrival: HashMap<[u8; 12], u64>,
    /// publish → first arrival of each successful delivery (ns).
    latencies_ns: Vec<u64>,
    /// deliveryId → attempts seen, failing path only.
    failing_attempts: HashMap<[u8; 12], u32>,
}

#[derive(Debug)]
pub struct Receiver {
    clock: BenchClock,
    secrets: Vec<Secret>,
    seen: Mutex<Seen>,
    /// Requests answered (both paths, duplicates included).
    pub requests: AtomicU64,
    /// Distinct deliveries that arrived on a successful path.
    pub delivered: AtomicU64,
    /// Repeated arrivals of a delivery already received on a successful path.
    pub duplicates: AtomicU64,
    /// Requests on a failing path (`/f/` or `/r/`).
    pub failing_requests: AtomicU64,
    /// Requests whose signatures or ids did not verify.
    pub signature_failures: AtomicU64,
    /// Requests without a readable `data.sentAtNanos` (the ceiling's have 0: no latency).
    pub unstamped: AtomicU64,
    /// Requests on a hanging path (`/hang/{i}`).
    pub hanging_requests: AtomicU64,
    /// How long a hanging path waits before answering.
    hang: Duration,
    last_ns: AtomicU64,
}

/// A snapshot of the receiver after a run.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub delivered: u64,
    pub duplicates: u64,
    pub failing_requests: u64,
    pub failing_deliveries: u64,
    pub signature_failures: u64,
    pub last_arrival_ns: Option<u64>,
    /// Sorted.
    pub latencies_ns: Vec<u64>,
}

impl Receiver {
    pub fn new(clock: BenchClock, secrets: Vec<Secret>) -> Self {
        Self {
            clock,
            secrets,
            seen: Mutex::default(),
            requests: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            failing_requests: AtomicU64::new(0),
            signature_failures: AtomicU64::new(0),
            unstamped: AtomicU64::new(0),
            hanging_requests: AtomicU64::new(0),
            hang: Duration::from_secs(30),
            last_ns: AtomicU64::new(0),
        }
    }

    /// The same receiver, its `/hang/{i}` paths answering after `hang` (default 30 s).
    pub fn with_hang(mut self, hang: Duration) -> Self {
        self.hang = hang;
        self
    }

    fn seen(&self) -> MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Forgets everything (between a service run and its ceiling run).
    pub fn reset(&self) {
        *self.seen() = Seen::default();
        for c in [
            &self.requests,
            &self.delivered,
            &self.duplicates,
            &self.failing_requests,
            &self.signature_failures,
            &self.unstamped,
            &self.hanging_requests,
            &self.last_ns,
        ] {
            c.store(0, Ordering::SeqCst);
        }
    }

    pub fn report(&self) -> Report {
        let seen = self.seen();
        let mut latencies_ns = seen.latencies_ns.clone();
        latencies_ns.sort_unstable();
        let last = self.last_ns.load(Ordering::SeqCst);
        Report {
            delivered: self.delivered.load(Ordering::SeqCst),
            duplicates: self.duplicates.load(Ordering::SeqCst),
            failing_requests: self.failing_requests.load(Ordering::SeqCst),
            failing_deliveries: seen.failing_attempts.len() as u64,
            signature_failures: self.signature_failures.load(Ordering::SeqCst),
            last_arrival_ns: (last != 0).then_some(last),
            latencies_ns,
        }
    }

    /// Binds 127.0.0.1:0 and serves until the process ends.
    pub async fn start(self: &Arc<Self>) -> Result<SocketAddr> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let me = me.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let me = me.clone();
                        async move { Ok::<_, Infallible>(me.handle(req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .keep_alive(true)
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(addr)
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let (parts, body) = req.into_parts();
        let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else {
            return answer(StatusCode::BAD_REQUEST);
        };
        let arrived = self.clock.now_ns();
        self.requests.fetch_add(1, Ordering::Relaxed);
        let path = parts.uri.path();
        let hanging = path.strip_prefix("/hang/");
        let (failing, index) = match (path.get(..3).zip(path.get(3..)), hanging) {
            (Some(("/h/", i)), _) => (None, i.parse::<usize>().ok()),
            (Some(("/f/", i)), _) => (Some(StatusCode::INTERNAL_SERVER_ERROR), i.parse().ok()),
            (Some(("/r/", i)), _) => (Some(StatusCode::BAD_REQUEST), i.parse().ok()),
            (_, Some(i)) => (None, i.parse::<usize>().ok()),
            _ => (None, None),
        };
        let Some(secret) = index.and_then(|i| self.secrets.get(i)) else {
            return answer(StatusCode::NOT_FOUND);
        };
        let header = |name: &str| {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
        };
        let id = header("x-webhook-id");
        let key = delivery_key(id);
        let verified = key.is_some()
            && header("webhook-id") == id
            && body_delivery_id(&body) == Some(id.as_bytes())
            && verify_guide_signature(secret, &body, header("x-webhook-signature"))
            && header("webhook-timestamp").parse::<i64>().is_ok_and(|ts| {
                verify_standard_webhooks(secret, id, ts, &body, header("webhook-signature"))
            });
        if !verified {
            self.signature_failures.fetch_add(1, Ordering::Relaxed);
        }
        let Some(key) = key else {
            return answer(StatusCode::BAD_REQUEST);
        };
        if hanging.is_some() {
            self.hanging_requests.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(self.hang).await;
            return answer(StatusCode::OK);
        }
        if let Some(status) = failing {
            self.failing_requests.fetch_add(1, Ordering::Relaxed);
            *self.seen().failing_attempts.entry(key).or_insert(0) += 1;
            return answer(status);
        }
        let sent = sent_at_nanos(&body).filter(|s| *s > 0);
        let first = {
            let mut seen = self.seen();
            let first = !seen.first_arrival.contains_key(&key);
            if first {
                seen.first_arrival.insert(key, arrived);
                if let Some(sent) = sent {
                    seen.latencies_ns.push(arrived.saturating_sub(sent));
                }
            }
            first
        };
        if first {
            self.delivered.fetch_add(1, Ordering::Relaxed);
            self.last_ns.fetch_max(arrived, Ordering::Relaxed);
            if sent.is_none() {
                self.unstamped.fetch_add(1, Ordering::Relaxed);
            }
        } else {
            self.duplicates.fetch_add(1, Ordering::Relaxed);
        }
        answer(StatusCode::OK)
    }
}

fn answer(status: StatusCode) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::new()));
    *res.status_mut() = status;
    res
}

/// The 24-hex deliveryId as 12 bytes.
fn delivery_key(id: &str) -> Option<[u8; 12]> {
    let b = id.as_bytes();
    if b.len() != 24 {
        return None;
    }
    let mut key = [0u8; 12];
    for (i, k) in key.iter_mut().enumerate() {
        *k = (hex_digit(b[2 * i])? << 4) | hex_digit(b[2 * i + 1])?;
    }
    Some(key)
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The envelope's `"deliveryId":"…"` (it comes before `data`, so the first match is it).
fn body_delivery_id(body: &[u8]) -> Option<&[u8]> {
    const KEY: &[u8] = b"\"deliveryId\":\"";
    let start = find(body, KEY)? + KEY.len();
    body.get(start..start + 24)
}

/// `data.sentAtNanos`, the first key the bench puts in `data`.
fn sent_at_nanos(body: &[u8]) -> Option<u64> {
    const KEY: &[u8] = b"\"sentAtNanos\":";
    let start = find(body, KEY)? + KEY.len();
    let digits = body[start..].iter().take_while(|b| b.is_ascii_digit());
    let mut n: u64 = 0;
    let mut any = false;
    for d in digits {
        n = n.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
        any = true;
    }
    any.then_some(n)
}
