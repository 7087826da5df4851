//! `migrate` (and `run --migrate`): apply the schema and sync the catalog table.

use anyhow::{Context, Result};
use tracing::info;

use crate::cli::DatabaseArgs;

/// Applies the embedded migrations and syncs `system_event_catalog` (idempotent).
pub async fn migrate(args: &DatabaseArgs) -> Result<()> {
    let db = super::connect(args).await?;
    outbox_core::migrate(&db.pool)
        .await
        .map_err(|e| db.explain(e))
        .with_context(|| format!("migrating {}", db.shown))?;
    info!(database = %db.shown, "migrations applied and catalog synced");
    db.pool.close().await;
    Ok(())
}
