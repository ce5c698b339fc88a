//! CloudWatch Embedded Metric Format: the functions' metrics as structured log lines on stdout,
//! which CloudWatch Logs turns into metrics with no API call and no added latency. One line per
//! delivery batch (the delivery function) or per publish call (the API function), the
//! `_aws` block as AWS's EMF specification has it: `Timestamp` (unix ms) and
//! `CloudWatchMetrics: [{Namespace, Dimensions, Metrics: [{Name, Unit}]}]`, then the dimension
//! and metric values as top-level members. The names, units and what counts as what are the
//! core's ([`webhooks_core::metrics`]); this module only writes them down.
//!
//! The one dimension is `Function` (`delivery` or `api`): low cardinality by design. The
//! webhook ids of a batch are a plain member (`webhookIds`), searchable in Logs Insights but
//! never a dimension. A distribution is written as an array of values (EMF allows 100 per
//! metric per line; a measurement with more is split over several lines).

use std::sync::{Arc, Mutex, PoisonError};

use serde_json::{Map, Value, json};
use webhooks_core::metrics::{DeliveryOutcome, Distribution, Measurements, MetricsSink, NAMESPACE};

/// The most values of one metric in one line (EMF's limit).
pub const MAX_VALUES_PER_LINE: usize = 100;
/// The dimension every line has.
pub const FUNCTION_DIMENSION: &str = "Function";

/// The EMF lines of `m`, stamped `at_ms` (unix milliseconds), for `function`: none when `m` is
/// empty. Counts are written only when `m` counts receipts (all six outcomes, zeros included,
/// so ratios over them are defined); distributions only when they have values.
pub fn lines(m: &Measurements, function: &str, at_ms: i64) -> Vec<String> {
    if m.is_empty() {
        return Vec::new();
    }
    let counts = DeliveryOutcome::ALL.iter().any(|o| m.count(*o) > 0);
    let longest = Distribution::ALL
        .iter()
        .map(|d| m.values(*d).len())
        .max()
        .unwrap_or(0);
    let parts = longest.div_ceil(MAX_VALUES_PER_LINE).max(1);
    (0..parts)
        .map(|part| {
            let mut definitions = Vec::new();
            let mut root = Map::new();
            root.insert(FUNCTION_DIMENSION.into(), json!(function));
            if counts && part == 0 {
                for o in DeliveryOutcome::ALL {
                    definitions.push(json!({"Name": o.metric(), "Unit": "Count"}));
                    root.insert(o.metric().into(), json!(m.count(o)));
                }
            }
            for d in Distribution::ALL {
                let values = m.values(d);
                let from = part * MAX_VALUES_PER_LINE;
                if from >= values.len() {
                    continue;
                }
                let to = (from + MAX_VALUES_PER_LINE).min(values.len());
                definitions.push(json!({"Name": d.metric(), "Unit": d.unit()}));
                root.insert(d.metric().into(), json!(&values[from..to]));
            }
            if part == 0 && !m.webhooks().is_empty() {
                root.insert("webhookIds".into(), json!(m.webhooks()));
            }
            root.insert(
                "_aws".into(),
                json!({
                    "Timestamp": at_ms,
                    "CloudWatchMetrics": [{
                        "Namespace": NAMESPACE,
                        "Dimensions": [[FUNCTION_DIMENSION]],
                        "Metrics": definitions,
                    }],
                }),
            );
            Value::Object(root).to_string()
        })
        .collect()
}

/// Writes each recorded measurement as EMF lines: to stdout (what Lambda sends to CloudWatch
/// Logs), or kept in memory for tests ([`EmfSink::capturing`]).
#[derive(Debug, Clone)]
pub struct EmfSink {
    function: &'static str,
    captured: Option<Arc<Mutex<Vec<String>>>>,
}

impl EmfSink {
    /// Lines to stdout, with dimension `Function` = `function`.
    pub fn stdout(function: &'static str) -> Self {
        Self {
            function,
            captured: None,
        }
    }

    /// Lines kept in the returned buffer instead of printed.
    pub fn capturing(function: &'static str) -> (Self, Arc<Mutex<Vec<String>>>) {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        (
            Self {
                function,
                captured: Some(buffer.clone()),
            },
            buffer,
        )
    }
}

impl MetricsSink for EmfSink {
    fn record(&self, m: &Measurements) {
        let at_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let lines = lines(m, self.function, at_ms);
        match &self.captured {
            Some(buffer) => buffer
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend(lines),
            None => {
                use std::io::Write;
                let mut out = std::io::stdout().lock();
                for line in lines {
                    // A metric line that cannot be written is not worth failing the work for.
                    if let Err(e) = writeln!(out, "{line}") {
                        tracing::warn!(error = %e, "an EMF metric line could not be written");
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_publish_is_one_line_of_its_two_distributions_and_a_big_one_is_split() {
        let line = &lines(&Measurements::publish(3, 7), "api", 1_700_000_000_000)[0];
        let v: Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["_aws"]["Timestamp"], 1_700_000_000_000i64);
        let d = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(d["Namespace"], NAMESPACE);
        assert_eq!(d["Dimensions"], json!([["Function"]]));
        assert_eq!(d["Metrics"].as_array().unwrap().len(), 2, "no counts: {v}");
        assert_eq!(
            (v["Function"].clone(), v["PublishEvents"].clone()),
            (json!("api"), json!([3.0]))
        );
        assert!(lines(&Measurements::default(), "api", 0).is_empty());
        let mut many = Measurements::default();
        for _ in 0..250 {
            many.merge(&Measurements::publish(1, 1));
        }
        let split = lines(&many, "api", 0);
        assert_eq!(split.len(), 3);
        let sizes: Vec<usize> = split
            .iter()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["PublishEvents"]
                    .as_array()
                    .unwrap()
                    .len()
            })
            .collect();
        assert_eq!(sizes, [100, 100, 50]);
    }
}
