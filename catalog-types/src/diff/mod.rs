//! Catalog evolution that cannot break consumers silently: compares two catalog exports
//! and classifies every difference as breaking or compatible (`outbox-relay catalog diff`).
//!
//! The rule: a change is **compatible** when every payload that was valid before is still
//! valid, means the same, and reaches the same consumers: an optional field added, an enum
//! value added, a field made optional, a type widened (`integer` → `number`, nullable), a
//! constraint relaxed, a new event, a changed description or display name. Everything else
//! is **breaking**: a field removed or renamed, a field made required or added as required,
//! a type changed or narrowed, an enum value removed, a constraint tightened, an event
//! removed, a category changed (the routing key changes with it), a schema ref changed or
//! reused for a different shape.
//!
//! Breaking changes are allowed under a new schema ref version (`payload.X.v1` →
//! `payload.X.v2`): the event is then reported as a new version, and its changes are listed
//! as what the new version changes, not as breaks.

mod report;
mod schema;
mod snapshot;

use std::collections::HashMap;

use serde::Serialize;

pub use snapshot::{Snapshot, SnapshotEntry, SnapshotError};

/// What kind of difference a [`Change`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// An event of the old catalog is gone.
    EventRemoved,
    /// An event is new.
    EventAdded,
    /// The event's schema ref changed without a version bump.
    SchemaRefChanged,
    /// The event's schema ref version went up (`.v1` → `.v2`).
    VersionBumped,
    /// A schema ref now names a different shape than it did (for another event).
    SchemaRefReused,
    /// The event's category changed, and with it its default routing key.
    CategoryChanged,
    /// The event's display name changed.
    NameChanged,
    /// A description changed (of the event or of a field).
    DescriptionChanged,
    /// A field is gone.
    FieldRemoved,
    /// A field is gone and another of the same shape appeared: most likely a rename.
    FieldRenamed,
    /// A new field (breaking when it is required).
    FieldAdded,
    /// An optional field became required.
    BecameRequired,
    /// A required field became optional.
    BecameOptional,
    /// The type changed into one that refuses values the old one accepted.
    TypeChanged,
    /// The type now accepts more (`integer` → `number`, null allowed).
    TypeWidened,
    /// A value of an enumeration is gone.
    EnumValueRemoved,
    /// An enumeration gained a value.
    EnumValueAdded,
    /// A format, pattern, bound or length limit changed.
    ConstraintChanged,
    /// Fields beyond the listed ones are now refused.
    ExtraFieldsRefused,
    /// Fields beyond the listed ones are now accepted.
    ExtraFieldsAllowed,
    /// Something else in the schema changed (a union, a tuple ...), read as breaking.
    SchemaChanged,
}

/// One difference, on one event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    /// What kind of difference.
    pub kind: ChangeKind,
    /// The field path (`emailData.from.email`, `to[]`, `changes{}` for map values); empty
    /// for the event itself.
    pub path: String,
    /// Whether it breaks consumers (when the schema ref version stays the same).
    pub breaking: bool,
    /// What changed, for people.
    pub detail: String,
}

impl Change {
    fn new(kind: ChangeKind, path: &str, breaking: bool, detail: impl Into<String>) -> Self {
        Change {
            kind,
            path: path.to_owned(),
            breaking,
            detail: detail.into(),
        }
    }
}

/// How an event fares between the two catalogs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventStatus {
    /// Only in the new catalog.
    Added,
    /// Only in the old catalog.
    Removed,
    /// In both, same schema ref, with changes.
    Changed,
    /// In both, the schema ref's version went up: its changes are a new version.
    NewVersion,
}

/// Every difference of one event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventDiff {
    /// The event type.
    pub event_type: String,
    /// The schema ref in the old catalog.
    pub old_ref: Option<String>,
    /// The schema ref in the new catalog.
    pub new_ref: Option<String>,
    /// Added, removed, changed or a new version.
    pub status: EventStatus,
    /// The differences, breaking ones first.
    pub changes: Vec<Change>,
}

impl EventDiff {
    /// The changes that break consumers: breaking ones, unless the version was bumped.
    pub fn breaking(&self) -> impl Iterator<Item = &Change> {
        self.changes
            .iter()
            .filter(move |c| c.breaking && self.status != EventStatus::NewVersion)
    }
}

/// The differences between two catalogs, event by event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CatalogDiff {
    /// Events with at least one difference, in the old catalog's order, then new events.
    pub events: Vec<EventDiff>,
}

impl CatalogDiff {
    /// Compares `old` with `new`.
    pub fn compare(old: &Snapshot, new: &Snapshot) -> Self {
        let old_by_ref: HashMap<&str, &SnapshotEntry> = old
            .entries()
            .iter()
            .map(|e| (e.payload_schema_ref.as_str(), e))
            .collect();
        let mut events = Vec::new();
        for before in old.entries() {
            match new.get(&before.event_type) {
                None => events.push(EventDiff {
                    event_type: before.event_type.clone(),
                    old_ref: Some(before.payload_schema_ref.clone()),
                    new_ref: None,
                    status: EventStatus::Removed,
                    changes: vec![Change::new(
                        ChangeKind::EventRemoved,
                        "",
                        true,
                        "event removed: its consumers stop receiving it",
                    )],
                }),
                Some(after) => {
                    if let Some(diff) = compare_event(before, after, &old_by_ref) {
                        events.push(diff);
                    }
                }
            }
        }
        for after in new.entries() {
            if old.get(&after.event_type).is_some() {
                continue;
            }
            let mut changes = vec![Change::new(
                ChangeKind::EventAdded,
                "",
                false,
                "event added",
            )];
            changes.extend(reuse(after, &old_by_ref));
            events.push(EventDiff {
                event_type: after.event_type.clone(),
                old_ref: None,
                new_ref: Some(after.payload_schema_ref.clone()),
                status: EventStatus::Added,
                changes: sorted(changes),
            });
        }
        CatalogDiff { events }
    }

    /// Every change that breaks consumers, with its event.
    pub fn breaking(&self) -> impl Iterator<Item = (&EventDiff, &Change)> {
        self.events
            .iter()
            .flat_map(|event| event.breaking().map(move |change| (event, change)))
    }

    /// Whether any change breaks consumers without a version bump.
    pub fn is_breaking(&self) -> bool {
        self.breaking().next().is_some()
    }

    /// Whether the catalogs are the same.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// The report for people: one line per change, grouped by event, and a verdict.
    pub fn to_text(&self) -> String {
        report::text(self)
    }
}

/// `payload.TicketCreated.v2` → (`payload.TicketCreated`, 2).
fn split_version(schema_ref: &str) -> Option<(&str, u64)> {
    let (base, version) = schema_ref.rsplit_once(".v")?;
    Some((base, version.parse().ok()?))
}

fn compare_event(
    before: &SnapshotEntry,
    after: &SnapshotEntry,
    old_by_ref: &HashMap<&str, &SnapshotEntry>,
) -> Option<EventDiff> {
    let mut changes = Vec::new();
    let mut status = EventStatus::Changed;
    let (old_ref, new_ref) = (&before.payload_schema_ref, &after.payload_schema_ref);
    if old_ref != new_ref {
        match (split_version(old_ref), split_version(new_ref)) {
            (Some((old_base, old_version)), Some((new_base, new_version)))
                if old_base == new_base && new_version > old_version =>
            {
                status = EventStatus::NewVersion;
                changes.push(Change::new(
                    ChangeKind::VersionBumped,
                    "",
                    false,
                    format!("new version: schema ref {old_ref} → {new_ref}"),
                ));
            }
            _ => changes.push(Change::new(
                ChangeKind::SchemaRefChanged,
                "",
                true,
                format!(
                    "schema ref {old_ref} → {new_ref} without a version bump: consumers that select by `x-schema-ref` miss it"
                ),
            )),
        }
        changes.extend(reuse(after, old_by_ref));
    }
    if before.category != after.category {
        changes.push(Change::new(
            ChangeKind::CategoryChanged,
            "",
            true,
            format!(
                "category {} → {}: the default routing key changes, queues bound to the old one stop receiving it",
                before.category, after.category
            ),
        ));
    }
    if before.name != after.name {
        changes.push(Change::new(
            ChangeKind::NameChanged,
            "",
            false,
            format!("display name {:?} → {:?}", before.name, after.name),
        ));
    }
    if before.description != after.description {
        changes.push(Change::new(
            ChangeKind::DescriptionChanged,
            "",
            false,
            "event description changed",
        ));
    }
    changes.extend(schema::compare(
        &before.payload_schema,
        &after.payload_schema,
    ));
    (!changes.is_empty()).then(|| EventDiff {
        event_type: after.event_type.clone(),
        old_ref: Some(old_ref.clone()),
        new_ref: Some(new_ref.clone()),
        status,
        changes: sorted(changes),
    })
}

/// A schema ref the old catalog gave another event, now used for a different shape.
fn reuse(after: &SnapshotEntry, old_by_ref: &HashMap<&str, &SnapshotEntry>) -> Option<Change> {
    let previous = old_by_ref.get(after.payload_schema_ref.as_str())?;
    if previous.event_type == after.event_type
        || schema::same_shape(&previous.payload_schema, &after.payload_schema)
    {
        return None;
    }
    Some(Change::new(
        ChangeKind::SchemaRefReused,
        "",
        true,
        format!(
            "schema ref {} named the payload of {} and now names a different shape: consumers that select by `x-schema-ref` misread it",
            after.payload_schema_ref, previous.event_type
        ),
    ))
}

/// Breaking changes first, then by path; otherwise in the order found.
fn sorted(mut changes: Vec<Change>) -> Vec<Change> {
    changes.sort_by(|a, b| {
        b.breaking
            .cmp(&a.breaking)
            .then_with(|| a.path.cmp(&b.path))
    });
    changes
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn entry(event_type: &str, schema_ref: &str, schema: serde_json::Value) -> SnapshotEntry {
        SnapshotEntry {
            event_type: event_type.to_owned(),
            name: "Name".to_owned(),
            description: "Description.".to_owned(),
            category: "Tickets".to_owned(),
            payload_schema_ref: schema_ref.to_owned(),
            payload_schema: schema,
        }
    }

    fn snapshot(entries: Vec<SnapshotEntry>) -> Snapshot {
        Snapshot::from_entries(entries, "test").unwrap_or_else(|e| panic!("{e}"))
    }

    fn object(fields: serde_json::Value, required: &[&str]) -> serde_json::Value {
        json!({"type": "object", "additionalProperties": false, "properties": fields, "required": required})
    }

    fn kinds(diff: &CatalogDiff) -> Vec<(ChangeKind, bool)> {
        diff.events
            .iter()
            .flat_map(|e| e.changes.iter().map(|c| (c.kind, c.breaking)))
            .collect()
    }

    #[test]
    fn the_shipped_catalog_has_no_difference_with_itself() {
        let now = Snapshot::of_registry(crate::registry());
        let diff = CatalogDiff::compare(&now, &now);
        assert!(diff.is_empty(), "{}", diff.to_text());
    }

    #[test]
    fn a_removed_event_breaks_and_an_added_one_does_not() {
        let a = entry("A", "payload.A.v1", object(json!({}), &[]));
        let b = entry("B", "payload.B.v1", object(json!({}), &[]));
        let diff = CatalogDiff::compare(&snapshot(vec![a.clone()]), &snapshot(vec![b]));
        assert_eq!(
            kinds(&diff),
            vec![
                (ChangeKind::EventRemoved, true),
                (ChangeKind::EventAdded, false)
            ]
        );
        assert!(diff.is_breaking());
        let diff = CatalogDiff::compare(&snapshot(vec![]), &snapshot(vec![a]));
        assert!(!diff.is_breaking());
    }

    #[test]
    fn a_version_bump_turns_breaks_into_a_new_version() {
        let old = entry(
            "A",
            "payload.A.v1",
            object(json!({"x": {"type": "string"}}), &["x"]),
        );
        let new = entry(
            "A",
            "payload.A.v2",
            object(json!({"y": {"type": "integer"}}), &["y"]),
        );
        let diff = CatalogDiff::compare(&snapshot(vec![old.clone()]), &snapshot(vec![new]));
        assert_eq!(diff.events[0].status, EventStatus::NewVersion);
        assert!(diff.events[0].changes.iter().any(|c| c.breaking));
        assert!(!diff.is_breaking(), "{}", diff.to_text());

        // A ref renamed, or a version going back, is not a bump.
        for other in ["payload.B.v2", "payload.A.v0"] {
            let new = entry("A", other, old.payload_schema.clone());
            let diff = CatalogDiff::compare(&snapshot(vec![old.clone()]), &snapshot(vec![new]));
            assert_eq!(
                kinds(&diff),
                vec![(ChangeKind::SchemaRefChanged, true)],
                "{other}"
            );
        }
    }

    #[test]
    fn a_schema_ref_reused_for_another_shape_breaks() {
        let old = entry(
            "A",
            "payload.A.v1",
            object(json!({"x": {"type": "string"}}), &["x"]),
        );
        let other = entry(
            "B",
            "payload.A.v1",
            object(json!({"y": {"type": "string"}}), &["y"]),
        );
        let diff = CatalogDiff::compare(&snapshot(vec![old.clone()]), &snapshot(vec![other]));
        assert!(
            kinds(&diff).contains(&(ChangeKind::SchemaRefReused, true)),
            "{}",
            diff.to_text()
        );
        // The same shape under the same ref for a renamed event is no reuse (the removal
        // still breaks).
        let same = entry("B", "payload.A.v1", old.payload_schema.clone());
        let diff = CatalogDiff::compare(&snapshot(vec![old]), &snapshot(vec![same]));
        assert_eq!(
            kinds(&diff),
            vec![
                (ChangeKind::EventRemoved, true),
                (ChangeKind::EventAdded, false)
            ]
        );
    }

    #[test]
    fn category_changes_break_and_names_and_descriptions_do_not() {
        let old = entry("A", "payload.A.v1", object(json!({}), &[]));
        let mut new = old.clone();
        new.name = "Other".to_owned();
        new.description = "Other.".to_owned();
        let diff = CatalogDiff::compare(&snapshot(vec![old.clone()]), &snapshot(vec![new.clone()]));
        assert_eq!(
            kinds(&diff),
            vec![
                (ChangeKind::NameChanged, false),
                (ChangeKind::DescriptionChanged, false)
            ]
        );
        new.category = "Billing".to_owned();
        let diff = CatalogDiff::compare(&snapshot(vec![old]), &snapshot(vec![new]));
        assert!(kinds(&diff).contains(&(ChangeKind::CategoryChanged, true)));
    }

    #[test]
    fn versions_are_read_from_the_end_of_the_ref() {
        assert_eq!(split_version("payload.A.v12"), Some(("payload.A", 12)));
        assert_eq!(split_version("payload.A"), None);
        assert_eq!(split_version("payload.A.vX"), None);
    }
}
