//! Wrap-up: the agent's disposition and notes onto the call's Task. Durable: the wrap-up is a
//! row in the outbox database (committed before the console hears "ok"), delivered once the
//! call's Task exists (the call log is delivered first), with `PATCH /sobjects/Task/<id>`:
//! `CallDisposition`, and the notes after the call's own `Description`. Sending a wrap-up again
//! replaces the previous one (and is written again).

use std::time::Duration;

use natterbox_common::salesforce::SalesforceClient;
use natterbox_common::wire::CallLog;
use reqwest::Method;
use rusqlite::params;
use serde_json::json;

use crate::backoff::now_ms;
use crate::outbox::Outbox;
use crate::App;

/// A wrap-up nobody could deliver within this long (no Task ever appeared) is given up.
const GIVE_UP_AFTER_MS: u64 = 24 * 3600 * 1000;
/// How often a wrap-up waits for its call's Task.
const WAIT_FOR_TASK: Duration = Duration::from_secs(2);
const MAX_ATTEMPTS: u32 = 10;
/// Salesforce's `Description` limit (textarea 32,000).
const DESCRIPTION_MAX: usize = 32_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrapUp {
    pub call_uuid: String,
    pub org: String,
    pub disposition: String,
    pub notes: String,
}

/// A pending wrap-up with what the outbox knows of its call.
struct DueWrapUp {
    wrap: WrapUp,
    attempts: u32,
    created_ms: u64,
    /// The call log's state, record and Task id (none yet: the call has not ended or its log
    /// has not arrived).
    call: Option<(String, String, Option<String>)>,
}

impl Outbox {
    fn wrap_up_table(conn: &rusqlite::Connection) -> Result<(), String> {
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS wrap_up (
                 call_uuid TEXT PRIMARY KEY,
                 org TEXT NOT NULL,
                 disposition TEXT NOT NULL,
                 notes TEXT NOT NULL,
                 state TEXT NOT NULL DEFAULT 'pending',
                 attempts INTEGER NOT NULL DEFAULT 0,
                 next_attempt_ms INTEGER NOT NULL DEFAULT 0,
                 last_error TEXT,
                 created_ms INTEGER NOT NULL,
                 updated_ms INTEGER NOT NULL
             );",
        )
        .map_err(|e| format!("outbox database: {e}"))
    }

    /// Commits the wrap-up (replacing an earlier one for the call).
    pub fn put_wrap_up(&self, wrap: &WrapUp, now_ms: u64) -> Result<(), String> {
        let conn = self.lock();
        Self::wrap_up_table(&conn)?;
        conn.execute(
            "INSERT INTO wrap_up (call_uuid, org, disposition, notes, created_ms, updated_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5)
             ON CONFLICT(call_uuid) DO UPDATE SET org = ?2, disposition = ?3, notes = ?4,
                 state = 'pending', attempts = 0, next_attempt_ms = 0, last_error = NULL,
                 updated_ms = ?5",
            params![
                wrap.call_uuid,
                wrap.org,
                wrap.disposition,
                wrap.notes,
                now_ms as i64
            ],
        )
        .map_err(|e| format!("outbox database: {e}"))?;
        Ok(())
    }

    /// The wrap-up's state (`pending`, `delivered`, `failed`), for tests and `/status`.
    pub fn wrap_up_state(&self, call_uuid: &str) -> Result<Option<String>, String> {
        let conn = self.lock();
        Self::wrap_up_table(&conn)?;
        let mut statement = conn
            .prepare("SELECT state FROM wrap_up WHERE call_uuid = ?1")
            .map_err(|e| e.to_string())?;
        let mut rows = statement
            .query(params![call_uuid])
            .map_err(|e| e.to_string())?;
        Ok(rows
            .next()
            .map_err(|e| e.to_string())?
            .map(|r| r.get::<_, String>(0))
            .transpose()
            .map_err(|e| e.to_string())?)
    }

    fn due_wrap_ups(&self, now_ms: u64) -> Result<Vec<DueWrapUp>, String> {
        let conn = self.lock();
        Self::wrap_up_table(&conn)?;
        let mut statement = conn
            .prepare(
                "SELECT w.call_uuid, w.org, w.disposition, w.notes, w.attempts, w.created_ms,
                        c.state, c.record, c.task_id
                 FROM wrap_up w LEFT JOIN call_log c ON c.call_uuid = w.call_uuid
                 WHERE w.state = 'pending' AND w.next_attempt_ms <= ?1
                 ORDER BY w.updated_ms LIMIT 50",
            )
            .map_err(|e| e.to_string())?;
        let rows = statement
            .query_map(params![now_ms as i64], |r| {
                let call_state: Option<String> = r.get(6)?;
                let record: Option<String> = r.get(7)?;
                let task_id: Option<String> = r.get(8)?;
                Ok(DueWrapUp {
                    wrap: WrapUp {
                        call_uuid: r.get(0)?,
                        org: r.get(1)?,
                        disposition: r.get(2)?,
                        notes: r.get(3)?,
                    },
                    attempts: r.get::<_, i64>(4)? as u32,
                    created_ms: r.get::<_, i64>(5)? as u64,
                    call: call_state.zip(record).map(|(s, r)| (s, r, task_id)),
                })
            })
            .map_err(|e| e.to_string())?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())
    }

    fn settle_wrap_up(
        &self,
        call_uuid: &str,
        state: &str,
        attempts: u32,
        next_attempt_ms: u64,
        error: Option<&str>,
        now_ms: u64,
    ) -> Result<(), String> {
        self.lock()
            .execute(
                "UPDATE wrap_up SET state = ?2, attempts = ?3, next_attempt_ms = ?4,
                     last_error = ?5, updated_ms = ?6 WHERE call_uuid = ?1",
                params![
                    call_uuid,
                    state,
                    attempts,
                    next_attempt_ms as i64,
                    error,
                    now_ms as i64
                ],
            )
            .map(|_| ())
            .map_err(|e| format!("outbox database: {e}"))
    }
}

/// The Task's fields for a wrap-up: the disposition, and the call's description with the notes.
pub fn task_update(
    log: &CallLog,
    app_config: &natterbox_common::config::CallLogConfig,
    wrap: &WrapUp,
) -> serde_json::Value {
    let task = crate::calllog::task_fields(log, app_config);
    let mut description = task["Description"].as_str().unwrap_or_default().to_string();
    description.push_str(&format!("\n\nDisposition: {}", wrap.disposition));
    if !wrap.notes.is_empty() {
        description.push_str("\nNotes:\n");
        description.push_str(&wrap.notes);
    }
    let description: String = description.chars().take(DESCRIPTION_MAX).collect();
    json!({"CallDisposition": wrap.disposition, "Description": description})
}

/// One round: every due wrap-up whose Task exists is written; the others wait.
pub async fn deliver_round(app: &App) {
    let outbox = app.outbox.clone();
    let now = now_ms();
    let due = match tokio::task::spawn_blocking(move || outbox.due_wrap_ups(now)).await {
        Ok(Ok(due)) => due,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot read wrap-ups");
            return;
        }
        Err(_) => return,
    };
    for item in due {
        let (state, attempts, next, error) = deliver_one(app, &item).await;
        let outbox = app.outbox.clone();
        let uuid = item.wrap.call_uuid.clone();
        let _ = tokio::task::spawn_blocking(move || {
            outbox.settle_wrap_up(&uuid, state, attempts, next, error.as_deref(), now_ms())
        })
        .await;
    }
}

/// (state, attempts, next attempt, error) after trying `item`.
async fn deliver_one(app: &App, item: &DueWrapUp) -> (&'static str, u32, u64, Option<String>) {
    let now = now_ms();
    let waiting = |why: &str| {
        if now.saturating_sub(item.created_ms) > GIVE_UP_AFTER_MS {
            ("failed", item.attempts, 0, Some(why.to_string()))
        } else {
            (
                "pending",
                item.attempts,
                now + WAIT_FOR_TASK.as_millis() as u64,
                None,
            )
        }
    };
    let Some((call_state, record, task_id)) = &item.call else {
        return waiting("the call's log never arrived");
    };
    if call_state == "failed" {
        return (
            "failed",
            item.attempts,
            0,
            Some("the call's Task could not be created".into()),
        );
    }
    let Some(task_id) = task_id else {
        return waiting("the call's Task was never created");
    };
    let config = app.config();
    let Some(org) = config.org(&item.wrap.org) else {
        return (
            "failed",
            item.attempts,
            0,
            Some(format!("org {} is gone from the config", item.wrap.org)),
        );
    };
    let Ok(log) = serde_json::from_str::<CallLog>(record) else {
        return (
            "failed",
            item.attempts,
            0,
            Some("the call log record is unreadable".into()),
        );
    };
    let fields = task_update(&log, &org.call_log, &item.wrap);
    let url_tail = format!("sobjects/Task/{task_id}");
    let result = crate::calllog::with_session(app, &org.name, |session| {
        let client = SalesforceClient::new(app.http.clone(), &org.api_version);
        let fields = fields.clone();
        let url = format!(
            "{}/services/data/v{}/{url_tail}",
            session.instance_url.trim_end_matches('/'),
            client.api_version()
        );
        async move {
            client
                .call(&session, Method::PATCH, url.as_str(), Some(&fields))
                .await
                .map(|_| ())
        }
    })
    .await;
    let attempts = item.attempts + 1;
    match result {
        Ok(()) => {
            tracing::info!(org = %org.name, call_uuid = %item.wrap.call_uuid, task_id = %task_id, "wrap-up written to the call's Task");
            ("delivered", attempts, 0, None)
        }
        Err(e) => {
            let error = e.to_string();
            tracing::warn!(org = %org.name, call_uuid = %item.wrap.call_uuid, error = %error, "wrap-up not written yet");
            if attempts >= MAX_ATTEMPTS {
                ("failed", attempts, 0, Some(error))
            } else {
                let wait = 2_000u64 << attempts.min(8);
                ("pending", attempts, now + wait, Some(error))
            }
        }
    }
}
