//! The replay/discard audit (`outbox_replay_audit`), read: the records an [`AuditFilter`]
//! selects, newest first. [`super::operator::apply`] writes them.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use crate::engine::audit::AuditFilter;

/// One audit record: who did (or, in a dry run, looked at) what, and when.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    /// The record's id (`replay` and `discard` print it).
    pub id: i64,
    /// When it was written.
    pub recorded_at: DateTime<Utc>,
    /// `replay` or `discard`.
    pub action: String,
    /// Whether nothing was changed (`--dry-run`).
    pub dry_run: bool,
    /// The actor the operator declared (`--actor`, default `$USER`).
    pub actor: String,
    /// The database role of the session that wrote it, stamped by the database (`None` for
    /// records older than that column).
    pub session_role: Option<String>,
    /// How many events it touched.
    pub event_count: i32,
    /// Their ids.
    pub event_ids: Vec<Uuid>,
    /// The request as the command received it: `status`, `filter`, `limit`, `all`.
    pub filter: serde_json::Value,
}
from_row!(AuditRecord {
    id,
    recorded_at,
    action,
    dry_run,
    actor,
    session_role,
    event_count,
    event_ids,
    filter
});

/// The records `filter` selects, newest first, at most `limit`. Criteria on the events
/// (type, category, tenant, key) match the events still in the table: a record whose events
/// were all purged since is found by time, actor, role, action or `--id` only.
pub async fn list(
    pool: &PgPool,
    filter: &AuditFilter,
    limit: i64,
) -> Result<Vec<AuditRecord>, sqlx::Error> {
    let events = &filter.events;
    sqlx::query_as(
        "SELECT a.id, a.replayed_at AS recorded_at, a.action, a.dry_run, a.actor,
                a.session_role, a.event_count, a.event_ids, a.filter
           FROM outbox_replay_audit a
          WHERE ($1::timestamptz IS NULL OR a.replayed_at >= $1)
            AND ($2::timestamptz IS NULL OR a.replayed_at < $2)
            AND ($3::text IS NULL OR a.action = $3)
            AND ($4::text IS NULL OR a.actor = $4)
            AND ($5::text IS NULL OR a.session_role = $5)
            AND ($6::boolean IS NULL OR a.dry_run = $6)
            AND (cardinality($7::uuid[]) = 0 OR a.event_ids && $7::uuid[])
            AND (NOT $8::boolean OR EXISTS (
                    SELECT 1 FROM outbox_events e
                     WHERE e.id = ANY(a.event_ids)
                       AND ($9::text IS NULL OR e.event_type = $9)
                       AND ($10::text IS NULL OR e.category = $10)
                       AND ($11::uuid IS NULL OR e.tenant_id = $11)
                       AND ($12::text IS NULL OR e.ordering_key = $12)))
          ORDER BY a.id DESC
          LIMIT $13",
    )
    .bind(filter.since)
    .bind(filter.until)
    .bind(filter.action.map(|action| action.as_str()))
    .bind(filter.actor.as_deref())
    .bind(filter.role.as_deref())
    .bind(filter.dry_run)
    .bind(&filter.ids)
    .bind(filter.matches_on_events())
    .bind(events.event_type.as_deref())
    .bind(events.category.as_deref())
    .bind(events.tenant)
    .bind(events.ordering_key.as_deref())
    .bind(limit)
    .fetch_all(pool)
    .await
}
