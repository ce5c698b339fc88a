//! `lambda-cost`: what a delivery costs on AWS, counted call by call. A command, not a test:
//!
//! ```sh
//! ./infra/setup-venv.sh                                        # moto, into ./.venv (once)
//! cargo build -p webhooks-api -p webhooks-delivery -p webhooks-bench   # debug is enough: it counts calls
//! cargo run -p webhooks-bench --bin lambda-cost                       # prints the figures
//! cargo run -p webhooks-bench --bin lambda-cost -- --write BENCHMARKS.md   # and records them
//! ```
//!
//! The two function binaries run as processes against a local Lambda Runtime API
//! ([`runtime_api`]), as in `lambda-bench`, with DynamoDB and SQS on moto server behind the
//! [`aws_meter`]: a recording proxy that prices every call the functions make (item sizes, read
//! and write units, index writes, transactions, SQS 64 KiB chunks; its module docs give the
//! rules). This process stands in for API Gateway (one `POST /api/events` per publish call) and
//! for the SQS event source mappings (the delivery queue's and the slow lane's, polled in turn):
//! it receives up to `--batch-size` messages (`ReceiveMessage`,
//! at most 10 per call), invokes the delivery function with them, and deletes the ones it did not
//! report in `batchItemFailures` (`DeleteMessageBatch`), until both queues hold nothing (visible,
//! in flight or delayed; a copy SQS made or a deferral is processed too, not mistaken for a
//! finished delivery); those calls go through the meter too, as the mapping's. Each scenario runs on its own tables and queues, created as `template.yaml`
//! defines them:
//!
//! | scenario | webhooks on the bucket | receivers | events per publish call |
//! |---|---|---|---|
//! | `1 KiB, 1 event/publish` | 1 | 200 | 1 |
//! | `1 KiB, 100 events/publish` | 1 | 200 | 100 |
//! | `fan-out to 10` | 10 | 200 | 1 |
//! | `10 % failing, 3 retries` | 10, one answering 400 (`maxRetries` 3: 4 attempts, then the dead-letter queue; a 4xx keeps the circuit breaker closed, a 5xx would open it and defer the rest for minutes) | | 1 |
//!
//! Every delivery body is ~1 KiB; the receiver verifies both signatures of every request.
//! The run checks that every delivery arrived (or, failing, was dead-lettered) and that the
//! stats read back through the API are exact (copies a receiver got twice are reported), then prices the counted calls at the list prices in
//! [`prices`] and prints, per scenario, the units and requests per delivery, the cost per million
//! deliveries by service, the calls behind them, and the busiest item and partition (DynamoDB
//! allows 1,000 write units per second to one item or partition: the ceiling that sets).
//!
//! Lambda is billed for the measured duration of each invocation (rounded up to 1 ms) at the
//! template's 256 MB on arm64. Against moto (a Python emulator answering each call in
//! milliseconds) and on this machine's x86_64 CPU, that duration is an upper bound for what
//! Lambda would bill; the requests are exact.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use serde_json::{Value, json};
use webhooks_core::webhook::Secret;

use webhooks_bench::aws_meter::{Call, Meter};
use webhooks_bench::functions::{JWT_SECRET, function_env, http_call, mint};
use webhooks_bench::moto::{self, Moto, Resources};
use webhooks_bench::receiver::{BenchClock, Receiver};
use webhooks_bench::runtime_api::FunctionProcess;
use webhooks_bench::sqs::{SqsClient, sqs_event};
use webhooks_bench::{report, service};

/// us-east-1 list prices, read on 2026-12-01 from the pages named with each.
pub mod prices {
    /// DynamoDB on-demand, per write request unit: $0.625 per million
    /// (<https://aws.amazon.com/dynamodb/pricing/on-demand/>, as quoted on
    /// <https://airbyte.com/data-engineering-resources/dynamodb-pricing>, read 2026-12-01).
    pub const DYNAMODB_WRITE_UNIT: f64 = 0.625 / 1e6;
    /// DynamoDB on-demand, per read request unit: $0.125 per million (same pages).
    pub const DYNAMODB_READ_UNIT: f64 = 0.125 / 1e6;
    /// SQS standard queue, per request (per 64 KiB chunk): $0.40 per million, first 100 billion a
    /// month (<https://cloudburn.io/blog/amazon-sqs-pricing>, "as of March 2026", read
    /// 2026-12-01; <https://aws.amazon.com/sqs/pricing/>).
    pub const SQS_REQUEST: f64 = 0.40 / 1e6;
    /// Lambda, per request: $0.20 per million
    /// (<https://cloudchipr.com/blog/aws-lambda-pricing>, read 2026-12-01;
    /// <https://aws.amazon.com/lambda/pricing/>).
    pub const LAMBDA_REQUEST: f64 = 0.20 / 1e6;
    /// Lambda on arm64, per GB-second: $0.0000133334, first 7.5 billion GB-s a month (same pages).
    pub const LAMBDA_ARM_GB_SECOND: f64 = 0.000_013_333_4;
    /// API Gateway HTTP API, per request (metered in 512 KB increments): $1.00 per million, first
    /// 300 million a month (<https://docs.aws.amazon.com/whitepapers/latest/best-practices-api-gateway-private-apis-integration/cost-optimization.html>,
    /// read 2026-12-01; <https://aws.amazon.com/api-gateway/pricing/>).
    pub const API_GATEWAY_HTTP_REQUEST: f64 = 1.00 / 1e6;
    /// HTTP API requests are metered in 512 KB increments.
    pub const API_GATEWAY_METERED_BYTES: usize = 512 * 1024;
    /// EventBridge API destinations, per invocation: $0.20 per million (the issue's reference).
    pub const EVENTBRIDGE_API_DESTINATION: f64 = 0.20 / 1e6;
    /// KMS, per request (symmetric key: GenerateDataKey, Decrypt): $0.03 per 10,000, after
    /// 20,000 free a month (<https://aws.amazon.com/kms/pricing/>, read 2026-12-02).
    pub const KMS_REQUEST: f64 = 0.03 / 1e4;
    /// KMS, per customer managed key and month (the template's `SecretsKey`): $1 (same page).
    pub const KMS_KEY_MONTH: f64 = 1.0;
}

/// How long a scenario's queue may take to drain (retries wait 1 + 2 + 4 s; a loaded moto
/// answers slowly).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(600);
/// The latency assumed for one DynamoDB or SQS call in the Lambda duration model (ms): both
/// answer in single-digit milliseconds in-region.
const MODEL_AWS_CALL_MS: f64 = 10.0;
/// `MemorySize` of both functions in `template.yaml` (MB).
const MEMORY_MB: u64 = 256;
/// DynamoDB's limit of write units per second on one item, and on one partition.
const WRITE_UNITS_PER_SECOND_PER_PARTITION: f64 = 1000.0;
const API: &str = "webhooks-api";
const DELIVERY: &str = "webhooks-delivery";
const BUCKET: &str = "65f0be0c0000000000000002";
const OWNER: &str = "lambda-cost-user";
const CREATE_EVENT: &str = include_str!("../../events/apigw-v2-create-webhook.json");
const PUBLISH_EVENT: &str = include_str!("../../events/apigw-v2-publish-batch.json");
/// The published `data`'s padding: with the envelope, a delivery body of ~1 KiB.
const DATA_PAD: usize = 860;

#[derive(Debug, Parser)]
#[command(
    name = "lambda-cost",
    about = "What a delivery costs on AWS: every DynamoDB and SQS call of the two Lambda functions counted and priced, per scenario"
)]
struct Args {
    /// Deliveries per scenario (rounded to whole publishes).
    #[arg(long, default_value_t = 200)]
    deliveries: usize,
    /// The event source mapping's `BatchSize` (template.yaml's).
    #[arg(long, default_value_t = 10)]
    batch_size: usize,
    /// The webhooks-api binary (default: next to this executable).
    #[arg(long)]
    api_binary: Option<PathBuf>,
    /// The webhooks-delivery binary (default: next to this executable).
    #[arg(long)]
    delivery_binary: Option<PathBuf>,
    /// moto_server (default: ./.venv/bin/moto_server, installed by ./infra/setup-venv.sh).
    #[arg(long)]
    moto: Option<PathBuf>,
    /// `RUST_LOG` of the functions.
    #[arg(long, default_value = "info")]
    rust_log: String,
    /// Keep the work directory (the functions' and moto's logs) and print where it is.
    #[arg(long)]
    keep_logs: bool,
    /// A label for the build measured (e.g. `before`, `after`); keys the section `--write` writes.
    #[arg(long, default_value = "")]
    label: String,
    /// Append (or replace, for the same options) a section with the results in this file.
    #[arg(long)]
    write: Option<PathBuf>,
}

#[derive(Debug, Clone)]
struct Scenario {
    name: &'static str,
    webhooks: usize,
    failing: usize,
    events_per_publish: usize,
}

const SCENARIOS: [Scenario; 4] = [
    Scenario {
        name: "1 KiB, 1 event/publish",
        webhooks: 1,
        failing: 0,
        events_per_publish: 1,
    },
    Scenario {
        name: "1 KiB, 100 events/publish",
        webhooks: 1,
        failing: 0,
        events_per_publish: 100,
    },
    Scenario {
        name: "fan-out to 10",
        webhooks: 10,
        failing: 0,
        events_per_publish: 1,
    },
    Scenario {
        name: "10 % failing, 3 retries",
        webhooks: 10,
        failing: 1,
        events_per_publish: 1,
    },
];

/// What one scenario counted.
#[derive(Debug)]
struct Outcome {
    scenario: Scenario,
    deliveries: u64,
    attempts: u64,
    publishes: u64,
    api_gateway_requests: u64,
    api_invocations: u64,
    api_ms: f64,
    delivery_invocations: u64,
    delivery_ms: f64,
    /// Billed duration (ms, each invocation rounded up) of both functions, with the AWS calls'
    /// time scaled to [`MODEL_AWS_CALL_MS`] (see [`billed_durations`]).
    billed_ms: u64,
    /// The same as measured against moto.
    measured_ms: u64,
    calls: Vec<Call>,
    /// Every KMS call of the scenario, set-up included: (caller, operation). Each scenario
    /// starts each function once, so this is per cold start.
    kms: Vec<(&'static str, String)>,
    body_bytes: usize,
    dead_letters: u64,
    /// Copies: requests a receiver got again for a delivery it already had, plus dead letters
    /// beyond one per failed delivery (at-least-once: a send SQS took but answered too late is
    /// sent again).
    copies: u64,
    stats_exact: bool,
}

impl Outcome {
    fn per_delivery(&self, v: f64) -> f64 {
        v / self.deliveries as f64
    }

    fn billed(&self) -> impl Iterator<Item = &Call> {
        self.calls.iter().filter(|c| !c.empty)
    }

    fn wcu(&self) -> f64 {
        self.billed()
            .map(|c| c.wcu + c.index_wcu.iter().map(|(_, w)| w).sum::<f64>())
            .sum()
    }

    fn index_wcu(&self) -> f64 {
        // `+ 0.0`: an empty f64 sum is -0.0, which would print as "-0.00".
        self.billed()
            .map(|c| c.index_wcu.iter().map(|(_, w)| w).sum::<f64>())
            .sum::<f64>()
            + 0.0
    }

    fn rcu(&self) -> f64 {
        self.billed().map(|c| c.rcu).sum()
    }

    fn sqs(&self) -> f64 {
        self.billed().map(|c| c.sqs_requests).sum()
    }

    fn gb_seconds(&self) -> f64 {
        self.billed_ms as f64 / 1000.0 * MEMORY_MB as f64 / 1024.0
    }

    /// (API Gateway, Lambda, SQS, DynamoDB) in dollars for the whole run.
    fn dollars(&self) -> [f64; 4] {
        [
            self.api_gateway_requests as f64 * prices::API_GATEWAY_HTTP_REQUEST,
            (self.api_invocations + self.delivery_invocations) as f64 * prices::LAMBDA_REQUEST
                + self.gb_seconds() * prices::LAMBDA_ARM_GB_SECOND,
            self.sqs() * prices::SQS_REQUEST,
            self.wcu() * prices::DYNAMODB_WRITE_UNIT + self.rcu() * prices::DYNAMODB_READ_UNIT,
        ]
    }

    /// Dollars per million deliveries.
    fn per_million(&self, dollars: f64) -> f64 {
        dollars / self.deliveries as f64 * 1e6
    }

    /// The busiest place: (label, write units per delivery) over items, or over partitions.
    fn busiest(&self, by_item: bool) -> Option<(String, f64)> {
        let mut units: HashMap<(String, String), f64> = HashMap::new();
        for c in self.billed() {
            for (place, partition, item, w) in &c.places {
                let is_index = place.contains('/');
                let key = if by_item {
                    if is_index {
                        continue;
                    }
                    (place.clone(), item.clone())
                } else {
                    (place.clone(), partition.clone())
                };
                *units.entry(key).or_default() += w;
            }
        }
        units
            .into_iter()
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|((place, key), w)| (format!("{place} {key}"), self.per_delivery(w)))
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if args.batch_size == 0 || args.deliveries == 0 {
        bail!("--batch-size and --deliveries must be at least 1");
    }
    let build = "the functions first:\n\n    cargo build -p webhooks-api -p webhooks-delivery\n\n(or --release, with `cargo run --release`), or pass --api-binary / --delivery-binary";
    let api_bin = service::find_sibling(args.api_binary.as_deref(), API, build)?;
    let delivery_bin = service::find_sibling(args.delivery_binary.as_deref(), DELIVERY, build)?;
    let moto_bin = args.moto.clone().unwrap_or_else(moto::default_moto_bin);
    let work = tempfile::Builder::new()
        .prefix("lambda-cost-")
        .tempdir()
        .context("creating the work directory")?;
    eprintln!(
        "functions: {}, {}; work directory (logs): {}",
        api_bin.display(),
        delivery_bin.display(),
        work.path().display()
    );
    let moto = Moto::start(&moto_bin, &work.path().join("moto.log")).await?;
    let result = run_all(&args, &api_bin, &delivery_bin, &moto, work.path()).await;
    if let Err(e) = moto.stop().await {
        eprintln!("stopping moto: {e:#}");
    }
    if args.keep_logs || result.is_err() {
        let dir = work.keep();
        eprintln!("kept the logs in {}", dir.display());
    }
    let outcomes = result?;
    let report = report(&args, &outcomes, &api_bin);
    println!("\n{report}");
    if let Some(path) = &args.write {
        write_section(path, &args, &report)?;
        eprintln!("wrote the results to {}", path.display());
    }
    Ok(())
}

async fn run_all(
    args: &Args,
    api_bin: &Path,
    delivery_bin: &Path,
    moto: &Moto,
    work: &Path,
) -> Result<Vec<Outcome>> {
    let meter = Meter::new(&moto.endpoint)?;
    let endpoints = Endpoints {
        api: meter.listen("api").await?,
        delivery: meter.listen("delivery").await?,
        esm: meter.listen("esm").await?,
    };
    let secrets: Vec<Secret> = (0..10)
        .map(|i| Secret::new(format!("lambda_cost_secret_{i}_4d2a9c7e1f3b")))
        .collect();
    let receiver = Arc::new(Receiver::new(BenchClock::new(), secrets.clone()));
    let recv_addr = receiver.start().await?;
    let mut outcomes = Vec::new();
    for (n, scenario) in SCENARIOS.iter().enumerate() {
        receiver.reset();
        let res = moto
            .create_resources(&format!("lc{n}"))
            .await
            .context("creating the tables and queues on moto")?;
        let out = run_scenario(
            args,
            scenario,
            &Ctx {
                api_bin,
                delivery_bin,
                res: &res,
                endpoints: &endpoints,
                meter: &meter,
                receiver: &receiver,
                recv: &format!("http://{recv_addr}"),
                secrets: &secrets,
                moto,
                work,
            },
        )
        .await
        .with_context(|| format!("scenario {:?}", scenario.name))?;
        eprintln!(
            "{}: {} deliveries, {:.2} WCU, {:.2} RCU, {:.3} SQS requests per delivery; ${:.2} per million",
            scenario.name,
            out.deliveries,
            out.per_delivery(out.wcu()),
            out.per_delivery(out.rcu()),
            out.per_delivery(out.sqs()),
            out.per_million(out.dollars().iter().sum())
        );
        outcomes.push(out);
    }
    Ok(outcomes)
}

struct Endpoints {
    api: String,
    delivery: String,
    esm: String,
}

struct Ctx<'a> {
    api_bin: &'a Path,
    delivery_bin: &'a Path,
    res: &'a Resources,
    endpoints: &'a Endpoints,
    meter: &'a Meter,
    receiver: &'a Arc<Receiver>,
    recv: &'a str,
    secrets: &'a [Secret],
    moto: &'a Moto,
    work: &'a Path,
}

async fn run_scenario(args: &Args, s: &Scenario, ctx: &Ctx<'_>) -> Result<Outcome> {
    let res = ctx.res;
    let memory = MEMORY_MB.to_string();
    let api_env = function_env(
        "dakkio-webhooks-ApiFunction",
        &memory,
        &ctx.endpoints.api,
        &args.rust_log,
        &res.env_of("ApiFunction"),
        &[("JWT_SECRET", JWT_SECRET), ("ALLOW_INSECURE_URLS", "true")],
    );
    let delivery_env = function_env(
        "dakkio-webhooks-DeliveryFunction",
        &memory,
        &ctx.endpoints.delivery,
        &args.rust_log,
        &res.env_of("DeliveryFunction"),
        &[
            ("DELIVERY_TIMEOUT_SECONDS", "30"),
            ("ALLOW_PRIVATE_TARGETS", "true"),
        ],
    );
    let mut api =
        FunctionProcess::spawn(ctx.api_bin, API, &api_env, &ctx.work.join("api.log")).await?;
    api.wait_ready(Duration::from_secs(20)).await?;
    let mut delivery = FunctionProcess::spawn(
        ctx.delivery_bin,
        DELIVERY,
        &delivery_env,
        &ctx.work.join("delivery.log"),
    )
    .await?;
    delivery.wait_ready(Duration::from_secs(20)).await?;

    // Set-up, not counted: the webhooks.
    let user = mint(&json!({
        "sub": OWNER,
        "exp": chrono::Utc::now().timestamp() + 3600,
        "buckets": [BUCKET],
    }))?;
    let mut ids = Vec::new();
    for i in 0..s.webhooks {
        // A failing receiver answers 400: retried like a 5xx, without the circuit breaker
        // deferring its deliveries for 30 s–10 min (which a 5xx would, after 5 failures).
        let path = if i < s.failing { "r" } else { "h" };
        let created = http_call(
            &mut api,
            CREATE_EVENT,
            "POST",
            "/api/webhooks",
            &user,
            Some(
                json!({
                    "bucketId": BUCKET,
                    "url": format!("{}/{path}/{i}", ctx.recv),
                    "events": ["data.received"],
                    "secret": ctx.secrets[i].expose(),
                })
                .to_string(),
            ),
            201,
        )
        .await?;
        ids.push(created["id"].as_str().context("no id")?.to_owned());
    }
    // Not priced as a delivery's cost, but its KMS calls (the cold starts') are counted.
    let setup = ctx.meter.take().calls;

    // Publishing.
    let producer = mint(&json!({
        "sub": "lambda-cost-producer",
        "exp": chrono::Utc::now().timestamp() + 3600,
        "scope": "events:publish",
        // Production fails closed: a producer publishes only to the buckets its token names.
        "buckets": [BUCKET],
    }))?;
    let events = args.deliveries.div_ceil(s.webhooks);
    let publishes = events.div_ceil(s.events_per_publish);
    let events = publishes * s.events_per_publish;
    let (mut api_ms, mut api_gateway_requests) = (0.0, 0u64);
    let mut invocations: Vec<(&str, Instant, Instant)> = Vec::new();
    for p in 0..publishes {
        let batch: Vec<Value> = (0..s.events_per_publish)
            .map(|k| {
                json!({
                    "bucketId": BUCKET,
                    "event": "data.received",
                    "data": {"publish": p, "seq": k, "temperature": 21.5, "pad": "x".repeat(DATA_PAD)},
                })
            })
            .collect();
        let body = if s.events_per_publish == 1 {
            batch[0].to_string()
        } else {
            json!({ "events": batch }).to_string()
        };
        api_gateway_requests += body
            .len()
            .div_ceil(prices::API_GATEWAY_METERED_BYTES)
            .max(1) as u64;
        let t = Instant::now();
        http_call(
            &mut api,
            PUBLISH_EVENT,
            "POST",
            "/api/events",
            &producer,
            Some(body),
            202,
        )
        .await
        .with_context(|| format!("publish {p}"))?;
        api_ms += t.elapsed().as_secs_f64() * 1e3;
        invocations.push(("api", t, Instant::now()));
    }
    let deliveries = (events * s.webhooks) as u64;

    // The event source mappings: receive, invoke, delete what succeeded — until both queues
    // hold nothing at all (visible, in flight or delayed). Counting acknowledged receipts
    // instead would stop early: a copy SQS made (a publish `SendMessageBatch` retried under
    // load) or a deferral (queued again as a new message, then acknowledged) is acknowledged
    // too. The slow lane (SlowQueue: deliveries of webhooks timing out or whose breaker is
    // open, moved there by the function) is the second mapping: its records carry its ARN.
    let sqs = SqsClient::new(&ctx.endpoints.esm)?;
    let lanes = [
        (res.queue_url.as_str(), res.queue_arn.as_str()),
        (res.slow_queue_url.as_str(), res.slow_queue_arn.as_str()),
    ];
    let (mut attempts, mut delivery_invocations, mut delivery_ms) = (0u64, 0u64, 0.0);
    let mut seen: HashSet<String> = HashSet::new();
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    let mut body_bytes = 0;
    let mut lane = 0;
    loop {
        let mut messages = Vec::new();
        let mut polled = 0;
        // The lane polled first alternates, so neither waits behind the other's backlog.
        while messages.is_empty() && polled < lanes.len() {
            lane = (lane + 1) % lanes.len();
            polled += 1;
            while messages.len() < args.batch_size {
                let want = (args.batch_size - messages.len()).min(10);
                let got = sqs.receive(lanes[lane].0, want).await?;
                if got.is_empty() {
                    break;
                }
                messages.extend(got);
            }
        }
        let (queue_url, queue_arn) = lanes[lane];
        if messages.is_empty() {
            // Not metered: moto asked directly.
            let mut left = 0;
            for (url, _) in lanes {
                left += ctx.moto.queue_total(url).await?;
            }
            if left == 0 {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "{left} messages still queued after {} s; the function saw {} of {deliveries} deliveries",
                    DRAIN_TIMEOUT.as_secs(),
                    seen.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        let event = sqs_event(&messages, queue_arn);
        let t = Instant::now();
        let reply = delivery
            .invoke(event, Duration::from_secs(120))
            .await
            .context("a delivery batch")?;
        delivery_ms += t.elapsed().as_secs_f64() * 1e3;
        invocations.push(("delivery", t, Instant::now()));
        delivery_invocations += 1;
        attempts += messages.len() as u64;
        let failed = reply.batch_item_failures(DELIVERY)?;
        let done: Vec<&Value> = messages
            .iter()
            .filter(|m| !failed.contains(m["MessageId"].as_str().unwrap_or_default()))
            .collect();
        for m in &messages {
            body_bytes = body_bytes.max(delivery_body_len(m));
            if let Some(id) = message_delivery_id(m) {
                seen.insert(id);
            }
        }
        for chunk in done.chunks(10) {
            sqs.delete_batch(queue_url, chunk).await?;
        }
    }
    if seen.len() as u64 != deliveries {
        bail!(
            "the queue is empty but the function saw {} distinct deliveries of {deliveries}",
            seen.len()
        );
    }
    let calls = ctx.meter.take().calls;
    let kms = setup
        .iter()
        .chain(&calls)
        .filter(|c| c.service == "kms")
        .map(|c| (c.caller, c.op.clone()))
        .collect();
    delivery.kill().await?;
    let (measured_ms, billed_ms) = billed_durations(&invocations, &calls);

    // Checks: every delivery arrived or was dead-lettered, and the stats are exact.
    let report = ctx.receiver.report();
    let ok_expected = (events * (s.webhooks - s.failing)) as u64;
    let failing_expected = (events * s.failing) as u64;
    if report.delivered != ok_expected
        || report.failing_deliveries != failing_expected
        || report.signature_failures > 0
    {
        bail!(
            "the receiver got {} of {ok_expected} deliveries and {} of {failing_expected} failing ones ({} signature failures)",
            report.delivered,
            report.failing_deliveries,
            report.signature_failures
        );
    }
    // At least once: a dead-letter send retried under load may leave a copy there.
    let dead_letters = ctx.moto.queue_depth(&res.dlq_url).await?;
    if dead_letters < failing_expected {
        bail!("{dead_letters} messages in the dead-letter queue, expected {failing_expected}");
    }
    let mut stats_exact = true;
    for (i, id) in ids.iter().enumerate() {
        let got = http_call(
            &mut api,
            CREATE_EVENT,
            "GET",
            &format!("/api/webhooks/{id}"),
            &user,
            None,
            200,
        )
        .await?;
        let (total, ok) = (
            got["stats"]["totalDeliveries"].as_u64().unwrap_or(0),
            got["stats"]["successfulDeliveries"].as_u64().unwrap_or(0),
        );
        let want_ok = if i < s.failing { 0 } else { events as u64 };
        if total != events as u64 || ok != want_ok {
            eprintln!(
                "note: webhook {id} shows {total} deliveries ({ok} successful), expected {events} ({want_ok})"
            );
            stats_exact = false;
        }
    }
    ctx.meter.take();
    api.kill().await?;
    Ok(Outcome {
        scenario: s.clone(),
        deliveries,
        attempts,
        publishes: publishes as u64,
        api_gateway_requests,
        api_invocations: publishes as u64,
        api_ms,
        delivery_invocations,
        delivery_ms,
        billed_ms,
        measured_ms,
        calls,
        kms,
        body_bytes,
        dead_letters,
        copies: report.duplicates + (dead_letters - failing_expected),
        stats_exact,
    })
}

/// What Lambda would bill for `invocations` (each rounded up to 1 ms): (as measured against
/// moto, as modelled). The model keeps each invocation's own time (its wall time minus the time
/// during which at least one of its AWS calls was in flight) and scales the in-flight time by
/// [`MODEL_AWS_CALL_MS`] over moto's mean call latency in this run: moto answers in tens of
/// milliseconds, DynamoDB and SQS in a few.
fn billed_durations(invocations: &[(&str, Instant, Instant)], calls: &[Call]) -> (u64, u64) {
    let mut sent: Vec<(&str, Instant, Duration)> = calls
        .iter()
        .filter_map(|c| c.sent.map(|(at, took)| (c.caller, at, took)))
        .collect();
    sent.sort_by_key(|s| s.1);
    sent.dedup_by_key(|s| s.1);
    let mean_ms = if sent.is_empty() {
        MODEL_AWS_CALL_MS
    } else {
        sent.iter().map(|s| s.2.as_secs_f64() * 1e3).sum::<f64>() / sent.len() as f64
    };
    let scale = MODEL_AWS_CALL_MS / mean_ms;
    let (mut measured, mut modelled) = (0u64, 0u64);
    for &(caller, start, end) in invocations {
        let wall = (end - start).as_secs_f64() * 1e3;
        // The union of this invocation's calls' intervals.
        let mut busy = 0.0;
        let mut reach: Option<Instant> = None;
        for &(c, at, took) in &sent {
            if c != caller || at < start || at > end {
                continue;
            }
            let (from, to) = (reach.map_or(at, |r| r.max(at)), (at + took).min(end));
            if to > from {
                busy += (to - from).as_secs_f64() * 1e3;
                reach = Some(to);
            }
        }
        measured += wall.ceil() as u64;
        modelled += ((wall - busy).max(0.0) + busy * scale).ceil() as u64;
    }
    (measured, modelled)
}

/// The `deliveryId` a queue message carries (its body's, else its attribute's).
fn message_delivery_id(m: &Value) -> Option<String> {
    m["Body"]
        .as_str()
        .and_then(|b| serde_json::from_str::<Value>(b).ok())
        .and_then(|t| t["deliveryId"].as_str().map(str::to_owned))
        .or_else(|| {
            m["MessageAttributes"]["deliveryId"]["StringValue"]
                .as_str()
                .map(str::to_owned)
        })
}

/// The length of the delivery body inside a queue message (for the report).
fn delivery_body_len(m: &Value) -> usize {
    m["Body"]
        .as_str()
        .and_then(|b| serde_json::from_str::<Value>(b).ok())
        .and_then(|t| t["body"].as_str().map(str::len))
        .unwrap_or(0)
}

/// The results as Markdown.
fn report(args: &Args, outcomes: &[Outcome], api_bin: &Path) -> String {
    let mut r = String::new();
    let (cmd, _) = service::command_line(
        "cargo run -p webhooks-bench --bin lambda-cost --",
        &["--keep-logs"],
    );
    let _ = writeln!(r, "- command: `{cmd}`");
    let _ = writeln!(
        r,
        "- date: {}; functions: `{}` and its sibling `{DELIVERY}`; event source `BatchSize` {}; DynamoDB and SQS on moto behind the meter (`bench/src/aws_meter.rs`)",
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
        api_bin.display(),
        args.batch_size
    );
    let _ = writeln!(
        r,
        "- prices (us-east-1, read 2026-12-01, `bench/src/cost.rs` `prices`): DynamoDB on-demand $0.625 per million write units, $0.125 per million read units; SQS $0.40 per million requests (64 KiB chunks); Lambda $0.20 per million requests + $0.0000133334 per GB-s (arm64, {MEMORY_MB} MB, modelled duration: see below); API Gateway HTTP API $1.00 per million requests"
    );
    let _ = writeln!(r);
    let _ = writeln!(
        r,
        "| scenario | deliveries (receipts) | DynamoDB WCU / delivery (of which indexes) | RCU / delivery | SQS requests / delivery | Lambda invocations / delivery | GB-s / delivery | $ per million: API GW | Lambda | SQS | DynamoDB | **total** | total without API GW |"
    );
    let _ = writeln!(
        r,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for o in outcomes {
        let d = o.dollars();
        let total: f64 = d.iter().sum();
        let _ = writeln!(
            r,
            "| {} | {} ({}) | {:.2} ({:.2}) | {:.2} | {:.3} | {:.3} | {:.5} | {:.2} | {:.2} | {:.2} | {:.2} | **{:.2}** | {:.2} |",
            o.scenario.name,
            o.deliveries,
            o.attempts,
            o.per_delivery(o.wcu()),
            o.per_delivery(o.index_wcu()),
            o.per_delivery(o.rcu()),
            o.per_delivery(o.sqs()),
            o.per_delivery((o.api_invocations + o.delivery_invocations) as f64),
            o.per_delivery(o.gb_seconds()),
            o.per_million(d[0]),
            o.per_million(d[1]),
            o.per_million(d[2]),
            o.per_million(d[3]),
            o.per_million(total),
            o.per_million(total - d[0]),
        );
    }
    let _ = writeln!(r);
    let _ = writeln!(
        r,
        "Reference: EventBridge API destinations charge ${:.2} per million deliveries. Lambda is priced at a modelled duration: each invocation's own time, plus the time its AWS calls were in flight scaled to {MODEL_AWS_CALL_MS:.0} ms per call (moto's mean in this run was much longer); as measured against moto it would be {:.5} GB-s per delivery in the first scenario instead of {:.5}. Measured durations: the API {:.1} ms per publish call, the delivery function {:.1} ms per batch (means over all scenarios). Every scenario: every delivery arrived with valid signatures (failing ones: {} dead letters in all), stats read back through the API {}; copies (a delivery sent or dead-lettered again: SQS is at-least-once, and a call retried under load can queue a message twice): {}.",
        prices::EVENTBRIDGE_API_DESTINATION * 1e6,
        outcomes.first().map_or(0.0, |o| o
            .per_delivery(o.measured_ms as f64 / 1000.0 * MEMORY_MB as f64 / 1024.0)),
        outcomes
            .first()
            .map_or(0.0, |o| o.per_delivery(o.gb_seconds())),
        outcomes.iter().map(|o| o.api_ms).sum::<f64>()
            / outcomes
                .iter()
                .map(|o| o.api_invocations)
                .sum::<u64>()
                .max(1) as f64,
        outcomes.iter().map(|o| o.delivery_ms).sum::<f64>()
            / outcomes
                .iter()
                .map(|o| o.delivery_invocations)
                .sum::<u64>()
                .max(1) as f64,
        outcomes.iter().map(|o| o.dead_letters).sum::<u64>(),
        if outcomes.iter().all(|o| o.stats_exact) {
            "exact"
        } else {
            "NOT exact in some scenario (see the notes printed during the run)"
        },
        outcomes
            .iter()
            .map(|o| format!("{} {}", o.scenario.name, o.copies))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(r);
    let _ = writeln!(
        r,
        "KMS calls per cold start (secrets sealed with the template's `SecretsKey`; each scenario starts each function once, set-up included; at ${:.2} per 10,000 requests + ${:.0} per key and month, us-east-1):",
        prices::KMS_REQUEST * 1e4,
        prices::KMS_KEY_MONTH
    );
    let _ = writeln!(r);
    let _ = writeln!(
        r,
        "| scenario | caller | call | calls | $ per million cold starts |"
    );
    let _ = writeln!(r, "|---|---|---|---:|---:|");
    for o in outcomes {
        let mut rows: BTreeMap<(&str, &str), u64> = BTreeMap::new();
        for (caller, op) in &o.kms {
            *rows.entry((caller, op.as_str())).or_default() += 1;
        }
        if rows.is_empty() {
            let _ = writeln!(r, "| {} | — | none | 0 | 0 |", o.scenario.name);
        }
        for ((caller, op), n) in rows {
            let _ = writeln!(
                r,
                "| {} | {caller} | {op} | {n} | {:.2} |",
                o.scenario.name,
                n as f64 * prices::KMS_REQUEST * 1e6
            );
        }
    }
    let _ = writeln!(r);
    let _ = writeln!(
        r,
        "Ceilings (DynamoDB: {WRITE_UNITS_PER_SECOND_PER_PARTITION:.0} write units per second to one item or one partition):"
    );
    let _ = writeln!(r);
    let _ = writeln!(
        r,
        "| scenario | busiest item: WCU per delivery → deliveries/s | busiest partition: WCU per delivery → deliveries/s |"
    );
    let _ = writeln!(r, "|---|---|---|");
    for o in outcomes {
        let cell = |b: Option<(String, f64)>| match b {
            Some((place, w)) => format!(
                "`{}` {w:.2} → {:.0}/s",
                place.replace('|', "/"),
                WRITE_UNITS_PER_SECOND_PER_PARTITION / w
            ),
            None => "none".into(),
        };
        let _ = writeln!(
            r,
            "| {} | {} | {} |",
            o.scenario.name,
            cell(o.busiest(true)),
            cell(o.busiest(false))
        );
    }
    let _ = writeln!(r);
    let _ = writeln!(
        r,
        "Calls per delivery (billed; idle `ReceiveMessage` polls left out):"
    );
    for o in outcomes {
        let _ = writeln!(r);
        let _ = writeln!(
            r,
            "`{}` ({} deliveries, delivery body {} bytes, {} publish calls, {} delivery batches):",
            o.scenario.name, o.deliveries, o.body_bytes, o.publishes, o.delivery_invocations
        );
        let _ = writeln!(r);
        let _ = writeln!(
            r,
            "| caller | call | target | calls | WCU | index WCU | RCU | SQS requests |"
        );
        let _ = writeln!(r, "|---|---|---|---:|---:|---:|---:|---:|");
        let mut rows: BTreeMap<(&str, &str, &str), [f64; 5]> = BTreeMap::new();
        for c in o.billed() {
            let row = rows
                .entry((c.caller, c.op.as_str(), c.target.as_str()))
                .or_default();
            row[0] += 1.0;
            row[1] += c.wcu;
            row[2] += c.index_wcu.iter().map(|(_, w)| w).sum::<f64>();
            row[3] += c.rcu;
            row[4] += c.sqs_requests;
        }
        for ((caller, op, target), v) in rows {
            let _ = writeln!(
                r,
                "| {caller} | {op} | {target} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} |",
                o.per_delivery(v[0]),
                o.per_delivery(v[1]),
                o.per_delivery(v[2]),
                o.per_delivery(v[3]),
                o.per_delivery(v[4]),
            );
        }
    }
    r
}

/// Appends the report as a section of `path`, or replaces the section of the same options.
fn write_section(path: &Path, args: &Args, report: &str) -> Result<()> {
    let (_, key) = service::command_line(
        "cargo run -p webhooks-bench --bin lambda-cost --",
        &["--keep-logs"],
    );
    let tag = if key.is_empty() {
        "lambda-cost".to_owned()
    } else {
        format!("lambda-cost {key}")
    };
    let begin = format!("<!-- {tag}:begin -->");
    let end = format!("<!-- {tag}:end -->");
    let title = if args.label.is_empty() {
        "what a delivery costs on AWS".to_owned()
    } else {
        format!("what a delivery costs on AWS ({})", args.label)
    };
    let sec = format!("{begin}\n### `{tag}`: {title}\n\n{report}{end}\n");
    report::write_section(path, &begin, &end, &sec)
}
