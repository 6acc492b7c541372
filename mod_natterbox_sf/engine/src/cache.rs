//! The lookup cache: shared by every call thread, bounded, with TTLs and stale-while-revalidate.
//!
//! A hit reads a lock-free hash map (papaya) and sets the entry's "referenced" bit; it takes no
//! lock that a writer or refresher can hold. Writers (inserts after a Salesforce answer) take the
//! eviction lock, which orders keys for CLOCK eviction (second chance: LRU-like without touching a
//! shared list on every hit).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::outcome::{LookupStatus, Outcome};
use crate::striped::StripedCounter;

/// Cache scope: one (org, profile) pair of one config generation. Tenants never share a scope,
/// so one org's answer never serves another org's call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ScopeId(pub u32);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CacheKey {
    pub scope: ScopeId,
    /// E.164 digits as an integer (`CallerNumber::key`).
    pub number: u64,
}

/// What a cache key must be: hashable, cheap to clone (the CLOCK queue holds a copy), and in
/// one scope so that a reload can drop an org's entries.
pub trait ScopedKey: Eq + std::hash::Hash + Clone + Send + Sync + 'static {
    fn scope(&self) -> ScopeId;
}

impl ScopedKey for CacheKey {
    fn scope(&self) -> ScopeId {
        self.scope
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CachePolicy {
    pub max_entries: usize,
    pub ttl: Duration,
    pub negative_ttl: Duration,
    pub max_stale: Duration,
}

struct Entry {
    outcome: Arc<Outcome>,
    /// Extended in place when Salesforce gives the same answer again (see `insert`).
    fresh_until: AtomicU64,
    stale_until: AtomicU64,
    referenced: AtomicBool,
    refreshing: AtomicBool,
}

/// What the cache holds for a key, now.
#[derive(Debug, Clone)]
pub enum Cached {
    Fresh(Arc<Outcome>),
    /// Past its TTL but within max-stale. `claimed_refresh` is true for exactly one caller until
    /// a new answer is stored: that caller starts the revalidation.
    Stale {
        outcome: Arc<Outcome>,
        claimed_refresh: bool,
    },
    Miss,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub entries: usize,
    pub hits: u64,
    pub stale_hits: u64,
    pub misses: u64,
    pub inserts: u64,
    pub evictions: u64,
}

/// Keyed by caller number for lookups (`CacheKey`), by bound values for named queries
/// (`query::QueryKey`): one implementation of TTLs, stale-while-revalidate and eviction.
pub struct LookupCache<K: ScopedKey = CacheKey> {
    map: papaya::HashMap<K, Entry>,
    epoch: Instant,
    hits: StripedCounter,
    stale_hits: StripedCounter,
    misses: StripedCounter,
    writers: WriterSide<K>,
}

/// What only writers change, on cache lines of its own: a writer's lock and counters must not
/// share a line with what every hit reads (the map's handle, the epoch).
#[repr(align(128))]
struct WriterSide<K> {
    /// Keys in CLOCK order.
    clock: Mutex<VecDeque<K>>,
    policy: parking_lot::RwLock<CachePolicy>,
    inserts: AtomicU64,
    evictions: AtomicU64,
}

impl<K: ScopedKey> LookupCache<K> {
    pub fn new(policy: CachePolicy) -> LookupCache<K> {
        LookupCache {
            map: papaya::HashMap::builder()
                .capacity(policy.max_entries.min(1 << 20))
                .resize_mode(papaya::ResizeMode::Blocking)
                .build(),
            epoch: Instant::now(),
            hits: StripedCounter::default(),
            stale_hits: StripedCounter::default(),
            misses: StripedCounter::default(),
            writers: WriterSide {
                clock: Mutex::new(VecDeque::new()),
                policy: parking_lot::RwLock::new(policy),
                inserts: AtomicU64::new(0),
                evictions: AtomicU64::new(0),
            },
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// The hit path.
    pub fn get(&self, key: &K) -> Cached {
        let now = self.now_ms();
        let map = self.map.pin();
        let Some(entry) = map.get(key) else {
            self.misses.add(1);
            return Cached::Miss;
        };
        if now < entry.fresh_until.load(Ordering::Relaxed) {
            if !entry.referenced.load(Ordering::Relaxed) {
                entry.referenced.store(true, Ordering::Relaxed);
            }
            self.hits.add(1);
            return Cached::Fresh(entry.outcome.clone());
        }
        if now < entry.stale_until.load(Ordering::Relaxed) {
            entry.referenced.store(true, Ordering::Relaxed);
            self.stale_hits.add(1);
            let claimed_refresh = !entry.refreshing.swap(true, Ordering::AcqRel);
            return Cached::Stale {
                outcome: entry.outcome.clone(),
                claimed_refresh,
            };
        }
        self.misses.add(1);
        Cached::Miss
    }

    /// An answer past its max-stale that is still held (not yet evicted), for an org that has
    /// spent its call-time API budget (`budget`). Counted as a stale hit.
    pub fn get_expired(&self, key: &K) -> Option<Arc<Outcome>> {
        let map = self.map.pin();
        let entry = map.get(key)?;
        entry.referenced.store(true, Ordering::Relaxed);
        self.stale_hits.add(1);
        Some(entry.outcome.clone())
    }

    /// Gives back a refresh claim that could not be carried out (e.g. the org is throttled),
    /// so a later caller may try.
    pub fn release_refresh(&self, key: &K) {
        if let Some(entry) = self.map.pin().get(key) {
            entry.refreshing.store(false, Ordering::Release);
        }
    }

    /// Stores a settled answer. Only found / not found / multiple are cacheable.
    pub fn insert(&self, key: K, outcome: Arc<Outcome>) {
        self.insert_with_ttls(key, outcome, None, None)
    }

    /// `insert` with TTLs of the entry's own (a named query's `cache-ttl-s`,
    /// `negative-ttl-s`) instead of the cache's.
    pub fn insert_with_ttls(
        &self,
        key: K,
        outcome: Arc<Outcome>,
        ttl: Option<Duration>,
        negative_ttl: Option<Duration>,
    ) {
        let policy = *self.writers.policy.read();
        let ttl = match outcome.status {
            LookupStatus::Found | LookupStatus::Multiple => ttl.unwrap_or(policy.ttl),
            LookupStatus::NotFound => negative_ttl.unwrap_or(policy.negative_ttl),
            _ => return,
        };
        if ttl.is_zero() || policy.max_entries == 0 {
            return;
        }
        let now = self.now_ms();
        let fresh_until = now + ttl.as_millis() as u64;
        let stale_until = fresh_until + policy.max_stale.as_millis() as u64;
        let map = self.map.pin();
        if let Some(existing) = map.get(&key) {
            if *existing.outcome == *outcome {
                // The same answer again, as most revalidations are: the entry is extended in
                // place. Readers keep sharing its answer, nothing is allocated or retired, and
                // the eviction lock is not taken.
                // An extension by less than 1/64 of the TTL is not worth dirtying a cache line
                // that every call thread reads.
                let slack = ttl.as_millis() as u64 / 64;
                if fresh_until > existing.fresh_until.load(Ordering::Relaxed) + slack {
                    existing.stale_until.store(stale_until, Ordering::Relaxed);
                    existing.fresh_until.store(fresh_until, Ordering::Relaxed);
                }
                if existing.refreshing.load(Ordering::Relaxed) {
                    existing.refreshing.store(false, Ordering::Release);
                }
                self.writers.inserts.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        let entry = Entry {
            outcome,
            fresh_until: AtomicU64::new(fresh_until),
            stale_until: AtomicU64::new(stale_until),
            referenced: AtomicBool::new(false),
            refreshing: AtomicBool::new(false),
        };
        let mut clock = self.writers.clock.lock();
        let replaced = map.insert(key.clone(), entry).is_some();
        self.writers.inserts.fetch_add(1, Ordering::Relaxed);
        if replaced {
            return;
        }
        clock.push_back(key);
        while map.len() > policy.max_entries {
            let Some(candidate) = clock.pop_front() else {
                break;
            };
            match map.get(&candidate) {
                // Flushed or already evicted: its place in the queue was stale.
                None => continue,
                Some(e)
                    if e.referenced.swap(false, Ordering::Relaxed)
                        && now < e.stale_until.load(Ordering::Relaxed) =>
                {
                    clock.push_back(candidate);
                }
                Some(_) => {
                    map.remove(&candidate);
                    self.writers.evictions.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        // Keys removed by flushes linger in the queue; keep it proportional to the map.
        if clock.len() > 2 * policy.max_entries.max(1024) {
            clock.retain(|k| map.contains_key(k));
        }
    }

    /// Removes every entry of the given scopes (all entries when `scopes` is `None`).
    pub fn flush(&self, scopes: Option<&[ScopeId]>) -> usize {
        let map = self.map.pin();
        let before = map.len();
        match scopes {
            None => map.clear(),
            Some(scopes) => map.retain(|k, _| !scopes.contains(&k.scope())),
        }
        before.saturating_sub(map.len())
    }

    /// Drops the answers of `scopes` that `matches` picks (invalidation by record).
    pub fn remove_where(&self, scopes: &[ScopeId], matches: impl Fn(&Outcome) -> bool) -> usize {
        let map = self.map.pin();
        let before = map.len();
        map.retain(|k, entry| !(scopes.contains(&k.scope()) && matches(&entry.outcome)));
        before.saturating_sub(map.len())
    }

    pub fn set_policy(&self, policy: CachePolicy) {
        *self.writers.policy.write() = policy;
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats {
            entries: self.map.len(),
            hits: self.hits.sum(),
            stale_hits: self.stale_hits.sum(),
            misses: self.misses.sum(),
            inserts: self.writers.inserts.load(Ordering::Relaxed),
            evictions: self.writers.evictions.load(Ordering::Relaxed),
        }
    }

    pub fn scope_entries(&self, scope: ScopeId) -> usize {
        self.map
            .pin()
            .iter()
            .filter(|(k, _)| k.scope() == scope)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::{PackedVars, VarNames};

    fn policy(max_entries: usize) -> CachePolicy {
        CachePolicy {
            max_entries,
            ttl: Duration::from_secs(60),
            negative_ttl: Duration::from_secs(5),
            max_stale: Duration::from_secs(60),
        }
    }

    fn found(id: &str) -> Arc<Outcome> {
        let mut vars = PackedVars::builder(&VarNames::new([]));
        vars.push("sf_record_id", id);
        Arc::new(Outcome {
            status: LookupStatus::Found,
            match_count: 1,
            vars: vars.build(),
        })
    }

    fn key(scope: u32, number: u64) -> CacheKey {
        CacheKey {
            scope: ScopeId(scope),
            number,
        }
    }

    #[test]
    fn scopes_never_share_entries() {
        let cache = LookupCache::new(policy(10));
        cache.insert(key(1, 14155550123), found("acme"));
        assert!(matches!(cache.get(&key(2, 14155550123)), Cached::Miss));
        match cache.get(&key(1, 14155550123)) {
            Cached::Fresh(o) => assert_eq!(o.vars.get("sf_record_id"), Some("acme")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn evicts_unreferenced_entries_first() {
        let cache = LookupCache::new(policy(3));
        for n in 1..=3 {
            cache.insert(key(1, n), found("x"));
        }
        // 1 is used, so 2 (the oldest unused) goes when 4 arrives.
        assert!(matches!(cache.get(&key(1, 1)), Cached::Fresh(_)));
        cache.insert(key(1, 4), found("x"));
        assert_eq!(cache.stats().entries, 3);
        assert!(matches!(cache.get(&key(1, 1)), Cached::Fresh(_)));
        assert!(matches!(cache.get(&key(1, 2)), Cached::Miss));
        assert!(matches!(cache.get(&key(1, 4)), Cached::Fresh(_)));
        assert_eq!(cache.stats().evictions, 1);
    }

    #[test]
    fn stays_bounded_under_many_inserts() {
        let cache = LookupCache::new(policy(100));
        for n in 0..10_000 {
            cache.insert(key(1, n), found("x"));
            if n % 3 == 0 {
                cache.get(&key(1, n));
            }
        }
        assert_eq!(cache.stats().entries, 100);
        assert!(cache.writers.clock.lock().len() <= 2 * 1024);
    }

    #[test]
    fn negative_answers_expire_sooner_and_stale_answers_are_claimed_once() {
        let cache = LookupCache::new(CachePolicy {
            max_entries: 10,
            // A minute for answers, so a loaded machine's late wake-up cannot age them; the
            // sleeps below only need to outlast the negative TTL, which any wake-up does.
            ttl: Duration::from_secs(60),
            negative_ttl: Duration::from_millis(1),
            max_stale: Duration::from_secs(60),
        });
        cache.insert(key(1, 1), found("x"));
        cache.insert(key(1, 2), Arc::new(Outcome::not_found()));
        std::thread::sleep(Duration::from_millis(5));
        assert!(matches!(cache.get(&key(1, 1)), Cached::Fresh(_)));
        assert!(matches!(
            cache.get(&key(1, 2)),
            Cached::Stale {
                claimed_refresh: true,
                ..
            }
        ));
        assert!(matches!(
            cache.get(&key(1, 2)),
            Cached::Stale {
                claimed_refresh: false,
                ..
            }
        ));
        cache.release_refresh(&key(1, 2));
        assert!(matches!(
            cache.get(&key(1, 2)),
            Cached::Stale {
                claimed_refresh: true,
                ..
            }
        ));
        // A new answer resets the claim.
        cache.insert(key(1, 2), Arc::new(Outcome::not_found()));
        std::thread::sleep(Duration::from_millis(5));
        assert!(matches!(
            cache.get(&key(1, 2)),
            Cached::Stale {
                claimed_refresh: true,
                ..
            }
        ));
    }

    #[test]
    fn errors_are_not_cached_and_flush_is_scoped() {
        let cache = LookupCache::new(policy(10));
        cache.insert(
            key(1, 1),
            Arc::new(Outcome {
                status: LookupStatus::Timeout,
                match_count: 0,
                vars: PackedVars::default(),
            }),
        );
        assert!(matches!(cache.get(&key(1, 1)), Cached::Miss));
        cache.insert(key(1, 1), found("a"));
        cache.insert(key(2, 1), found("b"));
        assert_eq!(cache.flush(Some(&[ScopeId(1)])), 1);
        assert!(matches!(cache.get(&key(2, 1)), Cached::Fresh(_)));
        assert_eq!(cache.flush(None), 1);
    }

    #[test]
    fn the_same_answer_again_extends_the_entry_and_keeps_its_outcome() {
        let cache = LookupCache::new(CachePolicy {
            max_entries: 10,
            ttl: Duration::from_millis(200),
            negative_ttl: Duration::from_millis(200),
            max_stale: Duration::from_secs(60),
        });
        let first = found("003000000000001AAA");
        cache.insert(key(1, 14155550123), first.clone());
        std::thread::sleep(Duration::from_millis(250));
        let Cached::Stale {
            claimed_refresh: true,
            ..
        } = cache.get(&key(1, 14155550123))
        else {
            panic!("expected a stale entry with the refresh claimed");
        };
        // The revalidation brings the same record back in a new allocation.
        cache.insert(key(1, 14155550123), found("003000000000001AAA"));
        let Cached::Fresh(outcome) = cache.get(&key(1, 14155550123)) else {
            panic!("expected the entry fresh again");
        };
        assert!(Arc::ptr_eq(&outcome, &first));
        // The refresh claim was given back with the new answer.
        std::thread::sleep(Duration::from_millis(250));
        assert!(matches!(
            cache.get(&key(1, 14155550123)),
            Cached::Stale {
                claimed_refresh: true,
                ..
            }
        ));
        // A different answer replaces the entry.
        cache.insert(key(1, 14155550123), found("003000000000002AAA"));
        let Cached::Fresh(outcome) = cache.get(&key(1, 14155550123)) else {
            panic!("expected the new answer");
        };
        assert_eq!(outcome.vars.get("sf_record_id"), Some("003000000000002AAA"));
        assert_eq!(cache.stats().entries, 1);
    }
}
