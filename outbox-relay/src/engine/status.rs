//! The states of an event, as `outbox_events.status` stores them (the store's state machine
//! is in `store/mod.rs`).

/// The `status` column of `outbox_events`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Waiting to be published (due, backing off, leased, or parked behind its key's head).
    Pending,
    /// Confirmed by the broker. Terminal; purged after the retention.
    Delivered,
    /// Reached the attempt limit or cannot be published at all; blocks its key until an
    /// operator replays or discards it.
    Dead,
    /// Given up by an operator. Terminal; unblocks its key.
    Discarded,
}

impl Status {
    /// Every status.
    pub const ALL: [Status; 4] = [
        Status::Pending,
        Status::Delivered,
        Status::Dead,
        Status::Discarded,
    ];

    /// The value stored in `outbox_events.status`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Delivered => "delivered",
            Status::Dead => "dead",
            Status::Discarded => "discarded",
        }
    }

    /// Parses a stored value.
    pub fn parse(text: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip() {
        for status in Status::ALL {
            assert_eq!(Status::parse(status.as_str()), Some(status));
        }
        assert_eq!(Status::parse("leased"), None);
    }
}
