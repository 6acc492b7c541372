//! The module's own metrics: `sf metrics` in the host shim, and the snapshot it pushes to the
//! sidecar over the event socket.

mod support;

use std::time::{Duration, Instant};

use natterbox_common::wire::Message;
use support::fixture::{Fixture, Options};

/// The value of the series `name_and_labels` in an exposition text.
fn value(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

#[test]
fn sf_metrics_counts_lookups_by_status_and_source_and_the_sidecar_gets_them() {
    let mut f = Fixture::start(Options::default());
    assert_eq!(
        f.lookup("a", "+14155550123", "")["sf_lookup_source"],
        "salesforce"
    );
    assert_eq!(
        f.lookup("b", "(415) 555-0123", "")["sf_lookup_source"],
        "cache"
    );
    assert_eq!(
        f.lookup("c", "anonymous", "")["sf_lookup_status"],
        "invalid_number"
    );
    let text = support::shim::unescape(&f.shim.api("metrics"));
    let lookups = |status: &str, source: &str| {
        value(
            &text,
            &format!("natterbox_module_lookups_total{{status=\"{status}\",source=\"{source}\"}}"),
        )
    };
    assert_eq!(lookups("found", "salesforce"), Some(1.0), "{text}");
    assert_eq!(lookups("found", "cache"), Some(1.0));
    assert_eq!(lookups("invalid_number", "none"), Some(1.0));
    assert_eq!(lookups("timeout", "none"), Some(0.0));
    assert_eq!(
        value(&text, "natterbox_module_lookup_duration_seconds_count"),
        Some(3.0)
    );
    assert_eq!(
        value(
            &text,
            "natterbox_module_lookup_duration_seconds_bucket{le=\"+Inf\"}"
        ),
        Some(3.0)
    );
    assert!(text.contains("# TYPE natterbox_module_lookup_duration_seconds histogram\n"));
    assert_eq!(value(&text, "natterbox_module_cache_entries"), Some(1.0));
    assert_eq!(value(&text, "natterbox_module_cache_hits_total"), Some(1.0));
    assert_eq!(value(&text, "natterbox_module_cache_hit_ratio"), Some(0.5));
    assert_eq!(
        value(&text, "natterbox_module_breaker_state{org=\"acme\"}"),
        Some(0.0)
    );
    let used = value(&text, "natterbox_module_api_requests_used{org=\"acme\"}");
    let max = value(&text, "natterbox_module_api_requests_max{org=\"acme\"}");
    assert!(
        matches!((used, max), (Some(u), Some(m)) if u >= 1.0 && m > u),
        "{used:?} {max:?}"
    );
    assert_eq!(
        value(
            &text,
            "natterbox_module_salesforce_requests_total{org=\"acme\"}"
        ),
        Some(1.0)
    );
    assert_eq!(value(&text, "natterbox_module_spool_depth"), Some(0.0));
    assert_eq!(
        value(&text, "natterbox_module_sidecar_connected"),
        Some(1.0)
    );
    // Every sample line belongs to a family announced with HELP and TYPE.
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let name = line.split(['{', ' ']).next().unwrap();
        let family = name
            .strip_suffix("_bucket")
            .or_else(|| name.strip_suffix("_sum"))
            .or_else(|| name.strip_suffix("_count"))
            .filter(|f| text.contains(&format!("# TYPE {f} histogram")))
            .unwrap_or(name);
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "{line} has no TYPE"
        );
    }

    // The module pushes the same figures to the sidecar (its first push a second after load).
    let deadline = Instant::now() + Duration::from_secs(15);
    let pushed = loop {
        let pushed = f.messages().into_iter().rev().find_map(|m| match m {
            Message::ModuleMetrics { text } => Some(text),
            _ => None,
        });
        match pushed {
            Some(text) if text.contains("status=\"invalid_number\",source=\"none\"} 1") => {
                break text
            }
            _ => {
                assert!(
                    Instant::now() < deadline,
                    "no metrics snapshot with the lookups: {pushed:?}"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    };
    assert!(pushed.contains("natterbox_module_lookups_total{status=\"found\",source=\"cache\"} 1"));
}
