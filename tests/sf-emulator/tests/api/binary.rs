//! The `sf-emulator` binary: the phone-matching mode from `--phone-match` and
//! `SF_EMULATOR_PHONE_MATCH`, reported on the ready line.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

/// Starts the binary, reads its ready line, stops it.
fn ready_line(args: &[&str], env: Option<&str>) -> Value {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sf-emulator"));
    cmd.args(["--bind", "127.0.0.1:0"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .env_remove("SF_EMULATOR_PHONE_MATCH");
    if let Some(v) = env {
        cmd.env("SF_EMULATOR_PHONE_MATCH", v);
    }
    let mut child = cmd.spawn().expect("binary starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .expect("ready line");
    child.kill().ok();
    child.wait().ok();
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
}

#[test]
fn phone_match_from_flag_and_environment() {
    assert_eq!(ready_line(&[], None)["phone_match"], "exact");
    assert_eq!(
        ready_line(&["--phone-match", "suffix:8"], None)["phone_match"],
        "suffix:8"
    );
    assert_eq!(ready_line(&[], Some("last10"))["phone_match"], "last10");
    assert_eq!(
        ready_line(&["--phone-match", "exact"], Some("suffix"))["phone_match"],
        "exact",
        "the flag wins"
    );
    let status = Command::new(env!("CARGO_BIN_EXE_sf-emulator"))
        .args(["--phone-match", "fuzzy"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(2));
}
