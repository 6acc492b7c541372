//! SOQL and SOSL escaping. Everything that comes from a call (caller number, SIP headers, DTMF)
//! goes into a query only through these functions.

/// A SOQL string literal, quotes included: backslash escapes for `'`, `"`, `\` and the control
/// characters SOQL defines (`\n \r \t \b \f`); other control characters cannot be written in a
/// SOQL literal and are dropped.
pub fn soql_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        match c {
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// Characters SOSL reserves inside `FIND {…}`.
const SOSL_RESERVED: &[char] = &[
    '?', '&', '|', '!', '{', '}', '[', ']', '(', ')', '^', '~', '*', ':', '\\', '"', '\'', '+', '-',
];

/// A SOSL search term for `FIND {…}`: reserved characters backslash-escaped, control characters
/// dropped. The braces are not included.
pub fn sosl_term(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        if SOSL_RESERVED.contains(&c) {
            out.push('\\');
            out.push(c);
        } else if !c.is_control() {
            out.push(c);
        }
    }
    out
}

/// A SOSL quoted phrase for `FIND {"…" OR "…"}`: the term's escaping inside double quotes, so
/// the value is searched as one phrase and cannot close the quotes or the braces.
pub fn sosl_phrase(value: &str) -> String {
    format!("\"{}\"", sosl_term(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soql_literals_cannot_be_closed_by_the_value() {
        assert_eq!(soql_string("O'Brien"), r"'O\'Brien'");
        assert_eq!(soql_string(r"a\' OR Id != '"), r"'a\\\' OR Id != \''");
        assert_eq!(soql_string("line\nbreak\t\"q\""), r#"'line\nbreak\t\"q\"'"#);
        assert_eq!(soql_string("nul\0bell\u{7}"), "'nulbell'");
    }

    #[test]
    fn sosl_terms_escape_every_reserved_character() {
        assert_eq!(sosl_term("415-555-0123"), r"415\-555\-0123");
        assert_eq!(sosl_term("+44"), r"\+44");
        assert_eq!(sosl_term("a} RETURNING User(Id"), r"a\} RETURNING User\(Id");
        let all = "?&|!{}[]()^~*:\\\"'+-";
        let escaped = sosl_term(all);
        assert_eq!(escaped.len(), all.len() * 2);
        assert!(escaped.chars().step_by(2).all(|c| c == '\\'));
    }

    #[test]
    fn sosl_phrases_are_quoted_terms() {
        assert_eq!(sosl_phrase("442079460958"), r#""442079460958""#);
        assert_eq!(sosl_phrase(r#"a" OR "b"#), r#""a\" OR \"b""#);
        assert_eq!(sosl_phrase("x}"), r#""x\}""#);
    }
}
