//! Operator commands: replay, discard, status, inspect, purge and the wake-up mode, and the
//! filter that selects events for replay and discard. The reports of replay, discard,
//! status and purge render themselves as text or serialise to camelCase JSON, the binary
//! only choosing between the two; `inspect` returns a row as camelCase JSON, `wakeup` the
//! mode's name.

pub mod filter;
pub mod inspect;
pub mod purge;
pub mod replay;
pub mod status;
pub mod wakeup;

pub use filter::{EventFilter, FilterError, ReplayableStatus};
