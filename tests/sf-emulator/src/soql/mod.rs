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
