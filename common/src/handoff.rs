//! Token hand-off from the sidecar to the module: one JSON file per org, replaced atomically, so
//! the module never reads half a token and keeps the last one while the sidecar is away.
//!
//! Modes: the sidecar runs as its own user (`natterbox-sf`) with FreeSWITCH's group as its
//! primary group, so a token file is `natterbox-sf:freeswitch` 0640: the FreeSWITCH user reads
//! it and can neither change it nor reach anything else of the sidecar's (private keys, refresh
//! tokens and the outbox stay 0600). A 0600 file owned by the reader (`token-file-owner`) is
//! accepted too.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenFile {
    pub org: String,
    pub access_token: String,
    pub instance_url: String,
    pub issued_at_ms: u64,
    /// Increases with every new token for the org; the module reports 401s against it.
    pub generation: u64,
}

impl std::fmt::Debug for TokenFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenFile")
            .field("org", &self.org)
            .field("access_token", &"<redacted>")
            .field("instance_url", &self.instance_url)
            .field("generation", &self.generation)
            .finish()
    }
}

pub fn token_path(dir: &Path, org: &str) -> PathBuf {
    dir.join(format!("{org}.json"))
}

/// Identity of a file version: changes whenever the file is replaced or rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    ino: u64,
    size: u64,
    mtime_ns: i128,
}

pub fn stamp(path: &Path) -> Option<FileStamp> {
    let meta = fs::metadata(path).ok()?;
    Some(FileStamp {
        ino: meta.ino(),
        size: meta.size(),
        mtime_ns: meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128,
    })
}

/// Mode of a hand-off file: the owner (the sidecar) writes, its group (FreeSWITCH's) reads.
pub const TOKEN_FILE_MODE: u32 = 0o640;

/// Reads a token file, refusing one that others can read or the group can write (a token anyone
/// on the host can read is a leaked token; one the reader's group can write can be redirected).
pub fn read(path: &Path) -> Result<TokenFile, String> {
    let meta = fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if meta.permissions().mode() & 0o027 != 0 {
        return Err(format!(
            "{}: mode {:o} lets others read or the group write the token; expected 0640 or 0600",
            path.display(),
            meta.permissions().mode() & 0o777
        ));
    }
    let text = fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_slice(&text).map_err(|e| format!("{}: not a token file: {e}", path.display()))
}

/// Writes `token` to `<dir>/<org>.json`: a temporary file in the same directory, fsynced,
/// renamed over the old file, directory fsynced. 0640 for the writer's group to read, or, when
/// `owner` (the reader) is given, chowned to it and 0600.
pub fn write(dir: &Path, token: &TokenFile, owner: Option<(u32, u32)>) -> Result<(), String> {
    let path = token_path(dir, &token.org);
    let body = serde_json::to_vec(token).map_err(|e| e.to_string())?;
    let mode = if owner.is_some() {
        0o600
    } else {
        TOKEN_FILE_MODE
    };
    crate::atomic_file::write_with_mode(&path, &body, mode, owner)
        .map_err(|e| format!("writing {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(generation: u64) -> TokenFile {
        TokenFile {
            org: "acme".into(),
            access_token: "00D!secret".into(),
            instance_url: "https://acme.my.salesforce.com".into(),
            issued_at_ms: 1,
            generation,
        }
    }

    #[test]
    fn writes_atomically_with_0640_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &token(1), None).unwrap();
        let path = token_path(dir.path(), "acme");
        let first = stamp(&path).unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o640
        );
        assert_eq!(read(&path).unwrap(), token(1));
        write(dir.path(), &token(2), None).unwrap();
        assert_ne!(stamp(&path).unwrap(), first);
        assert_eq!(read(&path).unwrap().generation, 2);
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary file left"
        );
        assert!(!format!("{:?}", token(1)).contains("secret"));
    }

    #[test]
    fn refuses_a_token_file_others_can_read() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &token(1), None).unwrap();
        let path = token_path(dir.path(), "acme");
        for mode in [0o644, 0o660, 0o604] {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            assert!(read(&path).unwrap_err().contains("0640"), "{mode:o}");
        }
        // The reader owning a 0600 file (token-file-owner) is fine too.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(read(&path).is_ok());
    }
}
