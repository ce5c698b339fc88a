//! What the files of `events/` refer to, seeded the same way wherever they are run: the webhook,
//! owner and bucket of the API Gateway fixtures (their tokens' `sub` is the owner, signed with
//! `events/env.json`'s `JWT_SECRET`), the attempt and dead letter the delivery-history fixtures
//! read, and the webhooks the SQS fixtures' deliveries go to. Used by the tests that run the
//! fixtures (through the Lambda glue in process, and as real processes under cargo-lambda) and by
//! `infra/local-lambda.sh` (through the `local-lambda` example of this package).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::json;
use webhooks_core::conformance::sample_webhook;
use webhooks_core::delivery::{
    AttemptRecord, AttemptStatus, DeadLetter, DeliveryTask, QueueTask, envelope,
};
use webhooks_core::ports::{Clock, DeliveryLog, SubscriptionStore};
use webhooks_core::time::SystemClock;
use webhooks_core::webhook::{Secret, Webhook};
use webhooks_core::{BucketId, DeliveryId, EventType, OwnerId, WebhookId, jsjson};

/// The webhook, owner and bucket the API fixtures are about.
pub const FIXTURE_WEBHOOK: &str = "507f1f77bcf86cd799439016";
pub const FIXTURE_OWNER: &str = "507f1f77bcf86cd799439010";
pub const FIXTURE_BUCKET: &str = "507f1f77bcf86cd799439011";
/// The dead letter `apigw-v2-redeliver-one.json` redelivers.
pub const FIXTURE_DEAD_LETTER: &str = "65a4f0d11a2b3c4d5e6f0020";
/// The secret of every seeded webhook (the guide's).
pub const FIXTURE_SECRET: &str = "your_webhook_secret";

/// `<workspace>/events`.
pub fn events_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../events")
}

/// The API fixtures' webhook (`https://your-server.com/webhook`, both data events).
pub async fn seed_api_webhook(store: &dyn SubscriptionStore) -> Webhook {
    let owner = OwnerId::parse(FIXTURE_OWNER).unwrap();
    let bucket = BucketId::parse(FIXTURE_BUCKET).unwrap();
    let mut w = sample_webhook(&owner, &bucket, 1_705_314_600);
    w.id = WebhookId::parse(FIXTURE_WEBHOOK).unwrap();
    w.url = "https://your-server.com/webhook".into();
    w.events = vec![EventType::AlertTriggered, EventType::DataReceived];
    w.secret = Secret::new(FIXTURE_SECRET.into());
    store
        .create(&w)
        .await
        .expect("create the fixtures' webhook");
    w
}

/// One failed attempt and one dead letter ([`FIXTURE_DEAD_LETTER`]) of `w`.
pub async fn seed_api_history(log: &dyn DeliveryLog, w: &Webhook) {
    let now = SystemClock.now();
    let delivery_id = DeliveryId::parse(FIXTURE_DEAD_LETTER).unwrap();
    let body = jsjson::to_string(&envelope(
        EventType::AlertTriggered,
        now,
        &w.id,
        &w.bucket_id,
        &delivery_id,
        json!({"alertName": "High Temperature Alert", "currentValue": 31.5, "threshold": 30}),
    ));
    let task = DeliveryTask {
        delivery_id: delivery_id.clone(),
        webhook_id: w.id.clone(),
        event: EventType::AlertTriggered,
        generation: 0,
        attempts_made: 0,
        body,
        created_at: now,
    };
    log.record_attempt(&AttemptRecord {
        webhook_id: w.id.clone(),
        delivery_id,
        generation: 0,
        attempt: 1,
        event: EventType::AlertTriggered,
        status: AttemptStatus::Failed,
        status_code: Some(500),
        duration_ms: 42,
        error: Some("receiver answered HTTP 500".into()),
        response_body: Some("oops".into()),
        at: now,
    })
    .await
    .expect("record an attempt");
    log.put_dead_letter(&DeadLetter {
        task,
        error: "receiver answered HTTP 500".into(),
        attempts: 1,
        at: now,
    })
    .await
    .expect("put a dead letter");
}

/// The file names of the SQS fixtures (`events/sqs-*.json`), sorted.
pub fn sqs_fixture_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(events_dir())
        .expect("events/")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("sqs-") && n.ends_with(".json"))
        })
        .collect();
    files.sort();
    files
}

/// The tasks of an SQS fixture's records.
pub fn tasks_of(file: &Path) -> Vec<DeliveryTask> {
    let event: aws_lambda_events::event::sqs::SqsEvent =
        serde_json::from_str(&std::fs::read_to_string(file).expect("read the fixture"))
            .unwrap_or_else(|e| panic!("{}: not an SQS event: {e}", file.display()));
    event
        .records
        .iter()
        .map(|r| {
            QueueTask::from_json(r.body.as_deref().unwrap_or_default())
                .unwrap_or_else(|e| panic!("{}: not a QueueTask: {e}", file.display()))
                .delivery()
                .clone()
        })
        .collect()
}

/// Every webhook the SQS fixtures deliver to, pointed at `url` (owner and bucket of the API
/// fixtures, [`FIXTURE_SECRET`], subscribed to the fixtures' events).
pub async fn seed_sqs_webhooks(store: &dyn SubscriptionStore, url: &str) -> Vec<Webhook> {
    let mut events: BTreeMap<WebhookId, Vec<EventType>> = BTreeMap::new();
    for file in sqs_fixture_files() {
        for task in tasks_of(&file) {
            let subscribed = events.entry(task.webhook_id.clone()).or_default();
            if !subscribed.contains(&task.event) {
                subscribed.push(task.event);
            }
        }
    }
    let owner = OwnerId::parse(FIXTURE_OWNER).unwrap();
    let bucket = BucketId::parse(FIXTURE_BUCKET).unwrap();
    let mut seeded = Vec::new();
    for (id, events) in events {
        let mut w = sample_webhook(&owner, &bucket, 1_705_314_600);
        w.id = id;
        w.url = url.to_owned();
        w.events = events;
        w.secret = Secret::new(FIXTURE_SECRET.into());
        store
            .create(&w)
            .await
            .expect("create an SQS fixture's webhook");
        seeded.push(w);
    }
    seeded
}
