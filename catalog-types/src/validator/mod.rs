//! The producer's payload validator: a payload schema (Draft 2020-12, as schemars writes it
//! for Rust types) compiled once into checks, then applied to each untyped payload.
//!
//! It checks what those schemas say: `type`, `properties`, `required`,
//! `additionalProperties`, `items`, `const`, `enum`, `$ref` to the schema's `$defs`,
//! `allOf`/`anyOf`/`oneOf`/`not`, the bounds of numbers, lengths and counts,
//! `uniqueItems`, the formats `uuid`, `date`, `time` and `date-time`, the integer widths
//! schemars names as formats (`uint32`…), and `pattern`s made of single-character items
//! with repetitions (`^[A-Z]{3}$`). A schema holding anything else is refused when it is
//! compiled (naming the keyword and where it is), so a payload is never checked less than
//! its schema says. A test of the crate holds this validator to a full JSON Schema
//! implementation on every catalog event, valid and broken payloads alike.

mod check;
mod formats;
mod pattern;
mod schema;

use serde_json::Value;

/// A compiled payload schema.
pub(crate) struct Validator {
    compiled: schema::Compiled,
}

impl std::fmt::Debug for Validator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Validator").finish_non_exhaustive()
    }
}

impl Validator {
    /// Compiles a schema, or says (with its JSON Pointer in the schema) which keyword the
    /// validator does not check.
    pub(crate) fn new(schema: &Value) -> Result<Self, String> {
        Ok(Validator {
            compiled: schema::compile(schema)?,
        })
    }

    /// Every problem of the payload (at most a few), each `<JSON Pointer>: <what is
    /// wrong>`; none when it is valid.
    pub(crate) fn problems(&self, payload: &Value) -> Vec<String> {
        check::problems(&self.compiled, payload)
    }
}
