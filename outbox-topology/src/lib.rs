//! The outbox's broker topology, shared by the relay and by consumers, without the relay's
//! HTTP and command-line stack: the durable topic exchange and the queues bound to it
//! ([`declare_exchange`], [`declare_bound_queue`]), the partitioned topology's queues
//! ([`declare_partitions`]) and its partition function ([`partition_of`]), written down with
//! test vectors so that other languages can compute it.
//!
//! ```
//! // The partition of tenant-less `ticket:1` among 8: zlib's CRC-32 of "-/ticket:1", mod 8.
//! assert_eq!(outbox_topology::partition_of("-/ticket:1", 8), 6);
//! ```

mod declare;
mod partition;

pub use declare::{
    PARTITION_PLACEHOLDER, QueueType, TopologyError, bind_queue, declare_bound_queue,
    declare_exchange, declare_partitions, partition_binding_key, partition_queue,
    partition_queue_arguments,
};
pub use partition::{MAX_PARTITIONS, event_partition, partition_key, partition_of, scope_name};
