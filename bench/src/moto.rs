//! moto server (the AWS emulator `./infra/setup-venv.sh` installs into `./.venv`) standing in for
//! DynamoDB and SQS, and the service's tables and queues created on it from `template.yaml`
//! itself (every table and queue it declares), with plain JSON-over-HTTP requests (no SDK, no
//! real AWS).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

// The integration tests' reader of template.yaml, shared so that both build the same resources.
#[path = "../../tests/it/helpers/template.rs"]
#[allow(dead_code)]
mod template;

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

    /// Every table and queue `template.yaml` declares (`AWS::DynamoDB::Table`, `AWS::SQS::Queue`),
    /// named `<prefix>-<LogicalId>`, as the template defines them: keys, indexes and their
    /// projections, TTL, queue attributes and redrive policies (read with the integration tests'
    /// own reader, `tests/it/helpers/template.rs`, so the benchmarks measure what is deployed).
    pub async fn create_resources(&self, prefix: &str) -> Result<Resources> {
        let declared = template::template()
            .get("Resources")
            .and_then(serde_yaml::Value::as_mapping)
            .context("template.yaml has no Resources")?;
        let of_type = |ty: &str| -> Vec<String> {
            declared
                .iter()
                .filter(|(_, r)| r.get("Type").and_then(serde_yaml::Value::as_str) == Some(ty))
                .filter_map(|(id, _)| id.as_str().map(str::to_owned))
                .collect()
        };
        let mut names = BTreeMap::new();
        let mut arns = BTreeMap::new();
        for id in of_type("AWS::DynamoDB::Table") {
            let name = format!("{prefix}-{id}");
            self.create_table_from_template(&id, &name).await?;
            names.insert(id, name);
        }
        // Dead-letter queues first: a redrive policy names its target's ARN.
        let mut queues = of_type("AWS::SQS::Queue");
        queues.sort_by_key(|id| {
            template::resource(id)
                .get("Properties")
                .and_then(|p| p.get("RedrivePolicy"))
                .is_some()
        });
        for id in queues {
            let known: HashMap<&str, String> = arns
                .iter()
                .map(|(k, v): (&String, &String)| (k.as_str(), v.clone()))
                .collect();
            let attributes: serde_json::Map<String, Value> =
                template::queue_attributes(&id, &known)
                    .into_iter()
                    .map(|(k, v)| (k, Value::from(v)))
                    .collect();
            let (url, arn) = self
                .create_queue(&format!("{prefix}-{id}"), Value::Object(attributes))
                .await?;
            names.insert(id.clone(), url);
            arns.insert(id, arn);
        }
        // template.yaml `SecretsKey` (the functions' SECRETS_KEY_ARN is `!GetAtt SecretsKey.Arn`).
        let key = self
            .call(
                "kms",
                "TrentService.CreateKey",
                &json!({"Description": format!("{prefix} secrets key")}),
            )
            .await?;
        let key_arn = key["KeyMetadata"]["Arn"]
            .as_str()
            .context("CreateKey answered without an ARN")?;
        names.insert("SecretsKey.Arn".to_owned(), key_arn.to_owned());
        let get = |map: &BTreeMap<String, String>, id: &str| {
            map.get(id)
                .cloned()
                .with_context(|| format!("template.yaml declares no {id}"))
        };
        Ok(Resources {
            webhooks_table: get(&names, "WebhooksTable")?,
            deliveries_table: get(&names, "DeliveriesTable")?,
            queue_url: get(&names, "DeliveryQueue")?,
            queue_arn: get(&arns, "DeliveryQueue")?,
            slow_queue_url: get(&names, "SlowQueue")?,
            slow_queue_arn: get(&arns, "SlowQueue")?,
            dlq_url: get(&names, "DeadLetterQueue")?,
            names,
        })
    }

    /// `CreateTable` (and `UpdateTimeToLive`, `UpdateContinuousBackups`) from
    /// `Resources.<logical_id>` of template.yaml.
    async fn create_table_from_template(&self, logical_id: &str, name: &str) -> Result<()> {
        let props: template::TableProperties = template::properties(logical_id);
        let keys = |ks: &[template::KeySchemaElement]| -> Vec<Value> {
            ks.iter()
                .map(|k| json!({"AttributeName": k.attribute_name, "KeyType": k.key_type}))
                .collect()
        };
        let mut def = json!({
            "TableName": name,
            "BillingMode": props.billing_mode.as_deref().unwrap_or("PAY_PER_REQUEST"),
            "AttributeDefinitions": props.attribute_definitions.iter().map(|a| json!({
                "AttributeName": a.attribute_name, "AttributeType": a.attribute_type,
            })).collect::<Vec<_>>(),
            "KeySchema": keys(&props.key_schema),
        });
        if !props.global_secondary_indexes.is_empty() {
            def["GlobalSecondaryIndexes"] = props
                .global_secondary_indexes
                .iter()
                .map(|i| {
                    let mut projection = json!({"ProjectionType": i.projection.projection_type});
                    if !i.projection.non_key_attributes.is_empty() {
                        projection["NonKeyAttributes"] = json!(i.projection.non_key_attributes);
                    }
                    json!({
                        "IndexName": i.index_name,
                        "KeySchema": keys(&i.key_schema),
                        "Projection": projection,
                    })
                })
                .collect();
        }
        let raw = template::resource(logical_id)
            .get("Properties")
            .context("a table without Properties")?;
        if raw
            .get("SSESpecification")
            .and_then(|s| s.get("SSEEnabled"))
            .and_then(serde_yaml::Value::as_bool)
            == Some(true)
        {
            def["SSESpecification"] = json!({"Enabled": true});
        }
        self.create_table(def).await?;
        if let Some(ttl) = &props.time_to_live_specification {
            self.call(
                "dynamodb",
                "DynamoDB_20120810.UpdateTimeToLive",
                &json!({
                    "TableName": name,
                    "TimeToLiveSpecification": {"AttributeName": ttl.attribute_name, "Enabled": ttl.enabled},
                }),
            )
            .await?;
        }
        if raw
            .get("PointInTimeRecoverySpecification")
            .and_then(|p| p.get("PointInTimeRecoveryEnabled"))
            .and_then(serde_yaml::Value::as_bool)
            == Some(true)
        {
            self.call(
                "dynamodb",
                "DynamoDB_20120810.UpdateContinuousBackups",
                &json!({
                    "TableName": name,
                    "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": true},
                }),
            )
            .await?;
        }
        Ok(())
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

    /// Every message a queue holds, visible, in flight or delayed (the sum of the three
    /// `ApproximateNumberOf…` attributes): 0 when nothing is left to process.
    pub async fn queue_total(&self, url: &str) -> Result<u64> {
        const ATTRIBUTES: [&str; 3] = [
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ];
        let attrs = self
            .call(
                "sqs",
                "AmazonSQS.GetQueueAttributes",
                &json!({"QueueUrl": url, "AttributeNames": ATTRIBUTES}),
            )
            .await?;
        ATTRIBUTES.iter().try_fold(0u64, |sum, a| {
            attrs["Attributes"][a]
                .as_str()
                .and_then(|n| n.parse::<u64>().ok())
                .map(|n| sum + n)
                .with_context(|| format!("GetQueueAttributes {url}: no {a} in {attrs}"))
        })
    }

    /// Items of `webhook_id` in the deliveries table whose sort key starts with `prefix`
    /// (`A#`: attempts, `F#`: final markers, `D#`: dead letters).
    pub async fn count_delivery_items(
        &self,
        table: &str,
        webhook_id: &str,
        prefix: &str,
        having: Option<&str>,
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
            if let Some(attribute) = having {
                req["FilterExpression"] = json!("attribute_exists(#having)");
                req["ExpressionAttributeNames"] = json!({"#having": attribute});
            }
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

/// What the functions' environment names (`WEBHOOKS_TABLE`, `DELIVERIES_TABLE`, `QUEUE_URL`,
/// `DLQ_URL`), and the delivery queue's ARN (the SQS events' `eventSourceARN`).
#[derive(Debug, Clone)]
pub struct Resources {
    /// Every table's name and every queue's URL, by logical id; the secrets key's ARN as
    /// `SecretsKey.Arn`.
    pub names: BTreeMap<String, String>,
    pub webhooks_table: String,
    pub deliveries_table: String,
    pub queue_url: String,
    pub queue_arn: String,
    /// The slow lane (`SlowQueue`, `SLOW_QUEUE_URL`): its records carry this ARN as their
    /// `eventSourceARN`, which is how the delivery function tells the lanes apart.
    pub slow_queue_url: String,
    pub slow_queue_arn: String,
    pub dlq_url: String,
}

impl Resources {
    /// The variables of `Resources.<function>.Properties.Environment.Variables` in template.yaml
    /// that are `!Ref` to a table or a queue (or `!GetAtt SecretsKey.Arn`), resolved to this
    /// run's names, URLs and key (the function's other settings are the bench's own).
    pub fn env_of(&self, function: &str) -> Vec<(String, String)> {
        let vars = template::resource(function)
            .get("Properties")
            .and_then(|p| p.get("Environment"))
            .and_then(|e| e.get("Variables"))
            .and_then(serde_yaml::Value::as_mapping);
        vars.into_iter()
            .flatten()
            .filter_map(|(k, v)| match v {
                serde_yaml::Value::Tagged(t) if t.tag == "!Ref" || t.tag == "!GetAtt" => {
                    let target = self.names.get(t.value.as_str()?)?;
                    Some((k.as_str()?.to_owned(), target.clone()))
                }
                _ => None,
            })
            .collect()
    }
}
