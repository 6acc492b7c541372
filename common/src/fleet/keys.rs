//! Every Redis key and channel of the fleet, in one place. Keys are scoped by org (a tenant
//! never reads another's) and by a fingerprint of the profile's definition (hosts that map
//! different fields never share an answer). Only config text and E.164 digits go into a key:
//! nothing a caller typed.

/// The key scheme of one fleet (`key-prefix`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.to_string(),
        }
    }

    /// A cached answer: `<prefix>:l2:<org>:<profile>:<fingerprint>:<e164 digits>`. Org and
    /// profile names are config names (letters, digits, `-`, `_`; checked by the parser), so
    /// `:` cannot appear in them and one org's keys can never be spelled by another's.
    pub fn answer(&self, org: &str, profile: &str, fingerprint: u64, e164: u64) -> String {
        format!(
            "{}:l2:{}:{}:{fingerprint:016x}:{e164}",
            self.prefix,
            Self::part(org),
            Self::part(profile)
        )
    }

    /// The fleet-wide lease on asking Salesforce for one answer key.
    pub fn lease(&self, answer_key: &str) -> String {
        format!("{answer_key}:lease")
    }

    /// The answer keys that hold a record: what an invalidation of the record removes.
    pub fn record_index(&self, org: &str, record_id: &str) -> String {
        format!(
            "{}:rec:{}:{}",
            self.prefix,
            Self::part(org),
            Self::part(record_id)
        )
    }

    /// The org's not-found and multiple answers (a sorted set, scored by expiry in ms): what a
    /// new record can change.
    pub fn unsettled_index(&self, org: &str) -> String {
        format!("{}:unsettled:{}", self.prefix, Self::part(org))
    }

    /// The org's found answers naming a record of `object` (a sorted set, scored by expiry in
    /// ms): what a gap in the object's changes can have made wrong.
    pub fn object_index(&self, org: &str, object: &str) -> String {
        format!(
            "{}:obj:{}:{}",
            self.prefix,
            Self::part(org),
            Self::part(&object.to_ascii_lowercase())
        )
    }

    /// An org's API usage as the fleet last heard it from Salesforce (`usage.rs`).
    pub fn usage(&self, org: &str) -> String {
        format!("{}:usage:{}", self.prefix, Self::part(org))
    }

    /// The channel every host's module and sidecar subscribe to.
    pub fn channel(&self) -> String {
        format!("{}:fleet", self.prefix)
    }

    /// The stream of screen pops (and their acknowledgements) for one agent of one org, by
    /// Salesforce user id (`u`) or extension (`x`): what every sidecar with one of that agent's
    /// consoles reads.
    pub fn pop_stream(&self, org: &str, address: PopAddress, value: &str) -> String {
        let kind = match address {
            PopAddress::User => "u",
            PopAddress::Extension => "x",
        };
        format!(
            "{}:pops:{}:{kind}:{}",
            self.prefix,
            Self::part(org),
            Self::part(value)
        )
    }

    /// One org's agents' presence: a hash of user id → presence.
    pub fn presence(&self, org: &str) -> String {
        format!("{}:presence:{}", self.prefix, Self::part(org))
    }

    /// The channel sidecars hear presence changes on (the modules do not subscribe to it).
    pub fn presence_channel(&self) -> String {
        format!("{}:presence", self.prefix)
    }

    /// The lease on refreshing one org's token: held by one sidecar at a time.
    pub fn refresh_lease(&self, org: &str) -> String {
        format!("{}:refresh:{}", self.prefix, Self::part(org))
    }

    /// The org's fencing counter: each lease taken gets the next number.
    pub fn refresh_fence(&self, org: &str) -> String {
        format!("{}:refresh-fence:{}", self.prefix, Self::part(org))
    }

    /// The org's latest token (a hash: access token, rotated refresh token, fence, …). Holds a
    /// secret: see docs/fleet.md for the Redis ACL and TLS it needs.
    pub fn refresh_token_store(&self, org: &str) -> String {
        format!("{}:token:{}", self.prefix, Self::part(org))
    }

    /// Anything outside `[A-Za-z0-9_-]` becomes `%XX`, so no part can contain the separator.
    fn part(text: &str) -> std::borrow::Cow<'_, str> {
        if text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return text.into();
        }
        let mut out = String::with_capacity(text.len() * 3);
        for b in text.bytes() {
            if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
                out.push(b as char);
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        out.into()
    }
}

/// How a pop names its agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PopAddress {
    User,
    Extension,
}

/// FNV-1a, 64 bits: stable across hosts, builds and platforms (std's hasher is not).
pub fn fingerprint(text: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_scoped_by_org_profile_and_fingerprint() {
        let keys = Keys::new("nbsf");
        let a = keys.answer("acme", "default", 1, 441_632_960_123);
        assert_eq!(a, "nbsf:l2:acme:default:0000000000000001:441632960123");
        assert_ne!(a, keys.answer("acme2", "default", 1, 441_632_960_123));
        assert_ne!(a, keys.answer("acme", "default", 2, 441_632_960_123));
        assert_eq!(keys.lease(&a), format!("{a}:lease"));
    }

    #[test]
    fn a_separator_in_a_part_is_escaped() {
        let keys = Keys::new("p");
        assert_eq!(keys.record_index("a:b", "003x"), "p:rec:a%3Ab:003x");
        assert_ne!(
            keys.answer("a:b", "c", 0, 1),
            keys.answer("a", "b:c", 0, 1),
            "two orgs cannot spell one key"
        );
    }

    #[test]
    fn pop_streams_and_presence_are_scoped_by_org() {
        let keys = Keys::new("nbsf");
        assert_eq!(
            keys.pop_stream("acme", PopAddress::User, "005A"),
            "nbsf:pops:acme:u:005A"
        );
        assert_eq!(
            keys.pop_stream("acme", PopAddress::Extension, "1001"),
            "nbsf:pops:acme:x:1001"
        );
        assert_ne!(
            keys.pop_stream("acme", PopAddress::Extension, "1001"),
            keys.pop_stream("globex", PopAddress::Extension, "1001"),
            "one extension in two orgs is two streams"
        );
        assert_ne!(
            keys.pop_stream("a:x", PopAddress::User, "1"),
            keys.pop_stream("a", PopAddress::Extension, "1"),
            "an org name cannot spell another org's stream"
        );
        assert_eq!(keys.presence("acme"), "nbsf:presence:acme");
    }

    #[test]
    fn fingerprints_are_stable() {
        assert_eq!(fingerprint(""), 0xcbf2_9ce4_8422_2325);
        assert_ne!(fingerprint("a"), fingerprint("b"));
    }
}
