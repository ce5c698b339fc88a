//! `lambda-noisy`: the noisy-neighbour scenario (DESIGN.md §7, issue 12) through the delivery
//! Lambda's handler, on moto, with both lanes. A command, not a test:
//!
//! ```sh
//! ./infra/setup-venv.sh                                               # moto, into ./.venv (once)
//! cargo build -p webhooks-api -p webhooks-delivery -p webhooks-bench  # debug: the handler's terms, not its speed
//! target/debug/lambda-noisy                                           # prints the figures
//! target/debug/lambda-noisy --write BENCHMARKS.md                     # and records them
//! ```
//!
//! As in `lambda-cost`, the functions run as processes against a local Runtime API, with
//! DynamoDB and SQS on moto server (the tables and the three queues as `template.yaml` defines
//! them). This process plays API Gateway (one `POST /api/events` of one event per call, each
//! bucket through an API process of its own) and the two SQS event source mappings:
//! `--main-instances` delivery function processes take batches of up to `--batch-size` records
//! from `DeliveryQueue`, `--slow-instances` from `SlowQueue` (the slow lane,
//! `SlowLaneMaxConcurrency`), each invoking its process with one batch at a time and deleting
//! what it did not report in `batchItemFailures`, as the mappings do.
//!
//! Two webhooks in two buckets: a healthy one (`/h/0`) and one whose receiver answers only
//! after `--hang-secs` (`/hang/1`; the function's delivery timeout is `--delivery-timeout-secs`).
//! Two phases of `--duration-secs`, publishing `--rate` events/s to each bucket that takes part:
//! 1. **solo**: the healthy webhook's bucket only;
//! 2. **with the neighbour**: both at once.
//!
//! After each phase the bench waits until every healthy delivery arrived, then reports the
//! healthy webhook's publish→arrival percentiles and, in the handler's terms, what each lane
//! did: invocations, records of each webhook, and the invocations that lasted longer than a
//! second (held by a hanging receiver). The hanging webhook's deliveries are left unfinished.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use serde_json::{Value, json};
use webhooks_core::delivery::QueueTask;
use webhooks_core::webhook::Secret;

use webhooks_bench::functions::{JWT_SECRET, function_env, http_call, mint};
use webhooks_bench::moto::{self, Moto};
use webhooks_bench::receiver::{BenchClock, Receiver, Report};
use webhooks_bench::runtime_api::FunctionProcess;
use webhooks_bench::sqs::{SqsClient, sqs_event};
use webhooks_bench::{report, service};

const API: &str = "webhooks-api";
const DELIVERY: &str = "webhooks-delivery";
const HEALTHY_BUCKET: &str = "65f0be0c0000000000000001";
const NOISY_BUCKET: &str = "65f0be0c0000000000000002";
const OWNER: &str = "lambda-noisy-user";
const MEMORY_SIZE_MB: &str = "256";
const CREATE_EVENT: &str = include_str!("../../events/apigw-v2-create-webhook.json");
const PUBLISH_EVENT: &str = include_str!("../../events/apigw-v2-publish-batch.json");
/// How long the bench waits for a phase's healthy deliveries after its last publish.
const DRAIN_LIMIT: Duration = Duration::from_secs(180);
/// An invocation longer than this was held by a slow receiver.
const LONG_INVOCATION: Duration = Duration::from_secs(1);

#[derive(Debug, Parser)]
#[command(
    name = "lambda-noisy",
    about = "The noisy-neighbour scenario through the delivery Lambda's handler on moto, with the slow lane"
)]
struct Args {
    /// Events per second published to each webhook's bucket.
    #[arg(long, default_value_t = 10)]
    rate: u64,
    /// How long each phase publishes.
    #[arg(long, default_value_t = 60)]
    duration_secs: u64,
    /// How long the hanging receiver takes to answer.
    #[arg(long, default_value_t = 30)]
    hang_secs: u64,
    /// The delivery function's DELIVERY_TIMEOUT_SECONDS.
    #[arg(long, default_value_t = 30)]
    delivery_timeout_secs: u64,
    /// Delivery function processes consuming DeliveryQueue.
    #[arg(long, default_value_t = 2)]
    main_instances: usize,
    /// Delivery function processes consuming SlowQueue (template: SlowLaneMaxConcurrency, 2).
    #[arg(long, default_value_t = 2)]
    slow_instances: usize,
    /// Records per invocation (the event sources' `BatchSize`, at most 10 per receive).
    #[arg(long, default_value_t = 10)]
    batch_size: usize,
    /// `RUST_LOG` of the functions.
    #[arg(long, default_value = "warn")]
    rust_log: String,
    /// The webhooks-api binary (default: next to this executable).
    #[arg(long)]
    api_binary: Option<PathBuf>,
    /// The webhooks-delivery binary (default: next to this executable).
    #[arg(long)]
    delivery_binary: Option<PathBuf>,
    /// moto_server (default: ./.venv/bin/moto_server).
    #[arg(long)]
    moto: Option<PathBuf>,
    /// Keep the work directory (the functions' and moto's logs) and print where it is.
    #[arg(long)]
    keep_logs: bool,
    /// Append (or replace, for the same options) a section with the results in this file.
    #[arg(long)]
    write: Option<PathBuf>,
}

/// What one lane's event source mapping did (summed over its instances).
#[derive(Debug, Default)]
struct LaneCounters {
    invocations: AtomicU64,
    long_invocations: AtomicU64,
    healthy_records: AtomicU64,
    hanging_records: AtomicU64,
    failed_records: AtomicU64,
}

#[derive(Debug, Clone, Copy, Default)]
struct LaneFigures {
    invocations: u64,
    long_invocations: u64,
    healthy_records: u64,
    hanging_records: u64,
    failed_records: u64,
}

impl LaneCounters {
    fn snapshot(&self) -> LaneFigures {
        LaneFigures {
            invocations: self.invocations.load(Ordering::SeqCst),
            long_invocations: self.long_invocations.load(Ordering::SeqCst),
            healthy_records: self.healthy_records.load(Ordering::SeqCst),
            hanging_records: self.hanging_records.load(Ordering::SeqCst),
            failed_records: self.failed_records.load(Ordering::SeqCst),
        }
    }
}

impl std::ops::Sub for LaneFigures {
    type Output = LaneFigures;
    fn sub(self, b: LaneFigures) -> LaneFigures {
        LaneFigures {
            invocations: self.invocations - b.invocations,
            long_invocations: self.long_invocations - b.long_invocations,
            healthy_records: self.healthy_records - b.healthy_records,
            hanging_records: self.hanging_records - b.hanging_records,
            failed_records: self.failed_records - b.failed_records,
        }
    }
}

/// One phase's figures.
#[derive(Debug, Clone)]
struct Phase {
    name: &'static str,
    published: u64,
    delivered: u64,
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    hanging_requests: u64,
    main: LaneFigures,
    slow: LaneFigures,
}

fn percentile(r: &Report, p: f64) -> f64 {
    if r.latencies_ns.is_empty() {
        return 0.0;
    }
    let i = ((r.latencies_ns.len() - 1) as f64 * p).round() as usize;
    r.latencies_ns[i] as f64 / 1e6
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if args.rate == 0 || args.duration_secs == 0 || args.main_instances == 0 {
        bail!("--rate, --duration-secs and --main-instances must be at least 1");
    }
    if args.slow_instances == 0 || !(1..=10).contains(&args.batch_size) {
        bail!("--slow-instances must be at least 1 and --batch-size 1 to 10");
    }
    let build = "the functions first:\n\n    cargo build -p webhooks-api -p webhooks-delivery -p webhooks-bench\n\nthen run target/debug/lambda-noisy (or pass --api-binary / --delivery-binary)";
    let api_bin = service::find_sibling(args.api_binary.as_deref(), API, build)?;
    let delivery_bin = service::find_sibling(args.delivery_binary.as_deref(), DELIVERY, build)?;
    let moto_bin = args.moto.clone().unwrap_or_else(moto::default_moto_bin);
    let work = tempfile::Builder::new()
        .prefix("lambda-noisy-")
        .tempdir()
        .context("creating the work directory")?;
    let machine = service::Machine::read(work.path());
    eprintln!("work directory (logs): {}", work.path().display());
    let moto = Moto::start(&moto_bin, &work.path().join("moto.log")).await?;
    let outcome = run(&args, &api_bin, &delivery_bin, &moto, work.path()).await;
    let _ = moto.stop().await;
    if args.keep_logs || outcome.is_err() {
        let dir = work.keep();
        eprintln!("kept the logs in {}", dir.display());
    }
    let phases = outcome?;
    let report = report_of(&args, &machine, &phases);
    println!("\n{report}");
    if let Some(path) = &args.write {
        let (_, key) = service::command_line("target/debug/lambda-noisy", &["--keep-logs"]);
        let tag = if key.is_empty() {
            "lambda-noisy".to_owned()
        } else {
            format!("lambda-noisy {key}")
        };
        let (begin, end) = (
            format!("<!-- {tag}:begin -->"),
            format!("<!-- {tag}:end -->"),
        );
        let section = format!(
            "{begin}\n### `{tag}`: the noisy neighbour through the delivery Lambda's handler\n\n{report}{end}\n"
        );
        report::write_section(path, &begin, &end, &section)?;
        eprintln!("wrote the results to {}", path.display());
    }
    Ok(())
}

fn secret_for(i: usize) -> Secret {
    Secret::new(format!("lambda_noisy_secret_{i:03}_4b1e"))
}

async fn run(
    args: &Args,
    api_bin: &Path,
    delivery_bin: &Path,
    moto: &Moto,
    work: &Path,
) -> Result<Vec<Phase>> {
    let res = moto
        .create_resources("lambda-noisy")
        .await
        .context("creating the tables and queues on moto")?;
    let api_env = function_env(
        "dakkio-webhooks-ApiFunction",
        MEMORY_SIZE_MB,
        &moto.endpoint,
        &args.rust_log,
        &res.env_of("ApiFunction"),
        &[("JWT_SECRET", JWT_SECRET), ("ALLOW_INSECURE_URLS", "true")],
    );
    let timeout = args.delivery_timeout_secs.to_string();
    let delivery_env = function_env(
        "dakkio-webhooks-DeliveryFunction",
        MEMORY_SIZE_MB,
        &moto.endpoint,
        &args.rust_log,
        &res.env_of("DeliveryFunction"),
        &[
            ("DELIVERY_TIMEOUT_SECONDS", timeout.as_str()),
            ("ALLOW_PRIVATE_TARGETS", "true"),
        ],
    );
    if !delivery_env.iter().any(|(k, _)| k == "SLOW_QUEUE_URL") {
        bail!("template.yaml gives the delivery function no SLOW_QUEUE_URL");
    }

    let clock = BenchClock::new();
    let receiver = Arc::new(
        Receiver::new(clock, vec![secret_for(0), secret_for(1)])
            .with_hang(Duration::from_secs(args.hang_secs)),
    );
    let recv_addr = receiver.start().await?;

    // The API: two processes, one per bucket's publisher; the first creates the webhooks.
    let mut apis = Vec::new();
    for i in 0..2 {
        let log = work.join(format!("webhooks-api-{i}.log"));
        let mut api = FunctionProcess::spawn(api_bin, API, &api_env, &log).await?;
        api.wait_ready(Duration::from_secs(10)).await?;
        apis.push(api);
    }
    let exp = chrono::Utc::now().timestamp() + 3600;
    let user = mint(&json!({"sub": OWNER, "exp": exp, "buckets": [HEALTHY_BUCKET, NOISY_BUCKET]}))?;
    let mut ids = Vec::new();
    for (i, (bucket, path)) in [(HEALTHY_BUCKET, "h"), (NOISY_BUCKET, "hang")]
        .iter()
        .enumerate()
    {
        let body = json!({
            "bucketId": bucket,
            "url": format!("http://{recv_addr}/{path}/{i}"),
            "events": ["data.received"],
            "secret": secret_for(i).expose(),
        });
        let created = http_call(
            &mut apis[0],
            CREATE_EVENT,
            "POST",
            "/api/webhooks",
            &user,
            Some(body.to_string()),
            201,
        )
        .await
        .with_context(|| format!("creating webhook {i}"))?;
        ids.push(
            created["id"]
                .as_str()
                .with_context(|| format!("no id in {created}"))?
                .to_owned(),
        );
    }
    let producer = mint(&json!({
        "sub": "lambda-noisy-producer",
        "exp": exp,
        "scope": "events:publish",
        "buckets": [HEALTHY_BUCKET, NOISY_BUCKET],
    }))?;

    // The two event source mappings.
    let stop = Arc::new(AtomicBool::new(false));
    let lanes = [
        Arc::new(LaneCounters::default()),
        Arc::new(LaneCounters::default()),
    ];
    let mut mappings = tokio::task::JoinSet::new();
    let lane_of = [
        (
            res.queue_url.clone(),
            res.queue_arn.clone(),
            args.main_instances,
            "main",
        ),
        (
            res.slow_queue_url.clone(),
            res.slow_queue_arn.clone(),
            args.slow_instances,
            "slow",
        ),
    ];
    for (lane, (url, arn, instances, name)) in lane_of.iter().enumerate() {
        for n in 0..*instances {
            let log = work.join(format!("webhooks-delivery-{name}-{n}.log"));
            let mut process =
                FunctionProcess::spawn(delivery_bin, DELIVERY, &delivery_env, &log).await?;
            process.wait_ready(Duration::from_secs(10)).await?;
            let mapping = Mapping {
                sqs: SqsClient::new(&moto.endpoint)?,
                queue_url: url.clone(),
                queue_arn: arn.clone(),
                batch_size: args.batch_size,
                counters: Arc::clone(&lanes[lane]),
                healthy_webhook: ids[0].clone(),
                stop: Arc::clone(&stop),
            };
            mappings.spawn(mapping.run(process));
        }
    }

    let mut phases = Vec::new();
    let mut apis = apis.into_iter();
    let (mut healthy_api, mut noisy_api) = (apis.next().unwrap(), apis.next().unwrap());
    for (name, with_neighbour) in [("solo", false), ("with the neighbour", true)] {
        receiver.reset();
        let (main0, slow0) = (lanes[0].snapshot(), lanes[1].snapshot());
        eprintln!(
            "phase {name}: {} events/s for {} s",
            args.rate, args.duration_secs
        );
        let healthy = publish(&mut healthy_api, &producer, HEALTHY_BUCKET, args, clock);
        let published = if with_neighbour {
            let noisy = publish(&mut noisy_api, &producer, NOISY_BUCKET, args, clock);
            let (h, n) = tokio::join!(healthy, noisy);
            n?;
            h?
        } else {
            healthy.await?
        };
        let deadline = Instant::now() + DRAIN_LIMIT;
        while receiver.delivered.load(Ordering::SeqCst) < published {
            if Instant::now() > deadline {
                bail!(
                    "phase {name}: {} of {published} healthy deliveries arrived within {} s",
                    receiver.delivered.load(Ordering::SeqCst),
                    DRAIN_LIMIT.as_secs()
                );
            }
            if let Some(done) = mappings.try_join_next() {
                done??;
                bail!("an event source mapping stopped");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let r = receiver.report();
        let phase = Phase {
            name,
            published,
            delivered: r.delivered,
            p50_ms: percentile(&r, 0.50),
            p90_ms: percentile(&r, 0.90),
            p99_ms: percentile(&r, 0.99),
            max_ms: percentile(&r, 1.0),
            hanging_requests: receiver.hanging_requests.load(Ordering::SeqCst),
            main: lanes[0].snapshot() - main0,
            slow: lanes[1].snapshot() - slow0,
        };
        eprintln!("{phase:?}");
        phases.push(phase);
    }
    stop.store(true, Ordering::SeqCst);
    // An instance may be inside a hanging invocation: its process is killed with the task.
    mappings.abort_all();
    while mappings.join_next().await.is_some() {}
    Ok(phases)
}

/// Publishes `--rate` events/s to `bucket` for `--duration-secs`, one event per call, each
/// stamped with its publish time; returns how many were accepted.
async fn publish(
    api: &mut FunctionProcess,
    token: &str,
    bucket: &str,
    args: &Args,
    clock: BenchClock,
) -> Result<u64> {
    let total = args.rate * args.duration_secs;
    let start = tokio::time::Instant::now();
    for seq in 0..total {
        tokio::time::sleep_until(start + Duration::from_secs_f64(seq as f64 / args.rate as f64))
            .await;
        let body = format!(
            r#"{{"events":[{{"bucketId":"{bucket}","event":"data.received","data":{{"sentAtNanos":{},"seq":{seq}}}}}]}}"#,
            clock.now_ns()
        );
        http_call(
            api,
            PUBLISH_EVENT,
            "POST",
            "/api/events",
            token,
            Some(body),
            202,
        )
        .await
        .with_context(|| format!("publish {seq} to {bucket}"))?;
    }
    Ok(total)
}

/// One instance of an event source mapping: a function process and the queue it consumes.
struct Mapping {
    sqs: SqsClient,
    queue_url: String,
    queue_arn: String,
    batch_size: usize,
    counters: Arc<LaneCounters>,
    healthy_webhook: String,
    stop: Arc<AtomicBool>,
}

impl Mapping {
    async fn run(self, mut process: FunctionProcess) -> Result<()> {
        while !self.stop.load(Ordering::SeqCst) {
            let mut messages = Vec::new();
            while messages.len() < self.batch_size {
                let want = (self.batch_size - messages.len()).min(10);
                let got = self.sqs.receive(&self.queue_url, want).await?;
                if got.is_empty() {
                    break;
                }
                messages.extend(got);
            }
            if messages.is_empty() {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            for m in &messages {
                let task = m["Body"]
                    .as_str()
                    .and_then(|b| QueueTask::from_json(b).ok());
                let healthy =
                    task.is_some_and(|t| t.delivery().webhook_id.as_str() == self.healthy_webhook);
                let counter = if healthy {
                    &self.counters.healthy_records
                } else {
                    &self.counters.hanging_records
                };
                counter.fetch_add(1, Ordering::SeqCst);
            }
            let t = Instant::now();
            let reply = process
                .invoke(
                    sqs_event(&messages, &self.queue_arn),
                    Duration::from_secs(900),
                )
                .await?;
            self.counters.invocations.fetch_add(1, Ordering::SeqCst);
            if t.elapsed() > LONG_INVOCATION {
                self.counters
                    .long_invocations
                    .fetch_add(1, Ordering::SeqCst);
            }
            let failed = reply.batch_item_failures(DELIVERY)?;
            self.counters
                .failed_records
                .fetch_add(failed.len() as u64, Ordering::SeqCst);
            let done: Vec<&Value> = messages
                .iter()
                .filter(|m| !failed.contains(m["MessageId"].as_str().unwrap_or_default()))
                .collect();
            for chunk in done.chunks(10) {
                self.sqs.delete_batch(&self.queue_url, chunk).await?;
            }
        }
        Ok(())
    }
}

/// The results as Markdown.
fn report_of(args: &Args, m: &service::Machine, phases: &[Phase]) -> String {
    let mut r = String::new();
    let (cmd, _) = service::command_line("target/debug/lambda-noisy", &["--keep-logs"]);
    let _ = writeln!(r, "- command: `{cmd}`");
    let _ = writeln!(
        r,
        "- date: {}; machine: {} × {}; {} events/s per webhook for {} s per phase; receiver hangs {} s, delivery timeout {} s; {} main-lane and {} slow-lane function processes, batches of up to {}; DynamoDB and SQS on moto",
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
        m.nproc,
        m.cpu_model,
        args.rate,
        args.duration_secs,
        args.hang_secs,
        args.delivery_timeout_secs,
        args.main_instances,
        args.slow_instances,
        args.batch_size,
    );
    let _ = writeln!(r);
    let _ = writeln!(
        r,
        "| phase | healthy delivered | p50 (ms) | p90 (ms) | p99 (ms) | max (ms) | hanging receiver's requests | main lane: invocations (> 1 s) | main lane: healthy / hanging records | slow lane: invocations (> 1 s) | slow lane: hanging records |"
    );
    let _ = writeln!(r, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for p in phases {
        let _ = writeln!(
            r,
            "| {} | {} / {} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {} ({}) | {} / {} | {} ({}) | {} |",
            p.name,
            p.delivered,
            p.published,
            p.p50_ms,
            p.p90_ms,
            p.p99_ms,
            p.max_ms,
            p.hanging_requests,
            p.main.invocations,
            p.main.long_invocations,
            p.main.healthy_records,
            p.main.hanging_records,
            p.slow.invocations,
            p.slow.long_invocations,
            p.slow.hanging_records + p.slow.healthy_records,
        );
    }
    if let [solo, noisy] = phases {
        let _ = writeln!(
            r,
            "\nHealthy p99 beside the hanging receiver: {:.1}× solo (records the function reported failed, both lanes: {})",
            noisy.p99_ms / solo.p99_ms.max(0.001),
            noisy.main.failed_records + noisy.slow.failed_records,
        );
    }
    r
}
