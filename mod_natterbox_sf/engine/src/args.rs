//! Application arguments. FreeSWITCH expands `${…}` in an application's data before the
//! application sees it, so nothing in the string tells the dialplan's own text from a value a
//! caller sent (`${caller_id_number}`, a SIP header). The rule that keeps a caller from adding
//! arguments: settings (`org=`, `profile=`, `timeout_ms=`, …) are `key=value` words, each known
//! key at most once; the one argument that may carry a caller's value (`number=` for
//! `sf_lookup`) must come last and takes the whole rest of the string, verbatim, spaces and
//! `key=` text included. So whatever a caller puts into that value stays inside it.

use std::collections::BTreeMap;

/// Longest settings part accepted (the text before the last argument).
const MAX_SETTINGS_LEN: usize = 4096;

/// The arguments one application accepts.
#[derive(Debug, Clone, Copy)]
pub struct ArgSpec {
    /// `key=value` words, each at most once, before the last argument.
    pub settings: &'static [&'static str],
    /// Keys of a last argument: its value is everything after `key=` to the end of the string.
    pub last: &'static [&'static str],
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AppArgs {
    settings: BTreeMap<String, String>,
    last: Option<(&'static str, String)>,
}

impl AppArgs {
    pub fn parse(data: &str, spec: &ArgSpec) -> Result<AppArgs, String> {
        let mut args = AppArgs::default();
        let mut rest = data;
        loop {
            rest = rest.trim_start_matches(|c: char| c.is_ascii_whitespace());
            if rest.is_empty() {
                break;
            }
            let word_len = rest
                .find(|c: char| c.is_ascii_whitespace())
                .unwrap_or(rest.len());
            let word = &rest[..word_len];
            let Some((key, value)) = word.split_once('=') else {
                return Err(format!("\"{}\" is not key=value", printable(word)));
            };
            if let Some(last) = spec.last.iter().find(|k| **k == key) {
                // Verbatim: the value starts right after `=` and ends where the string ends.
                args.last = Some((last, rest[key.len() + 1..].to_string()));
                break;
            }
            if data.len() - rest.len() + word_len > MAX_SETTINGS_LEN {
                return Err(format!("arguments longer than {MAX_SETTINGS_LEN} bytes"));
            }
            if !spec.settings.contains(&key) {
                return Err(format!(
                    "unknown argument \"{}\" (known: {})",
                    printable(key),
                    spec.settings
                        .iter()
                        .chain(spec.last)
                        .copied()
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            if args
                .settings
                .insert(key.to_string(), value.to_string())
                .is_some()
            {
                return Err(format!("argument {key} given twice"));
            }
            rest = &rest[word_len..];
        }
        Ok(args)
    }

    /// A setting's value; an empty value counts as not given.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.settings
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// The last argument's key and its verbatim value (possibly empty), when one was given.
    pub fn last(&self) -> Option<(&'static str, &str)> {
        self.last.as_ref().map(|(k, v)| (*k, v.as_str()))
    }
}

/// Text from a call, fit for a log line: control characters escaped, length bounded.
pub fn printable(text: &str) -> String {
    text.chars()
        .take(80)
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOOKUP: ArgSpec = ArgSpec {
        settings: &["org", "profile", "timeout_ms", "number_var"],
        last: &["number"],
    };

    #[test]
    fn parses_known_keys_once() {
        let args = AppArgs::parse(" org=acme  profile=p ", &LOOKUP).unwrap();
        assert_eq!(args.get("org"), Some("acme"));
        assert_eq!(args.get("profile"), Some("p"));
        assert_eq!(args.get("timeout_ms"), None);
        assert_eq!(args.last(), None);
        assert!(AppArgs::parse("org=a org=b", &LOOKUP)
            .unwrap_err()
            .contains("twice"));
        assert!(AppArgs::parse("evil=1", &LOOKUP)
            .unwrap_err()
            .contains("unknown"));
        assert!(AppArgs::parse("justaword", &LOOKUP).is_err());
        assert_eq!(AppArgs::parse("", &LOOKUP).unwrap(), AppArgs::default());
        assert!(
            AppArgs::parse(&format!("org={}", "a".repeat(5000)), &LOOKUP)
                .unwrap_err()
                .contains("longer")
        );
    }

    #[test]
    fn the_last_argument_takes_the_rest_of_the_string_verbatim() {
        let args = AppArgs::parse("org=acme number=+1 415 555 0123", &LOOKUP).unwrap();
        assert_eq!(args.get("org"), Some("acme"));
        assert_eq!(args.last(), Some(("number", "+1 415 555 0123")));
        assert_eq!(
            AppArgs::parse("number=", &LOOKUP).unwrap().last(),
            Some(("number", ""))
        );
    }

    #[test]
    fn nothing_in_the_last_value_becomes_an_argument() {
        for hostile in [
            "4155550123 org=globex",
            " profile=x",
            "4155550123 timeout_ms=60000",
            "number=4155550123 number=1",
            "4155550123 org=acme org=acme",
            "${sf_org} org=globex",
            "4155550123\norg=globex",
            "4155550123\r\n\t\u{b}\u{c}\u{1b} org=globex",
            "4155550123 evil=1 justaword",
            &format!("4155550123 {}", "org=globex ".repeat(1000)),
        ] {
            let args = AppArgs::parse(&format!("org=acme number={hostile}"), &LOOKUP)
                .unwrap_or_else(|e| panic!("{hostile:?}: {e}"));
            assert_eq!(args.get("org"), Some("acme"), "{hostile:?}");
            assert_eq!(args.get("profile"), None, "{hostile:?}");
            assert_eq!(args.get("timeout_ms"), None, "{hostile:?}");
            assert_eq!(args.last(), Some(("number", hostile)), "{hostile:?}");
        }
    }

    #[test]
    fn log_text_is_escaped() {
        assert_eq!(printable("a\nb\u{1b}[31m"), "a\\nb\\u{1b}[31m");
    }
}
