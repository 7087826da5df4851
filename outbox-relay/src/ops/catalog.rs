//! `catalog list`: the event catalog as a table for a terminal (the exports, for other
//! systems, are `catalog_types::export`'s).

use catalog_types::Registry;

use crate::foundation::table::{Column, Table};

/// Every event of `registry`: type, category, name and schema ref, then how many there are.
pub fn list(registry: &Registry) -> String {
    let mut table = Table::new([
        Column::left("EVENT TYPE", 60),
        Column::left("CATEGORY", 24),
        Column::left("NAME", 48),
        Column::left("SCHEMA REF", 80),
    ]);
    for entry in registry.entries() {
        table.row([
            entry.event_type,
            entry.category.name(),
            entry.name,
            entry.schema_ref,
        ]);
    }
    format!("{}{} events\n", table.render(), registry.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_is_listed_whole_and_aligned() {
        let registry = catalog_types::registry();
        let text = list(registry);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), registry.len() + 2);
        assert!(lines[0].starts_with("EVENT TYPE"), "{text}");
        assert_eq!(
            lines.last().copied(),
            Some(format!("{} events", registry.len()).as_str())
        );
        // No catalog value is long enough to be cut.
        assert!(!text.contains(crate::foundation::table::ELLIPSIS), "{text}");
        let column = |line: &str| line.find("payload.");
        let first = column(lines[1]);
        assert!(first.is_some());
        assert!(
            lines[1..=registry.len()]
                .iter()
                .all(|line| column(line) == first),
            "{text}"
        );
    }
}
