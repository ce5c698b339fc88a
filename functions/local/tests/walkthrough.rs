//! The README's "Your first delivery, verbatim" block, run as it is written: extracted from
//! README.md between its markers, with only the two ports swapped for free ones and `cargo run -q
//! -p webhooks-local --` standing for the binary this test was built with. If the README's
//! walkthrough stops working, this fails. Also: the README's sample webhook JSON has the fields
//! the service answers, and `token` finds `serve`'s data directory from a subdirectory.

mod common;

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const README: &str = include_str!("../../../README.md");

/// The text between `<!-- {name}:start -->` and `<!-- {name}:end -->`, without its code fence.
fn readme_block(name: &str) -> String {
    let start = format!("<!-- {name}:start -->");
    let end = format!("<!-- {name}:end -->");
    let from = README.find(&start).expect("start marker") + start.len();
    let to = from + README[from..].find(&end).expect("end marker");
    let block = README[from..to].trim();
    let body = block
        .strip_prefix("```sh")
        .and_then(|b| b.strip_suffix("```"))
        .expect("a ```sh fence around the block");
    body.to_owned()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Stands in for cargo: `cargo build …` is done already, `cargo run -q -p webhooks-local -- ARGS`
/// runs this test's binary with ARGS (`exec` in a background job's subshell, so `kill %1`
/// stops the server itself). The trap stops whatever is left if a step fails.
const PRELUDE: &str = r#"set -euo pipefail
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT
cargo() {
  case "$1" in
    build) return 0 ;;
    run)
      [ "$2 $3 $4 $5" = "-q -p webhooks-local --" ] || { echo "unexpected: cargo $*" >&2; return 2; }
      shift 5
      if [ "$BASHPID" != "$$" ]; then exec "$DAKKIO_BIN" "$@"; else "$DAKKIO_BIN" "$@"; fi ;;
    *) echo "unexpected: cargo $*" >&2; return 2 ;;
  esac
}
"#;

fn json_lines(out: &str) -> Vec<Value> {
    out.lines()
        .filter(|l| l.starts_with('{'))
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[test]
fn the_readme_walkthrough_works_verbatim() {
    let block = readme_block("walkthrough");
    let (api, receiver) = (free_port(), free_port());
    let mut script = block.clone();
    for (from, to) in [
        ("127.0.0.1:8080", format!("127.0.0.1:{api}")),
        ("127.0.0.1:3000", format!("127.0.0.1:{receiver}")),
        ("--port 3000", format!("--port {receiver}")),
    ] {
        assert!(
            script.contains(from),
            "the walkthrough no longer says {from}"
        );
        script = script.replace(from, &to);
    }
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(format!("{PRELUDE}{script}"))
        .current_dir(dir.path())
        .env("DAKKIO_BIN", common::BIN)
        .env_remove("JWT_SECRET")
        .env_remove("DAKKIO_DATA_DIR")
        .env_remove("DAKKIO_ADDR")
        .env_remove("DAKKIO_STRICT")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("bash");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(90) {
            // SAFETY-free: kill the whole group (the script and its background jobs).
            let _ = Command::new("kill")
                .args(["-KILL", &format!("-{}", child.id())])
                .status();
            let out = child.wait_with_output().unwrap();
            panic!(
                "the walkthrough did not finish within 90 s\nstdout:\n{}\nstderr:\n{}\nserve.log:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(dir.path().join("serve.log")).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        status.success(),
        "the walkthrough failed ({status})\nstdout:\n{stdout}\nstderr:\n{stderr}\nserve.log:\n{}",
        std::fs::read_to_string(dir.path().join("serve.log")).unwrap_or_default()
    );

    // `listen` verified the delivery with both schemes.
    let listen_line = stdout
        .lines()
        .find(|l| !l.starts_with('{') && l.contains("alert.triggered"))
        .unwrap_or_else(|| panic!("no listen line in:\n{stdout}"));
    assert!(
        listen_line.contains("verified (sha256, v1)"),
        "{listen_line}"
    );
    let answers = json_lines(&stdout);
    assert_eq!(answers.len(), 3, "publish, deliveries, webhook:\n{stdout}");
    let delivery_id = answers[0]["deliveries"][0]["deliveryId"]
        .as_str()
        .unwrap_or_else(|| panic!("publish answer {}", answers[0]))
        .to_owned();
    assert!(
        listen_line.contains(&delivery_id),
        "{listen_line} / {delivery_id}"
    );
    let history = answers[1].to_string();
    assert!(history.contains(&delivery_id), "{history}");
    let webhook = &answers[2];
    assert_eq!(webhook["stats"]["totalDeliveries"], 1, "{webhook}");
    assert_eq!(webhook["stats"]["successfulDeliveries"], 1, "{webhook}");

    // The README's sample webhook has exactly the fields the service answers.
    let sample = readme_json_after("A webhook (`GET /api/webhooks/{id}`");
    let keys = |v: &Value| {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(
        keys(&sample),
        keys(webhook),
        "README's sample webhook vs GET /api/webhooks/{{id}}"
    );

    // `kill %1 %2` stopped both: nothing is left listening.
    for port in [api, receiver] {
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
            "port {port} is still served after the walkthrough"
        );
    }
}

/// The first ```json block after `heading` in the README.
fn readme_json_after(heading: &str) -> Value {
    let from = README.find(heading).expect("heading") + heading.len();
    let rest = &README[from..];
    let start = rest.find("```json").expect("a json block") + "```json".len();
    let end = start + rest[start..].find("```").expect("its end");
    serde_json::from_str(&rest[start..end]).expect("the README's sample is JSON")
}

#[test]
fn token_finds_the_data_directory_of_serve_from_a_subdirectory() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join(".dakkio");
    let local = common::Local::start(&data, &[]);
    let sub = root.path().join("some/sub/dir");
    std::fs::create_dir_all(&sub).unwrap();
    let token = |cwd: &Path| {
        Command::new(common::BIN)
            .args(["token", "--sub", "alice"])
            .current_dir(cwd)
            .env_remove("JWT_SECRET")
            .env_remove("DAKKIO_DATA_DIR")
            .output()
            .unwrap()
    };
    let out = token(&sub);
    assert!(out.status.success(), "{out:?}");
    let jwt = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains(&data.display().to_string()), "{said}");
    let status = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg("-H")
        .arg(format!("Authorization: Bearer {jwt}"))
        .arg(format!("{}/api/webhooks", local.base))
        .output()
        .unwrap();
    let status = String::from_utf8_lossy(&status.stdout).into_owned();
    assert_eq!(
        status, "200",
        "a token minted in a subdirectory is accepted"
    );

    // Where no data directory exists, `token` refuses instead of making a key nobody accepts.
    let elsewhere = tempfile::tempdir().unwrap();
    let out = token(elsewhere.path());
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no data directory"),
        "{out:?}"
    );
    assert!(!elsewhere.path().join(".dakkio").exists());
}
