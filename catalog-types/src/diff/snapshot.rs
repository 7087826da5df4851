//! A catalog as a JSON export holds it: what `catalog diff` compares.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use crate::Registry;

/// One event of a catalog export (`catalog export --format json`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotEntry {
    /// `SCREAMING_SNAKE_CASE` event type.
    pub event_type: String,
    /// Display name.
    pub name: String,
    /// One-sentence description.
    pub description: String,
    /// Category display name (it prefixes the default routing key).
    pub category: String,
    /// `payload.<Name>.v<N>`.
    pub payload_schema_ref: String,
    /// JSON Schema of the payload.
    pub payload_schema: Value,
}

/// A whole catalog, as exported at one time.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    entries: Vec<SnapshotEntry>,
}

/// Why a catalog export could not be read.
///
/// The message says it all, the cause's text included, so the cause is not also reported
/// as the error's `source` (an error chain printed as `{:#}` would repeat it).
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The file could not be read.
    #[error("cannot read {}: {cause}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the system said.
        cause: std::io::Error,
    },
    /// The text is not a JSON export of a catalog.
    #[error(
        "{origin} is not a catalog export (the JSON array written by `outbox-relay catalog export --format json`): {cause}"
    )]
    Parse {
        /// The file (or other origin) of the text.
        origin: String,
        /// What is wrong, with line and column.
        cause: serde_json::Error,
    },
    /// An event type appears more than once.
    #[error("{origin}: the event type `{event_type}` appears more than once")]
    Duplicate {
        /// The file (or other origin) of the text.
        origin: String,
        /// The repeated event type.
        event_type: String,
    },
}

impl Snapshot {
    /// Parses the text of a JSON export; `origin` (a file name) is named in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, SnapshotError> {
        let entries: Vec<SnapshotEntry> =
            serde_json::from_str(text).map_err(|cause| SnapshotError::Parse {
                origin: origin.to_owned(),
                cause,
            })?;
        Self::from_entries(entries, origin)
    }

    /// Reads a JSON export from a file.
    pub fn read(path: &Path) -> Result<Self, SnapshotError> {
        let text = std::fs::read_to_string(path).map_err(|cause| SnapshotError::Read {
            path: path.to_owned(),
            cause,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// The catalog of a registry (the shipped one: [`crate::registry()`]).
    pub fn of_registry(registry: &Registry) -> Self {
        Snapshot {
            entries: registry
                .entries()
                .iter()
                .map(|entry| SnapshotEntry {
                    event_type: entry.event_type.to_owned(),
                    name: entry.name.to_owned(),
                    description: entry.description.to_owned(),
                    category: entry.category.name().to_owned(),
                    payload_schema_ref: entry.schema_ref.to_owned(),
                    payload_schema: entry.schema.clone(),
                })
                .collect(),
        }
    }

    /// A snapshot of these entries; event types must be unique.
    pub fn from_entries(entries: Vec<SnapshotEntry>, origin: &str) -> Result<Self, SnapshotError> {
        let mut seen = HashSet::new();
        for entry in &entries {
            if !seen.insert(entry.event_type.as_str()) {
                return Err(SnapshotError::Duplicate {
                    origin: origin.to_owned(),
                    event_type: entry.event_type.clone(),
                });
            }
        }
        Ok(Snapshot { entries })
    }

    /// Every entry, in export order.
    pub fn entries(&self) -> &[SnapshotEntry] {
        &self.entries
    }

    /// The entry of an event type.
    pub fn get(&self, event_type: &str) -> Option<&SnapshotEntry> {
        self.entries.iter().find(|e| e.event_type == event_type)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registry_round_trips_through_the_json_export() -> Result<(), Box<dyn std::error::Error>>
    {
        let text = crate::export::json(crate::registry())?;
        let parsed = Snapshot::parse(&text, "export")?;
        assert_eq!(parsed, Snapshot::of_registry(crate::registry()));
        assert_eq!(parsed.entries().len(), crate::registry().len());
        Ok(())
    }

    #[test]
    fn bad_json_is_refused_naming_its_origin_and_position() {
        let error = Snapshot::parse("[{\"eventType\": ", "old.json")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            error.starts_with("old.json is not a catalog export"),
            "{error}"
        );
        assert!(error.contains("line 1"), "{error}");
        let error = Snapshot::parse("{\"not\": \"an array\"}", "new.json")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            error.starts_with("new.json is not a catalog export"),
            "{error}"
        );
    }

    #[test]
    fn a_repeated_event_type_is_refused() {
        let entry = r#"{"eventType": "A", "name": "A", "description": "", "category": "Tickets",
                        "payloadSchemaRef": "payload.A.v1", "payloadSchema": {}}"#;
        let error = Snapshot::parse(&format!("[{entry}, {entry}]"), "x.json")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert_eq!(error, "x.json: the event type `A` appears more than once");
    }

    #[test]
    fn a_missing_file_is_named() {
        let error = Snapshot::read(Path::new("no/such/catalog.json"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            error.starts_with("cannot read no/such/catalog.json"),
            "{error}"
        );
    }
}
