//! Service Cloud Voice's Telephony Integration REST API, as the org's SCRT domain serves it:
//! `POST /telephony/v1/voiceCalls` creates a VoiceCall, `PATCH /telephony/v1/voiceCalls/{id}`
//! (the VoiceCall id or the vendorCallKey) updates it. Every request carries a JWT signed with
//! the telephony provider's key, whose certificate is on the seed's call center.
//!
//! Where Salesforce's documentation leaves a shape open (error bodies, status codes, the answer
//! to a second create with the same vendorCallKey), this takes the stricter reading; see
//! README.md, "Telephony Integration API". Each VoiceCall is also a record of the org's store,
//! so `SELECT Id FROM VoiceCall WHERE VendorCallKey = '…'` finds it over the REST API.

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use base64::Engine;
use serde_json::{json, Map, Value};

use crate::http::{Request, Response};
use crate::rsakey::rsa_public_key_from_pem;
use crate::seed::Seed;
use crate::state::Org;
use crate::util;

/// The audience Salesforce documents for this API's JWT.
pub const AUDIENCE: &str = "https://scrt.salesforce.com";
/// `exp` must be within three minutes of now.
pub const MAX_EXP_AHEAD_S: u64 = 180;
/// Clock skew allowed on `exp` (past) and `iat` (future).
const SKEW_S: u64 = 5;

const INITIATION_METHODS: [&str; 4] = ["Inbound", "Outbound", "Transfer", "Callback"];
const PARTICIPANT_TYPES: [&str; 3] = ["END_USER", "AGENT", "SUPERVISOR"];
/// Fields `PATCH` accepts (Voice Developer Guide, "Update a Voice Call Record").
const PATCH_FIELDS: [&str; 18] = [
    "startTime",
    "endTime",
    "enqueueTime",
    "acceptTime",
    "fromNumber",
    "totalHoldDuration",
    "longestHoldDuration",
    "numberOfHolds",
    "queue",
    "agentInteractionDuration",
    "recordingLocation",
    "totalRecordingDuration",
    "isRecordingPaused",
    "callOrigin",
    "disconnectReason",
    "callAttributes",
    "participants",
    "isActiveCall",
];

/// What a second create with a vendorCallKey already used gets. Salesforce documents no
/// answer, so the default is the strictest reading: nothing recognises it, a second record is
/// made. `Conflict` (409 `DUPLICATE_VALUE`) is kept to test clients against the kinder reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DuplicateCreate {
    #[default]
    NewRecord,
    Conflict,
}

impl FromStr for DuplicateCreate {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "new-record" => Ok(DuplicateCreate::NewRecord),
            "conflict" => Ok(DuplicateCreate::Conflict),
            _ => Err(format!(
                "duplicate-create mode {s:?}: use new-record or conflict"
            )),
        }
    }
}

pub struct CallCenter {
    pub api_name: String,
    pub provider: Option<String>,
    rsa_key: Vec<u8>,
}

#[derive(Clone)]
pub struct VoiceCall {
    pub id: String,
    pub vendor_call_key: String,
    /// The record as SOQL would show it.
    pub fields: Map<String, Value>,
    /// Every accepted request, in order: `{"op": "create"|"update", "at_ms", "body"}` (updates
    /// also `target`: the id or vendorCallKey the path named).
    pub history: Vec<Value>,
    /// Every change of `CallDisposition`, in order: `{"from", "to", "at_ms"}` (`from` is null
    /// for the create).
    pub transitions: Vec<Value>,
}

pub struct Telephony {
    call_centers: Vec<CallCenter>,
    calls: Mutex<Vec<VoiceCall>>,
    duplicate_conflict: AtomicBool,
    /// Omni-Channel routing of the calls (`omni.rs`).
    pub omni: crate::omni::Omni,
}

impl Telephony {
    pub fn new(seed: &Seed) -> Result<Telephony, String> {
        let mut call_centers = Vec::new();
        for cc in &seed.call_centers {
            let pem = cc
                .cert_pem
                .as_ref()
                .or(cc.public_key_pem.as_ref())
                .ok_or_else(|| format!("call center {}: no certificate", cc.api_name))?;
            call_centers.push(CallCenter {
                api_name: cc.api_name.clone(),
                provider: cc.provider.clone(),
                rsa_key: rsa_public_key_from_pem(pem)
                    .map_err(|e| format!("call center {}: {e}", cc.api_name))?,
            });
        }
        Ok(Telephony {
            call_centers,
            calls: Mutex::new(Vec::new()),
            duplicate_conflict: AtomicBool::new(false),
            omni: crate::omni::Omni::default(),
        })
    }

    pub(crate) fn calls(&self) -> MutexGuard<'_, Vec<VoiceCall>> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn set_duplicate_create(&self, mode: DuplicateCreate) {
        self.duplicate_conflict
            .store(mode == DuplicateCreate::Conflict, Ordering::Relaxed);
    }

    pub fn duplicate_create(&self) -> DuplicateCreate {
        if self.duplicate_conflict.load(Ordering::Relaxed) {
            DuplicateCreate::Conflict
        } else {
            DuplicateCreate::NewRecord
        }
    }

    /// Every VoiceCall with its history, for tests (`GET /__emulator/voicecalls`).
    pub fn list(&self) -> Value {
        Value::Array(
            self.calls()
                .iter()
                .map(|c| {
                    json!({"Id": c.id, "VendorCallKey": c.vendor_call_key,
                           "fields": c.fields, "history": c.history,
                           "transitions": c.transitions})
                })
                .collect(),
        )
    }
}

fn error(status: u16, code: &str, message: &str) -> Response {
    Response::json(status, &json!({"errorCode": code, "message": message}))
}

fn unauthorized(message: &str) -> Response {
    error(401, "INVALID_AUTH_HEADER", message)
}

/// Checks the bearer JWT; returns the call center it names.
pub(crate) fn authenticate<'a>(org: &'a Org, req: &Request) -> Result<&'a CallCenter, Response> {
    let token = req
        .header("authorization")
        .and_then(|h| h.strip_prefix("Bearer "))
        .ok_or_else(|| unauthorized("Authorization: Bearer <JWT> is required"))?;
    let parts: Vec<&str> = token.trim().split('.').collect();
    if parts.len() != 3 {
        return Err(unauthorized("the bearer token is not a JWT"));
    }
    let b64 = |s: &str| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| unauthorized("the JWT is not base64url"))
    };
    let header: Value = serde_json::from_slice(&b64(parts[0])?)
        .map_err(|_| unauthorized("the JWT header is not JSON"))?;
    let claims: Value = serde_json::from_slice(&b64(parts[1])?)
        .map_err(|_| unauthorized("the JWT claims are not JSON"))?;
    if header["alg"].as_str() != Some("RS256") {
        return Err(unauthorized("the JWT must be signed RS256"));
    }
    let iss = claims["iss"].as_str().unwrap_or("");
    if iss != org.org_id && iss != org.org_id15() {
        return Err(unauthorized("iss is not this org's id"));
    }
    let sub = claims["sub"].as_str().unwrap_or("");
    let cc = org
        .telephony
        .call_centers
        .iter()
        .find(|c| c.api_name == sub)
        .ok_or_else(|| unauthorized("sub is not a call center's API name"))?;
    if claims["aud"].as_str() != Some(AUDIENCE) {
        return Err(unauthorized("aud must be https://scrt.salesforce.com"));
    }
    let now = util::now_ms() / 1000;
    let exp = claims["exp"]
        .as_u64()
        .ok_or_else(|| unauthorized("exp (seconds since the epoch) is required"))?;
    if exp + SKEW_S < now {
        return Err(unauthorized("the JWT has expired"));
    }
    if exp > now + MAX_EXP_AHEAD_S {
        return Err(unauthorized("exp must be within 3 minutes"));
    }
    if claims
        .get("iat")
        .is_some_and(|iat| iat.as_u64().is_none_or(|i| i > now + SKEW_S))
    {
        return Err(unauthorized("iat is in the future"));
    }
    let msg = format!("{}.{}", parts[0], parts[1]);
    let sig = b64(parts[2])?;
    ring::signature::UnparsedPublicKey::new(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        &cc.rsa_key,
    )
    .verify(msg.as_bytes(), &sig)
    .map_err(|_| unauthorized("the JWT signature does not match the call center's certificate"))?;
    let provider = req.header("telephony-provider-name").unwrap_or("").trim();
    if provider.is_empty() {
        return Err(error(
            400,
            "MISSING_HEADER",
            "Telephony-Provider-Name is required",
        ));
    }
    if cc.provider.as_deref().is_some_and(|p| p != provider) {
        return Err(error(
            403,
            "INVALID_PROVIDER",
            "Telephony-Provider-Name is not this call center's provider",
        ));
    }
    Ok(cc)
}

pub(crate) fn body_object(req: &Request) -> Result<Map<String, Value>, Response> {
    let json_type = req
        .header("content-type")
        .is_some_and(|t| t.to_ascii_lowercase().starts_with("application/json"));
    if !json_type {
        return Err(error(
            415,
            "UNSUPPORTED_MEDIA_TYPE",
            "Content-Type must be application/json",
        ));
    }
    match serde_json::from_slice::<Value>(&req.body) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(error(
            400,
            "INVALID_INPUT",
            "the body must be a JSON object",
        )),
    }
}

fn text<'a>(body: &'a Map<String, Value>, name: &str) -> Result<&'a str, Response> {
    match body.get(name).and_then(Value::as_str) {
        Some(v) if !v.trim().is_empty() => Ok(v),
        _ => Err(error(400, "INVALID_INPUT", &format!("{name} is required"))),
    }
}

/// An ISO 8601 UTC time as the API takes it; returns the milliseconds.
fn time(body: &Map<String, Value>, name: &str) -> Result<Option<u64>, Response> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => util::parse_iso_ms(s).map(Some).ok_or_else(|| {
            error(
                400,
                "INVALID_INPUT",
                &format!("{name} is not an ISO 8601 time"),
            )
        }),
        Some(_) => Err(error(
            400,
            "INVALID_INPUT",
            &format!("{name} must be a string"),
        )),
    }
}

fn check_participants(value: Option<&Value>) -> Result<(), Response> {
    let Some(Value::Array(list)) = value else {
        return Err(error(
            400,
            "INVALID_INPUT",
            "participants must be a non-empty array",
        ));
    };
    if list.is_empty() {
        return Err(error(
            400,
            "INVALID_INPUT",
            "participants must be a non-empty array",
        ));
    }
    for p in list {
        let key_ok = p["participantKey"].as_str().is_some_and(|k| !k.is_empty());
        let type_ok = p["type"]
            .as_str()
            .is_some_and(|t| PARTICIPANT_TYPES.contains(&t));
        if !key_ok || !type_ok {
            return Err(error(
                400,
                "INVALID_INPUT",
                "each participant needs participantKey and type (END_USER, AGENT or SUPERVISOR)",
            ));
        }
    }
    Ok(())
}

pub fn handle(org: &Org, req: &Request) -> Response {
    let path = req.path.as_str();
    let Some(rest) = path.strip_prefix("/telephony/v1/voiceCalls") else {
        return error(404, "NOT_FOUND", "The requested resource does not exist");
    };
    if let Some((id, action)) = crate::omni::route_of(rest) {
        return crate::omni::handle(org, req, id, action);
    }
    org.stats.endpoint("telephony_voicecalls");
    let cc = match authenticate(org, req) {
        Ok(cc) => cc,
        Err(r) => return r,
    };
    let body = match body_object(req) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let result = match (req.method.as_str(), rest) {
        ("POST", "" | "/") => create(org, cc, body),
        ("PATCH", id) if id.len() > 1 => update(org, &id[1..], body),
        (_, "" | "/") => Err(error(405, "METHOD_NOT_ALLOWED", "use POST")),
        _ => Err(error(405, "METHOD_NOT_ALLOWED", "use PATCH")),
    };
    result.unwrap_or_else(|r| r)
}

/// Fields `POST` accepts (Voice Developer Guide, "Create a Voice Call Record").
const CREATE_FIELDS: [&str; 11] = [
    "callCenterApiName",
    "parentVoiceCallId",
    "vendorCallKey",
    "to",
    "from",
    "initiationMethod",
    "startTime",
    "participants",
    "callAttributes",
    "queue",
    "callOrigin",
];

/// The VoiceCall a path or `parentVoiceCallId` names: its id (15 or 18 characters) or its
/// vendorCallKey. A key that more than one record carries names none of them.
pub(crate) fn find(calls: &[VoiceCall], id_or_key: &str) -> Result<usize, Response> {
    let id18 = crate::ids::to18(id_or_key);
    if let Some(i) = calls.iter().position(|c| Some(&c.id) == id18.as_ref()) {
        return Ok(i);
    }
    let mut by_key = calls
        .iter()
        .enumerate()
        .filter(|(_, c)| c.vendor_call_key == id_or_key)
        .map(|(i, _)| i);
    match (by_key.next(), by_key.next()) {
        (Some(i), None) => Ok(i),
        (Some(_), Some(_)) => Err(error(
            400,
            "INVALID_INPUT",
            "more than one VoiceCall has this vendorCallKey; name it by its voiceCallId",
        )),
        (None, _) => Err(error(
            404,
            "NOT_FOUND",
            "no VoiceCall with this id or vendorCallKey",
        )),
    }
}

/// Records a change of disposition and mirrors the record into the org's store.
fn commit(org: &Org, call: &mut VoiceCall, before: Option<Value>) {
    let after = call.fields.get("CallDisposition").cloned();
    if before != after {
        call.transitions.push(json!({
            "from": before.unwrap_or(Value::Null),
            "to": after.unwrap_or(Value::Null),
            "at_ms": util::now_ms(),
        }));
    }
    if let Some(def) = org.schema.object("VoiceCall") {
        org.data().store.put_system(def, &call.id, &call.fields);
    }
}

fn create(org: &Org, cc: &CallCenter, body: Map<String, Value>) -> Result<Response, Response> {
    if let Some(unknown) = body.keys().find(|k| !CREATE_FIELDS.contains(&k.as_str())) {
        return Err(error(
            400,
            "INVALID_INPUT",
            &format!("{unknown} is not a field this API creates"),
        ));
    }
    let center = text(&body, "callCenterApiName")?;
    if center != cc.api_name {
        return Err(error(
            400,
            "INVALID_INPUT",
            "callCenterApiName is not the call center the JWT names",
        ));
    }
    let key = text(&body, "vendorCallKey")?.to_string();
    let to = text(&body, "to")?.to_string();
    let from = text(&body, "from")?.to_string();
    let method = text(&body, "initiationMethod")?.to_string();
    if !INITIATION_METHODS.contains(&method.as_str()) {
        return Err(error(
            400,
            "INVALID_INPUT",
            "initiationMethod must be Inbound, Outbound, Transfer or Callback",
        ));
    }
    let start = time(&body, "startTime")?
        .ok_or_else(|| error(400, "INVALID_INPUT", "startTime is required"))?;
    check_participants(body.get("participants"))?;
    let parent_ref = match body.get("parentVoiceCallId") {
        None => None,
        Some(Value::String(p)) if !p.trim().is_empty() => Some(p.clone()),
        Some(_) => {
            return Err(error(
                400,
                "INVALID_INPUT",
                "parentVoiceCallId must be a VoiceCall id or vendorCallKey",
            ))
        }
    };
    // A transfer's record names its parent, and only a transfer's does.
    if parent_ref.is_some() != (method == "Transfer") {
        return Err(error(
            400,
            "INVALID_INPUT",
            "initiationMethod Transfer goes with parentVoiceCallId, and only it",
        ));
    }
    let mut calls = org.telephony.calls();
    let parent = match &parent_ref {
        Some(p) => {
            let i = find(&calls, p).map_err(|_| {
                error(
                    400,
                    "INVALID_INPUT",
                    "parentVoiceCallId names no VoiceCall (or more than one)",
                )
            })?;
            Some(calls[i].id.clone())
        }
        None => None,
    };
    if org.telephony.duplicate_create() == DuplicateCreate::Conflict
        && calls.iter().any(|c| c.vendor_call_key == key)
    {
        return Err(error(
            409,
            "DUPLICATE_VALUE",
            "a VoiceCall with this vendorCallKey already exists",
        ));
    }
    let id = org.data().store.next_id("0LQ");
    let mut fields = Map::new();
    fields.insert("Id".into(), json!(id));
    fields.insert("VendorCallKey".into(), json!(key));
    fields.insert("CallCenterApiName".into(), json!(center));
    fields.insert("CallType".into(), json!(method));
    fields.insert("FromPhoneNumber".into(), json!(from));
    fields.insert("ToPhoneNumber".into(), json!(to));
    fields.insert("CallStartDateTime".into(), json!(util::sf_datetime(start)));
    fields.insert("CallDisposition".into(), json!("new"));
    fields.insert("Participants".into(), body["participants"].clone());
    if let Some(parent) = parent {
        fields.insert("ParentVoiceCallId".into(), json!(parent));
    }
    let mut call = VoiceCall {
        id: id.clone(),
        vendor_call_key: key,
        fields,
        history: vec![json!({"op": "create", "at_ms": util::now_ms(), "body": body})],
        transitions: Vec::new(),
    };
    commit(org, &mut call, None);
    calls.push(call);
    Ok(Response::json(200, &json!({"voiceCallId": id})))
}

fn invalid(message: &str) -> Response {
    error(400, "INVALID_INPUT", message)
}

fn update(org: &Org, id: &str, body: Map<String, Value>) -> Result<Response, Response> {
    if body.is_empty() {
        return Err(invalid("nothing to update"));
    }
    if let Some(unknown) = body.keys().find(|k| !PATCH_FIELDS.contains(&k.as_str())) {
        return Err(invalid(&format!(
            "{unknown} is not a field this API updates"
        )));
    }
    let accept = time(&body, "acceptTime")?;
    let end = time(&body, "endTime")?;
    let start = time(&body, "startTime")?;
    time(&body, "enqueueTime")?;
    if body.contains_key("participants") {
        check_participants(body.get("participants"))?;
    }
    for name in [
        "totalHoldDuration",
        "longestHoldDuration",
        "numberOfHolds",
        "totalRecordingDuration",
        "agentInteractionDuration",
    ] {
        if body.get(name).is_some_and(|v| v.as_u64().is_none()) {
            return Err(invalid(&format!("{name} must be a whole number")));
        }
    }
    for name in ["isRecordingPaused", "isActiveCall"] {
        if body.get(name).is_some_and(|v| !v.is_boolean()) {
            return Err(invalid(&format!("{name} must be true or false")));
        }
    }
    for name in [
        "fromNumber",
        "queue",
        "callOrigin",
        "disconnectReason",
        "callAttributes",
    ] {
        if body.get(name).is_some_and(|v| !v.is_string()) {
            return Err(invalid(&format!("{name} must be a string")));
        }
    }
    if let Some(loc) = body.get("recordingLocation") {
        let is_url = loc
            .as_str()
            .is_some_and(|u| u.starts_with("https://") || u.starts_with("http://"));
        if !is_url {
            return Err(invalid("recordingLocation must be an http(s) URL"));
        }
    }
    let mut calls = org.telephony.calls();
    let i = find(&calls, id)?;
    let call = &mut calls[i];
    let f = &call.fields;
    let stamp = |name: &str| {
        f.get(name)
            .and_then(Value::as_str)
            .and_then(util::parse_iso_ms)
    };
    let started = start.or_else(|| stamp("CallStartDateTime"));
    let accepted = accept.or_else(|| stamp("CallAcceptDateTime"));
    let ended = end.or_else(|| stamp("CallEndDateTime"));
    // State transitions: new → in-progress → completed, or new → completed; never back, and
    // never out of time order. The same values sent again are no transition.
    if let (Some(a), Some(s)) = (accepted, started) {
        if a < s {
            return Err(invalid("acceptTime is before startTime"));
        }
    }
    if let (Some(e), Some(s)) = (ended, started) {
        if e < s {
            return Err(invalid("endTime is before startTime"));
        }
    }
    if let (Some(e), Some(a)) = (ended, accepted) {
        if e < a {
            return Err(invalid("endTime is before acceptTime"));
        }
    }
    let completed = f["CallDisposition"] == "completed";
    if completed && accept.is_some() && accept != stamp("CallAcceptDateTime") {
        return Err(invalid(
            "the call has ended: a completed VoiceCall is not accepted again",
        ));
    }
    if completed && end.is_some() && end != stamp("CallEndDateTime") {
        return Err(invalid("the call has already ended at another time"));
    }
    let before = call.fields.get("CallDisposition").cloned();
    let f = &mut call.fields;
    if let Some(ms) = start {
        f.insert("CallStartDateTime".into(), json!(util::sf_datetime(ms)));
    }
    if let Some(ms) = accept {
        f.insert("CallAcceptDateTime".into(), json!(util::sf_datetime(ms)));
        if f["CallDisposition"] == "new" {
            f.insert("CallDisposition".into(), json!("in-progress"));
        }
    }
    if let Some(ms) = end {
        f.insert("CallEndDateTime".into(), json!(util::sf_datetime(ms)));
        f.insert("CallDisposition".into(), json!("completed"));
        if let Some(s) = started {
            f.insert(
                "CallDurationInSeconds".into(),
                json!(ms.saturating_sub(s) / 1000),
            );
        }
    }
    if let Some(loc) = body.get("recordingLocation").and_then(Value::as_str) {
        f.insert("RecordingLocation".into(), json!(loc));
    }
    for (name, field) in [
        ("totalHoldDuration", "TotalHoldDuration"),
        ("numberOfHolds", "NumberOfHolds"),
        ("fromNumber", "FromPhoneNumber"),
        ("disconnectReason", "DisconnectReason"),
        ("totalRecordingDuration", "TotalRecordingDuration"),
    ] {
        if let Some(v) = body.get(name) {
            f.insert(field.into(), v.clone());
        }
    }
    // `target`: what the path named (the id or the vendorCallKey), so a test sees which.
    call.history
        .push(json!({"op": "update", "at_ms": util::now_ms(), "target": id, "body": body}));
    commit(org, call, before);
    Ok(Response::json(200, &json!({"success": true})))
}
