//! The agents' listener (`agent-listen`): the `/agent` WebSocket that carries screen pops to agent
//! consoles (protocol in sidecar/README.md), `/healthz` for a load balancer in front of it, and
//! the console page itself (`/console/`, console.rs).
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

use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use tokio::sync::watch;

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

#[derive(Deserialize)]
struct ClientFrame {
    ack: Option<String>,
}

async fn agent_session(
    mut socket: WebSocket,
    agent: AgentIdentity,
    app: Arc<App>,
    mut shutdown: watch::Receiver<bool>,
) {
    let hello = serde_json::json!({
        "type": "hello",
        "user_id": agent.user_id,
        "extension": agent.extension,
    });
    if socket
        .send(WsMessage::Text(hello.to_string().into()))
        .await
        .is_err()
    {
        return;
    }
    tracing::debug!(user_id = %agent.user_id, "agent client connected");
    let mut subscription = app.pops.subscribe(agent.clone());
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
            incoming = socket.recv() => match incoming {
                Some(Ok(WsMessage::Text(text))) => {
                    if let Ok(ClientFrame { ack: Some(call_uuid) }) = serde_json::from_str(text.as_str()) {
                        app.pops.ack(&agent, &call_uuid);
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
