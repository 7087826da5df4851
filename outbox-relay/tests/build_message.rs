//! Property: no stored row, however odd, makes building its AMQP message panic; what AMQP
//! cannot carry is a [`BuildError`], and what it can carry round-trips.

#![allow(clippy::expect_used, clippy::unwrap_used)] // tests fail loudly by design

use chrono::{TimeZone, Utc};
use outbox_relay::broker::message::{self, BuildError};
use outbox_relay::engine::event::ClaimedEvent;
use outbox_relay::foundation::config::SHORT_STRING_MAX;
use proptest::prelude::*;
use uuid::Uuid;

/// Any JSON value, nested a few levels, with keys and strings of any Unicode (control
/// characters included) and lengths around AMQP's 255-byte limit.
fn json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<u64>().prop_map(serde_json::Value::from),
        any::<f64>()
            .prop_filter("JSON numbers are finite", |f| f.is_finite())
            .prop_map(serde_json::Value::from),
        text().prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
            prop::collection::btree_map(text(), inner, 0..6)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Text of any characters, sometimes just past the short-string limit.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,40}",
        "\\PC{250,260}",
        "[\\x00-\\x1f\\x7f]{0,10}",
        (250usize..300).prop_map(|n| "é".repeat(n / 2)),
    ]
}

prop_compose! {
    fn row()(
        event_type in text(),
        schema_ref in text(),
        category in text(),
        ordering_key in proptest::option::of(text()),
        dedupe_key in text(),
        payload in json(),
        headers in prop_oneof![json(), prop::collection::btree_map(text(), json(), 0..5)
            .prop_map(|m| serde_json::Value::Object(m.into_iter().collect()))],
        tenant in proptest::option::of(any::<u128>()),
        attempts in any::<i32>(),
        occurred in -62_135_596_800i64..253_402_300_799i64,
    ) -> ClaimedEvent {
        ClaimedEvent {
            id: Uuid::now_v7(),
            seq: 1,
            tenant_id: tenant.map(Uuid::from_u128),
            event_type,
            schema_ref,
            category,
            ordering_key,
            payload: payload.to_string(),
            headers,
            dedupe_key,
            occurred_at: Utc.timestamp_opt(occurred, 0).single().unwrap_or_default(),
            created_at: Utc::now(),
            attempts,
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn any_row_builds_or_is_refused_without_a_panic(
        event in row(),
        template in prop_oneof![
            Just("{category}.{event_type}".to_owned()),
            Just("{tenant_id}.{category}.{event_type}.{event_type}".to_owned()),
            text(),
        ],
        max_body in 1024usize..100_000,
        frame_max in 4096usize..140_000,
    ) {
        let limits = message::Limits { max_body, frame_max };
        match message::build(&event, &template, limits) {
            Ok(built) => {
                prop_assert!(built.routing_key.len() <= SHORT_STRING_MAX);
                prop_assert!(built.body.len() <= max_body);
                let body: serde_json::Value = serde_json::from_slice(&built.body).unwrap();
                prop_assert_eq!(&body["id"], &serde_json::Value::from(event.id.to_string()));
                prop_assert_eq!(&body["eventType"], &serde_json::Value::from(event.event_type.clone()));
                let payload: serde_json::Value = serde_json::from_str(&event.payload).unwrap();
                prop_assert_eq!(&body["payload"], &payload);
                prop_assert_eq!(
                    built.properties.message_id().as_ref().map(|m| m.as_str().to_owned()),
                    Some(event.id.to_string())
                );
            }
            Err(BuildError::TooLong { len, .. }) => prop_assert!(len > SHORT_STRING_MAX),
            Err(BuildError::TooLarge { len, max }) => prop_assert!(len > max),
            Err(BuildError::HeadersNotObject) => prop_assert!(!event.headers.is_object()),
            Err(BuildError::HeadersTooLarge { len, max }) => prop_assert!(len > max),
            Err(BuildError::ReservedHeader(name)) => {
                let value = &event.headers[name.as_str()];
                prop_assert!(!value.as_array().is_some_and(|a| a.iter().all(|v| v.is_string())));
            }
        }
    }
}

#[test]
fn cc_and_bcc_headers_must_be_arrays_of_strings() {
    let mut event = sample_event();
    for (headers, refused) in [
        (serde_json::json!({"CC": "billing.audit"}), Some("CC")),
        (serde_json::json!({"BCC": [1, 2]}), Some("BCC")),
        (
            serde_json::json!({"CC": ["billing.audit"], "BCC": []}),
            None,
        ),
        (serde_json::json!({"cc": "not reserved"}), None),
    ] {
        event.headers = headers;
        let built = message::build(
            &event,
            "{event_type}",
            message::Limits {
                max_body: 1 << 20,
                frame_max: 131_072,
            },
        );
        match refused {
            Some(name) => assert!(
                matches!(&built, Err(BuildError::ReservedHeader(n)) if n == name),
                "{built:?}"
            ),
            None => assert!(built.is_ok(), "{built:?}"),
        }
    }
}

/// A plain claimed event with no extra headers.
fn sample_event() -> ClaimedEvent {
    ClaimedEvent {
        id: Uuid::now_v7(),
        seq: 1,
        tenant_id: None,
        event_type: "TICKET_CREATED".to_owned(),
        schema_ref: "payload.TicketCreated.v1".to_owned(),
        category: "Tickets".to_owned(),
        ordering_key: None,
        payload: "{}".to_owned(),
        headers: serde_json::json!({}),
        dedupe_key: "d".to_owned(),
        occurred_at: Utc::now(),
        created_at: Utc::now(),
        attempts: 0,
    }
}

#[test]
fn header_values_keep_their_json_types() {
    use lapin::types::AMQPValue;
    let event = ClaimedEvent {
        headers: serde_json::json!({
            "s": "text", "i": -7, "f": 1.5, "b": true, "n": null,
            "a": [1, "two"], "o": {"k": "v"}
        }),
        ..sample_event()
    };
    let limits = message::Limits {
        max_body: 1 << 20,
        frame_max: message::DEFAULT_FRAME_MAX,
    };
    let built = message::build(&event, "{category}.{event_type}", limits).unwrap();
    let headers = built.properties.headers().clone().unwrap();
    let inner = headers.inner();
    let get = |k: &str| {
        inner
            .iter()
            .find(|(name, _)| name.as_str() == k)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    assert!(matches!(get("s"), AMQPValue::LongString(_)));
    assert_eq!(get("i"), AMQPValue::LongLongInt(-7));
    assert_eq!(get("f"), AMQPValue::Double(1.5));
    assert_eq!(get("b"), AMQPValue::Boolean(true));
    assert_eq!(get("n"), AMQPValue::Void);
    assert!(matches!(get("a"), AMQPValue::FieldArray(_)));
    assert!(matches!(get("o"), AMQPValue::FieldTable(_)));
    assert_eq!(get("x-attempt"), AMQPValue::LongInt(1));
}

#[test]
fn headers_that_do_not_fit_in_a_frame_are_refused_before_they_reach_the_broker() {
    let event = ClaimedEvent {
        ordering_key: Some("ticket:1".to_owned()),
        headers: serde_json::json!({ "big": "x".repeat(300_000) }),
        ..sample_event()
    };
    let limits = message::Limits {
        max_body: 16 << 20,
        frame_max: message::DEFAULT_FRAME_MAX,
    };
    let error = message::build(&event, "{category}.{event_type}", limits).unwrap_err();
    assert!(
        matches!(error, BuildError::HeadersTooLarge { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("frame_max"), "{error}");
}
