//! The VoiceCall steps of each call, in the outbox's SQLite file: one row per (call, step), so a
//! step enqueued twice (the live event and the call log at hangup; a call log sent again after
//! a crash) is one step. Steps of a call go out in the order they were first enqueued, each
//! only after the one before it is done.
//!
//! Exactly once without any "already exists" answer from Salesforce (it documents none): a
//! create is marked *sent* (committed) before it goes out, and the VoiceCall id Salesforce
//! answers is kept with the step's completion in one transaction. A create found marked sent
//! but not done had an unknown outcome (crash, timeout, lost connection): the worker looks the
//! record up by its vendorCallKey before creating again (`voicecall.rs`).
//!
//! Step kinds: `create`, `accept`, `end` act on the call's own record (vendorCallKey = the call
//! UUID); `transfer@<key>` creates a transfer's child record with vendorCallKey `<key>`, and
//! `end@<key>` ends it.

use natterbox_common::wire::CallLog;
use rusqlite::{params, Connection};
use serde_json::Value;

use crate::outbox::Outbox;

/// One request to the Telephony Integration API, kept until Salesforce has it.
#[derive(Debug, Clone, PartialEq)]
pub struct VoiceCallStep {
    pub call_uuid: String,
    pub org: String,
    /// `create` (POST), or a PATCH: `accept`, `end`.
    pub kind: String,
    pub body: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DueStep {
    pub id: i64,
    pub step: VoiceCallStep,
    pub attempts: u32,
    /// A create that went out before without a recorded outcome.
    pub sent: bool,
}

impl VoiceCallStep {
    /// The vendorCallKey of the record this step acts on.
    pub fn target_key(&self) -> &str {
        self.kind
            .split_once('@')
            .map_or(self.call_uuid.as_str(), |(_, key)| key)
    }

    /// A `POST` (the call's record, or a transfer's child record); the rest are `PATCH`es.
    pub fn is_create(&self) -> bool {
        self.kind == "create" || self.kind.starts_with("transfer@")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepState {
    pub kind: String,
    pub state: String,
    pub attempts: u32,
    pub last_error: Option<String>,
}

fn db_err(e: rusqlite::Error) -> String {
    format!("outbox database: {e}")
}

pub(crate) fn create_table(conn: &Connection) -> Result<(), String> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS voicecall_step (
             id INTEGER PRIMARY KEY AUTOINCREMENT,
             call_uuid TEXT NOT NULL,
             org TEXT NOT NULL,
             kind TEXT NOT NULL,
             body TEXT NOT NULL,
             state TEXT NOT NULL DEFAULT 'pending',
             attempts INTEGER NOT NULL DEFAULT 0,
             next_attempt_ms INTEGER NOT NULL DEFAULT 0,
             last_error TEXT,
             created_ms INTEGER NOT NULL,
             updated_ms INTEGER NOT NULL,
             UNIQUE (call_uuid, kind)
         );
         CREATE INDEX IF NOT EXISTS voicecall_step_pending ON voicecall_step(state, call_uuid, id);
         CREATE TABLE IF NOT EXISTS voicecall_sent (step_id INTEGER PRIMARY KEY);
         CREATE TABLE IF NOT EXISTS voicecall_record (
             vendor_call_key TEXT PRIMARY KEY,
             org TEXT NOT NULL,
             voice_call_id TEXT NOT NULL,
             updated_ms INTEGER NOT NULL
         );",
    )
    .map_err(db_err)
}

pub(crate) fn insert_steps(
    tx: &rusqlite::Transaction<'_>,
    steps: &[VoiceCallStep],
    now_ms: u64,
) -> Result<(), String> {
    let mut stmt = tx
        .prepare_cached(
            "INSERT OR IGNORE INTO voicecall_step (call_uuid, org, kind, body, created_ms, updated_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
        )
        .map_err(db_err)?;
    for s in steps {
        stmt.execute(params![
            s.call_uuid,
            s.org,
            s.kind,
            s.body.to_string(),
            now_ms as i64
        ])
        .map_err(db_err)?;
        if s.kind == "end" {
            end_transfers_of(tx, &s.call_uuid, now_ms)?;
            crate::omni::clear_unbridged(tx, &s.call_uuid, now_ms)?;
        }
    }
    Ok(())
}

/// Every transfer's child record of a call ends when the call does: an `end@<key>` step (after
/// the call's own end) for each `transfer@<key>` step, whichever of the two came first.
fn end_transfers_of(
    tx: &rusqlite::Transaction<'_>,
    call_uuid: &str,
    now_ms: u64,
) -> Result<(), String> {
    let end_body: Option<String> = tx
        .query_row(
            "SELECT body FROM voicecall_step WHERE call_uuid=?1 AND kind='end'",
            params![call_uuid],
            |row| row.get(0),
        )
        .map(Some)
        .or_else(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => Ok(None),
            e => Err(db_err(e)),
        })?;
    let Some(end_time) = end_body
        .and_then(|b| serde_json::from_str::<Value>(&b).ok())
        .and_then(|b| b.get("endTime").cloned())
    else {
        return Ok(());
    };
    let body = serde_json::json!({ "endTime": end_time }).to_string();
    tx.prepare_cached(
        "INSERT OR IGNORE INTO voicecall_step (call_uuid, org, kind, body, created_ms, updated_ms)
         SELECT call_uuid, org, 'end@' || substr(kind, 10), ?2, ?3, ?3 FROM voicecall_step
         WHERE call_uuid=?1 AND kind LIKE 'transfer@%' ORDER BY id",
    )
    .map_err(db_err)?
    .execute(params![call_uuid, body, now_ms as i64])
    .map_err(db_err)?;
    Ok(())
}

impl Outbox {
    /// Commits a transfer's step if the call has a VoiceCall at all (its create is in the
    /// outbox); a call that ended already gets the child's end with it. Returns whether it
    /// was committed.
    pub fn insert_transfer(&self, step: &VoiceCallStep, now_ms: u64) -> Result<bool, String> {
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(db_err)?;
        let has_create = tx
            .query_row(
                "SELECT 1 FROM voicecall_step WHERE call_uuid=?1 AND kind='create'",
                params![step.call_uuid],
                |_| Ok(()),
            )
            .map(|_| true)
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(false),
                e => Err(db_err(e)),
            })?;
        if !has_create {
            return Ok(false);
        }
        insert_steps(&tx, std::slice::from_ref(step), now_ms)?;
        end_transfers_of(&tx, &step.call_uuid, now_ms)?;
        tx.commit().map_err(db_err)?;
        Ok(true)
    }

    /// Marks a create as gone out, before it does: if no outcome is recorded after this, the
    /// record may exist.
    pub fn mark_step_sent(&self, id: i64) -> Result<(), String> {
        self.lock()
            .execute(
                "INSERT OR IGNORE INTO voicecall_sent (step_id) VALUES (?1)",
                params![id],
            )
            .map(|_| ())
            .map_err(db_err)
    }

    /// The VoiceCall id Salesforce gave (or a lookup found) for a vendorCallKey.
    pub fn voice_call_id(&self, vendor_call_key: &str) -> Result<Option<String>, String> {
        self.lock()
            .query_row(
                "SELECT voice_call_id FROM voicecall_record WHERE vendor_call_key=?1",
                params![vendor_call_key],
                |row| row.get(0),
            )
            .map(Some)
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(None),
                e => Err(db_err(e)),
            })
    }

    /// A create is done: the step and the record's id, in one transaction.
    pub fn create_done(
        &self,
        id: i64,
        step: &VoiceCallStep,
        voice_call_id: Option<&str>,
        now_ms: u64,
    ) -> Result<(), String> {
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(db_err)?;
        if let Some(vc) = voice_call_id {
            tx.execute(
                "INSERT OR REPLACE INTO voicecall_record (vendor_call_key, org, voice_call_id, updated_ms)
                 VALUES (?1, ?2, ?3, ?4)",
                params![step.target_key(), step.org, vc, now_ms as i64],
            )
            .map_err(db_err)?;
        }
        tx.execute(
            "UPDATE voicecall_step SET state='delivered', attempts=attempts+1, last_error=NULL,
             updated_ms=?2 WHERE id=?1",
            params![id, now_ms as i64],
        )
        .map_err(db_err)?;
        tx.execute("DELETE FROM voicecall_sent WHERE step_id=?1", params![id])
            .map_err(db_err)?;
        tx.commit().map_err(db_err)
    }

    /// Commits VoiceCall steps; a (call, step) already present is left as it is.
    pub fn insert_steps(&self, steps: &[VoiceCallStep], now_ms: u64) -> Result<(), String> {
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(db_err)?;
        insert_steps(&tx, steps, now_ms)?;
        tx.commit().map_err(db_err)
    }

    /// Call logs (for Tasks) and VoiceCall steps in one transaction: what the ack to the module
    /// promises is all on disk, or none of it is.
    pub fn insert_calls(
        &self,
        logs: &[CallLog],
        steps: &[VoiceCallStep],
        now_ms: u64,
    ) -> Result<(), String> {
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(db_err)?;
        crate::outbox::insert_logs(&tx, logs, now_ms)?;
        insert_steps(&tx, steps, now_ms)?;
        tx.commit().map_err(db_err)
    }

    /// The first pending step of each call, when it is due, oldest call first.
    pub fn due_steps(&self, now_ms: u64, limit: usize) -> Result<Vec<DueStep>, String> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached(
                "SELECT s.id, s.call_uuid, s.org, s.kind, s.body, s.attempts,
                 EXISTS (SELECT 1 FROM voicecall_sent x WHERE x.step_id = s.id)
                 FROM voicecall_step s
                 WHERE s.state = 'pending' AND s.next_attempt_ms <= ?1
                 AND s.id = (SELECT MIN(t.id) FROM voicecall_step t
                             WHERE t.call_uuid = s.call_uuid AND t.state = 'pending')
                 ORDER BY s.id LIMIT ?2",
            )
            .map_err(db_err)?;
        let rows = stmt
            .query_map(params![now_ms as i64, limit as i64], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, String>(3)?,
                    row.get::<_, String>(4)?,
                    row.get::<_, u32>(5)?,
                    row.get::<_, bool>(6)?,
                ))
            })
            .map_err(db_err)?;
        let mut out = Vec::new();
        for row in rows {
            let (id, call_uuid, org, kind, body, attempts, sent) = row.map_err(db_err)?;
            match serde_json::from_str(&body) {
                Ok(body) => out.push(DueStep {
                    id,
                    step: VoiceCallStep {
                        call_uuid,
                        org,
                        kind,
                        body,
                    },
                    attempts,
                    sent,
                }),
                Err(e) => tracing::error!(%call_uuid, error = %e, "unreadable VoiceCall step"),
            }
        }
        Ok(out)
    }

    pub fn step_done(&self, id: i64, now_ms: u64) -> Result<(), String> {
        self.lock()
            .execute(
                "UPDATE voicecall_step SET state='delivered', attempts=attempts+1, last_error=NULL,
                 updated_ms=?2 WHERE id=?1",
                params![id, now_ms as i64],
            )
            .map(|_| ())
            .map_err(db_err)
    }

    pub fn step_retry(
        &self,
        id: i64,
        next_attempt_ms: u64,
        error: &str,
        now_ms: u64,
    ) -> Result<(), String> {
        self.lock()
            .execute(
                "UPDATE voicecall_step SET attempts=attempts+1, next_attempt_ms=?2, last_error=?3,
                 updated_ms=?4 WHERE id=?1",
                params![id, next_attempt_ms as i64, error, now_ms as i64],
            )
            .map(|_| ())
            .map_err(db_err)
    }

    /// Gives up on a step; when it is the create, on the call's later steps too (they would
    /// update a record that does not exist); when it is a transfer's create, on that record's end.
    pub fn step_failed(
        &self,
        id: i64,
        whole_call: bool,
        error: &str,
        now_ms: u64,
    ) -> Result<(), String> {
        let conn = self.lock();
        conn.execute(
            "UPDATE voicecall_step SET state='failed', attempts=attempts+1, last_error=?2,
             updated_ms=?3 WHERE id=?1",
            params![id, error, now_ms as i64],
        )
        .map_err(db_err)?;
        if whole_call {
            conn.execute(
                "UPDATE voicecall_step SET state='failed', last_error='the VoiceCall was not created',
                 updated_ms=?2 WHERE state='pending'
                 AND call_uuid=(SELECT call_uuid FROM voicecall_step WHERE id=?1)",
                params![id, now_ms as i64],
            )
            .map_err(db_err)?;
        }
        // A transfer's record that was never made is never ended either.
        conn.execute(
            "UPDATE voicecall_step SET state='failed',
             last_error='the transfer''s VoiceCall was not created', updated_ms=?2
             WHERE state='pending'
             AND call_uuid=(SELECT call_uuid FROM voicecall_step WHERE id=?1)
             AND kind=(SELECT 'end@' || substr(kind, 10) FROM voicecall_step
                       WHERE id=?1 AND kind LIKE 'transfer@%')",
            params![id, now_ms as i64],
        )
        .map_err(db_err)?;
        Ok(())
    }

    /// A call's steps in order.
    pub fn steps(&self, call_uuid: &str) -> Result<Vec<StepState>, String> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached(
                "SELECT kind, state, attempts, last_error FROM voicecall_step
                 WHERE call_uuid=?1 ORDER BY id",
            )
            .map_err(db_err)?;
        let rows = stmt
            .query_map(params![call_uuid], |row| {
                Ok(StepState {
                    kind: row.get(0)?,
                    state: row.get(1)?,
                    attempts: row.get(2)?,
                    last_error: row.get(3)?,
                })
            })
            .map_err(db_err)?;
        rows.collect::<Result<_, _>>().map_err(db_err)
    }

    /// Deletes finished steps older than the cut-offs; pending steps stay.
    pub fn prune_steps(
        &self,
        delivered_before_ms: u64,
        failed_before_ms: u64,
    ) -> Result<usize, String> {
        let conn = self.lock();
        let pruned = conn
            .execute(
                "DELETE FROM voicecall_step WHERE (state='delivered' AND updated_ms < ?1)
                 OR (state='failed' AND updated_ms < ?2)",
                params![delivered_before_ms as i64, failed_before_ms as i64],
            )
            .map_err(db_err)?;
        conn.execute_batch(
            "DELETE FROM voicecall_sent WHERE step_id NOT IN (SELECT id FROM voicecall_step)",
        )
        .map_err(db_err)?;
        // A record id is needed while its call has steps to send; kept as long as failed steps.
        conn.execute(
            "DELETE FROM voicecall_record WHERE updated_ms < ?1",
            params![failed_before_ms as i64],
        )
        .map_err(db_err)?;
        Ok(pruned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn step(call: &str, kind: &str) -> VoiceCallStep {
        VoiceCallStep {
            call_uuid: call.into(),
            org: "acme".into(),
            kind: kind.into(),
            body: json!({"k": kind}),
        }
    }

    #[test]
    fn steps_go_one_at_a_time_per_call_in_order_and_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.sqlite");
        let outbox = Outbox::open(&path).unwrap();
        outbox.insert_steps(&[step("a", "create")], 1).unwrap();
        outbox
            .insert_calls(
                &[],
                &[
                    step("a", "create"),
                    step("a", "accept"),
                    step("a", "end"),
                    step("b", "create"),
                ],
                2,
            )
            .unwrap();
        let due = outbox.due_steps(10, 10).unwrap();
        let kinds: Vec<_> = due
            .iter()
            .map(|d| (d.step.call_uuid.as_str(), d.step.kind.as_str()))
            .collect();
        assert_eq!(
            kinds,
            [("a", "create"), ("b", "create")],
            "one head step per call"
        );
        outbox.step_retry(due[0].id, 100, "HTTP 503", 10).unwrap();
        let due2 = outbox.due_steps(10, 10).unwrap();
        assert_eq!(due2.len(), 1, "a's create waits, and so does the rest of a");
        assert_eq!(due2[0].step.call_uuid, "b");
        outbox.step_done(due[0].id, 101).unwrap();
        drop(outbox);
        let outbox = Outbox::open(&path).unwrap();
        let due = outbox.due_steps(200, 10).unwrap();
        let kinds: Vec<_> = due.iter().map(|d| d.step.kind.as_str()).collect();
        assert_eq!(kinds, ["accept", "create"]);
        outbox.step_failed(due[1].id, true, "INVALID", 201).unwrap();
        let a: Vec<_> = outbox
            .steps("a")
            .unwrap()
            .into_iter()
            .map(|s| (s.kind, s.state))
            .collect();
        assert_eq!(
            a,
            [
                ("create".to_string(), "delivered".to_string()),
                ("accept".into(), "pending".into()),
                ("end".into(), "pending".into())
            ]
        );
        assert_eq!(outbox.steps("b").unwrap()[0].state, "failed");
        assert_eq!(
            outbox.prune_steps(1_000, 0).unwrap(),
            1,
            "the delivered create"
        );
    }

    fn kinds(outbox: &Outbox, call: &str) -> Vec<String> {
        outbox
            .steps(call)
            .unwrap()
            .into_iter()
            .map(|s| s.kind)
            .collect()
    }

    #[test]
    fn a_transfer_is_kept_only_for_a_voicecall_and_ends_with_the_call() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(&dir.path().join("outbox.sqlite")).unwrap();
        outbox
            .insert_steps(&[step("a", "create"), step("a", "accept")], 1)
            .unwrap();
        assert!(outbox
            .insert_transfer(&step("a", "transfer@a.transfer.5"), 2)
            .unwrap());
        assert!(
            !outbox
                .insert_transfer(&step("zz", "transfer@zz.transfer.5"), 2)
                .unwrap(),
            "a call without a VoiceCall has no transfer record"
        );
        assert!(kinds(&outbox, "zz").is_empty());
        let mut end = step("a", "end");
        end.body =
            json!({"endTime": "2026-01-01T00:01:05.000Z", "recordingLocation": "https://r/x"});
        outbox.insert_calls(&[], &[end.clone()], 3).unwrap();
        outbox.insert_calls(&[], &[end], 4).unwrap();
        assert_eq!(
            kinds(&outbox, "a"),
            [
                "create",
                "accept",
                "transfer@a.transfer.5",
                "end",
                "end@a.transfer.5"
            ]
        );
        // A transfer heard of after the call's end is ended with it all the same.
        let mut end_b = step("b", "end");
        end_b.body = json!({"endTime": "2026-01-01T00:02:00.000Z"});
        outbox
            .insert_steps(&[step("b", "create"), end_b], 5)
            .unwrap();
        assert!(outbox
            .insert_transfer(&step("b", "transfer@b.transfer.9"), 6)
            .unwrap());
        assert_eq!(
            kinds(&outbox, "b"),
            ["create", "end", "transfer@b.transfer.9", "end@b.transfer.9"]
        );
        let due = outbox.due_steps(10, 10).unwrap();
        let child_end = outbox
            .lock()
            .query_row(
                "SELECT body FROM voicecall_step WHERE kind='end@a.transfer.5'",
                [],
                |r| r.get::<_, String>(0),
            )
            .unwrap();
        assert_eq!(child_end, r#"{"endTime":"2026-01-01T00:01:05.000Z"}"#);
        assert_eq!(due[0].step.target_key(), "a");
        assert!(due[0].step.is_create() && !due[0].sent);
        let transfer_id: i64 = outbox
            .lock()
            .query_row(
                "SELECT id FROM voicecall_step WHERE kind='transfer@b.transfer.9'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        outbox
            .step_failed(transfer_id, false, "HTTP 400", 7)
            .unwrap();
        let b: Vec<_> = outbox
            .steps("b")
            .unwrap()
            .into_iter()
            .map(|s| (s.kind, s.state))
            .collect();
        assert_eq!(
            b,
            [
                ("create".to_string(), "pending".to_string()),
                ("end".into(), "pending".into()),
                ("transfer@b.transfer.9".into(), "failed".into()),
                ("end@b.transfer.9".into(), "failed".into()),
            ],
            "the call's own steps go on"
        );
    }

    #[test]
    fn a_create_marked_sent_stays_so_until_its_record_id_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.sqlite");
        let outbox = Outbox::open(&path).unwrap();
        outbox
            .insert_steps(&[step("c", "create"), step("c", "end")], 1)
            .unwrap();
        let due = outbox.due_steps(10, 10).unwrap();
        outbox.mark_step_sent(due[0].id).unwrap();
        drop(outbox);
        // A crash here: the outcome is unknown, and the step says so.
        let outbox = Outbox::open(&path).unwrap();
        let due = outbox.due_steps(10, 10).unwrap();
        assert!(due[0].sent);
        assert_eq!(outbox.voice_call_id("c").unwrap(), None);
        outbox
            .create_done(due[0].id, &due[0].step, Some("0LQEm0000000001AAA"), 11)
            .unwrap();
        assert_eq!(
            outbox.voice_call_id("c").unwrap().as_deref(),
            Some("0LQEm0000000001AAA")
        );
        let due = outbox.due_steps(20, 10).unwrap();
        assert_eq!(due[0].step.kind, "end");
        assert!(!due[0].sent);
    }
}
