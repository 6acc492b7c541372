//! The FFI layer: the only place with `unsafe`. Everything above it works with the safe types
//! here (`Session`, `Stream`, `EventRef`) and plain Rust values.

pub mod api;
pub mod entry;
pub mod event;
pub mod guard;
pub mod interface;
pub mod log;
pub mod session;
pub mod stream;
pub mod sys;
pub mod xml;

use std::ffi::CString;

/// Text bound for FreeSWITCH as a C string. NUL bytes cannot cross; they are dropped rather than
/// failing (text from a call or from Salesforce may contain anything).
pub fn c_string(text: &str) -> CString {
    match CString::new(text) {
        Ok(c) => c,
        Err(_) => CString::new(text.replace('\0', "")).unwrap_or_default(),
    }
}
