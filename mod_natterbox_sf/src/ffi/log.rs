//! Logging through FreeSWITCH's logger. Rust text is never a format string: it is handed over as
//! the argument of "%s". The module's `tracing` events go the same way.

use std::ffi::CStr;
use std::fmt::Write as _;

use super::{c_string, sys};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Debug,
    Info,
    Notice,
    Warning,
    Error,
    Crit,
}

impl Level {
    fn raw(self) -> sys::switch_log_level_t {
        match self {
            Level::Debug => sys::switch_log_level_t_SWITCH_LOG_DEBUG,
            Level::Info => sys::switch_log_level_t_SWITCH_LOG_INFO,
            Level::Notice => sys::switch_log_level_t_SWITCH_LOG_NOTICE,
            Level::Warning => sys::switch_log_level_t_SWITCH_LOG_WARNING,
            Level::Error => sys::switch_log_level_t_SWITCH_LOG_ERROR,
            Level::Crit => sys::switch_log_level_t_SWITCH_LOG_CRIT,
        }
    }
}

/// The most verbose level the core passes on right now (`fsctl loglevel`, `SCSC_LOGLEVEL`), or
/// None when it cannot tell (shutting down). Lines above it are dropped by the core at once, so
/// there is no point formatting them.
fn core_level() -> Option<i32> {
    // Below SWITCH_LOG_DISABLE (-1): asks without setting.
    let mut level: std::os::raw::c_int = -2;
    // SAFETY: for SCSC_LOGLEVEL the core reads and writes one int through the pointer, which is
    // valid for the call.
    let rc = unsafe {
        sys::switch_core_session_ctl(
            sys::switch_session_ctl_t_SCSC_LOGLEVEL,
            (&mut level as *mut std::os::raw::c_int).cast(),
        )
    };
    (rc == 0 && level >= -1).then_some(level)
}

/// Whether a line at `level` would reach FreeSWITCH's loggers: within the core's level, or
/// within the call's own (`uuid_loglevel`) for a call's line.
// The C enum's integer type is bindgen's choice per header set.
#[allow(clippy::unnecessary_cast)]
pub fn enabled(level: Level, session: Option<&super::session::Session<'_>>) -> bool {
    let Some(mut limit) = core_level() else {
        return true;
    };
    if let Some(session) = session {
        // SAFETY: the session is alive for the callback that lent it; the call reads a field.
        let own = unsafe { sys::switch_core_session_get_loglevel(session.raw()) } as i32;
        limit = limit.max(own);
    }
    level.raw() as i32 <= limit
}

const FUNC: &CStr = c"mod_natterbox_sf";
const PERCENT_S: &CStr = c"%s";

/// Where a log line comes from: the Rust file and line of the caller, for FreeSWITCH's
/// `file:line` column.
struct Origin {
    file: std::ffi::CString,
    line: i32,
}

impl Origin {
    fn of(location: &std::panic::Location<'_>) -> Origin {
        Origin::at(location.file(), location.line())
    }

    fn at(file: &str, line: u32) -> Origin {
        // FreeSWITCH shows the file name; the crate-relative path says more than the basename.
        Origin {
            file: c_string(file),
            line: line as i32,
        }
    }
}

fn line_of(message: &str) -> std::ffi::CString {
    // switch_log_printf adds no newline.
    let mut line = String::with_capacity(message.len() + 1);
    line.push_str(message);
    line.push('\n');
    c_string(&line)
}

/// A log line not tied to a call.
#[track_caller]
pub fn log(level: Level, message: &str) {
    log_at(&Origin::of(std::panic::Location::caller()), level, message);
}

fn log_at(origin: &Origin, level: Level, message: &str) {
    let text = line_of(message);
    // SAFETY: every pointer is a NUL-terminated string that outlives the call, the format is the
    // constant "%s" with exactly one string argument, and SWITCH_CHANNEL_ID_LOG takes NULL
    // userdata.
    unsafe {
        sys::switch_log_printf(
            sys::switch_text_channel_t_SWITCH_CHANNEL_ID_LOG,
            origin.file.as_ptr(),
            FUNC.as_ptr(),
            origin.line,
            std::ptr::null(),
            level.raw(),
            PERCENT_S.as_ptr(),
            text.as_ptr(),
        )
    }
}

/// A log line of one call, carrying its UUID (`SWITCH_CHANNEL_SESSION_LOG`).
#[track_caller]
pub fn log_session(session: &super::session::Session<'_>, level: Level, message: &str) {
    let origin = Origin::of(std::panic::Location::caller());
    let text = line_of(message);
    // SAFETY: as in `log`; SWITCH_CHANNEL_ID_SESSION takes the session pointer as userdata and
    // the session is alive for the duration of the callback that lent us `session`.
    unsafe {
        sys::switch_log_printf(
            sys::switch_text_channel_t_SWITCH_CHANNEL_ID_SESSION,
            origin.file.as_ptr(),
            FUNC.as_ptr(),
            origin.line,
            session.raw() as *const std::os::raw::c_char,
            level.raw(),
            PERCENT_S.as_ptr(),
            text.as_ptr(),
        )
    }
}

/// Forwards `tracing` events (from the engine and the shared crate) to FreeSWITCH's logger.
struct FreeswitchLogger;

struct MessageVisitor(String);

impl tracing::field::Visit for MessageVisitor {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" {
            self.0.push_str(value);
        } else {
            let _ = write!(self.0, " {}={value}", field.name());
        }
    }
}

impl tracing::Subscriber for FreeswitchLogger {
    fn register_callsite(
        &self,
        _: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        // Asked again each time: FreeSWITCH's level changes at run time (fsctl loglevel).
        tracing::subscriber::Interest::sometimes()
    }

    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        // Our crates down to DEBUG; dependencies (hyper's connection chatter) only WARN and up;
        // nothing the core would drop anyway.
        let ours = metadata.target().starts_with("natterbox");
        let wanted = *metadata.level()
            <= if ours {
                tracing::Level::DEBUG
            } else {
                tracing::Level::WARN
            };
        wanted && enabled(level_of(metadata.level()), None)
    }

    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }

    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}

    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        let mut visitor = MessageVisitor(String::from("mod_natterbox_sf: "));
        event.record(&mut visitor);
        let level = level_of(event.metadata().level());
        let metadata = event.metadata();
        let origin = Origin::at(
            metadata.file().unwrap_or("mod_natterbox_sf"),
            metadata.line().unwrap_or(0),
        );
        log_at(&origin, level, &visitor.0);
    }

    fn enter(&self, _: &tracing::span::Id) {}

    fn exit(&self, _: &tracing::span::Id) {}
}

fn level_of(level: &tracing::Level) -> Level {
    match *level {
        tracing::Level::ERROR => Level::Error,
        tracing::Level::WARN => Level::Warning,
        tracing::Level::INFO => Level::Info,
        _ => Level::Debug,
    }
}

/// Routes `tracing` to FreeSWITCH. The global dispatcher can be set once per loaded image; a
/// module loaded again into the same image finds it already set, pointing here.
pub fn install() {
    let _ = tracing::subscriber::set_global_default(FreeswitchLogger);
}
