//! Salesforce API errors: one value, rendered as a REST error array, a collection result or a
//! SOAP fault by the layer that answers.

use serde_json::{json, Value};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub code: String,
    pub message: String,
    pub fields: Vec<String>,
}

impl ApiError {
    pub fn new(status: u16, code: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code: code.into(),
            message: message.into(),
            fields: vec![],
        }
    }

    pub fn with_fields(mut self, fields: &[&str]) -> Self {
        self.fields = fields.iter().map(|s| s.to_string()).collect();
        self
    }

    pub fn not_found() -> Self {
        ApiError::new(404, "NOT_FOUND", "The requested resource does not exist")
    }

    pub fn invalid_session() -> Self {
        ApiError::new(401, "INVALID_SESSION_ID", "Session expired or invalid")
    }

    pub fn bad_request(code: &str, message: impl Into<String>) -> Self {
        ApiError::new(400, code, message)
    }

    /// The REST array element (`errorCode`); `fields` only when there are some.
    pub fn rest_json(&self) -> Value {
        let mut v = json!({"message": self.message, "errorCode": self.code});
        if !self.fields.is_empty() {
            v["fields"] = json!(self.fields);
        }
        v
    }

    /// The element of a per-record result (`statusCode`, `fields` always present).
    pub fn record_json(&self) -> Value {
        json!({"statusCode": self.code, "message": self.message, "fields": self.fields})
    }
}

/// A query/search error with its position, rendered the way Salesforce shows SOQL errors:
/// the query line, a caret under the column, `ERROR at Row:r:Column:c`, then the message.
pub fn caret_message(src: &str, pos: usize, message: &str) -> String {
    let pos = pos.min(src.len());
    let before = &src[..pos];
    let row = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let line_end = src[pos..].find('\n').map(|i| pos + i).unwrap_or(src.len());
    let col = src[line_start..pos].chars().count() + 1;
    format!(
        "\n{}\n{}^\nERROR at Row:{row}:Column:{col}\n{message}",
        &src[line_start..line_end],
        " ".repeat(col - 1)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caret_points_at_column() {
        let m = caret_message("SELECT Foo FROM Account", 7, "No such column");
        assert_eq!(
            m,
            "\nSELECT Foo FROM Account\n       ^\nERROR at Row:1:Column:8\nNo such column"
        );
    }

    #[test]
    fn rest_shape_omits_empty_fields() {
        let e = ApiError::invalid_session();
        assert_eq!(
            e.rest_json().to_string(),
            r#"{"message":"Session expired or invalid","errorCode":"INVALID_SESSION_ID"}"#
        );
    }
}
