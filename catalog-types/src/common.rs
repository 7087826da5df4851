//! Value types shared by many payloads.

#[cfg(feature = "schemars")]
use std::borrow::Cow;
use std::collections::BTreeMap;

#[cfg(feature = "schemars")]
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// The before/after of one changed field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct FieldChange {
    /// The value before the change (any JSON).
    pub previous: serde_json::Value,
    /// The value after the change (any JSON).
    pub new: serde_json::Value,
}

/// A normalised `changes` object: `{ "<field>": { "previous": any, "new": any } }`.
pub type Changes = BTreeMap<String, FieldChange>;

/// An e-mail address with an optional display name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "schemars",
    derive(JsonSchema),
    schemars(deny_unknown_fields)
)]
pub struct EmailAddress {
    /// The address, e.g. `jane@example.com`.
    pub email: String,
    /// The display name, e.g. `Jane Doe`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl EmailAddress {
    /// An address without a display name.
    pub fn new(email: impl Into<String>) -> Self {
        EmailAddress {
            email: email.into(),
            name: None,
        }
    }
}

/// An ISO 4217 currency code: three upper-case ASCII letters (`USD`, `EUR`).
///
/// Amounts beside it are integers in the currency's minor unit (cents).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CurrencyCode(String);

/// The reason a string is not an ISO 4217 currency code.
#[derive(Debug, Clone, thiserror::Error)]
#[error("`{0}` is not an ISO 4217 currency code (three upper-case letters such as USD)")]
pub struct InvalidCurrencyCode(String);

impl CurrencyCode {
    /// Checks and wraps a currency code.
    pub fn new(code: impl Into<String>) -> Result<Self, InvalidCurrencyCode> {
        let code = code.into();
        if code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase()) {
            Ok(CurrencyCode(code))
        } else {
            Err(InvalidCurrencyCode(code))
        }
    }

    /// The code as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// US dollars, for examples.
    pub fn usd() -> Self {
        CurrencyCode("USD".to_owned())
    }
}

impl TryFrom<String> for CurrencyCode {
    type Error = InvalidCurrencyCode;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        CurrencyCode::new(value)
    }
}

impl From<CurrencyCode> for String {
    fn from(value: CurrencyCode) -> Self {
        value.0
    }
}

#[cfg(feature = "schemars")]
impl JsonSchema for CurrencyCode {
    fn schema_name() -> Cow<'static, str> {
        "CurrencyCode".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": "^[A-Z]{3}$",
            "description": "ISO 4217 currency code"
        })
    }
}
