//! Presence across hosts. A change set on one host goes into the org's hash in Redis
//! (`<prefix>:presence:<org>`, newer wins) and out on the presence channel; every sidecar hears
//! it, keeps it, shows it on that agent's consoles, and pushes it to its module, whose
//! `sf presence` / `sf_presence` read it as before.
//!
//! Pub/sub for the change, the hash for the state: presence is a value, not a message, so a
//! sidecar that was not listening (Redis down, a restart) reads the hashes of its orgs each
//! time it subscribes again and misses nothing that still holds.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use natterbox_common::call_control::AgentPresence;
use natterbox_common::fleet::{redis, subscribe_channel};
use natterbox_common::wire::Message;

use super::outgoing::PresenceMessage;
use super::Fleet;
use crate::agent::presence::presence_frame;
use crate::agent::AgentFrame;
use crate::App;

/// How long catching up waits for the command link after a (re)subscription.
const CATCH_UP_WAIT: Duration = Duration::from_secs(5);

/// Hears the presence channel until the link is dropped.
pub fn listen(fleet: &Arc<Fleet>, app: Weak<App>) {
    let on_message = app.clone();
    subscribe_channel(
        &fleet.link,
        fleet.keys.presence_channel(),
        move |payload| {
            let Some(app) = on_message.upgrade() else {
                return;
            };
            match serde_json::from_slice::<PresenceMessage>(payload) {
                Ok(message) => {
                    let Some(fleet) = app.fleet.as_ref() else {
                        return;
                    };
                    if message.origin != fleet.origin {
                        apply(&app, fleet, &message.org, message.presence);
                    }
                }
                Err(e) => {
                    tracing::warn!("fleet presence channel: a message that is not ours ({e})")
                }
            }
        },
        move || {
            tokio::spawn(catch_up(app.clone()));
        },
    );
}

/// Keeps a presence from another host if it is for an org of this host and newer than ours.
fn apply(app: &App, fleet: &Fleet, org: &str, presence: AgentPresence) {
    if app.config().org(org).is_none() {
        return;
    }
    // An agent's presence names the agent's org (or none, for an agent of the default org with
    // no org of its own); one filed under another org is not that org's to show.
    if presence.org.as_deref().is_some_and(|own| own != org) {
        tracing::warn!(
            org,
            "fleet: a presence naming another org than its hash's; ignored"
        );
        return;
    }
    match app.desk.presence.apply_from_fleet(presence.clone()) {
        Ok(true) => {
            fleet
                .counters
                .presence_received
                .fetch_add(1, Ordering::Relaxed);
            tracing::debug!(user_id = %presence.user_id, state = presence.state.as_str(), "fleet: presence from another host");
            app.desk.send(AgentFrame {
                org: presence.org.clone(),
                user_id: Some(presence.user_id.clone()),
                extension: None,
                text: presence_frame(&presence).into(),
            });
            app.desk.link.broadcast(&Message::Presence(presence));
        }
        Ok(false) => {}
        Err(e) => tracing::warn!("fleet: {e}"),
    }
}

/// After (re)subscribing: every org's hash, for what changed while this host was not listening.
async fn catch_up(app: Weak<App>) {
    let Some(app) = app.upgrade() else { return };
    let Some(fleet) = app.fleet.clone() else {
        return;
    };
    // The subscription has its own connection: wait (bounded) for the command link too.
    let deadline = Instant::now() + CATCH_UP_WAIT;
    while !fleet.is_up() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A Redis that restarted empty has lost our agents' presence: set it again (newer wins, so
    // this never undoes a change made elsewhere meanwhile).
    fleet.republish_presence();
    for org in &app.config().orgs {
        let key = fleet.keys.presence(&org.name);
        let all = fleet
            .link
            .run(
                Instant::now() + Duration::from_secs(1),
                |mut c| async move {
                    redis::cmd("HGETALL")
                        .arg(key)
                        .query_async::<Vec<(String, String)>>(&mut c)
                        .await
                },
            )
            .await;
        match all {
            Ok(all) => {
                for (_, value) in all {
                    if let Ok(presence) = serde_json::from_str::<AgentPresence>(&value) {
                        apply(&app, &fleet, &org.name, presence);
                    }
                }
            }
            Err(e) => {
                tracing::info!(org = %org.name, "fleet: presence not read ({e}); read again on the next reconnect");
            }
        }
    }
}
