//! `sf-emulator` binary: parse args, start, print one JSON line with the URLs, run until killed.

use sf_emulator::{Emulator, EmulatorOptions};
use std::time::Duration;

const USAGE: &str = "usage: sf-emulator [--bind 127.0.0.1:8443] [--tls] [--tls-cert FILE --tls-key FILE] [--seed FILE] [--batch-size N] [--session-timeout-s N] [--instance-url URL] [--phone-match exact|last10|suffix[:N]] [--voicecall-duplicate-create new-record|conflict] [--ca-out FILE] [--print-credentials]\n(env SF_EMULATOR_PHONE_MATCH = the --phone-match default; env SF_EMULATOR_VOICECALL_DUPLICATE_CREATE = the --voicecall-duplicate-create default)";

fn fail(msg: &str) -> ! {
    eprintln!("sf-emulator: {msg}\n{USAGE}");
    std::process::exit(2)
}

fn main() {
    let mut opts = EmulatorOptions::default_seed();
    let mut print_credentials = false;
    let mut ca_out: Option<String> = None;
    let mut args = std::env::args().skip(1);
    let mut cert_file = None;
    let mut key_file = None;
    if let Ok(m) = std::env::var("SF_EMULATOR_PHONE_MATCH") {
        opts.phone_match = Some(
            m.parse()
                .unwrap_or_else(|e| fail(&format!("SF_EMULATOR_PHONE_MATCH: {e}"))),
        );
    }
    let mut duplicate_create = sf_emulator::DuplicateCreate::default();
    if let Ok(m) = std::env::var("SF_EMULATOR_VOICECALL_DUPLICATE_CREATE") {
        duplicate_create = m.parse().unwrap_or_else(|e: String| {
            fail(&format!("SF_EMULATOR_VOICECALL_DUPLICATE_CREATE: {e}"))
        });
    }
    while let Some(a) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .unwrap_or_else(|| fail(&format!("{name} needs a value")))
        };
        match a.as_str() {
            "--bind" => {
                opts.bind = value("--bind")
                    .parse()
                    .unwrap_or_else(|_| fail("--bind wants HOST:PORT"))
            }
            "--tls" => opts.tls = true,
            "--tls-cert" => cert_file = Some(value("--tls-cert")),
            "--tls-key" => key_file = Some(value("--tls-key")),
            "--seed" => {
                let path = value("--seed");
                opts.seed = EmulatorOptions::with_seed_file(&path)
                    .unwrap_or_else(|e| fail(&format!("seed {path}: {e}")))
                    .seed;
            }
            "--batch-size" => {
                opts.query_batch_size = value("--batch-size")
                    .parse()
                    .unwrap_or_else(|_| fail("--batch-size wants a number"))
            }
            "--session-timeout-s" => {
                let s: f64 = value("--session-timeout-s")
                    .parse()
                    .unwrap_or_else(|_| fail("--session-timeout-s wants a number"));
                opts.session_timeout = Duration::from_secs_f64(s);
            }
            "--instance-url" => opts.instance_url = Some(value("--instance-url")),
            "--phone-match" => {
                opts.phone_match = Some(
                    value("--phone-match")
                        .parse()
                        .unwrap_or_else(|e: String| fail(&e)),
                )
            }
            "--voicecall-duplicate-create" => {
                duplicate_create = value("--voicecall-duplicate-create")
                    .parse()
                    .unwrap_or_else(|e: String| fail(&e))
            }
            "--ca-out" => ca_out = Some(value("--ca-out")),
            "--print-credentials" => print_credentials = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                return;
            }
            other => fail(&format!("unknown argument {other}")),
        }
    }
    if let (Some(c), Some(k)) = (&cert_file, &key_file) {
        let read =
            |p: &str| std::fs::read_to_string(p).unwrap_or_else(|e| fail(&format!("{p}: {e}")));
        opts.tls_cert_pem = Some(read(c));
        opts.tls_key_pem = Some(read(k));
        opts.tls = true;
    }
    let seed = opts.seed.clone();
    let phone_match = opts.phone_match.unwrap_or(seed.phone_match);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail(&format!("runtime: {e}")));
    rt.block_on(async move {
        let emu = Emulator::start(opts).await.unwrap_or_else(|e| fail(&format!("start: {e}")));
        emu.admin().set_voicecall_duplicate_create(duplicate_create);
        let ca_file = match (emu.ca_pem(), ca_out) {
            (Some(pem), path) => {
                let path = path.unwrap_or_else(|| std::env::temp_dir().join(format!("sf-emulator-ca-{}.pem", emu.local_addr().port())).display().to_string());
                std::fs::write(&path, pem).unwrap_or_else(|e| fail(&format!("{path}: {e}")));
                serde_json::Value::from(path)
            }
            (None, _) => serde_json::Value::Null,
        };
        let mut ready = serde_json::json!({
            "login_url": emu.login_url(), "instance_url": emu.instance_url(),
            "org_id": emu.org_id(), "ca_file": ca_file, "phone_match": phone_match.to_string(),
            "pubsub_url": emu.pubsub_url(),
        });
        if print_credentials {
            ready["users"] = seed.users.iter().map(|u| serde_json::json!({
                "username": u.username, "password": u.password, "security_token": u.security_token,
            })).collect();
            ready["connected_apps"] = seed.connected_apps.iter().map(|a| serde_json::json!({
                "name": a.name, "client_id": a.client_id, "client_secret": a.client_secret, "grants": a.grants,
                "refresh_tokens": a.refresh_tokens.iter().map(|r| r.token.clone()).collect::<Vec<_>>(),
            })).collect();
        }
        println!("{ready}");
        let _ = tokio::signal::ctrl_c().await;
        drop(emu);
    });
}
