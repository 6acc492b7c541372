//! OAuth flows against the org emulator: what the emulator saw, what the sidecar reports, and the
//! token files the module reads.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, SystemTime};

use natterbox_common::wire::Message;
use support::*;

const LOGIN: &str = "https://login.salesforce.com";
const SANDBOX: &str = "https://test.salesforce.com";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_bearer_to_my_domain_hands_off_0640_tokens_that_survive_a_restart() {
    let emu = emulator().await;
    let setup = Setup::new();
    let key = key_file("test-jwt-private-key.pem");
    // Posted to the My Domain (the instance host), audience login; and a sandbox-style audience.
    let orgs = format!(
        "{}{}",
        org_xml(
            "acme",
            &emu.instance_url(),
            &jwt_auth(JWT_CLIENT, INTEGRATION_USER, &key, LOGIN),
            ""
        ),
        org_xml(
            "sandbox",
            &emu.login_url(),
            &jwt_auth(JWT_CLIENT, INTEGRATION_USER, &key, SANDBOX),
            ""
        )
    );
    setup.write_config(&orgs, "");
    let running = setup.start().await;
    eventually(Duration::from_secs(10), "both token files", || async {
        setup.token_file("acme").is_some() && setup.token_file("sandbox").is_some()
    })
    .await;
    let first = setup.token_file("acme").unwrap();
    assert_eq!(first.generation, 1);
    assert_eq!(first.instance_url, emu.instance_url());
    assert!(first.access_token.starts_with(&emu.org_id()[..15]));
    assert!(token_works(&first).await, "the handed-off token works");
    // The owner (the sidecar's user) writes, its group (FreeSWITCH's) reads, others nothing.
    let path = natterbox_common::handoff::token_path(&setup.token_dir(), "acme");
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o640
    );
    assert_eq!(
        std::fs::metadata(setup.token_dir())
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o750
    );
    assert_eq!(token_requests(&emu), 2);
    let status = org_status(&running, "acme").await;
    assert_eq!(status["healthy"], true, "{status}");
    assert_eq!(status["flow"], "jwt-bearer");
    assert_eq!(status["generation"], 1);
    // No secret in /status or /metrics.
    let everything = format!("{}{}", running.status().await, running.metrics().await);
    assert!(!everything.contains(&first.access_token));
    assert!(
        !setup.log().contains(&first.access_token),
        "no token in the logs"
    );
    assert!(running.stop().success());

    // After a restart the old file is still there and readable, and generations continue.
    assert_eq!(setup.token_file("acme").unwrap(), first);
    let running = setup.start().await;
    eventually(Duration::from_secs(10), "generation 2", || async {
        setup.token_file("acme").is_some_and(|t| t.generation == 2)
    })
    .await;
    let second = setup.token_file("acme").unwrap();
    assert_ne!(second.access_token, first.access_token);
    assert!(token_works(&second).await);
    assert_eq!(
        std::fs::read_dir(setup.token_dir()).unwrap().count(),
        2,
        "no temporary files left: {:?}",
        std::fs::read_dir(setup.token_dir())
            .unwrap()
            .collect::<Vec<_>>()
    );
    assert!(running.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_credentials_work_on_my_domain_and_are_refused_on_the_login_host() {
    let emu = emulator().await;
    let setup = Setup::new();
    let secret = setup.secret("cc.secret", CC_SECRET);
    let auth = format!(
        r#"flow="client-credentials" client-id="{CC_CLIENT}" client-secret-file="{}""#,
        secret.display()
    );
    let orgs = format!(
        "{}{}",
        org_xml("mydomain", &emu.instance_url(), &auth, ""),
        org_xml("loginhost", &emu.login_url(), &auth, "")
    );
    setup.write_config(&orgs, "");
    let running = setup.start().await;
    eventually(Duration::from_secs(10), "the My Domain token", || async {
        setup.token_file("mydomain").is_some()
    })
    .await;
    assert!(token_works(&setup.token_file("mydomain").unwrap()).await);
    eventually(
        Duration::from_secs(10),
        "the login host refusal",
        || async { org_status(&running, "loginhost").await["last_error_code"] == "invalid_grant" },
    )
    .await;
    assert!(setup.token_file("loginhost").is_none());
    let status = org_status(&running, "loginhost").await;
    assert_eq!(status["healthy"], false);
    assert!(
        running
            .metrics()
            .await
            .contains("natterbox_sidecar_token_error{org=\"loginhost\",error=\"invalid_grant\"} 1"),
        "{}",
        running.metrics().await
    );
    assert!(!running.metrics().await.contains(CC_SECRET));
    assert!(!setup.log().contains(CC_SECRET));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_token_flow_and_a_revoked_refresh_token() {
    let emu = emulator().await;
    let setup = Setup::new();
    let secret = setup.secret("app.secret", JWT_SECRET);
    let refresh = setup.secret("refresh.token", REFRESH_TOKEN);
    let auth = format!(
        r#"flow="refresh-token" client-id="{JWT_CLIENT}" client-secret-file="{}" refresh-token-file="{}""#,
        secret.display(),
        refresh.display()
    );
    setup.write_config(&org_xml("acme", &emu.login_url(), &auth, ""), "");
    let running = setup.start().await;
    eventually(Duration::from_secs(10), "a token", || async {
        setup.token_file("acme").is_some()
    })
    .await;
    let token = setup.token_file("acme").unwrap();
    assert!(token_works(&token).await);

    // Revoke the refresh token, then have the module report the access token dead.
    let revoked = reqwest::Client::new()
        .post(format!("{}/services/oauth2/revoke", emu.login_url()))
        .form(&[("token", REFRESH_TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    let mut module = ModuleConn::connect(&setup.socket()).await;
    module
        .send(&Message::TokenRefresh {
            org: "acme".into(),
            generation: token.generation,
            worked: false,
        })
        .await;
    eventually(Duration::from_secs(10), "the refusal", || async {
        org_status(&running, "acme").await["last_error_code"] == "invalid_grant"
    })
    .await;
    let status = org_status(&running, "acme").await;
    assert!(
        status["advice"]
            .as_str()
            .unwrap()
            .contains("authorize again"),
        "{status}"
    );
    assert!(status["last_error"]
        .as_str()
        .unwrap()
        .contains("expired access/refresh token"));
    assert!(
        setup.log().contains("authorize again"),
        "the log says what to fix"
    );
    assert!(!setup.log().contains(REFRESH_TOKEN));
    // The module's last token file stays in place.
    assert_eq!(setup.token_file("acme").unwrap(), token);
    // Failures back off: after the f-th failure the next attempt waits at least half of
    // 2^(f-1) s (the jitter's floor). Two more failures from here include one full wait after
    // failure f+1 >= 2: at least 1 s, one request per attempt.
    let first_failure = std::time::Instant::now();
    let before = token_requests(&emu);
    let failures_now = org_status(&running, "acme").await["consecutive_failures"]
        .as_u64()
        .unwrap();
    eventually(
        Duration::from_secs(15),
        "two more failed attempts",
        || async {
            org_status(&running, "acme").await["consecutive_failures"]
                .as_u64()
                .unwrap()
                >= failures_now + 2
        },
    )
    .await;
    let elapsed = first_failure.elapsed();
    assert!(
        elapsed >= Duration::from_secs(1),
        "two retries within {elapsed:?}: no back-off"
    );
    let retries = token_requests(&emu) - before;
    assert!(
        (2..=3).contains(&retries),
        "{retries} token requests for two retries"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_are_explained() {
    let emu = emulator().await;
    let setup = Setup::new();
    let good_key = key_file("test-jwt-private-key.pem");
    let wrong_key = key_file("other-private-key.pk8.pem");
    let cases = [
        (
            "wrongkey",
            jwt_auth(JWT_CLIENT, INTEGRATION_USER, &wrong_key, LOGIN),
            "invalid_grant",
            "does not match the certificate",
        ),
        (
            "unknownclient",
            jwt_auth("3MVG9Nobody", INTEGRATION_USER, &good_key, LOGIN),
            "invalid_client_id",
            "consumer key",
        ),
        (
            "mydomainaud",
            jwt_auth(JWT_CLIENT, INTEGRATION_USER, &good_key, &emu.instance_url()),
            "invalid_grant",
            "audience",
        ),
        (
            "notapproved",
            jwt_auth(JWT_CLIENT, "alan.turing@acme.example", &good_key, LOGIN),
            "invalid_grant",
            "pre-authorize",
        ),
        (
            "inactive",
            jwt_auth(JWT_CLIENT, "former.employee@acme.example", &good_key, LOGIN),
            "invalid_grant",
            "user's status",
        ),
    ];
    let orgs: String = cases
        .iter()
        .map(|(name, auth, _, _)| org_xml(name, &emu.login_url(), auth, ""))
        .collect();
    setup.write_config(&orgs, "");
    let running = setup.start().await;
    for (name, _, code, advice) in cases {
        eventually(Duration::from_secs(10), name, || async {
            org_status(&running, name).await["last_error_code"] == code
        })
        .await;
        let status = org_status(&running, name).await;
        assert!(
            status["advice"].as_str().unwrap().contains(advice),
            "{name}: {status}"
        );
        assert!(setup.token_file(name).is_none());
        assert!(
            running
                .metric(&format!(
                    "natterbox_sidecar_org_token_failures_total{{org=\"{name}\"}}"
                ))
                .await
                >= 1
        );
    }
}

/// The assertion's `exp` is short: the emulator accepts it, and refuses one that is expired or
/// too far ahead (what the sidecar would send if its clock or lifetime were wrong).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_expiry_is_short_and_checked() {
    let emu = emulator().await;
    let pem = std::fs::read_to_string(key_file("test-jwt-private-key.pem")).unwrap();
    let post = |assertion: String| {
        let url = format!("{}/services/oauth2/token", emu.login_url());
        async move {
            let r = reqwest::Client::new()
                .post(url)
                .form(&[
                    ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                    ("assertion", assertion.as_str()),
                ])
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let now = SystemTime::now();
    let ok =
        natterbox_sidecar::oauth::jwt_assertion(JWT_CLIENT, INTEGRATION_USER, LOGIN, &pem, now)
            .unwrap();
    let claims: serde_json::Value = {
        let part = ok.split('.').nth(1).unwrap();
        serde_json::from_slice(&base64_decode(&part.replace('-', "+").replace('_', "/"))).unwrap()
    };
    let now_s = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert_eq!(claims["exp"].as_u64().unwrap(), now_s + 180);
    assert_eq!(claims["aud"], LOGIN);
    assert_eq!(claims["iss"], JWT_CLIENT);
    assert_eq!(claims["sub"], INTEGRATION_USER);
    assert_eq!(post(ok).await.0, 200);

    let expired = natterbox_sidecar::oauth::jwt_assertion(
        JWT_CLIENT,
        INTEGRATION_USER,
        LOGIN,
        &pem,
        now - Duration::from_secs(3600),
    )
    .unwrap();
    let (status, body) = post(expired).await;
    assert_eq!(status, 400);
    assert!(body.contains("invalid_grant"), "{body}");
    let far = natterbox_sidecar::oauth::jwt_assertion(
        JWT_CLIENT,
        INTEGRATION_USER,
        LOGIN,
        &pem,
        now + Duration::from_secs(3600),
    )
    .unwrap();
    let (status, body) = post(far).await;
    assert_eq!(status, 400);
    assert!(body.contains("invalid_grant"), "{body}");
}

fn base64_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let mut buffer = 0u32;
    let mut bits = 0;
    for c in text.bytes().filter(|&c| c != b'=') {
        let v = ALPHABET.iter().position(|&a| a == c).unwrap() as u32;
        buffer = (buffer << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_401_reports_make_one_refresh() {
    let emu = emulator().await;
    let setup = Setup::new();
    let key = key_file("test-jwt-private-key.pem");
    setup.write_config(
        &org_xml(
            "acme",
            &emu.login_url(),
            &jwt_auth(JWT_CLIENT, INTEGRATION_USER, &key, LOGIN),
            "",
        ),
        "",
    );
    let running = setup.start().await;
    eventually(Duration::from_secs(10), "a token", || async {
        setup.token_file("acme").is_some()
    })
    .await;
    assert_eq!(token_requests(&emu), 1);
    // Several module connections (FreeSWITCH processes), 1000 reports for generation 1.
    let mut conns = Vec::new();
    for _ in 0..4 {
        conns.push(ModuleConn::connect(&setup.socket()).await);
    }
    for i in 0..1000 {
        conns[i % 4]
            .send(&Message::TokenRefresh {
                org: "acme".into(),
                generation: 1,
                worked: false,
            })
            .await;
    }
    eventually(Duration::from_secs(10), "generation 2", || async {
        setup.token_file("acme").is_some_and(|t| t.generation == 2)
    })
    .await;
    eventually(Duration::from_secs(10), "all reports read", || async {
        running
            .metric("natterbox_sidecar_events_received_total")
            .await
            == 1000
    })
    .await;
    assert_eq!(
        token_requests(&emu),
        2,
        "one refresh for a thousand reports"
    );
    assert_eq!(
        running
            .metric("natterbox_sidecar_org_token_reports_coalesced_total{org=\"acme\"}")
            .await,
        999
    );
    // Late reports for the replaced generation change nothing.
    for _ in 0..100 {
        conns[0]
            .send(&Message::TokenRefresh {
                org: "acme".into(),
                generation: 1,
                worked: false,
            })
            .await;
    }
    eventually(
        Duration::from_secs(10),
        "the late reports absorbed",
        || async {
            running
                .metric("natterbox_sidecar_org_token_reports_coalesced_total{org=\"acme\"}")
                .await
                == 1099
        },
    )
    .await;
    assert_eq!(token_requests(&emu), 2);
    assert_eq!(setup.token_file("acme").unwrap().generation, 2);
    // A generation from the future (a module holding a file from a lost token directory) is a
    // report about the current token: one refresh, not one per missing generation.
    conns[1]
        .send(&Message::TokenRefresh {
            org: "acme".into(),
            generation: 50,
            worked: false,
        })
        .await;
    // Generation 3 is out and the org's task is back to waiting for the proactive refresh
    // (80% of the 7200 s session), so no further refresh is pending.
    eventually(
        Duration::from_secs(10),
        "generation 3, nothing pending",
        || async {
            setup.token_file("acme").is_some_and(|t| t.generation == 3)
                && org_status(&running, "acme").await["next_refresh_in_ms"]
                    .as_u64()
                    .is_some_and(|ms| ms > 3_600_000)
        },
    )
    .await;
    assert_eq!(token_requests(&emu), 3);
    assert_eq!(setup.token_file("acme").unwrap().generation, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_that_are_dead_on_arrival_do_not_loop() {
    let emu = emulator().await;
    emu.admin().add_fault(sf_emulator::FaultRule {
        path_prefix: "/services/oauth2/token".into(),
        dead_tokens: true,
        ..Default::default()
    });
    let setup = Setup::new();
    let key = key_file("test-jwt-private-key.pem");
    setup.write_config(
        &org_xml(
            "acme",
            &emu.login_url(),
            &jwt_auth(JWT_CLIENT, INTEGRATION_USER, &key, LOGIN),
            "",
        ),
        "",
    );
    let running = setup.start().await;
    eventually(Duration::from_secs(10), "a token", || async {
        setup.token_file("acme").is_some()
    })
    .await;
    assert!(
        !token_works(&setup.token_file("acme").unwrap()).await,
        "the fault works"
    );
    // The module reports every token it gets as refused, as fast as it can, for 4 s.
    let mut module = ModuleConn::connect(&setup.socket()).await;
    let until = std::time::Instant::now() + Duration::from_secs(4);
    while std::time::Instant::now() < until {
        let generation = setup.token_file("acme").unwrap().generation;
        module
            .send(&Message::TokenRefresh {
                org: "acme".into(),
                generation,
                worked: false,
            })
            .await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let requests = token_requests(&emu);
    // 1 at start + 3 immediate refreshes + at most 1 after the first back-off step (≥ 2.5 s).
    assert!(requests <= 5, "{requests} token requests: a refresh loop");
    assert!(
        requests >= 4,
        "{requests}: the first refusals are refreshed at once"
    );
    let status = org_status(&running, "acme").await;
    assert_eq!(
        status["last_error_code"], "token_refused_when_fresh",
        "{status}"
    );
    assert_eq!(status["healthy"], false);
    assert!(
        running
            .metric("natterbox_sidecar_org_tokens_rejected_fresh_total{org=\"acme\"}")
            .await
            >= 4
    );
}

/// Young tokens that served lookups and were then revoked (the module says `worked`) are not
/// dead tokens: every such report is refreshed at once, however many in a minute.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_tokens_that_worked_are_refreshed_at_once_every_time() {
    let emu = emulator().await;
    let setup = Setup::new();
    let key = key_file("test-jwt-private-key.pem");
    setup.write_config(
        &org_xml(
            "acme",
            &emu.login_url(),
            &jwt_auth(JWT_CLIENT, INTEGRATION_USER, &key, LOGIN),
            "",
        ),
        "",
    );
    let running = setup.start().await;
    eventually(Duration::from_secs(10), "a token", || async {
        setup.token_file("acme").is_some()
    })
    .await;
    let mut module = ModuleConn::connect(&setup.socket()).await;
    for generation in 1..=6 {
        module
            .send(&Message::TokenRefresh {
                org: "acme".into(),
                generation,
                worked: true,
            })
            .await;
        // At once: well inside the 5 s first step of the dead-token back-off.
        eventually(
            Duration::from_secs(2),
            &format!("generation {}", generation + 1),
            || async {
                setup
                    .token_file("acme")
                    .is_some_and(|t| t.generation == generation + 1)
            },
        )
        .await;
    }
    assert_eq!(token_requests(&emu), 7);
    let status = org_status(&running, "acme").await;
    assert_eq!(status["healthy"], true, "{status}");
    assert_eq!(
        running
            .metric("natterbox_sidecar_org_tokens_rejected_fresh_total{org=\"acme\"}")
            .await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_files_are_chowned_to_the_token_file_owner() {
    let nobody = nix::unistd::User::from_name("nobody")
        .unwrap()
        .expect("a nobody user");
    if !nix::unistd::Uid::effective().is_root() {
        println!("SKIPPED chown check: not running as root, cannot chown to nobody");
        return;
    }
    let emu = emulator().await;
    let setup = Setup::new();
    let key = key_file("test-jwt-private-key.pem");
    setup.write_config(
        &org_xml(
            "acme",
            &emu.login_url(),
            &jwt_auth(JWT_CLIENT, INTEGRATION_USER, &key, LOGIN),
            "",
        ),
        r#"<param name="token-file-owner" value="nobody"/>"#,
    );
    let _running = setup.start().await;
    let path = natterbox_common::handoff::token_path(&setup.token_dir(), "acme");
    eventually(Duration::from_secs(10), "the token file", || async {
        path.exists()
    })
    .await;
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.uid(), nobody.uid.as_raw());
    assert_eq!(meta.gid(), nobody.gid.as_raw());
    assert_eq!(meta.mode() & 0o777, 0o600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixing_the_credentials_and_reloading_gets_a_token_at_once() {
    let emu = emulator().await;
    let setup = Setup::new();
    let wrong = jwt_auth(
        JWT_CLIENT,
        INTEGRATION_USER,
        &key_file("other-private-key.pk8.pem"),
        LOGIN,
    );
    setup.write_config(&org_xml("acme", &emu.login_url(), &wrong, ""), "");
    let running = setup.start().await;
    // Let it fail a few times so that its back-off is long.
    eventually(Duration::from_secs(15), "three failures", || async {
        org_status(&running, "acme").await["consecutive_failures"]
            .as_u64()
            .unwrap_or(0)
            >= 3
    })
    .await;
    assert!(setup.token_file("acme").is_none());
    let right = jwt_auth(
        JWT_CLIENT,
        INTEGRATION_USER,
        &key_file("test-jwt-private-key.pem"),
        LOGIN,
    );
    setup.write_config(&org_xml("acme", &emu.login_url(), &right, ""), "");
    let reloaded = std::time::Instant::now();
    running.signal(nix::sys::signal::Signal::SIGHUP);
    eventually(
        Duration::from_secs(3),
        "a token right after the reload",
        || async { setup.token_file("acme").is_some() },
    )
    .await;
    assert!(reloaded.elapsed() < Duration::from_secs(3));
    assert!(token_works(&setup.token_file("acme").unwrap()).await);
    let status = org_status(&running, "acme").await;
    assert_eq!(status["healthy"], true, "{status}");
    assert!(status["last_error"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_an_extra_ca_and_verification_on() {
    let emu = sf_emulator::Emulator::start(sf_emulator::EmulatorOptions {
        tls: true,
        ..sf_emulator::EmulatorOptions::default()
    })
    .await
    .unwrap();
    assert!(emu.login_url().starts_with("https://"));
    let key = key_file("test-jwt-private-key.pem");
    let auth = jwt_auth(JWT_CLIENT, INTEGRATION_USER, &key, LOGIN);

    // Without the CA: the certificate is not trusted, so no token.
    let setup = Setup::new();
    setup.write_config(&org_xml("acme", &emu.login_url(), &auth, ""), "");
    let running = setup.start().await;
    eventually(Duration::from_secs(10), "a transport error", || async {
        org_status(&running, "acme").await["last_error_code"] == "transport"
    })
    .await;
    assert!(setup.token_file("acme").is_none());
    drop(running);

    // With ca-file: trusted.
    let setup = Setup::new();
    let ca = setup.path("emulator-ca.pem");
    std::fs::write(&ca, emu.ca_pem().unwrap()).unwrap();
    setup.write_config(&org_xml("acme", &emu.login_url(), &auth, ""), "");
    let config = std::fs::read_to_string(setup.config_path()).unwrap();
    std::fs::write(
        setup.config_path(),
        config.replace(
            "<param name=\"spool-dir\"",
            &format!(
                "<param name=\"ca-file\" value=\"{}\"/><param name=\"spool-dir\"",
                ca.display()
            ),
        ),
    )
    .unwrap();
    let running = setup.start().await;
    eventually(Duration::from_secs(10), "a token over HTTPS", || async {
        setup.token_file("acme").is_some()
    })
    .await;
    assert!(setup
        .token_file("acme")
        .unwrap()
        .instance_url
        .starts_with("https://"));
    assert_eq!(org_status(&running, "acme").await["healthy"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_refresh_tokens_are_used_and_survive_a_restart() {
    let emu = emulator().await;
    let setup = Setup::new();
    let secret = setup.secret("app.secret", "rotating-secret");
    let refresh = setup.secret("refresh.token", "5Aep861Emu.Refresh.Rotating.0001");
    let auth = format!(
        r#"flow="refresh-token" client-id="3MVG9Emu.Rotating.ClientId" client-secret-file="{}" refresh-token-file="{}""#,
        secret.display(),
        refresh.display()
    );
    setup.write_config(&org_xml("acme", &emu.login_url(), &auth, ""), "");
    let running = setup.start().await;
    eventually(Duration::from_secs(10), "a token", || async {
        setup.token_file("acme").is_some()
    })
    .await;
    // The configured refresh token is now dead; the next refresh must use the rotated one.
    let mut module = ModuleConn::connect(&setup.socket()).await;
    module
        .send(&Message::TokenRefresh {
            org: "acme".into(),
            generation: 1,
            worked: false,
        })
        .await;
    eventually(Duration::from_secs(10), "generation 2", || async {
        setup.token_file("acme").is_some_and(|t| t.generation == 2)
    })
    .await;
    assert!(token_works(&setup.token_file("acme").unwrap()).await);
    let saved = setup.path("state/rotated-refresh-acme.json");
    assert_eq!(
        std::fs::metadata(&saved).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(running.stop().success());

    // After a restart, the saved one is used: no invalid_grant.
    let running = setup.start().await;
    eventually(Duration::from_secs(10), "generation 3", || async {
        setup.token_file("acme").is_some_and(|t| t.generation == 3)
    })
    .await;
    let status = org_status(&running, "acme").await;
    assert_eq!(status["healthy"], true, "{status}");
    assert!(token_works(&setup.token_file("acme").unwrap()).await);
    assert!(
        !setup.log().contains("5Aep861"),
        "no refresh token in the logs"
    );
}

/// A token endpoint that answers exactly as Salesforce documents the JWT bearer flow: it passes
/// the request on to the emulator and keeps only `access_token`, `scope`, `instance_url`, `id`
/// and `token_type` of its answer (no `issued_at`, no `signature`, no `refresh_token`). Records
/// each body it sent and the clock just before sending it.
struct JwtShapedTokenEndpoint {
    url: String,
    answers: std::sync::Arc<std::sync::Mutex<Vec<(serde_json::Value, u64)>>>,
}

fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

impl JwtShapedTokenEndpoint {
    async fn start(emulator_url: String) -> JwtShapedTokenEndpoint {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let answers = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let recorded = answers.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let (emulator_url, recorded) = (emulator_url.clone(), recorded.clone());
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut chunk = [0u8; 4096];
                    let (head_end, length) = loop {
                        let n = stream.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        request.extend_from_slice(&chunk[..n]);
                        if let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&request[..end]).to_lowercase();
                            let length = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .and_then(|v| v.trim().parse::<usize>().ok())
                                .unwrap_or(0);
                            break (end + 4, length);
                        }
                    };
                    while request.len() < head_end + length {
                        let n = stream.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        request.extend_from_slice(&chunk[..n]);
                    }
                    let form = request[head_end..head_end + length].to_vec();
                    let full: serde_json::Value = reqwest::Client::new()
                        .post(format!("{emulator_url}/services/oauth2/token"))
                        .header("content-type", "application/x-www-form-urlencoded")
                        .body(form)
                        .send()
                        .await
                        .unwrap()
                        .json()
                        .await
                        .unwrap();
                    let mut jwt_shaped = serde_json::Map::new();
                    for field in ["access_token", "scope", "instance_url", "id", "token_type"] {
                        jwt_shaped.insert(field.into(), full[field].clone());
                    }
                    let body = serde_json::Value::Object(jwt_shaped);
                    let text = body.to_string();
                    let sent_at = epoch_ms();
                    recorded.lock().unwrap().push((body, sent_at));
                    let response = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json;charset=UTF-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                        text.len()
                    );
                    let _ = stream.write_all(response.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        JwtShapedTokenEndpoint { url, answers }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwt_org_gets_its_token_from_the_documented_jwt_bearer_answer() {
    let emu = emulator().await;
    let endpoint = JwtShapedTokenEndpoint::start(emu.instance_url()).await;
    let setup = Setup::new();
    let key = key_file("test-jwt-private-key.pem");
    setup.write_config(
        &org_xml(
            "acme",
            &endpoint.url,
            &jwt_auth(JWT_CLIENT, INTEGRATION_USER, &key, LOGIN),
            "",
        ),
        "",
    );
    let running = setup.start().await;
    eventually(Duration::from_secs(10), "the token file", || async {
        setup.token_file("acme").is_some()
    })
    .await;
    let seen_at = epoch_ms();
    let token = setup.token_file("acme").unwrap();
    let answers = endpoint.answers.lock().unwrap().clone();
    let (body, sent_at) = answers
        .first()
        .cloned()
        .expect("the sidecar asked for a token");
    let mut fields: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        ["access_token", "id", "instance_url", "scope", "token_type"],
        "the answer had the JWT bearer flow's fields only"
    );
    assert_eq!(token.access_token, body["access_token"]);
    assert_eq!(token.instance_url, emu.instance_url());
    assert!(token_works(&token).await, "the handed-off token works");
    // Without issued_at, the session dates from when the answer arrived.
    assert!(
        (sent_at..=seen_at).contains(&token.issued_at_ms),
        "issued_at_ms {} outside [{sent_at}, {seen_at}]",
        token.issued_at_ms
    );
    let status = org_status(&running, "acme").await;
    assert_eq!(status["healthy"], true, "{status}");
    assert_eq!(status["flow"], "jwt-bearer");
    assert_eq!(status["issued_at_ms"], token.issued_at_ms);
    assert!(running.stop().success());
}
