//! Repeated warnings, rate-limited per org and cause: when Salesforce or the host fails, every
//! call fails the same way, and one line per call buried FreeSWITCH's log (8 654 lines in under
//! a minute). A few lines per window go out; the rest are counted, and the next line that goes
//! out for the same org and cause says how many were left out.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Lines per org and cause per window.
pub const LINES_PER_WINDOW: u32 = 5;
pub const WINDOW: Duration = Duration::from_secs(10);

#[derive(Default)]
pub struct WarningLimiter {
    /// (org, cause) → its window. Orgs are interned names and causes static texts, so a key
    /// costs no allocation.
    windows: Mutex<HashMap<(&'static str, &'static str), Window>>,
}

struct Window {
    started: Instant,
    lines: u32,
    suppressed: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Log it; `suppressed` lines of this org and cause were left out since the last one.
    Log {
        suppressed: u64,
    },
    Suppress,
}

impl WarningLimiter {
    pub fn check(&self, org: &'static str, cause: &'static str, now: Instant) -> Verdict {
        let mut windows = self.windows.lock();
        let window = windows.entry((org, cause)).or_insert(Window {
            started: now,
            lines: 0,
            suppressed: 0,
        });
        if now.saturating_duration_since(window.started) >= WINDOW {
            window.started = now;
            window.lines = 0;
        }
        if window.lines < LINES_PER_WINDOW {
            window.lines += 1;
            let suppressed = std::mem::take(&mut window.suppressed);
            Verdict::Log { suppressed }
        } else {
            window.suppressed += 1;
            Verdict::Suppress
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_few_lines_per_window_then_a_count_of_the_rest() {
        let limiter = WarningLimiter::default();
        let t0 = Instant::now();
        for _ in 0..LINES_PER_WINDOW {
            assert_eq!(
                limiter.check("acme", "timeout", t0),
                Verdict::Log { suppressed: 0 }
            );
        }
        for _ in 0..1000 {
            assert_eq!(limiter.check("acme", "timeout", t0), Verdict::Suppress);
        }
        // Another cause, another org: their own budgets.
        assert_eq!(
            limiter.check("acme", "error", t0),
            Verdict::Log { suppressed: 0 }
        );
        assert_eq!(
            limiter.check("globex", "timeout", t0),
            Verdict::Log { suppressed: 0 }
        );
        let later = t0 + WINDOW;
        assert_eq!(
            limiter.check("acme", "timeout", later),
            Verdict::Log { suppressed: 1000 }
        );
        assert_eq!(
            limiter.check("acme", "timeout", later),
            Verdict::Log { suppressed: 0 }
        );
    }
}
