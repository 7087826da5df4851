//! Why the relay library refuses to start, or stopped badly: [`RelayError`], and the two
//! refusals at first contact it carries, which the database and broker connections
//! return.

use crate::foundation::config::ConfigError;
use crate::foundation::diagnosis::BrokerRefusal;

/// Why the relay could not start, or did not stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// A setting is malformed (the message names it).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The broker refused the relay at its first contact in a way no retry heals (wrong
    /// credentials, a vhost that does not exist or is not the user's, an exchange of
    /// another type, a missing permission, an untrusted certificate, too few channels):
    /// the relay does not start.
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

/// The database refused the relay at its first contact
/// ([`crate::foundation::db::first_contact`]) in a way no retry heals: wrong credentials,
/// no such database, a schema not migrated, a missing grant, a certificate not trusted.
/// Its text names the server (password masked), the cause and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("database {server}: {cause}")]
pub struct DatabaseRefused {
    /// The server's URL, password masked.
    pub server: String,
    /// The cause and what to do about it ([`crate::foundation::diagnosis::database`]).
    pub cause: String,
}

/// Why the relay's first contact with the broker failed in a way no retry can heal (see
/// [`crate::broker::connection::Broker::first_contact`]). Its text names the node
/// (password masked), the cause in words and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("broker {node}: {refusal}")]
pub struct Unhealable {
    /// The node's URL, password masked.
    pub node: String,
    /// The refusal, in words ([`crate::foundation::diagnosis::broker_refusal`]).
    pub refusal: BrokerRefusal,
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
