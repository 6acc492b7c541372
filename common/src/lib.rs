//! Shared by mod_natterbox_sf and the sidecar.
