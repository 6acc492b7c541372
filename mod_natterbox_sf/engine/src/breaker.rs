//! Per-org circuit breaker: when Salesforce says the org is over its API limits, or keeps
//! failing, calls stop asking for a while (doubling each time) instead of hammering it; one probe
//! request decides when to resume.

use std::sync::Mutex;
use std::time::{Duration, Instant};

const FAILURES_TO_OPEN: u32 = 5;
const FAILURE_BACKOFF: (Duration, Duration) = (Duration::from_secs(2), Duration::from_secs(60));
const LIMIT_BACKOFF: (Duration, Duration) = (Duration::from_secs(30), Duration::from_secs(900));

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// `REQUEST_LIMIT_EXCEEDED`.
    LimitExceeded,
    /// 5xx, transport errors, timeouts, garbage bodies.
    Unhealthy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Allowed,
    /// The breaker is half open: this request decides.
    Probe,
    Rejected(Failure),
}

#[derive(Debug, Default)]
struct State {
    consecutive_failures: u32,
    open: Option<(Instant, Failure)>,
    backoff: Duration,
    probing: bool,
}

#[derive(Debug, Default)]
pub struct Breaker {
    state: Mutex<State>,
}

/// For `sf status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BreakerView {
    Closed,
    Open {
        reason: Failure,
        remaining: Duration,
    },
    HalfOpen,
}

impl Breaker {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn admit(&self, now: Instant) -> Admission {
        let mut s = self.state();
        match s.open {
            None => Admission::Allowed,
            Some((until, reason)) if now < until || s.probing => Admission::Rejected(reason),
            Some(_) => {
                s.probing = true;
                Admission::Probe
            }
        }
    }

    pub fn on_success(&self) {
        let mut s = self.state();
        *s = State::default();
    }

    /// A probe that ended without an answer either way (e.g. the caller's deadline).
    pub fn on_inconclusive(&self) {
        self.state().probing = false;
    }

    pub fn on_failure(&self, failure: Failure, now: Instant) {
        let mut s = self.state();
        s.consecutive_failures += 1;
        let (first, cap) = match failure {
            Failure::LimitExceeded => LIMIT_BACKOFF,
            Failure::Unhealthy => FAILURE_BACKOFF,
        };
        let opens = failure == Failure::LimitExceeded
            || s.probing
            || s.open.is_some()
            || s.consecutive_failures >= FAILURES_TO_OPEN;
        if !opens {
            return;
        }
        s.backoff = if s.open.is_some() || s.probing {
            (s.backoff * 2).clamp(first, cap)
        } else {
            first
        };
        s.open = Some((now + s.backoff, failure));
        s.probing = false;
    }

    pub fn view(&self, now: Instant) -> BreakerView {
        let s = self.state();
        match s.open {
            None => BreakerView::Closed,
            Some(_) if s.probing => BreakerView::HalfOpen,
            Some((until, reason)) => BreakerView::Open {
                reason,
                remaining: until.saturating_duration_since(now),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_exceeded_opens_at_once_and_backs_off() {
        let b = Breaker::default();
        let t0 = Instant::now();
        b.on_failure(Failure::LimitExceeded, t0);
        assert_eq!(b.admit(t0), Admission::Rejected(Failure::LimitExceeded));
        let later = t0 + LIMIT_BACKOFF.0;
        assert_eq!(b.admit(later), Admission::Probe);
        assert_eq!(b.admit(later), Admission::Rejected(Failure::LimitExceeded));
        b.on_failure(Failure::LimitExceeded, later);
        // Doubled.
        assert!(matches!(
            b.admit(later + LIMIT_BACKOFF.0),
            Admission::Rejected(_)
        ));
        assert_eq!(b.admit(later + 2 * LIMIT_BACKOFF.0), Admission::Probe);
        b.on_success();
        assert_eq!(b.admit(later), Admission::Allowed);
        assert_eq!(b.view(later), BreakerView::Closed);
    }

    #[test]
    fn a_few_failures_do_not_open_it_but_a_run_does() {
        let b = Breaker::default();
        let t0 = Instant::now();
        for _ in 0..FAILURES_TO_OPEN - 1 {
            b.on_failure(Failure::Unhealthy, t0);
        }
        assert_eq!(b.admit(t0), Admission::Allowed);
        b.on_failure(Failure::Unhealthy, t0);
        assert_eq!(b.admit(t0), Admission::Rejected(Failure::Unhealthy));
        assert!(matches!(b.view(t0), BreakerView::Open { .. }));
    }
}
