//! Exponential back-off with jitter, and wall-clock helpers.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `base * 2^(attempt-1)`, capped, then a random point in its upper half: retries from many
/// hosts spread out instead of arriving together, and never come sooner than half the step.
pub fn delay(attempt: u32, base: Duration, cap: Duration) -> Duration {
    let exp = attempt.saturating_sub(1).min(20);
    let step = base.saturating_mul(1u32 << exp).min(cap);
    let half = step / 2;
    let jitter_ms = random_u64() % (half.as_millis() as u64 + 1);
    half + Duration::from_millis(jitter_ms)
}

/// A random number for jitter (not for anything secret): std's per-process random hash keys
/// mixed with a counter.
fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.finish()
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_within_bounds() {
        let base = Duration::from_secs(1);
        let cap = Duration::from_secs(300);
        for attempt in 1..40 {
            let d = delay(attempt, base, cap);
            let step = base.saturating_mul(1 << (attempt - 1).min(20)).min(cap);
            assert!(d >= step / 2 && d <= step, "attempt {attempt}: {d:?}");
        }
        assert!(delay(30, base, cap) <= cap);
        let spread: std::collections::HashSet<_> = (0..20).map(|_| delay(8, base, cap)).collect();
        assert!(spread.len() > 1, "jitter varies");
    }
}
