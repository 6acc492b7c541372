//! How far one change reaches into the cached answers (Change Data Capture, `sf cache
//! invalidate`): the answers naming the changed records always go; a change that can make an
//! unknown caller known takes the org's not-found answers too; a change Salesforce could not
//! describe takes every answer about the object.

use serde::{Deserialize, Serialize};

/// Which cached answers of an org a change drops.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Extent {
    /// The answers naming one of the records (an update, a delete).
    #[default]
    Records,
    /// Those, and the org's answers a new record can change: not-found and multiple ones (a
    /// record created or undeleted, or a phone field changed, may be a caller's).
    RecordsAndUnsettled,
    /// Every answer about the object, and the unsettled ones: changes were missed
    /// (`GAP_OVERFLOW`, an event without record ids).
    Object,
}

impl Extent {
    /// The extent of a change event: its `changeType`, whether it names records, and whether
    /// it changed a phone field.
    pub fn of_change(change_type: &str, has_ids: bool, phone_changed: bool) -> Extent {
        match change_type {
            _ if !has_ids => Extent::Object,
            "GAP_OVERFLOW" => Extent::Object,
            "CREATE" | "UNDELETE" | "GAP_CREATE" | "GAP_UNDELETE" => Extent::RecordsAndUnsettled,
            "UPDATE" if phone_changed => Extent::RecordsAndUnsettled,
            _ => Extent::Records,
        }
    }

    pub fn takes_unsettled(self) -> bool {
        self != Extent::Records
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_change_type_reaches_as_far_as_it_can_matter() {
        assert_eq!(Extent::of_change("UPDATE", true, false), Extent::Records);
        assert_eq!(Extent::of_change("DELETE", true, false), Extent::Records);
        assert_eq!(
            Extent::of_change("GAP_UPDATE", true, false),
            Extent::Records
        );
        assert_eq!(
            Extent::of_change("UPDATE", true, true),
            Extent::RecordsAndUnsettled
        );
        for created in ["CREATE", "UNDELETE", "GAP_CREATE", "GAP_UNDELETE"] {
            assert_eq!(
                Extent::of_change(created, true, false),
                Extent::RecordsAndUnsettled
            );
        }
        assert_eq!(
            Extent::of_change("GAP_OVERFLOW", false, false),
            Extent::Object
        );
        assert_eq!(Extent::of_change("UPDATE", false, false), Extent::Object);
        // Older senders omit the field: records only.
        let old: Extent = serde_json::from_str("\"records\"").unwrap();
        assert_eq!(old, Extent::default());
    }
}
