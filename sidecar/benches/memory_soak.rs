//! The sidecar's memory over many calls: the release sidecar binary as a separate process, the
//! org emulator in this process, and this process playing the module: per call one call log
//! (acknowledged, stored in the outbox, delivered as a Task) and, for one call in four, a screen
//! pop for an agent who is not connected (held until its TTL, as in the FreeSWITCH soak).
//!
//! `cargo bench -p natterbox-sidecar --bench memory_soak` prints, every sample, the calls sent so
//! far, the sidecar's RSS, the outbox's rows and the RSS growth per call since the previous
//! sample, after waiting for every call log so far to be delivered (so in-flight queues do not
//! count). Environment: MEMORY_SOAK_CALLS (default 60 000), MEMORY_SOAK_RATE calls/s (1 000),
//! MEMORY_SOAK_SAMPLE_EVERY calls (5 000), MEMORY_SOAK_SIDECAR (another sidecar binary). Without `--bench` (as `cargo test --benches` runs it)
//! a short smoke pass of 600 calls.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use natterbox_common::wire::{CallLog, Direction, Message, ScreenPop};
use support::*;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

fn env_n(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A call log as the module sends it at hangup (sizes as in the FreeSWITCH soak).
fn call_log(i: u64, now: u64) -> CallLog {
    CallLog {
        org: "acme".into(),
        call_uuid: format!("{:08x}-5b1e-4c2d-9a7f-{:012x}", i, i * 7919),
        from: format!("+1415555{:04}", i % 400),
        to: "3000".into(),
        direction: Direction::Inbound,
        start_ms: now.saturating_sub(2_500),
        answer_ms: Some(now.saturating_sub(2_000)),
        end_ms: now,
        duration_s: 2,
        agent_user_id: None,
        who_id: None,
        what_id: None,
        hangup_cause: "NORMAL_CLEARING".into(),
        recording_url: None,
    }
}

fn screen_pop(i: u64, now: u64) -> ScreenPop {
    ScreenPop {
        org: "acme".into(),
        call_uuid: format!("{:08x}-5b1e-4c2d-9a7f-{:012x}", i, i * 7919),
        agent_user_id: Some("005000000000009AAA".into()),
        agent_extension: Some("1009".into()),
        caller_number: format!("+1415555{:04}", i % 400),
        record_ids: vec!["003000000000001AAA".into()],
        direction: Direction::Inbound,
        created_at_ms: now,
        ttl_ms: 30_000,
        record: None,
    }
}

/// (VmRSS, VmHWM) of a process in KiB.
fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let calls = env_n("MEMORY_SOAK_CALLS", if full { 60_000 } else { 600 });
    let rate = env_n("MEMORY_SOAK_RATE", 1_000).max(1);
    let sample_every = env_n("MEMORY_SOAK_SAMPLE_EVERY", if full { 5_000 } else { 200 }).max(1);

    let emu = emulator().await;
    let setup = Setup::new();
    let org = org_xml(
        "acme",
        &emu.login_url(),
        &jwt_auth(
            JWT_CLIENT,
            INTEGRATION_USER,
            &key_file("test-jwt-private-key.pem"),
            "https://login.salesforce.com",
        ),
        r#"<call-log enabled="true" subject="Call {direction} {from}" status="Completed"/>
      <screen-pop ttl-ms="30000"/>"#,
    );
    setup.write_config(&org, "");
    // MEMORY_SOAK_SIDECAR: measure another build of the sidecar (e.g. an earlier commit's).
    let program = std::env::var_os("MEMORY_SOAK_SIDECAR").unwrap_or_else(|| BIN.into());
    let child = std::process::Command::new(&program)
        .arg("--config")
        .arg(setup.config_path())
        .env("RUST_LOG", "warn")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .stdin(std::process::Stdio::null())
        .spawn()
        .expect("sidecar starts");
    let pid = child.id();
    let running = Running {
        child,
        admin: setup.admin,
    };
    running.wait_healthy().await;
    // The module's side of the socket: this task writes, another counts the acks.
    let stream = loop {
        match tokio::net::UnixStream::connect(setup.socket()).await {
            Ok(s) => break s,
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    let (read, mut module) = stream.into_split();
    let acked = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let ack_counter = acked.clone();
    tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(read).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if let Ok(Message::Ack { .. }) = Message::from_line(line.as_bytes()) {
                ack_counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    });

    println!(
        "sidecar {} (pid {pid}): {calls} calls at {rate}/s, a pop for one call in four, sampled every {sample_every} calls",
        std::path::Path::new(&program).display()
    );
    println!("| calls | sidecar RSS | RSS peak | outbox rows (delivered) | RSS change per call since the last sample |");
    println!("|---|---|---|---|---|");
    let (rss0, hwm0) = rss_kib(pid);
    println!(
        "| 0 | {:.1} MB | {:.1} MB | 0 | |",
        rss0 as f64 / 1024.0,
        hwm0 as f64 / 1024.0
    );
    let start = Instant::now();
    let mut last = (0u64, rss0);
    for i in 0..calls {
        // Paced: call i is due at i / rate seconds.
        let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            tokio::time::sleep(wait).await;
        }
        let now = natterbox_sidecar::backoff::now_ms();
        if i % 4 == 0 {
            let pop = Message::ScreenPop(screen_pop(i, now)).to_line();
            module.write_all(&pop).await.expect("socket write");
        }
        let log = Message::CallLog(call_log(i, now)).to_line();
        module.write_all(&log).await.expect("socket write");
        let sent = i + 1;
        if sent % sample_every == 0 || sent == calls {
            // Every call log so far acknowledged (in the outbox) and delivered (a Task).
            eventually(
                Duration::from_secs(60),
                "an ack for every call log",
                || async { acked.load(std::sync::atomic::Ordering::Relaxed) >= sent },
            )
            .await;
            // Generous: the emulator's Task dedup query (made for call logs sent before, and
            // by sidecars before 09fa104 for every batch) scans every Task, so it slows as the
            // org fills (tens of thousands of Tasks; more so in a debug build).
            eventually(
                Duration::from_secs(600),
                "delivery of every call log",
                || async { running.metric("natterbox_sidecar_outbox_delivered").await >= sent },
            )
            .await;
            let (rss, hwm) = rss_kib(pid);
            let per_call = (rss as f64 - last.1 as f64) * 1024.0 / (sent - last.0) as f64;
            println!(
                "| {sent} | {:.1} MB | {:.1} MB | {} | {:+.0} B |",
                rss as f64 / 1024.0,
                hwm as f64 / 1024.0,
                running.metric("natterbox_sidecar_outbox_delivered").await,
                per_call
            );
            last = (sent, rss);
        }
    }
    let tasks = emu
        .admin()
        .records("Task")
        .iter()
        .filter(|t| {
            t["CallObject"]
                .as_str()
                .is_some_and(|c| c.contains("-5b1e-"))
        })
        .count() as u64;
    assert_eq!(tasks, calls, "every call log became one Task");
    println!(
        "{calls} calls in {:.1} s; {tasks} Tasks in the org",
        start.elapsed().as_secs_f64()
    );
    // What the call logs cost the org's daily API allowance.
    let creates = emu.admin().endpoint_count("composite_sobjects");
    let queries = emu.admin().endpoint_count("query");
    println!(
        "Salesforce requests: {creates} composite creates + {queries} queries = {:.1} per 1 000 call logs",
        (creates + queries) as f64 * 1000.0 / calls as f64
    );
    running.stop();
}
