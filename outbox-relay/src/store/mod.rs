//! Every statement on `outbox_events`, and the state machine they implement.
//!
//! An event's life, and the only places its state changes:
//!
//! | from | to | by | where |
//! | --- | --- | --- | --- |
//! | (insert) | `pending` (head, or `parked` behind its key's head) | the insert trigger | `migrations/` |
//! | `pending`, unleased | `pending`, leased under a claim token | [`claim::claim`] | `claim.rs` |
//! | `pending`, lease expired | `pending`, unleased | [`claim::claim`] (reaping) | `claim.rs` |
//! | `pending`, leased | `delivered` / `pending` (retry) / `dead` / unleased | [`settle::settle`] | `settle.rs` |
//! | `dead` or `delivered` | `pending` | [`operator::replay`] | `operator.rs` |
//! | `dead` | `discarded` | [`operator::discard`] | `operator.rs` |
//! | `delivered`, `discarded` | (deleted) | [`purge`] | `purge.rs` |
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
//! Read [`Status`] for the states; the reports of `status` and `/metrics` are in [`stats`].

pub mod claim;
pub mod operator;
pub mod purge;
pub mod settle;
pub mod stats;

use sqlx::{PgPool, Postgres, Transaction};

/// The `status` column of `outbox_events`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Waiting to be published (due, backing off, leased, or parked behind its key's head).
    Pending,
    /// Confirmed by the broker. Terminal; purged after the retention.
    Delivered,
    /// Reached the attempt limit or cannot be published at all; blocks its key until an
    /// operator replays or discards it.
    Dead,
    /// Given up by an operator. Terminal; unblocks its key.
    Discarded,
}

impl Status {
    /// Every status.
    pub const ALL: [Status; 4] = [
        Status::Pending,
        Status::Delivered,
        Status::Dead,
        Status::Discarded,
    ];

    /// The value stored in `outbox_events.status`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Delivered => "delivered",
            Status::Dead => "dead",
            Status::Discarded => "discarded",
        }
    }

    /// Parses a stored value.
    pub fn parse(text: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Advisory lock key serialising claims against each other and against settles
/// (`'outbox'` as bytes).
const CLAIM_LOCK: i64 = 0x6f75_7462_6f78;

/// How a transaction holds the claim lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClaimLock {
    /// Claims: alone.
    Exclusive,
    /// Settles and operator changes: alongside each other, never during a claim.
    Shared,
}

/// A READ COMMITTED transaction (whatever the database's default) holding the claim lock.
/// READ COMMITTED matters: every statement after the lock must see what committed before it.
async fn begin_locked(
    pool: &PgPool,
    lock: ClaimLock,
) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    let mut tx = pool
        .begin_with("BEGIN ISOLATION LEVEL READ COMMITTED")
        .await?;
    let statement = match lock {
        ClaimLock::Exclusive => {
            "SELECT set_config('jit', 'off', true), pg_advisory_xact_lock($1)::text"
        }
        ClaimLock::Shared => {
            "SELECT set_config('jit', 'off', true), pg_advisory_xact_lock_shared($1)::text"
        }
    };
    sqlx::query(statement)
        .bind(CLAIM_LOCK)
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}

/// Unparks the head (first undelivered event) of each of `keys`, whose writers' key locks
/// the transaction holds. Returns how many rows changed.
async fn unpark_heads(
    tx: &mut Transaction<'static, Postgres>,
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
                 WHERE h.ordering_key = k.key AND h.status IN ('pending', 'dead')
                 ORDER BY h.seq LIMIT 1) AS head
          WHERE e.id = head.id AND e.parked",
    )
    .bind(keys)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected())
}

/// Takes the key locks of `keys` that no writer holds (`SKIP LOCKED`), unparks their heads,
/// and notes the others in `outbox_key_recheck` for the next claim. Call after the heads of
/// `keys` may have moved (delivered or discarded events), inside the same transaction.
async fn heads_moved(
    tx: &mut Transaction<'static, Postgres>,
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
    fn statuses_round_trip() {
        for status in Status::ALL {
            assert_eq!(Status::parse(status.as_str()), Some(status));
        }
        assert_eq!(Status::parse("leased"), None);
    }
}
