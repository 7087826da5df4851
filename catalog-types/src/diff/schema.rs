//! Compares two payload schemas field by field, following `$ref`s on each side, and
//! classifies each difference (see the module above for the rule).

use std::collections::{BTreeSet, HashSet};
use std::sync::LazyLock;

use serde_json::{Map, Value};

use super::{Change, ChangeKind};

/// Every difference between the payload schemas `old` and `new`.
pub(super) fn compare(old: &Value, new: &Value) -> Vec<Change> {
    let mut walk = Walk {
        old_root: old,
        new_root: new,
        visiting: HashSet::new(),
        changes: Vec::new(),
    };
    walk.node(old, new, "");
    walk.changes
}

/// Whether two schemas accept the same payloads (descriptions and `$ref` layout aside).
pub(super) fn same_shape(a: &Value, b: &Value) -> bool {
    shape(a, a, 0) == shape(b, b, 0)
}

/// Keywords that document and never change what is valid.
const ANNOTATIONS: [&str; 11] = [
    "description",
    "title",
    "examples",
    "$comment",
    "$schema",
    "$id",
    "$defs",
    "definitions",
    "deprecated",
    "readOnly",
    "writeOnly",
];

/// A schema with its `$ref`s inlined (down to a depth, for recursive ones) and its
/// annotations dropped: equal exactly when two schemas accept the same payloads the same
/// way.
fn shape(root: &Value, node: &Value, depth: usize) -> Value {
    let node = resolve(root, node);
    match node {
        Value::Object(map) => {
            let mut out = Map::new();
            for (key, value) in map {
                if ANNOTATIONS.contains(&key.as_str()) || key == "$ref" {
                    continue;
                }
                let value = if depth > 16 {
                    value.clone()
                } else if key == "properties" || key == "patternProperties" {
                    match value {
                        Value::Object(properties) => Value::Object(
                            properties
                                .iter()
                                .map(|(k, v)| (k.clone(), shape(root, v, depth + 1)))
                                .collect(),
                        ),
                        other => other.clone(),
                    }
                } else if key == "required" || key == "enum" {
                    // Order carries no meaning.
                    match value {
                        Value::Array(items) => {
                            let mut items: Vec<String> =
                                items.iter().map(Value::to_string).collect();
                            items.sort();
                            Value::from(items)
                        }
                        other => other.clone(),
                    }
                } else {
                    shape_any(root, value, depth + 1)
                };
                out.insert(key.clone(), value);
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

fn shape_any(root: &Value, value: &Value, depth: usize) -> Value {
    match value {
        Value::Object(_) => shape(root, value, depth),
        Value::Array(items) => {
            Value::Array(items.iter().map(|v| shape_any(root, v, depth)).collect())
        }
        other => other.clone(),
    }
}

/// The node a local `$ref` points at (following chains), or the node itself. A `$ref`
/// with sibling constraints is kept as is.
fn resolve<'a>(root: &'a Value, mut node: &'a Value) -> &'a Value {
    for _ in 0..32 {
        let Some(map) = node.as_object() else {
            return node;
        };
        let Some(reference) = map.get("$ref").and_then(Value::as_str) else {
            return node;
        };
        if map
            .keys()
            .any(|k| k != "$ref" && !ANNOTATIONS.contains(&k.as_str()))
        {
            return node;
        }
        let Some(target) = reference
            .strip_prefix('#')
            .and_then(|pointer| root.pointer(pointer))
        else {
            return node;
        };
        node = target;
    }
    node
}

struct Walk<'a> {
    old_root: &'a Value,
    new_root: &'a Value,
    /// `$ref` pairs being compared, so recursive schemas end.
    visiting: HashSet<(String, String)>,
    changes: Vec<Change>,
}

impl<'a> Walk<'a> {
    fn push(&mut self, kind: ChangeKind, path: &str, breaking: bool, detail: String) {
        self.changes.push(Change::new(kind, path, breaking, detail));
    }

    /// Compares one node of each schema (a field's schema, an item's, a map value's ...).
    fn node(&mut self, old: &'a Value, new: &'a Value, path: &str) {
        let refs = (ref_of(old), ref_of(new));
        if let (Some(a), Some(b)) = &refs
            && !self.visiting.insert((a.clone(), b.clone()))
        {
            return;
        }
        self.node_resolved(old, new, path);
        if let (Some(a), Some(b)) = refs {
            self.visiting.remove(&(a, b));
        }
    }

    fn node_resolved(&mut self, old_raw: &'a Value, new_raw: &'a Value, path: &str) {
        if !path.is_empty() {
            let old_doc = description(self.old_root, old_raw);
            let new_doc = description(self.new_root, new_raw);
            if old_doc != new_doc {
                self.push(
                    ChangeKind::DescriptionChanged,
                    path,
                    false,
                    "description changed".to_owned(),
                );
            }
        }
        let old = resolve(self.old_root, old_raw);
        let new = resolve(self.new_root, new_raw);
        if shape(self.old_root, old, 0) == shape(self.new_root, new, 0) {
            // Same accepted payloads: only descriptions inside may differ.
            self.descriptions_inside(old, new, path);
            return;
        }
        let (old, old_null) = nullable(self.old_root, old);
        let (new, new_null) = nullable(self.new_root, new);

        if let (Some(old_values), Some(new_values)) = (
            enumeration(self.old_root, old, old_null),
            enumeration(self.new_root, new, new_null),
        ) {
            self.enumerations(&old_values, &new_values, path);
            return;
        }

        let (Some(mut old_types), Some(mut new_types)) =
            (types(self.old_root, old), types(self.new_root, new))
        else {
            self.push(
                ChangeKind::SchemaChanged,
                path,
                true,
                "the schema changed in a way this comparison cannot prove compatible".to_owned(),
            );
            return;
        };
        if old_null {
            old_types.insert("null".to_owned());
        }
        if new_null {
            new_types.insert("null".to_owned());
        }
        if old_types != new_types {
            let describe =
                |set: &BTreeSet<String>| set.iter().cloned().collect::<Vec<_>>().join(" | ");
            if covers(&new_types, &old_types) {
                self.push(
                    ChangeKind::TypeWidened,
                    path,
                    false,
                    format!("type {} → {}", describe(&old_types), describe(&new_types)),
                );
            } else {
                self.push(
                    ChangeKind::TypeChanged,
                    path,
                    true,
                    format!("type {} → {}", describe(&old_types), describe(&new_types)),
                );
                return;
            }
        }
        // An enumeration on one side only: a free value became a closed set (narrowed) or
        // the other way round (widened).
        match (
            enumeration(self.old_root, old, old_null),
            enumeration(self.new_root, new, new_null),
        ) {
            (None, Some(values)) => {
                self.push(
                    ChangeKind::TypeChanged,
                    path,
                    true,
                    format!("now restricted to {}", values.join(", ")),
                );
                return;
            }
            (Some(values), None) => {
                self.push(
                    ChangeKind::TypeWidened,
                    path,
                    false,
                    format!("no longer restricted to {}", values.join(", ")),
                );
                return;
            }
            _ => {}
        }
        if old_types.contains("any") || new_types.contains("any") {
            return;
        }
        self.constraints(old, new, path);
        if old_types.contains("object") && new_types.contains("object") {
            self.object(old, new, path);
        }
        if old_types.contains("array") && new_types.contains("array") {
            self.array(old, new, path);
        }
    }

    /// Schemas that accept the same payloads: report the descriptions that changed inside.
    fn descriptions_inside(&mut self, old: &'a Value, new: &'a Value, path: &str) {
        let (old, _) = nullable(self.old_root, old);
        let (new, _) = nullable(self.new_root, new);
        if let (Some(old_props), Some(new_props)) = (properties(old), properties(new)) {
            for (name, old_field) in old_props {
                if let Some(new_field) = new_props.get(name) {
                    self.node(old_field, new_field, &join(path, name));
                }
            }
        }
        if let (Some(old_items), Some(new_items)) = (old.get("items"), new.get("items")) {
            self.node(old_items, new_items, &format!("{path}[]"));
        }
        if let (Some(a @ Value::Object(_)), Some(b @ Value::Object(_))) = (
            old.get("additionalProperties"),
            new.get("additionalProperties"),
        ) {
            self.node(a, b, &format!("{path}{{}}"));
        }
    }

    fn enumerations(&mut self, old: &[String], new: &[String], path: &str) {
        for value in old.iter().filter(|v| !new.contains(v)) {
            self.push(
                ChangeKind::EnumValueRemoved,
                path,
                true,
                format!("enum value {value} removed"),
            );
        }
        for value in new.iter().filter(|v| !old.contains(v)) {
            self.push(
                ChangeKind::EnumValueAdded,
                path,
                false,
                format!("enum value {value} added"),
            );
        }
    }

    fn object(&mut self, old: &'a Value, new: &'a Value, path: &str) {
        static NONE: LazyLock<Map<String, Value>> = LazyLock::new(Map::new);
        let old_props = properties(old).unwrap_or(&NONE);
        let new_props = properties(new).unwrap_or(&NONE);
        let old_required = required(old);
        let new_required = required(new);

        let mut removed: Vec<&String> = old_props
            .keys()
            .filter(|k| !new_props.contains_key(*k))
            .collect();
        let mut added: Vec<&String> = new_props
            .keys()
            .filter(|k| !old_props.contains_key(*k))
            .collect();

        // A field gone and one of the same shape new: report it as a rename.
        removed.retain(|gone| {
            let old_shape = shape(self.old_root, &old_props[*gone], 0);
            let Some(position) = added
                .iter()
                .position(|candidate| shape(self.new_root, &new_props[*candidate], 0) == old_shape)
            else {
                return true;
            };
            let to = added.remove(position);
            self.changes.push(Change::new(
                ChangeKind::FieldRenamed,
                &join(path, gone),
                true,
                format!("field removed; renamed to `{to}`?"),
            ));
            if new_required.contains(to.as_str()) {
                self.changes.push(Change::new(
                    ChangeKind::FieldAdded,
                    &join(path, to),
                    true,
                    "required field added".to_owned(),
                ));
            }
            false
        });
        for gone in removed {
            self.push(
                ChangeKind::FieldRemoved,
                &join(path, gone),
                true,
                "field removed".to_owned(),
            );
        }
        for new_field in added {
            let required = new_required.contains(new_field.as_str());
            self.push(
                ChangeKind::FieldAdded,
                &join(path, new_field),
                required,
                if required {
                    "required field added: payloads without it are refused"
                } else {
                    "optional field added"
                }
                .to_owned(),
            );
        }
        for (name, old_field) in old_props {
            let Some(new_field) = new_props.get(name) else {
                continue;
            };
            let field_path = join(path, name);
            match (
                old_required.contains(name.as_str()),
                new_required.contains(name.as_str()),
            ) {
                (false, true) => self.push(
                    ChangeKind::BecameRequired,
                    &field_path,
                    true,
                    "optional → required: payloads without it are refused".to_owned(),
                ),
                (true, false) => self.push(
                    ChangeKind::BecameOptional,
                    &field_path,
                    false,
                    "required → optional".to_owned(),
                ),
                _ => {}
            }
            self.node(old_field, new_field, &field_path);
        }

        let extras = |node: &'a Value| -> Extras<'a> {
            match node.get("additionalProperties") {
                None | Some(Value::Bool(true)) => Extras::Any,
                Some(Value::Bool(false)) => Extras::None,
                Some(schema) => Extras::Schema(schema),
            }
        };
        let map_path = format!("{path}{{}}");
        match (extras(old), extras(new)) {
            (Extras::Any, Extras::Any) | (Extras::None, Extras::None) => {}
            (Extras::Schema(a), Extras::Schema(b)) => self.node(a, b, &map_path),
            (Extras::None, _) | (Extras::Schema(_), Extras::Any) => self.push(
                ChangeKind::ExtraFieldsAllowed,
                path,
                false,
                "fields beyond the listed ones are now accepted".to_owned(),
            ),
            (_, Extras::None) | (Extras::Any, Extras::Schema(_)) => self.push(
                ChangeKind::ExtraFieldsRefused,
                path,
                true,
                "fields beyond the listed ones are now refused or constrained".to_owned(),
            ),
        }
    }

    fn array(&mut self, old: &'a Value, new: &'a Value, path: &str) {
        let items_path = format!("{path}[]");
        match (old.get("items"), new.get("items")) {
            (Some(a), Some(b)) => self.node(a, b, &items_path),
            (None, None) => {}
            (Some(_), None) => self.push(
                ChangeKind::TypeWidened,
                &items_path,
                false,
                "items are no longer constrained".to_owned(),
            ),
            (None, Some(_)) => self.push(
                ChangeKind::TypeChanged,
                &items_path,
                true,
                "items are now constrained".to_owned(),
            ),
        }
        if shape(
            self.old_root,
            old.get("prefixItems").unwrap_or(&Value::Null),
            0,
        ) != shape(
            self.new_root,
            new.get("prefixItems").unwrap_or(&Value::Null),
            0,
        ) {
            self.push(
                ChangeKind::SchemaChanged,
                path,
                true,
                "tuple items (`prefixItems`) changed".to_owned(),
            );
        }
    }

    /// Format, pattern, bounds and lengths.
    fn constraints(&mut self, old: &Value, new: &Value, path: &str) {
        let text =
            |node: &Value, key: &str| node.get(key).and_then(Value::as_str).map(str::to_owned);
        let old_format = text(old, "format");
        let new_format = text(new, "format");
        if old_format != new_format {
            let breaking = match (&old_format, &new_format) {
                (_, None) => false,
                (Some(a), Some(b)) => !format_widens(a, b),
                (None, Some(_)) => true,
            };
            self.push(
                ChangeKind::ConstraintChanged,
                path,
                breaking,
                format!(
                    "format {} → {}",
                    old_format.as_deref().unwrap_or("none"),
                    new_format.as_deref().unwrap_or("none")
                ),
            );
        }
        for keyword in ["pattern", "contentEncoding"] {
            let (a, b) = (text(old, keyword), text(new, keyword));
            if a != b {
                self.push(
                    ChangeKind::ConstraintChanged,
                    path,
                    b.is_some(),
                    format!(
                        "{keyword} {} → {}",
                        a.as_deref().unwrap_or("none"),
                        b.as_deref().unwrap_or("none")
                    ),
                );
            }
        }
        // Lower bounds: raising one refuses values; upper bounds: lowering one does.
        let lower = [
            "minimum",
            "exclusiveMinimum",
            "minLength",
            "minItems",
            "minProperties",
        ];
        let upper = [
            "maximum",
            "exclusiveMaximum",
            "maxLength",
            "maxItems",
            "maxProperties",
        ];
        for (keyword, is_lower) in lower
            .iter()
            .map(|k| (k, true))
            .chain(upper.iter().map(|k| (k, false)))
        {
            let (a, b) = (
                old.get(*keyword).and_then(Value::as_f64),
                new.get(*keyword).and_then(Value::as_f64),
            );
            let breaking = match (a, b) {
                (None, None) => continue,
                (Some(a), Some(b)) if a == b => continue,
                (_, None) => false,
                (None, Some(_)) => true,
                (Some(a), Some(b)) => {
                    if is_lower {
                        b > a
                    } else {
                        b < a
                    }
                }
            };
            let show = |v: Option<f64>| v.map_or("none".to_owned(), |v| v.to_string());
            self.push(
                ChangeKind::ConstraintChanged,
                path,
                breaking,
                format!("{keyword} {} → {}", show(a), show(b)),
            );
        }
        for keyword in ["multipleOf", "uniqueItems"] {
            if old.get(keyword) != new.get(keyword) {
                let breaking = new.get(keyword).is_some_and(|v| v != &Value::Bool(false));
                self.push(
                    ChangeKind::ConstraintChanged,
                    path,
                    breaking,
                    format!("{keyword} changed"),
                );
            }
        }
    }
}

enum Extras<'a> {
    Any,
    None,
    Schema(&'a Value),
}

fn ref_of(node: &Value) -> Option<String> {
    node.get("$ref").and_then(Value::as_str).map(str::to_owned)
}

/// A node's own description, else the one of what its `$ref` points at.
fn description<'a>(root: &'a Value, node: &'a Value) -> Option<&'a str> {
    node.get("description").and_then(Value::as_str).or_else(|| {
        resolve(root, node)
            .get("description")
            .and_then(Value::as_str)
    })
}

fn properties(node: &Value) -> Option<&Map<String, Value>> {
    node.get("properties").and_then(Value::as_object)
}

fn required(node: &Value) -> BTreeSet<&str> {
    node.get("required")
        .and_then(Value::as_array)
        .map(|list| list.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_owned()
    } else {
        format!("{path}.{field}")
    }
}

/// Splits `anyOf`/`oneOf` `[X, {"type": "null"}]` (an optional struct or enum) into X and
/// "null allowed".
fn nullable<'a>(root: &'a Value, node: &'a Value) -> (&'a Value, bool) {
    for keyword in ["anyOf", "oneOf"] {
        if let Some(branches) = node.get(keyword).and_then(Value::as_array) {
            let is_null = |b: &Value| b.get("type").and_then(Value::as_str) == Some("null");
            let others: Vec<&Value> = branches.iter().filter(|b| !is_null(b)).collect();
            if others.len() == 1 && others.len() < branches.len() {
                return (resolve(root, others[0]), true);
            }
        }
    }
    (node, false)
}

/// The values of an enumeration (`enum`, `const`, or a `oneOf`/`anyOf` of `const`s), as
/// JSON text.
fn enumeration(root: &Value, node: &Value, null_allowed: bool) -> Option<Vec<String>> {
    let mut values: Vec<String> = if let Some(list) = node.get("enum").and_then(Value::as_array) {
        list.iter().map(Value::to_string).collect()
    } else if let Some(value) = node.get("const") {
        vec![value.to_string()]
    } else {
        let branches = node
            .get("oneOf")
            .or_else(|| node.get("anyOf"))
            .and_then(Value::as_array)?;
        let mut values = Vec::new();
        for branch in branches {
            let branch = resolve(root, branch);
            if let Some(value) = branch.get("const") {
                values.push(value.to_string());
            } else if let Some(list) = branch.get("enum").and_then(Value::as_array) {
                values.extend(list.iter().map(Value::to_string));
            } else if branch.get("type").and_then(Value::as_str) == Some("null") {
                values.push("null".to_owned());
            } else {
                return None;
            }
        }
        values
    };
    if null_allowed && !values.iter().any(|v| v == "null") {
        values.push("null".to_owned());
    }
    Some(values)
}

/// The JSON types a node accepts; `any` when it does not say; `None` when it is a union or
/// combination this comparison does not take apart.
fn types(_root: &Value, node: &Value) -> Option<BTreeSet<String>> {
    let Some(map) = node.as_object() else {
        return match node {
            Value::Bool(true) => Some(BTreeSet::from(["any".to_owned()])),
            _ => None,
        };
    };
    if ["oneOf", "anyOf", "allOf", "not", "if", "$ref"]
        .iter()
        .any(|k| map.contains_key(*k))
    {
        return None;
    }
    let mut set = BTreeSet::new();
    match map.get("type") {
        Some(Value::String(t)) => {
            set.insert(t.clone());
        }
        Some(Value::Array(list)) => {
            for t in list {
                set.insert(t.as_str()?.to_owned());
            }
        }
        Some(_) => return None,
        None if map.contains_key("properties") || map.contains_key("additionalProperties") => {
            set.insert("object".to_owned());
        }
        None if map.contains_key("items") || map.contains_key("prefixItems") => {
            set.insert("array".to_owned());
        }
        None if map.contains_key("enum") || map.contains_key("const") => {
            let values = map
                .get("enum")
                .and_then(Value::as_array)
                .cloned()
                .or_else(|| map.get("const").map(|v| vec![v.clone()]))
                .unwrap_or_default();
            for value in values {
                set.insert(json_type(&value).to_owned());
            }
        }
        None => {
            set.insert("any".to_owned());
        }
    }
    if map.get("nullable") == Some(&Value::Bool(true)) {
        set.insert("null".to_owned());
    }
    Some(set)
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Whether the types `wide` accept every value of the types `narrow`.
fn covers(wide: &BTreeSet<String>, narrow: &BTreeSet<String>) -> bool {
    wide.contains("any")
        || narrow
            .iter()
            .all(|t| wide.contains(t) || (t == "integer" && wide.contains("number")))
}

/// Whether the numeric format `to` holds every value of `from` (`int32` → `int64`).
fn format_widens(from: &str, to: &str) -> bool {
    let range = |format: &str| -> Option<(f64, f64)> {
        Some(match format {
            "int8" => (-128.0, 127.0),
            "int16" => (-32_768.0, 32_767.0),
            "int32" => (-2_147_483_648.0, 2_147_483_647.0),
            "int64" => (-9.223_372_036_854_776e18, 9.223_372_036_854_776e18),
            "uint8" => (0.0, 255.0),
            "uint16" => (0.0, 65_535.0),
            "uint32" => (0.0, 4_294_967_295.0),
            "uint64" => (0.0, 1.844_674_407_370_955_2e19),
            "float" => (-f64::from(f32::MAX), f64::from(f32::MAX)),
            "double" => (f64::MIN, f64::MAX),
            _ => return None,
        })
    };
    match (range(from), range(to)) {
        (Some((a_low, a_high)), Some((b_low, b_high))) => b_low <= a_low && b_high >= a_high,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn changes(old: Value, new: Value) -> Vec<(ChangeKind, String, bool)> {
        compare(&old, &new)
            .into_iter()
            .map(|c| (c.kind, c.path, c.breaking))
            .collect()
    }

    fn object(fields: Value, required: &[&str]) -> Value {
        json!({"type": "object", "additionalProperties": false, "properties": fields, "required": required})
    }

    #[test]
    fn identical_schemas_have_no_changes() {
        let schema = object(json!({"a": {"type": "string"}}), &["a"]);
        assert!(changes(schema.clone(), schema).is_empty());
    }

    #[test]
    fn moving_a_definition_behind_a_ref_changes_nothing() {
        let inline = object(
            json!({"a": {"type": "object", "properties": {"x": {"type": "string"}}}}),
            &["a"],
        );
        let mut by_ref = object(json!({"a": {"$ref": "#/$defs/A"}}), &["a"]);
        by_ref["$defs"] = json!({"A": {"type": "object", "properties": {"x": {"type": "string"}}}});
        assert!(changes(inline, by_ref).is_empty());
    }

    #[test]
    fn removed_renamed_and_added_fields() {
        let old = object(
            json!({"a": {"type": "string"}, "b": {"type": "integer"}, "c": {"type": "boolean"}}),
            &["a", "b"],
        );
        let new = object(
            json!({"a": {"type": "string"}, "bee": {"type": "integer"}, "d": {"type": "string"}, "e": {"type": "string"}}),
            &["a", "bee", "e"],
        );
        let found = changes(old, new);
        assert!(
            found.contains(&(ChangeKind::FieldRenamed, "b".to_owned(), true)),
            "{found:?}"
        );
        assert!(
            found.contains(&(ChangeKind::FieldRemoved, "c".to_owned(), true)),
            "{found:?}"
        );
        assert!(
            found.contains(&(ChangeKind::FieldAdded, "d".to_owned(), false)),
            "{found:?}"
        );
        assert!(
            found.contains(&(ChangeKind::FieldAdded, "e".to_owned(), true)),
            "{found:?}"
        );
        // `bee` is the rename target: required, so also reported as a required addition.
        assert!(
            found.contains(&(ChangeKind::FieldAdded, "bee".to_owned(), true)),
            "{found:?}"
        );
    }

    #[test]
    fn required_and_optional() {
        let old = object(
            json!({"a": {"type": "string"}, "b": {"type": "string"}}),
            &["a"],
        );
        let new = object(
            json!({"a": {"type": "string"}, "b": {"type": "string"}}),
            &["b"],
        );
        assert_eq!(
            changes(old, new),
            vec![
                (ChangeKind::BecameOptional, "a".to_owned(), false),
                (ChangeKind::BecameRequired, "b".to_owned(), true)
            ]
        );
    }

    #[test]
    fn an_option_made_required_is_one_breaking_change_and_the_reverse_two_compatible_ones() {
        let optional = object(
            json!({"a": {"type": ["string", "null"], "format": "uuid"}}),
            &[],
        );
        let required = object(json!({"a": {"type": "string", "format": "uuid"}}), &["a"]);
        let found = changes(optional.clone(), required.clone());
        assert!(
            found.contains(&(ChangeKind::BecameRequired, "a".to_owned(), true)),
            "{found:?}"
        );
        assert!(
            found.contains(&(ChangeKind::TypeChanged, "a".to_owned(), true)),
            "{found:?}"
        );
        let found = changes(required, optional);
        assert_eq!(
            found,
            vec![
                (ChangeKind::BecameOptional, "a".to_owned(), false),
                (ChangeKind::TypeWidened, "a".to_owned(), false)
            ]
        );
    }

    #[test]
    fn type_changes_and_widenings() {
        let of = |t: Value| object(json!({"a": {"type": t}}), &["a"]);
        assert_eq!(
            changes(of(json!("string")), of(json!("integer"))),
            vec![(ChangeKind::TypeChanged, "a".to_owned(), true)]
        );
        assert_eq!(
            changes(of(json!("integer")), of(json!("number"))),
            vec![(ChangeKind::TypeWidened, "a".to_owned(), false)]
        );
        assert_eq!(
            changes(of(json!("number")), of(json!("integer"))),
            vec![(ChangeKind::TypeChanged, "a".to_owned(), true)]
        );
        assert_eq!(
            changes(of(json!(["string", "null"])), of(json!("string"))),
            vec![(ChangeKind::TypeChanged, "a".to_owned(), true)]
        );
    }

    #[test]
    fn enum_values_removed_and_added() {
        let def = |values: &[&str]| {
            let branches: Vec<Value> = values
                .iter()
                .map(|v| json!({"type": "string", "const": v, "description": "x"}))
                .collect();
            let mut schema = object(json!({"e": {"$ref": "#/$defs/E"}}), &["e"]);
            schema["$defs"] = json!({"E": {"oneOf": branches}});
            schema
        };
        assert_eq!(
            changes(def(&["a", "b"]), def(&["a", "c"])),
            vec![
                (ChangeKind::EnumValueRemoved, "e".to_owned(), true),
                (ChangeKind::EnumValueAdded, "e".to_owned(), false)
            ]
        );
        // Plain `enum` lists too, and a string that became an enum narrowed.
        let plain =
            |values: Value| object(json!({"e": {"type": "string", "enum": values}}), &["e"]);
        assert_eq!(
            changes(plain(json!(["a"])), plain(json!(["a", "b"]))),
            vec![(ChangeKind::EnumValueAdded, "e".to_owned(), false)]
        );
        let free = object(json!({"e": {"type": "string"}}), &["e"]);
        assert_eq!(
            changes(free.clone(), plain(json!(["a"]))),
            vec![(ChangeKind::TypeChanged, "e".to_owned(), true)]
        );
        assert_eq!(
            changes(plain(json!(["a"])), free),
            vec![(ChangeKind::TypeWidened, "e".to_owned(), false)]
        );
    }

    #[test]
    fn nested_objects_arrays_and_maps_are_compared_with_their_paths() {
        let mut old = object(
            json!({
                "to": {"type": "array", "items": {"$ref": "#/$defs/Address"}},
                "changes": {"type": "object", "additionalProperties": {"$ref": "#/$defs/Change"}},
                "body": {"type": "object", "properties": {"text": {"type": "string"}}, "additionalProperties": false}
            }),
            &["to"],
        );
        old["$defs"] = json!({
            "Address": {"type": "object", "properties": {"email": {"type": "string"}, "name": {"type": "string"}}, "required": ["email"]},
            "Change": {"type": "object", "properties": {"previous": true, "new": true}, "required": ["previous", "new"]}
        });
        let mut new = old.clone();
        new["$defs"]["Address"]["properties"]
            .as_object_mut()
            .map(|p| p.remove("name"));
        new["$defs"]["Change"]["required"] = json!(["previous", "new", "at"]);
        new["$defs"]["Change"]["properties"]["at"] = json!({"type": "string"});
        new["properties"]["body"]["properties"]["text"] = json!({"type": "integer"});
        let found = changes(old, new);
        assert!(
            found.contains(&(ChangeKind::FieldRemoved, "to[].name".to_owned(), true)),
            "{found:?}"
        );
        assert!(
            found.contains(&(ChangeKind::FieldAdded, "changes{}.at".to_owned(), true)),
            "{found:?}"
        );
        assert!(
            found.contains(&(ChangeKind::TypeChanged, "body.text".to_owned(), true)),
            "{found:?}"
        );
    }

    #[test]
    fn descriptions_and_constraints() {
        let of = |field: Value| object(json!({"a": field}), &["a"]);
        assert_eq!(
            changes(
                of(json!({"type": "string", "description": "old"})),
                of(json!({"type": "string", "description": "new"}))
            ),
            vec![(ChangeKind::DescriptionChanged, "a".to_owned(), false)]
        );
        assert_eq!(
            changes(
                of(json!({"type": "string"})),
                of(json!({"type": "string", "format": "uuid"}))
            ),
            vec![(ChangeKind::ConstraintChanged, "a".to_owned(), true)]
        );
        assert_eq!(
            changes(
                of(json!({"type": "string", "format": "uuid"})),
                of(json!({"type": "string"}))
            ),
            vec![(ChangeKind::ConstraintChanged, "a".to_owned(), false)]
        );
        assert_eq!(
            changes(
                of(json!({"type": "integer", "format": "uint32", "minimum": 0})),
                of(json!({"type": "integer", "format": "int64"}))
            ),
            vec![
                (ChangeKind::ConstraintChanged, "a".to_owned(), false),
                (ChangeKind::ConstraintChanged, "a".to_owned(), false)
            ]
        );
        assert_eq!(
            changes(
                of(json!({"type": "integer", "minimum": 0})),
                of(json!({"type": "integer", "minimum": 1}))
            ),
            vec![(ChangeKind::ConstraintChanged, "a".to_owned(), true)]
        );
    }

    #[test]
    fn closing_an_object_breaks_and_opening_it_does_not() {
        let closed = object(json!({"a": {"type": "string"}}), &["a"]);
        let mut open = closed.clone();
        open.as_object_mut()
            .map(|o| o.remove("additionalProperties"));
        assert_eq!(
            changes(closed.clone(), open.clone()),
            vec![(ChangeKind::ExtraFieldsAllowed, String::new(), false)]
        );
        assert_eq!(
            changes(open, closed),
            vec![(ChangeKind::ExtraFieldsRefused, String::new(), true)]
        );
    }

    #[test]
    fn recursive_schemas_end() {
        let mut schema = object(json!({"node": {"$ref": "#/$defs/Node"}}), &["node"]);
        schema["$defs"] = json!({"Node": {"type": "object", "properties": {"children": {"type": "array", "items": {"$ref": "#/$defs/Node"}}}}});
        let mut new = schema.clone();
        new["$defs"]["Node"]["properties"]["label"] = json!({"type": "string"});
        let found = changes(schema, new);
        assert!(
            found.contains(&(ChangeKind::FieldAdded, "node.label".to_owned(), false)),
            "{found:?}"
        );
    }
}
