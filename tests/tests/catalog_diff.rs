//! `outbox-relay catalog diff OLD.json NEW.json`: every kind of breaking and compatible
//! change, on small catalogs cut from the real export, through the library and the binary
//! (exit code and report).

#![allow(clippy::expect_used, clippy::unwrap_used)] // tests fail loudly by design

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Result;
use catalog_types::diff::{CatalogDiff, ChangeKind, Snapshot};
use catalog_types::{export, registry};
use integration_tests::{relay_binary, unique_suffix};
use serde_json::{Value, json};

/// Two real events: TICKET_CREATED (optional fields, a map of `$ref`s) and
/// TICKET_MESSAGE_ADDED (enums behind `$ref`s, an optional integer).
fn base() -> Value {
    let all: Vec<Value> = serde_json::from_str(&export::json(registry()).unwrap()).unwrap();
    Value::Array(
        all.into_iter()
            .filter(|e| {
                ["TICKET_CREATED", "TICKET_MESSAGE_ADDED"]
                    .contains(&e["eventType"].as_str().unwrap())
            })
            .collect(),
    )
}

/// The entry of `event_type` in a catalog.
fn event<'a>(catalog: &'a mut Value, event_type: &str) -> &'a mut Value {
    catalog
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|e| e["eventType"] == event_type)
        .unwrap()
}

fn schema<'a>(catalog: &'a mut Value, event_type: &str) -> &'a mut Value {
    &mut event(catalog, event_type)["payloadSchema"]
}

fn properties<'a>(
    catalog: &'a mut Value,
    event_type: &str,
) -> &'a mut serde_json::Map<String, Value> {
    schema(catalog, event_type)["properties"]
        .as_object_mut()
        .unwrap()
}

fn required<'a>(catalog: &'a mut Value, event_type: &str) -> &'a mut Vec<Value> {
    schema(catalog, event_type)["required"]
        .as_array_mut()
        .unwrap()
}

fn channel_values(catalog: &mut Value) -> &mut Vec<Value> {
    schema(catalog, "TICKET_MESSAGE_ADDED")["$defs"]["TicketMessageChannel"]["oneOf"]
        .as_array_mut()
        .unwrap()
}

struct Case {
    name: &'static str,
    change: fn(&mut Value),
    kind: ChangeKind,
    breaking: bool,
    /// A line the text report must contain.
    line: &'static str,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "field removed",
            change: |c| {
                properties(c, "TICKET_CREATED").remove("updatedFields");
            },
            kind: ChangeKind::FieldRemoved,
            breaking: true,
            line: "BREAKING    updatedFields: field removed",
        },
        Case {
            name: "field renamed",
            change: |c| {
                let props = properties(c, "TICKET_MESSAGE_ADDED");
                let field = props.remove("attachmentsCount").unwrap();
                props.insert("attachmentCount".to_owned(), field);
            },
            kind: ChangeKind::FieldRenamed,
            breaking: true,
            line: "BREAKING    attachmentsCount: field removed; renamed to `attachmentCount`?",
        },
        Case {
            name: "optional became required",
            change: |c| required(c, "TICKET_CREATED").push(json!("createdAt")),
            kind: ChangeKind::BecameRequired,
            breaking: true,
            line: "BREAKING    createdAt: optional → required",
        },
        Case {
            name: "required field added",
            change: |c| {
                properties(c, "TICKET_CREATED")
                    .insert("queueId".to_owned(), json!({"type": "string"}));
                required(c, "TICKET_CREATED").push(json!("queueId"));
            },
            kind: ChangeKind::FieldAdded,
            breaking: true,
            line: "BREAKING    queueId: required field added",
        },
        Case {
            name: "type changed",
            change: |c| {
                properties(c, "TICKET_MESSAGE_ADDED")["attachmentsCount"]["type"] =
                    json!(["string", "null"]);
            },
            kind: ChangeKind::TypeChanged,
            breaking: true,
            line: "BREAKING    attachmentsCount: type integer | null → null | string",
        },
        Case {
            name: "enum value removed",
            change: |c| channel_values(c).retain(|v| v["const"] != "api"),
            kind: ChangeKind::EnumValueRemoved,
            breaking: true,
            line: "BREAKING    channel: enum value \"api\" removed",
        },
        Case {
            name: "event removed",
            change: |c| {
                c.as_array_mut()
                    .unwrap()
                    .retain(|e| e["eventType"] != "TICKET_MESSAGE_ADDED");
            },
            kind: ChangeKind::EventRemoved,
            breaking: true,
            line: "BREAKING    event removed",
        },
        Case {
            name: "schema ref reused for a different shape",
            change: |c| {
                // TICKET_MESSAGE_ADDED is gone, and a new event takes its ref with another shape.
                let mut taker = event(c, "TICKET_CREATED").clone();
                taker["eventType"] = json!("TICKET_NOTE_ADDED");
                taker["payloadSchemaRef"] = json!("payload.TicketMessageAdded.v1");
                c.as_array_mut()
                    .unwrap()
                    .retain(|e| e["eventType"] != "TICKET_MESSAGE_ADDED");
                c.as_array_mut().unwrap().push(taker);
            },
            kind: ChangeKind::SchemaRefReused,
            breaking: true,
            line: "BREAKING    schema ref payload.TicketMessageAdded.v1 named the payload of TICKET_MESSAGE_ADDED and now names a different shape",
        },
        Case {
            name: "category changed",
            change: |c| event(c, "TICKET_CREATED")["category"] = json!("Projects"),
            kind: ChangeKind::CategoryChanged,
            breaking: true,
            line: "BREAKING    category Tickets → Projects",
        },
        Case {
            name: "optional field added",
            change: |c| {
                properties(c, "TICKET_CREATED").insert(
                    "queueId".to_owned(),
                    json!({"type": ["string", "null"], "format": "uuid"}),
                );
            },
            kind: ChangeKind::FieldAdded,
            breaking: false,
            line: "compatible  queueId: optional field added",
        },
        Case {
            name: "enum value added",
            change: |c| channel_values(c).push(json!({"type": "string", "const": "sms"})),
            kind: ChangeKind::EnumValueAdded,
            breaking: false,
            line: "compatible  channel: enum value \"sms\" added",
        },
        Case {
            name: "event added",
            change: |c| {
                let mut added = event(c, "TICKET_CREATED").clone();
                added["eventType"] = json!("TICKET_ARCHIVED");
                added["payloadSchemaRef"] = json!("payload.TicketArchived.v1");
                c.as_array_mut().unwrap().push(added);
            },
            kind: ChangeKind::EventAdded,
            breaking: false,
            line: "compatible  event added",
        },
        Case {
            name: "description changed",
            change: |c| {
                properties(c, "TICKET_CREATED")["ticketId"]["description"] = json!("The ticket.");
            },
            kind: ChangeKind::DescriptionChanged,
            breaking: false,
            line: "compatible  ticketId: description changed",
        },
        Case {
            name: "required became optional",
            change: |c| required(c, "TICKET_MESSAGE_ADDED").retain(|f| f != "createdAt"),
            kind: ChangeKind::BecameOptional,
            breaking: false,
            line: "compatible  createdAt: required → optional",
        },
        Case {
            name: "type widened",
            change: |c| {
                properties(c, "TICKET_MESSAGE_ADDED")["attachmentsCount"]["type"] =
                    json!(["number", "null"]);
            },
            kind: ChangeKind::TypeWidened,
            breaking: false,
            line: "compatible  attachmentsCount: type integer | null → null | number",
        },
    ]
}

/// A scratch directory under the cargo target directory.
fn scratch() -> Result<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("catalog-diff-{}", unique_suffix()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn write(dir: &Path, name: &str, catalog: &Value) -> Result<PathBuf> {
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_string_pretty(catalog)?)?;
    Ok(path)
}

/// `outbox-relay catalog diff <args>`: (exit code, stdout, stderr).
fn diff_cli(args: &[&Path]) -> Result<(i32, String, String)> {
    let mut all: Vec<&std::ffi::OsStr> = vec!["catalog".as_ref(), "diff".as_ref()];
    all.extend(args.iter().map(|path| path.as_os_str()));
    integration_tests::relay_offline(&all)
}

#[test]
fn every_kind_of_change_is_classified_and_the_exit_code_follows() -> Result<()> {
    let dir = scratch()?;
    let old = base();
    let old_path = write(&dir, "old.json", &old)?;
    for case in cases() {
        let mut new = old.clone();
        (case.change)(&mut new);
        let new_path = write(&dir, "new.json", &new)?;

        let diff = CatalogDiff::compare(&Snapshot::read(&old_path)?, &Snapshot::read(&new_path)?);
        assert!(
            diff.events
                .iter()
                .flat_map(|e| &e.changes)
                .any(|c| c.kind == case.kind && c.breaking == case.breaking),
            "{}: no {:?} (breaking: {}) in\n{}",
            case.name,
            case.kind,
            case.breaking,
            diff.to_text()
        );
        assert_eq!(
            diff.is_breaking(),
            case.breaking,
            "{}:\n{}",
            case.name,
            diff.to_text()
        );

        let (code, stdout, stderr) = diff_cli(&[&old_path, &new_path])?;
        assert!(
            stdout.contains(case.line),
            "{}: `{}` not in\n{stdout}",
            case.name,
            case.line
        );
        if case.breaking {
            assert_eq!(code, 1, "{}: {stdout}{stderr}", case.name);
            assert!(
                stdout.contains("BREAKING: consumers of the old catalog would break"),
                "{stdout}"
            );
            assert!(
                stderr.contains("breaking change(s) from")
                    && stderr.contains("without a schema ref version bump"),
                "{}: {stderr}",
                case.name
            );
        } else {
            assert_eq!(code, 0, "{}: {stdout}{stderr}", case.name);
            assert!(
                stdout.contains("compatible: no change breaks consumers"),
                "{stdout}"
            );
        }
    }
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[test]
fn a_breaking_change_under_a_new_version_is_a_new_version_not_a_break() -> Result<()> {
    let dir = scratch()?;
    let old = base();
    let mut new = old.clone();
    properties(&mut new, "TICKET_CREATED").remove("updatedFields");
    required(&mut new, "TICKET_CREATED").push(json!("createdAt"));
    event(&mut new, "TICKET_CREATED")["payloadSchemaRef"] = json!("payload.TicketCreated.v2");
    let (old_path, new_path) = (
        write(&dir, "old.json", &old)?,
        write(&dir, "new.json", &new)?,
    );

    let (code, stdout, stderr) = diff_cli(&[&old_path, &new_path])?;
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains(
            "TICKET_CREATED (payload.TicketCreated.v1 → payload.TicketCreated.v2): new version"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("versioned   updatedFields: field removed"),
        "{stdout}"
    );
    assert!(
        stdout.contains("versioned   createdAt: optional → required"),
        "{stdout}"
    );
    assert!(stdout.contains("0 breaking"), "{stdout}");

    // The same change without the bump breaks.
    event(&mut new, "TICKET_CREATED")["payloadSchemaRef"] = json!("payload.TicketCreated.v1");
    let new_path = write(&dir, "new.json", &new)?;
    let (code, stdout, _) = diff_cli(&[&old_path, &new_path])?;
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("2 breaking"), "{stdout}");
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[test]
fn the_json_report_carries_the_verdict_and_every_change() -> Result<()> {
    let dir = scratch()?;
    let old = base();
    let mut new = old.clone();
    channel_values(&mut new).retain(|v| v["const"] != "api");
    let (old_path, new_path) = (
        write(&dir, "old.json", &old)?,
        write(&dir, "new.json", &new)?,
    );
    let output = Command::new(relay_binary()?)
        .args(["catalog", "diff", "--format", "json"])
        .args([&old_path, &new_path])
        .output()?;
    assert_eq!(output.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&output.stdout)?;
    assert_eq!(report["breaking"], json!(true));
    assert_eq!(
        report["events"][0]["changes"][0],
        json!({"kind": "enum_value_removed", "path": "channel", "breaking": true, "detail": "enum value \"api\" removed"})
    );
    assert_eq!(report["events"][0]["status"], json!("changed"));
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[test]
fn unreadable_inputs_are_refused_naming_the_file() -> Result<()> {
    let dir = scratch()?;
    let good = write(&dir, "good.json", &base())?;
    let bad = dir.join("bad.json");
    std::fs::write(&bad, "[{\"eventType\": \"A\",")?;
    let (code, stdout, stderr) = diff_cli(&[&good, &bad])?;
    assert_eq!(code, 1);
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains(&format!("{} is not a catalog export", bad.display()))
            && stderr.contains("line 1"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(
        stderr.matches("line 1").count(),
        1,
        "the cause is said once: {stderr}"
    );

    let missing = dir.join("missing.json");
    let (code, _, stderr) = diff_cli(&[&missing, &good])?;
    assert_eq!(code, 1);
    assert!(
        stderr.contains(&format!("cannot read {}", missing.display())),
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("(os error").count(),
        1,
        "the cause is said once: {stderr}"
    );

    // Empty, and valid JSON that is not an export.
    for (name, text) in [("empty.json", ""), ("object.json", r#"{"events": []}"#)] {
        let path = dir.join(name);
        std::fs::write(&path, text)?;
        let (code, stdout, stderr) = diff_cli(&[&good, &path])?;
        assert_eq!(code, 1, "{name}: {stderr}");
        assert!(stdout.is_empty(), "{name}: {stdout}");
        assert!(
            stderr.contains(&format!("{} is not a catalog export", path.display())),
            "{name}: {stderr}"
        );
    }
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[test]
fn the_current_export_has_no_difference_with_the_released_catalog() -> Result<()> {
    let dir = scratch()?;
    let current = dir.join("current.json");
    std::fs::write(&current, export::json(registry())?)?;
    let released = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/catalog.json");
    let (code, stdout, stderr) = diff_cli(&[&released, &current])?;
    assert_eq!((code, stdout.as_str()), (0, "no differences\n"), "{stderr}");
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
