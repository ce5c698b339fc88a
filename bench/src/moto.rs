//! moto server (the AWS emulator `./infra/setup-venv.sh` installs into `./.venv`) standing in for
//! DynamoDB and SQS, and the service's tables and queues created on it as `template.yaml`
//! defines them, with plain JSON-over-HTTP requests (no SDK, no real AWS).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

/// The moto_server of `./infra/setup-venv.sh`: `<workspace>/.venv/bin/moto_server`.
pub fn default_moto_bin() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/moto_server")
}

/// A running moto_server on 127.0.0.1; killed when dropped.
#[derive(Debug)]
pub struct Moto {
    pub endpoint: String,
    pub pid: u32,
    child: tokio::process::Child,
    client: reqwest::Client,
}

impl Moto {
    /// Starts `bin` on a free port, logging to `log`, and waits (at most 60 s) until it answers.
    pub async fn start(bin: &Path, log: &Path) -> Result<Self> {
        if !bin.is_file() {
            bail!(
                "moto_server not found at {}: run `./infra/setup-venv.sh` (installs moto into ./.venv), or pass --moto PATH",
                bin.display()
            );
        }
        // Free now; moto binds it a moment later (a clash shows as moto exiting early).
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let out =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone()?;
        let mut child = tokio::process::Command::new(bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let pid = child.id().context("moto_server exited at once")?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                break;
            }
            if let Some(status) = child.try_wait()? {
                bail!(
                    "moto_server exited before it answered ({status}); its log:\n{}",
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "moto_server did not answer on {addr} within 60 s; see {}",
                    log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Self {
            endpoint: format!("http://{addr}"),
            pid,
            child,
            client: reqwest::Client::builder().no_proxy().build()?,
        })
    }

    /// One call of AWS's JSON protocol (`X-Amz-Target`), with a dummy signature moto accepts.
    async fn call(&self, service: &str, target: &str, body: &Value) -> Result<Value> {
        let res = self
            .client
            .post(&self.endpoint)
            .header("x-amz-target", target)
            .header("content-type", "application/x-amz-json-1.0")
            .header(
                "authorization",
                format!(
                    "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/{service}/aws4_request, SignedHeaders=host, Signature=0"
                ),
            )
            .body(body.to_string())
            .send()
            .await
            .with_context(|| format!("{target} on moto"))?;
        let status = res.status();
        let text = res.text().await?;
        if !status.is_success() {
            bail!("{target} on moto: HTTP {status}: {text}");
        }
        serde_json::from_str(&text).with_context(|| format!("{target} on moto: {text}"))
    }

    /// The two tables and the two queues of `template.yaml`, named after `prefix`.
    pub async fn create_resources(&self, prefix: &str) -> Result<Resources> {
        let webhooks_table = format!("{prefix}-WebhooksTable");
        let deliveries_table = format!("{prefix}-DeliveriesTable");
        // template.yaml `WebhooksTable`: id (HASH); byOwner (ownerId, id), byBucket (bucketId, id).
        self.create_table(json!({
            "TableName": webhooks_table,
            "BillingMode": "PAY_PER_REQUEST",
            "AttributeDefinitions": [
                {"AttributeName": "id", "AttributeType": "S"},
                {"AttributeName": "ownerId", "AttributeType": "S"},
                {"AttributeName": "bucketId", "AttributeType": "S"},
            ],
            "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
            "GlobalSecondaryIndexes": [
                gsi("byOwner", "ownerId", "id"),
                gsi("byBucket", "bucketId", "id"),
            ],
            "SSESpecification": {"Enabled": true},
        }))
        .await?;
        // template.yaml `DeliveriesTable`: (webhookId, sk), no index; TTL on expiresAt.
        self.create_table(json!({
            "TableName": deliveries_table,
            "BillingMode": "PAY_PER_REQUEST",
            "AttributeDefinitions": [
                {"AttributeName": "webhookId", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            "KeySchema": [
                {"AttributeName": "webhookId", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            "SSESpecification": {"Enabled": true},
        }))
        .await?;
        self.call(
            "dynamodb",
            "DynamoDB_20120810.UpdateTimeToLive",
            &json!({
                "TableName": deliveries_table,
                "TimeToLiveSpecification": {"AttributeName": "expiresAt", "Enabled": true},
            }),
        )
        .await?;
        for table in [&webhooks_table, &deliveries_table] {
            self.call(
                "dynamodb",
                "DynamoDB_20120810.UpdateContinuousBackups",
                &json!({
                    "TableName": table,
                    "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": true},
                }),
            )
            .await?;
        }

        // template.yaml `DeadLetterQueue`, then `DeliveryQueue` redriving to it.
        let (dlq_url, dlq_arn) = self
            .create_queue(
                &format!("{prefix}-DeadLetterQueue"),
                json!({
                    "MessageRetentionPeriod": "1209600",
                    "MaximumMessageSize": "262144",
                    "SqsManagedSseEnabled": "true",
                }),
            )
            .await?;
        let (queue_url, queue_arn) = self
            .create_queue(
                &format!("{prefix}-DeliveryQueue"),
                json!({
                    "VisibilityTimeout": "360",
                    "MessageRetentionPeriod": "1209600",
                    "MaximumMessageSize": "262144",
                    "SqsManagedSseEnabled": "true",
                    "RedrivePolicy": json!({
                        "deadLetterTargetArn": dlq_arn,
                        "maxReceiveCount": 25,
                    }).to_string(),
                }),
            )
            .await?;
        Ok(Resources {
            webhooks_table,
            deliveries_table,
            queue_url,
            queue_arn,
            dlq_url,
        })
    }

    async fn create_table(&self, def: Value) -> Result<()> {
        let out = self
            .call("dynamodb", "DynamoDB_20120810.CreateTable", &def)
            .await?;
        let status = out["TableDescription"]["TableStatus"].as_str();
        if status != Some("ACTIVE") {
            bail!(
                "table {} is {status:?}, not ACTIVE (moto creates tables ACTIVE)",
                def["TableName"]
            );
        }
        Ok(())
    }

    async fn create_queue(&self, name: &str, attributes: Value) -> Result<(String, String)> {
        let out = self
            .call(
                "sqs",
                "AmazonSQS.CreateQueue",
                &json!({"QueueName": name, "Attributes": attributes}),
            )
            .await?;
        let url = out["QueueUrl"]
            .as_str()
            .with_context(|| format!("CreateQueue {name}: no QueueUrl in {out}"))?
            .to_owned();
        let attrs = self
            .call(
                "sqs",
                "AmazonSQS.GetQueueAttributes",
                &json!({"QueueUrl": url, "AttributeNames": ["QueueArn"]}),
            )
            .await?;
        let arn = attrs["Attributes"]["QueueArn"]
            .as_str()
            .with_context(|| format!("GetQueueAttributes {name}: no QueueArn in {attrs}"))?
            .to_owned();
        Ok((url, arn))
    }

    /// Messages waiting in a queue (`ApproximateNumberOfMessages`).
    pub async fn queue_depth(&self, url: &str) -> Result<u64> {
        let attrs = self
            .call(
                "sqs",
                "AmazonSQS.GetQueueAttributes",
                &json!({"QueueUrl": url, "AttributeNames": ["ApproximateNumberOfMessages"]}),
            )
            .await?;
        attrs["Attributes"]["ApproximateNumberOfMessages"]
            .as_str()
            .and_then(|n| n.parse().ok())
            .with_context(|| format!("GetQueueAttributes {url}: {attrs}"))
    }

    /// Items of `webhook_id` in the deliveries table whose sort key starts with `prefix`
    /// (`A#`: attempts, `F#`: final markers, `D#`: dead letters).
    pub async fn count_delivery_items(
        &self,
        table: &str,
        webhook_id: &str,
        prefix: &str,
    ) -> Result<u64> {
        let mut total = 0;
        let mut start: Option<Value> = None;
        loop {
            let mut req = json!({
                "TableName": table,
                "KeyConditionExpression": "webhookId = :w AND begins_with(sk, :p)",
                "ExpressionAttributeValues": {":w": {"S": webhook_id}, ":p": {"S": prefix}},
                "Select": "COUNT",
            });
            if let Some(key) = start.take() {
                req["ExclusiveStartKey"] = key;
            }
            let out = self
                .call("dynamodb", "DynamoDB_20120810.Query", &req)
                .await?;
            total += out["Count"]
                .as_u64()
                .with_context(|| format!("Query {table}: no Count in {out}"))?;
            match out.get("LastEvaluatedKey") {
                Some(key) if !key.is_null() => start = Some(key.clone()),
                _ => return Ok(total),
            }
        }
    }

    /// SIGKILL, and waits for the exit.
    pub async fn stop(mut self) -> Result<()> {
        self.child.kill().await.context("stopping moto_server")
    }
}

/// A global secondary index with `ProjectionType: ALL`, as all of the template's are.
fn gsi(name: &str, hash: &str, range: &str) -> Value {
    json!({
        "IndexName": name,
        "KeySchema": [
            {"AttributeName": hash, "KeyType": "HASH"},
            {"AttributeName": range, "KeyType": "RANGE"},
        ],
        "Projection": {"ProjectionType": "ALL"},
    })
}

/// What the functions' environment names (`WEBHOOKS_TABLE`, `DELIVERIES_TABLE`, `QUEUE_URL`,
/// `DLQ_URL`), and the delivery queue's ARN (the SQS events' `eventSourceARN`).
#[derive(Debug, Clone)]
pub struct Resources {
    pub webhooks_table: String,
    pub deliveries_table: String,
    pub queue_url: String,
    pub queue_arn: String,
    pub dlq_url: String,
}
