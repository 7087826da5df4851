//! Retention: delete finished rows (delivered, and discarded) and old inbox records in small
//! batches, so no statement holds locks for long and the table is never rewritten. Pending
//! and dead rows are never purged.

use std::time::Duration;

use sqlx::PgPool;

/// Rows deleted per statement unless told otherwise: short statements, short locks.
pub const DEFAULT_BATCH: i64 = 1000;

/// The most rows one purge statement may delete (larger batches hold locks for long).
pub const MAX_BATCH: i64 = 100_000;

/// What a purge deletes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purgeable {
    /// Delivered events, by `delivered_at`.
    Delivered,
    /// Discarded events, by `created_at`.
    Discarded,
    /// Consumer inbox records, by `processed_at`.
    Inbox,
}

impl Purgeable {
    fn delete_batch(self) -> &'static str {
        match self {
            Purgeable::Delivered => {
                "WITH doomed AS (
                     SELECT id FROM outbox_events
                      WHERE status = 'delivered'
                        AND delivered_at < now() - make_interval(secs => $1)
                      ORDER BY delivered_at
                      LIMIT $2
                        FOR UPDATE SKIP LOCKED)
                 DELETE FROM outbox_events o USING doomed d
                  WHERE o.id = d.id AND o.status = 'delivered'"
            }
            Purgeable::Discarded => {
                "WITH doomed AS (
                     SELECT id FROM outbox_events
                      WHERE status IN ('dead', 'discarded') AND status = 'discarded'
                        AND created_at < now() - make_interval(secs => $1)
                      LIMIT $2
                        FOR UPDATE SKIP LOCKED)
                 DELETE FROM outbox_events o USING doomed d
                  WHERE o.id = d.id AND o.status = 'discarded'"
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
                "SELECT count(*) FROM outbox_events
                  WHERE status = 'delivered' AND delivered_at < now() - make_interval(secs => $1)"
            }
            Purgeable::Discarded => {
                "SELECT count(*) FROM outbox_events
                  WHERE status IN ('dead', 'discarded') AND status = 'discarded'
                    AND created_at < now() - make_interval(secs => $1)"
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
        Ok(sqlx::query(what.delete_batch())
            .bind(older_than.as_secs_f64())
            .bind(batch)
            .execute(pool)
            .await?
            .rows_affected())
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
    let mut deleted = 0;
    for what in [Purgeable::Delivered, Purgeable::Discarded] {
        deleted += purge(pool, what, older_than, batch).await?;
    }
    in_batches(batch, || idle_key_locks(pool, batch)).await?;
    Ok(deleted)
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
    let mut tx = pool
        .begin_with("BEGIN ISOLATION LEVEL READ COMMITTED")
        .await?;
    let locked: Vec<String> = sqlx::query_scalar(
        "SELECT k.ordering_key FROM outbox_key_locks k
          WHERE NOT EXISTS (SELECT 1 FROM outbox_events e
                             WHERE e.ordering_key = k.ordering_key
                               AND e.status IN ('pending', 'dead'))
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
            AND NOT EXISTS (SELECT 1 FROM outbox_events e
                             WHERE e.ordering_key = k.ordering_key
                               AND e.status IN ('pending', 'dead'))",
    )
    .bind(&locked)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    tx.commit().await?;
    Ok(deleted)
}
