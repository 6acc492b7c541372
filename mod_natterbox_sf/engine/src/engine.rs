//! The module's runtime: config snapshot, per-org state, the cache, the lookup path and the
//! outbox. FreeSWITCH's threads call `lookup_blocking`; everything that waits on the network runs
//! on the engine's own tokio runtime, which `shutdown` stops and joins.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use natterbox_common::config::{Config, OrgConfig, Settings};
use natterbox_common::phone::{CallerNumber, InvalidNumber};
use natterbox_common::salesforce::client::{http_client, ClientOptions};
use natterbox_common::salesforce::{LimitInfo, SalesforceClient, SfError};
use natterbox_common::wire::{CallLog, ScreenPop};
use tokio::sync::{watch, Semaphore};

use crate::breaker::{Admission, Breaker, BreakerView, Failure};
use crate::cache::{CacheKey, CachePolicy, CacheStats, Cached, LookupCache, ScopeId};
use crate::flight::{Flights, Joined};
use crate::outbox::Outbox;
use crate::outcome::{LookupStatus, Outcome, Source, VarNames};
use crate::search::{decide, SearchTemplate};
use crate::striped::StripedCounter;
use crate::tokens::{Credential, TokenSlot};

/// What the dialplan asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LookupRequest {
    pub org: Option<String>,
    pub number: String,
    pub profile: Option<String>,
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
    /// Why, for logs, when the status is not a settled answer.
    pub detail: Option<String>,
}

type FlightResult = Result<Arc<Outcome>, (LookupStatus, String)>;

/// One org as the running config sees it.
pub struct OrgRuntime {
    pub name: &'static str,
    pub config: OrgConfig,
    client: SalesforceClient,
    concurrency: Semaphore,
    pub breaker: Breaker,
    pub tokens: Arc<TokenSlot>,
    profiles: HashMap<String, ProfileRuntime>,
    /// Each profile's search, in the order of `config.profiles`.
    searches: Vec<SearchTemplate>,
    parsed: ParseMemo,
    limit_used: AtomicU64,
    limit_max: AtomicU64,
    pub requests: AtomicU64,
    pub unauthorized: AtomicU64,
    /// The newest token generation a search succeeded with.
    worked_generation: AtomicU64,
}

impl OrgRuntime {
    pub fn limit(&self) -> Option<LimitInfo> {
        let max = self.limit_max.load(Ordering::Relaxed);
        (max > 0).then(|| LimitInfo {
            used: self.limit_used.load(Ordering::Relaxed),
            max,
        })
    }

    fn record_limit(&self, limit: Option<LimitInfo>) {
        if let Some(l) = limit {
            self.limit_used.store(l.used, Ordering::Relaxed);
            self.limit_max.store(l.max, Ordering::Relaxed);
        }
    }

    pub fn scopes(&self) -> impl Iterator<Item = ScopeId> + '_ {
        self.profiles.values().map(|p| p.scope)
    }
}

/// A profile as lookups use it: its cache scope, its place in the org config, its variables.
struct ProfileRuntime {
    scope: ScopeId,
    index: usize,
    names: Arc<VarNames>,
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

/// Per org (the org's country decides how a number parses), keyed by the text as received.
type ParseMemo = papaya::HashMap<Box<str>, Result<Arc<ParsedCaller>, InvalidNumber>>;

/// Parsed numbers remembered; past this the memo starts over (callers from anywhere must not
/// grow it without bound).
const PARSE_MEMO_MAX: usize = 100_000;

/// An immutable view of the config, swapped in whole by a reload.
pub struct Snapshot {
    pub config: Config,
    pub orgs: HashMap<String, Arc<OrgRuntime>>,
}

pub struct Engine {
    runtime: Option<tokio::runtime::Runtime>,
    live_threads: Arc<AtomicUsize>,
    snapshot: ArcSwap<Snapshot>,
    cache: Arc<LookupCache>,
    flights: Arc<Flights<CacheKey, FlightResult>>,
    outbox: Outbox,
    stop: watch::Sender<bool>,
    next_scope: AtomicU32,
    /// Token slots by org name, kept across reloads so the last good token survives them.
    token_slots: Arc<parking_lot::Mutex<HashMap<String, Arc<TokenSlot>>>>,
    pub lookups: StripedCounter,
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

const TOKEN_WAIT_MARGIN: Duration = Duration::from_millis(25);
const TOKEN_POLL: Duration = Duration::from_millis(200);
const TOKEN_POLL_WAITING: Duration = Duration::from_millis(20);

impl Engine {
    /// Starts the runtime, the token watcher and the outbox for a parsed config.
    pub fn start(config: Config) -> Result<Engine, String> {
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
        let (outbox, outbox_task) = Outbox::new(
            settings.event_socket.clone(),
            settings.spool_dir.clone(),
            settings.event_queue_capacity,
            stop_rx.clone(),
        );
        let cache = Arc::new(LookupCache::new(cache_policy(&settings)));
        let mut engine = Engine {
            runtime: None,
            live_threads,
            snapshot: ArcSwap::from_pointee(Snapshot {
                config: config.clone(),
                orgs: HashMap::new(),
            }),
            cache,
            flights: Arc::new(Flights::new()),
            outbox,
            stop,
            next_scope: AtomicU32::new(1),
            token_slots: Arc::new(parking_lot::Mutex::new(HashMap::new())),
            lookups: StripedCounter::default(),
        };
        let snapshot = engine.build_snapshot(config, None)?;
        for org in snapshot.orgs.values() {
            org.tokens.poll(&org.config.name);
        }
        engine.snapshot.store(Arc::new(snapshot));
        if let Err(e) = std::fs::create_dir_all(&settings.spool_dir) {
            tracing::warn!(
                "cannot create spool dir {}: {e}",
                settings.spool_dir.display()
            );
        }
        runtime.spawn(outbox_task);
        runtime.spawn(watch_tokens(engine.token_slots.clone(), stop_rx));
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
                        },
                    )
                })
                .collect();
            orgs.insert(
                org.name.clone(),
                Arc::new(OrgRuntime {
                    name: intern(&org.name),
                    config: org.clone(),
                    client: SalesforceClient::new(http.clone(), &org.api_version),
                    concurrency: Semaphore::new(org.max_concurrent),
                    breaker: Breaker::default(),
                    tokens: self.token_slot(&config.settings.token_dir, org),
                    profiles,
                    searches: org.profiles.iter().map(SearchTemplate::new).collect(),
                    parsed: papaya::HashMap::new(),
                    limit_used: AtomicU64::new(0),
                    limit_max: AtomicU64::new(0),
                    requests: AtomicU64::new(0),
                    unauthorized: AtomicU64::new(0),
                    worked_generation: AtomicU64::new(0),
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
        ]
        .into_iter()
        .filter_map(|(name, changed)| changed.then_some(name))
        .collect();
        let new = self.build_snapshot(config, Some(&old))?;
        let mut dropped_scopes = Vec::new();
        let mut changed_orgs = Vec::new();
        for (name, org) in &old.orgs {
            let kept = new.orgs.get(name).is_some_and(|n| Arc::ptr_eq(n, org));
            if !kept {
                dropped_scopes.extend(org.scopes());
                changed_orgs.push(name.clone());
            }
        }
        for (name, org) in &new.orgs {
            if !old.orgs.contains_key(name) {
                changed_orgs.push(name.clone());
            }
            org.tokens.poll(name);
        }
        self.cache.set_policy(cache_policy(&new.config.settings));
        self.token_slots
            .lock()
            .retain(|name, _| new.orgs.contains_key(name));
        self.snapshot.store(Arc::new(new));
        let flushed = self.cache.flush(Some(&dropped_scopes));
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

    /// Drops cached answers of one org, or of all.
    pub fn flush(&self, org: Option<&str>) -> Result<usize, String> {
        match org {
            None => Ok(self.cache.flush(None)),
            Some(name) => {
                let snapshot = self.snapshot.load();
                let org = snapshot
                    .orgs
                    .get(name)
                    .ok_or_else(|| format!("no org \"{name}\""))?;
                let scopes: Vec<ScopeId> = org.scopes().collect();
                Ok(self.cache.flush(Some(&scopes)))
            }
        }
    }

    pub fn screen_pop(&self, pop: ScreenPop) {
        self.outbox.screen_pop(pop);
    }

    pub fn call_log(&self, log: CallLog) {
        self.outbox.call_log(log);
    }

    /// The lookup, for FreeSWITCH's threads: returns by the deadline whatever happens.
    pub fn lookup_blocking(&self, request: &LookupRequest) -> LookupAnswer {
        let started = Instant::now();
        match self.cached_or_flight(request, started) {
            Ok(answer) => answer,
            Err((prepared, flight)) => {
                let result = flight.wait_until(prepared.deadline);
                prepared.answer_from_flight(result, started)
            }
        }
    }

    /// The same lookup for async callers (tests, benchmarks).
    pub async fn lookup(&self, request: &LookupRequest) -> LookupAnswer {
        let started = Instant::now();
        match self.cached_or_flight(request, started) {
            Ok(answer) => answer,
            Err((prepared, flight)) => {
                let result = flight
                    .wait(tokio::time::Instant::from_std(prepared.deadline))
                    .await;
                prepared.answer_from_flight(result, started)
            }
        }
    }

    fn parse(org: &OrgRuntime, number: &str) -> Result<Arc<ParsedCaller>, InvalidNumber> {
        let memo = org.parsed.pin();
        if let Some(parsed) = memo.get(number) {
            return parsed.clone();
        }
        let parsed = CallerNumber::parse(number, org.config.default_country).map(|caller| {
            Arc::new(ParsedCaller {
                e164: E164Text::new(caller.e164()),
                caller,
            })
        });
        if memo.len() >= PARSE_MEMO_MAX {
            memo.clear();
        }
        memo.insert(number.into(), parsed.clone());
        parsed
    }

    /// Everything up to the cache: a settled answer (hit, stale hit, or a refusal), or the
    /// flight to wait on.
    #[allow(clippy::type_complexity)]
    fn cached_or_flight(
        &self,
        request: &LookupRequest,
        started: Instant,
    ) -> Result<LookupAnswer, (Prepared, Arc<crate::flight::Flight<FlightResult>>)> {
        self.lookups.add(1);
        let snapshot = self.snapshot.load();
        let fail = |status, org: Option<&'static str>, detail: String| LookupAnswer {
            status,
            source: None,
            elapsed: started.elapsed(),
            org,
            e164: None,
            outcome: None,
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
            outcome: Some(outcome),
            detail: None,
        };
        let prepare = || Prepared {
            org: org.clone(),
            profile_index: profile.index,
            names: profile.names.clone(),
            caller: parsed.clone(),
            key,
            deadline: started
                + request
                    .timeout
                    .unwrap_or(snapshot.config.settings.lookup_timeout)
                    .min(Duration::from_secs(60)),
            refresh_timeout: snapshot.config.settings.lookup_timeout,
        };
        match self.cache.get(&key) {
            Cached::Fresh(outcome) => Ok(hit(outcome, Source::Cache)),
            Cached::Stale {
                outcome,
                claimed_refresh,
            } => {
                if claimed_refresh {
                    if let Joined::Leader(_) = self.flights.join(&key) {
                        let p = prepare();
                        self.spawn_fetch(&p, Instant::now() + p.refresh_timeout);
                    }
                }
                Ok(hit(outcome, Source::Stale))
            }
            Cached::Miss => match self.flights.join(&key) {
                Joined::Leader(flight) => {
                    let p = prepare();
                    self.spawn_fetch(&p, p.deadline);
                    Err((p, flight))
                }
                Joined::Follower(flight) => Err((prepare(), flight)),
            },
        }
    }

    fn spawn_fetch(&self, p: &Prepared, deadline: Instant) {
        let Some(runtime) = &self.runtime else {
            self.flights.finish(
                &p.key,
                Err((LookupStatus::Error, "module is stopping".into())),
            );
            return;
        };
        let org = p.org.clone();
        let caller = p.caller.clone();
        let names = p.names.clone();
        let key = p.key;
        let profile_index = p.profile_index;
        let cache = self.cache.clone();
        let flights = self.flights.clone();
        let outbox = self.outbox.clone();
        runtime.spawn(async move {
            let deadline = tokio::time::Instant::from_std(deadline);
            let result = fetch(
                &org,
                profile_index,
                &names,
                &caller.caller,
                deadline,
                &outbox,
            )
            .await;
            match &result {
                Ok(outcome) => cache.insert(key, outcome.clone()),
                Err(_) => cache.release_refresh(&key),
            }
            flights.finish(&key, result);
        });
    }

    /// Stops the outbox and the token watcher, then the runtime, and waits until every thread it
    /// started has ended. Returns false if some did not end in time (the module must then not be
    /// unloaded).
    pub fn shutdown(mut self, wait: Duration) -> bool {
        let _ = self.stop.send(true);
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(wait);
        }
        let deadline = Instant::now() + wait;
        while self.live_threads.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        self.live_threads.load(Ordering::SeqCst) == 0
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
                    "token": credential.as_ref().map(|c: &Credential| serde_json::json!({
                        "generation": c.generation,
                        "age_s": now_ms.saturating_sub(c.issued_at_ms) / 1000,
                        "instance_url": c.session.instance_url,
                    })),
                    "token_error": org.tokens.last_error(),
                    "api_usage": org.limit().map(|l| format!("{}/{}", l.used, l.max)),
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
                })
            })
            .collect();
        let cache = self.cache.stats();
        let c = self.outbox.counters();
        serde_json::json!({
            "orgs": orgs,
            "lookups": self.lookups.sum(),
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
            },
            "flights": self.flights.len(),
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
    caller: Arc<ParsedCaller>,
    key: CacheKey,
    deadline: Instant,
    refresh_timeout: Duration,
}

impl Prepared {
    fn answer_from_flight(&self, result: Option<FlightResult>, started: Instant) -> LookupAnswer {
        let (status, source, outcome, detail) = match result {
            Some(Ok(outcome)) => (
                outcome.status,
                Some(Source::Salesforce),
                Some(outcome),
                None,
            ),
            Some(Err((status, detail))) => (status, None, None, Some(detail)),
            None => (
                LookupStatus::Timeout,
                None,
                None,
                Some("deadline passed before Salesforce answered".to_string()),
            ),
        };
        LookupAnswer {
            status,
            source,
            elapsed: started.elapsed(),
            org: Some(self.org.name),
            e164: Some(self.caller.e164),
            outcome,
            detail,
        }
    }
}

/// Asks Salesforce, once, retrying once on a refused token within the deadline.
async fn fetch(
    org: &OrgRuntime,
    profile_index: usize,
    names: &Arc<VarNames>,
    caller: &CallerNumber,
    deadline: tokio::time::Instant,
    outbox: &Outbox,
) -> FlightResult {
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
    let result = fetch_admitted(org, profile_index, names, caller, deadline, outbox).await;
    match &result {
        Err((LookupStatus::Timeout, _)) | Err((LookupStatus::Unauthorized, _)) if probe => {
            org.breaker.on_inconclusive()
        }
        _ => {}
    }
    result
}

async fn fetch_admitted(
    org: &OrgRuntime,
    profile_index: usize,
    names: &Arc<VarNames>,
    caller: &CallerNumber,
    deadline: tokio::time::Instant,
    outbox: &Outbox,
) -> FlightResult {
    let Ok(_permit) = tokio::time::timeout_at(deadline, org.concurrency.acquire()).await else {
        return Err((
            LookupStatus::Timeout,
            "waited for a free request slot until the deadline".into(),
        ));
    };
    let profile = &org.config.profiles[profile_index];
    let sosl = org.searches[profile_index].query(caller);
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
            match tokio::time::timeout_at(deadline, org.client.search(&credential.session, &sosl))
                .await
            {
                Err(_) => Err(SfError::Timeout),
                Ok(r) => r,
            };
        match answer {
            Ok((records, limit)) => {
                org.record_limit(limit);
                org.worked_generation
                    .fetch_max(credential.generation, Ordering::Relaxed);
                return match decide(profile, names, caller, org.config.default_country, &records) {
                    Ok(outcome) => {
                        org.breaker.on_success();
                        Ok(Arc::new(outcome))
                    }
                    Err(e) => {
                        org.breaker.on_failure(Failure::Unhealthy, Instant::now());
                        Err((LookupStatus::Error, e.0))
                    }
                };
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
                org.breaker.on_failure(Failure::Unhealthy, Instant::now());
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
