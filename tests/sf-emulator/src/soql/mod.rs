//! The SOQL subset: `SELECT fields|COUNT() FROM obj [WHERE …] [ORDER BY …] [LIMIT n] [OFFSET n]`.

pub mod eval;
pub mod lexer;
pub mod parser;

use crate::error::{caret_message, ApiError};

/// A parse or validation error at a byte position of the query text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryError {
    pub code: &'static str,
    pub pos: usize,
    pub message: String,
}

impl QueryError {
    pub fn malformed(pos: usize, message: impl Into<String>) -> Self {
        QueryError {
            code: "MALFORMED_QUERY",
            pos,
            message: message.into(),
        }
    }

    pub fn new(code: &'static str, pos: usize, message: impl Into<String>) -> Self {
        QueryError {
            code,
            pos,
            message: message.into(),
        }
    }

    /// The REST error, with the caret-style message (400).
    pub fn to_api(&self, src: &str) -> ApiError {
        ApiError::bad_request(self.code, caret_message(src, self.pos, &self.message))
    }
}

pub use lexer::LikeChar;

/// One lexed string literal (`'…'` with its quotes, nothing around it).
fn single_literal(literal: &str) -> Result<lexer::StrLit, QueryError> {
    let toks = lexer::lex(literal)?;
    match toks.as_slice() {
        [lexer::Token {
            tok: lexer::Tok::Str(s),
            pos: 0,
        }, lexer::Token {
            tok: lexer::Tok::Eof,
            ..
        }] => Ok(s.clone()),
        _ => Err(QueryError::malformed(
            0,
            "expected exactly one quoted string literal",
        )),
    }
}

/// Decodes a SOQL string literal (`'…'`, quotes included) exactly as the emulator's parser reads
/// a comparison value (`=`, `!=`, `IN (…)`, …): the escapes `\n \r \t \b \f` (either case),
/// `\" \' \\` and `\uXXXX` (a surrogate pair as two escapes); `\%`, `\_` and any other backslash
/// sequence are MALFORMED_QUERY, as in Salesforce. Use it as the decoder for escaper round trips.
pub fn decode_string_literal(literal: &str) -> Result<String, QueryError> {
    let s = single_literal(literal)?;
    if let Some(at) = s.like_escape_at {
        return Err(parser::like_only_escape(literal, at, &s.raw));
    }
    Ok(s.value)
}

/// Decodes a SOQL string literal as the pattern of a `LIKE`: unescaped `%` and `_` are
/// wildcards, `\%` and `\_` the literal characters, other escapes as `decode_string_literal`.
pub fn decode_like_pattern(literal: &str) -> Result<Vec<LikeChar>, QueryError> {
    Ok(single_literal(literal)?.pattern)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_escapes_decode() {
        let cases = [
            (r"'O\'Brien'", "O'Brien"),
            (r"'a\\b'", "a\\b"),
            (r#"'say \"hi\"'"#, "say \"hi\""),
            (
                r"'\n\N\r\R\t\T\b\B\f\F'",
                "\n\n\r\r\t\t\u{8}\u{8}\u{c}\u{c}",
            ),
            (r"'caf\u00e9'", "café"),
            (r"'\u0000\u0007\u001B\u0085'", "\u{0}\u{7}\u{1b}\u{85}"),
            (r"'\uD83D\uDE00'", "😀"),
            ("'raw é and 😀'", "raw é and 😀"),
            ("'50%_off'", "50%_off"),
        ];
        for (lit, want) in cases {
            assert_eq!(decode_string_literal(lit).as_deref(), Ok(want), "{lit}");
        }
    }

    #[test]
    fn other_backslashes_are_malformed() {
        for lit in [
            r"'\q'",
            r"'\%'",
            r"'a\_b'",
            r"'\u12'",
            r"'\u12G4'",
            r"'\uD83D'",
            r"'\uDE00'",
            r"'\uD83Dx'",
            r"'\x41'",
            r"'\'",
            "'unterminated",
            "'a' 'b'",
            " 'a'",
            "a",
        ] {
            let e = decode_string_literal(lit).unwrap_err();
            assert_eq!(e.code, "MALFORMED_QUERY", "{lit}");
        }
        let e = decode_string_literal(r"'50\%'").unwrap_err();
        assert!(
            e.message
                .contains("Illegal character sequence '\\%' in string literal"),
            "{}",
            e.message
        );
    }

    /// A reference escaper: the documented escapes, `\uXXXX` for other controls.
    fn escape(s: &str) -> String {
        let mut out = String::from("'");
        for c in s.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\'' => out.push_str("\\'"),
                '\n' => out.push_str("\\n"),
                c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
                c => out.push(c),
            }
        }
        out.push('\'');
        out
    }

    #[test]
    fn every_character_round_trips_through_the_decoder() {
        let mut all: String = (0u32..0x3000).filter_map(char::from_u32).collect();
        all.push_str("😀𝔘\u{10FFFF}%_'\\\"");
        for chunk in all.chars().collect::<Vec<_>>().chunks(97) {
            let text: String = chunk.iter().collect();
            assert_eq!(
                decode_string_literal(&escape(&text)).as_deref(),
                Ok(text.as_str())
            );
        }
        assert_eq!(decode_string_literal("''").as_deref(), Ok(""));
    }

    #[test]
    fn like_patterns_take_percent_and_underscore_escapes() {
        use LikeChar::*;
        assert_eq!(
            decode_like_pattern(r"'a\%_%\_'").unwrap(),
            [Lit('a'), Lit('%'), One, Any, Lit('_')]
        );
        let (q, _) = parser::parse(r"SELECT Id FROM Account WHERE Name LIKE 'Ter\%%'").unwrap();
        assert!(q.filter.is_some());
        let e = parser::parse(r"SELECT Id FROM Account WHERE Name = 'Ter\%'").unwrap_err();
        assert_eq!(e.code, "MALFORMED_QUERY");
        let e = parser::parse(r"SELECT Id FROM Account WHERE Name IN ('a', 'b\_')").unwrap_err();
        assert_eq!(e.code, "MALFORMED_QUERY");
    }
}
