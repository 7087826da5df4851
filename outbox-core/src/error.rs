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
    Database(DatabaseError),
}

impl From<DatabaseError> for EmitError {
    fn from(error: DatabaseError) -> Self {
        EmitError::Database(error)
    }
}

/// The server's own message (without the driver's prefix and repetitions) and, for the
/// errors a first-time user meets, what to do.
fn explain(error: &DatabaseError) -> String {
    match error.code() {
        Some("42P01" | "42883") => format!(
            "{}: the outbox schema is not migrated in this database; call `outbox_core::migrate(&pool)` at start-up or run `outbox-relay migrate`",
            error.message()
        ),
        Some("42501") => format!(
            "{}: this role may not write the outbox; grant it the writer's privileges (deploy/postgres/grants.sql)",
            error.message()
        ),
        _ => error.message().to_owned(),
    }
}

/// An error of the database or of the sqlx driver, from whichever supported sqlx version
/// the caller's connection is (0.9 or 0.8).
///
/// [`DatabaseError::code`] gives the server's SQLSTATE, enough for most decisions (retry a
/// serialization failure, report a permission problem); [`DatabaseError::get_ref`] gives the
/// driver's own error (`sqlx::Error` of the caller's version, or its `MigrateError`) to
/// downcast when more is needed.
#[derive(Debug)]
pub struct DatabaseError {
    source: Box<dyn std::error::Error + Send + Sync + 'static>,
    code: Option<String>,
    message: String,
}

impl DatabaseError {
    pub(crate) fn new(
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
        code: Option<String>,
        server_message: Option<String>,
    ) -> Self {
        let message = server_message.unwrap_or_else(|| source.to_string());
        DatabaseError {
            source,
            code,
            message,
        }
    }

    /// An error the outbox itself detected in what the database answered.
    pub(crate) fn unexpected(what: String) -> Self {
        DatabaseError::new(what.into(), None, None)
    }

    /// The SQLSTATE the server answered with (`42P01`, `40001` ...), when the server refused
    /// a statement; `None` for an error of the connection or the driver.
    pub fn code(&self) -> Option<&str> {
        self.code.as_deref()
    }

    /// The server's message when it refused a statement, else the driver's description of
    /// the error.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The driver's error: a `sqlx::Error` (or `sqlx::migrate::MigrateError`) of the
    /// caller's sqlx version; `downcast_ref` it to that type.
    pub fn get_ref(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.source
    }

    /// The driver's error, owned; see [`DatabaseError::get_ref`].
    pub fn into_inner(self) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self.source
    }
}

impl std::fmt::Display for DatabaseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.source.fmt(f)
    }
}

impl std::error::Error for DatabaseError {
    /// What the driver's error names as its cause (the driver's error itself is this one's
    /// text).
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.source()
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
