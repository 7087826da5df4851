//! A payload schema compiled into checks: the keywords schemars writes for Rust types, each
//! read once, and anything else refused with the keyword and the place it appears.

use std::collections::HashMap;

use serde_json::{Map, Number, Value};

use super::formats::{Format, Known};
use super::pattern::Pattern;

/// The JSON types a `type` keyword allows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Types(u8);

impl Types {
    const NULL: u8 = 1;
    const BOOLEAN: u8 = 2;
    const INTEGER: u8 = 4;
    const NUMBER: u8 = 8;
    const STRING: u8 = 16;
    const ARRAY: u8 = 32;
    const OBJECT: u8 = 64;

    fn bit(name: &str) -> Option<u8> {
        Some(match name {
            "null" => Self::NULL,
            "boolean" => Self::BOOLEAN,
            "integer" => Self::INTEGER,
            "number" => Self::NUMBER,
            "string" => Self::STRING,
            "array" => Self::ARRAY,
            "object" => Self::OBJECT,
            _ => return None,
        })
    }

    /// Whether a value is of one of these types (`integer`: a number without a fraction,
    /// as JSON Schema counts `1.0`).
    pub(super) fn allow(self, value: &Value) -> bool {
        let bit = match value {
            Value::Null => Self::NULL,
            Value::Bool(_) => Self::BOOLEAN,
            Value::Number(n) if is_integer(n) => Self::INTEGER | Self::NUMBER,
            Value::Number(_) => Self::NUMBER,
            Value::String(_) => Self::STRING,
            Value::Array(_) => Self::ARRAY,
            Value::Object(_) => Self::OBJECT,
        };
        self.0 & bit != 0
    }

    /// `a string`, `an object or null`.
    pub(super) fn describe(self) -> String {
        let names = [
            (Self::OBJECT, "an object"),
            (Self::ARRAY, "an array"),
            (Self::STRING, "a string"),
            (Self::INTEGER, "an integer"),
            (Self::NUMBER, "a number"),
            (Self::BOOLEAN, "a boolean"),
            (Self::NULL, "null"),
        ];
        let allowed: Vec<&str> = names
            .iter()
            .filter(|(bit, _)| self.0 & bit != 0)
            .map(|(_, name)| *name)
            .collect();
        allowed.join(" or ")
    }
}

/// Whether a JSON number is an integer in JSON Schema's sense.
pub(super) fn is_integer(number: &Number) -> bool {
    number.is_i64() || number.is_u64() || number.as_f64().is_some_and(|f| f.fract() == 0.0)
}

/// What `additionalProperties` allows of the fields `properties` does not name.
#[derive(Debug, Clone, Default)]
pub(super) enum Additional {
    /// Any field.
    #[default]
    Any,
    /// No other field (`false`).
    Refused,
    /// Fields whose values pass this schema.
    Each(Box<Node>),
}

/// A bound of `minimum`, `maximum` and their exclusive kin.
#[derive(Debug, Clone)]
pub(super) struct Bound {
    pub(super) limit: Number,
    pub(super) exclusive: bool,
}

/// One compiled (sub)schema: every keyword it holds, each checked where it applies.
#[derive(Debug, Clone, Default)]
pub(super) struct Node {
    /// `false`: nothing is valid.
    pub(super) never: bool,
    pub(super) types: Option<Types>,
    pub(super) constant: Option<Value>,
    pub(super) one_of_values: Option<Vec<Value>>,
    pub(super) reference: Option<usize>,
    pub(super) all_of: Vec<Node>,
    pub(super) any_of: Vec<Node>,
    pub(super) one_of: Vec<Node>,
    pub(super) not: Option<Box<Node>>,
    pub(super) properties: Vec<(String, Node)>,
    pub(super) required: Vec<String>,
    pub(super) additional: Additional,
    pub(super) min_properties: Option<usize>,
    pub(super) max_properties: Option<usize>,
    pub(super) items: Option<Box<Node>>,
    pub(super) min_items: Option<usize>,
    pub(super) max_items: Option<usize>,
    pub(super) unique_items: bool,
    pub(super) minimum: Option<Bound>,
    pub(super) maximum: Option<Bound>,
    pub(super) min_length: Option<usize>,
    pub(super) max_length: Option<usize>,
    pub(super) pattern: Option<Pattern>,
    pub(super) format: Option<Format>,
}

/// Keywords that only annotate: read by people and tools, never checked.
const ANNOTATIONS: &[&str] = &[
    "$schema",
    "$id",
    "$comment",
    "title",
    "description",
    "default",
    "examples",
    "deprecated",
    "readOnly",
    "writeOnly",
];

/// A schema's definitions (`$defs`), compiled, by the index a `$ref` holds.
pub(super) struct Compiled {
    pub(super) root: Node,
    pub(super) definitions: Vec<Node>,
}

/// Compiles a whole schema (its `$defs` too), or names the first keyword the validator
/// does not check, by its JSON Pointer in the schema.
pub(super) fn compile(schema: &Value) -> Result<Compiled, String> {
    let empty = Map::new();
    let defs = match schema.get("$defs") {
        None => &empty,
        Some(Value::Object(defs)) => defs,
        Some(_) => return Err("/$defs: not an object".to_owned()),
    };
    let names: HashMap<&str, usize> = defs
        .keys()
        .enumerate()
        .map(|(index, name)| (name.as_str(), index))
        .collect();
    let compiler = Compiler { names };
    let definitions = defs
        .iter()
        .map(|(name, def)| compiler.node(def, &format!("/$defs/{}", escape(name))))
        .collect::<Result<Vec<_>, _>>()?;
    let root = compiler.node(schema, "")?;
    Ok(Compiled { root, definitions })
}

/// A JSON Pointer token.
pub(super) fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

struct Compiler<'a> {
    names: HashMap<&'a str, usize>,
}

impl Compiler<'_> {
    fn node(&self, schema: &Value, at: &str) -> Result<Node, String> {
        let keywords = match schema {
            Value::Bool(true) => return Ok(Node::default()),
            Value::Bool(false) => {
                return Ok(Node {
                    never: true,
                    ..Node::default()
                });
            }
            Value::Object(keywords) => keywords,
            _ => {
                return Err(format!(
                    "{}: a schema must be an object or a boolean",
                    shown(at)
                ));
            }
        };
        let mut node = Node::default();
        for (keyword, value) in keywords {
            let here = format!("{at}/{}", escape(keyword));
            let bad = |what: &str| format!("{}: {what}", shown(&here));
            match keyword.as_str() {
                "$defs" if at.is_empty() => {}
                k if ANNOTATIONS.contains(&k) => {}
                "type" => {
                    node.types =
                        Some(types(value).ok_or_else(|| bad("not a type name or a list of them"))?)
                }
                "const" => node.constant = Some(value.clone()),
                "enum" => {
                    let values = value.as_array().ok_or_else(|| bad("not an array"))?;
                    node.one_of_values = Some(values.clone());
                }
                "$ref" => {
                    let name = value
                        .as_str()
                        .and_then(|r| r.strip_prefix("#/$defs/"))
                        .ok_or_else(|| bad("only references to this schema's `$defs` (`#/$defs/Name`) are checked"))?;
                    let name = name.replace("~1", "/").replace("~0", "~");
                    let index = self
                        .names
                        .get(name.as_str())
                        .ok_or_else(|| bad(&format!("no definition `{name}` in `$defs`")))?;
                    node.reference = Some(*index);
                }
                "allOf" | "anyOf" | "oneOf" => {
                    let branches = value
                        .as_array()
                        .filter(|b| !b.is_empty())
                        .ok_or_else(|| bad("not a non-empty array of schemas"))?;
                    let compiled = branches
                        .iter()
                        .enumerate()
                        .map(|(i, b)| self.node(b, &format!("{here}/{i}")))
                        .collect::<Result<Vec<_>, _>>()?;
                    match keyword.as_str() {
                        "allOf" => node.all_of = compiled,
                        "anyOf" => node.any_of = compiled,
                        _ => node.one_of = compiled,
                    }
                }
                "not" => node.not = Some(Box::new(self.node(value, &here)?)),
                "properties" => {
                    let fields = value.as_object().ok_or_else(|| bad("not an object"))?;
                    for (name, field) in fields {
                        let compiled = self.node(field, &format!("{here}/{}", escape(name)))?;
                        node.properties.push((name.clone(), compiled));
                    }
                }
                "required" => {
                    let names = value.as_array().ok_or_else(|| bad("not an array"))?;
                    for name in names {
                        let name = name.as_str().ok_or_else(|| bad("not an array of names"))?;
                        node.required.push(name.to_owned());
                    }
                }
                "additionalProperties" => {
                    node.additional = match value {
                        Value::Bool(true) => Additional::Any,
                        Value::Bool(false) => Additional::Refused,
                        schema => Additional::Each(Box::new(self.node(schema, &here)?)),
                    };
                }
                "items" => node.items = Some(Box::new(self.node(value, &here)?)),
                "uniqueItems" => {
                    node.unique_items = value.as_bool().ok_or_else(|| bad("not a boolean"))?;
                }
                "minimum" | "maximum" | "exclusiveMinimum" | "exclusiveMaximum" => {
                    let limit = value
                        .as_number()
                        .ok_or_else(|| bad("not a number"))?
                        .clone();
                    let bound = Some(Bound {
                        limit,
                        exclusive: keyword.starts_with("exclusive"),
                    });
                    if keyword.ends_with("inimum") {
                        node.minimum = tighter(node.minimum.take(), bound, true);
                    } else {
                        node.maximum = tighter(node.maximum.take(), bound, false);
                    }
                }
                "minLength" | "maxLength" | "minItems" | "maxItems" | "minProperties"
                | "maxProperties" => {
                    let count = value
                        .as_u64()
                        .and_then(|n| usize::try_from(n).ok())
                        .ok_or_else(|| bad("not a count (an integer of zero or more)"))?;
                    let slot = match keyword.as_str() {
                        "minLength" => &mut node.min_length,
                        "maxLength" => &mut node.max_length,
                        "minItems" => &mut node.min_items,
                        "maxItems" => &mut node.max_items,
                        "minProperties" => &mut node.min_properties,
                        _ => &mut node.max_properties,
                    };
                    *slot = Some(count);
                }
                "pattern" => {
                    let source = value.as_str().ok_or_else(|| bad("not a string"))?;
                    let pattern = Pattern::compile(source).map_err(|why| {
                        bad(&format!(
                            "the pattern `{source}` is not one the validator checks: {why}"
                        ))
                    })?;
                    node.pattern = Some(pattern);
                }
                "format" => {
                    let name = value.as_str().ok_or_else(|| bad("not a string"))?;
                    match Format::parse(name) {
                        Known::Checked(format) => node.format = Some(format),
                        Known::Annotation => {}
                        Known::Unchecked => {
                            return Err(bad(&format!(
                                "the format `{name}` is not one the validator checks (it checks uuid, date, time, date-time and the integer widths)"
                            )));
                        }
                    }
                }
                other => {
                    return Err(bad(&format!(
                        "the keyword `{other}` is not one the validator checks"
                    )));
                }
            }
        }
        Ok(node)
    }
}

/// The stricter of two bounds on one side (`minimum` with `exclusiveMinimum`, say).
fn tighter(a: Option<Bound>, b: Option<Bound>, lower: bool) -> Option<Bound> {
    match (a, b) {
        (Some(a), Some(b)) => {
            let order = super::check::compare(&a.limit, &b.limit);
            let a_wins = match order {
                std::cmp::Ordering::Equal => a.exclusive,
                std::cmp::Ordering::Greater => lower,
                std::cmp::Ordering::Less => !lower,
            };
            Some(if a_wins { a } else { b })
        }
        (a, b) => a.or(b),
    }
}

/// The types a `type` keyword names.
fn types(value: &Value) -> Option<Types> {
    match value {
        Value::String(name) => Types::bit(name).map(Types),
        Value::Array(names) => names
            .iter()
            .try_fold(0, |bits, name| Some(bits | Types::bit(name.as_str()?)?))
            .map(Types),
        _ => None,
    }
}

/// The root pointer is shown as `/`.
pub(super) fn shown(path: &str) -> &str {
    if path.is_empty() { "/" } else { path }
}
