//! The producer's validator never drifts from JSON Schema: for every catalog event, on
//! valid and broken payloads, it accepts exactly what a full JSON Schema implementation
//! (`jsonschema`, Draft 2020-12, formats checked) and the payload's Rust type both accept;
//! alone, it never accepts what the schema refuses. The same holds for schemas a service
//! may derive, keyword by keyword, and for the patterns the validator compiles.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use proptest::prelude::*;
use proptest::sample::{Index, select};
use serde_json::{Value, json};

use super::CatalogEntry;
use crate::registry;
use crate::validator::Validator;

fn full_validator(schema: &Value) -> jsonschema::Validator {
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .build(schema)
        .expect("the schema compiles for jsonschema")
}

/// Strings near the formats and patterns the catalog uses: each one valid or off by a
/// little, so both sides of every check are reached.
fn tricky_text() -> impl Strategy<Value = String> {
    let fixed = select(vec![
        "0190a5b2-7c3d-7e4f-8a1b-2c3d4e5f6a7b",
        "0190A5B2-7C3D-7E4F-8A1B-2C3D4E5F6A7B",
        "0190a5b27c3d7e4f8a1b2c3d4e5f6a7b",
        "{0190a5b2-7c3d-7e4f-8a1b-2c3d4e5f6a7b}",
        "urn:uuid:0190a5b2-7c3d-7e4f-8a1b-2c3d4e5f6a7b",
        "0190a5b2-7c3d-7e4f-8a1b-2c3d4e5f6a7g",
        "0190a5b2_7c3d-7e4f-8a1b-2c3d4e5f6a7b",
        "2026-01-15T09:30:00Z",
        "2026-01-15t09:30:00z",
        "2026-01-15T09:30:00.123456789+02:00",
        "2026-01-15T09:30:00",
        "2026-01-15 09:30:00Z",
        "2026-01-15T09:30:00+0200",
        "2026-12-31T23:59:60Z",
        "2026-12-31T22:59:60Z",
        "2026-02-30T09:30:00Z",
        "2026-01-15T24:00:00Z",
        "2026-01-15",
        "2024-02-29",
        "2026-02-29",
        "2026-1-15",
        "USD",
        "usd",
        "US",
        "EURO",
        "",
        "email",
        "portal",
        "public",
        "internal",
        "user",
        "team",
        "hard",
        "Email",
    ])
    .prop_map(str::to_owned);
    prop_oneof![3 => fixed, 1 => ".{0,12}"]
}

/// Numbers at the edges of the integer widths and bounds the schemas hold.
fn tricky_number() -> impl Strategy<Value = Value> {
    prop_oneof![
        select(vec![
            json!(0),
            json!(1),
            json!(-1),
            json!(65535),
            json!(65536),
            json!(u32::MAX),
            json!(u64::from(u32::MAX) + 1),
            json!(i64::MAX),
            json!(i64::MIN),
            json!(u64::MAX),
            json!(1.0),
            json!(1.5),
            json!(-0.5),
            json!(1e300),
        ]),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON numbers are finite", |f| f.is_finite())
            .prop_map(Value::from),
    ]
}

/// Any JSON value, with the strings and numbers above among its leaves.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        tricky_number(),
        tricky_text().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(tricky_text(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// The JSON Pointers of every value inside `value` (the root excepted).
fn pointers(value: &Value, path: String, out: &mut Vec<String>) {
    let children: Vec<(String, &Value)> = match value {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| (i.to_string(), item))
            .collect(),
        Value::Object(fields) => fields
            .iter()
            .map(|(k, v)| (k.replace('~', "~0").replace('/', "~1"), v))
            .collect(),
        _ => Vec::new(),
    };
    for (token, child) in children {
        let here = format!("{path}/{token}");
        out.push(here.clone());
        pointers(child, here, out);
    }
}

/// A catalog example broken (or not) in one place: a value replaced by another of any
/// kind, by a tricky string or number, removed, set to null, or an unknown field added.
fn mutated_example() -> impl Strategy<Value = (usize, Value)> {
    let entries = registry().entries().len();
    (
        0..entries,
        any::<Index>(),
        json_value(),
        0..5u8,
        tricky_text(),
    )
        .prop_map(|(entry, at, replacement, how, text)| {
            let mut payload = registry().entries()[entry].example();
            let mut paths = Vec::new();
            pointers(&payload, String::new(), &mut paths);
            let path = paths[at.index(paths.len())].clone();
            match how {
                0 => {
                    if let Some(slot) = payload.pointer_mut(&path) {
                        *slot = replacement;
                    }
                }
                1 => {
                    if let Some(slot) = payload.pointer_mut(&path) {
                        *slot = Value::String(text);
                    }
                }
                2 => {
                    if let Some(slot) = payload.pointer_mut(&path) {
                        *slot = Value::Null;
                    }
                }
                3 => {
                    if let Some((parent, last)) = path.rsplit_once('/')
                        && let Some(Value::Object(fields)) = payload.pointer_mut(parent)
                    {
                        fields.remove(&last.replace("~1", "/").replace("~0", "~"));
                    }
                }
                _ => {
                    if let Some((parent, _)) = path.rsplit_once('/')
                        && let Some(Value::Object(fields)) = payload.pointer_mut(parent)
                    {
                        fields.insert(text, replacement);
                    }
                }
            }
            (entry, payload)
        })
}

/// The three verdicts on one payload: the producer's schema checks, the full JSON Schema
/// implementation's, and the Rust type's.
fn verdicts(entry: &CatalogEntry, full: &jsonschema::Validator, payload: &Value) -> [bool; 3] {
    let payload = entry.resolve_aliases(payload.clone());
    [
        entry.validator.problems(&payload).is_empty(),
        full.is_valid(&payload),
        (entry.check_typed)(payload.clone()).is_ok(),
    ]
}

fn agree(
    entry: &CatalogEntry,
    full: &jsonschema::Validator,
    payload: &Value,
) -> Result<(), String> {
    let [lean, schema, typed] = verdicts(entry, full, payload);
    let context = || format!("{} payload {payload}", entry.event_type);
    if lean && !schema {
        return Err(format!(
            "the producer's validator accepts what the schema refuses: {}\n{:?}",
            context(),
            full.iter_errors(payload)
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
        ));
    }
    if schema && typed && !lean {
        return Err(format!(
            "the producer's validator refuses what the schema and the type accept: {}\n{:?}",
            context(),
            entry.validator.problems(payload)
        ));
    }
    let accepted = entry.validate(payload.clone()).is_ok();
    if accepted != (schema && typed) {
        return Err(format!("validate says {accepted}: {}", context()));
    }
    Ok(())
}

fn full_validators() -> &'static [jsonschema::Validator] {
    static FULL: std::sync::OnceLock<Vec<jsonschema::Validator>> = std::sync::OnceLock::new();
    FULL.get_or_init(|| {
        registry()
            .entries()
            .iter()
            .map(|e| full_validator(&e.schema))
            .collect()
    })
}

#[test]
fn every_example_is_valid_to_both_validators() {
    for (entry, full) in registry().entries().iter().zip(full_validators()) {
        let example = entry.example();
        assert_eq!(
            verdicts(entry, full, &example),
            [true; 3],
            "{}",
            entry.event_type
        );
    }
}

/// Schemas a service's Rust types may derive, keyword by keyword, with the keywords the
/// validator checks beyond them. (Not the integer widths, `uint32` and the like: JSON
/// Schema leaves them unchecked and the validator checks them, as the Rust type would.)
fn service_schemas() -> Vec<Value> {
    vec![
        json!({"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"], "additionalProperties": false}),
        json!({"type": ["string", "null"], "format": "uuid"}),
        json!({"type": "string", "format": "date-time"}),
        json!({"type": "string", "format": "date"}),
        json!({"type": "string", "format": "time"}),
        json!({"type": "integer", "minimum": 0, "maximum": 65535}),
        json!({"type": "number", "format": "double"}),
        json!({"type": "number", "exclusiveMinimum": 0, "maximum": 100}),
        json!({"type": "string", "minLength": 2, "maxLength": 4}),
        json!({"type": "string", "pattern": "^[A-Z]{3}$"}),
        json!({"type": "string", "pattern": "[0-9]"}),
        json!({"enum": ["email", "portal", 1, null]}),
        json!({"const": 1}),
        json!({"oneOf": [{"type": "string", "const": "user"}, {"type": "string", "const": "team"}]}),
        json!({"anyOf": [{"$ref": "#/$defs/Inner"}, {"type": "null"}], "$defs": {"Inner": {"type": "object", "properties": {"id": {"type": "string", "format": "uuid"}}, "required": ["id"]}}}),
        json!({"oneOf": [{"type": "integer"}, {"type": "number", "minimum": 1}]}),
        json!({"allOf": [{"type": "string"}, {"minLength": 3}]}),
        json!({"not": {"type": "string"}}),
        json!({"type": "array", "items": {"type": "string", "format": "uuid"}, "uniqueItems": true, "minItems": 1, "maxItems": 3}),
        json!({"type": ["object", "null"], "additionalProperties": {"type": "integer", "minimum": 0}, "minProperties": 1, "maxProperties": 2}),
        json!({"type": "object", "properties": {"n": {"type": "boolean"}}, "additionalProperties": true}),
        json!(true),
        json!(false),
    ]
}

#[test]
fn integer_widths_are_checked_where_json_schema_leaves_them() {
    let schema = json!({"type": "integer", "format": "uint32", "minimum": 0});
    let lean = Validator::new(&schema).expect("compiles");
    let full = full_validator(&schema);
    let over = json!(u64::from(u32::MAX) + 1);
    assert!(full.is_valid(&over));
    assert_eq!(
        lean.problems(&over),
        ["/: 4294967296 is not an integer from 0 to 4294967295"]
    );
    assert!(lean.problems(&json!(u32::MAX)).is_empty());
}

#[test]
fn schemas_outside_what_the_validator_checks_are_refused() {
    for schema in [
        json!({"type": "string", "format": "email"}),
        json!({"type": "string", "pattern": "^(a|b)$"}),
        json!({"type": "object", "patternProperties": {"^x": {}}}),
        json!({"type": "number", "multipleOf": 2}),
        json!({"$ref": "https://example.com/schema"}),
        json!({"$ref": "#/$defs/Missing"}),
        json!({"type": "strings"}),
    ] {
        let refused = Validator::new(&schema);
        assert!(refused.is_err(), "{schema}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn on_broken_catalog_payloads_the_validators_agree((entry, payload) in mutated_example()) {
        let full = &full_validators()[entry];
        agree(&registry().entries()[entry], full, &payload).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn on_any_json_against_any_catalog_schema_the_validators_agree(
        entry in 0..registry().entries().len(),
        payload in json_value(),
    ) {
        let full = &full_validators()[entry];
        agree(&registry().entries()[entry], full, &payload).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn on_service_schemas_the_validators_agree_exactly(
        schema in select(service_schemas()),
        value in json_value(),
    ) {
        let lean = Validator::new(&schema).map_err(TestCaseError::fail)?;
        let full = full_validator(&schema);
        prop_assert_eq!(
            lean.problems(&value).is_empty(),
            full.is_valid(&value),
            "schema {} value {} problems {:?}", schema, value, lean.problems(&value)
        );
    }

    #[test]
    fn on_patterns_the_validators_agree_exactly(
        pattern in select(vec![
            "^[A-Z]{3}$", "[0-9]", "^\\d{2,4}-[a-z_-]+$", "^v\\.?\\d*$", "^[^ ]+$", "ab$",
            "^a{2,}b?$", "x*y+", "^.$", "^[\\w.-]+$", "\\D",
        ]),
        text in prop_oneof!["[A-Za-z0-9 ._-]{0,7}", "[abvxy0-9.\\-]{0,6}", ".{0,4}", Just("\n".to_owned())],
    ) {
        let schema = json!({"type": "string", "pattern": pattern});
        let lean = Validator::new(&schema).map_err(TestCaseError::fail)?;
        let full = full_validator(&schema);
        let value = Value::from(text);
        prop_assert_eq!(lean.problems(&value).is_empty(), full.is_valid(&value), "{} {}", pattern, value);
    }
}
