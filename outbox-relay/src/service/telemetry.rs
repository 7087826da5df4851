//! Metric names, the Prometheus recorder, and the gauges refreshed from the database.

use std::time::Duration;

use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::broker::publishing::PublishFailure;
use crate::foundation::db::within_deadline;
use crate::foundation::diagnosis;
use crate::foundation::logging::{Repeats, Report};
use crate::foundation::pause::sleep_unless_cancelled;
use crate::store::stats;

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
pub const BATCH_SIZE: &str = "outbox_batch_size_events";
/// Publish-to-confirm latency of a wave, seconds (histogram).
pub const CONFIRM_LATENCY: &str = "outbox_publish_confirm_seconds";
/// Commit (row creation) to broker ack, seconds (histogram).
pub const END_TO_END_LAG: &str = "outbox_end_to_end_lag_seconds";
/// Delivered rows deleted by retention (counter).
pub const PURGED: &str = "outbox_purged_total";

/// Buckets of the histograms in seconds: 1 ms to 5 min.
pub const SECONDS_BUCKETS: [f64; 15] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// Buckets of [`BATCH_SIZE`], in events: up to the largest `--batch-size`.
pub const BATCH_SIZE_BUCKETS: [f64; 13] = [
    1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0,
];

/// Installs the process-wide Prometheus recorder, describes every metric and registers
/// every counter at zero; returns the handle `/metrics` renders.
pub fn install() -> Result<PrometheusHandle, BuildError> {
    let handle = PrometheusBuilder::new()
        .set_buckets(&SECONDS_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(BATCH_SIZE.to_owned()), &BATCH_SIZE_BUCKETS)?
        .install_recorder()?;
    describe();
    register_counters();
    Ok(handle)
}

/// Registers every counter (and each `reason` of [`FAILED`]) at zero, so a rate or an alert
/// over it has data before its first event.
pub fn register_counters() {
    for name in [PUBLISHED, DEAD, REJECTED, PURGED] {
        metrics::counter!(name).increment(0);
    }
    for reason in PublishFailure::LABELS {
        metrics::counter!(FAILED, "reason" => reason).increment(0);
    }
}

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

/// Refreshes the backlog gauges every `interval` until cancelled, starting after one
/// interval (the relay reads them once with [`refresh_gauges_once`] before it starts, with
/// the same `repeats`).
pub async fn refresh_gauges(
    pool: PgPool,
    interval: Duration,
    deadline: Duration,
    cancel: CancellationToken,
    mut repeats: Repeats,
) {
    while sleep_unless_cancelled(interval, &cancel).await {
        refresh_gauges_once(&pool, deadline, &mut repeats).await;
    }
}

/// Reads the backlog figures (within `deadline`) into the gauges; a failure is logged (once,
/// then summarised: `repeats`) and leaves them as they were.
pub async fn refresh_gauges_once(pool: &PgPool, deadline: Duration, repeats: &mut Repeats) {
    let read = within_deadline(pool, deadline, async |conn| stats::gauges(conn).await);
    match read.await {
        Ok(figures) => {
            repeats.succeeded();
            metrics::gauge!(BACKLOG).set(figures.pending as f64);
            metrics::gauge!(IN_FLIGHT).set(figures.in_flight as f64);
            metrics::gauge!(OLDEST_PENDING_AGE).set(figures.oldest_pending_age);
            metrics::gauge!(DEAD_ROWS).set(figures.dead as f64);
            metrics::gauge!(BLOCKED_KEYS).set(figures.blocked_keys as f64);
            metrics::gauge!(BLOCKED_EVENTS).set(figures.blocked_events as f64);
            metrics::gauge!(DEAD_TUPLES).set(figures.dead_tuples as f64);
        }
        Err(error) => {
            let error = diagnosis::database(&error);
            match repeats.failed(&error, std::time::Instant::now()) {
                Report::New => warn!(%error, "could not read the backlog"),
                summary @ Report::Summary { .. } => warn!(
                    %error,
                    "reading the backlog {}",
                    summary.summary().unwrap_or_default()
                ),
                Report::Quiet => {}
            }
        }
    }
}
