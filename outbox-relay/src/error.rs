//! Why the relay library refuses to start.

/// Why the relay could not start.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// A setting is malformed (the message names it).
    #[error("invalid configuration: {0}")]
    Config(String),
}
