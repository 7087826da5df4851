//! CRM events of catalog v2: clients, contacts, and interactions/notes.

use chrono::{DateTime, Utc};
#[cfg(feature = "schemars")]
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::sample;
use crate::{CatalogEntry, Changes, catalog_event};

pub(crate) fn entries() -> Vec<CatalogEntry> {
    vec![
        CatalogEntry::of::<ClientCreated>(),
        CatalogEntry::of::<ClientUpdated>(),
        CatalogEntry::of::<ClientStatusChanged>(),
        CatalogEntry::of::<ClientOwnerAssigned>(),
        CatalogEntry::of::<ClientMerged>(),
        CatalogEntry::of::<ClientArchived>(),
        CatalogEntry::of::<ContactCreated>(),
        CatalogEntry::of::<ContactUpdated>(),
        CatalogEntry::of::<ContactPrimarySet>(),
        CatalogEntry::of::<ContactArchived>(),
        CatalogEntry::of::<ContactMerged>(),
        CatalogEntry::of::<InteractionLogged>(),
        CatalogEntry::of::<NoteCreated>(),
    ]
}

// ---------------------------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------------------------

/// A client/account was created.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct ClientCreated {
    /// Tenant of the client.
    pub tenant_id: Uuid,
    /// The new client.
    pub client_id: Uuid,
    /// The client's display name.
    pub client_name: String,
    /// User who created the client.
    pub created_by_user_id: Uuid,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// Lifecycle status at creation (e.g. `prospect`, `active`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

catalog_event!(ClientCreated {
    event_type: "CLIENT_CREATED",
    name: "Client Created",
    description: "Client/account created.",
    category: Crm,
    ordering_key: "client" => client_id,
    example: ClientCreated {
        tenant_id: sample::TENANT,
        client_id: sample::id(1),
        client_name: "Acme Corp".to_owned(),
        created_by_user_id: sample::id(2),
        created_at: sample::at(),
        status: Some("prospect".to_owned()),
    },
});

/// Fields of a client changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct ClientUpdated {
    /// Tenant of the client.
    pub tenant_id: Uuid,
    /// The updated client.
    pub client_id: Uuid,
    /// User who updated the client.
    pub updated_by_user_id: Uuid,
    /// When it was updated.
    pub updated_at: DateTime<Utc>,
    /// Paths of the fields that changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_fields: Option<Vec<String>>,
    /// Before/after values of the changed fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changes: Option<Changes>,
}

catalog_event!(ClientUpdated {
    event_type: "CLIENT_UPDATED",
    name: "Client Updated",
    description: "Client fields changed.",
    category: Crm,
    ordering_key: "client" => client_id,
    example: ClientUpdated {
        tenant_id: sample::TENANT,
        client_id: sample::id(1),
        updated_by_user_id: sample::id(2),
        updated_at: sample::at(),
        updated_fields: Some(vec!["clientName".to_owned()]),
        changes: Some(sample::changes("clientName", "Acme", "Acme Corp")),
    },
});

/// A client moved between lifecycle statuses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct ClientStatusChanged {
    /// Tenant of the client.
    pub tenant_id: Uuid,
    /// The client whose status changed.
    pub client_id: Uuid,
    /// Status before the transition (e.g. `prospect`).
    pub previous_status: String,
    /// Status after the transition (e.g. `active`).
    pub new_status: String,
    /// User who made the change.
    pub actor_user_id: Uuid,
    /// When the status changed.
    pub changed_at: DateTime<Utc>,
}

catalog_event!(ClientStatusChanged {
    event_type: "CLIENT_STATUS_CHANGED",
    name: "Client Status Changed",
    description: "Lifecycle status transition (prospect→active, etc).",
    category: Crm,
    ordering_key: "client" => client_id,
    example: ClientStatusChanged {
        tenant_id: sample::TENANT,
        client_id: sample::id(1),
        previous_status: "prospect".to_owned(),
        new_status: "active".to_owned(),
        actor_user_id: sample::id(2),
        changed_at: sample::at(),
    },
});

/// A client's account manager was assigned or reassigned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct ClientOwnerAssigned {
    /// Tenant of the client.
    pub tenant_id: Uuid,
    /// The client whose owner changed.
    pub client_id: Uuid,
    /// The previous account manager, if there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_owner_user_id: Option<Uuid>,
    /// The new account manager.
    pub new_owner_user_id: Uuid,
    /// User who made the assignment.
    pub assigned_by_user_id: Uuid,
    /// When the owner was assigned.
    pub assigned_at: DateTime<Utc>,
}

catalog_event!(ClientOwnerAssigned {
    event_type: "CLIENT_OWNER_ASSIGNED",
    name: "Client Owner Assigned",
    description: "Account manager assigned/reassigned.",
    category: Crm,
    ordering_key: "client" => client_id,
    example: ClientOwnerAssigned {
        tenant_id: sample::TENANT,
        client_id: sample::id(1),
        previous_owner_user_id: Some(sample::id(2)),
        new_owner_user_id: sample::id(3),
        assigned_by_user_id: sample::id(4),
        assigned_at: sample::at(),
    },
});

/// A client was merged into another client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct ClientMerged {
    /// Tenant of the clients.
    pub tenant_id: Uuid,
    /// The client merged away (no longer active after the merge).
    pub source_client_id: Uuid,
    /// The client that absorbed the source.
    pub target_client_id: Uuid,
    /// User who performed the merge.
    pub merged_by_user_id: Uuid,
    /// When the merge happened.
    pub merged_at: DateTime<Utc>,
    /// How conflicting fields were resolved (e.g. `keep_target`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<String>,
}

catalog_event!(ClientMerged {
    event_type: "CLIENT_MERGED",
    name: "Client Merged",
    description: "Client merged into another.",
    category: Crm,
    ordering_key: "client" => source_client_id,
    example: ClientMerged {
        tenant_id: sample::TENANT,
        source_client_id: sample::id(1),
        target_client_id: sample::id(2),
        merged_by_user_id: sample::id(3),
        merged_at: sample::at(),
        strategy: Some("keep_target".to_owned()),
    },
});

/// A client was archived/deactivated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct ClientArchived {
    /// Tenant of the client.
    pub tenant_id: Uuid,
    /// The archived client.
    pub client_id: Uuid,
    /// User who archived it.
    pub archived_by_user_id: Uuid,
    /// When it was archived.
    pub archived_at: DateTime<Utc>,
    /// Why it was archived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

catalog_event!(ClientArchived {
    event_type: "CLIENT_ARCHIVED",
    name: "Client Archived",
    description: "Client archived/deactivated.",
    category: Crm,
    ordering_key: "client" => client_id,
    example: ClientArchived {
        tenant_id: sample::TENANT,
        client_id: sample::id(1),
        archived_by_user_id: sample::id(2),
        archived_at: sample::at(),
        reason: Some("Contract ended; client moved to another provider".to_owned()),
    },
});

// ---------------------------------------------------------------------------------------------
// Contacts
// ---------------------------------------------------------------------------------------------

/// A contact was added to a client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct ContactCreated {
    /// Tenant of the contact.
    pub tenant_id: Uuid,
    /// The new contact.
    pub contact_id: Uuid,
    /// The client the contact belongs to.
    pub client_id: Uuid,
    /// The contact's full name.
    pub full_name: String,
    /// The contact's e-mail address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// The contact's phone number, as entered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone_number: Option<String>,
    /// User who created the contact.
    pub created_by_user_id: Uuid,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

catalog_event!(ContactCreated {
    event_type: "CONTACT_CREATED",
    name: "Contact Created",
    description: "Contact added to client.",
    category: Crm,
    ordering_key: "contact" => contact_id,
    example: ContactCreated {
        tenant_id: sample::TENANT,
        contact_id: sample::id(1),
        client_id: sample::id(2),
        full_name: "Jane Doe".to_owned(),
        email: Some("jane.doe@acme.example".to_owned()),
        phone_number: Some("+1 555 0100".to_owned()),
        created_by_user_id: sample::id(3),
        created_at: sample::at(),
    },
});

/// Fields of a contact changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct ContactUpdated {
    /// Tenant of the contact.
    pub tenant_id: Uuid,
    /// The updated contact.
    pub contact_id: Uuid,
    /// The client the contact belongs to.
    pub client_id: Uuid,
    /// User who updated the contact.
    pub updated_by_user_id: Uuid,
    /// When it was updated.
    pub updated_at: DateTime<Utc>,
    /// Paths of the fields that changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_fields: Option<Vec<String>>,
    /// Before/after values of the changed fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changes: Option<Changes>,
}

catalog_event!(ContactUpdated {
    event_type: "CONTACT_UPDATED",
    name: "Contact Updated",
    description: "Contact fields changed.",
    category: Crm,
    ordering_key: "contact" => contact_id,
    example: ContactUpdated {
        tenant_id: sample::TENANT,
        contact_id: sample::id(1),
        client_id: sample::id(2),
        updated_by_user_id: sample::id(3),
        updated_at: sample::at(),
        updated_fields: Some(vec!["phoneNumber".to_owned()]),
        changes: Some(sample::changes("phoneNumber", "+1 555 0100", "+1 555 0199")),
    },
});

/// A contact was set as the client's primary/billing contact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct ContactPrimarySet {
    /// Tenant of the client.
    pub tenant_id: Uuid,
    /// The client whose primary contact changed.
    pub client_id: Uuid,
    /// The new primary contact.
    pub contact_id: Uuid,
    /// The former primary contact, if there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_primary_contact_id: Option<Uuid>,
    /// User who set the primary contact.
    pub set_by_user_id: Uuid,
    /// When it was set.
    pub set_at: DateTime<Utc>,
}

catalog_event!(ContactPrimarySet {
    event_type: "CONTACT_PRIMARY_SET",
    name: "Primary Contact Set",
    description: "Contact set as client primary/billing.",
    category: Crm,
    // The client's primary-contact pointer is what changes: keyed by client so successive
    // changes for one client stay ordered even when they name different contacts.
    ordering_key: "client" => client_id,
    example: ContactPrimarySet {
        tenant_id: sample::TENANT,
        client_id: sample::id(1),
        contact_id: sample::id(2),
        previous_primary_contact_id: Some(sample::id(3)),
        set_by_user_id: sample::id(4),
        set_at: sample::at(),
    },
});

/// A contact was deactivated/archived.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct ContactArchived {
    /// Tenant of the contact.
    pub tenant_id: Uuid,
    /// The archived contact.
    pub contact_id: Uuid,
    /// The client the contact belongs to.
    pub client_id: Uuid,
    /// User who archived it.
    pub archived_by_user_id: Uuid,
    /// When it was archived.
    pub archived_at: DateTime<Utc>,
    /// Why it was archived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

catalog_event!(ContactArchived {
    event_type: "CONTACT_ARCHIVED",
    name: "Contact Archived",
    description: "Contact deactivated/archived.",
    category: Crm,
    ordering_key: "contact" => contact_id,
    example: ContactArchived {
        tenant_id: sample::TENANT,
        contact_id: sample::id(1),
        client_id: sample::id(2),
        archived_by_user_id: sample::id(3),
        archived_at: sample::at(),
        reason: Some("Left the company".to_owned()),
    },
});

/// A contact was merged into another contact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct ContactMerged {
    /// Tenant of the contacts.
    pub tenant_id: Uuid,
    /// The contact merged away (no longer active after the merge).
    pub source_contact_id: Uuid,
    /// The contact that absorbed the source.
    pub target_contact_id: Uuid,
    /// User who performed the merge.
    pub merged_by_user_id: Uuid,
    /// When the merge happened.
    pub merged_at: DateTime<Utc>,
    /// How conflicting fields were resolved (e.g. `keep_target`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<String>,
}

catalog_event!(ContactMerged {
    event_type: "CONTACT_MERGED",
    name: "Contact Merged",
    description: "Contact merged into another.",
    category: Crm,
    ordering_key: "contact" => source_contact_id,
    example: ContactMerged {
        tenant_id: sample::TENANT,
        source_contact_id: sample::id(1),
        target_contact_id: sample::id(2),
        merged_by_user_id: sample::id(3),
        merged_at: sample::at(),
        strategy: Some("keep_target".to_owned()),
    },
});

// ---------------------------------------------------------------------------------------------
// Interactions/notes
// ---------------------------------------------------------------------------------------------

/// A CRM interaction (call, meeting, e-mail, ...) was recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct InteractionLogged {
    /// Tenant of the interaction.
    pub tenant_id: Uuid,
    /// The logged interaction.
    pub interaction_id: Uuid,
    /// The client the interaction was with.
    pub client_id: Uuid,
    /// The contact the interaction was with, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact_id: Option<Uuid>,
    /// The tenant-defined interaction type (e.g. `call`, `meeting`).
    pub interaction_type: String,
    /// How the interaction took place (e.g. `phone`, `email`, `in_person`; tenant-defined text).
    pub channel: String,
    /// When the interaction took place.
    pub occurred_at: DateTime<Utc>,
    /// User who logged it.
    pub logged_by_user_id: Uuid,
    /// Short subject line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Outcome of the interaction (free text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
}

catalog_event!(InteractionLogged {
    event_type: "INTERACTION_LOGGED",
    name: "Interaction Logged",
    description: "CRM interaction recorded.",
    category: Crm,
    ordering_key: "interaction" => interaction_id,
    example: InteractionLogged {
        tenant_id: sample::TENANT,
        interaction_id: sample::id(1),
        client_id: sample::id(2),
        contact_id: Some(sample::id(3)),
        interaction_type: "call".to_owned(),
        channel: "phone".to_owned(),
        occurred_at: sample::at(),
        logged_by_user_id: sample::id(4),
        subject: Some("Quarterly business review".to_owned()),
        outcome: Some("Agreed to add two workstations to the contract".to_owned()),
    },
});

/// The kind of record a CRM note is attached to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum NoteEntityType {
    /// Attached to a client.
    Client,
    /// Attached to a contact.
    Contact,
}

/// A note was attached to a client or contact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct NoteCreated {
    /// Tenant of the note.
    pub tenant_id: Uuid,
    /// The new note.
    pub note_id: Uuid,
    /// Kind of record the note is attached to.
    pub entity_type: NoteEntityType,
    /// The client or contact the note is attached to.
    pub entity_id: Uuid,
    /// User who wrote the note.
    pub created_by_user_id: Uuid,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// Who may see the note (e.g. `internal`, `public`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visibility: Option<String>,
    /// The beginning of the note's text, for previews.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_preview: Option<String>,
}

catalog_event!(NoteCreated {
    event_type: "NOTE_CREATED",
    name: "Note Created",
    description: "Note attached to client/contact.",
    category: Crm,
    ordering_key: "note" => note_id,
    example: NoteCreated {
        tenant_id: sample::TENANT,
        note_id: sample::id(1),
        entity_type: NoteEntityType::Client,
        entity_id: sample::id(2),
        created_by_user_id: sample::id(3),
        created_at: sample::at(),
        visibility: Some("internal".to_owned()),
        body_preview: Some("Prefers to be contacted by phone after 2pm".to_owned()),
    },
});
