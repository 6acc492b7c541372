//! VoiceCall records through Salesforce's Telephony Integration REST API (Service Cloud Voice):
//! created when the call starts (`POST /telephony/v1/voiceCalls`), updated when it is answered
//! and when it ends (`PATCH /telephony/v1/voiceCalls/{vendorCallKey}`), with the recording's
//! location when there is one.
//!
//! A transfer (blind or warm, from the module's `call_state` frame) creates the transferred
//! leg's own VoiceCall, a child of the call's (`parentVoiceCallId`, `initiationMethod`
//! `Transfer`: how the Voice Developer Guide's "Create a Voice Call Record" documents
//! transfers), ended when the call ends.
//!
//! Every request is a step in the outbox (`voicecall_queue`), sent in order per call and
//! exactly once. Salesforce documents no "already exists" answer to a repeated create, so none
//! is relied on: a create is marked sent before it goes out, and one whose outcome is unknown
//! (crash, timeout, lost connection, an unreadable answer) is first looked up over the org's
//! REST API (`SELECT Id FROM VoiceCall WHERE VendorCallKey = '…'`) and the found record
//! adopted. Updates go to the record's id (`PATCH …/voiceCalls/{voiceCallId}`), so a duplicate
//! made elsewhere cannot take them. A PATCH sent again sets the same values again.
//!
//! Authorization: a JWT signed RS256 with the telephony provider's private key, claims `iss`
//! (org id), `sub` (contact center API name), `aud` `https://scrt.salesforce.com`, `exp` within
//! three minutes, `iat`, `jti`; header `Telephony-Provider-Name` (Voice Developer Guide,
//! "Telephony Integration REST API Authorization", "Create a Voice Call Record").

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use natterbox_common::call_control::{CallPhase, CallState};
use natterbox_common::config::{OrgConfig, VoiceConfig};
use natterbox_common::salesforce::escape::soql_string;
use natterbox_common::salesforce::SalesforceClient;
use natterbox_common::wire::{CallEvent, CallLog, CallProgress, Direction};
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::backoff::{self, now_ms};
use crate::calllog::utc_date;
use crate::outbox::db;
use crate::voicecall_queue::{DueStep, VoiceCallStep};
use crate::App;

/// The audience Salesforce documents for the Telephony Integration API's JWT.
pub const SCRT_AUDIENCE: &str = "https://scrt.salesforce.com";
/// `exp` must be within three minutes; two leaves room for clock skew.
const TOKEN_LIFETIME: Duration = Duration::from_secs(120);
const ROUND_LIMIT: usize = 200;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const RETRY_BASE: Duration = Duration::from_secs(2);
const RETRY_CAP: Duration = Duration::from_secs(300);
/// Transient failures (5xx, network, 401 from a key not yet on the CallCenter): about a day.
const MAX_TRANSIENT_ATTEMPTS: u32 = 200;
const MAX_PERMANENT_ATTEMPTS: u32 = 3;
const KEEP_DONE_MS: u64 = 7 * 86_400_000;
const KEEP_FAILED_MS: u64 = 30 * 86_400_000;
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` (ISO 8601, UTC).
pub fn iso_time(ms: u64) -> String {
    let secs = ms / 1000 % 86_400;
    format!(
        "{}T{:02}:{:02}:{:02}.{:03}Z",
        utc_date(ms),
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        ms % 1000
    )
}

/// The create request for a call: the caller is the end user's participant.
pub(crate) fn create_step(
    org: &str,
    call_uuid: &str,
    from: &str,
    to: &str,
    direction: Direction,
    start_ms: u64,
    voice: &VoiceConfig,
) -> Option<VoiceCallStep> {
    let (method, end_user) = match direction {
        Direction::Inbound => ("Inbound", from),
        Direction::Outbound => ("Outbound", to),
        // An extension calling an extension is no contact-center conversation.
        Direction::Internal => return None,
    };
    Some(VoiceCallStep {
        call_uuid: call_uuid.to_string(),
        org: org.to_string(),
        kind: "create".into(),
        body: json!({
            "callCenterApiName": voice.call_center,
            "vendorCallKey": call_uuid,
            "to": to,
            "from": from,
            "initiationMethod": method,
            "startTime": iso_time(start_ms),
            "participants": [{"participantKey": end_user, "type": "END_USER"}],
        }),
    })
}

fn patch_step(org: &str, call_uuid: &str, kind: &str, body: Value) -> VoiceCallStep {
    VoiceCallStep {
        call_uuid: call_uuid.to_string(),
        org: org.to_string(),
        kind: kind.to_string(),
        body,
    }
}

/// Steps for a live event: the create (if this is the first the sidecar hears of the call),
/// and the accept when answered.
pub fn steps_for_progress(p: &CallProgress, voice: &VoiceConfig) -> Vec<VoiceCallStep> {
    let Some(create) = create_step(
        &p.org,
        &p.call_uuid,
        &p.from,
        &p.to,
        p.direction,
        p.start_ms,
        voice,
    ) else {
        return Vec::new();
    };
    let mut steps = vec![create];
    if p.event == CallEvent::Answered {
        steps.push(patch_step(
            &p.org,
            &p.call_uuid,
            "accept",
            json!({"acceptTime": iso_time(p.at_ms)}),
        ));
    }
    steps
}

/// Steps for a finished call: whichever of create and accept were not heard live, then the end.
pub fn steps_for_log(log: &CallLog, voice: &VoiceConfig) -> Vec<VoiceCallStep> {
    let Some(create) = create_step(
        &log.org,
        &log.call_uuid,
        &log.from,
        &log.to,
        log.direction,
        log.start_ms,
        voice,
    ) else {
        return Vec::new();
    };
    let mut steps = vec![create];
    if let Some(answer_ms) = log.answer_ms {
        steps.push(patch_step(
            &log.org,
            &log.call_uuid,
            "accept",
            json!({"acceptTime": iso_time(answer_ms)}),
        ));
    }
    let mut end = json!({"endTime": iso_time(log.end_ms.max(log.start_ms))});
    // Only a link Salesforce can follow: a file path would get the whole end refused.
    let recording = log.recording_url.as_deref().filter(|u| {
        let is_url = u.starts_with("https://") || u.starts_with("http://");
        if !is_url && !u.is_empty() {
            tracing::warn!(call_uuid = %log.call_uuid, "sf_recording_url is not an http(s) URL; the VoiceCall gets no recording");
        }
        is_url
    });
    if let Some(url) = recording {
        end["recordingLocation"] = json!(url);
        if log.answer_ms.is_some() {
            end["totalRecordingDuration"] = json!(log.duration_s);
        }
    }
    steps.push(patch_step(&log.org, &log.call_uuid, "end", end));
    steps
}

/// The vendorCallKey of a transfer's child record: the call's UUID and when it was transferred.
pub fn transfer_key(call_uuid: &str, at_ms: u64) -> String {
    format!("{call_uuid}.transfer.{at_ms}")
}

/// The step for a transfer: the transferred leg's VoiceCall, a child of the call's. `None` for
/// anything that is not a transfer of a customer call.
pub fn transfer_step(state: &CallState, voice: &VoiceConfig) -> Option<VoiceCallStep> {
    if state.state != CallPhase::Transferred
        || state.direction == Direction::Internal
        || state.other_party.is_empty()
    {
        return None;
    }
    let to = state.transferred_to.as_deref().filter(|t| !t.is_empty())?;
    let key = transfer_key(&state.call_uuid, state.at_ms);
    Some(VoiceCallStep {
        call_uuid: state.call_uuid.clone(),
        org: state.org.clone(),
        kind: format!("transfer@{key}"),
        body: json!({
            "callCenterApiName": voice.call_center,
            "vendorCallKey": key,
            // The sender puts the parent's record id here once it has one.
            "parentVoiceCallId": state.call_uuid,
            "to": to,
            "from": state.other_party,
            "initiationMethod": "Transfer",
            "startTime": iso_time(state.at_ms),
            "participants": [{"participantKey": state.other_party, "type": "END_USER"}],
        }),
    })
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
    jti: String,
}

/// The bearer token for one request, signed by the sidecar's one JWT signer.
pub fn bearer_token(voice: &VoiceConfig, now: SystemTime) -> Result<String, String> {
    static SERIAL: AtomicU64 = AtomicU64::new(0);
    let pem = voice.private_key.load()?;
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let claims = Claims {
        iss: &voice.org_id,
        sub: &voice.call_center,
        aud: SCRT_AUDIENCE,
        iat: since.as_secs(),
        exp: (since + TOKEN_LIFETIME).as_secs(),
        jti: format!(
            "{:x}-{:x}-{:x}",
            since.as_nanos(),
            std::process::id(),
            SERIAL.fetch_add(1, Ordering::Relaxed)
        ),
    };
    crate::oauth::sign_rs256(&claims, &pem).map_err(|e| e.to_string())
}

/// How a step went.
#[derive(Debug, PartialEq)]
enum Outcome {
    /// Done; for a create, the record's id when known.
    Done(Option<String>),
    /// Try again later (5xx, network, timeouts, 401/403 that an admin can fix).
    Transient(String),
    /// Salesforce will refuse it again.
    Refused(String),
}

/// Percent-encodes a path segment (call UUIDs are plain, but nothing unchecked goes in a URL).
fn path_segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The org's VoiceCall with this vendorCallKey, over its REST API (the oldest, should a
/// duplicate exist). `Err` when the org cannot be asked now.
async fn look_up(
    app: &App,
    org: &OrgConfig,
    vendor_call_key: &str,
) -> Result<Option<String>, String> {
    let client = SalesforceClient::new(app.http.clone(), &org.api_version);
    let soql = format!(
        "SELECT Id FROM VoiceCall WHERE VendorCallKey = {} ORDER BY CreatedDate ASC LIMIT 1",
        soql_string(vendor_call_key)
    );
    let records = crate::calllog::with_session(app, &org.name, |s| {
        let client = client.clone();
        let soql = soql.clone();
        async move { client.query(&s, &soql, 200).await.map(|(r, _)| r) }
    })
    .await
    .map_err(|e| format!("cannot look the VoiceCall up: {e}"))?;
    Ok(records
        .first()
        .and_then(|r| r.get("Id"))
        .and_then(Value::as_str)
        .map(str::to_string))
}

async fn send(app: &App, org: &OrgConfig, voice: &VoiceConfig, due: &DueStep) -> Outcome {
    let step = &due.step;
    let key = step.target_key().to_string();
    let known_id = {
        let key = key.clone();
        match db(app, move |o| o.voice_call_id(&key)).await {
            Ok(id) => id,
            Err(e) => return Outcome::Transient(e),
        }
    };
    let mut body = step.body.clone();
    if step.is_create() {
        if known_id.is_some() {
            return Outcome::Done(known_id);
        }
        if due.sent {
            // It went out before and nothing recorded how it went: it may exist.
            match look_up(app, org, &key).await {
                Ok(Some(id)) => {
                    tracing::info!(org = %step.org, call_uuid = %step.call_uuid, step = %step.kind, "VoiceCall found after a create with an unknown outcome; adopted");
                    app.metrics.voicecall_creates_adopted.inc();
                    return Outcome::Done(Some(id));
                }
                Ok(None) => {}
                Err(e) => return Outcome::Transient(e),
            }
        }
        if body.get("parentVoiceCallId").is_some() {
            let parent = step.call_uuid.clone();
            match db(app, move |o| o.voice_call_id(&parent)).await {
                Ok(Some(id)) => body["parentVoiceCallId"] = json!(id),
                Ok(None) => {}
                Err(e) => return Outcome::Transient(e),
            }
        }
        let id = due.id;
        if let Err(e) = db(app, move |o| o.mark_step_sent(id)).await {
            return Outcome::Transient(e);
        }
    }
    let token = match bearer_token(voice, SystemTime::now()) {
        Ok(t) => t,
        Err(e) => return Outcome::Transient(format!("cannot sign the telephony JWT: {e}")),
    };
    let base = format!("{}/telephony/v1/voiceCalls", voice.scrt_url);
    let request = if step.is_create() {
        app.http.post(base)
    } else {
        let target = known_id.as_deref().unwrap_or(&key);
        app.http.patch(format!(
            "{base}/{}{}",
            path_segment(target),
            crate::omni::path_suffix(&step.kind)
        ))
    };
    let request = request
        .bearer_auth(token)
        .header("Telephony-Provider-Name", &voice.provider)
        .json(&body)
        .timeout(REQUEST_TIMEOUT);
    let response = match request.send().await {
        Ok(r) => r,
        Err(e) => return Outcome::Transient(format!("request failed: {e}")),
    };
    let status = response.status().as_u16();
    let text = match response.text().await {
        Ok(t) => t,
        Err(e) => return Outcome::Transient(format!("HTTP {status}, answer lost: {e}")),
    };
    let detail: String = text.chars().take(300).collect();
    match status {
        200..=299 if step.is_create() => {
            let id = serde_json::from_str::<Value>(&text).ok().and_then(|v| {
                v.get("voiceCallId")
                    .and_then(Value::as_str)
                    .map(String::from)
            });
            match id {
                Some(id) => Outcome::Done(Some(id)),
                // Created, but which record is unknown: the next attempt looks it up.
                None => {
                    Outcome::Transient(format!("HTTP {status} without a voiceCallId: {detail}"))
                }
            }
        }
        200..=299 => Outcome::Done(None),
        // Undocumented for a repeated create: the next attempt looks the record up.
        401 | 403 | 408 | 409 | 429 | 500..=599 => {
            Outcome::Transient(format!("HTTP {status}: {detail}"))
        }
        _ => Outcome::Refused(format!("HTTP {status}: {detail}")),
    }
}

/// Enqueues a live event's steps (when the org records VoiceCalls) and wakes the worker.
pub async fn on_progress(app: &Arc<App>, progress: CallProgress) {
    let config = app.config();
    let Some(org) = config.org(&progress.org) else {
        tracing::warn!(org = %progress.org, "call progress for an unknown org");
        return;
    };
    let Some(voice) = org
        .voice
        .as_ref()
        .filter(|_| org.call_log.enabled && org.call_log.record.wants_voicecall())
    else {
        return;
    };
    let steps = steps_for_progress(&progress, voice);
    if steps.is_empty() {
        return;
    }
    match db(app, move |o| o.insert_steps(&steps, now_ms())).await {
        Ok(()) => app.voicecall_wake.notify_one(),
        Err(e) => tracing::error!(error = %e, "cannot commit VoiceCall steps"),
    }
}

/// A call's state from the module: a transfer of a call the org records as a VoiceCall
/// becomes the transferred leg's child record.
pub async fn on_call_state(app: &Arc<App>, state: CallState) {
    if state.state != CallPhase::Transferred {
        return;
    }
    let config = app.config();
    let Some(voice) = config.org(&state.org).and_then(|org| {
        org.voice
            .as_ref()
            .filter(|_| org.call_log.enabled && org.call_log.record.wants_voicecall())
    }) else {
        return;
    };
    let Some(step) = transfer_step(&state, voice) else {
        return;
    };
    match db(app, move |o| o.insert_transfer(&step, now_ms())).await {
        Ok(true) => app.voicecall_wake.notify_one(),
        Ok(false) => {
            tracing::debug!(call_uuid = %state.call_uuid, "transfer of a call without a VoiceCall")
        }
        Err(e) => tracing::error!(error = %e, "cannot commit a VoiceCall transfer"),
    }
}

pub async fn run(app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
    let mut last_prune: Option<Instant> = None;
    // Per org: no request before this (after a transient failure).
    let mut paused: HashMap<String, Instant> = HashMap::new();
    loop {
        if *shutdown.borrow() {
            break;
        }
        if last_prune.is_none_or(|t| t.elapsed() >= PRUNE_EVERY) {
            last_prune = Some(Instant::now());
            let now = now_ms();
            let cutoffs = (
                now.saturating_sub(KEEP_DONE_MS),
                now.saturating_sub(KEEP_FAILED_MS),
            );
            if let Err(e) = db(&app, move |o| o.prune_steps(cutoffs.0, cutoffs.1)).await {
                tracing::warn!(error = %e, "cannot prune VoiceCall steps");
            }
        }
        deliver_round(&app, &mut paused, &shutdown).await;
        app.metrics.voicecall_rounds.inc();
        tokio::select! {
            _ = app.voicecall_wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(1000)) => {}
            _ = shutdown.changed() => {}
        }
    }
}

async fn deliver_round(
    app: &Arc<App>,
    paused: &mut HashMap<String, Instant>,
    shutdown: &watch::Receiver<bool>,
) {
    let due = match db(app, |o| o.due_steps(now_ms(), ROUND_LIMIT)).await {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(error = %e, "cannot read VoiceCall steps");
            return;
        }
    };
    let config = app.config();
    for due in due {
        if *shutdown.borrow() {
            return;
        }
        let (id, attempts) = (due.id, due.attempts);
        let step = due.step.clone();
        if paused.get(&step.org).is_some_and(|t| *t > Instant::now()) {
            continue;
        }
        let Some((org, voice)) = config
            .org(&step.org)
            .and_then(|o| o.voice.clone().map(|v| (o.clone(), v)))
        else {
            let error = format!("org \"{}\" has no <service-cloud-voice>", step.org);
            let _ = db(app, move |o| o.step_failed(id, true, &error, now_ms())).await;
            continue;
        };
        let (error, max) = match send(app, &org, &voice, &due).await {
            Outcome::Done(voice_call_id) => {
                let done = step.clone();
                let committed = db(app, move |o| {
                    if done.is_create() {
                        o.create_done(id, &done, voice_call_id.as_deref(), now_ms())
                    } else {
                        o.step_done(id, now_ms())
                    }
                })
                .await;
                if let Err(e) = committed {
                    tracing::error!(error = %e, "cannot record a delivered VoiceCall step");
                }
                app.metrics.voicecall_steps_delivered.inc();
                tracing::debug!(org = %step.org, call_uuid = %step.call_uuid, step = %step.kind, "VoiceCall step delivered");
                continue;
            }
            Outcome::Transient(error) => (error, MAX_TRANSIENT_ATTEMPTS),
            Outcome::Refused(error) => (error, MAX_PERMANENT_ATTEMPTS),
        };
        let attempt = attempts + 1;
        if attempt >= max {
            tracing::error!(org = %step.org, call_uuid = %step.call_uuid, step = %step.kind, %error, "giving up on a VoiceCall step");
            app.metrics.voicecall_steps_failed.inc();
            let whole_call = step.kind == "create";
            let _ = db(app, move |o| {
                o.step_failed(id, whole_call, &error, now_ms())
            })
            .await;
        } else {
            let wait = backoff::delay(attempt, RETRY_BASE, RETRY_CAP);
            tracing::warn!(org = %step.org, call_uuid = %step.call_uuid, step = %step.kind, %error, retry_in_ms = wait.as_millis() as u64, "VoiceCall step failed");
            // The org's other calls wait a little too: one bad moment is not retried per call.
            paused.insert(step.org.clone(), Instant::now() + wait.min(RETRY_BASE));
            let next = now_ms() + wait.as_millis() as u64;
            let _ = db(app, move |o| o.step_retry(id, next, &error, now_ms())).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use natterbox_common::config::SecretRef;

    fn voice() -> VoiceConfig {
        VoiceConfig {
            scrt_url: "https://acme.my.salesforce-scrt.com".into(),
            org_id: "00DEm0000000001".into(),
            call_center: "NatterboxCC".into(),
            provider: "Natterbox".into(),
            private_key: SecretRef::Env("UNUSED".into()),
            omni: None,
        }
    }

    fn state(direction: Direction, other_party: &str) -> CallState {
        CallState {
            call_uuid: "c-1".into(),
            state: CallPhase::Transferred,
            direction,
            other_party: other_party.into(),
            record_id: None,
            org: "acme".into(),
            agent_user_id: None,
            agent_extension: Some("1001".into()),
            muted: false,
            cause: None,
            transferred_to: Some("1002".into()),
            at_ms: 1_767_225_600_000,
        }
    }

    #[test]
    fn a_transfer_of_a_customer_call_is_a_child_record_and_nothing_else_is() {
        let step = transfer_step(&state(Direction::Inbound, "+14155550100"), &voice()).unwrap();
        assert_eq!(step.kind, "transfer@c-1.transfer.1767225600000");
        assert_eq!(step.target_key(), "c-1.transfer.1767225600000");
        assert!(step.is_create());
        assert_eq!(step.body["initiationMethod"], "Transfer");
        assert_eq!(step.body["parentVoiceCallId"], "c-1");
        assert_eq!(step.body["to"], "1002");
        assert_eq!(step.body["startTime"], "2026-01-01T00:00:00.000Z");
        assert!(transfer_step(&state(Direction::Internal, "1005"), &voice()).is_none());
        assert!(transfer_step(&state(Direction::Inbound, ""), &voice()).is_none());
        let mut ended = state(Direction::Inbound, "+14155550100");
        ended.state = CallPhase::Ended;
        assert!(transfer_step(&ended, &voice()).is_none());
    }

    #[test]
    fn a_recording_that_is_no_url_does_not_go_out() {
        let mut log = CallLog {
            org: "acme".into(),
            call_uuid: "c-2".into(),
            from: "+14155550100".into(),
            to: "+18005550199".into(),
            direction: Direction::Inbound,
            start_ms: 1_767_225_600_000,
            answer_ms: Some(1_767_225_605_000),
            end_ms: 1_767_225_665_000,
            duration_s: 60,
            agent_user_id: None,
            who_id: None,
            what_id: None,
            hangup_cause: "NORMAL_CLEARING".into(),
            recording_url: Some("/var/lib/freeswitch/recordings/c-2.wav".into()),
        };
        let end = steps_for_log(&log, &voice()).pop().unwrap();
        assert_eq!(end.kind, "end");
        assert!(end.body.get("recordingLocation").is_none(), "{}", end.body);
        log.recording_url = Some("https://recordings.example/c-2.wav".into());
        let end = steps_for_log(&log, &voice()).pop().unwrap();
        assert_eq!(
            end.body["recordingLocation"],
            "https://recordings.example/c-2.wav"
        );
    }
}
