//! A service's own event types: registering them in the database's catalog table (emitting
//! untyped payloads of them is [`crate::emit_untyped_in`]).
//!
//! The rules (naming, collisions with the catalog) are `catalog_types`'s
//! ([`Registry::builder`]); this module adds what the database decides: whether another
//! definition of the same event type is registered already.

use catalog_types::{EventDefinition, Registry, ServiceEventError};
use serde_json::Value;
use sqlx::{PgConnection, PgPool};

/// What a registration did, by event type.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Registration {
    /// Event types registered for the first time.
    pub added: Vec<String>,
    /// Event types registered before at a lower version, now at this one.
    pub upgraded: Vec<String>,
    /// Event types whose display name or description changed (same schema and version).
    pub described: Vec<String>,
    /// Event types registered already exactly so.
    pub unchanged: Vec<String>,
}

/// Why a definition cannot be registered over what the database holds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Conflict {
    /// Another event type holds the schema ref.
    #[error("`{event_type}`: its schema ref `{schema_ref}` is registered already for `{holder}`")]
    SchemaRefTaken {
        /// The event type being registered.
        event_type: String,
        /// Its schema ref.
        schema_ref: String,
        /// The event type registered under that schema ref.
        holder: String,
    },
    /// The same event type is registered with another schema or category at the same
    /// version (or under a schema ref of another shape).
    #[error(
        "`{event_type}` is registered already as `{registered}` with a different {what}: another service uses this name, or the payload changed without a version bump (register `{event_type}` at a higher version, or choose another namespace)"
    )]
    Differs {
        /// The event type being registered.
        event_type: String,
        /// The schema ref registered.
        registered: String,
        /// What differs: `payload schema`, `category`, or both.
        what: String,
    },
    /// The same event type is registered at a higher version than this one.
    #[error(
        "`{event_type}` is registered already at a higher version (`{registered}`) than this one (`{ours}`): a registration never takes an event type back to an older version"
    )]
    Older {
        /// The event type being registered.
        event_type: String,
        /// The schema ref registered.
        registered: String,
        /// The schema ref being registered.
        ours: String,
    },
}

/// Why service events were not registered. Nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    /// A definition breaks the naming rules or collides with the catalog.
    #[error("{0}")]
    Invalid(#[from] ServiceEventError),
    /// Definitions collide with what the database holds; each line names one conflict.
    #[error("service events not registered, nothing written: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Conflicts(Vec<Conflict>),
    /// The database refused; a role without the privilege is told how to go on.
    #[error("registering service events: {}", explain(.0))]
    Database(#[from] sqlx::Error),
}

fn explain(error: &sqlx::Error) -> String {
    match error {
        sqlx::Error::Database(db) if db.code().as_deref() == Some("42501") => format!(
            "{}: registering needs INSERT and UPDATE on system_event_catalog; grant them to this role, or register with `outbox-relay migrate --service-events <export.json>` as the schema's owner",
            db.message()
        ),
        sqlx::Error::Database(db) if db.code().as_deref() == Some("42P01") => format!(
            "{}: the outbox schema is not migrated in this database; call `outbox_core::migrate(&pool)` or run `outbox-relay migrate` first",
            db.message()
        ),
        sqlx::Error::Database(db) => db.message().to_owned(),
        other => other.to_string(),
    }
}

/// Registers the service's own events of `registry` (its [`Registry::service_entries`]) in
/// the database's catalog table, `system_event_catalog`, so the insert trigger accepts them.
/// Call it at start-up, after [`migrate`](crate::migrate()) (or once the relay migrated).
///
/// All or nothing, in one transaction that locks the table against other registrations:
/// an event type registered for the first time is added; registered exactly so, left; with
/// a new name or description, updated; at a lower version, upgraded to this one. It is
/// refused ([`RegisterError::Conflicts`], naming each) when the same event type is
/// registered with another schema or category at the same version (another service took
/// the name, or the payload changed without a version bump), at a higher version (an
/// older build must not take it back), or when another event type holds its schema ref.
pub async fn register_events(
    pool: &PgPool,
    registry: &Registry,
) -> Result<Registration, RegisterError> {
    let definitions: Vec<EventDefinition> = registry
        .service_entries()
        .map(EventDefinition::of)
        .collect();
    register_definitions(pool, &definitions).await
}

/// [`register_events`] for definitions read from a file (a service's JSON catalog export,
/// see [`catalog_types::service_definitions`]); each is checked against the naming rules
/// first.
pub async fn register_definitions(
    pool: &PgPool,
    definitions: &[EventDefinition],
) -> Result<Registration, RegisterError> {
    for definition in definitions {
        definition.check()?;
    }
    if definitions.is_empty() {
        return Ok(Registration::default());
    }
    let mut tx = pool.begin().await?;
    sqlx::query("LOCK TABLE system_event_catalog IN SHARE ROW EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await?;
    let event_types: Vec<&str> = definitions.iter().map(|d| d.event_type.as_str()).collect();
    let refs: Vec<&str> = definitions
        .iter()
        .map(|d| d.payload_schema_ref.as_str())
        .collect();
    let stored: Vec<(String, String, String, String, Value, String)> = sqlx::query_as(
        "SELECT event_type, name, description, category, payload_schema, payload_schema_ref
           FROM system_event_catalog
          WHERE event_type = ANY($1) OR payload_schema_ref = ANY($2)",
    )
    .bind(&event_types)
    .bind(&refs)
    .fetch_all(&mut *tx)
    .await?;
    let stored: Vec<Stored> = stored.into_iter().map(Stored::from).collect();
    let actions = plan(definitions, &stored).map_err(RegisterError::Conflicts)?;
    let writes: Vec<&EventDefinition> = definitions
        .iter()
        .zip(&actions)
        .filter(|(_, action)| **action != Action::Unchanged)
        .map(|(definition, _)| definition)
        .collect();
    if !writes.is_empty() {
        upsert(&mut tx, &writes).await?;
    }
    tx.commit().await?;
    let mut registration = Registration::default();
    for (definition, action) in definitions.iter().zip(actions) {
        let list = match action {
            Action::Add => &mut registration.added,
            Action::Upgrade => &mut registration.upgraded,
            Action::Describe => &mut registration.described,
            Action::Unchanged => &mut registration.unchanged,
        };
        list.push(definition.event_type.clone());
    }
    Ok(registration)
}

async fn upsert(conn: &mut PgConnection, writes: &[&EventDefinition]) -> Result<(), sqlx::Error> {
    let column = |f: fn(&EventDefinition) -> &str| writes.iter().map(|d| f(d)).collect::<Vec<_>>();
    let schemas: Vec<&Value> = writes.iter().map(|d| &d.payload_schema).collect();
    sqlx::query(crate::migrate::UPSERT_CATALOG_SQL)
        .bind(column(|d| &d.event_type))
        .bind(column(|d| &d.name))
        .bind(column(|d| &d.description))
        .bind(column(|d| d.category.name()))
        .bind(&schemas)
        .bind(column(|d| &d.payload_schema_ref))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// A row of `system_event_catalog`.
#[derive(Debug, Clone, PartialEq)]
struct Stored {
    event_type: String,
    name: String,
    description: String,
    category: String,
    payload_schema: Value,
    payload_schema_ref: String,
}

impl From<(String, String, String, String, Value, String)> for Stored {
    fn from(
        (event_type, name, description, category, payload_schema, payload_schema_ref): (
            String,
            String,
            String,
            String,
            Value,
            String,
        ),
    ) -> Self {
        Stored {
            event_type,
            name,
            description,
            category,
            payload_schema,
            payload_schema_ref,
        }
    }
}

/// What registration does with one definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Add,
    Upgrade,
    Describe,
    Unchanged,
}

/// Decides, for each definition, what to do over the stored rows; every conflict, or none.
fn plan(wanted: &[EventDefinition], stored: &[Stored]) -> Result<Vec<Action>, Vec<Conflict>> {
    let mut actions = Vec::with_capacity(wanted.len());
    let mut conflicts = Vec::new();
    for definition in wanted {
        let event_type = &definition.event_type;
        if let Some(holder) = stored.iter().find(|s| {
            s.payload_schema_ref == definition.payload_schema_ref && &s.event_type != event_type
        }) {
            conflicts.push(Conflict::SchemaRefTaken {
                event_type: event_type.clone(),
                schema_ref: definition.payload_schema_ref.clone(),
                holder: holder.event_type.clone(),
            });
            continue;
        }
        let Some(row) = stored.iter().find(|s| &s.event_type == event_type) else {
            actions.push(Action::Add);
            continue;
        };
        let schema_differs = row.payload_schema != definition.payload_schema;
        let category_differs = row.category != definition.category.name();
        let stored_version = EventDefinition {
            payload_schema_ref: row.payload_schema_ref.clone(),
            ..definition.clone()
        };
        let same_shape = stored_version.check().is_ok();
        match (same_shape, stored_version.version(), definition.version()) {
            (true, Some(theirs), Some(ours)) if ours > theirs => actions.push(Action::Upgrade),
            (true, Some(theirs), Some(ours)) if ours < theirs => {
                conflicts.push(Conflict::Older {
                    event_type: event_type.clone(),
                    registered: row.payload_schema_ref.clone(),
                    ours: definition.payload_schema_ref.clone(),
                });
            }
            _ if schema_differs || category_differs || !same_shape => {
                let what = match (schema_differs, category_differs) {
                    (true, true) => "payload schema and category",
                    (false, true) => "category",
                    _ => "payload schema",
                };
                conflicts.push(Conflict::Differs {
                    event_type: event_type.clone(),
                    registered: row.payload_schema_ref.clone(),
                    what: what.to_owned(),
                });
            }
            _ if row.name != definition.name || row.description != definition.description => {
                actions.push(Action::Describe);
            }
            _ => actions.push(Action::Unchanged),
        }
    }
    if conflicts.is_empty() {
        Ok(actions)
    } else {
        Err(conflicts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use catalog_types::Category;
    use serde_json::json;

    fn wanted(version: u32, schema: Value) -> EventDefinition {
        EventDefinition {
            event_type: "acme.WIDGET_CREATED".to_owned(),
            name: "Widget Created".to_owned(),
            description: "A widget was created.".to_owned(),
            category: Category::Assets,
            payload_schema_ref: format!("acme.payload.WidgetCreated.v{version}"),
            payload_schema: schema,
        }
    }

    fn conflicts(planned: Result<Vec<Action>, Vec<Conflict>>) -> Vec<Conflict> {
        planned.err().unwrap_or_default()
    }

    fn schema(field: &str) -> Value {
        json!({"type": "object", "properties": {field: {"type": "string"}}})
    }

    fn stored(definition: &EventDefinition) -> Stored {
        Stored {
            event_type: definition.event_type.clone(),
            name: definition.name.clone(),
            description: definition.description.clone(),
            category: definition.category.name().to_owned(),
            payload_schema: definition.payload_schema.clone(),
            payload_schema_ref: definition.payload_schema_ref.clone(),
        }
    }

    #[test]
    fn new_same_renamed_and_newer_definitions_are_written_or_left() {
        let v1 = wanted(1, schema("a"));
        assert_eq!(plan(std::slice::from_ref(&v1), &[]), Ok(vec![Action::Add]));
        assert_eq!(
            plan(std::slice::from_ref(&v1), &[stored(&v1)]),
            Ok(vec![Action::Unchanged])
        );
        let renamed = EventDefinition {
            description: "Made.".to_owned(),
            ..v1.clone()
        };
        assert_eq!(plan(&[renamed], &[stored(&v1)]), Ok(vec![Action::Describe]));
        let v2 = wanted(2, schema("b"));
        assert_eq!(plan(&[v2], &[stored(&v1)]), Ok(vec![Action::Upgrade]));
    }

    #[test]
    fn another_schema_at_the_same_version_an_older_version_and_a_taken_ref_conflict() {
        let v1 = wanted(1, schema("a"));
        let other = wanted(1, schema("b"));
        assert_eq!(
            conflicts(plan(&[other], &[stored(&v1)]))
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            [
                "`acme.WIDGET_CREATED` is registered already as `acme.payload.WidgetCreated.v1` with a different payload schema: another service uses this name, or the payload changed without a version bump (register `acme.WIDGET_CREATED` at a higher version, or choose another namespace)"
            ]
        );
        let moved = EventDefinition {
            category: Category::Tickets,
            ..v1.clone()
        };
        assert!(matches!(
            conflicts(plan(&[moved], &[stored(&v1)])).as_slice(),
            [Conflict::Differs { what, .. }] if what == "category"
        ));
        let v2 = wanted(2, schema("b"));
        assert_eq!(
            plan(std::slice::from_ref(&v1), &[stored(&v2)]),
            Err(vec![Conflict::Older {
                event_type: "acme.WIDGET_CREATED".to_owned(),
                registered: "acme.payload.WidgetCreated.v2".to_owned(),
                ours: "acme.payload.WidgetCreated.v1".to_owned(),
            }])
        );
        let mut holder = stored(&v1);
        holder.event_type = "acme.GADGET_CREATED".to_owned();
        assert!(matches!(
            conflicts(plan(std::slice::from_ref(&v1), &[holder])).as_slice(),
            [Conflict::SchemaRefTaken { holder, .. }] if holder == "acme.GADGET_CREATED"
        ));
        // A row of another shape (written by hand) is never overwritten.
        let mut odd = stored(&v1);
        odd.payload_schema_ref = "widgets.v9".to_owned();
        assert!(matches!(
            conflicts(plan(&[v1], &[odd])).as_slice(),
            [Conflict::Differs { .. }]
        ));
    }
}
