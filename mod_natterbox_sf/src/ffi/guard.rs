//! Every entry point FreeSWITCH calls runs through `guarded`: a panic becomes a log line and a
//! failure status, never an unwind into C.

use std::panic::{catch_unwind, AssertUnwindSafe};

use super::log;

pub fn guarded<R>(entry: &str, on_panic: R, f: impl FnOnce() -> R) -> R {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            // Logging must not panic again here.
            let _ = catch_unwind(|| {
                log::log(
                    log::Level::Crit,
                    &format!("mod_natterbox_sf: {entry} panicked: {what}"),
                )
            });
            on_panic
        }
    }
}
