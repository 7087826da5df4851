//! `inspect`: one event's full row, as JSON with camelCase keys like every other report,
//! its fields always in the order of [`FIELDS`] (built from a struct, not from the stored
//! row, whose key order is the database's).

use sqlx::PgPool;
use uuid::Uuid;

pub use crate::store::operator::InspectedEvent;

/// The fields `inspect` prints, in this order: where the event stands, then what it is,
/// then the relay's lease, then headers and payload (the largest, last). Every field is
/// always present (`null` when unset).
pub const FIELDS: [&str; 22] = [
    "id",
    "status",
    "attempts",
    "lastError",
    "availableAt",
    "deliveredAt",
    "discardedAt",
    "eventType",
    "schemaRef",
    "category",
    "tenantId",
    "orderingKey",
    "seq",
    "dedupeKey",
    "occurredAt",
    "createdAt",
    "parked",
    "lockedBy",
    "lockedUntil",
    "claimToken",
    "headers",
    "payload",
];

/// The row of event `id`, or `None` when there is no such event.
pub async fn inspect(pool: &PgPool, id: Uuid) -> Result<Option<InspectedEvent>, sqlx::Error> {
    crate::store::operator::inspect(pool, id).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_come_in_the_documented_order() {
        let now = chrono::Utc::now();
        let event = InspectedEvent {
            id: Uuid::nil(),
            status: "dead".to_owned(),
            attempts: 10,
            last_error: Some("unroutable".to_owned()),
            available_at: now,
            delivered_at: None,
            discarded_at: None,
            event_type: "TICKET_CREATED".to_owned(),
            schema_ref: "payload.TicketCreated.v1".to_owned(),
            category: "Tickets".to_owned(),
            tenant_id: None,
            ordering_key: Some("ticket:1".to_owned()),
            seq: 1,
            dedupe_key: "d".to_owned(),
            occurred_at: now,
            created_at: now,
            parked: false,
            locked_by: None,
            locked_until: None,
            claim_token: None,
            headers: serde_json::json!({"z_last": 1, "a_first": 2}),
            payload: serde_json::json!({"ticket_id": 1}),
        };
        let text = serde_json::to_string_pretty(&event).unwrap_or_default();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        let keys: Vec<&str> = json
            .as_object()
            .map(|fields| fields.keys().map(String::as_str).collect())
            .unwrap_or_default();
        assert_eq!(keys, FIELDS);
        // Nested values are printed as stored: the payload's own keys keep their case.
        assert_eq!(json["payload"]["ticket_id"], 1);
        // The state an operator looks for comes first, before the long payload.
        let at = |field: &str| text.find(&format!("\"{field}\"")).unwrap_or(usize::MAX);
        assert!(at("status") < at("lastError") && at("lastError") < at("payload"));
    }
}
