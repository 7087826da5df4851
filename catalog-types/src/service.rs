//! Event types of a service's own, beside the catalog's.
//!
//! A service that needs an event the catalog does not have yet defines it in its own code:
//! a payload struct implementing [`CatalogEvent`] (by hand or with [`service_event!`]),
//! whose event type is **namespaced**: `<namespace>.<NAME>`, e.g. `acme.WIDGET_CREATED`,
//! and whose schema ref is `<namespace>.payload.<PascalCase of NAME>.v<version>`
//! (`acme.payload.WidgetCreated.v1`). Catalog event types never hold a dot, so no catalog
//! event, present or future, can take a service's name; two services can, and registering
//! the second definition in a database is refused (`outbox_core::register_events`).
//!
//! [`Registry::builder`] makes a registry of the catalog plus the service's events, checked
//! against these rules; the exports ([`crate::export`]), untyped validation and
//! `outbox_core::register_events` take it like the shipped one. [`EventDefinition`] is one
//! event as the database's catalog table and the JSON export hold it, for registration
//! from a file (`outbox-relay migrate --service-events`).

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{CatalogEntry, CatalogEvent, Category, Registry, registry};

/// The longest service event type, in bytes: it becomes the AMQP `type` and part of the
/// routing key (both at most 255 bytes), after a category slug and a tenant id.
pub const MAX_SERVICE_EVENT_TYPE_BYTES: usize = 120;

/// Why a service's event definition was refused. Each message names the event and the
/// rule or the conflicting name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceEventError {
    /// The event type (or schema ref) is the catalog's own.
    #[error(
        "`{event_type}` collides with the catalog's event `{catalog_event}`: a service's event type is namespaced, `<namespace>.<NAME>` (e.g. `acme.WIDGET_CREATED`), which no catalog event can take"
    )]
    CatalogCollision {
        /// The service's event type.
        event_type: String,
        /// The catalog event it collides with (its event type or schema ref).
        catalog_event: String,
    },
    /// The event type breaks the naming rule.
    #[error("`{event_type}` is not a service event type: {reason}")]
    BadEventType {
        /// The event type, shortened if long.
        event_type: String,
        /// Which rule it breaks.
        reason: String,
    },
    /// The schema ref is not the one the event type and a version make.
    #[error(
        "`{event_type}` has the schema ref `{schema_ref}`; a service event's is `{expected}` (`.v<version>`, version 1 or more)"
    )]
    BadSchemaRef {
        /// The event type.
        event_type: String,
        /// The schema ref it has.
        schema_ref: String,
        /// What it should look like.
        expected: String,
    },
    /// The payload schema cannot validate payloads.
    #[error("`{event_type}` has an unusable payload schema: {reason}")]
    BadSchema {
        /// The event type.
        event_type: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The same event type (or schema ref) is defined twice in one registry or file.
    #[error("`{event_type}` is defined twice")]
    Duplicate {
        /// The repeated event type or schema ref.
        event_type: String,
    },
    /// A file of service events could not be read as a JSON catalog export.
    #[error(
        "{origin} is not a catalog export (the JSON array `catalog_types::export::json` writes): {reason}"
    )]
    NotAnExport {
        /// The file (or other origin) of the text.
        origin: String,
        /// What is wrong, with line and column.
        reason: String,
    },
}

/// One event as the database's catalog table (`system_event_catalog`) and the JSON export
/// hold it: what registration writes and compares.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventDefinition {
    /// `<namespace>.<NAME>` for a service event.
    pub event_type: String,
    /// Display name.
    pub name: String,
    /// One-sentence description.
    pub description: String,
    /// The catalog category it belongs to (its slug prefixes the default routing key).
    pub category: Category,
    /// `<namespace>.payload.<PascalCase of NAME>.v<version>`.
    pub payload_schema_ref: String,
    /// JSON Schema (Draft 2020-12) of the payload.
    pub payload_schema: Value,
}

impl EventDefinition {
    /// The definition of a registry entry.
    pub fn of(entry: &CatalogEntry) -> Self {
        EventDefinition {
            event_type: entry.event_type.to_owned(),
            name: entry.name.to_owned(),
            description: entry.description.to_owned(),
            category: entry.category,
            payload_schema_ref: entry.schema_ref.to_owned(),
            payload_schema: entry.schema.clone(),
        }
    }

    /// The schema ref's version (`….v3` → 3), once [`EventDefinition::check`] passed.
    pub fn version(&self) -> Option<u32> {
        schema_ref_version(&self.payload_schema_ref)
    }

    /// Checks a service event's definition: no collision with the catalog, the naming rule,
    /// the schema ref, and a payload schema that describes an object and that the
    /// producer's validator checks in full (no keyword it would skip; see
    /// [`Registry::builder`]).
    pub fn check(&self) -> Result<(), ServiceEventError> {
        check_names(&self.event_type, &self.payload_schema_ref)?;
        let event_type = || self.event_type.clone();
        if self.payload_schema.get("type") != Some(&Value::from("object")) {
            return Err(ServiceEventError::BadSchema {
                event_type: event_type(),
                reason: "it must describe a JSON object (`\"type\": \"object\"`), as every stored payload is one".to_owned(),
            });
        }
        crate::validator::Validator::new(&self.payload_schema).map_err(|reason| {
            ServiceEventError::BadSchema {
                event_type: event_type(),
                reason,
            }
        })?;
        Ok(())
    }
}

/// Checks a service event type and schema ref: collisions with the catalog first (so the
/// error names the conflict), then the naming rule, then the schema ref.
fn check_names(event_type: &str, schema_ref: &str) -> Result<(), ServiceEventError> {
    let catalog = registry();
    let collision = catalog
        .entries()
        .iter()
        .find(|e| e.event_type.eq_ignore_ascii_case(event_type))
        .map(|e| e.event_type)
        .or_else(|| catalog.by_schema_ref(schema_ref).map(|e| e.schema_ref));
    if let Some(catalog_event) = collision {
        return Err(ServiceEventError::CatalogCollision {
            event_type: event_type.to_owned(),
            catalog_event: catalog_event.to_owned(),
        });
    }
    let (namespace, name) =
        split_service_event_type(event_type).map_err(|reason| ServiceEventError::BadEventType {
            event_type: event_type.chars().take(80).collect(),
            reason,
        })?;
    let version = schema_ref_version(schema_ref).filter(|&v| v >= 1);
    let expected = |version: u32| format!("{namespace}.payload.{}.v{version}", pascal_case(name));
    match version {
        Some(version) if expected(version) == schema_ref => Ok(()),
        _ => Err(ServiceEventError::BadSchemaRef {
            event_type: event_type.to_owned(),
            schema_ref: schema_ref.to_owned(),
            expected: expected(version.unwrap_or(1)),
        }),
    }
}

/// Splits a service event type into its namespace and name, or says which rule it breaks:
/// `<namespace>.<NAME>`, the namespace lower case (`[a-z][a-z0-9_]*`), the name
/// `SCREAMING_SNAKE_CASE` (`[A-Z][A-Z0-9_]*`), at most [`MAX_SERVICE_EVENT_TYPE_BYTES`].
pub fn split_service_event_type(event_type: &str) -> Result<(&str, &str), String> {
    if event_type.len() > MAX_SERVICE_EVENT_TYPE_BYTES {
        return Err(format!(
            "it is {} bytes, over the {MAX_SERVICE_EVENT_TYPE_BYTES} allowed",
            event_type.len()
        ));
    }
    let Some((namespace, name)) = event_type.split_once('.') else {
        return Err(
            "it has no namespace: write `<namespace>.<NAME>`, e.g. `acme.WIDGET_CREATED`"
                .to_owned(),
        );
    };
    let word = |text: &str, first: fn(char) -> bool, rest: fn(char) -> bool| {
        let mut chars = text.chars();
        chars.next().is_some_and(first) && chars.all(|c| rest(c) || c.is_ascii_digit() || c == '_')
    };
    if !word(
        namespace,
        |c| c.is_ascii_lowercase(),
        |c| c.is_ascii_lowercase(),
    ) {
        return Err(format!(
            "its namespace `{namespace}` must be lower case letters, digits and `_`, starting with a letter"
        ));
    }
    if !word(name, |c| c.is_ascii_uppercase(), |c| c.is_ascii_uppercase()) {
        return Err(format!(
            "its name `{name}` must be SCREAMING_SNAKE_CASE (upper case letters, digits and `_`, starting with a letter, one dot only)"
        ));
    }
    Ok((namespace, name))
}

/// Whether an event type follows the service naming rule (a namespaced name); catalog
/// event types never do.
pub fn is_service_event_type(event_type: &str) -> bool {
    split_service_event_type(event_type).is_ok()
}

/// `WIDGET_CREATED` → `WidgetCreated`.
fn pascal_case(name: &str) -> String {
    name.split('_')
        .map(|word| {
            let mut chars = word.chars();
            chars
                .next()
                .map(|first| first.to_string() + &chars.as_str().to_ascii_lowercase())
                .unwrap_or_default()
        })
        .collect()
}

/// `….v3` → 3.
fn schema_ref_version(schema_ref: &str) -> Option<u32> {
    let (_, version) = schema_ref.rsplit_once(".v")?;
    if version.starts_with('0') || !version.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    version.parse().ok()
}

impl CatalogEntry {
    /// Whether this entry is a service's own event rather than the catalog's (its event
    /// type is namespaced: see [`split_service_event_type`]).
    pub fn is_service_event(&self) -> bool {
        is_service_event_type(self.event_type)
    }
}

/// Builds a registry of the catalog plus a service's own events; see [`Registry::builder`].
#[derive(Debug, Default)]
pub struct RegistryBuilder {
    service: Vec<CatalogEntry>,
    /// Event types whose schema the validator cannot check, each with the reason.
    refused: Vec<ServiceEventError>,
}

impl Registry {
    /// A registry of the catalog plus a service's own events:
    ///
    /// ```ignore
    /// let registry = Registry::builder().event::<WidgetCreated>().build()?;
    /// ```
    ///
    /// Build it once at start-up and keep it (it compiles every schema). A service event's
    /// schema is held to what the producer's validator checks: what schemars derives for
    /// Rust types (fields, optional and nullable ones, enums, nested types, maps and lists,
    /// integer widths, the formats `uuid`, `date`, `time` and `date-time`), bounds and
    /// lengths, and `pattern`s of single-character items with repetitions (`^[A-Z]{3}$`).
    /// A keyword beyond that (a `format` such as `email`, a `pattern` with groups or
    /// alternation) makes [`RegistryBuilder::build`] refuse the event, naming the keyword,
    /// rather than emit payloads checked less than their schema says.
    pub fn builder() -> RegistryBuilder {
        RegistryBuilder::default()
    }

    /// The service's own events of this registry (none in the shipped catalog).
    pub fn service_entries(&self) -> impl Iterator<Item = &CatalogEntry> {
        self.entries().iter().filter(|e| e.is_service_event())
    }

    /// The service's own events as a JSON export (the array `outbox-relay migrate
    /// --service-events FILE` registers, in the shape of the catalog's JSON export), without
    /// the feature `tooling`: what a service writes out for a schema owner to register.
    pub fn export_service_events(&self) -> Result<String, serde_json::Error> {
        let entries: Vec<_> = self.service_entries().map(|e| e.exported()).collect();
        Ok(serde_json::to_string_pretty(&entries)? + "\n")
    }
}

impl RegistryBuilder {
    /// Adds a service event type. A schema the validator cannot check in full is reported
    /// by [`RegistryBuilder::build`].
    pub fn event<T: CatalogEvent>(mut self) -> Self {
        match CatalogEntry::compiled::<T>() {
            Ok(entry) => self.service.push(entry),
            Err(reason) => self.refused.push(ServiceEventError::BadSchema {
                event_type: T::EVENT_TYPE.to_owned(),
                reason,
            }),
        }
        self
    }

    /// The registry, or the first event that breaks a rule: a name or schema ref of the
    /// catalog's, a name outside the naming rule, a schema ref that does not follow from
    /// the name, a payload that is not an object, a payload schema holding a keyword the
    /// validator does not check (a `pattern` with groups, a `format` such as `email`: the
    /// error names it and where it is), or an event added twice.
    pub fn build(self) -> Result<Registry, ServiceEventError> {
        if let Some(refused) = self.refused.into_iter().next() {
            return Err(refused);
        }
        check_unique(self.service.iter().map(|e| (e.event_type, e.schema_ref)))?;
        for entry in &self.service {
            EventDefinition::of(entry).check()?;
        }
        let mut entries = crate::events::entries();
        entries.extend(self.service);
        Ok(Registry::from_entries(entries))
    }
}

/// Refuses a second definition of an event type or schema ref.
fn check_unique<'a>(
    names: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<(), ServiceEventError> {
    let mut seen = HashSet::new();
    for (event_type, schema_ref) in names {
        for name in [event_type, schema_ref] {
            if !seen.insert(name) {
                return Err(ServiceEventError::Duplicate {
                    event_type: name.to_owned(),
                });
            }
        }
    }
    Ok(())
}

/// The service events of a JSON catalog export (the array `crate::export::json` writes of a
/// service's registry), each checked; `origin` (a file name) is named in errors.
///
/// Entries whose event type is the catalog's are skipped: the catalog's rows are kept by
/// `migrate` from the shipped catalog. An entry that is neither is refused (its name breaks
/// the naming rule).
pub fn service_definitions(
    text: &str,
    origin: &str,
) -> Result<Vec<EventDefinition>, ServiceEventError> {
    let all: Vec<EventDefinition> =
        serde_json::from_str(text).map_err(|error| ServiceEventError::NotAnExport {
            origin: origin.to_owned(),
            reason: error.to_string(),
        })?;
    let catalog = registry();
    let service: Vec<EventDefinition> = all
        .into_iter()
        .filter(|d| catalog.by_event_type(&d.event_type).is_none())
        .collect();
    check_unique(
        service
            .iter()
            .map(|d| (d.event_type.as_str(), d.payload_schema_ref.as_str())),
    )?;
    for definition in &service {
        definition.check()?;
    }
    Ok(service)
}

/// Implements [`CatalogEvent`] for a service's own payload struct with a `tenant_id: Uuid`
/// field: the event type is `<namespace>.<event_type>` and the schema ref
/// `<namespace>.payload.<struct name>.v<version>` (the struct's name must be the PascalCase
/// of the event type; [`Registry::builder`] checks it).
///
/// ```ignore
/// service_event!(WidgetCreated {
///     namespace: "acme",
///     event_type: "WIDGET_CREATED",
///     version: 1,
///     name: "Widget Created",
///     description: "A widget was created.",
///     category: Assets,
///     ordering_key: "widget" => widget_id,
///     example: WidgetCreated { .. },
/// });
/// ```
///
/// The payload's schema is `schemars::schema_for!(WidgetCreated)`: the struct derives
/// `schemars::JsonSchema`, with the service's own dependency on schemars 1 (`features =
/// ["chrono04", "uuid1"]` for timestamps and ids), which the macro names as `::schemars`.
///
/// A payload without a tenant, or with another ordering key, implements [`CatalogEvent`]
/// by hand under the same naming rules.
#[macro_export]
macro_rules! service_event {
    ($ty:ident {
        namespace: $namespace:literal,
        event_type: $event_type:literal,
        version: $version:literal,
        name: $name:literal,
        description: $description:literal,
        category: $category:ident,
        ordering_key: $prefix:literal => $key_field:ident,
        example: $example:expr $(,)?
    }) => {
        impl $crate::CatalogEvent for $ty {
            const EVENT_TYPE: &'static str = concat!($namespace, ".", $event_type);
            const NAME: &'static str = $name;
            const DESCRIPTION: &'static str = $description;
            const CATEGORY: $crate::Category = $crate::Category::$category;
            const SCHEMA_REF: &'static str = concat!(
                $namespace,
                ".payload.",
                stringify!($ty),
                ".v",
                stringify!($version)
            );

            fn tenant_id(&self) -> Option<$crate::__private::Uuid> {
                Some(self.tenant_id)
            }

            fn ordering_key(&self) -> Option<String> {
                Some(format!("{}:{}", $prefix, self.$key_field))
            }

            fn example() -> Self {
                $example
            }

            fn payload_schema() -> $crate::__private::Value {
                ::schemars::schema_for!($ty).to_value()
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_naming_rule_takes_namespaced_screaming_names_only() {
        for good in ["acme.WIDGET_CREATED", "a.B", "billing_v2.INVOICE_2_SENT"] {
            assert!(is_service_event_type(good), "{good}");
        }
        for (bad, why) in [
            ("WIDGET_CREATED", "no namespace"),
            ("Acme.WIDGET_CREATED", "namespace `Acme`"),
            ("acme.widget_created", "name `widget_created`"),
            ("acme.WIDGET.CREATED", "name `WIDGET.CREATED`"),
            (".WIDGET", "namespace ``"),
            ("acme.", "name ``"),
            ("1acme.WIDGET", "namespace `1acme`"),
            ("acme.WIDGET CREATED", "name `WIDGET CREATED`"),
        ] {
            let reason = split_service_event_type(bad).err().unwrap_or_default();
            assert!(reason.contains(why), "{bad}: {reason}");
        }
        let long = format!("acme.{}", "A".repeat(MAX_SERVICE_EVENT_TYPE_BYTES));
        assert!(
            split_service_event_type(&long)
                .err()
                .unwrap_or_default()
                .contains("over the 120 allowed")
        );
        // No catalog event follows the service rule, so the two can never share a name.
        assert!(registry().entries().iter().all(|e| !e.is_service_event()));
    }

    #[test]
    fn the_schema_ref_follows_from_the_name_and_a_version() {
        assert_eq!(pascal_case("WIDGET_CREATED"), "WidgetCreated");
        assert_eq!(pascal_case("INVOICE_2_SENT"), "Invoice2Sent");
        assert!(check_names("acme.WIDGET_CREATED", "acme.payload.WidgetCreated.v1").is_ok());
        assert!(check_names("acme.WIDGET_CREATED", "acme.payload.WidgetCreated.v12").is_ok());
        for bad in [
            "acme.payload.WidgetCreated.v0",
            "acme.payload.WidgetCreated.v01",
            "acme.payload.WidgetCreated",
            "payload.WidgetCreated.v1",
            "other.payload.WidgetCreated.v1",
            "acme.payload.Widget.v1",
        ] {
            let error = check_names("acme.WIDGET_CREATED", bad);
            assert_eq!(
                error,
                Err(ServiceEventError::BadSchemaRef {
                    event_type: "acme.WIDGET_CREATED".to_owned(),
                    schema_ref: bad.to_owned(),
                    expected: format!(
                        "acme.payload.WidgetCreated.v{}",
                        schema_ref_version(bad).unwrap_or(1)
                    ),
                }),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_catalog_name_is_refused_naming_the_catalog_event() {
        for (event_type, schema_ref, named) in [
            (
                "TICKET_CREATED",
                "payload.TicketCreated.v1",
                "TICKET_CREATED",
            ),
            ("ticket_created", "x", "TICKET_CREATED"),
            (
                "acme.WIDGET",
                "payload.TicketCreated.v1",
                "payload.TicketCreated.v1",
            ),
        ] {
            let error = check_names(event_type, schema_ref)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(
                error.starts_with(&format!(
                    "`{event_type}` collides with the catalog's event `{named}`"
                )),
                "{error}"
            );
        }
    }

    /// A service's own event, declared as a service would.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
    #[serde(rename_all = "camelCase")]
    #[schemars(deny_unknown_fields)]
    struct WidgetCreated {
        tenant_id: uuid::Uuid,
        widget_id: uuid::Uuid,
        colour: String,
    }

    crate::service_event!(WidgetCreated {
        namespace: "acme",
        event_type: "WIDGET_CREATED",
        version: 3,
        name: "Widget Created",
        description: "A widget was created.",
        category: Assets,
        ordering_key: "widget" => widget_id,
        example: WidgetCreated {
            tenant_id: uuid::Uuid::nil(),
            widget_id: uuid::Uuid::max(),
            colour: "blue".to_owned(),
        },
    });

    /// Named like a catalog event.
    #[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
    struct Impostor {
        tenant_id: uuid::Uuid,
    }

    impl CatalogEvent for Impostor {
        const EVENT_TYPE: &'static str = "TICKET_CREATED";
        const NAME: &'static str = "Ticket Created";
        const DESCRIPTION: &'static str = "Not the catalog's.";
        const CATEGORY: Category = Category::Tickets;
        const SCHEMA_REF: &'static str = "acme.payload.TicketCreated.v1";
        fn tenant_id(&self) -> Option<uuid::Uuid> {
            Some(self.tenant_id)
        }
        fn ordering_key(&self) -> Option<String> {
            None
        }
        fn example() -> Self {
            Impostor {
                tenant_id: uuid::Uuid::nil(),
            }
        }
        fn payload_schema() -> Value {
            schemars::schema_for!(Self).to_value()
        }
    }

    #[test]
    fn a_built_registry_holds_the_catalog_and_the_service_events() {
        let built = Registry::builder().event::<WidgetCreated>().build();
        let Ok(built) = built else {
            panic!("{built:?}");
        };
        assert_eq!(built.len(), registry().len() + 1);
        let service: Vec<&str> = built.service_entries().map(|e| e.event_type).collect();
        assert_eq!(service, ["acme.WIDGET_CREATED"]);
        let entry = built.by_schema_ref("acme.payload.WidgetCreated.v3");
        assert_eq!(entry.map(|e| e.event_type), Some("acme.WIDGET_CREATED"));
        assert_eq!(
            entry.map(CatalogEntry::routing_key).as_deref(),
            Some("assets.acme.widget_created")
        );
        // Untyped payloads are validated against the service's schema.
        let example = serde_json::to_value(WidgetCreated::example()).unwrap_or_default();
        let valid = built.validate("acme.WIDGET_CREATED", example);
        assert_eq!(
            valid.map(|v| v.ordering_key),
            Ok(Some(format!("widget:{}", uuid::Uuid::max())))
        );
        let invalid = built.validate(
            "acme.WIDGET_CREATED",
            serde_json::json!({"tenantId": uuid::Uuid::nil(), "widgetId": 7, "colour": "red"}),
        );
        assert!(
            invalid.as_ref().is_err_and(|e| e
                .to_string()
                .starts_with("invalid `acme.WIDGET_CREATED` payload: /widgetId:")),
            "{invalid:?}"
        );
        // The shipped catalog knows nothing of it.
        assert!(registry().by_event_type("acme.WIDGET_CREATED").is_none());
    }

    #[test]
    fn a_registry_refuses_a_catalog_name_and_a_second_definition() {
        let impostor = Registry::builder().event::<Impostor>().build();
        assert!(
            impostor.as_ref().is_err_and(|e| e.to_string().starts_with(
                "`TICKET_CREATED` collides with the catalog's event `TICKET_CREATED`"
            )),
            "{impostor:?}"
        );
        let twice = Registry::builder()
            .event::<WidgetCreated>()
            .event::<WidgetCreated>()
            .build();
        assert!(matches!(
            twice,
            Err(ServiceEventError::Duplicate { event_type }) if event_type == "acme.WIDGET_CREATED"
        ));
    }

    fn definition() -> EventDefinition {
        EventDefinition {
            event_type: "acme.WIDGET_CREATED".to_owned(),
            name: "Widget Created".to_owned(),
            description: "A widget was created.".to_owned(),
            category: Category::Assets,
            payload_schema_ref: "acme.payload.WidgetCreated.v2".to_owned(),
            payload_schema: serde_json::json!({
                "type": "object",
                "properties": {"widgetId": {"type": "string"}},
                "required": ["widgetId"]
            }),
        }
    }

    #[test]
    fn a_definition_needs_an_object_schema_that_compiles() {
        assert_eq!(definition().check(), Ok(()));
        assert_eq!(definition().version(), Some(2));
        let mut array = definition();
        array.payload_schema = serde_json::json!({"type": "array"});
        assert!(
            array
                .check()
                .is_err_and(|e| e.to_string().contains("must describe a JSON object"))
        );
        let mut broken = definition();
        broken.payload_schema = serde_json::json!({"type": "object", "minProperties": "two"});
        assert!(broken.check().is_err_and(|e| {
            e.to_string()
                .starts_with("`acme.WIDGET_CREATED` has an unusable payload schema")
        }));
    }

    #[test]
    fn an_export_gives_its_service_events_and_skips_the_catalogs() {
        let catalog_entry = EventDefinition::of(
            registry()
                .by_event_type("TICKET_CREATED")
                .unwrap_or_else(|| panic!("catalog")),
        );
        let text = serde_json::to_string(&[catalog_entry, definition()]).unwrap_or_default();
        assert_eq!(
            service_definitions(&text, "acme.json"),
            Ok(vec![definition()])
        );
        let twice = serde_json::to_string(&[definition(), definition()]).unwrap_or_default();
        assert_eq!(
            service_definitions(&twice, "acme.json"),
            Err(ServiceEventError::Duplicate {
                event_type: "acme.WIDGET_CREATED".to_owned()
            })
        );
        let mut stray = definition();
        stray.event_type = "WIDGET_CREATED".to_owned();
        let text = serde_json::to_string(&[stray]).unwrap_or_default();
        assert!(
            service_definitions(&text, "acme.json")
                .is_err_and(|e| e.to_string().contains("it has no namespace"))
        );
        assert!(service_definitions("{}", "acme.json").is_err_and(|e| {
            e.to_string()
                .starts_with("acme.json is not a catalog export")
        }));
    }
}
