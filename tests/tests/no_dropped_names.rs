//! No code that runs against today's schema names a relation the migrations dropped: SQL in
//! strings is not checked by the compiler, and a benchmark, example or relay statement that
//! names one fails only when it runs (`relation "…" does not exist`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

/// Tables, views, indexes and functions that a migration dropped (and none recreated).
const DROPPED: [&str; 9] = [
    "outbox_key_recheck",
    "outbox_leases",
    "outbox_events_ready",
    "outbox_events_pending",
    "outbox_estimate_pending",
    "outbox_events_seq_key",
    "outbox_events_open_scope_seq",
    "outbox_events_stopped",
    "outbox_events_delivered_at",
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Whether `line` names `name` as a whole word.
fn names(line: &str, name: &str) -> bool {
    line.match_indices(name).any(|(at, _)| {
        let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
        let before = line[..at].chars().next_back().is_none_or(|c| !word(c));
        let after = line[at + name.len()..]
            .chars()
            .next()
            .is_none_or(|c| !word(c));
        before && after
    })
}

#[test]
fn no_statement_names_a_dropped_table_index_or_function() {
    let mut files = Vec::new();
    for dir in [
        "outbox-relay/src",
        "outbox-core/src",
        "outbox-consumer/src",
        "bench/src",
        "examples",
    ] {
        let dir = root().join(dir);
        if dir.exists() {
            rust_files(&dir, &mut files);
        }
    }
    let mut found = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for (number, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            for name in DROPPED {
                if names(line, name) {
                    found.push(format!(
                        "{}:{}: {name}",
                        file.strip_prefix(root()).unwrap_or(file).display(),
                        number + 1
                    ));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "statements naming what the migrations dropped:\n{}",
        found.join("\n")
    );
}
