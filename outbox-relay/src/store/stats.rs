//! Read-only figures: the `status` report, the blocked keys, and the `/metrics` gauges.
//!
//! The gauges run on every relay every few seconds, so each stays cheap at a million rows:
//! counts are exact up to [`EXACT_UP_TO`] (an index-only scan with a limit) and planner
//! estimates beyond, and nothing scans the table.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

/// Counts below this are exact; above it the gauges report the planner's estimate.
pub const EXACT_UP_TO: i64 = 10_000;

/// Counts of one event type.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TypeCounts {
    /// Event type.
    pub event_type: String,
    /// Pending.
    pub pending: i64,
    /// Delivered.
    pub delivered: i64,
    /// Dead.
    pub dead: i64,
    /// Discarded.
    pub discarded: i64,
}

/// A key whose head cannot go out now, so every later event of the key waits.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockedKey {
    /// The ordering key.
    pub ordering_key: String,
    /// The tenant: order is per (tenant, ordering key), so the same key of another tenant
    /// is not held by this head.
    pub tenant_id: Option<Uuid>,
    /// The head event (its first undelivered event).
    pub head_id: Uuid,
    /// The head's event type.
    pub event_type: String,
    /// `dead` (until an operator replays or discards it), `retrying` (backing off), or
    /// `scheduled` (written with an `available_at` in the future, with events of its key
    /// written after it waiting for it).
    pub status: String,
    /// Publish attempts of the head.
    pub attempts: i32,
    /// Why the head's last attempt failed.
    pub last_error: Option<String>,
    /// When a retrying head is tried again, or a scheduled head becomes due.
    pub retry_at: Option<DateTime<Utc>>,
    /// Undelivered events behind the head.
    pub waiting: i64,
}
from_row!(BlockedKey {
    ordering_key,
    tenant_id,
    head_id,
    event_type,
    status,
    attempts,
    last_error,
    retry_at,
    waiting
});

/// The outbox at a glance.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusReport {
    /// Pending events (the backlog), including those waiting for a retry.
    pub pending: i64,
    /// Pending events currently leased by a relay.
    pub in_flight: i64,
    /// Pending events that failed at least once and wait for a retry.
    pub retrying: i64,
    /// Delivered events still kept.
    pub delivered: i64,
    /// Dead events.
    pub dead: i64,
    /// Discarded events still kept.
    pub discarded: i64,
    /// Seconds since the oldest pending event was written (`None` when nothing is pending).
    pub oldest_pending_age_seconds: Option<f64>,
    /// When the last event was delivered.
    pub last_delivered_at: Option<DateTime<Utc>>,
    /// The busiest event types by total count (at most `top`).
    pub by_event_type: Vec<TypeCounts>,
    /// How many event types have rows at all (`by_event_type` may show fewer).
    pub event_types_total: i64,
    /// Keys whose head is dead, retrying or scheduled, oldest first (at most `top`).
    pub blocked_keys: Vec<BlockedKey>,
    /// Whether more blocked keys exist than `blocked_keys` shows.
    pub more_blocked_keys: bool,
}

/// The counts of [`StatusReport`], read in one scan.
struct Totals {
    pending: i64,
    in_flight: i64,
    retrying: i64,
    delivered: i64,
    dead: i64,
    discarded: i64,
    oldest_pending_age_seconds: Option<f64>,
    last_delivered_at: Option<DateTime<Utc>>,
}
from_row!(Totals {
    pending,
    in_flight,
    retrying,
    delivered,
    dead,
    discarded,
    oldest_pending_age_seconds,
    last_delivered_at
});

/// Reads the status; `top` bounds the per-type and blocked-key lists.
pub async fn report(pool: &PgPool, top: i64) -> Result<StatusReport, sqlx::Error> {
    let totals: Totals = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE e.status = 'pending' AND a.dead_at IS NULL) AS pending,
                (SELECT count(*) FROM outbox_leased_events
                  WHERE leased_until >= statement_timestamp()) AS in_flight,
                count(*) FILTER (WHERE e.status = 'pending' AND a.dead_at IS NULL
                                   AND a.event_id IS NOT NULL) AS retrying,
                count(*) FILTER (WHERE e.status = 'delivered') AS delivered,
                count(*) FILTER (WHERE e.status = 'pending' AND a.dead_at IS NOT NULL) AS dead,
                count(*) FILTER (WHERE e.status = 'discarded') AS discarded,
                extract(epoch FROM now() - min(e.created_at)
                        FILTER (WHERE e.status = 'pending' AND a.dead_at IS NULL))::float8
                    AS oldest_pending_age_seconds,
                max(e.delivered_at) AS last_delivered_at
           FROM outbox_events e LEFT JOIN outbox_attempts a ON a.event_id = e.id",
    )
    .fetch_one(pool)
    .await?;
    // The number of types comes from the same scan (a window over the groups, before the
    // limit): a separate `count(DISTINCT event_type)` cost a second scan and a sort that
    // spilled to disk, 0.6 s of the report's 1.3 s at a million rows.
    let rows: Vec<(String, i64, i64, i64, i64, i64)> = sqlx::query_as(
        "SELECT e.event_type,
                count(*) FILTER (WHERE e.status = 'pending' AND a.dead_at IS NULL) AS pending,
                count(*) FILTER (WHERE e.status = 'delivered') AS delivered,
                count(*) FILTER (WHERE e.status = 'pending' AND a.dead_at IS NOT NULL) AS dead,
                count(*) FILTER (WHERE e.status = 'discarded') AS discarded,
                count(*) OVER () AS types_total
           FROM outbox_events e LEFT JOIN outbox_attempts a ON a.event_id = e.id
          GROUP BY e.event_type
          ORDER BY count(*) DESC, e.event_type
          LIMIT $1",
    )
    .bind(top)
    .fetch_all(pool)
    .await?;
    let event_types_total = rows.first().map_or(0, |row| row.5);
    let by_event_type: Vec<TypeCounts> = rows
        .into_iter()
        .map(
            |(event_type, pending, delivered, dead, discarded, _)| TypeCounts {
                event_type,
                pending,
                delivered,
                dead,
                discarded,
            },
        )
        .collect();
    let mut blocked_keys = blocked_keys(pool, top.saturating_add(1), true).await?;
    let more_blocked_keys = blocked_keys.len() as i64 > top;
    blocked_keys.truncate(usize::try_from(top).unwrap_or(usize::MAX));
    Ok(StatusReport {
        pending: totals.pending,
        in_flight: totals.in_flight,
        retrying: totals.retrying,
        delivered: totals.delivered,
        dead: totals.dead,
        discarded: totals.discarded,
        oldest_pending_age_seconds: totals.oldest_pending_age_seconds,
        last_delivered_at: totals.last_delivered_at,
        by_event_type,
        event_types_total,
        blocked_keys,
        more_blocked_keys,
    })
}

/// Keys whose head is dead (or, with `retrying`, backing off or scheduled with events
/// waiting behind it), oldest head first, at most
/// `limit`. `waiting` is exact up to [`EXACT_UP_TO`], estimated beyond.
pub async fn blocked_keys(
    db: impl sqlx::PgExecutor<'_>,
    limit: i64,
    retrying: bool,
) -> Result<Vec<BlockedKey>, sqlx::Error> {
    sqlx::query_as(
        "WITH heads AS (
             (SELECT d.id, d.seq FROM outbox_attempts da JOIN outbox_events d ON d.id = da.event_id
               WHERE da.dead_at IS NOT NULL AND d.status = 'pending' AND d.ordering_key IS NOT NULL
                 AND NOT EXISTS (SELECT 1 FROM outbox_events b
                                  WHERE outbox_scope(b.tenant_id, b.ordering_key)
                                        = outbox_scope(d.tenant_id, d.ordering_key)
                                    AND b.seq < d.seq
                                    AND b.status IN ('pending', 'dead'))
               ORDER BY d.created_at, d.seq LIMIT $1)
             UNION ALL
             (SELECT r.id, r.seq FROM outbox_attempts a JOIN outbox_events r ON r.id = a.event_id
               WHERE $2 AND a.next_attempt_at > now()
                 AND r.status = 'pending' AND r.ordering_key IS NOT NULL
                 AND NOT EXISTS (SELECT 1 FROM outbox_events b
                                  WHERE outbox_scope(b.tenant_id, b.ordering_key)
                                        = outbox_scope(r.tenant_id, r.ordering_key)
                                    AND b.seq < r.seq
                                    AND b.status = 'pending')
               ORDER BY a.next_attempt_at LIMIT $1)
             UNION ALL
             (SELECT s.id, s.seq FROM outbox_events s
               WHERE $2 AND s.status = 'pending' AND NOT s.parked
                 AND s.available_at > now() AND s.ordering_key IS NOT NULL
                 AND NOT EXISTS (SELECT 1 FROM outbox_attempts a
                                  WHERE a.event_id = s.id AND a.next_attempt_at IS NOT NULL)
                 AND EXISTS (SELECT 1 FROM outbox_events x
                              WHERE outbox_scope(x.tenant_id, x.ordering_key)
                                    = outbox_scope(s.tenant_id, s.ordering_key)
                                AND x.seq > s.seq
                                AND x.status IN ('pending', 'dead'))
               ORDER BY s.available_at LIMIT $1))
         SELECT e.ordering_key, e.tenant_id, e.id AS head_id, e.event_type,
                CASE WHEN a.dead_at IS NOT NULL THEN 'dead'
                     WHEN a.next_attempt_at IS NULL THEN 'scheduled' ELSE 'retrying' END AS status,
                GREATEST(e.attempts, COALESCE(a.failures, 0)) AS attempts,
                COALESCE(a.last_error, e.last_error) AS last_error,
                CASE WHEN a.dead_at IS NULL
                     THEN GREATEST(e.available_at, COALESCE(a.next_attempt_at, e.available_at))
                     END AS retry_at,
                CASE WHEN w.n > $3
                     THEN GREATEST(outbox_estimate_behind(outbox_scope(e.tenant_id, e.ordering_key), e.seq), w.n)
                     ELSE w.n END AS waiting
           FROM heads h
           JOIN outbox_events e ON e.id = h.id
           LEFT JOIN outbox_attempts a ON a.event_id = e.id
           CROSS JOIN LATERAL (
                SELECT count(*) AS n FROM (
                    SELECT 1 FROM outbox_events x
                     WHERE outbox_scope(x.tenant_id, x.ordering_key)
                           = outbox_scope(e.tenant_id, e.ordering_key)
                       AND x.seq > e.seq
                       AND x.status IN ('pending', 'dead')
                     LIMIT $3 + 1) AS capped) AS w
          ORDER BY e.created_at, e.seq
          LIMIT $1",
    )
    .bind(limit)
    .bind(retrying)
    .bind(EXACT_UP_TO)
    .fetch_all(db)
    .await
}

/// The figures behind the `/metrics` gauges.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Gauges {
    /// Pending rows (exact up to [`EXACT_UP_TO`], estimated beyond).
    pub pending: i64,
    /// Pending events of unexpired leases (claimed, not yet settled; exact up to
    /// [`EXACT_UP_TO`]).
    pub in_flight: i64,
    /// Seconds since the oldest pending row was written (0 when none).
    pub oldest_pending_age: f64,
    /// Dead rows (exact up to [`EXACT_UP_TO`]).
    pub dead: i64,
    /// Keys whose head is dead (exact up to 1,000).
    pub blocked_keys: i64,
    /// Undelivered events behind those heads.
    pub blocked_events: i64,
    /// Dead tuples reported by the statistics collector.
    pub dead_tuples: i64,
}

/// Reads the gauges (each part an index scan bounded by a limit, or an estimate). The relay
/// runs it on a connection of its own within its database deadline
/// ([`crate::foundation::db::within_deadline`]), so a silent database cannot hold the connection.
pub async fn gauges(conn: &mut sqlx::PgConnection) -> Result<Gauges, sqlx::Error> {
    let (pending, in_flight, oldest_pending_age, dead, dead_tuples): (i64, i64, f64, i64, i64) =
        sqlx::query_as(
            "SELECT (SELECT CASE WHEN n > $1 THEN GREATEST(outbox_estimate_pending(), n) ELSE n END
                       FROM (SELECT count(*) AS n FROM (SELECT 1 FROM outbox_events
                              WHERE status = 'pending' LIMIT $1 + 1) AS p) AS c),
                    (SELECT count(*) FROM (SELECT 1 FROM outbox_leased_events
                              WHERE leased_until >= statement_timestamp() LIMIT $1) AS l),
                    -- The oldest of: the first ready head (the ready index, by when it may go:
                    -- seq says an event's partition, not its age) and the heads backing off.
                    COALESCE(extract(epoch FROM now() - LEAST(
                        (SELECT p.created_at FROM outbox_events p
                          WHERE p.status = 'pending' AND NOT p.parked
                          ORDER BY p.available_at, p.seq LIMIT 1),
                        (SELECT min(r.created_at) FROM outbox_attempts a
                           JOIN outbox_events r ON r.id = a.event_id
                          WHERE a.next_attempt_at IS NOT NULL AND r.status = 'pending')))::float8, 0),
                    (SELECT count(*) FROM (SELECT 1 FROM outbox_attempts a
                                             JOIN outbox_events d ON d.id = a.event_id
                              WHERE a.dead_at IS NOT NULL AND d.status = 'pending' LIMIT $1) AS d),
                    COALESCE((SELECT n_dead_tup FROM pg_stat_user_tables
                               WHERE relid = 'outbox_events'::regclass), 0)",
        )
        .bind(EXACT_UP_TO)
        .fetch_one(&mut *conn)
        .await?;
    let blocked = blocked_keys(&mut *conn, 1_000, false).await?;
    Ok(Gauges {
        // Dead events are parked `pending` rows (their death is in `outbox_attempts`).
        pending: pending.saturating_sub(dead).max(0),
        in_flight,
        oldest_pending_age,
        dead,
        blocked_keys: blocked.len() as i64,
        blocked_events: blocked.iter().map(|k| k.waiting).sum(),
        dead_tuples,
    })
}
