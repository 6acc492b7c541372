//! The sidecar's state directories (tokens, the outbox database, the event socket's parent).

use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

/// Creates `dir` and its missing parents with mode 0750 (group: read and traverse only), leaving
/// an existing directory as it is.
pub fn ensure(dir: &Path) -> Result<(), String> {
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o750)
        .create(dir)
        .map_err(|e| format!("creating {}: {e}", dir.display()))
}

/// `ensure` for the directory a file goes in, when the path names one.
pub fn ensure_parent(path: &Path) -> Result<(), String> {
    match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(parent) => ensure(parent),
        None => Ok(()),
    }
}
