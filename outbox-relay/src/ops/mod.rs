//! Operator commands: replay, status, inspect and purge.

pub mod filter;
pub mod inspect;
pub mod replay;
pub mod status;

pub use filter::{EventFilter, FilterError, ReplayableStatus};
