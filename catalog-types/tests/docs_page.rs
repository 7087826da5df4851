//! `docs/catalog.md` is generated from the registry; this test fails when it is stale.
//! Regenerate with `UPDATE_CATALOG_DOCS=1 cargo test -p catalog-types --features tooling --test docs_page`.

use catalog_types::{export, registry};

#[test]
fn the_catalog_page_is_up_to_date() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/catalog.md");
    let generated = export::markdown(registry());
    if std::env::var_os("UPDATE_CATALOG_DOCS").is_some() {
        std::fs::write(path, &generated).unwrap_or_else(|e| panic!("writing {path}: {e}"));
        return;
    }
    let current = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        current == generated,
        "docs/catalog.md is stale: run `UPDATE_CATALOG_DOCS=1 cargo test -p catalog-types --features tooling --test docs_page`"
    );
}

#[test]
fn the_page_lists_every_event_with_its_fields() {
    let page = export::markdown(registry());
    for entry in registry().entries() {
        assert!(
            page.contains(&format!("### `{}`", entry.event_type)),
            "{} missing",
            entry.event_type
        );
    }
    assert!(page.contains("| `tenantId` | uuid | yes |"));
    assert!(
        page.contains("`public` \\| `internal`"),
        "enums are listed with their values"
    );
}
