//! Settling: record what happened to each event of a claim, in one statement per chunk.
//!
//! A settle first ends the claim's leases (deletes the `outbox_leases` rows under its token)
//! and records outcomes only for events of the scopes it still held: a claim whose lease
//! expired and was reaped (or taken over by another relay) settles nothing there, and those
//! events go out again from their new owner — at least once, never lost, never out of
//! order. Settles hold the claim lock in shared mode, so a claim never reads a half-settled
//! key.

use std::collections::BTreeSet;
use std::time::Duration;

use sqlx::{PgConnection, PgPool, Postgres, Transaction};

use crate::foundation::db::within_deadline;
use uuid::Uuid;

use super::claim::lease_key_of;
use super::{ClaimLock, Status, begin_locked, heads_moved};

pub use crate::engine::outcome::Outcome;
use crate::engine::outcome::{self, Tally};

/// Counts of a settled claim.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Settled {
    /// Rows now `delivered`.
    pub delivered: u64,
    /// Rows that failed and will be retried.
    pub retrying: u64,
    /// Rows now `dead` (attempt limit reached, or rejected).
    pub dead: u64,
    /// Rows released unpublished.
    pub released: u64,
    /// Rows not changed: the claim no longer holds them (its lease was reaped).
    pub lost: u64,
}

/// Outcomes recorded per statement: a whole default batch in one, while the per-row array
/// look-up stays cheap for the largest batches.
const CHUNK: usize = 1000;

/// Ends the leases of the claim `$1` and returns the lease keys it still held.
const END_LEASES_SQL: &str = "DELETE FROM outbox_leases WHERE token = $1 RETURNING lease_key";

/// The lease keys the claim `$1` still holds.
const HELD_SQL: &str = "SELECT lease_key FROM outbox_leases WHERE token = $1";

/// Ends the leases of the claim `$1` but those of the scopes of events `$2`.
const END_LEASES_BUT_SQL: &str = concat!(
    "DELETE FROM outbox_leases
      WHERE token = $1
        AND lease_key NOT IN (SELECT ",
    lease_key_of!("e"),
    " FROM outbox_events e WHERE e.id = ANY($2::uuid[]))"
);

/// Deliveries: the rows of the scopes still held (`$2`, lease keys) become `delivered`.
/// Nothing else is written: an event's failures (if it had any) stay in `outbox_attempts`,
/// and its attempts are counted from them (`outbox_event_status`).
const DELIVERED_SQL: &str = concat!(
    "UPDATE outbox_events o
        SET status = 'delivered', delivered_at = clock_timestamp()
      WHERE o.id = ANY($1::uuid[]) AND o.status = 'pending'
        AND ",
    lease_key_of!("o"),
    " IN (SELECT unnest($2::text[]))
     RETURNING outbox_scope(o.tenant_id, o.ordering_key)"
);

/// Every outcome but delivery, for the events of the scopes still held (`$6`, lease keys):
/// `$1` the ids, `$2` each one's outcome kind, `$3` its error, `$4` its retry delay in
/// seconds, `$5` the attempt limit. A failure or a rejection counts in `outbox_attempts`
/// (saturating: no stored value makes the statement fail) with its error; a failure below
/// the limit is given its next try there, and a rejection or a failure at the limit makes
/// the event dead there (`dead_at`). Either way its event stays `pending` on its row and
/// is parked (out of the ready index: no claim walks past it): until its next try, or until
/// an operator replays or discards it. A release changes nothing. Returns each recorded
/// event's outcome kind and status (`dead` or `pending`).
const OUTCOMES_SQL: &str = concat!(
    "WITH input AS (
             -- One outcome per event (the relay sends one; a failure wins over a release).
             SELECT DISTINCT ON (i.id) i.id, i.kind, i.error, i.delay
               FROM unnest($1::uuid[], $2::text[], $3::text[], $4::float8[])
                    WITH ORDINALITY AS i(id, kind, error, delay, n)
              ORDER BY i.id, i.kind = 'released', i.n),
         target AS MATERIALIZED (
             SELECT i.id, i.kind, i.error, i.delay,
                    LEAST(COALESCE(a.failures, 0), 2147483646) + 1 AS failures
               FROM input i
               JOIN outbox_events o ON o.id = i.id
               LEFT JOIN outbox_attempts a ON a.event_id = i.id
              WHERE o.status = 'pending'
                AND ",
    lease_key_of!("o"),
    " IN (SELECT unnest($6::text[]))),
         verdict AS MATERIALIZED (
             SELECT t.*,
                    CASE WHEN t.kind = 'released' THEN 'released'
                         WHEN t.kind = 'rejected' OR t.failures >= $5 THEN 'dead'
                         ELSE 'retrying' END AS fate
               FROM target t),
         counted AS (
             INSERT INTO outbox_attempts AS a
                    (event_id, failures, last_error, next_attempt_at, dead_at, updated_at)
             SELECT v.id, v.failures, v.error,
                    CASE WHEN v.fate = 'retrying'
                         THEN clock_timestamp() + make_interval(secs => v.delay) END,
                    CASE WHEN v.fate = 'dead' THEN clock_timestamp() END,
                    clock_timestamp()
               FROM verdict v
              WHERE v.fate <> 'released'
             ON CONFLICT (event_id) DO UPDATE
                SET failures = EXCLUDED.failures, last_error = EXCLUDED.last_error,
                    next_attempt_at = EXCLUDED.next_attempt_at, dead_at = EXCLUDED.dead_at,
                    updated_at = EXCLUDED.updated_at),
         marked AS (
             UPDATE outbox_events o SET parked = true
               FROM verdict v
              WHERE o.id = v.id AND v.fate <> 'released' AND NOT o.parked)
     SELECT v.kind, CASE WHEN v.fate = 'dead' THEN 'dead' ELSE 'pending' END FROM verdict v"
);

/// Records the outcomes of the claim `token`, all in one transaction.
pub async fn settle(
    pool: &PgPool,
    token: Uuid,
    max_attempts: u32,
    outcomes: &[(Uuid, Outcome)],
) -> Result<Settled, sqlx::Error> {
    if outcomes.is_empty() {
        return Ok(Settled::default());
    }
    let mut conn = pool.acquire().await?;
    settle_on(&mut conn, token, max_attempts, outcomes).await
}

/// [`settle`] within `deadline` (taking a connection included): a database that stops
/// answering fails the settle then, and its connection is closed, not given back to the
/// pool (see [`within_deadline`]). Whether the transaction committed is then unknown; it
/// is safe to settle again, since a settle changes only rows still held under `token`.
pub async fn settle_within(
    pool: &PgPool,
    deadline: Duration,
    token: Uuid,
    max_attempts: u32,
    outcomes: &[(Uuid, Outcome)],
) -> Result<Settled, sqlx::Error> {
    if outcomes.is_empty() {
        return Ok(Settled::default());
    }
    within_deadline(pool, deadline, async |conn| {
        settle_on(conn, token, max_attempts, outcomes).await
    })
    .await
}

/// [`settle`] on a connection the caller holds.
///
/// A statement that fails on a value (SQLSTATE classes 22 and 23: a data exception or an
/// integrity violation) would fail the same way on every retry, and the settle would never
/// end: the claim's leases would then run out and its events be published again and again.
/// Such a batch is recorded again one outcome at a time instead; an outcome that still
/// cannot be recorded makes its event dead with the cause (or, failing that too, leaves it
/// to its lease), and the other outcomes of the batch are recorded.
async fn settle_on(
    conn: &mut PgConnection,
    token: Uuid,
    max_attempts: u32,
    outcomes: &[(Uuid, Outcome)],
) -> Result<Settled, sqlx::Error> {
    let mut tx = begin_locked(conn, ClaimLock::Shared).await?;
    let held = end_leases(&mut tx, token).await?;
    let recorded = match record(&mut tx, &held, max_attempts, outcomes).await {
        Ok(recorded) => recorded,
        Err(error) if fails_on_a_value(&error) => {
            tx.rollback().await?;
            tx = begin_locked(conn, ClaimLock::Shared).await?;
            let held: Vec<String> = sqlx::query_scalar(HELD_SQL)
                .bind(token)
                .fetch_all(&mut *tx)
                .await?;
            let (recorded, stuck) =
                record_one_by_one(&mut tx, &held, max_attempts, outcomes).await?;
            // The scope of an event whose outcome could not be recorded at all stays leased:
            // it goes out again when the lease ends, not at the next claim.
            sqlx::query(END_LEASES_BUT_SQL)
                .bind(token)
                .bind(&stuck)
                .execute(&mut *tx)
                .await?;
            recorded
        }
        Err(error) => return Err(error),
    };
    let (total, moved) = recorded;
    heads_moved(&mut tx, &moved).await?;
    tx.commit().await?;
    Ok(total)
}

/// Ends the leases of the claim `token`; returns the lease keys it still held (a lease
/// reaped since, or taken by another claim, is not among them).
async fn end_leases(
    tx: &mut Transaction<'_, Postgres>,
    token: Uuid,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(END_LEASES_SQL)
        .bind(token)
        .fetch_all(&mut **tx)
        .await
}

/// Whether a statement failed on the values it met (SQLSTATE class 22 or 23), as opposed to
/// the database being away or busy.
fn fails_on_a_value(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .and_then(|e| e.code())
        .is_some_and(|code| code.starts_with("22") || code.starts_with("23"))
}

/// [`record`] for each outcome alone, under a savepoint: one that fails does not undo the
/// others. An outcome that cannot be recorded is replaced by a rejection (`dead`, with the
/// cause); if even that fails, the row is left to its lease: returned among the stuck.
async fn record_one_by_one(
    tx: &mut Transaction<'_, Postgres>,
    held: &[String],
    max_attempts: u32,
    outcomes: &[(Uuid, Outcome)],
) -> Result<((Settled, Vec<String>), Vec<Uuid>), sqlx::Error> {
    let mut total = Settled::default();
    let mut moved = BTreeSet::new();
    let mut stuck = Vec::new();
    for (id, outcome) in outcomes {
        let recorded = match in_savepoint(tx, held, max_attempts, (*id, outcome.clone())).await? {
            Ok(done) => Some(done),
            Err(failed) => {
                let instead = (*id, outcome.unrecordable(&failed.to_string()));
                in_savepoint(tx, held, max_attempts, instead).await?.ok()
            }
        };
        match recorded {
            Some((settled, keys)) => {
                total.add(settled);
                moved.extend(keys);
            }
            None => {
                total.lost += 1;
                stuck.push(*id);
            }
        }
    }
    Ok(((total, moved.into_iter().collect()), stuck))
}

/// [`record`] of one outcome under a savepoint: the inner `Err` is a failure on a value
/// (undone, the transaction goes on); the outer one anything else.
async fn in_savepoint(
    tx: &mut Transaction<'_, Postgres>,
    held: &[String],
    max_attempts: u32,
    outcome: (Uuid, Outcome),
) -> Result<Result<(Settled, Vec<String>), sqlx::Error>, sqlx::Error> {
    let mut attempt = sqlx::Connection::begin(&mut **tx).await?;
    match record(&mut attempt, held, max_attempts, &[outcome]).await {
        Ok(done) => {
            attempt.commit().await?;
            Ok(Ok(done))
        }
        Err(error) if fails_on_a_value(&error) => {
            attempt.rollback().await?;
            Ok(Err(error))
        }
        Err(error) => Err(error),
    }
}

impl Settled {
    fn add(&mut self, other: Settled) {
        self.delivered += other.delivered;
        self.retrying += other.retrying;
        self.dead += other.dead;
        self.released += other.released;
        self.lost += other.lost;
    }
}

/// Records `outcomes` in `tx` for the events of the scopes the claim still held (`held`,
/// lease keys); returns the counts and the keys whose head may have moved.
async fn record(
    tx: &mut Transaction<'_, Postgres>,
    held: &[String],
    max_attempts: u32,
    outcomes: &[(Uuid, Outcome)],
) -> Result<(Settled, Vec<String>), sqlx::Error> {
    let mut total = Settled::default();
    let mut moved = BTreeSet::new();
    // Most outcomes are deliveries: they take a plain statement; the rest the general one.
    let (delivered, others) = outcome::split_deliveries(outcomes);
    for ids in delivered.chunks(CHUNK) {
        let keys: Vec<Option<String>> = sqlx::query_scalar(DELIVERED_SQL)
            .bind(ids)
            .bind(held)
            .fetch_all(&mut **tx)
            .await?;
        total.lost += (ids.len() - keys.len()) as u64;
        total.delivered += keys.len() as u64;
        // A delivered event moves its scope's head to the next undelivered event.
        moved.extend(keys.into_iter().flatten());
    }
    for chunk in others.chunks(CHUNK) {
        let columns = outcome::columns(chunk);
        let rows: Vec<(String, String)> = sqlx::query_as(OUTCOMES_SQL)
            .bind(&columns.ids)
            .bind(&columns.kinds)
            .bind(&columns.errors)
            .bind(&columns.delays)
            .bind(i32::try_from(max_attempts).unwrap_or(i32::MAX))
            .bind(held)
            .fetch_all(&mut **tx)
            .await?;
        total.lost += (chunk.len() - rows.len()) as u64;
        for (kind, status) in rows {
            match outcome::tally(&kind, Status::parse(&status)) {
                Tally::Released => total.released += 1,
                Tally::Dead => total.dead += 1,
                Tally::Retrying => total.retrying += 1,
            }
        }
    }
    Ok((total, moved.into_iter().collect()))
}
