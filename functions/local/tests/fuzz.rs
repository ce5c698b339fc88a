//! Schemathesis fuzzes the API from its own OpenAPI document (`GET /api/openapi.json`), against
//! the real local-mode binary, and then the test checks that no rejected request left anything
//! behind.
//!
//! Two runs, one schemathesis process each, a fixed seed, one worker (so the recorded requests
//! are in the order they were sent):
//! 1. every operation but `POST /api/events`, with a user's token;
//! 2. `POST /api/events`, with a producer's token (scope `events:publish`).
//!
//! Schemathesis' checks, on every response: no 5xx (`not_a_server_error`), the response conforms
//! to the document (schema, status code, content type, headers), unsupported methods answer 405
//! with `Allow`, requests without or with broken credentials are refused (`ignored_auth`), and
//! in its stateful phase a deleted webhook is gone and a created one is there. Not run:
//! `positive_data_acceptance` — the document is looser than the API's validation in places
//! (ids without their 24-hex pattern, `secret` without its 8–512 length, …), so schema-valid
//! requests are refused on purpose; see the report of issue #6.
//!
//! Then, from the requests both runs recorded (their HAR reports) and the API itself:
//! - the process is still up (no crash), and stops cleanly on SIGTERM;
//! - the caller's webhooks are exactly those that existed before plus those a `201` created,
//!   minus those a `204` deleted: no refused create stored one, no refused delete removed one;
//! - every webhook's settings, between any two responses that show them, changed only across a
//!   request that succeeded: a refused PATCH, rotation, test or redelivery changed nothing;
//! - another user's webhook is untouched;
//! - every delivery in the remaining webhooks' histories, and every one the test's receiver got,
//!   was announced by an accepted (`202`) publish, test send or redelivery: a refused one queued
//!   nothing.

mod common;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

const SEED: &str = "20260601";
/// Generated test cases per operation, per run.
const USER_EXAMPLES: &str = "100";
const PRODUCER_EXAMPLES: &str = "300";
/// The fewest requests both runs must have sent together.
const MIN_REQUESTS: usize = 1_000;
/// One schemathesis run may take this long: a guard against a hung run, not a speed check. On
/// a quiet 2-core machine the user's run takes about 15–25 s and the producer's about 7 s, but
/// with a build beside it the user's run (19 operations, five phases) took over 80 s.
const RUN_LIMIT: Duration = Duration::from_secs(300);
const BUCKET: &str = "507f1f77bcf86cd799439011";
const OTHER_BUCKET: &str = "65a1b2c3d4e5f60718293a4b";
/// Every check schemathesis has but `positive_data_acceptance` (see the module docs) and
/// `negative_data_rejection` (schemathesis' notion of "invalid" follows the document, which for
/// `POST /api/events` describes the batch form only, while the API also takes a single event).
const CHECKS: &str = "not_a_server_error,response_schema_conformance,status_code_conformance,\
    content_type_conformance,response_headers_conformance,use_after_free,\
    ensure_resource_availability,ignored_auth,unsupported_method,allow_header_conformance,\
    missing_required_header";
/// The same, without `status_code_conformance`: `POST /api/events` answers `415
/// unsupported_media_type` to a body without `Content-Type: application/json`, which its
/// `#[utoipa::path]` responses (functions/api/src/routes/events.rs) do not list, while those of
/// `POST /api/webhooks` and `PATCH /api/webhooks/{id}` do. Use `CHECKS` once it is documented.
const PRODUCER_CHECKS: &str = "not_a_server_error,response_schema_conformance,\
    content_type_conformance,response_headers_conformance,ignored_auth,unsupported_method,\
    allow_header_conformance,missing_required_header";

fn schemathesis() -> PathBuf {
    let venv = root().join(".venv/bin");
    ["st", "schemathesis"]
        .iter()
        .map(|b| venv.join(b))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "schemathesis is not installed in {}: run ./infra/test.sh (or ./infra/setup-venv.sh), \
                 which installs infra/requirements.txt into ./.venv",
                venv.display()
            )
        })
}

/// One recorded request and its response.
#[derive(Debug, Clone)]
struct Exchange {
    method: String,
    /// The path, without the query.
    path: String,
    status: u16,
    body: Value,
}

/// Runs schemathesis once; returns the requests it sent, in order, and its summary lines.
fn run_schemathesis(
    work: &Path,
    name: &str,
    base: &str,
    token: &str,
    examples: &str,
    checks: &str,
    filter: &[&str],
) -> (Vec<Exchange>, String) {
    let report_dir = work.join(format!("report-{name}"));
    let har = report_dir.join("requests.har");
    let log_path = work.join(format!("{name}.log"));
    let log = std::fs::File::create(&log_path).expect("log file");
    let mut child = Command::new(schemathesis())
        .current_dir(work)
        .arg("run")
        .arg(format!("{base}/api/openapi.json"))
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args(["--checks", checks])
        .args(["--seed", SEED])
        .args(["--max-examples", examples])
        .args(["--workers", "1"])
        .args(["--request-timeout", "10"])
        .args(["--generation-database", "none"])
        .args(["--report", "har"])
        .arg("--report-dir")
        .arg(&report_dir)
        .arg("--report-har-path")
        .arg(&har)
        .args(["--no-color", "--output-truncate", "false"])
        .args(filter)
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .env_remove("ALL_PROXY")
        .env_remove("all_proxy")
        .env("NO_PROXY", "127.0.0.1,localhost")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log file"))
        .stderr(log)
        .spawn()
        .expect("start schemathesis");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for schemathesis") {
            break status;
        }
        if started.elapsed() > RUN_LIMIT {
            child.kill().ok();
            child.wait().ok();
            panic!(
                "schemathesis ({name}) did not finish within {RUN_LIMIT:?}; its output:\n{}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let output = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(
        status.success(),
        "schemathesis ({name}) found problems ({status}):\n{output}"
    );
    let summary: String = output
        .lines()
        .skip_while(|l| !l.contains("SUMMARY"))
        .filter(|l| !l.trim().is_empty())
        .map(|l| format!("  {name}: {l}\n"))
        .collect();
    println!(
        "schemathesis ({name}) took {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let har: Value =
        serde_json::from_slice(&std::fs::read(&har).expect("the HAR report")).expect("HAR is JSON");
    let mut entries: Vec<&Value> = har["log"]["entries"]
        .as_array()
        .expect("HAR entries")
        .iter()
        .collect();
    // One worker: the file is in order already; sorting by start time keeps it so (stable).
    entries.sort_by(|a, b| {
        a["startedDateTime"]
            .as_str()
            .cmp(&b["startedDateTime"].as_str())
    });
    let exchanges = entries
        .into_iter()
        .map(|e| {
            let url = e["request"]["url"].as_str().expect("request url");
            let path = url
                .strip_prefix(base)
                .unwrap_or(url)
                .split(['?', '#'])
                .next()
                .unwrap_or_default()
                .to_owned();
            let text = e["response"]["content"]["text"].as_str().unwrap_or("");
            Exchange {
                method: e["request"]["method"]
                    .as_str()
                    .expect("method")
                    .to_uppercase(),
                path,
                status: e["response"]["status"].as_u64().expect("status") as u16,
                body: serde_json::from_str(text).unwrap_or(Value::Null),
            }
        })
        .collect();
    (exchanges, summary)
}

/// The id of `/api/webhooks/{id}[/...]`.
fn webhook_id_of(path: &str) -> Option<&str> {
    path.strip_prefix("/api/webhooks/")
        .map(|rest| rest.split('/').next().unwrap_or_default())
        .filter(|id| id.len() == 24 && id.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A webhook's settings: what only a successful request of its owner may change (not the
/// stats, delivery status or `updatedAt`, which deliveries change).
fn settings(w: &Value) -> Value {
    json!({
        "bucketId": w["bucketId"],
        "url": w["url"],
        "events": w["events"],
        "description": w["description"],
        "active": w["active"],
        "retryConfig": w["retryConfig"],
        "format": w["format"],
        "secretHint": w["secretHint"],
    })
}

/// Every webhook representation in a successful response: (id, settings).
fn shown_webhooks(x: &Exchange) -> Vec<(String, Value)> {
    if !(200..300).contains(&x.status) {
        return Vec::new();
    }
    let one = |w: &Value| {
        let id = w["id"].as_str()?;
        (w.get("bucketId").is_some() && w.get("url").is_some())
            .then(|| (id.to_owned(), settings(w)))
    };
    match x.body.get("data").and_then(Value::as_array) {
        Some(items) if x.method == "GET" && x.path == "/api/webhooks" => {
            items.iter().filter_map(one).collect()
        }
        _ => one(&x.body).into_iter().collect(),
    }
}

async fn list_all(api: &Api, token: &str) -> Vec<Value> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..1_000 {
        let path = match &cursor {
            None => "/api/webhooks?limit=100".to_owned(),
            Some(c) => format!("/api/webhooks?limit=100&cursor={c}"),
        };
        let (s, page) = api.call(reqwest::Method::GET, &path, token, None).await;
        assert_eq!(s, 200, "{page}");
        all.extend(page["data"].as_array().expect("data").iter().cloned());
        match page["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return all,
        }
    }
    panic!("more than 1,000 pages of webhooks");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_refused_requests_store_nothing() {
    let st = schemathesis();
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).expect("work dir");
    let mut local = Local::start(
        &data,
        &["--delivery-timeout-secs", "2", "--no-circuit-breaker"],
    );
    let user = local.token.clone(); // `dev-user`
    let producer = local.mint("ingest", Some("events:publish"));
    let other = local.mint("someone-else", None);
    let api = Api::new(&local.base);
    println!("schemathesis: {}", st.display());

    // Before: two webhooks of the user on a receiver that records what it gets (in the bucket
    // of the document's examples, so published examples reach them), and one of another user.
    let (receiver, receiver_base) = TestReceiver::start().await;
    let mut before = Vec::new();
    for n in 0..2 {
        before.push(
            api.create(
                &user,
                json!({
                    "bucketId": BUCKET,
                    "url": format!("{receiver_base}/before-{n}"),
                    "events": ["alert.triggered", "data.received", "bucket.updated"],
                    "secret": "fuzz-test-secret",
                    "description": format!("created before fuzzing ({n})"),
                }),
            )
            .await,
        );
    }
    let foreign = api
        .create(
            &other,
            json!({
                "bucketId": OTHER_BUCKET,
                "url": format!("{receiver_base}/foreign"),
                "events": ["alert.triggered"],
                "secret": "someone-elses-secret",
            }),
        )
        .await;
    let foreign_before = settings(&api.webhook(&other, &foreign).await);
    let listed_before: BTreeSet<String> = list_all(&api, &user)
        .await
        .iter()
        .map(|w| w["id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(listed_before, before.iter().cloned().collect());

    let base = local.base.clone();
    let (user_run, producer_run) = tokio::task::spawn_blocking(move || {
        let user_run = run_schemathesis(
            &work,
            "user",
            &base,
            &user,
            USER_EXAMPLES,
            CHECKS,
            &["--exclude-path", "/api/events"],
        );
        let producer_run = run_schemathesis(
            &work,
            "producer",
            &base,
            &producer,
            PRODUCER_EXAMPLES,
            PRODUCER_CHECKS,
            &["--include-path", "/api/events"],
        );
        (user_run, producer_run)
    })
    .await
    .expect("schemathesis runs");
    let user = local.token.clone();
    let (user_requests, user_summary) = user_run;
    let (producer_requests, producer_summary) = producer_run;
    print!("{user_summary}{producer_summary}");

    // Counts.
    let total = user_requests.len() + producer_requests.len();
    let mut by_status: HashMap<(String, u16), usize> = HashMap::new();
    for x in user_requests.iter().chain(&producer_requests) {
        *by_status.entry((x.method.clone(), x.status)).or_default() += 1;
    }
    let mut by_status: Vec<_> = by_status.into_iter().collect();
    by_status.sort();
    println!(
        "requests fuzzed: {total} ({} with the user's token, {} with the producer's); by method and status: {by_status:?}",
        user_requests.len(),
        producer_requests.len()
    );
    assert!(
        total >= MIN_REQUESTS,
        "schemathesis sent {total} requests; at least {MIN_REQUESTS} wanted"
    );
    let server_errors: Vec<&Exchange> = user_requests
        .iter()
        .chain(&producer_requests)
        .filter(|x| x.status >= 500)
        .collect();
    assert!(server_errors.is_empty(), "5xx answers: {server_errors:#?}");

    // No crash.
    assert!(
        local.child.try_wait().expect("try_wait").is_none(),
        "the local mode exited during the fuzzing"
    );
    let (s, health) = api.call(reqwest::Method::GET, "/health", "", None).await;
    assert_eq!(s, 200, "{health}");

    // Exactly the webhooks that existed, plus those created (201), minus those deleted (204).
    let created: Vec<String> = user_requests
        .iter()
        .filter(|x| x.method == "POST" && x.path == "/api/webhooks" && x.status == 201)
        .map(|x| {
            x.body["id"]
                .as_str()
                .expect("a 201 names its id")
                .to_owned()
        })
        .collect();
    let deleted: HashSet<String> = user_requests
        .iter()
        .filter(|x| x.method == "DELETE" && x.status == 204)
        .filter_map(|x| webhook_id_of(&x.path).map(str::to_owned))
        .collect();
    let expected: BTreeSet<String> = before
        .iter()
        .chain(&created)
        .filter(|id| !deleted.contains(*id))
        .cloned()
        .collect();
    let listed = list_all(&api, &user).await;
    let listed_ids: BTreeSet<String> = listed
        .iter()
        .map(|w| w["id"].as_str().expect("id").to_owned())
        .collect();
    println!(
        "webhooks: {} before, {} created (201), {} deleted (204), {} listed after",
        before.len(),
        created.len(),
        deleted.len(),
        listed_ids.len()
    );
    assert_eq!(
        listed_ids, expected,
        "the webhooks listed are not those the successful requests account for \
         (created: {created:?}, deleted: {deleted:?})"
    );
    for id in &deleted {
        let (s, body) = api
            .call(
                reqwest::Method::GET,
                &format!("/api/webhooks/{id}"),
                &user,
                None,
            )
            .await;
        assert_eq!(s, 404, "deleted webhook {id} still answers: {body}");
    }

    // Settings change only across successful requests: walk every webhook's responses in
    // order; between two views of it with no successful PATCH or rotation in between, nothing
    // may differ (the views after the fuzzing, from the list and from GET, come last).
    #[derive(Debug)]
    enum Seen {
        Changed,
        Refused(usize),
        View(usize, Value),
    }
    let mut history: HashMap<String, Vec<Seen>> = HashMap::new();
    for (i, x) in user_requests.iter().enumerate() {
        if let Some(id) = webhook_id_of(&x.path) {
            let changes_settings =
                x.method == "PATCH" || (x.method == "POST" && x.path.ends_with("/rotate-secret"));
            let seen = if !(200..300).contains(&x.status) {
                Some(Seen::Refused(i))
            } else {
                changes_settings.then_some(Seen::Changed)
            };
            history.entry(id.to_owned()).or_default().extend(seen);
        }
        for (id, view) in shown_webhooks(x) {
            history.entry(id).or_default().push(Seen::View(i, view));
        }
    }
    let after = user_requests.len();
    for w in &listed {
        let id = w["id"].as_str().expect("id");
        let got = api.webhook(&user, id).await;
        let entry = history.entry(id.to_owned()).or_default();
        entry.push(Seen::View(after, settings(w)));
        entry.push(Seen::View(after, settings(&got)));
    }
    let describe = |k: usize| {
        let x = &user_requests[k];
        format!("#{k} {} {} -> {} {}", x.method, x.path, x.status, x.body)
    };
    let mut violations = Vec::new();
    let mut views = 0;
    for (id, seen) in &history {
        let mut last: Option<(usize, &Value)> = None;
        let mut changed = false;
        let mut refused = Vec::new();
        for s in seen {
            match s {
                Seen::Changed => changed = true,
                Seen::Refused(k) => refused.push(*k),
                Seen::View(i, view) => {
                    views += 1;
                    if let Some((j, previous)) = last
                        && !changed
                        && previous != view
                    {
                        violations.push(format!(
                            "webhook {id}: {previous} (request #{j}) became {view} (request #{i}) \
                             with no successful change in between; refused requests in between:\n  {}",
                            refused.iter().map(|k| describe(*k)).collect::<Vec<_>>().join("\n  ")
                        ));
                    }
                    last = Some((*i, view));
                    changed = false;
                    refused.clear();
                }
            }
        }
    }
    println!(
        "webhook views compared: {views} (of {} webhooks)",
        history.len()
    );
    assert!(violations.is_empty(), "{}", violations.join("\n"));

    // Another user's webhooks: the one there was, untouched.
    assert_eq!(
        settings(&api.webhook(&other, &foreign).await),
        foreign_before,
        "another user's webhook changed"
    );
    let others: Vec<String> = list_all(&api, &other)
        .await
        .iter()
        .map(|w| w["id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(others, vec![foreign.clone()]);

    // Every delivery the receiver got was announced by an accepted request.
    let announced: HashSet<String> = user_requests
        .iter()
        .chain(&producer_requests)
        .filter(|x| (200..300).contains(&x.status))
        .flat_map(|x| {
            let mut ids: Vec<String> = x
                .body
                .get("deliveries")
                .and_then(Value::as_array)
                .map(|d| {
                    d.iter()
                        .filter_map(|q| q["deliveryId"].as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            ids.extend(x.body["deliveryId"].as_str().map(str::to_owned));
            ids
        })
        .collect();
    // (The delivery history of every remaining webhook, fuzzed URLs included, and what the
    // test's receiver got.)
    let mut recorded: Vec<(String, String)> = Vec::new();
    for id in &listed_ids {
        let (s, page) = api
            .call(
                reqwest::Method::GET,
                &format!("/api/webhooks/{id}/deliveries?limit=100"),
                &user,
                None,
            )
            .await;
        assert_eq!(s, 200, "{page}");
        recorded.extend(page["data"].as_array().expect("data").iter().map(|a| {
            (
                format!("history of {id}"),
                a["deliveryId"].as_str().expect("deliveryId").to_owned(),
            )
        }));
    }
    let received: Vec<(String, String)> = receiver
        .all()
        .into_iter()
        .map(|r| {
            (
                r.path.clone(),
                r.headers.get("webhook-id").cloned().unwrap_or_default(),
            )
        })
        .collect();
    let unannounced: Vec<&(String, String)> = received
        .iter()
        .chain(&recorded)
        .filter(|(_, id)| !announced.contains(id))
        .collect();
    println!(
        "deliveries announced by accepted requests: {}; so far {} attempts recorded in the \
         remaining webhooks' histories, {} requests at the test's receiver",
        announced.len(),
        recorded.len(),
        received.len()
    );
    assert!(
        unannounced.is_empty(),
        "deliveries no accepted request announced: {unannounced:?}"
    );

    local.stop();
}
