//! Metric names, and the gauges refreshed from the database.

use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// Events confirmed by the broker (counter).
pub const PUBLISHED: &str = "outbox_published_total";
/// Failed publish attempts (counter, label `reason`).
pub const FAILED: &str = "outbox_failed_attempts_total";
/// Events that reached the attempt limit (counter).
pub const DEAD: &str = "outbox_dead_total";
/// Pending events (gauge).
pub const BACKLOG: &str = "outbox_pending_backlog";
/// Age of the oldest pending event, seconds (gauge).
pub const OLDEST_PENDING_AGE: &str = "outbox_oldest_pending_age_seconds";
/// Dead events in the table (gauge).
pub const DEAD_ROWS: &str = "outbox_dead_events";
/// Dead tuples in `outbox_events` (gauge; grows when a long transaction pins the horizon).
pub const DEAD_TUPLES: &str = "outbox_table_dead_tuples";
/// Claimed batch sizes (histogram).
pub const BATCH_SIZE: &str = "outbox_batch_size";
/// Publish-to-confirm latency of a wave, seconds (histogram).
pub const CONFIRM_LATENCY: &str = "outbox_publish_confirm_seconds";
/// Commit (row creation) to broker ack, seconds (histogram).
pub const END_TO_END_LAG: &str = "outbox_end_to_end_lag_seconds";
/// Delivered rows deleted by retention (counter).
pub const PURGED: &str = "outbox_purged_total";

/// Describes the metrics (HELP lines) to the installed recorder.
pub fn describe() {
    metrics::describe_counter!(PUBLISHED, "Events confirmed by the broker");
    metrics::describe_counter!(FAILED, "Failed publish attempts");
    metrics::describe_counter!(
        DEAD,
        "Events that reached the attempt limit and are now dead"
    );
    metrics::describe_gauge!(BACKLOG, "Pending events in the outbox");
    metrics::describe_gauge!(
        OLDEST_PENDING_AGE,
        "Age of the oldest pending event in seconds"
    );
    metrics::describe_gauge!(DEAD_ROWS, "Dead events in the outbox");
    metrics::describe_gauge!(DEAD_TUPLES, "Dead tuples in outbox_events");
    metrics::describe_histogram!(BATCH_SIZE, "Events claimed per batch");
    metrics::describe_histogram!(
        CONFIRM_LATENCY,
        "Seconds from publishing a wave to its last confirm"
    );
    metrics::describe_histogram!(
        END_TO_END_LAG,
        "Seconds from outbox insert to broker confirm"
    );
    metrics::describe_counter!(PURGED, "Delivered events deleted by retention");
}

/// Backlog figures of the outbox table.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Backlog {
    /// Pending rows.
    pub pending: i64,
    /// Seconds since the oldest pending row was written (0 when none).
    pub oldest_pending_age: f64,
    /// Dead rows.
    pub dead: i64,
    /// Dead tuples reported by the statistics collector.
    pub dead_tuples: i64,
}

/// Reads the backlog figures (index-only on the pending partial index).
pub async fn backlog(pool: &PgPool) -> Result<Backlog, sqlx::Error> {
    let (pending, oldest_pending_age, dead, dead_tuples): (i64, f64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM outbox_events WHERE status = 'pending'),
                COALESCE((SELECT extract(epoch FROM now() - min(created_at))::float8
                            FROM outbox_events WHERE status = 'pending'), 0),
                (SELECT count(*) FROM outbox_events WHERE status = 'dead'),
                COALESCE((SELECT n_dead_tup FROM pg_stat_user_tables
                           WHERE relid = 'outbox_events'::regclass), 0)",
    )
    .fetch_one(pool)
    .await?;
    Ok(Backlog {
        pending,
        oldest_pending_age,
        dead,
        dead_tuples,
    })
}

/// Refreshes the backlog gauges every `interval` until cancelled.
pub async fn refresh_gauges(pool: PgPool, interval: Duration, cancel: CancellationToken) {
    loop {
        match backlog(&pool).await {
            Ok(figures) => {
                metrics::gauge!(BACKLOG).set(figures.pending as f64);
                metrics::gauge!(OLDEST_PENDING_AGE).set(figures.oldest_pending_age);
                metrics::gauge!(DEAD_ROWS).set(figures.dead as f64);
                metrics::gauge!(DEAD_TUPLES).set(figures.dead_tuples as f64);
            }
            Err(error) => warn!(%error, "could not read the backlog"),
        }
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = cancel.cancelled() => return,
        }
    }
}
