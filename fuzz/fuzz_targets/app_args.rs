//! The application argument string (`sf_lookup org=… number=…`): built by the dialplan, often from
//! caller-controlled channel variables.
//!
//! Properties: parsing never panics; an accepted string holds only known keys, and writing its
//! values back as `key=value` words parses to the same values; no error message and no
//! `printable` text carries a control character into a log line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use natterbox_engine::args::{printable, AppArgs};

const KNOWN: &[&str] = &["org", "number", "profile", "timeout"];

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
    match AppArgs::parse(text, KNOWN) {
        Ok(args) => {
            let words: Vec<String> = KNOWN
                .iter()
                .filter_map(|key| args.get(key).map(|value| format!("{key}={value}")))
                .collect();
            let again = AppArgs::parse(&words.join(" "), KNOWN).expect("written back, it parses");
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
            for unknown in ["evil", "", "=", "org "] {
                assert_eq!(args.get(unknown), None);
            }
        }
        Err(message) => assert!(
            no_control(&message),
            "error carries a control character: {message:?}"
        ),
    }
});
