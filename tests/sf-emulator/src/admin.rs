//! `/__emulator/…`: fault injection and observation (JSON, unauthenticated, loopback only), and
//! the same operations as a Rust handle (`Admin`).

use crate::faults::FaultRule;
use crate::http::{Request, Response};
use crate::seed::PhoneMatch;
use crate::state::{Limits, Org};
use crate::stats::QueryLogEntry;
use hyper::Method;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// Partial update of the API limits (`POST /__emulator/limits`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsUpdate {
    pub daily_used: Option<u64>,
    pub daily_max: Option<u64>,
    pub concurrent_max: Option<u64>,
    pub long_running_ms: Option<u64>,
}

/// Partial update of runtime settings (`POST /__emulator/config`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigUpdate {
    pub session_timeout_s: Option<f64>,
    /// Sessions die after this many calls; 0 = no limit.
    pub session_max_calls: Option<u64>,
    /// How long a request body may take to arrive before 408.
    pub body_timeout_ms: Option<u64>,
    pub batch_size: Option<usize>,
    pub phone_match: Option<PhoneMatch>,
    /// The Telephony Integration API's answer to a second create with the same vendorCallKey:
    /// `"new-record"` (default) or `"conflict"` (409).
    pub voicecall_duplicate_create: Option<String>,
}

/// `POST /__emulator/omni/agents`: an agent (User id) goes online or offline in Omni-Channel.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OmniAgent {
    pub user_id: String,
    #[serde(default)]
    pub online: bool,
}

/// `POST /__emulator/omni/accept`: the agent offered the call's work accepts it in the Omni
/// widget. `voice_call`: the VoiceCall id or vendorCallKey.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OmniAccept {
    pub voice_call: String,
}

/// Rust handle over the admin operations of one running emulator.
#[derive(Clone)]
pub struct Admin {
    org: Arc<Org>,
}

impl Admin {
    pub(crate) fn new(org: Arc<Org>) -> Self {
        Admin { org }
    }

    /// `GET /__emulator/stats`: `{"total_requests","in_flight","peak_in_flight","endpoints":{…},"queries":{…},"api_usage":{…},"active_sessions"}`.
    pub fn stats(&self) -> Value {
        stats(&self.org)
    }

    /// How many requests hit one endpoint label (see README: "Endpoint labels").
    pub fn endpoint_count(&self, label: &str) -> u64 {
        self.stats()["endpoints"][label].as_u64().unwrap_or(0)
    }

    pub fn peak_in_flight(&self) -> u64 {
        self.stats()["peak_in_flight"].as_u64().unwrap_or(0)
    }

    /// Every SOQL/SOSL string received, in order.
    pub fn queries(&self) -> Vec<QueryLogEntry> {
        self.org.stats.query_log()
    }

    /// Published platform events, oldest first.
    pub fn events(&self) -> Vec<Value> {
        self.org.data().events.clone()
    }

    /// Changes a record as a user working in Salesforce would (e.g. reassigns its owner with
    /// `{"OwnerId": "005…"}`): validated like an API update, and a change event for Pub/Sub
    /// subscribers. `user` is the id the change is committed as.
    pub fn update_record(
        &self,
        object: &str,
        id: &str,
        fields: serde_json::Map<String, Value>,
        user: &str,
    ) -> Result<(), String> {
        let def = self
            .org
            .schema
            .object_shared(object)
            .cloned()
            .ok_or_else(|| format!("no object {object}"))?;
        self.org
            .data()
            .store
            .update(&def, id, &fields, user)
            .map_err(|e| format!("{e:?}"))
    }

    /// Creates a record as a user working in Salesforce would: validated like an API create,
    /// and a `CREATE` change event. Returns the new id.
    pub fn create_record(
        &self,
        object: &str,
        fields: serde_json::Map<String, Value>,
        user: &str,
    ) -> Result<String, String> {
        let def = self
            .org
            .schema
            .object_shared(object)
            .cloned()
            .ok_or_else(|| format!("no object {object}"))?;
        self.org
            .data()
            .store
            .create(&def, &fields, user)
            .map_err(|e| format!("{e:?}"))
    }

    /// Sends a gap event for `object`, as Salesforce does when it cannot describe a change:
    /// `GAP_CREATE`, `GAP_UPDATE`, `GAP_DELETE`, `GAP_UNDELETE` name records but carry no
    /// fields; `GAP_OVERFLOW` (more than 100 000 changes in one transaction) names none.
    /// Nothing in the org's data changes.
    pub fn emit_gap_event(
        &self,
        object: &str,
        change_type: &str,
        ids: &[&str],
    ) -> Result<(), String> {
        let ids: Vec<String> = ids.iter().map(|id| id.to_string()).collect();
        emit_gap_event(&self.org, object, change_type, ids)
    }

    /// Breaks every open Pub/Sub subscription (UNAVAILABLE), as a lost connection would.
    pub fn cut_pubsub_streams(&self) -> u64 {
        self.org.data().store.changes().cut_streams()
    }

    /// The replay id of the newest change event (0: none yet).
    pub fn latest_change(&self) -> u64 {
        self.org.data().store.changes().latest()
    }

    /// Records created through the API, oldest first.
    pub fn created(&self) -> Vec<Value> {
        self.org.data().created.clone()
    }

    /// The Telephony Integration API's VoiceCalls, each with every request that changed it.
    pub fn voicecalls(&self) -> Vec<Value> {
        match self.org.telephony.list() {
            Value::Array(list) => list,
            _ => Vec::new(),
        }
    }

    /// Current live records of one object.
    pub fn records(&self, object: &str) -> Vec<Value> {
        records(&self.org, object)
    }

    pub fn add_fault(&self, rule: FaultRule) -> u64 {
        self.org.faults.add(rule)
    }

    pub fn remove_fault(&self, id: u64) -> bool {
        self.org.faults.remove(id)
    }

    pub fn clear_faults(&self) {
        self.org.faults.clear()
    }

    /// Ends every access session now; returns how many.
    pub fn expire_sessions(&self) -> usize {
        self.org.data().sessions.expire_all()
    }

    /// Invalidates every open query locator; returns how many.
    pub fn expire_cursors(&self) -> usize {
        expire_cursors(&self.org)
    }

    pub fn limits(&self) -> Limits {
        self.org.limits().clone()
    }

    pub fn set_limits(&self, u: LimitsUpdate) -> Limits {
        set_limits(&self.org, &u)
    }

    pub fn set_session_timeout(&self, d: Duration) {
        self.org.runtime().session_timeout = d;
    }

    /// Sessions die after `n` successful calls (`None`: no limit).
    pub fn set_session_max_calls(&self, n: Option<u64>) {
        self.org.runtime().session_max_calls = n;
    }

    /// `POST /__emulator/config`: applies the given settings, returns them all.
    pub fn configure(&self, u: ConfigUpdate) -> Value {
        configure(&self.org, &u)
    }

    pub fn set_batch_size(&self, n: usize) {
        self.org.runtime().batch_size = n.max(1);
    }

    pub fn set_phone_match(&self, m: PhoneMatch) {
        self.org.runtime().phone_match = m;
    }

    /// Omni-Channel routing: `{"online": [user ids], "routings": [{voice_call_id,
    /// vendor_call_key, dialed_number, flow, fallback_queue, flow_input_parameters, offered_to,
    /// agent_work_id, state}]}`.
    pub fn omni(&self) -> Value {
        crate::omni::list(&self.org)
    }

    /// An agent goes online (or offline) in Omni-Channel; waiting work is offered at once.
    pub fn set_omni_online(&self, user_id: &str, online: bool) {
        crate::omni::set_online(&self.org, user_id, online);
    }

    /// The agent offered the call's work accepts it in the Omni widget; returns who.
    pub fn accept_omni_work(&self, voice_call: &str) -> Result<String, String> {
        crate::omni::accept(&self.org, voice_call)
    }

    /// What a second `POST /telephony/v1/voiceCalls` with a used vendorCallKey gets.
    pub fn set_voicecall_duplicate_create(&self, mode: crate::telephony::DuplicateCreate) {
        self.org.telephony.set_duplicate_create(mode);
    }

    /// Clears faults, counters, the query log, events and API usage; with `data`, also
    /// restores the seed records and ends all sessions.
    pub fn reset(&self, data: bool) -> Result<(), String> {
        reset(&self.org, data)
    }
}

fn stats(org: &Org) -> Value {
    let mut v = org.stats.snapshot();
    let l = org.limits().clone();
    v["api_usage"] = json!({"used": l.daily_used, "max": l.daily_max});
    v["active_sessions"] = Value::from(org.data().sessions.active_count(org.session_timeout()));
    v
}

fn records(org: &Org, object: &str) -> Vec<Value> {
    let data = org.data();
    data.store
        .iter_object(object, false)
        .map(|r| Value::Object(r.fields.clone()))
        .collect()
}

fn expire_cursors(org: &Org) -> usize {
    let mut data = org.data();
    let n = data.cursors.len();
    data.cursors.clear();
    data.cursor_order.clear();
    n
}

fn set_limits(org: &Org, u: &LimitsUpdate) -> Limits {
    let mut l = org.limits();
    if let Some(x) = u.daily_used {
        l.daily_used = x;
    }
    if let Some(x) = u.daily_max {
        l.daily_max = x;
    }
    if let Some(x) = u.concurrent_max {
        l.concurrent_max = x;
    }
    if let Some(x) = u.long_running_ms {
        l.long_running_ms = x;
    }
    l.clone()
}

fn reset(org: &Org, data: bool) -> Result<(), String> {
    org.faults.clear();
    org.stats.reset();
    org.limits().daily_used = 0;
    {
        let mut d = org.data();
        d.events.clear();
        d.created.clear();
    }
    if data {
        org.reset_data()?;
    }
    Ok(())
}

fn config(org: &Org) -> Value {
    let rt = org.runtime();
    json!({
        "session_timeout_s": rt.session_timeout.as_secs_f64(),
        "session_max_calls": rt.session_max_calls.unwrap_or(0),
        "body_timeout_ms": rt.body_timeout.as_millis() as u64,
        "batch_size": rt.batch_size,
        "phone_match": rt.phone_match,
        "voicecall_duplicate_create": match org.telephony.duplicate_create() {
            crate::telephony::DuplicateCreate::NewRecord => "new-record",
            crate::telephony::DuplicateCreate::Conflict => "conflict",
        },
    })
}

fn configure(org: &Org, u: &ConfigUpdate) -> Value {
    if let Some(Ok(mode)) = u.voicecall_duplicate_create.as_deref().map(str::parse) {
        org.telephony.set_duplicate_create(mode);
    }
    {
        let mut rt = org.runtime();
        if let Some(s) = u.session_timeout_s {
            rt.session_timeout = Duration::from_secs_f64(s.max(0.0));
        }
        if let Some(ms) = u.body_timeout_ms {
            rt.body_timeout = Duration::from_millis(ms);
        }
        if let Some(n) = u.session_max_calls {
            rt.session_max_calls = (n > 0).then_some(n);
        }
        if let Some(b) = u.batch_size {
            rt.batch_size = b.max(1);
        }
        if let Some(p) = &u.phone_match {
            rt.phone_match = *p;
        }
    }
    config(org)
}

fn bad(msg: impl Into<String>) -> Response {
    Response::json(400, &json!({"error": msg.into()}))
}

fn parse<T: for<'de> Deserialize<'de> + Default>(req: &Request) -> Result<T, Response> {
    if req.body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(&req.body).map_err(|e| bad(format!("invalid JSON: {e}")))
}

/// Handles one admin request. Only loopback peers are served.
pub fn handle(org: &Org, req: &Request) -> Response {
    if !req.peer.ip().is_loopback() {
        return Response::json(403, &json!({"error": "admin API is loopback-only"}));
    }
    let path = req.path.trim_end_matches('/');
    let sub = path.strip_prefix("/__emulator").unwrap_or("");
    let m = &req.method;
    let ok = |v: Value| Response::json(200, &v);
    match (m.clone(), sub) {
        (Method::GET, "" | "/health") => ok(json!({"ok": true, "org_id": org.org_id,
            "login_url": org.login_url, "instance_url": org.instance_url})),
        (Method::GET, "/stats") => ok(stats(org)),
        (Method::GET, "/queries") => ok(json!(org.stats.query_log())),
        (Method::GET, "/events") => ok(Value::Array(org.data().events.clone())),
        (Method::GET, "/created") => ok(Value::Array(org.data().created.clone())),
        (Method::GET, "/voicecalls") => ok(org.telephony.list()),
        (Method::GET, "/omni") => ok(crate::omni::list(org)),
        (Method::POST, "/omni/agents") => match parse::<OmniAgent>(req) {
            Ok(a) if !a.user_id.is_empty() => {
                crate::omni::set_online(org, &a.user_id, a.online);
                ok(crate::omni::list(org))
            }
            Ok(_) => bad("user_id is required"),
            Err(r) => r,
        },
        (Method::POST, "/omni/accept") => match parse::<OmniAccept>(req) {
            Ok(a) => match crate::omni::accept(org, &a.voice_call) {
                Ok(agent) => ok(json!({"accepted_by": agent})),
                Err(e) => Response::json(409, &json!({"error": e})),
            },
            Err(r) => r,
        },
        (Method::GET, s) if s.starts_with("/records/") => ok(Value::Array(records(org, &s[9..]))),
        (Method::GET, "/faults") => ok(json!(org.faults.list())),
        (Method::POST, "/faults") => match parse::<FaultRule>(req) {
            Ok(rule) => ok(json!({"id": org.faults.add(rule)})),
            Err(r) => r,
        },
        (Method::DELETE, "/faults") => {
            org.faults.clear();
            ok(json!({"cleared": true}))
        }
        (Method::DELETE, s) if s.starts_with("/faults/") => match s[8..].parse::<u64>() {
            Ok(id) => ok(json!({"removed": org.faults.remove(id)})),
            Err(_) => bad("fault id must be a number"),
        },
        (Method::POST, "/sessions/expire") => {
            ok(json!({"expired": org.data().sessions.expire_all()}))
        }
        (Method::POST, "/cursors/expire") => ok(json!({"expired": expire_cursors(org)})),
        (Method::GET, "/limits") => ok(json!(org.limits().clone())),
        (Method::POST, "/limits") => match parse::<LimitsUpdate>(req) {
            Ok(u) => ok(json!(set_limits(org, &u))),
            Err(r) => r,
        },
        (Method::GET, "/config") => ok(config(org)),
        (Method::POST, "/config") => match parse::<ConfigUpdate>(req) {
            Ok(u) => match u
                .voicecall_duplicate_create
                .as_deref()
                .map(str::parse::<crate::telephony::DuplicateCreate>)
            {
                Some(Err(e)) => bad(e),
                _ => ok(configure(org, &u)),
            },
            Err(r) => r,
        },
        (Method::POST, "/reset") => {
            #[derive(Deserialize, Default)]
            struct R {
                #[serde(default)]
                data: bool,
            }
            match parse::<R>(req) {
                Ok(r) => match reset(org, r.data) {
                    Ok(()) => ok(json!({"reset": true, "data": r.data})),
                    Err(e) => Response::json(500, &json!({"error": e})),
                },
                Err(r) => r,
            }
        }
        (Method::POST, "/pubsub/gap") => {
            #[derive(Deserialize, Default)]
            struct Gap {
                object: String,
                change_type: String,
                #[serde(default)]
                ids: Vec<String>,
            }
            match parse::<Gap>(req) {
                Ok(g) => match emit_gap_event(org, &g.object, &g.change_type, g.ids) {
                    Ok(()) => ok(json!({"latest_change": org.data().store.changes().latest()})),
                    Err(e) => bad(e),
                },
                Err(r) => r,
            }
        }
        _ => Response::json(
            404,
            &json!({"error": format!("no admin endpoint {m} {path}")}),
        ),
    }
}

/// A gap event for `object` (see `Admin::emit_gap_event`).
fn emit_gap_event(
    org: &Org,
    object: &str,
    change_type: &str,
    ids: Vec<String>,
) -> Result<(), String> {
    let change_type = [
        "GAP_CREATE",
        "GAP_UPDATE",
        "GAP_DELETE",
        "GAP_UNDELETE",
        "GAP_OVERFLOW",
    ]
    .into_iter()
    .find(|t| *t == change_type)
    .ok_or_else(|| format!("{change_type} is not a gap event"))?;
    if (change_type == "GAP_OVERFLOW") != ids.is_empty() {
        return Err("GAP_OVERFLOW names no records; the other gap events name some".into());
    }
    let def = org
        .schema
        .object_shared(object)
        .filter(|d| !d.is_event)
        .cloned()
        .ok_or_else(|| format!("no object {object}"))?;
    org.data()
        .store
        .changes()
        .append(&def.name, change_type, ids, serde_json::Map::new(), "");
    Ok(())
}
