//! `docs/catalog.json` is the catalog as released: the JSON export other teams diff their
//! expectations against. A change to the payload types that breaks it without a schema ref
//! version bump fails here, and so does a stale file.
//!
//! Regenerate it with `cargo run -p outbox-relay -- catalog export --format json --output docs/catalog.json`
//! or `UPDATE_CATALOG_JSON=1 cargo test -p catalog-types --features tooling --test catalog_json` (which refuses
//! to record a breaking change).

use catalog_types::diff::{CatalogDiff, Snapshot};
use catalog_types::{export, registry};

const PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/catalog.json");

#[test]
fn the_types_do_not_break_the_released_catalog_and_it_is_up_to_date()
-> Result<(), Box<dyn std::error::Error>> {
    let generated = export::json(registry())?;
    let released = Snapshot::read(std::path::Path::new(PATH))?;
    let diff = CatalogDiff::compare(&released, &Snapshot::of_registry(registry()));
    assert!(
        !diff.is_breaking(),
        "the payload types break docs/catalog.json without a schema ref version bump:\n{}\n\
         Make the change compatible (an optional field, a new enum value ...) or bump the \
         event's schema ref to the next version (`payload.<Name>.v2`).",
        diff.to_text()
    );
    if std::env::var_os("UPDATE_CATALOG_JSON").is_some() {
        std::fs::write(PATH, &generated)?;
        return Ok(());
    }
    let current = std::fs::read_to_string(PATH)?;
    assert!(
        current == generated,
        "docs/catalog.json is stale: regenerate it with \
         `cargo run -p outbox-relay -- catalog export --format json --output docs/catalog.json` \
         (or `UPDATE_CATALOG_JSON=1 cargo test -p catalog-types --features tooling --test catalog_json`) and commit it.\n\
         What changed, all compatible:\n{}",
        diff.to_text()
    );
    Ok(())
}
