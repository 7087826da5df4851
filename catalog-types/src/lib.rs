//! Typed payloads of the Workflow Event Catalog v2 and the registry that describes them.
//!
//! Every catalog event is a struct implementing [`CatalogEvent`]; [`registry()`] lists them
//! all with their JSON Schemas, validates untyped payloads, and [`export`] renders the
//! catalog as JSON, SQL, a Markdown page or TypeScript declarations; [`diff`] compares two
//! exports and tells the changes that break consumers from those that do not.

mod category;
mod common;
pub mod diff;
mod event;
pub mod events;
pub mod export;
mod macros;
mod registry;

pub use category::Category;
pub use common::{Changes, CurrencyCode, EmailAddress, FieldChange, InvalidCurrencyCode};
pub use event::CatalogEvent;
pub use events::*;
pub use registry::{
    CatalogEntry, ExportedEntry, Registry, UnknownName, ValidPayload, ValidationError, closest,
    lookup_category, registry,
};
