//! Hostile input against a real database and broker: whatever a caller passes to
//! `emit_untyped` or `EmitOptions`, it is refused before any SQL runs (the caller's
//! transaction still commits its other work) or stored exactly; and rows written by plain
//! SQL with odd content are published, or made dead one by one with the reason, without
//! stopping the relay.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::cell::Cell;
use std::time::Duration;

use anyhow::Result;
use catalog_types::{CatalogEvent, TicketCreated, registry};
use integration_tests::{RunningRelay, TestDb, relay_config, wait_until, with_db_and_broker};
use outbox_core::{EmitError, EmitOptions};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestRunner};
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

/// Text of every kind: Unicode, control characters and NUL, long runs around the limits.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => ".{0,24}",
        2 => "[a-z:\\x00-\\x1f\\x7f]{1,8}",
        1 => "\\PC{500,520}",
        1 => Just(String::new()),
        1 => Just("ticket:é✓\u{202e}".to_owned()),
    ]
}

/// Any JSON value, a few levels deep.
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        text().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(text(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Every string leaf of a JSON value, as JSON Pointers.
fn string_leaves(value: &Value, path: String, out: &mut Vec<String>) {
    match value {
        Value::String(_) => out.push(path),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                string_leaves(item, format!("{path}/{i}"), out);
            }
        }
        Value::Object(fields) => {
            for (k, item) in fields {
                let token = k.replace('~', "~0").replace('/', "~1");
                string_leaves(item, format!("{path}/{token}"), out);
            }
        }
        _ => {}
    }
}

/// An event type (now and then one that is not in the catalog) and a payload: arbitrary
/// JSON, or a catalog example with one string replaced by arbitrary text (free-text fields
/// then stay valid, so both outcomes occur), or with an extra field of any key and value.
fn untyped_input() -> impl Strategy<Value = (String, Value)> {
    let entries = registry().entries().len();
    (0..entries, 0..10u8, any::<Index>(), text(), json()).prop_map(
        |(entry, how, leaf, replacement, any_json)| {
            let entry = &registry().entries()[entry];
            let mut payload = entry.example();
            match how {
                0 => return (entry.event_type.to_ascii_lowercase(), payload),
                1 => return (entry.event_type.to_owned(), any_json),
                2 => {
                    if let Value::Object(fields) = &mut payload {
                        fields.insert(replacement, any_json);
                    }
                }
                _ => {
                    let mut leaves = Vec::new();
                    string_leaves(&payload, String::new(), &mut leaves);
                    if !leaves.is_empty() {
                        let path = &leaves[leaf.index(leaves.len())];
                        if let Some(slot) = payload.pointer_mut(path) {
                            *slot = Value::String(replacement);
                        }
                    }
                }
            }
            (entry.event_type.to_owned(), payload)
        },
    )
}

/// Whether any string or key of `value` holds a NUL character.
fn has_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(has_nul),
        Value::Object(fields) => fields.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

/// One unit of the caller's own work, done in its transaction before each emit.
async fn business_work(conn: &mut PgConnection) -> Result<()> {
    sqlx::query("INSERT INTO business_work DEFAULT VALUES")
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Runs `cases` cases of `strategy` through `check` (an async test body) on one database,
/// then returns the runtime and the database (its pool lives on that runtime) for the final
/// counts.
fn run_cases<S: Strategy>(
    cases: u32,
    strategy: S,
    check: impl AsyncFn(&TestDb, S::Value) -> Result<(), TestCaseError>,
) -> Result<(tokio::runtime::Runtime, TestDb)> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let db = runtime.block_on(async {
        let db = TestDb::new().await?;
        sqlx::query("CREATE TABLE business_work (n bigserial PRIMARY KEY)")
            .execute(&db.pool)
            .await?;
        anyhow::Ok(db)
    })?;
    let mut runner = TestRunner::new(Config::with_cases(cases));
    let outcome = runner.run(&strategy, |input| runtime.block_on(check(&db, input)));
    if let Err(failure) = outcome {
        anyhow::bail!("{failure}");
    }
    Ok((runtime, db))
}

/// Whether the transaction is still usable: a failed statement would have aborted it.
async fn still_usable(conn: &mut PgConnection) -> Result<(), TestCaseError> {
    sqlx::query("SELECT 1")
        .execute(&mut *conn)
        .await
        .map(drop)
        .map_err(|e| TestCaseError::fail(format!("the transaction is aborted: {e}")))
}

fn fail(what: impl std::fmt::Display) -> TestCaseError {
    TestCaseError::fail(what.to_string())
}

#[test]
fn untyped_payloads_are_refused_by_path_before_any_sql_or_stored_as_validated() -> Result<()> {
    let (stored, refused) = (Cell::new(0i64), Cell::new(0i64));
    let (runtime, db) = run_cases(150, untyped_input(), async |db, (event_type, payload)| {
        let mut tx = db.pool.begin().await.map_err(fail)?;
        business_work(&mut tx).await.map_err(fail)?;
        let expected = registry().validate(&event_type, payload.clone());
        let result =
            outbox_core::emit_untyped(&mut tx, &event_type, payload.clone(), EmitOptions::new())
                .await;
        match (result, expected) {
            (Ok(id), Ok(valid)) => {
                prop_assert!(!has_nul(&valid.payload), "a NUL reached the database");
                let row: Value =
                    sqlx::query_scalar("SELECT payload FROM outbox_events WHERE id = $1")
                        .bind(id)
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(fail)?;
                prop_assert_eq!(row, valid.payload, "stored payload differs");
                stored.set(stored.get() + 1);
            }
            (Err(EmitError::InvalidPayload(error)), expected) => {
                // Refused by the schema, or (schema-valid) for a NUL it holds.
                prop_assert!(expected.is_err() || has_nul(&payload), "{error}");
                let text = error.to_string();
                prop_assert!(text.contains(": /"), "no field path: {text}");
                refused.set(refused.get() + 1);
            }
            (Err(EmitError::InvalidOption(reason)), Ok(valid)) => {
                // The only option-level refusal of a valid payload: the ordering key
                // derived from it is too long to store.
                let key_len = valid.ordering_key.as_ref().map_or(0, String::len);
                prop_assert!(key_len > outbox_core::MAX_KEY_BYTES, "{reason}");
                prop_assert!(reason.contains("derived from the payload"), "{reason}");
                refused.set(refused.get() + 1);
            }
            (Err(EmitError::UnknownEventType(name)), Err(_)) => {
                prop_assert_eq!(name, event_type);
                refused.set(refused.get() + 1);
            }
            (outcome, expected) => {
                return Err(fail(format!(
                    "{event_type} {payload}: emit gave {outcome:?}, validation {expected:?}"
                )));
            }
        }
        still_usable(&mut tx).await?;
        tx.commit().await.map_err(fail)?;
        Ok(())
    })?;
    runtime.block_on(async {
        // Every case's own work committed, refused or not; exactly the accepted events exist.
        let work: i64 = sqlx::query_scalar("SELECT count(*) FROM business_work")
            .fetch_one(&db.pool)
            .await?;
        assert_eq!(work, stored.get() + refused.get());
        assert_eq!(db.count_events().await?, stored.get());
        // Both branches were exercised, or the property proved nothing.
        assert!(
            stored.get() > 10 && refused.get() > 10,
            "{stored:?} {refused:?}"
        );
        db.cleanup().await
    })
}

/// Options built from arbitrary text: ordering key, dedupe key, one header.
#[derive(Debug, Clone)]
struct Texts {
    ordering_key: Option<String>,
    dedupe_key: Option<String>,
    header: Option<(String, String)>,
}

fn texts() -> impl Strategy<Value = Texts> {
    (
        proptest::option::of(text()),
        proptest::option::of(text()),
        proptest::option::of((text(), text())),
    )
        .prop_map(|(ordering_key, dedupe_key, header)| Texts {
            ordering_key,
            dedupe_key,
            header,
        })
}

fn ticket() -> TicketCreated {
    TicketCreated {
        tenant_id: Uuid::now_v7(),
        ticket_id: Uuid::now_v7(),
        ..TicketCreated::example()
    }
}

#[test]
fn keys_and_headers_of_any_text_are_refused_up_front_or_stored_exactly() -> Result<()> {
    let (stored, refused) = (Cell::new(0i64), Cell::new(0i64));
    let (runtime, db) = run_cases(200, texts(), async |db, input| {
        let mut options = EmitOptions::new();
        if let Some(key) = &input.ordering_key {
            options = options.ordering_key(key.clone());
        }
        if let Some(key) = &input.dedupe_key {
            options = options.dedupe_key(key.clone());
        }
        if let Some((name, value)) = &input.header {
            options = options.header(name.clone(), value.clone());
        }
        let mut tx = db.pool.begin().await.map_err(fail)?;
        business_work(&mut tx).await.map_err(fail)?;
        match outbox_core::emit_with(&mut tx, &ticket(), options).await {
            Ok(id) => {
                let (ordering_key, dedupe_key, headers): (Option<String>, String, Value) =
                    sqlx::query_as(
                        "SELECT ordering_key, dedupe_key, headers FROM outbox_events WHERE id = $1",
                    )
                    .bind(id)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(fail)?;
                if let Some(key) = &input.ordering_key {
                    prop_assert_eq!(ordering_key.as_ref(), Some(key));
                }
                if let Some(key) = &input.dedupe_key {
                    prop_assert_eq!(&dedupe_key, key);
                }
                if let Some((name, value)) = &input.header {
                    prop_assert_eq!(&headers[name.as_str()], &Value::from(value.as_str()));
                }
                stored.set(stored.get() + 1);
            }
            Err(EmitError::InvalidOption(reason)) => {
                prop_assert!(
                    ["ordering key", "dedupe key", "header"]
                        .iter()
                        .any(|what| reason.contains(what)),
                    "the refusal names no option: {reason}"
                );
                refused.set(refused.get() + 1);
            }
            Err(other) => return Err(fail(format!("{input:?}: {other:?}"))),
        }
        still_usable(&mut tx).await?;
        tx.commit().await.map_err(fail)?;
        Ok(())
    })?;
    runtime.block_on(async {
        let work: i64 = sqlx::query_scalar("SELECT count(*) FROM business_work")
            .fetch_one(&db.pool)
            .await?;
        assert_eq!(work, stored.get() + refused.get());
        assert!(
            stored.get() > 10 && refused.get() > 10,
            "{stored:?} {refused:?}"
        );
        db.cleanup().await
    })
}

/// The premise of the checks above: PostgreSQL itself refuses NUL in `jsonb` strings and in
/// `text`, and the refusal aborts the transaction (so a library that let it through would
/// cost the caller all its work).
#[tokio::test]
async fn postgres_refuses_nul_and_emit_names_the_field_instead() -> Result<()> {
    let db = TestDb::new().await?;
    let mut tx = db.pool.begin().await?;
    let raw = sqlx::query(
        "INSERT INTO outbox_events (event_type, payload) VALUES ('TICKET_CREATED', $1)",
    )
    .bind(serde_json::json!({"title": "a\u{0}b"}))
    .execute(&mut *tx)
    .await;
    assert!(raw.is_err(), "jsonb took a NUL");
    assert!(sqlx::query("SELECT 1").execute(&mut *tx).await.is_err());
    tx.rollback().await?;

    let mut tx = db.pool.begin().await?;
    let mut payload = serde_json::to_value(ticket())?;
    payload["updatedFields"] = serde_json::json!(["status", "ti\u{0}tle"]);
    let error = outbox_core::emit_untyped(&mut tx, "TICKET_CREATED", payload, EmitOptions::new())
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("/updatedFields/1: ") && error.to_string().contains("NUL"),
        "{error}"
    );
    let typed = TicketCreated {
        updated_fields: Some(vec!["\u{0}".to_owned()]),
        ..ticket()
    };
    let error = outbox_core::emit(&mut tx, &typed).await.unwrap_err();
    assert!(error.to_string().contains("/updatedFields/0"), "{error}");
    for (options, names) in [
        (EmitOptions::new().ordering_key("k\u{0}"), "ordering key"),
        (EmitOptions::new().dedupe_key("line\nbreak"), "dedupe key"),
        (EmitOptions::new().dedupe_key(""), "dedupe key is empty"),
        (EmitOptions::new().header("x-a\u{1b}", "v"), "header name"),
        (EmitOptions::new().header("", "v"), "a header name is empty"),
        (
            EmitOptions::new().header("h".repeat(300), "v"),
            "is 300 bytes, over the 255 allowed",
        ),
        (
            EmitOptions::new().header("x-a", "v\u{0}"),
            "value of header `x-a`",
        ),
    ] {
        let error = outbox_core::emit_with(&mut tx, &ticket(), options)
            .await
            .unwrap_err();
        assert!(
            matches!(&error, EmitError::InvalidOption(r) if r.contains(names)),
            "{names}: {error}"
        );
    }
    // Control characters are text in payloads and header values: stored as given.
    let id = outbox_core::emit_with(
        &mut tx,
        &TicketCreated {
            updated_fields: Some(vec!["tab\there\u{7}".to_owned()]),
            ..ticket()
        },
        EmitOptions::new().header("x-note", "line\nbreak"),
    )
    .await?;
    tx.commit().await?;
    let (payload, headers): (Value, Value) =
        sqlx::query_as("SELECT payload, headers FROM outbox_events WHERE id = $1")
            .bind(id)
            .fetch_one(&db.pool)
            .await?;
    assert_eq!(payload["updatedFields"][0], "tab\there\u{7}");
    assert_eq!(headers["x-note"], "line\nbreak");
    db.cleanup().await
}

/// Rows other languages could write with plain SQL, each with something odd about it.
const ODD_ROWS: [(&str, &str); 9] = [
    (
        "nested",
        r#"{"nested": {"a": [1, {"b": "c"}], "e": {}}, "arr": [1, "x", null, true]}"#,
    ),
    (
        "empty-values",
        r#"{"e": "", "z": 0, "n": null, "neg": -1.5e-7}"#,
    ),
    (
        "control",
        "{\"a\\u0001b\": \"x\\u001b[2Jy\", \"tab\\t\": \"\\u007f\"}",
    ),
    ("unicode", r#"{"ключ": "值 ✓ \u202e", "emoji 🙂": "🙂"}"#),
    ("big-value", r#"{"big": "__BIG__"}"#),
    ("huge-number", r#"{"n": 1e400}"#),
    ("deep", "__DEEP__"),
    ("nested-long-name", r#"{"o": {"__LONG__": 1}}"#),
    (
        "reserved-array",
        r#"{"CC": [], "BCC": ["nobody.listens.here"]}"#,
    ),
];

/// Which of [`ODD_ROWS`] can never be published (the relay makes them dead at once, with the
/// reason), and a word the reason must contain.
fn unpublishable(name: &str) -> Option<&'static str> {
    match name {
        "huge-number" | "deep" => Some("cannot read the stored row"),
        "nested-long-name" => Some("header name"),
        _ => None,
    }
}

#[tokio::test]
async fn odd_rows_written_by_plain_sql_are_published_or_dead_alone() -> Result<()> {
    with_db_and_broker(&["#"], async |db, broker| {
        let deep = format!("{}1{}", r#"{"d":"#.repeat(200), "}".repeat(200));
        let mut ids = Vec::new();
        for (name, headers) in ODD_ROWS {
            let headers = headers
                .replace("__BIG__", &"b".repeat(20_000))
                .replace("__LONG__", &"n".repeat(300))
                .replace("__DEEP__", &deep);
            let id: Uuid = sqlx::query_scalar(
                "INSERT INTO outbox_events (event_type, tenant_id, ordering_key, payload, headers, dedupe_key)
                 VALUES ('TICKET_CREATED', $1, $2, $3, $4::jsonb, $5) RETURNING id",
            )
            .bind(Uuid::now_v7())
            .bind(format!("odd:{name}\t\u{1}"))
            .bind(serde_json::to_value(ticket())?)
            .bind(&headers)
            .bind(if name == "nested" { "" } else { name })
            .fetch_one(&db.pool)
            .await?;
            ids.push((name, id));
        }
        // What the database refuses outright, by name (the caller sees why at once).
        for (headers, constraint) in [
            ("[1, 2]", "outbox_events_headers_object"),
            ("\"text\"", "outbox_events_headers_object"),
            ("{\"\": 1}", "empty or over 255 bytes"),
            ("{\"nul\": \"a\\u0000b\"}", "unsupported Unicode escape"),
        ] {
            let refused = sqlx::query(
                "INSERT INTO outbox_events (event_type, payload, headers)
                 VALUES ('TICKET_CREATED', '{}', $1::jsonb)",
            )
            .bind(headers)
            .execute(&db.pool)
            .await
            .unwrap_err();
            assert!(refused.to_string().contains(constraint), "{headers}: {refused}");
        }
        let after = integration_tests::emit_ticket(&db.pool, Uuid::now_v7(), EmitOptions::new())
            .await?;

        let relay = RunningRelay::start(relay_config(db, broker));
        let all: Vec<Uuid> = ids.iter().map(|(_, id)| *id).chain([after]).collect();
        integration_tests::wait_until_settled(&db.pool, &all, Duration::from_secs(30)).await?;
        wait_until(Duration::from_secs(10), "the relay stays ready", || async {
            Ok(relay.health.database_ok() && relay.health.broker_ok())
        })
        .await?;
        let published = ODD_ROWS
            .iter()
            .filter(|(name, _)| unpublishable(name).is_none())
            .count();
        let received = broker.collect(published + 1, Duration::from_secs(5)).await?;
        relay.stop().await?;

        for (name, id) in &ids {
            let state = integration_tests::event_state(&db.pool, *id).await?;
            match unpublishable(name) {
                None => assert_eq!(state.status, "delivered", "{name}: {state:?}"),
                Some(reason) => {
                    assert_eq!(state.status, "dead", "{name}: {state:?}");
                    let error = state.last_error.unwrap_or_default();
                    assert!(error.contains(reason), "{name}: {error}");
                }
            }
        }
        assert_eq!(
            integration_tests::event_state(&db.pool, after).await?.status,
            "delivered"
        );
        let got: std::collections::HashSet<String> =
            received.iter().map(|m| m.message_id.clone()).collect();
        assert_eq!(got.len(), published + 1, "{got:?}");
        let control = received
            .iter()
            .find(|m| m.headers.get("x-dedupe-key").map(String::as_str) == Some("control"))
            .expect("the row with control characters arrived");
        assert_eq!(control.headers["a\u{1}b"], "x\u{1b}[2Jy");
        assert_eq!(control.headers["x-ordering-key"], "odd:control\t\u{1}");
        Ok(())
    })
    .await
}
