//! The functions as real processes under cargo-lambda's Lambda emulator — the path the README's
//! "Run a function locally" section gives users without Docker.
//!
//! [`Emulator::start`] runs `cargo lambda watch --only-lambda-apis` (the Lambda Runtime API and
//! the invoke endpoint, without building anything) on a free port; [`Emulator::run`] starts a
//! function binary of this workspace against it, with the environment a test gives (as Lambda
//! would, plus the runtime's own variables); [`Emulator::invoke`] sends an event file through
//! `cargo lambda invoke`, exactly as a user does, and returns what the function answered. The
//! runtime emulator sends the deadline header cargo-lambda 1.9 sends (`600000`, a moment in
//! 1970), which is what the delivery handler must survive.
//!
//! The function binaries are the ones `cargo build --workspace --bins` leaves in the target
//! directory (`./infra/test.sh` builds them before the tests); cargo-lambda is the one
//! `./infra/setup-venv.sh` installs into `./.venv` (or `CARGO_LAMBDA_BIN`). Both missing fail
//! with that instruction. Every process is killed when its handle drops, and with the test
//! process (`PR_SET_PDEATHSIG`).

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::process::{Child, Command};

use super::moto::{die_with_parent, free_port, workspace_root};

/// How long the emulator may take to listen.
const START_LIMIT: Duration = Duration::from_secs(30);
/// How long one `cargo lambda invoke` may take (the delivery function waits for receivers).
const INVOKE_LIMIT: Duration = Duration::from_secs(60);

/// `CARGO_LAMBDA_BIN`, or the one `./infra/setup-venv.sh` installs into `<workspace>/.venv`.
fn cargo_lambda_bin() -> PathBuf {
    let bin = std::env::var_os("CARGO_LAMBDA_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv/bin/cargo-lambda"));
    assert!(
        bin.is_file(),
        "cargo-lambda not found at {}: run `./infra/test.sh` (installs the test tools, then runs \
         every test) or `./infra/setup-venv.sh`, or set CARGO_LAMBDA_BIN.",
        bin.display()
    );
    bin
}

/// A binary of this workspace (`webhooks-api`, `webhooks-delivery`) from the target directory
/// this test binary was built into.
pub fn function_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    // target/<profile>/deps/it-<hash> → target/<profile>/<name>
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>")
        .join(name);
    assert!(
        bin.is_file(),
        "{} is not built: run `cargo build --workspace --all-features --bins` first \
         (`./infra/test.sh` does)",
        bin.display()
    );
    bin
}

/// `cargo lambda watch --only-lambda-apis` on 127.0.0.1, killed when dropped.
#[derive(Debug)]
pub struct Emulator {
    port: u16,
    _child: Child,
}

impl Emulator {
    pub async fn start() -> Self {
        let port = free_port();
        let mut cmd = Command::new(cargo_lambda_bin());
        cmd.args(["lambda", "watch", "--only-lambda-apis", "-A", "127.0.0.1"])
            .args(["-P", &port.to_string()])
            // It reads the workspace's metadata (nothing is built).
            .current_dir(workspace_root())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        die_with_parent(cmd.as_std_mut());
        let child = cmd.spawn().expect("start cargo lambda watch");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + START_LIMIT;
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            assert!(
                Instant::now() < deadline,
                "cargo lambda watch did not listen on {addr} within {START_LIMIT:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self {
            port,
            _child: child,
        }
    }

    /// Starts `binary` as the emulator's function (cargo-lambda names it `_` in this mode), with
    /// `env` on top of the runtime's variables. Its log goes to a temporary file (returned by
    /// [`Function::log`]).
    pub fn run(&self, binary: &Path, env: &[(String, String)]) -> Function {
        let log_path = std::env::temp_dir().join(format!(
            "webhooks-it-{}-{}-{}.log",
            binary.file_name().unwrap().to_string_lossy(),
            std::process::id(),
            self.port
        ));
        let log = std::fs::File::create(&log_path).expect("function log file");
        let mut cmd = Command::new(binary);
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env(
                "AWS_LAMBDA_RUNTIME_API",
                format!("http://127.0.0.1:{}/.rt", self.port),
            )
            .env("AWS_LAMBDA_FUNCTION_NAME", "_")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .kill_on_drop(true);
        die_with_parent(cmd.as_std_mut());
        Function {
            child: cmd
                .spawn()
                .unwrap_or_else(|e| panic!("start {}: {e}", binary.display())),
            log_path,
        }
    }

    /// `cargo lambda invoke --data-file <event>`: the function's answer as JSON. Panics with the
    /// function's log when the invocation fails.
    pub async fn invoke(&self, event: &Path, function: &Function) -> Value {
        let out = tokio::time::timeout(
            INVOKE_LIMIT,
            Command::new(cargo_lambda_bin())
                .args(["lambda", "invoke", "-A", "127.0.0.1"])
                .args(["-P", &self.port.to_string(), "--output-format", "json"])
                .arg("--data-file")
                .arg(event)
                .current_dir(workspace_root())
                .kill_on_drop(true)
                .output(),
        )
        .await
        .unwrap_or_else(|_| {
            panic!(
                "cargo lambda invoke {} took over {INVOKE_LIMIT:?}; the function's log:\n{}",
                event.display(),
                function.log()
            )
        })
        .expect("run cargo lambda invoke");
        assert!(
            out.status.success(),
            "cargo lambda invoke {} failed: {}\n{}\nthe function's log:\n{}",
            event.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr),
            function.log()
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "cargo lambda invoke {}: not JSON ({e}): {}",
                event.display(),
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }
}

/// A function process; killed when dropped.
#[derive(Debug)]
pub struct Function {
    child: Child,
    log_path: PathBuf,
}

impl Function {
    /// What the function logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Stops the function and waits until it is gone (so the next one gets the invocations).
    pub async fn stop(mut self) -> String {
        self.child.kill().await.expect("kill the function");
        self.log()
    }
}

/// The variables a function needs to reach moto at `endpoint` (no IMDS, no profile).
pub fn aws_env(endpoint: &str) -> Vec<(String, String)> {
    [
        ("AWS_ENDPOINT_URL", endpoint),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}
