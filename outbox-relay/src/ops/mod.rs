//! Operator commands: replay, discard, status, inspect, purge and the wake-up mode. Each
//! returns a report that renders itself as text or serialises to camelCase JSON; the binary
//! only chooses between the two.

pub mod filter;
pub mod inspect;
pub mod purge;
pub mod replay;
pub mod status;
pub mod wakeup;

pub use filter::{EventFilter, FilterError, ReplayableStatus};
