//! The org's object model: which sObjects exist, their fields and how describe reports them.

use serde_json::{json, Value};
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    Id,
    String,
    Phone,
    Email,
    Url,
    Textarea,
    Picklist,
    Combobox,
    Reference,
    Boolean,
    Int,
    Double,
    Date,
    DateTime,
}

impl FieldType {
    pub fn describe_name(self) -> &'static str {
        match self {
            FieldType::Id => "id",
            FieldType::String => "string",
            FieldType::Phone => "phone",
            FieldType::Email => "email",
            FieldType::Url => "url",
            FieldType::Textarea => "textarea",
            FieldType::Picklist => "picklist",
            FieldType::Combobox => "combobox",
            FieldType::Reference => "reference",
            FieldType::Boolean => "boolean",
            FieldType::Int => "int",
            FieldType::Double => "double",
            FieldType::Date => "date",
            FieldType::DateTime => "datetime",
        }
    }

    pub fn soap_type(self) -> &'static str {
        match self {
            FieldType::Id | FieldType::Reference => "tns:ID",
            FieldType::Boolean => "xsd:boolean",
            FieldType::Int => "xsd:int",
            FieldType::Double => "xsd:double",
            FieldType::Date => "xsd:date",
            FieldType::DateTime => "xsd:dateTime",
            _ => "xsd:string",
        }
    }

    pub fn is_text(self) -> bool {
        matches!(
            self,
            FieldType::String
                | FieldType::Phone
                | FieldType::Email
                | FieldType::Url
                | FieldType::Textarea
                | FieldType::Picklist
                | FieldType::Combobox
        )
    }
}

#[derive(Debug, Clone)]
pub struct FieldDef {
    pub name: String,
    pub label: String,
    pub ftype: FieldType,
    pub length: u32,
    pub nillable: bool,
    /// Must be present on create (not nillable, createable, no default).
    pub required: bool,
    pub createable: bool,
    pub updateable: bool,
    pub external_id: bool,
    pub unique: bool,
    pub name_field: bool,
    pub default: Option<Value>,
    pub reference_to: Vec<String>,
    pub relationship_name: Option<String>,
    pub picklist: Vec<String>,
    pub restricted: bool,
    pub custom: bool,
}

impl FieldDef {
    fn new(name: &str, label: &str, ftype: FieldType) -> Self {
        let length = match ftype {
            FieldType::Id | FieldType::Reference => 18,
            FieldType::Phone => 40,
            FieldType::Email => 80,
            FieldType::Textarea => 32_000,
            FieldType::Picklist | FieldType::Combobox | FieldType::String | FieldType::Url => 255,
            _ => 0,
        };
        FieldDef {
            name: name.into(),
            label: label.into(),
            ftype,
            length,
            nillable: true,
            required: false,
            createable: true,
            updateable: true,
            external_id: false,
            unique: false,
            name_field: false,
            default: None,
            reference_to: vec![],
            relationship_name: None,
            picklist: vec![],
            restricted: false,
            custom: name.ends_with("__c"),
        }
    }
    fn len(mut self, n: u32) -> Self {
        self.length = n;
        self
    }
    fn required(mut self) -> Self {
        self.required = true;
        self.nillable = false;
        self
    }
    fn read_only(mut self) -> Self {
        self.createable = false;
        self.updateable = false;
        self
    }
    fn create_only(mut self) -> Self {
        self.updateable = false;
        self
    }
    fn not_null(mut self) -> Self {
        self.nillable = false;
        self
    }
    fn default(mut self, v: Value) -> Self {
        self.default = Some(v);
        self.nillable = false;
        self
    }
    fn ext_id(mut self) -> Self {
        self.external_id = true;
        self
    }
    fn name_field(mut self) -> Self {
        self.name_field = true;
        self
    }
    fn refs(mut self, to: &[&str], rel: &str) -> Self {
        self.reference_to = to.iter().map(|s| s.to_string()).collect();
        self.relationship_name = Some(rel.into());
        self
    }
    fn picklist(mut self, values: &[&str], restricted: bool) -> Self {
        self.picklist = values.iter().map(|s| s.to_string()).collect();
        self.restricted = restricted;
        self
    }

    /// A reference to more than one object type: its relationship resolves to the `Name` entity.
    pub fn is_polymorphic(&self) -> bool {
        self.reference_to.len() > 1
    }

    pub fn describe(&self) -> Value {
        json!({
            "name": self.name,
            "label": self.label,
            "type": self.ftype.describe_name(),
            "soapType": self.ftype.soap_type(),
            "length": self.length,
            "byteLength": self.length * 3,
            "precision": if self.ftype == FieldType::Double { 18 } else { 0 },
            "scale": if self.ftype == FieldType::Double { 2 } else { 0 },
            "digits": if self.ftype == FieldType::Int { 9 } else { 0 },
            "nillable": self.nillable,
            "createable": self.createable,
            "updateable": self.updateable,
            "defaultedOnCreate": self.default.is_some() || !self.createable,
            "defaultValue": self.default.clone().unwrap_or(Value::Null),
            "externalId": self.external_id,
            "idLookup": self.external_id || self.ftype == FieldType::Id,
            "unique": self.unique,
            "nameField": self.name_field,
            "custom": self.custom,
            "calculated": false,
            "filterable": self.ftype != FieldType::Textarea,
            "sortable": self.ftype != FieldType::Textarea,
            "groupable": self.ftype != FieldType::Textarea,
            "referenceTo": self.reference_to,
            "relationshipName": self.relationship_name,
            "namePointing": self.is_polymorphic(),
            "polymorphicForeignKey": self.is_polymorphic(),
            "restrictedPicklist": self.restricted,
            "picklistValues": self.picklist.iter().map(|v| json!({
                "active": true, "defaultValue": self.default.as_ref().and_then(Value::as_str) == Some(v.as_str()),
                "label": v, "validFor": null, "value": v,
            })).collect::<Vec<_>>(),
        })
    }
}

#[derive(Debug, Clone)]
pub struct ObjectDef {
    pub name: String,
    pub label: String,
    pub label_plural: String,
    pub key_prefix: String,
    pub custom: bool,
    /// Platform event: create publishes, nothing is stored or queryable.
    pub is_event: bool,
    pub fields: Vec<FieldDef>,
}

impl ObjectDef {
    pub fn field(&self, name: &str) -> Option<&FieldDef> {
        self.fields
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(name))
    }

    pub fn relationship(&self, rel: &str) -> Option<&FieldDef> {
        self.fields.iter().find(|f| {
            f.relationship_name
                .as_deref()
                .is_some_and(|r| r.eq_ignore_ascii_case(rel))
        })
    }

    pub fn phone_fields(&self) -> impl Iterator<Item = &FieldDef> {
        self.fields.iter().filter(|f| f.ftype == FieldType::Phone)
    }

    fn urls(&self, v: &str) -> Value {
        let base = format!("/services/data/v{v}/sobjects/{}", self.name);
        json!({
            "sobject": base,
            "describe": format!("{base}/describe"),
            "rowTemplate": format!("{base}/{{ID}}"),
        })
    }

    pub fn global_entry(&self, v: &str) -> Value {
        json!({
            "name": self.name, "label": self.label, "labelPlural": self.label_plural,
            "keyPrefix": self.key_prefix, "custom": self.custom,
            "customSetting": false, "createable": true, "updateable": !self.is_event,
            "deletable": !self.is_event, "queryable": !self.is_event,
            "retrieveable": !self.is_event, "searchable": !self.is_event,
            "layoutable": !self.is_event, "triggerable": true, "mergeable": false,
            "replicateable": !self.is_event, "undeletable": !self.is_event,
            "activateable": false, "feedEnabled": false, "deprecatedAndHidden": false,
            "urls": self.urls(v),
        })
    }

    pub fn describe(&self, v: &str) -> Value {
        let mut d = self.global_entry(v);
        if let Some(o) = d.as_object_mut() {
            o.insert(
                "fields".into(),
                Value::Array(self.fields.iter().map(FieldDef::describe).collect()),
            );
            o.insert("childRelationships".into(), json!([]));
            o.insert("recordTypeInfos".into(), json!([]));
        }
        d
    }
}

/// Salesforce's `Name` entity: what a polymorphic relationship (`Lead.Owner`, `Case.Owner`,
/// `Task.Who`, `Task.What`, …) resolves to. Only these fields are selectable through it — the
/// field list of the Salesforce Field Reference for `Name` (API 66.0). It is not queryable
/// itself and not in describeGlobal.
pub fn name_entity() -> &'static ObjectDef {
    static NAME: std::sync::OnceLock<ObjectDef> = std::sync::OnceLock::new();
    NAME.get_or_init(|| {
        use FieldType as T;
        let f = |n: &str, l: &str, t: FieldType| {
            let mut d = FieldDef::new(n, l, t).read_only();
            d.custom = false;
            d
        };
        ObjectDef {
            name: "Name".into(),
            label: "Name".into(),
            label_plural: "Names".into(),
            key_prefix: String::new(),
            custom: false,
            is_event: false,
            fields: vec![
                f("Id", "ID", T::Id).not_null(),
                f("Alias", "Alias", T::String).len(8),
                f("Email", "Email", T::Email),
                f("FirstName", "First Name", T::String).len(40),
                f("IsActive", "Active", T::Boolean).not_null(),
                f("LastName", "Last Name", T::String).len(80),
                f("LastReferencedDate", "Last Referenced Date", T::DateTime),
                f("LastViewedDate", "Last Viewed Date", T::DateTime),
                f("Name", "Name", T::String).len(255).name_field(),
                f("NameOrAlias", "Name or Alias", T::String).len(80),
                f("Phone", "Phone", T::Phone),
                f("ProfileId", "Profile ID", T::Reference).refs(&["Profile"], "Profile"),
                f("RecordTypeId", "Record Type ID", T::Reference)
                    .refs(&["RecordType"], "RecordType"),
                f("Title", "Title", T::String).len(80),
                f("Type", "Type", T::Picklist).len(40),
                f("UserRoleId", "Role ID", T::Reference).refs(&["UserRole"], "UserRole"),
                f("Username", "Username", T::String).len(80),
            ],
        }
    })
}

/// The value a `Name` entity field takes for the real parent record `rec` (a User, a queue, a
/// Contact, …): user-only fields are null for other parents, `Type` is the parent's type
/// (`User`, `Queue`, `Contact`, …) and `Name` the parent's name field.
pub fn name_entity_value(rec: &crate::store::Record, field: &str) -> Value {
    let own = |f: &str| rec.get(f).clone();
    let object = rec.object.as_str();
    let is_user = object == "User";
    match field {
        "Id" => Value::from(rec.id.clone()),
        "Type" => match object {
            "Group" => own("Type"),
            other => Value::from(other),
        },
        "Name" if object == "Case" => own("CaseNumber"),
        "Name" => own("Name"),
        "FirstName" | "LastName" if matches!(object, "User" | "Contact" | "Lead") => own(field),
        "Email" if is_user || object == "Group" => own("Email"),
        "IsActive" => Value::Bool(is_user && own("IsActive").as_bool().unwrap_or(false)),
        "NameOrAlias" if is_user => own("Alias"),
        "Alias" | "Phone" | "Title" | "Username" | "ProfileId" | "UserRoleId" if is_user => {
            own(field)
        }
        _ => Value::Null,
    }
}

#[derive(Debug, Clone)]
pub struct Schema {
    /// Shared: a parsed query holds its objects' definitions without copying them.
    pub objects: Vec<Arc<ObjectDef>>,
}

impl Schema {
    pub fn object(&self, name: &str) -> Option<&ObjectDef> {
        self.object_shared(name).map(Arc::as_ref)
    }

    pub fn object_shared(&self, name: &str) -> Option<&Arc<ObjectDef>> {
        self.objects
            .iter()
            .find(|o| o.name.eq_ignore_ascii_case(name))
    }

    pub fn by_prefix(&self, prefix: &str) -> Option<&ObjectDef> {
        self.objects
            .iter()
            .find(|o| o.key_prefix == prefix)
            .map(Arc::as_ref)
    }

    /// The built-in object model (see README "Objects").
    pub fn standard() -> Schema {
        use FieldType as T;
        let f = FieldDef::new;
        let system = |fields: &mut Vec<FieldDef>| {
            fields.push(
                f("CreatedDate", "Created Date", T::DateTime)
                    .read_only()
                    .not_null(),
            );
            fields.push(
                f("CreatedById", "Created By ID", T::Reference)
                    .read_only()
                    .refs(&["User"], "CreatedBy"),
            );
            fields.push(
                f("LastModifiedDate", "Last Modified Date", T::DateTime)
                    .read_only()
                    .not_null(),
            );
            fields.push(
                f("LastModifiedById", "Last Modified By ID", T::Reference)
                    .read_only()
                    .refs(&["User"], "LastModifiedBy"),
            );
            fields.push(f("IsDeleted", "Deleted", T::Boolean).read_only().not_null());
        };
        let obj = |name: &str,
                   label: &str,
                   plural: &str,
                   prefix: &str,
                   mut fields: Vec<FieldDef>,
                   is_event: bool| {
            fields.insert(
                0,
                f("Id", &format!("{label} ID"), T::Id)
                    .read_only()
                    .not_null(),
            );
            if !is_event {
                system(&mut fields);
            }
            ObjectDef {
                name: name.into(),
                label: label.into(),
                label_plural: plural.into(),
                key_prefix: prefix.into(),
                custom: name.ends_with("__c") || name.ends_with("__e"),
                is_event,
                fields,
            }
        };
        // Account and Contact owners are users; Lead, Case, Task and custom-object owners can be
        // a user or a queue (Group), so their `Owner` resolves to the `Name` entity.
        let owner = || {
            f("OwnerId", "Owner ID", T::Reference)
                .refs(&["User"], "Owner")
                .not_null()
        };
        let queue_owner = || {
            f("OwnerId", "Owner ID", T::Reference)
                .refs(&["Group", "User"], "Owner")
                .not_null()
        };
        let account = obj(
            "Account",
            "Account",
            "Accounts",
            "001",
            vec![
                f("Name", "Account Name", T::String).required().name_field(),
                f("AccountNumber", "Account Number", T::String).len(40),
                f("Phone", "Account Phone", T::Phone),
                f("Fax", "Account Fax", T::Phone),
                f("Type", "Account Type", T::Picklist).picklist(
                    &[
                        "Prospect",
                        "Customer - Direct",
                        "Customer - Channel",
                        "Partner",
                        "Other",
                    ],
                    false,
                ),
                f("Industry", "Industry", T::Picklist).picklist(
                    &["Technology", "Finance", "Retail", "Manufacturing", "Other"],
                    false,
                ),
                f("Website", "Website", T::Url),
                f("BillingCountry", "Billing Country", T::String).len(80),
                f("ParentId", "Parent Account ID", T::Reference).refs(&["Account"], "Parent"),
                owner(),
            ],
            false,
        );
        let contact = obj(
            "Contact",
            "Contact",
            "Contacts",
            "003",
            vec![
                f("FirstName", "First Name", T::String).len(40),
                f("LastName", "Last Name", T::String).len(80).required(),
                f("Name", "Full Name", T::String)
                    .len(121)
                    .read_only()
                    .name_field(),
                f("Salutation", "Salutation", T::Picklist)
                    .picklist(&["Mr.", "Ms.", "Mrs.", "Dr.", "Prof."], false),
                f("AccountId", "Account ID", T::Reference).refs(&["Account"], "Account"),
                f("Title", "Title", T::String).len(128),
                f("Email", "Email", T::Email),
                f("Phone", "Business Phone", T::Phone),
                f("MobilePhone", "Mobile Phone", T::Phone),
                f("HomePhone", "Home Phone", T::Phone),
                f("OtherPhone", "Other Phone", T::Phone),
                f("AssistantPhone", "Asst. Phone", T::Phone),
                f("Fax", "Business Fax", T::Phone),
                f("MailingCountry", "Mailing Country", T::String).len(80),
                f("Preferred_Queue__c", "Preferred Queue", T::String).len(80),
                f("External_Id__c", "External Id", T::String)
                    .len(50)
                    .ext_id(),
                owner(),
            ],
            false,
        );
        let lead = obj(
            "Lead",
            "Lead",
            "Leads",
            "00Q",
            vec![
                f("FirstName", "First Name", T::String).len(40),
                f("LastName", "Last Name", T::String).len(80).required(),
                f("Name", "Full Name", T::String)
                    .len(121)
                    .read_only()
                    .name_field(),
                f("Company", "Company", T::String).required(),
                f("Title", "Title", T::String).len(128),
                f("Status", "Status", T::Picklist)
                    .picklist(
                        &[
                            "Open - Not Contacted",
                            "Working - Contacted",
                            "Closed - Converted",
                            "Closed - Not Converted",
                        ],
                        false,
                    )
                    .default(Value::from("Open - Not Contacted")),
                f("Email", "Email", T::Email),
                f("Phone", "Phone", T::Phone),
                f("MobilePhone", "Mobile Phone", T::Phone),
                f("Fax", "Fax", T::Phone),
                f("Country", "Country", T::String).len(80),
                f("IsConverted", "Converted", T::Boolean)
                    .create_only()
                    .default(Value::Bool(false)),
                f("External_Id__c", "External Id", T::String)
                    .len(50)
                    .ext_id(),
                queue_owner(),
            ],
            false,
        );
        let user = obj(
            "User",
            "User",
            "Users",
            "005",
            vec![
                f("Username", "Username", T::String).len(80).required(),
                f("FirstName", "First Name", T::String).len(40),
                f("LastName", "Last Name", T::String).len(80).required(),
                f("Name", "Full Name", T::String)
                    .len(121)
                    .read_only()
                    .name_field(),
                f("Alias", "Alias", T::String).len(8),
                f("Title", "Title", T::String).len(80),
                f("Email", "Email", T::Email).required(),
                f("Phone", "Phone", T::Phone),
                f("MobilePhone", "Mobile", T::Phone),
                f("Fax", "Fax", T::Phone),
                f("Extension", "Extension", T::Phone),
                f("IsActive", "Active", T::Boolean).default(Value::Bool(true)),
                f("FederationIdentifier", "SAML Federation ID", T::String).len(512),
                f("CallCenterId", "Call Center ID", T::Reference)
                    .refs(&["CallCenter"], "CallCenter"),
            ],
            false,
        );
        // Queues are Group records with Type = Queue (Object Reference: Group).
        let group = obj(
            "Group",
            "Group",
            "Groups",
            "00G",
            vec![
                f("Name", "Name", T::String).len(40).required().name_field(),
                f("DeveloperName", "Developer Name", T::String).len(80),
                f("Type", "Type", T::Picklist)
                    .len(40)
                    .picklist(
                        &[
                            "Regular",
                            "Role",
                            "RoleAndSubordinates",
                            "Organization",
                            "Queue",
                        ],
                        true,
                    )
                    .required(),
                f("Email", "Email", T::Email),
                f(
                    "DoesSendEmailToMembers",
                    "Send Email to Members",
                    T::Boolean,
                )
                .default(Value::Bool(false)),
            ],
            false,
        );
        let case = obj(
            "Case",
            "Case",
            "Cases",
            "500",
            vec![
                f("CaseNumber", "Case Number", T::String)
                    .len(30)
                    .read_only()
                    .name_field(),
                f("Subject", "Subject", T::String),
                f("Description", "Description", T::Textarea),
                f("Status", "Status", T::Picklist)
                    .picklist(&["New", "Working", "Escalated", "Closed"], false)
                    .default(Value::from("New")),
                f("Priority", "Priority", T::Picklist)
                    .picklist(&["High", "Medium", "Low"], false)
                    .default(Value::from("Medium")),
                f("Origin", "Case Origin", T::Picklist).picklist(&["Phone", "Email", "Web"], false),
                f("SuppliedPhone", "Web Phone", T::String).len(40),
                f("ContactId", "Contact ID", T::Reference).refs(&["Contact"], "Contact"),
                f("AccountId", "Account ID", T::Reference).refs(&["Account"], "Account"),
                // Set from Status by Salesforce; read-only over the API.
                f("IsClosed", "Closed", T::Boolean)
                    .read_only()
                    .not_null()
                    .default(Value::Bool(false)),
                queue_owner(),
            ],
            false,
        );
        let task = obj(
            "Task",
            "Task",
            "Tasks",
            "00T",
            vec![
                f("Subject", "Subject", T::Combobox)
                    .picklist(&["Call", "Send Letter", "Send Quote", "Other"], false),
                f("TaskSubtype", "Task Subtype", T::Picklist)
                    .picklist(
                        &["Task", "Email", "ListEmail", "Cadence", "Call", "LinkedIn"],
                        true,
                    )
                    .create_only(),
                f("Type", "Type", T::Picklist)
                    .picklist(&["Call", "Email", "Meeting", "Other"], false),
                f("Status", "Status", T::Picklist)
                    .picklist(
                        &[
                            "Not Started",
                            "In Progress",
                            "Completed",
                            "Waiting on someone else",
                            "Deferred",
                        ],
                        false,
                    )
                    .required(),
                f("Priority", "Priority", T::Picklist)
                    .picklist(&["High", "Normal", "Low"], false)
                    .default(Value::from("Normal")),
                f("CallType", "Call Type", T::Picklist)
                    .len(40)
                    .picklist(&["Inbound", "Outbound", "Internal"], true),
                f("CallDurationInSeconds", "Call Duration", T::Int),
                f("CallObject", "Call Object Identifier", T::String),
                f("CallDisposition", "Call Result", T::String),
                f("WhoId", "Name ID", T::Reference).refs(&["Contact", "Lead"], "Who"),
                f("WhatId", "Related To ID", T::Reference)
                    .refs(&["Account", "Case", "Routing_Rule__c"], "What"),
                f("AccountId", "Account ID", T::Reference)
                    .refs(&["Account"], "Account")
                    .read_only(),
                f("ActivityDate", "Due Date Only", T::Date),
                f("Description", "Description", T::Textarea),
                f("IsClosed", "Closed", T::Boolean).read_only().not_null(),
                queue_owner(),
            ],
            false,
        );
        let rule = obj(
            "Routing_Rule__c",
            "Routing Rule",
            "Routing Rules",
            "a0R",
            vec![
                f("Name", "Routing Rule Name", T::String)
                    .len(80)
                    .name_field(),
                f("Phone__c", "Phone", T::Phone),
                f("Queue__c", "Queue", T::String).len(80),
                f("Priority__c", "Priority", T::Double),
                f("Active__c", "Active", T::Boolean).default(Value::Bool(true)),
                // The IVR menu digit the rule answers (freeswitch-conf/dialplan examples).
                f("Menu_Key__c", "Menu Key", T::String).len(10),
                f("Valid_From__c", "Valid From", T::Date),
                queue_owner(),
            ],
            false,
        );
        let pop = obj(
            "Screen_Pop__e",
            "Screen Pop",
            "Screen Pops",
            "e01",
            vec![
                f("Phone__c", "Phone", T::String).len(40),
                f("Agent_Id__c", "Agent Id", T::String).len(18),
                f("RecordId__c", "Record Id", T::String).len(18),
                f("Call_Id__c", "Call Id", T::String).len(64),
                f("Direction__c", "Direction", T::String).len(20),
                f("CreatedDate", "Created Date", T::DateTime).read_only(),
                f("CreatedById", "Created By ID", T::Reference).read_only(),
                f("ReplayId", "Replay ID", T::String).read_only(),
                f("EventUuid", "Event UUID", T::String).len(36).read_only(),
            ],
            true,
        );
        // Written only by Salesforce itself (here: the Telephony Integration API, telephony.rs);
        // over the REST API it is read and queried (fact sheet 6.2), so every field is read-only.
        let voice_call = obj(
            "VoiceCall",
            "Voice Call",
            "Voice Calls",
            "0LQ",
            vec![
                f("VendorCallKey", "Vendor Call Key", T::String).read_only(),
                f("CallType", "Call Type", T::Picklist)
                    .picklist(
                        &["Inbound", "Outbound", "Internal", "Transfer", "Callback"],
                        true,
                    )
                    .read_only(),
                f("FromPhoneNumber", "From Phone Number", T::String).read_only(),
                f("ToPhoneNumber", "To Phone Number", T::String).read_only(),
                f("CallStartDateTime", "Call Start Date Time", T::DateTime).read_only(),
                f("CallAcceptDateTime", "Call Accept Date Time", T::DateTime).read_only(),
                f("CallEndDateTime", "Call End Date Time", T::DateTime).read_only(),
                f("CallDisposition", "Call Disposition", T::String).read_only(),
                f("CallDurationInSeconds", "Call Duration In Seconds", T::Int).read_only(),
                f("ParentVoiceCallId", "Parent Voice Call ID", T::Reference)
                    .refs(&["VoiceCall"], "ParentVoiceCall")
                    .read_only(),
            ],
            false,
        );
        // Omni-Channel's offer of a work item to an agent (omni.rs); Salesforce's own, read-only.
        let agent_work = obj(
            "AgentWork",
            "Agent Work",
            "Agent Work",
            "0Bz",
            vec![
                f("WorkItemId", "Work Item ID", T::Reference)
                    .refs(&["VoiceCall"], "WorkItem")
                    .read_only(),
                f("UserId", "User ID", T::Reference)
                    .refs(&["User"], "User")
                    .read_only(),
                f("Status", "Status", T::String).read_only(),
            ],
            false,
        );
        Schema {
            objects: [
                account, contact, lead, user, group, case, task, rule, pop, voice_call, agent_work,
            ]
            .into_iter()
            .map(Arc::new)
            .collect(),
        }
    }
}

impl Schema {
    /// Adds the seed's custom fields; errors name the object or field.
    pub fn add_custom_fields(
        &mut self,
        extra: &std::collections::BTreeMap<String, Vec<crate::seed::SeedField>>,
    ) -> Result<(), String> {
        for (object, fields) in extra {
            let def = self
                .objects
                .iter_mut()
                .find(|o| o.name.eq_ignore_ascii_case(object))
                .map(Arc::make_mut)
                .ok_or_else(|| format!("custom_fields: unknown object {object}"))?;
            for f in fields {
                if !f.name.ends_with("__c")
                    || !f
                        .name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_')
                {
                    return Err(format!(
                        "custom_fields: {object}.{} must be an API name ending in __c",
                        f.name
                    ));
                }
                if def.field(&f.name).is_some() {
                    return Err(format!("custom_fields: {object}.{} already exists", f.name));
                }
                let ftype = match f.field_type.to_ascii_lowercase().as_str() {
                    "string" | "text" => FieldType::String,
                    "phone" => FieldType::Phone,
                    "email" => FieldType::Email,
                    "url" => FieldType::Url,
                    "textarea" => FieldType::Textarea,
                    "picklist" => FieldType::Picklist,
                    "boolean" => FieldType::Boolean,
                    "int" => FieldType::Int,
                    "double" | "number" => FieldType::Double,
                    "date" => FieldType::Date,
                    "datetime" => FieldType::DateTime,
                    "reference" => FieldType::Reference,
                    other => {
                        return Err(format!(
                            "custom_fields: {object}.{}: unknown type {other}",
                            f.name
                        ))
                    }
                };
                let label = f
                    .label
                    .clone()
                    .unwrap_or_else(|| f.name.trim_end_matches("__c").replace('_', " "));
                let mut fd = FieldDef::new(&f.name, &label, ftype);
                if let Some(n) = f.length {
                    fd.length = n;
                }
                if f.required {
                    fd = fd.required();
                }
                fd.external_id = f.external_id;
                fd.picklist = f.picklist.clone();
                if ftype == FieldType::Reference {
                    if f.reference_to.is_empty() || f.relationship_name.is_none() {
                        return Err(format!(
                            "custom_fields: {object}.{} needs reference_to and relationship_name",
                            f.name
                        ));
                    }
                    fd.reference_to = f.reference_to.clone();
                    fd.relationship_name = f.relationship_name.clone();
                }
                let at = def
                    .fields
                    .iter()
                    .position(|x| x.name == "CreatedDate")
                    .unwrap_or(def.fields.len());
                def.fields.insert(at, fd);
            }
        }
        Ok(())
    }

    /// Object name for a key prefix of the built-in model.
    pub fn standard_prefix(prefix: &str) -> Option<&'static str> {
        Some(match prefix {
            "001" => "Account",
            "003" => "Contact",
            "00Q" => "Lead",
            "005" => "User",
            "00G" => "Group",
            "500" => "Case",
            "00T" => "Task",
            "a0R" => "Routing_Rule__c",
            "0LQ" => "VoiceCall",
            "0Bz" => "AgentWork",
            _ => return None,
        })
    }
}
