//! One API usage figure per org for the whole fleet: the latest `Sforce-Limit-Info`
//! (`api-usage=used/max`) any host's answer reported, kept in one Redis hash per org
//! (`<prefix>:usage:<org>`), so every host judges the org's call-time budget by what the fleet
//! spent, not by what it alone saw.
//!
//! Salesforce's figure is a rolling 24-hour count: it rises with every request and falls as the
//! day moves on. Answers of one org reach Redis from many hosts, not in the order Salesforce
//! counted them, so one Lua script (atomic: no other host's report can come between its read
//! and its write) keeps the higher figure when a lower one arrives within a short window of it
//! (an older answer overtaken by a newer one), and takes a lower figure after that (usage fell).

use std::time::{Duration, Instant};

use super::{Keys, RedisLink, Skipped};
use crate::salesforce::LimitInfo;

/// A lower figure reported within this long of a higher one is taken for an older answer.
pub const OUT_OF_ORDER_WINDOW: Duration = Duration::from_millis(1_000);
/// The figure of an org nobody asked about for a day says nothing any more.
const USAGE_TTL: Duration = Duration::from_secs(24 * 3600);

/// KEYS[1]: the org's usage hash. ARGV: used, max, window ms, ttl ms. Returns the fleet's
/// figure before (`-1`s when there was none) and after this report.
const REPORT_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local old = redis.call('HMGET', KEYS[1], 'used', 'max', 'at')
local old_used, old_max, at = tonumber(old[1]), tonumber(old[2]), tonumber(old[3])
local used = tonumber(ARGV[1])
if old_used and old_max and at and used < old_used and now - at <= tonumber(ARGV[3]) then
  return {old_used, old_max, old_used, old_max}
end
redis.call('HSET', KEYS[1], 'used', ARGV[1], 'max', ARGV[2], 'at', now)
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return {old_used or -1, old_max or -1, used, tonumber(ARGV[2])}
";

/// The org's fleet-wide usage around one report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedUsage {
    /// What the fleet knew before this report (none: no host had reported within a day).
    pub before: Option<LimitInfo>,
    /// What the fleet knows now: this report, or a newer one another host made.
    pub now: LimitInfo,
}

/// Adds one answer's `Sforce-Limit-Info` to the org's fleet-wide figure.
pub async fn report_usage(
    link: &RedisLink,
    keys: &Keys,
    org: &str,
    reported: LimitInfo,
    deadline: Instant,
) -> Result<SharedUsage, Skipped> {
    let key = keys.usage(org);
    let (before_used, before_max, used, max) = link
        .run(deadline, |mut c| async move {
            redis::Script::new(REPORT_SCRIPT)
                .key(key)
                .arg(reported.used)
                .arg(reported.max)
                .arg(OUT_OF_ORDER_WINDOW.as_millis() as u64)
                .arg(USAGE_TTL.as_millis() as u64)
                .invoke_async::<(i64, i64, i64, i64)>(&mut c)
                .await
        })
        .await?;
    let figure = |used: i64, max: i64| {
        Some(LimitInfo {
            used: u64::try_from(used).ok()?,
            max: u64::try_from(max).ok()?,
        })
    };
    Ok(SharedUsage {
        before: figure(before_used, before_max),
        now: figure(used, max).unwrap_or(reported),
    })
}

/// The org's fleet-wide figure, if any host reported one within a day.
pub async fn read_usage(
    link: &RedisLink,
    keys: &Keys,
    org: &str,
    deadline: Instant,
) -> Result<Option<LimitInfo>, Skipped> {
    let key = keys.usage(org);
    let (used, max) = link
        .run(deadline, |mut c| async move {
            redis::cmd("HMGET")
                .arg(key)
                .arg("used")
                .arg("max")
                .query_async::<(Option<u64>, Option<u64>)>(&mut c)
                .await
        })
        .await?;
    Ok(used.zip(max).map(|(used, max)| LimitInfo { used, max }))
}
