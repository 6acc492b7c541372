use crate::common::*;
use serde_json::Value;
use sf_emulator::{Emulator, EmulatorOptions};
use std::io::Read;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn raw(emu: &Emulator, bytes: &[u8]) -> String {
    let mut s = tokio::net::TcpStream::connect(emu.local_addr())
        .await
        .unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = vec![];
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn garbage_input_gets_an_answer_and_the_server_survives() {
    let emu = start().await;
    let r = raw(&emu, b"\x00\x01\x02 not http at all\r\n\r\n").await;
    assert!(r.is_empty() || r.starts_with("HTTP/1.1 400"), "{r}");
    let r = raw(
        &emu,
        b"GET /services/data/ HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    let r = raw(&emu, b"POST /services/oauth2/token HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\n\xff\xfe\x00\x01\x02").await;
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    let r = raw(
        &emu,
        b"GET /nothing/here HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 404"), "{r}");
    let soap = b"POST /services/Soap/u/59.0 HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\nConnection: close\r\n\r\n<unclosed";
    assert!(raw(&emu, soap).await.starts_with("HTTP/1.1 500"));
    let r = client()
        .get(format!("{}/services/data/", emu.login_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn size_limits() {
    let emu = start().await;
    let tok = token(&emu).await;
    let big = vec![b'a'; 1024 * 1024 + 10];
    let r = client()
        .post(format!(
            "{}/services/data/{V}/sobjects/Contact",
            emu.instance_url()
        ))
        .bearer_auth(&tok)
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let long = "a".repeat(17 * 1024);
    let r = client()
        .get(format!(
            "{}/services/data/{V}/query?q={long}",
            emu.instance_url()
        ))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 414);
    let r = client()
        .get(format!("{}/services/data/", emu.instance_url()))
        .header("X-Big", "b".repeat(17 * 1024))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 431);
}

#[tokio::test]
async fn gzip_when_asked() {
    let emu = start().await;
    let tok = token(&emu).await;
    let plain = reqwest::Client::builder().no_gzip().build().unwrap();
    let r = plain
        .get(format!(
            "{}{}",
            emu.instance_url(),
            q("SELECT Id, Name FROM Contact")
        ))
        .bearer_auth(&tok)
        .header("Accept-Encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-encoding"], "gzip");
    let bytes = r.bytes().await.unwrap();
    let mut text = String::new();
    flate2::read::GzDecoder::new(&bytes[..])
        .read_to_string(&mut text)
        .unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["totalSize"], 9);
    let r = plain
        .get(format!("{}/services/data/", emu.instance_url()))
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("content-encoding").is_none());
}

#[tokio::test]
async fn https_with_generated_ca() {
    let emu = start_with(|o| o.tls = true).await;
    assert!(emu.login_url().starts_with("https://127.0.0.1:"));
    assert!(emu.instance_url().starts_with("https://localhost:"));
    let ca = reqwest::Certificate::from_pem(emu.ca_pem().unwrap().as_bytes()).unwrap();
    let c = reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()
        .unwrap();
    for base in [emu.login_url(), emu.instance_url()] {
        let r = c
            .get(format!("{base}/services/data/"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let untrusting = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .build()
        .unwrap();
    assert!(untrusting
        .get(format!("{}/services/data/", emu.login_url()))
        .send()
        .await
        .is_err());
}

#[test]
fn background_instance_for_sync_tests_and_two_orgs() {
    let a = Emulator::start_background(EmulatorOptions::default_seed()).unwrap();
    let mut seed = sf_emulator::Seed::default_seed();
    seed.org_id = "00DEm0000000002".into();
    let b = Emulator::start_background(EmulatorOptions {
        seed,
        ..EmulatorOptions::default_seed()
    })
    .unwrap();
    assert_ne!(a.login_url(), b.login_url());
    assert_eq!(
        b.org_id(),
        sf_emulator::ids::to18("00DEm0000000002").unwrap()
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let r = client()
            .get(format!("{}/services/data/", a.login_url()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    });
    let addr = a.local_addr();
    drop(a);
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "stopped on drop"
    );
}

#[test]
fn seed_file_round_trip() {
    let dir = std::env::temp_dir().join(format!("sf-emu-seed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/test-jwt-cert.pem"),
        dir.join("cert.pem"),
    )
    .unwrap();
    let seed = r#"{"org_id": "00DEm0000000003", "users": [{"ref": "u", "username": "u@x.example", "last_name": "U"}],
        "connected_apps": [{"name": "a", "client_id": "cid", "cert_file": "cert.pem", "grants": ["jwt_bearer"], "preauthorized_users": ["*"]}],
        "records": {"Account": [{"ref": "a1", "Name": "Seeded", "OwnerId": "@u"}], "Contact": [{"LastName": "C", "AccountId": "@a1"}]}}"#;
    std::fs::write(dir.join("seed.json"), seed).unwrap();
    let opts = EmulatorOptions::with_seed_file(dir.join("seed.json")).unwrap();
    assert!(opts.seed.connected_apps[0].cert_pem.is_some());
    let emu = Emulator::start_background(opts).unwrap();
    assert_eq!(emu.admin().records("Contact").len(), 1);
    std::fs::write(
        dir.join("bad.json"),
        r#"{"records": {"Contact": [{"Nope": 1}]}}"#,
    )
    .unwrap();
    let bad = EmulatorOptions::with_seed_file(dir.join("bad.json")).unwrap();
    assert!(Emulator::start_background(bad).is_err());
    assert!(EmulatorOptions::with_seed_file(dir.join("missing.json")).is_err());
}

#[tokio::test]
async fn https_with_a_given_certificate() {
    let cert = include_str!("../../fixtures/test-jwt-cert.pem");
    let key = include_str!("../../fixtures/test-jwt-private-key.pem");
    let emu = start_with(|o| {
        o.tls = true;
        o.tls_cert_pem = Some(cert.into());
        o.tls_key_pem = Some(key.into());
    })
    .await;
    assert_eq!(emu.ca_pem().as_deref(), Some(cert));
    // The fixture certificate names no host, so only an unverifying client can use it.
    let c = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    let r = c
        .get(format!("{}/services/data/", emu.login_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[test]
fn binary_prints_one_ready_line() {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sf-emulator"))
        .args([
            "--bind",
            "127.0.0.1:0",
            "--batch-size",
            "2",
            "--print-credentials",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let v: Value = serde_json::from_str(&line).unwrap();
    let login = v["login_url"].as_str().unwrap().to_string();
    assert!(login.starts_with("http://127.0.0.1:"));
    assert!(v["instance_url"]
        .as_str()
        .unwrap()
        .starts_with("http://localhost:"));
    assert_eq!(v["org_id"], "00DEm0000000001MAA");
    assert_eq!(v["ca_file"], Value::Null);
    assert_eq!(v["users"][0]["username"], "integration@acme.example");
    assert_eq!(
        v["connected_apps"][0]["client_id"],
        "3MVG9Emu.JWT.ClientId.natterbox"
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let status = rt.block_on(async {
        client()
            .get(format!("{login}/services/data/"))
            .send()
            .await
            .unwrap()
            .status()
    });
    child.kill().unwrap();
    let _ = child.wait();
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_body_that_never_arrives_gets_408() {
    let emu = start().await;
    let v = emu.admin().configure(sf_emulator::ConfigUpdate {
        body_timeout_ms: Some(300),
        ..Default::default()
    });
    assert_eq!(v["body_timeout_ms"], 300);
    let started = std::time::Instant::now();
    let r = raw(&emu, b"POST /services/oauth2/token HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\ngrant_type=").await;
    assert!(r.starts_with("HTTP/1.1 408"), "{r}");
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
}
