//! The VoiceCall steps of each call, in the outbox's SQLite file: one row per (call, step), so a
//! step enqueued twice (the live event and the call log at hangup; a call log sent again after
//! a crash) is one step. Steps of a call go out in the order they were first enqueued, each
//! only after the one before it is done.

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
         CREATE INDEX IF NOT EXISTS voicecall_step_pending ON voicecall_step(state, call_uuid, id);",
    )
    .map_err(db_err)
}

fn insert_steps(
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
    }
    Ok(())
}

impl Outbox {
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
                "SELECT s.id, s.call_uuid, s.org, s.kind, s.body, s.attempts FROM voicecall_step s
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
                ))
            })
            .map_err(db_err)?;
        let mut out = Vec::new();
        for row in rows {
            let (id, call_uuid, org, kind, body, attempts) = row.map_err(db_err)?;
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
    /// update a record that does not exist).
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
        self.lock()
            .execute(
                "DELETE FROM voicecall_step WHERE (state='delivered' AND updated_ms < ?1)
                 OR (state='failed' AND updated_ms < ?2)",
                params![delivered_before_ms as i64, failed_before_ms as i64],
            )
            .map_err(db_err)
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
}
