//! `GET /sobjects/X/describe`, reduced to what a config check needs: each field's name, type
//! and where a reference leads. Also the `Name` entity, which Salesforce resolves a polymorphic
//! reference to (Lead.Owner, Case.Owner, Task.Who) and which cannot be described over REST.

use serde::Deserialize;
use serde_json::Value;

/// One sObject's fields, as describe reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SObjectDescribe {
    pub name: String,
    pub fields: Vec<FieldDescribe>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct FieldDescribe {
    pub name: String,
    /// `string`, `phone`, `reference`, `id`, …
    #[serde(rename = "type")]
    pub field_type: String,
    #[serde(rename = "referenceTo", default)]
    pub reference_to: Vec<String>,
    #[serde(rename = "relationshipName", default)]
    pub relationship_name: Option<String>,
    #[serde(rename = "polymorphicForeignKey", default)]
    pub polymorphic_foreign_key: bool,
}

impl FieldDescribe {
    /// A reference that can point at more than one object: Salesforce resolves a path through
    /// it to the `Name` entity, whatever the record's owner really is.
    pub fn is_polymorphic(&self) -> bool {
        self.polymorphic_foreign_key || self.reference_to.len() > 1
    }
}

/// Where a relationship segment of a field path leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parent {
    /// One object type: its own describe says which fields follow.
    Object(String),
    /// Several object types: only the `Name` entity's fields follow.
    NameEntity,
}

impl SObjectDescribe {
    /// Parses a describe body. Fields Salesforce added later and the checker does not need are
    /// ignored.
    pub fn from_json(body: &Value) -> Result<SObjectDescribe, String> {
        let name = body
            .get("name")
            .and_then(Value::as_str)
            .ok_or("describe has no name")?
            .to_string();
        let fields = body
            .get("fields")
            .cloned()
            .ok_or("describe has no fields")?;
        let fields: Vec<FieldDescribe> =
            serde_json::from_value(fields).map_err(|e| format!("describe fields: {e}"))?;
        Ok(SObjectDescribe { name, fields })
    }

    /// A field by API name, case-insensitively like SOQL.
    pub fn field(&self, name: &str) -> Option<&FieldDescribe> {
        self.fields
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(name))
    }

    /// A relationship (`Owner`, `Account`, `Queue__r`) and where it leads.
    pub fn relationship(&self, name: &str) -> Option<(&FieldDescribe, Parent)> {
        let field = self.fields.iter().find(|f| {
            f.relationship_name
                .as_deref()
                .is_some_and(|r| r.eq_ignore_ascii_case(name))
        })?;
        let parent = if field.is_polymorphic() {
            Parent::NameEntity
        } else {
            Parent::Object(field.reference_to.first()?.clone())
        };
        Some((field, parent))
    }

    /// The `Name` entity as the Object Reference lists it ("Name", Field Reference): the only
    /// fields a path through a polymorphic reference can reach. `MiddleName` and `Suffix` are
    /// left out: they exist only in orgs that turned them on.
    pub fn name_entity() -> SObjectDescribe {
        let field = |name: &str, field_type: &str, to: &[&str], rel: Option<&str>| FieldDescribe {
            name: name.into(),
            field_type: field_type.into(),
            reference_to: to.iter().map(|s| s.to_string()).collect(),
            relationship_name: rel.map(str::to_string),
            polymorphic_foreign_key: false,
        };
        let mut fields: Vec<FieldDescribe> = [
            ("Alias", "string"),
            ("Email", "email"),
            ("FirstName", "string"),
            ("Id", "id"),
            ("IsActive", "boolean"),
            ("LastName", "string"),
            ("LastReferencedDate", "datetime"),
            ("LastViewedDate", "datetime"),
            ("Name", "string"),
            ("NameOrAlias", "string"),
            ("Phone", "phone"),
            ("Title", "string"),
            ("Type", "picklist"),
            ("Username", "string"),
        ]
        .into_iter()
        .map(|(name, t)| field(name, t, &[], None))
        .collect();
        fields.push(field(
            "ProfileId",
            "reference",
            &["Profile"],
            Some("Profile"),
        ));
        fields.push(field(
            "RecordTypeId",
            "reference",
            &["RecordType"],
            Some("RecordType"),
        ));
        fields.push(field(
            "UserRoleId",
            "reference",
            &["UserRole"],
            Some("UserRole"),
        ));
        SObjectDescribe {
            name: "Name".into(),
            fields,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_fields_and_tells_polymorphic_references_apart() {
        let lead = SObjectDescribe::from_json(&json!({
            "name": "Lead", "label": "Lead",
            "fields": [
                {"name": "Id", "type": "id", "referenceTo": [], "relationshipName": null},
                {"name": "Phone", "type": "phone", "referenceTo": []},
                {"name": "OwnerId", "type": "reference", "referenceTo": ["Group", "User"],
                 "relationshipName": "Owner", "polymorphicForeignKey": true, "nillable": false},
                {"name": "ConvertedAccountId", "type": "reference", "referenceTo": ["Account"],
                 "relationshipName": "ConvertedAccount", "polymorphicForeignKey": false}
            ]
        }))
        .unwrap();
        assert_eq!(lead.field("phone").unwrap().field_type, "phone");
        assert_eq!(lead.relationship("owner").unwrap().1, Parent::NameEntity);
        assert_eq!(
            lead.relationship("ConvertedAccount").unwrap().1,
            Parent::Object("Account".into())
        );
        assert!(lead.relationship("Account").is_none());
        let name = SObjectDescribe::name_entity();
        assert!(name.field("Extension").is_none());
        assert!(name.field("Name").is_some() && name.field("type").is_some());
        assert!(SObjectDescribe::from_json(&json!({"name": "X"})).is_err());
    }
}
