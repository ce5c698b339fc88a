//! `lambda-bench`: the two AWS Lambda functions of the service (`webhooks-api`, `webhooks-delivery`)
//! measured as real processes, with this process standing in for the Lambda service (a minimal
//! local Runtime API, [`runtime_api`]) and moto server for DynamoDB and SQS. A command, not a test:
//!
//! ```sh
//! ./infra/setup-venv.sh                                        # moto, into ./.venv (once)
//! cargo build --release -p webhooks-api -p webhooks-delivery   # the functions under test (x86_64)
//! cargo run --release -p webhooks-bench --bin lambda-bench                      # prints the figures
//! cargo run --release -p webhooks-bench --bin lambda-bench -- --write BENCHMARKS.md   # and records them
//! ```
//!
//! In one run:
//! 1. starts moto server and creates the two tables and the two queues as `template.yaml`
//!    defines them (JSON protocol over plain HTTP; no real AWS is ever contacted: the functions
//!    get fake credentials and `AWS_ENDPOINT_URL` pointing at moto);
//! 2. **init time**: spawns each function binary (found next to this executable, in
//!    `target/release`) with the usual Lambda environment (`AWS_LAMBDA_RUNTIME_API`, function
//!    name, 128 MB, `$LATEST`, log group and stream, region) and its own configuration, and times
//!    process spawn → its first `GET /2018-06-01/runtime/invocation/next`; one warm-up spawn,
//!    then `--spawns` (20) of each, each killed after its first poll. This is a warm page cache on
//!    this machine's x86_64 CPU, not a Lambda cold start (which adds the sandbox and the code
//!    download);
//! 3. **the API**: feeds `webhooks-api` an API Gateway v2 HTTP event (`events/apigw-v2-create-webhook.json`)
//!    for `POST /api/webhooks` with a freshly minted HS256 token, creating a webhook whose URL is
//!    a local receiver (`receiver.rs`: verifies both signatures of every delivery); then
//!    `--publishes` (20) `POST /api/events` batches (`events/apigw-v2-publish-batch.json`) of
//!    `--publish-events` (100) events each, fanned out to that webhook and queued on moto's SQS;
//!    and reads the process's peak RSS (`VmHWM`);
//! 4. **the delivery function**: feeds `webhooks-delivery` `--batches` (20) SQS events of
//!    `--batch-size` (10) records, each record the queue message of a delivery task
//!    (`QueueTask::DeliveryV1`) as close to the 256 KiB message limit as fits; checks every
//!    response (no `batchItemFailures`), that the receiver got and verified every delivery, and
//!    the webhook's stats through the API; and reads its peak RSS (`VmHWM`) before killing it;
//! 5. prints the figures with the release binaries' sizes, and with `--write FILE` appends (or
//!    replaces, for the same options) a section of FILE.
//!
//! The time per batch is mostly moto's (a Python emulator answering each DynamoDB call in
//! milliseconds), not the function's: it is printed for scale, not as a Lambda figure.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use clap::Parser;
use serde_json::{Value, json};
use webhooks_core::delivery::{DeliveryTask, MAX_MESSAGE_BYTES, QueueTask, envelope};
use webhooks_core::webhook::Secret;
use webhooks_core::{BucketId, DeliveryId, EventType, Timestamp, WebhookId, jsjson};

use webhooks_bench::functions::{JWT_SECRET, function_env, http_call, mint};
use webhooks_bench::moto::{self, Moto, Resources};
use webhooks_bench::receiver::{BenchClock, Receiver};
use webhooks_bench::report;
use webhooks_bench::runtime_api::FunctionProcess;
use webhooks_bench::service::{self, Machine};

const API: &str = "webhooks-api";
const DELIVERY: &str = "webhooks-delivery";
const BUCKET: &str = "65f0be0c0000000000000001";
const OWNER: &str = "lambda-bench-user";
const WEBHOOK_SECRET: &str = "lambda_bench_secret_4d2a9c7e1f3b";
/// The API's request body limit is 256 KiB; publishes stay under this.
const MAX_PUBLISH_BODY: usize = 240 * 1024;
const INIT_TARGET_MS: f64 = 30.0;
const DELIVERY_RSS_TARGET_MIB: f64 = 64.0;
/// Lambda's `AWS_LAMBDA_FUNCTION_MEMORY_SIZE` for the measured processes.
const MEMORY_SIZE_MB: &str = "128";

const CREATE_EVENT: &str = include_str!("../../events/apigw-v2-create-webhook.json");
const PUBLISH_EVENT: &str = include_str!("../../events/apigw-v2-publish-batch.json");

#[derive(Debug, Parser)]
#[command(
    name = "lambda-bench",
    about = "Init time and peak RSS of the two Lambda functions, as processes against a local Runtime API and moto"
)]
struct Args {
    /// Timed spawns of each function for the init time (after one warm-up spawn).
    #[arg(long, default_value_t = 20)]
    spawns: usize,
    /// SQS events fed to webhooks-delivery.
    #[arg(long, default_value_t = 20)]
    batches: usize,
    /// Records per SQS event (the event source's `BatchSize` in template.yaml is 10).
    #[arg(long, default_value_t = 10)]
    batch_size: usize,
    /// `POST /api/events` publishes fed to webhooks-api after the webhook's creation (0: none).
    #[arg(long, default_value_t = 20)]
    publishes: usize,
    /// Events per publish (1–100); their data is padded so the request stays under 240 KiB.
    #[arg(long, default_value_t = 100)]
    publish_events: usize,
    /// The webhooks-api binary (default: next to this executable, i.e. target/release).
    #[arg(long)]
    api_binary: Option<PathBuf>,
    /// The webhooks-delivery binary (default: next to this executable).
    #[arg(long)]
    delivery_binary: Option<PathBuf>,
    /// moto_server (default: ./.venv/bin/moto_server, installed by ./infra/setup-venv.sh).
    #[arg(long)]
    moto: Option<PathBuf>,
    /// `RUST_LOG` of the functions (template.yaml's default `LogLevel`: info).
    #[arg(long, default_value = "info")]
    rust_log: String,
    /// Before the init measurement, wait up to this many seconds for the machine to be quiet
    /// (other processes using under a quarter of a core).
    #[arg(long, default_value_t = 120)]
    wait_quiet_secs: u64,
    /// Keep the work directory (the functions' and moto's logs) and print where it is.
    #[arg(long)]
    keep_logs: bool,
    /// Append (or replace, for the same options) a section with the results in this file.
    #[arg(long)]
    write: Option<PathBuf>,
}

/// Init times of one function, in ms, sorted.
#[derive(Debug, Clone)]
struct InitTimes {
    ms: Vec<f64>,
}

impl InitTimes {
    fn summary(&self) -> String {
        format!(
            "{:.1} / {:.1} / {:.1} / {:.1}",
            percentile(&self.ms, 0.0),
            percentile(&self.ms, 0.5),
            percentile(&self.ms, 0.9),
            percentile(&self.ms, 1.0)
        )
    }
}

/// Nearest-rank percentile of sorted values (`q` 0 = min, 1 = max).
fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

#[derive(Debug)]
struct Figures {
    api_size: u64,
    delivery_size: u64,
    api_init: InitTimes,
    delivery_init: InitTimes,
    init_other_cores: f64,
    /// VmHWM of the API after the create, and after the publishes (KiB).
    api_hwm_after_create: u64,
    api_hwm: u64,
    publish_ms: Vec<f64>,
    publish_body_bytes: usize,
    queued: u64,
    delivery_hwm: u64,
    delivery_rss_end: u64,
    batch_ms: Vec<f64>,
    message_bytes: usize,
    delivery_body_bytes: usize,
    delivered: u64,
    signature_failures: u64,
    duplicates: u64,
    stats_total: u64,
    stats_successful: u64,
    attempts: u64,
    finals: u64,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if !(1..=100).contains(&args.publish_events) {
        bail!("--publish-events must be 1 to 100 (the API's batch limit)");
    }
    let build = "the functions first, in release mode:\n\n    cargo build --release -p webhooks-api -p webhooks-delivery\n\nthen run `cargo run --release -p webhooks-bench --bin lambda-bench` (or pass --api-binary / --delivery-binary)";
    let api_bin = service::find_sibling(args.api_binary.as_deref(), API, build)?;
    let delivery_bin = service::find_sibling(args.delivery_binary.as_deref(), DELIVERY, build)?;
    let moto_bin = args.moto.clone().unwrap_or_else(moto::default_moto_bin);
    let work = tempfile::Builder::new()
        .prefix("lambda-bench-")
        .tempdir()
        .context("creating the work directory")?;
    let machine = Machine::read(work.path());
    eprintln!(
        "machine: {} × {}, {:.1} GiB, Linux {}",
        machine.nproc, machine.cpu_model, machine.mem_gib, machine.kernel
    );
    eprintln!(
        "functions: {}, {}",
        api_bin.display(),
        delivery_bin.display()
    );
    eprintln!("work directory (logs): {}", work.path().display());

    let moto = Moto::start(&moto_bin, &work.path().join("moto.log")).await?;
    let outcome = run(&args, &api_bin, &delivery_bin, &moto, work.path()).await;
    let _ = moto.stop().await;
    if args.keep_logs || outcome.is_err() {
        let dir = work.keep();
        eprintln!("kept the logs in {}", dir.display());
    }
    let figures = outcome?;

    let report = report(&args, &machine, &figures, &api_bin, &delivery_bin);
    println!("\n{report}");
    if let Some(path) = &args.write {
        write_section(path, &report)?;
        eprintln!("wrote the results to {}", path.display());
    }
    Ok(())
}

async fn run(
    args: &Args,
    api_bin: &Path,
    delivery_bin: &Path,
    moto: &Moto,
    work: &Path,
) -> Result<Figures> {
    let res = moto
        .create_resources("lambda-bench")
        .await
        .context("creating the tables and queues on moto")?;
    let api_env = function_env(
        "dakkio-webhooks-ApiFunction",
        MEMORY_SIZE_MB,
        &moto.endpoint,
        &args.rust_log,
        &res.env_of("ApiFunction"),
        &[
            ("JWT_SECRET", JWT_SECRET),
            // The receiver is http://127.0.0.1 (never in production).
            ("ALLOW_INSECURE_URLS", "true"),
        ],
    );
    let delivery_env = function_env(
        "dakkio-webhooks-DeliveryFunction",
        MEMORY_SIZE_MB,
        &moto.endpoint,
        &args.rust_log,
        &res.env_of("DeliveryFunction"),
        &[
            ("DELIVERY_TIMEOUT_SECONDS", "30"),
            // The receiver is on 127.0.0.1.
            ("ALLOW_PRIVATE_TARGETS", "true"),
        ],
    );
    let api_log = work.join("webhooks-api.log");
    let delivery_log = work.join("webhooks-delivery.log");

    // 1. Init times.
    service::wait_quiet(args.wait_quiet_secs).await;
    let moto_pid = moto.pid.to_string();
    let busy_before = service::machine_ticks().map_or(0, |t| t.0);
    let ours_before = own_ticks() + service::cpu_ticks(&moto_pid).unwrap_or(0);
    let started = Instant::now();
    let api_init = measure_init(
        api_bin,
        API,
        &api_env,
        &work.join("init-api.log"),
        args.spawns,
    )
    .await
    .context("init time of webhooks-api")?;
    let delivery_init = measure_init(
        delivery_bin,
        DELIVERY,
        &delivery_env,
        &work.join("init-delivery.log"),
        args.spawns,
    )
    .await
    .context("init time of webhooks-delivery")?;
    let busy = service::machine_ticks()
        .map_or(0, |t| t.0)
        .saturating_sub(busy_before);
    let ours =
        (own_ticks() + service::cpu_ticks(&moto_pid).unwrap_or(0)).saturating_sub(ours_before);
    let init_other_cores = busy.saturating_sub(ours) as f64
        / service::clock_ticks_per_sec() as f64
        / started.elapsed().as_secs_f64();
    eprintln!(
        "init: {API} {} ms, {DELIVERY} {} ms (min / median / p90 / max); other processes {init_other_cores:.2} cores",
        api_init.summary(),
        delivery_init.summary()
    );

    // 2. The API: the webhook, then the publishes.
    let receiver = Arc::new(Receiver::new(
        BenchClock::new(),
        vec![Secret::new(WEBHOOK_SECRET.to_owned())],
    ));
    let recv_addr = receiver.start().await?;
    let mut api = FunctionProcess::spawn(api_bin, API, &api_env, &api_log).await?;
    api.wait_ready(Duration::from_secs(10)).await?;
    let user_token = mint(&json!({
        "sub": OWNER,
        "exp": chrono::Utc::now().timestamp() + 3600,
        "buckets": [BUCKET],
    }))?;
    let create_body = json!({
        "bucketId": BUCKET,
        "url": format!("http://{recv_addr}/h/0"),
        "events": ["data.received"],
        "secret": WEBHOOK_SECRET,
        "description": "lambda-bench receiver",
    });
    let created = http_call(
        &mut api,
        CREATE_EVENT,
        "POST",
        "/api/webhooks",
        &user_token,
        Some(create_body.to_string()),
        201,
    )
    .await
    .context("creating the webhook through webhooks-api")?;
    let webhook_id = created["id"]
        .as_str()
        .with_context(|| format!("no id in the create response: {created}"))?
        .to_owned();
    let secret = created["secret"]
        .as_str()
        .with_context(|| format!("no secret in the create response: {created}"))?;
    if secret != WEBHOOK_SECRET {
        bail!("the create response's secret is not the one sent: {secret:?}");
    }
    let webhook = WebhookId::parse(&webhook_id)?;
    eprintln!("{API}: created webhook {webhook_id} → http://{recv_addr}/h/0");
    let api_hwm_after_create = api.status_kib("VmHWM")?;

    let producer_token = mint(&json!({
        "sub": "lambda-bench-producer",
        "exp": chrono::Utc::now().timestamp() + 3600,
        "scope": "events:publish",
        // Production fails closed: a producer publishes only to the buckets its token names.
        "buckets": [BUCKET],
    }))?;
    let per_event = MAX_PUBLISH_BODY / args.publish_events;
    let pad = per_event.saturating_sub(160);
    let mut publish_ms = Vec::new();
    let mut publish_body_bytes = 0;
    for p in 0..args.publishes {
        let events: Vec<Value> = (0..args.publish_events)
            .map(|k| {
                json!({
                    "bucketId": BUCKET,
                    "event": "data.received",
                    "data": {"publish": p, "seq": k, "pad": "x".repeat(pad)},
                })
            })
            .collect();
        let body = json!({ "events": events }).to_string();
        publish_body_bytes = body.len();
        let t = Instant::now();
        let out = http_call(
            &mut api,
            PUBLISH_EVENT,
            "POST",
            "/api/events",
            &producer_token,
            Some(body),
            202,
        )
        .await
        .with_context(|| format!("publish {p} through webhooks-api"))?;
        publish_ms.push(t.elapsed().as_secs_f64() * 1e3);
        let queued = out["deliveries"].as_array().map_or(0, Vec::len);
        if queued != args.publish_events {
            bail!(
                "publish {p}: {queued} deliveries queued, expected {}",
                args.publish_events
            );
        }
    }
    let api_hwm = api.status_kib("VmHWM")?;
    let queued = moto.queue_depth(&res.queue_url).await?;
    let expected_queued = (args.publishes * args.publish_events) as u64;
    if queued != expected_queued {
        bail!("the delivery queue holds {queued} messages, expected {expected_queued}");
    }
    if args.publishes > 0 {
        eprintln!(
            "{API}: {} publishes of {} events, {queued} messages on the queue; peak RSS {:.1} MiB",
            args.publishes,
            args.publish_events,
            mib(api_hwm)
        );
    }

    // 3. The delivery function.
    let mut delivery =
        FunctionProcess::spawn(delivery_bin, DELIVERY, &delivery_env, &delivery_log).await?;
    delivery.wait_ready(Duration::from_secs(10)).await?;
    let bucket = BucketId::parse(BUCKET)?;
    let pad = message_pad(&webhook, &bucket)?;
    let mut batch_ms = Vec::new();
    let (mut message_bytes, mut delivery_body_bytes) = (0, 0);
    for b in 0..args.batches {
        let (event, msg_len, body_len) =
            sqs_event(&webhook, &bucket, &res, b, args.batch_size, pad)?;
        message_bytes = message_bytes.max(msg_len);
        delivery_body_bytes = delivery_body_bytes.max(body_len);
        let t = Instant::now();
        let reply = delivery
            .invoke(event, Duration::from_secs(90))
            .await
            .with_context(|| format!("SQS batch {b}"))?;
        batch_ms.push(t.elapsed().as_secs_f64() * 1e3);
        let failures = reply
            .batch_item_failures(DELIVERY)
            .with_context(|| format!("SQS batch {b}"))?;
        if !failures.is_empty() {
            bail!("SQS batch {b}: batchItemFailures {failures:?}");
        }
    }
    let expected = (args.batches * args.batch_size) as u64;
    // Each record's handler awaits its send, so every delivery has arrived by now.
    let delivered = receiver.delivered.load(Ordering::SeqCst);
    let signature_failures = receiver.signature_failures.load(Ordering::SeqCst);
    let duplicates = receiver.duplicates.load(Ordering::SeqCst);
    let delivery_hwm = delivery.status_kib("VmHWM")?;
    let delivery_rss_end = delivery.status_kib("VmRSS")?;
    delivery.kill().await?;
    if delivered != expected || signature_failures > 0 || duplicates > 0 {
        bail!(
            "the receiver got {delivered} of {expected} deliveries ({signature_failures} signature failures, {duplicates} duplicates)"
        );
    }
    eprintln!(
        "{DELIVERY}: {} batches of {}, {delivered} delivered; peak RSS {:.1} MiB",
        args.batches,
        args.batch_size,
        mib(delivery_hwm)
    );

    // The webhook's stats, as the API reads them from DynamoDB.
    let got = http_call(
        &mut api,
        CREATE_EVENT,
        "GET",
        &format!("/api/webhooks/{webhook_id}"),
        &user_token,
        None,
        200,
    )
    .await
    .context("reading the webhook's stats through webhooks-api")?;
    api.kill().await?;
    let stats_total = got["stats"]["totalDeliveries"].as_u64().unwrap_or(0);
    let stats_successful = got["stats"]["successfulDeliveries"].as_u64().unwrap_or(0);
    // What the function wrote for each delivery: its attempt and its final marker (one item
    // when the first attempt succeeds: the marker carries the attempt).
    let attempts = moto
        .count_delivery_items(&res.deliveries_table, &webhook_id, "A#", Some("attempt"))
        .await?;
    let finals = moto
        .count_delivery_items(&res.deliveries_table, &webhook_id, "A#", Some("final"))
        .await?;
    let dead = moto
        .count_delivery_items(&res.deliveries_table, &webhook_id, "D#", None)
        .await?;
    if attempts != expected || finals != expected || dead != 0 {
        bail!(
            "the deliveries table holds {attempts} attempts, {finals} final markers and {dead} dead letters of the webhook, expected {expected}, {expected} and 0"
        );
    }
    if stats_total != expected || stats_successful != expected {
        eprintln!(
            "note: the webhook's stats show {stats_total} deliveries ({stats_successful} successful), expected {expected}: moto's threaded server does not isolate concurrent `TransactWriteItems` on one item (some answer 500 and are retried), so its counters can drift"
        );
    }

    Ok(Figures {
        api_size: file_size(api_bin)?,
        delivery_size: file_size(delivery_bin)?,
        api_init,
        delivery_init,
        init_other_cores,
        api_hwm_after_create,
        api_hwm,
        publish_ms,
        publish_body_bytes,
        queued,
        delivery_hwm,
        delivery_rss_end,
        batch_ms,
        message_bytes,
        delivery_body_bytes,
        delivered,
        signature_failures,
        duplicates,
        stats_total,
        stats_successful,
        attempts,
        finals,
    })
}

fn file_size(path: &Path) -> Result<u64> {
    Ok(std::fs::metadata(path)
        .with_context(|| format!("reading the size of {}", path.display()))?
        .len())
}

/// One warm-up spawn, then `spawns` timed ones: spawn → first poll, each killed after it.
async fn measure_init(
    bin: &Path,
    name: &str,
    env: &[(String, String)],
    log: &Path,
    spawns: usize,
) -> Result<InitTimes> {
    let mut ms = Vec::with_capacity(spawns);
    for i in 0..=spawns {
        let mut p = FunctionProcess::spawn(bin, name, env, log).await?;
        let took = p
            .wait_ready(Duration::from_secs(10))
            .await
            .with_context(|| format!("spawn {i}"))?;
        p.kill().await?;
        if i > 0 {
            ms.push(took.as_secs_f64() * 1e3);
        }
    }
    Ok(InitTimes { ms: sorted(ms) })
}

/// utime + stime of this process and of its waited-for children, in clock ticks.
fn own_ticks() -> u64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0;
    };
    let Some(rest) = stat.rfind(')').and_then(|i| stat.get(i + 2..)) else {
        return 0;
    };
    // `rest` starts at field 3: utime, stime, cutime, cstime are fields 14 to 17.
    rest.split_whitespace()
        .skip(11)
        .take(4)
        .filter_map(|f| f.parse::<u64>().ok())
        .sum()
}

/// The delivery body's padding that brings a queue message as close to `MAX_MESSAGE_BYTES` as
/// fits (with room for the sequence numbers' digits).
fn message_pad(webhook: &WebhookId, bucket: &BucketId) -> Result<usize> {
    let (msg, _) = queue_message(webhook, bucket, 0, 0, 0)?;
    Ok(MAX_MESSAGE_BYTES.saturating_sub(msg.len() + 32))
}

/// A delivery task's queue message (and its delivery body's length).
fn queue_message(
    webhook: &WebhookId,
    bucket: &BucketId,
    batch: usize,
    seq: usize,
    pad: usize,
) -> Result<(String, usize)> {
    let now = Timestamp::from_unix(chrono::Utc::now().timestamp());
    let delivery = DeliveryId::generate(now.unix());
    let data = json!({"batch": batch, "seq": seq, "pad": "x".repeat(pad)});
    let body = jsjson::to_string(&envelope(
        EventType::DataReceived,
        now,
        webhook,
        bucket,
        &delivery,
        data,
    ));
    let body_len = body.len();
    let task = DeliveryTask {
        delivery_id: delivery,
        webhook_id: webhook.clone(),
        event: EventType::DataReceived,
        generation: 0,
        attempts_made: 0,
        body,
        created_at: now,
    };
    let msg = QueueTask::DeliveryV1(task).to_json();
    if msg.len() > MAX_MESSAGE_BYTES {
        bail!(
            "a queue message of {} bytes is over MAX_MESSAGE_BYTES ({MAX_MESSAGE_BYTES})",
            msg.len()
        );
    }
    Ok((msg, body_len))
}

/// An SQS event of `size` records, as the event source mapping delivers them; with the largest
/// message and delivery body lengths.
fn sqs_event(
    webhook: &WebhookId,
    bucket: &BucketId,
    res: &Resources,
    batch: usize,
    size: usize,
    pad: usize,
) -> Result<(Bytes, usize, usize)> {
    let now_ms = chrono::Utc::now().timestamp_millis().to_string();
    let (mut max_msg, mut max_body) = (0, 0);
    let mut records = Vec::with_capacity(size);
    for seq in 0..size {
        let (msg, body_len) = queue_message(webhook, bucket, batch, seq, pad)?;
        max_msg = max_msg.max(msg.len());
        max_body = max_body.max(body_len);
        let task = QueueTask::from_json(&msg)?;
        let delivery_id = task.delivery().delivery_id.to_string();
        records.push(json!({
            "messageId": format!("{:08x}-5e6f-4a1b-9c2d-{:012x}", batch, seq),
            "receiptHandle": format!("AQEBbGFtYmRhLWJlbmNoLXJlY2VpcHQ{batch}x{seq}=="),
            "body": msg,
            "attributes": {
                "ApproximateReceiveCount": "1",
                "SentTimestamp": now_ms,
                "SenderId": "AROA2EXAMPLEROLEID:dakkio-webhooks-ApiFunction",
                "ApproximateFirstReceiveTimestamp": now_ms,
            },
            "messageAttributes": {
                "deliveryId": {
                    "stringValue": delivery_id,
                    "stringListValues": [],
                    "binaryListValues": [],
                    "dataType": "String",
                },
            },
            "eventSource": "aws:sqs",
            "eventSourceARN": res.queue_arn,
            "awsRegion": "us-east-1",
        }));
    }
    let event = serde_json::to_vec(&json!({ "Records": records }))?;
    Ok((Bytes::from(event), max_msg, max_body))
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

/// The results as Markdown (printed, and the section `--write` records).
fn report(args: &Args, m: &Machine, f: &Figures, api_bin: &Path, delivery_bin: &Path) -> String {
    let mut r = String::new();
    let (cmd, _) = service::command_line(
        "cargo run --release -p webhooks-bench --bin lambda-bench --",
        &["--keep-logs"],
    );
    let _ = writeln!(r, "- command: `{cmd}`");
    let _ = writeln!(
        r,
        "- date: {}",
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC")
    );
    let _ = writeln!(
        r,
        "- machine: {} × {} (nproc {}), {:.1} GiB memory, Linux {}",
        m.nproc, m.cpu_model, m.nproc, m.mem_gib, m.kernel
    );
    let _ = writeln!(
        r,
        "- functions: release x86_64 `{}` and `{}` (`cargo build --release -p webhooks-api -p webhooks-delivery`), as processes against a local Lambda Runtime API (this bench), `AWS_LAMBDA_FUNCTION_MEMORY_SIZE={MEMORY_SIZE_MB}` (not enforced), `RUST_LOG={}`; DynamoDB and SQS on moto server",
        api_bin.display(),
        delivery_bin.display(),
        args.rust_log
    );
    let _ = writeln!(r);
    let _ = writeln!(
        r,
        "| function | binary (x86_64 release) | init min / median / p90 / max (ms) | workload | peak RSS (MiB) | per invocation median / max (ms) |"
    );
    let _ = writeln!(r, "|---|---:|---:|---|---:|---:|");
    let publish_ms = sorted(f.publish_ms.clone());
    let batch_ms = sorted(f.batch_ms.clone());
    let _ = writeln!(
        r,
        "| `webhooks-api` | {:.2} MiB | {} | 1 create + {} publishes × {} events ({:.0} KiB request) | {:.1} | {:.1} / {:.1} |",
        f.api_size as f64 / 1048576.0,
        f.api_init.summary(),
        args.publishes,
        args.publish_events,
        f.publish_body_bytes as f64 / 1024.0,
        mib(f.api_hwm),
        percentile(&publish_ms, 0.5),
        percentile(&publish_ms, 1.0),
    );
    let _ = writeln!(
        r,
        "| `webhooks-delivery` | {:.2} MiB | {} | {} SQS batches × {} records of {:.1} KiB | {:.1} | {:.1} / {:.1} |",
        f.delivery_size as f64 / 1048576.0,
        f.delivery_init.summary(),
        args.batches,
        args.batch_size,
        f.message_bytes as f64 / 1024.0,
        mib(f.delivery_hwm),
        percentile(&batch_ms, 0.5),
        percentile(&batch_ms, 1.0),
    );
    let _ = writeln!(r);
    let worst_init = percentile(&f.api_init.ms, 0.9).max(percentile(&f.delivery_init.ms, 0.9));
    let _ = writeln!(
        r,
        "- init: process spawn → first `GET /2018-06-01/runtime/invocation/next`, {} spawns of each after 1 warm-up, each killed after its first poll (nearest-rank percentiles). **A warm page cache on this machine's x86_64 CPU, not a Lambda cold start** (which adds the sandbox and the code download). Target ≤ {INIT_TARGET_MS:.0} ms: {} (p90 of both ≤ {worst_init:.1} ms). Other processes used {:.2} cores meanwhile.",
        args.spawns,
        met(worst_init <= INIT_TARGET_MS),
        f.init_other_cores
    );
    let _ = writeln!(
        r,
        "- `webhooks-delivery`: {} SQS events of {} records, each record the queue message of a delivery task (`QueueTask::DeliveryV1`, {} bytes, under the {MAX_MESSAGE_BYTES}-byte limit; delivery body {} bytes), `ApproximateReceiveCount` 1. Peak RSS (`VmHWM`) **{:.1} MiB**, target ≤ {DELIVERY_RSS_TARGET_MIB:.0} MiB: {} (RSS at the end {:.1} MiB). Every response had no `batchItemFailures`; the receiver got {} of {} deliveries, signatures verified ({} failures, {} duplicates); the deliveries table holds {} attempts and {} final markers of the webhook; its stats read back through the API: {} deliveries, {} successful{}. Time per batch (mean {:.1} ms, min {:.1} ms) is mostly moto's DynamoDB calls, not a Lambda figure.",
        args.batches,
        args.batch_size,
        f.message_bytes,
        f.delivery_body_bytes,
        mib(f.delivery_hwm),
        met(mib(f.delivery_hwm) <= DELIVERY_RSS_TARGET_MIB),
        mib(f.delivery_rss_end),
        f.delivered,
        args.batches * args.batch_size,
        f.signature_failures,
        f.duplicates,
        f.attempts,
        f.finals,
        f.stats_total,
        f.stats_successful,
        if f.stats_total == f.delivered && f.stats_successful == f.delivered {
            ""
        } else {
            " (moto's threaded server does not isolate concurrent `TransactWriteItems` on one item (some answer 500 and are retried), so its counters can drift; DynamoDB's transactions are serializable)"
        },
        mean(&batch_ms),
        percentile(&batch_ms, 0.0),
    );
    let _ = writeln!(
        r,
        "- `webhooks-api`: `POST /api/webhooks` (API Gateway v2 event, HS256 token), then {} `POST /api/events` of {} events each fanned out to that webhook ({} messages on moto's delivery queue afterwards). Peak RSS (`VmHWM`) {:.1} MiB after the create, **{:.1} MiB** after the publishes. Time per publish (mean {:.1} ms) is mostly moto's `Query` and `SendMessageBatch`.",
        args.publishes,
        args.publish_events,
        f.queued,
        mib(f.api_hwm_after_create),
        mib(f.api_hwm),
        mean(&publish_ms),
    );
    let _ = writeln!(
        r,
        "- binary sizes: x86_64 release builds of this workspace (`target/release`); the arm64 `bootstrap` binaries `sam build` deploys are measured separately."
    );
    r
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// Appends the report as a section of `path`, or replaces the section of the same options.
fn write_section(path: &Path, report: &str) -> Result<()> {
    let (_, key) = service::command_line(
        "cargo run --release -p webhooks-bench --bin lambda-bench --",
        &["--keep-logs"],
    );
    let tag = if key.is_empty() {
        "lambda-bench".to_owned()
    } else {
        format!("lambda-bench {key}")
    };
    let begin = format!("<!-- {tag}:begin -->");
    let end = format!("<!-- {tag}:end -->");
    let sec = format!("{begin}\n### `{tag}`: the Lambda functions as processes\n\n{report}{end}\n");
    report::write_section(path, &begin, &end, &sec)
}
