//! The AWS meter: a recording proxy between the functions and moto server that counts every
//! DynamoDB and SQS call and what AWS would bill for it.
//!
//! Each caller (the API function, the delivery function, the bench standing in for the SQS event
//! source mapping) gets its own listener, so every call is attributed. A call is forwarded to moto
//! unchanged and its answer returned unchanged; on the side, the meter reads what it needs to price
//! it (AWS's rules, as the DynamoDB developer guide states them):
//!
//! - **item size**: attribute names (UTF-8 bytes) plus values: strings their UTF-8 bytes, numbers
//!   1 byte per 2 significant digits + 1, binary its bytes, booleans and nulls 1 byte, lists and
//!   maps 3 bytes + 1 byte per element + the elements (map keys count as names), sets their
//!   elements;
//! - **writes** (`PutItem`, `UpdateItem`, `DeleteItem`, each write of `BatchWriteItem` and
//!   `TransactWriteItems`): the larger of the item before and after, rounded up to 1 KB, at least
//!   1 unit; ×2 inside a transaction (a `ConditionCheck` too); a write whose condition fails still
//!   pays for the item as it is. The meter reads the item before and after the call straight from
//!   moto (`GetItem`, not counted);
//! - **index writes**, per global secondary index (schemas from `DescribeTable`): an item entering
//!   or leaving the index costs one write of its projected size (table and index keys plus the
//!   projected attributes), an item whose index key changes two (delete + put), an item whose
//!   projected attributes change one, and an unchanged projection nothing;
//! - **reads**: `GetItem` the item rounded up to 4 KB (a missing item still 1 unit), `Query` the
//!   sum of the items it evaluated rounded up to 4 KB (items a filter dropped are estimated at the
//!   returned items' mean size), each halved when eventually consistent;
//! - **SQS**: each request counts one per 64 KiB chunk of its payload (message bodies and
//!   attributes sent or received), at least one.
//!
//! Failed or retried calls are counted as made: AWS bills them too.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;

/// DynamoDB bills writes per 1 KB of item.
pub const WRITE_UNIT_BYTES: usize = 1024;
/// DynamoDB bills reads per 4 KB of item(s).
pub const READ_UNIT_BYTES: usize = 4096;
/// SQS bills one request per 64 KiB chunk of payload.
pub const SQS_CHUNK_BYTES: usize = 64 * 1024;

/// One priced call.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// Which listener it came through: `api`, `delivery`, `esm`.
    pub caller: &'static str,
    /// `dynamodb`, `sqs` or `kms` (listed only: no units).
    pub service: &'static str,
    /// The operation (`PutItem`, `SendMessageBatch`, …).
    pub op: String,
    /// Table (short name: the part after the last `-`) or queue, for the breakdown.
    pub target: String,
    /// Write units on the table.
    pub wcu: f64,
    /// Write units on the indexes, by index name.
    pub index_wcu: Vec<(String, f64)>,
    /// Read units.
    pub rcu: f64,
    /// Billed SQS requests (64 KiB chunks).
    pub sqs_requests: f64,
    /// Where the write units landed: (table or `table/index`, partition key value, item key,
    /// units), for the per-item and per-partition ceilings.
    pub places: Vec<(String, String, String, f64)>,
    /// A `ReceiveMessage` that found nothing (an idle poll, not a delivery's cost).
    pub empty: bool,
    /// When the call arrived, and how long the caller waited for its answer (for the Lambda
    /// duration model).
    pub sent: Option<(Instant, Duration)>,
}

/// Everything counted since the last [`Meter::take`].
#[derive(Debug, Default)]
pub struct Ledger {
    pub calls: Vec<Call>,
}

type Item = Map<String, Value>;

#[derive(Debug, Clone)]
struct Index {
    name: String,
    keys: Vec<String>,
    /// `None`: ALL; `Some(attrs)`: KEYS_ONLY (empty) or INCLUDE.
    projected: Option<Vec<String>>,
}

#[derive(Debug, Clone)]
struct Schema {
    keys: Vec<String>,
    indexes: Vec<Index>,
}

#[derive(Debug)]
struct Shared {
    moto: String,
    client: reqwest::Client,
    ledger: Mutex<Ledger>,
    schemas: Mutex<HashMap<String, Schema>>,
}

/// The proxy in front of moto; one listener per caller.
#[derive(Debug, Clone)]
pub struct Meter {
    shared: Arc<Shared>,
}

impl Meter {
    pub fn new(moto_endpoint: &str) -> Result<Self> {
        Ok(Self {
            shared: Arc::new(Shared {
                moto: moto_endpoint.to_owned(),
                client: reqwest::Client::builder().no_proxy().build()?,
                ledger: Mutex::default(),
                schemas: Mutex::default(),
            }),
        })
    }

    /// A listener on 127.0.0.1 whose calls are attributed to `caller`; its `http://` endpoint.
    pub async fn listen(&self, caller: &'static str) -> Result<String> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr: SocketAddr = listener.local_addr()?;
        let shared = self.shared.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let shared = shared.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let shared = shared.clone();
                        async move { Ok::<_, Infallible>(shared.handle(caller, req).await) }
                    });
                    // A connection the client drops is not the run's concern.
                    let _ = hyper::server::conn::http1::Builder::new()
                        .keep_alive(true)
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(format!("http://{addr}"))
    }

    /// The calls counted so far; the ledger starts empty again.
    pub fn take(&self) -> Ledger {
        std::mem::take(&mut *self.shared.ledger())
    }
}

impl Shared {
    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn handle(&self, caller: &'static str, req: Request<Incoming>) -> Response<Full<Bytes>> {
        match self.forward_and_count(caller, req).await {
            Ok(res) => res,
            Err(e) => {
                eprintln!("aws meter: {e:#}");
                let mut res = Response::new(Full::new(Bytes::from(format!(
                    r#"{{"__type":"InternalFailure","message":"aws meter: {e}"}}"#
                ))));
                *res.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                res
            }
        }
    }

    async fn forward_and_count(
        &self,
        caller: &'static str,
        req: Request<Incoming>,
    ) -> Result<Response<Full<Bytes>>> {
        let arrived = Instant::now();
        let (parts, body) = req.into_parts();
        let body = body.collect().await?.to_bytes();
        let target = parts
            .headers
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let (service, op) = match target.split_once('.') {
            Some((s, op)) if s.starts_with("DynamoDB") => ("dynamodb", op.to_owned()),
            Some((s, op)) if s.starts_with("AmazonSQS") => ("sqs", op.to_owned()),
            // The secrets key's data keys (once per function instance): listed, not priced
            // here ($0.03 per 10,000 requests, a few per cold start).
            Some(("TrentService", op)) => ("kms", op.to_owned()),
            _ => bail!(
                "a call without a known X-Amz-Target ({target:?}, {} {}): the meter only speaks AWS's JSON protocol",
                parts.method,
                parts.uri
            ),
        };
        let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let before = if service == "dynamodb" {
            self.snapshot(&op, &request).await?
        } else {
            Vec::new()
        };

        let mut fwd = self
            .client
            .request(parts.method.clone(), format!("{}{}", self.moto, parts.uri))
            .body(body.clone());
        for (name, value) in &parts.headers {
            if !matches!(name.as_str(), "host" | "content-length" | "connection") {
                fwd = fwd.header(name, value);
            }
        }
        let answer = fwd.send().await.context("forwarding to moto")?;
        let status = answer.status();
        let headers = answer.headers().clone();
        let answer_body = answer.bytes().await?;
        let response: Value = serde_json::from_slice(&answer_body).unwrap_or(Value::Null);

        let calls = if service == "dynamodb" {
            let after = self.snapshot(&op, &request).await?;
            self.price_dynamodb(
                caller,
                &op,
                &request,
                &response,
                status.is_success(),
                &before,
                &after,
            )
            .await?
        } else if service == "kms" {
            vec![Call {
                caller,
                service: "kms",
                op: op.clone(),
                target: "SecretsKey".to_owned(),
                wcu: 0.0,
                index_wcu: Vec::new(),
                rcu: 0.0,
                sqs_requests: 0.0,
                places: Vec::new(),
                empty: false,
                sent: None,
            }]
        } else {
            vec![price_sqs(caller, &op, &request, &response)]
        };
        // The caller waited for all of it: the meter's own reads included.
        let took = arrived.elapsed();
        let mut calls = calls;
        for c in &mut calls {
            c.sent = Some((arrived, took));
        }
        self.ledger().calls.extend(calls);

        let mut res = Response::new(Full::new(answer_body));
        *res.status_mut() = status;
        for (name, value) in &headers {
            if !matches!(
                name.as_str(),
                "content-length" | "transfer-encoding" | "connection"
            ) {
                res.headers_mut().append(name, value.clone());
            }
        }
        Ok(res)
    }

    /// One call of AWS's JSON protocol straight to moto (not counted).
    async fn moto_call(&self, target: &str, body: &Value) -> Result<Value> {
        let res = self
            .client
            .post(&self.moto)
            .header("x-amz-target", target)
            .header("content-type", "application/x-amz-json-1.0")
            .header(
                "authorization",
                "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=0",
            )
            .body(body.to_string())
            .send()
            .await?;
        let status = res.status();
        let text = res.text().await?;
        if !status.is_success() {
            bail!("{target} on moto: HTTP {status}: {text}");
        }
        Ok(serde_json::from_str(&text)?)
    }

    async fn schema(&self, table: &str) -> Result<Schema> {
        if let Some(s) = self
            .schemas
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(table)
        {
            return Ok(s.clone());
        }
        let out = self
            .moto_call(
                "DynamoDB_20120810.DescribeTable",
                &json!({"TableName": table}),
            )
            .await?;
        let t = &out["Table"];
        let names = |ks: &Value| -> Vec<String> {
            ks.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|k| k["AttributeName"].as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        let indexes = t["GlobalSecondaryIndexes"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|i| Index {
                        name: i["IndexName"].as_str().unwrap_or("?").to_owned(),
                        keys: names(&i["KeySchema"]),
                        projected: match i["Projection"]["ProjectionType"].as_str() {
                            Some("ALL") | None => None,
                            _ => Some(
                                i["Projection"]["NonKeyAttributes"]
                                    .as_array()
                                    .map(|n| {
                                        n.iter()
                                            .filter_map(|v| v.as_str().map(str::to_owned))
                                            .collect()
                                    })
                                    .unwrap_or_default(),
                            ),
                        },
                    })
                    .collect()
            })
            .unwrap_or_default();
        let schema = Schema {
            keys: names(&t["KeySchema"]),
            indexes,
        };
        self.schemas
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(table.to_owned(), schema.clone());
        Ok(schema)
    }

    /// The items a write call touches, as they are now: (table, key, item if present), in the
    /// order of the call's writes.
    async fn snapshot(&self, op: &str, req: &Value) -> Result<Vec<(String, Item, Option<Item>)>> {
        let mut keys: Vec<(String, Item)> = Vec::new();
        match op {
            "PutItem" | "UpdateItem" | "DeleteItem" => {
                let table = req["TableName"].as_str().unwrap_or_default().to_owned();
                let key = match op {
                    "PutItem" => self.key_of(&table, &req["Item"]).await?,
                    _ => req["Key"].as_object().cloned().unwrap_or_default(),
                };
                keys.push((table, key));
            }
            "TransactWriteItems" => {
                for t in req["TransactItems"].as_array().into_iter().flatten() {
                    let (kind, w) = t
                        .as_object()
                        .and_then(|o| o.iter().next())
                        .context("an empty TransactItem")?;
                    let table = w["TableName"].as_str().unwrap_or_default().to_owned();
                    let key = if kind == "Put" {
                        self.key_of(&table, &w["Item"]).await?
                    } else {
                        w["Key"].as_object().cloned().unwrap_or_default()
                    };
                    keys.push((table, key));
                }
            }
            "BatchWriteItem" => {
                for (table, writes) in req["RequestItems"].as_object().into_iter().flatten() {
                    for w in writes.as_array().into_iter().flatten() {
                        let key = if let Some(item) = w.get("PutRequest") {
                            self.key_of(table, &item["Item"]).await?
                        } else {
                            w["DeleteRequest"]["Key"]
                                .as_object()
                                .cloned()
                                .unwrap_or_default()
                        };
                        keys.push((table.clone(), key));
                    }
                }
            }
            _ => {}
        }
        let mut out = Vec::with_capacity(keys.len());
        for (table, key) in keys {
            let got = self
                .moto_call(
                    "DynamoDB_20120810.GetItem",
                    &json!({"TableName": table, "Key": key, "ConsistentRead": true}),
                )
                .await?;
            let item = got["Item"].as_object().cloned();
            out.push((table, key, item));
        }
        Ok(out)
    }

    async fn key_of(&self, table: &str, item: &Value) -> Result<Item> {
        let schema = self.schema(table).await?;
        Ok(schema
            .keys
            .iter()
            .filter_map(|k| item.get(k).map(|v| (k.clone(), v.clone())))
            .collect())
    }

    #[allow(clippy::too_many_arguments)]
    async fn price_dynamodb(
        &self,
        caller: &'static str,
        op: &str,
        req: &Value,
        res: &Value,
        ok: bool,
        before: &[(String, Item, Option<Item>)],
        after: &[(String, Item, Option<Item>)],
    ) -> Result<Vec<Call>> {
        let call = |target: &str| Call {
            caller,
            service: "dynamodb",
            op: op.to_owned(),
            target: short(target),
            wcu: 0.0,
            index_wcu: Vec::new(),
            rcu: 0.0,
            sqs_requests: 0.0,
            places: Vec::new(),
            empty: false,
            sent: None,
        };
        let mut calls = Vec::new();
        match op {
            "GetItem" => {
                let mut c = call(req["TableName"].as_str().unwrap_or_default());
                let size = res["Item"].as_object().map_or(0, item_size);
                c.rcu = read_units(size, req["ConsistentRead"].as_bool() == Some(true));
                calls.push(c);
            }
            "BatchGetItem" => {
                for (table, items) in res["Responses"].as_object().into_iter().flatten() {
                    let consistent =
                        req["RequestItems"][table]["ConsistentRead"].as_bool() == Some(true);
                    let mut c = call(table);
                    for i in items.as_array().into_iter().flatten() {
                        c.rcu += read_units(i.as_object().map_or(0, item_size), consistent);
                    }
                    calls.push(c);
                }
            }
            "Query" | "Scan" => {
                let table = req["TableName"].as_str().unwrap_or_default();
                let target = match req["IndexName"].as_str() {
                    Some(i) => format!("{}/{i}", short(table)),
                    None => short(table),
                };
                let mut c = call(table);
                c.target = target;
                let items = res["Items"].as_array().cloned().unwrap_or_default();
                let mut size: usize = items
                    .iter()
                    .map(|i| i.as_object().map_or(0, item_size))
                    .sum();
                let (count, scanned) = (
                    res["Count"].as_u64().unwrap_or(0),
                    res["ScannedCount"].as_u64().unwrap_or(0),
                );
                if scanned > count {
                    // Items the filter dropped were read too; estimated at the mean size.
                    let mean = if items.is_empty() {
                        WRITE_UNIT_BYTES
                    } else {
                        size / items.len()
                    };
                    size += (scanned - count) as usize * mean;
                }
                c.rcu = read_units(size, req["ConsistentRead"].as_bool() == Some(true));
                calls.push(c);
            }
            "PutItem" | "UpdateItem" | "DeleteItem" | "BatchWriteItem" | "TransactWriteItems" => {
                let transactional = op == "TransactWriteItems";
                let kinds = write_kinds(op, req);
                for (n, ((table, _, old), (_, _, new))) in before.iter().zip(after).enumerate() {
                    let kind = kinds.get(n).map_or("Put", String::as_str);
                    let mut c = call(table);
                    if transactional {
                        c.op = format!("TransactWriteItems.{kind}");
                    }
                    let old_size = old.as_ref().map_or(0, item_size);
                    let new_size = new.as_ref().map_or(0, item_size);
                    // A write that did not happen (condition failed, transaction cancelled: `ok`
                    // false, or one write of a batch) pays for what it would have written, and
                    // touches no index.
                    let (changed, req_size) = (ok && old != new, request_item_size(op, req, n));
                    let size = old_size
                        .max(new_size)
                        .max(if changed { 0 } else { req_size });
                    c.wcu = write_units(size) * if transactional { 2.0 } else { 1.0 };
                    let schema = self.schema(table).await?;
                    let key = &before[n].1;
                    c.places.push((
                        short(table),
                        key_value(key, schema.keys.first()),
                        key_text(key),
                        c.wcu,
                    ));
                    if changed {
                        for index in &schema.indexes {
                            let w = index_writes(&schema, index, old.as_ref(), new.as_ref());
                            if w > 0.0 {
                                c.index_wcu.push((index.name.clone(), w));
                                let item = new.as_ref().or(old.as_ref());
                                let partition = item
                                    .map_or_else(String::new, |i| key_value(i, index.keys.first()));
                                c.places.push((
                                    format!("{}/{}", short(table), index.name),
                                    partition,
                                    key_text(key),
                                    w,
                                ));
                            }
                        }
                    }
                    calls.push(c);
                }
            }
            _ => calls.push(call(req["TableName"].as_str().unwrap_or_default())),
        }
        Ok(calls)
    }
}

/// The string form of attribute `name` of `item` (a key's value).
fn key_value(item: &Item, name: Option<&String>) -> String {
    name.and_then(|n| item.get(n))
        .and_then(|v| v.as_object())
        .and_then(|o| o.values().next())
        .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
        .unwrap_or_default()
}

/// An item key as one string (for telling items apart).
fn key_text(key: &Item) -> String {
    let mut parts: Vec<String> = key
        .iter()
        .map(|(k, _)| format!("{k}={}", key_value(key, Some(k))))
        .collect();
    parts.sort();
    parts.join(",")
}

/// What each write of a write call is (`Put`, `Update`, `Delete`, `ConditionCheck`).
fn write_kinds(op: &str, req: &Value) -> Vec<String> {
    match op {
        "PutItem" => vec!["Put".into()],
        "UpdateItem" => vec!["Update".into()],
        "DeleteItem" => vec!["Delete".into()],
        "TransactWriteItems" => req["TransactItems"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t.as_object().and_then(|o| o.keys().next().cloned()))
            .collect(),
        "BatchWriteItem" => req["RequestItems"]
            .as_object()
            .into_iter()
            .flat_map(|m| m.values())
            .flat_map(|w| w.as_array().into_iter().flatten())
            .map(|w| {
                if w.get("PutRequest").is_some() {
                    "Put".into()
                } else {
                    "Delete".into()
                }
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// The size of the item write `n` of a call puts (0 for updates and deletes).
fn request_item_size(op: &str, req: &Value, n: usize) -> usize {
    let item = match op {
        "PutItem" => req["Item"].as_object(),
        "TransactWriteItems" => req["TransactItems"]
            .get(n)
            .and_then(|t| t.get("Put"))
            .and_then(|p| p["Item"].as_object()),
        "BatchWriteItem" => req["RequestItems"]
            .as_object()
            .into_iter()
            .flat_map(|m| m.values())
            .flat_map(|w| w.as_array().into_iter().flatten())
            .nth(n)
            .and_then(|w| w.get("PutRequest"))
            .and_then(|p| p["Item"].as_object()),
        _ => None,
    };
    item.map_or(0, item_size)
}

/// Index write units of one item changing from `old` to `new` (see the module docs).
fn index_writes(schema: &Schema, index: &Index, old: Option<&Item>, new: Option<&Item>) -> f64 {
    let has_keys = |i: &&Item| index.keys.iter().all(|k| i.contains_key(k));
    let (old, new) = (old.filter(has_keys), new.filter(has_keys));
    let projection = |i: &Item| -> Item {
        i.iter()
            .filter(|(k, _)| {
                schema.keys.contains(k)
                    || index.keys.contains(k)
                    || index.projected.as_ref().is_none_or(|p| p.contains(k))
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    match (old, new) {
        (None, None) => 0.0,
        (None, Some(n)) => write_units(item_size(&projection(n))),
        (Some(o), None) => write_units(item_size(&projection(o))),
        (Some(o), Some(n)) => {
            let key_changed = index.keys.iter().any(|k| o.get(k) != n.get(k));
            let (po, pn) = (projection(o), projection(n));
            if key_changed {
                write_units(item_size(&po)) + write_units(item_size(&pn))
            } else if po != pn {
                write_units(item_size(&po).max(item_size(&pn)))
            } else {
                0.0
            }
        }
    }
}

fn price_sqs(caller: &'static str, op: &str, req: &Value, res: &Value) -> Call {
    let queue = req["QueueUrl"]
        .as_str()
        .and_then(|u| u.rsplit('/').next())
        .unwrap_or_default();
    let payload: usize = match op {
        "SendMessage" => message_size(req),
        "SendMessageBatch" => req["Entries"]
            .as_array()
            .into_iter()
            .flatten()
            .map(message_size)
            .sum(),
        "ReceiveMessage" => res["Messages"]
            .as_array()
            .into_iter()
            .flatten()
            .map(message_size)
            .sum(),
        _ => 0,
    };
    Call {
        caller,
        service: "sqs",
        op: op.to_owned(),
        target: short(queue),
        wcu: 0.0,
        index_wcu: Vec::new(),
        rcu: 0.0,
        sqs_requests: payload.div_ceil(SQS_CHUNK_BYTES).max(1) as f64,
        places: Vec::new(),
        empty: op == "ReceiveMessage" && res["Messages"].as_array().is_none_or(Vec::is_empty),
        sent: None,
    }
}

/// A message's billed payload: its body and its attributes (names, types and values).
fn message_size(m: &Value) -> usize {
    let body = m["MessageBody"]
        .as_str()
        .or_else(|| m["Body"].as_str())
        .map_or(0, str::len);
    let attrs: usize = m["MessageAttributes"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(name, v)| {
            name.len()
                + v["DataType"].as_str().map_or(0, str::len)
                + v["StringValue"].as_str().map_or(0, str::len)
                + v["BinaryValue"].as_str().map_or(0, |b| b.len() * 3 / 4)
        })
        .sum();
    body + attrs
}

/// `lambda-cost-one-DeliveriesTable` → `DeliveriesTable`.
fn short(name: &str) -> String {
    name.rsplit('-').next().unwrap_or(name).to_owned()
}

/// Write units of an item of `size` bytes: per 1 KB, at least 1.
pub fn write_units(size: usize) -> f64 {
    size.div_ceil(WRITE_UNIT_BYTES).max(1) as f64
}

/// Read units of `size` bytes read at once: per 4 KB, at least 1; half when eventually
/// consistent.
pub fn read_units(size: usize, consistent: bool) -> f64 {
    let units = size.div_ceil(READ_UNIT_BYTES).max(1) as f64;
    if consistent { units } else { units / 2.0 }
}

/// An item's size by DynamoDB's rules (see the module docs).
pub fn item_size(item: &Item) -> usize {
    item.iter().map(|(k, v)| k.len() + value_size(v)).sum()
}

fn value_size(v: &Value) -> usize {
    let Some((t, x)) = v.as_object().and_then(|o| o.iter().next()) else {
        return 0;
    };
    let strings = |x: &Value, f: fn(&str) -> usize| -> usize {
        x.as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(f)
            .sum()
    };
    match t.as_str() {
        "S" => x.as_str().map_or(0, str::len),
        "N" => x.as_str().map_or(0, number_size),
        "B" => x.as_str().map_or(0, base64_len),
        "BOOL" | "NULL" => 1,
        "L" => {
            3 + x
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| 1 + value_size(e))
                .sum::<usize>()
        }
        "M" => {
            3 + x
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, e)| 1 + k.len() + value_size(e))
                .sum::<usize>()
        }
        "SS" => strings(x, str::len),
        "NS" => strings(x, number_size),
        "BS" => strings(x, base64_len),
        _ => 0,
    }
}

/// 1 byte per 2 significant digits, plus 1.
fn number_size(n: &str) -> usize {
    let mantissa = n.split(['e', 'E']).next().unwrap_or(n);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let significant = digits.trim_start_matches('0').trim_end_matches('0').len();
    significant.max(1).div_ceil(2) + 1
}

fn base64_len(b: &str) -> usize {
    let data = b.trim_end_matches('=').len();
    data * 3 / 4
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(v: Value) -> Item {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn item_sizes_follow_dynamodbs_rules() {
        // names + string bytes
        assert_eq!(item_size(&item(json!({"id": {"S": "abc"}}))), 5);
        // 5 significant digits -> 3 + 1 bytes
        assert_eq!(item_size(&item(json!({"n": {"N": "12345"}}))), 1 + 4);
        assert_eq!(item_size(&item(json!({"n": {"N": "100"}}))), 1 + 2);
        // list: 3 + (1 + 1) + (1 + 2)
        assert_eq!(
            item_size(&item(json!({"l": {"L": [{"S": "a"}, {"S": "bc"}]}}))),
            1 + 8
        );
        assert_eq!(item_size(&item(json!({"b": {"BOOL": true}}))), 2);
        assert_eq!(write_units(1024), 1.0);
        assert_eq!(write_units(1025), 2.0);
        assert_eq!(write_units(0), 1.0);
        assert_eq!(read_units(4097, true), 2.0);
        assert_eq!(read_units(10, false), 0.5);
    }

    #[test]
    fn index_writes_depend_on_what_the_index_projects() {
        let schema = Schema {
            keys: vec!["id".into()],
            indexes: Vec::new(),
        };
        let all = Index {
            name: "all".into(),
            keys: vec!["b".into()],
            projected: None,
        };
        let keys_only = Index {
            projected: Some(Vec::new()),
            ..all.clone()
        };
        let old = item(json!({"id": {"S": "1"}, "b": {"S": "x"}, "n": {"N": "1"}}));
        let counted = item(json!({"id": {"S": "1"}, "b": {"S": "x"}, "n": {"N": "2"}}));
        let moved = item(json!({"id": {"S": "1"}, "b": {"S": "y"}, "n": {"N": "1"}}));
        // A counter change rewrites an ALL index entry, not a KEYS_ONLY one.
        assert_eq!(index_writes(&schema, &all, Some(&old), Some(&counted)), 1.0);
        assert_eq!(
            index_writes(&schema, &keys_only, Some(&old), Some(&counted)),
            0.0
        );
        // A key change is a delete and a put.
        assert_eq!(
            index_writes(&schema, &keys_only, Some(&old), Some(&moved)),
            2.0
        );
        // Entering and leaving.
        assert_eq!(index_writes(&schema, &all, None, Some(&old)), 1.0);
        assert_eq!(index_writes(&schema, &all, Some(&old), None), 1.0);
        let sparse = item(json!({"id": {"S": "1"}}));
        assert_eq!(index_writes(&schema, &all, None, Some(&sparse)), 0.0);
    }

    #[test]
    fn sqs_requests_count_64_kib_chunks() {
        let small = json!({"Entries": vec![json!({"MessageBody": "x".repeat(1000)}); 10]});
        assert_eq!(
            price_sqs("api", "SendMessageBatch", &small, &Value::Null).sqs_requests,
            1.0
        );
        let big = json!({"Entries": vec![json!({"MessageBody": "x".repeat(100_000)}); 3]});
        assert_eq!(
            price_sqs("api", "SendMessageBatch", &big, &Value::Null).sqs_requests,
            5.0
        );
        assert_eq!(
            price_sqs("esm", "DeleteMessageBatch", &Value::Null, &Value::Null).sqs_requests,
            1.0
        );
    }
}
