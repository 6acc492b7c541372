//! SOQL and SOSL escaping. Everything that comes from a call (caller number, SIP headers, DTMF)
//! goes into a query only through these functions. None of them drops a character: each one
//! either writes it so that Salesforce reads back exactly the given text, or refuses the text
//! with a typed error.
//!
//! SOQL string literals (Salesforce, "Quoted String Escape Sequences"): `\n \r \t \b \f \" \' \\`,
//! in LIKE also `\% \_`, and `\uXXXX` for any character. SOSL search terms (Salesforce, "FIND
//! {SearchQuery}"): the reserved characters `? & | ! { } [ ] ( ) ^ ~ * : \ " ' + -` are written with
//! a backslash, inside a quoted phrase too; SOSL documents no escape for control characters,
//! and the words AND, OR and NOT are operators unless they are inside a quoted phrase.

use std::fmt;

/// A SOQL string literal, quotes included. `'`, `"` and `\` get a backslash, and so do newline,
/// carriage return and tab (`\n \r \t`); every other control character is written `\uXXXX`
/// (`\b` and `\f` exist too, but the documentation names `\b` "bell", so the unambiguous form is
/// used). Everything else, any Unicode, passes as it is.
pub fn soql_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    push_soql_chars(&mut out, value, false);
    out.push('\'');
    out
}

/// Where a LIKE pattern lets other text stand around the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LikeMatch {
    /// The field equals the value (LIKE is case-insensitive, like `=`).
    Exactly,
    /// The field starts with the value: `'value%'`.
    StartsWith,
    /// The field ends with the value: `'%value'`.
    EndsWith,
    /// The value occurs anywhere in the field: `'%value%'`.
    Contains,
}

/// A SOQL LIKE pattern literal, quotes included, in which the value's own `%` and `_` are
/// literal (`\%`, `\_`) and only `how` adds wildcards. Otherwise escaped as [`soql_string`].
pub fn soql_like(value: &str, how: LikeMatch) -> String {
    let mut out = String::with_capacity(value.len() + 4);
    out.push('\'');
    if matches!(how, LikeMatch::EndsWith | LikeMatch::Contains) {
        out.push('%');
    }
    push_soql_chars(&mut out, value, true);
    if matches!(how, LikeMatch::StartsWith | LikeMatch::Contains) {
        out.push('%');
    }
    out.push('\'');
    out
}

fn push_soql_chars(out: &mut String, value: &str, like: bool) {
    for c in value.chars() {
        match c {
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '%' if like => out.push_str("\\%"),
            '_' if like => out.push_str("\\_"),
            // Control characters are all in the Basic Multilingual Plane: four hex digits hold them.
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
}

/// Characters SOSL reserves inside `FIND {…}`, quoted phrases included.
const SOSL_RESERVED: &[char] = &[
    '?', '&', '|', '!', '{', '}', '[', ']', '(', ')', '^', '~', '*', ':', '\\', '"', '\'', '+', '-',
];

/// Words that are operators in a SOSL search term unless they are inside a quoted phrase.
const SOSL_OPERATORS: &[&str] = &["AND", "OR", "NOT"];

/// Why a text cannot be written as a SOSL search term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SoslError {
    /// A character SOSL has no way to carry (a control character: SOSL documents no escape for
    /// it). `at` is its byte offset in the text.
    Unsearchable { character: char, at: usize },
    /// An operator word (AND, OR, NOT) in an unquoted term, where it would combine the words
    /// around it instead of being searched; [`sosl_phrase`] searches it.
    OperatorWord(String),
    /// Nothing to search for.
    Empty,
}

impl fmt::Display for SoslError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SoslError::Unsearchable { character, at } => write!(
                f,
                "SOSL cannot search for the control character {} (at byte {at})",
                character.escape_unicode()
            ),
            SoslError::OperatorWord(word) => write!(
                f,
                "\"{word}\" is a SOSL operator in an unquoted search term"
            ),
            SoslError::Empty => f.write_str("an empty SOSL search term"),
        }
    }
}

impl std::error::Error for SoslError {}

fn push_sosl_chars(out: &mut String, value: &str) -> Result<(), SoslError> {
    for (at, c) in value.char_indices() {
        if SOSL_RESERVED.contains(&c) {
            out.push('\\');
            out.push(c);
        } else if c.is_control() {
            return Err(SoslError::Unsearchable { character: c, at });
        } else {
            out.push(c);
        }
    }
    Ok(())
}

/// A SOSL search term for `FIND {…}` (braces not included): words separated by whitespace,
/// every reserved character backslash-escaped, so `*` and `?` are searched, not wildcards.
/// Refuses control characters and the operator words AND, OR, NOT (any case), which a quoted
/// phrase ([`sosl_phrase`]) can search.
pub fn sosl_term(value: &str) -> Result<String, SoslError> {
    if value.trim().is_empty() {
        return Err(SoslError::Empty);
    }
    if let Some(word) = value
        .split_whitespace()
        .find(|w| SOSL_OPERATORS.iter().any(|op| w.eq_ignore_ascii_case(op)))
    {
        return Err(SoslError::OperatorWord(word.to_string()));
    }
    let mut out = String::with_capacity(value.len() + 8);
    push_sosl_chars(&mut out, value)?;
    Ok(out)
}

/// A quoted SOSL phrase, `"…"`, for `FIND {…}`: the words in this order, every reserved
/// character (the quote too) backslash-escaped, operator words searched as words. Refuses
/// control characters and a text with nothing but whitespace.
pub fn sosl_phrase(value: &str) -> Result<String, SoslError> {
    if value.trim().is_empty() {
        return Err(SoslError::Empty);
    }
    let mut out = String::with_capacity(value.len() + 8);
    out.push('"');
    push_sosl_chars(&mut out, value)?;
    out.push('"');
    Ok(out)
}

/// A search term that finds any of the phrases: `"a" OR "b" OR …` (braces not included), each
/// one a [`sosl_phrase`]. Refuses an empty list.
pub fn sosl_any_phrase<I>(phrases: I) -> Result<String, SoslError>
where
    I: IntoIterator,
    I::Item: AsRef<str>,
{
    let mut out = String::new();
    for phrase in phrases {
        if !out.is_empty() {
            out.push_str(" OR ");
        }
        out.push_str(&sosl_phrase(phrase.as_ref())?);
    }
    if out.is_empty() {
        return Err(SoslError::Empty);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soql_literals_cannot_be_closed_by_the_value() {
        assert_eq!(soql_string("O'Brien"), r"'O\'Brien'");
        assert_eq!(soql_string(r"a\' OR Id != '"), r"'a\\\' OR Id != \''");
        assert_eq!(soql_string("line\nbreak\t\"q\""), r#"'line\nbreak\t\"q\"'"#);
    }

    #[test]
    fn soql_writes_every_control_character_instead_of_dropping_it() {
        assert_eq!(
            soql_string("nul\0bell\u{7}esc\u{1b}vt\u{b}nel\u{85}"),
            r"'nul\u0000bell\u0007esc\u001bvt\u000bnel\u0085'"
        );
        assert_eq!(soql_string("\u{8}\u{c}\u{7f}"), r"'\u0008\u000c\u007f'");
        // Not control characters: passed as they are.
        assert_eq!(
            soql_string("é\u{a0}\u{200b}\u{2028}😀"),
            "'é\u{a0}\u{200b}\u{2028}😀'"
        );
    }

    #[test]
    fn like_patterns_match_the_value_literally() {
        assert_eq!(soql_like("50%_off", LikeMatch::Exactly), r"'50\%\_off'");
        assert_eq!(soql_like("a'b", LikeMatch::StartsWith), r"'a\'b%'");
        assert_eq!(soql_like("0123", LikeMatch::EndsWith), "'%0123'");
        assert_eq!(soql_like("x\\y\0", LikeMatch::Contains), r"'%x\\y\u0000%'");
        // Outside LIKE, % and _ are plain characters and must not be escaped: `\%` is an error there.
        assert_eq!(soql_string("50%_off"), "'50%_off'");
    }

    #[test]
    fn sosl_terms_escape_every_reserved_character() {
        assert_eq!(sosl_term("415-555-0123").unwrap(), r"415\-555\-0123");
        assert_eq!(sosl_term("+44").unwrap(), r"\+44");
        assert_eq!(
            sosl_term("a} RETURNING User(Id").unwrap(),
            r"a\} RETURNING User\(Id"
        );
        let all = "?&|!{}[]()^~*:\\\"'+-";
        let escaped = sosl_term(all).unwrap();
        assert_eq!(escaped.len(), all.len() * 2);
        assert!(escaped.chars().step_by(2).all(|c| c == '\\'));
    }

    #[test]
    fn sosl_refuses_what_it_cannot_carry_instead_of_dropping_it() {
        assert_eq!(
            sosl_term("415\u{7}555"),
            Err(SoslError::Unsearchable {
                character: '\u{7}',
                at: 3
            })
        );
        for c in [
            '\0', '\n', '\r', '\t', '\u{b}', '\u{1b}', '\u{85}', '\u{7f}',
        ] {
            let text = format!("12{c}34");
            assert!(
                matches!(sosl_phrase(&text), Err(SoslError::Unsearchable { character, at: 2 }) if character == c),
                "{c:?}"
            );
            assert!(sosl_term(&text).is_err());
        }
        assert_eq!(sosl_term("  "), Err(SoslError::Empty));
        assert_eq!(sosl_phrase(""), Err(SoslError::Empty));
        assert_eq!(
            sosl_term("smith or jones"),
            Err(SoslError::OperatorWord("or".into()))
        );
        assert!(sosl_term("Oregon Andover Notting").is_ok());
        assert!(SoslError::Empty.to_string().contains("empty"));
    }

    #[test]
    fn sosl_phrases_quote_and_escape() {
        assert_eq!(sosl_phrase("442079460958").unwrap(), "\"442079460958\"");
        assert_eq!(
            sosl_phrase(r#"say "hi" OR bye*"#).unwrap(),
            r#""say \"hi\" OR bye\*""#
        );
        assert_eq!(
            sosl_any_phrase(["442079460958", "02079460958"]).unwrap(),
            r#""442079460958" OR "02079460958""#
        );
        assert_eq!(sosl_any_phrase(Vec::<String>::new()), Err(SoslError::Empty));
        assert!(sosl_any_phrase(["1", "\0"]).is_err());
    }
}
