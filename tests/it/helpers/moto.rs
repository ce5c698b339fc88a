//! The moto server (the AWS API emulator) for the whole test process.
//!
//! One server per test process, started on first use: [`endpoint`] starts it on a free port and
//! waits (bounded polling) until it accepts connections. Every test shares it and isolates itself
//! with unique table names. The server must not outlive the tests, even when the test process is
//! killed: it is spawned from a dedicated thread that never ends while the server runs, with
//! `PR_SET_PDEATHSIG` (Linux), so the kernel kills it when that thread (that is, the process) dies.
//! (The death signal follows the *spawning thread*, which is why a test thread will not do.)
//!
//! [`start_dedicated`] starts a separate server that a test may pause, kill and restart (the
//! fault-injection tests); the shared one is never disturbed.

use std::fs::File;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// How long moto may take to start (Python imports are slow on a busy machine).
const START_LIMIT: Duration = Duration::from_secs(60);

#[derive(Debug)]
struct Moto {
    endpoint: String,
}

static MOTO: OnceLock<Moto> = OnceLock::new();
/// Set by the spawning thread if the server exits; read while waiting for it to start.
static EXITED: OnceLock<io::Result<ExitStatus>> = OnceLock::new();

/// `http://127.0.0.1:<port>` of the process's moto server, started on first call.
pub fn endpoint() -> &'static str {
    &MOTO.get_or_init(start).endpoint
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `MOTO_SERVER_BIN`, or the one `./infra/setup-venv.sh` installs into `<workspace>/.venv`.
fn moto_server_bin() -> PathBuf {
    let bin = std::env::var_os("MOTO_SERVER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv/bin/moto_server"));
    assert!(
        bin.is_file(),
        "moto_server not found at {}. The DynamoDB tests need moto: run `./infra/test.sh` (installs \
         the test tools, then runs every test) or `./infra/setup-venv.sh` (installs moto into \
         ./.venv), or set MOTO_SERVER_BIN to a moto_server executable.",
        bin.display()
    );
    bin
}

pub fn free_port() -> u16 {
    // The port is free now; moto binds it a moment later. Another process could take it in
    // between, which start() would notice as moto exiting early.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

fn start() -> Moto {
    let bin = moto_server_bin();
    let port = free_port();
    let log_path =
        std::env::temp_dir().join(format!("webhooks-it-moto-{}.log", std::process::id()));
    let log = File::create(&log_path).expect("create the moto log file");
    let log_err = log.try_clone().expect("clone the moto log file");

    let mut cmd = Command::new(&bin);
    cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err);
    die_with_parent(&mut cmd);

    let (spawned_tx, spawned_rx) = mpsc::channel();
    thread::Builder::new()
        .name("moto-server".into())
        .spawn(move || match cmd.spawn() {
            Err(e) => spawned_tx.send(Err(e)).expect("report the spawn"),
            Ok(mut child) => {
                spawned_tx.send(Ok(())).expect("report the spawn");
                // Blocks as long as moto runs, which keeps this thread (moto's parent) alive.
                let status = child.wait();
                EXITED.set(status).expect("moto exits once");
            }
        })
        .expect("spawn the moto-server thread");
    spawned_rx
        .recv()
        .expect("moto-server thread answers")
        .unwrap_or_else(|e| panic!("could not start {}: {e}", bin.display()));

    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + START_LIMIT;
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Moto {
                endpoint: format!("http://{addr}"),
            };
        }
        if let Some(status) = EXITED.get() {
            panic!(
                "moto_server exited before it answered ({status:?}); its log:\n{}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "moto_server did not answer on {addr} within {START_LIMIT:?}; its log is {}",
            log_path.display()
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// Makes the kernel kill the child when its parent thread dies (Linux; elsewhere the server may
/// outlive a killed test run).
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    let parent = libc::pid_t::try_from(std::process::id()).expect("pid fits pid_t");
    // SAFETY: the closure runs in the forked child between fork and exec, where only
    // async-signal-safe work is allowed. It makes two syscalls (prctl, getppid) and builds
    // io::Errors from raw OS codes, which does not allocate; it takes no locks.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) == -1
            {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died before prctl took effect: then no signal will come.
            if libc::getppid() != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
pub fn die_with_parent(_cmd: &mut Command) {}

/// A moto server of its own, for the fault-injection tests (`faults`): they pause, kill and
/// restart it, which the shared server of [`endpoint`] must never see. Started on a free port
/// like the shared one, it dies with the test process the same way (`PR_SET_PDEATHSIG` from a
/// dedicated spawning thread), and is killed when dropped.
///
/// - [`pause`](Self::pause) / [`resume`](Self::resume): SIGSTOP / SIGCONT. The state survives;
///   while paused, the kernel still accepts connections and buffers requests, so a client sees
///   a timeout — and a request it gave up on may still be carried out after the resume.
/// - [`kill`](Self::kill) / [`restart`](Self::restart): SIGKILL, then a new server on the same
///   port (so clients keep their endpoint). moto keeps everything in memory: a restarted server
///   is empty.
#[derive(Debug)]
pub struct DedicatedMoto {
    port: u16,
    log_path: PathBuf,
    running: Option<Running>,
}

#[derive(Debug)]
struct Running {
    pid: u32,
    exited: mpsc::Receiver<io::Result<ExitStatus>>,
}

/// Starts a [`DedicatedMoto`] on a free port and waits (bounded) until it accepts connections.
pub fn start_dedicated() -> DedicatedMoto {
    let port = free_port();
    let log_path = std::env::temp_dir().join(format!(
        "webhooks-it-moto-{}-{port}.log",
        std::process::id()
    ));
    let mut moto = DedicatedMoto {
        port,
        log_path,
        running: None,
    };
    moto.spawn();
    moto
}

impl DedicatedMoto {
    /// `http://127.0.0.1:<port>`; the same across restarts.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The server's process id (None while killed).
    pub fn pid(&self) -> Option<u32> {
        self.running.as_ref().map(|r| r.pid)
    }

    /// SIGSTOP: the server stops answering, its state intact.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// SIGCONT: the server answers again, requests buffered meanwhile first.
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    /// SIGKILL, and waits (bounded) until the process is gone.
    pub fn kill(&mut self) {
        let Some(running) = self.running.take() else {
            return;
        };
        assert!(
            send_signal("-KILL", running.pid),
            "kill -KILL {} failed",
            running.pid
        );
        running
            .exited
            .recv_timeout(Duration::from_secs(10))
            .expect("a killed moto_server exits within 10 s")
            .ok();
    }

    /// Kills the server (if running) and starts a new, empty one on the same port.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    fn signal(&self, sig: &str) {
        let pid = self.pid().expect("the dedicated moto server is running");
        assert!(send_signal(sig, pid), "kill {sig} {pid} failed");
    }

    fn spawn(&mut self) {
        assert!(self.running.is_none(), "already running");
        let bin = moto_server_bin();
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("open the moto log file");
        let log_err = log.try_clone().expect("clone the moto log file");
        let mut cmd = Command::new(&bin);
        cmd.args(["-H", "127.0.0.1", "-p", &self.port.to_string()])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        die_with_parent(&mut cmd);

        let (spawned_tx, spawned_rx) = mpsc::channel();
        let (exited_tx, exited) = mpsc::channel();
        thread::Builder::new()
            .name(format!("moto-server-{}", self.port))
            .spawn(move || match cmd.spawn() {
                Err(e) => spawned_tx.send(Err(e)).expect("report the spawn"),
                Ok(mut child) => {
                    spawned_tx.send(Ok(child.id())).expect("report the spawn");
                    // Blocks as long as moto runs, which keeps this thread (moto's parent) alive.
                    exited_tx.send(child.wait()).ok();
                }
            })
            .expect("spawn a moto-server thread");
        let pid = spawned_rx
            .recv()
            .expect("moto-server thread answers")
            .unwrap_or_else(|e| panic!("could not start {}: {e}", bin.display()));

        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + START_LIMIT;
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                self.running = Some(Running { pid, exited });
                return;
            }
            if let Ok(status) = exited.try_recv() {
                panic!(
                    "moto_server on {addr} exited before it answered ({status:?}); its log:\n{}",
                    std::fs::read_to_string(&self.log_path).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "moto_server did not answer on {addr} within {START_LIMIT:?}; its log is {}",
                self.log_path.display()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for DedicatedMoto {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            send_signal("-KILL", running.pid);
            running.exited.recv_timeout(Duration::from_secs(5)).ok();
        }
    }
}

/// `kill <sig> <pid>` (the command, so no unsafe code here); whether it succeeded.
fn send_signal(sig: &str, pid: u32) -> bool {
    Command::new("kill")
        .args([sig, &pid.to_string()])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
