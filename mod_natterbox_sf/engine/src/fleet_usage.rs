//! One call-time API budget per org across the fleet (docs/fleet.md, "API budget"): every
//! answer's `Sforce-Limit-Info` goes into the org's fleet-wide figure in Redis, and the host
//! judges the org's budget (normal, near, spent: `budget.rs`, the same lines as a single host)
//! by that figure. When a report moves the fleet's figure across a line, the host that made it
//! tells every other on the fleet's channel, so a host that has not asked Salesforce lately
//! slows down (or speeds up) with the rest. Redis down or slow: the answer's own figure, as on
//! a single host.

use std::sync::Arc;
use std::time::Instant;

use natterbox_common::fleet::{self, Broadcast, SharedUsage};
use natterbox_common::salesforce::LimitInfo;

use crate::budget::BudgetState;
use crate::engine::OrgRuntime;
use crate::fleet_cache::FleetCache;

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
