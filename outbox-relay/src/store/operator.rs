//! Operators' changes: replay (dead, delivered or discarded → `pending`) and discard
//! (dead → `discarded`), each on the events an [`EventFilter`] selects, with an audit record.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use super::Status;
use crate::engine::filter::EventFilter;

pub use crate::engine::filter::Action;

/// One event an operator command touches (or would touch).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SelectedEvent {
    /// Event id (the message id it carries).
    pub id: Uuid,
    /// Event type.
    pub event_type: String,
    /// Tenant.
    pub tenant_id: Option<Uuid>,
    /// Ordering key.
    pub ordering_key: Option<String>,
    /// When it was written.
    pub created_at: DateTime<Utc>,
    /// Attempts so far.
    pub attempts: i32,
    /// Last failure, if any.
    pub last_error: Option<String>,
}
from_row!(SelectedEvent {
    id,
    event_type,
    tenant_id,
    ordering_key,
    created_at,
    attempts,
    last_error
});

/// The result of an operator change or its dry run.
#[derive(Debug, Clone)]
pub struct Applied {
    /// Every matching event, oldest first.
    pub events: Vec<SelectedEvent>,
    /// The audit record written (none when nothing matched).
    pub audit_id: Option<i64>,
}

/// The `WHERE` clause of a filter over `outbox_events e JOIN outbox_event_status s`, with
/// parameters `$1`..`$8`: the statement text never contains a value. `$1` is the status
/// the events must have (`outbox_event_status` derives it from the relay's tables).
const WHERE: &str = "s.status = $1
   AND (cardinality($2::uuid[]) = 0 OR e.id = ANY($2::uuid[]))
   AND ($3::text IS NULL OR e.event_type = $3)
   AND ($4::text IS NULL OR e.category = $4)
   AND ($5::uuid IS NULL OR e.tenant_id = $5)
   AND ($6::text IS NULL OR e.ordering_key = $6)
   AND ($7::timestamptz IS NULL OR e.created_at >= $7)
   AND ($8::timestamptz IS NULL OR e.created_at < $8)";

/// Applies `action` to the events with status `from` that `filter` selects (at most
/// `limit`, oldest first), recording `actor` and `audit` in `outbox_replay_audit`; with
/// `dry_run`, only lists them, and records that (`dry_run` set). Nothing is recorded when
/// nothing matched. Matching rows are locked, so concurrent commands cannot double an event.
///
/// A replayed dead event is its held scope's head again, due at once, its failures
/// forgotten; a replayed delivered or discarded event goes out once more on its own
/// (`outbox_replays`). A discarded dead event is noted in `outbox_discarded`, and its
/// scope's head moves past it.
#[allow(clippy::too_many_arguments)]
pub async fn apply(
    pool: &PgPool,
    action: Action,
    from: Status,
    filter: &EventFilter,
    limit: Option<i64>,
    actor: &str,
    audit: &serde_json::Value,
    dry_run: bool,
) -> Result<Applied, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let mut tx = sqlx::Connection::begin_with(&mut *conn, super::OPERATOR_BEGIN).await?;
    let select = format!(
        "SELECT e.id, e.event_type, e.tenant_id, e.ordering_key, e.created_at, s.attempts,
                s.last_error
           FROM outbox_events e
           JOIN outbox_event_status s ON s.id = e.id
          WHERE {WHERE}
          ORDER BY e.created_at, e.seq
          LIMIT $9
          {}",
        if dry_run { "" } else { "FOR UPDATE OF e" }
    );
    let events: Vec<SelectedEvent> = sqlx::query_as(sqlx::AssertSqlSafe(select))
        .bind(from.as_str())
        .bind(&filter.ids)
        .bind(filter.event_type.as_deref())
        .bind(filter.category.as_deref())
        .bind(filter.tenant)
        .bind(filter.ordering_key.as_deref())
        .bind(filter.since)
        .bind(filter.until)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
    if events.is_empty() {
        tx.rollback().await?;
        return Ok(Applied {
            events,
            audit_id: None,
        });
    }
    let ids: Vec<Uuid> = events.iter().map(|e| e.id).collect();
    match action {
        // A dry run changes no event; it is only recorded.
        _ if dry_run => {}
        Action::Replay => {
            // Its failures are forgotten: it starts again with a full set of attempts.
            sqlx::query("DELETE FROM outbox_attempts WHERE event_id = ANY($1)")
                .bind(&ids)
                .execute(&mut *tx)
                .await?;
            if from == Status::Dead {
                // The dead head of a held scope goes again, at once; so does a dead replay.
                sqlx::query(
                    "UPDATE outbox_held h SET due_at = now(), updated_at = clock_timestamp()
                       FROM outbox_events e
                      WHERE e.id = ANY($1) AND h.due_at IS NULL AND h.head_seq = e.seq
                        AND h.scope = COALESCE(outbox_scope(e.tenant_id, e.ordering_key),
                                               '#' || e.id::text)",
                )
                .bind(&ids)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "UPDATE outbox_replays SET due_at = now()
                      WHERE event_id = ANY($1) AND due_at IS NULL",
                )
                .bind(&ids)
                .execute(&mut *tx)
                .await?;
            } else {
                // Delivered or discarded: once more, on its own.
                sqlx::query("DELETE FROM outbox_discarded WHERE event_id = ANY($1)")
                    .bind(&ids)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "INSERT INTO outbox_replays (event_id, part, due_at)
                     SELECT e.id, (e.seq % 16)::integer, now()
                       FROM outbox_events e WHERE e.id = ANY($1)
                     ON CONFLICT (event_id) DO UPDATE SET due_at = now()",
                )
                .bind(&ids)
                .execute(&mut *tx)
                .await?;
            }
        }
        Action::Discard => {
            // Who discarded it, beside why it died.
            sqlx::query(
                "INSERT INTO outbox_attempts AS a (event_id, failures, last_error)
                 SELECT d.id, 0, left('discarded by ' || $2 || '; last error: none', 2000)
                   FROM unnest($1::uuid[]) AS d(id)
                 ON CONFLICT (event_id) DO UPDATE
                    SET last_error = left('discarded by ' || $2 || '; last error: '
                                          || COALESCE(a.last_error, 'none'), 2000),
                        next_attempt_at = NULL, updated_at = clock_timestamp()",
            )
            .bind(&ids)
            .bind(actor)
            .execute(&mut *tx)
            .await?;
            // Retention counts from the discard.
            sqlx::query(
                "INSERT INTO outbox_discarded (event_id)
                 SELECT unnest($1::uuid[])
                 ON CONFLICT (event_id) DO UPDATE SET discarded_at = now()",
            )
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
            // The scope's head moves past it (an unkeyed event's hold ends); a dead replay
            // is forgotten.
            sqlx::query(
                "WITH heads AS (
                     SELECT h.scope, e.seq, e.ordering_key IS NULL AS unkeyed
                       FROM outbox_events e
                       JOIN outbox_held h
                         ON h.scope = COALESCE(outbox_scope(e.tenant_id, e.ordering_key),
                                               '#' || e.id::text)
                        AND h.head_seq = e.seq AND h.due_at IS NULL
                      WHERE e.id = ANY($1)),
                 gone AS (DELETE FROM outbox_held h USING heads x
                           WHERE h.scope = x.scope AND x.unkeyed)
                 UPDATE outbox_held h SET head_seq = x.seq + 1, due_at = now(),
                        updated_at = clock_timestamp()
                   FROM heads x WHERE h.scope = x.scope AND NOT x.unkeyed",
            )
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM outbox_replays WHERE event_id = ANY($1)")
                .bind(&ids)
                .execute(&mut *tx)
                .await?;
        }
    }
    let audit_id: i64 = sqlx::query_scalar(
        "INSERT INTO outbox_replay_audit (actor, action, filter, event_count, event_ids, dry_run)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(actor)
    .bind(action.as_str())
    .bind(audit)
    .bind(i32::try_from(ids.len()).unwrap_or(i32::MAX))
    .bind(&ids)
    .bind(dry_run)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Applied {
        events,
        audit_id: Some(audit_id),
    })
}

/// One event's full row, for `inspect`. The fields are in the order `inspect` prints them
/// (serialised as camelCase): where the event stands first (status, attempts, last error,
/// when it is due, delivered or discarded), then what it is (type, schema, category,
/// tenant, key, seq, dedupe key, times), then the relay's lease, then headers and payload.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InspectedEvent {
    /// Event id (the message id it carries).
    pub id: Uuid,
    /// `pending`, `delivered`, `dead` or `discarded`.
    pub status: String,
    /// Publish attempts so far.
    pub attempts: i32,
    /// Why the last attempt failed (or who discarded it).
    pub last_error: Option<String>,
    /// When it may be sent: the producer's `available_at`, or the next try of an event that
    /// failed, whichever is later.
    pub available_at: DateTime<Utc>,
    /// When the broker confirmed it.
    pub delivered_at: Option<DateTime<Utc>>,
    /// When an operator discarded it (its retention counts from then).
    pub discarded_at: Option<DateTime<Utc>>,
    /// Catalog event type.
    pub event_type: String,
    /// Payload schema ref.
    pub schema_ref: String,
    /// Catalog category.
    pub category: String,
    /// Tenant.
    pub tenant_id: Option<Uuid>,
    /// Ordering key.
    pub ordering_key: Option<String>,
    /// Position in commit order within its scope.
    pub seq: i64,
    /// Dedupe key (unique per tenant).
    pub dedupe_key: String,
    /// When it happened.
    pub occurred_at: DateTime<Utc>,
    /// When it was written.
    pub created_at: DateTime<Utc>,
    /// Waiting behind an earlier event of its scope.
    pub parked: bool,
    /// The relay whose claim holds it (the lease of its partition in `outbox_partitions`).
    pub locked_by: Option<String>,
    /// Until when that lease runs.
    pub locked_until: Option<DateTime<Utc>>,
    /// The claim holding it.
    pub claim_token: Option<Uuid>,
    /// Extra AMQP headers, as stored.
    pub headers: serde_json::Value,
    /// The payload, as stored.
    pub payload: serde_json::Value,
}
from_row!(InspectedEvent {
    id,
    status,
    attempts,
    last_error,
    available_at,
    delivered_at,
    discarded_at,
    event_type,
    schema_ref,
    category,
    tenant_id,
    ordering_key,
    seq,
    dedupe_key,
    occurred_at,
    created_at,
    parked,
    locked_by,
    locked_until,
    claim_token,
    headers,
    payload
});

/// One event's full row, or `None` when there is no such event. Where it stands (status,
/// attempts, last error, next try, lease, discard time) comes from `outbox_event_status`,
/// which reads the relay's tables (`outbox_partitions`, `outbox_held`, `outbox_attempts`,
/// `outbox_discarded`, `outbox_replays`).
pub async fn inspect(pool: &PgPool, id: Uuid) -> Result<Option<InspectedEvent>, sqlx::Error> {
    sqlx::query_as(
        "SELECT s.id, s.status, s.attempts, s.last_error,
                COALESCE(s.due_at, s.available_at) AS available_at, s.delivered_at,
                s.discarded_at, e.event_type, e.schema_ref, e.category, e.tenant_id,
                e.ordering_key, e.seq, e.dedupe_key, e.occurred_at, e.created_at, s.parked,
                s.leased_by AS locked_by, s.leased_until AS locked_until,
                s.lease_token AS claim_token, e.headers, e.payload
           FROM outbox_events e
           JOIN outbox_event_status s ON s.id = e.id
          WHERE e.id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await
}

/// The status of each of `ids` that exists (for an operator who named events that a
/// command left alone).
pub async fn statuses(
    pool: &PgPool,
    ids: &[Uuid],
) -> Result<std::collections::HashMap<Uuid, String>, sqlx::Error> {
    let rows: Vec<(Uuid, String)> =
        sqlx::query_as("SELECT id, status FROM outbox_event_status WHERE id = ANY($1)")
            .bind(ids)
            .fetch_all(pool)
            .await?;
    Ok(rows.into_iter().collect())
}
