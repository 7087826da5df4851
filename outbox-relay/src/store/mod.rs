//! Every statement on `outbox_events`, and the state machine they implement.
//!
//! An event's row is written once, by its producer (the insert trigger fills what the
//! producer may not choose), and deleted by retention; nothing else writes it. Where it
//! stands lives in the relay's tables (engine v3, step 4b; docs/delivery-engine.md):
//!
//! | what | table | written by | where |
//! | --- | --- | --- | --- |
//! | how far each partition of the feed has been read, and which loop leases it | `outbox_partitions` | claims (the lease), settles (the frontier) | [`feed`] |
//! | seqs missing below a frontier | `outbox_gaps` | settles | [`feed`] |
//! | scopes whose head cannot go now (backing off, dead, scheduled, released) | `outbox_held` | settles, operators | [`feed`], [`operator`] |
//! | failures per event | `outbox_attempts` | settles, operators | [`feed`], [`operator`] |
//! | events to send once more | `outbox_replays` | operators (replay), settles | [`operator`], [`feed`] |
//! | discarded events | `outbox_discarded` | operators (discard) | [`operator`] |
//!
//! `outbox_event_status` derives each event's status from them. A partition is worked by
//! one claim at a time, and a scope lives in one partition, so per-scope order needs no
//! lock between relays. The reports of `status` and `/metrics` are in [`stats`], the audit
//! of operator changes (written by [`operator::apply`]) is read in [`audit`].

/// `sqlx::FromRow` for a struct whose fields are named as the columns, without sqlx's
/// derive: its macros would compile the whole PostgreSQL driver a second time for the
/// compiler. The struct literal makes the compiler check that every field is listed.
macro_rules! from_row {
    ($name:ident { $($field:ident),+ $(,)? }) => {
        impl<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> for $name {
            fn from_row(row: &'r sqlx::postgres::PgRow) -> Result<Self, sqlx::Error> {
                use sqlx::Row as _;
                Ok(Self {
                    $($field: row.try_get(stringify!($field))?,)+
                })
            }
        }
    };
}

pub mod audit;
pub mod claim;
pub mod feed;
pub mod operator;
pub mod purge;
pub mod settle;
pub mod stats;

pub use crate::engine::status::Status;

/// How long a transaction of the relay that holds locks others wait for (writers' key
/// locks, a partition's row) may sit idle on the server before the server ends its
/// session (`idle_in_transaction_session_timeout`, set per transaction).
pub const IDLE_IN_TRANSACTION_TIMEOUT: &str = "10s";
