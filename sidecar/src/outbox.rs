//! The durable call-log outbox: SQLite, one row per call UUID (inserting the same call again is a
//! no-op), states `pending` → `delivered` | `failed`.
//!
//! `sent_ms` records, before a create is sent, that Salesforce may hold a Task for the call: only
//! such rows need the `CallObject` query that finds a Task a crashed or timed-out attempt made.
//! A row never sent cannot have one, so the steady state spends one API call per batch, not two.
//!
//! WAL with `synchronous=FULL`: once `insert_batch` returns, the rows survive a crash or power
//! loss, which is what the ack to the module promises.
//!
//! Memory and CPU stay flat however many delivered rows are kept (a week's calls): SQLite's page
//! cache has an explicit bound (`PAGE_CACHE_KIB`), and the per-state counts the metrics read every
//! delivery round come from `call_log_counts`, kept by triggers in the same transactions, instead
//! of a count over every row.

use std::path::Path;
use std::sync::{Arc, Mutex};

use natterbox_common::wire::CallLog;
use rusqlite::{params, Connection, OptionalExtension};

pub struct Outbox {
    conn: Mutex<Connection>,
}

#[derive(Debug, Clone)]
pub struct PendingRow {
    pub call_uuid: String,
    pub org: String,
    pub log: CallLog,
    pub attempts: u32,
    /// When a create for this call was first sent (Salesforce may hold its Task), if ever.
    pub sent_ms: Option<u64>,
    /// When the call log entered the outbox.
    pub created_ms: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub pending: u64,
    pub delivered: u64,
    pub failed: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowState {
    pub state: String,
    pub attempts: u32,
    pub task_id: Option<String>,
    pub last_error: Option<String>,
}

fn db_err(e: rusqlite::Error) -> String {
    format!("outbox database: {e}")
}

/// Inserts call logs inside `tx`; a call UUID already present is left as it is.
pub(crate) fn insert_logs(
    tx: &rusqlite::Transaction<'_>,
    logs: &[CallLog],
    now_ms: u64,
) -> Result<(), String> {
    let mut stmt = tx
        .prepare_cached(
            "INSERT OR IGNORE INTO call_log (call_uuid, org, record, created_ms, updated_ms)
             VALUES (?1, ?2, ?3, ?4, ?4)",
        )
        .map_err(db_err)?;
    for log in logs {
        let record = serde_json::to_string(log).map_err(|e| e.to_string())?;
        stmt.execute(params![log.call_uuid, log.org, record, now_ms as i64])
            .map_err(db_err)?;
    }
    Ok(())
}

/// SQLite's page cache for the outbox, in KiB (SQLite's own default is 2 000 KiB per
/// connection). The hot pages are the few pending rows, their index and the right edge of the
/// tables; older pages are read back from the OS's file cache when a prune or a resend needs them.
const PAGE_CACHE_KIB: u32 = 512;

/// Row counts per state, kept by triggers (reading them costs the same with a week of delivered
/// rows as with none). Created and filled once from the rows when an older outbox is opened.
const COUNTS_SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS call_log_counts (state TEXT PRIMARY KEY, n INTEGER NOT NULL);
    INSERT OR IGNORE INTO call_log_counts (state, n)
        SELECT state, COUNT(*) FROM call_log GROUP BY state;
    INSERT OR IGNORE INTO call_log_counts (state, n)
        VALUES ('pending', 0), ('delivered', 0), ('failed', 0);
    CREATE TRIGGER IF NOT EXISTS call_log_counts_insert AFTER INSERT ON call_log BEGIN
        UPDATE call_log_counts SET n = n + 1 WHERE state = NEW.state;
    END;
    CREATE TRIGGER IF NOT EXISTS call_log_counts_update AFTER UPDATE OF state ON call_log
        WHEN OLD.state <> NEW.state BEGIN
        UPDATE call_log_counts SET n = n - 1 WHERE state = OLD.state;
        UPDATE call_log_counts SET n = n + 1 WHERE state = NEW.state;
    END;
    CREATE TRIGGER IF NOT EXISTS call_log_counts_delete AFTER DELETE ON call_log BEGIN
        UPDATE call_log_counts SET n = n - 1 WHERE state = OLD.state;
    END;";

/// A connection to the outbox's SQLite file as every table in it needs one: WAL, each commit
/// synced, a wait for the other connection's lock, and the bounded page cache.
pub(crate) fn open_connection(path: &Path) -> Result<Connection, String> {
    crate::dirs::ensure_parent(path)?;
    let conn = Connection::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    conn.execute_batch(
        "PRAGMA journal_mode=WAL;
         PRAGMA synchronous=FULL;
         PRAGMA busy_timeout=5000;",
    )
    .map_err(db_err)?;
    conn.pragma_update(None, "cache_size", -i64::from(PAGE_CACHE_KIB))
        .map_err(db_err)?;
    Ok(conn)
}

/// An outbox from before `sent_ms`: the column is added, and every pending row counts as
/// possibly sent (that version did not record it), so its Tasks are looked for before creating.
fn add_sent_column(conn: &Connection) -> Result<(), String> {
    let has_column = conn
        .prepare("SELECT 1 FROM pragma_table_info('call_log') WHERE name = 'sent_ms'")
        .and_then(|mut stmt| stmt.exists([]))
        .map_err(db_err)?;
    if !has_column {
        conn.execute_batch(
            "BEGIN IMMEDIATE;
             ALTER TABLE call_log ADD COLUMN sent_ms INTEGER;
             UPDATE call_log SET sent_ms = created_ms WHERE state = 'pending';
             COMMIT;",
        )
        .map_err(db_err)?;
    }
    Ok(())
}

impl Outbox {
    pub fn open(path: &Path) -> Result<Arc<Outbox>, String> {
        let conn = open_connection(path)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS call_log (
                 call_uuid TEXT PRIMARY KEY,
                 org TEXT NOT NULL,
                 record TEXT NOT NULL,
                 state TEXT NOT NULL DEFAULT 'pending',
                 attempts INTEGER NOT NULL DEFAULT 0,
                 next_attempt_ms INTEGER NOT NULL DEFAULT 0,
                 last_error TEXT,
                 task_id TEXT,
                 created_ms INTEGER NOT NULL,
                 updated_ms INTEGER NOT NULL,
                 sent_ms INTEGER
             );
             CREATE INDEX IF NOT EXISTS call_log_due ON call_log(state, next_attempt_ms);",
        )
        .map_err(db_err)?;
        add_sent_column(&conn)?;
        // One transaction: the counts are filled from the rows and the triggers created together.
        conn.execute_batch(&format!("BEGIN IMMEDIATE; {COUNTS_SCHEMA} COMMIT;"))
            .map_err(db_err)?;
        crate::voicecall_queue::create_table(&conn)?;
        crate::omni::create_table(&conn)?;
        Ok(Arc::new(Outbox {
            conn: Mutex::new(conn),
        }))
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Commits the logs in one transaction; a call UUID already present is left as it is.
    pub fn insert_batch(&self, logs: &[CallLog], now_ms: u64) -> Result<(), String> {
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(db_err)?;
        insert_logs(&tx, logs, now_ms)?;
        tx.commit().map_err(db_err)
    }

    /// Pending rows whose next attempt is due, oldest first.
    pub fn due(&self, now_ms: u64, limit: usize) -> Result<Vec<PendingRow>, String> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached(
                "SELECT call_uuid, org, record, attempts, sent_ms, created_ms FROM call_log
                 WHERE state = 'pending' AND next_attempt_ms <= ?1
                 ORDER BY created_ms, call_uuid LIMIT ?2",
            )
            .map_err(db_err)?;
        let rows = stmt
            .query_map(params![now_ms as i64, limit as i64], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, u32>(3)?,
                    row.get::<_, Option<i64>>(4)?,
                    row.get::<_, i64>(5)?,
                ))
            })
            .map_err(db_err)?;
        let mut out = Vec::new();
        for row in rows {
            let (call_uuid, org, record, attempts, sent_ms, created_ms) = row.map_err(db_err)?;
            match serde_json::from_str::<CallLog>(&record) {
                Ok(log) => out.push(PendingRow {
                    call_uuid,
                    org,
                    log,
                    attempts,
                    sent_ms: sent_ms.map(|ms| ms.max(0) as u64),
                    created_ms: created_ms.max(0) as u64,
                }),
                Err(e) => {
                    tracing::error!(%call_uuid, error = %e, "unreadable outbox record");
                }
            }
        }
        Ok(out)
    }

    pub fn mark_delivered(
        &self,
        call_uuid: &str,
        task_id: &str,
        now_ms: u64,
    ) -> Result<(), String> {
        self.lock()
            .execute(
                "UPDATE call_log SET state='delivered', task_id=?2, last_error=NULL,
                 attempts=attempts+1, updated_ms=?3 WHERE call_uuid=?1",
                params![call_uuid, task_id, now_ms as i64],
            )
            .map(|_| ())
            .map_err(db_err)
    }

    /// Records, before their creates are sent, that Salesforce may hold Tasks for these calls
    /// (the first send's time is kept: it bounds the query that looks for them).
    pub fn mark_sent(&self, call_uuids: &[String], now_ms: u64) -> Result<(), String> {
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(db_err)?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "UPDATE call_log SET sent_ms = COALESCE(sent_ms, ?2) WHERE call_uuid = ?1",
                )
                .map_err(db_err)?;
            for uuid in call_uuids {
                stmt.execute(params![uuid, now_ms as i64]).map_err(db_err)?;
            }
        }
        tx.commit().map_err(db_err)
    }

    /// Marks calls delivered with their Task Ids, in one transaction (one sync for a batch).
    pub fn mark_delivered_many(
        &self,
        delivered: &[(String, String)],
        now_ms: u64,
    ) -> Result<(), String> {
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(db_err)?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "UPDATE call_log SET state='delivered', task_id=?2, last_error=NULL,
                     attempts=attempts+1, updated_ms=?3 WHERE call_uuid=?1",
                )
                .map_err(db_err)?;
            for (uuid, task_id) in delivered {
                stmt.execute(params![uuid, task_id, now_ms as i64])
                    .map_err(db_err)?;
            }
        }
        tx.commit().map_err(db_err)
    }

    /// Counts an attempt and schedules the next one.
    pub fn mark_retry(
        &self,
        call_uuid: &str,
        next_attempt_ms: u64,
        error: &str,
        now_ms: u64,
    ) -> Result<(), String> {
        self.lock()
            .execute(
                "UPDATE call_log SET attempts=attempts+1, next_attempt_ms=?2, last_error=?3,
                 updated_ms=?4 WHERE call_uuid=?1",
                params![call_uuid, next_attempt_ms as i64, error, now_ms as i64],
            )
            .map(|_| ())
            .map_err(db_err)
    }

    /// Postpones without counting an attempt (the org is paused, no token yet).
    pub fn postpone(&self, call_uuids: &[String], next_attempt_ms: u64) -> Result<(), String> {
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(db_err)?;
        for uuid in call_uuids {
            tx.execute(
                "UPDATE call_log SET next_attempt_ms=?2 WHERE call_uuid=?1",
                params![uuid, next_attempt_ms as i64],
            )
            .map_err(db_err)?;
        }
        tx.commit().map_err(db_err)
    }

    pub fn mark_failed(&self, call_uuid: &str, error: &str, now_ms: u64) -> Result<(), String> {
        self.lock()
            .execute(
                "UPDATE call_log SET state='failed', attempts=attempts+1, last_error=?2,
                 updated_ms=?3 WHERE call_uuid=?1",
                params![call_uuid, error, now_ms as i64],
            )
            .map(|_| ())
            .map_err(db_err)
    }

    /// Deletes delivered rows older than `keep_delivered` and failed ones older than
    /// `keep_failed`; pending rows are never deleted. Returns how many went.
    pub fn prune(
        &self,
        now_ms: u64,
        keep_delivered: std::time::Duration,
        keep_failed: std::time::Duration,
    ) -> Result<usize, String> {
        let cutoff =
            |keep: std::time::Duration| now_ms.saturating_sub(keep.as_millis() as u64) as i64;
        self.lock()
            .execute(
                "DELETE FROM call_log WHERE (state='delivered' AND updated_ms < ?1)
                 OR (state='failed' AND updated_ms < ?2)",
                params![cutoff(keep_delivered), cutoff(keep_failed)],
            )
            .map_err(db_err)
    }

    pub fn counts(&self) -> Result<Counts, String> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached("SELECT state, n FROM call_log_counts")
            .map_err(db_err)?;
        let mut counts = Counts::default();
        let rows = stmt
            .query_map([], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)? as u64))
            })
            .map_err(db_err)?;
        for row in rows {
            let (state, n) = row.map_err(db_err)?;
            match state.as_str() {
                "pending" => counts.pending = n,
                "delivered" => counts.delivered = n,
                "failed" => counts.failed = n,
                _ => {}
            }
        }
        Ok(counts)
    }

    pub fn state(&self, call_uuid: &str) -> Result<Option<RowState>, String> {
        self.lock()
            .query_row(
                "SELECT state, attempts, task_id, last_error FROM call_log WHERE call_uuid=?1",
                params![call_uuid],
                |row| {
                    Ok(RowState {
                        state: row.get(0)?,
                        attempts: row.get(1)?,
                        task_id: row.get(2)?,
                        last_error: row.get(3)?,
                    })
                },
            )
            .optional()
            .map_err(db_err)
    }
}

/// Runs `f` on the outbox on a blocking thread: its SQLite syncs must never stall the runtime
/// that serves the module and the agents. One helper for call logs, VoiceCalls and routing.
pub async fn db<R: Send + 'static>(
    app: &crate::App,
    f: impl FnOnce(&Outbox) -> Result<R, String> + Send + 'static,
) -> Result<R, String> {
    let outbox = app.outbox.clone();
    tokio::task::spawn_blocking(move || f(&outbox))
        .await
        .unwrap_or_else(|e| Err(format!("outbox task failed: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use natterbox_common::wire::Direction;

    fn log(uuid: &str) -> CallLog {
        CallLog {
            org: "acme".into(),
            call_uuid: uuid.into(),
            from: "+14155550100".into(),
            to: "1001".into(),
            direction: Direction::Inbound,
            start_ms: 1,
            answer_ms: Some(2),
            end_ms: 3,
            duration_s: 1,
            agent_user_id: None,
            who_id: None,
            what_id: None,
            hangup_cause: "NORMAL_CLEARING".into(),
            recording_url: None,
        }
    }

    #[test]
    fn sends_are_recorded_once_and_an_older_outbox_counts_its_pending_rows_as_sent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.sqlite");
        // An outbox as the version before `sent_ms` left it: one pending, one delivered row.
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE call_log (call_uuid TEXT PRIMARY KEY, org TEXT NOT NULL,
                     record TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'pending',
                     attempts INTEGER NOT NULL DEFAULT 0, next_attempt_ms INTEGER NOT NULL DEFAULT 0,
                     last_error TEXT, task_id TEXT, created_ms INTEGER NOT NULL,
                     updated_ms INTEGER NOT NULL);",
            )
            .unwrap();
            for (uuid, state) in [("old-pending", "pending"), ("old-done", "delivered")] {
                conn.execute(
                    "INSERT INTO call_log (call_uuid, org, record, state, created_ms, updated_ms)
                     VALUES (?1, 'acme', ?2, ?3, 7, 7)",
                    params![uuid, serde_json::to_string(&log(uuid)).unwrap(), state],
                )
                .unwrap();
            }
        }
        let outbox = Outbox::open(&path).unwrap();
        outbox.insert_batch(&[log("new")], 10).unwrap();
        let sent = |outbox: &Outbox| {
            outbox
                .due(100, 10)
                .unwrap()
                .into_iter()
                .map(|r| (r.call_uuid, r.sent_ms))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            sent(&outbox),
            [
                ("old-pending".to_string(), Some(7)),
                ("new".to_string(), None)
            ]
        );
        outbox.mark_sent(&["new".to_string()], 20).unwrap();
        outbox.mark_sent(&["new".to_string()], 30).unwrap();
        assert_eq!(
            sent(&outbox)[1],
            ("new".to_string(), Some(20)),
            "the first send is kept"
        );
        outbox
            .mark_delivered_many(
                &[
                    ("new".into(), "00T1".into()),
                    ("old-pending".into(), "00T2".into()),
                ],
                40,
            )
            .unwrap();
        assert!(outbox.due(100, 10).unwrap().is_empty());
        assert_eq!(outbox.counts().unwrap().delivered, 3);
        drop(outbox);
        // Opening again changes nothing.
        let again = Outbox::open(&path).unwrap();
        assert_eq!(
            again.state("new").unwrap().unwrap().task_id.as_deref(),
            Some("00T1")
        );
    }

    #[test]
    fn inserts_are_idempotent_and_states_move() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/outbox.sqlite");
        let outbox = Outbox::open(&path).unwrap();
        outbox.insert_batch(&[log("a"), log("b")], 10).unwrap();
        let mut changed = log("a");
        changed.from = "changed".into();
        outbox.insert_batch(&[changed], 11).unwrap();
        let due = outbox.due(100, 10).unwrap();
        assert_eq!(due.len(), 2);
        assert_eq!(due[0].log.from, "+14155550100", "the first insert wins");
        outbox.mark_retry("a", 500, "HTTP_503", 100).unwrap();
        assert_eq!(outbox.due(100, 10).unwrap().len(), 1);
        outbox.mark_delivered("b", "00T1", 101).unwrap();
        outbox.mark_failed("a", "INVALID_FIELD", 102).unwrap();
        assert_eq!(
            outbox.counts().unwrap(),
            Counts {
                pending: 0,
                delivered: 1,
                failed: 1
            }
        );
        drop(outbox);
        let reopened = Outbox::open(&path).unwrap();
        let a = reopened.state("a").unwrap().unwrap();
        assert_eq!((a.state.as_str(), a.attempts), ("failed", 2));
        assert_eq!(
            reopened.state("b").unwrap().unwrap().task_id.as_deref(),
            Some("00T1")
        );
        reopened.insert_batch(&[log("c")], 200).unwrap();
        let day = std::time::Duration::from_secs(86_400);
        // Delivered at 101, failed at 102: nothing is old enough yet.
        assert_eq!(reopened.prune(1000, day, day).unwrap(), 0);
        let now = 102 + 2 * 86_400_000;
        assert_eq!(
            reopened.prune(now, day, 3 * day).unwrap(),
            1,
            "the delivered row"
        );
        assert!(reopened.state("b").unwrap().is_none());
        assert!(
            reopened.state("a").unwrap().is_some(),
            "failed rows stay longer"
        );
        assert_eq!(reopened.prune(now, day, day).unwrap(), 1, "the failed row");
        assert!(
            reopened.state("c").unwrap().is_some(),
            "pending rows are never pruned"
        );
        let reopened = {
            drop(reopened);
            Outbox::open(&path).unwrap()
        };
        reopened.insert_batch(&[log("a"), log("b")], 300).unwrap();
        // Pruned calls can come back (a late resend): pending again, deduplicated in Salesforce.
        assert_eq!(reopened.state("a").unwrap().unwrap().state, "pending");
        assert_eq!(reopened.counts().unwrap().pending, 3);
    }

    /// The counts a full scan gives, to compare with the kept ones.
    fn counted(outbox: &Outbox) -> Counts {
        let conn = outbox.lock();
        let n = |state: &str| -> u64 {
            conn.query_row(
                "SELECT COUNT(*) FROM call_log WHERE state = ?1",
                params![state],
                |row| row.get::<_, i64>(0),
            )
            .unwrap() as u64
        };
        Counts {
            pending: n("pending"),
            delivered: n("delivered"),
            failed: n("failed"),
        }
    }

    #[test]
    fn kept_counts_follow_every_change() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(&dir.path().join("outbox.sqlite")).unwrap();
        let logs: Vec<CallLog> = (0..10).map(|i| log(&format!("c{i}"))).collect();
        outbox.insert_batch(&logs, 10).unwrap();
        outbox.insert_batch(&logs[..3], 11).unwrap(); // already there: no change
        for i in 0..6 {
            outbox.mark_delivered(&format!("c{i}"), "00T", 20).unwrap();
        }
        outbox.mark_delivered("c0", "00T", 21).unwrap(); // delivered again: no change
        outbox.mark_retry("c6", 500, "HTTP_503", 22).unwrap();
        outbox.mark_failed("c7", "INVALID_FIELD", 23).unwrap();
        let expected = Counts {
            pending: 3,
            delivered: 6,
            failed: 1,
        };
        assert_eq!(counted(&outbox), expected);
        assert_eq!(outbox.counts().unwrap(), expected);
        let day = std::time::Duration::from_secs(86_400);
        assert_eq!(outbox.prune(20 + 2 * 86_400_000, day, day).unwrap(), 7);
        let expected = Counts {
            pending: 3,
            delivered: 0,
            failed: 0,
        };
        assert_eq!(counted(&outbox), expected);
        assert_eq!(outbox.counts().unwrap(), expected);
    }

    #[test]
    fn an_outbox_from_before_the_kept_counts_is_counted_once_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.sqlite");
        let outbox = Outbox::open(&path).unwrap();
        outbox
            .insert_batch(&[log("a"), log("b"), log("c")], 10)
            .unwrap();
        outbox.mark_delivered("a", "00T", 11).unwrap();
        // As an outbox written by a sidecar without the counts table.
        outbox
            .lock()
            .execute_batch(
                "DROP TRIGGER call_log_counts_insert; DROP TRIGGER call_log_counts_update;
                 DROP TRIGGER call_log_counts_delete; DROP TABLE call_log_counts;",
            )
            .unwrap();
        outbox.mark_failed("b", "INVALID_FIELD", 12).unwrap();
        drop(outbox);
        let reopened = Outbox::open(&path).unwrap();
        let expected = Counts {
            pending: 1,
            delivered: 1,
            failed: 1,
        };
        assert_eq!(reopened.counts().unwrap(), expected);
        reopened.mark_delivered("c", "00T", 13).unwrap();
        assert_eq!(reopened.counts().unwrap(), counted(&reopened));
    }
}
