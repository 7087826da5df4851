//! Why an emit was refused.

use catalog_types::ValidationError;

/// Why an event was not written to the outbox.
///
/// Validation failures are detected before any SQL runs, so the caller's transaction stays
/// usable and can still commit its other work.
#[derive(Debug, thiserror::Error)]
pub enum EmitError {
    /// The payload breaks its event's JSON Schema; the message names each field path.
    #[error("{0}")]
    InvalidPayload(ValidationError),
    /// The event type is not in the catalog.
    #[error("unknown event type `{0}`: it is not in the catalog")]
    UnknownEventType(String),
    /// An option was malformed (a `traceparent` that is not W3C, a header that is not a string ...).
    #[error("invalid emit option: {0}")]
    InvalidOption(String),
    /// The payload could not be serialised to JSON.
    #[error("payload does not serialise to JSON: {0}")]
    Serialize(#[from] serde_json::Error),
    /// The database refused the insert; the caller's transaction is aborted. The message
    /// says what to do where that is known (a schema that was never migrated).
    #[error("database error while writing the outbox: {}", explain(.0))]
    Database(sqlx::Error),
}

impl From<sqlx::Error> for EmitError {
    fn from(error: sqlx::Error) -> Self {
        EmitError::Database(error)
    }
}

/// The server's own message (without the driver's prefix and repetitions) and, for the
/// errors a first-time user meets, what to do.
fn explain(error: &sqlx::Error) -> String {
    let sqlx::Error::Database(db) = error else {
        return error.to_string();
    };
    match db.code().as_deref() {
        Some("42P01" | "42883") => format!(
            "{}: the outbox schema is not migrated in this database; call `outbox_core::migrate(&pool)` at start-up or run `outbox-relay migrate`",
            db.message()
        ),
        Some("42501") => format!(
            "{}: this role may not write the outbox; grant it the writer's privileges (deploy/postgres/grants.sql)",
            db.message()
        ),
        _ => db.message().to_owned(),
    }
}

impl From<ValidationError> for EmitError {
    fn from(error: ValidationError) -> Self {
        match error {
            ValidationError::UnknownEventType(event_type) => {
                EmitError::UnknownEventType(event_type)
            }
            invalid => EmitError::InvalidPayload(invalid),
        }
    }
}
