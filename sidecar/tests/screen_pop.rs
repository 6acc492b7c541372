//! Screen pops end to end: module socket → sidecar → agent WebSocket client.

mod support;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use natterbox_common::wire::{Direction, Message, ScreenPop};
use support::*;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message as WsMessage;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn pop(uuid: &str, user: Option<&str>, ext: Option<&str>, age_ms: u64, ttl_ms: u64) -> ScreenPop {
    ScreenPop {
        org: "acme".into(),
        call_uuid: uuid.into(),
        agent_user_id: user.map(str::to_string),
        agent_extension: ext.map(str::to_string),
        caller_number: "+14155550100".into(),
        record_ids: vec!["003000000000001AAA".into()],
        direction: Direction::Inbound,
        created_at_ms: natterbox_sidecar::backoff::now_ms() - age_ms,
        ttl_ms,
        record: None,
    }
}

async fn connect(setup: &Setup, token: &str) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    let mut request = format!("ws://{}/agent", setup.agent)
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("Authorization", format!("Bearer {token}").parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await?;
    let hello = next_json(&mut ws).await.expect("hello");
    assert_eq!(hello["type"], "hello");
    // Protocol v1: the agent's presence follows the hello (docs/agent-protocol.md).
    assert_eq!(
        next_json(&mut ws).await.expect("presence")["type"],
        "presence"
    );
    Ok(ws)
}

/// The upgrade request a browser makes with `new WebSocket(url, ["natterbox.agent.v1",
/// "natterbox.token.<token>"])`.
fn subprotocol_request(
    setup: &Setup,
    token: &str,
) -> tokio_tungstenite::tungstenite::handshake::client::Request {
    let mut request = format!("ws://{}/agent", setup.agent)
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        format!("natterbox.agent.v1, natterbox.token.{token}")
            .parse()
            .unwrap(),
    );
    request
}

async fn next_json(ws: &mut Ws) -> Option<serde_json::Value> {
    loop {
        match tokio::time::timeout(Duration::from_millis(700), ws.next()).await {
            Ok(Some(Ok(WsMessage::Text(text)))) => {
                return Some(serde_json::from_str(&text).unwrap())
            }
            Ok(Some(Ok(_))) => continue,
            _ => return None,
        }
    }
}

fn setup() -> Setup {
    let mut setup = Setup::new();
    setup.agent("005000000000001AAA", "1001", "token-alice");
    setup.agent("005000000000002AAA", "1002", "token-bob");
    setup.write_config(&org_without_auth("acme"), "");
    setup
}

#[tokio::test]
async fn pops_reach_the_agent_and_survive_a_reconnect() {
    let setup = setup();
    let running = setup.start().await;
    let mut module = ModuleConn::connect(&setup.socket()).await;
    let mut alice = connect(&setup, "token-alice").await.unwrap();
    let mut bob = connect(&setup, "token-bob").await.unwrap();

    module
        .send(&Message::ScreenPop(pop(
            "call-1",
            Some("005000000000001AAA"),
            None,
            0,
            30_000,
        )))
        .await;
    let frame = next_json(&mut alice).await.expect("alice gets her pop");
    assert_eq!(frame["type"], "screen_pop");
    assert_eq!(frame["call_uuid"], "call-1");
    assert_eq!(frame["caller_number"], "+14155550100");
    assert_eq!(frame["record_ids"][0], "003000000000001AAA");
    assert!(frame["expires_at_ms"].as_u64().unwrap() > natterbox_sidecar::backoff::now_ms());
    assert!(next_json(&mut bob).await.is_none(), "bob gets nothing");

    // Addressed by extension only.
    module
        .send(&Message::ScreenPop(pop(
            "call-2",
            None,
            Some("1002"),
            0,
            30_000,
        )))
        .await;
    assert_eq!(next_json(&mut bob).await.unwrap()["call_uuid"], "call-2");

    // Alice drops without acking; reconnecting gets call-1 again. After the ack, it is gone.
    drop(alice);
    let mut alice = connect(&setup, "token-alice").await.unwrap();
    assert_eq!(next_json(&mut alice).await.unwrap()["call_uuid"], "call-1");
    alice
        .send(WsMessage::Text(r#"{"ack":"call-1"}"#.into()))
        .await
        .unwrap();
    eventually(Duration::from_secs(5), "the ack", || async {
        running.metric("natterbox_sidecar_pops_acked_total").await == 1
    })
    .await;
    drop(alice);
    let mut alice = connect(&setup, "token-alice").await.unwrap();
    assert!(
        next_json(&mut alice).await.is_none(),
        "acked pops are not sent again"
    );

    // Browsers cannot set headers: the token may come in the subprotocol list, and the server
    // answers with the protocol's name, never the token.
    let (mut by_subprotocol, response) =
        tokio_tungstenite::connect_async(subprotocol_request(&setup, "token-bob"))
            .await
            .unwrap();
    assert_eq!(
        response.headers()["sec-websocket-protocol"],
        "natterbox.agent.v1"
    );
    assert_eq!(
        next_json(&mut by_subprotocol).await.unwrap()["type"],
        "hello"
    );
    assert_eq!(
        next_json(&mut by_subprotocol).await.unwrap()["type"],
        "presence"
    );
    assert_eq!(
        next_json(&mut by_subprotocol).await.unwrap()["call_uuid"],
        "call-2"
    );
    assert!(
        running
            .metric("natterbox_sidecar_pops_delivered_total")
            .await
            >= 4
    );
    assert!(running.stop().success());
}

#[tokio::test]
async fn wrong_agent_tokens_are_refused() {
    let setup = setup();
    let running = setup.start().await;
    for token in ["token-mallory", ""] {
        match connect(&setup, token).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), 401)
            }
            Err(e) => panic!("expected 401, got {e}"),
            Ok(_) => panic!("token {token:?} was accepted"),
        }
    }
    let status_of = |result: Result<_, tokio_tungstenite::tungstenite::Error>| match result {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => r.status().as_u16(),
        Err(e) => panic!("expected an HTTP refusal, got {e}"),
        Ok(_) => panic!("accepted"),
    };
    let no_header = tokio_tungstenite::connect_async(format!("ws://{}/agent", setup.agent)).await;
    assert_eq!(status_of(no_header.map(|_| ())), 401);
    let wrong_subprotocol =
        tokio_tungstenite::connect_async(subprotocol_request(&setup, "token-mallory")).await;
    assert_eq!(status_of(wrong_subprotocol.map(|_| ())), 401);
    // A token in the URL would end up in proxy logs: refused even when it is right.
    let by_query = tokio_tungstenite::connect_async(format!(
        "ws://{}/agent?access_token=token-bob",
        setup.agent
    ))
    .await;
    assert_eq!(status_of(by_query.map(|_| ())), 400);
    assert_eq!(
        running
            .metric("natterbox_sidecar_ws_auth_failures_total")
            .await,
        5
    );
    assert_eq!(running.metric("natterbox_sidecar_ws_clients").await, 0);
}

#[tokio::test]
async fn late_pops_are_dropped_and_counted() {
    let setup = setup();
    let running = setup.start().await;
    let mut module = ModuleConn::connect(&setup.socket()).await;
    // Arrives already past its TTL.
    module
        .send(&Message::ScreenPop(pop(
            "late",
            Some("005000000000001AAA"),
            None,
            5_000,
            1_000,
        )))
        .await;
    // Expires while nobody is connected.
    module
        .send(&Message::ScreenPop(pop(
            "short",
            Some("005000000000001AAA"),
            None,
            0,
            300,
        )))
        .await;
    // Still in time.
    module
        .send(&Message::ScreenPop(pop(
            "fresh",
            Some("005000000000001AAA"),
            None,
            0,
            30_000,
        )))
        .await;
    eventually(Duration::from_secs(5), "three pops received", || async {
        running
            .metric("natterbox_sidecar_pops_received_total")
            .await
            == 3
    })
    .await;
    // The late one on arrival, the short one by the sweeper once its 300 ms are up.
    eventually(Duration::from_secs(5), "two pops expired", || async {
        running.metric("natterbox_sidecar_pops_expired_total").await == 2
    })
    .await;
    let mut alice = connect(&setup, "token-alice").await.unwrap();
    assert_eq!(next_json(&mut alice).await.unwrap()["call_uuid"], "fresh");
    assert!(
        next_json(&mut alice).await.is_none(),
        "late pops are not delivered"
    );
    assert_eq!(
        running.metric("natterbox_sidecar_pops_expired_total").await,
        2
    );
}

#[tokio::test]
async fn the_socket_survives_garbage_and_acks_call_logs_of_orgs_without_logging() {
    let setup = setup();
    let running = setup.start().await;
    let mut module = ModuleConn::connect(&setup.socket()).await;
    module
        .send_raw(b"this is not json\n{\"type\":\"nope\"}\n\n")
        .await;
    let log = natterbox_common::wire::CallLog {
        org: "acme".into(),
        call_uuid: "no-logging".into(),
        from: "+14155550100".into(),
        to: "1001".into(),
        direction: Direction::Inbound,
        start_ms: 1,
        answer_ms: None,
        end_ms: 2,
        duration_s: 0,
        agent_user_id: None,
        who_id: None,
        what_id: None,
        hangup_cause: "NO_ANSWER".into(),
        recording_url: None,
    };
    module.send(&Message::CallLog(log)).await;
    assert_eq!(
        module.recv(Duration::from_secs(5)).await,
        Some(Message::Ack {
            call_uuid: "no-logging".into()
        })
    );
    assert_eq!(
        running
            .metric("natterbox_sidecar_events_malformed_total")
            .await,
        2
    );
    assert_eq!(
        running
            .metric("natterbox_sidecar_call_logs_ignored_total")
            .await,
        1
    );
    // A line over the limit closes that connection, not the listener.
    let mut big = vec![b'x'; natterbox_common::wire::MAX_LINE_BYTES + 100];
    big.push(b'\n');
    module.send_raw(&big).await;
    assert_eq!(module.recv(Duration::from_secs(5)).await, None);
    let mut again = ModuleConn::connect(&setup.socket()).await;
    again
        .send(&Message::ScreenPop(pop(
            "after",
            Some("005000000000001AAA"),
            None,
            0,
            30_000,
        )))
        .await;
    eventually(
        Duration::from_secs(5),
        "the next connection works",
        || async {
            running
                .metric("natterbox_sidecar_pops_received_total")
                .await
                == 1
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pops_are_published_as_platform_events() {
    let emu = emulator().await;
    let mut setup = Setup::new();
    setup.agent("005000000000001AAA", "1001", "token-alice");
    setup.write_config(
        &org_xml(
            "acme",
            &emu.login_url(),
            &jwt_auth(
                JWT_CLIENT,
                INTEGRATION_USER,
                &key_file("test-jwt-private-key.pem"),
                "https://login.salesforce.com",
            ),
            r#"<screen-pop platform-event="Screen_Pop__e" ttl-ms="30000"/>"#,
        ),
        "",
    );
    let running = setup.start().await;
    eventually(Duration::from_secs(10), "a token", || async {
        setup.token_file("acme").is_some()
    })
    .await;
    let mut module = ModuleConn::connect(&setup.socket()).await;
    module
        .send(&Message::ScreenPop(pop(
            "pe-1",
            Some("005000000000001AAA"),
            None,
            0,
            30_000,
        )))
        .await;
    // Past its TTL: neither delivered nor published.
    module
        .send(&Message::ScreenPop(pop(
            "pe-late",
            Some("005000000000001AAA"),
            None,
            60_000,
            1_000,
        )))
        .await;
    // Both pops handled (the late one is never queued for publishing) and one event published.
    eventually(Duration::from_secs(10), "the platform event", || async {
        running
            .metric("natterbox_sidecar_pops_received_total")
            .await
            == 2
            && running
                .metric("natterbox_sidecar_org_platform_events_published_total{org=\"acme\"}")
                .await
                == 1
    })
    .await;
    let events = emu.admin().events();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["type"], "Screen_Pop__e");
    let event = &events[0]["fields"];
    assert_eq!(event["Call_Id__c"], "pe-1", "{event}");
    assert_eq!(event["Phone__c"], "+14155550100");
    assert_eq!(event["Agent_Id__c"], "005000000000001AAA");
    assert_eq!(event["RecordId__c"], "003000000000001AAA");
    assert_eq!(event["Direction__c"], "inbound");
    assert_eq!(
        running
            .metric("natterbox_sidecar_org_platform_events_published_total{org=\"acme\"}")
            .await,
        1
    );
    assert_eq!(
        running
            .metric("natterbox_sidecar_org_platform_events_failed_total{org=\"acme\"}")
            .await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_websocket_speaks_tls_when_configured() {
    let mut setup = Setup::new();
    setup.agent("005000000000001AAA", "1001", "token-alice");
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    std::fs::write(setup.path("ws.crt"), cert.cert.pem()).unwrap();
    std::fs::write(setup.path("ws.key"), cert.signing_key.serialize_pem()).unwrap();
    setup.write_config(
        &org_without_auth("acme"),
        &format!(
            r#"<param name="websocket-tls-cert" value="{}"/><param name="websocket-tls-key" value="{}"/>"#,
            setup.path("ws.crt").display(),
            setup.path("ws.key").display()
        ),
    );
    let child = setup.command().spawn().unwrap();
    let _running = Running {
        child,
        admin: setup.admin,
    };
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(tls));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let tcp = loop {
        match tokio::net::TcpStream::connect(setup.agent).await {
            Ok(s) => break s,
            Err(_) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => panic!("{e}"),
        }
    };
    let stream = connector
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .expect("TLS handshake");
    let mut request = format!("wss://localhost:{}/agent", setup.agent.port())
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("Authorization", "Bearer token-alice".parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::client_async(request, stream)
        .await
        .unwrap();
    let hello = next_json_tls(&mut ws).await.unwrap();
    assert_eq!(hello["type"], "hello");
    assert_eq!(hello["user_id"], "005000000000001AAA");
    assert_eq!(next_json_tls(&mut ws).await.unwrap()["type"], "presence");
    let mut module = ModuleConn::connect(&setup.socket()).await;
    module
        .send(&Message::ScreenPop(pop(
            "tls-1",
            Some("005000000000001AAA"),
            None,
            0,
            30_000,
        )))
        .await;
    assert_eq!(next_json_tls(&mut ws).await.unwrap()["call_uuid"], "tls-1");
    // Plain HTTP on the TLS port gets nowhere; the admin listener stays plain loopback HTTP.
    assert!(reqwest::get(format!("http://{}/healthz", setup.agent))
        .await
        .is_err());
    assert!(reqwest::get(format!("http://{}/metrics", setup.admin))
        .await
        .unwrap()
        .status()
        .is_success());
}

async fn next_json_tls<S>(
    ws: &mut tokio_tungstenite::WebSocketStream<S>,
) -> Option<serde_json::Value>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
            Ok(Some(Ok(WsMessage::Text(text)))) => {
                return Some(serde_json::from_str(&text).unwrap())
            }
            Ok(Some(Ok(_))) => continue,
            _ => return None,
        }
    }
}

#[tokio::test]
async fn agents_and_operators_have_separate_listeners() {
    let setup = setup();
    let running = setup.start().await;
    let get = |addr: std::net::SocketAddr, path: &'static str| async move {
        reqwest::get(format!("http://{addr}{path}"))
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    // The agent listener serves /agent (and /healthz for a load balancer), nothing an operator
    // reads; the admin listener serves no WebSocket.
    assert_eq!(get(setup.agent, "/metrics").await, 404);
    assert_eq!(get(setup.agent, "/status").await, 404);
    assert_eq!(get(setup.agent, "/healthz").await, 200);
    assert_eq!(get(setup.admin, "/metrics").await, 200);
    assert_eq!(get(setup.admin, "/status").await, 200);
    let mut on_admin = format!("ws://{}/agent", setup.admin)
        .into_client_request()
        .unwrap();
    on_admin
        .headers_mut()
        .insert("Authorization", "Bearer token-alice".parse().unwrap());
    match tokio_tungstenite::connect_async(on_admin).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 404),
        other => panic!(
            "the admin listener took a WebSocket: {:?}",
            other.map(|_| ())
        ),
    }
    assert!(connect(&setup, "token-alice").await.is_ok());
    assert!(running.stop().success());
}
