//! Named queries' answers (`sf_query`, `sf_search`) when records change: the invalidation hook
//! (`sf cache invalidate`, Change Data Capture) drops them as it drops lookups' answers. A query
//! that reads the changed object (its `FROM`, or one of its SOSL `RETURNING` objects) loses
//! every cached answer: a changed or new record can change which rows any of them has. Any
//! other query loses the answers that name one of the records (an `Id`, `OwnerId`, `AccountId`
//! … column), whose related fields may be what changed.
//!
//! Named queries' answers live only in each host's in-process cache (they are not written to
//! Redis), so each host drops its own when it hears the invalidation on the fleet's channel.

use crate::cache::{LookupCache, ScopeId};
use crate::engine::OrgRuntime;
use crate::fleet_cache::same_record;
use crate::query::QueryKey;

/// Removes the org's cached query answers the change can affect; how many.
pub(crate) fn invalidate_queries(
    cache: &LookupCache<QueryKey>,
    org: &OrgRuntime,
    object: &str,
    ids: &[String],
) -> usize {
    let (reading, others): (Vec<ScopeId>, Vec<ScopeId>) = {
        let mut reading = Vec::new();
        let mut others = Vec::new();
        for q in org.queries.values() {
            let reads_object = q
                .query
                .template
                .objects
                .iter()
                .any(|(name, _)| name.eq_ignore_ascii_case(object));
            if reads_object {
                reading.push(q.scope);
            } else {
                others.push(q.scope);
            }
        }
        (reading, others)
    };
    let mut removed = 0;
    if !reading.is_empty() {
        removed += cache.flush(Some(&reading));
    }
    if !others.is_empty() {
        removed += cache.remove_where(&others, |outcome| {
            outcome
                .vars
                .iter()
                .any(|(_, value)| names_a_record(value, ids))
        });
    }
    removed
}

/// Whether a cell is the id of one of the records (15 or 18 characters).
fn names_a_record(value: &str, ids: &[String]) -> bool {
    matches!(value.len(), 15 | 18) && ids.iter().any(|id| same_record(value, id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ids_name_records() {
        let ids = ["500000000000001AAA".to_string()];
        assert!(names_a_record("500000000000001", &ids));
        assert!(names_a_record("500000000000001AAA", &ids));
        assert!(!names_a_record("500000000000001 is the case", &ids));
        assert!(!names_a_record("500000000000002AAA", &ids));
    }
}
