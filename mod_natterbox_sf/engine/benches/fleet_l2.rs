//! Fleet benchmarks (docs/fleet.md): what a lookup costs when the in-process cache misses and
//! Redis has the answer, against one that asks Salesforce; and how many Salesforce requests a
//! burst of one caller across N hosts makes. They print figures, they assert nothing about speed.
//!
//!   cargo bench -p natterbox-engine --bench fleet_l2
//!
//! Starts its own redis-server (/usr/bin/redis-server, or REDIS_SERVER) on a free loopback port
//! and the org emulator in this process (its 0 ms latency: the Salesforce figure is a floor).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use natterbox_common::config::Config;
use natterbox_common::handoff::{self, TokenFile};
use natterbox_engine::{Engine, LookupRequest, Source};
use sf_emulator::{Emulator, EmulatorOptions, FaultRule};

struct Redis {
    child: Child,
    port: u16,
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_redis(dir: &std::path::Path) -> Redis {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let path = std::env::var("REDIS_SERVER").unwrap_or_else(|_| "/usr/bin/redis-server".into());
    let child = Command::new(path)
        .args([
            "--bind",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start redis-server");
    // Dropping it kills and waits for redis-server, also when the wait below gives up.
    let redis = Redis { child, port };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let pong = TcpStream::connect(("127.0.0.1", port))
            .ok()
            .and_then(|mut s| {
                s.write_all(b"PING\r\n").ok()?;
                let mut buf = [0u8; 16];
                let n = s.read(&mut buf).ok()?;
                Some(buf[..n].starts_with(b"+PONG"))
            });
        if pong == Some(true) {
            return redis;
        }
        assert!(Instant::now() < deadline, "redis-server did not answer");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn engine(dir: &std::path::Path, name: &str, emulator: &Emulator, redis_port: u16) -> Engine {
    let host = dir.join(name);
    let tokens = host.join("tokens");
    std::fs::create_dir_all(&tokens).unwrap();
    let token: serde_json::Value = reqwest::blocking::Client::new()
        .post(format!("{}/services/oauth2/token", emulator.instance_url()))
        .basic_auth("3MVG9Emu.CC.ClientId.natterbox", Some("cc-app-secret"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .unwrap()
        .json()
        .unwrap();
    handoff::write(
        &tokens,
        &TokenFile {
            org: "acme".into(),
            access_token: token["access_token"].as_str().unwrap().into(),
            instance_url: token["instance_url"].as_str().unwrap().into(),
            issued_at_ms: 0,
            generation: 1,
        },
        None,
    )
    .unwrap();
    let xml = format!(
        r#"<configuration name="natterbox_sf.conf"><settings>
             <param name="token-dir" value="{}"/><param name="spool-dir" value="{}"/>
             <param name="event-socket" value="{}"/><param name="lookup-timeout-ms" value="3000"/>
           </settings><orgs><org name="acme" login-url="{}" allow-insecure-http="true" max-concurrent="50">
             <profile name="default">
               <object name="Contact" fields="Id,Name,OwnerId,Owner.Extension"><map field="Owner.Extension" variable="sf_owner_extension"/></object>
               <object name="Lead" fields="Id,Name,OwnerId,Company"/>
             </profile></org></orgs>
           <fleet><param name="redis-url" value="redis://127.0.0.1:{redis_port}/"/></fleet></configuration>"#,
        tokens.display(),
        host.join("spool").display(),
        host.join("events.sock").display(),
        emulator.instance_url()
    );
    let engine = Engine::start(Config::parse(&xml).unwrap()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !engine.fleet().unwrap().link.is_up() {
        assert!(
            Instant::now() < deadline,
            "engine {name} did not connect to redis"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    engine
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

fn micros(d: Duration) -> String {
    format!("{:.0} µs", d.as_nanos() as f64 / 1000.0)
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let redis = start_redis(dir.path());
    let emulator = Emulator::start_background(EmulatorOptions::default_seed()).unwrap();
    let a = engine(dir.path(), "a", &emulator, redis.port);
    let b = engine(dir.path(), "b", &emulator, redis.port);
    let n = 2000;
    let numbers: Vec<String> = (0..n).map(|i| format!("+1310555{:04}", 1000 + i)).collect();

    // Host A asks Salesforce (the emulator) for each number and writes the answer to Redis.
    let mut salesforce = Vec::with_capacity(n);
    for number in &numbers {
        let started = Instant::now();
        let answer = a.lookup_blocking(&request(number));
        salesforce.push(started.elapsed());
        assert_eq!(answer.source, Some(Source::Salesforce));
    }
    let written = Instant::now() + Duration::from_secs(10);
    while a.status()["fleet"]["l2_writes"].as_u64().unwrap() < n as u64 {
        assert!(Instant::now() < written, "host A's writes reach redis");
        std::thread::sleep(Duration::from_millis(10));
    }
    // Host B: each number misses its own cache and is found in Redis.
    let searches = emulator.admin().endpoint_count("search");
    let mut l2 = Vec::with_capacity(n);
    for number in &numbers {
        let started = Instant::now();
        b.lookup_blocking(&request(number));
        l2.push(started.elapsed());
    }
    assert_eq!(
        emulator.admin().endpoint_count("search"),
        searches,
        "B never asked Salesforce"
    );
    assert_eq!(b.status()["fleet"]["l2_hits"].as_u64().unwrap(), n as u64);
    salesforce.sort();
    l2.sort();
    println!("| measurement | p50 | p99 | max |");
    println!("|---|---|---|---|");
    for (name, figures) in [
        ("in-process miss, Redis hit (host B), whole lookup", &l2),
        (
            "in-process miss, Redis miss, emulator search (host A), whole lookup",
            &salesforce,
        ),
    ] {
        println!(
            "| {name} | {} | {} | {} |",
            micros(percentile(figures, 0.5)),
            micros(percentile(figures, 0.99)),
            micros(*figures.last().unwrap())
        );
    }
    drop((a, b));

    // A burst: one new caller on N hosts at one instant, Salesforce taking 200 ms.
    emulator.admin().add_fault(FaultRule {
        path_prefix: "/services/data".into(),
        latency_ms: 200,
        ..FaultRule::default()
    });
    for hosts in [2, 8, 20] {
        let engines: Vec<Engine> = (0..hosts)
            .map(|i| {
                engine(
                    dir.path(),
                    &format!("burst{hosts}-{i}"),
                    &emulator,
                    redis.port,
                )
            })
            .collect();
        let number = format!("+1212555{:04}", hosts);
        let before = emulator.admin().endpoint_count("search");
        let started = Instant::now();
        std::thread::scope(|scope| {
            for e in &engines {
                let number = number.clone();
                scope.spawn(move || e.lookup_blocking(&request(&number)));
            }
        });
        println!(
            "| burst of one caller across {hosts} hosts | {} Salesforce search(es) | all answered in {} ms | |",
            emulator.admin().endpoint_count("search") - before,
            started.elapsed().as_millis()
        );
        for e in engines {
            e.shutdown(Duration::from_secs(5));
        }
    }
}
