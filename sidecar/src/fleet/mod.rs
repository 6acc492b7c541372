//! Fleet mode for the sidecar (docs/fleet.md): screen pops made on one host reach the agent's
//! consoles on any host, and presence set on one host is what every host's dialplan reads.
//!
//! Built only when the config has `<fleet>`; without it nothing here exists or runs. Everything
//! goes through the shared Redis link (`natterbox_common::fleet`): while Redis is down the
//! sidecar works as a single host (local consoles get local pops) and what it owes the fleet
//! waits in a bounded queue until Redis is back.

mod outgoing;
mod pop_streams;
mod presence;
pub mod token_lease;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use natterbox_common::call_control::AgentPresence;
use natterbox_common::config::FleetSettings;
use natterbox_common::fleet::{Keys, PopAddress, RedisLink};
use tokio::sync::{mpsc, Notify};

use crate::pops::{AgentIdentity, PopFrame};
use crate::App;
use outgoing::Outgoing;

/// What the fleet side has done, for `/status` and `/metrics`.
#[derive(Default)]
pub struct FleetCounters {
    pub pops_published: AtomicU64,
    pub pops_received: AtomicU64,
    pub acks_published: AtomicU64,
    pub acks_received: AtomicU64,
    pub presence_published: AtomicU64,
    pub presence_received: AtomicU64,
    /// Publications dropped: past their TTL while Redis was down, or beyond the queue's bound.
    pub dropped: AtomicU64,
    /// Publications waiting for Redis.
    pub queued: AtomicU64,
    /// Stream reads that failed (Redis down or slow).
    pub read_failures: AtomicU64,
}

pub struct Fleet {
    link: Arc<RedisLink>,
    keys: Keys,
    /// This process's mark on what it writes, so it skips its own entries when reading (it
    /// delivered them itself). A new one per start: after a restart the sidecar reads its own
    /// earlier pops again, which its empty hub no longer has.
    origin: String,
    default_org: Option<String>,
    outgoing: mpsc::Sender<Outgoing>,
    /// Wakes the stream reader at once (a console connected).
    wake_reader: Notify,
    pub counters: FleetCounters,
    /// Redis's last word on health, for the log when it changes.
    last_up: Mutex<Option<bool>>,
    /// The latest presence set on this host for each agent (by user id), with its org: set
    /// again after Redis comes back, in case it came back empty.
    local_presence: Mutex<HashMap<String, (String, AgentPresence)>>,
    /// Where this host is in each pop stream it reads.
    cursors: pop_streams::Cursors,
}

impl Fleet {
    /// Connects (in the background) and starts the tasks: the publisher, the pop stream reader
    /// and the presence listener. They end when the app is dropped.
    pub fn start(
        settings: &FleetSettings,
        default_org: Option<String>,
    ) -> Result<Arc<Fleet>, String> {
        let link = RedisLink::start(settings, tokio::runtime::Handle::current())?;
        let (tx, rx) = mpsc::channel(outgoing::QUEUE);
        let fleet = Arc::new(Fleet {
            link,
            keys: Keys::new(&settings.key_prefix),
            origin: new_origin(),
            default_org,
            outgoing: tx,
            wake_reader: Notify::new(),
            counters: FleetCounters::default(),
            last_up: Mutex::new(None),
            local_presence: Mutex::new(HashMap::new()),
            cursors: Mutex::new(HashMap::new()),
        });
        tokio::spawn(outgoing::run(Arc::downgrade(&fleet), rx));
        Ok(fleet)
    }

    /// The refresh coordination for refresh-token orgs (`token_lease.rs`), on this link.
    pub fn token_lease(&self, lease: std::time::Duration) -> token_lease::TokenLease {
        token_lease::TokenLease::new(self.link.clone(), self.keys.clone(), lease, new_origin())
    }

    /// The tasks that need the app (the hub, the presence store, the module link).
    pub fn attach(self: &Arc<Self>, app: &Arc<App>) {
        tokio::spawn(pop_streams::run(Arc::downgrade(app)));
        presence::listen(self, Arc::downgrade(app));
    }

    /// The org an agent belongs to in the fleet: its own, else the default org. None: the agent
    /// takes no part in the fleet (no org to scope its streams by).
    pub fn org_of<'a>(&'a self, agent: &'a AgentIdentity) -> Option<&'a str> {
        agent.org.as_deref().or(self.default_org.as_deref())
    }

    /// A pop this host took: onto the streams of the agent it names, for consoles elsewhere.
    pub fn pop_published(&self, frame: &PopFrame, ttl_ms: u64) {
        let mut streams = Vec::new();
        if let Some(user) = frame.agent_user_id.as_deref().filter(|u| !u.is_empty()) {
            streams.push(self.keys.pop_stream(&frame.org, PopAddress::User, user));
        }
        if let Some(ext) = frame.agent_extension.as_deref().filter(|e| !e.is_empty()) {
            streams.push(self.keys.pop_stream(&frame.org, PopAddress::Extension, ext));
        }
        if streams.is_empty() {
            return;
        }
        let text = serde_json::to_string(frame).expect("frames serialize");
        self.send(Outgoing::Pop {
            streams,
            call_uuid: frame.call_uuid.clone(),
            frame: text,
            expires_at_ms: frame.expires_at_ms,
            ttl_ms,
        });
    }

    /// A console on this host acknowledged a pop: the other hosts stop offering it. The
    /// acknowledgement lives as long as the org's pops do.
    pub fn pop_acked(&self, app: &App, agent: &AgentIdentity, call_uuid: &str) {
        let Some(org) = self.org_of(agent) else {
            return;
        };
        let Some(ttl_ms) = app
            .config()
            .org(org)
            .map(|o| o.screen_pop.ttl.as_millis() as u64)
        else {
            return;
        };
        let mut streams = vec![self.keys.pop_stream(org, PopAddress::User, &agent.user_id)];
        if let Some(ext) = &agent.extension {
            streams.push(self.keys.pop_stream(org, PopAddress::Extension, ext));
        }
        self.send(Outgoing::Ack {
            streams,
            call_uuid: call_uuid.to_string(),
            user_id: agent.user_id.clone(),
            extension: agent.extension.clone(),
            expires_at_ms: crate::backoff::now_ms().saturating_add(ttl_ms),
            ttl_ms,
        });
    }

    /// An agent set their presence on this host: every host's module hears it.
    pub fn presence_set(&self, agent: &AgentIdentity, presence: &AgentPresence) {
        let Some(org) = self.org_of(agent) else {
            return;
        };
        self.local_presence
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                presence.user_id.clone(),
                (org.to_string(), presence.clone()),
            );
        self.send(Outgoing::Presence {
            org: org.to_string(),
            presence: presence.clone(),
        });
    }

    /// Every presence set on this host, again (after a reconnect).
    fn republish_presence(&self) {
        let all: Vec<(String, AgentPresence)> = self
            .local_presence
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        for (org, presence) in all {
            self.send(Outgoing::Presence { org, presence });
        }
    }

    fn send(&self, item: Outgoing) {
        if self.outgoing.try_send(item).is_err() {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("fleet publication queue full; one publication dropped");
        }
    }

    /// A console of `agent` is connecting: what the fleet holds for the agent (pops made and
    /// acknowledged elsewhere) is read first, within a short bound, so the console is not given
    /// a pop already acknowledged on another host.
    pub async fn before_console(&self, app: &App, agent: &AgentIdentity) {
        pop_streams::catch_up(app, self, agent).await;
    }

    /// A console connected: read its agent's streams now rather than at the next poll.
    pub fn wake_reader(&self) {
        self.wake_reader.notify_one();
    }

    pub fn is_up(&self) -> bool {
        self.link.is_up()
    }

    /// Logs a change of Redis's health once (the link logs the details).
    fn note_health(&self) {
        let up = self.link.is_up();
        let mut last = self.last_up.lock().unwrap_or_else(|e| e.into_inner());
        if *last != Some(up) {
            if up {
                tracing::info!("fleet: redis up; pops and presence are shared with the fleet");
            } else if last.is_some() {
                tracing::warn!(
                    "fleet: redis down; local consoles still get this host's pops, the fleet's \
                     wait until it is back"
                );
            }
            *last = Some(up);
        }
    }

    /// The `fleet` part of `/status`.
    pub fn status(&self) -> serde_json::Value {
        let stats = self.link.stats();
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        serde_json::json!({
            "redis": if stats.up { "up" } else { "down" },
            "redis_error": stats.last_error,
            "redis_reconnects": stats.reconnects,
            "pops_published": get(&c.pops_published),
            "pops_received": get(&c.pops_received),
            "acks_published": get(&c.acks_published),
            "acks_received": get(&c.acks_received),
            "presence_published": get(&c.presence_published),
            "presence_received": get(&c.presence_received),
            "queued": get(&c.queued),
            "dropped": get(&c.dropped),
            "read_failures": get(&c.read_failures),
        })
    }

    /// The fleet's series for `/metrics`.
    pub fn render_metrics(&self) -> String {
        use std::fmt::Write;
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut out = String::new();
        for (name, kind, help, value) in [
            (
                "natterbox_sidecar_fleet_redis_up",
                "gauge",
                "1 while the fleet's Redis answers, 0 while it does not.",
                u64::from(self.link.is_up()),
            ),
            (
                "natterbox_sidecar_fleet_pops_published_total",
                "counter",
                "Screen pops this host put on the fleet's streams.",
                get(&c.pops_published),
            ),
            (
                "natterbox_sidecar_fleet_pops_received_total",
                "counter",
                "Screen pops from other hosts taken for this host's consoles.",
                get(&c.pops_received),
            ),
            (
                "natterbox_sidecar_fleet_presence_published_total",
                "counter",
                "Presence changes this host shared with the fleet.",
                get(&c.presence_published),
            ),
            (
                "natterbox_sidecar_fleet_presence_received_total",
                "counter",
                "Presence changes from other hosts passed to this host's module.",
                get(&c.presence_received),
            ),
            (
                "natterbox_sidecar_fleet_queued",
                "gauge",
                "Publications waiting for Redis.",
                get(&c.queued),
            ),
            (
                "natterbox_sidecar_fleet_dropped_total",
                "counter",
                "Publications dropped: past their TTL while Redis was down, or over the queue's bound.",
                get(&c.dropped),
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
        out
    }
}

/// 16 random hex digits.
fn new_origin() -> String {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 8];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .expect("the system's random source");
    crate::pops::hex(&bytes)
}
