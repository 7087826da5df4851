//! The catalog registry: every event's metadata, JSON Schema and validator (the schema
//! compiled by [`crate::validator`], then the payload read as its Rust type).

use std::collections::HashMap;
use std::sync::OnceLock;

use serde::Serialize;
use uuid::Uuid;

use crate::validator::Validator;

#[cfg(test)]
mod agreement;
use crate::{CatalogEvent, Category, events};

/// One catalog entry: what an event is called, where it belongs and what its payload looks like.
pub struct CatalogEntry {
    /// `SCREAMING_SNAKE_CASE` event type.
    pub event_type: &'static str,
    /// Display name.
    pub name: &'static str,
    /// One-sentence description.
    pub description: &'static str,
    /// The catalog UI's grouping.
    pub category: Category,
    /// `payload.<PascalCase>.v1`.
    pub schema_ref: &'static str,
    /// The payload's JSON Schema (Draft 2020-12).
    pub schema: serde_json::Value,
    validator: Validator,
    check_typed: fn(serde_json::Value) -> Result<ValidPayload, serde_json::Error>,
    example: fn() -> Result<serde_json::Value, serde_json::Error>,
}

impl std::fmt::Debug for CatalogEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CatalogEntry")
            .field("event_type", &self.event_type)
            .field("schema_ref", &self.schema_ref)
            .finish_non_exhaustive()
    }
}

/// A payload that passed validation, in its canonical serialised form, with the
/// metadata its typed form carries.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidPayload {
    /// The canonical JSON (aliases resolved, timestamps normalised).
    pub payload: serde_json::Value,
    /// The payload's tenant.
    pub tenant_id: Option<Uuid>,
    /// The default ordering key of the payload's aggregate.
    pub ordering_key: Option<String>,
}

/// Why a payload was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    /// No catalog entry has this event type.
    #[error("unknown event type `{0}`: it is not in the catalog")]
    UnknownEventType(String),
    /// The payload breaks the event's schema; each problem names its field path.
    #[error("invalid `{event_type}` payload: {}", .problems.join("; "))]
    InvalidPayload {
        /// The event type whose schema was broken.
        event_type: String,
        /// One line per problem, each starting with the JSON Pointer of the field.
        problems: Vec<String>,
    },
}

/// The JSON form of an entry, as exported.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportedEntry<'a> {
    /// `SCREAMING_SNAKE_CASE` event type.
    pub event_type: &'a str,
    /// Display name.
    pub name: &'a str,
    /// One-sentence description.
    pub description: &'a str,
    /// Category display name.
    pub category: &'a str,
    /// Schema ref.
    pub payload_schema_ref: &'a str,
    /// JSON Schema of the payload.
    pub payload_schema: &'a serde_json::Value,
}

impl CatalogEntry {
    /// Builds the entry of a payload type.
    ///
    /// # Panics
    /// Panics if the type's generated schema holds a keyword the validator does not check,
    /// which is a programming error caught by the catalog's own tests (a service's event
    /// types go through [`Registry::builder`], which reports it instead).
    #[allow(clippy::expect_used)]
    pub fn of<T: CatalogEvent>() -> Self {
        Self::compiled::<T>().expect("generated payload schema compiles")
    }

    /// The entry of a payload type, or why its schema cannot be checked (the keyword and
    /// its JSON Pointer in the schema).
    pub(crate) fn compiled<T: CatalogEvent>() -> Result<Self, String> {
        let schema = T::payload_schema();
        let validator = Validator::new(&schema)?;
        Ok(CatalogEntry {
            event_type: T::EVENT_TYPE,
            name: T::NAME,
            description: T::DESCRIPTION,
            category: T::CATEGORY,
            schema_ref: T::SCHEMA_REF,
            schema,
            validator,
            check_typed: |value| {
                let typed: T = serde_json::from_value(value)?;
                Ok(ValidPayload {
                    tenant_id: typed.tenant_id(),
                    ordering_key: typed.ordering_key(),
                    payload: serde_json::to_value(&typed)?,
                })
            },
            example: || serde_json::to_value(T::example()),
        })
    }

    /// Validates an untyped payload against this entry's schema and type: the schema's
    /// checks first (each problem by field path), then the payload is read as the event's
    /// Rust type, whose canonical form is what is stored.
    ///
    /// `companyId` is accepted where the schema names `clientId`. Errors name the event
    /// type and the field path of every problem found.
    pub fn validate(&self, payload: serde_json::Value) -> Result<ValidPayload, ValidationError> {
        let payload = self.resolve_aliases(payload);
        let problems = self.validator.problems(&payload);
        if !problems.is_empty() {
            return Err(self.invalid(problems));
        }
        (self.check_typed)(payload).map_err(|error| self.invalid(vec![format!("/: {error}")]))
    }

    /// A realistic sample payload.
    pub fn example(&self) -> serde_json::Value {
        (self.example)().unwrap_or(serde_json::Value::Null)
    }

    /// The default AMQP routing key: `<category slug>.<event type lower case>`.
    pub fn routing_key(&self) -> String {
        format!(
            "{}.{}",
            self.category.slug(),
            self.event_type.to_ascii_lowercase()
        )
    }

    /// The entry in the shape of the JSON export.
    pub fn exported(&self) -> ExportedEntry<'_> {
        ExportedEntry {
            event_type: self.event_type,
            name: self.name,
            description: self.description,
            category: self.category.name(),
            payload_schema_ref: self.schema_ref,
            payload_schema: &self.schema,
        }
    }

    fn invalid(&self, problems: Vec<String>) -> ValidationError {
        ValidationError::InvalidPayload {
            event_type: self.event_type.to_owned(),
            problems,
        }
    }

    fn resolve_aliases(&self, mut payload: serde_json::Value) -> serde_json::Value {
        let has_client_id = self.schema.pointer("/properties/clientId").is_some();
        if let Some(object) = payload.as_object_mut()
            && has_client_id
            && !object.contains_key("clientId")
            && let Some(company_id) = object.remove("companyId")
        {
            object.insert("clientId".to_owned(), company_id);
        }
        payload
    }
}

/// Every catalog entry, with look-ups by event type and by schema ref.
#[derive(Debug)]
pub struct Registry {
    entries: Vec<CatalogEntry>,
    by_type: HashMap<&'static str, usize>,
    by_ref: HashMap<&'static str, usize>,
}

impl Registry {
    fn build() -> Self {
        Self::from_entries(events::entries())
    }

    /// A registry of these entries, whose event types and schema refs are unique (the
    /// catalog's tests hold the shipped ones to that; `RegistryBuilder::build` checks a
    /// service's).
    pub(crate) fn from_entries(entries: Vec<CatalogEntry>) -> Self {
        let mut by_type = HashMap::with_capacity(entries.len());
        let mut by_ref = HashMap::with_capacity(entries.len());
        for (index, entry) in entries.iter().enumerate() {
            by_type.insert(entry.event_type, index);
            by_ref.insert(entry.schema_ref, index);
        }
        Registry {
            entries,
            by_type,
            by_ref,
        }
    }

    /// Every entry, grouped by category in catalog order.
    pub fn entries(&self) -> &[CatalogEntry] {
        &self.entries
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the registry is empty (never, for the shipped catalog).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry of an event type (`TICKET_STATUS_CHANGED`).
    pub fn by_event_type(&self, event_type: &str) -> Option<&CatalogEntry> {
        self.by_type.get(event_type).map(|&i| &self.entries[i])
    }

    /// The entry of a schema ref (`payload.TicketStatusChanged.v1`).
    pub fn by_schema_ref(&self, schema_ref: &str) -> Option<&CatalogEntry> {
        self.by_ref.get(schema_ref).map(|&i| &self.entries[i])
    }

    /// The entry named by an event type or a schema ref.
    pub fn find(&self, type_or_ref: &str) -> Option<&CatalogEntry> {
        self.by_event_type(type_or_ref)
            .or_else(|| self.by_schema_ref(type_or_ref))
    }

    /// Validates an untyped payload of an event type.
    pub fn validate(
        &self,
        event_type: &str,
        payload: serde_json::Value,
    ) -> Result<ValidPayload, ValidationError> {
        self.by_event_type(event_type)
            .ok_or_else(|| ValidationError::UnknownEventType(event_type.to_owned()))?
            .validate(payload)
    }
}

#[cfg(feature = "tooling")]
/// A name a person typed that names no catalog entry, with the closest one when it is
/// probably a typo (`TICKET_CRATED` → `TICKET_CREATED`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownName {
    /// The closest known name, when it is near enough to be a likely typo.
    pub suggestion: Option<&'static str>,
}

#[cfg(feature = "tooling")]
impl UnknownName {
    /// ` (did you mean X?)`, or nothing: to append to a message that names the input.
    pub fn hint(&self) -> String {
        self.suggestion
            .map(|name| format!(" (did you mean {name}?)"))
            .unwrap_or_default()
    }
}

#[cfg(feature = "tooling")]
/// The candidate closest to `input` (case-insensitive Damerau-Levenshtein distance), when
/// the distance is small for the input's length: at most one edit per four characters,
/// at least one and at most three. Ties go to the earlier candidate.
///
/// Shared by every place a person names a catalog item (event types, schema refs,
/// categories), so they all suggest alike.
pub fn closest<'a>(input: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let wanted = input.to_lowercase();
    let allowed = (wanted.chars().count() / 4).clamp(1, 3);
    candidates
        .into_iter()
        .map(|candidate| {
            let distance = strsim::damerau_levenshtein(&wanted, &candidate.to_lowercase());
            (distance, candidate)
        })
        .filter(|(distance, _)| *distance <= allowed)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

#[cfg(feature = "tooling")]
impl Registry {
    /// The entry of an event type as a person types it: exact, else ignoring ASCII case
    /// (`ticket_created` is `TICKET_CREATED`); otherwise the closest event type, if one
    /// is near, to suggest.
    ///
    /// For operator tools. Code that writes events keeps to the exact
    /// [`Registry::by_event_type`].
    pub fn lookup_event_type(&self, input: &str) -> Result<&CatalogEntry, UnknownName> {
        if let Some(entry) = self.by_event_type(input) {
            return Ok(entry);
        }
        if let Some(entry) = self
            .entries
            .iter()
            .find(|e| e.event_type.eq_ignore_ascii_case(input))
        {
            return Ok(entry);
        }
        Err(UnknownName {
            suggestion: closest(input, self.entries.iter().map(|e| e.event_type)),
        })
    }

    /// The entry named by an event type or a schema ref as a person types it: like
    /// [`Registry::find`], but ignoring ASCII case, and suggesting the closest event type
    /// or schema ref when none matches.
    pub fn lookup(&self, type_or_ref: &str) -> Result<&CatalogEntry, UnknownName> {
        if let Some(entry) = self.find(type_or_ref) {
            return Ok(entry);
        }
        if let Some(entry) = self.entries.iter().find(|e| {
            e.event_type.eq_ignore_ascii_case(type_or_ref)
                || e.schema_ref.eq_ignore_ascii_case(type_or_ref)
        }) {
            return Ok(entry);
        }
        let names = self
            .entries
            .iter()
            .flat_map(|e| [e.event_type, e.schema_ref]);
        Err(UnknownName {
            suggestion: closest(type_or_ref, names),
        })
    }
}

#[cfg(feature = "tooling")]
/// A category by display name or slug, ignoring case (see [`Category::parse`]); otherwise
/// the closest display name, if one is near, to suggest (`Biling` → `Billing`).
pub fn lookup_category(input: &str) -> Result<Category, UnknownName> {
    if let Some(category) = Category::parse(input) {
        return Ok(category);
    }
    let names = Category::ALL.iter().flat_map(|c| [c.name(), c.slug()]);
    let suggestion = closest(input, names).and_then(|near| {
        // Suggest the display name even when the slug was the nearer spelling.
        Category::parse(near).map(|c| c.name())
    });
    Err(UnknownName { suggestion })
}

/// The shipped catalog, built once on first use.
pub fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(Registry::build)
}
