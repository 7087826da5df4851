//! Operator commands: replay, discard, their audit, status, inspect, purge, the wake-up mode
//! and the catalog's table. The filter that selects events for replay and discard is plain
//! data, in [`crate::engine::filter`] (the store takes it too), re-exported here; the one
//! that selects audit records is in [`crate::engine::audit`]. The reports of replay,
//! discard, audit, status and purge render themselves as text or serialise to camelCase
//! JSON, the binary only choosing between the two; `inspect` returns a row whose fields
//! serialise to camelCase JSON in a fixed order, `wakeup` the mode's name. Every table goes
//! through [`crate::foundation::table`].

pub mod audit;
pub mod catalog;
pub mod inspect;
pub mod purge;
pub mod replay;
pub mod status;
pub mod wakeup;

pub use crate::engine::filter::{EventFilter, FilterError, ReplayableStatus};
