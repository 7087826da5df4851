//! Renders the catalog for other systems: JSON, idempotent SQL (for the outbox's table and,
//! in [`platform_sql`], for the platform's), the Markdown page `docs/catalog.md`, and
//! TypeScript declarations ([`typescript`]). (The relay's `catalog list` prints the table
//! for terminals, with the relay's table helper.)

mod platform_sql;
mod typescript;

pub use platform_sql::{EVENT_ID_NAMESPACE, platform_event_id, platform_sql};
pub use typescript::{TypeScriptError, render as typescript_of, typescript};

use std::fmt::Write as _;

use serde_json::Value;

use crate::{Category, ExportedEntry, Registry};

/// Every entry with its payload schema, as a pretty JSON array.
pub fn json(registry: &Registry) -> Result<String, serde_json::Error> {
    let entries: Vec<ExportedEntry<'_>> = registry.entries().iter().map(|e| e.exported()).collect();
    Ok(serde_json::to_string_pretty(&entries)? + "\n")
}

fn sql_text(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// An entry's catalog columns as SQL literals, in the order both table shapes take them:
/// `event_type, name, description, category, payload_schema, payload_schema_ref`.
fn sql_values(entry: &crate::CatalogEntry) -> Result<String, serde_json::Error> {
    Ok(format!(
        "{}, {}, {}, {}, {}::jsonb, {}",
        sql_text(entry.event_type),
        sql_text(entry.name),
        sql_text(entry.description),
        sql_text(entry.category.name()),
        sql_text(&serde_json::to_string(&entry.schema)?),
        sql_text(entry.schema_ref)
    ))
}

/// The outbox's catalog table, created if absent. The first migration creates it with this
/// very statement (a test in `outbox-core` holds them together), so a database that got
/// the catalog from this export can be migrated later, and the other way round.
pub const CATALOG_TABLE_DDL: &str = "\
CREATE TABLE IF NOT EXISTS system_event_catalog (
    event_type         text PRIMARY KEY,
    name               text NOT NULL,
    description        text NOT NULL,
    category           text NOT NULL,
    payload_schema     jsonb NOT NULL,
    payload_schema_ref text NOT NULL UNIQUE
);
";

/// An idempotent SQL script that creates `system_event_catalog` if absent and upserts every
/// entry; running it twice leaves the same rows.
pub fn sql(registry: &Registry) -> Result<String, serde_json::Error> {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "-- Workflow Event Catalog v2: {} events. Idempotent: safe to run again.",
        registry.len()
    );
    out.push_str("BEGIN;\n");
    out.push_str(CATALOG_TABLE_DDL);
    out.push_str(
        "INSERT INTO system_event_catalog\n\
         \x20   (event_type, name, description, category, payload_schema, payload_schema_ref)\n\
         VALUES\n",
    );
    let rows: Vec<String> = registry
        .entries()
        .iter()
        .map(|entry| Ok(format!("    ({})", sql_values(entry)?)))
        .collect::<Result<_, serde_json::Error>>()?;
    out.push_str(&rows.join(",\n"));
    out.push_str(UPSERT_SET);
    out.push_str(";\nCOMMIT;\n");
    Ok(out)
}

/// The upsert's conflict clause, shared by both table shapes: a row keyed by its event
/// type takes the catalog's columns (each shape may add to the `SET` list).
pub(crate) const UPSERT_SET: &str = "\nON CONFLICT (event_type) DO UPDATE SET\n\
    \x20   name = EXCLUDED.name,\n\
    \x20   description = EXCLUDED.description,\n\
    \x20   category = EXCLUDED.category,\n\
    \x20   payload_schema = EXCLUDED.payload_schema,\n\
    \x20   payload_schema_ref = EXCLUDED.payload_schema_ref";

/// Follows a local `$ref`.
fn deref<'a>(root: &'a Value, node: &'a Value) -> &'a Value {
    match node.get("$ref").and_then(Value::as_str) {
        Some(reference) => root
            .pointer(reference.trim_start_matches('#'))
            .unwrap_or(node),
        None => node,
    }
}

/// A short human description of a schema node's type.
fn describe(root: &Value, node: &Value) -> String {
    if let Some(branches) = node.get("anyOf").and_then(Value::as_array) {
        let parts: Vec<String> = branches
            .iter()
            .filter(|b| b.get("type") != Some(&Value::from("null")))
            .map(|b| describe(root, b))
            .collect();
        return parts.join(" or ");
    }
    let resolved = deref(root, node);
    if let Some(values) = resolved.get("enum").and_then(Value::as_array) {
        let names: Vec<&str> = values.iter().filter_map(Value::as_str).collect();
        return format!("`{}`", names.join("` \\| `"));
    }
    if let Some(branches) = resolved.get("oneOf").and_then(Value::as_array) {
        let names: Vec<String> = branches
            .iter()
            .filter_map(|b| {
                b.get("const")
                    .and_then(Value::as_str)
                    .map(|c| format!("`{c}`"))
            })
            .collect();
        if !names.is_empty() {
            return names.join(" \\| ");
        }
    }
    let types: Vec<&str> = match resolved.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(list)) => list
            .iter()
            .filter_map(Value::as_str)
            .filter(|t| *t != "null")
            .collect(),
        _ => Vec::new(),
    };
    match (
        types.first().copied(),
        resolved.get("format").and_then(Value::as_str),
    ) {
        (Some("string"), Some("uuid")) => "uuid".to_owned(),
        (Some("string"), Some("date-time")) => "timestamp (RFC 3339 UTC)".to_owned(),
        (Some("string"), Some("date")) => "date".to_owned(),
        (Some("string"), _)
            if resolved.get("pattern").and_then(Value::as_str) == Some("^[A-Z]{3}$") =>
        {
            "currency (ISO 4217)".to_owned()
        }
        (Some("integer"), _) => "integer".to_owned(),
        (Some("array"), _) => {
            let items = resolved
                .get("items")
                .map(|i| describe(root, i))
                .unwrap_or_default();
            format!("array of {items}")
        }
        (Some("object"), _) if resolved.get("properties").is_some() => {
            let keys: Vec<String> = resolved
                .get("properties")
                .and_then(Value::as_object)
                .map(|p| {
                    let required = required_of(resolved);
                    p.keys()
                        .map(|k| {
                            if required.contains(k) {
                                k.clone()
                            } else {
                                format!("{k}?")
                            }
                        })
                        .collect()
                })
                .unwrap_or_default();
            format!("object {{{}}}", keys.join(", "))
        }
        (Some("object"), _)
            if resolved
                .get("additionalProperties")
                .is_some_and(Value::is_object) =>
        {
            "object (field → {previous, new})".to_owned()
        }
        (Some(t), _) => t.to_owned(),
        (None, _) => "any JSON".to_owned(),
    }
}

fn required_of(node: &Value) -> Vec<String> {
    node.get("required")
        .and_then(Value::as_array)
        .map(|r| {
            r.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// The catalog page: events grouped by category, each with its fields, types and optionality.
pub fn markdown(registry: &Registry) -> String {
    let mut out = String::new();
    out.push_str("# Workflow Event Catalog v2\n\n");
    out.push_str("<!-- Generated by `outbox-relay catalog export --format markdown`; a test fails when it is stale. -->\n\n");
    let _ = writeln!(
        out,
        "{} events. Every payload is JSON with camelCase fields; optional fields are omitted when absent. \
         Money amounts are integers in minor units (cents) beside an ISO 4217 `currency`.\n",
        registry.len()
    );
    for category in Category::ALL {
        let entries: Vec<_> = registry
            .entries()
            .iter()
            .filter(|e| e.category == category)
            .collect();
        if entries.is_empty() {
            continue;
        }
        let _ = writeln!(out, "## {} ({})\n", category.name(), entries.len());
        for entry in entries {
            let _ = writeln!(out, "### `{}` — {}\n", entry.event_type, entry.name);
            let _ = writeln!(out, "{}\n", entry.description);
            let _ = writeln!(
                out,
                "Schema ref `{}` · routing key `{}`\n",
                entry.schema_ref,
                entry.routing_key()
            );
            out.push_str("| field | type | required |\n| --- | --- | --- |\n");
            let required = required_of(&entry.schema);
            if let Some(properties) = entry.schema.get("properties").and_then(Value::as_object) {
                for (name, node) in properties {
                    let _ = writeln!(
                        out,
                        "| `{name}` | {} | {} |",
                        describe(&entry.schema, node),
                        if required.contains(name) { "yes" } else { "no" }
                    );
                }
            }
            out.push('\n');
        }
    }
    out
}
