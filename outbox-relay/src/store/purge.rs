//! Retention: delete finished rows (delivered, and discarded) and old inbox records in small
//! batches, so no statement holds locks for long and the table is never rewritten. Pending
//! and dead rows are never purged.

use std::time::Duration;

use sqlx::{PgConnection, PgPool};

use crate::foundation::db::within_deadline;

/// Rows deleted per statement unless told otherwise: short statements, short locks.
pub const DEFAULT_BATCH: i64 = 1000;

/// The most rows one purge statement may delete (larger batches hold locks for long).
pub const MAX_BATCH: i64 = 100_000;

/// What a purge deletes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purgeable {
    /// Delivered events, by age (`created_at`: no time of delivery is kept per event).
    Delivered,
    /// Discarded events, by when they were discarded (`outbox_discarded`).
    Discarded,
    /// Consumer inbox records, by `processed_at`.
    Inbox,
}

impl Purgeable {
    fn delete_batch(self) -> &'static str {
        match self {
            Purgeable::Delivered => {
                // Delivered: at or below its partition's frontier, neither held (at or behind
                // its scope's held head), nor to be replayed, nor discarded, nor a gap; by
                // age (`created_at`: no time of delivery is kept per event). Each partition
                // from its oldest seq on.
                "WITH doomed AS (
                     SELECT e.id FROM outbox_partitions p
                      CROSS JOIN LATERAL (
                            -- The conditions inside, before the limit: a held scope's events
                            -- at the bottom of a partition do not stop the rest of it.
                            SELECT e.id
                              FROM outbox_events e
                             WHERE e.seq % 16 = p.part AND e.seq <= p.frontier
                               AND e.created_at < now() - make_interval(secs => $1)
                               AND NOT EXISTS (SELECT 1 FROM outbox_held h
                                                WHERE h.scope = COALESCE(outbox_scope(e.tenant_id, e.ordering_key),
                                                                         '#' || e.id::text)
                                                  AND h.head_seq <= e.seq)
                               AND NOT EXISTS (SELECT 1 FROM outbox_replays r WHERE r.event_id = e.id)
                               AND NOT EXISTS (SELECT 1 FROM outbox_discarded x WHERE x.event_id = e.id)
                               AND NOT EXISTS (SELECT 1 FROM outbox_gaps g WHERE g.seq = e.seq)
                             ORDER BY e.seq % 16, e.seq LIMIT $2) e
                      LIMIT $2),
                 gone AS (
                     DELETE FROM outbox_events o USING doomed d
                      WHERE o.id = d.id
                     RETURNING o.id),
                 forgotten AS (
                     DELETE FROM outbox_attempts a USING gone g WHERE a.event_id = g.id),
                 passed_over AS (
                     DELETE FROM outbox_delivered_behind d USING gone g WHERE d.event_id = g.id)
                 SELECT count(*) FROM gone"
            }
            Purgeable::Discarded => {
                "WITH doomed AS (
                     SELECT e.id FROM outbox_discarded x
                       JOIN outbox_events e ON e.id = x.event_id
                      WHERE x.discarded_at < now() - make_interval(secs => $1)
                        AND NOT EXISTS (SELECT 1 FROM outbox_replays r WHERE r.event_id = e.id)
                      LIMIT $2),
                 gone AS (
                     DELETE FROM outbox_events o USING doomed d
                      WHERE o.id = d.id
                     RETURNING o.id),
                 forgotten AS (
                     DELETE FROM outbox_discarded x USING gone g WHERE x.event_id = g.id),
                 failures_forgotten AS (
                     DELETE FROM outbox_attempts a USING gone g WHERE a.event_id = g.id)
                 SELECT count(*) FROM gone"
            }
            Purgeable::Inbox => {
                "WITH doomed AS (
                     SELECT consumer, message_id FROM outbox_inbox
                      WHERE processed_at < now() - make_interval(secs => $1)
                      LIMIT $2
                        FOR UPDATE SKIP LOCKED)
                 DELETE FROM outbox_inbox i USING doomed d
                  WHERE i.consumer = d.consumer AND i.message_id = d.message_id"
            }
        }
    }

    fn count(self) -> &'static str {
        match self {
            Purgeable::Delivered => {
                "SELECT count(*) FROM outbox_event_status
                  WHERE status = 'delivered' AND created_at < now() - make_interval(secs => $1)"
            }
            Purgeable::Discarded => {
                "SELECT count(*) FROM outbox_event_status
                  WHERE status = 'discarded'
                    AND discarded_at < now() - make_interval(secs => $1)"
            }
            Purgeable::Inbox => {
                "SELECT count(*) FROM outbox_inbox
                  WHERE processed_at < now() - make_interval(secs => $1)"
            }
        }
    }
}

/// Deletes `what` older than `older_than`, `batch` rows per statement; returns how many.
pub async fn purge(
    pool: &PgPool,
    what: Purgeable,
    older_than: Duration,
    batch: i64,
) -> Result<u64, sqlx::Error> {
    in_batches(batch, || async {
        delete_batch(&mut *pool.acquire().await?, what, older_than, batch).await
    })
    .await
}

/// How many rows [`purge`] would delete now.
pub async fn count(
    pool: &PgPool,
    what: Purgeable,
    older_than: Duration,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(what.count())
        .bind(older_than.as_secs_f64())
        .fetch_one(pool)
        .await
}

/// Deletes the events an outbox no longer needs — delivered and discarded ones older than
/// `older_than` — and then every key lock left idle, `batch` rows per statement; returns
/// how many events. What the relay's `--retention` does periodically and `outbox-relay
/// purge` once.
pub async fn finished_events(
    pool: &PgPool,
    older_than: Duration,
    batch: i64,
) -> Result<u64, sqlx::Error> {
    finished_events_within(pool, older_than, batch, OPERATOR_DEADLINE).await
}

/// How long one statement of an operator's purge may take: as long as the database needs,
/// within reason (the relay's `--retention` uses `--db-timeout`).
const OPERATOR_DEADLINE: Duration = Duration::from_secs(24 * 60 * 60);

/// [`finished_events`] with every statement, taking its connection included, within
/// `deadline`, on a connection closed rather than given back when the database stops
/// answering (see [`within_deadline`]): the relay's `--retention`, which must not hang on a
/// silent link.
pub async fn finished_events_within(
    pool: &PgPool,
    older_than: Duration,
    batch: i64,
    deadline: Duration,
) -> Result<u64, sqlx::Error> {
    let mut deleted = 0;
    for what in [Purgeable::Delivered, Purgeable::Discarded] {
        deleted += in_batches(batch, move || {
            within_deadline(pool, deadline, async move |conn| {
                delete_batch(conn, what, older_than, batch).await
            })
        })
        .await?;
    }
    in_batches(batch, move || {
        within_deadline(pool, deadline, async move |conn| {
            idle_key_locks_on(conn, batch).await
        })
    })
    .await?;
    in_batches(batch, move || {
        within_deadline(pool, deadline, async move |conn| {
            orphaned_attempts_on(conn, batch).await
        })
    })
    .await?;
    Ok(deleted)
}

/// Deletes up to `batch` rows of `outbox_attempts` whose event is gone — deleted by hand or
/// by the application, not by a purge (which forgets an event's failures with it) — and
/// returns how many. The table holds only events that failed, so this reads little.
async fn orphaned_attempts_on(conn: &mut PgConnection, batch: i64) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(
        "DELETE FROM outbox_attempts a
          WHERE a.event_id IN (
                SELECT o.event_id FROM outbox_attempts o
                 WHERE NOT EXISTS (SELECT 1 FROM outbox_events e WHERE e.id = o.event_id)
                 LIMIT $1)",
    )
    .bind(batch)
    .execute(conn)
    .await?
    .rows_affected())
}

/// One batch of [`purge`] on `conn`.
async fn delete_batch(
    conn: &mut PgConnection,
    what: Purgeable,
    older_than: Duration,
    batch: i64,
) -> Result<u64, sqlx::Error> {
    match what {
        // Deletes from several tables and counts the events.
        Purgeable::Delivered | Purgeable::Discarded => {
            let deleted: i64 = sqlx::query_scalar(what.delete_batch())
                .bind(older_than.as_secs_f64())
                .bind(batch)
                .fetch_one(conn)
                .await?;
            Ok(u64::try_from(deleted).unwrap_or(0))
        }
        Purgeable::Inbox => Ok(sqlx::query(what.delete_batch())
            .bind(older_than.as_secs_f64())
            .bind(batch)
            .execute(conn)
            .await?
            .rows_affected()),
    }
}

/// Runs `one` (a statement deleting at most `batch` rows) until it deletes fewer; returns
/// the total.
async fn in_batches<F, Fut>(batch: i64, mut one: F) -> Result<u64, sqlx::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<u64, sqlx::Error>>,
{
    let full = u64::try_from(batch).unwrap_or(u64::MAX);
    let mut total = 0;
    loop {
        let deleted = one().await?;
        total += deleted;
        if deleted < full {
            return Ok(total);
        }
    }
}

/// Deletes the writers' key locks of keys that have no undelivered event left (at most
/// `batch` per call); returns how many. A lock a writer holds is skipped, and a key is
/// checked only after its lock is taken, so a writer can never lose its lock mid-insert.
pub async fn idle_key_locks(pool: &PgPool, batch: i64) -> Result<u64, sqlx::Error> {
    idle_key_locks_on(&mut *pool.acquire().await?, batch).await
}

/// [`idle_key_locks`] on a connection the caller holds. The transaction holds writers' key
/// locks, so the server ends it if it sits idle (a silent link), as a claim's
/// ([`super::IDLE_IN_TRANSACTION_TIMEOUT`]).
async fn idle_key_locks_on(conn: &mut PgConnection, batch: i64) -> Result<u64, sqlx::Error> {
    let mut tx = sqlx::Connection::begin_with(
        conn,
        "BEGIN ISOLATION LEVEL READ COMMITTED; SELECT set_config('idle_in_transaction_session_timeout', '10s', true)",
    )
    .await?;
    let locked: Vec<String> = sqlx::query_scalar(
        "SELECT k.ordering_key FROM outbox_key_locks k
          WHERE NOT EXISTS (SELECT 1 FROM outbox_held h WHERE h.scope = k.ordering_key)
            AND NOT EXISTS (SELECT 1 FROM outbox_events e
                              JOIN outbox_partitions p ON p.part = e.seq % 16
                             WHERE e.ordering_key IS NOT NULL
                               AND outbox_scope(e.tenant_id, e.ordering_key) = k.ordering_key
                               AND e.seq > p.frontier)
          LIMIT $1
            FOR UPDATE SKIP LOCKED",
    )
    .bind(batch)
    .fetch_all(&mut *tx)
    .await?;
    // A fresh snapshot after the locks: a writer that committed meanwhile is seen here.
    let deleted = sqlx::query(
        "DELETE FROM outbox_key_locks k
          WHERE k.ordering_key = ANY($1::text[])
            AND NOT EXISTS (SELECT 1 FROM outbox_held h WHERE h.scope = k.ordering_key)
            AND NOT EXISTS (SELECT 1 FROM outbox_events e
                              JOIN outbox_partitions p ON p.part = e.seq % 16
                             WHERE e.ordering_key IS NOT NULL
                               AND outbox_scope(e.tenant_id, e.ordering_key) = k.ordering_key
                               AND e.seq > p.frontier)",
    )
    .bind(&locked)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    tx.commit().await?;
    Ok(deleted)
}
