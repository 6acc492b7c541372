//! What the emulator observed: counters per endpoint and per query text, concurrency, and the
//! log of every SOQL/SOSL string received.

use serde::Serialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct QueryLogEntry {
    /// "soql", "soql_all", "sosl", "parameterized_search", "soap_soql".
    pub kind: String,
    /// The query text exactly as received (decoded).
    pub text: String,
    /// Every string literal / search term after unescaping.
    pub literals: Vec<String>,
    /// Every comparison value of a SOQL query in order, as the parser read it: strings after
    /// unescaping, numbers, dates and date-times as written, `true`/`false`/`null` lowercase
    /// (empty for other kinds). Tests compare each with the value a call bound.
    pub values: Vec<String>,
    /// Error code when the query was refused.
    pub error: Option<String>,
}

/// The query log keeps the newest entries only, so long benchmarks do not grow without bound.
pub const QUERY_LOG_MAX: usize = 100_000;

#[derive(Default)]
struct Inner {
    endpoints: BTreeMap<String, u64>,
    queries: BTreeMap<String, u64>,
    log: VecDeque<QueryLogEntry>,
    log_dropped: u64,
}

#[derive(Default)]
pub struct Stats {
    inner: Mutex<Inner>,
    total: AtomicU64,
    in_flight: AtomicU64,
    peak: AtomicU64,
    next_id: AtomicU64,
    running: Mutex<HashMap<u64, Instant>>,
}

/// Marks one request in flight until dropped.
pub struct InFlight<'a> {
    stats: &'a Stats,
    id: u64,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.stats.in_flight.fetch_sub(1, Ordering::SeqCst);
        if let Ok(mut r) = self.stats.running.lock() {
            r.remove(&self.id);
        }
    }
}

impl Stats {
    /// Counts one request in flight; `api` requests also count towards the concurrent
    /// long-running limit.
    pub fn begin(&self, api: bool) -> InFlight<'_> {
        self.total.fetch_add(1, Ordering::SeqCst);
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        if api {
            if let Ok(mut r) = self.running.lock() {
                r.insert(id, Instant::now());
            }
        }
        InFlight { stats: self, id }
    }

    /// Requests in flight for at least `ms` milliseconds (excluding the caller's own).
    pub fn long_running(&self, ms: u64) -> u64 {
        self.running.lock().map_or(0, |r| {
            r.values()
                .filter(|t| t.elapsed().as_millis() as u64 >= ms)
                .count() as u64
        })
    }

    pub fn endpoint(&self, name: &str) {
        if let Ok(mut i) = self.inner.lock() {
            *i.endpoints.entry(name.to_string()).or_default() += 1;
        }
    }

    pub fn query(&self, entry: QueryLogEntry) {
        if let Ok(mut i) = self.inner.lock() {
            *i.queries.entry(entry.text.clone()).or_default() += 1;
            if i.log.len() >= QUERY_LOG_MAX {
                i.log.pop_front();
                i.log_dropped += 1;
            }
            i.log.push_back(entry);
        }
    }

    pub fn query_log(&self) -> Vec<QueryLogEntry> {
        self.inner
            .lock()
            .map(|i| i.log.iter().cloned().collect())
            .unwrap_or_default()
    }

    pub fn snapshot(&self) -> Value {
        let (endpoints, queries, dropped) = self
            .inner
            .lock()
            .map(|i| (i.endpoints.clone(), i.queries.clone(), i.log_dropped))
            .unwrap_or_default();
        json!({
            "total_requests": self.total.load(Ordering::SeqCst),
            "in_flight": self.in_flight.load(Ordering::SeqCst),
            "peak_in_flight": self.peak.load(Ordering::SeqCst),
            "endpoints": endpoints,
            "queries": queries,
            "query_log_dropped": dropped,
        })
    }

    pub fn reset(&self) {
        if let Ok(mut i) = self.inner.lock() {
            *i = Inner::default();
        }
        self.total.store(0, Ordering::SeqCst);
        self.peak
            .store(self.in_flight.load(Ordering::SeqCst), Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_log_is_bounded_and_counts_drops() {
        let s = Stats::default();
        for n in 0..QUERY_LOG_MAX + 5 {
            s.query(QueryLogEntry {
                kind: "soql".into(),
                text: format!("q{}", n % 3),
                literals: vec![],
                values: vec![],
                error: None,
            });
        }
        let log = s.query_log();
        assert_eq!(log.len(), QUERY_LOG_MAX);
        assert_eq!(log[0].text, "q2", "oldest five dropped");
        let snap = s.snapshot();
        assert_eq!(snap["query_log_dropped"], 5);
        assert_eq!(
            snap["queries"]["q0"],
            (QUERY_LOG_MAX as u64 + 5).div_ceil(3)
        );
    }

    #[test]
    fn in_flight_and_long_running() {
        let s = Stats::default();
        let a = s.begin(true);
        let b = s.begin(false);
        assert_eq!(s.snapshot()["in_flight"], 2);
        assert_eq!(s.long_running(0), 1, "only API requests count");
        drop(a);
        drop(b);
        assert_eq!(s.snapshot()["in_flight"], 0);
        assert_eq!(s.snapshot()["peak_in_flight"], 2);
        assert_eq!(s.long_running(0), 0);
    }
}
