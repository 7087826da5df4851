//! `inspect`: one event's full row, as JSON.

pub use crate::store::operator::inspect;
