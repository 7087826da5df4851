//! Property: the operator filters take any string without a panic; a refusal names its flag
//! and never echoes a control character (an escape sequence would rewrite the operator's
//! terminal); what is accepted is exactly what the flag names.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use catalog_types::registry;
use chrono::Utc;
use outbox_relay::engine::filter::{FilterError, MAX_VALUE_LEN, parse_time};
use outbox_relay::ops::EventFilter;
use proptest::prelude::*;

/// Strings of every kind: Unicode, control characters (ESC sequences among them), catalog
/// names in any case, near misses, numbers and units, and long runs.
fn text() -> impl Strategy<Value = String> {
    let names: Vec<String> = registry()
        .entries()
        .iter()
        .map(|e| e.event_type.to_owned())
        .collect();
    prop_oneof![
        ".{0,30}",
        "[\\x00-\\x1f\\x7f\\x1b\\[a-z0-9]{1,12}",
        "\\PC{500,520}",
        "-?[0-9]{1,25}(ns|us|ms|s|m|h|d|w|y)?",
        "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(Z|[+-][0-9]{2}:[0-9]{2})",
        prop::sample::select(names.clone()).prop_map(|n| n.to_lowercase()),
        (prop::sample::select(names), any::<prop::sample::Index>()).prop_map(|(n, i)| {
            let mut n = n;
            n.remove(i.index(n.len()));
            n
        }),
        Just("Email Processing".to_owned()),
        Just("email_processing".to_owned()),
    ]
}

/// A refusal's checks: it names `flag`, and its text holds no control character.
fn refused_by(error: &FilterError, flag: &str) -> Result<(), TestCaseError> {
    match error {
        FilterError::Invalid { flag: named, .. } => prop_assert_eq!(*named, flag),
        other => return Err(TestCaseError::fail(format!("not a flag error: {other}"))),
    }
    let text = error.to_string();
    prop_assert!(text.starts_with(flag), "{text}");
    prop_assert!(!text.chars().any(char::is_control), "{text:?}");
    prop_assert!(
        text.chars().count() < 400,
        "the message echoes the whole value"
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn event_types_resolve_in_any_case_or_are_refused_by_flag(value in text()) {
        match EventFilter::default().event_type(&value) {
            Ok(filter) => {
                let stored = filter.event_type.unwrap();
                prop_assert!(stored.eq_ignore_ascii_case(&value));
                prop_assert!(registry().by_event_type(&stored).is_some());
            }
            Err(error) => refused_by(&error, "--event-type")?,
        }
    }

    #[test]
    fn categories_resolve_in_any_case_or_are_refused_by_flag(value in text()) {
        match EventFilter::default().category(&value) {
            Ok(filter) => {
                let stored = filter.category.unwrap();
                prop_assert!(catalog_types::Category::parse(&stored).is_some());
            }
            Err(error) => refused_by(&error, "--category")?,
        }
    }

    #[test]
    fn ordering_keys_are_taken_as_given_or_refused_by_flag(value in text()) {
        let acceptable = value.len() <= MAX_VALUE_LEN && !value.chars().any(char::is_control);
        match EventFilter::default().ordering_key(&value) {
            Ok(filter) => {
                prop_assert!(acceptable);
                prop_assert_eq!(filter.ordering_key, Some(value));
            }
            Err(error) => {
                prop_assert!(!acceptable);
                refused_by(&error, "--ordering-key")?;
            }
        }
    }

    #[test]
    fn times_parse_or_are_refused_by_flag(value in text(), since in any::<bool>()) {
        let flag = if since { "--since" } else { "--until" };
        let now = Utc::now();
        match parse_time(flag, &value, now) {
            Ok(at) => {
                // An age lies in the past; an RFC 3339 time is the one written.
                let rfc3339 = chrono::DateTime::parse_from_rfc3339(&value).is_ok();
                prop_assert!(rfc3339 || at <= now, "{value} -> {at}");
            }
            Err(error) => refused_by(&error, flag)?,
        }
    }
}

#[test]
fn near_misses_are_refused_with_a_suggestion() {
    let filter = EventFilter::default().event_type("ticket_created").unwrap();
    assert_eq!(filter.event_type.as_deref(), Some("TICKET_CREATED"));
    let error = EventFilter::default()
        .event_type("TICKET_CRATED")
        .unwrap_err()
        .to_string();
    assert!(error.contains("did you mean TICKET_CREATED?"), "{error}");
    let error = EventFilter::default()
        .category("Biling")
        .unwrap_err()
        .to_string();
    assert!(error.contains("did you mean Billing?"), "{error}");
    let error = parse_time("--since", "\u{1b}[2J2h", Utc::now())
        .unwrap_err()
        .to_string();
    assert!(error.contains("\\u{1b}[2J2h"), "{error}");
}
