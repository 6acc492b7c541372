//! Call-path logic of mod_natterbox_sf.
