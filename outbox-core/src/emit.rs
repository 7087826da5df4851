//! Writing events into the outbox inside the caller's transaction.

use catalog_types::{CatalogEvent, Registry, registry};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::driver::{KeyedId, SqlxConnection, Statement};
use crate::text::{json_problems, key_problem, value_problem};
use crate::trace::{self, is_valid_traceparent};
use crate::{DatabaseError, EmitError, EmitOptions};

/// The longest ordering key and dedupe key, in bytes (the insert trigger enforces the same).
pub const MAX_KEY_BYTES: usize = 512;

/// An event ready to be written: validated payload plus its outbox metadata.
///
/// Build one with [`NewEvent::new`] (typed) or [`NewEvent::untyped`] (validated against the
/// catalog), then write many at once with [`emit_batch`].
#[derive(Debug, Clone)]
pub struct NewEvent {
    id: Uuid,
    tenant_id: Option<Uuid>,
    event_type: String,
    schema_ref: String,
    category: String,
    ordering_key: Option<String>,
    payload: Value,
    options: EmitOptions,
}

impl NewEvent {
    /// A typed catalog event.
    ///
    /// Refused with [`EmitError::InvalidPayload`] (naming each field path) when a string or
    /// key of the payload holds a NUL character, which PostgreSQL cannot store.
    pub fn new<E: CatalogEvent>(event: &E) -> Result<Self, EmitError> {
        let payload = serde_json::to_value(event)?;
        check_storable(E::EVENT_TYPE, &payload)?;
        Ok(NewEvent {
            id: Uuid::now_v7(),
            tenant_id: event.tenant_id(),
            event_type: E::EVENT_TYPE.to_owned(),
            schema_ref: E::SCHEMA_REF.to_owned(),
            category: E::CATEGORY.name().to_owned(),
            ordering_key: event.ordering_key(),
            payload,
            options: EmitOptions::default(),
        })
    }

    /// An untyped payload, validated against the catalog schema of `event_type`.
    ///
    /// Refused with [`EmitError::UnknownEventType`] or [`EmitError::InvalidPayload`] (naming
    /// each offending field path: a schema violation, or a NUL character PostgreSQL cannot
    /// store) before anything touches the database.
    pub fn untyped(event_type: &str, payload: Value) -> Result<Self, EmitError> {
        Self::untyped_in(registry(), event_type, payload)
    }

    /// [`NewEvent::untyped`] against `registry`: the catalog plus a service's own events
    /// ([`Registry::builder`]), so their payloads are held to their schemas too.
    pub fn untyped_in(
        registry: &Registry,
        event_type: &str,
        payload: Value,
    ) -> Result<Self, EmitError> {
        let entry = registry
            .by_event_type(event_type)
            .ok_or_else(|| EmitError::UnknownEventType(event_type.to_owned()))?;
        let valid = entry.validate(payload)?;
        check_storable(entry.event_type, &valid.payload)?;
        Ok(NewEvent {
            id: Uuid::now_v7(),
            tenant_id: valid.tenant_id,
            event_type: entry.event_type.to_owned(),
            schema_ref: entry.schema_ref.to_owned(),
            category: entry.category.name().to_owned(),
            ordering_key: valid.ordering_key,
            payload: valid.payload,
            options: EmitOptions::default(),
        })
    }

    /// Sets the options of this event.
    pub fn with_options(mut self, options: EmitOptions) -> Self {
        self.options = options;
        self
    }

    /// The id the event will have if it is stored (a dedupe hit returns the earlier id instead).
    pub fn id(&self) -> Uuid {
        self.id
    }

    /// The event type.
    pub fn event_type(&self) -> &str {
        &self.event_type
    }

    fn dedupe_key(&self) -> String {
        self.options
            .dedupe_key
            .clone()
            .unwrap_or_else(|| self.id.to_string())
    }

    fn ordering_key(&self) -> Option<String> {
        match &self.options.ordering_key {
            Some(overridden) => overridden.clone(),
            None => self.ordering_key.clone(),
        }
    }

    /// Extra headers plus the W3C trace context (explicit, else ambient).
    fn headers(&self) -> Result<Value, EmitError> {
        let mut headers: Map<String, Value> = self.options.headers.clone();
        let ambient = trace::current();
        let traceparent = self
            .options
            .traceparent
            .clone()
            .or_else(|| ambient.as_ref().map(|c| c.traceparent().to_owned()));
        let tracestate = self.options.tracestate.clone().or_else(|| {
            ambient
                .as_ref()
                .and_then(|c| c.tracestate().map(str::to_owned))
        });
        if let Some(traceparent) = traceparent {
            if !is_valid_traceparent(&traceparent) {
                return Err(EmitError::InvalidOption(format!(
                    "`{traceparent}` is not a W3C traceparent"
                )));
            }
            headers.insert("traceparent".to_owned(), Value::String(traceparent));
            if let Some(tracestate) = tracestate {
                headers.insert("tracestate".to_owned(), Value::String(tracestate));
            }
        }
        Ok(Value::Object(headers))
    }
}

/// Refuses a payload with a string or key PostgreSQL `jsonb` cannot store (a NUL character):
/// the insert would fail and abort the caller's transaction.
fn check_storable(event_type: &str, payload: &Value) -> Result<(), EmitError> {
    let problems = json_problems(payload);
    if problems.is_empty() {
        return Ok(());
    }
    Err(EmitError::InvalidPayload(
        catalog_types::ValidationError::InvalidPayload {
            event_type: event_type.to_owned(),
            problems,
        },
    ))
}

/// Why an emit option's text cannot be stored, naming the option.
/// Why `name` cannot be an AMQP header name (a short string of 1 to 255 bytes), if it
/// cannot: an empty name is called empty, a long one is shown by its first characters.
fn header_name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some(
            "a header name is empty (AMQP header names need at least one character)".to_owned(),
        );
    }
    (name.len() > 255).then(|| {
        format!(
            "header name `{}…` is {} bytes, over the 255 allowed (AMQP short string)",
            name.chars().take(40).collect::<String>().escape_debug(),
            name.len()
        )
    })
}

fn invalid_option(what: &str, problem: impl std::fmt::Display) -> EmitError {
    EmitError::InvalidOption(format!("{what} {problem}"))
}

/// Writes one typed event in the caller's transaction and returns its id.
///
/// Pass `&mut *tx` (or `&mut tx`) of the service's transaction, of sqlx 0.9 or 0.8 (see
/// [`SqlxConnection`]). If an event with the same tenant and dedupe key is
/// already stored (see [`EmitOptions::dedupe_key`]), nothing is written and that event's id is
/// returned.
pub async fn emit<E: CatalogEvent>(
    conn: &mut impl SqlxConnection,
    event: &E,
) -> Result<Uuid, EmitError> {
    emit_with(conn, event, EmitOptions::default()).await
}

/// [`emit`] with options (dedupe key, ordering key, delay, headers).
pub async fn emit_with<E: CatalogEvent>(
    conn: &mut impl SqlxConnection,
    event: &E,
    options: EmitOptions,
) -> Result<Uuid, EmitError> {
    let event = NewEvent::new(event)?.with_options(options);
    emit_one(conn, &event).await
}

/// Validates an untyped payload against the catalog and writes it; see [`NewEvent::untyped`].
pub async fn emit_untyped(
    conn: &mut impl SqlxConnection,
    event_type: &str,
    payload: Value,
    options: EmitOptions,
) -> Result<Uuid, EmitError> {
    let event = NewEvent::untyped(event_type, payload)?.with_options(options);
    emit_one(conn, &event).await
}

/// Writes one event built by the caller of this module (never reused, so its id is fresh).
///
/// Without a dedupe key of the caller's, the stored dedupe key is that fresh id, which no
/// stored row can hold: the plain one-row `INSERT` below then does exactly what the batch
/// statement would, without its `unnest` of eleven arrays and without the speculative
/// insertion of `ON CONFLICT` (an extra index probe and WAL record per event). With a
/// dedupe key, the batch statement resolves a duplicate to the stored id.
async fn emit_one(conn: &mut impl SqlxConnection, event: &NewEvent) -> Result<Uuid, EmitError> {
    if event.options.dedupe_key.is_some() {
        return single(emit_batch(conn, std::slice::from_ref(event)).await?);
    }
    let mut columns = Columns::with_capacity(1);
    columns.push(event)?;
    Statement::new(
        "INSERT INTO outbox_events
             (id, tenant_id, event_type, schema_ref, category, ordering_key, payload, headers,
              dedupe_key, occurred_at, available_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, COALESCE($10, now()),
                 COALESCE($11, now() + make_interval(secs => $12), now()))",
    )
    .bind(event.id)
    .bind(event.tenant_id)
    .bind(&event.event_type)
    .bind(&event.schema_ref)
    .bind(&event.category)
    .bind(columns.ordering_keys.first().and_then(Option::as_deref))
    .bind(columns.payloads.first())
    .bind(columns.headers.first())
    .bind(columns.dedupe_keys.first().map(String::as_str))
    .bind(event.options.occurred_at)
    .bind(event.options.available_at)
    .bind(event.options.delay_seconds)
    .execute(conn)
    .await?;
    Ok(event.id)
}

fn single(ids: Vec<Uuid>) -> Result<Uuid, EmitError> {
    ids.into_iter().next().ok_or_else(|| {
        EmitError::Database(DatabaseError::unexpected(
            "the insert returned no id".to_owned(),
        ))
    })
}

/// Writes many events with one statement and returns their ids in input order.
///
/// Events whose (tenant, dedupe key) is already stored are not written again; their
/// position in the result holds the stored id.
pub async fn emit_batch(
    conn: &mut impl SqlxConnection,
    events: &[NewEvent],
) -> Result<Vec<Uuid>, EmitError> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let mut columns = Columns::with_capacity(events.len());
    for event in events {
        columns.push(event)?;
    }
    lock_keys_in_order(conn, &columns.tenant_ids, &columns.ordering_keys).await?;
    let inserted = Statement::new(
        "INSERT INTO outbox_events
             (id, tenant_id, event_type, schema_ref, category, ordering_key, payload, headers,
              dedupe_key, occurred_at, available_at)
         SELECT id, tenant_id, event_type, schema_ref, category, ordering_key, payload, headers,
                dedupe_key, COALESCE(occurred_at, now()),
                COALESCE(available_at, now() + make_interval(secs => delay_seconds), now())
           FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[],
                       $7::jsonb[], $8::jsonb[], $9::text[], $10::timestamptz[], $11::timestamptz[],
                       $12::float8[])
                AS input(id, tenant_id, event_type, schema_ref, category, ordering_key, payload,
                         headers, dedupe_key, occurred_at, available_at, delay_seconds)
         ON CONFLICT ON CONSTRAINT outbox_events_tenant_dedupe DO NOTHING
         RETURNING id, tenant_id, dedupe_key",
    )
    .bind(&columns.ids)
    .bind(&columns.tenant_ids)
    .bind(&columns.event_types)
    .bind(&columns.schema_refs)
    .bind(&columns.categories)
    .bind(&columns.ordering_keys)
    .bind(&columns.payloads)
    .bind(&columns.headers)
    .bind(&columns.dedupe_keys)
    .bind(&columns.occurred_at)
    .bind(&columns.available_at)
    .bind(&columns.delay_seconds)
    .fetch_keyed(conn)
    .await?;

    if inserted.len() == events.len() {
        return Ok(columns.ids);
    }
    resolve_duplicates(conn, &columns, inserted).await
}

/// Takes the per-scope locks of a batch that spans several ordering scopes (tenant and
/// ordering key) in sorted order, before the insert takes them in event order: two batches
/// over the same scopes then queue instead of deadlocking. (The insert trigger takes each
/// scope's lock again, at no cost.) The scopes are named by the database's `outbox_scope()`,
/// the same function the trigger uses.
async fn lock_keys_in_order(
    conn: &mut impl SqlxConnection,
    tenants: &[Option<Uuid>],
    keys: &[Option<String>],
) -> Result<(), EmitError> {
    let mut distinct: Vec<(Option<Uuid>, &str)> = tenants
        .iter()
        .zip(keys)
        .filter_map(|(tenant, key)| key.as_deref().map(|key| (*tenant, key)))
        .collect();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() < 2 {
        return Ok(());
    }
    let (tenants, keys): (Vec<Option<Uuid>>, Vec<&str>) = distinct.into_iter().unzip();
    Statement::new(
        "INSERT INTO outbox_key_locks AS l (ordering_key)
         SELECT scope FROM (SELECT DISTINCT outbox_scope(t, k) AS scope
                              FROM unnest($1::uuid[], $2::text[]) AS u(t, k)) AS s
          ORDER BY scope
         ON CONFLICT (ordering_key) DO UPDATE SET ordering_key = l.ordering_key WHERE false",
    )
    .bind(&tenants)
    .bind(&keys)
    .execute(conn)
    .await?;
    Ok(())
}

/// Maps every input row to the id stored under its (tenant, dedupe key): the row just
/// inserted, or the one stored before (a second round trip, only when duplicates occurred).
async fn resolve_duplicates(
    conn: &mut impl SqlxConnection,
    columns: &Columns,
    inserted: Vec<KeyedId>,
) -> Result<Vec<Uuid>, EmitError> {
    use std::collections::HashMap;
    let mut stored: HashMap<(Option<Uuid>, String), Uuid> = inserted
        .into_iter()
        .map(|(id, tenant, key)| ((tenant, key), id))
        .collect();
    let missing: Vec<usize> = (0..columns.ids.len())
        .filter(|&i| !stored.contains_key(&columns.key(i)))
        .collect();
    if !missing.is_empty() {
        let tenants: Vec<Option<Uuid>> = missing.iter().map(|&i| columns.tenant_ids[i]).collect();
        let keys: Vec<String> = missing
            .iter()
            .map(|&i| columns.dedupe_keys[i].clone())
            .collect();
        // Two arms, so each probe is an equality (or IS NULL) on the unique index
        // `(tenant_id, dedupe_key)`; `IS NOT DISTINCT FROM` would scan the table.
        let existing = Statement::new(
            "SELECT e.id, e.tenant_id, e.dedupe_key
               FROM unnest($1::uuid[], $2::text[]) AS wanted(tenant_id, dedupe_key)
               JOIN outbox_events e
                 ON e.tenant_id = wanted.tenant_id AND e.dedupe_key = wanted.dedupe_key
             UNION ALL
             SELECT e.id, e.tenant_id, e.dedupe_key
               FROM unnest($1::uuid[], $2::text[]) AS wanted(tenant_id, dedupe_key)
               JOIN outbox_events e
                 ON e.tenant_id IS NULL AND e.dedupe_key = wanted.dedupe_key
              WHERE wanted.tenant_id IS NULL",
        )
        .bind(&tenants)
        .bind(&keys)
        .fetch_keyed(conn)
        .await?;
        stored.extend(
            existing
                .into_iter()
                .map(|(id, tenant, key)| ((tenant, key), id)),
        );
    }
    (0..columns.ids.len())
        .map(|i| {
            stored.get(&columns.key(i)).copied().ok_or_else(|| {
                EmitError::Database(DatabaseError::unexpected(format!(
                    "dedupe key `{}` is held by a transaction this one cannot see",
                    columns.dedupe_keys[i]
                )))
            })
        })
        .collect()
}

/// The batch as column arrays, the shape `unnest` takes.
struct Columns {
    ids: Vec<Uuid>,
    tenant_ids: Vec<Option<Uuid>>,
    event_types: Vec<String>,
    schema_refs: Vec<String>,
    categories: Vec<String>,
    ordering_keys: Vec<Option<String>>,
    payloads: Vec<Value>,
    headers: Vec<Value>,
    dedupe_keys: Vec<String>,
    occurred_at: Vec<Option<DateTime<Utc>>>,
    available_at: Vec<Option<DateTime<Utc>>>,
    delay_seconds: Vec<Option<f64>>,
}

impl Columns {
    fn with_capacity(n: usize) -> Self {
        Columns {
            ids: Vec::with_capacity(n),
            tenant_ids: Vec::with_capacity(n),
            event_types: Vec::with_capacity(n),
            schema_refs: Vec::with_capacity(n),
            categories: Vec::with_capacity(n),
            ordering_keys: Vec::with_capacity(n),
            payloads: Vec::with_capacity(n),
            headers: Vec::with_capacity(n),
            dedupe_keys: Vec::with_capacity(n),
            occurred_at: Vec::with_capacity(n),
            available_at: Vec::with_capacity(n),
            delay_seconds: Vec::with_capacity(n),
        }
    }

    /// Adds one event, refusing (before any SQL) what the database or the relay could not
    /// take: keys over [`MAX_KEY_BYTES`], keys the caller set with control characters, an
    /// empty dedupe key,
    /// header names that are empty, over 255 bytes or with control characters, and NUL
    /// characters in header values.
    fn push(&mut self, event: &NewEvent) -> Result<(), EmitError> {
        let ordering_key = event.ordering_key();
        let dedupe_key = event.dedupe_key();
        if dedupe_key.is_empty() {
            return Err(EmitError::InvalidOption(
                "the dedupe key is empty: every event of the tenant with an empty key would be taken for a duplicate of the first"
                    .to_owned(),
            ));
        }
        // A key the caller chose is held to the operator tools' rules; the default ordering
        // key comes from the payload (`email_message:<messageId>`), whose text the schema
        // already admitted (a NUL in it was refused with the payload), so only its length
        // is checked.
        let explicit_ordering = event.options.ordering_key.is_some();
        for (what, value, explicit) in [
            ("ordering key", ordering_key.as_deref(), explicit_ordering),
            ("dedupe key", Some(dedupe_key.as_str()), true),
        ] {
            let Some(value) = value else { continue };
            if value.len() > MAX_KEY_BYTES {
                let origin = if explicit {
                    ""
                } else {
                    " (derived from the payload's aggregate id; EmitOptions::ordering_key overrides it)"
                };
                return Err(EmitError::InvalidOption(format!(
                    "the {what} is {} bytes, over the {MAX_KEY_BYTES} allowed{origin}",
                    value.len()
                )));
            }
            if explicit && let Some(problem) = key_problem(value) {
                return Err(invalid_option(&format!("the {what}"), problem));
            }
        }
        let headers = event.headers()?;
        for (name, value) in headers.as_object().into_iter().flatten() {
            if let Some(problem) = header_name_problem(name) {
                return Err(EmitError::InvalidOption(problem));
            }
            let shown = name
                .chars()
                .take(40)
                .collect::<String>()
                .escape_debug()
                .to_string();
            if let Some(problem) = key_problem(name) {
                return Err(invalid_option(&format!("header name `{shown}`"), problem));
            }
            if let Some(problem) = value.as_str().and_then(value_problem) {
                return Err(invalid_option(
                    &format!("the value of header `{shown}`"),
                    problem,
                ));
            }
        }
        self.headers.push(headers);
        self.ids.push(event.id);
        self.tenant_ids.push(event.tenant_id);
        self.event_types.push(event.event_type.clone());
        self.schema_refs.push(event.schema_ref.clone());
        self.categories.push(event.category.clone());
        self.ordering_keys.push(ordering_key);
        self.payloads.push(event.payload.clone());
        self.dedupe_keys.push(dedupe_key);
        self.occurred_at.push(event.options.occurred_at);
        self.available_at.push(event.options.available_at);
        self.delay_seconds.push(event.options.delay_seconds);
        Ok(())
    }

    fn key(&self, i: usize) -> (Option<Uuid>, String) {
        (self.tenant_ids[i], self.dedupe_keys[i].clone())
    }
}

/// Validates an untyped payload against `registry` (the catalog plus the service's own
/// events) and writes it in the caller's transaction; see [`NewEvent::untyped_in`].
///
/// A payload that breaks its event's schema is refused with [`EmitError::InvalidPayload`],
/// naming each field path, before anything touches the database.
pub async fn emit_untyped_in(
    conn: &mut impl SqlxConnection,
    registry: &Registry,
    event_type: &str,
    payload: Value,
    options: EmitOptions,
) -> Result<Uuid, EmitError> {
    let event = NewEvent::untyped_in(registry, event_type, payload)?.with_options(options);
    emit_batch(conn, std::slice::from_ref(&event))
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| {
            EmitError::Database(DatabaseError::unexpected(
                "the insert returned no id".to_owned(),
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_header_name_is_called_empty() {
        let empty = header_name_problem("").unwrap_or_default();
        assert!(empty.contains("header name is empty"), "{empty}");
        assert!(!empty.contains('…'), "{empty}");
        let long = header_name_problem(&"n".repeat(300)).unwrap_or_default();
        assert!(
            long.starts_with(&format!("header name `{}…` is 300 bytes", "n".repeat(40))),
            "{long}"
        );
        assert_eq!(header_name_problem("x-ok"), None);
        assert_eq!(header_name_problem(&"n".repeat(255)), None);
    }
}
