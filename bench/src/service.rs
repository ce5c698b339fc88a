//! The service under test: the release `dakkio-webhooks` binary, started on a fresh data
//! directory, and what `/proc` says about it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// The `dakkio-webhooks` binary: `--binary`, or next to this executable (target/release).
pub fn find_binary(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit.filter(|p| !p.is_file()) {
        bail!("--binary {}: no such file", p.display());
    }
    find_sibling(
        explicit,
        "dakkio-webhooks",
        "the service first, in release mode:\n\n    cargo build --release -p webhooks-local\n\nthen run the bench with `cargo run --release -p webhooks-bench -- …` (or pass --binary PATH)",
    )
}

/// The binary `name`: `explicit`, or next to this executable (target/release); `build` says how
/// to build it when it is missing. Warns when it is not a release build.
pub fn find_sibling(explicit: Option<&Path>, name: &str, build: &str) -> Result<PathBuf> {
    if let Some(p) = explicit {
        if p.is_file() {
            return Ok(p.to_owned());
        }
        bail!("{}: no such file", p.display());
    }
    let exe = std::env::current_exe().context("locating the bench executable")?;
    let dir = exe
        .parent()
        .context("the bench executable has no directory")?;
    let bin = dir.join(name);
    if !bin.is_file() {
        bail!("{} not found: build {build}", bin.display());
    }
    if cfg!(debug_assertions) || !dir.ends_with("release") {
        eprintln!(
            "warning: {} is not a release build; its figures mean little (use `cargo run --release`)",
            bin.display()
        );
    }
    Ok(bin)
}

/// A running `dakkio-webhooks serve`; killed when dropped.
#[derive(Debug)]
pub struct Service {
    child: Child,
    pub pid: u32,
    pub base: String,
    pub user_token: String,
    pub producer_token: String,
    pub log: PathBuf,
}

#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub concurrency: usize,
    pub delivery_timeout_secs: u64,
    /// `RUST_LOG` for the service; `None` keeps its default (`info`, one line per delivery).
    pub rust_log: Option<String>,
}

impl Service {
    /// Starts `serve --addr 127.0.0.1:0` on `data_dir`, waits (at most 60 s) for its `ready`
    /// line, and mints a producer token with its key.
    pub fn start(bin: &Path, data_dir: &Path, opts: &ServeOptions) -> Result<Self> {
        let log = data_dir.join("service.log");
        let log_file = std::fs::File::create(&log)?;
        let mut cmd = Command::new(bin);
        cmd.arg("--data-dir")
            .arg(data_dir)
            .args(["serve", "--addr", "127.0.0.1:0"])
            .arg("--concurrency")
            .arg(opts.concurrency.to_string())
            .arg("--delivery-timeout-secs")
            .arg(opts.delivery_timeout_secs.to_string())
            .env_remove("JWT_SECRET")
            .env_remove("DAKKIO_ADDR")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file));
        match &opts.rust_log {
            Some(l) => cmd.env("RUST_LOG", l),
            None => cmd.env_remove("RUST_LOG"),
        };
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {} serve", bin.display()))?;
        let pid = child.id();
        let stdout = child.stdout.take().context("no stdout")?;
        let (tx, rx) = mpsc::channel::<String>();
        // Reads the welcome text, then keeps draining stdout.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let mut service = Self {
            child,
            pid,
            base: String::new(),
            user_token: String::new(),
            producer_token: String::new(),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match rx.recv_timeout(left) {
                Ok(l) => l,
                Err(_) => bail!(
                    "the service did not print `ready` within 60 s; see {}",
                    service.log.display()
                ),
            };
            if let Some(base) = line.split("listening on ").nth(1) {
                service.base = base.trim().to_owned();
            } else if let Some(t) = line.trim().strip_prefix("export TOKEN=") {
                service.user_token = t.to_owned();
            } else if line.trim() == "ready" {
                break;
            }
        }
        if service.base.is_empty() || service.user_token.is_empty() {
            bail!("the service's welcome text had no address or token");
        }
        // Minted once `serve` has made the data directory's key (`token` never makes one).
        let out = Command::new(bin)
            .arg("--data-dir")
            .arg(data_dir)
            .args(["token", "--sub", "ingest", "--scope", "events:publish"])
            .env_remove("JWT_SECRET")
            .stderr(Stdio::inherit())
            .output()
            .with_context(|| format!("running {} token", bin.display()))?;
        if !out.status.success() {
            bail!("{} token failed: {}", bin.display(), out.status);
        }
        service.producer_token = String::from_utf8(out.stdout)?.trim().to_owned();
        Ok(service)
    }

    /// Creates a webhook (`POST /api/webhooks` with the user's token); its id. Anything but 201 is
    /// an error with the answer's status and body.
    pub async fn create_webhook(
        &self,
        api: &reqwest::Client,
        body: &serde_json::Value,
    ) -> Result<String> {
        let res = api
            .post(format!("{}/api/webhooks", self.base))
            .bearer_auth(&self.user_token)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await?;
        let status = res.status();
        let text = res.text().await?;
        if status.as_u16() != 201 {
            bail!("creating a webhook: HTTP {status}: {text}");
        }
        let v: serde_json::Value = serde_json::from_str(&text)?;
        Ok(v["id"].as_str().context("no id in the answer")?.to_owned())
    }

    /// SIGTERM, then (after 20 s) SIGKILL; waits for the exit.
    pub fn stop(mut self) -> Result<()> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("the service did not stop within 20 s of SIGTERM; killing it");
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `sysconf(_SC_CLK_TCK)`, through `getconf` (no unsafe code); 100 when it cannot be read.
pub fn clock_ticks_per_sec() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|t| *t > 0)
        .unwrap_or(100)
}

/// utime + stime of a process (all its threads), in clock ticks.
pub fn cpu_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state): utime is field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// A `/proc/<pid>/status` field in KiB (`VmHWM`, `VmRSS`).
pub fn status_kib(pid: &str, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// The machine, for the report.
#[derive(Debug, Clone)]
pub struct Machine {
    pub nproc: usize,
    pub cpu_model: String,
    pub mem_gib: f64,
    pub kernel: String,
    pub data_fs: String,
}

impl Machine {
    pub fn read(data_parent: &Path) -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name")?.split(':').nth(1))
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|| "unknown".into());
        let mem_kib: f64 = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|v| v.split_whitespace().next()?.parse().ok())
            })
            .unwrap_or(0.0);
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_default();
        Self {
            nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model,
            mem_gib: mem_kib / 1024.0 / 1024.0,
            kernel,
            data_fs: filesystem_of(data_parent),
        }
    }
}

/// The type and device of the mount holding `path` (longest matching mount point).
fn filesystem_of(path: &Path) -> String {
    let path = path.canonicalize().unwrap_or_else(|_| path.to_owned());
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 3 && path.starts_with(f[1])).then(|| (f[1].len(), f[2], f[0]))
        })
        .max_by_key(|(len, _, _)| *len)
        .map(|(_, fs, dev)| format!("{fs} ({dev})"))
        .unwrap_or_else(|| "unknown".into())
}

/// Writes-with-fsync per second on `dir`'s file system (4 KiB `pwrite` + `fsync`, as SQLite
/// commits with `synchronous=FULL`), for `dur`: the disk's share of the service's ceiling.
pub fn fsync_rate(dir: &Path, dur: Duration) -> Result<f64> {
    use std::os::unix::fs::FileExt;
    let path = dir.join(format!("webhooks-bench-fsync-probe-{}", std::process::id()));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    let block = [0x5au8; 4096];
    let started = Instant::now();
    let mut n: u64 = 0;
    while started.elapsed() < dur {
        file.write_all_at(&block, (n % 256) * 4096)?;
        file.sync_all()?;
        n += 1;
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    drop(file);
    let _ = std::fs::remove_file(&path);
    Ok(rate)
}

/// Busy and total CPU time of the whole machine (the `cpu` line of `/proc/stat`), in ticks.
pub fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is included in user).
    let busy = v.first()? + v.get(1)? + v.get(2)? + v.get(5)? + v.get(6)? + v.get(7)?;
    let total = busy + v.get(3)? + v.get(4)?;
    Some((busy, total))
}

/// Cores kept busy by everything on the machine over `dur` (sampled now).
pub async fn machine_busy_cores(dur: Duration) -> f64 {
    let Some((b0, _)) = machine_ticks() else {
        return 0.0;
    };
    let started = Instant::now();
    tokio::time::sleep(dur).await;
    let Some((b1, _)) = machine_ticks() else {
        return 0.0;
    };
    (b1 - b0) as f64 / clock_ticks_per_sec() as f64 / started.elapsed().as_secs_f64()
}

/// The command line as typed, prefixed with `invocation` (for the report), and the options that
/// key its section in the results file: all but `--write FILE` and the `unkeyed` flags.
pub fn command_line(invocation: &str, unkeyed: &[&str]) -> (String, String) {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quote = |a: &String| {
        if a.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,".contains(c))
        {
            a.clone()
        } else {
            format!("'{}'", a.replace('\'', r"'\''"))
        }
    };
    let cmd = format!(
        "{invocation}{}",
        args.iter()
            .map(|a| format!(" {}", quote(a)))
            .collect::<String>()
    );
    let mut key = Vec::new();
    let mut skip = false;
    for a in &args {
        if skip {
            skip = false;
            continue;
        }
        if a == "--write" {
            skip = true;
            continue;
        }
        if a.starts_with("--write=") || unkeyed.contains(&a.as_str()) {
            continue;
        }
        key.push(quote(a));
    }
    (cmd, key.join(" "))
}

/// Waits (at most `max_secs`) until other processes use under a quarter of a core.
pub async fn wait_quiet(max_secs: u64) {
    if max_secs == 0 {
        return;
    }
    let deadline = Instant::now() + Duration::from_secs(max_secs);
    let mut said = false;
    loop {
        let busy = machine_busy_cores(Duration::from_secs(2)).await;
        if busy < 0.25 {
            return;
        }
        if Instant::now() > deadline {
            eprintln!("the machine is still busy ({busy:.2} cores); going on anyway");
            return;
        }
        if !said {
            eprintln!(
                "waiting for the machine to be quiet: other processes use {busy:.2} cores (at most {max_secs} s)"
            );
            said = true;
        }
    }
}
