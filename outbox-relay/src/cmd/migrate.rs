//! `migrate` (and `run --migrate`): apply the schema and sync the catalog table.

use anyhow::{Context, Result};
use tracing::info;

use outbox_relay::mask::mask_url;

use crate::cli::DatabaseArgs;

/// Applies the embedded migrations and syncs `system_event_catalog` (idempotent).
pub async fn migrate(args: &DatabaseArgs) -> Result<()> {
    let pool = super::connect(args)?;
    let database = mask_url(&args.database_url);
    outbox_core::migrate(&pool)
        .await
        .with_context(|| format!("migrating {database}"))?;
    info!(%database, "migrations applied and catalog synced");
    pool.close().await;
    Ok(())
}
