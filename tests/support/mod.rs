//! Test support: where the built module and host shim are, and a driver for the shim.
#![allow(dead_code)]

pub mod fixture;
pub mod fleet;
pub mod product;
pub mod read_api;
pub mod redis_server;
pub mod shim;

use std::path::PathBuf;

/// The module as cargo builds it now (target/<profile>/libmod_natterbox_sf.so). `cargo test`
/// does not build a cdylib-only library for integration tests, so the first caller builds it,
/// with the same cargo, profile and target directory: a test never loads a stale module.
///
/// `NATTERBOX_TEST_MODULE` names a module built elsewhere instead: scripts/sanitize.sh builds one
/// with AddressSanitizer or ThreadSanitizer (nightly, its own target directory) and runs these
/// tests against it, with the matching shim from `NATTERBOX_TEST_HOST_SHIM`.
pub fn module_path() -> PathBuf {
    if let Some(path) = std::env::var_os("NATTERBOX_TEST_MODULE") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "NATTERBOX_TEST_MODULE={}: no such file",
            path.display()
        );
        return path;
    }
    static BUILT: std::sync::Once = std::sync::Once::new();
    BUILT.call_once(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = std::process::Command::new(cargo);
        cmd.args(["build", "--quiet", "-p", "mod_natterbox_sf", "--lib"])
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        if !cfg!(debug_assertions) {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo build for the module");
        assert!(status.success(), "cargo build -p mod_natterbox_sf failed");
    });
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
    match std::env::var_os("NATTERBOX_TEST_HOST_SHIM") {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(env!("NATTERBOX_HOST_SHIM")),
    }
}
