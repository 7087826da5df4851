//! A delivered event, decoded from the relay's envelope (DESIGN: "AMQP message"): the
//! envelope's fields, the ordering key and partition from the headers, and the payload as
//! JSON with a typed accessor for the catalog's types.

use catalog_types::CatalogEvent;
use chrono::{DateTime, Utc};
use lapin::types::AMQPValue;
use uuid::Uuid;

/// One event as the handler receives it.
#[derive(Debug, Clone)]
pub struct Event {
    /// The event id (the AMQP `message_id`, the envelope's `id`): the inbox's key.
    pub id: Uuid,
    /// The catalog event type (`TICKET_CREATED`).
    pub event_type: String,
    /// The payload's schema (`payload.TicketCreated.v1`).
    pub schema_ref: String,
    /// The tenant, when the event has one.
    pub tenant_id: Option<Uuid>,
    /// The ordering key (`ticket:<id>`), from the `x-ordering-key` header.
    pub ordering_key: Option<String>,
    /// When the business fact happened.
    pub occurred_at: DateTime<Utc>,
    /// The payload, as the producer stored it.
    pub payload: serde_json::Value,
    /// The queue it came from (a partition queue `<prefix>.<n>`, or the plain queue).
    pub queue: String,
    /// The routing key it was published with.
    pub routing_key: String,
    /// Whether the broker delivered it before (to this consumer or another): the inbox
    /// decides whether it was applied.
    pub redelivered: bool,
}

impl Event {
    /// The payload as the catalog type `T`: `Ok(None)` when the event is of another type,
    /// an error when it is of type `T` and its payload does not decode.
    pub fn payload_as<T: CatalogEvent>(&self) -> Result<Option<T>, serde_json::Error> {
        if self.event_type != T::EVENT_TYPE {
            return Ok(None);
        }
        T::deserialize(&self.payload).map(Some)
    }

    /// The event's ordering scope name (`<tenant>/<key>`, `-/<key>`), as the partition
    /// function hashes it; `None` without an ordering key.
    pub fn scope(&self) -> Option<String> {
        self.ordering_key
            .as_deref()
            .map(|key| outbox_topology::scope_name(self.tenant_id, key))
    }
}

/// Why a delivery is not an outbox event. Permanent: it is dead-lettered at once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// No `message_id`: the inbox cannot apply it exactly once.
    #[error("the message has no message_id: it is not from the outbox relay")]
    NoMessageId,
    /// The `message_id` is not a uuid.
    #[error("the message_id is not a uuid: it is not from the outbox relay")]
    BadMessageId,
    /// The body is not the relay's envelope.
    #[error("the body is not an outbox envelope: {0}")]
    BadEnvelope(String),
    /// The envelope's id differs from the `message_id`.
    #[error("the envelope's id differs from the message_id")]
    IdMismatch,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    id: Uuid,
    event_type: String,
    schema_ref: String,
    tenant_id: Option<Uuid>,
    occurred_at: DateTime<Utc>,
    payload: serde_json::Value,
}

/// Decodes a delivery from `queue` into an [`Event`].
pub(crate) fn decode(
    delivery: &lapin::message::Delivery,
    queue: &str,
) -> Result<Event, DecodeError> {
    let message_id = delivery
        .properties
        .message_id()
        .as_ref()
        .map(|id| id.as_str())
        .filter(|id| !id.is_empty())
        .ok_or(DecodeError::NoMessageId)?;
    let id = Uuid::parse_str(message_id).map_err(|_| DecodeError::BadMessageId)?;
    let envelope: Envelope = serde_json::from_slice(&delivery.data)
        .map_err(|error| DecodeError::BadEnvelope(error.to_string()))?;
    if envelope.id != id {
        return Err(DecodeError::IdMismatch);
    }
    let ordering_key = delivery
        .properties
        .headers()
        .as_ref()
        .and_then(|headers| headers.inner().get("x-ordering-key"))
        .and_then(|value| match value {
            AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
            AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
            _ => None,
        });
    Ok(Event {
        id,
        event_type: envelope.event_type,
        schema_ref: envelope.schema_ref,
        tenant_id: envelope.tenant_id,
        ordering_key,
        occurred_at: envelope.occurred_at,
        payload: envelope.payload,
        queue: queue.to_owned(),
        routing_key: delivery.routing_key.as_str().to_owned(),
        redelivered: delivery.redelivered,
    })
}
