//! Screen pop latency and throughput: module socket → sidecar → agent WebSocket client, on
//! loopback, with the release sidecar binary as a separate process.
//!
//! `cargo bench -p natterbox-sidecar --bench pop_latency` prints p50/p90/p99/max latency over
//! sequential pops and sustained pops per second over a burst. Goals (issue 4): p99 ≤ 20 ms,
//! ≥ 5 000 pops/s. Set POP_BENCH_LATENCY_N / POP_BENCH_THROUGHPUT_N to change the counts.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use natterbox_common::wire::{Direction, Message, ScreenPop};
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message as WsMessage;

fn env_n(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn pop(uuid: String) -> Message {
    Message::ScreenPop(ScreenPop {
        org: "acme".into(),
        call_uuid: uuid,
        agent_user_id: Some("005000000000001AAA".into()),
        agent_extension: Some("1001".into()),
        caller_number: "+14155550100".into(),
        record_ids: vec!["003000000000001AAA".into()],
        direction: Direction::Inbound,
        created_at_ms: natterbox_sidecar::backoff::now_ms(),
        ttl_ms: 60_000,
        record: None,
    })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing: run a short smoke pass.
    let full = std::env::args().any(|a| a == "--bench");
    let latency_n = env_n("POP_BENCH_LATENCY_N", if full { 5_000 } else { 200 });
    let throughput_n = env_n("POP_BENCH_THROUGHPUT_N", if full { 50_000 } else { 2_000 });

    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let socket = dir.path().join("events.sock");
    let token_hash = natterbox_sidecar::pops::hex(&natterbox_sidecar::pops::sha256(b"bench-token"));
    std::fs::write(
        dir.path().join("agents.json"),
        format!(
            r#"{{"agents":[{{"user_id":"005000000000001AAA","extension":"1001","token_sha256":"{token_hash}"}}]}}"#
        ),
    )
    .unwrap();
    let config = dir.path().join("natterbox_sf.conf.xml");
    std::fs::write(
        &config,
        format!(
            r#"<configuration name="natterbox_sf.conf">
  <settings>
    <param name="token-dir" value="{d}/tokens"/>
    <param name="event-socket" value="{s}"/>
    <param name="event-queue-capacity" value="100000"/>
  </settings>
  <sidecar>
    <param name="agent-listen" value="127.0.0.1:{port}"/>
    <param name="admin-listen" value="127.0.0.1:0"/>
    <param name="outbox-db" value="{d}/outbox.sqlite"/>
    <param name="agent-tokens-file" value="{d}/agents.json"/>
  </sidecar>
  <orgs><org name="acme"><profile name="default"><object name="Contact"/></profile></org></orgs>
</configuration>"#,
            d = dir.path().display(),
            s = socket.display(),
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_natterbox-sidecar"))
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .spawn()
        .expect("sidecar starts");

    let deadline = Instant::now() + Duration::from_secs(30);
    let mut request = format!("ws://127.0.0.1:{port}/agent")
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("Authorization", "Bearer bench-token".parse().unwrap());
    let mut ws = loop {
        match tokio_tungstenite::connect_async(request.clone()).await {
            Ok((ws, _)) => break ws,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => panic!("cannot connect: {e}"),
        }
    };
    let _hello = ws.next().await;
    let _presence = ws.next().await;
    let mut module = tokio::net::UnixStream::connect(&socket).await.unwrap();

    // Latency: one pop at a time, timed from the write to the frame's arrival.
    let mut latencies = Vec::with_capacity(latency_n);
    for i in 0..latency_n {
        let uuid = format!("lat-{i}");
        let line = pop(uuid.clone()).to_line();
        let start = Instant::now();
        module.write_all(&line).await.unwrap();
        loop {
            match ws.next().await {
                Some(Ok(WsMessage::Text(text))) if text.contains(&uuid) => break,
                Some(Ok(_)) => continue,
                other => panic!("WebSocket ended: {other:?}"),
            }
        }
        latencies.push(start.elapsed());
        ws.send(WsMessage::Text(format!(r#"{{"ack":"{uuid}"}}"#).into()))
            .await
            .unwrap();
    }
    latencies.sort();
    println!(
        "pop latency over {latency_n} sequential pops: p50 {:?}  p90 {:?}  p99 {:?}  max {:?}",
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.90),
        percentile(&latencies, 0.99),
        latencies[latencies.len() - 1]
    );

    // Throughput: a writer sends a burst while the client reads (and acks) them all.
    let (mut ws_tx, mut ws_rx) = ws.split();
    let start = Instant::now();
    let writer = tokio::spawn(async move {
        let mut batch = Vec::with_capacity(64 * 1024);
        for i in 0..throughput_n {
            batch.extend_from_slice(&pop(format!("tp-{i}")).to_line());
            if batch.len() > 60_000 {
                module.write_all(&batch).await.unwrap();
                batch.clear();
            }
        }
        module.write_all(&batch).await.unwrap();
        module
    });
    let mut seen = HashMap::with_capacity(throughput_n);
    let mut lat_sum = Duration::ZERO;
    while seen.len() < throughput_n {
        match tokio::time::timeout(Duration::from_secs(20), ws_rx.next()).await {
            Ok(Some(Ok(WsMessage::Text(text)))) => {
                let frame: serde_json::Value = serde_json::from_str(&text).unwrap();
                if let Some(uuid) = frame["call_uuid"].as_str().filter(|u| u.starts_with("tp-")) {
                    let created = frame["created_at_ms"].as_u64().unwrap_or(0);
                    lat_sum += Duration::from_millis(
                        natterbox_sidecar::backoff::now_ms().saturating_sub(created),
                    );
                    ws_tx
                        .send(WsMessage::Text(format!(r#"{{"ack":"{uuid}"}}"#).into()))
                        .await
                        .unwrap();
                    seen.insert(uuid.to_string(), ());
                }
            }
            Ok(Some(Ok(_))) => {}
            other => {
                println!(
                    "throughput run stopped after {} of {throughput_n} pops: {other:?}",
                    seen.len()
                );
                break;
            }
        }
    }
    let elapsed = start.elapsed();
    let _module = writer.await.unwrap();
    println!(
        "throughput: {} pops in {:.3} s = {:.0} pops/s (mean created→received under load {:.1} ms)",
        seen.len(),
        elapsed.as_secs_f64(),
        seen.len() as f64 / elapsed.as_secs_f64(),
        lat_sum.as_secs_f64() * 1000.0 / seen.len().max(1) as f64
    );
    let _ = child.kill();
    let _ = child.wait();
}
