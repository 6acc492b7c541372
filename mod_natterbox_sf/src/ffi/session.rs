//! A call's session and channel, borrowed for the duration of a callback.

use std::ffi::CStr;
use std::marker::PhantomData;

use super::{c_string, sys};

pub struct Session<'a> {
    raw: *mut sys::switch_core_session_t,
    channel: *mut sys::switch_channel_t,
    _borrowed: PhantomData<&'a sys::switch_core_session_t>,
}

impl<'a> Session<'a> {
    /// # Safety
    /// `raw` must be NULL or a session that stays valid for `'a` (FreeSWITCH guarantees this for
    /// the session passed to an application or API callback while the callback runs).
    pub unsafe fn from_raw(raw: *mut sys::switch_core_session_t) -> Option<Session<'a>> {
        if raw.is_null() {
            return None;
        }
        // SAFETY: raw is a valid session (caller's contract); every session has a channel.
        let channel = unsafe { sys::switch_core_session_get_channel(raw) };
        if channel.is_null() {
            return None;
        }
        Some(Session {
            raw,
            channel,
            _borrowed: PhantomData,
        })
    }

    pub fn raw(&self) -> *mut sys::switch_core_session_t {
        self.raw
    }

    pub fn uuid(&self) -> String {
        // SAFETY: the session is valid for 'a; the UUID string lives as long as the session.
        let uuid = unsafe { sys::switch_core_session_get_uuid(self.raw) };
        if uuid.is_null() {
            return String::new();
        }
        // SAFETY: non-NULL, NUL-terminated, owned by the session.
        unsafe { CStr::from_ptr(uuid) }
            .to_string_lossy()
            .into_owned()
    }

    /// A channel variable's value, copied out.
    pub fn var(&self, name: &str) -> Option<String> {
        let name = c_string(name);
        // SAFETY: channel valid for 'a; with dup=TRUE the value is copied into the session's
        // pool (freed by FreeSWITCH with the session, never by us), so no other thread can
        // change it under us while we copy it.
        let value = unsafe {
            sys::switch_channel_get_variable_dup(
                self.channel,
                name.as_ptr(),
                sys::switch_bool_t_SWITCH_TRUE,
                -1,
            )
        };
        if value.is_null() {
            return None;
        }
        // SAFETY: non-NULL, NUL-terminated, lives in the session pool for 'a.
        Some(
            unsafe { CStr::from_ptr(value) }
                .to_string_lossy()
                .into_owned(),
        )
    }

    /// Whether the channel has a variable, without copying its value.
    pub fn has_var(&self, name: &CStr) -> bool {
        // SAFETY: channel valid for 'a; with dup=FALSE the core returns a pointer we only compare
        // with NULL, never read.
        !unsafe {
            sys::switch_channel_get_variable_dup(
                self.channel,
                name.as_ptr(),
                sys::switch_bool_t_SWITCH_FALSE,
                -1,
            )
        }
        .is_null()
    }

    /// Sets (or with `None` unsets) a channel variable whose value the caller has checked for
    /// variable expansions itself (`outcome::has_variable_expansion`), or made itself: the core's
    /// own scan of the value is skipped.
    pub fn set_var_prechecked(&self, name: &str, value: Option<&str>) {
        let name = c_string(name);
        let value = value.map(c_string);
        // SAFETY: channel valid for 'a; FreeSWITCH copies name and value before returning.
        unsafe {
            sys::switch_channel_set_variable_var_check(
                self.channel,
                name.as_ptr(),
                value.as_ref().map_or(std::ptr::null(), |v| v.as_ptr()),
                sys::switch_bool_t_SWITCH_FALSE,
            )
        };
    }

    /// Sets (or with `None` unsets) a channel variable, with FreeSWITCH's var check on. (The
    /// core logs a refused value but reports success: callers check values themselves first.)
    pub fn set_var(&self, name: &str, value: Option<&str>) -> bool {
        let name = c_string(name);
        let value = value.map(c_string);
        // SAFETY: channel valid for 'a; FreeSWITCH copies name and value before returning.
        let status = unsafe {
            sys::switch_channel_set_variable_var_check(
                self.channel,
                name.as_ptr(),
                value.as_ref().map_or(std::ptr::null(), |v| v.as_ptr()),
                sys::switch_bool_t_SWITCH_TRUE,
            )
        };
        status == sys::switch_status_t::SWITCH_STATUS_SUCCESS
    }
}
