//! The AMQP wire format of an outbox event (DESIGN: "AMQP message").

use catalog_types::Category;
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use serde::Serialize;

use crate::claim::ClaimedEvent;

/// The JSON body of every message.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope<'a> {
    /// Event id (also the AMQP `message_id`).
    pub id: uuid::Uuid,
    /// Catalog event type.
    pub event_type: &'a str,
    /// Payload schema ref.
    pub schema_ref: &'a str,
    /// Tenant, `null` when the event has none.
    pub tenant_id: Option<uuid::Uuid>,
    /// RFC 3339 UTC.
    pub occurred_at: String,
    /// The catalog payload.
    pub payload: &'a serde_json::Value,
}

/// A message ready to publish.
#[derive(Debug, Clone)]
pub struct OutgoingMessage {
    /// Routing key on the topic exchange.
    pub routing_key: String,
    /// Properties: message id, type, content type, timestamp, persistence, headers.
    pub properties: BasicProperties,
    /// The serialised envelope.
    pub body: Vec<u8>,
}

/// The category slug of a stored category name (`Email Processing` -> `email_processing`).
pub fn category_slug(category: &str) -> String {
    match Category::parse(category) {
        Some(known) => known.slug().to_owned(),
        None => category
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .collect(),
    }
}

/// Expands a routing key template (`{category}`, `{event_type}`, `{tenant_id}`).
pub fn routing_key(template: &str, event: &ClaimedEvent) -> String {
    template
        .replace("{category}", &category_slug(&event.category))
        .replace("{event_type}", &event.event_type.to_ascii_lowercase())
        .replace(
            "{tenant_id}",
            &event
                .tenant_id
                .map(|t| t.to_string())
                .unwrap_or_else(|| "none".to_owned()),
        )
}

fn long(text: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(text.as_bytes().to_vec()))
}

/// Builds the message of a claimed event; `attempt` is the 1-based number of this publish.
pub fn build(event: &ClaimedEvent, template: &str) -> Result<OutgoingMessage, serde_json::Error> {
    let envelope = Envelope {
        id: event.id,
        event_type: &event.event_type,
        schema_ref: &event.schema_ref,
        tenant_id: event.tenant_id,
        occurred_at: event
            .occurred_at
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        payload: &event.payload,
    };
    let body = serde_json::to_vec(&envelope)?;

    let mut headers = FieldTable::default();
    // Extra headers stored at emit come first, so the standard ones below always win.
    if let Some(extra) = event.headers.as_object() {
        for (name, value) in extra {
            let text = match value {
                serde_json::Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            headers.insert(ShortString::from(name.as_str()), long(&text));
        }
    }
    headers.insert("x-dedupe-key".into(), long(&event.dedupe_key));
    if let Some(tenant) = event.tenant_id {
        headers.insert("x-tenant-id".into(), long(&tenant.to_string()));
    }
    headers.insert("x-schema-ref".into(), long(&event.schema_ref));
    headers.insert("x-category".into(), long(&event.category));
    if let Some(key) = &event.ordering_key {
        headers.insert("x-ordering-key".into(), long(key));
    }
    let attempt = event.attempts.saturating_add(1);
    headers.insert("x-attempt".into(), AMQPValue::LongInt(attempt));

    let timestamp = u64::try_from(event.occurred_at.timestamp()).unwrap_or_default();
    let properties = BasicProperties::default()
        .with_message_id(ShortString::from(event.id.to_string()))
        .with_type(ShortString::from(event.event_type.as_str()))
        .with_content_type(ShortString::from("application/json"))
        .with_timestamp(timestamp)
        .with_delivery_mode(2)
        .with_app_id(ShortString::from("outbox-relay"))
        .with_headers(headers);
    Ok(OutgoingMessage {
        routing_key: routing_key(template, event),
        properties,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn category_slugs_follow_the_catalog() {
        assert_eq!(category_slug("Tickets"), "tickets");
        assert_eq!(category_slug("Email Processing"), "email_processing");
        assert_eq!(category_slug("CRM"), "crm");
        assert_eq!(category_slug("Custom Stuff"), "custom_stuff");
    }
}
