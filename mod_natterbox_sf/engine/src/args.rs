//! Application arguments: `key=value` words. The data string is built by the dialplan, often
//! from channel variables a caller controls, so it is parsed strictly: known keys, each once.

use std::collections::BTreeMap;

/// Longest argument string accepted.
const MAX_ARGS_LEN: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AppArgs(BTreeMap<String, String>);

impl AppArgs {
    pub fn parse(data: &str, known: &[&str]) -> Result<AppArgs, String> {
        if data.len() > MAX_ARGS_LEN {
            return Err(format!("arguments longer than {MAX_ARGS_LEN} bytes"));
        }
        let mut map = BTreeMap::new();
        for word in data.split_ascii_whitespace() {
            let Some((key, value)) = word.split_once('=') else {
                return Err(format!("\"{}\" is not key=value", printable(word)));
            };
            if !known.contains(&key) {
                return Err(format!(
                    "unknown argument \"{}\" (known: {})",
                    printable(key),
                    known.join(", ")
                ));
            }
            if map.insert(key.to_string(), value.to_string()).is_some() {
                return Err(format!("argument {key} given twice"));
            }
        }
        Ok(AppArgs(map))
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
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

    #[test]
    fn parses_known_keys_once() {
        let args = AppArgs::parse(" org=acme  number=+14155550123 ", &["org", "number"]).unwrap();
        assert_eq!(args.get("org"), Some("acme"));
        assert_eq!(args.get("number"), Some("+14155550123"));
        assert_eq!(args.get("profile"), None);
        assert!(AppArgs::parse("org=a org=b", &["org"]).is_err());
        assert!(AppArgs::parse("evil=1", &["org"])
            .unwrap_err()
            .contains("unknown"));
        assert!(AppArgs::parse("justaword", &["org"]).is_err());
        assert_eq!(AppArgs::parse("", &["org"]).unwrap(), AppArgs::default());
    }

    #[test]
    fn log_text_is_escaped() {
        assert_eq!(printable("a\nb\u{1b}[31m"), "a\\nb\\u{1b}[31m");
    }
}
