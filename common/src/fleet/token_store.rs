//! One org's token shared by the fleet's sidecars, for the refresh-token flow (docs/fleet.md,
//! "Tokens"). With refresh-token rotation every refresh kills the refresh token it used, so two
//! sidecars refreshing at once would leave one of them (and later the whole fleet) with a dead
//! refresh token. Hence:
//!
//! - a lease `<prefix>:refresh:<org>` (`SET NX PX`, a value unique to the holder's attempt) taken
//!   together with a fencing number (`INCR <prefix>:refresh-fence:<org>`) in one script: only
//!   the holder asks the token endpoint;
//! - the holder stores what it obtained in `<prefix>:token:<org>` with a script that refuses a
//!   fence lower than the stored one, so a holder that stalled past its lease cannot overwrite
//!   its successor's token;
//! - the lease is released by compare-and-delete (only the holder's own value).
//!
//! The stored hash holds a live refresh token: a secret (Redis ACL and TLS, see docs/fleet.md).
//! Nothing here logs a field of it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::{Keys, RedisLink, Skipped};

/// KEYS: lease, fence counter. ARGV: holder value, lease ms. The new fence, or nil when the
/// lease is held by someone else.
const ACQUIRE_SCRIPT: &str = r"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return redis.call('INCR', KEYS[2])
end
return false
";

/// KEYS: the token hash. ARGV: fence, then field/value pairs. 1 when written, 0 when a higher
/// fence is stored (the writer's lease ended and a successor wrote since).
const STORE_SCRIPT: &str = r"
local stored = tonumber(redis.call('HGET', KEYS[1], 'fence'))
if stored and stored > tonumber(ARGV[1]) then
  return 0
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'fence', ARGV[1], unpack(ARGV, 2))
return 1
";

/// KEYS: lease. ARGV: holder value. Deletes the lease only if it is still this holder's.
const RELEASE_SCRIPT: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// An org's token as the fleet knows it. `Debug` hides both tokens.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredToken {
    pub access_token: String,
    pub instance_url: String,
    /// The identity URL (`…/id/<org id>/<user id>`), empty when the answer had none.
    pub identity_url: String,
    pub issued_at_ms: u64,
    /// The rotated refresh token, when the connected app rotates them.
    pub refresh_token: Option<String>,
    /// SHA-256 (hex) of the configured refresh token this one descends from: a host configured
    /// with another authorization does not take it.
    pub configured_sha256: String,
    /// The fence of the lease under which it was obtained.
    pub fence: u64,
}

impl std::fmt::Debug for StoredToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredToken")
            .field("instance_url", &self.instance_url)
            .field("issued_at_ms", &self.issued_at_ms)
            .field("rotated", &self.refresh_token.is_some())
            .field("fence", &self.fence)
            .finish_non_exhaustive()
    }
}

impl StoredToken {
    fn fields(&self) -> Vec<(&'static str, String)> {
        let mut out = vec![
            ("access_token", self.access_token.clone()),
            ("instance_url", self.instance_url.clone()),
            ("identity_url", self.identity_url.clone()),
            ("issued_at_ms", self.issued_at_ms.to_string()),
            ("configured_sha256", self.configured_sha256.clone()),
        ];
        if let Some(refresh) = &self.refresh_token {
            out.push(("refresh_token", refresh.clone()));
        }
        out
    }

    fn from_hash(mut hash: HashMap<String, String>) -> Option<StoredToken> {
        Some(StoredToken {
            access_token: hash.remove("access_token").filter(|t| !t.is_empty())?,
            instance_url: hash.remove("instance_url").filter(|u| !u.is_empty())?,
            identity_url: hash.remove("identity_url").unwrap_or_default(),
            issued_at_ms: hash.remove("issued_at_ms")?.parse().ok()?,
            refresh_token: hash.remove("refresh_token").filter(|t| !t.is_empty()),
            configured_sha256: hash.remove("configured_sha256").unwrap_or_default(),
            fence: hash.remove("fence")?.parse().ok()?,
        })
    }
}

/// Takes the org's refresh lease for `lease` with `holder` (unique to this sidecar and
/// attempt). `Some(fence)`: this caller holds it; `None`: another does.
pub async fn acquire_refresh_lease(
    link: &RedisLink,
    keys: &Keys,
    org: &str,
    holder: &str,
    lease: Duration,
    deadline: Instant,
) -> Result<Option<u64>, Skipped> {
    let (lease_key, fence_key) = (keys.refresh_lease(org), keys.refresh_fence(org));
    let holder = holder.to_string();
    let ms = lease.as_millis() as u64;
    link.run(deadline, |mut c| async move {
        redis::Script::new(ACQUIRE_SCRIPT)
            .key(lease_key)
            .key(fence_key)
            .arg(holder)
            .arg(ms)
            .invoke_async::<Option<u64>>(&mut c)
            .await
    })
    .await
}

/// Stores `token` under its fence. `Ok(false)`: refused, a higher fence is stored.
pub async fn store_token(
    link: &RedisLink,
    keys: &Keys,
    org: &str,
    token: &StoredToken,
    deadline: Instant,
) -> Result<bool, Skipped> {
    let key = keys.refresh_token_store(org);
    let (fence, fields) = (token.fence, token.fields());
    link.run(deadline, |mut c| async move {
        let script = redis::Script::new(STORE_SCRIPT);
        let mut call = script.key(key);
        call.arg(fence);
        for (name, value) in &fields {
            call.arg(*name).arg(value.as_str());
        }
        let written: i64 = call.invoke_async(&mut c).await?;
        Ok(written == 1)
    })
    .await
}

/// Releases the lease if `holder` still has it (a lease that expired and was taken by another
/// sidecar is left alone).
pub async fn release_refresh_lease(
    link: &RedisLink,
    keys: &Keys,
    org: &str,
    holder: &str,
    deadline: Instant,
) -> Result<(), Skipped> {
    let key = keys.refresh_lease(org);
    let holder = holder.to_string();
    link.run(deadline, |mut c| async move {
        redis::Script::new(RELEASE_SCRIPT)
            .key(key)
            .arg(holder)
            .invoke_async::<i64>(&mut c)
            .await
    })
    .await
    .map(|_| ())
}

/// The org's stored token (None: none, or one that does not decode), and whether its refresh
/// lease is held now: one round trip.
pub async fn read_token(
    link: &RedisLink,
    keys: &Keys,
    org: &str,
    deadline: Instant,
) -> Result<(Option<StoredToken>, bool), Skipped> {
    let (store, lease) = (keys.refresh_token_store(org), keys.refresh_lease(org));
    let (hash, leased): (HashMap<String, String>, bool) = link
        .run(deadline, |mut c| async move {
            redis::pipe()
                .hgetall(store)
                .exists(lease)
                .query_async(&mut c)
                .await
        })
        .await?;
    Ok((StoredToken::from_hash(hash), leased))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_token_round_trips_and_its_debug_hides_the_tokens() {
        let token = StoredToken {
            access_token: "00Dx!secret-access".into(),
            instance_url: "https://acme.my.salesforce.com".into(),
            identity_url: "https://login.salesforce.com/id/00Dx/005x".into(),
            issued_at_ms: 1_700_000_000_000,
            refresh_token: Some("5Aep861secret-refresh".into()),
            configured_sha256: "ab".into(),
            fence: 7,
        };
        let mut hash: HashMap<String, String> = token
            .fields()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        hash.insert("fence".into(), "7".into());
        assert_eq!(StoredToken::from_hash(hash), Some(token.clone()));
        let debug = format!("{token:?}");
        assert!(!debug.contains("secret"), "{debug}");
        assert!(StoredToken::from_hash(HashMap::new()).is_none());
    }
}
