//! The escapers every piece of call text goes through on its way into a query
//! (common/src/salesforce/escape.rs) and the URL encoding of queries (`QueryValue`).
//!
//! Properties (the escapers drop nothing: they write the text back exactly or refuse it): a SOQL
//! literal is one literal (quoted at both ends, every quote, double quote and backslash inside
//! escaped, only SOQL's escape sequences, no raw control character) that reads back as the
//! value; a SOSL term and a SOSL phrase have every reserved character escaped and read back as
//! the value, and are refused only for a control character, an empty text or (a term) an
//! operator word; a query value contains only unreserved characters, `+` and `%XX`, and decodes
//! to the text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use natterbox_common::salesforce::escape::{soql_string, sosl_phrase, sosl_term};
use natterbox_common::salesforce::QueryValue;

const SOSL_RESERVED: &str = "?&|!{}[]()^~*:\\\"'+-";

/// The value a SOQL string literal stands for, or None if it is not exactly one literal.
fn read_soql_literal(literal: &str) -> Option<String> {
    let inner = literal.strip_prefix('\'')?.strip_suffix('\'')?;
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(match chars.next()? {
                '\'' => '\'',
                '"' => '"',
                '\\' => '\\',
                'n' => '\n',
                'r' => '\r',
                't' => '\t',
                'b' => '\u{8}',
                'f' => '\u{c}',
                'u' => {
                    let hex: String = chars.by_ref().take(4).collect();
                    if hex.len() != 4 {
                        return None;
                    }
                    char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?
                }
                _ => return None,
            }),
            '\'' | '"' => return None,
            c if c.is_control() => return None,
            c => out.push(c),
        }
    }
    Some(out)
}

/// The text a SOSL term stands for, or None if a reserved character is unescaped.
fn read_sosl_term(term: &str) -> Option<String> {
    let mut out = String::new();
    let mut chars = term.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let escaped = chars.next()?;
                if !SOSL_RESERVED.contains(escaped) {
                    return None;
                }
                out.push(escaped);
            }
            c if SOSL_RESERVED.contains(c) || c.is_control() => return None,
            c => out.push(c),
        }
    }
    Some(out)
}

fn form_decode(encoded: &str) -> Option<Vec<u8>> {
    let bytes = encoded.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b if b.is_ascii_alphanumeric() || b"-_.~*(),".contains(&b) => out.push(b),
            _ => return None,
        }
        i += 1;
    }
    Some(out)
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let literal = soql_string(text);
    assert_eq!(
        read_soql_literal(&literal).as_deref(),
        Some(text),
        "SOQL literal {literal:?}"
    );

    let has_control = text.chars().any(char::is_control);
    let blank = text.trim().is_empty();
    match sosl_term(text) {
        Ok(term) => assert_eq!(
            read_sosl_term(&term).as_deref(),
            Some(text),
            "SOSL term {term:?}"
        ),
        Err(_) => {
            let operator = text
                .split_whitespace()
                .any(|w| ["and", "or", "not"].contains(&w.to_ascii_lowercase().as_str()));
            assert!(
                has_control || blank || operator,
                "SOSL term refused {text:?}"
            );
        }
    }
    match sosl_phrase(text) {
        Ok(phrase) => {
            let inner = phrase
                .strip_prefix('"')
                .and_then(|p| p.strip_suffix('"'))
                .expect("a quoted phrase");
            assert_eq!(
                read_sosl_term(inner).as_deref(),
                Some(text),
                "SOSL phrase {phrase:?}"
            );
        }
        Err(_) => assert!(has_control || blank, "SOSL phrase refused {text:?}"),
    }

    let value = QueryValue::from(text);
    assert_eq!(
        form_decode(value.encoded()).as_deref(),
        Some(text.as_bytes()),
        "{:?}",
        value.encoded()
    );
});
