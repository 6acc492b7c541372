//! One call-time API budget per org across the fleet (docs/fleet.md, "API budget"): every
//! answer's `Sforce-Limit-Info` goes into the org's fleet-wide figure in Redis, and the host
//! judges the org's budget (normal, near, spent: `budget.rs`, the same lines as a single host)
//! by that figure. When a report moves the fleet's figure across a line, the host that made it
//! tells every other on the fleet's channel, so a host that has not asked Salesforce lately
//! slows down (or speeds up) with the rest. Redis down or slow: the answer's own figure, as on
//! a single host.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use natterbox_common::fleet::{self, Broadcast, SharedUsage};
use natterbox_common::salesforce::LimitInfo;
use tokio::sync::watch;

use crate::budget::BudgetState;
use crate::engine::{OrgRuntime, Snapshot};
use crate::fleet_cache::FleetCache;

/// How often the host looks whether its Redis link came (back) up.
const LINK_CHECK_EVERY: Duration = Duration::from_secs(1);

impl OrgRuntime {
    /// Adds `reported` to the fleet's figure after the call has its answer (off the call path:
    /// the call never waits for Redis for this).
    pub(crate) fn share_usage(&self, fleet: &Arc<FleetCache>, reported: LimitInfo) {
        let Some(org) = self.me.upgrade() else { return };
        let fleet = fleet.clone();
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            org.apply_limit(reported);
            return;
        };
        runtime.spawn(async move {
            let deadline = Instant::now() + fleet.settings.redis_timeout;
            match fleet::report_usage(&fleet.link, &fleet.keys, org.name, reported, deadline).await
            {
                Ok(shared) => {
                    org.apply_limit(shared.now);
                    if crosses_a_line(&shared, org.budget.share_percent()) {
                        let sent = Broadcast::Usage {
                            org: org.name.to_string(),
                            used: shared.now.used,
                            max: shared.now.max,
                        }
                        .publish(&fleet.link, &fleet.keys, deadline)
                        .await;
                        if let Err(why) = sent {
                            tracing::warn!(
                                "cannot tell the fleet that org {}'s API usage is {}/{}: {why}",
                                org.name,
                                shared.now.used,
                                shared.now.max
                            );
                        }
                    }
                }
                Err(why) => {
                    tracing::debug!(
                        "org {}: API usage not shared with the fleet ({why}); judged alone",
                        org.name
                    );
                    org.apply_limit(reported);
                }
            }
        });
    }
}

/// Each time the link comes (back) up, takes in every org's fleet-wide figure: a host that
/// starts, or was cut off while the fleet crossed a line, does not wait for its own next answer
/// (or the next crossing) to know where the org stands. One HMGET per org per reconnect.
pub(crate) async fn sync_on_link_up(
    fleet: Arc<FleetCache>,
    snapshot: Arc<ArcSwap<Snapshot>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut synced_at_reconnect = 0;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(LINK_CHECK_EVERY) => {}
            changed = stop.changed() => if changed.is_err() || *stop.borrow() { return },
        }
        let reconnects = fleet.link.stats().reconnects;
        if !fleet.link.is_up() || reconnects == synced_at_reconnect {
            continue;
        }
        let current = snapshot.load_full();
        let mut all = true;
        for org in current.orgs.values() {
            let deadline = Instant::now() + fleet.settings.redis_timeout;
            match fleet::read_usage(&fleet.link, &fleet.keys, org.name, deadline).await {
                Ok(Some(usage)) => org.apply_limit(usage),
                Ok(None) => {}
                Err(_) => {
                    all = false;
                    break;
                }
            }
        }
        if all {
            synced_at_reconnect = reconnects;
        }
    }
}

/// Whether the report moved the fleet's figure from one budget state to another. Redis runs
/// the reports one at a time, so exactly one host sees each crossing.
fn crosses_a_line(shared: &SharedUsage, share_percent: u8) -> bool {
    let before = shared
        .before
        .map_or(BudgetState::Normal, |b| BudgetState::of(b, share_percent));
    before != BudgetState::of(shared.now, share_percent)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(before: Option<(u64, u64)>, now: (u64, u64)) -> SharedUsage {
        let info = |(used, max)| LimitInfo { used, max };
        SharedUsage {
            before: before.map(info),
            now: info(now),
        }
    }

    #[test]
    fn only_a_change_of_state_is_broadcast() {
        assert!(!crosses_a_line(&usage(None, (10, 10_000)), 50));
        assert!(crosses_a_line(&usage(None, (6_000, 10_000)), 50));
        assert!(!crosses_a_line(
            &usage(Some((5_000, 10_000)), (5_001, 10_000)),
            50
        ));
        assert!(crosses_a_line(
            &usage(Some((4_000, 10_000)), (4_600, 10_000)),
            50
        ));
        assert!(crosses_a_line(
            &usage(Some((6_000, 10_000)), (100, 10_000)),
            50
        ));
    }
}
