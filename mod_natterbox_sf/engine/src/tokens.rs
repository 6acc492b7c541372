//! Access tokens the sidecar hands over, one per org: swapped in whole when the file changes,
//! kept when the sidecar is away. A lookup refused with 401 asks for a new generation and waits
//! for it, within its deadline.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use natterbox_common::handoff::{self, FileStamp, TokenFile};
use natterbox_common::salesforce::Session;
use tokio::sync::watch;

pub struct TokenSlot {
    path: PathBuf,
    current: RwLock<Option<(Arc<TokenFile>, FileStamp)>>,
    generation: watch::Sender<u64>,
    last_error: RwLock<Option<String>>,
    /// The org's `allow-insecure-http`: an `http://` instance URL is refused without it.
    allow_insecure_http: AtomicBool,
}

/// A usable token: where to call, as whom, and which generation to report if it is refused.
#[derive(Debug, Clone)]
pub struct Credential {
    pub session: Session,
    pub generation: u64,
    pub issued_at_ms: u64,
}

impl TokenSlot {
    pub fn new(dir: &Path, org: &str, allow_insecure_http: bool) -> TokenSlot {
        TokenSlot {
            path: handoff::token_path(dir, org),
            current: RwLock::new(None),
            generation: watch::channel(0).0,
            last_error: RwLock::new(None),
            allow_insecure_http: AtomicBool::new(allow_insecure_http),
        }
    }

    /// A reload changed the org's `allow-insecure-http`: the token in hand is judged again at
    /// the next `poll`.
    pub fn set_allow_insecure_http(&self, allow: bool) {
        if self.allow_insecure_http.swap(allow, Ordering::Relaxed) != allow {
            *self.current.write().unwrap_or_else(|e| e.into_inner()) = None;
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn credential(&self) -> Option<Credential> {
        let current = self.current.read().unwrap_or_else(|e| e.into_inner());
        current.as_ref().map(|(token, _)| Credential {
            session: Session {
                instance_url: token.instance_url.clone(),
                access_token: token.access_token.clone(),
            },
            generation: token.generation,
            issued_at_ms: token.issued_at_ms,
        })
    }

    /// Re-reads the file if it changed. Returns true when a new token was taken.
    pub fn poll(&self, org: &str) -> bool {
        let Some(stamp) = handoff::stamp(&self.path) else {
            return false;
        };
        let unchanged = self
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_some_and(|(_, s)| *s == stamp);
        if unchanged {
            return false;
        }
        let allow_insecure_http = self.allow_insecure_http.load(Ordering::Relaxed);
        match handoff::read(&self.path) {
            Ok(token) if token.org == org => {
                // Lookups would send callers' numbers and the token to this URL.
                if let Err(e) = natterbox_common::https_only::check(
                    &format!("{}: instance_url", self.path.display()),
                    &token.instance_url,
                    allow_insecure_http,
                ) {
                    self.set_error(e);
                    return false;
                }
                let generation = token.generation;
                *self.current.write().unwrap_or_else(|e| e.into_inner()) =
                    Some((Arc::new(token), stamp));
                *self.last_error.write().unwrap_or_else(|e| e.into_inner()) = None;
                self.generation.send_replace(generation);
                true
            }
            Ok(token) => {
                self.set_error(format!(
                    "{} holds a token for org \"{}\"",
                    self.path.display(),
                    token.org
                ));
                false
            }
            // A half-written file cannot happen (rename), but a wrong mode or garbage can; keep
            // the last good token and say why.
            Err(e) => {
                self.set_error(e);
                false
            }
        }
    }

    fn set_error(&self, error: String) {
        let mut last = self.last_error.write().unwrap_or_else(|e| e.into_inner());
        if last.as_deref() != Some(error.as_str()) {
            tracing::warn!("{error}");
        }
        *last = Some(error);
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Whether a lookup is waiting for a new token (the watcher then looks more often).
    pub fn has_waiters(&self) -> bool {
        self.generation.receiver_count() > 0
    }

    /// Waits until a generation newer than `refused` is in, or the deadline.
    pub async fn newer_than(
        &self,
        refused: u64,
        deadline: tokio::time::Instant,
    ) -> Option<Credential> {
        let mut rx = self.generation.subscribe();
        let arrived = tokio::time::timeout_at(deadline, rx.wait_for(|g| *g > refused))
            .await
            .is_ok_and(|r| r.is_ok());
        if arrived {
            self.credential()
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn token(generation: u64) -> TokenFile {
        TokenFile {
            org: "acme".into(),
            access_token: format!("tok{generation}"),
            instance_url: "http://127.0.0.1:1".into(),
            issued_at_ms: 1,
            generation,
        }
    }

    #[tokio::test]
    async fn takes_new_files_and_keeps_the_last_good_one() {
        let dir = tempfile::tempdir().unwrap();
        let slot = TokenSlot::new(dir.path(), "acme", true);
        assert!(!slot.poll("acme"));
        assert!(slot.credential().is_none());
        handoff::write(dir.path(), &token(1), None).unwrap();
        assert!(slot.poll("acme"));
        assert!(!slot.poll("acme"), "unchanged file is not re-read");
        assert_eq!(slot.credential().unwrap().session.access_token, "tok1");

        // The sidecar disappears and its file with it: keep serving.
        std::fs::remove_file(slot.path()).unwrap();
        assert!(!slot.poll("acme"));
        assert_eq!(slot.credential().unwrap().generation, 1);

        // Another org's token in this org's file is refused.
        let mut other = token(9);
        other.org = "globex".into();
        handoff::write(dir.path(), &other, None).unwrap();
        std::fs::rename(dir.path().join("globex.json"), slot.path()).unwrap();
        assert!(!slot.poll("acme"));
        assert!(slot.last_error().unwrap().contains("globex"));
        assert_eq!(slot.credential().unwrap().generation, 1);
    }

    #[tokio::test]
    async fn refuses_a_plain_http_instance_url_unless_allowed() {
        let dir = tempfile::tempdir().unwrap();
        handoff::write(dir.path(), &token(1), None).unwrap();
        let slot = TokenSlot::new(dir.path(), "acme", false);
        assert!(!slot.poll("acme"));
        assert!(slot.credential().is_none());
        assert!(slot.last_error().unwrap().contains("allow-insecure-http"));
        slot.set_allow_insecure_http(true);
        assert!(slot.poll("acme"));
        assert_eq!(slot.credential().unwrap().generation, 1);
        // Taken away again by a reload: the token in hand goes too.
        slot.set_allow_insecure_http(false);
        assert!(!slot.poll("acme"));
        assert!(slot.credential().is_none());
    }

    #[tokio::test]
    async fn waits_for_a_newer_generation_until_the_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let slot = Arc::new(TokenSlot::new(dir.path(), "acme", true));
        handoff::write(dir.path(), &token(1), None).unwrap();
        slot.poll("acme");
        let soon = tokio::time::Instant::now() + Duration::from_millis(20);
        assert!(slot.newer_than(1, soon).await.is_none());
        let writer = slot.clone();
        let path = dir.path().to_path_buf();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            handoff::write(&path, &token(2), None).unwrap();
            writer.poll("acme");
        });
        let later = tokio::time::Instant::now() + Duration::from_secs(5);
        assert_eq!(slot.newer_than(1, later).await.unwrap().generation, 2);
    }
}
