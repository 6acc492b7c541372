//! Omni-Channel routing of voice calls, as the Telephony Integration REST API starts and ends it:
//! `PATCH /telephony/v1/voiceCalls/{CALL ID}/omniFlow` makes a PendingServiceRouting for the
//! call and offers the work (an `AgentWork`, `Status` `Assigned`) to an agent online in
//! Omni-Channel; `PATCH …/clearRouting` deletes the PendingServiceRouting and cancels an offer
//! nobody accepted. Which agents are online, and an agent accepting the work in the Omni widget,
//! are the test's part (admin API, `/__emulator/omni…`).
//!
//! Voice Developer Guide, "Execute an Omni-Channel Flow" and "Clear Routing"; Partner Telephony
//! Developer Guide, "Omni-Channel Flow for Salesforce Voice with Partner Telephony". Where they
//! leave a shape open, the stricter reading (README.md, "Omni-Channel routing").

use std::sync::{Mutex, MutexGuard};

use serde_json::{json, Map, Value};

use crate::http::{Request, Response};
use crate::state::Org;
use crate::telephony;
use crate::util;

/// Fields `omniFlow` takes.
const OMNI_FLOW_FIELDS: [&str; 4] = [
    "dialedNumber",
    "flowDevName",
    "fallbackQueue",
    "flowInputParameters",
];

#[derive(Clone)]
pub struct Routing {
    pub voice_call_id: String,
    pub vendor_call_key: String,
    pub dialed_number: String,
    pub flow: Option<String>,
    pub fallback_queue: Option<String>,
    pub inputs: Map<String, Value>,
    /// The agent the work was offered to (a User id), once one was online.
    pub offered_to: Option<String>,
    /// The offer's AgentWork id.
    pub agent_work_id: Option<String>,
    /// `routing` (the PendingServiceRouting exists), `accepted`, `cleared`.
    pub state: &'static str,
}

#[derive(Default)]
struct Board {
    /// Agents online in Omni-Channel, in the order they came online (each offer goes to the one
    /// offered least recently).
    online: Vec<String>,
    routings: Vec<Routing>,
}

#[derive(Default)]
pub struct Omni {
    board: Mutex<Board>,
}

impl Omni {
    fn board(&self) -> MutexGuard<'_, Board> {
        self.board.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// `{"errors": [{"errorCode", "message"}]}`: the shape the omniFlow page documents.
fn error(status: u16, code: &str, message: &str) -> Response {
    Response::json(
        status,
        &json!({"errors": [{"errorCode": code, "message": message}]}),
    )
}

/// The shared checks' answers (JWT, headers, body) in this API's error shape.
fn reshape(r: Response) -> Response {
    let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    error(
        r.status,
        v["errorCode"].as_str().unwrap_or("INVALID_INPUT"),
        v["message"].as_str().unwrap_or("invalid request"),
    )
}

/// `Some` for `…/{CALL ID}/omniFlow` and `…/{CALL ID}/clearRouting` (the path after
/// `/telephony/v1/voiceCalls`).
pub fn route_of(rest: &str) -> Option<(&str, &str)> {
    let rest = rest.strip_prefix('/')?;
    let (id, action) = rest.split_once('/')?;
    match action {
        "omniFlow" | "clearRouting" if !id.is_empty() => Some((id, action)),
        _ => None,
    }
}

pub fn handle(org: &Org, req: &Request, id: &str, action: &str) -> Response {
    org.stats.endpoint("telephony_omni");
    if let Err(r) = telephony::authenticate(org, req) {
        return reshape(r);
    }
    if req.method.as_str() != "PATCH" {
        return error(405, "METHOD_NOT_ALLOWED", "use PATCH");
    }
    let body = match telephony::body_object(req) {
        Ok(b) => b,
        Err(r) => return reshape(r),
    };
    let result = if action == "omniFlow" {
        omni_flow(org, id, body)
    } else {
        clear_routing(org, id, body)
    };
    result.unwrap_or_else(|r| r)
}

fn optional_text(body: &Map<String, Value>, name: &str) -> Result<Option<String>, Response> {
    match body.get(name) {
        None => Ok(None),
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.clone())),
        Some(_) => Err(error(
            400,
            "INVALID_INPUT",
            &format!("{name} must be a non-empty string"),
        )),
    }
}

/// The VoiceCall the path names: `(id, vendorCallKey)`.
fn voice_call(org: &Org, id_or_key: &str) -> Result<(String, String), Response> {
    let calls = org.telephony.calls();
    let i = telephony::find(&calls, id_or_key).map_err(reshape)?;
    Ok((calls[i].id.clone(), calls[i].vendor_call_key.clone()))
}

fn omni_flow(org: &Org, id: &str, body: Map<String, Value>) -> Result<Response, Response> {
    if let Some(unknown) = body
        .keys()
        .find(|k| !OMNI_FLOW_FIELDS.contains(&k.as_str()))
    {
        return Err(error(
            400,
            "INVALID_INPUT",
            &format!("{unknown} is not a parameter of omniFlow"),
        ));
    }
    let dialed_number = optional_text(&body, "dialedNumber")?
        .ok_or_else(|| error(400, "INVALID_INPUT", "dialedNumber is required"))?;
    let flow = optional_text(&body, "flowDevName")?;
    let fallback_queue = optional_text(&body, "fallbackQueue")?;
    let inputs = match body.get("flowInputParameters") {
        None => Map::new(),
        Some(Value::Object(m)) if m.values().all(|v| !v.is_object() && !v.is_array()) => m.clone(),
        Some(_) => {
            return Err(error(
                400,
                "INVALID_INPUT",
                "flowInputParameters must be an object of named values",
            ))
        }
    };
    if flow.is_none() && fallback_queue.is_none() {
        // No phone channel is set up for any number here: the request must name where to route.
        return Err(error(
            400,
            "INVALID_INPUT",
            "no phone channel matches dialedNumber: give flowDevName or fallbackQueue",
        ));
    }
    let (voice_call_id, vendor_call_key) = voice_call(org, id)?;
    let mut board = org.telephony.omni.board();
    if board
        .routings
        .iter()
        .any(|r| r.voice_call_id == voice_call_id && r.state == "routing")
    {
        return Err(error(
            400,
            "INVALID_INPUT",
            "this VoiceCall is already being routed",
        ));
    }
    board.routings.push(Routing {
        voice_call_id,
        vendor_call_key,
        dialed_number,
        flow: flow.clone(),
        fallback_queue: fallback_queue.clone(),
        inputs,
        offered_to: None,
        agent_work_id: None,
        state: "routing",
    });
    let i = board.routings.len() - 1;
    offer(org, &mut board, i);
    let agent = board.routings[i].offered_to.clone();
    Ok(Response::json(
        200,
        &json!({"agent": agent, "queue": fallback_queue.or(flow)}),
    ))
}

/// Offers a routing nobody has yet to the online agent offered work least recently.
fn offer(org: &Org, board: &mut Board, i: usize) {
    if board.routings[i].offered_to.is_some() || board.routings[i].state != "routing" {
        return;
    }
    let busy = |b: &Board, agent: &str| {
        b.routings
            .iter()
            .any(|r| r.state == "routing" && r.offered_to.as_deref() == Some(agent))
    };
    let Some(pos) = (0..board.online.len()).find(|&p| !busy(board, &board.online[p])) else {
        return;
    };
    let agent = board.online.remove(pos);
    board.online.push(agent.clone());
    let work_id = put_agent_work(
        org,
        None,
        &board.routings[i].voice_call_id,
        &agent,
        "Assigned",
    );
    let r = &mut board.routings[i];
    r.offered_to = Some(agent);
    r.agent_work_id = Some(work_id);
}

/// Writes an AgentWork record (new when `id` is `None`); returns its id.
fn put_agent_work(
    org: &Org,
    id: Option<&str>,
    work_item: &str,
    user: &str,
    status: &str,
) -> String {
    let mut data = org.data();
    let id = id
        .map(str::to_string)
        .unwrap_or_else(|| data.store.next_id("0Bz"));
    let mut fields = Map::new();
    fields.insert("WorkItemId".into(), json!(work_item));
    fields.insert("UserId".into(), json!(user));
    fields.insert("Status".into(), json!(status));
    if let Some(def) = org.schema.object("AgentWork") {
        data.store.put_system(def, &id, &fields);
    }
    id
}

fn clear_routing(org: &Org, id: &str, body: Map<String, Value>) -> Result<Response, Response> {
    if let Some(unknown) = body.keys().next() {
        return Err(error(
            400,
            "INVALID_INPUT",
            &format!("{unknown}: clearRouting takes no parameters"),
        ));
    }
    let (voice_call_id, _) = voice_call(org, id)?;
    let mut board = org.telephony.omni.board();
    for r in board
        .routings
        .iter_mut()
        .filter(|r| r.voice_call_id == voice_call_id && r.state == "routing")
    {
        r.state = "cleared";
        if let (Some(work), Some(agent)) = (&r.agent_work_id, &r.offered_to) {
            put_agent_work(org, Some(work), &voice_call_id, agent, "Canceled");
        }
    }
    // Salesforce deletes the record itself in most cases, so a vendor cannot know whether one is
    // left: clearing a call without one is no error.
    Ok(Response::json(200, &json!({"success": true})))
}

/// Admin: an agent goes online (or offline) in Omni-Channel; work waiting is offered at once.
pub fn set_online(org: &Org, user_id: &str, online: bool) {
    let mut board = org.telephony.omni.board();
    board.online.retain(|u| u != user_id);
    if online {
        board.online.push(user_id.to_string());
        for i in 0..board.routings.len() {
            offer(org, &mut board, i);
        }
    }
}

/// Admin: the agent accepts the offered work in the Omni widget (AgentWork `Opened`, the
/// PendingServiceRouting goes). `Err` when the call has no routing offered to anyone.
pub fn accept(org: &Org, id_or_key: &str) -> Result<String, String> {
    let (voice_call_id, _) = voice_call(org, id_or_key).map_err(|_| "no such VoiceCall")?;
    let mut board = org.telephony.omni.board();
    let r = board
        .routings
        .iter_mut()
        .find(|r| r.voice_call_id == voice_call_id && r.state == "routing")
        .ok_or("the call is not being routed")?;
    let (Some(work), Some(agent)) = (r.agent_work_id.clone(), r.offered_to.clone()) else {
        return Err("the work has not been offered to an agent".into());
    };
    r.state = "accepted";
    put_agent_work(org, Some(&work), &voice_call_id, &agent, "Opened");
    Ok(agent)
}

/// Admin: every routing, oldest first, and the agents online.
pub fn list(org: &Org) -> Value {
    let board = org.telephony.omni.board();
    json!({
        "online": board.online,
        "routings": board.routings.iter().map(|r| json!({
            "voice_call_id": r.voice_call_id,
            "vendor_call_key": r.vendor_call_key,
            "dialed_number": r.dialed_number,
            "flow": r.flow,
            "fallback_queue": r.fallback_queue,
            "flow_input_parameters": r.inputs,
            "offered_to": r.offered_to,
            "agent_work_id": r.agent_work_id,
            "state": r.state,
        })).collect::<Vec<_>>(),
        "at_ms": util::now_ms(),
    })
}
