//! The registry matches the Workflow Event Catalog v2 document field by field.
//!
//! The document is vendored at `docs/spec/event-catalog-v2.md`; the twelve pre-existing
//! events' shapes come from the design contract and are listed here.

#![allow(clippy::expect_used, clippy::unwrap_used)] // tests fail loudly by design

use std::collections::BTreeMap;

use catalog_types::registry;
use serde_json::Value;

const SPEC: &str = include_str!("../../docs/spec/event-catalog-v2.md");

/// Shapes of the pre-existing events as the design contract lists them (`tenantId` is added to all).
const EXISTING: [(&str, &str); 12] = [
    (
        "TICKET_CREATED",
        "ticketId, createdByUserId?, createdAt?, updatedFields?, changes?",
    ),
    (
        "TICKET_UPDATED",
        "ticketId, updatedByUserId?, updatedFields?, changes?",
    ),
    (
        "TICKET_CLOSED",
        "ticketId, closedByUserId?, closedAt?, reason?",
    ),
    (
        "TICKET_RESPONSE_STATE_CHANGED",
        "ticketId, previousResponseState?, newResponseState?",
    ),
    ("PROJECT_CREATED", "projectId, createdByUserId?, createdAt?"),
    (
        "INVOICE_GENERATED",
        "invoiceId, clientId?, userId?, totalAmount?, status?, invoiceNumber?",
    ),
    (
        "INVOICE_FINALIZED",
        "invoiceId, clientId?, userId?, totalAmount?, status?, invoiceNumber?",
    ),
    ("COMPANY_CREATED", "companyId, companyName, createdByUserId"),
    (
        "COMPANY_UPDATED",
        "companyId, updatedFields, updatedByUserId",
    ),
    (
        "EMAIL_PROVIDER_CONNECTED",
        "providerId, providerType(microsoft|google), providerName, mailbox, connectedAt",
    ),
    (
        "EMAIL_PROVIDER_DISCONNECTED",
        "providerId, providerType, providerName, disconnectedAt, reason?",
    ),
    (
        "INBOUND_EMAIL_RECEIVED",
        "providerId, emailData{id, threadId?, from{email,name?}, to[], cc[]?, subject, body{text?,html?}, inReplyTo?, references[]?, attachments[]?, receivedAt?}",
    ),
];

/// One field as the catalog writes it.
#[derive(Debug)]
struct SpecField {
    name: String,
    optional: bool,
    enum_values: Option<Vec<String>>,
    array: bool,
    /// Fields of a nested object (of the array items, for `x[{..}]`).
    nested: Option<Vec<SpecField>>,
}

/// One event line of the catalog.
#[derive(Debug)]
struct SpecEvent {
    event_type: String,
    name: String,
    description: String,
    fields: Vec<SpecField>,
}

/// Splits on commas that are not inside brackets.
fn split_top_level(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(text[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(text[start..].trim());
    parts.into_iter().filter(|p| !p.is_empty()).collect()
}

/// The text between the bracket at `open` and its match.
fn bracketed(text: &str, open: usize) -> (&str, usize) {
    let mut depth = 0usize;
    for (i, c) in text[open..].char_indices() {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => {
                depth -= 1;
                if depth == 0 {
                    return (&text[open + 1..open + i], open + i + 1);
                }
            }
            _ => {}
        }
    }
    panic!("unbalanced brackets in `{text}`");
}

fn parse_field(token: &str) -> SpecField {
    let name_end = token
        .find(|c: char| !c.is_ascii_alphanumeric())
        .unwrap_or(token.len());
    let name = token[..name_end].to_owned();
    let mut rest = &token[name_end..];
    // `clientId/companyId`: the first name is the field, the second an accepted alias.
    if let Some(stripped) = rest.strip_prefix('/') {
        let alias_end = stripped
            .find(|c: char| !c.is_ascii_alphanumeric())
            .unwrap_or(stripped.len());
        rest = &stripped[alias_end..];
    }
    let mut field = SpecField {
        name,
        optional: false,
        enum_values: None,
        array: false,
        nested: None,
    };
    loop {
        if rest.starts_with('(') {
            let (inner, next) = bracketed(rest, 0);
            field.enum_values = Some(inner.split('|').map(|v| v.trim().to_owned()).collect());
            rest = &rest[next..];
        } else if rest.starts_with('[') {
            let (inner, next) = bracketed(rest, 0);
            field.array = true;
            let inner = inner.trim();
            if inner.starts_with('{') {
                let (object, _) = bracketed(inner, 0);
                field.nested = Some(
                    split_top_level(object)
                        .into_iter()
                        .map(parse_field)
                        .collect(),
                );
            }
            rest = &rest[next..];
        } else if rest.starts_with('{') {
            let (inner, next) = bracketed(rest, 0);
            field.nested = Some(
                split_top_level(inner)
                    .into_iter()
                    .map(parse_field)
                    .collect(),
            );
            rest = &rest[next..];
        } else if rest.starts_with('?') {
            field.optional = true;
            rest = &rest[1..];
        } else {
            assert!(
                rest.trim().is_empty(),
                "unparsed field text `{rest}` in `{token}`"
            );
            return field;
        }
    }
}

fn parse_spec() -> Vec<SpecEvent> {
    let mut events = Vec::new();
    for line in SPEC.lines() {
        let Some(line) = line.strip_prefix("- `") else {
            continue;
        };
        let Some((event_type, rest)) = line.split_once("` — **") else {
            continue;
        };
        let (name, rest) = rest.split_once("**: ").expect("name ends with **:");
        let (description, fields) = rest.split_once(" *(").expect("fields start with *(");
        let fields = fields.strip_suffix(")*").expect("fields end with )*");
        events.push(SpecEvent {
            event_type: event_type.to_owned(),
            name: name.to_owned(),
            description: description.to_owned(),
            fields: split_top_level(fields)
                .into_iter()
                .map(parse_field)
                .collect(),
        });
    }
    events
}

/// Follows `$ref` and strips the `null` branch of optional values.
fn resolve<'a>(root: &'a Value, mut node: &'a Value) -> &'a Value {
    loop {
        if let Some(reference) = node.get("$ref").and_then(Value::as_str) {
            let pointer = reference.trim_start_matches('#');
            node = root
                .pointer(pointer)
                .unwrap_or_else(|| panic!("dangling {reference}"));
        } else if let Some(branches) = node
            .get("anyOf")
            .or(node.get("oneOf"))
            .and_then(Value::as_array)
        {
            let non_null: Vec<&Value> = branches
                .iter()
                .filter(|b| b.get("type") != Some(&Value::from("null")))
                .collect();
            if non_null.len() == 1 {
                node = non_null[0];
            } else {
                return node;
            }
        } else {
            return node;
        }
    }
}

fn has_type(node: &Value, wanted: &str) -> bool {
    match node.get("type") {
        Some(Value::String(t)) => t == wanted,
        Some(Value::Array(types)) => types.iter().any(|t| t == wanted),
        _ => false,
    }
}

/// Compares the fields of one object schema with the catalog's list; returns the problems.
fn compare(
    root: &Value,
    object: &Value,
    fields: &[SpecField],
    path: &str,
    problems: &mut Vec<String>,
) {
    let object = resolve(root, object);
    let properties: BTreeMap<String, Value> = object
        .get("properties")
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    let required: Vec<&str> = object
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let listed: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
    for extra in properties.keys().filter(|k| !listed.contains(&k.as_str())) {
        problems.push(format!(
            "{path}: schema has `{extra}` which the catalog does not list"
        ));
    }
    for field in fields {
        let here = format!("{path}/{}", field.name);
        let Some(schema) = properties.get(&field.name) else {
            problems.push(format!("{here}: missing from the schema"));
            continue;
        };
        let is_required = required.contains(&field.name.as_str());
        if is_required == field.optional {
            problems.push(format!(
                "{here}: catalog says {}, schema says {}",
                if field.optional {
                    "optional"
                } else {
                    "required"
                },
                if is_required { "required" } else { "optional" }
            ));
        }
        let mut schema = resolve(root, schema);
        if field.array {
            if !has_type(schema, "array") {
                problems.push(format!("{here}: should be an array"));
                continue;
            }
            schema = resolve(root, schema.get("items").unwrap_or(&Value::Null));
        }
        if let Some(values) = &field.enum_values {
            let actual: Vec<String> = enum_values(root, schema);
            let mut expected = values.clone();
            expected.sort();
            if actual != expected {
                problems.push(format!("{here}: enum {actual:?}, catalog {expected:?}"));
            }
        }
        if let Some(nested) = &field.nested {
            compare(root, schema, nested, &here, problems);
        }
    }
}

/// The sorted string values an enum schema allows.
fn enum_values(root: &Value, schema: &Value) -> Vec<String> {
    let schema = resolve(root, schema);
    let mut values: Vec<String> = Vec::new();
    if let Some(list) = schema.get("enum").and_then(Value::as_array) {
        values.extend(list.iter().filter_map(Value::as_str).map(str::to_owned));
    }
    for key in ["oneOf", "anyOf"] {
        for branch in schema
            .get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let branch = resolve(root, branch);
            if let Some(c) = branch.get("const").and_then(Value::as_str) {
                values.push(c.to_owned());
            }
            if let Some(list) = branch.get("enum").and_then(Value::as_array) {
                values.extend(list.iter().filter_map(Value::as_str).map(str::to_owned));
            }
        }
    }
    values.sort();
    values
}

fn tenant_field() -> SpecField {
    parse_field("tenantId")
}

#[test]
fn the_catalog_document_lists_122_proposed_events() {
    assert_eq!(parse_spec().len(), 122);
}

#[test]
fn every_proposed_event_matches_the_catalog_document() {
    let registry = registry();
    let mut problems = Vec::new();
    for event in parse_spec() {
        let Some(entry) = registry.by_event_type(&event.event_type) else {
            problems.push(format!("{}: not in the registry", event.event_type));
            continue;
        };
        if entry.name != event.name {
            problems.push(format!(
                "{}: name `{}`, catalog `{}`",
                event.event_type, entry.name, event.name
            ));
        }
        if entry.description != event.description {
            problems.push(format!(
                "{}: description `{}`, catalog `{}`",
                event.event_type, entry.description, event.description
            ));
        }
        compare(
            &entry.schema,
            &entry.schema,
            &event.fields,
            &event.event_type,
            &mut problems,
        );
    }
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn every_existing_event_matches_the_design_contract() {
    let registry = registry();
    let mut problems = Vec::new();
    for (event_type, fields) in EXISTING {
        let Some(entry) = registry.by_event_type(event_type) else {
            problems.push(format!("{event_type}: not in the registry"));
            continue;
        };
        let mut fields: Vec<SpecField> = split_top_level(fields)
            .into_iter()
            .map(parse_field)
            .collect();
        fields.insert(0, tenant_field());
        compare(
            &entry.schema,
            &entry.schema,
            &fields,
            event_type,
            &mut problems,
        );
    }
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn the_registry_holds_exactly_the_134_catalog_events() {
    let registry = registry();
    let mut expected: Vec<String> = parse_spec().into_iter().map(|e| e.event_type).collect();
    expected.extend(EXISTING.iter().map(|(t, _)| (*t).to_owned()));
    expected.sort();
    let mut actual: Vec<String> = registry
        .entries()
        .iter()
        .map(|e| e.event_type.to_owned())
        .collect();
    actual.sort();
    assert_eq!(actual, expected);
    assert_eq!(registry.len(), 134);
}

#[test]
fn every_proposed_event_has_a_tenant_id() {
    for event in parse_spec() {
        assert!(
            event
                .fields
                .iter()
                .any(|f| f.name == "tenantId" && !f.optional),
            "{} lacks tenantId",
            event.event_type
        );
    }
}

#[test]
fn the_vendored_catalog_matches_the_shared_spec_when_present() {
    // The spec lives beside the repository in the project's shared folder; when it is
    // there, the vendored copy must not have drifted from it.
    let shared = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/spec/event-catalog-v2.md"
    );
    if let Ok(text) = std::fs::read_to_string(shared) {
        assert_eq!(
            text, SPEC,
            "docs/spec/event-catalog-v2.md is stale: copy the shared spec"
        );
    }
}
