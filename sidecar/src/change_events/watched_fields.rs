//! Which fields of an object can change a cached answer of the org: an update that changes none
//! of them (a Contact's `Title` or `Description` when no profile reads it) drops nothing. Read
//! from the org's lookup profiles; anything the sidecar cannot bound this way drops on any
//! change, as before.

use std::collections::HashSet;

use natterbox_common::config::{standard_phone_fields, OrgConfig, OWNER_USER_FIELDS};

/// The fields of one object whose change matters (None: every field), and its phone fields
/// (a changed number can make an unknown caller known). Names compare without case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchedFields {
    fields: Option<HashSet<String>>,
    phones: HashSet<String>,
}

impl WatchedFields {
    /// For `object`'s changes in `org`.
    ///
    /// - Every field: when the org has named queries (their SOQL/SOSL text is not read here, so
    ///   any column may be one of theirs), or no profile looks the object up (nothing bounds
    ///   which of its fields an answer holds).
    /// - Else the fields the profiles' lookups of the object return or map (`Id`, `Name`,
    ///   `OwnerId` are always among them, see the config parser), its phone fields (a changed
    ///   number changes whom the record answers), the relationship field of each related path
    ///   (`Account.Name` → `AccountId`), and every field a related path names on some other
    ///   object (`Owner.Extension` → `Extension`), since this object may be the related one.
    ///   A User's owner-directory fields are watched too.
    pub fn of(org: &OrgConfig, object: &str) -> WatchedFields {
        let lookups: Vec<_> = org
            .profiles
            .iter()
            .flat_map(|p| &p.objects)
            .filter(|o| o.object.eq_ignore_ascii_case(object))
            .collect();
        let phones: HashSet<String> = standard_phone_fields(object)
            .unwrap_or(&[])
            .iter()
            .copied()
            .chain(
                lookups
                    .iter()
                    .flat_map(|l| l.phone_fields.iter().map(String::as_str)),
            )
            .map(str::to_ascii_lowercase)
            .collect();
        let is_user = object.eq_ignore_ascii_case("User");
        if !org.queries.is_empty() || (lookups.is_empty() && !is_user) {
            return WatchedFields {
                fields: None,
                phones,
            };
        }
        let mut fields: HashSet<String> = ["Id", "Name", "OwnerId"]
            .iter()
            .map(|f| f.to_ascii_lowercase())
            .collect();
        let mut add = |name: &str| {
            fields.insert(name.to_ascii_lowercase());
        };
        for phone in standard_phone_fields(object).unwrap_or(&[]) {
            add(phone);
        }
        for lookup in &lookups {
            let paths = lookup
                .fields
                .iter()
                .chain(&lookup.phone_fields)
                .chain(lookup.mappings.iter().map(|m| &m.field));
            for path in paths {
                match path.split_once('.') {
                    None => add(path),
                    Some((relationship, _)) => {
                        // `Owner` → `OwnerId`; a custom `Thing__r` → `Thing__c`.
                        match relationship.strip_suffix("__r") {
                            Some(custom) => add(&format!("{custom}__c")),
                            None => add(&format!("{relationship}Id")),
                        }
                    }
                }
            }
        }
        // Fields read through a relationship, on whatever object it leads to.
        let related = org
            .profiles
            .iter()
            .flat_map(|p| &p.objects)
            .flat_map(|o| o.fields.iter().chain(o.mappings.iter().map(|m| &m.field)))
            .filter_map(|path| path.split_once('.').map(|(_, rest)| rest));
        for rest in related {
            for part in rest.split('.') {
                add(part);
            }
        }
        if is_user {
            for field in OWNER_USER_FIELDS {
                add(field);
            }
            for mapping in &org.owners.user_fields {
                add(&mapping.field);
            }
        }
        WatchedFields {
            fields: Some(fields),
            phones,
        }
    }

    /// Every field matters.
    pub fn all(&self) -> bool {
        self.fields.is_none()
    }

    /// Whether one of the changed fields is a phone field of the object.
    pub fn phone_among(&self, changed: &[String]) -> bool {
        changed
            .iter()
            .any(|name| self.phones.contains(&name.to_ascii_lowercase()))
    }

    /// Whether a change of these fields (names from the event's bitmaps; a compound field's
    /// parts as `Name.FirstName`) can change a cached answer. No names (an update that says
    /// nothing of its fields) counts as a change of every field.
    pub fn touched_by(&self, changed: &[String]) -> bool {
        let Some(fields) = &self.fields else {
            return true;
        };
        if changed.is_empty() {
            return true;
        }
        changed.iter().any(|name| {
            let name = name.to_ascii_lowercase();
            match name.split_once('.') {
                // A part of a compound field: the compound (`Name`) or the part itself.
                Some((parent, part)) => fields.contains(parent) || fields.contains(part),
                None => fields.contains(&name),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn org(profiles: &str) -> OrgConfig {
        let xml = format!(
            r#"<configuration name="natterbox_sf.conf">
  <settings><param name="default-org" value="acme"/></settings>
  <orgs>
    <org name="acme" api-version="68.0" default-country="US" login-url="https://login.salesforce.com">
      <auth flow="jwt-bearer" client-id="c" username="u" private-key-file="/k.pem" audience="https://login.salesforce.com"/>
      {profiles}
    </org>
  </orgs>
</configuration>"#
        );
        let config = natterbox_common::config::Config::parse(&xml).expect("config");
        config.orgs[0].clone()
    }

    const PROFILE: &str = r#"<profile name="default">
        <object name="Contact" fields="Id,Name,OwnerId,Owner.Extension,Account.Name">
          <map field="Preferred_Queue__c" variable="sf_queue"/>
        </object>
        <object name="Account" fields="Id,Name,OwnerId"/>
      </profile>"#;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_change_to_fields_no_profile_reads_drops_nothing() {
        let contact = WatchedFields::of(&org(PROFILE), "Contact");
        for touched in [
            &["OwnerId", "LastModifiedDate"][..],
            &["Phone"],
            &["MobilePhone"],
            &["Name.FirstName"],
            &["AccountId"],
            &["Preferred_Queue__c"],
        ] {
            assert!(contact.touched_by(&names(touched)), "{touched:?}");
        }
        for untouched in [
            &["Title", "LastModifiedDate", "LastModifiedById"][..],
            &["Description"],
            &["MailingAddress.MailingCity"],
        ] {
            assert!(!contact.touched_by(&names(untouched)), "{untouched:?}");
        }
        assert!(contact.touched_by(&[]), "an update naming no field");
        // Account's Name is read through Contact's Account.Name; its Website is not read.
        let account = WatchedFields::of(&org(PROFILE), "Account");
        assert!(account.touched_by(&names(&["Name"])));
        assert!(!account.touched_by(&names(&["Website"])));
        // The owner directory reads a User's Extension; nothing reads its Title.
        let user = WatchedFields::of(&org(PROFILE), "User");
        assert!(user.touched_by(&names(&["Extension"])));
        assert!(!user.touched_by(&names(&["Title"])));
        assert!(contact.phone_among(&names(&["LastModifiedDate", "HomePhone"])));
        assert!(!contact.phone_among(&names(&["OwnerId"])));
    }

    #[test]
    fn objects_no_profile_looks_up_and_orgs_with_named_queries_watch_every_field() {
        assert!(WatchedFields::of(&org(PROFILE), "Case").all());
        let with_query = format!(
            r#"{PROFILE}<query name="cases" soql="SELECT Id, Subject FROM Case LIMIT 5"/>"#
        );
        assert!(WatchedFields::of(&org(&with_query), "Contact").all());
    }
}
