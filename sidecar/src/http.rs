//! The loopback HTTP listener: `/healthz`, `/metrics`, `/status` and the agent WebSocket
//! `/agent` (protocol in sidecar/README.md). TLS when `websocket-tls-cert`/`-key` are set.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::pops::AgentIdentity;
use crate::App;

const PING_EVERY: Duration = Duration::from_secs(20);

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/status", get(status))
        .route("/agent", get(agent))
        .with_state(app)
}

async fn healthz(State(app): State<Arc<App>>) -> Response {
    if app.is_draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response()
    } else {
        (StatusCode::OK, "ok\n").into_response()
    }
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    let mut body = app.metrics.render(&app.tokens.render_metrics());
    app.metrics.append_module_snapshot(&mut body);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

async fn status(State(app): State<Arc<App>>) -> Response {
    let body = serde_json::json!({
        "draining": app.is_draining(),
        "orgs": app.tokens.status(),
        "pops_pending": app.pops.pending(),
        "outbox": {
            "pending": app.metrics.outbox_pending.get(),
            "delivered": app.metrics.outbox_delivered.get(),
            "failed": app.metrics.outbox_failed.get(),
        },
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// Browsers cannot set headers on a WebSocket: they may send the token as `?access_token=`.
#[derive(Deserialize)]
struct AgentQuery {
    access_token: Option<String>,
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

async fn agent(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(query): Query<AgentQuery>,
    ws: WebSocketUpgrade,
) -> Response {
    let token = bearer(&headers)
        .map(str::to_string)
        .or(query.access_token)
        .unwrap_or_default();
    let identity = app.agents().authenticate(&token);
    let Some(identity) = identity else {
        app.metrics.ws_auth_failures.inc();
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "unknown or missing agent token\n",
        )
            .into_response();
    };
    let shutdown = app.shutdown_rx();
    ws.on_upgrade(move |socket| agent_session(socket, identity, app, shutdown))
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

/// Loads the certificate chain and key for the WebSocket listener.
pub fn tls_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("websocket-tls-cert {}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("websocket-tls-cert {}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "websocket-tls-cert {}: no certificate",
            cert.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("websocket-tls-key {}: {e}", key.display()))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| format!("TLS certificate and key: {e}"))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// A TCP listener whose connections are TLS: handshakes run in their own tasks so a slow client
/// does not hold up the others.
pub struct TlsListener {
    rx: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    pub fn new(tcp: TcpListener, acceptor: TlsAcceptor) -> std::io::Result<TlsListener> {
        let local = tcp.local_addr()?;
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let (stream, peer) = match tcp.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                if tx.is_closed() {
                    break;
                }
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream))
                        .await
                    {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener { rx, local })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(conn) => conn,
            // The accept task only ends with the process.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
