//! Typed payloads of the Workflow Event Catalog v2 and the registry that describes them.
//!
//! Every catalog event is a struct implementing [`CatalogEvent`]; [`registry()`] lists them
//! all with their JSON Schemas, validates untyped payloads, and [`export`] renders the
//! catalog as JSON, SQL or a Markdown page.

mod category;
mod common;
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
    CatalogEntry, ExportedEntry, Registry, ValidPayload, ValidationError, registry,
};
