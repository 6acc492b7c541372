//! The agents' listener (`agent-listen`): the `/agent` WebSocket of agent consoles (screen pops,
//! call state, call control, presence, wrap-up; protocol in docs/agent-protocol.md), `/healthz`
//! for a load balancer in front of it, and the console page itself (`/console/`, console.rs).
//! TLS when `websocket-tls-cert`/`-key` are set.
//!
//! Authentication happens before the upgrade, with the agent's token in one of two places:
//! `Authorization: Bearer <token>` (CTI servers, adapters), or, because browsers cannot set
//! headers on a WebSocket, the subprotocol list: `new WebSocket(url, ["natterbox.agent.v1",
//! "natterbox.token.<token>"])`; the server answers `natterbox.agent.v1` and never echoes the
//! token. Never in the URL: query strings end up in proxy and access logs, so `/agent` refuses
//! any query string.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::sync::{broadcast, mpsc, watch};

use crate::agent::calls::call_frame;
use crate::agent::commands::{self, ClientFrame, CommandError};
use crate::agent::presence::presence_frame;
use crate::pops::AgentIdentity;
use crate::App;

const PING_EVERY: Duration = Duration::from_secs(20);
/// The subprotocol a client offers (and the server answers) to speak this protocol.
pub const SUBPROTOCOL: &str = "natterbox.agent.v1";
/// The subprotocol that carries the agent's token: `natterbox.token.<token>`.
pub const TOKEN_SUBPROTOCOL_PREFIX: &str = "natterbox.token.";

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/healthz", get(crate::admin::healthz))
        .route("/agent", get(agent))
        .merge(crate::console::routes())
        .merge(crate::scv_connector::routes())
        .with_state(app)
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn token_subprotocol(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|p| p.trim().strip_prefix(TOKEN_SUBPROTOCOL_PREFIX))
}

fn refused(status: StatusCode, why: &'static str) -> Response {
    (status, [(header::WWW_AUTHENTICATE, "Bearer")], why).into_response()
}

async fn agent(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    uri: Uri,
    ws: WebSocketUpgrade,
) -> Response {
    if uri.query().is_some() {
        app.metrics.ws_auth_failures.inc();
        return refused(
            StatusCode::BAD_REQUEST,
            "/agent takes no query string (a token in a URL ends up in logs): send it as \
             Authorization: Bearer or as the natterbox.token.<token> subprotocol\n",
        );
    }
    let token = bearer(&headers)
        .or_else(|| token_subprotocol(&headers))
        .unwrap_or_default();
    let Some(identity) = app.agents().authenticate(token) else {
        app.metrics.ws_auth_failures.inc();
        return refused(StatusCode::UNAUTHORIZED, "unknown or missing agent token\n");
    };
    let shutdown = app.shutdown_rx();
    ws.protocols([SUBPROTOCOL])
        .on_upgrade(move |socket| agent_session(socket, identity, app, shutdown))
}

/// Commands a connection may send per second before `429 too_many_commands`.
const COMMANDS_PER_SECOND: u32 = 20;
/// Longest frame a client may send (docs/agent-protocol.md).
const MAX_CLIENT_FRAME: usize = 16 * 1024;

async fn agent_session(
    mut socket: WebSocket,
    agent: AgentIdentity,
    app: Arc<App>,
    mut shutdown: watch::Receiver<bool>,
) {
    let hello = serde_json::json!({
        "type": "hello",
        "protocol": 1,
        "user_id": agent.user_id,
        "extension": agent.extension,
    });
    // Subscribed before the snapshot, so no change falls between the two.
    let mut bus = app.desk.subscribe();
    let mut opening = vec![
        hello.to_string(),
        presence_frame(&app.desk.presence.get(&agent)),
    ];
    opening.extend(app.desk.calls.live_for(&agent).iter().map(call_frame));
    for frame in opening {
        if socket.send(WsMessage::Text(frame.into())).await.is_err() {
            return;
        }
    }
    tracing::debug!(user_id = %agent.user_id, "agent client connected");
    let (results_tx, mut results) = mpsc::channel::<String>(64);
    let mut window = (std::time::Instant::now(), 0u32);
    if let Some(fleet) = &app.fleet {
        fleet.before_console(&app, &agent).await;
    }
    let mut subscription = app.pops.subscribe(agent.clone());
    if let Some(fleet) = &app.fleet {
        // Its streams are read from now on; at once rather than at the next poll.
        fleet.wake_reader();
    }
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    loop {
        tokio::select! {
            frame = subscription.rx.recv() => {
                let Some(frame) = frame else { break };
                if socket.send(WsMessage::Text((&*frame).into())).await.is_err() {
                    break;
                }
                if subscription.rx.is_empty() {
                    app.pops.catch_up(subscription.id);
                }
            }
            frame = bus.recv() => match frame {
                Ok(frame) => {
                    if frame.is_for(&agent) && socket.send(WsMessage::Text((&*frame.text).into())).await.is_err() {
                        break;
                    }
                }
                // Too slow: missed changes; the live calls as they are now.
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    for state in app.desk.calls.live_for(&agent) {
                        if socket.send(WsMessage::Text(call_frame(&state).into())).await.is_err() {
                            break;
                        }
                    }
                }
                Err(broadcast::error::RecvError::Closed) => break,
            },
            Some(result) = results.recv() => {
                if socket.send(WsMessage::Text(result.into())).await.is_err() {
                    break;
                }
            }
            incoming = socket.recv() => match incoming {
                Some(Ok(WsMessage::Text(text))) => {
                    if text.len() > MAX_CLIENT_FRAME {
                        let _ = socket.send(WsMessage::Close(Some(CloseFrame {
                            code: 1009,
                            reason: "frame too large".into(),
                        }))).await;
                        break;
                    }
                    match commands::parse(text.as_str()) {
                        ClientFrame::Ack(call_uuid) => {
                            if app.pops.ack(&agent, &call_uuid) {
                                if let Some(fleet) = &app.fleet {
                                    fleet.pop_acked(&app, &agent, &call_uuid);
                                }
                            }
                        }
                        ClientFrame::Invalid(id, error) => {
                            tracing::info!(agent = %agent.user_id, code = error.code, error = %error.message, "agent command refused");
                            let _ = results_tx.try_send(commands::result_frame(id, Err(error)));
                        }
                        ClientFrame::Command(id, command) => {
                            let now = std::time::Instant::now();
                            if now.duration_since(window.0) >= Duration::from_secs(1) {
                                window = (now, 0);
                            }
                            window.1 += 1;
                            if window.1 > COMMANDS_PER_SECOND {
                                let _ = results_tx.try_send(commands::result_frame(id, Err(CommandError {
                                    code: 429,
                                    reason: "too_many_commands",
                                    message: format!("more than {COMMANDS_PER_SECOND} commands in a second"),
                                })));
                                continue;
                            }
                            let (app, agent, results_tx) = (app.clone(), agent.clone(), results_tx.clone());
                            tokio::spawn(async move {
                                let frame = commands::answer(&app, &agent, id, command).await;
                                let _ = results_tx.send(frame).await;
                            });
                        }
                    }
                }
                Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
            _ = ping.tick() => {
                if socket.send(WsMessage::Ping(Default::default())).await.is_err() {
                    break;
                }
            }
            _ = shutdown.changed() => {
                let _ = socket.send(WsMessage::Close(None)).await;
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_token_in_the_header_or_the_subprotocol_list() {
        let mut headers = HeaderMap::new();
        assert_eq!(bearer(&headers), None);
        assert_eq!(token_subprotocol(&headers), None);
        headers.insert(header::AUTHORIZATION, "bearer abc".parse().unwrap());
        assert_eq!(bearer(&headers), Some("abc"));
        headers.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer(&headers), None);
        headers.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            "natterbox.agent.v1, natterbox.token.f00d".parse().unwrap(),
        );
        assert_eq!(token_subprotocol(&headers), Some("f00d"));
    }
}
