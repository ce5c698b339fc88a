//! `events/`: every sample event runs through its handler (DESIGN.md §6) — the same files
//! `sam local invoke -e` takes.
//!
//! - `apigw-v2-*.json`: through the API Lambda's glue exactly as `lambda_http::run` drives it
//!   (the event deserialized as the runtime deserializes it, `lambda_http::Adapter` around
//!   `webhooks_api::router`, the answer serialized as API Gateway receives it), the Router on
//!   DynamoDB and SQS in moto (tables and queues built from `template.yaml`) and configured from
//!   `events/env.json`, whose `JWT_SECRET` signed the fixtures' tokens. Each fixture runs on
//!   fresh tables; the ones about webhook `507f1f77bcf86cd799439016` (owner
//!   `507f1f77bcf86cd799439010`) find it created first, and the delivery-history ones also find
//!   an attempt and a dead letter of it. Each fixture has its expected answer in [`check`]; a
//!   fixture without one fails the test.
//! - `sqs-*.json`: run by `delivery::every_sqs_event_fixture_runs_through_the_handler`.
//! - `env.json`: what `sam local invoke --env-vars` sets, checked against the template.
//!
//! [`every_file_in_events_is_run_by_a_test`] fails on any other file in `events/`.

use std::collections::BTreeSet;
use std::sync::Arc;

use lambda_http::request::LambdaRequest;
use lambda_http::{Adapter, Context, LambdaEvent};
use serde_json::{Value, json};
use tower::ServiceExt;
use webhooks_api::config::ApiConfig;
use webhooks_api::{AppState, Ports, router};
use webhooks_aws::{DynamoDbDeliveryLog, DynamoDbIdempotencyStore, DynamoDbSubscriptionStore};
use webhooks_core::delivery::QueueTask;
use webhooks_core::ports::{DeliveryLog, SubscriptionStore};
use webhooks_core::time::SystemClock;
use webhooks_core::{BucketId, EventType, WebhookId};

use crate::helpers::dynamo::DeliveryTables;
use crate::helpers::fixtures::{
    self, FIXTURE_BUCKET, FIXTURE_DEAD_LETTER, FIXTURE_OWNER, FIXTURE_WEBHOOK, events_dir,
};
use crate::helpers::lambda::{Emulator, aws_env, function_binary};
use crate::helpers::moto;
use crate::helpers::sqs::Queues;
use crate::helpers::template::resource;

/// The file names in `events/`, sorted.
fn event_files() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(events_dir())
        .expect("read events/")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn read_event(name: &str) -> String {
    std::fs::read_to_string(events_dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// `events/env.json`: logical id → variable → value.
fn env_json() -> Value {
    serde_json::from_str(&read_event("env.json")).expect("events/env.json is JSON")
}

/// What the test does before a fixture runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seed {
    /// Fresh, empty tables.
    Nothing,
    /// The fixtures' webhook exists.
    Webhook,
    /// The fixtures' webhook exists, with one recorded attempt and one dead letter.
    WebhookWithHistory,
}

/// The seed each API fixture needs; `None` for a fixture this test does not know.
fn seed_for(fixture: &str) -> Option<Seed> {
    use Seed::*;
    Some(match fixture {
        "apigw-v2-create-webhook"
        | "apigw-v2-create-webhook-invalid"
        | "apigw-v2-health"
        | "apigw-v2-openapi"
        | "apigw-v2-dashboard"
        | "apigw-v2-dashboard-app-js"
        | "apigw-v2-dashboard-style-css"
        | "apigw-v2-dashboard-dev-token"
        | "apigw-v2-unknown-route" => Nothing,
        "apigw-v2-get-webhook"
        | "apigw-v2-list-webhooks"
        | "apigw-v2-update-webhook"
        | "apigw-v2-update-webhook-filter"
        | "apigw-v2-update-webhook-headers"
        | "apigw-v2-filter-test"
        | "apigw-v2-delete-webhook"
        | "apigw-v2-rotate-secret"
        | "apigw-v2-test-webhook"
        | "apigw-v2-publish-event"
        | "apigw-v2-publish-event-idempotent"
        | "apigw-v2-publish-batch" => Webhook,
        "apigw-v2-list-deliveries"
        | "apigw-v2-list-dead-letters"
        | "apigw-v2-redeliver-all"
        | "apigw-v2-redeliver-one" => WebhookWithHistory,
        _ => return None,
    })
}

/// What API Gateway gets back from the function (the serialized `LambdaResponse`).
#[derive(Debug)]
struct Answer {
    fixture: String,
    status: u16,
    headers: serde_json::Map<String, Value>,
    body: String,
    base64: bool,
}

impl Answer {
    /// An API Gateway v2 response as the function returns it to Lambda.
    fn from_wire(fixture: &str, wire: &Value) -> Self {
        Answer {
            fixture: fixture.to_owned(),
            status: u16::try_from(wire["statusCode"].as_u64().expect("statusCode")).unwrap(),
            headers: wire["headers"].as_object().cloned().unwrap_or_default(),
            body: wire["body"].as_str().unwrap_or_default().to_owned(),
            base64: wire["isBase64Encoded"].as_bool().unwrap_or(false),
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(Value::as_str)
    }

    fn json(&self) -> Value {
        assert!(
            self.header("content-type")
                .is_some_and(|t| t.starts_with("application/json")),
            "{}: content-type {:?}",
            self.fixture,
            self.header("content-type")
        );
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("{}: body is not JSON ({e}): {}", self.fixture, self.body))
    }

    fn expect_status(&self, status: u16) {
        assert_eq!(
            self.status, status,
            "{}: status {}, body {}",
            self.fixture, self.status, self.body
        );
    }

    /// The API's error format, with `code`.
    fn expect_error(&self, status: u16, code: &str) {
        self.expect_status(status);
        let body = self.json();
        assert_eq!(body["error"]["code"], code, "{}: {body}", self.fixture);
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{}: {body}",
            self.fixture
        );
    }

    /// A dashboard asset: text (not base64), its content type, the page's security headers.
    fn expect_asset(&self, content_type: &str, contains: &str) {
        self.expect_status(200);
        assert_eq!(
            self.header("content-type"),
            Some(content_type),
            "{}",
            self.fixture
        );
        assert!(
            self.header("content-security-policy")
                .is_some_and(|c| c.contains("default-src 'self'")),
            "{}: {:?}",
            self.fixture,
            self.headers
        );
        assert_eq!(self.header("x-content-type-options"), Some("nosniff"));
        assert!(
            self.body.contains(contains),
            "{}: no {contains:?} in the body",
            self.fixture
        );
    }
}

/// The API Lambda assembled as its `main` assembles it, on fresh moto tables and queues.
struct ApiWorld {
    queues: Queues,
    store: Arc<DynamoDbSubscriptionStore>,
    log: Arc<DynamoDbDeliveryLog>,
    state: AppState,
    /// The function's environment: env.json's `ApiFunction`, on these tables and queue.
    env: Vec<(String, String)>,
}

impl ApiWorld {
    async fn create() -> Self {
        let (tables, queues) = tokio::join!(DeliveryTables::create(), Queues::create());
        let env = env_json();
        let vars = env["ApiFunction"]
            .as_object()
            .expect("env.json: ApiFunction");
        // The same config the Lambda reads, from env.json's values (JWT_SECRET above all).
        let config =
            ApiConfig::from_lookup(|k| vars.get(k).and_then(Value::as_str).map(str::to_owned))
                .expect("env.json's ApiFunction variables make a valid API config");
        let store = Arc::new(tables.webhooks.store.clone());
        let log = Arc::new(tables.log.clone());
        let ports = Ports {
            store: store.clone(),
            log: log.clone(),
            queue: Arc::new(queues.queue.clone()),
            clock: Arc::new(SystemClock),
        };
        // As the API function's main: idempotency records in the deliveries table.
        let state = AppState::new(ports, config.url_policy, &config.jwt_secret)
            .expect("state")
            .with_idempotency(Arc::new(DynamoDbIdempotencyStore::new(
                tables.webhooks.client.clone(),
                tables.deliveries_name.clone(),
            )));
        let mut env = aws_env(moto::endpoint());
        for (name, value) in vars {
            let value = match name.as_str() {
                "WEBHOOKS_TABLE" => tables.webhooks.name.clone(),
                "SECRETS_KEY_ARN" => crate::helpers::dynamo::secrets_key().await,
                "DELIVERIES_TABLE" => tables.deliveries_name.clone(),
                "QUEUE_URL" => queues.url.clone(),
                _ => value.as_str().expect("a string").to_owned(),
            };
            env.push((name.clone(), value));
        }
        Self {
            queues,
            store,
            log,
            state,
            env,
        }
    }

    fn webhook_id() -> WebhookId {
        WebhookId::parse(FIXTURE_WEBHOOK).unwrap()
    }

    async fn seed(&self, seed: Seed) {
        if seed == Seed::Nothing {
            return;
        }
        let w = fixtures::seed_api_webhook(&*self.store).await;
        if seed == Seed::WebhookWithHistory {
            fixtures::seed_api_history(&*self.log, &w).await;
        }
    }

    /// Runs one API Gateway v2 event through the Lambda glue and the Router.
    async fn invoke(&self, fixture: &str, event_json: &str) -> Answer {
        let request: LambdaRequest = serde_json::from_str(event_json)
            .unwrap_or_else(|e| panic!("{fixture}: not an API Gateway event: {e}"));
        assert!(
            matches!(request, LambdaRequest::ApiGatewayV2(_)),
            "{fixture}: read as {request:?}, not as an HTTP API (v2) event"
        );
        // `Adapter` is what `lambda_http::run` wraps the Router in (public, if doc-hidden): the
        // event becomes an `http::Request`, the Router's answer an API Gateway v2 response.
        let response = Adapter::from(router(self.state.clone()))
            .oneshot(LambdaEvent::new(request, Context::default()))
            .await
            .unwrap_or_else(|e: std::convert::Infallible| match e {});
        let wire = serde_json::to_value(&response).expect("the response serializes");
        Answer::from_wire(fixture, &wire)
    }

    /// The delivery ids now on the delivery queue (received, so invisible afterwards).
    async fn queued(&self) -> BTreeSet<String> {
        let mut ids = BTreeSet::new();
        loop {
            let batch = self.queues.receive_raw(&self.queues.url, 10, 0).await;
            if batch.is_empty() {
                return ids;
            }
            for m in batch {
                let task = QueueTask::from_json(m.body.as_deref().unwrap_or_default())
                    .expect("a queued QueueTask");
                ids.insert(task.delivery().delivery_id.to_string());
            }
        }
    }

    async fn dead_letters(&self) -> usize {
        self.log
            .dead_letters(&Self::webhook_id(), 100)
            .await
            .expect("dead letters")
            .len()
    }
}

/// The `deliveryId`s of an answer's `deliveries` (publish, redelivery).
fn delivery_ids(body: &Value) -> BTreeSet<String> {
    body["deliveries"]
        .as_array()
        .expect("deliveries")
        .iter()
        .map(|d| {
            assert_eq!(d["webhookId"], FIXTURE_WEBHOOK, "{d}");
            d["deliveryId"].as_str().expect("deliveryId").to_owned()
        })
        .collect()
}

/// The expected answer of each fixture, and what it changed.
async fn check(world: &ApiWorld, a: &Answer) {
    let id = ApiWorld::webhook_id();
    match a.fixture.as_str() {
        "apigw-v2-create-webhook" => {
            a.expect_status(201);
            let b = a.json();
            assert_eq!(b["bucketId"], FIXTURE_BUCKET);
            assert_eq!(b["url"], "https://your-server.com/webhook");
            assert_eq!(b["events"], json!(["alert.triggered", "data.received"]));
            assert_eq!(b["active"], true);
            assert_eq!(
                b["secret"], "your_webhook_secret",
                "shown once, at creation"
            );
            assert_eq!(b["secretHint"], "…cret");
            assert_eq!(b["retryConfig"]["maxRetries"], 3);
            let created = WebhookId::parse(b["id"].as_str().expect("id")).expect("an ObjectId");
            let stored = world.store.get(&created).await.unwrap().expect("stored");
            assert_eq!(stored.owner_id.as_str(), FIXTURE_OWNER);
        }
        "apigw-v2-create-webhook-invalid" => {
            // `http://` is refused in production (the events list is empty too; the URL is
            // checked first).
            a.expect_error(400, "invalid_url");
            let bucket = BucketId::parse(FIXTURE_BUCKET).unwrap();
            assert!(
                world
                    .store
                    .list_for_bucket_event(&bucket, EventType::AlertTriggered)
                    .await
                    .unwrap()
                    .webhooks
                    .is_empty(),
                "nothing stored"
            );
        }
        "apigw-v2-get-webhook" => {
            a.expect_status(200);
            let b = a.json();
            assert_eq!(b["id"], FIXTURE_WEBHOOK);
            assert_eq!(b["bucketId"], FIXTURE_BUCKET);
            assert_eq!(
                b["stats"],
                json!({"totalDeliveries": 0, "successfulDeliveries": 0, "failedDeliveries": 0})
            );
            assert_eq!(b["secretHint"], "…cret");
            assert!(
                b.get("secret").is_none(),
                "the secret is shown only once: {b}"
            );
        }
        "apigw-v2-list-webhooks" => {
            a.expect_status(200);
            let b = a.json();
            let ids: Vec<&str> = b["data"]
                .as_array()
                .expect("data")
                .iter()
                .filter_map(|w| w["id"].as_str())
                .collect();
            assert_eq!(ids, [FIXTURE_WEBHOOK]);
            assert!(b["data"][0].get("secret").is_none());
            assert_eq!(b["nextCursor"], Value::Null);
        }
        "apigw-v2-update-webhook" => {
            a.expect_status(200);
            let b = a.json();
            assert_eq!(b["id"], FIXTURE_WEBHOOK);
            assert_eq!(b["active"], false);
            assert_eq!(b["retryConfig"]["maxRetries"], 5);
            let stored = world.store.get(&id).await.unwrap().expect("still there");
            assert!(!stored.active);
            assert_eq!(stored.retry_config.max_retries, 5);
        }
        "apigw-v2-update-webhook-filter" => {
            a.expect_status(200);
            let b = a.json();
            let want = json!({"data.dataSourceId": {"$in": ["pump-1", "pump-3"]},
                "$or": [{"data.severity": "high"}, {"data.currentValue": {"$gte": 30}}]});
            assert_eq!(b["filter"], want, "shown as written");
            let stored = world.store.get(&id).await.unwrap().expect("still there");
            assert_eq!(stored.filter.as_ref().map(|f| f.as_json()), Some(&want));
        }
        "apigw-v2-update-webhook-headers" => {
            a.expect_status(200);
            assert_eq!(
                a.json()["headers"],
                json!([{"name": "X-Api-Key", "hint": "…cdef"}, {"name": "Authorization", "hint": "…oken"}])
            );
            assert!(
                !a.body.contains("sk_live") && !a.body.contains("gateway-token"),
                "values are write-only: {}",
                a.body
            );
            let stored = world.store.get(&id).await.unwrap().expect("still there");
            let pairs: Vec<_> = stored.headers.expose().collect();
            assert_eq!(
                pairs,
                [
                    ("X-Api-Key", "sk_live_0123456789abcdef"),
                    ("Authorization", "Bearer gateway-token")
                ]
            );
        }
        "apigw-v2-filter-test" => {
            a.expect_status(200);
            assert_eq!(
                a.json(),
                json!({"matches": true, "subscribed": true, "filterMatches": true})
            );
            let stored = world.store.get(&id).await.unwrap().expect("still there");
            assert_eq!(stored.filter, None, "a proposed filter is not saved");
        }
        "apigw-v2-delete-webhook" => {
            a.expect_status(204);
            assert!(a.body.is_empty(), "{}", a.body);
            assert!(world.store.get(&id).await.unwrap().is_none(), "deleted");
        }
        "apigw-v2-rotate-secret" => {
            a.expect_status(200);
            let b = a.json();
            let secret = b["secret"].as_str().expect("the new secret, shown once");
            assert!(secret.starts_with("whsec_"), "{secret}");
            assert!(b["previousSecretExpiresAt"].is_string(), "{b}");
            let stored = world.store.get(&id).await.unwrap().expect("still there");
            assert_eq!(stored.secret.expose(), secret);
            assert_eq!(
                stored.previous_secret.as_ref().map(|p| p.secret.expose()),
                Some("your_webhook_secret")
            );
        }
        "apigw-v2-test-webhook" => {
            a.expect_status(202);
            let b = a.json();
            assert_eq!(b["webhookId"], FIXTURE_WEBHOOK);
            let delivery = b["deliveryId"].as_str().expect("deliveryId").to_owned();
            assert_eq!(world.queued().await, BTreeSet::from([delivery]));
        }
        "apigw-v2-publish-event" => {
            // alert.triggered: the webhook is subscribed.
            a.expect_status(202);
            let b = a.json();
            assert_eq!(b["events"], 1);
            let ids = delivery_ids(&b);
            assert_eq!(ids.len(), 1, "{b}");
            assert_eq!(b["deliveries"][0]["event"], "alert.triggered");
            assert_eq!(world.queued().await, ids);
        }
        "apigw-v2-publish-event-idempotent" => {
            // The same request sent again with its Idempotency-Key (a producer retrying): the
            // same answer and deliveryIds, replayed, and nothing queued a second time.
            a.expect_status(202);
            let first = a.json();
            let ids = delivery_ids(&first);
            assert_eq!(ids.len(), 1, "{first}");
            assert_eq!(world.queued().await, ids);
            let again = world
                .invoke(&a.fixture, &read_event(&format!("{}.json", a.fixture)))
                .await;
            again.expect_status(202);
            assert_eq!(again.header("idempotent-replayed"), Some("true"));
            assert_eq!(again.json(), first);
            assert_eq!(
                world.queued().await,
                BTreeSet::new(),
                "nothing queued again"
            );
        }
        "apigw-v2-publish-batch" => {
            // data.received (subscribed) and bucket.updated (not subscribed).
            a.expect_status(202);
            let b = a.json();
            assert_eq!(b["events"], 2);
            let ids = delivery_ids(&b);
            assert_eq!(ids.len(), 1, "{b}");
            assert_eq!(b["deliveries"][0]["event"], "data.received");
            assert_eq!(world.queued().await, ids);
        }
        "apigw-v2-list-deliveries" => {
            a.expect_status(200);
            let b = a.json();
            let data = b["data"].as_array().expect("data");
            assert_eq!(data.len(), 1, "{b}");
            assert_eq!(data[0]["deliveryId"], FIXTURE_DEAD_LETTER);
            assert_eq!(data[0]["statusCode"], 500);
            assert_eq!(data[0]["status"], "failed");
        }
        "apigw-v2-list-dead-letters" => {
            a.expect_status(200);
            let b = a.json();
            let data = b["data"].as_array().expect("data");
            assert_eq!(data.len(), 1, "{b}");
            assert_eq!(data[0]["deliveryId"], FIXTURE_DEAD_LETTER);
            assert_eq!(data[0]["error"], "receiver answered HTTP 500");
        }
        "apigw-v2-redeliver-all" | "apigw-v2-redeliver-one" => {
            a.expect_status(202);
            let b = a.json();
            let ids = delivery_ids(&b);
            assert_eq!(ids, BTreeSet::from([FIXTURE_DEAD_LETTER.to_owned()]));
            assert_eq!(world.queued().await, ids, "queued again, same delivery id");
            assert_eq!(world.dead_letters().await, 0, "no longer a dead letter");
        }
        "apigw-v2-health" => {
            a.expect_status(200);
            assert_eq!(a.json()["status"], "ok");
        }
        "apigw-v2-openapi" => {
            a.expect_status(200);
            let b = a.json();
            assert!(
                b["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
                "{}",
                b["openapi"]
            );
            let paths = b["paths"].as_object().expect("paths");
            for p in [
                "/api/webhooks",
                "/api/webhooks/{id}",
                "/api/webhooks/{id}/rotate-secret",
                "/api/events",
            ] {
                assert!(paths.contains_key(p), "no {p} in the OpenAPI document");
            }
        }
        "apigw-v2-dashboard" => a.expect_asset("text/html; charset=utf-8", "<html"),
        "apigw-v2-dashboard-app-js" => {
            a.expect_asset("text/javascript; charset=utf-8", "sessionStorage")
        }
        "apigw-v2-dashboard-style-css" => a.expect_asset("text/css; charset=utf-8", "{"),
        // The development token exists in the local mode only.
        "apigw-v2-dashboard-dev-token" => a.expect_error(404, "route_not_found"),
        "apigw-v2-unknown-route" => a.expect_error(404, "route_not_found"),
        other => {
            panic!("no expected answer for events/{other}.json: add one to tests/it/events.rs")
        }
    }
    // Every answer is text API Gateway passes through as it is.
    assert!(!a.base64, "{}: base64-encoded answer", a.fixture);
}

/// The API Gateway fixtures' names (without `.json`), each with its seed.
fn api_fixtures() -> Vec<(String, Seed)> {
    let fixtures: Vec<(String, Seed)> = event_files()
        .into_iter()
        .filter_map(|n| {
            n.strip_suffix(".json")
                .filter(|s| s.starts_with("apigw-v2-"))
                .map(str::to_owned)
        })
        .map(|fixture| {
            let seed = seed_for(&fixture).unwrap_or_else(|| {
                panic!("events/{fixture}.json is unknown here: add it to seed_for and check in tests/it/events.rs")
            });
            (fixture, seed)
        })
        .collect();
    assert!(fixtures.len() >= 20, "{fixtures:?}");
    fixtures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_api_gateway_fixture_runs_through_the_api_lambda_with_its_expected_answer() {
    for (fixture, seed) in &api_fixtures() {
        // GIVEN fresh tables and queues, seeded as the fixture needs
        let world = ApiWorld::create().await;
        world.seed(*seed).await;
        // WHEN the fixture is handled by the API Lambda's glue and Router
        let answer = world
            .invoke(fixture, &read_event(&format!("{fixture}.json")))
            .await;
        // THEN the answer (and what it changed) is the expected one
        check(&world, &answer).await;
    }
}

/// The README's "Run a function locally" path, for real: the `webhooks-api` binary as a process
/// under cargo-lambda's Lambda emulator, each fixture sent with `cargo lambda invoke`, the function
/// configured from env.json (plus the emulator's endpoint, region and dummy credentials, as
/// `infra/local-lambda.sh` sets them) — the same expected answers as the in-process run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_api_gateway_fixture_gets_its_answer_from_the_real_binary_under_cargo_lambda() {
    let emulator = Emulator::start().await;
    let binary = function_binary("webhooks-api");
    for (fixture, seed) in &api_fixtures() {
        // GIVEN fresh tables and queues, seeded as the fixture needs, and a cold function on them
        let world = ApiWorld::create().await;
        world.seed(*seed).await;
        let function = emulator.run(&binary, &world.env);
        // WHEN the fixture is invoked as a user invokes it
        let wire = emulator
            .invoke(&events_dir().join(format!("{fixture}.json")), &function)
            .await;
        // THEN the answer (and what it changed) is the expected one
        check(&world, &Answer::from_wire(fixture, &wire)).await;
        function.stop().await;
    }
}

#[test]
fn every_file_in_events_is_run_by_a_test() {
    // GIVEN every file of events/
    // THEN each is run by a test: the API Gateway fixtures here (each needs an expected answer),
    // the SQS ones by the delivery tests, env.json by the check below
    let unknown: Vec<String> = event_files()
        .into_iter()
        .filter(|n| {
            let api = n
                .strip_suffix(".json")
                .filter(|s| s.starts_with("apigw-v2-"))
                .is_some_and(|s| seed_for(s).is_some());
            let sqs = n.starts_with("sqs-") && n.ends_with(".json");
            !(api || sqs || n == "env.json" || n == "env.local.json")
        })
        .collect();
    assert!(
        unknown.is_empty(),
        "no test runs these files of events/: {unknown:?} (API Gateway v2 events go in \
         tests/it/events.rs, SQS events are named sqs-*.json)"
    );
    // AND every SQS fixture is an SQS event of the delivery queue's shape
    for n in event_files().iter().filter(|n| n.starts_with("sqs-")) {
        let event: aws_lambda_events::event::sqs::SqsEvent =
            serde_json::from_str(&read_event(n)).unwrap_or_else(|e| panic!("{n}: {e}"));
        assert!(!event.records.is_empty(), "{n}: no records");
        for r in &event.records {
            QueueTask::from_json(r.body.as_deref().unwrap_or_default())
                .unwrap_or_else(|e| panic!("{n}: a record's body is not a QueueTask: {e}"));
        }
    }
}

#[test]
fn env_json_sets_only_variables_the_template_declares_for_each_function() {
    // GIVEN events/env.json (for `sam local invoke --env-vars`, which only overrides variables a
    // function declares in the template) and env.local.json (the same, against the emulator of
    // infra/local-lambda.sh)
    for file in ["env.json", "env.local.json"] {
        let env: Value = serde_json::from_str(&read_event(file)).expect("JSON");
        let functions = env.as_object().expect("an object of functions");
        assert!(
            functions.contains_key("ApiFunction") && functions.contains_key("DeliveryFunction"),
            "{file}"
        );
        for (logical_id, vars) in functions {
            // THEN each entry is a function of the template, and each variable one it declares
            let declared = &resource(logical_id)["Properties"]["Environment"]["Variables"];
            for (name, value) in vars.as_object().expect("variables") {
                assert!(
                    declared.get(name.as_str()).is_some(),
                    "{file} sets {logical_id}.{name}, which template.yaml does not declare"
                );
                assert!(value.is_string(), "{file}: {logical_id}.{name}: a string");
            }
        }
        // AND the API's variables make a valid config (the JWT secret is long enough)
        let api = functions["ApiFunction"].as_object().unwrap();
        ApiConfig::from_lookup(|k| api.get(k).and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_else(|e| panic!("{file}: ApiFunction's config: {e}"));
    }
    // AND the emulator's endpoint is declared (set only for local testing)
    for f in ["ApiFunction", "DeliveryFunction"] {
        assert!(
            resource(f)["Properties"]["Environment"]["Variables"]
                .get("AWS_ENDPOINT_URL")
                .is_some(),
            "{f}"
        );
    }
}
