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
    /// The database refused the insert; the caller's transaction is aborted.
    #[error("database error while writing the outbox: {0}")]
    Database(#[from] sqlx::Error),
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
