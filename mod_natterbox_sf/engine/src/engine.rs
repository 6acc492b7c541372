//! The module's runtime: config snapshot, per-org state, the cache, the lookup path and the
//! outbox. FreeSWITCH's threads call `lookup_blocking`; everything that waits on the network runs
//! on the engine's own tokio runtime, which `shutdown` stops and joins.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use natterbox_common::config::{Config, OrgApiKind, OrgConfig, Settings};
use natterbox_common::phone::{CallerNumber, InvalidNumber};
use natterbox_common::salesforce::client::{http_client, ClientOptions};
use natterbox_common::salesforce::{LimitInfo, SalesforceClient, SfError};
use natterbox_common::wire::{CallLog, CallProgress, Message, ScreenPop};
use tokio::sync::{watch, Semaphore};

use crate::breaker::{Admission, Breaker, BreakerView, Failure};
use crate::budget::{BudgetChange, BudgetListener, BudgetState, CallTimeBudget};
use crate::cache::{CacheKey, CachePolicy, CacheStats, Cached, LookupCache, ScopeId};
use crate::fleet_cache::FleetCache;
use crate::flight::{Flight, FlightGuard, Flights, Joined};
use crate::metrics::{LookupMetrics, MetricsSources};
use crate::outbox::Outbox;
use crate::outcome::{LookupStatus, Outcome, Source, VarNames};
use crate::overload::{timeout_is_salesforces, RuntimeQueue};
use crate::owners::{Owner, OwnerDirectory};
use crate::read_api::OrgReadApi;
use crate::schema_check::SchemaCheck;
use crate::search::decide;
use crate::tokens::{Credential, TokenSlot};

/// What the dialplan asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LookupRequest {
    pub org: Option<String>,
    pub number: String,
    pub profile: Option<String>,
    /// Shortens the configured `lookup-timeout-ms` for this lookup; never lengthens it.
    pub timeout: Option<Duration>,
}

/// What the dialplan gets.
#[derive(Debug, Clone)]
pub struct LookupAnswer {
    pub status: LookupStatus,
    pub source: Option<Source>,
    pub elapsed: Duration,
    /// The org's name (interned: no reference count to bump on a hit).
    pub org: Option<&'static str>,
    pub e164: Option<E164Text>,
    pub outcome: Option<Arc<Outcome>>,
    /// The winning record's owner, from the owner directory at the time of the answer (so a
    /// cached answer shows the owner's current name and extension).
    pub owner: Option<Arc<Owner>>,
    /// Why, for logs, when the status is not a settled answer.
    pub detail: Option<String>,
}

pub(crate) type FlightResult = Result<Arc<Outcome>, (LookupStatus, String)>;

/// One org as the running config sees it.
pub struct OrgRuntime {
    pub name: &'static str,
    pub config: OrgConfig,
    client: SalesforceClient,
    /// The API call-time reads go through (`api="rest|soap"`).
    reads: OrgReadApi,
    pub(crate) concurrency: Semaphore,
    pub breaker: Breaker,
    pub tokens: Arc<TokenSlot>,
    profiles: HashMap<String, ProfileRuntime>,
    /// Each profile's search, in the order of `config.profiles`, as checked against the org.
    pub schema: SchemaCheck,
    /// The org's Users and Queues (kept across reloads).
    pub owners: Arc<OwnerDirectory>,
    parsed: ParseMemo,
    limit_used: AtomicU64,
    limit_max: AtomicU64,
    /// The share of the daily allowance call-time reads may spend, and where usage stands.
    pub budget: CallTimeBudget,
    budget_listener: Arc<BudgetListener>,
    /// The fleet, once it is started: usage is shared through it (`fleet_usage`).
    pub(crate) fleet: Arc<OnceLock<Arc<FleetCache>>>,
    /// This org's own `Arc`, for the tasks that share its usage after a call has its answer.
    pub(crate) me: std::sync::Weak<OrgRuntime>,
    pub requests: AtomicU64,
    pub unauthorized: AtomicU64,
    /// The newest token generation a search succeeded with.
    pub(crate) worked_generation: AtomicU64,
    /// Describes of the objects the org's `<write>`s go to (`writes.rs`).
    pub(crate) write_objects: crate::writes::WriteObjects,
    /// Named queries and searches by name (`sf_query`, `sf_search`).
    pub queries: HashMap<String, Arc<crate::query::QueryRuntime>>,
}

impl OrgRuntime {
    pub fn limit(&self) -> Option<LimitInfo> {
        let max = self.limit_max.load(Ordering::Relaxed);
        (max > 0).then(|| LimitInfo {
            used: self.limit_used.load(Ordering::Relaxed),
            max,
        })
    }

    /// Takes in the usage an answer reported: with a fleet, through the org's fleet-wide figure
    /// (`fleet_usage`); alone, as it is.
    pub(crate) fn record_limit(&self, limit: Option<LimitInfo>) {
        if let Some(l) = limit {
            if let Some(fleet) = self.fleet.get() {
                if fleet.link.is_up() {
                    self.share_usage(fleet, l);
                    return;
                }
            }
            self.apply_limit(l);
        }
    }

    /// The org's usage is `l` now: its status figure and its call-time budget's state.
    pub(crate) fn apply_limit(&self, l: LimitInfo) {
        self.limit_used.store(l.used, Ordering::Relaxed);
        self.limit_max.store(l.max, Ordering::Relaxed);
        if let Some(change) = self.budget.observe(self.name, l) {
            tracing::warn!(
                "org {}: call-time API budget {} -> {} ({}/{} API requests used, call-time share {}%)",
                change.org,
                change.from.as_str(),
                change.to.as_str(),
                change.used,
                change.max,
                change.share_percent
            );
            self.budget_listener.notify(&change);
        }
    }

    pub fn scopes(&self) -> impl Iterator<Item = ScopeId> + '_ {
        self.profiles.values().map(|p| p.scope)
    }

    pub(crate) fn client(&self) -> &SalesforceClient {
        &self.client
    }

    /// "Run SOSL / SOQL for this org" through the org's configured API.
    pub fn reads(&self) -> &OrgReadApi {
        &self.reads
    }

    /// The owner of a settled answer's record, from memory.
    fn owner_of(&self, outcome: &Outcome) -> Option<Arc<Owner>> {
        outcome
            .vars
            .get("sf_owner_id")
            .map(|id| self.owners.resolve(id))
    }
}

/// A profile as lookups use it: its cache scope, its place in the org config, its variables.
struct ProfileRuntime {
    scope: ScopeId,
    index: usize,
    names: Arc<VarNames>,
    /// The profile's definition, hashed: hosts share Redis answers only for the same one.
    fingerprint: u64,
}

/// A caller number parsed in one country's plan, remembered: parsing is the most expensive
/// part of a cache hit.
#[derive(Debug)]
struct ParsedCaller {
    caller: CallerNumber,
    e164: E164Text,
}

/// An E.164 number (`+` and at most 15 digits) held inline: copied into an answer without an
/// allocation or a shared reference count.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct E164Text {
    bytes: [u8; 16],
    len: u8,
}

impl E164Text {
    fn new(text: &str) -> E164Text {
        let mut bytes = [0u8; 16];
        let len = text.len().min(16);
        bytes[..len].copy_from_slice(&text.as_bytes()[..len]);
        E164Text {
            bytes,
            len: len as u8,
        }
    }
}

impl std::ops::Deref for E164Text {
    type Target = str;

    fn deref(&self) -> &str {
        // Built from a &str cut at most at 16 bytes of ASCII ('+' and digits).
        std::str::from_utf8(&self.bytes[..self.len as usize]).unwrap_or("")
    }
}

impl std::fmt::Debug for E164Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self)
    }
}

/// Org names live as long as the process: a config reload reuses the name, a new name leaks a
/// few bytes once. Answers then carry a plain `&'static str`.
fn intern(name: &str) -> &'static str {
    static NAMES: std::sync::Mutex<Vec<&'static str>> = std::sync::Mutex::new(Vec::new());
    let mut names = NAMES.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(known) = names.iter().find(|n| **n == name) {
        return known;
    }
    let leaked: &'static str = Box::leak(name.to_string().into_boxed_str());
    names.push(leaked);
    leaked
}

/// Per org (the org's country decides how a number parses), keyed by the text as received. Only
/// numbers that parse are remembered: caller text that is not a number (anything a SIP header
/// can carry) is parsed again each time and never takes memory here.
type ParseMemo = papaya::HashMap<Box<str>, Arc<ParsedCaller>>;

/// Valid numbers remembered per org; past this the memo starts over.
const PARSE_MEMO_MAX: usize = 65_536;
/// Longer caller text is parsed each time: a number with a few separators fits.
const PARSE_MEMO_KEY_MAX: usize = 32;

/// An immutable view of the config, swapped in whole by a reload.
pub struct Snapshot {
    pub config: Config,
    pub orgs: HashMap<String, Arc<OrgRuntime>>,
}

pub struct Engine {
    runtime: Option<tokio::runtime::Runtime>,
    live_threads: Arc<AtomicUsize>,
    snapshot: Arc<ArcSwap<Snapshot>>,
    cache: Arc<LookupCache>,
    flights: Arc<Flights<CacheKey, FlightResult>>,
    /// Named queries' answers by (query scope, bound values): the same cache, keyed otherwise.
    pub(crate) query_cache: Arc<LookupCache<crate::query::QueryKey>>,
    pub(crate) query_flights: Arc<Flights<crate::query::QueryKey, FlightResult>>,
    outbox: Outbox,
    /// The `sf-spool` thread: it ends after the outbox's last sender, and is waited for.
    spool_thread: Option<std::thread::JoinHandle<()>>,
    stop: watch::Sender<bool>,
    next_scope: AtomicU32,
    /// Token slots by org name, kept across reloads so the last good token survives them.
    token_slots: Arc<parking_lot::Mutex<HashMap<String, Arc<TokenSlot>>>>,
    /// Owner directories by org name, kept across reloads like the token slots.
    owner_directories: parking_lot::Mutex<HashMap<String, Arc<OwnerDirectory>>>,
    /// Finished lookups by status and source, and their latency: counted on the caller's
    /// thread, striped.
    lookup_metrics: Arc<LookupMetrics>,
    /// How long requests wait for the runtime (the host's load), see `overload`.
    queue: Arc<RuntimeQueue>,
    runtime_threads: usize,
    /// Told when an org's call-time API budget changes state.
    budget_listener: Arc<BudgetListener>,
    /// Redis, when the config has `<fleet>`: the second-level cache and the fleet's channel.
    fleet: Option<Arc<FleetCache>>,
    /// The same fleet for every org runtime, set once it is started.
    fleet_slot: Arc<OnceLock<Arc<FleetCache>>>,
    /// What the sidecar sends besides acks (call-control commands, presence), for the module's
    /// call-control thread to take once.
    sidecar_inbox: parking_lot::Mutex<Option<std::sync::mpsc::Receiver<Message>>>,
    agent_calls: Arc<crate::agent_calls::AgentCalls>,
    presence: Arc<crate::presence::PresenceBoard>,
}

fn cache_policy(settings: &Settings) -> CachePolicy {
    CachePolicy {
        max_entries: settings.cache_max_entries,
        ttl: settings.cache_ttl,
        negative_ttl: settings.cache_negative_ttl,
        max_stale: settings.cache_max_stale,
    }
}

fn client_options(settings: &Settings) -> Result<ClientOptions, String> {
    let extra_ca_pem = match &settings.ca_file {
        None => None,
        Some(path) => {
            Some(std::fs::read(path).map_err(|e| format!("ca-file {}: {e}", path.display()))?)
        }
    };
    Ok(ClientOptions {
        connect_timeout: settings.http_connect_timeout,
        gzip: settings.http_gzip,
        extra_ca_pem,
        ..ClientOptions::default()
    })
}

pub(crate) const TOKEN_WAIT_MARGIN: Duration = Duration::from_millis(25);
const TOKEN_POLL: Duration = Duration::from_millis(200);
const TOKEN_POLL_WAITING: Duration = Duration::from_millis(20);

impl Engine {
    /// Starts the runtime, the token watcher and the outbox for a parsed config.
    pub fn start(config: Config) -> Result<Engine, String> {
        let fleet_config = config.fleet.clone();
        let settings = config.settings.clone();
        let live_threads = Arc::new(AtomicUsize::new(0));
        let (started, stopped) = (live_threads.clone(), live_threads.clone());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(settings.runtime_threads)
            .max_blocking_threads(4)
            .thread_name("sf-runtime")
            .on_thread_start(move || {
                started.fetch_add(1, Ordering::SeqCst);
            })
            .on_thread_stop(move || {
                stopped.fetch_sub(1, Ordering::SeqCst);
            })
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the runtime: {e}"))?;
        let (stop, stop_rx) = watch::channel(false);
        if let Err(e) = std::fs::create_dir_all(&settings.spool_dir) {
            tracing::warn!(
                "cannot create spool dir {}: {e}",
                settings.spool_dir.display()
            );
        }
        let (inbound_tx, inbound_rx) = std::sync::mpsc::channel();
        let (outbox, outbox_task, spool_thread) = Outbox::new(
            settings.event_socket.clone(),
            settings.spool_dir.clone(),
            settings.event_queue_capacity,
            stop_rx.clone(),
            inbound_tx,
        )
        .map_err(|e| format!("cannot start the spool writer thread: {e}"))?;
        let cache = Arc::new(LookupCache::new(cache_policy(&settings)));
        let mut engine = Engine {
            runtime: None,
            live_threads,
            snapshot: Arc::new(ArcSwap::from_pointee(Snapshot {
                config: config.clone(),
                orgs: HashMap::new(),
            })),
            cache,
            flights: Arc::new(Flights::new()),
            query_cache: Arc::new(LookupCache::new(cache_policy(&settings))),
            query_flights: Arc::new(Flights::new()),
            outbox,
            spool_thread: Some(spool_thread),
            stop,
            next_scope: AtomicU32::new(1),
            token_slots: Arc::new(parking_lot::Mutex::new(HashMap::new())),
            owner_directories: parking_lot::Mutex::new(HashMap::new()),
            lookup_metrics: Arc::new(LookupMetrics::default()),
            queue: Arc::new(RuntimeQueue::default()),
            runtime_threads: settings.runtime_threads,
            budget_listener: Arc::new(BudgetListener::default()),
            fleet: None,
            fleet_slot: Arc::new(OnceLock::new()),
            sidecar_inbox: parking_lot::Mutex::new(Some(inbound_rx)),
            agent_calls: Arc::new(crate::agent_calls::AgentCalls::default()),
            presence: Arc::new(crate::presence::PresenceBoard::default()),
        };
        let snapshot = match engine.build_snapshot(config, None) {
            Ok(snapshot) => snapshot,
            Err(e) => {
                // The spool thread must end before a failed load lets the library be unloaded.
                drop(outbox_task);
                engine.shutdown(Duration::from_secs(5));
                return Err(e);
            }
        };
        for org in snapshot.orgs.values() {
            org.tokens.poll(&org.config.name);
        }
        engine.snapshot.store(Arc::new(snapshot));
        runtime.spawn(outbox_task);
        runtime.spawn(push_metrics(engine.metrics_view(), stop_rx.clone()));
        runtime.spawn(watch_tokens(engine.token_slots.clone(), stop_rx.clone()));
        runtime.spawn(crate::org_upkeep::upkeep(engine.snapshot.clone(), stop_rx));
        if let Some(settings) = &fleet_config {
            let fleet = match FleetCache::start(settings, runtime.handle().clone()) {
                Ok(fleet) => Arc::new(fleet),
                Err(e) => {
                    engine.runtime = Some(runtime);
                    engine.shutdown(Duration::from_secs(5));
                    return Err(e);
                }
            };
            let _entered = runtime.enter();
            crate::fleet_hooks::listen(
                &fleet,
                engine.snapshot.clone(),
                engine.cache.clone(),
                engine.query_cache.clone(),
            );
            runtime.spawn(crate::fleet_usage::sync_on_link_up(
                fleet.clone(),
                engine.snapshot.clone(),
                engine.stop.subscribe(),
            ));
            let _ = engine.fleet_slot.set(fleet.clone());
            engine.fleet = Some(fleet);
        }
        engine.runtime = Some(runtime);
        Ok(engine)
    }

    fn token_slot(&self, dir: &std::path::Path, org: &OrgConfig) -> Arc<TokenSlot> {
        let mut slots = self.token_slots.lock();
        let (allow_insecure_http, org) = (org.allow_insecure_http, org.name.as_str());
        match slots.get(org) {
            Some(slot) if slot.path() == natterbox_common::handoff::token_path(dir, org) => {
                slot.set_allow_insecure_http(allow_insecure_http);
                slot.clone()
            }
            _ => {
                let slot = Arc::new(TokenSlot::new(dir, org, allow_insecure_http));
                slots.insert(org.to_string(), slot.clone());
                slot
            }
        }
    }

    fn owner_directory(&self, org: &str) -> Arc<OwnerDirectory> {
        self.owner_directories
            .lock()
            .entry(org.to_string())
            .or_default()
            .clone()
    }

    /// Builds the per-org state for `config`, reusing the previous org state (and so its cache
    /// scopes) where the org's config did not change.
    fn build_snapshot(
        &self,
        config: Config,
        previous: Option<&Snapshot>,
    ) -> Result<Snapshot, String> {
        let options = client_options(&config.settings)?;
        let http = http_client(&options)?;
        let same_http = previous.is_some_and(|p| {
            p.config.settings.ca_file == config.settings.ca_file
                && p.config.settings.http_gzip == config.settings.http_gzip
                && p.config.settings.http_connect_timeout == config.settings.http_connect_timeout
        });
        let mut orgs = HashMap::new();
        for org in &config.orgs {
            if let Some(old) = previous.and_then(|p| p.orgs.get(&org.name)) {
                if same_http
                    && old.config == *org
                    && old.tokens.path()
                        == natterbox_common::handoff::token_path(
                            &config.settings.token_dir,
                            &org.name,
                        )
                {
                    orgs.insert(org.name.clone(), old.clone());
                    continue;
                }
            }
            let profiles = org
                .profiles
                .iter()
                .enumerate()
                .map(|(index, p)| {
                    (
                        p.name.clone(),
                        ProfileRuntime {
                            scope: ScopeId(self.next_scope.fetch_add(1, Ordering::Relaxed)),
                            index,
                            names: VarNames::for_profile(p),
                            fingerprint: natterbox_common::fleet::fingerprint(&format!("{p:?}")),
                        },
                    )
                })
                .collect();
            orgs.insert(
                org.name.clone(),
                Arc::new_cyclic(|me| OrgRuntime {
                    name: intern(&org.name),
                    config: org.clone(),
                    client: SalesforceClient::new(http.clone(), &org.api_version),
                    reads: OrgReadApi::new(org.api, http.clone(), &org.api_version),
                    concurrency: Semaphore::new(org.max_concurrent),
                    breaker: Breaker::default(),
                    tokens: self.token_slot(&config.settings.token_dir, org),
                    profiles,
                    schema: match previous.and_then(|p| p.orgs.get(&org.name)) {
                        Some(old) => SchemaCheck::after(&old.schema, &org.profiles),
                        None => SchemaCheck::new(&org.profiles),
                    },
                    owners: self.owner_directory(&org.name),
                    parsed: papaya::HashMap::new(),
                    limit_used: AtomicU64::new(0),
                    limit_max: AtomicU64::new(0),
                    budget: CallTimeBudget::new(org.call_time_api_share_percent),
                    budget_listener: self.budget_listener.clone(),
                    fleet: self.fleet_slot.clone(),
                    me: me.clone(),
                    requests: AtomicU64::new(0),
                    unauthorized: AtomicU64::new(0),
                    worked_generation: AtomicU64::new(0),
                    write_objects: crate::writes::WriteObjects::default(),
                    queries: crate::query::org_queries(&org.queries, || {
                        ScopeId(self.next_scope.fetch_add(1, Ordering::Relaxed))
                    }),
                }),
            );
        }
        Ok(Snapshot { config, orgs })
    }

    /// Swaps in a new config. The old one stays when the new one cannot be applied. Cache
    /// entries of orgs whose config changed are dropped.
    pub fn reload(&self, config: Config) -> Result<ReloadReport, String> {
        let old = self.snapshot.load_full();
        let restart_needed: Vec<&str> = [
            (
                "runtime-threads",
                old.config.settings.runtime_threads != config.settings.runtime_threads,
            ),
            (
                "event-socket",
                old.config.settings.event_socket != config.settings.event_socket,
            ),
            (
                "spool-dir",
                old.config.settings.spool_dir != config.settings.spool_dir,
            ),
            (
                "event-queue-capacity",
                old.config.settings.event_queue_capacity != config.settings.event_queue_capacity,
            ),
            ("fleet", old.config.fleet != config.fleet),
        ]
        .into_iter()
        .filter_map(|(name, changed)| changed.then_some(name))
        .collect();
        let new = self.build_snapshot(config, Some(&old))?;
        let mut dropped_scopes = Vec::new();
        let mut dropped_query_scopes = Vec::new();
        let mut changed_orgs = Vec::new();
        for (name, org) in &old.orgs {
            let kept = new.orgs.get(name).is_some_and(|n| Arc::ptr_eq(n, org));
            if !kept {
                dropped_scopes.extend(org.scopes());
                dropped_query_scopes.extend(org.queries.values().map(|q| q.scope));
                changed_orgs.push(name.clone());
            }
        }
        for (name, org) in &new.orgs {
            if !old.orgs.contains_key(name) {
                changed_orgs.push(name.clone());
            }
            org.tokens.poll(name);
            // The org may have changed since it was last looked at: check the profiles against
            // it again and reload its owners, in the background.
            org.schema.request();
            org.owners.request_refresh();
        }
        self.owner_directories
            .lock()
            .retain(|name, _| new.orgs.contains_key(name));
        self.cache.set_policy(cache_policy(&new.config.settings));
        self.query_cache
            .set_policy(cache_policy(&new.config.settings));
        self.token_slots
            .lock()
            .retain(|name, _| new.orgs.contains_key(name));
        self.snapshot.store(Arc::new(new));
        let flushed = self.cache.flush(Some(&dropped_scopes))
            + self.query_cache.flush(Some(&dropped_query_scopes));
        changed_orgs.sort();
        Ok(ReloadReport {
            changed_orgs,
            flushed_entries: flushed,
            restart_needed: restart_needed.into_iter().map(str::to_string).collect(),
        })
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Redis and the fleet's second-level cache, when the config has `<fleet>`.
    pub fn fleet(&self) -> Option<&Arc<FleetCache>> {
        self.fleet.as_ref()
    }

    /// The cache itself, for diagnostics and the benchmarks' writer storm.
    pub fn cache(&self) -> &LookupCache {
        &self.cache
    }

    /// The cache scope of an org's profile, for diagnostics and benchmarks.
    pub fn scope_of(&self, org: &str, profile: &str) -> Option<ScopeId> {
        Some(
            self.snapshot
                .load()
                .orgs
                .get(org)?
                .profiles
                .get(profile)?
                .scope,
        )
    }

    pub fn cache_stats(&self) -> CacheStats {
        self.cache.stats()
    }

    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// The sidecar's commands and presence updates; `None` after the first call.
    pub fn take_sidecar_inbox(&self) -> Option<std::sync::mpsc::Receiver<Message>> {
        self.sidecar_inbox.lock().take()
    }

    /// The agents' calls the module follows (call control, state reports).
    pub fn agent_calls(&self) -> &Arc<crate::agent_calls::AgentCalls> {
        &self.agent_calls
    }

    /// Agents' presence as the sidecar last reported it.
    pub fn presence(&self) -> &Arc<crate::presence::PresenceBoard> {
        &self.presence
    }

    /// Drops cached answers of one org, or of all.
    pub fn flush(&self, org: Option<&str>) -> Result<usize, String> {
        match org {
            None => Ok(self.cache.flush(None) + self.query_cache.flush(None)),
            Some(name) => {
                let snapshot = self.snapshot.load();
                let org = snapshot
                    .orgs
                    .get(name)
                    .ok_or_else(|| format!("no org \"{name}\""))?;
                let scopes: Vec<ScopeId> = org.scopes().collect();
                let query_scopes: Vec<ScopeId> = org.queries.values().map(|q| q.scope).collect();
                Ok(self.cache.flush(Some(&scopes)) + self.query_cache.flush(Some(&query_scopes)))
            }
        }
    }

    /// Sets who hears of call-time API budget changes (once; false if already set).
    pub fn on_budget_change(
        &self,
        callback: impl Fn(&BudgetChange) + Send + Sync + 'static,
    ) -> bool {
        self.budget_listener.set(Box::new(callback))
    }

    pub fn screen_pop(&self, pop: ScreenPop) {
        self.outbox.screen_pop(pop);
    }

    pub fn call_log(&self, log: CallLog) {
        self.outbox.call_log(log);
    }

    pub fn call_progress(&self, progress: CallProgress) {
        self.outbox.call_progress(progress);
    }

    /// The lookup, for FreeSWITCH's threads: returns by the deadline whatever happens.
    pub fn lookup_blocking(&self, request: &LookupRequest) -> LookupAnswer {
        let started = Instant::now();
        let answer = match self.cached_or_flight(request, started) {
            Ok(answer) => answer,
            Err((prepared, flight)) => {
                let result = flight.wait_until(prepared.deadline);
                prepared.answer_from_flight(result, started, &self.queue)
            }
        };
        self.lookup_metrics
            .record(answer.status, answer.source, answer.elapsed);
        answer
    }

    /// The same lookup for async callers (tests, benchmarks).
    pub async fn lookup(&self, request: &LookupRequest) -> LookupAnswer {
        let started = Instant::now();
        let answer = match self.cached_or_flight(request, started) {
            Ok(answer) => answer,
            Err((prepared, flight)) => {
                let result = flight
                    .wait(tokio::time::Instant::from_std(prepared.deadline))
                    .await;
                prepared.answer_from_flight(result, started, &self.queue)
            }
        };
        self.lookup_metrics
            .record(answer.status, answer.source, answer.elapsed);
        answer
    }

    /// The module's figures in the Prometheus text format (`sf metrics`; pushed to the sidecar).
    pub fn metrics_text(&self) -> String {
        self.metrics_view().render()
    }

    fn metrics_view(&self) -> MetricsView {
        MetricsView {
            snapshot: self.snapshot.clone(),
            cache: self.cache.clone(),
            flights: self.flights.clone(),
            lookups: self.lookup_metrics.clone(),
            outbox: self.outbox.clone(),
        }
    }

    /// Runs `work` on the runtime's blocking pool (joined at shutdown), for work FreeSWITCH's
    /// event thread must not do itself. False when the module is stopping.
    pub(crate) fn runtime_handle(&self) -> Option<&tokio::runtime::Runtime> {
        self.runtime.as_ref()
    }

    /// The named queries' cache, for diagnostics and benchmarks.
    pub fn query_cache(&self) -> &LookupCache<crate::query::QueryKey> {
        &self.query_cache
    }

    pub fn run_blocking(&self, work: impl FnOnce() + Send + 'static) -> bool {
        match &self.runtime {
            Some(runtime) => {
                runtime.spawn_blocking(work);
                true
            }
            None => false,
        }
    }

    fn parse(org: &OrgRuntime, number: &str) -> Result<Arc<ParsedCaller>, InvalidNumber> {
        let memo = org.parsed.pin();
        if let Some(parsed) = memo.get(number) {
            return Ok(parsed.clone());
        }
        let parsed = Arc::new(CallerNumber::parse(number, org.config.default_country).map(
            |caller| ParsedCaller {
                e164: E164Text::new(caller.e164()),
                caller,
            },
        )?);
        if number.len() <= PARSE_MEMO_KEY_MAX {
            if memo.len() >= PARSE_MEMO_MAX {
                memo.clear();
            }
            memo.insert(number.into(), parsed.clone());
        }
        Ok(parsed)
    }

    /// Everything up to the cache: a settled answer (hit, stale hit, or a refusal), or the
    /// flight to wait on.
    #[allow(clippy::type_complexity)]
    fn cached_or_flight(
        &self,
        request: &LookupRequest,
        started: Instant,
    ) -> Result<LookupAnswer, (Prepared, Arc<crate::flight::Flight<FlightResult>>)> {
        let snapshot = self.snapshot.load();
        let fail = |status, org: Option<&'static str>, detail: String| LookupAnswer {
            status,
            source: None,
            elapsed: started.elapsed(),
            org,
            e164: None,
            outcome: None,
            owner: None,
            detail: Some(detail),
        };
        let Some(org_config) = snapshot.config.resolve_org(request.org.as_deref()) else {
            return Ok(fail(
                LookupStatus::Error,
                None,
                match &request.org {
                    Some(name) => {
                        format!("no org \"{}\" in the config", crate::args::printable(name))
                    }
                    None => "no org given and no default-org set".into(),
                },
            ));
        };
        let org = &snapshot.orgs[&org_config.name];
        let profile_name = request.profile.as_deref().unwrap_or("default");
        let Some(profile) = org.profiles.get(profile_name) else {
            return Ok(fail(
                LookupStatus::Error,
                Some(org.name),
                format!(
                    "org \"{}\" has no profile \"{}\"",
                    org.name,
                    crate::args::printable(profile_name)
                ),
            ));
        };
        let parsed = match Self::parse(org, &request.number) {
            Ok(parsed) => parsed,
            Err(reason) => {
                return Ok(fail(
                    LookupStatus::InvalidNumber,
                    Some(org.name),
                    format!(
                        "\"{}\" is not a phone number ({})",
                        crate::args::printable(&request.number),
                        match reason {
                            InvalidNumber::Empty => "empty",
                            InvalidNumber::TooLong => "too long",
                            InvalidNumber::NotANumber => "not a number",
                            InvalidNumber::NotPossible => "wrong length for its country",
                            InvalidNumber::LocalOnly => "a local number without its area code",
                        }
                    ),
                ))
            }
        };
        let key = CacheKey {
            scope: profile.scope,
            number: parsed.caller.key(),
        };
        let hit = |outcome: Arc<Outcome>, source| LookupAnswer {
            status: outcome.status,
            source: Some(source),
            elapsed: started.elapsed(),
            org: Some(org.name),
            e164: Some(parsed.e164),
            owner: org.owner_of(&outcome),
            outcome: Some(outcome),
            detail: None,
        };
        // A request may shorten the configured deadline, never lengthen it.
        let deadline = started
            + request
                .timeout
                .map_or(snapshot.config.settings.lookup_timeout, |t| {
                    t.min(snapshot.config.settings.lookup_timeout)
                });
        let prepare = || Prepared {
            org: org.clone(),
            profile_index: profile.index,
            names: profile.names.clone(),
            fingerprint: profile.fingerprint,
            caller: parsed.clone(),
            key,
            deadline,
            refresh_timeout: snapshot.config.settings.lookup_timeout,
        };
        match self.cache.get(&key) {
            Cached::Fresh(outcome) => Ok(hit(outcome, Source::Cache)),
            Cached::Stale {
                outcome,
                claimed_refresh,
            } => {
                if claimed_refresh {
                    // Near or past its call-time budget the org's calls are not spent on
                    // answers the cache already has (`budget`).
                    if !org.budget.may_revalidate(Instant::now()) {
                        self.cache.release_refresh(&key);
                    } else if let Joined::Leader(flight) = self.flights.join(&key) {
                        let p = prepare();
                        self.spawn_fetch(&p, flight, Instant::now() + p.refresh_timeout);
                    }
                }
                Ok(hit(outcome, Source::Stale))
            }
            Cached::Miss => {
                if org.budget.state() == BudgetState::Spent {
                    if let Some(outcome) = self.cache.get_expired(&key) {
                        // Now and then one goes out, in the background: only an answer says
                        // the org's usage has fallen again.
                        if org.budget.may_revalidate(Instant::now()) {
                            if let Joined::Leader(flight) = self.flights.join(&key) {
                                let p = prepare();
                                self.spawn_fetch(&p, flight, Instant::now() + p.refresh_timeout);
                            }
                        }
                        return Ok(hit(outcome, Source::Stale));
                    }
                }
                if let Some(delay) = self.queue.would_miss(Instant::now(), deadline) {
                    self.queue.overloaded.fetch_add(1, Ordering::Relaxed);
                    return Ok(LookupAnswer {
                        e164: Some(parsed.e164),
                        ..fail(
                            LookupStatus::Overloaded,
                            Some(org.name),
                            format!(
                                "requests wait {} ms for the module's runtime (host overloaded), past this call's deadline",
                                delay.as_millis()
                            ),
                        )
                    });
                }
                match self.flights.join(&key) {
                    Joined::Leader(flight) => {
                        let p = prepare();
                        self.spawn_fetch(&p, flight.clone(), p.deadline);
                        Err((p, flight))
                    }
                    Joined::Follower(flight) => Err((prepare(), flight)),
                }
            }
        }
    }

    /// Starts the leader's request. The flight is finished by a guard that goes with the task:
    /// a task that panics or is dropped ends its flight with an error instead of leaving every
    /// later miss of the number waiting on it.
    fn spawn_fetch(&self, p: &Prepared, flight: Arc<Flight<FlightResult>>, deadline: Instant) {
        let guard = FlightGuard::new(
            self.flights.clone(),
            p.key,
            flight,
            Err((
                LookupStatus::Error,
                "the lookup task ended without an answer".into(),
            )),
        );
        let Some(runtime) = &self.runtime else {
            guard.finish(Err((LookupStatus::Error, "module is stopping".into())));
            return;
        };
        let org = p.org.clone();
        let caller = p.caller.clone();
        let names = p.names.clone();
        let key = p.key;
        let profile_index = p.profile_index;
        let fingerprint = p.fingerprint;
        let fleet = self.fleet.clone();
        let cache = self.cache.clone();
        let outbox = self.outbox.clone();
        let handed_off = Instant::now();
        let ticket = self.queue.hand_off(handed_off);
        runtime.spawn(async move {
            let started = Instant::now();
            let waited = ticket.start(started);
            // Released if the task ends without inserting (panic, drop) so a later stale hit
            // can claim the refresh again.
            let refresh_claim = RefreshClaim { cache: &cache, key };
            #[cfg(test)]
            test_hooks::before_fetch();
            let result = if started >= deadline {
                // The host kept the runtime from running it in time: Salesforce is not asked,
                // and nothing counts against it.
                Err((
                    LookupStatus::Overloaded,
                    format!(
                        "the module's runtime ran the request {} ms after the hand-off, past the deadline (host overloaded)",
                        waited.as_millis()
                    ),
                ))
            } else {
                let times = Times {
                    budget: deadline.saturating_duration_since(handed_off),
                    started,
                    deadline,
                };
                let lookup = Lookup {
                    org: &org,
                    profile_index,
                    names: &names,
                    caller: &caller.caller,
                    times,
                    outbox: &outbox,
                };
                match &fleet {
                    None => lookup.fetch().await,
                    Some(fleet) => lookup.through_fleet(fleet, fingerprint).await,
                }
            };
            if let Ok(outcome) = &result {
                cache.insert(key, outcome.clone());
                std::mem::forget(refresh_claim);
            }
            guard.finish(result);
        });
    }

    /// Test hook: occupies every thread of the runtime for `how_long`, as a host that keeps the
    /// CPUs busy starves it; returns once all of them are occupied.
    #[doc(hidden)]
    pub fn stall_runtime(&self, how_long: Duration) {
        let Some(runtime) = &self.runtime else { return };
        let all_in = Arc::new(std::sync::Barrier::new(self.runtime_threads + 1));
        for _ in 0..self.runtime_threads {
            let all_in = all_in.clone();
            runtime.spawn(async move {
                // Blocking a runtime thread on purpose: that is the hook's job.
                all_in.wait();
                std::thread::sleep(how_long);
            });
        }
        all_in.wait();
    }

    /// Stops the outbox and the token watcher, then the runtime, and waits until every thread it
    /// started has ended. Returns false if some did not end in time (the module must then not be
    /// unloaded).
    pub fn shutdown(self, wait: Duration) -> bool {
        let Engine {
            runtime,
            live_threads,
            outbox,
            spool_thread,
            stop,
            ..
        } = self;
        let _ = stop.send(true);
        let deadline = Instant::now() + wait;
        if let Some(runtime) = runtime {
            runtime.shutdown_timeout(wait);
        }
        // The spool thread writes what it was handed, then ends with its last sender.
        drop(outbox);
        while live_threads.load(Ordering::SeqCst) > 0
            || spool_thread.as_ref().is_some_and(|t| !t.is_finished())
        {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        if let Some(thread) = spool_thread {
            let _ = thread.join();
        }
        true
    }

    /// The sidecar's own view (`GET /status` on its loopback listener): token health per org,
    /// with what to fix. Waits at most `timeout`; says why when it cannot tell.
    pub fn sidecar_status(&self, timeout: Duration) -> serde_json::Value {
        let listen = self.snapshot.load().config.sidecar.admin_listen;
        if listen.port() == 0 {
            return serde_json::json!({"reachable": false, "error": "sidecar admin-listen has no fixed port"});
        }
        let host = if listen.ip().is_unspecified() {
            std::net::SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), listen.port())
        } else {
            listen
        };
        let Some(runtime) = &self.runtime else {
            return serde_json::json!({"reachable": false, "error": "module is stopping"});
        };
        let (tx, rx) = std::sync::mpsc::channel();
        runtime.spawn(async move {
            let result = async {
                let response = reqwest::Client::builder()
                    .timeout(timeout)
                    .build()
                    .map_err(|e| e.to_string())?
                    .get(format!("http://{host}/status"))
                    .send()
                    .await
                    .map_err(|e| e.without_url().to_string())?;
                response
                    .json::<serde_json::Value>()
                    .await
                    .map_err(|e| e.without_url().to_string())
            }
            .await;
            let _ = tx.send(result);
        });
        match rx.recv_timeout(timeout + Duration::from_millis(50)) {
            Ok(Ok(mut status)) => {
                status["reachable"] = serde_json::Value::Bool(true);
                status
            }
            Ok(Err(e)) => serde_json::json!({"reachable": false, "error": e}),
            Err(_) => serde_json::json!({"reachable": false, "error": "no answer in time"}),
        }
    }

    pub fn status(&self) -> serde_json::Value {
        let snapshot = self.snapshot.load();
        let now = Instant::now();
        let mut orgs: Vec<_> = snapshot.orgs.values().collect();
        orgs.sort_by(|a, b| a.config.name.cmp(&b.config.name));
        let now_ms = crate::outbox::now_ms();
        let orgs: Vec<serde_json::Value> = orgs
            .iter()
            .map(|org| {
                let credential = org.tokens.credential();
                serde_json::json!({
                    "org": org.config.name,
                    "api_version": org.config.api_version,
                    "api": match org.config.api { OrgApiKind::Rest => "rest", OrgApiKind::Soap => "soap" },
                    "token": credential.as_ref().map(|c: &Credential| serde_json::json!({
                        "generation": c.generation,
                        "age_s": now_ms.saturating_sub(c.issued_at_ms) / 1000,
                        "instance_url": c.session.instance_url,
                    })),
                    "token_error": org.tokens.last_error(),
                    "api_usage": org.limit().map(|l| format!("{}/{}", l.used, l.max)),
                    "call_time_budget": {
                        "share_percent": org.budget.share_percent(),
                        "state": org.budget.state().as_str(),
                    },
                    "breaker": match org.breaker.view(now) {
                        BreakerView::Closed => "closed".to_string(),
                        BreakerView::HalfOpen => "half-open".to_string(),
                        BreakerView::Open { reason, remaining } => format!(
                            "open ({}) for {}s",
                            match reason { Failure::LimitExceeded => "REQUEST_LIMIT_EXCEEDED", Failure::Unhealthy => "errors" },
                            remaining.as_secs()
                        ),
                    },
                    "requests": org.requests.load(Ordering::Relaxed),
                    "unauthorized": org.unauthorized.load(Ordering::Relaxed),
                    "in_flight": org.config.max_concurrent - org.concurrency.available_permits().min(org.config.max_concurrent),
                    "cached_entries": org.scopes().map(|s| self.cache.scope_entries(s)).sum::<usize>(),
                    "owners": org.owners.status(now),
                    "config_check": org.schema.status(now),
                    "queries": org.queries.iter().map(|(name, q)| (name.clone(), q.status())).collect::<serde_json::Map<_, _>>(),
                    "query_cached_entries": org.queries.values().map(|q| self.query_cache.scope_entries(q.scope)).sum::<usize>(),
                })
            })
            .collect();
        let cache = self.cache.stats();
        let c = self.outbox.counters();
        serde_json::json!({
            "orgs": orgs,
            "lookups": self.lookup_metrics.total(),
            "cache": {
                "entries": cache.entries, "hits": cache.hits, "stale_hits": cache.stale_hits,
                "misses": cache.misses, "inserts": cache.inserts, "evictions": cache.evictions,
                "max_entries": snapshot.config.settings.cache_max_entries,
            },
            "events": {
                "sidecar_connected": c.connected.load(Ordering::Relaxed) == 1,
                "sent": c.sent.load(Ordering::Relaxed),
                "dropped_queue_full": c.dropped_queue_full.load(Ordering::Relaxed),
                "dropped_pops_expired": c.dropped_pops_expired.load(Ordering::Relaxed),
                "call_logs_spooled": c.call_logs_spooled.load(Ordering::Relaxed),
                "call_logs_acked": c.call_logs_acked.load(Ordering::Relaxed),
                "spool_errors": c.spool_errors.load(Ordering::Relaxed),
                "spool_depth": c.spool_depth.load(Ordering::Relaxed),
                "call_logs_lost": c.call_logs_lost.load(Ordering::Relaxed),
                "record_writes_queued": c.writes_queued.load(Ordering::Relaxed),
                "record_writes_acked": c.writes_acked.load(Ordering::Relaxed),
                "record_writes_lost": c.writes_lost.load(Ordering::Relaxed),
            },
            "fleet": self.fleet.as_ref().map(|f| f.status()),
            "flights": self.flights.len(),
            "overloaded": self.queue.overloaded.load(Ordering::Relaxed),
            "runtime_queue_ms": {
                "now": self.queue.delay(Instant::now()).as_millis() as u64,
                "longest": self.queue.longest_wait().as_millis() as u64,
            },
        })
    }
}

/// What `reload` changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadReport {
    pub changed_orgs: Vec<String>,
    pub flushed_entries: usize,
    /// Settings that only take effect when the module is loaded again.
    pub restart_needed: Vec<String>,
}

struct Prepared {
    org: Arc<OrgRuntime>,
    profile_index: usize,
    names: Arc<VarNames>,
    fingerprint: u64,
    caller: Arc<ParsedCaller>,
    key: CacheKey,
    deadline: Instant,
    refresh_timeout: Duration,
}

impl Prepared {
    fn answer_from_flight(
        &self,
        result: Option<FlightResult>,
        started: Instant,
        queue: &RuntimeQueue,
    ) -> LookupAnswer {
        let (status, source, outcome, detail) = match result {
            Some(Ok(outcome)) => (
                outcome.status,
                Some(Source::Salesforce),
                Some(outcome),
                None,
            ),
            Some(Err((status, detail))) => (status, None, None, Some(detail)),
            None => {
                // A request has waited for the runtime for at least half of this call's time: the
                // local queue, not Salesforce, kept this call from its answer.
                let delay = queue.delay(Instant::now());
                if delay * 2 >= started.elapsed() {
                    (
                        LookupStatus::Overloaded,
                        None,
                        None,
                        Some(format!(
                            "requests wait {} ms for the module's runtime (host overloaded)",
                            delay.as_millis()
                        )),
                    )
                } else {
                    (
                        LookupStatus::Timeout,
                        None,
                        None,
                        Some("deadline passed before Salesforce answered".to_string()),
                    )
                }
            }
        };
        if status == LookupStatus::Overloaded {
            queue.overloaded.fetch_add(1, Ordering::Relaxed);
        }
        LookupAnswer {
            status,
            source,
            elapsed: started.elapsed(),
            org: Some(self.org.name),
            e164: Some(self.caller.e164),
            owner: outcome.as_ref().and_then(|o| self.org.owner_of(o)),
            outcome,
            detail,
        }
    }
}

/// A stale entry's refresh claim, released unless the fetch inserted a new answer.
struct RefreshClaim<'a> {
    cache: &'a LookupCache,
    key: CacheKey,
}

impl Drop for RefreshClaim<'_> {
    fn drop(&mut self) {
        self.cache.release_refresh(&self.key);
    }
}

#[cfg(test)]
mod test_hooks {
    type Hook = Box<dyn FnOnce() + Send>;

    /// Runs in the next fetch task before it asks Salesforce (e.g. to make it panic).
    pub static BEFORE_NEXT_FETCH: std::sync::Mutex<Option<Hook>> = std::sync::Mutex::new(None);

    pub fn before_fetch() {
        let hook = BEFORE_NEXT_FETCH.lock().unwrap().take();
        if let Some(hook) = hook {
            hook();
        }
    }
}

/// Asks Salesforce, once, retrying once on a refused token within the deadline.
/// When a request was handed off, started and must end.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Times {
    /// From the hand-off to the deadline.
    pub budget: Duration,
    pub started: Instant,
    pub deadline: Instant,
}

/// One lookup's request to Salesforce, and what it needs.
pub(crate) struct Lookup<'a> {
    pub org: &'a OrgRuntime,
    pub profile_index: usize,
    pub names: &'a Arc<VarNames>,
    pub caller: &'a CallerNumber,
    pub times: Times,
    pub outbox: &'a Outbox,
}

impl Lookup<'_> {
    pub(crate) async fn fetch(&self) -> FlightResult {
        fetch(
            self.org,
            self.profile_index,
            self.names,
            self.caller,
            self.times,
            self.outbox,
        )
        .await
    }
}

async fn fetch(
    org: &OrgRuntime,
    profile_index: usize,
    names: &Arc<VarNames>,
    caller: &CallerNumber,
    times: Times,
    outbox: &Outbox,
) -> FlightResult {
    // The profile as checked against the org: what the org does not have is left out.
    let checked = org.schema.current();
    let (profile, search) = match &checked.profiles[profile_index] {
        Ok(checked) => checked,
        Err(reason) => return Err((LookupStatus::Error, reason.clone())),
    };
    let sosl = search.query(caller);
    let reads = &org.reads;
    let records = call_org(org, times, outbox, |session| {
        let sosl = &sosl;
        async move { reads.search(&session, sosl).await }
    })
    .await?;
    match decide(profile, names, caller, org.config.default_country, &records) {
        Ok(outcome) => {
            org.breaker.on_success();
            Ok(Arc::new(outcome))
        }
        Err(e) => {
            org.breaker.on_failure(Failure::Unhealthy, Instant::now());
            Err((LookupStatus::Error, e.0))
        }
    }
}

/// One call-time request to an org, as lookups and named queries make it: admitted by the
/// org's breaker, within its concurrency cap, with the sidecar's token, retried once with a new
/// token when Salesforce refuses the session, and every failure mapped to the dialplan's
/// statuses. `request` sends it with the session it is given. On success the caller tells the
/// breaker (`on_success`) once it has made sense of the answer.
pub(crate) async fn call_org<T, F, Fut>(
    org: &OrgRuntime,
    times: Times,
    outbox: &Outbox,
    request: F,
) -> Result<T, (LookupStatus, String)>
where
    F: FnMut(natterbox_common::salesforce::Session) -> Fut,
    Fut: std::future::Future<Output = Result<(T, Option<LimitInfo>), SfError>>,
{
    let probe = match org.breaker.admit(Instant::now()) {
        Admission::Allowed => false,
        Admission::Probe => true,
        Admission::Rejected(Failure::LimitExceeded) => {
            return Err((
                LookupStatus::Throttled,
                "org is over its API limits; backing off".into(),
            ))
        }
        Admission::Rejected(Failure::Unhealthy) => {
            return Err((
                LookupStatus::Error,
                "Salesforce is failing; backing off".into(),
            ))
        }
    };
    let result = call_admitted(org, times, outbox, request).await;
    match &result {
        Err((LookupStatus::Timeout | LookupStatus::Unauthorized | LookupStatus::Overloaded, _))
            if probe =>
        {
            org.breaker.on_inconclusive()
        }
        _ => {}
    }
    result
}

async fn call_admitted<T, F, Fut>(
    org: &OrgRuntime,
    times: Times,
    outbox: &Outbox,
    mut request: F,
) -> Result<T, (LookupStatus, String)>
where
    F: FnMut(natterbox_common::salesforce::Session) -> Fut,
    Fut: std::future::Future<Output = Result<(T, Option<LimitInfo>), SfError>>,
{
    let deadline = tokio::time::Instant::from_std(times.deadline);
    let Ok(_permit) = tokio::time::timeout_at(deadline, org.concurrency.acquire()).await else {
        return Err((
            LookupStatus::Timeout,
            "waited for a free request slot until the deadline".into(),
        ));
    };
    let Some(mut credential) = org.tokens.credential() else {
        outbox.token_refresh(&org.config.name, 0, false);
        org.unauthorized.fetch_add(1, Ordering::Relaxed);
        return Err((
            LookupStatus::Unauthorized,
            "no access token from the sidecar yet".into(),
        ));
    };
    let mut retried = false;
    loop {
        org.requests.fetch_add(1, Ordering::Relaxed);
        let answer =
            match tokio::time::timeout_at(deadline, request(credential.session.clone())).await {
                Err(_) => Err(SfError::Timeout),
                Ok(r) => r,
            };
        match answer {
            Ok((value, limit)) => {
                org.record_limit(limit);
                org.worked_generation
                    .fetch_max(credential.generation, Ordering::Relaxed);
                return Ok(value);
            }
            Err(SfError::Api(e)) if e.is_invalid_session() => {
                org.unauthorized.fetch_add(1, Ordering::Relaxed);
                if retried {
                    return Err((
                        LookupStatus::Unauthorized,
                        "the new token was refused too".into(),
                    ));
                }
                // Whether this token served a search before: then it was revoked or expired,
                // not refused as soon as it was issued, and the sidecar refreshes at once.
                let worked = org.worked_generation.load(Ordering::Relaxed) == credential.generation;
                outbox.token_refresh(&org.config.name, credential.generation, worked);
                // Stop waiting a little before the deadline, so the caller hears "unauthorized"
                // rather than a bare timeout.
                let wait_until = deadline.checked_sub(TOKEN_WAIT_MARGIN).unwrap_or(deadline);
                match org
                    .tokens
                    .newer_than(credential.generation, wait_until)
                    .await
                {
                    Some(newer) => {
                        credential = newer;
                        retried = true;
                    }
                    None => {
                        return Err((
                            LookupStatus::Unauthorized,
                            "token refused and no new one arrived before the deadline".into(),
                        ))
                    }
                }
            }
            Err(SfError::Api(e)) if e.is_limit_exceeded() => {
                org.breaker
                    .on_failure(Failure::LimitExceeded, Instant::now());
                return Err((LookupStatus::Throttled, e.to_string()));
            }
            Err(SfError::Api(e)) if e.is_server_side() => {
                org.breaker.on_failure(Failure::Unhealthy, Instant::now());
                return Err((LookupStatus::Error, e.to_string()));
            }
            // A request Salesforce refuses (a field the org lacks, a malformed search): the
            // config is wrong, not Salesforce; no back-off would help.
            Err(SfError::Api(e)) => return Err((LookupStatus::Error, e.to_string())),
            Err(SfError::Timeout) => {
                let noticed = Instant::now();
                if !timeout_is_salesforces(times.budget, times.started, times.deadline, noticed) {
                    return Err((
                        LookupStatus::Overloaded,
                        format!(
                            "no answer by the deadline, but the module's runtime started the request {} ms late and noticed the deadline {} ms late (host overloaded)",
                            times.budget.saturating_sub(times.deadline.saturating_duration_since(times.started)).as_millis(),
                            noticed.saturating_duration_since(times.deadline).as_millis()
                        ),
                    ));
                }
                org.breaker.on_failure(Failure::Unhealthy, noticed);
                return Err((
                    LookupStatus::Timeout,
                    "Salesforce did not answer before the deadline".into(),
                ));
            }
            Err(e @ (SfError::Transport(_) | SfError::Garbage(_))) => {
                org.breaker.on_failure(Failure::Unhealthy, Instant::now());
                return Err((LookupStatus::Error, e.to_string()));
            }
        }
    }
}

/// What the metrics are read from, for the push task and `sf metrics`.
struct MetricsView {
    snapshot: Arc<ArcSwap<Snapshot>>,
    cache: Arc<LookupCache>,
    flights: Arc<Flights<CacheKey, FlightResult>>,
    lookups: Arc<LookupMetrics>,
    outbox: Outbox,
}

impl MetricsView {
    fn render(&self) -> String {
        let snapshot = self.snapshot.load();
        crate::metrics::render(&MetricsSources {
            lookups: &self.lookups,
            snapshot: &snapshot,
            cache: self.cache.stats(),
            flights: self.flights.len(),
            outbox: self.outbox.counters(),
        })
    }
}

const METRICS_PUSH_FIRST: Duration = Duration::from_secs(1);
const METRICS_PUSH_EVERY: Duration = Duration::from_secs(10);

/// Pushes the module's figures to the sidecar, which serves them on its `/metrics`.
async fn push_metrics(view: MetricsView, mut stop: watch::Receiver<bool>) {
    let mut pause = METRICS_PUSH_FIRST;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            changed = stop.changed() => if changed.is_err() || *stop.borrow() { return },
        }
        let text = view.render();
        // The line carries the text as a JSON string (quotes and newlines escaped).
        let line_len = serde_json::to_string(&text).map_or(usize::MAX, |j| j.len() + 40);
        if line_len < natterbox_common::wire::MAX_LINE_BYTES {
            view.outbox.module_metrics(text);
        } else {
            tracing::warn!(
                "module metrics of {line_len} bytes are over the event socket's line limit; not pushed"
            );
        }
        pause = METRICS_PUSH_EVERY;
    }
}

/// Re-reads token files when they change; faster while some org waits for a new token.
async fn watch_tokens(
    slots: Arc<parking_lot::Mutex<HashMap<String, Arc<TokenSlot>>>>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let slots = slots.lock().clone();
        for (org, slot) in &slots {
            if slot.poll(org) {
                tracing::info!("org {org}: new access token from the sidecar");
            }
        }
        let waiting = slots.values().any(|s| s.has_waiters());
        let pause = if waiting {
            TOKEN_POLL_WAITING
        } else {
            TOKEN_POLL
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            changed = stop.changed() => if changed.is_err() || *stop.borrow() { return },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use natterbox_common::handoff::{self, TokenFile};
    use natterbox_common::salesforce::oauth::TokenResponse;
    use sf_emulator::{Emulator, EmulatorOptions};

    fn engine_for(emulator: &Emulator, dir: &std::path::Path) -> Engine {
        let token: TokenResponse = reqwest::blocking::Client::new()
            .post(format!("{}/services/oauth2/token", emulator.instance_url()))
            .basic_auth("3MVG9Emu.CC.ClientId.natterbox", Some("cc-app-secret"))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .unwrap()
            .json()
            .unwrap();
        let tokens = dir.join("tokens");
        std::fs::create_dir_all(&tokens).unwrap();
        handoff::write(
            &tokens,
            &TokenFile {
                org: "acme".into(),
                access_token: token.access_token,
                instance_url: token.instance_url,
                issued_at_ms: 0,
                generation: 1,
            },
            None,
        )
        .unwrap();
        let xml = format!(
            r#"<configuration name="natterbox_sf.conf"><settings>
                 <param name="token-dir" value="{}"/><param name="spool-dir" value="{}"/>
                 <param name="event-socket" value="{}"/>
               </settings><orgs><org name="acme" login-url="{}" allow-insecure-http="true">
                 <profile name="default"><object name="Contact" fields="Id,Name"/></profile>
               </org></orgs></configuration>"#,
            tokens.display(),
            dir.join("spool").display(),
            dir.join("events.sock").display(),
            emulator.login_url(),
        );
        Engine::start(Config::parse(&xml).unwrap()).unwrap()
    }

    fn request(timeout: Duration) -> LookupRequest {
        LookupRequest {
            org: None,
            number: "+14155550123".into(),
            profile: None,
            timeout: Some(timeout),
        }
    }

    /// Issue 10: a fetch task that panics must not leave its flight open: the leader and the
    /// followers hear an error at once, and the next miss starts a new flight.
    #[test]
    fn a_panicking_fetch_task_ends_its_flight_for_every_waiter() {
        let emulator = Emulator::start_background(EmulatorOptions::default_seed()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let engine = Arc::new(engine_for(&emulator, dir.path()));
        let (release, released) = std::sync::mpsc::channel::<()>();
        *test_hooks::BEFORE_NEXT_FETCH.lock().unwrap() = Some(Box::new(move || {
            let _ = released.recv();
            panic!("injected: the fetch task panicked");
        }));
        let started = Instant::now();
        let callers: Vec<_> = (0..3)
            .map(|_| {
                let engine = engine.clone();
                std::thread::spawn(move || {
                    engine.lookup_blocking(&request(Duration::from_secs(10)))
                })
            })
            .collect();
        // The leader's task waits in the hook until every caller holds the flight: the map,
        // the task's guard and three callers.
        let deadline = Instant::now() + Duration::from_secs(5);
        while engine.flights.holders() < 5 {
            assert!(Instant::now() < deadline, "three callers on one flight");
            std::thread::yield_now();
        }
        release.send(()).unwrap();
        for caller in callers {
            let answer = caller.join().unwrap();
            assert_eq!(answer.status, LookupStatus::Error, "{answer:?}");
            assert_eq!(
                answer.detail.as_deref(),
                Some("the lookup task ended without an answer")
            );
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "waiters heard before their 10 s deadline: {:?}",
            started.elapsed()
        );
        assert!(engine.flights.is_empty());
        let again = engine.lookup_blocking(&request(Duration::from_secs(5)));
        assert_eq!(again.status, LookupStatus::Found, "{again:?}");
        assert_eq!(again.source, Some(Source::Salesforce));
        if let Ok(engine) = Arc::try_unwrap(engine) {
            assert!(engine.shutdown(Duration::from_secs(5)));
        }
    }
}
