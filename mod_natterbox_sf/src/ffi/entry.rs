//! The symbols FreeSWITCH looks up and the extern "C" callbacks it calls. Each callback turns raw
//! pointers into the safe wrappers and runs the handler under `guarded`.

use std::os::raw::c_char;

use crate::ffi::event::EventRef;
use crate::ffi::guard::guarded;
use crate::ffi::interface::ModuleInterface;
use crate::ffi::session::Session;
use crate::ffi::stream::Stream;
use crate::ffi::sys;
use crate::{
    api, apps, call_control, hangup, module, omni_route, presence, query_apps, record_writes,
};
use natterbox_engine::agent_calls::ChannelEventKind;

/// What FreeSWITCH's loader reads (`SWITCH_MODULE_DEFINITION`).
#[unsafe(no_mangle)]
#[allow(non_upper_case_globals)]
pub static mod_natterbox_sf_module_interface: sys::switch_loadable_module_function_table =
    sys::switch_loadable_module_function_table {
        switch_api_version: sys::NATTERBOX_SWITCH_API_VERSION,
        load: Some(load),
        shutdown: Some(shutdown),
        runtime: None,
        flags: 0,
    };

unsafe extern "C" fn load(
    module_interface: *mut *mut sys::switch_loadable_module_interface_t,
    pool: *mut sys::switch_memory_pool_t,
) -> sys::switch_status_t {
    guarded("load", sys::switch_status_t::SWITCH_STATUS_FALSE, || {
        if module_interface.is_null() || pool.is_null() {
            return sys::switch_status_t::SWITCH_STATUS_FALSE;
        }
        // SAFETY: FreeSWITCH passes a valid out-pointer and the module's pool, both valid for
        // the module's lifetime.
        match unsafe { ModuleInterface::create(module_interface, pool) } {
            Some(interface) => module::load(&interface),
            None => sys::switch_status_t::SWITCH_STATUS_MEMERR,
        }
    })
}

unsafe extern "C" fn shutdown() -> sys::switch_status_t {
    guarded(
        "shutdown",
        sys::switch_status_t::SWITCH_STATUS_NOUNLOAD,
        module::shutdown,
    )
}

pub unsafe extern "C" fn sf_lookup_app(
    session: *mut sys::switch_core_session_t,
    data: *const c_char,
) {
    guarded("sf_lookup", (), || {
        // SAFETY: FreeSWITCH passes the executing session, valid during the call.
        let Some(session) = (unsafe { Session::from_raw(session) }) else {
            return;
        };
        // SAFETY: data is NULL or a NUL-terminated string valid during the call.
        let data = unsafe { text_arg(data) };
        apps::sf_lookup(&session, &data);
    })
}

pub unsafe extern "C" fn sf_query_app(
    session: *mut sys::switch_core_session_t,
    data: *const c_char,
) {
    guarded("sf_query", (), || {
        // SAFETY: as in sf_lookup_app.
        let Some(session) = (unsafe { Session::from_raw(session) }) else {
            return;
        };
        // SAFETY: as in sf_lookup_app.
        let data = unsafe { text_arg(data) };
        query_apps::sf_query(&session, &data);
    })
}

pub unsafe extern "C" fn sf_search_app(
    session: *mut sys::switch_core_session_t,
    data: *const c_char,
) {
    guarded("sf_search", (), || {
        // SAFETY: as in sf_lookup_app.
        let Some(session) = (unsafe { Session::from_raw(session) }) else {
            return;
        };
        // SAFETY: as in sf_lookup_app.
        let data = unsafe { text_arg(data) };
        query_apps::sf_search(&session, &data);
    })
}

pub unsafe extern "C" fn sf_screen_pop_app(
    session: *mut sys::switch_core_session_t,
    data: *const c_char,
) {
    guarded("sf_screen_pop", (), || {
        // SAFETY: as in sf_lookup_app.
        let Some(session) = (unsafe { Session::from_raw(session) }) else {
            return;
        };
        // SAFETY: as in sf_lookup_app.
        let data = unsafe { text_arg(data) };
        apps::sf_screen_pop(&session, &data);
    })
}

pub unsafe extern "C" fn sf_presence_app(
    session: *mut sys::switch_core_session_t,
    data: *const c_char,
) {
    guarded("sf_presence", (), || {
        // SAFETY: as in sf_lookup_app.
        let Some(session) = (unsafe { Session::from_raw(session) }) else {
            return;
        };
        // SAFETY: as in sf_lookup_app.
        let data = unsafe { text_arg(data) };
        presence::sf_presence(&session, &data);
    })
}

pub unsafe extern "C" fn sf_omni_route_app(
    session: *mut sys::switch_core_session_t,
    data: *const c_char,
) {
    guarded("sf_omni_route", (), || {
        // SAFETY: as in sf_lookup_app.
        let Some(session) = (unsafe { Session::from_raw(session) }) else {
            return;
        };
        // SAFETY: as in sf_lookup_app.
        let data = unsafe { text_arg(data) };
        omni_route::sf_omni_route(&session, &data);
    })
}

pub unsafe extern "C" fn sf_omni_fallback_app(
    session: *mut sys::switch_core_session_t,
    data: *const c_char,
) {
    guarded("sf_omni_fallback", (), || {
        // SAFETY: as in sf_lookup_app.
        let Some(session) = (unsafe { Session::from_raw(session) }) else {
            return;
        };
        // SAFETY: as in sf_lookup_app.
        let data = unsafe { text_arg(data) };
        omni_route::sf_omni_fallback(&session, &data);
    })
}

/// The three write applications differ only in their op.
macro_rules! write_app {
    ($name:ident, $label:literal, $handler:path) => {
        pub unsafe extern "C" fn $name(
            session: *mut sys::switch_core_session_t,
            data: *const c_char,
        ) {
            guarded($label, (), || {
                // SAFETY: as in sf_lookup_app.
                let Some(session) = (unsafe { Session::from_raw(session) }) else {
                    return;
                };
                // SAFETY: as in sf_lookup_app.
                let data = unsafe { text_arg(data) };
                $handler(&session, &data);
            })
        }
    };
}

write_app!(sf_create_app, "sf_create", record_writes::sf_create);
write_app!(sf_update_app, "sf_update", record_writes::sf_update);
write_app!(sf_upsert_app, "sf_upsert", record_writes::sf_upsert);

pub unsafe extern "C" fn sf_api(
    cmd: *const c_char,
    _session: *mut sys::switch_core_session_t,
    stream: *mut sys::switch_stream_handle_t,
) -> sys::switch_status_t {
    guarded("sf", sys::switch_status_t::SWITCH_STATUS_SUCCESS, || {
        // SAFETY: FreeSWITCH passes the command's output stream, valid during the call.
        let Some(mut stream) = (unsafe { Stream::from_raw(stream) }) else {
            return sys::switch_status_t::SWITCH_STATUS_FALSE;
        };
        // SAFETY: cmd is NULL or a NUL-terminated string valid during the call.
        let cmd = unsafe { text_arg(cmd) };
        api::sf(&cmd, &mut stream);
        sys::switch_status_t::SWITCH_STATUS_SUCCESS
    })
}

pub unsafe extern "C" fn on_reloadxml(_event: *mut sys::switch_event_t) {
    guarded("reloadxml", (), || {
        module::reload_in_background("reloadxml")
    });
}

pub unsafe extern "C" fn on_hangup_complete(event: *mut sys::switch_event_t) {
    guarded("hangup", (), || {
        // SAFETY: FreeSWITCH passes the event being delivered, valid during the call.
        if let Some(mut event) = unsafe { EventRef::from_raw(event) } {
            omni_route::on_hangup(&mut event);
            hangup::on_hangup_complete(&mut event);
        }
    })
}

/// The channel events of agents' calls (answer, bridge, hold, unhold, hangup), for call control.
pub unsafe extern "C" fn on_channel_event(event: *mut sys::switch_event_t) {
    guarded("channel event", (), || {
        // SAFETY: FreeSWITCH passes the event being delivered, valid during the call.
        let Some(mut event) = (unsafe { EventRef::from_raw(event) }) else {
            return;
        };
        let kind = match event.header("Event-Name").as_deref() {
            Some("CHANNEL_PROGRESS") | Some("CHANNEL_PROGRESS_MEDIA") => ChannelEventKind::Progress,
            Some("CHANNEL_ANSWER") => ChannelEventKind::Answer,
            Some("CHANNEL_BRIDGE") => ChannelEventKind::Bridge,
            Some("CHANNEL_HOLD") => ChannelEventKind::Hold,
            Some("CHANNEL_UNHOLD") => ChannelEventKind::Unhold,
            Some("CHANNEL_HANGUP_COMPLETE") => ChannelEventKind::Hangup,
            _ => return,
        };
        call_control::on_channel_event(kind, &mut event);
    })
}

/// # Safety
/// `event` must be NULL or the event FreeSWITCH is delivering, valid for the duration of the call.
pub unsafe extern "C" fn on_channel_answer(event: *mut sys::switch_event_t) {
    guarded("answer", (), || {
        // SAFETY: FreeSWITCH passes the event being delivered, valid during the call.
        if let Some(mut event) = unsafe { EventRef::from_raw(event) } {
            crate::call_progress::on_channel_answer(&mut event);
        }
    })
}

/// # Safety
/// `ptr` must be NULL or a NUL-terminated string valid for the duration of the call.
unsafe fn text_arg(ptr: *const c_char) -> String {
    if ptr.is_null() {
        return String::new();
    }
    // SAFETY: caller's contract.
    unsafe { std::ffi::CStr::from_ptr(ptr) }
        .to_string_lossy()
        .into_owned()
}
