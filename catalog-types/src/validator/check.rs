//! Applying a compiled schema to a payload: every problem, each as `<JSON Pointer>: <what is
//! wrong>`, the first few of them.

use std::cmp::Ordering;

use serde_json::{Number, Value};

use super::schema::{Additional, Bound, Compiled, Node, escape, shown};

/// At most this many problems are listed for one payload.
const MAX_PROBLEMS: usize = 10;

/// The longest excerpt of a value quoted in a problem.
const MAX_QUOTED_CHARS: usize = 60;

/// How deep checks may nest (subschemas, references, the payload's own nesting): a schema
/// whose `$ref` leads back to itself, or a payload nested deeper than any event, is refused
/// here rather than overflowing the stack.
const MAX_DEPTH: usize = 256;

/// The problems of `value` against the compiled schema (none: it is valid).
pub(super) fn problems(compiled: &Compiled, value: &Value) -> Vec<String> {
    let mut walk = Walk {
        compiled,
        problems: Vec::new(),
        depth: 0,
    };
    walk.node(&compiled.root, value, &mut String::new());
    walk.problems
}

/// Whether `value` is valid, without the messages (for `oneOf`, `anyOf` and `not`).
fn is_valid(compiled: &Compiled, node: &Node, value: &Value, depth: usize) -> bool {
    let mut walk = Walk {
        compiled,
        problems: Vec::new(),
        depth,
    };
    walk.node(node, value, &mut String::new());
    walk.problems.is_empty()
}

struct Walk<'a> {
    compiled: &'a Compiled,
    problems: Vec<String>,
    /// How many checks enclose the current one.
    depth: usize,
}

impl Walk<'_> {
    fn report(&mut self, path: &str, problem: String) {
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(format!("{}: {problem}", shown(path)));
        }
    }

    fn node(&mut self, node: &Node, value: &Value, path: &mut String) {
        if self.problems.len() >= MAX_PROBLEMS {
            return;
        }
        if self.depth >= MAX_DEPTH {
            self.report(
                path,
                format!("nested more than {MAX_DEPTH} levels deep, too deep to check"),
            );
            return;
        }
        self.depth += 1;
        self.checks(node, value, path);
        self.depth -= 1;
    }

    fn checks(&mut self, node: &Node, value: &Value, path: &mut String) {
        if node.never {
            self.report(path, "no value is allowed here".to_owned());
            return;
        }
        if let Some(types) = node.types
            && !types.allow(value)
        {
            self.report(
                path,
                format!("expected {}, found {}", types.describe(), quoted(value)),
            );
            // The other keywords would only repeat the problem in other words.
            return;
        }
        if let Some(constant) = &node.constant
            && !equal(constant, value)
        {
            self.report(
                path,
                format!("expected {constant}, found {}", quoted(value)),
            );
        }
        if let Some(allowed) = &node.one_of_values
            && !allowed.iter().any(|a| equal(a, value))
        {
            self.report(path, not_allowed(value, allowed.iter()));
        }
        if let Some(index) = node.reference {
            let compiled = self.compiled;
            self.node(&compiled.definitions[index], value, path);
        }
        for branch in &node.all_of {
            self.node(branch, value, path);
        }
        if !node.any_of.is_empty() && !node.any_of.iter().any(|b| self.valid(b, value)) {
            self.alternatives(path, value, &node.any_of, 0);
        }
        if !node.one_of.is_empty() {
            let passing = node.one_of.iter().filter(|b| self.valid(b, value)).count();
            if passing != 1 {
                self.alternatives(path, value, &node.one_of, passing);
            }
        }
        if let Some(not) = &node.not
            && self.valid(not, value)
        {
            self.report(
                path,
                format!("{} is of a form this field refuses", quoted(value)),
            );
        }
        match value {
            Value::Object(fields) => self.object(node, fields, path),
            Value::Array(items) => self.array(node, items, path),
            Value::String(text) => self.string(node, text, path),
            Value::Number(number) => self.number(node, number, path),
            Value::Null | Value::Bool(_) => {}
        }
    }

    fn valid(&self, node: &Node, value: &Value) -> bool {
        is_valid(self.compiled, node, value, self.depth)
    }

    /// A value that passes none (or, for `oneOf`, more than one) of the alternatives.
    fn alternatives(&mut self, path: &str, value: &Value, branches: &[Node], passing: usize) {
        let constants: Option<Vec<&Value>> = branches.iter().map(|b| b.constant.as_ref()).collect();
        let problem = match constants {
            Some(allowed) if passing == 0 => not_allowed(value, allowed.into_iter()),
            _ if passing == 0 => format!(
                "{} matches none of the {} forms this field allows",
                quoted(value),
                branches.len()
            ),
            _ => format!(
                "{} matches {passing} of the forms this field allows, where exactly one must",
                quoted(value)
            ),
        };
        self.report(path, problem);
    }

    fn object(&mut self, node: &Node, fields: &serde_json::Map<String, Value>, path: &mut String) {
        for name in &node.required {
            if !fields.contains_key(name) {
                let at = format!("{path}/{}", escape(name));
                self.report(&at, "missing (a required field)".to_owned());
            }
        }
        if let Some(min) = node.min_properties
            && fields.len() < min
        {
            self.report(
                path,
                format!("has {} fields, fewer than {min}", fields.len()),
            );
        }
        if let Some(max) = node.max_properties
            && fields.len() > max
        {
            self.report(
                path,
                format!("has {} fields, more than {max}", fields.len()),
            );
        }
        for (name, field) in fields {
            let len = path.len();
            path.push('/');
            path.push_str(&escape(name));
            match node.properties.iter().find(|(known, _)| known == name) {
                Some((_, schema)) => self.node(schema, field, path),
                None => match &node.additional {
                    Additional::Any => {}
                    Additional::Refused => {
                        let known: Vec<&str> =
                            node.properties.iter().map(|(n, _)| n.as_str()).collect();
                        let problem = if known.is_empty() {
                            "unknown field (this object has no fields)".to_owned()
                        } else {
                            format!("unknown field (this object has only: {})", known.join(", "))
                        };
                        self.report(path, problem);
                    }
                    Additional::Each(schema) => self.node(schema, field, path),
                },
            }
            path.truncate(len);
        }
    }

    fn array(&mut self, node: &Node, items: &[Value], path: &mut String) {
        if let Some(min) = node.min_items
            && items.len() < min
        {
            self.report(path, format!("has {} items, fewer than {min}", items.len()));
        }
        if let Some(max) = node.max_items
            && items.len() > max
        {
            self.report(path, format!("has {} items, more than {max}", items.len()));
        }
        if node.unique_items
            && let Some(second) = (1..items.len())
                .find(|&j| items[..j].iter().any(|earlier| equal(earlier, &items[j])))
        {
            let at = format!("{path}/{second}");
            self.report(
                &at,
                "repeats an earlier item (the items must be unique)".to_owned(),
            );
        }
        if let Some(schema) = &node.items {
            for (index, item) in items.iter().enumerate() {
                let len = path.len();
                path.push('/');
                path.push_str(&index.to_string());
                self.node(schema, item, path);
                path.truncate(len);
            }
        }
    }

    fn string(&mut self, node: &Node, text: &str, path: &str) {
        if node.min_length.is_some() || node.max_length.is_some() {
            let length = text.chars().count();
            if let Some(min) = node.min_length
                && length < min
            {
                self.report(path, format!("{length} characters long, fewer than {min}"));
            }
            if let Some(max) = node.max_length
                && length > max
            {
                self.report(path, format!("{length} characters long, more than {max}"));
            }
        }
        if let Some(pattern) = &node.pattern
            && !pattern.is_match(text)
        {
            self.report(
                path,
                format!(
                    "{} does not match the pattern `{}`",
                    quoted_text(text),
                    pattern.source()
                ),
            );
        }
        if let Some(format) = node.format
            && !format.holds_text(text)
        {
            self.report(
                path,
                format!("{} is not {}", quoted_text(text), format.describe()),
            );
        }
    }

    fn number(&mut self, node: &Node, number: &Number, path: &str) {
        let before = self.problems.len();
        if let Some(Bound { limit, exclusive }) = &node.minimum {
            let order = compare(number, limit);
            if order == Ordering::Less || (*exclusive && order == Ordering::Equal) {
                let than = if *exclusive { "above" } else { "at least" };
                self.report(
                    path,
                    format!("{number} is out of range: it must be {than} {limit}"),
                );
            }
        }
        if let Some(Bound { limit, exclusive }) = &node.maximum {
            let order = compare(number, limit);
            if order == Ordering::Greater || (*exclusive && order == Ordering::Equal) {
                let than = if *exclusive { "below" } else { "at most" };
                self.report(
                    path,
                    format!("{number} is out of range: it must be {than} {limit}"),
                );
            }
        }
        // An integer width after a bound it broke would say the same again.
        if let Some(format) = node.format
            && self.problems.len() == before
            && !format.holds_number(number)
        {
            self.report(path, format!("{number} is not {}", format.describe()));
        }
    }
}

/// `"fax" is not one of: "email", "portal"`.
fn not_allowed<'a>(value: &Value, allowed: impl Iterator<Item = &'a Value>) -> String {
    let allowed: Vec<String> = allowed.map(Value::to_string).collect();
    format!("{} is not one of: {}", quoted(value), allowed.join(", "))
}

/// A value as shown in a problem: its JSON, cut short.
fn quoted(value: &Value) -> String {
    match value {
        Value::String(text) => quoted_text(text),
        Value::Array(_) => "an array".to_owned(),
        Value::Object(_) => "an object".to_owned(),
        other => other.to_string(),
    }
}

fn quoted_text(text: &str) -> String {
    if text.chars().count() <= MAX_QUOTED_CHARS {
        Value::from(text).to_string()
    } else {
        let start: String = text.chars().take(MAX_QUOTED_CHARS).collect();
        format!("{}…", Value::from(start))
    }
}

/// Two numbers in order: exactly for integers, as `f64` otherwise.
pub(super) fn compare(a: &Number, b: &Number) -> Ordering {
    let integer = |n: &Number| {
        n.as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from))
    };
    match (integer(a), integer(b)) {
        (Some(a), Some(b)) => a.cmp(&b),
        _ => {
            let (a, b) = (
                a.as_f64().unwrap_or(f64::NAN),
                b.as_f64().unwrap_or(f64::NAN),
            );
            a.partial_cmp(&b).unwrap_or(Ordering::Equal)
        }
    }
}

/// JSON equality as JSON Schema reads it: numbers by value (`1` is `1.0`).
pub(super) fn equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(a), Value::Number(b)) => compare(a, b) == Ordering::Equal,
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(a, b)| equal(a, b))
        }
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len()
                && a.iter()
                    .all(|(key, value)| b.get(key).is_some_and(|other| equal(value, other)))
        }
        (a, b) => a == b,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::validator::Validator;

    fn problems(schema: serde_json::Value, value: serde_json::Value) -> Vec<String> {
        Validator::new(&schema)
            .unwrap_or_else(|e| panic!("{e}"))
            .problems(&value)
    }

    #[test]
    fn each_problem_names_its_field_path_and_what_is_wrong() {
        let schema = json!({
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "id": {"type": "string", "format": "uuid"},
                "at": {"type": "string", "format": "date-time"},
                "kind": {"$ref": "#/$defs/Kind"},
                "count": {"type": "integer", "format": "uint16", "minimum": 0},
                "tags": {"type": ["array", "null"], "items": {"type": "string", "maxLength": 3}},
                "empty": {"type": "object", "additionalProperties": false}
            },
            "required": ["id", "kind"],
            "$defs": {"Kind": {"oneOf": [{"const": "user"}, {"const": "team"}]}}
        });
        let value = json!({
            "at": "2026-01-15 09:30:00Z",
            "kind": "robot",
            "count": 70000,
            "tags": ["ok", "toolong", 7],
            "empty": {"x": 1},
            "extra": true
        });
        assert_eq!(
            problems(schema, value),
            [
                "/id: missing (a required field)",
                "/at: \"2026-01-15 09:30:00Z\" is not an RFC 3339 date-time (YYYY-MM-DDTHH:MM:SSZ or with an offset)",
                "/kind: \"robot\" is not one of: \"user\", \"team\"",
                "/count: 70000 is not an integer from 0 to 65535",
                "/tags/1: 7 characters long, more than 3",
                "/tags/2: expected a string, found 7",
                "/empty/x: unknown field (this object has no fields)",
                "/extra: unknown field (this object has only: id, at, kind, count, tags, empty)",
            ]
        );
    }

    #[test]
    fn a_reference_back_to_itself_is_refused_not_followed_forever() {
        let schema = json!({"$ref": "#/$defs/A", "$defs": {"A": {"$ref": "#/$defs/A"}}});
        let refused = problems(schema, json!({}));
        assert_eq!(
            refused,
            ["/: nested more than 256 levels deep, too deep to check"]
        );
    }

    #[test]
    fn a_payload_full_of_problems_lists_the_first_ten() {
        let schema = json!({"type": "object", "additionalProperties": false});
        let value: serde_json::Map<String, serde_json::Value> =
            (0..50).map(|i| (format!("f{i}"), json!(i))).collect();
        assert_eq!(problems(schema, value.into()).len(), 10);
    }
}
