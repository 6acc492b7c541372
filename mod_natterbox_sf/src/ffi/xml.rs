//! Reading our configuration through FreeSWITCH's XML config API, so a config served by
//! mod_xml_curl (or any XML binding) works like the file on disk.

use std::ffi::CStr;

use super::{c_string, sys};

/// The XML text of `<configuration name="{name}">`.
pub fn config_text(name: &str) -> Result<String, String> {
    let name_c = c_string(name);
    let mut cfg: sys::switch_xml_t = std::ptr::null_mut();
    // SAFETY: name is NUL-terminated; cfg is a valid out-pointer; params may be NULL.
    let root = unsafe { sys::switch_xml_open_cfg(name_c.as_ptr(), &mut cfg, std::ptr::null_mut()) };
    if root.is_null() || cfg.is_null() {
        if !root.is_null() {
            // SAFETY: root came from switch_xml_open_cfg and is freed once.
            unsafe { sys::switch_xml_free(root) };
        }
        return Err(format!(
            "open of {name} failed (no <configuration name=\"{name}\">)"
        ));
    }
    // SAFETY: cfg is a node of root, valid until root is freed below.
    let text = unsafe {
        sys::switch_xml_toxml_ex(
            cfg,
            sys::switch_bool_t_SWITCH_FALSE,
            sys::switch_bool_t_SWITCH_TRUE,
        )
    };
    let result = if text.is_null() {
        Err(format!("{name}: could not serialise the configuration"))
    } else {
        // SAFETY: toxml returns a malloc()ed NUL-terminated string that we own; it is copied,
        // then released with the C allocator that made it (never Rust's).
        let owned = unsafe { CStr::from_ptr(text) }
            .to_string_lossy()
            .into_owned();
        unsafe { libc::free(text.cast()) };
        Ok(owned)
    };
    // SAFETY: root came from switch_xml_open_cfg and is freed once, after its last use.
    unsafe { sys::switch_xml_free(root) };
    result
}
