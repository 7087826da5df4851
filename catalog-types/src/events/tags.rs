//! Tag events of catalog v2: tag definitions and tag application (generic, cross-entity).

use chrono::{DateTime, Utc};
#[cfg(feature = "schemars")]
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::sample;
use crate::{CatalogEntry, catalog_event};

pub(crate) fn entries() -> Vec<CatalogEntry> {
    vec![
        CatalogEntry::of::<TagDefinitionCreated>(),
        CatalogEntry::of::<TagDefinitionUpdated>(),
        CatalogEntry::of::<TagApplied>(),
        CatalogEntry::of::<TagRemoved>(),
    ]
}

/// A new tag was defined.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct TagDefinitionCreated {
    /// Tenant of the tag.
    pub tenant_id: Uuid,
    /// The new tag definition.
    pub tag_id: Uuid,
    /// The tag's text.
    pub tag_name: String,
    /// User who created the tag.
    pub created_by_user_id: Uuid,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

catalog_event!(TagDefinitionCreated {
    event_type: "TAG_DEFINITION_CREATED",
    name: "Tag Definition Created",
    description: "New tag created.",
    category: Tags,
    ordering_key: "tag" => tag_id,
    example: TagDefinitionCreated {
        tenant_id: sample::TENANT,
        tag_id: sample::id(1),
        tag_name: "VIP".to_owned(),
        created_by_user_id: sample::id(2),
        created_at: sample::at(),
    },
});

/// A tag definition changed (e.g. renamed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct TagDefinitionUpdated {
    /// Tenant of the tag.
    pub tenant_id: Uuid,
    /// The updated tag definition.
    pub tag_id: Uuid,
    /// The tag's text before the change, when the name changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_name: Option<String>,
    /// The tag's text after the change, when the name changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_name: Option<String>,
    /// User who updated the tag.
    pub updated_by_user_id: Uuid,
    /// When it was updated.
    pub updated_at: DateTime<Utc>,
}

catalog_event!(TagDefinitionUpdated {
    event_type: "TAG_DEFINITION_UPDATED",
    name: "Tag Definition Updated",
    description: "Tag definition changed.",
    category: Tags,
    ordering_key: "tag" => tag_id,
    example: TagDefinitionUpdated {
        tenant_id: sample::TENANT,
        tag_id: sample::id(1),
        previous_name: Some("VIP".to_owned()),
        new_name: Some("Key Account".to_owned()),
        updated_by_user_id: sample::id(2),
        updated_at: sample::at(),
    },
});

/// A tag was applied to an entity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct TagApplied {
    /// Tenant of the tag.
    pub tenant_id: Uuid,
    /// The applied tag.
    pub tag_id: Uuid,
    /// Kind of the tagged entity (e.g. `client`, `contact`, `ticket`, `project`).
    pub entity_type: String,
    /// The tagged entity.
    pub entity_id: Uuid,
    /// User who applied the tag.
    pub applied_by_user_id: Uuid,
    /// When the tag was applied.
    pub applied_at: DateTime<Utc>,
}

catalog_event!(TagApplied {
    event_type: "TAG_APPLIED",
    name: "Tag Applied",
    description: "Tag applied to entity.",
    category: Tags,
    ordering_key: "tag" => tag_id,
    example: TagApplied {
        tenant_id: sample::TENANT,
        tag_id: sample::id(1),
        entity_type: "client".to_owned(),
        entity_id: sample::id(2),
        applied_by_user_id: sample::id(3),
        applied_at: sample::at(),
    },
});

/// A tag was removed from an entity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct TagRemoved {
    /// Tenant of the tag.
    pub tenant_id: Uuid,
    /// The removed tag.
    pub tag_id: Uuid,
    /// Kind of the untagged entity (e.g. `client`, `contact`, `ticket`, `project`).
    pub entity_type: String,
    /// The untagged entity.
    pub entity_id: Uuid,
    /// User who removed the tag.
    pub removed_by_user_id: Uuid,
    /// When the tag was removed.
    pub removed_at: DateTime<Utc>,
}

catalog_event!(TagRemoved {
    event_type: "TAG_REMOVED",
    name: "Tag Removed",
    description: "Tag removed from entity.",
    category: Tags,
    ordering_key: "tag" => tag_id,
    example: TagRemoved {
        tenant_id: sample::TENANT,
        tag_id: sample::id(1),
        entity_type: "client".to_owned(),
        entity_id: sample::id(2),
        removed_by_user_id: sample::id(3),
        removed_at: sample::at(),
    },
});
