//! Omni-Channel routing of calls (Service Cloud Voice): a call at a routing point
//! (`sf_omni_route`) gets its VoiceCall now and is handed to Salesforce's routing
//! (`PATCH /telephony/v1/voiceCalls/{id}/omniFlow`, the lookup's record in
//! `flowInputParameters`); a call that leaves without an agent gets its routing cleared
//! (`PATCH …/clearRouting`). Both are steps in the VoiceCall outbox (`voicecall_queue`), so they
//! go out in order after the create, durably, once.
//!
//! The accept: Salesforce's voice client calls the connector's `acceptCall` for the agent it
//! offered the work to; the connector sends `accept_routed {call_uuid}`. The agent's word is not
//! enough: the sidecar asks the org which user the call's work is offered to (`SELECT UserId
//! FROM AgentWork WHERE WorkItemId = <the VoiceCall> AND Status IN ('Assigned','Opened')`) and
//! bridges only for that user, so no agent can take another agent's call. The module then takes
//! the parked call to the agent's extension, only while the call still waits.
//!
//! The routing of a call that was never bridged is also cleared when its call log arrives
//! (in the same transaction as its end), so a lost `omni_unrouted` message loses nothing.

use std::sync::Arc;

use natterbox_common::call_control::{check_call_uuid, CallCommand};
use natterbox_common::config::{OmniConfig, VoiceConfig};
use natterbox_common::salesforce::escape::soql_string;
use natterbox_common::salesforce::SalesforceClient;
use natterbox_common::wire::{Direction, OmniRoute};
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::{json, Value};

use crate::agent::commands::CommandError;
use crate::backoff::now_ms;
use crate::outbox::db;
use crate::pops::AgentIdentity;
use crate::voicecall_queue::VoiceCallStep;
use crate::App;

pub const OMNI_FLOW: &str = "omniflow";
pub const CLEAR_ROUTING: &str = "clear_routing";

/// The path after `…/voiceCalls/{id}` for a step kind.
pub fn path_suffix(kind: &str) -> &'static str {
    match kind {
        OMNI_FLOW => "/omniFlow",
        CLEAR_ROUTING => "/clearRouting",
        _ => "",
    }
}

/// The omniFlow request: the dialed number, the org's flow and fallback queue, and the caller's
/// record (when the lookup found one) as the flow's `recordId` input.
pub fn omni_flow_body(route: &OmniRoute, omni: &OmniConfig) -> Value {
    let mut body = json!({"dialedNumber": route.to});
    if let Some(flow) = &omni.flow {
        body["flowDevName"] = json!(flow);
    }
    if let Some(queue) = &omni.fallback_queue {
        body["fallbackQueue"] = json!(queue);
    }
    if let Some(id) = &route.record_id {
        body["flowInputParameters"] = json!({"recordId": id});
    }
    body
}

/// The steps of a call handed to Omni-Channel: its VoiceCall (the same step the answer would
/// add, so it is made once), then the omniFlow.
pub fn route_steps(
    route: &OmniRoute,
    voice: &VoiceConfig,
    omni: &OmniConfig,
) -> Vec<VoiceCallStep> {
    let mut steps: Vec<VoiceCallStep> = crate::voicecall::create_step(
        &route.org,
        &route.call_uuid,
        &route.from,
        &route.to,
        Direction::Inbound,
        route.start_ms,
        voice,
    )
    .into_iter()
    .collect();
    steps.push(VoiceCallStep {
        call_uuid: route.call_uuid.clone(),
        org: route.org.clone(),
        kind: OMNI_FLOW.into(),
        body: omni_flow_body(route, omni),
    });
    steps
}

pub fn clear_step(org: &str, call_uuid: &str) -> VoiceCallStep {
    VoiceCallStep {
        call_uuid: call_uuid.to_string(),
        org: org.to_string(),
        kind: CLEAR_ROUTING.into(),
        body: json!({}),
    }
}

pub(crate) fn create_table(conn: &Connection) -> Result<(), String> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS omni_bridged (
             call_uuid TEXT PRIMARY KEY,
             agent_user_id TEXT NOT NULL,
             at_ms INTEGER NOT NULL
         );
         CREATE TABLE IF NOT EXISTS omni_unrouted (
             call_uuid TEXT PRIMARY KEY,
             reason TEXT NOT NULL,
             at_ms INTEGER NOT NULL
         );",
    )
    .map_err(|e| format!("outbox database: {e}"))
}

/// At a call's end (in the transaction that adds its `end` step): a call handed to Omni-Channel
/// and never bridged to an agent gets its routing cleared.
pub(crate) fn clear_unbridged(
    tx: &rusqlite::Transaction<'_>,
    call_uuid: &str,
    now_ms: u64,
) -> Result<(), String> {
    tx.execute(
        "INSERT OR IGNORE INTO voicecall_step (call_uuid, org, kind, body, created_ms, updated_ms)
         SELECT call_uuid, org, ?2, '{}', ?3, ?3 FROM voicecall_step
         WHERE call_uuid = ?1 AND kind = ?4
         AND NOT EXISTS (SELECT 1 FROM omni_bridged b WHERE b.call_uuid = ?1)",
        params![call_uuid, CLEAR_ROUTING, now_ms as i64, OMNI_FLOW],
    )
    .map(|_| ())
    .map_err(|e| format!("outbox database: {e}"))
}

fn db_err(e: rusqlite::Error) -> String {
    format!("outbox database: {e}")
}

impl crate::outbox::Outbox {
    /// A call handed to Omni-Channel: its steps, and its clearRouting at once when the module's
    /// `omni_unrouted` or the call's end were committed first (the messages are handled
    /// concurrently; the outbox's lock orders them, so neither misses the other).
    pub fn insert_route(
        &self,
        steps: &[VoiceCallStep],
        call_uuid: &str,
        now_ms: u64,
    ) -> Result<(), String> {
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(db_err)?;
        crate::voicecall_queue::insert_steps(&tx, steps, now_ms)?;
        let left: bool = tx
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM omni_unrouted WHERE call_uuid = ?1)
                     OR EXISTS (SELECT 1 FROM voicecall_step WHERE call_uuid = ?1 AND kind = 'end')",
                params![call_uuid],
                |row| row.get(0),
            )
            .map_err(db_err)?;
        if left {
            clear_unbridged(&tx, call_uuid, now_ms)?;
        }
        tx.commit().map_err(db_err)
    }

    /// The module's `omni_unrouted`: remembered, and the call's clearRouting when its routing
    /// steps are there (else `insert_route` adds it when they come).
    pub fn insert_unrouted(
        &self,
        call_uuid: &str,
        reason: &str,
        now_ms: u64,
    ) -> Result<(), String> {
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(db_err)?;
        tx.execute(
            "INSERT OR IGNORE INTO omni_unrouted (call_uuid, reason, at_ms) VALUES (?1, ?2, ?3)",
            params![call_uuid, reason, now_ms as i64],
        )
        .map_err(db_err)?;
        clear_unbridged(&tx, call_uuid, now_ms)?;
        tx.commit().map_err(db_err)
    }

    /// The org and VoiceCall id of a call handed to Omni-Channel (its omniFlow step exists).
    pub fn routed_call(&self, call_uuid: &str) -> Result<Option<(String, Option<String>)>, String> {
        let conn = self.lock();
        conn.query_row(
            "SELECT s.org, r.voice_call_id FROM voicecall_step s
             LEFT JOIN voicecall_record r ON r.vendor_call_key = s.call_uuid
             WHERE s.call_uuid = ?1 AND s.kind = ?2",
            params![call_uuid, OMNI_FLOW],
            |row| Ok((row.get::<_, String>(0)?, row.get::<_, Option<String>>(1)?)),
        )
        .optional()
        .map_err(|e| format!("outbox database: {e}"))
    }

    pub fn mark_bridged(
        &self,
        call_uuid: &str,
        agent_user_id: &str,
        now_ms: u64,
    ) -> Result<(), String> {
        self.lock()
            .execute(
                "INSERT OR IGNORE INTO omni_bridged (call_uuid, agent_user_id, at_ms) VALUES (?1, ?2, ?3)",
                params![call_uuid, agent_user_id, now_ms as i64],
            )
            .map(|_| ())
            .map_err(|e| format!("outbox database: {e}"))
    }
}

/// The org's voice settings when it routes with Omni-Channel.
fn omni_of(app: &App, org: &str) -> Option<(VoiceConfig, OmniConfig)> {
    let config = app.config();
    let org = config.org(org)?;
    let voice = org
        .voice
        .as_ref()
        .filter(|_| org.call_log.enabled && org.call_log.record.wants_voicecall())?;
    Some((voice.clone(), voice.omni.clone()?))
}

/// The module's `omni_route`: the VoiceCall and the omniFlow, into the outbox.
pub async fn on_route(app: &Arc<App>, route: OmniRoute) {
    let Some((voice, omni)) = omni_of(app, &route.org) else {
        tracing::warn!(org = %route.org, call_uuid = %route.call_uuid, "a call at an Omni-Channel routing point of an org without <omni-channel>");
        return;
    };
    if check_call_uuid(&route.call_uuid).is_err() {
        return;
    }
    let steps = route_steps(&route, &voice, &omni);
    let uuid = route.call_uuid.clone();
    match db(app, move |o| o.insert_route(&steps, &uuid, now_ms())).await {
        Ok(()) => {
            tracing::info!(org = %route.org, call_uuid = %route.call_uuid, "call handed to Omni-Channel");
            app.voicecall_wake.notify_one();
        }
        Err(e) => tracing::error!(error = %e, "cannot commit the Omni-Channel routing steps"),
    }
}

/// The module's `omni_unrouted`: nobody accepted the call (or the caller hung up).
pub async fn on_unrouted(app: &Arc<App>, org: String, call_uuid: String, reason: String) {
    if check_call_uuid(&call_uuid).is_err() || reason.len() > 32 {
        return;
    }
    let (uuid, why) = (call_uuid.clone(), reason.clone());
    match db(app, move |o| o.insert_unrouted(&uuid, &why, now_ms())).await {
        Ok(()) => {
            tracing::info!(%org, %call_uuid, %reason, "Omni-Channel routing to be cleared");
            app.voicecall_wake.notify_one();
        }
        Err(e) => tracing::error!(error = %e, "cannot commit the clearRouting step"),
    }
}

fn same_user(a: &str, b: &str) -> bool {
    a.len() >= 15 && b.len() >= 15 && a.get(..15) == b.get(..15)
}

/// The users the org says the call's work is offered to or opened by; `Err` when the org
/// cannot be asked now.
async fn offered_to(app: &App, org: &str, voice_call_id: &str) -> Result<Vec<String>, String> {
    let config = app.config();
    let org_config = config
        .org(org)
        .ok_or("the call's org is no longer configured")?;
    let client = SalesforceClient::new(app.http.clone(), &org_config.api_version);
    let soql = format!(
        "SELECT UserId FROM AgentWork WHERE WorkItemId = {} AND Status IN ('Assigned', 'Opened')",
        soql_string(voice_call_id)
    );
    let records = crate::calllog::with_session(app, org, |s| {
        let client = client.clone();
        let soql = soql.clone();
        async move { client.query(&s, &soql, 200).await.map(|(r, _)| r) }
    })
    .await
    .map_err(|e| format!("cannot ask Salesforce who the call is offered to: {e}"))?;
    Ok(records
        .iter()
        .filter_map(|r| r.get("UserId").and_then(Value::as_str))
        .map(str::to_string)
        .collect())
}

/// `accept_routed`: the agent accepted the routed call in Salesforce; bridge it to them.
pub async fn accept_routed(
    app: &Arc<App>,
    agent: &AgentIdentity,
    call_uuid: String,
) -> Result<Value, CommandError> {
    let extension = agent.extension.clone().ok_or(CommandError {
        code: 409,
        reason: "no_extension",
        message: "you have no extension to take the call on".into(),
    })?;
    let uuid = call_uuid.clone();
    let routed = db(app, move |o| o.routed_call(&uuid))
        .await
        .map_err(CommandError::internal)?;
    let Some((org, voice_call_id)) = routed else {
        return Err(CommandError::no_such_call(&call_uuid));
    };
    if agent.org.as_deref().is_some_and(|o| o != org) {
        return Err(CommandError::not_your_call(&call_uuid));
    }
    let Some(voice_call_id) = voice_call_id else {
        return Err(CommandError::wrong_state(
            "the call's VoiceCall is not in Salesforce yet",
        ));
    };
    let users = offered_to(app, &org, &voice_call_id)
        .await
        .map_err(|e| CommandError {
            code: 503,
            reason: "salesforce_unavailable",
            message: e,
        })?;
    if !users.iter().any(|u| same_user(u, &agent.user_id)) {
        tracing::warn!(agent = %agent.user_id, %call_uuid, "accept_routed for a call Salesforce did not offer to this agent");
        return Err(CommandError::not_your_call(&call_uuid));
    }
    app.desk
        .link
        .run(CallCommand::BridgeRouted {
            call_uuid: call_uuid.clone(),
            agent_user_id: agent.user_id.clone(),
            agent_extension: extension,
        })
        .await?;
    let (uuid, user) = (call_uuid.clone(), agent.user_id.clone());
    if let Err(e) = db(app, move |o| o.mark_bridged(&uuid, &user, now_ms())).await {
        tracing::error!(error = %e, %call_uuid, "cannot record the routed call's bridge");
    }
    Ok(json!({}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flow_gets_the_dialed_number_and_the_callers_record() {
        let route = OmniRoute {
            org: "acme".into(),
            call_uuid: "c-1".into(),
            from: "+14155550100".into(),
            to: "+18005550199".into(),
            start_ms: 0,
            record_id: Some("0035e00000AbCdEAAV".into()),
        };
        let omni = OmniConfig {
            flow: Some("Inbound_Voice".into()),
            fallback_queue: None,
            wait_seconds: 30,
        };
        assert_eq!(
            omni_flow_body(&route, &omni),
            json!({"dialedNumber": "+18005550199", "flowDevName": "Inbound_Voice",
                   "flowInputParameters": {"recordId": "0035e00000AbCdEAAV"}})
        );
        assert_eq!(path_suffix(OMNI_FLOW), "/omniFlow");
        assert_eq!(path_suffix("end"), "");
        assert!(same_user("005000000000001AAA", "005000000000001"));
        assert!(!same_user("005000000000001AAA", "005000000000002AAA"));
        assert!(!same_user("", ""));
    }

    fn route() -> OmniRoute {
        OmniRoute {
            org: "acme".into(),
            call_uuid: "c-9".into(),
            from: "+14155550100".into(),
            to: "2000".into(),
            start_ms: 1,
            record_id: None,
        }
    }

    fn kinds(outbox: &crate::outbox::Outbox) -> Vec<String> {
        outbox
            .steps("c-9")
            .unwrap()
            .into_iter()
            .map(|s| s.kind)
            .collect()
    }

    fn voice() -> (VoiceConfig, OmniConfig) {
        let omni = OmniConfig {
            flow: Some("F".into()),
            fallback_queue: None,
            wait_seconds: 30,
        };
        let voice = VoiceConfig {
            scrt_url: "https://acme.my.salesforce-scrt.com".into(),
            org_id: "00DEm0000000001".into(),
            call_center: "NatterboxCC".into(),
            provider: "Natterbox".into(),
            private_key: natterbox_common::config::SecretRef::Env("UNUSED".into()),
            omni: Some(omni.clone()),
        };
        (voice, omni)
    }

    #[test]
    fn routing_is_cleared_once_whichever_of_route_and_unrouted_commits_first() {
        let (voice, omni) = voice();
        let dir = tempfile::tempdir().unwrap();
        let outbox = crate::outbox::Outbox::open(&dir.path().join("a.sqlite")).unwrap();
        outbox.insert_unrouted("c-9", "abandoned", 5).unwrap();
        assert!(
            kinds(&outbox).is_empty(),
            "nothing to clear before the routing"
        );
        outbox
            .insert_route(&route_steps(&route(), &voice, &omni), "c-9", 6)
            .unwrap();
        assert_eq!(kinds(&outbox), ["create", OMNI_FLOW, CLEAR_ROUTING]);
        outbox.insert_unrouted("c-9", "timeout", 7).unwrap();
        assert_eq!(kinds(&outbox).len(), 3, "once");

        let dir = tempfile::tempdir().unwrap();
        let outbox = crate::outbox::Outbox::open(&dir.path().join("b.sqlite")).unwrap();
        outbox
            .insert_route(&route_steps(&route(), &voice, &omni), "c-9", 6)
            .unwrap();
        outbox.mark_bridged("c-9", "005000000000001AAA", 7).unwrap();
        outbox.insert_unrouted("c-9", "abandoned", 8).unwrap();
        assert_eq!(
            kinds(&outbox),
            ["create", OMNI_FLOW],
            "a bridged call keeps its routing"
        );
    }
}
