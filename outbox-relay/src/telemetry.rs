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
/// Leased (in-flight) events (gauge).
pub const IN_FLIGHT: &str = "outbox_in_flight_events";
/// Keys whose head event is dead, so all their later events wait (gauge).
pub const BLOCKED_KEYS: &str = "outbox_blocked_keys";
/// Events waiting behind the dead heads of blocked keys (gauge).
pub const BLOCKED_EVENTS: &str = "outbox_blocked_events";
/// Events found unpublishable (too large, unreadable) and made dead at once (counter).
pub const REJECTED: &str = "outbox_rejected_total";
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
    metrics::describe_gauge!(IN_FLIGHT, "Events leased by a relay right now");
    metrics::describe_gauge!(
        BLOCKED_KEYS,
        "Ordering keys whose head event is dead (replay or discard it)"
    );
    metrics::describe_gauge!(
        BLOCKED_EVENTS,
        "Events waiting behind dead heads (estimated beyond 10,000 per key)"
    );
    metrics::describe_counter!(
        REJECTED,
        "Events that can never be published as stored, made dead at once"
    );
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

/// Refreshes the backlog gauges every `interval` until cancelled.
pub async fn refresh_gauges(pool: PgPool, interval: Duration, cancel: CancellationToken) {
    loop {
        match crate::store::stats::gauges(&pool).await {
            Ok(figures) => {
                metrics::gauge!(BACKLOG).set(figures.pending as f64);
                metrics::gauge!(IN_FLIGHT).set(figures.in_flight as f64);
                metrics::gauge!(OLDEST_PENDING_AGE).set(figures.oldest_pending_age);
                metrics::gauge!(DEAD_ROWS).set(figures.dead as f64);
                metrics::gauge!(BLOCKED_KEYS).set(figures.blocked_keys as f64);
                metrics::gauge!(BLOCKED_EVENTS).set(figures.blocked_events as f64);
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
