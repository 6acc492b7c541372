//! What this host owes the fleet (pops, acknowledgements, presence), written to Redis by one
//! task in pipelined batches. While Redis is down they wait here, bounded, and go when it is
//! back; a pop or acknowledgement past its TTL is dropped instead (a late pop is worse than none).

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Weak;
use std::time::{Duration, Instant};

use natterbox_common::call_control::AgentPresence;
use natterbox_common::fleet::{redis, Skipped};
use tokio::sync::mpsc;

use super::Fleet;
use crate::backoff::now_ms;

/// Publications queued (new and waiting for Redis); beyond it the oldest go.
pub const QUEUE: usize = 10_000;
/// Publications per pipeline.
const BATCH: usize = 100;
/// Pause before trying again while Redis is down.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// Sets an agent's presence in the org's hash unless the one there is newer, and tells every
/// sidecar (one round trip, and no other host's change is overwritten by an older one).
const SET_PRESENCE_SCRIPT: &str = r"
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current then
  local ok, old = pcall(cjson.decode, current)
  if ok and type(old) == 'table' and tonumber(old.since_ms)
     and tonumber(old.since_ms) >= tonumber(ARGV[3]) then
    return 0
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 1
";

pub enum Outgoing {
    Pop {
        streams: Vec<String>,
        call_uuid: String,
        frame: String,
        expires_at_ms: u64,
        ttl_ms: u64,
    },
    Ack {
        streams: Vec<String>,
        call_uuid: String,
        user_id: String,
        extension: Option<String>,
        expires_at_ms: u64,
        ttl_ms: u64,
    },
    Presence {
        org: String,
        presence: AgentPresence,
    },
}

/// A presence change as it travels on the presence channel.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct PresenceMessage {
    pub org: String,
    pub origin: String,
    pub presence: AgentPresence,
}

impl Outgoing {
    fn expired(&self, now: u64) -> bool {
        match self {
            Outgoing::Pop { expires_at_ms, .. } | Outgoing::Ack { expires_at_ms, .. } => {
                *expires_at_ms <= now
            }
            Outgoing::Presence { .. } => false,
        }
    }

    /// Its commands. Each stream keeps about one TTL of entries (`MINID ~`) and expires when
    /// no pop has been added for a TTL, so an idle agent's stream goes away.
    fn add_to(&self, pipe: &mut redis::Pipeline, fleet: &Fleet, now: u64) {
        match self {
            Outgoing::Pop {
                streams,
                call_uuid,
                frame,
                ttl_ms,
                ..
            } => {
                for stream in streams {
                    stream_entry(pipe, stream, fleet, now, *ttl_ms, "pop", call_uuid)
                        .arg("f")
                        .arg(frame)
                        .ignore();
                    pipe.cmd("PEXPIRE").arg(stream).arg(*ttl_ms).ignore();
                }
            }
            Outgoing::Ack {
                streams,
                call_uuid,
                user_id,
                extension,
                ttl_ms,
                ..
            } => {
                for stream in streams {
                    stream_entry(pipe, stream, fleet, now, *ttl_ms, "ack", call_uuid)
                        .arg("u")
                        .arg(user_id)
                        .arg("x")
                        .arg(extension.as_deref().unwrap_or(""))
                        .ignore();
                    pipe.cmd("PEXPIRE").arg(stream).arg(*ttl_ms).ignore();
                }
            }
            Outgoing::Presence { org, presence } => {
                let message = PresenceMessage {
                    org: org.clone(),
                    origin: fleet.origin.clone(),
                    presence: presence.clone(),
                };
                pipe.cmd("EVAL")
                    .arg(SET_PRESENCE_SCRIPT)
                    .arg(1)
                    .arg(fleet.keys.presence(org))
                    .arg(&presence.user_id)
                    .arg(serde_json::to_string(presence).expect("presence serializes"))
                    .arg(presence.since_ms)
                    .arg(fleet.keys.presence_channel())
                    .arg(serde_json::to_string(&message).expect("presence serializes"))
                    .ignore();
            }
        }
    }

    fn count(&self, fleet: &Fleet) {
        let counter = match self {
            Outgoing::Pop { .. } => &fleet.counters.pops_published,
            Outgoing::Ack { .. } => &fleet.counters.acks_published,
            Outgoing::Presence { .. } => &fleet.counters.presence_published,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

fn push(pending: &mut VecDeque<Outgoing>, item: Outgoing, fleet: &Weak<Fleet>) {
    if pending.len() >= QUEUE {
        pending.pop_front();
        if let Some(fleet) = fleet.upgrade() {
            fleet.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
    pending.push_back(item);
}

/// Writes what comes in, in order, until the fleet is dropped.
pub async fn run(fleet: Weak<Fleet>, mut rx: mpsc::Receiver<Outgoing>) {
    let mut pending: VecDeque<Outgoing> = VecDeque::new();
    loop {
        if pending.is_empty() {
            match rx.recv().await {
                Some(item) => push(&mut pending, item, &fleet),
                None => return,
            }
        }
        while let Ok(item) = rx.try_recv() {
            push(&mut pending, item, &fleet);
        }
        let Some(this) = fleet.upgrade() else { return };
        let now = now_ms();
        let before = pending.len();
        pending.retain(|item| !item.expired(now));
        let expired = (before - pending.len()) as u64;
        if expired > 0 {
            this.counters.dropped.fetch_add(expired, Ordering::Relaxed);
            tracing::info!(
                expired,
                "fleet: pops past their TTL while redis was away; not sent"
            );
        }
        this.counters
            .queued
            .store(pending.len() as u64, Ordering::Relaxed);
        this.note_health();
        if pending.is_empty() {
            continue;
        }
        if !this.link.is_up() {
            drop(this);
            tokio::select! {
                _ = tokio::time::sleep(RETRY_PAUSE) => {}
                item = rx.recv() => match item {
                    Some(item) => push(&mut pending, item, &fleet),
                    None => return,
                },
            }
            continue;
        }
        let take = pending.len().min(BATCH);
        let mut pipe = redis::pipe();
        for item in pending.iter().take(take) {
            item.add_to(&mut pipe, &this, now);
        }
        let result = this
            .link
            .run(
                Instant::now() + Duration::from_secs(1),
                |mut c| async move { pipe.query_async::<()>(&mut c).await },
            )
            .await;
        match result {
            Ok(()) => {
                for item in pending.drain(..take) {
                    item.count(&this);
                }
            }
            Err(Skipped::Failed(e)) => {
                // Redis refused the batch (not a connection problem): trying again would loop.
                this.counters
                    .dropped
                    .fetch_add(take as u64, Ordering::Relaxed);
                pending.drain(..take);
                tracing::warn!("fleet: redis refused {take} publications: {e}");
            }
            Err(_) => {
                drop(this);
                tokio::time::sleep(RETRY_PAUSE).await;
            }
        }
        if let Some(this) = fleet.upgrade() {
            this.counters
                .queued
                .store(pending.len() as u64, Ordering::Relaxed);
        }
    }
}

/// `XADD <stream> MINID ~ <now - ttl> * o <origin> k <kind> c <call>`: the fields every entry of
/// an agent's stream starts with; the caller adds the kind's own fields.
fn stream_entry<'p>(
    pipe: &'p mut redis::Pipeline,
    stream: &str,
    fleet: &Fleet,
    now: u64,
    ttl_ms: u64,
    kind: &str,
    call_uuid: &str,
) -> &'p mut redis::Pipeline {
    pipe.cmd("XADD")
        .arg(stream)
        .arg("MINID")
        .arg("~")
        .arg(now.saturating_sub(ttl_ms))
        .arg("*")
        .arg("o")
        .arg(&fleet.origin)
        .arg("k")
        .arg(kind)
        .arg("c")
        .arg(call_uuid)
}
