//! Reads the pop streams of the agents with a console on this host, and hands what other hosts
//! wrote to the local hub (which does the per-console delivery, as for local pops).
//!
//! One stream per agent and org (`<prefix>:pops:<org>:u:<user id>`, `…:x:<extension>`), so a
//! host reads only what its own consoles need. A cursor per stream (the last entry id read)
//! lives as long as the agent has a console here and a while after: a console that reconnects
//! gets what was written while it was away; a stream read for the first time is read from its
//! start, which holds about one TTL of entries. Pops already acknowledged (an `ack` entry) or
//! past their TTL are not offered; a pop read twice is sent once (the hub compares frames).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Mutex, Weak};
use std::time::{Duration, Instant};

use natterbox_common::fleet::{redis, PopAddress};

use crate::pops::{AgentIdentity, PopFrame};
use crate::App;

/// How often the streams are read while consoles are connected (no blocking read: it would
/// hold the shared connection the link's health checks use).
const POLL_EVERY: Duration = Duration::from_millis(50);
/// Entries read per stream per round.
const COUNT: usize = 500;
/// A cursor of a stream no console has wanted for this long is forgotten (the longest pop TTL
/// the config allows).
const CURSOR_IDLE: Duration = Duration::from_secs(3600);

pub struct Cursor {
    last_id: String,
    wanted_at: Instant,
}

/// The stream cursors of one host.
pub type Cursors = Mutex<HashMap<String, Cursor>>;

/// One stream entry, its fields by name.
#[derive(Debug, Default, PartialEq)]
pub struct Entry {
    pub id: String,
    pub fields: HashMap<String, String>,
}

pub async fn run(app: Weak<App>) {
    loop {
        let Some(this) = app.upgrade() else { return };
        let Some(fleet) = this.fleet.clone() else {
            return;
        };
        let mut wanted = Vec::new();
        for agent in this.pops.connected_agents() {
            for stream in streams_of(&fleet, &agent) {
                if !wanted.contains(&stream) {
                    wanted.push(stream);
                }
            }
        }
        let now = Instant::now();
        lock(&fleet.cursors).retain(|_, c| now.duration_since(c.wanted_at) < CURSOR_IDLE);
        if !wanted.is_empty() && fleet.is_up() {
            read(
                &this,
                &fleet,
                &wanted,
                Instant::now() + Duration::from_secs(1),
            )
            .await;
        }
        drop(this);
        tokio::select! {
            _ = tokio::time::sleep(POLL_EVERY) => {}
            _ = fleet.wake_reader.notified() => {}
        }
    }
}

/// Before a console of `agent` is given the pops held here: what the fleet wrote for the
/// agent since this host last read (acknowledgements made on other hosts above all), within a
/// short bound. Skipped while Redis is down: the console then gets what this host knows.
pub async fn catch_up(app: &App, fleet: &super::Fleet, agent: &AgentIdentity) {
    let streams = streams_of(fleet, agent);
    if !streams.is_empty() && fleet.is_up() {
        read(app, fleet, &streams, Instant::now() + CATCH_UP_BOUND).await;
    }
}

/// Longest a connecting console waits for its catch-up read.
const CATCH_UP_BOUND: Duration = Duration::from_millis(250);

fn lock(cursors: &Cursors) -> std::sync::MutexGuard<'_, HashMap<String, Cursor>> {
    cursors.lock().unwrap_or_else(|e| e.into_inner())
}

/// An agent's streams in the fleet, each with its org (none for an agent without an org when
/// there is no default org).
fn streams_of(fleet: &super::Fleet, agent: &AgentIdentity) -> Vec<(String, String)> {
    let Some(org) = fleet.org_of(agent) else {
        return Vec::new();
    };
    let mut out = vec![(
        fleet.keys.pop_stream(org, PopAddress::User, &agent.user_id),
        org.to_string(),
    )];
    if let Some(ext) = &agent.extension {
        out.push((
            fleet.keys.pop_stream(org, PopAddress::Extension, ext),
            org.to_string(),
        ));
    }
    out
}

/// An entry id as numbers, to compare (`<ms>-<seq>`).
fn id_order(id: &str) -> (u64, u64) {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    (ms.parse().unwrap_or(0), seq.parse().unwrap_or(0))
}

/// Reads the streams from their cursors (a new one from its start) and applies what is new.
/// Two reads may overlap (the poll and a console's catch-up): the hub sends a pop once however
/// often it is read, and an acknowledgement twice is one.
async fn read(app: &App, fleet: &super::Fleet, wanted: &[(String, String)], deadline: Instant) {
    let now = Instant::now();
    let ids: Vec<String> = {
        let mut cursors = lock(&fleet.cursors);
        wanted
            .iter()
            .map(|(stream, _)| {
                let cursor = cursors.entry(stream.clone()).or_insert_with(|| Cursor {
                    last_id: "0".into(),
                    wanted_at: now,
                });
                cursor.wanted_at = now;
                cursor.last_id.clone()
            })
            .collect()
    };
    let mut cmd = redis::cmd("XREAD");
    cmd.arg("COUNT").arg(COUNT).arg("STREAMS");
    for (stream, _) in wanted {
        cmd.arg(stream);
    }
    for id in &ids {
        cmd.arg(id);
    }
    let reply = fleet
        .link
        .run(deadline, |mut c| async move {
            cmd.query_async::<redis::Value>(&mut c).await
        })
        .await;
    let reply = match reply {
        Ok(reply) => reply,
        Err(e) => {
            fleet.counters.read_failures.fetch_add(1, Ordering::Relaxed);
            tracing::debug!("fleet: reading pop streams: {e}");
            return;
        }
    };
    for (stream, entries) in parse_xread(reply) {
        let Some((_, org)) = wanted.iter().find(|(k, _)| *k == stream) else {
            continue;
        };
        if let Some(last) = entries.last() {
            let mut cursors = lock(&fleet.cursors);
            if let Some(cursor) = cursors.get_mut(&stream) {
                if id_order(&last.id) > id_order(&cursor.last_id) {
                    cursor.last_id = last.id.clone();
                }
            }
        }
        apply(app, fleet, org, &entries);
    }
}

/// Hands one stream's new entries to the hub: acknowledgements first, so a pop acknowledged in
/// the same batch (a stream read from its start) is never offered.
fn apply(app: &App, fleet: &super::Fleet, org: &str, entries: &[Entry]) {
    let field = |e: &Entry, name: &str| e.fields.get(name).cloned().unwrap_or_default();
    let mut acked: HashSet<String> = HashSet::new();
    for entry in entries.iter().filter(|e| field(e, "k") == "ack") {
        acked.insert(field(entry, "c"));
        if field(entry, "o") == fleet.origin {
            continue;
        }
        let agent = AgentIdentity {
            user_id: field(entry, "u"),
            extension: Some(field(entry, "x")).filter(|x| !x.is_empty()),
            org: Some(org.to_string()),
        };
        if app.pops.ack_from_fleet(&agent, &field(entry, "c")) {
            fleet.counters.acks_received.fetch_add(1, Ordering::Relaxed);
        }
    }
    for entry in entries.iter().filter(|e| field(e, "k") == "pop") {
        if field(entry, "o") == fleet.origin || acked.contains(&field(entry, "c")) {
            continue;
        }
        let frame: PopFrame = match serde_json::from_str(&field(entry, "f")) {
            Ok(frame) => frame,
            Err(e) => {
                tracing::warn!("fleet: a pop stream entry that is not a pop ({e})");
                continue;
            }
        };
        // The stream is the org's: a frame naming another org is not for these consoles.
        if frame.org != org {
            tracing::warn!(stream_org = %org, frame_org = %frame.org, "fleet: a pop for another org on this org's stream; ignored");
            continue;
        }
        if app.pops.publish_from_fleet(&frame) {
            fleet.counters.pops_received.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(call_uuid = %frame.call_uuid, "fleet: pop from another host");
        }
    }
}

fn text(value: &redis::Value) -> Option<String> {
    match value {
        redis::Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        redis::Value::SimpleString(s) => Some(s.clone()),
        redis::Value::VerbatimString { text, .. } => Some(text.clone()),
        _ => None,
    }
}

fn items(value: &redis::Value) -> Vec<&redis::Value> {
    match value {
        redis::Value::Array(items) => items.iter().collect(),
        _ => Vec::new(),
    }
}

fn entry(value: &redis::Value) -> Option<Entry> {
    let parts = items(value);
    let id = text(parts.first()?)?;
    let mut fields = HashMap::new();
    let pairs: Vec<(&redis::Value, &redis::Value)> = match parts.get(1)? {
        redis::Value::Array(flat) => flat
            .chunks(2)
            .filter_map(|p| Some((p.first()?, p.get(1)?)))
            .collect(),
        redis::Value::Map(map) => map.iter().map(|(k, v)| (k, v)).collect(),
        _ => return None,
    };
    for (k, v) in pairs {
        fields.insert(text(k)?, text(v)?);
    }
    Some(Entry { id, fields })
}

/// XREAD's reply (RESP2 arrays or RESP3 maps): entries by stream. Nil (nothing new) is empty.
pub fn parse_xread(reply: redis::Value) -> Vec<(String, Vec<Entry>)> {
    let streams: Vec<(&redis::Value, &redis::Value)> = match &reply {
        redis::Value::Array(list) => list
            .iter()
            .filter_map(|s| {
                let pair = items(s);
                Some((*pair.first()?, *pair.get(1)?))
            })
            .collect(),
        redis::Value::Map(map) => map.iter().map(|(k, v)| (k, v)).collect(),
        _ => Vec::new(),
    };
    streams
        .into_iter()
        .filter_map(|(key, entries)| {
            Some((
                text(key)?,
                items(entries).into_iter().filter_map(entry).collect(),
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::Value;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn entry_ids_compare_as_numbers() {
        assert!(id_order("1700000000010-0") > id_order("1700000000009-5"));
        assert!(id_order("5-10") > id_order("5-9"));
        assert!(id_order("1-0") > id_order("0"));
    }

    #[test]
    fn reads_xread_replies_in_both_protocols() {
        let entry = Value::Array(vec![
            bulk("1-0"),
            Value::Array(vec![bulk("k"), bulk("pop"), bulk("c"), bulk("call-1")]),
        ]);
        let resp2 = Value::Array(vec![Value::Array(vec![
            bulk("nbsf:pops:acme:u:005A"),
            Value::Array(vec![entry.clone()]),
        ])]);
        let resp3 = Value::Map(vec![(
            bulk("nbsf:pops:acme:u:005A"),
            Value::Array(vec![entry]),
        )]);
        for reply in [resp2, resp3] {
            let streams = parse_xread(reply);
            assert_eq!(streams.len(), 1);
            assert_eq!(streams[0].0, "nbsf:pops:acme:u:005A");
            assert_eq!(streams[0].1[0].id, "1-0");
            assert_eq!(streams[0].1[0].fields["c"], "call-1");
        }
        assert!(parse_xread(Value::Nil).is_empty());
    }
}
