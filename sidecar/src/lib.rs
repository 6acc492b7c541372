//! natterbox-sidecar: the only holder of Salesforce credentials on a FreeSWITCH host.
//!
//! It obtains and refreshes each org's access token and hands it to mod_natterbox_sf through
//! token files, takes events from the module over a Unix socket, delivers screen pops to agent
//! consoles over WebSocket (and optionally as platform events), and writes call logs to Salesforce
//! as Tasks through a durable SQLite outbox. See sidecar/README.md and docs/design.md.

pub mod admin;
pub mod agent;
pub mod agent_ws;
pub mod backoff;
pub mod calllog;
pub mod change_events;
pub mod check;
pub mod console;
pub mod dirs;
pub mod fleet;
pub mod metrics;
pub mod notify;
pub mod oauth;
pub mod omni;
pub mod outbox;
pub mod pops;
pub mod record_writes;
pub mod scv_connector;
pub mod socket;
pub mod tls;
pub mod tokens;
pub mod voicecall;
pub mod voicecall_queue;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use natterbox_common::config::Config;
use natterbox_common::salesforce::client::{http_client, ClientOptions};
use natterbox_common::salesforce::{SalesforceClient, SfError};
use natterbox_common::wire::ScreenPop;
use tokio::sync::{mpsc, watch, Notify, Semaphore};

use crate::backoff::now_ms;
use crate::metrics::Metrics;
use crate::outbox::Outbox;
use crate::pops::{AgentDirectory, PopHub};
use crate::tokens::TokenManager;

/// Screen pops queued for platform-event publication.
const PLATFORM_QUEUE: usize = 4096;
/// Platform events published at once.
const PLATFORM_CONCURRENCY: usize = 8;
/// How long SIGTERM waits for in-flight Salesforce writes.
const DRAIN_DEADLINE: Duration = Duration::from_secs(10);
/// How long start-up waits for the first token attempts before READY.
const FIRST_TOKENS_WAIT: Duration = Duration::from_secs(20);

/// Everything the tasks share.
pub struct App {
    config: RwLock<Arc<Config>>,
    agents: RwLock<Arc<AgentDirectory>>,
    pub metrics: Arc<Metrics>,
    pub tokens: Arc<TokenManager>,
    pub pops: Arc<PopHub>,
    /// Pops and presence across hosts; `None` without `<fleet>` (nothing of it runs).
    pub fleet: Option<Arc<fleet::Fleet>>,
    /// Call state, call control, presence and wrap-up for agents' consoles.
    pub desk: agent::AgentDesk,
    pub outbox: Arc<Outbox>,
    /// Record writes from the module's outbox (`record_writes.rs`).
    pub record_writes: Arc<record_writes::WriteStore>,
    pub outbox_tx: mpsc::Sender<socket::Accepted>,
    pub platform_tx: mpsc::Sender<ScreenPop>,
    pub delivery_wake: Notify,
    /// Wakes the VoiceCall worker when steps are committed.
    pub voicecall_wake: Notify,
    pub http: reqwest::Client,
    /// Change Data Capture subscriptions, for `/status` and `/metrics`.
    pub change_events: change_events::ChangeEventStatus,
    draining: AtomicBool,
    shutdown_tx: watch::Sender<bool>,
}

impl App {
    pub fn config(&self) -> Arc<Config> {
        self.config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn agents(&self) -> Arc<AgentDirectory> {
        self.agents
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    pub fn shutdown_rx(&self) -> watch::Receiver<bool> {
        self.shutdown_tx.subscribe()
    }
}

/// Reads and parses the config file.
pub fn load_config(path: &Path) -> Result<Config, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Config::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
}

fn load_agents(config: &Config) -> Result<AgentDirectory, String> {
    match &config.sidecar.agent_tokens_file {
        Some(path) => {
            let dir = AgentDirectory::load(path)?;
            let orgs: Vec<&str> = config.orgs.iter().map(|o| o.name.as_str()).collect();
            for warning in dir.org_warnings(&orgs) {
                tracing::warn!("agent tokens file {}: {warning}", path.display());
            }
            Ok(dir)
        }
        None => Ok(AgentDirectory::default()),
    }
}

fn owner_of(config: &Config) -> Result<Option<(u32, u32)>, String> {
    config
        .sidecar
        .token_file_owner
        .as_deref()
        .map(tokens::resolve_owner)
        .transpose()
}

fn build_http(config: &Config) -> Result<reqwest::Client, String> {
    let extra_ca_pem = match &config.settings.ca_file {
        Some(path) => {
            Some(std::fs::read(path).map_err(|e| format!("ca-file {}: {e}", path.display()))?)
        }
        None => None,
    };
    http_client(&ClientOptions {
        connect_timeout: config.settings.http_connect_timeout,
        gzip: config.settings.http_gzip,
        extra_ca_pem,
        ..ClientOptions::default()
    })
}

/// Runs the daemon until SIGTERM or SIGINT (or `stop` resolving), then drains.
pub async fn run(
    config_path: PathBuf,
    config: Config,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), String> {
    use tokio::signal::unix::{signal, SignalKind};

    let metrics = Arc::new(Metrics::default());
    let http = build_http(&config)?;
    let owner = owner_of(&config)?;
    let agents = load_agents(&config)?;
    if config.sidecar.agent_tokens_file.is_none() {
        tracing::warn!("no agent-tokens-file: every agent WebSocket connection will be refused");
    }
    let outbox = Outbox::open(&config.sidecar.outbox_db)?;
    let record_writes = record_writes::WriteStore::open(&config.sidecar.outbox_db)?;
    let state_dir = config
        .sidecar
        .outbox_db
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let tokens = TokenManager::new(
        http.clone(),
        config.settings.token_dir.clone(),
        owner,
        state_dir.clone(),
        metrics.clone(),
    );
    let fleet = match &config.fleet {
        Some(settings) => Some(fleet::Fleet::start(
            settings,
            config.resolve_org(None).map(|o| o.name.clone()),
        )?),
        None => None,
    };
    let (outbox_tx, outbox_rx) = mpsc::channel(config.settings.event_queue_capacity);
    let (platform_tx, platform_rx) = mpsc::channel(PLATFORM_QUEUE);
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let app = Arc::new(App {
        config: RwLock::new(Arc::new(config.clone())),
        agents: RwLock::new(Arc::new(agents)),
        metrics: metrics.clone(),
        tokens: tokens.clone(),
        pops: PopHub::new(metrics.clone()),
        fleet,
        desk: agent::AgentDesk::new(&state_dir),
        outbox,
        record_writes,
        outbox_tx,
        platform_tx,
        delivery_wake: Notify::new(),
        voicecall_wake: Notify::new(),
        http,
        change_events: change_events::ChangeEventStatus::default(),
        draining: AtomicBool::new(false),
        shutdown_tx,
    });

    let mut sigterm = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    let mut sighup = signal(SignalKind::hangup()).map_err(|e| e.to_string())?;

    // Listeners first, so a bind failure stops us before anything else starts.
    let unix = socket::bind(&config.settings.event_socket)?;
    let admin_tcp = bind_tcp("admin-listen", config.sidecar.admin_listen).await?;
    let agent_tcp = bind_tcp("agent-listen", config.sidecar.agent_listen).await?;
    let admin_addr = admin_tcp.local_addr().map_err(|e| e.to_string())?;
    let agent_addr = agent_tcp.local_addr().map_err(|e| e.to_string())?;
    let tls = match (
        &config.sidecar.websocket_tls_cert,
        &config.sidecar.websocket_tls_key,
    ) {
        (Some(cert), Some(key)) => Some(tls::tls_acceptor(cert, key)?),
        (None, None) => None,
        _ => return Err("set both websocket-tls-cert and websocket-tls-key, or neither".into()),
    };

    if let (Some(fleet), Some(settings)) = (&app.fleet, &config.fleet) {
        tokens.use_fleet(fleet.token_lease(settings.token_lease));
    }
    tokens.apply(&config.orgs, config.settings.token_dir.clone(), owner);

    if let Some(fleet) = &app.fleet {
        fleet.attach(&app);
    }
    let socket_task = tokio::spawn(socket::serve(unix, app.clone(), shutdown_rx.clone()));
    let writer_task = tokio::spawn(socket::outbox_writer(app.clone(), outbox_rx));
    let delivery_task = tokio::spawn(calllog::run(app.clone(), shutdown_rx.clone()));
    let voicecall_task = tokio::spawn(voicecall::run(app.clone(), shutdown_rx.clone()));
    let write_task = tokio::spawn(record_writes::run(app.clone(), shutdown_rx.clone()));
    let platform_task = tokio::spawn(publish_platform_events(app.clone(), platform_rx));
    let change_streams =
        change_events::Streams::new(Arc::new(change_events::ReplayStore::new(&state_dir)));
    change_streams.apply(&app, &config);
    let sweeper = {
        let app = app.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(250));
            loop {
                every.tick().await;
                app.pops.sweep();
            }
        })
    };
    let graceful = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.changed().await;
    };
    let admin_task = {
        let serve = axum::serve(admin_tcp, admin::router(app.clone()))
            .with_graceful_shutdown(graceful(shutdown_rx.clone()));
        tokio::spawn(async move {
            let _ = serve.await;
        })
    };
    let agent_router = agent_ws::router(app.clone());
    let agent_task = match tls {
        Some(acceptor) => {
            let listener = tls::TlsListener::new(agent_tcp, acceptor).map_err(|e| e.to_string())?;
            let serve = axum::serve(listener, agent_router)
                .with_graceful_shutdown(graceful(shutdown_rx.clone()));
            tokio::spawn(async move {
                let _ = serve.await;
            })
        }
        None => {
            let serve = axum::serve(agent_tcp, agent_router)
                .with_graceful_shutdown(graceful(shutdown_rx.clone()));
            tokio::spawn(async move {
                let _ = serve.await;
            })
        }
    };
    tracing::info!(
        event_socket = %config.settings.event_socket.display(),
        admin = %admin_addr,
        agents = %agent_addr,
        orgs = config.orgs.len(),
        "listening"
    );

    tokens.wait_first_attempts(FIRST_TOKENS_WAIT).await;
    let status = status_line(&app);
    notify::ready(&status);
    tracing::info!(status = %status, "ready");
    let watchdog = notify::spawn_watchdog();
    // STATUS= follows token health, so `systemctl status` shows it.
    let status_task = {
        let app = app.clone();
        tokio::spawn(async move {
            let mut last = status;
            let mut every = tokio::time::interval(Duration::from_secs(5));
            loop {
                every.tick().await;
                let now = status_line(&app);
                if now != last {
                    notify::status(&now);
                    last = now;
                }
            }
        })
    };

    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = sighup.recv() => {
                reload(&app, &config_path);
                // Subscriptions follow the config now in force (unchanged if it was refused).
                change_streams.apply(&app, &app.config());
            }
            _ = sigterm.recv() => { tracing::info!("SIGTERM: draining"); break; }
            _ = sigint.recv() => { tracing::info!("SIGINT: draining"); break; }
            _ = &mut stop => { tracing::info!("stop requested: draining"); break; }
        }
    }

    // Drain: stop taking events and connections, commit what was accepted, let in-flight
    // Salesforce writes finish within a bound.
    app.draining.store(true, Ordering::Relaxed);
    notify::stopping();
    let _ = app.shutdown_tx.send(true);
    let _ = socket_task.await;
    let deadline = tokio::time::Instant::now() + DRAIN_DEADLINE;
    while app.outbox_tx.capacity() < app.outbox_tx.max_capacity()
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if tokio::time::timeout_at(deadline, delivery_task)
        .await
        .is_err()
    {
        tracing::warn!("in-flight call log writes did not finish in time; the outbox keeps them");
    }
    if tokio::time::timeout_at(deadline, voicecall_task)
        .await
        .is_err()
    {
        tracing::warn!(
            "in-flight VoiceCall requests did not finish in time; the outbox keeps them"
        );
    }
    if tokio::time::timeout_at(deadline, write_task).await.is_err() {
        tracing::warn!("an in-flight record write did not finish in time; the outbox keeps it");
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), agent_task).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), admin_task).await;
    change_streams.stop_all().await;
    writer_task.abort();
    platform_task.abort();
    sweeper.abort();
    status_task.abort();
    if let Some(w) = watchdog {
        w.abort();
    }
    tokens.shutdown();
    calllog::update_gauges(&app).await;
    let _ = std::fs::remove_file(&config.settings.event_socket);
    tracing::info!(pending = app.metrics.outbox_pending.get(), "stopped");
    Ok(())
}

async fn bind_tcp(
    what: &str,
    address: std::net::SocketAddr,
) -> Result<tokio::net::TcpListener, String> {
    tokio::net::TcpListener::bind(address)
        .await
        .map_err(|e| format!("{what} {address}: {e}"))
}

fn status_line(app: &App) -> String {
    let status = app.tokens.status();
    let healthy = status.iter().filter(|s| s.healthy).count();
    format!(
        "{healthy}/{} orgs with a working token; {} agents known; {} call logs pending",
        status.len(),
        app.agents().len(),
        app.metrics.outbox_pending.get()
    )
}

/// SIGHUP: the new config replaces the old one whole, or not at all.
fn reload(app: &Arc<App>, path: &Path) {
    notify::reloading();
    type Loaded = (Config, AgentDirectory, Option<(u32, u32)>);
    let result = (|| -> Result<Loaded, String> {
        let config = load_config(path)?;
        let agents = load_agents(&config)?;
        let owner = owner_of(&config)?;
        Ok((config, agents, owner))
    })();
    match result {
        Ok((config, agents, owner)) => {
            let old = app.config();
            for (what, changed) in [
                (
                    "event-socket",
                    old.settings.event_socket != config.settings.event_socket,
                ),
                (
                    "admin-listen",
                    old.sidecar.admin_listen != config.sidecar.admin_listen,
                ),
                (
                    "agent-listen",
                    old.sidecar.agent_listen != config.sidecar.agent_listen,
                ),
                (
                    "outbox-db",
                    old.sidecar.outbox_db != config.sidecar.outbox_db,
                ),
                (
                    "websocket-tls-cert/key",
                    old.sidecar.websocket_tls_cert != config.sidecar.websocket_tls_cert
                        || old.sidecar.websocket_tls_key != config.sidecar.websocket_tls_key,
                ),
                ("ca-file", old.settings.ca_file != config.settings.ca_file),
                ("<fleet>", old.fleet != config.fleet),
            ] {
                if changed {
                    tracing::warn!("{what} changed: takes effect at the next restart");
                }
            }
            app.tokens
                .apply(&config.orgs, config.settings.token_dir.clone(), owner);
            *app.agents.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(agents);
            *app.config.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(config);
            app.metrics.config_reloads.inc();
            app.delivery_wake.notify_one();
            tracing::info!(path = %path.display(), "configuration reloaded");
        }
        Err(e) => {
            app.metrics.config_reload_failures.inc();
            tracing::error!(error = %e, "configuration reload refused; keeping the running configuration");
        }
    }
    notify::ready(&status_line(app));
}

/// Publishes screen pops as platform events for orgs that configure one.
async fn publish_platform_events(app: Arc<App>, mut rx: mpsc::Receiver<ScreenPop>) {
    let limit = Arc::new(Semaphore::new(PLATFORM_CONCURRENCY));
    while let Some(pop) = rx.recv().await {
        let Ok(permit) = limit.clone().acquire_owned().await else {
            break;
        };
        let app = app.clone();
        tokio::spawn(async move {
            publish_one(&app, &pop).await;
            drop(permit);
        });
    }
}

async fn publish_one(app: &App, pop: &ScreenPop) {
    let config = app.config();
    let Some(org) = config.org(&pop.org) else {
        return;
    };
    let Some(event) = org.screen_pop.platform_event.clone() else {
        return;
    };
    let counters = app.metrics.org(&org.name);
    let ttl = if pop.ttl_ms == 0 {
        org.screen_pop.ttl.as_millis() as u64
    } else {
        pop.ttl_ms
    };
    // The fields of the event as docs/design.md and sidecar/README.md define it.
    let mut body = serde_json::json!({
        "Call_Id__c": pop.call_uuid,
        "Phone__c": pop.caller_number,
        "Direction__c": match pop.direction {
            natterbox_common::wire::Direction::Inbound => "inbound",
            natterbox_common::wire::Direction::Outbound => "outbound",
            natterbox_common::wire::Direction::Internal => "internal",
        },
    });
    if let Some(agent) = pop.agent_user_id.as_deref().filter(|a| !a.is_empty()) {
        body["Agent_Id__c"] = agent.into();
    }
    if let Some(record) = pop.record_ids.first() {
        body["RecordId__c"] = record.as_str().into();
    }
    let client = SalesforceClient::new(app.http.clone(), &org.api_version);
    let mut refreshed = false;
    loop {
        if pop.created_at_ms.saturating_add(ttl) <= now_ms() {
            app.metrics.pops_expired.inc();
            return;
        }
        let Some((session, generation)) = app.tokens.session(&org.name) else {
            counters.platform_events_failed.inc();
            tracing::warn!(org = %org.name, "no token: screen pop not published as a platform event");
            return;
        };
        let url = format!(
            "{}/services/data/v{}/sobjects/{event}/",
            session.instance_url.trim_end_matches('/'),
            org.api_version
        );
        let call = client.call(&session, reqwest::Method::POST, &url, Some(&body));
        let result = tokio::time::timeout(Duration::from_secs(10), call)
            .await
            .unwrap_or(Err(SfError::Timeout));
        match result {
            // 201 with success:true; errors may hold OPERATION_ENQUEUED, which is not a failure.
            Ok(answer) if answer.body.get("success").and_then(|v| v.as_bool()) == Some(true) => {
                app.tokens.report_ok(&org.name, generation);
                counters.platform_events_published.inc();
                return;
            }
            Ok(_) => {
                counters.platform_events_failed.inc();
                tracing::warn!(org = %org.name, "platform event publish answered without success:true");
                return;
            }
            Err(SfError::Api(e)) if e.is_invalid_session() && !refreshed => {
                refreshed = true;
                app.tokens.report_rejected(&org.name, generation, false);
                if !app
                    .tokens
                    .wait_newer(&org.name, generation, Duration::from_secs(5))
                    .await
                {
                    counters.platform_events_failed.inc();
                    return;
                }
            }
            Err(e) => {
                counters.platform_events_failed.inc();
                tracing::warn!(org = %org.name, error = %e, "platform event publish failed");
                return;
            }
        }
    }
}
