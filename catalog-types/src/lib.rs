//! Typed payloads of the Workflow Event Catalog v2 and the registry that describes them.
//!
//! Every catalog event is a struct implementing [`CatalogEvent`]; [`registry()`] lists them
//! all with their JSON Schemas and validates untyped payloads.
//!
//! Validation needs no JSON Schema engine: each payload schema is compiled once into the
//! checks it states (fields, required and unknown ones, types, enums, the formats `uuid`,
//! `date`, `time` and `date-time`, integer widths, bounds, simple patterns), then the
//! payload is read as the event's Rust type, whose canonical form is what is stored. Every
//! problem is named by its field path. A test of this crate holds these checks to a full
//! JSON Schema implementation on every catalog event, on valid and broken payloads.
//!
//! ```
//! use catalog_types::{CatalogEvent, TicketCreated, registry};
//!
//! // A typed event knows its name, category and schema…
//! assert_eq!(TicketCreated::EVENT_TYPE, "TICKET_CREATED");
//! // …and an untyped payload is checked against that schema, each problem by field path.
//! let refused = registry().validate("TICKET_CREATED", serde_json::json!({"ticketId": 7}));
//! assert!(refused.is_err());
//! ```
//!
//! With the feature **`tooling`** (off by default; the relay's `catalog` commands turn it
//! on), `export` renders the catalog as JSON, SQL, a Markdown page or TypeScript
//! declarations, `diff` compares two exports and tells the changes that break consumers
//! from those that do not, and `Registry::lookup` and its kin find what a person typed,
//! suggesting the closest name. A service that only emits events needs none of it, and
//! does not compile it.
//!
//! With the feature **`schemars`** (off by default; `tooling` turns it on) the payload and
//! value types implement `schemars::JsonSchema` and each entry's schema is generated from
//! its type. Without it the schemas come from a copy embedded in the crate, which a test of
//! the feature keeps equal to what the types generate: emitting compiles no schema code.
//!
//! A service can add event types of its own beside the catalog's: see
//! [`Registry::builder`] and [`service_event!`] for the naming rules.

mod category;
mod common;
#[cfg(feature = "tooling")]
pub mod diff;
mod event;
pub mod events;
#[cfg(feature = "tooling")]
pub mod export;
mod macros;
mod registry;
mod service;
mod validator;

/// What the crate's macros name, so a service using them needs no dependency of its own on
/// these crates. Not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use serde_json::Value;
    pub use uuid::Uuid;

    /// A catalog event's payload schema (`catalog_event!` names it): generated from `T`
    /// with the feature `schemars` (which then needs `T: schemars::JsonSchema`), the
    /// embedded copy without it.
    #[cfg(feature = "schemars")]
    pub fn catalog_schema<T: schemars::JsonSchema>(event_type: &str) -> Value {
        crate::events::schema_of::<T>(event_type)
    }

    /// A catalog event's payload schema (`catalog_event!` names it): generated from `T`
    /// with the feature `schemars` (which then needs `T: schemars::JsonSchema`), the
    /// embedded copy without it.
    #[cfg(not(feature = "schemars"))]
    #[allow(clippy::extra_unused_type_parameters)] // the signature of the feature's version
    pub fn catalog_schema<T>(event_type: &str) -> Value {
        crate::events::schema_of::<T>(event_type)
    }
}

pub use category::Category;
pub use common::{Changes, CurrencyCode, EmailAddress, FieldChange, InvalidCurrencyCode};
pub use event::CatalogEvent;
pub use events::*;
pub use registry::{
    CatalogEntry, ExportedEntry, Registry, ValidPayload, ValidationError, registry,
};
#[cfg(feature = "tooling")]
pub use registry::{UnknownName, closest, lookup_category};
pub use service::{
    EventDefinition, MAX_SERVICE_EVENT_TYPE_BYTES, RegistryBuilder, ServiceEventError,
    is_service_event_type, service_definitions, split_service_event_type,
};

/// The crate's README example, compiled as a doctest so it stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeExample;
