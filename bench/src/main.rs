//! `webhooks-bench`: the delivery benchmark of the local mode against the machine's HTTP ceiling
//! (see BENCHMARKS.md). A command, not a test:
//!
//! ```sh
//! cargo build --release -p webhooks-local
//! cargo run --release -p webhooks-bench -- --scenario all --write BENCHMARKS.md
//! ```
//!
//! For each scenario, in one run: start the release `dakkio-webhooks serve` on a fresh data
//! directory; start a receiver in this process that verifies every signature and records each
//! delivery's arrival; create the webhooks; publish the events (batches of up to 100, over a few
//! connections, paced or as fast as accepted) with the publish time in `data.sentAtNanos`; wait
//! until every delivery arrived (and, with failing receivers, until the stats show every
//! delivery final); read the service's CPU time and peak RSS from `/proc`; stop the service;
//! then measure the ceiling: a plain keep-alive HTTP client posting the same kind of signed
//! bodies to the same receiver at the same concurrency.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use clap::{Parser, ValueEnum};
use serde_json::Value;
use webhooks_core::delivery::{DeliveryTask, envelope, request_headers};
use webhooks_core::webhook::Secret;
use webhooks_core::{BucketId, DeliveryId, EventType, Timestamp, WebhookId, jsjson};

use webhooks_bench::receiver::{BenchClock, Receiver};
use webhooks_bench::report;
use webhooks_bench::service::{self, Machine, ServeOptions, Service};

mod noisy;

const BUCKET: &str = "65f0be0c0000000000000001";
/// `POST /api/events` refuses bodies over 256 KiB; batches stay under this.
const MAX_BATCH_BYTES: usize = 240 * 1024;

#[derive(Debug, Parser)]
#[command(
    name = "webhooks-bench",
    about = "Delivery benchmark of the local mode against the machine's HTTP ceiling"
)]
struct Args {
    /// Which scenario(s) to run.
    #[arg(long, value_enum, default_value_t = ScenarioArg::One)]
    scenario: ScenarioArg,
    /// Events to publish (default: 20,000 for one, 10,000 for latency, 5,000 for fanout10,
    /// 300 for fanout100-failing). Ignored with `--scenario all`.
    #[arg(long)]
    events: Option<u64>,
    /// Publish at this many events per second (default: as fast as accepted; latency: 1,000).
    /// Ignored with `--scenario all`.
    #[arg(long, conflicts_with = "max")]
    rate: Option<u64>,
    /// Publish as fast as the service accepts (the default, except for `latency`).
    #[arg(long)]
    max: bool,
    /// Size of each delivery's body.
    #[arg(long, value_enum, default_value_t = Payload::OneK)]
    payload: Payload,
    /// The service's deliveries in flight (`serve --concurrency`), and the ceiling client's
    /// concurrent requests.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Concurrent publishing connections.
    #[arg(long, default_value_t = 4)]
    publishers: usize,
    /// Events per publish call (default: 100 when publishing at full speed, rate/100 when
    /// paced, i.e. 100 calls a second; capped by the API's 256 KiB body limit).
    #[arg(long)]
    batch: Option<usize>,
    /// How long to wait for the deliveries after the last publish.
    #[arg(long, default_value_t = 600)]
    timeout_secs: u64,
    /// How long each of the ceiling client's three rounds runs (after a 0.5 s warm-up); the
    /// best round counts.
    #[arg(long, default_value_t = 5)]
    ceiling_secs: u64,
    /// The `dakkio-webhooks` binary (default: next to this executable, i.e. target/release).
    #[arg(long)]
    binary: Option<PathBuf>,
    /// Where the fresh data directories go (default: the system's temp directory).
    #[arg(long)]
    data_parent: Option<PathBuf>,
    /// `RUST_LOG` for the service (default: its own default, info: a log line per delivery).
    #[arg(long)]
    service_log: Option<String>,
    /// Before each scenario, wait up to this many seconds for the machine to be quiet (other
    /// processes using under a quarter of a core), so that they do not skew the figures.
    #[arg(long, default_value_t = 300)]
    wait_quiet_secs: u64,
    /// Append (or replace, for the same options) a section with the results in this file.
    #[arg(long)]
    write: Option<PathBuf>,
    /// noisy-neighbour: how long each phase publishes (at `--rate`, default 100 events/s, to
    /// each webhook).
    #[arg(long, default_value_t = 60)]
    duration_secs: u64,
    /// noisy-neighbour: how long the hanging receiver takes to answer each request (the
    /// service's delivery timeout is 30 s: 30 or more is a receiver that never answers in time).
    #[arg(long, default_value_t = 30)]
    hang_secs: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ScenarioArg {
    /// One webhook, as fast as accepted.
    One,
    /// One webhook at 1,000 events/s: publish→arrival latency.
    Latency,
    /// Ten webhooks on one bucket.
    Fanout10,
    /// A hundred webhooks on one bucket, 5 of them answering 500 (1 retry after 1 s).
    #[value(name = "fanout100-failing")]
    Fanout100Failing,
    /// All of the above, each with its defaults.
    All,
    /// A healthy webhook's publish→arrival latency alone, then beside a webhook of another
    /// bucket whose receiver hangs (DESIGN.md §7): `--rate` events/s to each (default 100) for
    /// `--duration-secs`, the hanging one answering after `--hang-secs`. Not part of `all`.
    #[value(name = "noisy-neighbour")]
    NoisyNeighbour,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Payload {
    #[value(name = "1k")]
    OneK,
    #[value(name = "64k")]
    SixtyFourK,
}

impl Payload {
    fn body_bytes(self) -> usize {
        match self {
            Payload::OneK => 1024,
            Payload::SixtyFourK => 64 * 1024,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Payload::OneK => "1k",
            Payload::SixtyFourK => "64k",
        }
    }
}

#[derive(Debug, Clone)]
struct Scenario {
    name: &'static str,
    payload: Payload,
    webhooks: usize,
    /// The last `failing` webhooks answer 500.
    failing: usize,
    events: u64,
    rate: Option<u64>,
}

impl Scenario {
    fn defaults(which: ScenarioArg) -> Self {
        let (name, webhooks, failing, events, rate) = match which {
            ScenarioArg::One | ScenarioArg::All | ScenarioArg::NoisyNeighbour => {
                ("one", 1, 0, 20_000, None)
            }
            ScenarioArg::Latency => ("latency", 1, 0, 10_000, Some(1_000)),
            ScenarioArg::Fanout10 => ("fanout10", 10, 0, 5_000, None),
            ScenarioArg::Fanout100Failing => ("fanout100-failing", 100, 5, 300, None),
        };
        Self {
            name,
            payload: Payload::OneK,
            webhooks,
            failing,
            events,
            rate,
        }
    }

    /// The same scenario with 64 KiB bodies and `events` events.
    fn large(mut self, events: u64) -> Self {
        self.payload = Payload::SixtyFourK;
        self.events = events;
        self
    }

    /// The scenario's name in reports: with its payload when it is not the default 1 KiB.
    fn label(&self) -> String {
        match self.payload {
            Payload::OneK => self.name.to_owned(),
            p => format!("{} ({})", self.name, p.name()),
        }
    }

    fn is_failing(&self, i: usize) -> bool {
        i >= self.webhooks - self.failing
    }

    fn succeeding(&self) -> usize {
        self.webhooks - self.failing
    }
}

/// What one scenario measured.
#[derive(Debug, Clone, Default)]
struct Outcome {
    scenario: String,
    webhooks: usize,
    failing: usize,
    rate: Option<u64>,
    events_accepted: u64,
    publish_errors: u64,
    deliveries: u64,
    delivered: u64,
    failed_final: u64,
    failing_requests: u64,
    failing_deliveries: u64,
    duplicates: u64,
    complete: bool,
    accept_rate: f64,
    deliveries_per_sec: f64,
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    service_cpu_secs: f64,
    service_peak_rss_mib: f64,
    bench_cpu_secs: f64,
    signature_failures: u64,
    ceiling_rps: f64,
    /// Each ceiling round's requests/s (`ceiling_rps` is the best).
    ceiling_rounds: Vec<f64>,
    /// CPU used meanwhile by other processes on the machine, in cores (averaged over the run).
    other_cores: f64,
    /// The same, during the ceiling run.
    ceiling_other_cores: f64,
    /// The data directory's disk, probed just before the run.
    fsync_per_sec: f64,
}

impl Outcome {
    fn cpu_per_1k(&self) -> f64 {
        if self.deliveries == 0 {
            return 0.0;
        }
        self.service_cpu_secs * 1000.0 / self.deliveries as f64
    }

    fn ratio(&self) -> f64 {
        if self.ceiling_rps > 0.0 {
            self.deliveries_per_sec / self.ceiling_rps
        } else {
            0.0
        }
    }
}

#[derive(Debug)]
struct Ctx {
    args: Args,
    bin: PathBuf,
    clock: BenchClock,
    ticks: u64,
    data_parent: PathBuf,
}

impl Ctx {
    /// `serve` as the flags say (concurrency, log level; 30 s delivery timeout) on a fresh data
    /// directory `<prefix>…` under `data_parent`; the directory goes when the guard is dropped.
    fn start_service(&self, prefix: &str) -> Result<(tempfile::TempDir, Service)> {
        let data_dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(&self.data_parent)?;
        let svc = tokio::task::block_in_place(|| {
            Service::start(
                &self.bin,
                data_dir.path(),
                &ServeOptions {
                    concurrency: self.args.concurrency,
                    delivery_timeout_secs: 30,
                    rust_log: self.args.service_log.clone(),
                },
            )
        })?;
        Ok((data_dir, svc))
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let bin = service::find_binary(args.binary.as_deref())?;
    let data_parent = args.data_parent.clone().unwrap_or_else(std::env::temp_dir);
    let machine = Machine::read(&data_parent);
    let scenarios = if args.scenario == ScenarioArg::NoisyNeighbour {
        Vec::new()
    } else {
        scenarios(&args)
    };
    let ctx = Ctx {
        args,
        bin,
        clock: BenchClock::new(),
        ticks: service::clock_ticks_per_sec(),
        data_parent,
    };
    eprintln!(
        "machine: {} × {} ({} cores), {:.1} GiB, Linux {}, data dir on {}",
        machine.nproc,
        machine.cpu_model,
        machine.nproc,
        machine.mem_gib,
        machine.kernel,
        machine.data_fs
    );
    eprintln!("service: {}", ctx.bin.display());
    if ctx.args.scenario == ScenarioArg::NoisyNeighbour {
        return noisy::run(&ctx, &machine).await;
    }

    let mut outcomes = Vec::new();
    for s in &scenarios {
        let o = run_scenario(&ctx, s)
            .await
            .with_context(|| format!("scenario {}", s.label()))?;
        print_outcome(&o);
        outcomes.push(o);
    }
    let table = table(&outcomes);
    println!("\n{table}");
    if let Some(path) = &ctx.args.write {
        write_section(path, &ctx, &machine, &table, &outcomes)?;
        eprintln!("wrote the results to {}", path.display());
    }
    Ok(())
}

fn scenarios(args: &Args) -> Vec<Scenario> {
    if args.scenario == ScenarioArg::All {
        if args.events.is_some() || args.rate.is_some() || args.max {
            eprintln!(
                "note: --events, --rate and --max are ignored with --scenario all (each scenario runs with its defaults)"
            );
        }
        let mut all: Vec<Scenario> = [
            ScenarioArg::One,
            ScenarioArg::Latency,
            ScenarioArg::Fanout10,
            ScenarioArg::Fanout100Failing,
        ]
        .into_iter()
        .map(Scenario::defaults)
        .collect();
        // 64 KiB bodies: fewer events (each delivery writes ~64 KiB to the store three times).
        all.push(Scenario::defaults(ScenarioArg::One).large(2_000));
        all.push(Scenario::defaults(ScenarioArg::Fanout10).large(500));
        return all;
    }
    let mut s = Scenario::defaults(args.scenario);
    s.payload = args.payload;
    if let Some(n) = args.events {
        s.events = n.max(1);
    }
    if args.max {
        s.rate = None;
    } else if let Some(r) = args.rate {
        s.rate = Some(r.max(1));
    }
    vec![s]
}

/// The data a producer publishes: the publish time first (the receiver looks for it), padded
/// with `pad` filler characters.
fn event_data(sent_at_nanos: u64, seq: u64, pad: usize) -> String {
    format!(
        r#"{{"sentAtNanos":{sent_at_nanos},"seq":{seq},"dataSourceId":"65f0a1b2c3d4e5f6a7b8c9d0","dataSourceName":"bench sensor","dataPoint":{{"timestamp":"2024-01-15T10:30:00Z","values":{{"temperature":22.5,"humidity":61.25}}}},"pad":"{}"}}"#,
        "x".repeat(pad)
    )
}

/// A delivery body as the service renders it.
fn render_body(webhook: &WebhookId, delivery: &DeliveryId, data: &str) -> Result<String> {
    let data: Value = serde_json::from_str(data)?;
    let env = envelope(
        EventType::DataReceived,
        Timestamp::from_unix(1_705_314_600),
        webhook,
        &BucketId::parse(BUCKET)?,
        delivery,
        data,
    );
    Ok(jsjson::to_string(&env))
}

/// Filler so that a delivery's body is about `target` bytes (the publish time's digits vary).
fn pad_for(target: usize) -> Result<usize> {
    let w = WebhookId::generate(1);
    let d = DeliveryId::generate(1);
    let base = render_body(&w, &d, &event_data(100_000_000_000, 10_000, 0))?.len();
    Ok(target.saturating_sub(base))
}

fn secret_for(i: usize) -> Secret {
    Secret::new(format!("bench_secret_{i:03}_9f1c2a7e5b3d"))
}

async fn run_scenario(ctx: &Ctx, s: &Scenario) -> Result<Outcome> {
    let args = &ctx.args;
    eprintln!(
        "\n== {}: {} webhook(s){}, {} events, {}, payload {}, concurrency {}",
        s.label(),
        s.webhooks,
        if s.failing > 0 {
            format!(" ({} answering 500)", s.failing)
        } else {
            String::new()
        },
        s.events,
        s.rate.map_or("as fast as accepted".to_owned(), |r| format!(
            "{r} events/s"
        )),
        s.payload.name(),
        args.concurrency
    );
    service::wait_quiet(args.wait_quiet_secs).await;
    let fsync_per_sec = tokio::task::block_in_place(|| {
        service::fsync_rate(&ctx.data_parent, Duration::from_secs(2))
    })?;
    eprintln!("data dir's disk: {fsync_per_sec:.0} fsync/s (4 KiB write + fsync, 2 s probe)");
    let secrets: Vec<Secret> = (0..s.webhooks).map(secret_for).collect();
    let receiver = Arc::new(Receiver::new(ctx.clock, secrets.clone()));
    let recv_addr = receiver.start().await?;

    let (_data_dir, svc) = ctx.start_service("webhooks-bench-")?;
    let pid = svc.pid.to_string();
    let api = reqwest::Client::builder().no_proxy().http1_only().build()?;

    let ids = create_webhooks(&api, &svc, s, &secrets, recv_addr).await?;

    // Publishing.
    let pad = pad_for(s.payload.body_bytes())?;
    let event_len = event_data(0, 0, pad).len() + 80;
    let max_batch = (MAX_BATCH_BYTES / event_len).clamp(1, 100);
    let batch = args
        .batch
        .unwrap_or_else(|| s.rate.map_or(100, |r| (r / 100).max(1) as usize))
        .clamp(1, max_batch);
    let batches = s.events.div_ceil(batch as u64);
    let period = s
        .rate
        .map(|r| Duration::from_secs_f64(batch as f64 / r as f64));
    let counters = Arc::new(PublishCounters::default());
    let cpu_before = service::cpu_ticks(&pid).context("reading the service's /proc stat")?;
    let bench_cpu_before = service::cpu_ticks("self").unwrap_or(0);
    let machine_before = service::machine_ticks().unwrap_or((0, 0)).0;
    let started = Instant::now();
    let publish_start_ns = ctx.clock.now_ns();

    let progress = tokio::spawn(progress(
        s.label(),
        s.events,
        s.events * s.succeeding() as u64,
        counters.clone(),
        receiver.clone(),
        pid.clone(),
        ctx.ticks,
    ));

    let next = Arc::new(AtomicU64::new(0));
    let mut publishers = Vec::new();
    for _ in 0..args.publishers.max(1) {
        let p = Publisher {
            bucket: BUCKET,
            client: api.clone(),
            url: format!("{}/api/events", svc.base),
            token: svc.producer_token.clone(),
            clock: ctx.clock,
            next: next.clone(),
            counters: counters.clone(),
            events: s.events,
            batch,
            batches,
            period,
            started: tokio::time::Instant::from_std(started),
            pad,
        };
        publishers.push(tokio::spawn(p.run()));
    }
    for p in publishers {
        p.await??;
    }
    let publish_secs = started.elapsed().as_secs_f64();
    let accepted = counters.accepted.load(Ordering::SeqCst);
    let errors = counters.errors.load(Ordering::SeqCst);

    // Waiting for the deliveries: every one to a succeeding receiver arrives; then every
    // webhook's stats show all its deliveries final (failing ones: after their retry).
    let deadline = Instant::now() + Duration::from_secs(args.timeout_secs);
    let (complete, final_total, failed_final) = wait_until_final(
        &api,
        &svc,
        &ids,
        &receiver,
        accepted,
        accepted * s.succeeding() as u64,
        deadline,
    )
    .await?;
    let cpu_after = service::cpu_ticks(&pid).context("reading the service's /proc stat")?;
    let bench_cpu_after = service::cpu_ticks("self").unwrap_or(0);
    let machine_after = service::machine_ticks().unwrap_or((0, 0)).0;
    let run_secs = started.elapsed().as_secs_f64();
    let peak_rss_kib = service::status_kib(&pid, "VmHWM").unwrap_or(0);
    progress.abort();
    tokio::task::block_in_place(|| svc.stop())?;

    let r = receiver.report();
    let pct = |p: f64| -> f64 {
        if r.latencies_ns.is_empty() {
            return 0.0;
        }
        let i = ((r.latencies_ns.len() - 1) as f64 * p).round() as usize;
        r.latencies_ns[i] as f64 / 1e6
    };
    let e2e_secs = r
        .last_arrival_ns
        .map_or(0.0, |l| l.saturating_sub(publish_start_ns) as f64 / 1e9);
    let deliveries = accepted * s.webhooks as u64;
    let mut o = Outcome {
        scenario: s.label(),
        webhooks: s.webhooks,
        failing: s.failing,
        rate: s.rate,
        events_accepted: accepted,
        publish_errors: errors,
        deliveries,
        delivered: r.delivered,
        failed_final,
        failing_requests: r.failing_requests,
        failing_deliveries: r.failing_deliveries,
        duplicates: r.duplicates,
        complete: complete && final_total == deliveries,
        accept_rate: accepted as f64 / counters.last_accept_secs().max(1e-9),
        deliveries_per_sec: if e2e_secs > 0.0 {
            r.delivered as f64 / e2e_secs
        } else {
            0.0
        },
        p50_ms: pct(0.50),
        p90_ms: pct(0.90),
        p99_ms: pct(0.99),
        max_ms: pct(1.0),
        service_cpu_secs: (cpu_after - cpu_before) as f64 / ctx.ticks as f64,
        service_peak_rss_mib: peak_rss_kib as f64 / 1024.0,
        bench_cpu_secs: bench_cpu_after.saturating_sub(bench_cpu_before) as f64 / ctx.ticks as f64,
        signature_failures: r.signature_failures,
        ceiling_rps: 0.0,
        ceiling_rounds: Vec::new(),
        other_cores: 0.0,
        ceiling_other_cores: 0.0,
        fsync_per_sec,
    };
    let others = machine_after.saturating_sub(machine_before) as f64 / ctx.ticks as f64
        - o.service_cpu_secs
        - o.bench_cpu_secs;
    o.other_cores = (others / run_secs.max(1e-9)).max(0.0);
    if o.other_cores > 0.25 {
        eprintln!(
            "warning: other processes kept {:.2} cores busy during this run; its figures are skewed",
            o.other_cores
        );
    }
    eprintln!(
        "[{}] published {accepted} events in {publish_secs:.1} s; {} delivered, {} failed for good; {} signature failures",
        s.label(),
        r.delivered,
        failed_final,
        r.signature_failures
    );

    measure_ceiling(ctx, s, &secrets, recv_addr, pad, &receiver, &mut o).await?;
    Ok(o)
}

/// The scenario's webhooks, one per secret, on the receiver's succeeding (`/h/<i>`) or failing
/// (`/f/<i>`, one retry after 1 s) path; their ids in order.
async fn create_webhooks(
    api: &reqwest::Client,
    svc: &Service,
    s: &Scenario,
    secrets: &[Secret],
    recv_addr: SocketAddr,
) -> Result<Vec<String>> {
    let mut ids = Vec::new();
    for (i, secret) in secrets.iter().enumerate() {
        let failing = s.is_failing(i);
        let mut body = serde_json::json!({
            "bucketId": BUCKET,
            "url": format!("http://{recv_addr}/{}/{i}", if failing { "f" } else { "h" }),
            "events": ["data.received"],
            "secret": secret.expose(),
        });
        if failing {
            body["retryConfig"] = serde_json::json!({"maxRetries": 1, "initialDelaySeconds": 1});
        }
        let id = svc
            .create_webhook(api, &body)
            .await
            .with_context(|| format!("webhook {i}"))?;
        ids.push(id);
    }
    Ok(ids)
}

/// Waits until the receiver has `expected_success` deliveries and then until every webhook's
/// stats show `accepted` final deliveries, or until `deadline`. Answers whether all arrived and
/// the stats' Σ totalDeliveries and Σ failedDeliveries.
async fn wait_until_final(
    api: &reqwest::Client,
    svc: &Service,
    ids: &[String],
    receiver: &Receiver,
    accepted: u64,
    expected_success: u64,
    deadline: Instant,
) -> Result<(bool, u64, u64)> {
    let mut complete = true;
    while receiver.delivered.load(Ordering::SeqCst) < expected_success {
        if Instant::now() > deadline {
            complete = false;
            eprintln!("timed out waiting for the deliveries");
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut final_total = 0;
    let mut failed_final = 0;
    if complete {
        loop {
            let (total, failed, all_final) = stats(api, svc, ids, accepted)
                .await
                .context("reading stats")?;
            final_total = total;
            failed_final = failed;
            if all_final {
                break;
            }
            if Instant::now() > deadline {
                complete = false;
                eprintln!("timed out waiting for the stats to show every delivery final");
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok((complete, final_total, failed_final))
}

/// The ceiling, with the service stopped: the same receiver, the same kind of bodies (best of
/// three rounds, into `o` with how busy the rest of the machine was).
async fn measure_ceiling(
    ctx: &Ctx,
    s: &Scenario,
    secrets: &[Secret],
    recv_addr: SocketAddr,
    pad: usize,
    receiver: &Receiver,
    o: &mut Outcome,
) -> Result<()> {
    receiver.reset();
    service::wait_quiet(ctx.args.wait_quiet_secs.min(120)).await;
    let machine_before = service::machine_ticks().unwrap_or((0, 0)).0;
    let bench_cpu_before = service::cpu_ticks("self").unwrap_or(0);
    let started = Instant::now();
    // Three rounds, the best one counts: the ceiling is what the machine can do, and a round
    // can be disturbed (by other processes, or the kernel still writing back the run's data).
    for _ in 0..3 {
        let rps = ceiling(ctx, s, secrets, recv_addr, pad).await?;
        o.ceiling_rounds.push(rps);
        o.ceiling_rps = o.ceiling_rps.max(rps);
    }
    let others = (service::machine_ticks().unwrap_or((0, 0)).0 - machine_before)
        .saturating_sub(service::cpu_ticks("self").unwrap_or(0) - bench_cpu_before)
        as f64
        / ctx.ticks as f64;
    o.ceiling_other_cores = others / started.elapsed().as_secs_f64();
    if o.ceiling_other_cores > 0.25 {
        eprintln!(
            "warning: other processes kept {:.2} cores busy during the ceiling run; it is skewed",
            o.ceiling_other_cores
        );
    }
    let cr = receiver.report();
    eprintln!(
        "[{}] ceiling: the receiver verified {} requests ({} distinct bodies), {} signature failures",
        s.label(),
        cr.delivered + cr.duplicates,
        cr.delivered,
        cr.signature_failures
    );
    o.signature_failures += cr.signature_failures;
    Ok(())
}

#[derive(Debug, Default)]
struct PublishCounters {
    sent: AtomicU64,
    accepted: AtomicU64,
    errors: AtomicU64,
    /// Since the start, when the last accepted call returned (µs).
    last_accept_us: AtomicU64,
}

impl PublishCounters {
    fn last_accept_secs(&self) -> f64 {
        self.last_accept_us.load(Ordering::SeqCst) as f64 / 1e6
    }
}

#[derive(Debug)]
struct Publisher {
    /// The bucket every event goes to.
    bucket: &'static str,
    client: reqwest::Client,
    url: String,
    token: String,
    clock: BenchClock,
    next: Arc<AtomicU64>,
    counters: Arc<PublishCounters>,
    events: u64,
    batch: usize,
    batches: u64,
    period: Option<Duration>,
    started: tokio::time::Instant,
    pad: usize,
}

impl Publisher {
    async fn run(self) -> Result<()> {
        let filler = "x".repeat(self.pad);
        let mut body = String::with_capacity(self.batch * (self.pad + 400));
        loop {
            let idx = self.next.fetch_add(1, Ordering::SeqCst);
            if idx >= self.batches {
                return Ok(());
            }
            if let Some(p) = self.period {
                tokio::time::sleep_until(self.started + p.mul_f64(idx as f64)).await;
            }
            let first = idx * self.batch as u64;
            let last = (first + self.batch as u64).min(self.events);
            let sent = self.clock.now_ns();
            body.clear();
            body.push_str(r#"{"events":["#);
            for seq in first..last {
                if seq > first {
                    body.push(',');
                }
                let _ = write!(
                    body,
                    r#"{{"bucketId":"{}","event":"data.received","data":{{"sentAtNanos":{sent},"seq":{seq},"dataSourceId":"65f0a1b2c3d4e5f6a7b8c9d0","dataSourceName":"bench sensor","dataPoint":{{"timestamp":"2024-01-15T10:30:00Z","values":{{"temperature":22.5,"humidity":61.25}}}},"pad":"{filler}"}}}}"#,
                    self.bucket
                );
            }
            body.push_str("]}");
            let n = last - first;
            self.counters.sent.fetch_add(n, Ordering::Relaxed);
            let res = self
                .client
                .post(&self.url)
                .bearer_auth(&self.token)
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await;
            match res {
                Ok(res) if res.status().as_u16() == 202 => {
                    let _ = res.bytes().await;
                    self.counters.accepted.fetch_add(n, Ordering::SeqCst);
                    self.counters
                        .last_accept_us
                        .fetch_max(self.started.elapsed().as_micros() as u64, Ordering::SeqCst);
                }
                Ok(res) => {
                    let status = res.status();
                    let text = res.text().await.unwrap_or_default();
                    if self.counters.errors.fetch_add(n, Ordering::SeqCst) < 1_000 {
                        eprintln!(
                            "publish of {n} events: HTTP {status}: {}",
                            text.chars().take(200).collect::<String>()
                        );
                    }
                }
                Err(e) => {
                    if self.counters.errors.fetch_add(n, Ordering::SeqCst) < 1_000 {
                        eprintln!("publish of {n} events failed: {e}");
                    }
                }
            }
        }
    }
}

/// Σ totalDeliveries, Σ failedDeliveries over the webhooks, and whether each has `expected`.
async fn stats(
    api: &reqwest::Client,
    svc: &Service,
    ids: &[String],
    expected: u64,
) -> Result<(u64, u64, bool)> {
    let mut total = 0;
    let mut failed = 0;
    let mut all = true;
    for id in ids {
        let res = api
            .get(format!("{}/api/webhooks/{id}", svc.base))
            .bearer_auth(&svc.user_token)
            .send()
            .await?;
        let v: Value = serde_json::from_str(&res.text().await?)?;
        let t = v["stats"]["totalDeliveries"].as_u64().unwrap_or(0);
        total += t;
        failed += v["stats"]["failedDeliveries"].as_u64().unwrap_or(0);
        all &= t >= expected;
    }
    Ok((total, failed, all))
}

/// A line a second on stderr while a scenario runs.
async fn progress(
    name: String,
    events: u64,
    expected: u64,
    counters: Arc<PublishCounters>,
    receiver: Arc<Receiver>,
    pid: String,
    ticks: u64,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let started = Instant::now();
    let (mut last_delivered, mut last_accepted) = (0, 0);
    let mut last_cpu = service::cpu_ticks(&pid).unwrap_or(0);
    loop {
        tick.tick().await;
        let delivered = receiver.delivered.load(Ordering::Relaxed);
        let accepted = counters.accepted.load(Ordering::Relaxed);
        let cpu = service::cpu_ticks(&pid).unwrap_or(last_cpu);
        let rss = service::status_kib(&pid, "VmRSS").unwrap_or(0);
        eprintln!(
            "[{name}] {:>4.0}s  published {accepted:>7}/{events} (+{:>5}/s)  delivered {delivered:>8}/{expected} (+{:>6}/s)  failing-path {:>5}  sig-failures {}  service cpu {:>3.0}%  rss {:>4} MiB",
            started.elapsed().as_secs_f64(),
            accepted - last_accepted,
            delivered - last_delivered,
            receiver.failing_requests.load(Ordering::Relaxed),
            receiver.signature_failures.load(Ordering::Relaxed),
            (cpu - last_cpu) as f64 * 100.0 / ticks as f64,
            rss / 1024,
        );
        (last_delivered, last_accepted, last_cpu) = (delivered, accepted, cpu);
    }
}

/// Requests/s of a plain keep-alive client posting signed delivery bodies to the receiver's
/// succeeding paths at the service's concurrency.
async fn ceiling(
    ctx: &Ctx,
    s: &Scenario,
    secrets: &[Secret],
    recv_addr: std::net::SocketAddr,
    pad: usize,
) -> Result<f64> {
    // The same client settings as the service's sender.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(64)
        .tcp_nodelay(true)
        .no_proxy()
        .build()?;
    let pool_size = if s.payload == Payload::OneK {
        4096
    } else {
        256
    };
    let now = Timestamp::from_unix(chrono::Utc::now().timestamp());
    let mut pool = Vec::with_capacity(pool_size);
    for k in 0..pool_size {
        let i = k % s.succeeding();
        let webhook = WebhookId::generate(now.unix());
        let delivery = DeliveryId::generate(now.unix());
        // sentAtNanos 0: the receiver keeps no latency for these.
        let body = render_body(&webhook, &delivery, &event_data(0, k as u64, pad))?;
        let task = DeliveryTask {
            delivery_id: delivery,
            webhook_id: webhook,
            event: EventType::DataReceived,
            generation: 0,
            attempts_made: 0,
            body,
            created_at: now,
        };
        let mut headers = reqwest::header::HeaderMap::new();
        for (name, value) in request_headers(&task, &[&secrets[i]], 1, now) {
            headers.insert(name, value.parse()?);
        }
        pool.push((
            format!("http://{recv_addr}/h/{i}"),
            headers,
            Bytes::from(task.body),
        ));
    }
    let pool = Arc::new(pool);
    let warm = Duration::from_millis(500);
    let run = Duration::from_secs(ctx.args.ceiling_secs.max(1));
    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let counted = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..ctx.args.concurrency.max(1) {
        let (client, pool, next, counted, failed) = (
            client.clone(),
            pool.clone(),
            next.clone(),
            counted.clone(),
            failed.clone(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let elapsed = started.elapsed();
                if elapsed >= warm + run {
                    break;
                }
                let k = next.fetch_add(1, Ordering::Relaxed) as usize % pool.len();
                let (url, headers, body) = &pool[k];
                let res = client
                    .post(url)
                    .headers(headers.clone())
                    .body(body.clone())
                    .send()
                    .await;
                let ok = match res {
                    Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                    Err(_) => false,
                };
                let done = started.elapsed();
                if done >= warm && done < warm + run {
                    if ok {
                        counted.fetch_add(1, Ordering::Relaxed);
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let n = counted.load(Ordering::SeqCst);
    let rps = n as f64 / run.as_secs_f64();
    eprintln!(
        "[{}] ceiling: {n} requests in {:.1} s at concurrency {} → {rps:.0} req/s ({} failed)",
        s.label(),
        run.as_secs_f64(),
        ctx.args.concurrency,
        failed.load(Ordering::SeqCst)
    );
    Ok(rps)
}

fn print_outcome(o: &Outcome) {
    println!("\n{}:", o.scenario);
    println!(
        "  publish accept rate          {:>10.0} events/s{}",
        o.accept_rate,
        o.rate
            .map_or(String::new(), |r| format!(" (paced at {r}/s)"))
    );
    println!(
        "  end-to-end                   {:>10.0} deliveries/s ({} of {} delivered, {} failed for good{})",
        o.deliveries_per_sec,
        o.delivered,
        o.deliveries,
        o.failed_final,
        if o.complete { "" } else { "; INCOMPLETE" }
    );
    println!(
        "  publish→arrival              p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        o.p50_ms, o.p90_ms, o.p99_ms, o.max_ms
    );
    println!(
        "  service CPU                  {:>10.3} s per 1,000 deliveries ({:.1} µs each; {:.1} s in all)",
        o.cpu_per_1k(),
        o.cpu_per_1k() * 1000.0,
        o.service_cpu_secs
    );
    println!(
        "  service peak RSS             {:>10.1} MiB",
        o.service_peak_rss_mib
    );
    println!(
        "  bench CPU (publish+receive)  {:>10.1} s",
        o.bench_cpu_secs
    );
    println!(
        "  signature failures           {:>10}",
        o.signature_failures
    );
    println!("  duplicates                   {:>10}", o.duplicates);
    if o.failing > 0 {
        println!(
            "  failing receivers            {:>10} requests for {} distinct deliveries (2 attempts × {} expected)",
            o.failing_requests,
            o.failing_deliveries,
            o.events_accepted * o.failing as u64
        );
    }
    if o.publish_errors > 0 {
        println!(
            "  publish errors               {:>10} events",
            o.publish_errors
        );
    }
    println!(
        "  ceiling                      {:>10.0} req/s",
        o.ceiling_rps
    );
    println!("  service / ceiling            {:>10.2}", o.ratio());
}

fn table(outcomes: &[Outcome]) -> String {
    let mut t = String::new();
    t.push_str("| scenario | webhooks | events | deliveries | publish accepted (events/s) | end-to-end (deliveries/s) | publish→arrival p50 / p90 / p99 (ms) | service CPU per 1,000 deliveries (s) | service peak RSS (MiB) | signature failures | ceiling (req/s) | service / ceiling |\n");
    t.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for o in outcomes {
        let name = match o.rate {
            Some(r) => format!("{} ({r} events/s)", o.scenario),
            None => o.scenario.clone(),
        };
        let hooks = if o.failing > 0 {
            format!("{} ({} failing)", o.webhooks, o.failing)
        } else {
            o.webhooks.to_string()
        };
        let _ = writeln!(
            t,
            "| {name}{} | {hooks} | {} | {} | {:.0} | {:.0} | {:.1} / {:.1} / {:.1} | {:.3} | {:.1} | {} | {:.0} | {:.2} |",
            if o.complete { "" } else { " (INCOMPLETE)" },
            o.events_accepted,
            o.deliveries,
            o.accept_rate,
            o.deliveries_per_sec,
            o.p50_ms,
            o.p90_ms,
            o.p99_ms,
            o.cpu_per_1k(),
            o.service_peak_rss_mib,
            o.signature_failures,
            o.ceiling_rps,
            o.ratio(),
        );
    }
    t
}

fn write_section(
    path: &Path,
    ctx: &Ctx,
    m: &Machine,
    table: &str,
    outcomes: &[Outcome],
) -> Result<()> {
    let (cmd, key) = service::command_line("cargo run --release -p webhooks-bench --", &[]);
    let key = if key.is_empty() {
        "defaults".to_owned()
    } else {
        key
    };
    let mut section = report::Section::new(&key, &cmd);
    let sec = &mut section.text;
    let _ = writeln!(
        sec,
        "- machine: {} × {} (nproc {}), {:.1} GiB memory, Linux {}; data directory on {}",
        m.nproc, m.cpu_model, m.nproc, m.mem_gib, m.kernel, m.data_fs
    );
    let _ = writeln!(
        sec,
        "- service: release `dakkio-webhooks serve --concurrency {}`, log level {}; bench: {} publishing connections, payload {} unless the scenario says otherwise, ceiling {} s at concurrency {}",
        ctx.args.concurrency,
        ctx.args.service_log.as_deref().unwrap_or("default (info)"),
        ctx.args.publishers,
        ctx.args.payload.name(),
        ctx.args.ceiling_secs,
        ctx.args.concurrency
    );
    let _ = writeln!(sec);
    sec.push_str(table);
    let _ = writeln!(sec);
    for o in outcomes {
        let _ = writeln!(
            sec,
            "- {}: disk {:.0} fsync/s (4 KiB write + fsync, 2 s probe before the run); {:.1} µs service CPU per delivery ({:.1} s in all); bench process (publisher + receiver) {:.1} s CPU; other processes {:.2} cores (during the ceiling: {:.2}); ceiling rounds {} req/s; duplicates {}; publish errors {}{}; max latency {:.1} ms",
            o.scenario,
            o.fsync_per_sec,
            o.cpu_per_1k() * 1000.0,
            o.service_cpu_secs,
            o.bench_cpu_secs,
            o.other_cores,
            o.ceiling_other_cores,
            o.ceiling_rounds
                .iter()
                .map(|r| format!("{r:.0}"))
                .collect::<Vec<_>>()
                .join(", "),
            o.duplicates,
            o.publish_errors,
            if o.failing > 0 {
                format!(
                    "; failing receivers got {} requests for {} distinct deliveries (of {}), {} failed for good",
                    o.failing_requests,
                    o.failing_deliveries,
                    o.events_accepted * o.failing as u64,
                    o.failed_final
                )
            } else {
                String::new()
            },
            o.max_ms
        );
    }
    section.write_to(path)
}
