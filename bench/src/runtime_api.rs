//! A minimal local Lambda Runtime API (the `2018-06-01` interface a custom runtime polls), standing
//! in for the Lambda service in front of one function process, and that process.
//!
//! Served on 127.0.0.1 with hyper (HTTP/1.1, keep-alive):
//! - `GET /2018-06-01/runtime/invocation/next`: the next queued event, with
//!   `Lambda-Runtime-Aws-Request-Id`, `Lambda-Runtime-Deadline-Ms` (now + 60 s, unix ms),
//!   `Lambda-Runtime-Invoked-Function-Arn` and `Lambda-Runtime-Trace-Id`. With no event queued
//!   the request stays open (as Lambda freezes an idle sandbox) until the process is killed. The
//!   first such request is the end of the function's init.
//! - `POST /2018-06-01/runtime/invocation/{id}/response` and `.../{id}/error`: the invocation's
//!   result (answered 202).
//! - `POST /2018-06-01/runtime/init/error`: the function could not start; the measurement fails
//!   with its body.
//!
//! One server per function process: dropping it aborts every connection it still holds.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};

const PREFIX: &str = "/2018-06-01/runtime/";
/// The deadline each invocation is given (the delivery function's timeout in `template.yaml`).
const INVOCATION_TIMEOUT: Duration = Duration::from_secs(60);

/// What the function answered to one invocation.
#[derive(Debug, Clone)]
pub enum Reply {
    /// `POST …/{id}/response`: the handler's result.
    Response(Bytes),
    /// `POST …/{id}/error`: the handler failed.
    Error(Bytes),
}

impl Reply {
    /// An SQS-triggered `function`'s answer as the event source mapping reads it: the message ids
    /// it reported in `batchItemFailures` (left in the queue; every other record is deleted). An
    /// error reply, or an answer that is not a batch response, is an error.
    pub fn batch_item_failures(self, function: &str) -> Result<std::collections::HashSet<String>> {
        let out = match self {
            Reply::Response(b) => b,
            Reply::Error(b) => bail!(
                "{function} reported an error: {}",
                String::from_utf8_lossy(&b)
            ),
        };
        let v: serde_json::Value = serde_json::from_slice(&out)
            .with_context(|| format!("{function}'s answer is not JSON"))?;
        let failures = v["batchItemFailures"]
            .as_array()
            .with_context(|| format!("no batchItemFailures in {function}'s answer {v}"))?;
        failures
            .iter()
            .map(|f| {
                f["itemIdentifier"]
                    .as_str()
                    .map(str::to_owned)
                    .with_context(|| format!("a batch item failure without itemIdentifier: {f}"))
            })
            .collect()
    }
}

#[derive(Debug)]
struct Invocation {
    id: String,
    event: Bytes,
}

#[derive(Debug)]
struct Shared {
    function_arn: String,
    queue: tokio::sync::Mutex<mpsc::UnboundedReceiver<Invocation>>,
    pending: Mutex<HashMap<String, oneshot::Sender<Reply>>>,
    /// When the first `GET …/invocation/next` arrived.
    first_poll: watch::Sender<Option<Instant>>,
    /// The body of a `POST …/init/error`.
    init_error: watch::Sender<Option<String>>,
    sequence: AtomicU64,
}

/// The runtime API server of one function process; stops when dropped.
#[derive(Debug)]
pub struct RuntimeApi {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    events: mpsc::UnboundedSender<Invocation>,
    server: JoinHandle<()>,
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        // Dropping the accept task drops its JoinSet, which aborts every connection task
        // (including a `next` request left open).
        self.server.abort();
    }
}

impl RuntimeApi {
    /// Binds 127.0.0.1:0 and serves in the background.
    pub async fn start(function_name: &str) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the runtime API on 127.0.0.1")?;
        let addr = listener.local_addr()?;
        let (events, queue) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            function_arn: format!("arn:aws:lambda:us-east-1:123456789012:function:{function_name}"),
            queue: tokio::sync::Mutex::new(queue),
            pending: Mutex::default(),
            first_poll: watch::Sender::new(None),
            init_error: watch::Sender::new(None),
            sequence: AtomicU64::new(0),
        });
        let me = shared.clone();
        let server = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        let _ = stream.set_nodelay(true);
                        let me = me.clone();
                        connections.spawn(async move {
                            let service = hyper::service::service_fn(move |req| {
                                let me = me.clone();
                                async move { Ok::<_, Infallible>(handle(&me, req).await) }
                            });
                            let _ = hyper::server::conn::http1::Builder::new()
                                .keep_alive(true)
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        });
                    }
                    Some(_) = connections.join_next(), if !connections.is_empty() => {}
                }
            }
        });
        Ok(Self {
            addr,
            shared,
            events,
            server,
        })
    }

    /// Queues `event` for the function's next poll; the receiver gets its reply.
    fn queue(&self, event: Bytes) -> Result<oneshot::Receiver<Reply>> {
        let n = self.shared.sequence.fetch_add(1, Ordering::Relaxed);
        let id = format!("{:08x}-b3c4-4d5e-8f60-{n:012x}", std::process::id());
        let (tx, rx) = oneshot::channel();
        self.shared
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.clone(), tx);
        self.events
            .send(Invocation { id, event })
            .ok()
            .context("the runtime API has stopped")?;
        Ok(rx)
    }
}

async fn handle(shared: &Shared, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let arrived = Instant::now();
    let (parts, body) = req.into_parts();
    let Some(route) = parts.uri.path().strip_prefix(PREFIX) else {
        return answer(StatusCode::NOT_FOUND, "not a runtime API path");
    };
    if parts.method == Method::GET && route == "invocation/next" {
        shared.first_poll.send_if_modified(|first| {
            let unset = first.is_none();
            if unset {
                *first = Some(arrived);
            }
            unset
        });
        let next = shared.queue.lock().await.recv().await;
        let Some(inv) = next else {
            // No more events: hold the request, as Lambda does with an idle sandbox.
            return std::future::pending().await;
        };
        return next_event(shared, inv);
    }
    if parts.method != Method::POST {
        return answer(StatusCode::METHOD_NOT_ALLOWED, "");
    }
    let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else {
        return answer(StatusCode::BAD_REQUEST, "unreadable body");
    };
    if route == "init/error" {
        let text = String::from_utf8_lossy(&body).into_owned();
        shared.init_error.send_replace(Some(text));
        return answer(StatusCode::ACCEPTED, r#"{"status":"OK"}"#);
    }
    let Some((id, kind)) = route
        .strip_prefix("invocation/")
        .and_then(|r| r.split_once('/'))
    else {
        return answer(StatusCode::NOT_FOUND, "unknown runtime API path");
    };
    let reply = match kind {
        "response" => Reply::Response(body),
        "error" => Reply::Error(body),
        _ => return answer(StatusCode::NOT_FOUND, "unknown runtime API path"),
    };
    let waiting = shared
        .pending
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(id);
    match waiting {
        Some(tx) => {
            let _ = tx.send(reply);
            answer(StatusCode::ACCEPTED, r#"{"status":"OK"}"#)
        }
        None => answer(
            StatusCode::BAD_REQUEST,
            "unknown or already answered request id",
        ),
    }
}

fn next_event(shared: &Shared, inv: Invocation) -> Response<Full<Bytes>> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let deadline_ms = (now + INVOCATION_TIMEOUT).as_millis();
    let trace = format!(
        "Root=1-{:08x}-{:024x};Parent={:016x};Sampled=0",
        now.as_secs(),
        u128::from(std::process::id()) << 64 | now.as_nanos() & u128::from(u64::MAX),
        now.as_nanos() as u64
    );
    let mut res = Response::new(Full::new(inv.event));
    let h = res.headers_mut();
    let mut set = |name: &'static str, value: String| {
        if let Ok(v) = value.parse() {
            h.insert(name, v);
        }
    };
    set("content-type", "application/json".into());
    set("lambda-runtime-aws-request-id", inv.id);
    set("lambda-runtime-deadline-ms", deadline_ms.to_string());
    set(
        "lambda-runtime-invoked-function-arn",
        shared.function_arn.clone(),
    );
    set("lambda-runtime-trace-id", trace);
    res
}

fn answer(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *res.status_mut() = status;
    res
}

/// A function binary running against its own [`RuntimeApi`]; killed when dropped.
#[derive(Debug)]
pub struct FunctionProcess {
    pub name: String,
    pub pid: u32,
    /// Just before the spawn.
    pub spawned_at: Instant,
    pub log: PathBuf,
    child: tokio::process::Child,
    api: RuntimeApi,
}

impl FunctionProcess {
    /// Starts `bin` with exactly `env` (plus `AWS_LAMBDA_RUNTIME_API`), its stdout and stderr
    /// appended to `log`.
    pub async fn spawn(
        bin: &Path,
        name: &str,
        env: &[(String, String)],
        log: &Path,
    ) -> Result<Self> {
        let api = RuntimeApi::start(name).await?;
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening {}", log.display()))?;
        let err = out.try_clone()?;
        let mut cmd = tokio::process::Command::new(bin);
        cmd.env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("AWS_LAMBDA_RUNTIME_API", api.addr.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .kill_on_drop(true);
        let spawned_at = Instant::now();
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let pid = child.id().context("the function exited at once")?;
        Ok(Self {
            name: name.to_owned(),
            pid,
            spawned_at,
            log: log.to_owned(),
            child,
            api,
        })
    }

    /// Waits (at most `limit`) for the first `GET …/invocation/next`: the init time.
    pub async fn wait_ready(&mut self, limit: Duration) -> Result<Duration> {
        let mut polled = self.api.shared.first_poll.subscribe();
        let mut init_error = self.api.shared.init_error.subscribe();
        tokio::select! {
            at = polled.wait_for(Option::is_some) => {
                let at = (*at?).context("no first poll")?;
                Ok(at.saturating_duration_since(self.spawned_at))
            }
            e = init_error.wait_for(Option::is_some) => {
                let body = e?.clone().unwrap_or_default();
                bail!("{} reported an init error: {body}{}", self.name, self.log_tail())
            }
            status = self.child.wait() => {
                bail!("{} exited before polling for an event ({}){}", self.name, status?, self.log_tail())
            }
            () = tokio::time::sleep(limit) => {
                bail!("{} did not poll for an event within {limit:?}{}", self.name, self.log_tail())
            }
        }
    }

    /// One invocation: `event` handed to the function's next poll; its reply, within `limit`.
    pub async fn invoke(&mut self, event: Bytes, limit: Duration) -> Result<Reply> {
        let rx = self.api.queue(event)?;
        let mut init_error = self.api.shared.init_error.subscribe();
        tokio::select! {
            reply = rx => reply.context("the runtime API dropped the invocation"),
            e = init_error.wait_for(Option::is_some) => {
                let body = e?.clone().unwrap_or_default();
                bail!("{} reported an init error: {body}{}", self.name, self.log_tail())
            }
            status = self.child.wait() => {
                bail!("{} exited during an invocation ({}){}", self.name, status?, self.log_tail())
            }
            () = tokio::time::sleep(limit) => {
                bail!("{} did not answer an invocation within {limit:?}{}", self.name, self.log_tail())
            }
        }
    }

    /// A `/proc/<pid>/status` field in KiB (`VmHWM`, `VmRSS`).
    pub fn status_kib(&self, field: &str) -> Result<u64> {
        crate::service::status_kib(&self.pid.to_string(), field)
            .with_context(|| format!("reading {field} of {} from /proc", self.name))
    }

    /// SIGKILL, and waits for the exit.
    pub async fn kill(mut self) -> Result<()> {
        self.child
            .kill()
            .await
            .with_context(|| format!("killing {}", self.name))
    }

    /// The last lines of the function's log, for an error message.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(20)..].join("\n");
        format!("; the end of its log ({}):\n{tail}", self.log.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_answer_gives_its_failed_message_ids_and_anything_else_is_an_error() {
        let reply = |b: &str| Reply::Response(Bytes::from(b.to_owned()));
        let failed =
            reply(r#"{"batchItemFailures":[{"itemIdentifier":"m-2"},{"itemIdentifier":"m-5"}]}"#)
                .batch_item_failures("f")
                .unwrap();
        assert_eq!(failed, ["m-2".to_owned(), "m-5".to_owned()].into());
        assert!(
            reply(r#"{"batchItemFailures":[]}"#)
                .batch_item_failures("f")
                .unwrap()
                .is_empty()
        );
        for bad in [
            Reply::Error(Bytes::from_static(b"{\"errorType\":\"boom\"}")),
            reply("{}"),
            reply("not json"),
            reply(r#"{"batchItemFailures":[{}]}"#),
        ] {
            assert!(bad.batch_item_failures("f").is_err());
        }
    }
}
