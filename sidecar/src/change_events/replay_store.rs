//! The last replay id handled per org and topic, in the sidecar's state directory, so that a
//! restarted sidecar subscribes from where it stopped and misses no change. One small file per
//! org+topic, replaced atomically after each handled batch.

use std::path::{Path, PathBuf};

pub struct ReplayStore {
    dir: PathBuf,
}

impl ReplayStore {
    pub fn new(state_dir: &Path) -> ReplayStore {
        ReplayStore {
            dir: state_dir.join("cdc-replay"),
        }
    }

    fn path(&self, org: &str, topic: &str) -> PathBuf {
        // Org names are checked identifiers; a topic is `/data/<Name>ChangeEvent`.
        let topic = topic.trim_start_matches('/').replace('/', "_");
        self.dir.join(format!("{org}--{topic}"))
    }

    /// The stored replay id (hex), or None when there is none or it is unreadable.
    pub fn load(&self, org: &str, topic: &str) -> Option<Vec<u8>> {
        let text = std::fs::read_to_string(self.path(org, topic)).ok()?;
        decode_hex(text.trim())
    }

    pub fn save(&self, org: &str, topic: &str, replay_id: &[u8]) -> Result<(), String> {
        std::fs::create_dir_all(&self.dir).map_err(|e| format!("{}: {e}", self.dir.display()))?;
        let path = self.path(org, topic);
        natterbox_common::atomic_file::write(&path, encode_hex(replay_id).as_bytes(), None)
            .map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Forgets the replay id (Salesforce refused it: past retention, or corrupted).
    pub fn forget(&self, org: &str, topic: &str) {
        let _ = std::fs::remove_file(self.path(org, topic));
    }
}

fn encode_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if text.is_empty() || !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_a_replay_id_per_org_and_topic() {
        let dir = tempfile::tempdir().unwrap();
        let store = ReplayStore::new(dir.path());
        assert_eq!(store.load("acme", "/data/ContactChangeEvent"), None);
        store
            .save("acme", "/data/ContactChangeEvent", &[0, 1, 0xab, 0xff])
            .unwrap();
        store.save("acme", "/data/LeadChangeEvent", &[7]).unwrap();
        assert_eq!(
            store.load("acme", "/data/ContactChangeEvent").unwrap(),
            [0, 1, 0xab, 0xff]
        );
        // A restarted sidecar reads what the last one wrote.
        let again = ReplayStore::new(dir.path());
        assert_eq!(again.load("acme", "/data/LeadChangeEvent").unwrap(), [7]);
        again.forget("acme", "/data/LeadChangeEvent");
        assert_eq!(again.load("acme", "/data/LeadChangeEvent"), None);
        std::fs::write(
            dir.path().join("cdc-replay/acme--data_CaseChangeEvent"),
            "xyz",
        )
        .unwrap();
        assert_eq!(store.load("acme", "/data/CaseChangeEvent"), None);
    }
}
