//! Running FreeSWITCH's own API commands (`originate`, `uuid_hold`, …) from the module's
//! call-control thread, as `fs_cli` would: `switch_api_execute` with a standard stream.

use std::ffi::CStr;

use super::{c_string, sys};

/// FreeSWITCH's `SWITCH_CMD_CHUNK_LEN`: the stream's first allocation and growth step.
const CHUNK: usize = 1024;

/// What the command printed, and whether FreeSWITCH ran it (`SWITCH_STATUS_SUCCESS`; many
/// commands still report their own failure as `-ERR …` in the text).
pub struct ApiOutput {
    pub ran: bool,
    pub text: String,
}

/// Runs `command args` with no session. Never call it on FreeSWITCH's event thread: commands
/// like `uuid_kill` fire events and wait on channels.
pub fn execute(command: &str, args: &str) -> ApiOutput {
    let command = c_string(command);
    let args = c_string(args);
    // SAFETY: a zeroed handle is the start of SWITCH_STANDARD_STREAM; every pointer field is then
    // set as that macro sets it.
    let mut stream: sys::switch_stream_handle_t = unsafe { std::mem::zeroed() };
    // SAFETY: malloc of a non-zero size; checked for NULL; freed below with free, as
    // switch_safe_free does (FreeSWITCH's writer grows it with realloc).
    let data = unsafe { libc::calloc(1, CHUNK) };
    if data.is_null() {
        return ApiOutput {
            ran: false,
            text: "-ERR out of memory".into(),
        };
    }
    stream.data = data;
    stream.end = data;
    stream.data_size = CHUNK as _;
    stream.alloc_len = CHUNK as _;
    stream.alloc_chunk = CHUNK as _;
    stream.write_function = Some(sys::switch_console_stream_write);
    stream.raw_write_function = Some(sys::switch_console_stream_raw_write);
    // SAFETY: command and args are NUL-terminated and outlive the call; session NULL is allowed
    // (the console passes NULL); the stream is a valid standard stream.
    let status = unsafe {
        sys::switch_api_execute(
            command.as_ptr(),
            args.as_ptr(),
            std::ptr::null_mut(),
            &mut stream,
        )
    };
    // SAFETY: the writer keeps `data` NUL-terminated (it may have reallocated it).
    let text = if stream.data.is_null() {
        String::new()
    } else {
        unsafe { CStr::from_ptr(stream.data as *const libc::c_char) }
            .to_string_lossy()
            .into_owned()
    };
    // SAFETY: data came from calloc/realloc and is freed once.
    unsafe { libc::free(stream.data) };
    ApiOutput {
        ran: status == sys::switch_status_t::SWITCH_STATUS_SUCCESS,
        text,
    }
}
