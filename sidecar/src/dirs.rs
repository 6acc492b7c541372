//! The sidecar's state directories (tokens, the outbox database, the event socket's parent).

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

/// Creates `dir` and its missing parents with mode 0750 (group: read and traverse only), leaving
/// an existing directory as it is. The mode is set after creation: the unit's `UMask=0077` would
/// otherwise make them 0700 and shut FreeSWITCH's group out of the token directory.
pub fn ensure(dir: &Path) -> Result<(), String> {
    if dir.is_dir() {
        return Ok(());
    }
    let missing: Vec<&Path> = dir.ancestors().take_while(|a| !a.exists()).collect();
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o750)
        .create(dir)
        .map_err(|e| format!("creating {}: {e}", dir.display()))?;
    for created in missing {
        std::fs::set_permissions(created, std::fs::Permissions::from_mode(0o750))
            .map_err(|e| format!("chmod 0750 {}: {e}", created.display()))?;
    }
    Ok(())
}

/// `ensure` for the directory a file goes in, when the path names one.
pub fn ensure_parent(path: &Path) -> Result<(), String> {
    match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(parent) => ensure(parent),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_0750_whatever_the_umask() {
        let dir = tempfile::tempdir().unwrap();
        let leaf = dir.path().join("a/b");
        // The unit's UMask=0077, for this process (restored at once; it only narrows modes).
        let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
        let result = ensure(&leaf);
        nix::sys::stat::umask(old);
        result.unwrap();
        for d in [dir.path().join("a"), leaf] {
            assert_eq!(
                std::fs::metadata(&d).unwrap().permissions().mode() & 0o777,
                0o750
            );
        }
    }
}
