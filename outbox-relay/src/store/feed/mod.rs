//! The partitioned feed (engine v3, steps 4b and 4c): a claim leases up to a bound of free
//! partitions with work ([`acquire`], file `lease.rs`) and reads them together in one
//! snapshot ([`read()`], file `read.rs`: most often one statement; otherwise each statement
//! over all of them at once, `unnest` of the partitions and a `LATERAL` read per partition);
//! [`crate::engine::feed_claim::plan`] decides, per partition, what goes out; the settle
//! ([`settle()`], file `settle.rs`) moves the frontiers of the partitions the claim still
//! holds, notes and forgets gaps, and changes held scopes ([`crate::engine::feed_settle`]).
//! Nothing here writes an event's row.

mod claimed;
mod lease;
mod read;
mod settle;

pub use claimed::{FeedClaim, PartitionClaim};
pub use lease::{
    ACQUIRE_SQL, CLAIMED_SQL, FORGET_GONE_SQL, HAS_WORK_SQL, IS_FREE_SQL, PROBE_SQL, acquire,
};
pub use read::{
    DUE_SQL, GAP_GROUPS_PER_CLAIM, GAPS_PER_CLAIM, GAPS_SQL, HELD_SQL, READ_STATEMENTS,
    REPLAYS_SQL, SEGMENT_SQL, SEGMENTS_FAST_SQL, SNAPSHOT_SQL, WALK_KEYED_SQL, WALK_LIMIT,
    WALK_ONE_SQL, WALKS_PER_CLAIM, read,
};
pub(crate) use read::{decide, read_fast, read_full};
pub use settle::{FeedSettled, settle};
