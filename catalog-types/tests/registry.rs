//! Properties every catalog entry must have: examples round-trip and validate, refs and
//! types are unique and well formed, and bad payloads are refused with the field path.

#![allow(clippy::expect_used, clippy::unwrap_used)] // tests fail loudly by design

use std::collections::HashSet;

use catalog_types::{Category, ValidationError, registry};
use serde_json::{Value, json};

fn pascal_case(event_type: &str) -> String {
    event_type
        .split('_')
        .map(|word| {
            let lower = word.to_ascii_lowercase();
            let mut chars = lower.chars();
            match chars.next() {
                Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
                None => String::new(),
            }
        })
        .collect()
}

#[test]
fn event_types_and_schema_refs_are_unique_and_well_formed() {
    let registry = registry();
    let mut types = HashSet::new();
    let mut refs = HashSet::new();
    for entry in registry.entries() {
        assert!(
            types.insert(entry.event_type),
            "duplicate {}",
            entry.event_type
        );
        assert!(
            refs.insert(entry.schema_ref),
            "duplicate {}",
            entry.schema_ref
        );
        assert!(
            entry
                .event_type
                .chars()
                .all(|c| c.is_ascii_uppercase() || c == '_'),
            "{} is not SCREAMING_SNAKE_CASE",
            entry.event_type
        );
        assert_eq!(
            entry.schema_ref,
            format!("payload.{}.v1", pascal_case(entry.event_type)),
            "schema ref of {}",
            entry.event_type
        );
        assert!(!entry.name.is_empty() && !entry.description.is_empty());
        assert_eq!(
            registry
                .by_schema_ref(entry.schema_ref)
                .map(|e| e.event_type),
            Some(entry.event_type)
        );
        assert_eq!(
            registry.find(entry.schema_ref).map(|e| e.event_type),
            Some(entry.event_type)
        );
    }
}

#[test]
fn every_example_round_trips_and_validates_against_its_schema() {
    for entry in registry().entries() {
        let example = entry.example();
        assert!(
            example.is_object(),
            "{} example is not an object",
            entry.event_type
        );
        let valid = entry
            .validate(example.clone())
            .unwrap_or_else(|e| panic!("{} example is invalid: {e}", entry.event_type));
        assert_eq!(
            valid.payload, example,
            "{} does not round-trip",
            entry.event_type
        );
        assert!(
            valid.tenant_id.is_some(),
            "{} has no tenant",
            entry.event_type
        );
        let key = valid.ordering_key.unwrap_or_default();
        assert!(
            key.contains(':') && !key.ends_with(':'),
            "{} ordering key `{key}`",
            entry.event_type
        );
    }
}

#[test]
fn every_schema_declares_draft_2020_12_and_requires_tenant_id() {
    for entry in registry().entries() {
        assert_eq!(
            entry.schema.get("$schema").and_then(Value::as_str),
            Some("https://json-schema.org/draft/2020-12/schema"),
            "{}",
            entry.event_type
        );
        let required = entry
            .schema
            .get("required")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        assert!(
            required.contains(&json!("tenantId")),
            "{} does not require tenantId",
            entry.event_type
        );
    }
}

#[test]
fn a_missing_required_field_is_refused_with_its_name() {
    for entry in registry().entries() {
        let required = entry
            .schema
            .get("required")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for field in required.iter().filter_map(Value::as_str) {
            let mut payload = entry.example();
            payload.as_object_mut().map(|o| o.remove(field));
            let error = entry.validate(payload).expect_err("missing field accepted");
            assert!(
                error.to_string().contains(field),
                "{}: `{error}` does not name {field}",
                entry.event_type
            );
        }
    }
}

#[test]
fn a_wrong_type_is_refused_with_the_field_path() {
    for entry in registry().entries() {
        let mut payload = entry.example();
        payload["tenantId"] = json!(42);
        let error = entry
            .validate(payload)
            .expect_err("number accepted as tenantId");
        assert!(
            error.to_string().contains("/tenantId"),
            "{}: {error}",
            entry.event_type
        );

        let mut payload = entry.example();
        payload["tenantId"] = json!("not-a-uuid");
        let error = entry.validate(payload).expect_err("bad uuid accepted");
        assert!(
            error.to_string().contains("/tenantId"),
            "{}: {error}",
            entry.event_type
        );
    }
}

#[test]
fn an_unknown_field_is_refused() {
    for entry in registry().entries() {
        let mut payload = entry.example();
        payload["tenantIdd"] = json!("typo");
        let error = entry.validate(payload).expect_err("unknown field accepted");
        assert!(
            error.to_string().contains("tenantIdd"),
            "{}: {error}",
            entry.event_type
        );
    }
}

#[test]
fn a_wrong_enum_value_is_refused_with_the_field_path() {
    let mut checked = 0;
    for entry in registry().entries() {
        let example = entry.example();
        let Some(properties) = entry.schema.get("properties").and_then(Value::as_object) else {
            continue;
        };
        for (field, schema) in properties {
            let text = schema.to_string();
            let is_enum = text.contains("\"enum\"")
                || schema
                    .get("$ref")
                    .and_then(Value::as_str)
                    .and_then(|r| entry.schema.pointer(r.trim_start_matches('#')))
                    .is_some_and(|d| d.get("enum").is_some() || d.get("oneOf").is_some());
            if !is_enum || example.get(field).is_none() {
                continue;
            }
            let mut payload = example.clone();
            payload[field] = json!("definitely_not_allowed");
            let error = entry.validate(payload).expect_err("bad enum accepted");
            assert!(
                error.to_string().contains(&format!("/{field}")),
                "{}: {error}",
                entry.event_type
            );
            checked += 1;
        }
    }
    assert!(checked > 0, "no enum field was checked");
}

#[test]
fn unknown_event_types_are_refused() {
    let error = registry()
        .validate("NO_SUCH_EVENT", json!({}))
        .expect_err("unknown accepted");
    assert!(matches!(error, ValidationError::UnknownEventType(_)));
}

#[test]
fn every_category_has_events() {
    for category in Category::ALL {
        assert!(
            registry().entries().iter().any(|e| e.category == category),
            "{category} has no events"
        );
    }
}
