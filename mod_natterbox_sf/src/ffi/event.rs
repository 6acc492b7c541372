//! FreeSWITCH events: our CUSTOM subclass, and bindings to core events (RELOADXML, hangup).

use std::ffi::{CStr, CString};

use super::{c_string, sys};

const FILE: &CStr = c"mod_natterbox_sf.rs";
const FUNC: &CStr = c"mod_natterbox_sf";

/// An event FreeSWITCH lends a callback.
pub struct EventRef<'a> {
    raw: &'a mut sys::switch_event_t,
}

impl<'a> EventRef<'a> {
    /// # Safety
    /// `raw` must be NULL or an event valid for `'a`, as FreeSWITCH passes to event callbacks.
    pub unsafe fn from_raw(raw: *mut sys::switch_event_t) -> Option<EventRef<'a>> {
        // SAFETY: caller's contract.
        unsafe { raw.as_mut() }.map(|raw| EventRef { raw })
    }

    pub fn header(&mut self, name: &str) -> Option<String> {
        let name = c_string(name);
        // SAFETY: the event is valid for 'a; the returned value is owned by the event.
        let value = unsafe { sys::switch_event_get_header_idx(self.raw, name.as_ptr(), -1) };
        if value.is_null() {
            return None;
        }
        // SAFETY: non-NULL, NUL-terminated, owned by the event for 'a.
        Some(
            unsafe { CStr::from_ptr(value) }
                .to_string_lossy()
                .into_owned(),
        )
    }
}

/// Claims a CUSTOM subclass for this module (as FreeSWITCH modules must before firing it).
pub fn reserve_subclass(owner: &CStr, subclass: &CStr) -> bool {
    // SAFETY: both are NUL-terminated strings; FreeSWITCH copies them.
    let status =
        unsafe { sys::switch_event_reserve_subclass_detailed(owner.as_ptr(), subclass.as_ptr()) };
    status == sys::switch_status_t::SWITCH_STATUS_SUCCESS
}

pub fn free_subclass(owner: &CStr, subclass: &CStr) {
    // SAFETY: as in reserve_subclass.
    unsafe { sys::switch_event_free_subclass_detailed(owner.as_ptr(), subclass.as_ptr()) };
}

/// Fires a CUSTOM event with the given headers.
pub fn fire_custom(subclass: &CStr, headers: &[(&str, &str)]) -> bool {
    let mut event: *mut sys::switch_event_t = std::ptr::null_mut();
    // SAFETY: event is a valid out-pointer; the subclass is NUL-terminated.
    let created = unsafe {
        sys::switch_event_create_subclass_detailed(
            FILE.as_ptr(),
            FUNC.as_ptr(),
            line!() as i32,
            &mut event,
            sys::switch_event_types_t_SWITCH_EVENT_CUSTOM,
            subclass.as_ptr(),
        )
    };
    if created != sys::switch_status_t::SWITCH_STATUS_SUCCESS || event.is_null() {
        return false;
    }
    for (name, value) in headers {
        let (name, value): (CString, CString) = (c_string(name), c_string(value));
        // SAFETY: event is ours until fired; FreeSWITCH copies name and value.
        unsafe {
            sys::switch_event_add_header_string(
                event,
                sys::switch_stack_t_SWITCH_STACK_BOTTOM,
                name.as_ptr(),
                value.as_ptr(),
            )
        };
    }
    // SAFETY: fire takes ownership of the event and sets our pointer to NULL on success; on
    // failure the event is still ours and is destroyed here.
    unsafe {
        let fired = sys::switch_event_fire_detailed(
            FILE.as_ptr(),
            FUNC.as_ptr(),
            line!() as i32,
            &mut event,
            std::ptr::null_mut(),
        );
        if !event.is_null() {
            sys::switch_event_destroy(&mut event);
        }
        fired == sys::switch_status_t::SWITCH_STATUS_SUCCESS
    }
}

/// A callback bound to a core event; unbound explicitly at shutdown.
pub struct Binding {
    node: *mut sys::switch_event_node_t,
}

// SAFETY: the node pointer is only an opaque handle passed back to switch_event_unbind, which
// FreeSWITCH allows from any thread.
unsafe impl Send for Binding {}
// SAFETY: as above; the handle is never dereferenced by us.
unsafe impl Sync for Binding {}

pub type Callback = unsafe extern "C" fn(*mut sys::switch_event_t);

impl Binding {
    pub fn bind(
        id: &CStr,
        event: sys::switch_event_types_t,
        callback: Callback,
    ) -> Option<Binding> {
        let mut node = std::ptr::null_mut();
        // SAFETY: id is NUL-terminated; callback is a guarded extern "C" fn that lives as long
        // as the module image; node is a valid out-pointer.
        let status = unsafe {
            sys::switch_event_bind_removable(
                id.as_ptr(),
                event,
                std::ptr::null(),
                Some(callback),
                std::ptr::null_mut(),
                &mut node,
            )
        };
        (status == sys::switch_status_t::SWITCH_STATUS_SUCCESS && !node.is_null())
            .then_some(Binding { node })
    }

    /// Removes the binding; FreeSWITCH waits for a delivery in progress to finish.
    pub fn unbind(mut self) {
        // SAFETY: node came from switch_event_bind_removable and is unbound once.
        unsafe { sys::switch_event_unbind(&mut self.node) };
    }
}
