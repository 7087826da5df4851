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
        "SELECT count(*) FILTER (WHERE s.status = 'pending') AS pending,
                (SELECT COALESCE(sum(claimed), 0)::bigint FROM outbox_partitions
                  WHERE leased_until >= statement_timestamp()) AS in_flight,
                count(*) FILTER (WHERE s.status = 'pending' AND a.event_id IS NOT NULL
                                   AND a.dead_at IS NULL) AS retrying,
                count(*) FILTER (WHERE s.status = 'delivered') AS delivered,
                count(*) FILTER (WHERE s.status = 'dead') AS dead,
                count(*) FILTER (WHERE s.status = 'discarded') AS discarded,
                extract(epoch FROM now() - min(s.created_at)
                        FILTER (WHERE s.status = 'pending'))::float8
                    AS oldest_pending_age_seconds,
                (SELECT max(advanced_at) FROM outbox_partitions) AS last_delivered_at
           FROM outbox_event_status s LEFT JOIN outbox_attempts a ON a.event_id = s.id",
    )
    .fetch_one(pool)
    .await?;
    // The number of types comes from the same scan (a window over the groups, before the
    // limit): a separate `count(DISTINCT event_type)` cost a second scan and a sort that
    // spilled to disk, 0.6 s of the report's 1.3 s at a million rows.
    let rows: Vec<(String, i64, i64, i64, i64, i64)> = sqlx::query_as(
        "SELECT e.event_type,
                count(*) FILTER (WHERE e.status = 'pending') AS pending,
                count(*) FILTER (WHERE e.status = 'delivered') AS delivered,
                count(*) FILTER (WHERE e.status = 'dead') AS dead,
                count(*) FILTER (WHERE e.status = 'discarded') AS discarded,
                count(*) OVER () AS types_total
           FROM outbox_event_status e
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
             SELECT h.scope, h.head_seq, h.due_at, f.id
               FROM outbox_held h
              -- Each held scope's first event through the scope index (a join on the
              -- scope and a `min(seq)` made the planner hash the whole table).
              CROSS JOIN LATERAL (
                    SELECT f.id FROM outbox_events f
                     WHERE f.ordering_key IS NOT NULL
                       AND outbox_scope(f.tenant_id, f.ordering_key) = h.scope
                       AND f.seq >= h.head_seq
                       AND NOT EXISTS (SELECT 1 FROM outbox_discarded x
                                        WHERE x.event_id = f.id)
                       AND NOT EXISTS (SELECT 1 FROM outbox_delivered_behind d
                                        WHERE d.event_id = f.id)
                     ORDER BY f.seq LIMIT 1) f
              WHERE h.scope NOT LIKE '#%'
                AND (h.due_at IS NULL OR ($2 AND h.due_at > now())))
         SELECT e.ordering_key, e.tenant_id, e.id AS head_id, e.event_type,
                CASE WHEN h.due_at IS NULL THEN 'dead'
                     WHEN a.event_id IS NULL OR a.failures = 0 THEN 'scheduled'
                     ELSE 'retrying' END AS status,
                COALESCE(a.failures, 0) AS attempts,
                a.last_error,
                h.due_at AS retry_at,
                CASE WHEN w.n > $3
                     THEN GREATEST(outbox_estimate_behind(h.scope, e.seq), w.n)
                     ELSE w.n END AS waiting
           FROM heads h
           JOIN outbox_events e ON e.id = h.id
           LEFT JOIN outbox_attempts a ON a.event_id = e.id
           CROSS JOIN LATERAL (
                SELECT count(*) AS n FROM (
                    SELECT 1 FROM outbox_events x
                     WHERE x.ordering_key IS NOT NULL
                       AND outbox_scope(x.tenant_id, x.ordering_key) = h.scope
                       AND x.seq > e.seq
                       AND NOT EXISTS (SELECT 1 FROM outbox_delivered_behind d
                                        WHERE d.event_id = x.id)
                     LIMIT $3 + 1) AS capped) AS w
          WHERE h.due_at IS NULL OR ($2 AND (COALESCE(a.failures, 0) > 0 OR w.n > 0))
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
        sqlx::query_as(concat!(
            "SELECT (SELECT COALESCE(sum(n), 0)::bigint FROM outbox_partitions p
                      CROSS JOIN LATERAL (
                            SELECT count(*) AS n FROM (
                                SELECT 1 FROM outbox_events e
                                 WHERE e.seq % 16 = p.part AND e.seq > p.frontier
                                 LIMIT $1) AS capped) AS c)
                    -- The events at or behind each held head, up to the frontier (above
                    -- it they are counted above), but the dead heads themselves.
                    + (SELECT COALESCE(sum(c.n), 0)::bigint
                         FROM (SELECT * FROM outbox_held LIMIT $1) AS h
                        JOIN outbox_partitions p ON p.part = h.part
                        CROSS JOIN LATERAL (
                              SELECT count(*) AS n FROM (
                                  SELECT 1 FROM outbox_events e
                                   WHERE h.scope NOT LIKE '#%'
                                     AND e.ordering_key IS NOT NULL
                                     AND outbox_scope(e.tenant_id, e.ordering_key) = h.scope
                                     AND e.seq >= h.head_seq AND e.seq <= p.frontier
                                     AND NOT EXISTS (SELECT 1 FROM outbox_discarded x
                                                      WHERE x.event_id = e.id)
                                     AND NOT EXISTS (SELECT 1 FROM outbox_delivered_behind d
                                                      WHERE d.event_id = e.id)
                                  UNION ALL
                                  SELECT 1 FROM outbox_events e
                                   WHERE h.scope LIKE '#%'
                                     AND e.id = CASE WHEN h.scope LIKE '#%'
                                                     THEN CAST(substr(h.scope, 2) AS uuid) END
                                  LIMIT $1) AS capped) AS c)
                    - (SELECT count(*) FROM outbox_held WHERE due_at IS NULL)
                    -- Gaps filled since they were noted (only a due group's can be),
                    -- and replays to send.
                    + (SELECT count(*) FROM (SELECT 1 FROM outbox_gap_groups gg
                        JOIN outbox_gaps g ON g.part = gg.part AND g.noted_xid = gg.noted_xid
                        WHERE ",
            gap_group_due!("gg"),
            " AND EXISTS (SELECT 1 FROM outbox_events e
                                       WHERE e.seq % 16 = g.part AND e.seq = g.seq)
                        LIMIT $1) AS filled)
                    + (SELECT count(*) FROM outbox_replays WHERE due_at IS NOT NULL),
                    (SELECT COALESCE(sum(claimed), 0)::bigint FROM outbox_partitions
                      WHERE leased_until >= statement_timestamp()),
                    -- The oldest of: each partition's first event after its frontier, and
                    -- the held heads that will go again.
                    COALESCE(extract(epoch FROM now() - LEAST(
                        (SELECT min(f.created_at) FROM outbox_partitions p
                          CROSS JOIN LATERAL (SELECT e.created_at FROM outbox_events e
                                               WHERE e.seq % 16 = p.part AND e.seq > p.frontier
                                               ORDER BY e.seq % 16, e.seq LIMIT 1) f),
                        (SELECT min(e.created_at) FROM outbox_held h
                           JOIN outbox_events e
                             ON COALESCE(outbox_scope(e.tenant_id, e.ordering_key), '#' || e.id::text) = h.scope
                            AND e.seq % 16 = h.head_seq % 16 AND e.seq = h.head_seq
                          WHERE h.due_at IS NOT NULL)))::float8, 0),
                    (SELECT count(*) FROM (SELECT 1 FROM outbox_held
                              WHERE due_at IS NULL LIMIT $1) AS d)
                    + (SELECT count(*) FROM outbox_replays WHERE due_at IS NULL),
                    COALESCE((SELECT n_dead_tup FROM pg_stat_user_tables
                               WHERE relid = 'outbox_events'::regclass), 0)",
        ))
        .bind(EXACT_UP_TO)
        .fetch_one(&mut *conn)
        .await?;
    let blocked = blocked_keys(&mut *conn, 1_000, false).await?;
    Ok(Gauges {
        pending,
        in_flight,
        oldest_pending_age,
        dead,
        blocked_keys: blocked.len() as i64,
        blocked_events: blocked.iter().map(|k| k.waiting).sum(),
        dead_tuples,
    })
}
