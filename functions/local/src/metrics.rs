//! The local mode's metrics: the core's measurements ([`webhooks_core::metrics`]) kept in a
//! `prometheus-client` registry and served at `GET /metrics` in the Prometheus (OpenMetrics)
//! text format. Names, labels and what counts as what are the core's; this module only keeps
//! the counters and histograms.
//!
//! `/metrics` is outside the API's token auth (a scraper has no user token): whoever can reach
//! the server's address can read it. It holds counts and timings only, no ids, urls or bodies.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use webhooks_core::metrics::{
    DeliveryOutcome, Distribution, Measurements, MetricsSink, PROM_DELIVERIES, PROM_DELIVERIES_HELP,
};

/// The route of the metrics.
pub const METRICS_PATH: &str = "/metrics";
/// What `/metrics` answers as.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

type Labels = Vec<(&'static str, &'static str)>;

/// The registry, and the sink both the worker's dispatcher and the API record into.
#[derive(Debug)]
pub struct PrometheusMetrics {
    registry: Registry,
    deliveries: Family<Labels, Counter>,
    distributions: Vec<(Distribution, Histogram)>,
}

impl PrometheusMetrics {
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::default();
        let deliveries = Family::<Labels, Counter>::default();
        registry.register(PROM_DELIVERIES, PROM_DELIVERIES_HELP, deliveries.clone());
        // Every outcome shows from the start (at 0), so a ratio over them is defined at once.
        for o in DeliveryOutcome::ALL {
            deliveries
                .get_or_create(&vec![("outcome", o.label())])
                .inc_by(0);
        }
        let distributions = Distribution::ALL
            .into_iter()
            .map(|d| {
                let buckets: Vec<f64> = match d {
                    // 1 ms .. ~33 s (seconds).
                    Distribution::AttemptLatency => exponential_buckets(0.001, 2.0, 16).collect(),
                    // 10 ms .. ~12 h: retries are hours apart.
                    Distribution::DeliveryLag => exponential_buckets(0.01, 4.0, 14).collect(),
                    // 1 .. 8192 per publish.
                    Distribution::PublishEvents | Distribution::PublishDeliveries => {
                        exponential_buckets(1.0, 2.0, 14).collect()
                    }
                };
                let h = Histogram::new(buckets);
                registry.register(d.prometheus(), d.help(), h.clone());
                (d, h)
            })
            .collect();
        Arc::new(Self {
            registry,
            deliveries,
            distributions,
        })
    }

    /// The text a scrape gets.
    pub fn render(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        encode(&mut out, &self.registry)?;
        Ok(out)
    }

    /// `GET /metrics`, to merge into the server's Router (outside the API's auth).
    pub fn routes(self: &Arc<Self>) -> Router {
        Router::new()
            .route(METRICS_PATH, get(scrape))
            .with_state(self.clone())
    }
}

impl MetricsSink for PrometheusMetrics {
    fn record(&self, m: &Measurements) {
        for o in DeliveryOutcome::ALL {
            let n = m.count(o);
            if n > 0 {
                self.deliveries
                    .get_or_create(&vec![("outcome", o.label())])
                    .inc_by(n);
            }
        }
        for (d, h) in &self.distributions {
            for v in m.values(*d) {
                h.observe(d.prometheus_value(*v));
            }
        }
    }
}

async fn scrape(State(metrics): State<Arc<PrometheusMetrics>>) -> Response {
    match metrics.render() {
        Ok(text) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "metrics could not be encoded");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}
