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
    ///
    /// The refusal is the message, not a `source`: a chain printer (`anyhow`'s `{:#}`)
    /// would print it twice.
    #[error("cannot start: {0} (retrying cannot change that)")]
    BrokerRefused(Unhealable),
    /// The database refused the relay at its first contact in a way no retry heals (wrong
    /// credentials, no such database, the outbox not migrated, a missing grant, an
    /// untrusted certificate): the relay does not start.
    #[error("cannot start: {0} (retrying cannot change that)")]
    DatabaseRefused(DatabaseRefused),
    /// Shutdown did not finish within the bound (`shutdown_timeout`); the work still
    /// outstanding was abandoned, and its leases expire.
    #[error("shutdown did not finish within {0:?}")]
    ShutdownTimedOut(std::time::Duration),
}

impl From<Unhealable> for RelayError {
    fn from(refused: Unhealable) -> Self {
        RelayError::BrokerRefused(refused)
    }
}

impl From<DatabaseRefused> for RelayError {
    fn from(refused: DatabaseRefused) -> Self {
        RelayError::DatabaseRefused(refused)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A refusal at start reads once, also through a chain printer such as `anyhow`'s
    /// `{:#}` (what the binary prints).
    #[test]
    fn a_refusal_at_start_is_printed_once() {
        let refused = RelayError::from(DatabaseRefused {
            server: "postgres://postgres:***@db/x".to_owned(),
            cause: "relation \"outbox_events\" does not exist: run `outbox-relay migrate`"
                .to_owned(),
        });
        let printed = format!("{:#}", anyhow::Error::from(refused));
        assert_eq!(printed.matches("does not exist").count(), 1, "{printed}");
        assert!(
            printed.starts_with("cannot start: database postgres://"),
            "{printed}"
        );
    }
}
