//! The org's change log: every record created, updated or deleted through the API (and the admin
//! API) becomes one change with the next replay id, kept for subscribers to replay. Survives a
//! data reset, so replay ids only go up.

use std::sync::Mutex;

use serde_json::{Map, Value};
use tokio::sync::Notify;

/// One committed change of one record.
#[derive(Debug, Clone)]
pub struct Change {
    pub replay_id: u64,
    pub object: String,
    /// `CREATE`, `UPDATE`, `DELETE`; a gap event's `GAP_*` (`Admin::emit_gap_event`).
    pub change_type: &'static str,
    /// One record for a write; none for `GAP_OVERFLOW`.
    pub record_ids: Vec<String>,
    /// The fields the change set, with their new values.
    pub fields: Map<String, Value>,
    pub commit_user: String,
    pub commit_ms: u64,
}

#[derive(Debug, Default)]
pub struct ChangeFeed {
    log: Mutex<Vec<Change>>,
    appended: Notify,
    /// Bumped to break every open subscription (a lost stream, as a network fault makes it).
    cuts: std::sync::atomic::AtomicU64,
}

impl ChangeFeed {
    pub fn record(
        &self,
        object: &str,
        change_type: &'static str,
        record_id: &str,
        fields: Map<String, Value>,
        commit_user: &str,
    ) {
        self.append(
            object,
            change_type,
            vec![record_id.to_string()],
            fields,
            commit_user,
        );
    }

    /// A change of any kind: a write's, or a gap event (no fields; `GAP_OVERFLOW` without
    /// record ids).
    pub fn append(
        &self,
        object: &str,
        change_type: &'static str,
        record_ids: Vec<String>,
        fields: Map<String, Value>,
        commit_user: &str,
    ) {
        {
            let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
            let replay_id = log.len() as u64 + 1;
            log.push(Change {
                replay_id,
                object: object.to_string(),
                change_type,
                record_ids,
                fields,
                commit_user: commit_user.to_string(),
                commit_ms: crate::util::now_ms(),
            });
        }
        self.appended.notify_waiters();
    }

    /// The replay id of the newest change (0: none yet).
    pub fn latest(&self) -> u64 {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).len() as u64
    }

    /// Up to `max` changes after `replay_id` that `wanted` accepts, and the replay id the scan
    /// reached (the last change looked at).
    pub fn after(
        &self,
        replay_id: u64,
        max: usize,
        wanted: impl Fn(&Change) -> bool,
    ) -> (Vec<Change>, u64) {
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::new();
        let mut reached = replay_id;
        for change in log.iter().skip(replay_id as usize) {
            if out.len() >= max {
                break;
            }
            reached = change.replay_id;
            if wanted(change) {
                out.push(change.clone());
            }
        }
        (out, reached)
    }

    /// Breaks every open subscription with UNAVAILABLE; returns how many cuts so far.
    pub fn cut_streams(&self) -> u64 {
        let cuts = self.cuts.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        self.appended.notify_waiters();
        cuts
    }

    pub fn cuts(&self) -> u64 {
        self.cuts.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Resolves when a change is appended (or the streams are cut) after this call.
    pub fn appended(&self) -> tokio::sync::futures::Notified<'_> {
        self.appended.notified()
    }
}
