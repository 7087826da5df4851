//! Why a consumer stops or cannot start.

/// A consumer's error. The broker URL is never part of it (it may carry a password).
#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    /// A setting it cannot honour.
    #[error("invalid consumer configuration: {0}")]
    Config(String),
    /// The broker refused or failed an operation (`what` says which).
    #[error("{what}: {source}")]
    Broker {
        /// What was being done.
        what: String,
        /// The client's error.
        source: lapin::Error,
    },
    /// The broker did not answer in time.
    #[error("{0}")]
    Unreachable(String),
    /// Declaring the topology failed.
    #[error(transparent)]
    Topology(#[from] outbox_topology::TopologyError),
    /// Shutdown outlived its bound; the messages being handled return to their queues.
    #[error("shutdown did not finish within {0:?}")]
    ShutdownTimedOut(std::time::Duration),
}

impl ConsumerError {
    pub(crate) fn broker(what: impl Into<String>, source: lapin::Error) -> Self {
        ConsumerError::Broker {
            what: what.into(),
            source,
        }
    }
}
