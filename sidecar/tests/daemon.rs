//! The daemon as systemd runs it: readiness protocol, signals, config checks, the unit file.

mod support;

use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::{Duration, Instant};

use support::*;

/// Reads datagrams until every `wanted` line was seen, or `timeout`.
fn collect_until(sock: &UnixDatagram, seen: &mut Vec<String>, wanted: &[&str], timeout: Duration) {
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 4096];
    while !wanted
        .iter()
        .all(|w| seen.iter().any(|s| s.lines().any(|l| l == *w)))
    {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "did not see {wanted:?}; saw {seen:?}");
        sock.set_read_timeout(Some(left.min(Duration::from_millis(200))))
            .unwrap();
        if let Ok(n) = sock.recv(&mut buf) {
            seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
}

#[tokio::test]
async fn notifies_systemd_ready_watchdog_and_stopping() {
    let setup = Setup::new();
    setup.write_config(&org_without_auth("acme"), "");
    let notify_path = setup.path("notify.sock");
    let sock = UnixDatagram::bind(&notify_path).unwrap();
    let child = setup
        .command()
        .env("NOTIFY_SOCKET", &notify_path)
        .env("WATCHDOG_USEC", "200000")
        .spawn()
        .unwrap();
    let running = Running {
        child,
        admin: setup.admin,
    };
    let mut seen = Vec::new();
    collect_until(&sock, &mut seen, &["READY=1"], Duration::from_secs(30));
    // READY comes after the listeners are up.
    let health = reqwest::get(format!("http://{}/healthz", setup.admin))
        .await
        .unwrap();
    assert!(health.status().is_success());
    assert!(setup.socket().exists());
    assert!(
        seen.iter().any(|s| s.contains("STATUS=")),
        "a STATUS line with READY: {seen:?}"
    );
    // WATCHDOG=1 at half of 200 ms: several within a second.
    seen.clear();
    let window = Instant::now() + Duration::from_millis(800);
    let mut buf = [0u8; 4096];
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    while Instant::now() < window {
        if let Ok(n) = sock.recv(&mut buf) {
            seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    let pings = seen.iter().filter(|s| s.contains("WATCHDOG=1")).count();
    assert!(
        pings >= 2,
        "watchdog pings every 100 ms, saw {pings}: {seen:?}"
    );

    running.signal(nix::sys::signal::Signal::SIGTERM);
    collect_until(&sock, &mut seen, &["STOPPING=1"], Duration::from_secs(10));
    let status = running.stop_after_signal();
    assert!(status.success(), "clean exit after SIGTERM: {status:?}");
    assert!(
        !setup.socket().exists(),
        "the socket file is removed on exit"
    );
}

#[tokio::test]
async fn sighup_reloads_and_keeps_the_old_config_when_the_new_one_is_invalid() {
    let setup = Setup::new();
    setup.write_config(&org_without_auth("acme"), "");
    let running = setup.start().await;
    let good = std::fs::read_to_string(setup.config_path()).unwrap();

    std::fs::write(
        setup.config_path(),
        good.replace("<orgs>", "<orgs><org name=\"../x\"/>"),
    )
    .unwrap();
    running.signal(nix::sys::signal::Signal::SIGHUP);
    eventually(Duration::from_secs(10), "a refused reload", || async {
        running
            .metric("natterbox_sidecar_config_reload_failures_total")
            .await
            == 1
    })
    .await;
    assert_eq!(
        running
            .metric("natterbox_sidecar_config_reloads_total")
            .await,
        0
    );

    // Still serving with the old config: the org's pops are accepted.
    let mut conn = ModuleConn::connect(&setup.socket()).await;
    conn.send(&natterbox_common::wire::Message::ScreenPop(pop(
        "acme", "c1", "005A", 30_000,
    )))
    .await;
    eventually(Duration::from_secs(5), "the pop", || async {
        running
            .metric("natterbox_sidecar_pops_received_total")
            .await
            == 1
    })
    .await;

    std::fs::write(
        setup.config_path(),
        good.replace("</orgs>", &format!("{}</orgs>", org_without_auth("globex"))),
    )
    .unwrap();
    running.signal(nix::sys::signal::Signal::SIGHUP);
    eventually(Duration::from_secs(10), "an applied reload", || async {
        running
            .metric("natterbox_sidecar_config_reloads_total")
            .await
            == 1
    })
    .await;
    conn.send(&natterbox_common::wire::Message::ScreenPop(pop(
        "globex", "c2", "005A", 30_000,
    )))
    .await;
    eventually(Duration::from_secs(5), "the new org's pop", || async {
        running
            .metric("natterbox_sidecar_pops_received_total")
            .await
            == 2
    })
    .await;
    assert!(running.stop().success());
}

pub fn pop(org: &str, uuid: &str, user: &str, ttl_ms: u64) -> natterbox_common::wire::ScreenPop {
    natterbox_common::wire::ScreenPop {
        org: org.into(),
        call_uuid: uuid.into(),
        agent_user_id: Some(user.into()),
        agent_extension: None,
        caller_number: "+14155550100".into(),
        record_ids: vec!["003000000000001AAA".into()],
        direction: natterbox_common::wire::Direction::Inbound,
        created_at_ms: natterbox_sidecar::backoff::now_ms(),
        ttl_ms,
        record: None,
    }
}

#[test]
fn check_config_explains_problems_and_exits_1() {
    let setup = Setup::new();
    let missing = setup.path("missing.key");
    setup.write_config(
        &format!(
            r#"<org name="acme" login-url="https://login.salesforce.com">
                 <auth flow="client-credentials" client-id="3MVG" client-secret-env="NATTERBOX_TEST_UNSET_SECRET"/>
                 <profile name="default"><object name="Contact"/></profile></org>
               <org name="globex">
                 <auth flow="jwt-bearer" client-id="3MVG" username="u@example.com" private-key-file="{}"/>
                 <profile name="default"><object name="Contact"/></profile></org>"#,
            missing.display()
        ),
        "",
    );
    let out = Command::new(BIN)
        .args(["--check-config", "--config"])
        .arg(setup.config_path())
        .env_remove("NATTERBOX_TEST_UNSET_SECRET")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("NATTERBOX_TEST_UNSET_SECRET is not set"),
        "{text}"
    );
    assert!(text.contains("My Domain"), "{text}");
    assert!(text.contains("missing.key"), "{text}");
    assert!(text.contains("NOT valid"), "{text}");

    // A key file that is not a key; the error must not print its content.
    let not_a_key = setup.secret("bad.key", "SECRET-CONTENT-NOT-A-KEY");
    setup.write_config(
        &format!(
            r#"<org name="globex">
                 <auth flow="jwt-bearer" client-id="3MVG" username="u@example.com" private-key-file="{}"/>
                 <profile name="default"><object name="Contact"/></profile></org>"#,
            not_a_key.display()
        ),
        "",
    );
    let out = Command::new(BIN)
        .args(["--check-config", "--config"])
        .arg(setup.config_path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("not an RSA PEM key"), "{text}");
    assert!(!text.contains("SECRET-CONTENT"), "{text}");

    // Call logging without credentials.
    setup.write_config(
        r#"<org name="acme"><profile name="default"><object name="Contact"/></profile>
             <call-log enabled="true"/></org>"#,
        "",
    );
    let out = Command::new(BIN)
        .args(["--check-config", "--config"])
        .arg(setup.config_path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("no <auth> to write them with"), "{text}");

    // A token directory that cannot be created.
    setup.write_config(&org_without_auth("acme"), "");
    std::fs::write(setup.path("a-file"), b"").unwrap();
    let config = std::fs::read_to_string(setup.config_path()).unwrap();
    std::fs::write(
        setup.config_path(),
        config.replace(
            &setup.token_dir().display().to_string(),
            &setup.path("a-file/tokens").display().to_string(),
        ),
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["--check-config", "--config"])
        .arg(setup.config_path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("a-file is not a directory"), "{text}");

    // Valid.
    setup.write_config(&org_without_auth("acme"), "");
    let out = Command::new(BIN)
        .args(["--check-config", "--config"])
        .arg(setup.config_path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("configuration is valid"), "{text}");

    // Unparseable.
    std::fs::write(
        setup.config_path(),
        "<configuration name=\"natterbox_sf.conf\"><orgs>",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["--check-config", "--config"])
        .arg(setup.config_path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn systemd_unit_verifies() {
    let unit = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scripts/natterbox-sidecar.service"
    );
    let text = std::fs::read_to_string(unit).unwrap();
    for required in [
        "Type=notify",
        "NotifyAccess=main",
        "WatchdogSec=",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "ReadWritePaths=",
        "RuntimeDirectory=natterbox-sf",
        "StateDirectory=natterbox-sf",
        "UMask=0077",
        // Its own user; FreeSWITCH's group only for the hand-off; no capabilities.
        "User=natterbox-sf",
        "Group=freeswitch",
        "CapabilityBoundingSet=\n",
        "AmbientCapabilities=\n",
    ] {
        assert!(text.contains(required), "unit lacks {required}");
    }
    assert!(
        !text.contains("User=freeswitch"),
        "the sidecar must not run as FreeSWITCH's user"
    );
    let analyze = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists());
    let Some(analyze) = analyze else {
        // Said plainly, not passed silently: CI images without systemd cannot run this half.
        println!("SKIPPED systemd-analyze verify: systemd-analyze is not installed (apt-get install systemd)");
        eprintln!("SKIPPED systemd-analyze verify: systemd-analyze is not installed (apt-get install systemd)");
        return;
    };
    // verify checks that ExecStart exists: point it at the binary under test.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("natterbox-sidecar.service");
    std::fs::write(&copy, text.replace("/usr/bin/natterbox-sidecar", BIN)).unwrap();
    let out = Command::new(analyze)
        .arg("verify")
        .arg(&copy)
        .env("SYSTEMD_LOG_LEVEL", "warning")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "systemd-analyze verify failed:\n{stdout}\n{stderr}"
    );
    let complaints: Vec<&str> = stderr
        .lines()
        .chain(stdout.lines())
        .filter(|l| l.contains("natterbox-sidecar.service"))
        .collect();
    assert!(
        complaints.is_empty(),
        "systemd-analyze complains: {complaints:?}"
    );
}

#[test]
fn logs_read_well_in_journald() {
    let run = |journal: bool| {
        let mut cmd = Command::new(BIN);
        cmd.args(["--config", "/nonexistent/natterbox_sf.conf.xml"]);
        if journal {
            cmd.env("JOURNAL_STREAM", "8:12345");
        } else {
            cmd.env_remove("JOURNAL_STREAM");
        }
        let out = cmd.output().unwrap();
        assert_eq!(out.status.code(), Some(1));
        String::from_utf8(out.stderr).unwrap()
    };
    let journal = run(true);
    assert!(
        journal.starts_with("ERROR "),
        "no timestamp under journald: {journal:?}"
    );
    assert!(journal.contains("/nonexistent/natterbox_sf.conf.xml"));
    assert!(
        !journal.contains('\u{1b}'),
        "no ANSI escapes when not a terminal"
    );
    let plain = run(false);
    assert!(
        plain.chars().next().is_some_and(|c| c.is_ascii_digit()),
        "timestamps otherwise: {plain:?}"
    );
    assert!(!plain.contains('\u{1b}'));
}

#[test]
fn logs_one_json_object_per_line_when_asked() {
    let run = |args: &[&str], env: Option<&str>| {
        let mut cmd = Command::new(BIN);
        cmd.args(["--config", "/nonexistent/natterbox_sf.conf.xml"])
            .args(args);
        match env {
            Some(format) => cmd.env("NATTERBOX_LOG_FORMAT", format),
            None => cmd.env_remove("NATTERBOX_LOG_FORMAT"),
        };
        cmd.output().unwrap()
    };
    for out in [run(&["--log-format", "json"], None), run(&[], Some("json"))] {
        assert_eq!(out.status.code(), Some(1));
        let stderr = String::from_utf8(out.stderr).unwrap();
        let lines: Vec<&str> = stderr.lines().collect();
        assert!(!lines.is_empty());
        for line in lines {
            let event: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line:?}"));
            assert_eq!(event["level"], "ERROR");
            assert_eq!(event["message"], "cannot start: invalid configuration");
            assert!(event["error"]
                .as_str()
                .unwrap()
                .contains("/nonexistent/natterbox_sf.conf.xml"));
            assert!(event["timestamp"].is_string());
        }
    }
    // The flag wins over the environment; an unknown format is a usage error.
    let text = run(&["--log-format", "text"], Some("json"));
    assert!(!String::from_utf8_lossy(&text.stderr).starts_with('{'));
    assert_eq!(run(&["--log-format", "xml"], None).status.code(), Some(2));
    assert_eq!(run(&[], Some("yaml")).status.code(), Some(2));
}
