//! What the upgrade tests share: databases at the schema of an earlier step, events written
//! as that schema's writers wrote them and brought into a state by hand, and the statements
//! of earlier relays' operators (`tests/tests/upgrade.rs`,
//! `tests/tests/upgrade_producer_rows_only.rs`).

use anyhow::Result;
use serde_json::json;
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use uuid::Uuid;

use crate::TestDb;

/// Inserts a ticket event as the old schemas' writers did; returns its id.
pub async fn insert(pool: &PgPool, tenant: Option<Uuid>, key: Option<&str>) -> Result<Uuid> {
    Ok(sqlx::query_scalar(
        "INSERT INTO outbox_events (event_type, payload, tenant_id, ordering_key)
         VALUES ('TICKET_UPDATED', $1, $2, $3) RETURNING id",
    )
    .bind(json!({"ticketId": Uuid::now_v7(), "updatedFields": ["status"]}))
    .bind(tenant)
    .bind(key)
    .fetch_one(pool)
    .await?)
}

/// Sets `assignments` (SQL, e.g. `status = 'delivered'`) on event `id`'s row.
pub async fn set(pool: &PgPool, id: Uuid, assignments: &str) -> Result<()> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE outbox_events SET {assignments} WHERE id = $1"
    )))
    .bind(id)
    .execute(pool)
    .await?;
    Ok(())
}

/// [`insert`], then [`set`]: an event written by the old schema's writers and brought into
/// a state by hand.
pub async fn insert_in(
    pool: &PgPool,
    tenant: Option<Uuid>,
    key: Option<&str>,
    assignments: &str,
) -> Result<Uuid> {
    let id = insert(pool, tenant, key).await?;
    set(pool, id, assignments).await?;
    Ok(id)
}

/// The seq of event `id`.
pub async fn seq_of(pool: &PgPool, id: Uuid) -> Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT seq FROM outbox_events WHERE id = $1")
            .bind(id)
            .fetch_one(pool)
            .await?,
    )
}

/// A new database at the schema before migration `version` (every older migration
/// applied, as the migrator does), with the catalog table filled.
pub async fn database_before(version: i64) -> Result<TestDb> {
    let db = TestDb::empty().await?;
    migrate_before(&db.pool, version).await?;
    outbox_core::sync_catalog(&db.pool).await?;
    Ok(db)
}

/// Applies the migrations before `version` (the ones an upgrade test checks the effect of;
/// the test applies the rest before it starts today's relay).
pub async fn migrate_before(pool: &PgPool, version: i64) -> Result<()> {
    Migrator::with_migrations(
        outbox_core::MIGRATOR
            .iter()
            .filter(|m| m.version < version)
            .cloned()
            .collect(),
    )
    .run(pool)
    .await?;
    Ok(())
}

/// Discards the dead head `id` as step 4b's `discard` did (its statements, verbatim but for
/// the audit record): noted in `outbox_discarded`, its scope's head moved to the seq after
/// it, due at once.
pub async fn discard_at_step_4b(pool: &PgPool, id: Uuid) -> Result<()> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO outbox_attempts AS a (event_id, failures, last_error)
         VALUES ($1, 0, 'discarded by t; last error: none')
         ON CONFLICT (event_id) DO UPDATE
            SET last_error = left('discarded by t; last error: ' || COALESCE(a.last_error, 'none'), 2000),
                next_attempt_at = NULL, updated_at = clock_timestamp()",
    )
    .bind(id)
    .execute(&mut *tx)
    .await?;
    sqlx::query("INSERT INTO outbox_discarded (event_id) VALUES ($1)")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "WITH heads AS (
             SELECT h.scope, e.seq, e.ordering_key IS NULL AS unkeyed
               FROM outbox_events e
               JOIN outbox_held h
                 ON h.scope = COALESCE(outbox_scope(e.tenant_id, e.ordering_key),
                                       '#' || e.id::text)
                AND h.head_seq = e.seq AND h.due_at IS NULL
              WHERE e.id = $1),
         gone AS (DELETE FROM outbox_held h USING heads x
                   WHERE h.scope = x.scope AND x.unkeyed)
         UPDATE outbox_held h SET head_seq = x.seq + 1, due_at = now(),
                updated_at = clock_timestamp()
           FROM heads x WHERE h.scope = x.scope AND NOT x.unkeyed",
    )
    .bind(id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}
