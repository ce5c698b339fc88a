//! The noisy-neighbour scenario (DESIGN.md §7, issue 12): does a hanging receiver delay anyone
//! else's deliveries in the local mode?
//!
//! One service, two webhooks in two buckets: a healthy one (`/h/0`) and one whose receiver
//! answers only after `--hang-secs` (`/hang/1`; the service's delivery timeout is 30 s). Two
//! phases of `--duration-secs` each, publishing `--rate` events/s (one event per call) to each
//! bucket that takes part:
//! 1. **solo**: the healthy webhook's bucket only;
//! 2. **with the neighbour**: both buckets at once.
//!
//! After each phase the bench waits until every healthy delivery arrived, then reports the
//! healthy webhook's publish→arrival percentiles; the hanging webhook's deliveries are left
//! unfinished (the service is stopped at the end). Printed, and with `--write` a section of
//! BENCHMARKS.md.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use webhooks_bench::receiver::{Receiver, Report};
use webhooks_bench::report;
use webhooks_bench::service::{self, Machine, Service};

use super::{BUCKET, Ctx, Payload, PublishCounters, Publisher, pad_for, secret_for};

/// The hanging webhook's bucket (the healthy one's is [`BUCKET`]).
const NOISY_BUCKET: &str = "65f0be0c0000000000000002";

/// One phase's figures for the healthy webhook.
#[derive(Debug, Clone)]
struct Phase {
    name: &'static str,
    accepted: u64,
    delivered: u64,
    duplicates: u64,
    signature_failures: u64,
    hanging_requests: u64,
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    service_cpu_secs: f64,
    /// Other processes' CPU during the phase, in cores.
    other_cores: f64,
}

fn percentile(r: &Report, p: f64) -> f64 {
    if r.latencies_ns.is_empty() {
        return 0.0;
    }
    let i = ((r.latencies_ns.len() - 1) as f64 * p).round() as usize;
    r.latencies_ns[i] as f64 / 1e6
}

pub async fn run(ctx: &Ctx, machine: &Machine) -> Result<()> {
    let args = &ctx.args;
    let rate = args.rate.unwrap_or(100).max(1);
    let duration = Duration::from_secs(args.duration_secs.max(1));
    let hang = Duration::from_secs(args.hang_secs);
    eprintln!(
        "\n== noisy-neighbour: {rate} events/s for {} s to a healthy webhook, alone and then beside one whose receiver answers after {} s; concurrency {}",
        duration.as_secs(),
        hang.as_secs(),
        args.concurrency
    );
    service::wait_quiet(args.wait_quiet_secs).await;
    let secrets = vec![secret_for(0), secret_for(1)];
    let receiver = Arc::new(Receiver::new(ctx.clock, secrets.clone()).with_hang(hang));
    let recv_addr = receiver.start().await?;
    let (_data_dir, svc) = ctx.start_service("webhooks-bench-noisy-")?;
    let api = reqwest::Client::builder().no_proxy().http1_only().build()?;
    for (i, (bucket, path)) in [(BUCKET, "h"), (NOISY_BUCKET, "hang")].iter().enumerate() {
        let body = serde_json::json!({
            "bucketId": bucket,
            "url": format!("http://{recv_addr}/{path}/{i}"),
            "events": ["data.received"],
            "secret": secrets[i].expose(),
        });
        svc.create_webhook(&api, &body)
            .await
            .with_context(|| format!("webhook {i}"))?;
    }

    let result = async {
        let solo = phase(ctx, &svc, &api, &receiver, "solo", rate, duration, false).await?;
        receiver.reset();
        let noisy = phase(
            ctx,
            &svc,
            &api,
            &receiver,
            "with the neighbour",
            rate,
            duration,
            true,
        )
        .await?;
        Ok::<_, anyhow::Error>((solo, noisy))
    }
    .await;
    tokio::task::block_in_place(|| svc.stop())?;
    let (solo, noisy) = result?;

    let table = table(&[solo.clone(), noisy.clone()]);
    println!("\n{table}");
    let ratio = if solo.p99_ms > 0.0 {
        noisy.p99_ms / solo.p99_ms
    } else {
        0.0
    };
    println!(
        "healthy p99 with the neighbour / solo: {ratio:.2} (target ≤ 2, and under 50 ms: {:.1} ms)",
        noisy.p99_ms
    );
    if let Some(path) = &args.write {
        let (cmd, key) = service::command_line("cargo run -p webhooks-bench --", &[]);
        let mut section = report::Section::new(&key, &cmd);
        let sec = &mut section.text;
        let _ = writeln!(
            sec,
            "- machine: {} × {} (nproc {}), {:.1} GiB memory, Linux {}; service: `{}`, `serve --concurrency {}`",
            machine.nproc,
            machine.cpu_model,
            machine.nproc,
            machine.mem_gib,
            machine.kernel,
            ctx.bin.display(),
            args.concurrency
        );
        let _ = writeln!(sec);
        sec.push_str(&table);
        let _ = writeln!(
            sec,
            "\nHealthy p99 with the neighbour / solo: **{ratio:.2}**."
        );
        section.write_to(path)?;
        eprintln!("wrote the results to {}", path.display());
    }
    Ok(())
}

/// Publishes `rate` events/s for `duration` to the healthy bucket (and, `with_neighbour`, as
/// many to the hanging one), waits for every healthy delivery, and measures them.
#[allow(clippy::too_many_arguments)]
async fn phase(
    ctx: &Ctx,
    svc: &Service,
    api: &reqwest::Client,
    receiver: &Arc<Receiver>,
    name: &'static str,
    rate: u64,
    duration: Duration,
    with_neighbour: bool,
) -> Result<Phase> {
    let pid = svc.pid.to_string();
    let pad = pad_for(Payload::OneK.body_bytes())?;
    let events = rate * duration.as_secs();
    let period = Duration::from_secs_f64(1.0 / rate as f64);
    let cpu_before = service::cpu_ticks(&pid).context("reading the service's /proc stat")?;
    let self_before = service::cpu_ticks("self").unwrap_or(0);
    let machine_before = service::machine_ticks().unwrap_or((0, 0)).0;
    let started = Instant::now();
    let buckets: &[&'static str] = if with_neighbour {
        &[BUCKET, NOISY_BUCKET]
    } else {
        &[BUCKET]
    };
    let mut healthy = None;
    let mut tasks = Vec::new();
    for bucket in buckets {
        let counters = Arc::new(PublishCounters::default());
        if *bucket == BUCKET {
            healthy = Some(counters.clone());
        }
        let next = Arc::new(AtomicU64::new(0));
        for _ in 0..ctx.args.publishers.max(1) {
            let p = Publisher {
                bucket,
                client: api.clone(),
                url: format!("{}/api/events", svc.base),
                token: svc.producer_token.clone(),
                clock: ctx.clock,
                next: next.clone(),
                counters: counters.clone(),
                events,
                batch: 1,
                batches: events,
                period: Some(period),
                started: tokio::time::Instant::from_std(started),
                pad,
            };
            tasks.push(tokio::spawn(p.run()));
        }
    }
    for t in tasks {
        t.await??;
    }
    let healthy = healthy.context("the healthy bucket publishes in every phase")?;
    let accepted = healthy.accepted.load(Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(ctx.args.timeout_secs);
    while receiver.delivered.load(Ordering::SeqCst) < accepted {
        if Instant::now() > deadline {
            eprintln!("[{name}] timed out waiting for the healthy deliveries");
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    let service_cpu_secs =
        (service::cpu_ticks(&pid).unwrap_or(cpu_before) - cpu_before) as f64 / ctx.ticks as f64;
    let bench_cpu = service::cpu_ticks("self")
        .unwrap_or(self_before)
        .saturating_sub(self_before) as f64
        / ctx.ticks as f64;
    let others = service::machine_ticks()
        .unwrap_or((0, 0))
        .0
        .saturating_sub(machine_before) as f64
        / ctx.ticks as f64
        - service_cpu_secs
        - bench_cpu;
    let r = receiver.report();
    let p = Phase {
        name,
        accepted,
        delivered: r.delivered,
        duplicates: r.duplicates,
        signature_failures: r.signature_failures,
        hanging_requests: receiver.hanging_requests.load(Ordering::SeqCst),
        p50_ms: percentile(&r, 0.50),
        p90_ms: percentile(&r, 0.90),
        p99_ms: percentile(&r, 0.99),
        max_ms: percentile(&r, 1.0),
        service_cpu_secs,
        other_cores: (others / secs.max(1e-9)).max(0.0),
    };
    eprintln!(
        "[{name}] healthy: {} of {} delivered, p50 {:.1} ms, p99 {:.1} ms; hanging receiver: {} requests",
        p.delivered, p.accepted, p.p50_ms, p.p99_ms, p.hanging_requests
    );
    Ok(p)
}

fn table(phases: &[Phase]) -> String {
    let mut t = String::new();
    t.push_str("| phase | healthy events | delivered | publish→arrival p50 / p90 / p99 / max (ms) | hanging receiver's requests | service CPU (s) | other processes (cores) | duplicates | signature failures |\n");
    t.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for p in phases {
        let _ = writeln!(
            t,
            "| {} | {} | {} | {:.1} / {:.1} / {:.1} / {:.1} | {} | {:.1} | {:.2} | {} | {} |",
            p.name,
            p.accepted,
            p.delivered,
            p.p50_ms,
            p.p90_ms,
            p.p99_ms,
            p.max_ms,
            p.hanging_requests,
            p.service_cpu_secs,
            p.other_cores,
            p.duplicates,
            p.signature_failures
        );
    }
    t
}
