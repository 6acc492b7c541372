//! A host that starves the engine's runtime (FreeSWITCH past its SIP intake limit): lookups are
//! answered `overloaded` without holding the call, Salesforce is not blamed (the org's breaker
//! stays closed), and lookups recover by themselves once the runtime runs again.

use std::time::{Duration, Instant};

use natterbox_common::config::Config;
use natterbox_common::handoff::{self, TokenFile};
use natterbox_common::salesforce::oauth::TokenResponse;
use natterbox_engine::{Engine, LookupAnswer, LookupRequest, LookupStatus};
use sf_emulator::{Emulator, EmulatorOptions, FaultRule};

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

fn start(dir: &std::path::Path, emulator: &Emulator) -> Engine {
    let instance_url = emulator.instance_url();
    let token = token(&instance_url);
    let tokens = dir.join("tokens");
    std::fs::create_dir_all(&tokens).unwrap();
    handoff::write(
        &tokens,
        &TokenFile {
            org: "acme".into(),
            access_token: token.access_token,
            instance_url: token.instance_url,
            issued_at_ms: 0,
            generation: 1,
        },
        None,
    )
    .unwrap();
    let xml = format!(
        r#"<configuration name="natterbox_sf.conf"><settings>
             <param name="token-dir" value="{}"/><param name="spool-dir" value="{}"/>
             <param name="event-socket" value="{}"/><param name="lookup-timeout-ms" value="1000"/>
             <param name="runtime-threads" value="1"/>
           </settings><orgs><org name="acme" login-url="{instance_url}" allow-insecure-http="true">
             <profile name="default"><object name="Contact" fields="Id,Name,OwnerId"/><object name="Account" fields="Id,Name,OwnerId"/></profile>
           </org></orgs></configuration>"#,
        tokens.display(),
        dir.join("spool").display(),
        dir.join("events.sock").display(),
    );
    Engine::start(Config::parse(&xml).unwrap()).unwrap()
}

fn lookup(engine: &Engine, number: &str, timeout_ms: u64) -> LookupAnswer {
    engine.lookup_blocking(&LookupRequest {
        org: Some("acme".into()),
        number: number.into(),
        profile: None,
        timeout: Some(Duration::from_millis(timeout_ms)),
    })
}

fn breaker(engine: &Engine) -> String {
    engine.status()["orgs"][0]["breaker"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn a_starved_runtime_answers_overloaded_at_once_and_blames_nobody() {
    let dir = tempfile::tempdir().unwrap();
    let emulator = Emulator::start_background(EmulatorOptions::default_seed()).unwrap();
    let engine = start(dir.path(), &emulator);
    // The token file is read when the engine starts; the first lookup reaches Salesforce.
    let warm = lookup(&engine, "+14155550123", 5000);
    assert_eq!(warm.status, LookupStatus::Found, "{warm:?}");
    let searches_before = emulator.admin().endpoint_count("search");

    engine.stall_runtime(Duration::from_millis(2500));
    // The first miss is handed to the stalled runtime and waits out its deadline: it cannot
    // know before. It did not reach Salesforce, so it says so.
    let first = lookup(&engine, "+14155550100", 200);
    assert_eq!(first.status, LookupStatus::Overloaded, "{first:?}");
    assert!(first.elapsed >= Duration::from_millis(200));
    // Its request has now waited longer than the next calls' deadlines: they are answered at
    // once, more of them than it takes to open the breaker on failures.
    for i in 0..20 {
        let number = format!("+1415555{:04}", 2000 + i);
        let answer = lookup(&engine, &number, 150);
        assert_eq!(answer.status, LookupStatus::Overloaded, "{answer:?}");
        assert!(
            answer.elapsed < Duration::from_millis(100),
            "held {:?} although the queue alone missed the deadline",
            answer.elapsed
        );
        assert_eq!(answer.e164.as_deref(), Some(number.as_str()));
    }
    assert_eq!(breaker(&engine), "closed");
    assert!(engine.status()["overloaded"].as_u64().unwrap() >= 21);

    // Once the runtime runs again, lookups reach Salesforce by themselves.
    let until = Instant::now() + Duration::from_secs(10);
    let recovered = loop {
        let answer = lookup(&engine, "+14155550100", 800);
        if answer.status != LookupStatus::Overloaded || Instant::now() > until {
            break answer;
        }
    };
    assert_eq!(recovered.status, LookupStatus::Found, "{recovered:?}");
    assert_eq!(breaker(&engine), "closed");
    // The stalled requests were dropped unasked: only the recovering lookup(s) reached it.
    let searched = emulator.admin().endpoint_count("search") - searches_before;
    assert!((1..=2).contains(&searched), "{searched} searches");
    assert!(
        engine.status()["runtime_queue_ms"]["longest"]
            .as_u64()
            .unwrap()
            >= 200
    );
    engine.shutdown(Duration::from_secs(5));
}

#[test]
fn salesforce_not_answering_still_opens_the_breaker() {
    let dir = tempfile::tempdir().unwrap();
    let emulator = Emulator::start_background(EmulatorOptions::default_seed()).unwrap();
    let engine = start(dir.path(), &emulator);
    let warm = lookup(&engine, "+14155550123", 5000);
    assert_eq!(warm.status, LookupStatus::Found, "{warm:?}");
    emulator.admin().add_fault(FaultRule {
        path_prefix: "/services/data/".into(),
        latency_ms: 2000,
        ..FaultRule::default()
    });
    // Five timeouts in a row open it. On a busy machine the runtime may notice a deadline late
    // now and then; such a timeout is not counted, so allow a few more lookups than five.
    let mut timeouts = 0;
    for i in 0..15 {
        let answer = lookup(&engine, &format!("+1415555{:04}", 3000 + i), 300);
        match answer.status {
            LookupStatus::Timeout => timeouts += 1,
            LookupStatus::Overloaded => {}
            // Open: no more requests.
            LookupStatus::Error => break,
            _ => panic!("{answer:?}"),
        }
    }
    assert!(timeouts >= 5, "{timeouts} timeouts");
    assert!(
        breaker(&engine).starts_with("open (errors)"),
        "{}",
        breaker(&engine)
    );
    engine.shutdown(Duration::from_secs(5));
}
