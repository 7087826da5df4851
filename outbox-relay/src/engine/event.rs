//! The claimed event: what the store reads from a leased row and the broker publishes.
//!
//! It lives below both, so the wire format ([`crate::broker::message`]) does not depend on
//! the store that produces it.

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// One claimed row, with everything needed to publish it.
#[derive(Debug, Clone)]
pub struct ClaimedEvent {
    /// Event id (the AMQP `message_id`).
    pub id: Uuid,
    /// Insertion order (commit order within an ordering key).
    pub seq: i64,
    /// Tenant.
    pub tenant_id: Option<Uuid>,
    /// Catalog event type.
    pub event_type: String,
    /// Payload schema ref.
    pub schema_ref: String,
    /// Catalog category display name.
    pub category: String,
    /// Ordering key (events sharing one within a tenant are published in seq order).
    pub ordering_key: Option<String>,
    /// The payload as JSON text, exactly as stored (never re-parsed by the relay).
    pub payload: String,
    /// Extra headers (`traceparent`, ...), a JSON object.
    pub headers: serde_json::Value,
    /// Dedupe key.
    pub dedupe_key: String,
    /// When the business fact happened.
    pub occurred_at: DateTime<Utc>,
    /// When the row was written (for end-to-end lag).
    pub created_at: DateTime<Utc>,
    /// Publish attempts so far.
    pub attempts: i32,
}

/// An ordering scope: one tenant's ordering key. Events of one scope are published in seq
/// order; events of different scopes (two tenants using the same key included) are
/// independent of each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Scope<'a> {
    /// The tenant (`None` is a scope of its own, as any tenant is).
    pub tenant_id: Option<Uuid>,
    /// The ordering key.
    pub ordering_key: &'a str,
}

impl ClaimedEvent {
    /// The event's ordering scope; `None` for an event without an ordering key, which is
    /// ordered after nothing and before nothing.
    pub fn scope(&self) -> Option<Scope<'_>> {
        self.ordering_key.as_deref().map(|ordering_key| Scope {
            tenant_id: self.tenant_id,
            ordering_key,
        })
    }
}
