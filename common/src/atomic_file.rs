//! Files other processes read while we replace them (token hand-off, spooled call logs, rotated
//! refresh tokens): written whole or not at all, readable by the owner only, or (the token
//! hand-off) by the owner's group too.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Writes `body` to `path`: a temporary file beside it, mode 0600, fsynced, chowned to `owner`
/// when given, renamed over `path`, the directory fsynced. On error the temporary file is gone
/// and `path` is as it was.
pub fn write(path: &Path, body: &[u8], owner: Option<(u32, u32)>) -> std::io::Result<()> {
    write_with_mode(path, body, 0o600, owner)
}

/// `write` with another mode (never more than 0640: nobody but the owner writes, others never
/// read).
pub fn write_with_mode(
    path: &Path,
    body: &[u8],
    mode: u32,
    owner: Option<(u32, u32)>,
) -> std::io::Result<()> {
    let mode = mode & 0o640;
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    let result = (|| -> std::io::Result<()> {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        // The mode is only applied on creation (and through the umask); a leftover temporary
        // file keeps its own.
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.write_all(body)?;
        file.sync_all()?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::fchown(&file, Some(uid), Some(gid))?;
        }
        fs::rename(&tmp, path)?;
        fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_whole_with_0600_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.json");
        write(&path, b"one", None).unwrap();
        write(&path, b"two", None).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        assert!(write(&dir.path().join("missing/x.json"), b"x", None).is_err());
    }

    #[test]
    fn group_readable_at_most() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.json");
        write_with_mode(&path, b"one", 0o640, None).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o640);
        write_with_mode(&path, b"two", 0o666, None).unwrap();
        assert_eq!(
            mode(&path),
            0o640,
            "never writable by others than the owner"
        );
    }
}
