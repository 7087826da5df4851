//! What a claim of the feed leased and decided, as its settle needs it.

use uuid::Uuid;

use crate::engine::feed_claim::FeedPlan;

/// What a settle of a feed claim needs besides the outcomes.
#[derive(Debug, Clone, Default)]
pub struct FeedClaim {
    /// The oldest transaction running when the claim read (`pg_snapshot_xmin`): the gaps
    /// noted before it whose rows it did not see will never fill.
    pub xmin: u64,
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
