//! Text PostgreSQL cannot store, or operators could not name, refused before any SQL runs.
//!
//! PostgreSQL's `text` refuses the NUL character (`invalid byte sequence for encoding "UTF8":
//! 0x00`) and `jsonb` refuses `\u0000` inside strings and keys (`unsupported Unicode escape
//! sequence`). Either error aborts the caller's transaction, losing its other work. Rust
//! strings are always valid UTF-8, so NUL is the one character the database cannot take;
//! these checks find it (and, in keys, the other control characters) first and name the
//! field.

use serde_json::Value;

/// At most this many problems are listed for one payload (a payload full of NULs would
/// otherwise make an error message as large as itself).
const MAX_PROBLEMS: usize = 10;

/// Why a key (ordering key, dedupe key, header name) cannot be stored or named, if it cannot.
///
/// Control characters are refused in keys (not only NUL): the operator commands refuse them
/// in `--ordering-key`, so an event keyed with one could not be selected for a replay.
pub(crate) fn key_problem(key: &str) -> Option<String> {
    let (at, c) = key.char_indices().find(|(_, c)| c.is_control())?;
    Some(format!(
        "contains the control character {} at byte {at} (keys must be printable text)",
        describe(c)
    ))
}

/// Why a text value (a header value, a `tracestate`) cannot be stored, if it cannot.
pub(crate) fn value_problem(text: &str) -> Option<String> {
    let at = text.find('\0')?;
    Some(format!(
        "contains a NUL character (\\u0000) at byte {at}, which PostgreSQL cannot store"
    ))
}

/// Every string and key of a JSON value that PostgreSQL `jsonb` cannot store, each as
/// `<JSON Pointer>: <what is wrong>` (at most [`MAX_PROBLEMS`]).
pub(crate) fn json_problems(value: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    walk(value, &mut String::new(), &mut problems);
    problems
}

fn walk(value: &Value, path: &mut String, problems: &mut Vec<String>) {
    if problems.len() >= MAX_PROBLEMS {
        return;
    }
    match value {
        Value::String(text) => {
            if let Some(problem) = value_problem(text) {
                problems.push(format!("{}: {problem}", shown(path)));
            }
        }
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                let len = path.len();
                path.push('/');
                path.push_str(&index.to_string());
                walk(item, path, problems);
                path.truncate(len);
            }
        }
        Value::Object(fields) => {
            for (key, item) in fields {
                let len = path.len();
                path.push('/');
                push_pointer_token(path, key);
                if key.contains('\0') && problems.len() < MAX_PROBLEMS {
                    problems.push(format!(
                        "{}: the key contains a NUL character (\\u0000), which PostgreSQL cannot store",
                        shown(path)
                    ));
                }
                walk(item, path, problems);
                path.truncate(len);
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// Appends a key as a JSON Pointer token (`~` as `~0`, `/` as `~1`), control characters
/// escaped so the message stays one readable line.
fn push_pointer_token(path: &mut String, key: &str) {
    for c in key.chars() {
        match c {
            '~' => path.push_str("~0"),
            '/' => path.push_str("~1"),
            c if c.is_control() => path.push_str(&c.escape_unicode().to_string()),
            c => path.push(c),
        }
    }
}

/// The path of the payload's root is `/`, as in the schema validation's messages.
fn shown(path: &str) -> &str {
    if path.is_empty() { "/" } else { path }
}

/// A control character as people write it (`\u{0}` is shown as `\u0000`).
fn describe(c: char) -> String {
    format!("\\u{:04x}", u32::from(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_is_found_in_nested_strings_and_keys_with_its_path() {
        let value = serde_json::json!({
            "ok": "fine\n\ttabs are text",
            "a/b": {"list": ["x", "y\u{0}z"]},
            "k\u{0}": 1,
        });
        let problems = json_problems(&value);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].starts_with("/a~1b/list/1: "), "{problems:?}");
        assert!(problems[1].starts_with("/k\\u{0}: the key"), "{problems:?}");
        assert!(json_problems(&serde_json::json!({"é": "ü ✓"})).is_empty());
        assert!(json_problems(&Value::String("\0".into()))[0].starts_with("/: "));
    }

    #[test]
    fn keys_refuse_every_control_character_values_only_nul() {
        assert!(key_problem("ticket:1 ü").is_none());
        assert!(key_problem("a\nb").is_some_and(|p| p.contains("\\u000a at byte 1")));
        assert!(key_problem("\u{7f}").is_some());
        assert!(value_problem("line\nbreak").is_none());
        assert!(value_problem("nul\0").is_some_and(|p| p.contains("byte 3")));
    }

    #[test]
    fn a_payload_full_of_nuls_lists_a_bounded_number_of_problems() {
        let value = Value::Array(vec![Value::String("\0".into()); 1000]);
        assert_eq!(json_problems(&value).len(), MAX_PROBLEMS);
    }
}
