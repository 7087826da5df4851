//! Every statement on `outbox_events`, and the state machine they implement.
//!
//! An event's row is written once, by its producer (the insert trigger fills what the
//! producer may not choose), and deleted by retention; nothing else writes it. Where it
//! stands lives in the relay's tables (engine v3, step 4b; docs/delivery-engine.md):
//!
//! | what | table | written by | where |
//! | --- | --- | --- | --- |
//! | how far each partition of the feed has been read, and which loop leases it | `outbox_partitions` | claims (the lease), settles (the frontier) | [`feed`] |
//! | seqs missing below a frontier, and per group of them (those one settle noted) the transactions that could still fill them | `outbox_gaps`, `outbox_gap_groups` | settles | [`feed`] |
//! | scopes whose head cannot go now (backing off, dead, scheduled, released) | `outbox_held` | settles, operators | [`feed`], [`operator`] |
//! | failures per event | `outbox_attempts` | settles, operators | [`feed`], [`operator`] |
//! | events to send once more | `outbox_replays` | operators (replay), settles | [`operator`], [`feed`] |
//! | discarded events | `outbox_discarded` | operators (discard) | [`operator`] |
//! | events older relays delivered behind what is now a held head (the walks pass over them) | `outbox_delivered_behind` | the step-5 migration only; retention deletes | [`feed`], [`purge`] |
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

/// Whether the gap group `g` (an alias of an `outbox_gap_groups` row) is *due*: a claim
/// reading in the current snapshot could find a gap of it filled or never to be filled,
/// because it was never read in full (`recheck`) or a transaction that might commit one of
/// its gaps has ended since it was (`pg_visible_in_snapshot`: ended before the snapshot).
/// While every such transaction still runs, no gap of the group can be visible, and claims
/// leave it alone (migration `20261207000002`). A literal, for `concat!`.
macro_rules! gap_group_due {
    ($g:literal) => {
        concat!(
            "(",
            $g,
            ".recheck OR cardinality(",
            $g,
            ".waiting) = 0 OR EXISTS (SELECT 1 FROM unnest(",
            $g,
            ".waiting) AS gw(xid) WHERE pg_visible_in_snapshot(gw.xid, pg_current_snapshot())))"
        )
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

/// The statement that opens a claim's lease or a settle: READ COMMITTED (whatever the
/// database's default), no JIT (the statements are short), an asynchronous commit (a crash
/// of the database may lose the last of them, which only puts their events back: a lease
/// ends, events go out again with the same `message_id`), the server ending the session if
/// the transaction sits idle for [`IDLE_IN_TRANSACTION_TIMEOUT`] (a client whose link went
/// silent cannot hold writers' key locks or a partition's row), and `outbox.actor = relay`
/// for the outbox's row triggers.
pub(crate) const RELAY_BEGIN: &str = "BEGIN ISOLATION LEVEL READ COMMITTED; SELECT set_config('jit', 'off', true), set_config('synchronous_commit', 'off', true), set_config('idle_in_transaction_session_timeout', '10s', true), set_config('outbox.actor', 'relay', true)";

/// [`RELAY_BEGIN`] for a claim: then, in the same round trip, forget the relays that are
/// gone ([`feed::FORGET_GONE_SQL`]), so that the lease that follows finds their partitions
/// free.
pub(crate) const CLAIM_BEGIN: &str = "BEGIN ISOLATION LEVEL READ COMMITTED; SELECT set_config('jit', 'off', true), set_config('synchronous_commit', 'off', true), set_config('idle_in_transaction_session_timeout', '10s', true), set_config('outbox.actor', 'relay', true); DELETE FROM outbox_relay_owners o WHERE pg_try_advisory_xact_lock(1869968482, o.owner)";

/// [`RELAY_BEGIN`] for an operator's change, with a durable commit: a replay and its audit
/// row must survive a crash of the database once the command has said so.
pub(crate) const OPERATOR_BEGIN: &str = "BEGIN ISOLATION LEVEL READ COMMITTED; SELECT set_config('jit', 'off', true), set_config('idle_in_transaction_session_timeout', '10s', true), set_config('outbox.actor', 'relay', true)";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_begin_statement_bounds_idle_time_and_marks_the_relay() {
        for statement in [RELAY_BEGIN, CLAIM_BEGIN, OPERATOR_BEGIN] {
            assert!(statement.starts_with("BEGIN ISOLATION LEVEL READ COMMITTED;"));
            let idle = format!(
                "set_config('idle_in_transaction_session_timeout', '{IDLE_IN_TRANSACTION_TIMEOUT}', true)"
            );
            assert!(statement.contains(&idle), "{statement}");
            assert!(
                statement.contains("set_config('outbox.actor', 'relay', true)"),
                "{statement}"
            );
        }
        assert!(RELAY_BEGIN.contains("set_config('synchronous_commit', 'off', true)"));
        assert_eq!(
            CLAIM_BEGIN,
            format!("{RELAY_BEGIN}; {}", feed::FORGET_GONE_SQL),
            "a claim begins as every relay transaction, then forgets the relays that are gone"
        );
        assert!(!OPERATOR_BEGIN.contains("synchronous_commit"));
    }
}
