//! The output stream of an API command.

use super::{c_string, sys};

pub struct Stream<'a> {
    raw: &'a mut sys::switch_stream_handle_t,
}

impl<'a> Stream<'a> {
    /// # Safety
    /// `raw` must be NULL or a stream handle valid for `'a`, as FreeSWITCH passes to API
    /// callbacks.
    pub unsafe fn from_raw(raw: *mut sys::switch_stream_handle_t) -> Option<Stream<'a>> {
        // SAFETY: caller's contract.
        unsafe { raw.as_mut() }.map(|raw| Stream { raw })
    }

    pub fn write(&mut self, text: &str) {
        let Some(write) = self.raw.write_function else {
            return;
        };
        let text = c_string(text);
        // SAFETY: write_function is FreeSWITCH's printf-style writer for this stream; the format
        // is the constant "%s" with one NUL-terminated argument.
        unsafe {
            write(self.raw, c"%s".as_ptr(), text.as_ptr());
        }
    }
}
