//! Access tokens per org: obtained at start, refreshed before the session timeout and at once when
//! the module (or our own REST calls) report a 401 for the current generation, handed off to the
//! module through `natterbox_common::handoff`.
//!
//! Coalescing: a 401 report names the token generation it was refused with. Reports for an older
//! generation are ignored (that token is already replaced); the first report for the current
//! generation schedules one refresh, and every further one for it is absorbed.
//!
//! Dead tokens: if the tokens the endpoint issues are refused right away (an org policy, an IP
//! restriction, the emulator's dead-refresh mode), refreshing on every report would loop. After
//! `FRESH_REJECTIONS_ALLOWED` such quick rejections in a row, refreshes back off exponentially.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use natterbox_common::config::OrgConfig;
use natterbox_common::handoff::{self, TokenFile};
use natterbox_common::salesforce::Session;
use serde::Serialize;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::backoff::{self, now_ms};
use crate::fleet::token_lease::{Coordinated, OrgView, TokenLease};
use crate::metrics::{label, Metrics, OrgCounters};
use crate::oauth::{self, TokenError};

/// A token refused within this long of being issued counts as a quick rejection.
const FRESH_WINDOW: Duration = Duration::from_secs(60);
/// Quick rejections refreshed at once before refreshes back off.
const FRESH_REJECTIONS_ALLOWED: u32 = 3;
const FAILURE_BASE: Duration = Duration::from_secs(1);
const DEAD_TOKEN_BASE: Duration = Duration::from_secs(5);
const BACKOFF_CAP: Duration = Duration::from_secs(300);
/// A refresh the fleet could not coordinate is tried again this soon.
const FLEET_RETRY: Duration = Duration::from_secs(1);
/// Proactive refresh at this share of the session timeout since the token was issued, and not
/// before the rest of the timeout has passed since it arrived: the token endpoint may hand back
/// a session issued long ago (still alive, as every call extends it), and refreshing it at once
/// would only bring the same session back.
const PROACTIVE_SHARE: f64 = 0.8;

#[derive(Debug, Clone, Serialize)]
pub struct TokenStatus {
    pub org: String,
    pub flow: &'static str,
    pub generation: u64,
    pub has_token: bool,
    pub instance_url: Option<String>,
    pub issued_at_ms: Option<u64>,
    pub healthy: bool,
    pub consecutive_failures: u32,
    pub fresh_rejections: u32,
    pub last_error: Option<String>,
    pub last_error_code: Option<String>,
    pub advice: Option<String>,
    pub next_refresh_in_ms: Option<u64>,
    /// In a fleet (refresh-token orgs): the fence of the lease the current token was obtained
    /// under, and how many tokens this sidecar took from the fleet instead of refreshing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fleet_fence: Option<u64>,
    pub fleet_adopted: u64,
}

struct OrgState {
    config: OrgConfig,
    session: Option<Session>,
    generation: u64,
    /// When the session was issued: the answer's `issued_at`, else when the answer arrived.
    issued_at: Option<Instant>,
    issued_at_ms: Option<u64>,
    /// When the token endpoint's answer arrived.
    received_at: Option<Instant>,
    /// Highest generation reported refused and not yet replaced.
    requested: Option<u64>,
    fresh_rejections: u32,
    failures: u32,
    not_before: Option<Instant>,
    last_error: Option<TokenError>,
    dead_tokens: bool,
    attempts: u64,
    /// The org id from the token's identity URL (the Pub/Sub API's `tenantid`).
    org_id: Option<String>,
    rotated_refresh_token: Option<String>,
    next_refresh_at: Option<Instant>,
    fleet_fence: Option<u64>,
    fleet_adopted: u64,
}

impl OrgState {
    /// An org with no token yet, continuing from `generation`.
    fn new(config: OrgConfig, generation: u64, rotated_refresh_token: Option<String>) -> OrgState {
        OrgState {
            config,
            session: None,
            generation,
            issued_at: None,
            issued_at_ms: None,
            received_at: None,
            requested: None,
            fresh_rejections: 0,
            failures: 0,
            not_before: None,
            last_error: None,
            dead_tokens: false,
            attempts: 0,
            org_id: None,
            rotated_refresh_token,
            next_refresh_at: None,
            fleet_fence: None,
            fleet_adopted: 0,
        }
    }
}

pub struct OrgTokens {
    name: String,
    state: Mutex<OrgState>,
    wake: Notify,
    /// The current generation, for callers waiting on a refresh.
    generation_tx: watch::Sender<u64>,
    /// Token attempts so far, so that start-up can wait for the first one.
    attempts_tx: watch::Sender<u64>,
    counters: Arc<OrgCounters>,
}

/// An org's token state and the task that refreshes it.
type OrgEntry = (Arc<OrgTokens>, JoinHandle<()>);

pub struct TokenManager {
    orgs: RwLock<HashMap<String, OrgEntry>>,
    http: reqwest::Client,
    token_dir: RwLock<PathBuf>,
    owner: RwLock<Option<(u32, u32)>>,
    /// Where rotated refresh tokens are kept (the outbox's directory, not the token directory
    /// the module reads).
    state_dir: PathBuf,
    metrics: Arc<Metrics>,
    /// In a fleet: one refresher at a time for refresh-token orgs (`fleet/token_lease.rs`).
    fleet_lease: RwLock<Option<Arc<TokenLease>>>,
}

fn flow_name(org: &OrgConfig) -> &'static str {
    match &org.auth {
        Some(natterbox_common::config::AuthConfig::JwtBearer { .. }) => "jwt-bearer",
        Some(natterbox_common::config::AuthConfig::RefreshToken { .. }) => "refresh-token",
        Some(natterbox_common::config::AuthConfig::ClientCredentials { .. }) => {
            "client-credentials"
        }
        None => "none",
    }
}

/// Resolves `token-file-owner` to a uid and gid.
pub fn resolve_owner(name: &str) -> Result<(u32, u32), String> {
    match nix::unistd::User::from_name(name) {
        Ok(Some(user)) => Ok((user.uid.as_raw(), user.gid.as_raw())),
        Ok(None) => Err(format!("token-file-owner \"{name}\": no such user")),
        Err(e) => Err(format!("token-file-owner \"{name}\": {e}")),
    }
}

/// The generation in an existing hand-off file, so that generations keep increasing across
/// restarts. A missing or unreadable file starts at 0.
fn existing_generation(dir: &std::path::Path, org: &str) -> u64 {
    let path = handoff::token_path(dir, org);
    match handoff::read(&path) {
        Ok(file) => file.generation,
        Err(_) => std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v.get("generation").and_then(|g| g.as_u64()))
            .unwrap_or(0),
    }
}

impl TokenManager {
    pub fn new(
        http: reqwest::Client,
        token_dir: PathBuf,
        owner: Option<(u32, u32)>,
        state_dir: PathBuf,
        metrics: Arc<Metrics>,
    ) -> Arc<TokenManager> {
        Arc::new(TokenManager {
            orgs: RwLock::new(HashMap::new()),
            http,
            token_dir: RwLock::new(token_dir),
            owner: RwLock::new(owner),
            state_dir,
            metrics,
            fleet_lease: RwLock::new(None),
        })
    }

    /// Refresh-token orgs refresh through the fleet from now on (set before `apply`).
    pub fn use_fleet(&self, lease: TokenLease) {
        *self.fleet_lease.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(lease));
    }

    fn fleet_lease(&self) -> Option<Arc<TokenLease>> {
        self.fleet_lease
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Starts, restarts or stops per-org tasks to match `orgs`. An org whose config is unchanged
    /// keeps its task and token; one whose config changed gets a fresh token.
    pub fn apply(
        self: &Arc<Self>,
        orgs: &[OrgConfig],
        token_dir: PathBuf,
        owner: Option<(u32, u32)>,
    ) {
        *self.token_dir.write().unwrap_or_else(|e| e.into_inner()) = token_dir;
        *self.owner.write().unwrap_or_else(|e| e.into_inner()) = owner;
        let mut map = self.orgs.write().unwrap_or_else(|e| e.into_inner());
        map.retain(|name, (_, task)| {
            let keep = orgs.iter().any(|o| &o.name == name);
            if !keep {
                task.abort();
            }
            keep
        });
        for org in orgs.iter().filter(|o| o.auth.is_some()) {
            if let Some((existing, _)) = map.get(&org.name) {
                let mut state = existing.lock();
                if state.config == *org {
                    continue;
                }
                let auth_changed =
                    state.config.auth != org.auth || state.config.login_url != org.login_url;
                state.config = org.clone();
                if auth_changed {
                    // New credentials: get a token with them now.
                    state.requested = Some(state.generation);
                    state.rotated_refresh_token = None;
                    state.not_before = None;
                    state.failures = 0;
                }
                drop(state);
                existing.wake.notify_one();
                continue;
            }
            let dir = self
                .token_dir
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            let generation = existing_generation(&dir, &org.name);
            let rotated = rotated::load(&self.state_dir, org);
            if rotated.is_some() {
                tracing::info!(org = %org.name, "using the rotated refresh token saved by an earlier run");
            }
            let tokens = Arc::new(OrgTokens {
                name: org.name.clone(),
                state: Mutex::new(OrgState::new(org.clone(), generation, rotated)),
                wake: Notify::new(),
                generation_tx: watch::channel(generation).0,
                attempts_tx: watch::channel(0).0,
                counters: self.metrics.org(&org.name),
            });
            let task = tokio::spawn(run_org(self.clone(), tokens.clone()));
            map.insert(org.name.clone(), (tokens, task));
        }
    }

    fn org(&self, name: &str) -> Option<Arc<OrgTokens>> {
        self.orgs
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .map(|(o, _)| o.clone())
    }

    /// Waits until every org has made its first token attempt, or `timeout`.
    pub async fn wait_first_attempts(&self, timeout: Duration) {
        let orgs: Vec<_> = self
            .orgs
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(|(o, _)| o.clone())
            .collect();
        let all = async {
            for org in orgs {
                let mut rx = org.attempts_tx.subscribe();
                let _ = rx.wait_for(|n| *n > 0).await;
            }
        };
        let _ = tokio::time::timeout(timeout, all).await;
    }

    /// The org's current session and its generation.
    pub fn session(&self, org: &str) -> Option<(Session, u64)> {
        let org = self.org(org)?;
        let state = org.lock();
        state.session.clone().map(|s| (s, state.generation))
    }

    /// The org's id, as its current token's identity URL names it.
    pub fn org_id(&self, org: &str) -> Option<String> {
        self.org(org)?.lock().org_id.clone()
    }

    /// The token of `generation` was refused with 401. Returns true when this report caused a
    /// refresh, false when it was coalesced or ignored.
    /// `worked`: the token served requests before it was refused (revoked or expired since),
    /// so however young it is, it is not a dead token.
    pub fn report_rejected(&self, org: &str, generation: u64, worked: bool) -> bool {
        let Some(org) = self.org(org) else {
            return false;
        };
        let mut state = org.lock();
        if generation < state.generation || state.requested.is_some_and(|r| r >= generation) {
            org.counters.token_reports_coalesced.inc();
            return false;
        }
        // A generation we have not written (a module that kept a token file from before the
        // token directory was lost) is a report about the current token.
        let generation = generation.min(state.generation);
        let fresh = !worked
            && state
                .received_at
                .is_some_and(|t| t.elapsed() < FRESH_WINDOW);
        if fresh {
            state.fresh_rejections += 1;
            org.counters.tokens_rejected_fresh.inc();
            if state.fresh_rejections > FRESH_REJECTIONS_ALLOWED {
                if !state.dead_tokens {
                    tracing::error!(
                        org = %org.name,
                        rejections = state.fresh_rejections,
                        "Salesforce refuses the tokens its token endpoint issues; backing off refreshes \
                         (check the connected app's IP relaxation and session policies, and the user's API permission)"
                    );
                }
                state.dead_tokens = true;
                let wait = backoff::delay(
                    state.fresh_rejections - FRESH_REJECTIONS_ALLOWED,
                    DEAD_TOKEN_BASE,
                    BACKOFF_CAP,
                );
                let until = Instant::now() + wait;
                state.not_before = Some(state.not_before.map_or(until, |t| t.max(until)));
            }
        } else {
            state.fresh_rejections = 0;
            state.dead_tokens = false;
        }
        state.requested = Some(generation);
        drop(state);
        org.wake.notify_one();
        true
    }

    /// A REST call with this generation succeeded: the token works.
    pub fn report_ok(&self, org: &str, generation: u64) {
        if let Some(org) = self.org(org) {
            let mut state = org.lock();
            if state.generation == generation {
                state.fresh_rejections = 0;
                state.dead_tokens = false;
            }
        }
    }

    /// Waits until the org's generation is above `generation`, or `timeout`.
    pub async fn wait_newer(&self, org: &str, generation: u64, timeout: Duration) -> bool {
        let Some(org) = self.org(org) else {
            return false;
        };
        let mut rx = org.generation_tx.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|g| *g > generation))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    pub fn status(&self) -> Vec<TokenStatus> {
        let map = self.orgs.read().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<TokenStatus> = map
            .values()
            .map(|(org, _)| {
                let s = org.lock();
                let mut advice = s.last_error.as_ref().map(|e| e.advice().to_string());
                let mut last_error = s.last_error.as_ref().map(|e| e.to_string());
                let mut code = s.last_error.as_ref().map(|e| e.code());
                if s.dead_tokens && last_error.is_none() {
                    last_error = Some(format!(
                        "{} tokens in a row were refused right after they were issued",
                        s.fresh_rejections
                    ));
                    code = Some("token_refused_when_fresh".into());
                    advice = Some("check the connected app's IP relaxation and session policies and the user's API Enabled permission".into());
                }
                TokenStatus {
                    org: org.name.clone(),
                    flow: flow_name(&s.config),
                    generation: s.generation,
                    has_token: s.session.is_some(),
                    instance_url: s.session.as_ref().map(|x| x.instance_url.clone()),
                    issued_at_ms: s.issued_at_ms,
                    healthy: s.session.is_some() && s.last_error.is_none() && !s.dead_tokens,
                    consecutive_failures: s.failures,
                    fresh_rejections: s.fresh_rejections,
                    last_error,
                    last_error_code: code,
                    advice,
                    next_refresh_in_ms: s
                        .next_refresh_at
                        .map(|t| t.saturating_duration_since(Instant::now()).as_millis() as u64),
                    fleet_fence: s.fleet_fence,
                    fleet_adopted: s.fleet_adopted,
                }
            })
            .collect();
        out.sort_by(|a, b| a.org.cmp(&b.org));
        out
    }

    /// Token state gauges for `/metrics`.
    pub fn render_metrics(&self) -> String {
        let mut out = String::from(
            "# HELP natterbox_sidecar_token_healthy 1 when the org has a working token.\n\
             # TYPE natterbox_sidecar_token_healthy gauge\n",
        );
        let status = self.status();
        for s in &status {
            out.push_str(&format!(
                "natterbox_sidecar_token_healthy{{org=\"{}\"}} {}\n",
                label(&s.org),
                u8::from(s.healthy)
            ));
        }
        out.push_str(
            "# HELP natterbox_sidecar_token_generation Generation of the org's handed-off token.\n\
             # TYPE natterbox_sidecar_token_generation gauge\n",
        );
        for s in &status {
            out.push_str(&format!(
                "natterbox_sidecar_token_generation{{org=\"{}\"}} {}\n",
                label(&s.org),
                s.generation
            ));
        }
        out.push_str(
            "# HELP natterbox_sidecar_token_error 1 for the org's last token error code, until a token is obtained.\n\
             # TYPE natterbox_sidecar_token_error gauge\n",
        );
        for s in &status {
            if let Some(code) = &s.last_error_code {
                out.push_str(&format!(
                    "natterbox_sidecar_token_error{{org=\"{}\",error=\"{}\"}} 1\n",
                    label(&s.org),
                    label(code)
                ));
            }
        }
        out
    }

    pub fn shutdown(&self) {
        let map = self.orgs.read().unwrap_or_else(|e| e.into_inner());
        for (_, task) in map.values() {
            task.abort();
        }
    }
}

impl OrgTokens {
    fn lock(&self) -> std::sync::MutexGuard<'_, OrgState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// When the org's task should next request a token (None: wait for a report).
fn next_attempt(state: &OrgState) -> Option<Instant> {
    let due = if state.session.is_none() || state.requested.is_some() {
        Instant::now()
    } else {
        let timeout = state.config.session_timeout;
        let by_issue = state.issued_at? + timeout.mul_f64(PROACTIVE_SHARE);
        let by_arrival = state.received_at? + timeout.mul_f64(1.0 - PROACTIVE_SHARE);
        by_issue.max(by_arrival)
    };
    Some(state.not_before.map_or(due, |nb| nb.max(due)))
}

async fn run_org(manager: Arc<TokenManager>, org: Arc<OrgTokens>) {
    loop {
        let next = {
            let mut state = org.lock();
            let next = next_attempt(&state);
            state.next_refresh_at = next;
            next
        };
        let now = Instant::now();
        match next {
            Some(at) if at <= now => {}
            Some(at) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(at.into()) => {}
                    _ = org.wake.notified() => continue,
                }
                continue;
            }
            None => {
                org.wake.notified().await;
                continue;
            }
        }
        refresh_once(&manager, &org).await;
    }
}

async fn refresh_once(manager: &TokenManager, org: &OrgTokens) {
    let (config, rotated, requested_generation, current_access) = {
        let state = org.lock();
        (
            state.config.clone(),
            state.rotated_refresh_token.clone(),
            state.requested,
            state.session.as_ref().map(|s| s.access_token.clone()),
        )
    };
    let request = |refresh: Option<String>| {
        org.counters.token_requests.inc();
        let (http, config) = (manager.http.clone(), config.clone());
        async move { oauth::request_token(&http, &config, refresh.as_deref()).await }
    };
    // A refresh-token org in a fleet: one refresher at a time (rotation kills the token spent).
    let lease = manager.fleet_lease().filter(|_| {
        matches!(
            config.auth,
            Some(natterbox_common::config::AuthConfig::RefreshToken { .. })
        )
    });
    let (result, fleet) = match (lease, rotated::configured_hash(&config)) {
        (Some(lease), Some(configured_sha256)) => {
            let view = OrgView {
                org: &org.name,
                current_access: current_access.as_deref(),
                configured_sha256: &configured_sha256,
                local_refresh: rotated.as_deref(),
            };
            match lease.refresh(view, request).await {
                Coordinated::Refreshed { result, fence } => (result, Some((fence, false))),
                Coordinated::Adopted { token, fence } => (Ok(token), Some((fence, true))),
                Coordinated::NotNow(error) => {
                    not_now(org, error);
                    return;
                }
            }
        }
        _ => (request(rotated.clone()).await, None),
    };
    let adopted = fleet.is_some_and(|(_, adopted)| adopted);
    let (received_at, received_ms) = (Instant::now(), now_ms());
    let attempts = {
        let mut state = org.lock();
        state.attempts += 1;
        state.attempts
    };
    match result {
        Ok(token) => {
            // The JWT bearer flow's answer has no issued_at: then the session dates from its arrival.
            let issued_at_ms = token.issued_at_ms_or(received_ms);
            let issued_at = received_at
                .checked_sub(Duration::from_millis(received_ms - issued_at_ms))
                .unwrap_or(received_at);
            // The state moves to the new generation before the file appears, so a 401 report
            // for it (the module reads the file at once) is never taken for a future one.
            let generation = {
                let mut state = org.lock();
                let generation = state.generation + 1;
                state.session = Some(Session {
                    instance_url: token.instance_url.clone(),
                    access_token: token.access_token.clone(),
                });
                state.generation = generation;
                state.org_id = token.org_id().map(str::to_string);
                state.issued_at = Some(issued_at);
                state.issued_at_ms = Some(issued_at_ms);
                state.received_at = Some(received_at);
                if let Some((fence, adopted)) = fleet {
                    state.fleet_fence = Some(fence);
                    state.fleet_adopted += u64::from(adopted);
                }
                if state.requested.is_some_and(|r| r < generation) {
                    state.requested = None;
                }
                if let Some(new_refresh) = token.refresh_token.clone() {
                    if matches!(
                        config.auth,
                        Some(natterbox_common::config::AuthConfig::RefreshToken { .. })
                    ) {
                        if let Err(e) = rotated::save(&manager.state_dir, &config, &new_refresh) {
                            tracing::error!(org = %org.name, error = %e, "the connected app rotated the refresh token and it cannot be saved: after a restart, authorize again (or turn rotation off)");
                        }
                        state.rotated_refresh_token = Some(new_refresh);
                    }
                }
                generation
            };
            let file = TokenFile {
                org: org.name.clone(),
                access_token: token.access_token.clone(),
                instance_url: token.instance_url.clone(),
                issued_at_ms,
                generation,
            };
            let dir = manager
                .token_dir
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            let owner = *manager.owner.read().unwrap_or_else(|e| e.into_inner());
            let written = tokio::task::spawn_blocking(move || {
                crate::dirs::ensure(&dir)?;
                handoff::write(&dir, &file, owner)
            })
            .await
            .unwrap_or_else(|e| Err(format!("hand-off task failed: {e}")));
            let mut state = org.lock();
            match written {
                Ok(()) => {
                    state.failures = 0;
                    state.last_error = None;
                    if !state.dead_tokens {
                        state.not_before = None;
                    }
                    if !adopted {
                        org.counters.token_refreshes.inc();
                    }
                    tracing::info!(
                        org = %org.name,
                        generation,
                        instance_url = %token.instance_url,
                        requested = ?requested_generation,
                        fleet_fence = ?fleet.map(|(fence, _)| fence),
                        "{}",
                        if adopted {
                            "token taken from the fleet and handed off"
                        } else {
                            "token obtained and handed off"
                        }
                    );
                }
                Err(e) => {
                    state.failures += 1;
                    org.counters.token_failures.inc();
                    state.last_error = Some(TokenError::Credentials(format!(
                        "token obtained but not handed off: {e}"
                    )));
                    let wait = backoff::delay(state.failures, FAILURE_BASE, BACKOFF_CAP);
                    state.not_before = Some(Instant::now() + wait);
                    state.requested = Some(generation);
                    tracing::error!(org = %org.name, error = %e, "cannot write the token hand-off file; the module keeps its last token");
                }
            }
            drop(state);
            org.generation_tx.send_replace(generation);
        }
        Err(error) => {
            org.counters.token_failures.inc();
            let mut state = org.lock();
            state.failures += 1;
            let wait = backoff::delay(state.failures, FAILURE_BASE, BACKOFF_CAP);
            state.not_before = Some(Instant::now() + wait);
            tracing::warn!(
                org = %org.name,
                error = %error,
                advice = error.advice(),
                failures = state.failures,
                retry_in_ms = wait.as_millis() as u64,
                "token request failed"
            );
            state.last_error = Some(error);
        }
    }
    org.attempts_tx.send_replace(attempts);
}

/// Nothing was asked (Redis cannot coordinate the refresh): the module keeps the last token,
/// and the org tries again in a second (`requested` stays set).
fn not_now(org: &OrgTokens, error: TokenError) {
    let attempts = {
        let mut state = org.lock();
        state.attempts += 1;
        state.not_before = Some(Instant::now() + FLEET_RETRY);
        if !matches!(state.last_error, Some(TokenError::Fleet(_))) {
            tracing::warn!(org = %org.name, error = %error, "token refresh waits for the fleet");
        }
        state.last_error = Some(error);
        state.attempts
    };
    org.attempts_tx.send_replace(attempts);
}

/// Refresh-token rotation: when the connected app returns a new refresh token, the old one dies.
/// The new one is saved (0600, atomically) with the SHA-256 of the configured token it replaces,
/// and used after a restart as long as the configured token is still that one; an operator who
/// puts a new token in the configured file wins.
mod rotated {
    use std::path::{Path, PathBuf};

    use natterbox_common::config::{AuthConfig, OrgConfig};
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize)]
    struct Saved {
        configured_sha256: String,
        refresh_token: String,
    }

    fn path(dir: &Path, org: &str) -> PathBuf {
        dir.join(format!("rotated-refresh-{org}.json"))
    }

    pub fn configured_hash(org: &OrgConfig) -> Option<String> {
        match &org.auth {
            Some(AuthConfig::RefreshToken { refresh_token, .. }) => {
                let token = refresh_token.load().ok()?;
                Some(crate::pops::hex(&crate::pops::sha256(token.as_bytes())))
            }
            _ => None,
        }
    }

    pub fn load(dir: &Path, org: &OrgConfig) -> Option<String> {
        let hash = configured_hash(org)?;
        let saved: Saved =
            serde_json::from_slice(&std::fs::read(path(dir, &org.name)).ok()?).ok()?;
        (saved.configured_sha256 == hash).then_some(saved.refresh_token)
    }

    pub fn save(dir: &Path, org: &OrgConfig, token: &str) -> Result<(), String> {
        let hash = configured_hash(org).ok_or("the configured refresh token cannot be read")?;
        let body = serde_json::to_vec(&Saved {
            configured_sha256: hash,
            refresh_token: token.to_string(),
        })
        .map_err(|e| e.to_string())?;
        let target = path(dir, &org.name);
        natterbox_common::atomic_file::write(&target, &body, None)
            .map_err(|e| format!("saving {}: {e}", target.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(timeout_s: u64) -> OrgState {
        let xml = format!(
            r#"<configuration name="natterbox_sf.conf"><orgs><org name="acme" session-timeout-s="{timeout_s}">
               <auth flow="client-credentials" client-id="x" client-secret-env="X"/>
               <profile name="default"><object name="Contact"/></profile></org></orgs></configuration>"#
        );
        let config = natterbox_common::config::Config::parse(&xml).unwrap();
        OrgState::new(config.orgs[0].clone(), 0, None)
    }

    fn session() -> Option<Session> {
        Some(Session {
            instance_url: "https://x".into(),
            access_token: "t".into(),
        })
    }

    #[test]
    fn refreshes_at_80_percent_of_the_session_timeout_or_at_once_when_asked() {
        let now = Instant::now();
        let mut s = state(3600);
        assert!(next_attempt(&s).unwrap() <= Instant::now(), "no token: now");
        s.session = session();
        s.issued_at = Some(now);
        s.received_at = Some(now);
        let due = next_attempt(&s).unwrap();
        assert_eq!(due.duration_since(now), Duration::from_secs(2880));
        s.requested = Some(0);
        assert!(
            next_attempt(&s).unwrap() <= Instant::now(),
            "a 401 report: now"
        );
        s.not_before = Some(now + Duration::from_secs(30));
        assert_eq!(
            next_attempt(&s).unwrap(),
            now + Duration::from_secs(30),
            "but not before the back-off"
        );
    }

    #[test]
    fn an_old_session_handed_back_is_refreshed_after_the_rest_of_its_timeout_not_at_once() {
        let issued = Instant::now();
        let mut s = state(3600);
        s.session = session();
        s.issued_at = Some(issued);
        // Arrived 50 minutes after its issue: 80 % of the timeout is already behind it.
        let arrived = issued + Duration::from_secs(3000);
        s.received_at = Some(arrived);
        assert_eq!(
            next_attempt(&s).unwrap().duration_since(arrived),
            Duration::from_secs(720)
        );
        // Arrived 10 minutes after its issue: 80 % of the timeout after the issue.
        let arrived = issued + Duration::from_secs(600);
        s.received_at = Some(arrived);
        assert_eq!(
            next_attempt(&s).unwrap().duration_since(arrived),
            Duration::from_secs(2280)
        );
    }
}
