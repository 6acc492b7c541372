//! Record writes from the module's outbox (`<write delivery="outbox">`, and synchronous writes
//! that failed and are idempotent): a SQLite table next to the call logs, one row per write key
//! (`<call uuid>.<write name>`; the same key again is a no-op), states `pending` → `delivered` |
//! `failed`, delivered at least once. Every write that reaches this table is idempotent in
//! Salesforce (an upsert by External ID or key field, or an update), so a retry after a crash
//! or a lost answer leaves one record.
//!
//! The module's spooled copy goes only after the row is committed (WAL, `synchronous=FULL`) and
//! acknowledged, so a write is on the module's disk, in this table, or in Salesforce.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use natterbox_common::record_write::{self, RecordWrite};
use natterbox_common::salesforce::{SalesforceClient, SfError};
use natterbox_common::wire::Message;
use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::{mpsc, watch, Notify};

use crate::backoff::{self, now_ms};
use crate::App;

const ROUND_LIMIT: usize = 200;
/// Refusals Salesforce will give again (a validation rule, a bad reference).
const MAX_PERMANENT_ATTEMPTS: u32 = 3;
/// Salesforce down or failing: keep trying for about a day.
const MAX_TRANSIENT_ATTEMPTS: u32 = 200;
const RETRY_BASE: Duration = Duration::from_secs(1);
const RETRY_CAP: Duration = Duration::from_secs(300);
const LIMIT_PAUSE: Duration = Duration::from_secs(60);
const NO_TOKEN_WAIT: Duration = Duration::from_secs(2);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const KEEP_DELIVERED_MS: u64 = 7 * 86_400_000;
const KEEP_FAILED_MS: u64 = 30 * 86_400_000;

pub struct WriteStore {
    conn: Mutex<Connection>,
    /// Rung when a new row is committed, so delivery starts at once.
    pub wake: Notify,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteRow {
    pub key: String,
    pub write: RecordWrite,
    pub attempts: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteState {
    pub state: String,
    pub attempts: u32,
    pub record_id: Option<String>,
    pub last_error: Option<String>,
}

fn db_err(e: rusqlite::Error) -> String {
    format!("record write database: {e}")
}

impl WriteStore {
    pub fn open(path: &Path) -> Result<Arc<WriteStore>, String> {
        let conn = crate::outbox::open_connection(path)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS record_write (
                 key TEXT PRIMARY KEY,
                 org TEXT NOT NULL,
                 record TEXT NOT NULL,
                 state TEXT NOT NULL DEFAULT 'pending',
                 attempts INTEGER NOT NULL DEFAULT 0,
                 next_attempt_ms INTEGER NOT NULL DEFAULT 0,
                 last_error TEXT,
                 record_id TEXT,
                 created_ms INTEGER NOT NULL,
                 updated_ms INTEGER NOT NULL
             );
             CREATE INDEX IF NOT EXISTS record_write_due ON record_write(state, next_attempt_ms);",
        )
        .map_err(db_err)?;
        Ok(Arc::new(WriteStore {
            conn: Mutex::new(conn),
            wake: Notify::new(),
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Commits the writes; a key already present is left as it is.
    pub fn insert(&self, writes: &[RecordWrite], now_ms: u64) -> Result<(), String> {
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(db_err)?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO record_write (key, org, record, created_ms, updated_ms)
                     VALUES (?1, ?2, ?3, ?4, ?4)",
                )
                .map_err(db_err)?;
            for w in writes {
                let record = serde_json::to_string(w).map_err(|e| e.to_string())?;
                stmt.execute(params![w.key, w.org, record, now_ms as i64])
                    .map_err(db_err)?;
            }
        }
        tx.commit().map_err(db_err)
    }

    pub fn due(&self, now_ms: u64, limit: usize) -> Result<Vec<WriteRow>, String> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached(
                "SELECT key, record, attempts FROM record_write
                 WHERE state = 'pending' AND next_attempt_ms <= ?1
                 ORDER BY created_ms, key LIMIT ?2",
            )
            .map_err(db_err)?;
        let rows = stmt
            .query_map(params![now_ms as i64, limit as i64], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, u32>(2)?,
                ))
            })
            .map_err(db_err)?;
        let mut out = Vec::new();
        for row in rows {
            let (key, record, attempts) = row.map_err(db_err)?;
            match serde_json::from_str::<RecordWrite>(&record) {
                Ok(write) => out.push(WriteRow {
                    key,
                    write,
                    attempts,
                }),
                Err(e) => tracing::error!(%key, error = %e, "unreadable record write"),
            }
        }
        Ok(out)
    }

    fn set(&self, sql: &str, args: impl rusqlite::Params) -> Result<(), String> {
        self.lock().execute(sql, args).map(|_| ()).map_err(db_err)
    }

    pub fn mark_delivered(&self, key: &str, record_id: &str, now_ms: u64) -> Result<(), String> {
        self.set(
            "UPDATE record_write SET state='delivered', record_id=?2, last_error=NULL,
             attempts=attempts+1, updated_ms=?3 WHERE key=?1",
            params![key, record_id, now_ms as i64],
        )
    }

    pub fn mark_retry(
        &self,
        key: &str,
        next_ms: u64,
        error: &str,
        now_ms: u64,
    ) -> Result<(), String> {
        self.set(
            "UPDATE record_write SET attempts=attempts+1, next_attempt_ms=?2, last_error=?3,
             updated_ms=?4 WHERE key=?1",
            params![key, next_ms as i64, error, now_ms as i64],
        )
    }

    /// Later, without counting an attempt (no token yet, the org over its limits).
    pub fn postpone(&self, key: &str, next_ms: u64) -> Result<(), String> {
        self.set(
            "UPDATE record_write SET next_attempt_ms=?2 WHERE key=?1",
            params![key, next_ms as i64],
        )
    }

    pub fn mark_failed(&self, key: &str, error: &str, now_ms: u64) -> Result<(), String> {
        self.set(
            "UPDATE record_write SET state='failed', attempts=attempts+1, last_error=?2,
             updated_ms=?3 WHERE key=?1",
            params![key, error, now_ms as i64],
        )
    }

    pub fn prune(&self, now_ms: u64) -> Result<usize, String> {
        self.lock()
            .execute(
                "DELETE FROM record_write WHERE (state='delivered' AND updated_ms < ?1)
                 OR (state='failed' AND updated_ms < ?2)",
                params![
                    now_ms.saturating_sub(KEEP_DELIVERED_MS) as i64,
                    now_ms.saturating_sub(KEEP_FAILED_MS) as i64
                ],
            )
            .map_err(db_err)
    }

    pub fn state(&self, key: &str) -> Result<Option<WriteState>, String> {
        self.lock()
            .query_row(
                "SELECT state, attempts, record_id, last_error FROM record_write WHERE key=?1",
                params![key],
                |row| {
                    Ok(WriteState {
                        state: row.get(0)?,
                        attempts: row.get(1)?,
                        record_id: row.get(2)?,
                        last_error: row.get(3)?,
                    })
                },
            )
            .optional()
            .map_err(db_err)
    }

    /// (pending, delivered, failed).
    pub fn counts(&self) -> Result<(u64, u64, u64), String> {
        let conn = self.lock();
        let count = |state: &str| -> Result<u64, String> {
            conn.query_row(
                "SELECT COUNT(*) FROM record_write WHERE state=?1",
                params![state],
                |row| row.get::<_, i64>(0),
            )
            .map(|n| n as u64)
            .map_err(db_err)
        };
        Ok((count("pending")?, count("delivered")?, count("failed")?))
    }
}

async fn db<R: Send + 'static>(
    store: &Arc<WriteStore>,
    f: impl FnOnce(&WriteStore) -> Result<R, String> + Send + 'static,
) -> Result<R, String> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || f(&store))
        .await
        .unwrap_or_else(|e| Err(format!("record write task failed: {e}")))
}

/// A write from the module: committed, then acknowledged on its connection (no ack when the
/// commit fails: the module keeps its spooled copy and sends it again).
pub fn accept(app: &Arc<App>, write: RecordWrite, reply: mpsc::Sender<Vec<u8>>) {
    let store = app.record_writes.clone();
    tokio::spawn(async move {
        let key = write.key.clone();
        match db(&store, move |s| s.insert(&[write], now_ms())).await {
            Ok(()) => {
                let _ = reply.try_send(Message::WriteAck { key }.to_line());
                store.wake.notify_one();
            }
            Err(e) => tracing::error!(%key, error = %e, "cannot commit a record write"),
        }
    });
}

enum Outcome {
    Delivered(String),
    /// Salesforce refused the record: trying again gives the same answer.
    Refused(String),
    Transient(String),
    Limit,
    NoSession,
}

async fn attempt(app: &App, write: &RecordWrite) -> Outcome {
    let config = app.config();
    let Some(org) = config.org(&write.org) else {
        return Outcome::Refused(format!("org \"{}\" is not configured", write.org));
    };
    let client = SalesforceClient::new(app.http.clone(), &org.api_version);
    let mut refreshed = false;
    loop {
        let Some((session, generation)) = app.tokens.session(&org.name) else {
            return Outcome::NoSession;
        };
        let result = tokio::time::timeout(
            REQUEST_TIMEOUT,
            record_write::send(&client, &session, write),
        )
        .await
        .unwrap_or(Err(SfError::Timeout));
        return match result {
            Ok(written) => {
                app.tokens.report_ok(&org.name, generation);
                Outcome::Delivered(written.id)
            }
            Err(SfError::Api(e)) if e.is_invalid_session() => {
                if refreshed {
                    return Outcome::NoSession;
                }
                refreshed = true;
                app.tokens.report_rejected(&org.name, generation, false);
                if !app
                    .tokens
                    .wait_newer(&org.name, generation, Duration::from_secs(15))
                    .await
                {
                    return Outcome::NoSession;
                }
                continue;
            }
            Err(SfError::Api(e)) if e.is_limit_exceeded() => Outcome::Limit,
            Err(SfError::Api(e)) if e.is_server_side() => Outcome::Transient(e.to_string()),
            Err(SfError::Api(e)) => Outcome::Refused(e.to_string()),
            Err(e) => Outcome::Transient(e.to_string()),
        };
    }
}

/// Delivers due writes until shutdown.
pub async fn run(app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
    let store = app.record_writes.clone();
    let mut last_prune = 0u64;
    loop {
        if *shutdown.borrow() {
            return;
        }
        if now_ms().saturating_sub(last_prune) > 3_600_000 {
            last_prune = now_ms();
            if let Err(e) = db(&store, |s| s.prune(now_ms())).await {
                tracing::warn!(error = %e, "cannot prune record writes");
            }
        }
        let rows = db(&store, |s| s.due(now_ms(), ROUND_LIMIT))
            .await
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, "cannot read record writes");
                Vec::new()
            });
        // Orgs that cannot be written to this round (no token, over limits, down).
        let mut held: Vec<String> = Vec::new();
        for row in rows {
            if *shutdown.borrow() {
                return;
            }
            if held.contains(&row.write.org) {
                continue;
            }
            let key = row.key.clone();
            match attempt(&app, &row.write).await {
                Outcome::Delivered(id) => {
                    tracing::info!(org = %row.write.org, %key, record_id = %id, "record write delivered");
                    let _ = db(&store, move |s| s.mark_delivered(&key, &id, now_ms())).await;
                }
                Outcome::NoSession => {
                    held.push(row.write.org.clone());
                    let next = now_ms() + NO_TOKEN_WAIT.as_millis() as u64;
                    let _ = db(&store, move |s| s.postpone(&key, next)).await;
                }
                Outcome::Limit => {
                    held.push(row.write.org.clone());
                    tracing::warn!(org = %row.write.org, "REQUEST_LIMIT_EXCEEDED: record writes paused");
                    let next = now_ms() + LIMIT_PAUSE.as_millis() as u64;
                    let _ = db(&store, move |s| s.postpone(&key, next)).await;
                }
                Outcome::Transient(error) => {
                    held.push(row.write.org.clone());
                    give_up_or_retry(&store, &row, error, MAX_TRANSIENT_ATTEMPTS).await;
                }
                Outcome::Refused(error) => {
                    give_up_or_retry(&store, &row, error, MAX_PERMANENT_ATTEMPTS).await;
                }
            }
        }
        tokio::select! {
            _ = store.wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = shutdown.changed() => {}
        }
    }
}

async fn give_up_or_retry(store: &Arc<WriteStore>, row: &WriteRow, error: String, max: u32) {
    let key = row.key.clone();
    let attempts = row.attempts + 1;
    if attempts >= max {
        tracing::error!(org = %row.write.org, %key, %error, attempts, "giving up on a record write");
        let _ = db(store, move |s| s.mark_failed(&key, &error, now_ms())).await;
    } else {
        tracing::warn!(org = %row.write.org, %key, %error, attempts, "record write not delivered; will retry");
        let next = now_ms() + backoff::delay(attempts, RETRY_BASE, RETRY_CAP).as_millis() as u64;
        let _ = db(store, move |s| s.mark_retry(&key, next, &error, now_ms())).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use natterbox_common::record_write::WriteOp;

    fn write(key: &str) -> RecordWrite {
        RecordWrite {
            org: "acme".into(),
            key: key.into(),
            call_uuid: "u".into(),
            write: "w".into(),
            object: "Case".into(),
            op: WriteOp::Upsert,
            record_id: None,
            upsert_by: Some(("Key__c".into(), key.into())),
            fields: serde_json::Map::new(),
            created_at_ms: 1,
        }
    }

    #[test]
    fn one_row_per_key_and_states_move() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.sqlite");
        let store = WriteStore::open(&path).unwrap();
        store.insert(&[write("a"), write("b")], 10).unwrap();
        let mut again = write("a");
        again.object = "Other".into();
        store.insert(&[again], 11).unwrap();
        let due = store.due(100, 10).unwrap();
        assert_eq!(due.len(), 2);
        assert_eq!(due[0].write.object, "Case", "the first insert wins");
        store.mark_retry("a", 500, "HTTP_503", 100).unwrap();
        assert_eq!(store.due(100, 10).unwrap().len(), 1);
        store.mark_delivered("b", "500x", 101).unwrap();
        drop(store);
        let store = WriteStore::open(&path).unwrap();
        assert_eq!(store.counts().unwrap(), (1, 1, 0));
        let a = store.state("a").unwrap().unwrap();
        assert_eq!((a.state.as_str(), a.attempts), ("pending", 1));
        assert_eq!(
            store.state("b").unwrap().unwrap().record_id.as_deref(),
            Some("500x")
        );
    }
}
