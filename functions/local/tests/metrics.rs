//! `GET /metrics` of the real local binary, read with an independent parser of the Prometheus
//! text format (`prometheus-parse`): after one publish of 5 events to a webhook that answers 200
//! and one that answers 500 with no retries, the counters say 5 delivered and 5 dead-lettered,
//! the latency histogram holds 10 attempts, the lag histogram 5 deliveries, and the publish
//! histograms one call of 5 events and 10 deliveries; no webhook id appears in the text.

mod common;

use std::time::Duration;

use common::*;
use prometheus_parse::{Sample, Scrape, Value as PromValue};
use reqwest::Method;
use serde_json::json;

const BUCKET: &str = "507f1f77bcf86cd799439011";

fn value(samples: &[Sample], metric: &str, outcome: Option<&str>) -> f64 {
    let s = samples
        .iter()
        .find(|s| s.metric == metric && outcome.is_none_or(|o| s.labels.get("outcome") == Some(o)))
        .unwrap_or_else(|| panic!("no sample {metric} {outcome:?}"));
    match s.value {
        PromValue::Counter(v) | PromValue::Untyped(v) | PromValue::Gauge(v) => v,
        ref other => panic!("{metric}: not a single value: {other:?}"),
    }
}

async fn scrape(base: &str) -> (String, Scrape) {
    // No token: /metrics is outside the API's auth.
    let res = reqwest::get(format!("{base}/metrics"))
        .await
        .expect("GET /metrics");
    assert_eq!(res.status().as_u16(), 200);
    let content_type = res.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let text = res.text().await.unwrap();
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("parses");
    (text, scrape)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_the_deliveries_the_local_mode_made() {
    // GIVEN the local mode, a receiver that answers 200 and one that answers 500
    let dir = tempfile::tempdir().unwrap();
    let local = Local::start(dir.path(), &["--no-circuit-breaker"]);
    let api = Api::new(&local.base);
    let (rx, base) = TestReceiver::start().await;
    rx.on("/ok", |_| status(200));
    rx.on("/fail", |_| status(500));
    let (_, before) = scrape(&local.base).await;
    for o in [
        "delivered",
        "retried",
        "dead_lettered",
        "deferred",
        "dropped",
        "errored",
    ] {
        assert_eq!(
            value(&before.samples, "webhooks_deliveries_total", Some(o)),
            0.0,
            "{o}"
        );
    }
    let ok = api
        .create(
            &local.token,
            json!({"bucketId": BUCKET, "url": format!("{base}/ok"), "events": ["alert.triggered"]}),
        )
        .await;
    let fail = api
        .create(
            &local.token,
            json!({"bucketId": BUCKET, "url": format!("{base}/fail"), "events": ["alert.triggered"],
                   "retryConfig": {"maxRetries": 0}}),
        )
        .await;

    // WHEN one publish call sends 5 events and every delivery has ended
    let producer = local.mint("ingest", Some("events:publish"));
    let one =
        json!({"bucketId": BUCKET, "event": "alert.triggered", "data": {"currentValue": 31.5}});
    let (s, body) = api
        .call(
            Method::POST,
            "/api/events",
            &producer,
            Some(json!({"events": vec![one; 5]})),
        )
        .await;
    assert_eq!(s, 202, "{body}");
    for id in [&ok, &fail] {
        eventually(Duration::from_secs(30), "5 deliveries ended", async || {
            let w = api.webhook(&local.token, id).await;
            (w["stats"]["totalDeliveries"] == 5).then_some(())
        })
        .await;
    }

    // THEN the scrape counts exactly those
    let (text, after) = scrape(&local.base).await;
    let s = &after.samples;
    assert_eq!(
        value(s, "webhooks_deliveries_total", Some("delivered")),
        5.0
    );
    assert_eq!(
        value(s, "webhooks_deliveries_total", Some("dead_lettered")),
        5.0
    );
    assert_eq!(value(s, "webhooks_deliveries_total", Some("retried")), 0.0);
    assert_eq!(
        value(s, "webhooks_attempt_latency_seconds_count", None),
        10.0
    );
    assert!(value(s, "webhooks_attempt_latency_seconds_sum", None) > 0.0);
    assert_eq!(value(s, "webhooks_delivery_lag_seconds_count", None), 5.0);
    assert_eq!(value(s, "webhooks_publish_events_count", None), 1.0);
    assert_eq!(value(s, "webhooks_publish_events_sum", None), 5.0);
    assert_eq!(value(s, "webhooks_publish_deliveries_sum", None), 10.0);
    let latency = s
        .iter()
        .find(|x| x.metric == "webhooks_attempt_latency_seconds")
        .expect("the latency histogram");
    match &latency.value {
        PromValue::Histogram(buckets) => {
            let inf = buckets.iter().find(|b| b.less_than.is_infinite()).unwrap();
            assert_eq!(inf.count, 10.0);
        }
        other => panic!("not a histogram: {other:?}"),
    }
    // AND no id is a label: the text names no webhook
    assert!(!text.contains(&ok) && !text.contains(&fail));
    assert_eq!(rx.at("/ok").len(), 5);
    local.stop();
}
