//! FFI layer of mod_natterbox_sf.
