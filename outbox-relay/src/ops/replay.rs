//! `replay`: put dead or delivered events back to `pending` so the relay sends them again,
//! with their original id (consumers' inboxes drop what they already applied).

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use super::filter::{self, EventFilter, FilterError, ReplayableStatus};

/// What to replay.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplayRequest {
    /// Status the events are taken from.
    pub status: ReplayableStatus,
    /// The selection.
    pub filter: EventFilter,
    /// At most this many events (oldest first).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
    /// The operator accepts an empty filter.
    pub all: bool,
}

/// One event a replay touches (or would touch).
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct ReplayedEvent {
    /// Event id (the message id it will carry again).
    pub id: Uuid,
    /// Event type.
    pub event_type: String,
    /// Tenant.
    pub tenant_id: Option<Uuid>,
    /// Ordering key.
    pub ordering_key: Option<String>,
    /// When it was written.
    pub created_at: DateTime<Utc>,
    /// Attempts so far (reset to 0 by the replay).
    pub attempts: i32,
    /// Last failure, if any.
    pub last_error: Option<String>,
}

/// The result of a replay or a dry run.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplayReport {
    /// Whether nothing was changed.
    pub dry_run: bool,
    /// How many events matched (and, unless a dry run, were replayed).
    pub count: usize,
    /// Up to 10 of them, oldest first.
    pub sample: Vec<ReplayedEvent>,
    /// The audit record written (none for a dry run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit_id: Option<i64>,
}

/// Why a replay did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The filter was refused.
    #[error(transparent)]
    Filter(#[from] FilterError),
    /// The database failed; nothing was changed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

const SAMPLE: usize = 10;

/// Replays (or, with `dry_run`, lists) the matching events, recording `actor` in the audit
/// table. Matching rows are locked for the update, so a concurrent replay cannot double
/// them; the events keep their `seq`, so they stay in order with their key's other events.
pub async fn replay(
    pool: &PgPool,
    request: &ReplayRequest,
    actor: &str,
    dry_run: bool,
) -> Result<ReplayReport, ReplayError> {
    if request.filter.is_empty() && !request.all {
        return Err(FilterError::NoFilter.into());
    }
    request.filter.validate()?;
    if let Some(limit) = request.limit
        && limit < 1
    {
        return Err(FilterError::Invalid {
            flag: "--limit",
            reason: "must be at least 1".to_owned(),
        }
        .into());
    }
    let mut tx = pool.begin().await?;
    let select = format!(
        "SELECT id, event_type, tenant_id, ordering_key, created_at, attempts, last_error
           FROM outbox_events
          WHERE {}
          ORDER BY seq
          LIMIT $9
          {}",
        filter::WHERE,
        if dry_run { "" } else { "FOR UPDATE" }
    );
    let matched: Vec<ReplayedEvent> = filter::bind(
        sqlx::query_as(sqlx::AssertSqlSafe(select)),
        request.status.as_str(),
        &request.filter,
    )
    .bind(request.limit)
    .fetch_all(&mut *tx)
    .await?;
    let sample: Vec<ReplayedEvent> = matched.iter().take(SAMPLE).cloned().collect();
    if dry_run || matched.is_empty() {
        tx.rollback().await?;
        return Ok(ReplayReport {
            dry_run,
            count: matched.len(),
            sample,
            audit_id: None,
        });
    }
    let ids: Vec<Uuid> = matched.iter().map(|e| e.id).collect();
    sqlx::query(
        "UPDATE outbox_events
            SET status = 'pending', attempts = 0, available_at = now(), last_error = NULL,
                delivered_at = NULL, locked_by = NULL, locked_until = NULL
          WHERE id = ANY($1)",
    )
    .bind(&ids)
    .execute(&mut *tx)
    .await?;
    let audit = serde_json::to_value(request).unwrap_or_default();
    let audit_id: i64 = sqlx::query_scalar(
        "INSERT INTO outbox_replay_audit (actor, filter, event_count, event_ids)
         VALUES ($1, $2, $3, $4) RETURNING id",
    )
    .bind(actor)
    .bind(audit)
    .bind(i32::try_from(ids.len()).unwrap_or(i32::MAX))
    .bind(&ids)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    tracing::info!(actor, audit_id, count = ids.len(), filter = %serde_json::to_string(request).unwrap_or_default(), "replayed events");
    Ok(ReplayReport {
        dry_run,
        count: ids.len(),
        sample,
        audit_id: Some(audit_id),
    })
}
