//! Typed payloads of the Workflow Event Catalog v2 and the registry that describes them.
//!
//! Every catalog event is a struct implementing [`CatalogEvent`]; [`registry()`] lists them
//! all with their JSON Schemas, validates untyped payloads, and [`export`] renders the
//! catalog as JSON, SQL, a Markdown page or TypeScript declarations; [`diff`] compares two
//! exports and tells the changes that break consumers from those that do not.
//!
//! A service can add event types of its own beside the catalog's: see
//! [`Registry::builder`] and [`service_event!`] for the naming rules.

mod category;
mod common;
pub mod diff;
mod event;
pub mod events;
pub mod export;
mod macros;
mod registry;
mod service;

pub use category::Category;
pub use common::{Changes, CurrencyCode, EmailAddress, FieldChange, InvalidCurrencyCode};
pub use event::CatalogEvent;
pub use events::*;
pub use registry::{
    CatalogEntry, ExportedEntry, Registry, UnknownName, ValidPayload, ValidationError, closest,
    lookup_category, registry,
};
pub use service::{
    EventDefinition, MAX_SERVICE_EVENT_TYPE_BYTES, RegistryBuilder, ServiceEventError,
    is_service_event_type, service_definitions, split_service_event_type,
};
