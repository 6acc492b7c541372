//! The call-time API budget: each org lets call-time reads spend a share of its daily API
//! allowance (`call-time-api-share-percent`, default 50). The org's usage comes from every
//! answer (`Sforce-Limit-Info`, or SOAP's `LimitInfoHeader`). Near the share, cached answers are
//! served past their TTL without being revalidated; past it, any answer still in the cache is
//! served, however old, rather than spending the org's last calls. A caller whose number is not
//! cached still asks Salesforce: an old answer beats a new one, but any answer beats none, and
//! the org's hard limit is guarded by the breaker.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use natterbox_common::salesforce::LimitInfo;

/// Near the share from this fraction of it.
const NEAR_FRACTION_PERCENT: u64 = 90;
/// While the budget is spent, one revalidation per org this often still goes out: usage is a
/// rolling 24-hour count, and only an answer says it has fallen again.
pub const SPENT_PROBE_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetState {
    /// Usage unknown or under the near mark: cache as configured.
    Normal,
    /// Within 10 % of the share: stale answers are served without revalidation.
    Near,
    /// At or past the share: any cached answer is served, however old.
    Spent,
}

impl BudgetState {
    pub fn as_str(self) -> &'static str {
        match self {
            BudgetState::Normal => "normal",
            BudgetState::Near => "near",
            BudgetState::Spent => "spent",
        }
    }

    fn from_u8(v: u8) -> BudgetState {
        match v {
            1 => BudgetState::Near,
            2 => BudgetState::Spent,
            _ => BudgetState::Normal,
        }
    }

    fn to_u8(self) -> u8 {
        match self {
            BudgetState::Normal => 0,
            BudgetState::Near => 1,
            BudgetState::Spent => 2,
        }
    }

    /// What `limit` means for calls under a share of `share_percent`.
    pub fn of(limit: LimitInfo, share_percent: u8) -> BudgetState {
        if limit.max == 0 {
            return BudgetState::Normal;
        }
        // used/max against share/100, in integers: used*100 >= share*max.
        let used = u128::from(limit.used) * 100 * 100;
        let line = u128::from(limit.max) * u128::from(share_percent) * 100;
        if used >= line {
            BudgetState::Spent
        } else if used >= line * u128::from(NEAR_FRACTION_PERCENT) / 100 {
            BudgetState::Near
        } else {
            BudgetState::Normal
        }
    }
}

/// A change of an org's budget state, for the log and the CUSTOM event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetChange {
    pub org: &'static str,
    pub from: BudgetState,
    pub to: BudgetState,
    pub used: u64,
    pub max: u64,
    pub share_percent: u8,
}

/// One org's budget: the state (read by the stale and miss paths, never by a fresh hit) and
/// when the last revalidation went out while spent.
pub struct CallTimeBudget {
    share_percent: u8,
    state: AtomicU8,
    epoch: Instant,
    last_probe_ms: AtomicU64,
}

impl CallTimeBudget {
    pub fn new(share_percent: u8) -> CallTimeBudget {
        CallTimeBudget {
            share_percent,
            state: AtomicU8::new(BudgetState::Normal.to_u8()),
            epoch: Instant::now(),
            last_probe_ms: AtomicU64::new(0),
        }
    }

    pub fn share_percent(&self) -> u8 {
        self.share_percent
    }

    pub fn state(&self) -> BudgetState {
        BudgetState::from_u8(self.state.load(Ordering::Relaxed))
    }

    /// Takes in the usage an answer reported; the change, when the state changed.
    pub fn observe(&self, org: &'static str, limit: LimitInfo) -> Option<BudgetChange> {
        let to = BudgetState::of(limit, self.share_percent);
        let from = BudgetState::from_u8(self.state.swap(to.to_u8(), Ordering::Relaxed));
        (from != to).then_some(BudgetChange {
            org,
            from,
            to,
            used: limit.used,
            max: limit.max,
            share_percent: self.share_percent,
        })
    }

    /// Whether a stale answer may be revalidated now: always when normal, never when near, and
    /// once per `SPENT_PROBE_EVERY` when spent.
    pub fn may_revalidate(&self, now: Instant) -> bool {
        self.may_revalidate_at(now.saturating_duration_since(self.epoch).as_millis() as u64)
    }

    fn may_revalidate_at(&self, now_ms: u64) -> bool {
        match self.state() {
            BudgetState::Normal => true,
            BudgetState::Near => false,
            BudgetState::Spent => {
                let last = self.last_probe_ms.load(Ordering::Relaxed);
                let every = SPENT_PROBE_EVERY.as_millis() as u64;
                (last == 0 || now_ms >= last + every)
                    && self
                        .last_probe_ms
                        .compare_exchange(last, now_ms.max(1), Ordering::Relaxed, Ordering::Relaxed)
                        .is_ok()
            }
        }
    }
}

type BudgetCallback = Box<dyn Fn(&BudgetChange) + Send + Sync>;

/// Who hears of budget changes (the module fires a CUSTOM event); set once, by the host.
#[derive(Default)]
pub struct BudgetListener(OnceLock<BudgetCallback>);

impl BudgetListener {
    /// False when a listener was already set.
    pub fn set(&self, callback: BudgetCallback) -> bool {
        self.0.set(callback).is_ok()
    }

    pub fn notify(&self, change: &BudgetChange) {
        if let Some(callback) = self.0.get() {
            callback(change);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(used: u64, max: u64) -> LimitInfo {
        LimitInfo { used, max }
    }

    #[test]
    fn the_state_follows_usage_against_the_share() {
        assert_eq!(BudgetState::of(limit(0, 0), 50), BudgetState::Normal);
        assert_eq!(
            BudgetState::of(limit(4_499, 10_000), 50),
            BudgetState::Normal
        );
        assert_eq!(BudgetState::of(limit(4_500, 10_000), 50), BudgetState::Near);
        assert_eq!(BudgetState::of(limit(4_999, 10_000), 50), BudgetState::Near);
        assert_eq!(
            BudgetState::of(limit(5_000, 10_000), 50),
            BudgetState::Spent
        );
        assert_eq!(
            BudgetState::of(limit(15_000, 15_000), 100),
            BudgetState::Spent
        );
        assert_eq!(
            BudgetState::of(limit(13_499, 15_000), 100),
            BudgetState::Normal
        );
        assert_eq!(
            BudgetState::of(limit(u64::MAX, u64::MAX), 100),
            BudgetState::Spent
        );
    }

    #[test]
    fn changes_are_reported_once() {
        let budget = CallTimeBudget::new(50);
        assert_eq!(budget.observe("acme", limit(10, 10_000)), None);
        let change = budget.observe("acme", limit(6_000, 10_000)).unwrap();
        assert_eq!(
            (change.from, change.to, change.used, change.max),
            (BudgetState::Normal, BudgetState::Spent, 6_000, 10_000)
        );
        assert_eq!(budget.observe("acme", limit(6_001, 10_000)), None);
        let back = budget.observe("acme", limit(100, 10_000)).unwrap();
        assert_eq!(
            (back.from, back.to),
            (BudgetState::Spent, BudgetState::Normal)
        );
    }

    #[test]
    fn revalidation_stops_near_and_probes_rarely_when_spent() {
        let budget = CallTimeBudget::new(50);
        assert!(budget.may_revalidate_at(5));
        budget.observe("acme", limit(4_800, 10_000));
        assert!(!budget.may_revalidate_at(10));
        budget.observe("acme", limit(5_000, 10_000));
        assert!(budget.may_revalidate_at(1_000));
        assert!(!budget.may_revalidate_at(2_000));
        let every = SPENT_PROBE_EVERY.as_millis() as u64;
        assert!(!budget.may_revalidate_at(1_000 + every - 1));
        assert!(budget.may_revalidate_at(1_000 + every));
    }
}
