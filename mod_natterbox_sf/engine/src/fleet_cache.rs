//! The second-level cache shared by the fleet through Redis (docs/fleet.md): after an
//! in-process miss and before Salesforce. Its reads and writes run under the link's deadline
//! inside the call's; Redis slow or down means the lookup goes on to Salesforce as if there were
//! no fleet. A fleet-wide lease per answer key lets one host ask Salesforce while the others
//! wait for its answer in Redis.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use natterbox_common::config::FleetSettings;
use natterbox_common::fleet::{self, redis, Keys, RedisLink, Skipped};
use natterbox_common::invalidation::Extent;
use natterbox_common::phone::CallerNumber;

use crate::cache::{LookupCache, ScopeId};
use crate::outcome::{LookupStatus, Outcome, PackedVars, VarNames};

/// How often a host that lost the lease looks for the leader's answer.
const LEASE_POLL: Duration = Duration::from_millis(5);

#[derive(Default)]
pub struct FleetCounters {
    pub l2_hits: AtomicU64,
    pub l2_misses: AtomicU64,
    pub l2_writes: AtomicU64,
    pub leases_won: AtomicU64,
    /// Lookups that waited for another host's answer (and found it).
    pub lease_waits_answered: AtomicU64,
    /// Lookups that skipped Redis (down, slow, an error) and went on to Salesforce.
    pub skipped: AtomicU64,
    pub invalidations_heard: AtomicU64,
    pub invalidated_entries: AtomicU64,
    pub limit_broadcasts_heard: AtomicU64,
    pub usage_broadcasts_heard: AtomicU64,
}

pub struct FleetCache {
    pub link: Arc<RedisLink>,
    pub keys: Keys,
    pub settings: FleetSettings,
    pub counters: FleetCounters,
    /// Lease tokens: each holder's own, so only it releases the lease.
    next_token: AtomicU64,
    host_tag: u64,
}

/// What the lease said.
pub enum Lease {
    /// This host asks Salesforce; the token releases the lease.
    Won(String),
    /// Another host is asking: wait for its answer.
    Held,
    /// Redis did not say (down, slow): ask Salesforce.
    Unknown,
}

impl FleetCache {
    pub fn start(
        settings: &FleetSettings,
        runtime: tokio::runtime::Handle,
    ) -> Result<FleetCache, String> {
        let link = RedisLink::start(settings, runtime)?;
        Ok(FleetCache {
            link,
            keys: Keys::new(&settings.key_prefix),
            settings: settings.clone(),
            counters: FleetCounters::default(),
            next_token: AtomicU64::new(1),
            host_tag: host_tag(),
        })
    }

    /// The Redis key of one answer: org, profile (by name and by definition) and number.
    pub fn answer_key(
        &self,
        org: &str,
        profile: &str,
        fingerprint: u64,
        caller: &CallerNumber,
    ) -> String {
        self.keys.answer(org, profile, fingerprint, caller.key())
    }

    fn skipped(&self, why: &Skipped) {
        self.counters.skipped.fetch_add(1, Ordering::Relaxed);
        tracing::debug!("lookup goes on without redis: {why}");
    }

    /// The answer in Redis, if any. `None` on a miss and whenever Redis cannot tell in time.
    pub async fn read(
        &self,
        key: &str,
        names: &Arc<VarNames>,
        deadline: Instant,
    ) -> Option<Arc<Outcome>> {
        let key = key.to_string();
        let read = self
            .link
            .run(deadline, |mut c| async move {
                redis::cmd("GET")
                    .arg(key)
                    .query_async::<Option<Vec<u8>>>(&mut c)
                    .await
            })
            .await;
        match read {
            Ok(Some(bytes)) => match decode(&bytes, names) {
                Some(outcome) => {
                    self.counters.l2_hits.fetch_add(1, Ordering::Relaxed);
                    Some(Arc::new(outcome))
                }
                None => {
                    self.counters.l2_misses.fetch_add(1, Ordering::Relaxed);
                    None
                }
            },
            Ok(None) => {
                self.counters.l2_misses.fetch_add(1, Ordering::Relaxed);
                None
            }
            Err(why) => {
                self.skipped(&why);
                None
            }
        }
    }

    /// Takes the fleet-wide lease on asking Salesforce for `key` (SET NX PX).
    pub async fn lease(&self, key: &str, deadline: Instant) -> Lease {
        let token = format!(
            "{:016x}-{}",
            self.host_tag,
            self.next_token.fetch_add(1, Ordering::Relaxed)
        );
        let lease_key = self.keys.lease(key);
        let (t, ms) = (token.clone(), self.settings.lease.as_millis() as u64);
        let taken = self
            .link
            .run(deadline, |mut c| async move {
                redis::cmd("SET")
                    .arg(lease_key)
                    .arg(t)
                    .arg("NX")
                    .arg("PX")
                    .arg(ms)
                    .query_async::<Option<String>>(&mut c)
                    .await
            })
            .await;
        match taken {
            Ok(Some(_)) => {
                self.counters.leases_won.fetch_add(1, Ordering::Relaxed);
                Lease::Won(token)
            }
            Ok(None) => Lease::Held,
            Err(why) => {
                self.skipped(&why);
                Lease::Unknown
            }
        }
    }

    /// Waits for the lease holder's answer. `Ok(answer)` when it arrives; `Err(true)` when the
    /// lease ended without one (or Redis stopped answering): ask Salesforce; `Err(false)`
    /// when the deadline came first.
    pub async fn wait_for_answer(
        &self,
        key: &str,
        names: &Arc<VarNames>,
        deadline: Instant,
    ) -> Result<Arc<Outcome>, bool> {
        let lease_key = self.keys.lease(key);
        loop {
            if Instant::now() >= deadline {
                return Err(false);
            }
            tokio::time::sleep(LEASE_POLL.min(deadline.saturating_duration_since(Instant::now())))
                .await;
            let (k, l) = (key.to_string(), lease_key.clone());
            let polled = self
                .link
                .run(deadline, |mut c| async move {
                    redis::pipe()
                        .cmd("GET")
                        .arg(k)
                        .cmd("EXISTS")
                        .arg(l)
                        .query_async::<(Option<Vec<u8>>, bool)>(&mut c)
                        .await
                })
                .await;
            match polled {
                Ok((Some(bytes), _)) => {
                    if let Some(outcome) = decode(&bytes, names) {
                        self.counters
                            .lease_waits_answered
                            .fetch_add(1, Ordering::Relaxed);
                        self.counters.l2_hits.fetch_add(1, Ordering::Relaxed);
                        return Ok(Arc::new(outcome));
                    }
                    return Err(true);
                }
                Ok((None, true)) => continue,
                Ok((None, false)) => return Err(true),
                Err(Skipped::NoTime) => return Err(false),
                Err(why) => {
                    self.skipped(&why);
                    return Err(true);
                }
            }
        }
    }

    /// Stores an answer with its TTL and indexes it by its records (for invalidation), then
    /// releases the lease if this host held it. Runs after the call has its answer.
    pub async fn write(&self, key: String, org: &str, outcome: &Outcome, lease: Option<String>) {
        let ttl = match outcome.status {
            LookupStatus::Found | LookupStatus::Multiple => self.settings.l2_ttl,
            LookupStatus::NotFound => self.settings.l2_negative_ttl,
            _ => return,
        };
        let deadline = Instant::now() + self.settings.redis_timeout;
        let ttl_ms = ttl.as_millis() as u64;
        let indexes: Vec<String> = record_ids(&outcome.vars)
            .map(|id| self.keys.record_index(org, id))
            .collect();
        // The org-wide index this answer belongs to (a sorted set scored by expiry, trimmed of
        // expired members on each write): unsettled answers for a new record, found ones for a
        // gap in their object's changes.
        let sorted_index = if is_unsettled(outcome.status) {
            Some(self.keys.unsettled_index(org))
        } else {
            outcome
                .vars
                .get("sf_record_type")
                .map(|object| self.keys.object_index(org, object))
        };
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let index_ttl_ms = self
            .settings
            .l2_ttl
            .max(self.settings.l2_negative_ttl)
            .as_millis() as u64;
        let lease_key = self.keys.lease(&key);
        let value = encode(outcome);
        let written = self
            .link
            .run(deadline, |mut c| async move {
                let mut pipe = redis::pipe();
                pipe.cmd("SET")
                    .arg(&key)
                    .arg(value)
                    .arg("PX")
                    .arg(ttl_ms)
                    .ignore();
                for index in &indexes {
                    pipe.cmd("SADD").arg(index).arg(&key).ignore();
                    pipe.cmd("PEXPIRE").arg(index).arg(ttl_ms).ignore();
                }
                if let Some(index) = &sorted_index {
                    pipe.cmd("ZADD")
                        .arg(index)
                        .arg(now_ms + ttl_ms)
                        .arg(&key)
                        .ignore();
                    pipe.cmd("ZREMRANGEBYSCORE")
                        .arg(index)
                        .arg("-inf")
                        .arg(now_ms)
                        .ignore();
                    pipe.cmd("PEXPIRE").arg(index).arg(index_ttl_ms).ignore();
                }
                if let Some(token) = lease {
                    // Only the holder's own lease: one that expired and was taken by another
                    // host is that host's.
                    pipe.cmd("EVAL")
                        .arg(RELEASE_SCRIPT)
                        .arg(1)
                        .arg(&lease_key)
                        .arg(token)
                        .ignore();
                }
                pipe.query_async::<()>(&mut c).await
            })
            .await;
        match written {
            Ok(()) => {
                self.counters.l2_writes.fetch_add(1, Ordering::Relaxed);
            }
            Err(why) => self.skipped(&why),
        }
    }

    /// Releases a lease without an answer (the lookup failed): the next host may ask at once.
    pub async fn release(&self, key: &str, token: String) {
        let deadline = Instant::now() + self.settings.redis_timeout;
        let lease_key = self.keys.lease(key);
        let _ = self
            .link
            .run(deadline, |mut c| async move {
                redis::cmd("EVAL")
                    .arg(RELEASE_SCRIPT)
                    .arg(1)
                    .arg(lease_key)
                    .arg(token)
                    .query_async::<i64>(&mut c)
                    .await
            })
            .await;
    }

    /// The status section of `sf status`.
    pub fn status(&self) -> serde_json::Value {
        let link = self.link.stats();
        let c = &self.counters;
        serde_json::json!({
            "redis": if link.up { "up" } else { "down" },
            "redis_error": link.last_error,
            "redis_commands": link.commands,
            "redis_timeouts": link.timeouts,
            "redis_errors": link.errors,
            "redis_reconnects": link.reconnects,
            "skipped_redis": c.skipped.load(Ordering::Relaxed) + link.skipped_down,
            "l2_hits": c.l2_hits.load(Ordering::Relaxed),
            "l2_misses": c.l2_misses.load(Ordering::Relaxed),
            "l2_writes": c.l2_writes.load(Ordering::Relaxed),
            "leases_won": c.leases_won.load(Ordering::Relaxed),
            "lease_waits_answered": c.lease_waits_answered.load(Ordering::Relaxed),
            "invalidations_heard": c.invalidations_heard.load(Ordering::Relaxed),
            "invalidated_entries": c.invalidated_entries.load(Ordering::Relaxed),
            "limit_broadcasts_heard": c.limit_broadcasts_heard.load(Ordering::Relaxed),
            "usage_broadcasts_heard": c.usage_broadcasts_heard.load(Ordering::Relaxed),
        })
    }
}

/// Deletes the lease only if it is still the caller's.
const RELEASE_SCRIPT: &str =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";

/// Different on every host and every load: lease tokens of two hosts never collide.
fn host_tag() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    fleet::fingerprint(&format!("{}-{nanos}", std::process::id()))
}

/// The record ids an answer names: `sf_record_id` and every id of `sf_record_ids`.
pub fn record_ids(vars: &PackedVars) -> impl Iterator<Item = &str> {
    vars.get("sf_record_id")
        .into_iter()
        .chain(
            vars.get("sf_record_ids")
                .into_iter()
                .flat_map(|ids| ids.split(',')),
        )
        .filter(|id| !id.is_empty())
}

/// Removes the in-process answers of `scopes` that name one of `ids`.
pub fn invalidate_local(
    cache: &LookupCache,
    scopes: &[ScopeId],
    object: &str,
    ids: &[String],
    extent: Extent,
) -> usize {
    cache.remove_where(scopes, |outcome| {
        record_ids(&outcome.vars).any(|id| ids.iter().any(|wanted| same_record(id, wanted)))
            || (extent.takes_unsettled() && is_unsettled(outcome.status))
            || (extent == Extent::Object
                && outcome
                    .vars
                    .get("sf_record_type")
                    .is_some_and(|t| t.eq_ignore_ascii_case(object)))
    })
}

/// Not-found and multiple answers: what a new record (or a changed phone) can change.
fn is_unsettled(status: LookupStatus) -> bool {
    matches!(status, LookupStatus::NotFound | LookupStatus::Multiple)
}

/// Salesforce ids compare case-sensitively as 15 characters; an 18-character id adds a
/// checksum of case.
pub(crate) fn same_record(a: &str, b: &str) -> bool {
    a.len() >= 15 && b.len() >= 15 && a[..15] == b[..15]
}

fn encode(outcome: &Outcome) -> Vec<u8> {
    let vars: Vec<(&str, &str)> = outcome.vars.iter().collect();
    serde_json::to_vec(&serde_json::json!({
        "s": outcome.status.as_str(),
        "n": outcome.match_count,
        "v": vars,
    }))
    .unwrap_or_default()
}

/// An answer from Redis, with the profile's variable table. Anything unexpected is a miss.
fn decode(bytes: &[u8], names: &Arc<VarNames>) -> Option<Outcome> {
    let value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    let status = match value.get("s")?.as_str()? {
        "found" => LookupStatus::Found,
        "not_found" => LookupStatus::NotFound,
        "multiple" => LookupStatus::Multiple,
        _ => return None,
    };
    let match_count = u32::try_from(value.get("n")?.as_u64()?).ok()?;
    let mut vars = PackedVars::builder(names);
    for pair in value.get("v")?.as_array()? {
        let (name, text) = (pair.get(0)?.as_str()?, pair.get(1)?.as_str()?);
        if !names.contains(name) {
            return None;
        }
        vars.push(name, text);
    }
    Some(Outcome {
        status,
        match_count,
        vars: vars.build(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_survives_redis_and_a_strange_one_is_a_miss() {
        let names = VarNames::new(["contact_name"]);
        let mut vars = PackedVars::builder(&names);
        vars.push("sf_record_id", "003000000000001AAA")
            .push("contact_name", "Seán O'Brien");
        let outcome = Outcome {
            status: LookupStatus::Found,
            match_count: 1,
            vars: vars.build(),
        };
        assert_eq!(decode(&encode(&outcome), &names), Some(outcome));
        assert_eq!(decode(br#"{"s":"error","n":0,"v":[]}"#, &names), None);
        assert_eq!(
            decode(
                br#"{"s":"found","n":1,"v":[["not_in_profile","x"]]}"#,
                &names
            ),
            None
        );
        assert_eq!(decode(b"garbage", &names), None);
    }

    #[test]
    fn record_ids_compare_on_their_first_15_characters() {
        assert!(same_record("003000000000001AAA", "003000000000001"));
        assert!(!same_record("003000000000001AAA", "003000000000002AAA"));
        assert!(!same_record("", ""));
    }
}
