//! Test support: where the built module and host shim are, and a driver for the shim.
#![allow(dead_code)]

pub mod shim;

use std::path::PathBuf;

/// The cdylib cargo built for this test run (target/<profile>/libmod_natterbox_sf.so).
pub fn module_path() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test>-<hash>
    let profile_dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target profile dir");
    let path = profile_dir.join("libmod_natterbox_sf.so");
    assert!(
        path.is_file(),
        "{} is missing: build the cdylib first (cargo build)",
        path.display()
    );
    path
}

pub fn shim_path() -> PathBuf {
    PathBuf::from(env!("NATTERBOX_HOST_SHIM"))
}
