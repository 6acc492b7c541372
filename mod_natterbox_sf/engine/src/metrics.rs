//! The module's own figures in the Prometheus text format (`sf metrics`, and pushed to the
//! sidecar, which serves them on its `/metrics`).
//!
//! Lookups are counted on the caller's thread with striped counters: a hit adds to two
//! counters on cache lines no other thread writes, and takes no lock.

use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::breaker::BreakerView;
use crate::engine::Snapshot;
use crate::outbox::OutboxCounters;
use crate::outcome::{LookupStatus, Source};
use crate::striped::{Stripe, StripedCounter};

const STATUSES: [LookupStatus; 9] = [
    LookupStatus::Found,
    LookupStatus::NotFound,
    LookupStatus::Multiple,
    LookupStatus::InvalidNumber,
    LookupStatus::Timeout,
    LookupStatus::Error,
    LookupStatus::Throttled,
    LookupStatus::Unauthorized,
    LookupStatus::Overloaded,
];

/// Where an answer came from; `none` when it has no source (refused, timed out).
const SOURCES: [Option<Source>; 4] = [
    Some(Source::Cache),
    Some(Source::Stale),
    Some(Source::Salesforce),
    None,
];

/// Upper bounds of the latency buckets, in microseconds: hits land in the first, Salesforce
/// answers from a few milliseconds up, timeouts at the deadline.
const BUCKETS_US: [u64; 13] = [
    10, 100, 1_000, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
    5_000_000,
];

/// `STATUSES` lists the variants in declaration order.
fn status_index(status: LookupStatus) -> usize {
    status as usize
}

fn source_index(source: Option<Source>) -> usize {
    match source {
        Some(Source::Cache) => 0,
        Some(Source::Stale) => 1,
        Some(Source::Salesforce) => 2,
        None => 3,
    }
}

/// Counts of finished lookups and their latency.
#[derive(Default)]
pub struct LookupMetrics {
    by_outcome: [[StripedCounter; SOURCES.len()]; STATUSES.len()],
    /// Non-cumulative: lookups whose latency fell in each bucket; the last is above them all.
    buckets: [StripedCounter; BUCKETS_US.len() + 1],
    sum_us: StripedCounter,
}

impl LookupMetrics {
    pub fn record(&self, status: LookupStatus, source: Option<Source>, elapsed: Duration) {
        let stripe = Stripe::current();
        self.by_outcome[status_index(status)][source_index(source)].add_on(stripe, 1);
        let us = elapsed.as_micros() as u64;
        let bucket = BUCKETS_US
            .iter()
            .position(|b| us <= *b)
            .unwrap_or(BUCKETS_US.len());
        self.buckets[bucket].add_on(stripe, 1);
        self.sum_us.add_on(stripe, us);
    }

    pub fn total(&self) -> u64 {
        self.buckets.iter().map(StripedCounter::sum).sum()
    }
}

/// What the figures are read from.
pub struct MetricsSources<'a> {
    pub lookups: &'a LookupMetrics,
    pub snapshot: &'a Snapshot,
    pub cache: crate::cache::CacheStats,
    pub flights: usize,
    pub outbox: &'a OutboxCounters,
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Label values are org names from the config and fixed words; escaped as the format asks.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

pub fn render(m: &MetricsSources<'_>) -> String {
    let mut out = String::with_capacity(8 * 1024);
    let p = "natterbox_module";

    family(
        &mut out,
        &format!("{p}_lookups_total"),
        "counter",
        "Finished sf_lookup calls by status and where the answer came from.",
    );
    for (si, status) in STATUSES.iter().enumerate() {
        for (oi, source) in SOURCES.iter().enumerate() {
            let _ = writeln!(
                out,
                "{p}_lookups_total{{status=\"{}\",source=\"{}\"}} {}",
                status.as_str(),
                source.map_or("none", |s| s.as_str()),
                m.lookups.by_outcome[si][oi].sum()
            );
        }
    }

    let name = format!("{p}_lookup_duration_seconds");
    family(
        &mut out,
        &name,
        "histogram",
        "Time sf_lookup held the call, from its start to its answer.",
    );
    let mut cumulative = 0;
    for (i, bound) in BUCKETS_US.iter().enumerate() {
        cumulative += m.lookups.buckets[i].sum();
        let _ = writeln!(
            out,
            "{name}_bucket{{le=\"{}\"}} {cumulative}",
            *bound as f64 / 1e6
        );
    }
    cumulative += m.lookups.buckets[BUCKETS_US.len()].sum();
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
    let _ = writeln!(out, "{name}_sum {}", m.lookups.sum_us.sum() as f64 / 1e6);
    let _ = writeln!(out, "{name}_count {cumulative}");

    let c = &m.cache;
    let gauges: [(&str, &str, u64); 3] = [
        (
            "cache_entries",
            "Answers in the lookup cache.",
            c.entries as u64,
        ),
        (
            "cache_max_entries",
            "The cache's configured size.",
            m.snapshot.config.settings.cache_max_entries as u64,
        ),
        (
            "flights",
            "Salesforce lookups in progress.",
            m.flights as u64,
        ),
    ];
    for (name, help, value) in gauges {
        family(&mut out, &format!("{p}_{name}"), "gauge", help);
        let _ = writeln!(out, "{p}_{name} {value}");
    }
    let counters: [(&str, &str, u64); 5] = [
        (
            "cache_hits_total",
            "Lookups answered fresh from the cache.",
            c.hits,
        ),
        (
            "cache_stale_hits_total",
            "Lookups answered from the cache past the TTL while it was refreshed.",
            c.stale_hits,
        ),
        (
            "cache_misses_total",
            "Lookups the cache could not answer.",
            c.misses,
        ),
        (
            "cache_inserts_total",
            "Answers stored in the cache.",
            c.inserts,
        ),
        (
            "cache_evictions_total",
            "Answers evicted to keep the cache within its size.",
            c.evictions,
        ),
    ];
    for (name, help, value) in counters {
        family(&mut out, &format!("{p}_{name}"), "counter", help);
        let _ = writeln!(out, "{p}_{name} {value}");
    }
    let served = c.hits + c.stale_hits;
    family(
        &mut out,
        &format!("{p}_cache_hit_ratio"),
        "gauge",
        "Hits (fresh and stale) over all cache reads since the module loaded.",
    );
    let ratio = if served + c.misses == 0 {
        0.0
    } else {
        served as f64 / (served + c.misses) as f64
    };
    let _ = writeln!(out, "{p}_cache_hit_ratio {ratio}");

    let mut orgs: Vec<_> = m.snapshot.orgs.values().collect();
    orgs.sort_by(|a, b| a.name.cmp(b.name));
    let now = Instant::now();
    family(
        &mut out,
        &format!("{p}_breaker_state"),
        "gauge",
        "Circuit breaker per org: 0 closed, 1 half-open (probing), 2 open (backing off).",
    );
    for org in &orgs {
        let state = match org.breaker.view(now) {
            BreakerView::Closed => 0,
            BreakerView::HalfOpen => 1,
            BreakerView::Open { .. } => 2,
        };
        let _ = writeln!(
            out,
            "{p}_breaker_state{{org=\"{}\"}} {state}",
            label(org.name)
        );
    }
    family(
        &mut out,
        &format!("{p}_api_requests_used"),
        "gauge",
        "The org's API requests used in the last 24 hours, from Sforce-Limit-Info (absent before the first answer).",
    );
    for org in &orgs {
        if let Some(limit) = org.limit() {
            let _ = writeln!(
                out,
                "{p}_api_requests_used{{org=\"{}\"}} {}",
                label(org.name),
                limit.used
            );
        }
    }
    family(
        &mut out,
        &format!("{p}_api_requests_max"),
        "gauge",
        "The org's daily API request allocation, from Sforce-Limit-Info.",
    );
    for org in &orgs {
        if let Some(limit) = org.limit() {
            let _ = writeln!(
                out,
                "{p}_api_requests_max{{org=\"{}\"}} {}",
                label(org.name),
                limit.max
            );
        }
    }
    type OrgCounter = fn(&crate::engine::OrgRuntime) -> u64;
    let per_org: [(&str, &str, OrgCounter); 2] = [
        (
            "salesforce_requests_total",
            "Searches sent to the org.",
            |o| o.requests.load(Ordering::Relaxed),
        ),
        (
            "unauthorized_total",
            "Searches the org refused with an invalid session, or that had no token.",
            |o| o.unauthorized.load(Ordering::Relaxed),
        ),
    ];
    for (name, help, read) in per_org {
        family(&mut out, &format!("{p}_{name}"), "counter", help);
        for org in &orgs {
            let _ = writeln!(
                out,
                "{p}_{name}{{org=\"{}\"}} {}",
                label(org.name),
                read(org)
            );
        }
    }

    let o = m.outbox;
    let gauges: [(&str, &str, u64); 2] = [
        (
            "spool_depth",
            "Call logs and record writes in the spool: not yet acknowledged by the sidecar.",
            o.spool_depth.load(Ordering::Relaxed),
        ),
        (
            "sidecar_connected",
            "1 while the event socket to the sidecar is connected.",
            o.connected.load(Ordering::Relaxed),
        ),
    ];
    for (name, help, value) in gauges {
        family(&mut out, &format!("{p}_{name}"), "gauge", help);
        let _ = writeln!(out, "{p}_{name} {value}");
    }
    let counters: [(&str, &str, u64); 9] = [
        (
            "record_writes_queued_total",
            "Record writes handed to the sidecar's outbox (delivery=\"outbox\", or a failed idempotent sync write).",
            o.writes_queued.load(Ordering::Relaxed),
        ),
        (
            "record_writes_acked_total",
            "Record writes the sidecar acknowledged (committed to its outbox).",
            o.writes_acked.load(Ordering::Relaxed),
        ),
        (
            "record_writes_lost_total",
            "Record writes that found the queue and the spool writer both full.",
            o.writes_lost.load(Ordering::Relaxed),
        ),
        (
            "events_sent_total",
            "Messages written to the sidecar.",
            o.sent.load(Ordering::Relaxed),
        ),
        (
            "events_dropped_total",
            "Screen pops and token reports dropped: queue full or no sidecar.",
            o.dropped_queue_full.load(Ordering::Relaxed)
                + o.dropped_pops_expired.load(Ordering::Relaxed),
        ),
        (
            "call_logs_spooled_total",
            "Call logs written to the spool.",
            o.call_logs_spooled.load(Ordering::Relaxed),
        ),
        (
            "call_logs_acked_total",
            "Call logs the sidecar acknowledged.",
            o.call_logs_acked.load(Ordering::Relaxed),
        ),
        (
            "spool_errors_total",
            "Spool writes or directory syncs that failed.",
            o.spool_errors.load(Ordering::Relaxed),
        ),
        (
            "call_logs_lost_total",
            "Call logs that found the queue and the spool writer both full.",
            o.call_logs_lost.load(Ordering::Relaxed),
        ),
    ];
    for (name, help, value) in counters {
        family(&mut out, &format!("{p}_{name}"), "counter", help);
        let _ = writeln!(out, "{p}_{name} {value}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_land_in_their_status_source_and_bucket() {
        let m = LookupMetrics::default();
        m.record(
            LookupStatus::Found,
            Some(Source::Cache),
            Duration::from_nanos(300),
        );
        m.record(
            LookupStatus::Found,
            Some(Source::Salesforce),
            Duration::from_millis(3),
        );
        m.record(LookupStatus::Timeout, None, Duration::from_secs(9));
        assert_eq!(m.by_outcome[0][0].sum(), 1);
        assert_eq!(m.by_outcome[0][2].sum(), 1);
        assert_eq!(m.by_outcome[4][3].sum(), 1);
        assert_eq!(m.buckets[0].sum(), 1, "300 ns: the 10 µs bucket");
        assert_eq!(m.buckets[3].sum(), 1, "3 ms: the 5 ms bucket");
        assert_eq!(m.buckets[BUCKETS_US.len()].sum(), 1, "9 s: above all");
        assert_eq!(m.total(), 3);
    }

    #[test]
    fn indexes_match_the_label_lists() {
        for (i, status) in STATUSES.iter().enumerate() {
            assert_eq!(status_index(*status), i);
        }
        for (i, source) in SOURCES.iter().enumerate() {
            assert_eq!(source_index(*source), i);
        }
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
