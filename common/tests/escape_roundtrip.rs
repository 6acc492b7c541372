//! The escapers' promise, for every string: what they write, Salesforce reads back as exactly
//! the given text. The decoder is the emulator's own SOQL lexer and SOSL parser, which follow
//! Salesforce's documented escapes; a character the escaper refuses must be one SOSL cannot carry.

use natterbox_common::salesforce::escape::{
    soql_like, soql_string, sosl_any_phrase, sosl_phrase, sosl_term, LikeMatch, SoslError,
};
use proptest::prelude::*;
use sf_emulator::search_term::{decode_search_term, TermExpr};
use sf_emulator::soql::{decode_like_pattern, decode_string_literal, LikeChar};

/// Characters that count towards SOSL's two-character minimum (whitespace does not).
fn significant(value: &str) -> usize {
    value.chars().filter(|c| !c.is_whitespace()).count()
}

/// Strings that stress the escapers: quotes, backslashes, LIKE wildcards, SOSL reserved
/// characters, every C0/C1 control, Unicode spaces, marks and astral characters.
fn hostile_text() -> impl Strategy<Value = String> {
    let pieces = prop_oneof![
        4 => any::<char>().prop_map(String::from),
        4 => prop::sample::select(vec![
            "'", "\"", "\\", "%", "_", "?", "&", "|", "!", "{", "}", "[", "]", "(", ")", "^",
            "~", "*", ":", "+", "-", " ", "\\u0041", "\\'", "OR", "and", "not",
            "\u{a0}", "\u{200b}", "\u{200f}", "\u{2028}", "\u{2212}", "\u{fffd}", "😀", "é",
        ])
        .prop_map(str::to_string),
        2 => (0u32..0x20).prop_map(|c| char::from_u32(c).unwrap().to_string()),
        1 => (0x7fu32..0xa0).prop_map(|c| char::from_u32(c).unwrap().to_string()),
        4 => "[0-9a-zA-Z]{1,4}",
    ];
    prop::collection::vec(pieces, 0..24).prop_map(|v| v.concat())
}

fn like_pattern(value: &str, how: LikeMatch) -> Vec<LikeChar> {
    let mut pattern = Vec::new();
    if matches!(how, LikeMatch::EndsWith | LikeMatch::Contains) {
        pattern.push(LikeChar::Any);
    }
    pattern.extend(value.chars().map(LikeChar::Lit));
    if matches!(how, LikeMatch::StartsWith | LikeMatch::Contains) {
        pattern.push(LikeChar::Any);
    }
    pattern
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 2000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn soql_literals_decode_to_the_input(value in hostile_text()) {
        prop_assert_eq!(decode_string_literal(&soql_string(&value)), Ok(value));
    }

    #[test]
    fn like_patterns_decode_to_the_input_with_only_the_asked_wildcards(
        value in hostile_text(),
        how in prop::sample::select(vec![
            LikeMatch::Exactly, LikeMatch::StartsWith, LikeMatch::EndsWith, LikeMatch::Contains,
        ]),
    ) {
        prop_assert_eq!(decode_like_pattern(&soql_like(&value, how)), Ok(like_pattern(&value, how)));
    }

    #[test]
    fn a_sosl_phrase_searches_exactly_the_input_or_is_refused_for_a_control_character(
        value in hostile_text(),
    ) {
        match sosl_phrase(&value) {
            Ok(phrase) => match decode_search_term(&phrase) {
                Ok(term) => prop_assert_eq!(term.single_literal(), Some(value.as_str())),
                // SOSL's own rule, not the escaper's: a term needs two non-space characters.
                Err(e) => {
                    prop_assert_eq!(e.code, "INVALID_SEARCH");
                    prop_assert!(significant(&value) < 2);
                }
            },
            Err(SoslError::Empty) => prop_assert!(value.trim().is_empty()),
            Err(SoslError::Unsearchable { character, at }) => {
                prop_assert!(character.is_control());
                prop_assert_eq!(value[at..].chars().next(), Some(character));
                prop_assert!(value[..at].chars().all(|c| !c.is_control()));
            }
            Err(e) => prop_assert!(false, "phrase refused for {e}"),
        }
    }

    #[test]
    fn any_phrase_searches_each_input_as_one_alternative(
        values in prop::collection::vec(hostile_text(), 1..4),
    ) {
        // A leading two-letter phrase keeps every term above SOSL's minimum length.
        let mut all = vec!["zz".to_string()];
        all.extend(values);
        match sosl_any_phrase(&all) {
            Ok(term) => {
                let term = decode_search_term(&term).map_err(|e| TestCaseError::fail(e.message))?;
                prop_assert_eq!(term.literals(), all.clone());
                prop_assert!(term.operands().iter().all(|o| o.phrase && !o.has_wildcards()));
                prop_assert!(matches!(term.expr, TermExpr::Or(_)));
            }
            Err(SoslError::Empty) => prop_assert!(all.iter().any(|v| v.trim().is_empty())),
            Err(SoslError::Unsearchable { character, .. }) => {
                prop_assert!(character.is_control());
                prop_assert!(all.iter().any(|v| v.contains(character)));
            }
            Err(e) => prop_assert!(false, "phrases refused for {e}"),
        }
    }

    #[test]
    fn a_sosl_term_searches_the_input_words_or_is_refused_with_the_reason(
        value in hostile_text(),
    ) {
        match sosl_term(&value) {
            Ok(term) => match decode_search_term(&term) {
                Ok(decoded) => {
                    let words: Vec<&str> = value.split_whitespace().collect();
                    prop_assert_eq!(decoded.literals(), words);
                    prop_assert!(decoded.operands().iter().all(|o| !o.has_wildcards()));
                }
                Err(e) => {
                    prop_assert_eq!(e.code, "INVALID_SEARCH");
                    prop_assert!(significant(&value) < 2);
                }
            },
            Err(SoslError::Empty) => prop_assert!(value.trim().is_empty()),
            Err(SoslError::OperatorWord(word)) => {
                prop_assert!(["AND", "OR", "NOT"].contains(&word.to_ascii_uppercase().as_str()));
                prop_assert!(value.split_whitespace().any(|w| w == word));
            }
            Err(SoslError::Unsearchable { character, .. }) => {
                prop_assert!(character.is_control());
            }
        }
    }
}

#[test]
fn the_phrase_builder_gives_what_a_lookup_searches() {
    let term = sosl_any_phrase(["442079460958", "02079460958"]).unwrap();
    assert_eq!(term, r#""442079460958" OR "02079460958""#);
    assert_eq!(
        decode_search_term(&term).unwrap().literals(),
        ["442079460958", "02079460958"]
    );
    let phrase = sosl_phrase("+44 20-7946").unwrap();
    assert_eq!(phrase, r#""\+44 20\-7946""#);
    assert_eq!(
        decode_search_term(&phrase).unwrap().single_literal(),
        Some("+44 20-7946")
    );
}
