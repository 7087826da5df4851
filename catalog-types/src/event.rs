//! The trait every catalog payload implements.

use serde::{Serialize, de::DeserializeOwned};
use uuid::Uuid;

use crate::Category;

/// A typed domain event payload of the catalog.
///
/// The outbox stores the payload together with the metadata this trait exposes,
/// so a payload type alone decides how its event is named, grouped and ordered.
pub trait CatalogEvent: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// `SCREAMING_SNAKE_CASE` event type, e.g. `TICKET_STATUS_CHANGED`.
    const EVENT_TYPE: &'static str;
    /// Display name shown in the catalog UI.
    const NAME: &'static str;
    /// One-sentence description from the catalog.
    const DESCRIPTION: &'static str;
    /// The catalog UI's grouping.
    const CATEGORY: Category;
    /// `payload.<PascalCase of event type>.v1`.
    const SCHEMA_REF: &'static str;

    /// The tenant the event belongs to, when it is tenant-scoped.
    fn tenant_id(&self) -> Option<Uuid>;

    /// The aggregate the event is about (`ticket:<ticketId>`); events sharing it are
    /// delivered in the order they were written.
    fn ordering_key(&self) -> Option<String>;

    /// A realistic sample payload, used by documentation, examples and tests.
    fn example() -> Self;

    /// The payload's JSON Schema (Draft 2020-12): what untyped payloads are validated
    /// against and what the database's catalog table holds.
    ///
    /// A catalog event's comes from the schemas embedded in this crate (generated from the
    /// types by schemars, so an emitting service compiles no schema code); a service's own
    /// event generates it with schemars: [`service_event!`](crate::service_event) writes
    /// `schemars::schema_for!(Self).to_value()`, and so does a hand-written implementation.
    fn payload_schema() -> serde_json::Value;
}
