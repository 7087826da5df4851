//! The AMQP wire format of an outbox event (DESIGN: "AMQP message").
//!
//! Building a message never panics, whatever a row holds: a value AMQP cannot carry (a
//! short string over 255 bytes, a body over the broker's limit) is a [`BuildError`], and
//! the relay makes that one event dead with the reason.

use catalog_types::Category;
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldArray, FieldTable, LongString, ShortString};

use crate::engine::event::ClaimedEvent;
use crate::foundation::config::SHORT_STRING_MAX;

/// Why an event can never be published as stored. Permanent: retrying cannot help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// A value that must be an AMQP short string is longer than 255 bytes.
    #[error("{what} is {len} bytes, over AMQP's 255-byte short-string limit")]
    TooLong {
        /// Which value (`event type`, `routing key`, `header name ...`).
        what: String,
        /// Its length in bytes.
        len: usize,
    },
    /// The message body is larger than the broker accepts.
    #[error("the message body is {len} bytes, over the {max}-byte limit (--max-message-size)")]
    TooLarge {
        /// Body size.
        len: usize,
        /// The configured limit.
        max: usize,
    },
    /// The stored headers are not a JSON object.
    #[error("the stored headers are not a JSON object")]
    HeadersNotObject,
    /// A header RabbitMQ gives a meaning to has a value it refuses (it would close the
    /// channel): `CC` and `BCC` must be arrays of strings.
    #[error("header `{0}` must be an array of strings (RabbitMQ's sender-selected distribution)")]
    ReservedHeader(String),
    /// The properties (mostly the headers) do not fit in one AMQP frame; the broker would
    /// close the connection, failing every other message in flight.
    #[error(
        "the message properties take {len} bytes, over the {max} one AMQP frame carries (the connection's frame_max: the relay asks for 32 KiB unless the AMQP URL sets `?frame_max=`, up to the broker's own limit)"
    )]
    HeadersTooLarge {
        /// Encoded size of the properties.
        len: usize,
        /// The most a frame carries for them.
        max: usize,
    },
}

/// What one message may take on the broker connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest body (`--max-message-size`).
    pub max_body: usize,
    /// The connection's negotiated `frame_max`: the content header frame, which carries the
    /// properties and headers, must fit in one frame.
    pub frame_max: usize,
}

/// RabbitMQ's default `frame_max`, used until a connection has negotiated one.
pub const DEFAULT_FRAME_MAX: usize = 131_072;

/// Bytes of a content header frame around the properties: frame header and end (8), class,
/// weight, body size (12) and property flags (2).
const HEADER_FRAME_OVERHEAD: usize = 22;

/// The encoded size of a field value, its type tag included.
fn value_len(value: &AMQPValue) -> usize {
    1 + match value {
        AMQPValue::Boolean(_) | AMQPValue::ShortShortInt(_) | AMQPValue::ShortShortUInt(_) => 1,
        AMQPValue::ShortInt(_) | AMQPValue::ShortUInt(_) => 2,
        AMQPValue::LongInt(_) | AMQPValue::LongUInt(_) | AMQPValue::Float(_) => 4,
        AMQPValue::LongLongInt(_) | AMQPValue::Double(_) | AMQPValue::Timestamp(_) => 8,
        AMQPValue::DecimalValue(_) => 5,
        AMQPValue::ShortString(text) => 1 + text.as_str().len(),
        AMQPValue::LongString(text) => 4 + text.as_bytes().len(),
        AMQPValue::ByteArray(bytes) => 4 + bytes.as_slice().len(),
        AMQPValue::FieldArray(array) => 4 + array.as_slice().iter().map(value_len).sum::<usize>(),
        AMQPValue::FieldTable(table) => table_len(table),
        AMQPValue::Void => 0,
    }
}

/// The encoded size of a field table.
fn table_len(table: &FieldTable) -> usize {
    4 + table
        .inner()
        .iter()
        .map(|(name, value)| 1 + name.as_str().len() + value_len(value))
        .sum::<usize>()
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

/// Expands a routing key template (`{category}`, `{event_type}`, `{tenant_id}`,
/// `{partition}`: the [`ROUTING_KEY_PLACEHOLDERS`] that [`check_routing_key_template`]
/// accepts). `{partition}` is the event's partition of `partitions`, by the partition
/// function of `outbox_topology` (CRC-32 of its ordering scope, mod `partitions`).
///
/// [`ROUTING_KEY_PLACEHOLDERS`]: crate::foundation::config::ROUTING_KEY_PLACEHOLDERS
/// [`check_routing_key_template`]: crate::foundation::config::check_routing_key_template
pub fn routing_key(template: &str, partitions: u32, event: &ClaimedEvent) -> String {
    let mut key = template.to_owned();
    if key.contains(outbox_topology::PARTITION_PLACEHOLDER) {
        let partition = outbox_topology::event_partition(
            event.tenant_id,
            event.ordering_key.as_deref(),
            event.id,
            partitions,
        );
        key = key.replace(
            outbox_topology::PARTITION_PLACEHOLDER,
            &partition.to_string(),
        );
    }
    key.replace("{category}", &category_slug(&event.category))
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

fn short(what: impl FnOnce() -> String, text: &str) -> Result<ShortString, BuildError> {
    if text.len() > SHORT_STRING_MAX {
        return Err(BuildError::TooLong {
            what: what(),
            len: text.len(),
        });
    }
    Ok(ShortString::from(text))
}

/// A stored header value as the closest AMQP field value: strings, integers, floats,
/// booleans, null, arrays and objects keep their type.
fn header_value(value: &serde_json::Value) -> Result<AMQPValue, BuildError> {
    Ok(match value {
        serde_json::Value::Null => AMQPValue::Void,
        serde_json::Value::Bool(b) => AMQPValue::Boolean(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => AMQPValue::LongLongInt(i),
            None => AMQPValue::Double(n.as_f64().unwrap_or(f64::NAN)),
        },
        serde_json::Value::String(s) => long(s),
        serde_json::Value::Array(items) => {
            let mut array = FieldArray::default();
            for item in items {
                array.push(header_value(item)?);
            }
            AMQPValue::FieldArray(array)
        }
        serde_json::Value::Object(fields) => AMQPValue::FieldTable(header_table(fields)?),
    })
}

fn header_table(
    fields: &serde_json::Map<String, serde_json::Value>,
) -> Result<FieldTable, BuildError> {
    let mut table = FieldTable::default();
    for (name, value) in fields {
        let key = short(|| format!("header name `{}…`", prefix(name)), name)?;
        table.insert(key, header_value(value)?);
    }
    Ok(table)
}

/// The first few characters of a long value, for an error message.
fn prefix(text: &str) -> String {
    text.chars().take(40).collect()
}

/// The JSON body of a message: `{"id", "eventType", "schemaRef", "tenantId", "occurredAt",
/// "payload"}`. The payload is copied as stored (Postgres wrote valid JSON), never parsed.
pub fn envelope(event: &ClaimedEvent) -> Vec<u8> {
    let text = |s: &str| serde_json::Value::from(s).to_string();
    let tenant = event
        .tenant_id
        .map(|t| format!("\"{t}\""))
        .unwrap_or_else(|| "null".to_owned());
    let occurred_at = event
        .occurred_at
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    format!(
        "{{\"id\":\"{}\",\"eventType\":{},\"schemaRef\":{},\"tenantId\":{},\"occurredAt\":\"{}\",\"payload\":{}}}",
        event.id,
        text(&event.event_type),
        text(&event.schema_ref),
        tenant,
        occurred_at,
        event.payload
    )
    .into_bytes()
}

/// Builds the message of a claimed event (its attempt number is `attempts + 1`), refusing
/// what AMQP or the broker cannot carry under `limits`; one partition (a `{partition}` in
/// the template is `0`).
pub fn build(
    event: &ClaimedEvent,
    template: &str,
    limits: Limits,
) -> Result<OutgoingMessage, BuildError> {
    build_partitioned(event, template, 1, limits)
}

/// As [`build`], with the template's `{partition}` one of `partitions` (`--partitions`).
pub fn build_partitioned(
    event: &ClaimedEvent,
    template: &str,
    partitions: u32,
    limits: Limits,
) -> Result<OutgoingMessage, BuildError> {
    let body = envelope(event);
    if body.len() > limits.max_body {
        return Err(BuildError::TooLarge {
            len: body.len(),
            max: limits.max_body,
        });
    }
    let routing_key = routing_key(template, partitions, event);
    short(|| "the routing key".to_owned(), &routing_key)?;
    let kind = short(|| "the event type".to_owned(), &event.event_type)?;

    // Extra headers stored at emit come first, so the standard ones below always win.
    let mut headers = match &event.headers {
        serde_json::Value::Object(fields) => {
            for name in ["CC", "BCC"] {
                if fields.get(name).is_some_and(|value| {
                    !value
                        .as_array()
                        .is_some_and(|items| items.iter().all(serde_json::Value::is_string))
                }) {
                    return Err(BuildError::ReservedHeader(name.to_owned()));
                }
            }
            header_table(fields)?
        }
        _ => return Err(BuildError::HeadersNotObject),
    };
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

    // Every property but the headers: the fixed ones, the id and the event type.
    let other_properties = 64 + event.id.to_string().len() + kind.as_str().len();
    let properties_len = other_properties + table_len(&headers);
    let room = limits.frame_max.saturating_sub(HEADER_FRAME_OVERHEAD);
    if properties_len > room {
        return Err(BuildError::HeadersTooLarge {
            len: properties_len,
            max: room,
        });
    }

    let timestamp = u64::try_from(event.occurred_at.timestamp()).unwrap_or_default();
    let properties = BasicProperties::default()
        .with_message_id(ShortString::from(event.id.to_string()))
        .with_type(kind)
        .with_content_type(ShortString::from("application/json"))
        .with_timestamp(timestamp)
        .with_delivery_mode(2)
        .with_app_id(ShortString::from("outbox-relay"))
        .with_headers(headers);
    Ok(OutgoingMessage {
        routing_key,
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
