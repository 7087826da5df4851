//! `status`: how the outbox is doing, for people and for scripts.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

/// Counts of one event type.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
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
}

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
    /// Seconds since the oldest pending event was written (0 when none).
    pub oldest_pending_age_seconds: f64,
    /// When the last event was delivered.
    pub last_delivered_at: Option<DateTime<Utc>>,
    /// The busiest event types by total count.
    pub by_event_type: Vec<TypeCounts>,
}

/// Reads the status; `top` bounds the per-type list.
pub async fn status(pool: &PgPool, top: i64) -> Result<StatusReport, sqlx::Error> {
    let (pending, in_flight, retrying, delivered, dead, oldest_pending_age_seconds, last_delivered_at): (
        i64,
        i64,
        i64,
        i64,
        i64,
        f64,
        Option<DateTime<Utc>>,
    ) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE status = 'pending'),
                count(*) FILTER (WHERE status = 'pending' AND locked_until >= now()),
                count(*) FILTER (WHERE status = 'pending' AND attempts > 0),
                count(*) FILTER (WHERE status = 'delivered'),
                count(*) FILTER (WHERE status = 'dead'),
                COALESCE(extract(epoch FROM now() - min(created_at) FILTER (WHERE status = 'pending'))::float8, 0),
                max(delivered_at)
           FROM outbox_events",
    )
    .fetch_one(pool)
    .await?;
    let by_event_type: Vec<TypeCounts> = sqlx::query_as(
        "SELECT event_type,
                count(*) FILTER (WHERE status = 'pending') AS pending,
                count(*) FILTER (WHERE status = 'delivered') AS delivered,
                count(*) FILTER (WHERE status = 'dead') AS dead
           FROM outbox_events
          GROUP BY event_type
          ORDER BY count(*) DESC, event_type
          LIMIT $1",
    )
    .bind(top)
    .fetch_all(pool)
    .await?;
    Ok(StatusReport {
        pending,
        in_flight,
        retrying,
        delivered,
        dead,
        oldest_pending_age_seconds,
        last_delivered_at,
        by_event_type,
    })
}

impl StatusReport {
    /// A few aligned lines for a terminal.
    pub fn to_text(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "pending    {:>10}  (in flight {}, retrying {})",
            self.pending, self.in_flight, self.retrying
        );
        let _ = writeln!(out, "delivered  {:>10}", self.delivered);
        let _ = writeln!(out, "dead       {:>10}", self.dead);
        let _ = writeln!(
            out,
            "oldest pending age  {:.1}s",
            self.oldest_pending_age_seconds
        );
        let _ = writeln!(
            out,
            "last delivered      {}",
            self.last_delivered_at
                .map(|t| t.to_rfc3339())
                .unwrap_or_else(|| "never".to_owned())
        );
        if !self.by_event_type.is_empty() {
            let _ = writeln!(
                out,
                "\n{:<40} {:>10} {:>10} {:>10}",
                "EVENT TYPE", "PENDING", "DELIVERED", "DEAD"
            );
            for row in &self.by_event_type {
                let _ = writeln!(
                    out,
                    "{:<40} {:>10} {:>10} {:>10}",
                    row.event_type, row.pending, row.delivered, row.dead
                );
            }
        }
        out
    }
}
