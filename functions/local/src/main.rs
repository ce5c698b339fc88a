//! `dakkio-webhooks`: the local mode. One process on 127.0.0.1 serves the same API Router the
//! API Lambda serves and runs the delivery worker (the same core `Dispatcher` the delivery
//! Lambda runs), on one embedded SQLite file holding the webhooks, the queue (with SQS's
//! visibility timeout, receive count and dead letters), the history and the stats: data and
//! in-flight deliveries survive restarts. `http://` and loopback targets are allowed, and tokens
//! without a `buckets` claim may use any bucket — unless `serve --strict`, which applies the
//! production rules (https and public targets only, checked again at connect time; fail-closed
//! buckets; no development token). No AWS. The data directory is private to its user (0700,
//! files 0600, fixed on every start): it holds every signing secret.
//!
//! Commands:
//! - `serve` (the default): run API + worker; prints the address, a dev token and the first curl.
//! - `token`: mint a JWT for a user, signed with this data directory's secret.
//! - `listen`: a local receiver that verifies, prints and can forward deliveries (no ngrok).

mod listen;
mod metrics;
mod server;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use webhooks_api::auth::{Authenticator, Claims, Scope, TokenRules};
use webhooks_api::{AppState, Ports, router};
use webhooks_core::dispatch::Dispatcher;
use webhooks_core::notify::{Notifier, Thresholds};
use webhooks_core::time::SystemClock;
use webhooks_core::validate::UrlPolicy;
use webhooks_embedded::{
    Database, SqliteDeliveryLog, SqliteHealthStore, SqliteIdempotencyStore, SqliteNoticeStore,
    SqliteQueue, SqliteStore, WorkerConfig, run_worker,
};
use webhooks_sender::{ReqwestWebhookSender, SenderConfig};

#[derive(Debug, Parser)]
#[command(
    name = "dakkio-webhooks",
    version,
    about = "dakkio webhooks, local mode"
)]
struct Cli {
    /// Where the embedded database and the local JWT secret live. Default: the nearest
    /// `.dakkio` in this directory or a parent (as git finds `.git`), else `./.dakkio`.
    #[arg(long, global = true, env = "DAKKIO_DATA_DIR")]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the API on the embedded store (the default command).
    Serve(ServeArgs),
    /// Print a JWT for a user, valid against `serve` on the same data directory.
    Token(TokenArgs),
    /// Receive deliveries locally: verify signatures, print events, optionally forward them.
    Listen(listen::ListenArgs),
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// Address to listen on; port 0 picks a free port (the chosen address is printed).
    #[arg(long, env = "DAKKIO_ADDR", default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// Per-request timeout of a delivery attempt, 1 to 900 s.
    #[arg(long, default_value_t = 30)]
    delivery_timeout_secs: u64,
    /// Deliveries being sent at once (up to 4x as many may be waiting for their outcome to be
    /// written).
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Attempts in flight to one webhook at once (more wait, without using an attempt), so a
    /// slow receiver never holds the shared sending slots.
    #[arg(long, default_value_t = webhooks_core::flow::DEFAULT_MAX_IN_FLIGHT)]
    max_in_flight_per_webhook: usize,
    /// Turn the per-webhook circuit breaker off (load and fault tests whose receivers fail on
    /// purpose: with it on, a failing receiver's deliveries wait out its open periods).
    #[arg(long)]
    no_circuit_breaker: bool,
    /// Disable a webhook whose deliveries have all failed this long, in hours (0: never; at most
    /// 8760).
    #[arg(long, default_value_t = 120)]
    auto_disable_after_hours: u64,
    /// The same in seconds, overriding `--auto-disable-after-hours` (tests compress time).
    #[arg(long, hide = true)]
    auto_disable_after_secs: Option<u64>,
    /// Tests only (crash fidelity): SIGKILL this process at its n-th receipt of a delivery,
    /// after receiving it and before sending it.
    #[arg(long, hide = true)]
    crash_before_send_at: Option<u64>,
    /// When `webhook.failing` is told again during one run of failures: two increasing
    /// numbers of seconds (operational notifications, `PUT /api/notifications`).
    #[arg(long, default_value = "3600,86400")]
    failing_notice_after_secs: String,
    /// Production rules, for a single-box deployment behind a reverse proxy: https:// and public
    /// targets only (checked again when connecting), tokens without a `buckets` claim may use
    /// no bucket, no development token.
    #[arg(long, env = "DAKKIO_STRICT")]
    strict: bool,
    /// Also accept tokens signed with RS256 or ES256 by a key of this JSON Web Key Set (https://,
    /// or http:// to a loopback host), named by their `kid`; HS256 tokens keep working.
    #[arg(long, env = "DAKKIO_JWKS_URL")]
    jwks_url: Option<String>,
}

impl ServeArgs {
    fn defaults() -> Self {
        Self {
            addr: default_addr(),
            delivery_timeout_secs: 30,
            concurrency: 32,
            auto_disable_after_hours: 120,
            auto_disable_after_secs: None,
            crash_before_send_at: None,
            failing_notice_after_secs: webhooks_core::notify::DEFAULT_FAILING_REPEATS_SECS.into(),
            max_in_flight_per_webhook: webhooks_core::flow::DEFAULT_MAX_IN_FLIGHT,
            no_circuit_breaker: false,
            strict: std::env::var("DAKKIO_STRICT").is_ok_and(|v| v == "true" || v == "1"),
            jwks_url: std::env::var("DAKKIO_JWKS_URL")
                .ok()
                .filter(|v| !v.trim().is_empty()),
        }
    }
}

#[derive(Debug, clap::Args)]
struct TokenArgs {
    /// The user id (`sub`) the token is for.
    #[arg(long, default_value = "dev-user")]
    sub: String,
    /// Limit the token to these buckets (repeatable); unlimited when omitted.
    #[arg(long = "bucket")]
    buckets: Vec<String>,
    /// OAuth-style scope, e.g. `events:publish` for a producer token.
    #[arg(long)]
    scope: Option<String>,
    /// Lifetime in hours.
    #[arg(long, default_value_t = 24)]
    hours: i64,
}

#[tokio::main]
async fn main() -> Result<()> {
    // Kept until `main` returns: dropping it flushes the lines still buffered.
    let (log_writer, _flush_on_exit) =
        tracing_appender::non_blocking::NonBlockingBuilder::default()
            .lossy(false)
            // Through a buffer the thread flushes whenever no more lines are waiting: one system
            // call per burst of lines instead of one per line, and no delay when quiet.
            .finish(std::io::BufWriter::with_capacity(
                64 * 1024,
                std::io::stderr(),
            ));
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        // Colours only on a terminal: a log file or a pipe gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(log_writer)
        .init();
    let cli = Cli::parse();
    if let Some(Command::Listen(args)) = cli.command {
        return listen::run(args).await;
    }
    let data_dir = match cli.data_dir {
        Some(dir) => dir,
        None => find_data_dir(&std::env::current_dir().context("reading the current directory")?),
    };
    if let Some(Command::Token(args)) = &cli.command {
        // `token` never creates a data directory: a new one would hold a new JWT key that no
        // running `serve` accepts (401 "token signature is invalid").
        let secret = match std::env::var("JWT_SECRET") {
            Ok(_) => jwt_secret(&data_dir)?,
            Err(_) if data_dir.join(JWT_SECRET_FILE).is_file() => {
                eprintln!(
                    "(signed with the key of {}: valid against `serve` on that data directory)",
                    data_dir.display()
                );
                jwt_secret(&data_dir)?
            }
            Err(_) => bail!(
                "no data directory with a JWT key at {} (nor a `.dakkio` in a parent directory): \
                 start `serve` first (it creates one), pass --data-dir, or set JWT_SECRET",
                data_dir.display()
            ),
        };
        println!("{}", mint(&secret, args)?);
        return Ok(());
    }
    private_dir(&data_dir)
        .with_context(|| format!("creating data directory {}", data_dir.display()))?;
    let secret = jwt_secret(&data_dir)?;
    match cli
        .command
        .unwrap_or_else(|| Command::Serve(ServeArgs::defaults()))
    {
        Command::Serve(args) => serve(&data_dir, &secret, args).await,
        Command::Token(_) | Command::Listen(_) => unreachable!("handled above"),
    }
}

const DATA_DIR: &str = ".dakkio";
const JWT_SECRET_FILE: &str = "jwt-secret";

/// The default data directory: the nearest `.dakkio` directory in `cwd` or one of its parents,
/// so `serve` and `token` agree when run from a subdirectory of the project; else `cwd/.dakkio`.
fn find_data_dir(cwd: &Path) -> PathBuf {
    cwd.ancestors()
        .map(|dir| dir.join(DATA_DIR))
        .find(|dir| dir.is_dir())
        .unwrap_or_else(|| cwd.join(DATA_DIR))
}

fn default_addr() -> SocketAddr {
    std::env::var("DAKKIO_ADDR")
        .ok()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080)))
}

/// `JWT_SECRET` when set; otherwise a random secret kept in the data directory (created once,
/// readable by the owner only), so `token` and `serve` agree across runs.
fn jwt_secret(data_dir: &Path) -> Result<Vec<u8>> {
    if let Ok(s) = std::env::var("JWT_SECRET") {
        if s.len() < webhooks_api::config::MIN_JWT_SECRET_BYTES {
            bail!("JWT_SECRET must be at least 32 bytes");
        }
        return Ok(s.into_bytes());
    }
    let path = data_dir.join(JWT_SECRET_FILE);
    if let Ok(s) = std::fs::read_to_string(&path) {
        return Ok(s.trim().as_bytes().to_vec());
    }
    use base64::Engine;
    use rand::RngCore;
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    let s = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key);
    write_private(&path, &s).with_context(|| format!("writing {}", path.display()))?;
    Ok(s.into_bytes())
}

/// Creates the data directory readable by its owner only (0700), or makes an existing one so,
/// along with the files in it (0600): they hold every webhook's signing secret and the JWT key.
fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(0o600))?;
        }
    }
    Ok(())
}

/// Creates the database file empty with mode 0600 before SQLite opens it: SQLite gives its WAL
/// and shared-memory files the database file's mode.
fn private_file(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map(drop)
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(contents.as_bytes())
}

fn mint(secret: &[u8], args: &TokenArgs) -> Result<String> {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64
        + args.hours * 3600;
    let claims = Claims {
        sub: args.sub.clone(),
        exp,
        buckets: (!args.buckets.is_empty()).then(|| args.buckets.clone()),
        scope: args.scope.clone().map(Scope::Text),
        ..Default::default()
    };
    Ok(Authenticator::new(secret)?.mint(&claims)?)
}

async fn serve(data_dir: &Path, secret: &[u8], args: ServeArgs) -> Result<()> {
    let db_path = data_dir.join("webhooks.db");
    private_file(&db_path).with_context(|| format!("creating {}", db_path.display()))?;
    let db = Database::open(&db_path)
        .with_context(|| format!("opening the embedded store at {}", db_path.display()))?;
    let store = Arc::new(SqliteStore::new(db.clone()));
    let log = Arc::new(SqliteDeliveryLog::new(db.clone()));
    let queue = SqliteQueue::new(db);
    let clock = Arc::new(SystemClock);
    let timeout = webhooks_core::flow::delivery_timeout_from_secs(args.delivery_timeout_secs)
        .context("--delivery-timeout-secs")?;
    let sender = Arc::new(ReqwestWebhookSender::new(SenderConfig {
        timeout,
        allow_private: !args.strict,
    })?);
    let auto_disable = match args.auto_disable_after_secs {
        Some(0) => None,
        Some(secs) => Some(std::time::Duration::from_secs(secs)),
        None => webhooks_core::flow::auto_disable_after_from_hours(args.auto_disable_after_hours)
            .context("--auto-disable-after-hours")?,
    };
    let thresholds = Thresholds::parse_secs(&args.failing_notice_after_secs)
        .map_err(|e| anyhow::anyhow!("--failing-notice-after-secs: {e}"))?;
    let health = Arc::new(SqliteHealthStore::new(queue.database().clone()));
    let metrics = metrics::PrometheusMetrics::new();
    let notifier = Notifier::new(
        Arc::new(SqliteNoticeStore::new(queue.database().clone())),
        store.clone(),
        Arc::new(queue.clone()),
        clock.clone(),
    )
    .with_thresholds(thresholds);
    let mut dispatcher = Dispatcher::new(store.clone(), log.clone(), sender, clock.clone())
        .with_metrics(metrics.clone())
        .with_auto_disable_after(auto_disable)
        .with_max_in_flight(args.max_in_flight_per_webhook)
        .with_notifier(Arc::new(notifier));
    if !args.no_circuit_breaker {
        dispatcher = dispatcher.with_breaker(health.clone());
    }
    let ports = Ports {
        store,
        log,
        queue: Arc::new(queue.clone()),
        clock,
    };
    // The development setup: tokens without a `buckets` claim may use any bucket. Strict: the
    // production rules.
    let (policy, rules) = if args.strict {
        (UrlPolicy::PRODUCTION, TokenRules::default())
    } else {
        (
            UrlPolicy::LOCAL,
            TokenRules {
                open_buckets: true,
                ..Default::default()
            },
        )
    };
    // Idempotency keys: a publish this data directory's previous process left in progress
    // (it died mid-publish) may be taken over by its first repeat at once.
    let keys = SqliteIdempotencyStore::new(queue.database().clone());
    let released = keys.release_leases().await?;
    if released > 0 {
        tracing::info!(
            keys = released,
            "idempotency keys left in progress by the previous run can be repeated now"
        );
    }
    let mut state = AppState::new(ports, policy, secret)?
        .with_health(health)
        .with_background_recovery()
        .with_idempotency(Arc::new(keys))
        .with_metrics(metrics.clone())
        .with_token_rules(&rules);
    if let Some(url) = &args.jwks_url {
        let jwks = webhooks_api::jwks::Jwks::new(url, Default::default())
            .map_err(|why| anyhow::anyhow!("--jwks-url: {why}"))?;
        state = state.with_jwks(Arc::new(jwks));
    }

    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .with_context(|| format!("listening on {}", args.addr))?;
    let addr = listener.local_addr()?;
    let token = mint(
        secret,
        &TokenArgs {
            sub: "dev-user".into(),
            buckets: vec![],
            scope: None,
            hours: 24,
        },
    )?;
    // The development token only on a loopback bind (the handler also checks Host and Origin),
    // and never in strict mode.
    let dev_token = (!args.strict && addr.ip().is_loopback()).then_some(token.as_str());
    state.dev_token = dev_token.map(Into::into);

    // One signal stops both the API and the worker.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        stop_tx.send_replace(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        // An error means the sender is gone, which also means: stop.
        rx.wait_for(|stop| *stop).await.map(|_| ()).unwrap_or(())
    };
    let config = WorkerConfig {
        concurrency: args.concurrency.max(1),
        crash_before_send_at: args.crash_before_send_at,
        ..WorkerConfig::for_sender_timeout(timeout)
    };
    let worker = tokio::spawn(run_worker(
        queue,
        dispatcher,
        config,
        stopped(stop_rx.clone()),
    ));
    print_welcome(addr, data_dir, &db_path, dev_token, args.strict);
    // `GET /metrics` beside the API, outside its token auth (see metrics.rs).
    let app = router(state).merge(metrics.routes());
    server::serve(listener, app, stopped(stop_rx))
        .await
        .context("serving the API")?;
    let summary = worker.await.context("the delivery worker panicked")?;
    tracing::info!(?summary, "stopped");
    Ok(())
}

fn print_welcome(addr: SocketAddr, data_dir: &Path, db: &Path, token: Option<&str>, strict: bool) {
    let base = format!("http://{addr}");
    let dir = data_dir.display();
    println!("dakkio webhooks (local mode) listening on {base}");
    if strict {
        println!(
            "  strict:    https:// public targets only; tokens need a `buckets` claim (token --bucket …)"
        );
    }
    println!(
        "  store:     {} (SQLite: webhooks, queue, history; survives restarts)",
        db.display()
    );
    println!("  dashboard: {base}/dashboard");
    println!("  api docs:  {base}/api/openapi.json");
    println!();
    match token {
        Some(token) => {
            println!("A token for user `dev-user`, valid 24 h:");
            println!("  export TOKEN={token}");
        }
        None => {
            println!(
                "A token for user `dev-user`, valid 24 h, for bucket 507f1f77bcf86cd799439011:"
            );
            println!(
                "  export TOKEN=$(cargo run -q -p webhooks-local -- --data-dir {dir} token --bucket 507f1f77bcf86cd799439011)"
            );
        }
    }
    println!("Tokens for other users (same data directory):");
    println!("  cargo run -p webhooks-local -- --data-dir {dir} token --sub alice");
    println!();
    println!("Create your first webhook:");
    println!(
        r#"  curl -X POST {base}/api/webhooks \
    -H "Authorization: Bearer $TOKEN" \
    -H "Content-Type: application/json" \
    -d '{{"bucketId": "507f1f77bcf86cd799439011", "url": "https://your-server.com/webhook", "events": ["alert.triggered", "data.received"], "secret": "your_webhook_secret"}}'"#
    );
    println!("List them:");
    println!(r#"  curl {base}/api/webhooks -H "Authorization: Bearer $TOKEN""#);
    println!("Publish an event (a producer token carries scope events:publish):");
    println!(
        "  export PRODUCER=$(cargo run -q -p webhooks-local -- --data-dir {dir} token --sub ingest --scope events:publish)"
    );
    println!(
        r#"  curl -X POST {base}/api/events -H "Authorization: Bearer $PRODUCER" -H "Content-Type: application/json" \
    -d '{{"bucketId": "507f1f77bcf86cd799439011", "event": "alert.triggered", "data": {{"alertName": "High Temperature Warning", "currentValue": 31.5, "threshold": 30}}}}'"#
    );
    // Tests and scripts wait for this line.
    println!("ready");
}

pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! { () = ctrl_c => {}, () = term => {} }
    tracing::info!("shutting down");
}
