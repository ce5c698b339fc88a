//! Hourly delivery aggregates of one webhook: what the dashboard's 24 h chart draws
//! (`GET /api/webhooks/{id}/stats/hourly`).
//!
//! Each store keeps one aggregate per (webhook, hour) and adds to it **in the same write that
//! counts a finished delivery** ([`crate::ports::DeliveryLog::finish`] and
//! [`finish_delivered`](crate::ports::DeliveryLog::finish_delivered)), so an hour's counts are
//! exact (a delivery is in exactly one hour, once, whatever duplicates happen) and reading a day
//! reads at most [`CHART_HOURS`] small records — never the attempt history.
//!
//! What an hour holds: the deliveries that finished in it, by outcome (`delivered` = the
//! stats' `successfulDeliveries`, `failed` = `failedDeliveries`: given up and dead-lettered),
//! and a histogram of the **delivering attempts' latency** (the duration of each successful
//! attempt, the request the receiver answered 2xx). Failed attempts are not in it: they are
//! written as they happen, not when a delivery finishes, and a timeout's duration says nothing
//! about the receiver but the timeout. The histogram's buckets are fixed
//! ([`LATENCY_BOUNDS_MS`]), so hours add up and stores keep plain counters (DynamoDB `ADD`);
//! p50 and p95 are computed from them ([`LatencyHistogram::quantile`]).
//!
//! Aggregates are kept [`HOURLY_RETENTION_SECS`] (DynamoDB TTL; the SQLite log prunes them
//! with the attempts).

use serde::Serialize;

use crate::Timestamp;

/// Seconds in an hour: an aggregate's hour is `unix seconds / HOUR_SECS` ([`hour_of`]).
pub const HOUR_SECS: i64 = 3600;

/// How many hours the chart shows: the current one and the 23 before it.
pub const CHART_HOURS: usize = 24;

/// How long an hour's aggregate is kept after the hour ends: the chart's day, and a day more
/// for clocks and late finishes.
pub const HOURLY_RETENTION_SECS: i64 = 48 * HOUR_SECS;

/// Upper bounds (inclusive, milliseconds) of the latency buckets; one more bucket counts
/// everything above the last bound. Changing them makes stored aggregates unreadable as they
/// are: append only in a new store format.
pub const LATENCY_BOUNDS_MS: [u64; 12] = [
    5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000,
];

/// How many latency buckets an aggregate has: one per bound and the overflow.
pub const LATENCY_BUCKETS: usize = LATENCY_BOUNDS_MS.len() + 1;

/// The hour `t` falls in (hours since the Unix epoch).
pub fn hour_of(t: Timestamp) -> i64 {
    t.unix().div_euclid(HOUR_SECS)
}

/// When `hour` starts.
pub fn hour_start(hour: i64) -> Timestamp {
    Timestamp::from_unix(hour.saturating_mul(HOUR_SECS))
}

/// When the aggregate of `hour` may be dropped (its TTL on DynamoDB).
pub fn expires_at(hour: i64) -> i64 {
    hour.saturating_add(1)
        .saturating_mul(HOUR_SECS)
        .saturating_add(HOURLY_RETENTION_SECS)
}

/// Counts of attempt latencies in the fixed buckets of [`LATENCY_BOUNDS_MS`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LatencyHistogram {
    /// `counts[i]`: latencies in `(LATENCY_BOUNDS_MS[i-1], LATENCY_BOUNDS_MS[i]]`; the last one
    /// above every bound.
    pub counts: [u64; LATENCY_BUCKETS],
}

impl LatencyHistogram {
    /// The bucket a latency of `ms` goes in.
    pub fn bucket_of(ms: u64) -> usize {
        LATENCY_BOUNDS_MS
            .iter()
            .position(|&bound| ms <= bound)
            .unwrap_or(LATENCY_BOUNDS_MS.len())
    }

    /// Adds one latency.
    pub fn record(&mut self, ms: u64) {
        self.counts[Self::bucket_of(ms)] += 1;
    }

    /// Adds another histogram's counts.
    pub fn add(&mut self, other: &LatencyHistogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts) {
            *mine = mine.saturating_add(theirs);
        }
    }

    /// How many latencies it holds.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The `q` quantile (0 < q ≤ 1) in milliseconds, estimated from the buckets as Prometheus'
    /// `histogram_quantile` does: the bucket holding the rank `q × total`, interpolated
    /// linearly within it (the first bucket starts at 0). A rank in the overflow bucket
    /// answers the last bound (the histogram cannot tell more). `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        let total = self.total();
        if total == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * total as f64;
        let mut below = 0u64;
        for (i, &count) in self.counts.iter().enumerate() {
            if count == 0 || ((below + count) as f64) < rank {
                below += count;
                continue;
            }
            let Some(&upper) = LATENCY_BOUNDS_MS.get(i) else {
                return Some(LATENCY_BOUNDS_MS[LATENCY_BOUNDS_MS.len() - 1]);
            };
            let lower = if i == 0 { 0 } else { LATENCY_BOUNDS_MS[i - 1] };
            let within = ((rank - below as f64) / count as f64).clamp(0.0, 1.0);
            return Some(lower + ((upper - lower) as f64 * within).round() as u64);
        }
        Some(LATENCY_BOUNDS_MS[LATENCY_BOUNDS_MS.len() - 1])
    }
}

/// One webhook's aggregate of one hour, as a store keeps it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HourlyStats {
    /// [`hour_of`] the finishes it counts.
    pub hour: i64,
    /// Deliveries that finished delivered in this hour.
    pub delivered: u64,
    /// Deliveries that finished failed (dead-lettered) in this hour.
    pub failed: u64,
    /// The delivering attempts' latencies.
    pub latency: LatencyHistogram,
}

impl HourlyStats {
    /// An hour with nothing in it.
    pub fn empty(hour: i64) -> Self {
        Self {
            hour,
            ..Self::default()
        }
    }

    /// The aggregate of one finish: a delivered one with its attempt's latency, or a failed one.
    pub fn of_finish(delivered: bool, at: Timestamp, latency_ms: Option<u64>) -> Self {
        let mut h = Self::empty(hour_of(at));
        if delivered {
            h.delivered = 1;
        } else {
            h.failed = 1;
        }
        if let Some(ms) = latency_ms {
            h.latency.record(ms);
        }
        h
    }

    /// Adds `other`'s counts (of the same hour).
    pub fn add(&mut self, other: &HourlyStats) {
        self.delivered = self.delivered.saturating_add(other.delivered);
        self.failed = self.failed.saturating_add(other.failed);
        self.latency.add(&other.latency);
    }
}

/// `items` summed per hour, oldest hour first (what one write adds to each hour's aggregate).
pub fn by_hour(items: impl IntoIterator<Item = HourlyStats>) -> Vec<HourlyStats> {
    let mut hours: std::collections::BTreeMap<i64, HourlyStats> = Default::default();
    for h in items {
        hours
            .entry(h.hour)
            .or_insert_with(|| HourlyStats::empty(h.hour))
            .add(&h);
    }
    hours.into_values().collect()
}

/// The hours the chart shows at `now`: [`CHART_HOURS`] of them, the current one last.
pub fn chart_hours(now: Timestamp) -> std::ops::RangeInclusive<i64> {
    let last = hour_of(now);
    (last - (CHART_HOURS as i64 - 1))..=last
}

/// One hour of the chart, as the API answers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HourPoint {
    /// When the hour starts (RFC 3339).
    pub hour: Timestamp,
    /// Deliveries that finished delivered in this hour.
    pub delivered: u64,
    /// Deliveries that finished failed (given up, dead-lettered) in this hour.
    pub failed: u64,
    /// Median latency of this hour's delivering attempts (ms, estimated from fixed buckets);
    /// `null` when none was delivered.
    pub latency_p50_ms: Option<u64>,
    /// 95th percentile of the same.
    pub latency_p95_ms: Option<u64>,
}

/// The chart's [`CHART_HOURS`] points at `now`, oldest first, from whatever aggregates a store
/// returned for [`chart_hours`] (an hour it has none of is zero; one outside is ignored).
pub fn chart(stored: &[HourlyStats], now: Timestamp) -> Vec<HourPoint> {
    chart_hours(now)
        .map(|hour| {
            let mut h = HourlyStats::empty(hour);
            for s in stored.iter().filter(|s| s.hour == hour) {
                h.add(s);
            }
            HourPoint {
                hour: hour_start(hour),
                delivered: h.delivered,
                failed: h.failed,
                latency_p50_ms: h.latency.quantile(0.5),
                latency_p95_ms: h.latency.quantile(0.95),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn histogram(latencies: &[u64]) -> LatencyHistogram {
        let mut h = LatencyHistogram::default();
        for &ms in latencies {
            h.record(ms);
        }
        h
    }

    #[test]
    fn a_latency_goes_in_the_first_bucket_whose_bound_holds_it() {
        assert_eq!(LatencyHistogram::bucket_of(0), 0);
        assert_eq!(LatencyHistogram::bucket_of(5), 0);
        assert_eq!(LatencyHistogram::bucket_of(6), 1);
        assert_eq!(LatencyHistogram::bucket_of(100), 4);
        assert_eq!(LatencyHistogram::bucket_of(101), 5);
        assert_eq!(LatencyHistogram::bucket_of(30_000), 11);
        assert_eq!(LatencyHistogram::bucket_of(30_001), 12);
        assert_eq!(LatencyHistogram::bucket_of(u64::MAX), LATENCY_BUCKETS - 1);
    }

    #[test]
    fn bounds_rise_strictly() {
        assert!(LATENCY_BOUNDS_MS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn an_empty_histogram_has_no_quantile() {
        assert_eq!(LatencyHistogram::default().quantile(0.5), None);
    }

    #[test]
    fn quantiles_interpolate_within_the_bucket_that_holds_the_rank() {
        // 100 latencies: 50 in (50, 100], 45 in (100, 250], 5 in (250, 500].
        let mut v = vec![80; 50];
        v.extend([200; 45]);
        v.extend([400; 5]);
        let h = histogram(&v);
        assert_eq!(h.total(), 100);
        // Rank 50 is the last of the (50, 100] bucket: its upper bound.
        assert_eq!(h.quantile(0.5), Some(100));
        // Rank 95 is the last of (100, 250].
        assert_eq!(h.quantile(0.95), Some(250));
        // Rank 99: 4 of the 5 in (250, 500] → 250 + 250 × 4/5.
        assert_eq!(h.quantile(0.99), Some(450));
        // Rank 25: half-way through (50, 100].
        assert_eq!(h.quantile(0.25), Some(75));
    }

    #[test]
    fn one_latency_is_placed_by_the_quantile_within_its_bucket() {
        // 120 ms is in (100, 250]: the median is half-way, the 100th percentile the bound.
        let h = histogram(&[120]);
        assert_eq!(h.quantile(0.5), Some(175));
        assert_eq!(h.quantile(1.0), Some(250));
        let p95 = h.quantile(0.95).unwrap();
        assert!((175..=250).contains(&p95), "{p95}");
    }

    #[test]
    fn a_rank_in_the_overflow_bucket_answers_the_last_bound() {
        let h = histogram(&[10, 60_000, 60_000]);
        assert_eq!(h.quantile(0.95), Some(30_000));
        assert_eq!(h.quantile(0.5), Some(30_000));
        assert_eq!(
            histogram(&[1]).quantile(0.2),
            Some(1),
            "first bucket starts at 0"
        );
        assert_eq!(histogram(&[1]).quantile(1.0), Some(5));
    }

    #[test]
    fn the_chart_is_24_hours_oldest_first_with_zeros_for_empty_hours() {
        // GIVEN aggregates of the current hour, 23 hours ago, and 24 hours ago (outside)
        let now = Timestamp::from_unix(1_700_000_000); // 22:13:20 UTC
        let current = hour_of(now);
        let mut a = HourlyStats::of_finish(true, now, Some(80));
        a.add(&HourlyStats::of_finish(false, now, None));
        let oldest =
            HourlyStats::of_finish(false, Timestamp::from_unix(now.unix() - 23 * 3600), None);
        let outside =
            HourlyStats::of_finish(true, Timestamp::from_unix(now.unix() - 24 * 3600), None);
        // WHEN the chart is drawn
        let c = chart(&[outside, a, oldest], now);
        // THEN 24 points, the first 23 hours ago, the last the current hour
        assert_eq!(c.len(), CHART_HOURS);
        assert_eq!(c[0].hour, hour_start(current - 23));
        assert_eq!(c[23].hour, hour_start(current));
        assert_eq!(c[23].hour.to_rfc3339(), "2023-11-14T22:00:00Z");
        assert_eq!((c[0].delivered, c[0].failed), (0, 1));
        assert_eq!((c[23].delivered, c[23].failed), (1, 1));
        assert_eq!(
            c[23].latency_p50_ms,
            Some(75),
            "80 ms: half-way through (50, 100]"
        );
        assert_eq!(c[0].latency_p50_ms, None);
        assert_eq!(c.iter().map(|p| p.delivered + p.failed).sum::<u64>(), 3);
    }

    #[test]
    fn finishes_are_summed_per_hour_oldest_first() {
        let t = |s| Timestamp::from_unix(s);
        let sums = by_hour([
            HourlyStats::of_finish(true, t(7_300), Some(40)),
            HourlyStats::of_finish(false, t(3_700), None),
            HourlyStats::of_finish(true, t(7_201), Some(700)),
        ]);
        assert_eq!(sums.len(), 2);
        assert_eq!((sums[0].hour, sums[0].delivered, sums[0].failed), (1, 0, 1));
        assert_eq!((sums[1].hour, sums[1].delivered, sums[1].failed), (2, 2, 0));
        assert_eq!(sums[1].latency.total(), 2);
        assert_eq!(sums[0].latency.total(), 0);
    }

    #[test]
    fn an_hour_is_kept_two_days_after_it_ends() {
        assert_eq!(expires_at(0), 3600 + 48 * 3600);
        assert_eq!(hour_of(Timestamp::from_unix(3599)), 0);
        assert_eq!(hour_of(Timestamp::from_unix(3600)), 1);
    }
}
