//! How the engine takes part in the fleet: the lookup path through Redis, what it does with
//! what other hosts broadcast, and the invalidation hook for Change Data Capture.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use natterbox_common::fleet::{self, Broadcast, Invalidation, LinkChange, Skipped};
use natterbox_common::invalidation::Extent;
use natterbox_common::salesforce::LimitInfo;

use crate::breaker::Failure;
use crate::cache::LookupCache;
use crate::engine::{Engine, FlightResult, Lookup, Snapshot};
use crate::fleet_cache::{invalidate_local, FleetCache, Lease};
use crate::outcome::LookupStatus;
use crate::query::QueryKey;
use crate::query_invalidation::invalidate_queries;

impl Lookup<'_> {
    /// In-process miss: Redis, then (holding the fleet's lease on the number) Salesforce.
    /// Whatever Redis does, the lookup ends by its deadline with Salesforce's answer or
    /// Salesforce's failure, never with Redis's.
    pub(crate) async fn through_fleet(
        &self,
        fleet: &Arc<FleetCache>,
        fingerprint: u64,
    ) -> FlightResult {
        let profile = &self.org.config.profiles[self.profile_index].name;
        let key = fleet.answer_key(self.org.name, profile, fingerprint, self.caller);
        let deadline = self.times.deadline;
        if let Some(outcome) = fleet.read(&key, self.names, deadline).await {
            return Ok(outcome);
        }
        let lease = match fleet.lease(&key, deadline).await {
            Lease::Held => match fleet.wait_for_answer(&key, self.names, deadline).await {
                Ok(outcome) => return Ok(outcome),
                Err(false) => {
                    return Err((
                        LookupStatus::Timeout,
                        "deadline passed while another host asked Salesforce".into(),
                    ))
                }
                // The holder gave up, or Redis stopped answering: ask without the lease.
                Err(true) => None,
            },
            Lease::Won(token) => Some(token),
            Lease::Unknown => None,
        };
        let result = self.fetch().await;
        // Redis hears the answer after the call has it: the flight ends now.
        let (fleet, org) = (fleet.clone(), self.org.name);
        match &result {
            Ok(outcome) => {
                let outcome = outcome.clone();
                tokio::spawn(async move { fleet.write(key, org, &outcome, lease).await });
            }
            Err((status, detail)) => {
                let limit_exceeded =
                    *status == LookupStatus::Throttled && detail.contains("REQUEST_LIMIT_EXCEEDED");
                tokio::spawn(async move {
                    if let Some(token) = lease {
                        fleet.release(&key, token).await;
                    }
                    if limit_exceeded {
                        let deadline = Instant::now() + fleet.settings.redis_timeout;
                        let sent = Broadcast::LimitExceeded {
                            org: org.to_string(),
                        }
                        .publish(&fleet.link, &fleet.keys, deadline)
                        .await;
                        if let Err(why) = sent {
                            tracing::warn!(
                                "cannot tell the fleet that org {org} is over its API limit: {why}"
                            );
                        }
                    }
                });
            }
        }
        result
    }
}

/// Hears the fleet's channel: invalidations drop answers from the in-process caches (lookups'
/// and named queries'); an org over its API limit on any host opens the org's breaker here too;
/// an org's fleet-wide usage crossing a budget line sets its budget here too.
pub(crate) fn listen(
    fleet: &Arc<FleetCache>,
    snapshot: Arc<ArcSwap<Snapshot>>,
    cache: Arc<LookupCache>,
    query_cache: Arc<LookupCache<QueryKey>>,
) {
    let weak = Arc::downgrade(fleet);
    fleet::subscribe(&fleet.link, &fleet.keys, move |broadcast| {
        let Some(fleet) = weak.upgrade() else { return };
        let snapshot = snapshot.load();
        match broadcast {
            Broadcast::Invalidate(Invalidation {
                org,
                object,
                ids,
                extent,
            }) => {
                fleet
                    .counters
                    .invalidations_heard
                    .fetch_add(1, Ordering::Relaxed);
                let Some(org) = snapshot.orgs.get(&org) else {
                    return;
                };
                let scopes: Vec<_> = org.scopes().collect();
                let removed = invalidate_local(&cache, &scopes, &object, &ids, extent)
                    + invalidate_queries(&query_cache, org, &object, &ids);
                fleet
                    .counters
                    .invalidated_entries
                    .fetch_add(removed as u64, Ordering::Relaxed);
                tracing::debug!(
                    "invalidated {removed} answer(s) of {object} records in org {}",
                    org.name
                );
            }
            Broadcast::LimitExceeded { org } => {
                fleet
                    .counters
                    .limit_broadcasts_heard
                    .fetch_add(1, Ordering::Relaxed);
                if let Some(org) = snapshot.orgs.get(&org) {
                    org.breaker
                        .on_failure(Failure::LimitExceeded, Instant::now());
                }
            }
            Broadcast::Usage { org, used, max } => {
                fleet
                    .counters
                    .usage_broadcasts_heard
                    .fetch_add(1, Ordering::Relaxed);
                if let Some(org) = snapshot.orgs.get(&org) {
                    org.apply_limit(LimitInfo { used, max });
                }
            }
        }
    });
}

impl Engine {
    /// The invalidation hook (for Change Data Capture): drops the answers naming these records
    /// from this host's cache, from Redis, and, through the fleet's channel, from every other
    /// host's cache; and the named queries' answers the change can affect (`query_invalidation`)
    /// here and, through the channel, on every other host. Without a fleet, only this host's
    /// caches. Returns the number of answers removed here and in Redis.
    pub async fn invalidate(
        &self,
        org: &str,
        object: &str,
        ids: &[String],
        extent: Extent,
    ) -> Result<usize, String> {
        let snapshot = self.snapshot();
        let Some(org_runtime) = snapshot.orgs.get(org) else {
            return Err(format!("no org \"{org}\" in the config"));
        };
        let scopes: Vec<_> = org_runtime.scopes().collect();
        let mut removed = invalidate_local(self.cache(), &scopes, object, ids, extent)
            + invalidate_queries(&self.query_cache, org_runtime, object, ids);
        if let Some(fleet) = self.fleet() {
            let deadline = Instant::now() + fleet.settings.redis_timeout * 2;
            let invalidation = Invalidation {
                org: org.to_string(),
                object: object.to_string(),
                ids: ids.to_vec(),
                extent,
            };
            removed += fleet::invalidate(&fleet.link, &fleet.keys, invalidation, deadline)
                .await
                .map_err(|why: Skipped| format!("removed here, but not from the fleet: {why}"))?
                as usize;
        }
        Ok(removed)
    }

    /// Calls `observer` whenever the Redis link goes down or comes back (the module fires a
    /// CUSTOM event). Nothing happens without a fleet.
    pub fn on_redis_change(&self, observer: impl Fn(&LinkChange) + Send + Sync + 'static) {
        if let Some(fleet) = self.fleet() {
            fleet.link.observe(observer);
        }
    }

    /// Blocks a thread that is not the runtime's until `invalidate` is done or `wait` passes.
    pub fn invalidate_blocking(
        &self,
        org: &str,
        object: &str,
        ids: &[String],
        extent: Extent,
        wait: Duration,
    ) -> Result<usize, String> {
        let Some(runtime) = self.runtime_handle() else {
            return Err("module is stopping".into());
        };
        runtime.block_on(async {
            tokio::time::timeout(wait, self.invalidate(org, object, ids, extent))
                .await
                .unwrap_or_else(|_| Err("no answer in time".into()))
        })
    }
}
