//! One refresher at a time for a refresh-token org across the fleet (docs/fleet.md, "Tokens").
//!
//! Before a sidecar refreshes such an org it reads the token the fleet holds: one it does not
//! hold yet (another sidecar refreshed, or this one just started) is adopted instead of
//! refreshing. Otherwise it takes the org's lease with a fencing number (one script,
//! `natterbox_common::fleet::acquire_refresh_lease`); only the holder asks the token endpoint,
//! with the fleet's latest refresh token, cut off before its lease ends; it stores what it got
//! under its fence (a lower fence than the stored one is refused) and releases the lease. The
//! others poll (every 50 ms, for at most the lease and a margin) for the stored token.
//!
//! Redis down: no refresh at all. A rotating refresh token spent by two hosts at once is dead
//! for one of them, and one spent by a host no other can hear from leaves the fleet with a dead
//! one; so the sidecar keeps its last token (the module keeps using it) and tries again every
//! second until Redis answers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use natterbox_common::fleet::{
    acquire_refresh_lease, read_token, release_refresh_lease, store_token, Keys, RedisLink,
    Skipped, StoredToken,
};
use natterbox_common::salesforce::oauth::TokenResponse;

use crate::oauth::TokenError;

const POLL: Duration = Duration::from_millis(50);
/// How long a sidecar that just started waits for its first Redis connection before it counts
/// Redis as down.
const FIRST_CONNECT_WAIT: Duration = Duration::from_secs(2);
/// Waiting for another sidecar's refresh: its lease, and this much more.
const WAIT_MARGIN: Duration = Duration::from_secs(2);
/// The holder's token request ends this share of the lease in, leaving time to store the answer.
const REQUEST_SHARE: f64 = 0.8;

/// The fleet's refresh coordination, shared by every refresh-token org of this sidecar.
pub struct TokenLease {
    link: Arc<RedisLink>,
    keys: Keys,
    lease: Duration,
    /// This process's mark; with the attempt number it makes each lease value unique.
    origin: String,
    attempts: AtomicU64,
}

/// How one refresh went through the fleet.
pub enum Coordinated {
    /// This sidecar held the lease and asked the token endpoint (under `fence`).
    Refreshed {
        result: Result<TokenResponse, TokenError>,
        fence: u64,
    },
    /// Another sidecar's token (or one stored before this sidecar started) was taken.
    Adopted { token: TokenResponse, fence: u64 },
    /// Nothing was asked: Redis cannot be reached, or another sidecar held the lease past the
    /// wait. The sidecar keeps its last token.
    NotNow(TokenError),
}

/// What a refresh needs to know of the org.
pub struct OrgView<'a> {
    pub org: &'a str,
    /// The access token this sidecar hands out now (None: none yet).
    pub current_access: Option<&'a str>,
    /// SHA-256 of the configured refresh token: stored tokens of another authorization are not
    /// taken.
    pub configured_sha256: &'a str,
    /// The refresh token this sidecar would use on its own (its rotated one, else None: the
    /// configured one).
    pub local_refresh: Option<&'a str>,
}

impl TokenLease {
    pub(super) fn new(link: Arc<RedisLink>, keys: Keys, lease: Duration, origin: String) -> Self {
        TokenLease {
            link,
            keys,
            lease,
            origin,
            attempts: AtomicU64::new(0),
        }
    }

    /// One refresh of `org`: adopt, refresh under the lease (`request` is called with the
    /// refresh token to spend, None for the configured one), or neither.
    pub async fn refresh<F, Fut>(&self, org: OrgView<'_>, request: F) -> Coordinated
    where
        F: FnOnce(Option<String>) -> Fut,
        Fut: std::future::Future<Output = Result<TokenResponse, TokenError>>,
    {
        // At start the link may still be connecting: that is not Redis being down.
        let started = Instant::now();
        while self.link.stats().reconnects == 0 && started.elapsed() < FIRST_CONNECT_WAIT {
            tokio::time::sleep(POLL).await;
        }
        let give_up = Instant::now() + self.lease + WAIT_MARGIN;
        let holder = format!(
            "{}-{}",
            self.origin,
            self.attempts.fetch_add(1, Ordering::Relaxed)
        );
        loop {
            let (stored, leased) = match self.read(org.org).await {
                Ok(read) => read,
                Err(skipped) => return not_now(&skipped),
            };
            let stored = stored.filter(|t| t.configured_sha256 == org.configured_sha256);
            if let Some(token) = stored.as_ref().filter(|t| is_news(t, &org)) {
                return adopted(token);
            }
            if !leased {
                match self.acquire(org.org, &holder).await {
                    Ok(Some(fence)) => {
                        return self.refresh_as_holder(&org, &holder, fence, request).await
                    }
                    Ok(None) => {}
                    Err(skipped) => return not_now(&skipped),
                }
            }
            if Instant::now() >= give_up {
                return Coordinated::NotNow(TokenError::Fleet(format!(
                    "another sidecar held the refresh lease for more than {} ms without storing a token",
                    (self.lease + WAIT_MARGIN).as_millis()
                )));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    async fn refresh_as_holder<F, Fut>(
        &self,
        org: &OrgView<'_>,
        holder: &str,
        fence: u64,
        request: F,
    ) -> Coordinated
    where
        F: FnOnce(Option<String>) -> Fut,
        Fut: std::future::Future<Output = Result<TokenResponse, TokenError>>,
    {
        let lease_ends = Instant::now() + self.lease;
        // What was stored between our read and the lease (a holder that finished meanwhile).
        let stored = match self.read(org.org).await {
            Ok((stored, _)) => stored.filter(|t| t.configured_sha256 == org.configured_sha256),
            Err(skipped) => {
                self.release(org.org, holder).await;
                return not_now(&skipped);
            }
        };
        if let Some(token) = stored.as_ref().filter(|t| is_news(t, org)) {
            self.release(org.org, holder).await;
            return adopted(token);
        }
        let refresh_token = stored
            .and_then(|t| t.refresh_token)
            .or(org.local_refresh.map(str::to_string));
        let limit = self.lease.mul_f64(REQUEST_SHARE);
        let result = match tokio::time::timeout(limit, request(refresh_token)).await {
            Ok(result) => result,
            Err(_) => Err(TokenError::Transport(format!(
                "no answer within {} ms (the refresh lease's share)",
                limit.as_millis()
            ))),
        };
        if let Ok(token) = &result {
            let stored = StoredToken {
                access_token: token.access_token.clone(),
                instance_url: token.instance_url.clone(),
                identity_url: token.id.clone(),
                issued_at_ms: token.issued_at_ms_or(crate::backoff::now_ms()),
                refresh_token: token.refresh_token.clone(),
                configured_sha256: org.configured_sha256.to_string(),
                fence,
            };
            self.publish(org.org, &stored, lease_ends).await;
        }
        self.release(org.org, holder).await;
        Coordinated::Refreshed { result, fence }
    }

    /// Stores the holder's token, retrying while Redis does not answer until the lease ends.
    async fn publish(&self, org: &str, token: &StoredToken, lease_ends: Instant) {
        loop {
            let deadline = Instant::now() + Duration::from_secs(1);
            match store_token(&self.link, &self.keys, org, token, deadline).await {
                Ok(true) => return,
                Ok(false) => {
                    tracing::warn!(
                        org,
                        fence = token.fence,
                        "a sidecar with a later refresh lease stored its token first; this one \
                         is not shared (the fleet keeps the later one)"
                    );
                    return;
                }
                Err(Skipped::Failed(e)) => {
                    tracing::error!(org, error = %e, "storing the refreshed token in redis failed");
                    return;
                }
                Err(skipped) if Instant::now() + POLL >= lease_ends => {
                    tracing::error!(
                        org,
                        error = %skipped,
                        "the refreshed token could not be stored in redis before the refresh lease \
                         ended; other sidecars refresh on their own next time"
                    );
                    return;
                }
                Err(_) => tokio::time::sleep(POLL).await,
            }
        }
    }

    async fn read(&self, org: &str) -> Result<(Option<StoredToken>, bool), Skipped> {
        let deadline = Instant::now() + Duration::from_secs(1);
        read_token(&self.link, &self.keys, org, deadline).await
    }

    async fn acquire(&self, org: &str, holder: &str) -> Result<Option<u64>, Skipped> {
        let deadline = Instant::now() + Duration::from_secs(1);
        acquire_refresh_lease(&self.link, &self.keys, org, holder, self.lease, deadline).await
    }

    async fn release(&self, org: &str, holder: &str) {
        let deadline = Instant::now() + Duration::from_secs(1);
        if let Err(e) = release_refresh_lease(&self.link, &self.keys, org, holder, deadline).await {
            // The lease ends on its own at its expiry.
            tracing::warn!(org, error = %e, "releasing the refresh lease failed");
        }
    }
}

/// A stored token this sidecar does not hand out yet: another sidecar's refresh, or any at start.
fn is_news(stored: &StoredToken, org: &OrgView<'_>) -> bool {
    org.current_access != Some(stored.access_token.as_str())
}

fn adopted(stored: &StoredToken) -> Coordinated {
    Coordinated::Adopted {
        token: TokenResponse {
            access_token: stored.access_token.clone(),
            instance_url: stored.instance_url.clone(),
            id: stored.identity_url.clone(),
            token_type: "Bearer".into(),
            issued_at: Some(stored.issued_at_ms.to_string()),
            signature: String::new(),
            scope: String::new(),
            refresh_token: stored.refresh_token.clone(),
        },
        fence: stored.fence,
    }
}

fn not_now(skipped: &Skipped) -> Coordinated {
    Coordinated::NotNow(TokenError::Fleet(format!(
        "the fleet's redis cannot coordinate the refresh ({skipped}); keeping the last token"
    )))
}
