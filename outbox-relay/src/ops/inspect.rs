//! `inspect`: one event's full row, as JSON.

use sqlx::PgPool;
use uuid::Uuid;

/// The row of `id` as a JSON object, or `None` when there is no such event.
pub async fn inspect(pool: &PgPool, id: Uuid) -> Result<Option<serde_json::Value>, sqlx::Error> {
    sqlx::query_scalar("SELECT to_jsonb(e) FROM outbox_events e WHERE e.id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await
}
