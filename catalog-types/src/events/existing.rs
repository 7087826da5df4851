//! The twelve events that predate catalog v2, with the payload shapes the platform already emits.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::sample;
use crate::{CatalogEntry, Changes, catalog_event};

pub(crate) fn entries() -> Vec<CatalogEntry> {
    vec![CatalogEntry::of::<TicketCreated>()]
}

/// A ticket was created.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct TicketCreated {
    /// Tenant of the ticket.
    pub tenant_id: Uuid,
    /// The new ticket.
    pub ticket_id: Uuid,
    /// Staff user who created it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by_user_id: Option<Uuid>,
    /// When it was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<DateTime<Utc>>,
    /// Field paths set at creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_fields: Option<Vec<String>>,
    /// Field values set at creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changes: Option<Changes>,
}

catalog_event!(TicketCreated {
    event_type: "TICKET_CREATED",
    name: "Ticket Created",
    description: "A new ticket was created.",
    category: Tickets,
    ordering_key: "ticket" => ticket_id,
    example: TicketCreated {
        tenant_id: sample::TENANT,
        ticket_id: sample::id(1),
        created_by_user_id: Some(sample::id(2)),
        created_at: Some(sample::at()),
        updated_fields: None,
        changes: None,
    },
});
