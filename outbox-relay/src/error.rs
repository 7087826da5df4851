//! Why the relay library refuses to start, or stopped badly.

/// Why the relay could not start, or did not stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// A setting is malformed (the message names it).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Shutdown did not finish within the bound (`shutdown_timeout`); the work still
    /// outstanding was abandoned, and its leases expire.
    #[error("shutdown did not finish within {0:?}")]
    ShutdownTimedOut(std::time::Duration),
}
