//! Properties of validation and name look-ups under arbitrary input: no panic; a refusal
//! names the field path; what is accepted is canonical (validating it again changes
//! nothing); look-ups ignore case and suggest the event type a typo was meant to be.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use catalog_types::{ValidationError, registry};
#[cfg(feature = "tooling")]
use catalog_types::{closest, lookup_category};
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::Value;

/// Text of every kind: short Unicode, control characters and NUL, long runs, near-UUIDs,
/// timestamps and numbers written as strings.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,20}",
        "[\\x00-\\x1f\\x7f]{1,6}",
        "\\PC{200,300}",
        Just(String::new()),
        Just("00000000-0000-0000-0000-00000000000g".to_owned()),
        Just("2026-02-30T25:61:00Z".to_owned()),
        Just("2026-01-15T09:30:00+02:00".to_owned()),
        Just("USD".to_owned()),
        Just("-1".to_owned()),
    ]
}

/// Any JSON value, a few levels deep, numbers at their extremes.
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON numbers are finite", |f| f.is_finite())
            .prop_map(Value::from),
        text().prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 40, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::from),
            prop::collection::btree_map(text(), inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Paths of every leaf of a JSON value (JSON Pointers).
fn leaves(value: &Value, path: String, out: &mut Vec<String>) {
    match value {
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                leaves(item, format!("{path}/{i}"), out);
            }
        }
        Value::Object(fields) => {
            for (k, item) in fields {
                let token = k.replace('~', "~0").replace('/', "~1");
                leaves(item, format!("{path}/{token}"), out);
            }
            if fields.is_empty() {
                out.push(path);
            }
        }
        _ => out.push(path),
    }
}

/// A catalog example with one leaf replaced, one field removed, or one unknown field added:
/// near-valid payloads, so validation's accepting branch is exercised as much as its
/// refusing one.
fn near_example() -> impl Strategy<Value = (&'static str, Value)> {
    let entries = registry().entries().len();
    (0..entries, any::<Index>(), json(), 0..4u8, text()).prop_map(
        |(entry, leaf, replacement, how, key)| {
            let entry = &registry().entries()[entry];
            let mut payload = entry.example();
            let mut paths = Vec::new();
            leaves(&payload, String::new(), &mut paths);
            let path = paths[leaf.index(paths.len())].clone();
            match how {
                0 => {
                    if let Some(slot) = payload.pointer_mut(&path) {
                        *slot = replacement;
                    }
                }
                1 => {
                    // Same kind of value, other text: free-text fields stay valid.
                    if let Some(slot) = payload.pointer_mut(&path)
                        && slot.is_string()
                    {
                        *slot = Value::String(key);
                    }
                }
                2 => {
                    if let Some((parent, last)) = path.rsplit_once('/')
                        && let Some(Value::Object(fields)) = payload.pointer_mut(parent)
                    {
                        fields.remove(&last.replace("~1", "/").replace("~0", "~"));
                    }
                }
                _ => {
                    if let Value::Object(fields) = &mut payload {
                        fields.insert(key, replacement);
                    }
                }
            }
            (entry.event_type, payload)
        },
    )
}

/// The checks every outcome of a validation must pass.
fn check_outcome(
    event_type: &str,
    result: Result<catalog_types::ValidPayload, ValidationError>,
) -> Result<bool, TestCaseError> {
    match result {
        Ok(valid) => {
            prop_assert!(valid.payload.is_object());
            // Canonical: validating the stored form again gives the same form.
            let again = registry()
                .validate(event_type, valid.payload.clone())
                .map_err(|e| TestCaseError::fail(format!("canonical payload refused: {e}")))?;
            prop_assert_eq!(again, valid);
            Ok(true)
        }
        Err(ValidationError::InvalidPayload {
            event_type: named,
            problems,
        }) => {
            prop_assert_eq!(named, event_type);
            prop_assert!(!problems.is_empty());
            for problem in &problems {
                prop_assert!(problem.starts_with('/'), "no field path: {problem}");
            }
            Ok(false)
        }
        Err(other) => Err(TestCaseError::fail(format!("unexpected refusal: {other}"))),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn any_json_against_any_schema_is_refused_by_path_or_accepted_canonically(
        entry in 0..registry().entries().len(),
        payload in json(),
    ) {
        let event_type = registry().entries()[entry].event_type;
        check_outcome(event_type, registry().validate(event_type, payload))?;
    }

    #[test]
    fn near_valid_payloads_are_refused_by_path_or_accepted_canonically(
        (event_type, payload) in near_example(),
    ) {
        check_outcome(event_type, registry().validate(event_type, payload))?;
    }

    #[cfg(feature = "tooling")] // the look-ups are tooling
    #[test]
    fn any_name_looks_up_without_a_panic(name in prop_oneof![text(), "[A-Za-z_.]{0,40}"]) {
        if let Ok(entry) = registry().lookup_event_type(&name) {
            prop_assert!(entry.event_type.eq_ignore_ascii_case(&name));
        }
        if let Ok(entry) = registry().lookup(&name) {
            prop_assert!(
                entry.event_type.eq_ignore_ascii_case(&name)
                    || entry.schema_ref.eq_ignore_ascii_case(&name)
            );
        }
        let _ = lookup_category(&name);
        let _ = closest(&name, ["a", "", "ß", "İ"]);
    }

    #[cfg(feature = "tooling")] // the look-ups are tooling
    #[test]
    fn any_case_of_an_event_type_resolves_to_it(
        entry in 0..registry().entries().len(),
        upper in prop::collection::vec(any::<bool>(), 64),
    ) {
        let event_type = registry().entries()[entry].event_type;
        let typed: String = event_type
            .chars()
            .zip(upper.iter().cycle())
            .map(|(c, up)| if *up { c.to_ascii_uppercase() } else { c.to_ascii_lowercase() })
            .collect();
        let found = registry().lookup_event_type(&typed).map(|e| e.event_type);
        prop_assert_eq!(found, Ok(event_type));
    }

    #[cfg(feature = "tooling")] // the look-ups are tooling
    #[test]
    fn a_one_letter_typo_is_refused_with_a_suggestion_one_edit_away(
        entry in 0..registry().entries().len(),
        at in any::<Index>(),
        letter in "[A-Z]",
        how in 0..3u8,
    ) {
        let event_type = registry().entries()[entry].event_type;
        let mut chars: Vec<char> = event_type.chars().collect();
        let i = at.index(chars.len());
        let letter = letter.chars().next().unwrap();
        match how {
            0 => chars[i] = letter,
            1 => { chars.remove(i); }
            _ => chars.insert(i, letter),
        }
        let typo: String = chars.into_iter().collect();
        match registry().lookup_event_type(&typo) {
            Ok(found) => prop_assert!(found.event_type.eq_ignore_ascii_case(&typo)),
            Err(unknown) => {
                let suggestion = unknown.suggestion.expect("a one-letter typo gets a suggestion");
                prop_assert!(strsim_distance(&typo, suggestion) <= 1, "{typo} -> {suggestion}");
            }
        }
    }
}

/// The distance the suggestion rule uses (case-insensitive Damerau-Levenshtein).
#[cfg(feature = "tooling")]
fn strsim_distance(a: &str, b: &str) -> usize {
    strsim::damerau_levenshtein(&a.to_lowercase(), &b.to_lowercase())
}

#[cfg(feature = "tooling")]
#[test]
fn documented_lookups() {
    let r = registry();
    assert_eq!(
        r.lookup_event_type("ticket_created").map(|e| e.event_type),
        Ok("TICKET_CREATED")
    );
    let unknown = r.lookup_event_type("TICKET_CRATED").unwrap_err();
    assert_eq!(unknown.suggestion, Some("TICKET_CREATED"));
    assert_eq!(unknown.hint(), " (did you mean TICKET_CREATED?)");
    assert_eq!(
        r.lookup_event_type("DROP TABLE").unwrap_err().suggestion,
        None
    );
    assert_eq!(
        r.lookup("PAYLOAD.TICKETCREATED.V1").map(|e| e.event_type),
        Ok("TICKET_CREATED")
    );
    assert_eq!(
        r.lookup("payload.TicketCrated.v1").unwrap_err().suggestion,
        Some("payload.TicketCreated.v1")
    );
    assert_eq!(
        lookup_category("email processing").map(|c| c.name()),
        Ok("Email Processing")
    );
    assert_eq!(
        lookup_category("Biling").unwrap_err().suggestion,
        Some("Billing")
    );
    assert_eq!(
        lookup_category("emial_processing").unwrap_err().suggestion,
        Some("Email Processing")
    );
    assert_eq!(lookup_category("x").unwrap_err().suggestion, None);
}
