//! One module per catalog category; each payload struct implements [`CatalogEvent`](crate::CatalogEvent).
//!
//! The payload schemas are generated from the types by schemars. With the feature
//! `schemars` (the relay's `tooling` turns it on) each entry's schema is generated so; the
//! same schemas are kept in `schemas.json` beside this file, which every build embeds, and a
//! build without the feature (a service that only emits) reads them from there, compiling
//! neither schemars nor 134 schema derives. A test of the feature fails, with the command
//! that regenerates the file, when the two differ.

mod assets;
mod billing;
mod crm;
mod documents;
mod email;
mod existing;
mod integrations;
mod media;
mod notifications;
mod projects;
pub(crate) mod sample;
mod scheduling;
mod surveys;
mod tags;
mod tickets;

pub use assets::*;
pub use billing::*;
pub use crm::*;
pub use documents::*;
pub use email::*;
pub use existing::*;
pub use integrations::*;
pub use media::*;
pub use notifications::*;
pub use projects::*;
pub use scheduling::*;
pub use surveys::*;
pub use tags::*;
pub use tickets::*;

use serde_json::Value;

use crate::CatalogEntry;

/// The catalog's payload schemas by event type, as schemars generates them from the types.
#[cfg(any(test, not(feature = "schemars")))]
const SCHEMAS_JSON: &str = include_str!("schemas.json");

/// The embedded schema of a catalog event type (`null` for a name the file does not hold,
/// which the catalog's tests rule out).
#[cfg(any(test, not(feature = "schemars")))]
fn embedded_schema(event_type: &str) -> Value {
    use serde_json::Map;
    use std::sync::OnceLock;
    static SCHEMAS: OnceLock<Map<String, Value>> = OnceLock::new();
    SCHEMAS
        .get_or_init(|| serde_json::from_str(SCHEMAS_JSON).unwrap_or_default())
        .get(event_type)
        .cloned()
        .unwrap_or(Value::Null)
}

/// A catalog event's payload schema: generated from its type with the feature `schemars`,
/// read from the embedded `schemas.json` without it (`catalog_event!` calls this).
#[cfg(feature = "schemars")]
pub(crate) fn schema_of<T: schemars::JsonSchema>(_event_type: &str) -> Value {
    schemars::schema_for!(T).to_value()
}

/// A catalog event's payload schema: generated from its type with the feature `schemars`,
/// read from the embedded `schemas.json` without it (`catalog_event!` calls this).
#[cfg(not(feature = "schemars"))]
#[allow(clippy::extra_unused_type_parameters)] // the signature of the feature's version
pub(crate) fn schema_of<T>(event_type: &str) -> Value {
    embedded_schema(event_type)
}

/// Every catalog entry, sorted by category (catalog order) and then in declaration order.
pub(crate) fn entries() -> Vec<CatalogEntry> {
    let mut all = Vec::new();
    all.extend(existing::entries());
    all.extend(tickets::entries());
    all.extend(scheduling::entries());
    all.extend(projects::entries());
    all.extend(billing::entries());
    all.extend(crm::entries());
    all.extend(tags::entries());
    all.extend(documents::entries());
    all.extend(email::entries());
    all.extend(notifications::entries());
    all.extend(surveys::entries());
    all.extend(integrations::entries());
    all.extend(assets::entries());
    all.extend(media::entries());
    all.sort_by_key(|entry| entry.category);
    all
}

#[cfg(all(test, feature = "schemars"))]
mod tests {
    use serde_json::{Map, Value};

    /// `schemas.json` as the types generate it now: every catalog event's schema, by event type
    /// in catalog order.
    fn generated_schemas_json() -> Result<String, serde_json::Error> {
        let schemas: Map<String, Value> = super::entries()
            .into_iter()
            .map(|entry| (entry.event_type.to_owned(), entry.schema))
            .collect();
        Ok(serde_json::to_string_pretty(&schemas)? + "\n")
    }

    /// Regenerate with `UPDATE_CATALOG_SCHEMAS=1 cargo test -p catalog-types --features schemars --lib embedded`.
    #[test]
    fn the_embedded_schemas_are_the_ones_the_types_generate() {
        for entry in super::entries() {
            assert!(
                super::embedded_schema(entry.event_type) == entry.schema
                    || std::env::var_os("UPDATE_CATALOG_SCHEMAS").is_some(),
                "{}: its embedded schema is not the one its type generates",
                entry.event_type
            );
        }
        let generated = generated_schemas_json().unwrap_or_default();
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/src/events/schemas.json");
        if std::env::var_os("UPDATE_CATALOG_SCHEMAS").is_some() {
            std::fs::write(path, &generated).unwrap_or_else(|e| panic!("{path}: {e}"));
            return;
        }
        assert!(
            super::SCHEMAS_JSON == generated,
            "catalog-types/src/events/schemas.json is not what the payload types generate: \
             regenerate it with `UPDATE_CATALOG_SCHEMAS=1 cargo test -p catalog-types \
             --features schemars --lib embedded` and commit it"
        );
    }
}
