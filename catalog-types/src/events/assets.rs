//! Assets: asset records being created, changed, assigned to owners and nearing warranty expiry.
//!
//! Every event is ordered by its asset (`asset:<assetId>`).

use chrono::{DateTime, Utc};
#[cfg(feature = "schemars")]
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::sample;
use crate::{CatalogEntry, Changes, catalog_event};

pub(crate) fn entries() -> Vec<CatalogEntry> {
    vec![
        CatalogEntry::of::<AssetCreated>(),
        CatalogEntry::of::<AssetUpdated>(),
        CatalogEntry::of::<AssetAssigned>(),
        CatalogEntry::of::<AssetUnassigned>(),
        CatalogEntry::of::<AssetWarrantyExpiring>(),
    ]
}

/// An asset record was created.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct AssetCreated {
    /// Tenant that owns the asset.
    pub tenant_id: Uuid,
    /// The new asset.
    pub asset_id: Uuid,
    /// Client the asset belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<Uuid>,
    /// User who created it.
    pub created_by_user_id: Uuid,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// Kind of asset, e.g. `workstation`, `server`, `network_device` (free text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asset_type: Option<String>,
    /// Manufacturer serial number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial_number: Option<String>,
}

catalog_event!(AssetCreated {
    event_type: "ASSET_CREATED",
    name: "Asset Created",
    description: "Asset record created.",
    category: Assets,
    ordering_key: "asset" => asset_id,
    example: AssetCreated {
        tenant_id: sample::TENANT,
        asset_id: sample::id(1),
        client_id: Some(sample::id(2)),
        created_by_user_id: sample::id(3),
        created_at: sample::at(),
        asset_type: Some("workstation".to_owned()),
        serial_number: Some("5CD1234XYZ".to_owned()),
    },
});

/// Fields of an asset changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct AssetUpdated {
    /// Tenant that owns the asset.
    pub tenant_id: Uuid,
    /// The asset changed.
    pub asset_id: Uuid,
    /// User who changed it.
    pub updated_by_user_id: Uuid,
    /// When it changed.
    pub updated_at: DateTime<Utc>,
    /// Paths of the fields that changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_fields: Option<Vec<String>>,
    /// Before/after values of the changed fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changes: Option<Changes>,
}

catalog_event!(AssetUpdated {
    event_type: "ASSET_UPDATED",
    name: "Asset Updated",
    description: "Asset fields changed.",
    category: Assets,
    ordering_key: "asset" => asset_id,
    example: AssetUpdated {
        tenant_id: sample::TENANT,
        asset_id: sample::id(1),
        updated_by_user_id: sample::id(2),
        updated_at: sample::at(),
        updated_fields: Some(vec!["location".to_owned()]),
        changes: Some(sample::changes("location", "Head office", "Warehouse B")),
    },
});

/// An asset was assigned to a client, contact or site.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct AssetAssigned {
    /// Tenant that owns the asset.
    pub tenant_id: Uuid,
    /// The asset assigned.
    pub asset_id: Uuid,
    /// Kind of the previous owner, e.g. `client`, `contact`, `site` (absent if it had none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_owner_type: Option<String>,
    /// The previous owner, of kind `previousOwnerType`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_owner_id: Option<Uuid>,
    /// Kind of the new owner, e.g. `client`, `contact`, `site`.
    pub new_owner_type: String,
    /// The new owner, of kind `newOwnerType`.
    pub new_owner_id: Uuid,
    /// User who made the assignment.
    pub actor_user_id: Uuid,
    /// When it was assigned.
    pub assigned_at: DateTime<Utc>,
}

catalog_event!(AssetAssigned {
    event_type: "ASSET_ASSIGNED",
    name: "Asset Assigned",
    description: "Asset assigned to client/contact/site.",
    category: Assets,
    ordering_key: "asset" => asset_id,
    example: AssetAssigned {
        tenant_id: sample::TENANT,
        asset_id: sample::id(1),
        previous_owner_type: Some("site".to_owned()),
        previous_owner_id: Some(sample::id(2)),
        new_owner_type: "contact".to_owned(),
        new_owner_id: sample::id(3),
        actor_user_id: sample::id(4),
        assigned_at: sample::at(),
    },
});

/// An asset was unassigned from its owner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct AssetUnassigned {
    /// Tenant that owns the asset.
    pub tenant_id: Uuid,
    /// The asset unassigned.
    pub asset_id: Uuid,
    /// Kind of the owner it was taken from, e.g. `client`, `contact`, `site`.
    pub previous_owner_type: String,
    /// The owner it was taken from, of kind `previousOwnerType`.
    pub previous_owner_id: Uuid,
    /// User who unassigned it.
    pub actor_user_id: Uuid,
    /// When it was unassigned.
    pub unassigned_at: DateTime<Utc>,
    /// Why it was unassigned (free text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

catalog_event!(AssetUnassigned {
    event_type: "ASSET_UNASSIGNED",
    name: "Asset Unassigned",
    description: "Asset unassigned.",
    category: Assets,
    ordering_key: "asset" => asset_id,
    example: AssetUnassigned {
        tenant_id: sample::TENANT,
        asset_id: sample::id(1),
        previous_owner_type: "contact".to_owned(),
        previous_owner_id: sample::id(2),
        actor_user_id: sample::id(3),
        unassigned_at: sample::at(),
        reason: Some("Employee left the company".to_owned()),
    },
});

/// An asset's warranty is approaching expiration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct AssetWarrantyExpiring {
    /// Tenant that owns the asset.
    pub tenant_id: Uuid,
    /// The asset whose warranty expires.
    pub asset_id: Uuid,
    /// When the warranty expires.
    pub expires_at: DateTime<Utc>,
    /// Whole days left until it expires.
    pub days_until_expiry: u32,
    /// Client the asset belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<Uuid>,
}

catalog_event!(AssetWarrantyExpiring {
    event_type: "ASSET_WARRANTY_EXPIRING",
    name: "Asset Warranty Expiring",
    description: "Warranty approaching expiration.",
    category: Assets,
    ordering_key: "asset" => asset_id,
    example: AssetWarrantyExpiring {
        tenant_id: sample::TENANT,
        asset_id: sample::id(1),
        expires_at: sample::at() + chrono::Duration::days(30),
        days_until_expiry: 30,
        client_id: Some(sample::id(2)),
    },
});
