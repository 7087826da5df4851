//! The trait every catalog payload implements.

use schemars::JsonSchema;
use serde::{Serialize, de::DeserializeOwned};
use uuid::Uuid;

use crate::Category;

/// A typed domain event payload of the catalog.
///
/// The outbox stores the payload together with the metadata this trait exposes,
/// so a payload type alone decides how its event is named, grouped and ordered.
pub trait CatalogEvent: Serialize + DeserializeOwned + JsonSchema + Send + Sync + 'static {
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
}
