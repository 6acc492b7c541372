//! The application argument string (`sf_lookup org=… number=…`): built by the dialplan, often from
//! caller-controlled channel variables.
//!
//! Properties: parsing never panics; an accepted string holds only known keys, and writing its
//! settings back as `key=value` words followed by the last argument verbatim parses to the same
//! values (so a caller's text in the last argument stays inside it); no error message and no
//! `printable` text carries a control character into a log line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use natterbox_engine::args::{printable, AppArgs, ArgSpec};

const KNOWN: &[&str] = &["org", "profile", "timeout_ms"];
const SPEC: ArgSpec = ArgSpec {
    settings: KNOWN,
    last: &["number"],
};

fn no_control(text: &str) -> bool {
    !text.chars().any(char::is_control)
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let shown = printable(text);
    assert!(
        no_control(&shown),
        "printable left a control character: {shown:?}"
    );
    match AppArgs::parse(text, &SPEC) {
        Ok(args) => {
            let mut words: Vec<String> = KNOWN
                .iter()
                .filter_map(|key| args.get(key).map(|value| format!("{key}={value}")))
                .collect();
            if let Some((key, value)) = args.last() {
                words.push(format!("{key}={value}"));
            }
            let again = AppArgs::parse(&words.join(" "), &SPEC).expect("written back, it parses");
            assert_eq!(args.last(), again.last(), "the last argument changed");
            for key in KNOWN {
                assert_eq!(
                    args.get(key),
                    again.get(key),
                    "{key} changed on the round trip"
                );
                if let Some(value) = args.get(key) {
                    assert!(!value.is_empty());
                    assert!(!value.contains(|c: char| c.is_ascii_whitespace()));
                }
            }
            for unknown in ["evil", "", "=", "org ", "number"] {
                assert_eq!(args.get(unknown), None);
            }
        }
        Err(message) => assert!(
            no_control(&message),
            "error carries a control character: {message:?}"
        ),
    }
});
