//! What a claim of the feed leased and decided, as its settle needs it.

use uuid::Uuid;

use crate::engine::feed_claim::FeedPlan;

/// What a settle of a feed claim needs besides the outcomes.
#[derive(Debug, Clone, Default)]
pub struct FeedClaim {
    /// The claim's snapshot (`pg_snapshot` as text), when it read gap groups: a group read
    /// in full waits from then on only for the transactions running in it.
    pub snapshot: Option<String>,
    /// The partitions leased, each with its claim's decisions.
    pub parts: Vec<PartitionClaim>,
}

/// One partition of a [`FeedClaim`].
#[derive(Debug, Clone, Default)]
pub struct PartitionClaim {
    /// The partition.
    pub part: i64,
    /// The claim's decisions for it.
    pub plan: FeedPlan,
    /// Its replayed events published (each on its own).
    pub replays: Vec<Uuid>,
}

impl FeedClaim {
    /// The partitions leased.
    pub fn partitions(&self) -> Vec<i64> {
        self.parts.iter().map(|p| p.part).collect()
    }
}
