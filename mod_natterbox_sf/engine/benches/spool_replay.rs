//! Does reading a large call-log spool back move the lookups' latency? Prints figures; asserts
//! only that the replay happened while the lookups were measured.
//!
//!   cargo bench -p natterbox-engine --bench spool_replay
//!
//! The spool holds 100 000 call logs (BENCH_SPOOL_RECORDS) from a long sidecar outage. With no
//! sidecar, lookups are measured alone; then a stand-in sidecar starts listening, the module
//! connects and sends the whole spool back (the sidecar acknowledges each, so the spool thread
//! deletes as it reads), and the same lookups are measured while that runs. Lookups are cache
//! misses answered by the org emulator (in this process; each goes through the engine's runtime
//! thread, the one the outbox task shares) and cache hits (on the calling thread).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use natterbox_common::config::Config;
use natterbox_common::handoff::{self, TokenFile};
use natterbox_common::salesforce::oauth::TokenResponse;
use natterbox_common::wire::{CallLog, Direction, Message};
use natterbox_engine::{Engine, LookupRequest, LookupStatus};
use sf_emulator::{Emulator, EmulatorOptions, LimitsUpdate};

fn token(instance_url: &str) -> TokenResponse {
    reqwest::blocking::Client::new()
        .post(format!("{instance_url}/services/oauth2/token"))
        .basic_auth("3MVG9Emu.CC.ClientId.natterbox", Some("cc-app-secret"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .unwrap()
        .json()
        .unwrap()
}

fn request(number: &str) -> LookupRequest {
    LookupRequest {
        org: Some("acme".into()),
        number: number.into(),
        profile: None,
        timeout: None,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn fmt(d: Duration) -> String {
    if d < Duration::from_micros(10) {
        format!("{} ns", d.as_nanos())
    } else if d < Duration::from_millis(10) {
        format!("{:.1} µs", d.as_nanos() as f64 / 1000.0)
    } else {
        format!("{:.1} ms", d.as_secs_f64() * 1000.0)
    }
}

/// Writes `n` call logs into the spool as the module leaves them after an outage.
fn fill_spool(dir: &Path, n: usize) {
    std::fs::create_dir_all(dir).unwrap();
    for i in 0..n {
        let uuid = format!("00000000-0000-4000-8000-{i:012}");
        let log = CallLog {
            org: "acme".into(),
            call_uuid: uuid.clone(),
            from: "+14155550123".into(),
            to: "1000".into(),
            direction: Direction::Inbound,
            start_ms: 1_700_000_000_000 + i as u64,
            answer_ms: Some(1_700_000_001_000 + i as u64),
            end_ms: 1_700_000_060_000 + i as u64,
            duration_s: 59,
            agent_user_id: Some("005Em00000000001AAA".into()),
            who_id: Some("003Em00000000001AAA".into()),
            what_id: None,
            hangup_cause: "NORMAL_CLEARING".into(),
            recording_url: None,
        };
        std::fs::write(
            dir.join(format!("{uuid}.calllog.json")),
            Message::CallLog(log).to_line(),
        )
        .unwrap();
    }
}

/// The sidecar's end of the socket: reads call logs, acknowledges each, counts them.
fn stand_in_sidecar(listener: UnixListener, received: Arc<AtomicU64>) {
    std::thread::spawn(move || {
        let Ok((stream, _)) = listener.accept() else {
            return;
        };
        let mut writer = stream.try_clone().unwrap();
        let mut acks = Vec::with_capacity(64 * 1024);
        let mut reader = BufReader::with_capacity(256 * 1024, stream);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if let Ok(Message::CallLog(log)) = Message::from_line(&line) {
                acks.extend_from_slice(
                    &Message::Ack {
                        call_uuid: log.call_uuid,
                    }
                    .to_line(),
                );
                received.fetch_add(1, Ordering::Relaxed);
            }
            // Acks in batches, as the sidecar's outbox writer commits them.
            if reader.buffer().is_empty() && !acks.is_empty() {
                if writer.write_all(&acks).is_err() {
                    return;
                }
                acks.clear();
            }
        }
    });
}

struct Samples {
    misses: Vec<Duration>,
    hits: Vec<Duration>,
}

/// Every 2 ms (500 new callers a second, far above a busy switch's call rate) a miss of a new
/// number and 20 hits of a cached one, until `until` says stop (and at least `min_misses`).
fn measure(
    engine: &Engine,
    next_number: &mut u64,
    min_misses: usize,
    until: &dyn Fn() -> bool,
) -> Samples {
    let hot = request("+14155550123");
    let mut samples = Samples {
        misses: Vec::new(),
        hits: Vec::new(),
    };
    while samples.misses.len() < min_misses || !until() {
        let group = Instant::now();
        *next_number += 1;
        let number = format!("+1310{}", 2_000_000 + *next_number);
        let t = Instant::now();
        let answer = engine.lookup_blocking(&request(&number));
        samples.misses.push(t.elapsed());
        assert_eq!(answer.status, LookupStatus::NotFound, "{answer:?}");
        for _ in 0..20 {
            let t = Instant::now();
            let answer = engine.lookup_blocking(&hot);
            samples.hits.push(t.elapsed());
            debug_assert_eq!(answer.status, LookupStatus::Found);
        }
        if let Some(rest) = Duration::from_millis(2).checked_sub(group.elapsed()) {
            std::thread::sleep(rest);
        }
    }
    samples.misses.sort();
    samples.hits.sort();
    samples
}

fn row(what: &str, s: &Samples) {
    println!(
        "| {what} | {} | {} / {} / {} | {} | {} / {} |",
        s.misses.len(),
        fmt(percentile(&s.misses, 0.5)),
        fmt(percentile(&s.misses, 0.99)),
        fmt(*s.misses.last().unwrap()),
        s.hits.len(),
        fmt(percentile(&s.hits, 0.5)),
        fmt(percentile(&s.hits, 0.99)),
    );
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let records: usize = std::env::var("BENCH_SPOOL_RECORDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(100_000);
    let dir = tempfile::tempdir().unwrap();
    let emulator = Emulator::start_background(EmulatorOptions::default_seed()).unwrap();
    // Tens of thousands of searches: above a developer org's daily allocation.
    emulator.admin().set_limits(LimitsUpdate {
        daily_max: Some(100_000_000),
        ..LimitsUpdate::default()
    });
    let instance_url = emulator.instance_url();
    let token = token(&instance_url);
    let tokens = dir.path().join("tokens");
    std::fs::create_dir_all(&tokens).unwrap();
    handoff::write(
        &tokens,
        &TokenFile {
            org: "acme".into(),
            access_token: token.access_token.clone(),
            instance_url: token.instance_url.clone(),
            issued_at_ms: 0,
            generation: 1,
        },
        None,
    )
    .unwrap();
    let spool = dir.path().join("spool");
    let started = Instant::now();
    fill_spool(&spool, records);
    println!(
        "spool of {records} call logs written in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let socket = dir.path().join("events.sock");
    let xml = format!(
        r#"<configuration name="natterbox_sf.conf"><settings>
             <param name="token-dir" value="{}"/><param name="spool-dir" value="{}"/>
             <param name="event-socket" value="{}"/><param name="lookup-timeout-ms" value="5000"/>
             <param name="runtime-threads" value="1"/>
           </settings><orgs><org name="acme" login-url="{instance_url}" allow-insecure-http="true" max-concurrent="50">
             <profile name="default">
               <object name="Contact" fields="Id,Name,OwnerId"/>
               <object name="Lead" fields="Id,Name,OwnerId,Company"/>
             </profile></org></orgs></configuration>"#,
        tokens.display(),
        spool.display(),
        socket.display(),
    );
    let engine = Engine::start(Config::parse(&xml).unwrap()).unwrap();
    let mut next_number = 0u64;
    assert_eq!(
        engine.lookup_blocking(&request("+14155550123")).status,
        LookupStatus::Found
    );
    // Warm up, then the lookups alone (no sidecar: nothing is read back).
    measure(&engine, &mut next_number, 300, &|| true);
    let alone = measure(&engine, &mut next_number, 2000, &|| true);

    let received = Arc::new(AtomicU64::new(0));
    let listener = UnixListener::bind(&socket).unwrap();
    let replay_started = Instant::now();
    stand_in_sidecar(listener, received.clone());
    let done = Arc::new(AtomicBool::new(false));
    let replay_time = Arc::new(AtomicU64::new(0));
    {
        let (received, done, replay_time) = (received.clone(), done.clone(), replay_time.clone());
        std::thread::spawn(move || {
            while received.load(Ordering::Relaxed) < records as u64 {
                std::thread::sleep(Duration::from_millis(2));
            }
            replay_time.store(
                replay_started.elapsed().as_millis() as u64,
                Ordering::Relaxed,
            );
            done.store(true, Ordering::Relaxed);
        });
    }
    let during = measure(&engine, &mut next_number, 0, &|| {
        done.load(Ordering::Relaxed)
    });
    let replay_ms = replay_time.load(Ordering::Relaxed);
    assert!(
        during.misses.len() >= 10,
        "the replay ended before lookups could be measured during it"
    );
    let after = measure(&engine, &mut next_number, 2000, &|| true);
    // The acks are applied by the spool thread as deletions.
    let deadline = Instant::now() + Duration::from_secs(120);
    while std::fs::read_dir(&spool).unwrap().count() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let left = std::fs::read_dir(&spool).unwrap().count();
    println!(
        "replay: {records} call logs sent to the stand-in sidecar in {:.2} s ({:.0}/s); spool files left after the acks: {left}",
        replay_ms as f64 / 1000.0,
        records as f64 / (replay_ms.max(1) as f64 / 1000.0)
    );
    println!();
    println!("| phase | misses | miss p50 / p99 / max | hits | hit p50 / p99 |");
    println!("|---|---|---|---|---|");
    row("lookups alone (no sidecar, spool untouched)", &alone);
    row(
        &format!("during the replay of {records} spooled call logs"),
        &during,
    );
    row("after the replay", &after);
    assert!(engine.shutdown(Duration::from_secs(10)));
    drop(emulator);
}
