//! Why the relay library refuses to start, or stopped badly.

use crate::config::ConfigError;
use crate::db::DatabaseRefused;
use crate::publisher::Unhealable;

/// Why the relay could not start, or did not stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// A setting is malformed (the message names it).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The broker refused the relay at its first contact in a way no retry heals (wrong
    /// credentials, an untrusted certificate): the relay does not start.
    #[error("cannot start: {0} (retrying cannot change that)")]
    BrokerRefused(#[from] Unhealable),
    /// The database refused the relay at its first contact in a way no retry heals (wrong
    /// credentials, no such database, the outbox not migrated, a missing grant, an
    /// untrusted certificate): the relay does not start.
    #[error("cannot start: {0} (retrying cannot change that)")]
    DatabaseRefused(#[from] DatabaseRefused),
    /// Shutdown did not finish within the bound (`shutdown_timeout`); the work still
    /// outstanding was abandoned, and its leases expire.
    #[error("shutdown did not finish within {0:?}")]
    ShutdownTimedOut(std::time::Duration),
}
