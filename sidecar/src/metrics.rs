//! Counters and gauges, exposed on `/metrics` in the Prometheus text format.
//!
//! Hand-written rather than a metrics crate: a few dozen atomics and one `render` are all we
//! need, and the exposition format for counters and gauges is a handful of lines.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Default, Debug)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down (connections, queue depth, outbox rows).
#[derive(Default, Debug)]
pub struct Gauge(AtomicU64);

impl Gauge {
    pub fn set(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed);
    }
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Per-org counters.
#[derive(Default, Debug)]
pub struct OrgCounters {
    pub token_requests: Counter,
    pub token_refreshes: Counter,
    pub token_failures: Counter,
    /// 401 reports for a generation already replaced, or already being refreshed.
    pub token_reports_coalesced: Counter,
    /// Tokens refused by the API shortly after the token endpoint issued them.
    pub tokens_rejected_fresh: Counter,
    pub call_logs_delivered: Counter,
    pub call_logs_failed: Counter,
    pub call_logs_deduplicated: Counter,
    pub api_limit_pauses: Counter,
    pub platform_events_published: Counter,
    pub platform_events_failed: Counter,
}

/// Name suffix, help text, and how to read the value.
type OrgSeries = (&'static str, &'static str, fn(&OrgCounters) -> u64);

#[derive(Default, Debug)]
pub struct Metrics {
    pub events_received: Counter,
    /// Events refused because a bounded queue was full (the module keeps call logs spooled).
    pub events_dropped: Counter,
    pub events_malformed: Counter,
    pub socket_connections: Gauge,
    pub pops_received: Counter,
    pub pops_delivered: Counter,
    /// Pops past their time-to-live before any client got them.
    pub pops_expired: Counter,
    /// Pops that did not fit a slow client's queue (they stay pending until acked or expired).
    pub pops_dropped: Counter,
    pub pops_acked: Counter,
    pub ws_clients: Gauge,
    pub ws_auth_failures: Counter,
    pub call_logs_accepted: Counter,
    /// Call logs for orgs without call logging: acknowledged, not written.
    pub call_logs_ignored: Counter,
    pub outbox_pending: Gauge,
    pub outbox_delivered: Gauge,
    pub outbox_failed: Gauge,
    /// Delivery rounds finished (gauges updated after each): flat means the loop is stuck.
    pub outbox_delivery_rounds: Counter,
    /// VoiceCall worker rounds finished, and its requests by outcome.
    pub voicecall_rounds: Counter,
    pub voicecall_steps_delivered: Counter,
    pub voicecall_steps_failed: Counter,
    /// Creates with an unknown outcome whose record a lookup found (and adopted).
    pub voicecall_creates_adopted: Counter,
    pub config_reloads: Counter,
    pub config_reload_failures: Counter,
    orgs: Mutex<BTreeMap<String, Arc<OrgCounters>>>,
    /// The module's own exposition, as it last pushed it over the event socket.
    module_snapshot: Mutex<Option<(Instant, String)>>,
}

/// The module pushes its figures every 10 s; older ones describe a module that is gone.
const MODULE_SNAPSHOT_MAX_AGE: Duration = Duration::from_secs(60);

impl Metrics {
    /// Keeps the module's latest snapshot: only its own `natterbox_module_*` families, so a
    /// module cannot speak for the sidecar's series.
    pub fn set_module_snapshot(&self, text: &str) {
        let mut kept = String::with_capacity(text.len());
        for line in text.lines() {
            let name = line
                .strip_prefix("# HELP ")
                .or_else(|| line.strip_prefix("# TYPE "))
                .unwrap_or(line);
            if name.starts_with("natterbox_module_") {
                kept.push_str(line);
                kept.push('\n');
            }
        }
        *self
            .module_snapshot
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), kept));
    }

    /// Appends the module's snapshot to the exposition, with its age; nothing when none
    /// arrived in the last minute.
    pub fn append_module_snapshot(&self, out: &mut String) {
        let snapshot = self
            .module_snapshot
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let Some((at, text)) = snapshot.as_ref() else {
            return;
        };
        let age = at.elapsed();
        if age > MODULE_SNAPSHOT_MAX_AGE {
            return;
        }
        out.push_str(text);
        let _ = writeln!(
            out,
            "# HELP natterbox_sidecar_module_snapshot_age_seconds Seconds since the module last pushed its figures.\n# TYPE natterbox_sidecar_module_snapshot_age_seconds gauge\nnatterbox_sidecar_module_snapshot_age_seconds {:.1}",
            age.as_secs_f64()
        );
    }

    pub fn org(&self, name: &str) -> Arc<OrgCounters> {
        let mut orgs = self.orgs.lock().unwrap_or_else(|e| e.into_inner());
        orgs.entry(name.to_string()).or_default().clone()
    }

    /// The exposition, plus `extra` lines (token state gauges) appended by the caller.
    pub fn render(&self, extra: &str) -> String {
        let mut out = String::with_capacity(4096);
        let mut one = |name: &str, kind: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        one(
            "natterbox_sidecar_events_received_total",
            "counter",
            "Events read from the module socket.",
            self.events_received.get(),
        );
        one(
            "natterbox_sidecar_events_dropped_total",
            "counter",
            "Events refused because a bounded queue was full.",
            self.events_dropped.get(),
        );
        one(
            "natterbox_sidecar_events_malformed_total",
            "counter",
            "Lines on the module socket that were not a valid message.",
            self.events_malformed.get(),
        );
        one(
            "natterbox_sidecar_socket_connections",
            "gauge",
            "Module connections on the event socket.",
            self.socket_connections.get(),
        );
        one(
            "natterbox_sidecar_pops_received_total",
            "counter",
            "Screen pops received from the module.",
            self.pops_received.get(),
        );
        one(
            "natterbox_sidecar_pops_delivered_total",
            "counter",
            "Screen pop frames sent to agent WebSocket clients.",
            self.pops_delivered.get(),
        );
        one(
            "natterbox_sidecar_pops_expired_total",
            "counter",
            "Screen pops dropped past their time-to-live before any client got them.",
            self.pops_expired.get(),
        );
        one(
            "natterbox_sidecar_pops_dropped_total",
            "counter",
            "Screen pop frames that did not fit a slow client's queue (sent when it catches up, while in time).",
            self.pops_dropped.get(),
        );
        one(
            "natterbox_sidecar_pops_acked_total",
            "counter",
            "Screen pops acknowledged by agent clients.",
            self.pops_acked.get(),
        );
        one(
            "natterbox_sidecar_ws_clients",
            "gauge",
            "Connected agent WebSocket clients.",
            self.ws_clients.get(),
        );
        one(
            "natterbox_sidecar_ws_auth_failures_total",
            "counter",
            "Agent WebSocket connections refused for a missing or unknown token.",
            self.ws_auth_failures.get(),
        );
        one(
            "natterbox_sidecar_call_logs_accepted_total",
            "counter",
            "Call logs committed to the outbox and acknowledged.",
            self.call_logs_accepted.get(),
        );
        one(
            "natterbox_sidecar_call_logs_ignored_total",
            "counter",
            "Call logs for orgs without call logging (acknowledged, not written).",
            self.call_logs_ignored.get(),
        );
        one(
            "natterbox_sidecar_outbox_pending",
            "gauge",
            "Outbox records waiting to be written to Salesforce.",
            self.outbox_pending.get(),
        );
        one(
            "natterbox_sidecar_outbox_delivered",
            "gauge",
            "Outbox records written to Salesforce.",
            self.outbox_delivered.get(),
        );
        one(
            "natterbox_sidecar_outbox_failed",
            "gauge",
            "Outbox records given up on.",
            self.outbox_failed.get(),
        );
        one(
            "natterbox_sidecar_outbox_delivery_rounds_total",
            "counter",
            "Outbox delivery rounds finished (at least one a second while running).",
            self.outbox_delivery_rounds.get(),
        );
        one(
            "natterbox_sidecar_voicecall_rounds_total",
            "counter",
            "VoiceCall delivery rounds finished (at least one a second while running).",
            self.voicecall_rounds.get(),
        );
        one(
            "natterbox_sidecar_voicecall_steps_delivered_total",
            "counter",
            "Telephony Integration API requests Salesforce accepted (create and updates).",
            self.voicecall_steps_delivered.get(),
        );
        one(
            "natterbox_sidecar_voicecall_steps_failed_total",
            "counter",
            "VoiceCall requests given up on (kept in the outbox as failed).",
            self.voicecall_steps_failed.get(),
        );
        one(
            "natterbox_sidecar_voicecall_creates_adopted_total",
            "counter",
            "VoiceCall creates with an unknown outcome found by a lookup and adopted, not sent again.",
            self.voicecall_creates_adopted.get(),
        );
        one(
            "natterbox_sidecar_config_reloads_total",
            "counter",
            "Configuration reloads applied.",
            self.config_reloads.get(),
        );
        one(
            "natterbox_sidecar_config_reload_failures_total",
            "counter",
            "Configuration reloads refused (the old configuration stayed).",
            self.config_reload_failures.get(),
        );

        let orgs = self.orgs.lock().unwrap_or_else(|e| e.into_inner());
        let per_org: [OrgSeries; 11] = [
            (
                "token_requests_total",
                "Requests to the OAuth token endpoint.",
                |c| c.token_requests.get(),
            ),
            (
                "token_refreshes_total",
                "Tokens obtained and handed off.",
                |c| c.token_refreshes.get(),
            ),
            ("token_failures_total", "Failed token requests.", |c| {
                c.token_failures.get()
            }),
            (
                "token_reports_coalesced_total",
                "401 reports that did not cause a refresh of their own.",
                |c| c.token_reports_coalesced.get(),
            ),
            (
                "tokens_rejected_fresh_total",
                "Tokens refused by the API right after they were issued.",
                |c| c.tokens_rejected_fresh.get(),
            ),
            (
                "call_logs_delivered_total",
                "Call logs written to Salesforce as Tasks.",
                |c| c.call_logs_delivered.get(),
            ),
            ("call_logs_failed_total", "Call logs given up on.", |c| {
                c.call_logs_failed.get()
            }),
            (
                "call_logs_deduplicated_total",
                "Call logs found already written (after a crash or retry).",
                |c| c.call_logs_deduplicated.get(),
            ),
            (
                "api_limit_pauses_total",
                "Pauses after REQUEST_LIMIT_EXCEEDED.",
                |c| c.api_limit_pauses.get(),
            ),
            (
                "platform_events_published_total",
                "Screen pops published as platform events.",
                |c| c.platform_events_published.get(),
            ),
            (
                "platform_events_failed_total",
                "Platform event publications that failed.",
                |c| c.platform_events_failed.get(),
            ),
        ];
        for (suffix, help, get) in per_org {
            let name = format!("natterbox_sidecar_org_{suffix}");
            let kind = "counter";
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (org, counters) in orgs.iter() {
                let _ = writeln!(out, "{name}{{org=\"{}\"}} {}", label(org), get(counters));
            }
        }
        out.push_str(extra);
        out
    }
}

/// A label value with the exposition format's escapes.
pub fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_per_org_series() {
        let m = Metrics::default();
        m.pops_expired.add(3);
        m.org("acme").token_failures.inc();
        let text = m.render("extra_line 1\n");
        assert!(text.contains("natterbox_sidecar_pops_expired_total 3\n"));
        assert!(text.contains("natterbox_sidecar_org_token_failures_total{org=\"acme\"} 1\n"));
        assert!(text.contains("# TYPE natterbox_sidecar_outbox_pending gauge\n"));
        assert!(text.ends_with("extra_line 1\n"));
        assert_eq!(label("a\"b\\"), "a\\\"b\\\\");
    }

    #[test]
    fn the_module_snapshot_is_appended_with_only_module_series() {
        let m = Metrics::default();
        let mut body = String::new();
        m.append_module_snapshot(&mut body);
        assert!(body.is_empty(), "nothing before the module pushes");
        m.set_module_snapshot(
            "# HELP natterbox_module_flights Lookups in progress.\n# TYPE natterbox_module_flights gauge\nnatterbox_module_flights 2\nnatterbox_sidecar_events_dropped_total 999\n",
        );
        m.append_module_snapshot(&mut body);
        assert!(body.starts_with("# HELP natterbox_module_flights"));
        assert!(body.contains("\nnatterbox_module_flights 2\n"));
        assert!(
            !body.contains("999"),
            "a module cannot speak for the sidecar: {body}"
        );
        assert!(body.contains("natterbox_sidecar_module_snapshot_age_seconds "));
    }
}
