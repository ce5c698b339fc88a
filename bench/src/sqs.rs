//! The SQS event source mapping, played by a bench: the few SQS calls it makes (AWS's JSON
//! protocol over plain HTTP, fake credentials: only ever pointed at moto or its meter), and the
//! SQS event it hands the function for the messages it received.

use anyhow::{Result, bail};
use bytes::Bytes;
use serde_json::{Value, json};

/// The few SQS calls the event source mapping makes, in AWS's JSON protocol.
#[derive(Debug)]
pub struct SqsClient {
    endpoint: String,
    client: reqwest::Client,
}

impl SqsClient {
    pub fn new(endpoint: &str) -> Result<Self> {
        Ok(Self {
            endpoint: endpoint.to_owned(),
            client: reqwest::Client::builder().no_proxy().build()?,
        })
    }

    async fn call(&self, op: &str, body: &Value) -> Result<Value> {
        let res = self
            .client
            .post(&self.endpoint)
            .header("x-amz-target", format!("AmazonSQS.{op}"))
            .header("content-type", "application/x-amz-json-1.0")
            .header(
                "authorization",
                "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/sqs/aws4_request, SignedHeaders=host, Signature=0",
            )
            .body(body.to_string())
            .send()
            .await?;
        let status = res.status();
        let text = res.text().await?;
        if !status.is_success() {
            bail!("{op}: HTTP {status}: {text}");
        }
        Ok(serde_json::from_str(&text)?)
    }

    pub async fn receive(&self, queue: &str, max: usize) -> Result<Vec<Value>> {
        let out = self
            .call(
                "ReceiveMessage",
                &json!({
                    "QueueUrl": queue,
                    "MaxNumberOfMessages": max,
                    "AttributeNames": ["All"],
                    "MessageAttributeNames": ["All"],
                    "WaitTimeSeconds": 0,
                }),
            )
            .await?;
        Ok(out["Messages"].as_array().cloned().unwrap_or_default())
    }

    pub async fn delete_batch(&self, queue: &str, messages: &[&Value]) -> Result<()> {
        let entries: Vec<Value> = messages
            .iter()
            .enumerate()
            .map(|(i, m)| json!({"Id": i.to_string(), "ReceiptHandle": m["ReceiptHandle"]}))
            .collect();
        let out = self
            .call(
                "DeleteMessageBatch",
                &json!({"QueueUrl": queue, "Entries": entries}),
            )
            .await?;
        if out["Failed"].as_array().is_some_and(|f| !f.is_empty()) {
            bail!("DeleteMessageBatch failed: {out}");
        }
        Ok(())
    }
}

/// The SQS event the mapping would hand the function for `messages`.
pub fn sqs_event(messages: &[Value], queue_arn: &str) -> Bytes {
    let records: Vec<Value> = messages
        .iter()
        .map(|m| {
            let attributes = m["Attributes"].clone();
            let message_attributes: serde_json::Map<String, Value> = m["MessageAttributes"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        json!({
                            "stringValue": v["StringValue"],
                            "stringListValues": [],
                            "binaryListValues": [],
                            "dataType": v["DataType"],
                        }),
                    )
                })
                .collect();
            json!({
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": attributes,
                "messageAttributes": message_attributes,
                "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": "us-east-1",
            })
        })
        .collect();
    Bytes::from(json!({ "Records": records }).to_string())
}
