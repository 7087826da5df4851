//! Every statement on `outbox_events`, and the state machine they implement.
//!
//! An event's life, and the only places its state changes:
//!
//! | from | to | by | where |
//! | --- | --- | --- | --- |
//! | (insert) | `pending` (head, or `parked` behind its key's head) | the insert trigger | `migrations/` |
//! | `pending`, unleased | `pending`, its scope leased under a claim token (a row of `outbox_leases`; the event row is not written) | [`claim::claim`] | `claim.rs` |
//! | `pending`, lease expired or its relay gone | `pending`, unleased (the lease row deleted) | [`claim::claim`] (reaping) | `claim.rs` |
//! | `pending`, leased | `delivered` / retrying / `dead` / unleased | [`settle::settle`] | `settle.rs` |
//! | `pending`, parked, next try due | `pending`, unparked | [`claim::claim`] (due retries) | `claim.rs` |
//! | `dead`, `delivered` or `discarded` | `pending` | [`operator::apply`] (replay) | `operator.rs` |
//! | `dead` | `discarded` | [`operator::apply`] (discard) | `operator.rs` |
//! | `delivered`, `discarded` | (deleted) | [`purge`] | `purge.rs` |
//!
//! A retrying or dead event is a parked `pending` row whose failures, next try and death
//! are in `outbox_attempts` (the relay's table); `outbox_event_status` names its status.
//!
//! Two locks keep this consistent across relays and writers:
//! - the **claim lock**, a transaction advisory lock: claims take it exclusively, settles and
//!   operator changes take it shared. A claim therefore reads states no settle is changing,
//!   and two claims never split a key's run between them;
//! - the **key lock**, a row of `outbox_key_locks` that writers hold from insert to commit
//!   (taken by the insert trigger). A settle that moves a key's head takes it too
//!   (`SKIP LOCKED`), so a writer never parks its event behind a head that is already gone;
//!   when a writer holds it, the key is noted in `outbox_key_recheck` and the next claim
//!   finishes the job.
//!
//! Read [`Status`] for the states; the reports of `status` and `/metrics` are in [`stats`],
//! the audit of operator changes (written by [`operator::apply`]) is read in [`audit`].

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

use sqlx::{PgConnection, Postgres, Transaction};

pub use crate::engine::status::Status;

/// Advisory lock key serialising claims against each other and against settles
/// (`'outbox'` as bytes).
pub const CLAIM_LOCK: i64 = 0x6f75_7462_6f78;

/// How long a transaction of the relay that holds locks others wait for (the claim lock,
/// writers' key locks) may sit idle on the server before the server ends its session. A
/// relay whose database link goes silent can stall the others for this long once per
/// transaction it had under way (its loops queued on the claim lock take it in turn): at
/// most `--in-flight-batches` times this, instead of until the server's TCP keepalive fails
/// the connection. The relay's own transactions are never idle for more than a round trip
/// and a little client-side work.
pub const IDLE_IN_TRANSACTION_TIMEOUT: &str = "10s";

/// How a transaction holds the claim lock, and how its commit is flushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClaimLock {
    /// Claims: alone.
    Exclusive,
    /// Settles: alongside each other, never during a claim.
    Shared,
    /// Operator changes: like settles, with a durable commit (an operator's replay and its
    /// audit row must survive a crash of the database once the command has said so).
    SharedDurable,
}

impl ClaimLock {
    /// The statement that opens the transaction: READ COMMITTED (whatever the database's
    /// default: every statement after the lock must see what committed before it), no JIT
    /// (the claim's statements are short), and the lock, in one round trip.
    ///
    /// Claims and settles commit without waiting for the WAL flush (`synchronous_commit =
    /// off`): a crash of the database may lose the last few of them, which only puts rows
    /// back as they were — leased rows are claimed again once the lease ends, delivered
    /// ones published again (a duplicate with the same `message_id`, as after any crash) —
    /// and never loses anything a durable transaction has seen, since WAL is flushed in
    /// order. It saves a flush per batch twice over, on the path of every event.
    ///
    /// The server ends the session if the transaction sits idle for
    /// [`IDLE_IN_TRANSACTION_TIMEOUT`] (`idle_in_transaction_session_timeout`, for this
    /// transaction only): a client whose link went silent mid-transaction gives up at its
    /// deadline, but the server cannot see that, and would otherwise hold the claim lock —
    /// and the writers' key locks the transaction took — until its own TCP keepalive fails
    /// the connection (two hours by default), stalling every other relay and those writers.
    ///
    /// `outbox.actor = relay` tells the outbox's row triggers that the relay made the
    /// change: the relay moves key heads itself, so its settles and operator changes are not
    /// noted for a re-check as a change made outside it (a deleted head) is.
    fn begin_statement(self) -> &'static str {
        match self {
            ClaimLock::Exclusive => {
                "BEGIN ISOLATION LEVEL READ COMMITTED; SELECT set_config('jit', 'off', true), set_config('synchronous_commit', 'off', true), set_config('idle_in_transaction_session_timeout', '10s', true), set_config('outbox.actor', 'relay', true), pg_advisory_xact_lock(122550254464888)"
            }
            ClaimLock::Shared => {
                "BEGIN ISOLATION LEVEL READ COMMITTED; SELECT set_config('jit', 'off', true), set_config('synchronous_commit', 'off', true), set_config('idle_in_transaction_session_timeout', '10s', true), set_config('outbox.actor', 'relay', true), pg_advisory_xact_lock_shared(122550254464888)"
            }
            ClaimLock::SharedDurable => {
                "BEGIN ISOLATION LEVEL READ COMMITTED; SELECT set_config('jit', 'off', true), set_config('idle_in_transaction_session_timeout', '10s', true), set_config('outbox.actor', 'relay', true), pg_advisory_xact_lock_shared(122550254464888)"
            }
        }
    }
}

/// A transaction on `conn` holding the claim lock (see [`ClaimLock::begin_statement`]).
///
/// On a connection the caller holds, not one the pool hands out for the transaction alone:
/// a caller that gives up on a statement (a deadline, see [`crate::db::within_deadline`])
/// must be able to close the connection rather than give it back to the pool.
async fn begin_locked(
    conn: &mut PgConnection,
    lock: ClaimLock,
) -> Result<Transaction<'_, Postgres>, sqlx::Error> {
    sqlx::Connection::begin_with(conn, lock.begin_statement()).await
}

/// Unparks the head (first undelivered event) of each of `keys` (ordering scopes, as
/// `outbox_scope()` names them), whose writers' key locks the transaction holds — unless the
/// head is dead (an operator unparks it) or failed and waits for its next try (the claim
/// unparks it then). Returns how many rows changed.
async fn unpark_heads(
    tx: &mut Transaction<'_, Postgres>,
    keys: &[String],
) -> Result<u64, sqlx::Error> {
    if keys.is_empty() {
        return Ok(0);
    }
    let done = sqlx::query(
        "UPDATE outbox_events e SET parked = false
           FROM unnest($1::text[]) AS k(key)
           CROSS JOIN LATERAL (
                SELECT h.id FROM outbox_events h
                 WHERE outbox_scope(h.tenant_id, h.ordering_key) = k.key
                   AND h.status IN ('pending', 'dead')
                 ORDER BY h.seq LIMIT 1) AS head
          WHERE e.id = head.id AND e.parked
            AND NOT EXISTS (SELECT 1 FROM outbox_attempts a
                             WHERE a.event_id = e.id
                               AND (a.next_attempt_at IS NOT NULL OR a.dead_at IS NOT NULL))",
    )
    .bind(keys)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected())
}

/// Takes the key locks of `keys` (ordering scopes) that no writer holds (`SKIP LOCKED`),
/// unparks their heads,
/// and notes the others in `outbox_key_recheck` for the next claim. Call after the heads of
/// `keys` may have moved (delivered or discarded events), inside the same transaction.
async fn heads_moved(
    tx: &mut Transaction<'_, Postgres>,
    keys: &[String],
) -> Result<(), sqlx::Error> {
    if keys.is_empty() {
        return Ok(());
    }
    // A join on `unnest`, not `= ANY($1)`: under a generic plan, on a small table, the
    // planner filters a sequential scan by the array, comparing every row with every key
    // (14 ms for 500 keys among 2,000; 1 ms this way).
    let locked: Vec<String> = sqlx::query_scalar(
        "SELECT k.ordering_key
           FROM unnest($1::text[]) AS m(key)
           JOIN outbox_key_locks k ON k.ordering_key = m.key
          ORDER BY k.ordering_key
            FOR UPDATE OF k SKIP LOCKED",
    )
    .bind(keys)
    .fetch_all(&mut **tx)
    .await?;
    // A new statement, so a new snapshot: it sees every writer that released these keys.
    unpark_heads(tx, &locked).await?;
    let locked: std::collections::HashSet<&String> = locked.iter().collect();
    let busy: Vec<&String> = keys.iter().filter(|k| !locked.contains(k)).collect();
    if !busy.is_empty() {
        sqlx::query(
            "INSERT INTO outbox_key_recheck (ordering_key)
             SELECT unnest($1::text[]) ON CONFLICT DO NOTHING",
        )
        .bind(busy)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_begin_statement_takes_the_claim_lock() {
        for lock in [
            ClaimLock::Exclusive,
            ClaimLock::Shared,
            ClaimLock::SharedDurable,
        ] {
            let statement = lock.begin_statement();
            assert!(statement.contains(&CLAIM_LOCK.to_string()), "{statement}");
            assert!(statement.starts_with("BEGIN ISOLATION LEVEL READ COMMITTED;"));
            assert_eq!(
                statement.contains("synchronous_commit"),
                lock != ClaimLock::SharedDurable
            );
            let idle = format!(
                "set_config('idle_in_transaction_session_timeout', '{IDLE_IN_TRANSACTION_TIMEOUT}', true)"
            );
            assert!(statement.contains(&idle), "{statement}");
            assert!(
                statement.contains("set_config('outbox.actor', 'relay', true)"),
                "{statement}"
            );
        }
    }
}
