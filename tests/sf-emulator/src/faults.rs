//! Fault injection rules, each scoped by path prefix.

use crate::util::random_unit;
use serde::{Deserialize, Serialize};
use std::sync::Mutex;
use std::time::Duration;

/// One rule (JSON body of `POST /__emulator/faults`). Every knob is optional.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FaultRule {
    /// Assigned by the emulator.
    #[serde(default)]
    pub id: u64,
    /// Applies to requests whose path starts with this ("" = every path except /__emulator/).
    #[serde(default)]
    pub path_prefix: String,
    #[serde(default)]
    pub latency_ms: u64,
    /// Extra random delay in [0, jitter_ms].
    #[serde(default)]
    pub jitter_ms: u64,
    /// Answer with this HTTP status instead (body: Salesforce's error array for it).
    #[serde(default)]
    pub status: Option<u16>,
    /// Probability of `status` (default 1 when `status` is set).
    #[serde(default)]
    pub status_rate: Option<f64>,
    /// Probability of resetting the connection (TCP RST, no response).
    #[serde(default)]
    pub reset_rate: f64,
    /// Probability of sending only half the body, then closing.
    #[serde(default)]
    pub truncate_rate: f64,
    /// Probability of replacing the body with non-JSON garbage (status and headers kept).
    #[serde(default)]
    pub garbage_rate: f64,
    /// Tokens issued by matching requests are already dead.
    #[serde(default)]
    pub dead_tokens: bool,
    /// Apply to this many matching requests, then stop (default: forever).
    #[serde(default)]
    pub times: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disruption {
    None,
    Status(u16),
    Reset,
    Truncate,
    Garbage,
}

#[derive(Debug, Clone)]
pub struct FaultPlan {
    pub delay: Duration,
    pub disruption: Disruption,
    pub dead_tokens: bool,
}

#[derive(Default)]
pub struct Faults {
    rules: Mutex<Vec<FaultRule>>,
    next_id: Mutex<u64>,
}

impl Faults {
    pub fn add(&self, mut rule: FaultRule) -> u64 {
        let id = {
            let mut n = self.next_id.lock().unwrap_or_else(|e| e.into_inner());
            *n += 1;
            *n
        };
        rule.id = id;
        self.rules
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(rule);
        id
    }

    pub fn list(&self) -> Vec<FaultRule> {
        self.rules.lock().map(|r| r.clone()).unwrap_or_default()
    }

    pub fn remove(&self, id: u64) -> bool {
        let mut r = self.rules.lock().unwrap_or_else(|e| e.into_inner());
        let before = r.len();
        r.retain(|x| x.id != id);
        r.len() != before
    }

    pub fn clear(&self) {
        self.rules.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// Decides what happens to one request on `path`.
    pub fn plan(&self, path: &str) -> FaultPlan {
        let mut plan = FaultPlan {
            delay: Duration::ZERO,
            disruption: Disruption::None,
            dead_tokens: false,
        };
        if path.starts_with("/__emulator") {
            return plan;
        }
        let mut rules = self.rules.lock().unwrap_or_else(|e| e.into_inner());
        for rule in rules.iter_mut() {
            if !path.starts_with(&rule.path_prefix) || rule.times == Some(0) {
                continue;
            }
            if let Some(t) = rule.times.as_mut() {
                *t -= 1;
            }
            let jitter = if rule.jitter_ms > 0 {
                (random_unit() * (rule.jitter_ms + 1) as f64) as u64
            } else {
                0
            };
            plan.delay += Duration::from_millis(rule.latency_ms + jitter);
            plan.dead_tokens |= rule.dead_tokens;
            if plan.disruption != Disruption::None {
                continue;
            }
            let hit = |rate: f64| rate > 0.0 && random_unit() < rate;
            plan.disruption = match rule.status {
                Some(s) if hit(rule.status_rate.unwrap_or(1.0)) => Disruption::Status(s),
                _ if hit(rule.reset_rate) => Disruption::Reset,
                _ if hit(rule.truncate_rate) => Disruption::Truncate,
                _ if hit(rule.garbage_rate) => Disruption::Garbage,
                _ => Disruption::None,
            };
        }
        plan
    }
}

/// The body Salesforce sends with an injected status.
pub fn status_error(status: u16) -> (String, String) {
    let (code, msg) = match status {
        400 => ("BAD_REQUEST", "Bad request"),
        401 => ("INVALID_SESSION_ID", "Session expired or invalid"),
        403 => ("REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded."),
        404 => ("NOT_FOUND", "The requested resource does not exist"),
        500 => ("UNKNOWN_EXCEPTION", "An unexpected error occurred. Please include this ErrorId if you contact support: 1234567890-12345 (-1234567890)"),
        502 => ("BAD_GATEWAY", "Bad gateway"),
        503 => ("SERVER_UNAVAILABLE", "Server unavailable; please try again later"),
        _ => ("UNKNOWN_EXCEPTION", "Injected fault"),
    };
    (code.into(), msg.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scoped_and_counted() {
        let f = Faults::default();
        f.add(FaultRule {
            path_prefix: "/services/data".into(),
            status: Some(503),
            times: Some(1),
            ..Default::default()
        });
        assert_eq!(
            f.plan("/services/oauth2/token").disruption,
            Disruption::None
        );
        assert_eq!(
            f.plan("/services/data/v66.0/query").disruption,
            Disruption::Status(503)
        );
        assert_eq!(
            f.plan("/services/data/v66.0/query").disruption,
            Disruption::None
        );
    }
}
