//! Call logs: from the outbox to Salesforce Tasks, exactly once.
//!
//! Each create is recorded as sent before it goes out. For calls sent before (an attempt that
//! timed out, or a crash before its answer was recorded) the worker first looks for Tasks whose
//! `CallObject` is the call UUID, created since the first send (`CreatedDate` is indexed, so the
//! query stays selective in an org with millions of Tasks, where `CallObject` alone is not);
//! only the missing ones are created, one at a time or batched through `/composite/sobjects`.
//! Calls never sent skip the query: the steady state costs one API call per batch.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use natterbox_common::config::{CallLogConfig, OrgConfig};
use natterbox_common::salesforce::escape::soql_string;
use natterbox_common::salesforce::{ApiError, SalesforceClient, SfError};
use natterbox_common::wire::{CallLog, Direction};
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::backoff::{self, now_ms};
use crate::outbox::{db, PendingRow};
use crate::App;

/// Records per create batch (`/composite/sobjects` takes up to 200).
const CHUNK: usize = 200;
/// A batch smaller than `CHUNK` waits until its oldest call log is this old, so a busy org's
/// call logs travel many to a request (each request counts against the org's daily API
/// allowance) and a quiet org's still arrive within a few seconds of the hangup.
const BATCH_WINDOW: Duration = Duration::from_secs(2);
/// Call UUIDs per dedup query (the query travels in the URL).
const DEDUP_QUERY_CHUNK: usize = 50;
/// How far before a call's first send its Task's `CreatedDate` may read: Salesforce's clock, not
/// ours, stamps it.
const CLOCK_SKEW_MARGIN: Duration = Duration::from_secs(86_400);
const ROUND_LIMIT: usize = 500;
/// Record errors Salesforce will give again: give up after this many attempts.
const MAX_PERMANENT_ATTEMPTS: u32 = 3;
/// Transient failures (5xx, network): keep trying for about a day.
const MAX_TRANSIENT_ATTEMPTS: u32 = 200;
const RETRY_BASE: Duration = Duration::from_secs(2);
const RETRY_CAP: Duration = Duration::from_secs(300);
const LIMIT_PAUSE_BASE: Duration = Duration::from_secs(60);
const LIMIT_PAUSE_CAP: Duration = Duration::from_secs(900);
const NO_TOKEN_WAIT: Duration = Duration::from_secs(2);
/// Longest a single Salesforce call may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Delivered records are kept this long (then Salesforce's CallObject is the only memory).
const KEEP_DELIVERED: Duration = Duration::from_secs(7 * 86_400);
/// Failed records are kept this long for inspection.
const KEEP_FAILED: Duration = Duration::from_secs(30 * 86_400);
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Civil date (UTC) of a Unix time in milliseconds, `YYYY-MM-DD`.
pub fn utc_date(ms: u64) -> String {
    let days = (ms / 86_400_000) as i64;
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!("{y:04}-{m:02}-{d:02}")
}

/// `YYYY-MM-DDTHH:MM:SSZ`.
pub fn utc_time(ms: u64) -> String {
    let secs = ms / 1000 % 86_400;
    format!(
        "{}T{:02}:{:02}:{:02}Z",
        utc_date(ms),
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

fn direction_word(d: Direction) -> &'static str {
    match d {
        Direction::Inbound => "Inbound",
        Direction::Outbound => "Outbound",
        Direction::Internal => "Internal",
    }
}

/// The Task for a call log, per the org's `<call-log>`.
pub fn task_fields(log: &CallLog, config: &CallLogConfig) -> Value {
    let direction = direction_word(log.direction);
    let subject: String = config
        .subject
        .replace("{direction}", direction)
        .replace("{from}", &log.from)
        .replace("{to}", &log.to)
        .chars()
        .take(255)
        .collect();
    let mut description = format!(
        "Direction: {direction}\nFrom: {}\nTo: {}\nStart: {}\n",
        log.from,
        log.to,
        utc_time(log.start_ms)
    );
    match log.answer_ms {
        Some(a) => description.push_str(&format!("Answered: {}\n", utc_time(a))),
        None => description.push_str("Answered: no\n"),
    }
    description.push_str(&format!(
        "End: {}\nDuration: {} s\nHangup cause: {}\nCall UUID: {}",
        utc_time(log.end_ms),
        log.duration_s,
        log.hangup_cause,
        log.call_uuid
    ));
    let mut task = json!({
        "Subject": subject,
        "TaskSubtype": "Call",
        "CallType": direction,
        "CallDurationInSeconds": log.duration_s,
        "CallObject": log.call_uuid,
        "Status": config.status,
        "ActivityDate": utc_date(log.start_ms),
        "Description": description,
    });
    let fields = task.as_object_mut().expect("an object");
    let who = log.who_id.as_deref().filter(|s| !s.is_empty());
    if let Some(who) = who {
        fields.insert("WhoId".into(), json!(who));
    }
    // Salesforce refuses a WhatId next to a Lead WhoId (FIELD_INTEGRITY_EXCEPTION).
    let lead = who.is_some_and(|w| w.starts_with("00Q"));
    if let Some(what) = log.what_id.as_deref().filter(|s| !s.is_empty()) {
        if !lead {
            fields.insert("WhatId".into(), json!(what));
        }
    }
    if let Some(owner) = log.agent_user_id.as_deref().filter(|s| !s.is_empty()) {
        fields.insert("OwnerId".into(), json!(owner));
    }
    task
}

/// Per-org delivery state kept between rounds.
#[derive(Default)]
struct OrgPause {
    until: Option<Instant>,
    limit_pauses: u32,
    failures: u32,
}

/// What went wrong with a whole chunk.
pub(crate) enum ChunkError {
    /// 401 even after a refresh, or no token: wait for the token task.
    NoSession,
    Limit,
    Transient(String),
}

impl std::fmt::Display for ChunkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChunkError::NoSession => f.write_str("no usable access token"),
            ChunkError::Limit => f.write_str("REQUEST_LIMIT_EXCEEDED"),
            ChunkError::Transient(e) => f.write_str(e),
        }
    }
}

pub async fn run(app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
    let mut pauses: HashMap<String, OrgPause> = HashMap::new();
    let mut last_prune: Option<Instant> = None;
    loop {
        if *shutdown.borrow() {
            break;
        }
        if last_prune.is_none_or(|t| t.elapsed() >= PRUNE_EVERY) {
            last_prune = Some(Instant::now());
            match db(&app, |o| o.prune(now_ms(), KEEP_DELIVERED, KEEP_FAILED)).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(rows = n, "pruned old outbox records"),
                Err(e) => tracing::warn!(error = %e, "cannot prune the outbox"),
            }
        }
        deliver_round(&app, &mut pauses, &shutdown).await;
        // Wrap-ups go onto Tasks this round created.
        crate::agent::wrap_up::deliver_round(&app).await;
        update_gauges(&app).await;
        app.metrics.outbox_delivery_rounds.inc();
        tokio::select! {
            _ = app.delivery_wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(1000)) => {}
            _ = shutdown.changed() => {}
        }
    }
}

pub async fn update_gauges(app: &App) {
    let outbox = app.outbox.clone();
    if let Ok(Ok(c)) = tokio::task::spawn_blocking(move || outbox.counts()).await {
        app.metrics.outbox_pending.set(c.pending);
        app.metrics.outbox_delivered.set(c.delivered);
        app.metrics.outbox_failed.set(c.failed);
    }
}

async fn deliver_round(
    app: &Arc<App>,
    pauses: &mut HashMap<String, OrgPause>,
    shutdown: &watch::Receiver<bool>,
) {
    let rows = match db(app, |o| o.due(now_ms(), ROUND_LIMIT)).await {
        Ok(rows) => rows,
        Err(e) => {
            tracing::error!(error = %e, "cannot read the outbox");
            return;
        }
    };
    if rows.is_empty() {
        return;
    }
    let mut by_org: BTreeMap<String, Vec<PendingRow>> = BTreeMap::new();
    for row in rows {
        by_org.entry(row.org.clone()).or_default().push(row);
    }
    let config = app.config();
    for (org_name, rows) in by_org {
        if *shutdown.borrow() {
            return;
        }
        let Some(org) = config
            .org(&org_name)
            .filter(|o| o.call_log.enabled)
            .cloned()
        else {
            for row in rows {
                let uuid = row.call_uuid.clone();
                let name = org_name.clone();
                let _ = db(app, move |o| {
                    o.mark_failed(
                        &uuid,
                        &format!("org \"{name}\" is not configured or has call logging off"),
                        now_ms(),
                    )
                })
                .await;
                app.metrics.org(&org_name).call_logs_failed.inc();
            }
            continue;
        };
        let pause = pauses.entry(org_name.clone()).or_default();
        if pause.until.is_some_and(|t| t > Instant::now()) {
            continue;
        }
        if !batch_is_ready(&rows, now_ms()) && !*shutdown.borrow() {
            continue;
        }
        for chunk in rows.chunks(CHUNK) {
            if *shutdown.borrow() {
                return;
            }
            match deliver_chunk(app, &org, chunk).await {
                Ok(()) => {
                    pause.failures = 0;
                    pause.limit_pauses = 0;
                    pause.until = None;
                }
                Err(ChunkError::NoSession) => {
                    let uuids: Vec<String> = chunk.iter().map(|r| r.call_uuid.clone()).collect();
                    let next = now_ms() + NO_TOKEN_WAIT.as_millis() as u64;
                    let _ = db(app, move |o| o.postpone(&uuids, next)).await;
                    break;
                }
                Err(ChunkError::Limit) => {
                    pause.limit_pauses += 1;
                    let wait =
                        backoff::delay(pause.limit_pauses, LIMIT_PAUSE_BASE, LIMIT_PAUSE_CAP);
                    pause.until = Some(Instant::now() + wait);
                    app.metrics.org(&org_name).api_limit_pauses.inc();
                    tracing::warn!(org = %org_name, pause_s = wait.as_secs(), "REQUEST_LIMIT_EXCEEDED: pausing call logging for this org");
                    break;
                }
                Err(ChunkError::Transient(error)) => {
                    pause.failures += 1;
                    let wait = backoff::delay(pause.failures, RETRY_BASE, RETRY_CAP);
                    pause.until = Some(Instant::now() + wait);
                    tracing::warn!(org = %org_name, %error, retry_in_ms = wait.as_millis() as u64, "call log delivery failed");
                    for row in chunk {
                        retry_or_fail(app, row, &error, MAX_TRANSIENT_ATTEMPTS, wait).await;
                    }
                    break;
                }
            }
        }
    }
}

/// A full batch goes at once; a smaller one when its oldest call log has waited `BATCH_WINDOW`,
/// or when any of it is a retry (its wait was its backoff).
fn batch_is_ready(rows: &[PendingRow], now_ms: u64) -> bool {
    rows.len() >= CHUNK
        || rows.iter().any(|r| {
            r.attempts > 0
                || r.sent_ms.is_some()
                || now_ms.saturating_sub(r.created_ms) >= BATCH_WINDOW.as_millis() as u64
        })
}

async fn retry_or_fail(app: &App, row: &PendingRow, error: &str, max: u32, wait: Duration) {
    let uuid = row.call_uuid.clone();
    let error = error.to_string();
    let attempts = row.attempts + 1;
    if attempts >= max {
        tracing::error!(org = %row.org, call_uuid = %uuid, %error, attempts, "giving up on a call log");
        // The row first, then the counter: whoever sees the counter finds the row failed.
        let _ = db(app, move |o| o.mark_failed(&uuid, &error, now_ms())).await;
        app.metrics.org(&row.org).call_logs_failed.inc();
    } else {
        let next = now_ms() + wait.as_millis() as u64;
        let _ = db(app, move |o| o.mark_retry(&uuid, next, &error, now_ms())).await;
    }
}

/// Runs `op` with the org's session; on 401 asks for a new token once and runs it again.
pub(crate) async fn with_session<T, F, Fut>(app: &App, org: &str, op: F) -> Result<T, ChunkError>
where
    F: Fn(natterbox_common::salesforce::Session) -> Fut,
    Fut: std::future::Future<Output = Result<T, SfError>>,
{
    let mut refreshed = false;
    loop {
        let Some((session, generation)) = app.tokens.session(org) else {
            return Err(ChunkError::NoSession);
        };
        // The shared client has only a connect timeout: a call that hangs must not stall the
        // worker (a create that timed out is found by the next round's CallObject query).
        let result = tokio::time::timeout(REQUEST_TIMEOUT, op(session))
            .await
            .unwrap_or(Err(SfError::Timeout));
        match result {
            Ok(v) => {
                app.tokens.report_ok(org, generation);
                return Ok(v);
            }
            Err(SfError::Api(e)) if e.is_invalid_session() => {
                if refreshed {
                    return Err(ChunkError::NoSession);
                }
                refreshed = true;
                app.tokens.report_rejected(org, generation, false);
                if !app
                    .tokens
                    .wait_newer(org, generation, Duration::from_secs(15))
                    .await
                {
                    return Err(ChunkError::NoSession);
                }
            }
            Err(SfError::Api(e)) if e.is_limit_exceeded() => return Err(ChunkError::Limit),
            Err(e) => return Err(ChunkError::Transient(e.to_string())),
        }
    }
}

async fn deliver_chunk(app: &App, org: &OrgConfig, chunk: &[PendingRow]) -> Result<(), ChunkError> {
    let client = SalesforceClient::new(app.http.clone(), &org.api_version);
    let counters = app.metrics.org(&org.name);

    // 1. Which of the calls sent before already have a Task?
    let mut found: HashMap<String, String> = HashMap::new();
    let sent_before: Vec<&PendingRow> = chunk.iter().filter(|r| r.sent_ms.is_some()).collect();
    for part in sent_before.chunks(DEDUP_QUERY_CHUNK) {
        let list = part
            .iter()
            .map(|r| soql_string(&r.call_uuid))
            .collect::<Vec<_>>()
            .join(",");
        let first_sent = part.iter().filter_map(|r| r.sent_ms).min().unwrap_or(0);
        let since = utc_time(first_sent.saturating_sub(CLOCK_SKEW_MARGIN.as_millis() as u64));
        let soql = format!(
            "SELECT Id, CallObject FROM Task WHERE CallObject IN ({list}) AND CreatedDate >= {since}"
        );
        let existing = with_session(app, &org.name, |s| {
            let client = client.clone();
            let soql = soql.clone();
            async move { client.query(&s, &soql, 2000).await.map(|(r, _)| r) }
        })
        .await?;
        for record in existing {
            if let (Some(call), Some(id)) = (
                record.get("CallObject").and_then(Value::as_str),
                record.get("Id").and_then(Value::as_str),
            ) {
                found.insert(call.to_string(), id.to_string());
            }
        }
    }
    let mut missing = Vec::new();
    let mut already = Vec::new();
    for row in chunk {
        match found.get(&row.call_uuid) {
            Some(id) => {
                already.push((row.call_uuid.clone(), id.clone()));
                tracing::info!(org = %org.name, call_uuid = %row.call_uuid, "call log was already in Salesforce");
            }
            None => missing.push(row),
        }
    }
    if !already.is_empty() {
        let n = already.len() as u64;
        if let Err(e) = db(app, move |o| o.mark_delivered_many(&already, now_ms())).await {
            tracing::error!(error = %e, "cannot record call logs found in Salesforce (the next round finds them again)");
        }
        counters.call_logs_deduplicated.add(n);
    }
    if missing.is_empty() {
        return Ok(());
    }
    // Recorded before sending: if the answer is lost, the next attempt looks for the Task first.
    let sending: Vec<String> = missing.iter().map(|r| r.call_uuid.clone()).collect();
    db(app, move |o| o.mark_sent(&sending, now_ms()))
        .await
        .map_err(ChunkError::Transient)?;

    // 2. Create what is missing.
    let results: Vec<Result<String, ApiError>> = if missing.len() == 1 {
        let fields = task_fields(&missing[0].log, &org.call_log);
        let one = with_session(app, &org.name, |s| {
            let client = client.clone();
            let fields = fields.clone();
            async move {
                match client.create(&s, "Task", &fields).await {
                    Ok(id) => Ok(Ok(id)),
                    // A record-level refusal is the record's problem, not the chunk's.
                    Err(SfError::Api(e))
                        if !e.is_invalid_session()
                            && !e.is_limit_exceeded()
                            && !e.is_server_side()
                            && e.status == 400 =>
                    {
                        Ok(Err(e))
                    }
                    Err(e) => Err(e),
                }
            }
        })
        .await?;
        vec![one]
    } else {
        let records: Vec<Value> = missing
            .iter()
            .map(|r| {
                let mut task = task_fields(&r.log, &org.call_log);
                task.as_object_mut()
                    .expect("an object")
                    .insert("attributes".into(), json!({"type": "Task"}));
                task
            })
            .collect();
        with_session(app, &org.name, |s| {
            let client = client.clone();
            let records = records.clone();
            async move { client.create_many(&s, records).await }
        })
        .await?
    };
    let mut delivered = Vec::new();
    let mut refused = Vec::new();
    for (row, result) in missing.iter().zip(results) {
        match result {
            Ok(id) => {
                tracing::debug!(org = %org.name, call_uuid = %row.call_uuid, task_id = %id, "call log written");
                delivered.push((row.call_uuid.clone(), id));
            }
            Err(e) => refused.push((*row, e)),
        }
    }
    if !delivered.is_empty() {
        let n = delivered.len() as u64;
        if let Err(e) = db(app, move |o| o.mark_delivered_many(&delivered, now_ms())).await {
            tracing::error!(error = %e, "cannot record delivered call logs (the next round will find their Tasks)");
        }
        counters.call_logs_delivered.add(n);
    }
    for (row, e) in refused {
        let max = if e.is_server_side() || e.is_limit_exceeded() {
            MAX_TRANSIENT_ATTEMPTS
        } else {
            MAX_PERMANENT_ATTEMPTS
        };
        tracing::warn!(org = %org.name, call_uuid = %row.call_uuid, error = %e, "Salesforce refused a call log Task");
        let wait = backoff::delay(row.attempts + 1, RETRY_BASE, RETRY_CAP);
        retry_or_fail(app, row, &e.to_string(), max, wait).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log() -> CallLog {
        CallLog {
            org: "acme".into(),
            call_uuid: "u-1".into(),
            from: "+14155550100".into(),
            to: "1001".into(),
            direction: Direction::Inbound,
            start_ms: 1_767_225_600_000,
            answer_ms: Some(1_767_225_605_000),
            end_ms: 1_767_225_665_000,
            duration_s: 65,
            agent_user_id: Some("005000000000001AAA".into()),
            who_id: Some("003000000000001AAA".into()),
            what_id: Some("001000000000001AAA".into()),
            hangup_cause: "NORMAL_CLEARING".into(),
            recording_url: None,
        }
    }

    #[test]
    fn small_batches_wait_for_the_window_unless_retried() {
        let row = |created_ms: u64, attempts: u32, sent_ms: Option<u64>| PendingRow {
            call_uuid: format!("c{created_ms}"),
            org: "acme".into(),
            log: log(),
            attempts,
            sent_ms,
            created_ms,
        };
        let now = 100_000;
        assert!(!batch_is_ready(&[row(now - 1_999, 0, None)], now));
        assert!(batch_is_ready(&[row(now - 2_000, 0, None)], now));
        assert!(
            batch_is_ready(&[row(now, 1, None)], now),
            "a retry waited its backoff"
        );
        assert!(
            batch_is_ready(&[row(now, 0, Some(now))], now),
            "sent before"
        );
        let full: Vec<_> = (0..CHUNK as u64).map(|i| row(now - i, 0, None)).collect();
        assert!(batch_is_ready(&full, now));
        assert!(!batch_is_ready(&full[1..], now));
    }

    #[test]
    fn dates_are_utc_civil_dates() {
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(utc_date(1_767_225_600_000), "2026-01-01");
        assert_eq!(utc_date(951_782_400_000), "2000-02-29");
        assert_eq!(utc_time(1_767_225_665_000), "2026-01-01T00:01:05Z");
    }

    #[test]
    fn builds_the_task() {
        let config = CallLogConfig {
            enabled: true,
            directions: vec![Direction::Inbound],
            subject: "Call {direction} {from} to {to}".into(),
            status: "Completed".into(),
            record: natterbox_common::config::CallRecord::Task,
        };
        let task = task_fields(&log(), &config);
        assert_eq!(task["Subject"], "Call Inbound +14155550100 to 1001");
        assert_eq!(task["TaskSubtype"], "Call");
        assert_eq!(task["CallType"], "Inbound");
        assert_eq!(task["CallDurationInSeconds"], 65);
        assert_eq!(task["CallObject"], "u-1");
        assert_eq!(task["WhoId"], "003000000000001AAA");
        assert_eq!(task["WhatId"], "001000000000001AAA");
        assert_eq!(task["OwnerId"], "005000000000001AAA");
        assert_eq!(task["ActivityDate"], "2026-01-01");
        assert!(task["Description"]
            .as_str()
            .unwrap()
            .contains("Hangup cause: NORMAL_CLEARING"));

        let mut lead = log();
        lead.who_id = Some("00Q000000000001AAA".into());
        let task = task_fields(&lead, &config);
        assert_eq!(task["WhoId"], "00Q000000000001AAA");
        assert!(task.get("WhatId").is_none(), "no WhatId with a Lead");
    }
}
