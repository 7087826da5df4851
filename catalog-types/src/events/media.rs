//! Catalog events of this category (to be filled in).

use crate::CatalogEntry;

pub(crate) fn entries() -> Vec<CatalogEntry> {
    Vec::new()
}
