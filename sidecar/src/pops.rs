//! Screen pops in flight: who they are for, until when, and which agent clients are connected.
//!
//! A pop stays here until an agent client acknowledges it or its time-to-live passes, so a client
//! that reconnects gets what it missed. A pop past its TTL is dropped: a late pop is worse than
//! none.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use natterbox_common::wire::{PoppedRecord, ScreenPop};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::backoff::now_ms;
use crate::metrics::Metrics;

/// Most pops held at once; beyond it the oldest go (counted as dropped).
const MAX_STORED: usize = 50_000;
/// Frames queued per client before it counts as too slow.
pub const CLIENT_QUEUE: usize = 1024;

/// Who an agent client is: from the agent tokens file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentIdentity {
    pub user_id: String,
    pub extension: Option<String>,
    /// The org the agent works for (the config's name). Set: only that org's pops reach the
    /// agent. Unset: any org's pops by user id or extension, as before orgs were named here;
    /// in fleet mode such an agent belongs to the default org.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
}

#[derive(Deserialize)]
struct AgentsFile {
    agents: Vec<AgentEntry>,
}

#[derive(Deserialize)]
struct AgentEntry {
    user_id: String,
    #[serde(default)]
    extension: Option<String>,
    #[serde(default)]
    org: Option<String>,
    token_sha256: String,
}

/// Agent tokens, stored as SHA-256 hashes: the file holds no usable secret.
#[derive(Default)]
pub struct AgentDirectory {
    agents: Vec<(AgentIdentity, [u8; 32])>,
}

impl std::fmt::Debug for AgentDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AgentDirectory({} agents)", self.agents.len())
    }
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

fn hex_decode(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Equal in time that does not depend on where the inputs differ.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}

impl AgentDirectory {
    pub fn parse(text: &str) -> Result<AgentDirectory, String> {
        let file: AgentsFile =
            serde_json::from_str(text).map_err(|e| format!("not an agents file: {e}"))?;
        let mut agents = Vec::new();
        for (i, entry) in file.agents.into_iter().enumerate() {
            let hash = hex_decode(&entry.token_sha256).ok_or_else(|| {
                format!(
                    "agents[{i}] ({}): token_sha256 must be 64 hex digits",
                    entry.user_id
                )
            })?;
            if entry.user_id.trim().is_empty() {
                return Err(format!("agents[{i}]: user_id is empty"));
            }
            agents.push((
                AgentIdentity {
                    user_id: entry.user_id,
                    extension: entry.extension.filter(|e| !e.is_empty()),
                    org: entry.org.filter(|o| !o.is_empty()),
                },
                hash,
            ));
        }
        Ok(AgentDirectory { agents })
    }

    pub fn load(path: &Path) -> Result<AgentDirectory, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("agent tokens file {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("agent tokens file {}: {e}", path.display()))
    }

    pub fn len(&self) -> usize {
        self.agents.len()
    }

    /// What an admin should fix for tenant safety: an agent naming an org the config does not
    /// have (it would get nothing and dial nowhere), and, on a host with several orgs, agents
    /// naming none (matched by user id and extension in every org).
    pub fn org_warnings(&self, orgs: &[&str]) -> Vec<String> {
        let mut warnings = Vec::new();
        let mut without_org = 0;
        for (agent, _) in &self.agents {
            match &agent.org {
                Some(org) if !orgs.contains(&org.as_str()) => warnings.push(format!(
                    "agent {} names org {org:?}, which is not configured",
                    agent.user_id
                )),
                Some(_) => {}
                None => without_org += 1,
            }
        }
        if orgs.len() > 1 && without_org > 0 {
            warnings.push(format!(
                "{without_org} agents name no org while {} orgs are configured: each is matched by user id and extension in every org; give each its org",
                orgs.len()
            ));
        }
        warnings
    }

    pub fn is_empty(&self) -> bool {
        self.agents.is_empty()
    }

    /// The agent whose token this is. Every entry is compared, so the time taken does not say
    /// which entry (if any) was close.
    pub fn authenticate(&self, token: &str) -> Option<AgentIdentity> {
        if token.is_empty() {
            return None;
        }
        let presented = sha256(token.as_bytes());
        let mut found = None;
        for (identity, hash) in &self.agents {
            if constant_time_eq(&presented, hash) && found.is_none() {
                found = Some(identity.clone());
            }
        }
        found
    }
}

/// A pop as agent clients see it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PopFrame {
    #[serde(rename = "type")]
    pub kind: String,
    pub org: String,
    pub call_uuid: String,
    pub agent_user_id: Option<String>,
    pub agent_extension: Option<String>,
    pub caller_number: String,
    pub record_ids: Vec<String>,
    pub direction: natterbox_common::wire::Direction,
    pub created_at_ms: u64,
    pub expires_at_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<PoppedRecord>,
    /// The org's instance URL, so the console can link the records (`<url>/<record id>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub salesforce_url: Option<String>,
}

struct StoredPop {
    seq: u64,
    org: String,
    user_id: Option<String>,
    extension: Option<String>,
    expires_at_ms: u64,
    frame: Arc<str>,
    delivered: bool,
    /// Subscribers that have this pop queued or sent, so a resync never repeats it.
    sent_to: Vec<u64>,
}

impl StoredPop {
    fn is_for(&self, agent: &AgentIdentity) -> bool {
        if agent.org.as_deref().is_some_and(|org| org != self.org) {
            return false;
        }
        self.user_id.as_deref() == Some(agent.user_id.as_str())
            || (self.extension.is_some() && self.extension == agent.extension)
    }
}

struct Subscriber {
    agent: AgentIdentity,
    tx: mpsc::Sender<Arc<str>>,
    /// A pop did not fit the queue: resend what is missing once the client catches up.
    lagged: bool,
}

#[derive(Default)]
struct Inner {
    /// By call UUID: a new pop for the same call replaces the old one.
    pops: HashMap<String, StoredPop>,
    subscribers: HashMap<u64, Subscriber>,
    next_id: u64,
    next_seq: u64,
}

pub struct PopHub {
    inner: Mutex<Inner>,
    metrics: Arc<Metrics>,
}

/// A connected client's registration; unregisters on drop.
pub struct Subscription {
    pub id: u64,
    pub rx: mpsc::Receiver<Arc<str>>,
    hub: Arc<PopHub>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.lock().subscribers.remove(&self.id);
        self.hub.metrics.ws_clients.dec();
    }
}

impl PopHub {
    pub fn new(metrics: Arc<Metrics>) -> Arc<PopHub> {
        Arc::new(PopHub {
            inner: Mutex::new(Inner::default()),
            metrics,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a pop from the module. `default_ttl_ms` applies when the pop carries none.
    pub fn publish(&self, pop: &ScreenPop, default_ttl_ms: u64) {
        self.publish_with_link(pop, default_ttl_ms, None);
    }

    /// As `publish`, with the org's instance URL for the console's record links. Returns the
    /// frame kept (for the fleet), or `None` when the pop came past its TTL.
    pub fn publish_with_link(
        &self,
        pop: &ScreenPop,
        default_ttl_ms: u64,
        salesforce_url: Option<String>,
    ) -> Option<PopFrame> {
        self.metrics.pops_received.inc();
        let now = now_ms();
        let ttl = if pop.ttl_ms == 0 {
            default_ttl_ms
        } else {
            pop.ttl_ms
        };
        let created = if pop.created_at_ms == 0 {
            now
        } else {
            pop.created_at_ms
        };
        let expires_at_ms = created.saturating_add(ttl);
        if expires_at_ms <= now {
            self.metrics.pops_expired.inc();
            tracing::debug!(call_uuid = %pop.call_uuid, "screen pop arrived past its TTL; dropped");
            return None;
        }
        let frame = PopFrame {
            kind: "screen_pop".into(),
            org: pop.org.clone(),
            call_uuid: pop.call_uuid.clone(),
            agent_user_id: pop.agent_user_id.clone(),
            agent_extension: pop.agent_extension.clone(),
            caller_number: pop.caller_number.clone(),
            record_ids: pop.record_ids.clone(),
            direction: pop.direction,
            created_at_ms: created,
            expires_at_ms,
            record: pop.record.clone(),
            salesforce_url,
        };
        let text: Arc<str> = serde_json::to_string(&frame)
            .expect("frames serialize")
            .into();
        self.store(&frame, text);
        Some(frame)
    }

    /// A pop another host's sidecar took (fleet mode), as that sidecar made its frame. Returns
    /// false when it is past its TTL or already here (a stream read again after a reconnect):
    /// then nothing is sent, so each console gets it once.
    pub fn publish_from_fleet(&self, frame: &PopFrame) -> bool {
        if frame.expires_at_ms <= now_ms() {
            return false;
        }
        let text: Arc<str> = serde_json::to_string(frame)
            .expect("frames serialize")
            .into();
        if self
            .lock()
            .pops
            .get(&frame.call_uuid)
            .is_some_and(|p| p.frame == text)
        {
            return false;
        }
        self.store(frame, text);
        true
    }

    /// Keeps the pop and sends it to the matching clients that are keeping up.
    fn store(&self, frame: &PopFrame, text: Arc<str>) {
        let mut inner = self.lock();
        inner.next_seq += 1;
        let mut stored = StoredPop {
            seq: inner.next_seq,
            org: frame.org.clone(),
            user_id: frame.agent_user_id.clone().filter(|s| !s.is_empty()),
            extension: frame.agent_extension.clone().filter(|s| !s.is_empty()),
            expires_at_ms: frame.expires_at_ms,
            frame: text,
            delivered: false,
            sent_to: Vec::new(),
        };
        for (id, sub) in inner.subscribers.iter_mut() {
            if stored.is_for(&sub.agent) {
                if sub.lagged {
                    // Order: what is already waiting goes first, through the resync.
                    continue;
                }
                match sub.tx.try_send(stored.frame.clone()) {
                    Ok(()) => {
                        stored.delivered = true;
                        stored.sent_to.push(*id);
                        self.metrics.pops_delivered.inc();
                    }
                    Err(_) => {
                        sub.lagged = true;
                        self.metrics.pops_dropped.inc();
                    }
                }
            }
        }
        if inner.pops.len() >= MAX_STORED && !inner.pops.contains_key(&frame.call_uuid) {
            // Full: the oldest goes (a linear scan, only when full).
            let oldest = inner
                .pops
                .iter()
                .min_by_key(|(_, p)| p.seq)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                inner.pops.remove(&oldest);
                self.metrics.pops_dropped.inc();
            }
        }
        inner.pops.insert(frame.call_uuid.clone(), stored);
    }

    /// Registers a client and queues the pops it has not acknowledged that are still in time.
    pub fn subscribe(self: &Arc<Self>, agent: AgentIdentity) -> Subscription {
        let (tx, rx) = mpsc::channel(CLIENT_QUEUE);
        let now = now_ms();
        let mut inner = self.lock();
        let id = inner.next_id;
        inner.next_id += 1;
        inner.subscribers.insert(
            id,
            Subscriber {
                agent,
                tx,
                lagged: true,
            },
        );
        self.fill(&mut inner, id, now);
        self.metrics.ws_clients.inc();
        Subscription {
            id,
            rx,
            hub: self.clone(),
        }
    }

    /// Queues, oldest first, the pops in time for subscriber `id` that it has not been given, as
    /// many as fit. Clears `lagged` when all did.
    fn fill(&self, inner: &mut Inner, id: u64, now: u64) {
        let Inner {
            pops, subscribers, ..
        } = inner;
        let Some(sub) = subscribers.get_mut(&id) else {
            return;
        };
        let mut missing: Vec<&mut StoredPop> = pops
            .values_mut()
            .filter(|p| p.expires_at_ms > now && p.is_for(&sub.agent) && !p.sent_to.contains(&id))
            .collect();
        missing.sort_by_key(|p| p.seq);
        for pop in missing {
            if sub.tx.try_send(pop.frame.clone()).is_err() {
                return;
            }
            pop.delivered = true;
            pop.sent_to.push(id);
            self.metrics.pops_delivered.inc();
        }
        sub.lagged = false;
    }

    /// Called by a client session whose queue ran empty: if pops did not fit earlier, queue them
    /// now.
    pub fn catch_up(&self, id: u64) {
        let mut inner = self.lock();
        if inner.subscribers.get(&id).is_some_and(|s| s.lagged) {
            self.fill(&mut inner, id, now_ms());
        }
    }

    /// The agent has the pop: it is not sent again.
    pub fn ack(&self, agent: &AgentIdentity, call_uuid: &str) -> bool {
        let removed = self.remove_acked(agent, call_uuid);
        if removed {
            self.metrics.pops_acked.inc();
        }
        removed
    }

    /// The agent acknowledged the pop on another host (fleet mode): not sent again here either.
    /// Counted where the console acknowledged it, not here.
    pub fn ack_from_fleet(&self, agent: &AgentIdentity, call_uuid: &str) -> bool {
        self.remove_acked(agent, call_uuid)
    }

    fn remove_acked(&self, agent: &AgentIdentity, call_uuid: &str) -> bool {
        let mut inner = self.lock();
        let removed = inner.pops.get(call_uuid).is_some_and(|p| p.is_for(agent));
        if removed {
            inner.pops.remove(call_uuid);
        }
        removed
    }

    /// The identities with a client connected now (once each): whose fleet streams to read.
    pub fn connected_agents(&self) -> Vec<AgentIdentity> {
        let inner = self.lock();
        let mut agents: Vec<AgentIdentity> = Vec::new();
        for sub in inner.subscribers.values() {
            if !agents.contains(&sub.agent) {
                agents.push(sub.agent.clone());
            }
        }
        agents
    }

    /// Drops pops past their TTL; those no client ever got count as expired.
    pub fn sweep(&self) {
        let now = now_ms();
        let mut inner = self.lock();
        let metrics = &self.metrics;
        inner.pops.retain(|_, p| {
            let alive = p.expires_at_ms > now;
            if !alive && !p.delivered {
                metrics.pops_expired.inc();
            }
            alive
        });
    }

    pub fn pending(&self) -> usize {
        self.lock().pops.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use natterbox_common::wire::Direction;

    fn pop(uuid: &str, user: &str, ttl_ms: u64) -> ScreenPop {
        ScreenPop {
            org: "acme".into(),
            call_uuid: uuid.into(),
            agent_user_id: Some(user.into()),
            agent_extension: None,
            caller_number: "+14155550100".into(),
            record_ids: vec!["003000000000001AAA".into()],
            direction: Direction::Inbound,
            created_at_ms: now_ms(),
            ttl_ms,
            record: None,
        }
    }

    fn agent(user: &str) -> AgentIdentity {
        AgentIdentity {
            user_id: user.into(),
            extension: Some("1001".into()),
            org: None,
        }
    }

    #[test]
    fn an_agent_of_one_org_never_gets_another_orgs_pops() {
        let hub = PopHub::new(Arc::new(Metrics::default()));
        let globex_agent = AgentIdentity {
            org: Some("globex".into()),
            ..agent("005A")
        };
        let mut globex = hub.subscribe(globex_agent.clone());
        let mut any = hub.subscribe(agent("005A"));
        // Same user id and extension, org acme.
        hub.publish(&pop("c1", "005A", 10_000), 30_000);
        assert!(any.rx.try_recv().unwrap().contains("c1"));
        assert!(
            globex.rx.try_recv().is_err(),
            "acme's pop for globex's agent"
        );
        assert!(!hub.ack(&globex_agent, "c1"), "nor can it acknowledge it");
        let mut theirs = pop("c2", "005A", 10_000);
        theirs.org = "globex".into();
        hub.publish(&theirs, 30_000);
        assert!(globex.rx.try_recv().unwrap().contains("c2"));
    }

    #[test]
    fn a_pop_from_the_fleet_is_sent_once_however_often_it_is_read() {
        let hub = PopHub::new(Arc::new(Metrics::default()));
        let other = PopHub::new(Arc::new(Metrics::default()));
        let frame = other
            .publish_with_link(&pop("c1", "005A", 10_000), 30_000, None)
            .unwrap();
        let mut sub = hub.subscribe(agent("005A"));
        assert!(hub.publish_from_fleet(&frame));
        assert!(
            !hub.publish_from_fleet(&frame),
            "read again: not sent again"
        );
        assert!(sub.rx.try_recv().unwrap().contains("c1"));
        assert!(sub.rx.try_recv().is_err());
        let mut late = frame.clone();
        late.call_uuid = "c2".into();
        late.expires_at_ms = now_ms() - 1;
        assert!(!hub.publish_from_fleet(&late), "past its TTL");
        assert_eq!(hub.connected_agents(), vec![agent("005A")]);
    }

    #[test]
    fn the_frame_carries_the_record_and_the_org_url_for_the_console() {
        let hub = PopHub::new(Arc::new(Metrics::default()));
        let mut sub = hub.subscribe(agent("005A"));
        let mut with_record = pop("c1", "005A", 10_000);
        with_record.record = Some(PoppedRecord {
            object_type: "Contact".into(),
            name: Some("Ada Lovelace".into()),
            owner_id: Some("005Em0000000002IAA".into()),
            owner_name: Some("Grace Hopper".into()),
        });
        hub.publish_with_link(
            &with_record,
            30_000,
            Some("https://acme.my.salesforce.com".into()),
        );
        hub.publish(&pop("c2", "005A", 10_000), 30_000);
        let first: serde_json::Value = serde_json::from_str(&sub.rx.try_recv().unwrap()).unwrap();
        assert_eq!(first["record"]["type"], "Contact");
        assert_eq!(first["record"]["name"], "Ada Lovelace");
        assert_eq!(first["record"]["owner_name"], "Grace Hopper");
        assert_eq!(first["salesforce_url"], "https://acme.my.salesforce.com");
        // Without them, the fields are left out (older consoles see the frame they knew).
        let second: serde_json::Value = serde_json::from_str(&sub.rx.try_recv().unwrap()).unwrap();
        assert!(second.get("record").is_none() && second.get("salesforce_url").is_none());
    }

    #[test]
    fn agents_without_an_org_or_with_an_unknown_one_are_warned_of() {
        let h = hex(&sha256(b"t"));
        let text = format!(
            r#"{{"agents":[{{"user_id":"005A","org":"acme","token_sha256":"{h}"}},
                          {{"user_id":"005B","org":"acmee","token_sha256":"{h}"}},
                          {{"user_id":"005C","token_sha256":"{h}"}}]}}"#
        );
        let dir = AgentDirectory::parse(&text).unwrap();
        let warnings = dir.org_warnings(&["acme", "globex"]);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].contains("005B") && warnings[0].contains("acmee"));
        assert!(warnings[1].starts_with("1 agents name no org"));
        // One org: an agent without one is that org's, nothing to say.
        assert_eq!(dir.org_warnings(&["acme", "acmee"]).len(), 1);
        assert_eq!(dir.org_warnings(&["acme"]).len(), 1);
    }

    #[test]
    fn agents_authenticate_by_token_hash() {
        let text = format!(
            r#"{{"agents":[{{"user_id":"005A","extension":"1001","token_sha256":"{}"}}]}}"#,
            hex(&sha256(b"secret-a"))
        );
        let dir = AgentDirectory::parse(&text).unwrap();
        assert_eq!(dir.authenticate("secret-a").unwrap().user_id, "005A");
        assert!(dir.authenticate("secret-b").is_none());
        assert!(dir.authenticate("").is_none());
        assert!(
            AgentDirectory::parse(r#"{"agents":[{"user_id":"x","token_sha256":"zz"}]}"#)
                .unwrap_err()
                .contains("64 hex")
        );
    }

    #[tokio::test]
    async fn pops_reach_matching_clients_and_wait_for_reconnects() {
        let metrics = Arc::new(Metrics::default());
        let hub = PopHub::new(metrics.clone());
        let mut sub = hub.subscribe(agent("005A"));
        hub.publish(&pop("c1", "005A", 10_000), 30_000);
        hub.publish(&pop("c2", "005B", 10_000), 30_000);
        let frame = sub.rx.recv().await.unwrap();
        assert!(frame.contains("\"call_uuid\":\"c1\""));
        assert!(sub.rx.try_recv().is_err(), "c2 is for someone else");
        drop(sub);
        // Reconnect without acking: c1 again; after the ack, nothing.
        let mut sub = hub.subscribe(agent("005A"));
        assert!(sub.rx.recv().await.unwrap().contains("c1"));
        assert!(hub.ack(&agent("005A"), "c1"));
        drop(sub);
        let mut sub = hub.subscribe(agent("005A"));
        assert!(sub.rx.try_recv().is_err());
        // By extension.
        let mut by_ext = pop("c3", "005Z", 10_000);
        by_ext.agent_user_id = None;
        by_ext.agent_extension = Some("1001".into());
        hub.publish(&by_ext, 30_000);
        assert!(sub.rx.recv().await.unwrap().contains("c3"));
        assert_eq!(metrics.ws_clients.get(), 1);
    }

    #[tokio::test]
    async fn a_client_that_falls_behind_gets_everything_once_in_order() {
        let metrics = Arc::new(Metrics::default());
        let hub = PopHub::new(metrics.clone());
        let mut sub = hub.subscribe(agent("005A"));
        let total = CLIENT_QUEUE + 10;
        for i in 0..total {
            hub.publish(&pop(&format!("c{i:05}"), "005A", 60_000), 30_000);
        }
        assert!(metrics.pops_dropped.get() > 0, "the queue overflowed");
        let mut got = Vec::new();
        while got.len() < total {
            match sub.rx.try_recv() {
                Ok(frame) => {
                    let f: PopFrame = serde_json::from_str(&frame).unwrap();
                    got.push(f.call_uuid);
                }
                Err(_) => hub.catch_up(sub.id),
            }
        }
        let expected: Vec<String> = (0..total).map(|i| format!("c{i:05}")).collect();
        assert_eq!(got, expected);
        hub.catch_up(sub.id);
        assert!(sub.rx.try_recv().is_err(), "nothing twice");
    }

    #[test]
    fn late_pops_are_dropped_and_counted() {
        let metrics = Arc::new(Metrics::default());
        let hub = PopHub::new(metrics.clone());
        let mut late = pop("c1", "005A", 1000);
        late.created_at_ms = now_ms() - 5000;
        hub.publish(&late, 30_000);
        assert_eq!(metrics.pops_expired.get(), 1);
        assert_eq!(hub.pending(), 0);
        let mut short = pop("c2", "005A", 1000);
        short.created_at_ms = now_ms() - 990;
        hub.publish(&short, 30_000);
        std::thread::sleep(std::time::Duration::from_millis(30));
        hub.sweep();
        assert_eq!(metrics.pops_expired.get(), 2);
        assert_eq!(hub.pending(), 0);
    }
}
