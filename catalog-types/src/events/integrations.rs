//! Integrations: sync lifecycle, inbound webhooks, connection/auth health and external mapping changes.
//!
//! Every event here is ordered by the integration it concerns (`integration:<integrationId>`), so a
//! sync's start, completion or failure and a connection's connect/expiry/disconnect are delivered in
//! order; the mapping event, which names no integration, is ordered by its mapping.

use chrono::{DateTime, Utc};
#[cfg(feature = "schemars")]
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::sample;
use crate::{CatalogEntry, catalog_event};

pub(crate) fn entries() -> Vec<CatalogEntry> {
    vec![
        CatalogEntry::of::<IntegrationSyncStarted>(),
        CatalogEntry::of::<IntegrationSyncCompleted>(),
        CatalogEntry::of::<IntegrationSyncFailed>(),
        CatalogEntry::of::<IntegrationWebhookReceived>(),
        CatalogEntry::of::<IntegrationConnected>(),
        CatalogEntry::of::<IntegrationDisconnected>(),
        CatalogEntry::of::<IntegrationTokenExpiring>(),
        CatalogEntry::of::<IntegrationTokenRefreshFailed>(),
        CatalogEntry::of::<ExternalMappingChanged>(),
    ]
}

/// A sync job of an integration began.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct IntegrationSyncStarted {
    /// Tenant that owns the integration.
    pub tenant_id: Uuid,
    /// The integration being synced.
    pub integration_id: Uuid,
    /// Provider of the integration, e.g. `quickbooks`, `xero`, `ninjaone`.
    pub provider: String,
    /// The provider connection used (text: connection ids may come from the provider or an OAuth broker).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_id: Option<String>,
    /// The sync run.
    pub sync_id: Uuid,
    /// What the sync covers, e.g. `full`, `incremental`, `invoices` (free text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// User who started the sync by hand (absent for scheduled or automatic syncs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initiated_by_user_id: Option<Uuid>,
    /// When the sync began.
    pub started_at: DateTime<Utc>,
}

catalog_event!(IntegrationSyncStarted {
    event_type: "INTEGRATION_SYNC_STARTED",
    name: "Integration Sync Started",
    description: "Sync job begins.",
    category: Integrations,
    ordering_key: "integration" => integration_id,
    example: IntegrationSyncStarted {
        tenant_id: sample::TENANT,
        integration_id: sample::id(1),
        provider: "quickbooks".to_owned(),
        connection_id: Some("qbo-realm-9130354812".to_owned()),
        sync_id: sample::id(2),
        scope: Some("invoices".to_owned()),
        initiated_by_user_id: Some(sample::id(3)),
        started_at: sample::at(),
    },
});

/// Record counts of a finished sync.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct IntegrationSyncSummary {
    /// Records created.
    pub created: u32,
    /// Records updated.
    pub updated: u32,
    /// Records deleted.
    pub deleted: u32,
    /// Records skipped (unchanged, unmapped or filtered out).
    pub skipped: u32,
}

/// A sync job of an integration finished successfully.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct IntegrationSyncCompleted {
    /// Tenant that owns the integration.
    pub tenant_id: Uuid,
    /// The integration that was synced.
    pub integration_id: Uuid,
    /// Provider of the integration, e.g. `quickbooks`, `xero`, `ninjaone`.
    pub provider: String,
    /// The provider connection used (text: connection ids may come from the provider or an OAuth broker).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_id: Option<String>,
    /// The sync run.
    pub sync_id: Uuid,
    /// When the sync began.
    pub started_at: DateTime<Utc>,
    /// When the sync finished.
    pub completed_at: DateTime<Utc>,
    /// How long the sync took, in milliseconds.
    pub duration_ms: u64,
    /// Record counts of the sync.
    pub summary: IntegrationSyncSummary,
    /// Non-fatal problems met during the sync, as human-readable messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warnings: Option<Vec<String>>,
}

catalog_event!(IntegrationSyncCompleted {
    event_type: "INTEGRATION_SYNC_COMPLETED",
    name: "Integration Sync Completed",
    description: "Sync finishes successfully.",
    category: Integrations,
    ordering_key: "integration" => integration_id,
    example: IntegrationSyncCompleted {
        tenant_id: sample::TENANT,
        integration_id: sample::id(1),
        provider: "quickbooks".to_owned(),
        connection_id: Some("qbo-realm-9130354812".to_owned()),
        sync_id: sample::id(2),
        started_at: sample::at(),
        completed_at: sample::at() + chrono::Duration::milliseconds(42_500),
        duration_ms: 42_500,
        summary: IntegrationSyncSummary {
            created: 12,
            updated: 30,
            deleted: 1,
            skipped: 4,
        },
        warnings: Some(vec![
            "Invoice INV-1042 skipped: tax code TX-7 is not mapped".to_owned(),
        ]),
    },
});

/// A sync job of an integration failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct IntegrationSyncFailed {
    /// Tenant that owns the integration.
    pub tenant_id: Uuid,
    /// The integration whose sync failed.
    pub integration_id: Uuid,
    /// Provider of the integration, e.g. `quickbooks`, `xero`, `ninjaone`.
    pub provider: String,
    /// The provider connection used (text: connection ids may come from the provider or an OAuth broker).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_id: Option<String>,
    /// The sync run.
    pub sync_id: Uuid,
    /// When the sync began.
    pub started_at: DateTime<Utc>,
    /// When the sync failed.
    pub failed_at: DateTime<Utc>,
    /// How long the sync ran before failing, in milliseconds.
    pub duration_ms: u64,
    /// Machine-readable error code (text, provider- or platform-defined, e.g. `rate_limited`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    /// Human-readable error message.
    pub error_message: String,
    /// Whether retrying the sync may succeed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retryable: Option<bool>,
}

catalog_event!(IntegrationSyncFailed {
    event_type: "INTEGRATION_SYNC_FAILED",
    name: "Integration Sync Failed",
    description: "Sync fails.",
    category: Integrations,
    ordering_key: "integration" => integration_id,
    example: IntegrationSyncFailed {
        tenant_id: sample::TENANT,
        integration_id: sample::id(1),
        provider: "xero".to_owned(),
        connection_id: Some("xero-tenant-4f1c2a".to_owned()),
        sync_id: sample::id(2),
        started_at: sample::at(),
        failed_at: sample::at() + chrono::Duration::milliseconds(8_200),
        duration_ms: 8_200,
        error_code: Some("rate_limited".to_owned()),
        error_message: "Provider API rate limit exceeded (429)".to_owned(),
        retryable: Some(true),
    },
});

/// A webhook from an integration's provider was received.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct IntegrationWebhookReceived {
    /// Tenant that owns the integration.
    pub tenant_id: Uuid,
    /// The integration the webhook is for.
    pub integration_id: Uuid,
    /// Provider that sent the webhook, e.g. `quickbooks`, `stripe`.
    pub provider: String,
    /// The provider connection it arrived on (text: connection ids may come from the provider or an OAuth broker).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_id: Option<String>,
    /// The provider's id of the webhook delivery (provider-defined text, not a UUID).
    pub webhook_id: String,
    /// The provider's event name, e.g. `invoice.updated`.
    pub event_name: String,
    /// When the platform received it.
    pub received_at: DateTime<Utc>,
    /// Where the raw body is stored (storage key or URI text), so the payload itself stays small.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_payload_ref: Option<String>,
}

catalog_event!(IntegrationWebhookReceived {
    event_type: "INTEGRATION_WEBHOOK_RECEIVED",
    name: "Integration Webhook Received",
    description: "Webhook received.",
    category: Integrations,
    ordering_key: "integration" => integration_id,
    example: IntegrationWebhookReceived {
        tenant_id: sample::TENANT,
        integration_id: sample::id(1),
        provider: "quickbooks".to_owned(),
        connection_id: Some("qbo-realm-9130354812".to_owned()),
        webhook_id: "wh_8f3a2c91d7".to_owned(),
        event_name: "invoice.updated".to_owned(),
        received_at: sample::at(),
        raw_payload_ref: Some("webhooks/2026/01/15/wh_8f3a2c91d7.json".to_owned()),
    },
});

/// A connection to an integration's provider was established.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct IntegrationConnected {
    /// Tenant that owns the integration.
    pub tenant_id: Uuid,
    /// The integration connected.
    pub integration_id: Uuid,
    /// Provider connected to, e.g. `quickbooks`, `xero`, `ninjaone`.
    pub provider: String,
    /// The new connection (text: connection ids may come from the provider or an OAuth broker).
    pub connection_id: String,
    /// When the connection was established.
    pub connected_at: DateTime<Utc>,
    /// User who connected it (absent when connected automatically).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connected_by_user_id: Option<Uuid>,
}

catalog_event!(IntegrationConnected {
    event_type: "INTEGRATION_CONNECTED",
    name: "Integration Connected",
    description: "Connection established.",
    category: Integrations,
    ordering_key: "integration" => integration_id,
    example: IntegrationConnected {
        tenant_id: sample::TENANT,
        integration_id: sample::id(1),
        provider: "quickbooks".to_owned(),
        connection_id: "qbo-realm-9130354812".to_owned(),
        connected_at: sample::at(),
        connected_by_user_id: Some(sample::id(2)),
    },
});

/// A connection to an integration's provider was removed or invalidated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct IntegrationDisconnected {
    /// Tenant that owns the integration.
    pub tenant_id: Uuid,
    /// The integration disconnected.
    pub integration_id: Uuid,
    /// Provider disconnected from, e.g. `quickbooks`, `xero`, `ninjaone`.
    pub provider: String,
    /// The connection removed (text: connection ids may come from the provider or an OAuth broker).
    pub connection_id: String,
    /// When the connection was removed or found invalid.
    pub disconnected_at: DateTime<Utc>,
    /// User who disconnected it (absent when the provider revoked access or it was invalidated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disconnected_by_user_id: Option<Uuid>,
    /// Why it was disconnected (free text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

catalog_event!(IntegrationDisconnected {
    event_type: "INTEGRATION_DISCONNECTED",
    name: "Integration Disconnected",
    description: "Connection removed/invalidated.",
    category: Integrations,
    ordering_key: "integration" => integration_id,
    example: IntegrationDisconnected {
        tenant_id: sample::TENANT,
        integration_id: sample::id(1),
        provider: "quickbooks".to_owned(),
        connection_id: "qbo-realm-9130354812".to_owned(),
        disconnected_at: sample::at(),
        disconnected_by_user_id: Some(sample::id(2)),
        reason: Some("Switched accounting package".to_owned()),
    },
});

/// An integration's OAuth token is nearing expiration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct IntegrationTokenExpiring {
    /// Tenant that owns the integration.
    pub tenant_id: Uuid,
    /// The integration whose token expires.
    pub integration_id: Uuid,
    /// Provider that issued the token, e.g. `microsoft`, `xero`.
    pub provider: String,
    /// The connection holding the token (text: connection ids may come from the provider or an OAuth broker).
    pub connection_id: String,
    /// When the token expires.
    pub expires_at: DateTime<Utc>,
    /// Whole days left until it expires.
    pub days_until_expiry: u32,
    /// When this warning was raised.
    pub notified_at: DateTime<Utc>,
}

catalog_event!(IntegrationTokenExpiring {
    event_type: "INTEGRATION_TOKEN_EXPIRING",
    name: "Integration Token Expiring",
    description: "OAuth token nearing expiration.",
    category: Integrations,
    ordering_key: "integration" => integration_id,
    example: IntegrationTokenExpiring {
        tenant_id: sample::TENANT,
        integration_id: sample::id(1),
        provider: "xero".to_owned(),
        connection_id: "xero-tenant-4f1c2a".to_owned(),
        expires_at: sample::at() + chrono::Duration::days(7),
        days_until_expiry: 7,
        notified_at: sample::at(),
    },
});

/// Refreshing an integration's OAuth token failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct IntegrationTokenRefreshFailed {
    /// Tenant that owns the integration.
    pub tenant_id: Uuid,
    /// The integration whose token refresh failed.
    pub integration_id: Uuid,
    /// Provider that refused the refresh, e.g. `microsoft`, `xero`.
    pub provider: String,
    /// The connection holding the token (text: connection ids may come from the provider or an OAuth broker).
    pub connection_id: String,
    /// When the refresh failed.
    pub failed_at: DateTime<Utc>,
    /// Machine-readable error code (text, provider-defined, e.g. `invalid_grant`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    /// Human-readable error message.
    pub error_message: String,
    /// Whether retrying the refresh may succeed (false means the user must reconnect).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retryable: Option<bool>,
}

catalog_event!(IntegrationTokenRefreshFailed {
    event_type: "INTEGRATION_TOKEN_REFRESH_FAILED",
    name: "Integration Token Refresh Failed",
    description: "Refresh failed.",
    category: Integrations,
    ordering_key: "integration" => integration_id,
    example: IntegrationTokenRefreshFailed {
        tenant_id: sample::TENANT,
        integration_id: sample::id(1),
        provider: "xero".to_owned(),
        connection_id: "xero-tenant-4f1c2a".to_owned(),
        failed_at: sample::at(),
        error_code: Some("invalid_grant".to_owned()),
        error_message: "Refresh token has been revoked".to_owned(),
        retryable: Some(false),
    },
});

/// A mapping between platform records and a provider's records (accounts, tax codes, services) changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct ExternalMappingChanged {
    /// Tenant that owns the mapping.
    pub tenant_id: Uuid,
    /// Provider the mapping points into, e.g. `quickbooks`, `xero`.
    pub provider: String,
    /// Kind of mapping, e.g. `account`, `tax_code`, `service` (free text).
    pub mapping_type: String,
    /// The platform's mapping record.
    pub mapping_id: Uuid,
    /// User who changed the mapping.
    pub actor_user_id: Uuid,
    /// When it changed.
    pub changed_at: DateTime<Utc>,
    /// The mapped value before the change (any JSON; absent for a new mapping).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_value: Option<serde_json::Value>,
    /// The mapped value after the change (any JSON; absent for a removed mapping).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_value: Option<serde_json::Value>,
}

catalog_event!(ExternalMappingChanged {
    event_type: "EXTERNAL_MAPPING_CHANGED",
    name: "External Mapping Changed",
    description: "External mapping updated (accounts/tax/service catalog).",
    category: Integrations,
    ordering_key: "external_mapping" => mapping_id,
    example: ExternalMappingChanged {
        tenant_id: sample::TENANT,
        provider: "quickbooks".to_owned(),
        mapping_type: "tax_code".to_owned(),
        mapping_id: sample::id(1),
        actor_user_id: sample::id(2),
        changed_at: sample::at(),
        previous_value: Some(serde_json::json!({ "externalId": "TX-5", "name": "State tax" })),
        new_value: Some(serde_json::json!({ "externalId": "TX-7", "name": "State + county tax" })),
    },
});
