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
use std::sync::Weak;
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

struct Cursor {
    org: String,
    last_id: String,
    wanted_at: Instant,
}

/// One stream entry, its fields by name.
#[derive(Debug, Default, PartialEq)]
pub struct Entry {
    pub id: String,
    pub fields: HashMap<String, String>,
}

pub async fn run(app: Weak<App>) {
    let mut cursors: HashMap<String, Cursor> = HashMap::new();
    loop {
        let Some(this) = app.upgrade() else { return };
        let Some(fleet) = this.fleet.clone() else {
            return;
        };
        let wanted = wanted_streams(&this, &fleet);
        let now = Instant::now();
        for (stream, org) in &wanted {
            cursors
                .entry(stream.clone())
                .and_modify(|c| c.wanted_at = now)
                .or_insert_with(|| Cursor {
                    org: org.clone(),
                    last_id: "0".into(),
                    wanted_at: now,
                });
        }
        cursors.retain(|_, c| now.duration_since(c.wanted_at) < CURSOR_IDLE);
        if !wanted.is_empty() && fleet.is_up() {
            read_round(&this, &fleet, &wanted, &mut cursors).await;
        }
        drop(this);
        tokio::select! {
            _ = tokio::time::sleep(POLL_EVERY) => {}
            _ = fleet.wake_reader.notified() => {}
        }
    }
}

/// The streams of the agents with a console here, each with its org.
fn wanted_streams(app: &App, fleet: &super::Fleet) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for agent in app.pops.connected_agents() {
        let Some(org) = fleet.org_of(&agent) else {
            continue;
        };
        let mut add = |key: String| {
            if !out.iter().any(|(k, _)| *k == key) {
                out.push((key, org.to_string()));
            }
        };
        add(fleet.keys.pop_stream(org, PopAddress::User, &agent.user_id));
        if let Some(ext) = &agent.extension {
            add(fleet.keys.pop_stream(org, PopAddress::Extension, ext));
        }
    }
    out
}

async fn read_round(
    app: &App,
    fleet: &super::Fleet,
    wanted: &[(String, String)],
    cursors: &mut HashMap<String, Cursor>,
) {
    let mut cmd = redis::cmd("XREAD");
    cmd.arg("COUNT").arg(COUNT).arg("STREAMS");
    for (stream, _) in wanted {
        cmd.arg(stream);
    }
    for (stream, _) in wanted {
        cmd.arg(cursors.get(stream).map_or("0", |c| c.last_id.as_str()));
    }
    let reply = fleet
        .link
        .run(
            Instant::now() + Duration::from_secs(1),
            |mut c| async move { cmd.query_async::<redis::Value>(&mut c).await },
        )
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
        let Some(cursor) = cursors.get_mut(&stream) else {
            continue;
        };
        if let Some(last) = entries.last() {
            cursor.last_id = last.id.clone();
        }
        apply(app, fleet, &cursor.org, &entries);
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
        if app.pops.ack(&agent, &field(entry, "c")) {
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
