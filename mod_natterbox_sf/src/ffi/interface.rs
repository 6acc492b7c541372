//! Registering the module's applications and API command with FreeSWITCH.

use std::ffi::CStr;

use super::sys;

pub const MODULE_NAME: &CStr = c"mod_natterbox_sf";

pub type AppFn = unsafe extern "C" fn(*mut sys::switch_core_session_t, *const std::os::raw::c_char);
pub type ApiFn = unsafe extern "C" fn(
    *const std::os::raw::c_char,
    *mut sys::switch_core_session_t,
    *mut sys::switch_stream_handle_t,
) -> sys::switch_status_t;

/// The module interface FreeSWITCH asked `load` to fill in.
pub struct ModuleInterface {
    raw: *mut sys::switch_loadable_module_interface_t,
}

/// Application flags, chosen on purpose (see README): no pre-answer, usable `inline`.
pub struct AppFlags {
    /// SAF_SUPPORT_NOMEDIA: without it the core pre-answers the call before running the app.
    pub no_media: bool,
    /// SAF_ROUTING_EXEC: lets the app run `inline` during routing.
    pub routing_exec: bool,
}

impl ModuleInterface {
    /// Creates the module's interface from its pool and stores it where FreeSWITCH reads it.
    ///
    /// # Safety
    /// `out` must be the valid out-pointer and `pool` the module pool FreeSWITCH passed to load.
    pub unsafe fn create(
        out: *mut *mut sys::switch_loadable_module_interface_t,
        pool: *mut sys::switch_memory_pool_t,
    ) -> Option<ModuleInterface> {
        // SAFETY: pool is the module pool (caller's contract); the name is a static C string.
        let raw = unsafe {
            sys::switch_loadable_module_create_module_interface(pool, MODULE_NAME.as_ptr())
        };
        if raw.is_null() {
            return None;
        }
        // SAFETY: out is valid for writes (caller's contract).
        unsafe { *out = raw };
        Some(ModuleInterface { raw })
    }

    /// Adds a dialplan application. All strings are static: FreeSWITCH keeps the pointers.
    pub fn add_app(
        &self,
        name: &'static CStr,
        short_desc: &'static CStr,
        long_desc: &'static CStr,
        syntax: &'static CStr,
        function: AppFn,
        flags: AppFlags,
    ) -> bool {
        // SAFETY: raw is the live module interface; create_interface returns a zeroed struct
        // from the module pool, linked into the interface, that we fill before load returns.
        unsafe {
            let app = sys::switch_loadable_module_create_interface(
                self.raw,
                sys::switch_module_interface_name_t_SWITCH_APPLICATION_INTERFACE,
            ) as *mut sys::switch_application_interface_t;
            let Some(app) = app.as_mut() else {
                return false;
            };
            app.interface_name = name.as_ptr();
            app.application_function = Some(function);
            app.short_desc = short_desc.as_ptr();
            app.long_desc = long_desc.as_ptr();
            app.syntax = syntax.as_ptr();
            app.flags = 0;
            if flags.no_media {
                app.flags |= sys::switch_application_flag_enum_t_SAF_SUPPORT_NOMEDIA;
            }
            if flags.routing_exec {
                app.flags |= sys::switch_application_flag_enum_t_SAF_ROUTING_EXEC;
            }
            true
        }
    }

    /// Adds an API command (fs_cli, event socket).
    pub fn add_api(
        &self,
        name: &'static CStr,
        desc: &'static CStr,
        syntax: &'static CStr,
        function: ApiFn,
    ) -> bool {
        // SAFETY: as in add_app.
        unsafe {
            let api = sys::switch_loadable_module_create_interface(
                self.raw,
                sys::switch_module_interface_name_t_SWITCH_API_INTERFACE,
            ) as *mut sys::switch_api_interface_t;
            let Some(api) = api.as_mut() else {
                return false;
            };
            api.interface_name = name.as_ptr();
            api.desc = desc.as_ptr();
            api.function = Some(function);
            api.syntax = syntax.as_ptr();
            true
        }
    }
}
