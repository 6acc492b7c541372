//! Access tokens, refresh tokens and their inactivity timeout.

use std::collections::HashMap;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Session {
    pub token: String,
    pub user_id: String,
    pub username: String,
    pub client_id: Option<String>,
    pub scope: String,
    pub issued_at_ms: u64,
    pub last_used: Instant,
    /// The refresh token this session came from (revoking it revokes the session).
    pub refresh_token: Option<String>,
    /// Successful uses so far (for the "expire after N calls" knob).
    pub calls: u64,
}

#[derive(Debug, Clone)]
pub struct RefreshToken {
    pub username: String,
    pub client_id: String,
}

#[derive(Debug, Default)]
pub struct Sessions {
    access: HashMap<String, Session>,
    refresh: HashMap<String, RefreshToken>,
}

impl Sessions {
    pub fn add(&mut self, s: Session) {
        self.access.insert(s.token.clone(), s);
    }

    pub fn add_refresh(&mut self, token: String, rt: RefreshToken) {
        self.refresh.insert(token, rt);
    }

    pub fn refresh(&self, token: &str) -> Option<&RefreshToken> {
        self.refresh.get(token)
    }

    /// The live session for `token`, touched (inactivity timeout restarts); expired ones are
    /// dropped.
    pub fn use_token(
        &mut self,
        token: &str,
        timeout: Duration,
        max_calls: Option<u64>,
    ) -> Option<Session> {
        let live = self.access.get(token).is_some_and(|s| {
            s.last_used.elapsed() < timeout && max_calls.is_none_or(|m| s.calls < m)
        });
        if !live {
            self.access.remove(token);
            return None;
        }
        let s = self.access.get_mut(token)?;
        s.last_used = Instant::now();
        s.calls += 1;
        Some(s.clone())
    }

    /// Like `use_token` without touching.
    pub fn peek(&self, token: &str, timeout: Duration) -> Option<&Session> {
        self.access
            .get(token)
            .filter(|s| s.last_used.elapsed() < timeout)
    }

    pub fn revoke_access(&mut self, token: &str) -> bool {
        self.access.remove(token).is_some()
    }

    /// Drops a refresh token (rotation) without touching access tokens.
    pub fn forget_refresh(&mut self, token: &str) {
        self.refresh.remove(token);
    }

    /// Revokes a refresh token and every access token issued from it.
    pub fn revoke_refresh(&mut self, token: &str) -> bool {
        if self.refresh.remove(token).is_none() {
            return false;
        }
        self.access
            .retain(|_, s| s.refresh_token.as_deref() != Some(token));
        true
    }

    /// Ends every access session (refresh tokens stay valid). Returns how many ended.
    pub fn expire_all(&mut self) -> usize {
        let n = self.access.len();
        self.access.clear();
        n
    }

    pub fn active_count(&self, timeout: Duration) -> usize {
        self.access
            .values()
            .filter(|s| s.last_used.elapsed() < timeout)
            .count()
    }
}
