//! Retention: delete delivered rows (and old inbox records) in small batches, so no statement
//! holds locks for long and the table is never rewritten. Dead rows are never purged here.

use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::telemetry;

/// Rows deleted per statement.
pub const DEFAULT_BATCH: i64 = 1000;

/// Deletes `delivered` rows delivered more than `older_than` ago, `batch` rows per
/// statement; returns how many were deleted.
pub async fn purge_delivered(
    pool: &PgPool,
    older_than: Duration,
    batch: i64,
) -> Result<u64, sqlx::Error> {
    let mut total = 0;
    loop {
        let deleted = sqlx::query(
            "WITH doomed AS (
                 SELECT id FROM outbox_events
                  WHERE status = 'delivered'
                    AND delivered_at < now() - make_interval(secs => $1)
                  ORDER BY delivered_at
                  LIMIT $2
                    FOR UPDATE SKIP LOCKED)
             DELETE FROM outbox_events o USING doomed d
              WHERE o.id = d.id AND o.status = 'delivered'",
        )
        .bind(older_than.as_secs_f64())
        .bind(batch)
        .execute(pool)
        .await?
        .rows_affected();
        total += deleted;
        metrics::counter!(telemetry::PURGED).increment(deleted);
        if deleted < u64::try_from(batch).unwrap_or(u64::MAX) {
            return Ok(total);
        }
    }
}

/// How many delivered rows [`purge_delivered`] would delete now.
pub async fn count_purgeable(pool: &PgPool, older_than: Duration) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT count(*) FROM outbox_events
          WHERE status = 'delivered' AND delivered_at < now() - make_interval(secs => $1)",
    )
    .bind(older_than.as_secs_f64())
    .fetch_one(pool)
    .await
}

/// Deletes inbox records processed more than `older_than` ago, in batches.
pub async fn purge_inbox(
    pool: &PgPool,
    older_than: Duration,
    batch: i64,
) -> Result<u64, sqlx::Error> {
    let mut total = 0;
    loop {
        let deleted = sqlx::query(
            "WITH doomed AS (
                 SELECT consumer, message_id FROM outbox_inbox
                  WHERE processed_at < now() - make_interval(secs => $1)
                  LIMIT $2
                    FOR UPDATE SKIP LOCKED)
             DELETE FROM outbox_inbox i USING doomed d
              WHERE i.consumer = d.consumer AND i.message_id = d.message_id",
        )
        .bind(older_than.as_secs_f64())
        .bind(batch)
        .execute(pool)
        .await?
        .rows_affected();
        total += deleted;
        if deleted < u64::try_from(batch).unwrap_or(u64::MAX) {
            return Ok(total);
        }
    }
}

/// How many inbox records [`purge_inbox`] would delete now.
pub async fn count_inbox_purgeable(
    pool: &PgPool,
    older_than: Duration,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT count(*) FROM outbox_inbox WHERE processed_at < now() - make_interval(secs => $1)",
    )
    .bind(older_than.as_secs_f64())
    .fetch_one(pool)
    .await
}

/// Runs [`purge_delivered`] every few minutes until cancelled (the relay's `--retention`).
pub async fn purge_periodically(pool: PgPool, retention: Duration, cancel: CancellationToken) {
    let every = (retention / 10).clamp(Duration::from_secs(10), Duration::from_secs(600));
    loop {
        match purge_delivered(&pool, retention, DEFAULT_BATCH).await {
            Ok(0) => {}
            Ok(deleted) => info!(deleted, "purged delivered events past retention"),
            Err(error) => warn!(%error, "retention purge failed"),
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = cancel.cancelled() => return,
        }
    }
}
