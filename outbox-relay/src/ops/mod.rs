//! Operator commands: replay, discard, status, inspect, purge, the wake-up mode and the
//! catalog's table (every table goes through [`crate::foundation::table`]). The
//! filter that selects events for replay and discard is plain data, in
//! [`crate::engine::filter`] (the store takes it too), re-exported here. The reports of replay, discard,
//! status and purge render themselves as text or serialise to camelCase JSON, the binary
//! only choosing between the two; `inspect` returns a row whose fields serialise to camelCase
//! JSON in a fixed order, `wakeup` the mode's name.

pub mod catalog;
pub mod inspect;
pub mod purge;
pub mod replay;
pub mod status;
pub mod wakeup;

pub use crate::engine::filter::{EventFilter, FilterError, ReplayableStatus};
