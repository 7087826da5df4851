//! The broker objects events travel through, declared by the `outbox-topology` crate (which
//! consumers use without the relay's HTTP and command-line stack); re-exported here so the
//! relay and its callers keep one path to them.

pub use outbox_topology::{bind_queue, declare_bound_queue, declare_exchange};
