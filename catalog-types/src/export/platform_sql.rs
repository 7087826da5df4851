//! The catalog as SQL for the platform's own catalog table, whose rows have a uuid id and
//! timestamps (`catalog export --format sql --table-shape platform`).
//!
//! The platform's `system_event_catalog` is keyed by `event_id uuid` with `event_type`
//! unique, and carries `created_at` / `updated_at`; the outbox's own table (see
//! [`super::sql`]) is keyed by `event_type`. Each event's id here is a UUIDv5 of its event
//! type, so every run of the script, on any database, gives an event the same id, and an
//! upsert updates the existing row instead of adding a second one.

use std::fmt::Write as _;

use uuid::Uuid;

use super::{sql_text, sql_values};
use crate::Registry;

/// The namespace of the catalog's event ids: the UUIDv5 (URL namespace) of
/// `urn:workflow-event-catalog:v2:event-type`. Fixed forever: changing it changes every id.
pub const EVENT_ID_NAMESPACE: Uuid = Uuid::from_u128(0x47a6_ece4_9f1d_5627_9a58_deff_9944_773d);

/// The stable `event_id` of an event type in the platform's catalog table: the UUIDv5 of
/// the event type in [`EVENT_ID_NAMESPACE`].
pub fn platform_event_id(event_type: &str) -> Uuid {
    Uuid::new_v5(&EVENT_ID_NAMESPACE, event_type.as_bytes())
}

/// The columns the platform's table must have, in insert order.
const COLUMNS: [&str; 9] = [
    "event_id",
    "event_type",
    "name",
    "description",
    "category",
    "payload_schema",
    "payload_schema_ref",
    "created_at",
    "updated_at",
];

/// An idempotent SQL script that upserts every entry into the platform-shaped
/// `system_event_catalog` (`event_id uuid` primary key, `event_type` unique, `name`,
/// `description`, `category`, `payload_schema jsonb`, `payload_schema_ref`, `created_at`,
/// `updated_at`), creating the table if it is absent.
///
/// A row whose content changed is updated in place: its `event_id` and `created_at` stay,
/// `updated_at` becomes the time of the run. A row that is already current is not written
/// at all, so `updated_at` says when the event's definition last changed. A table of
/// another shape (such as the outbox's own, keyed by `event_type`) is refused with a
/// message naming the missing columns, before anything is written.
pub fn platform_sql(registry: &Registry) -> Result<String, serde_json::Error> {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "-- Workflow Event Catalog v2: {} events, for the platform's catalog table.\n\
         -- Idempotent: safe to run again. event_id is the UUIDv5 of the event type, so it is the\n\
         -- same on every run and database; created_at is kept on update, updated_at is bumped\n\
         -- when a row's content changes.",
        registry.len()
    );
    out.push_str(
        "BEGIN;\n\
         CREATE TABLE IF NOT EXISTS system_event_catalog (\n\
         \x20   event_id           uuid PRIMARY KEY,\n\
         \x20   event_type         text NOT NULL UNIQUE,\n\
         \x20   name               text NOT NULL,\n\
         \x20   description        text,\n\
         \x20   category           text,\n\
         \x20   payload_schema     jsonb,\n\
         \x20   payload_schema_ref text,\n\
         \x20   created_at         timestamptz NOT NULL DEFAULT now(),\n\
         \x20   updated_at         timestamptz NOT NULL DEFAULT now()\n\
         );\n",
    );
    let columns: Vec<String> = COLUMNS.iter().map(|c| sql_text(c)).collect();
    let _ = write!(
        out,
        "DO $check$\n\
         DECLARE\n\
         \x20   missing text;\n\
         BEGIN\n\
         \x20   SELECT string_agg(wanted, ', ') INTO missing\n\
         \x20     FROM unnest(ARRAY[{}]) AS wanted\n\
         \x20    WHERE NOT EXISTS (\n\
         \x20          SELECT 1 FROM pg_attribute\n\
         \x20           WHERE attrelid = 'system_event_catalog'::regclass\n\
         \x20             AND attname = wanted AND attnum > 0 AND NOT attisdropped);\n\
         \x20   IF missing IS NOT NULL THEN\n\
         \x20       RAISE EXCEPTION 'system_event_catalog is not of the platform shape: no column %', missing\n\
         \x20           USING HINT = 'for the outbox''s own table, use `outbox-relay catalog export --format sql` without --table-shape platform';\n\
         \x20   END IF;\n\
         END\n\
         $check$;\n",
        columns.join(", ")
    );
    out.push_str(
        "INSERT INTO system_event_catalog AS c\n\
         \x20   (event_id, event_type, name, description, category, payload_schema, payload_schema_ref,\n\
         \x20    created_at, updated_at)\n\
         VALUES\n",
    );
    let rows: Vec<String> = registry
        .entries()
        .iter()
        .map(|entry| {
            Ok(format!(
                "    ('{}'::uuid, {}, now(), now())",
                platform_event_id(entry.event_type),
                sql_values(entry)?
            ))
        })
        .collect::<Result<_, serde_json::Error>>()?;
    out.push_str(&rows.join(",\n"));
    out.push_str(super::UPSERT_SET);
    out.push_str(
        ",\n\
         \x20   updated_at = now()\n\
         WHERE (c.name, c.description, c.category, c.payload_schema, c.payload_schema_ref)\n\
         \x20     IS DISTINCT FROM\n\
         \x20     (EXCLUDED.name, EXCLUDED.description, EXCLUDED.category, EXCLUDED.payload_schema,\n\
         \x20      EXCLUDED.payload_schema_ref);\n\
         COMMIT;\n",
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry;

    #[test]
    fn the_namespace_is_the_documented_name_based_uuid() {
        assert_eq!(
            EVENT_ID_NAMESPACE,
            Uuid::new_v5(
                &Uuid::NAMESPACE_URL,
                b"urn:workflow-event-catalog:v2:event-type"
            )
        );
    }

    #[test]
    fn event_ids_are_version_5_stable_and_distinct() {
        let id = platform_event_id("TICKET_CREATED");
        assert_eq!(id.get_version_num(), 5);
        // Fixed forever: the platform's rows carry it.
        assert_eq!(id.to_string(), "c8420854-77ae-5d37-9268-c33b321977dd");
        let ids: std::collections::HashSet<Uuid> = registry()
            .entries()
            .iter()
            .map(|e| platform_event_id(e.event_type))
            .collect();
        assert_eq!(ids.len(), registry().len());
    }

    #[test]
    fn the_script_upserts_every_event_by_event_type_with_its_stable_id()
    -> Result<(), serde_json::Error> {
        let script = platform_sql(registry())?;
        for entry in registry().entries() {
            let row_start = format!(
                "('{}'::uuid, '{}', ",
                platform_event_id(entry.event_type),
                entry.event_type
            );
            assert!(script.contains(&row_start), "{} missing", entry.event_type);
        }
        assert!(script.contains("ON CONFLICT (event_type) DO UPDATE"));
        // created_at is inserted, never updated.
        let update = script.split("DO UPDATE SET").nth(1).unwrap_or_default();
        assert!(!update.contains("created_at"));
        assert!(update.contains("updated_at = now()"));
        Ok(())
    }

    #[test]
    fn quotes_in_text_are_doubled() {
        assert_eq!(sql_text("it's"), "'it''s'");
    }
}
