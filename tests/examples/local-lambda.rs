//! The set-up step of `infra/local-lambda.sh`: in the AWS emulator at `--endpoint`, creates the
//! tables and queues `template.yaml` declares, under the names `events/env.json` gives them, and
//! seeds what the files of `events/` refer to (the API fixtures' webhook and its history, the SQS
//! fixtures' webhooks pointed at `--receiver`); then writes the functions' environment to
//! `--env-file` (for `cargo lambda watch --env-file`). Both steps are the integration tests' own
//! code (`tests/it/helpers`), so what a user invokes by hand is what the tests check.
//!
//! `cargo run --example local-lambda -- --endpoint http://127.0.0.1:5005 --receiver
//! http://127.0.0.1:3000/webhook --env-file target/local-lambda.env`

// It shares the integration tests' harness and uses only part of it.
#![allow(dead_code)]

#[path = "../it/helpers/mod.rs"]
mod helpers;

use std::collections::HashMap;

use anyhow::{Context, Result, bail};
use serde_json::Value;
use webhooks_aws::{
    DeliveryLogConfig, DynamoDbConfig, DynamoDbDeliveryLog, DynamoDbSubscriptionStore,
};

use helpers::dynamo::{create_table_from_template, sdk_config_for};
use helpers::fixtures;
use helpers::sqs::create_queue;

/// `events/env.json`'s variables of `logical_id`.
fn env_json(logical_id: &str) -> Result<serde_json::Map<String, Value>> {
    let path = fixtures::events_dir().join("env.json");
    let all: Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
    all[logical_id]
        .as_object()
        .cloned()
        .with_context(|| format!("{}: no {logical_id}", path.display()))
}

/// The last path segment of a queue URL: its name.
fn queue_name(url: &Value) -> Result<String> {
    url.as_str()
        .and_then(|u| u.rsplit('/').next())
        .map(str::to_owned)
        .context("a queue URL in events/env.json")
}

#[tokio::main]
async fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let (mut endpoint, mut receiver, mut env_file) = (None, None, None);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--endpoint" => endpoint = Some(value),
            "--receiver" => receiver = Some(value),
            "--env-file" => env_file = Some(value),
            other => bail!("unknown argument {other} (--endpoint, --receiver, --env-file)"),
        }
    }
    let endpoint = endpoint.context("--endpoint http://127.0.0.1:<port> is required")?;
    let receiver = receiver.unwrap_or_else(|| "http://127.0.0.1:3000/webhook".to_owned());

    let api = env_json("ApiFunction")?;
    let delivery = env_json("DeliveryFunction")?;
    let var = |vars: &serde_json::Map<String, Value>, name: &str| -> Result<String> {
        vars.get(name)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .with_context(|| format!("events/env.json sets no {name}"))
    };
    let webhooks_table = var(&delivery, "WEBHOOKS_TABLE")?;
    let deliveries_table = var(&delivery, "DELIVERIES_TABLE")?;

    // Tables and queues, from template.yaml.
    let sdk = sdk_config_for(&endpoint);
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
    create_table_from_template(&dynamodb, "WebhooksTable", &webhooks_table).await;
    create_table_from_template(&dynamodb, "DeliveriesTable", &deliveries_table).await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let mut arns = HashMap::new();
    let (dlq_url, dlq_arn) = create_queue(
        &sqs,
        "DeadLetterQueue",
        &queue_name(&delivery["DLQ_URL"])?,
        &arns,
    )
    .await;
    arns.insert("DeadLetterQueue", dlq_arn);
    let (queue_url, _) = create_queue(
        &sqs,
        "DeliveryQueue",
        &queue_name(&delivery["QUEUE_URL"])?,
        &arns,
    )
    .await;
    let (slow_queue_url, _) = create_queue(
        &sqs,
        "SlowQueue",
        &queue_name(&delivery["SLOW_QUEUE_URL"])?,
        &arns,
    )
    .await;

    // What the fixtures refer to.
    // The KMS key both functions seal webhook secrets under (`SecretsKey` in template.yaml).
    let secrets_key = helpers::dynamo::create_secrets_key(&endpoint).await;
    let store = DynamoDbSubscriptionStore::from_config(
        &sdk,
        &DynamoDbConfig {
            table_name: webhooks_table.clone(),
            secrets_key_arn: secrets_key.clone(),
            owner_index: None,
        },
    );
    let log = DynamoDbDeliveryLog::from_config(
        &sdk,
        &DeliveryLogConfig {
            deliveries_table: deliveries_table.clone(),
            webhooks_table: webhooks_table.clone(),
        },
    );
    let webhook = fixtures::seed_api_webhook(&store).await;
    fixtures::seed_api_history(&log, &webhook).await;
    let seeded = fixtures::seed_sqs_webhooks(&store, &receiver).await;

    // The functions' environment (both read the variables they need).
    let lines = [
        ("JWT_SECRET", var(&api, "JWT_SECRET")?),
        ("WEBHOOKS_TABLE", webhooks_table),
        ("SECRETS_KEY_ARN", secrets_key),
        ("DELIVERIES_TABLE", deliveries_table),
        ("QUEUE_URL", queue_url),
        ("DLQ_URL", dlq_url),
        ("SLOW_QUEUE_URL", slow_queue_url),
        (
            "DELIVERY_TIMEOUT_SECONDS",
            var(&delivery, "DELIVERY_TIMEOUT_SECONDS")?,
        ),
        // The receiver is on loopback, over http.
        ("ALLOW_PRIVATE_TARGETS", "true".to_owned()),
        ("AWS_ENDPOINT_URL", endpoint.clone()),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_ACCESS_KEY_ID", "test".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "test".to_owned()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
    ]
    .map(|(k, v)| format!("{k}={v}\n"))
    .concat();
    if let Some(path) = &env_file {
        std::fs::write(path, &lines).with_context(|| format!("write {path}"))?;
    }
    println!(
        "emulator {endpoint}: tables and queues of template.yaml created; webhook {} (owner {}) \
         with one attempt and dead letter {}; {} SQS fixture webhook(s) -> {receiver} (secret {})",
        fixtures::FIXTURE_WEBHOOK,
        fixtures::FIXTURE_OWNER,
        fixtures::FIXTURE_DEAD_LETTER,
        seeded.len(),
        fixtures::FIXTURE_SECRET,
    );
    if env_file.is_none() {
        print!("{lines}");
    }
    Ok(())
}
