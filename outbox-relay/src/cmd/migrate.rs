//! `migrate` (and `run --migrate`): apply the schema and sync the catalog table; with
//! `--service-events`, register services' own event types too.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use tracing::info;

use crate::cli::{DatabaseArgs, MigrateArgs};

/// Applies the embedded migrations and syncs `system_event_catalog` (idempotent).
pub async fn migrate(args: &DatabaseArgs) -> Result<()> {
    migrate_with(args, &[]).await
}

/// `migrate` with its flags: the migrations, then each `--service-events` file's events.
pub async fn run(args: &MigrateArgs) -> Result<()> {
    migrate_with(&args.database, &args.service_events).await
}

/// Migrates, then registers the service events of each file (a service's JSON catalog
/// export). Every file is read and checked before the database is touched.
async fn migrate_with(args: &DatabaseArgs, files: &[PathBuf]) -> Result<()> {
    let mut definitions = Vec::new();
    for file in files {
        definitions.extend(read_service_events(file)?);
    }
    let db = super::connect(args).await?;
    outbox_core::migrate(&db.pool)
        .await
        .map_err(|e| db.explain(e))
        .with_context(|| format!("migrating {}", db.shown))?;
    info!(database = %db.shown, "migrations applied and catalog synced");
    if !files.is_empty() {
        let registration = outbox_core::register_definitions(&db.pool, &definitions)
            .await
            .with_context(|| format!("registering service events in {}", db.shown))?;
        info!(
            database = %db.shown,
            added = ?registration.added,
            upgraded = ?registration.upgraded,
            described = ?registration.described,
            unchanged = registration.unchanged.len(),
            "service events registered"
        );
    }
    db.pool.close().await;
    Ok(())
}

fn read_service_events(file: &Path) -> Result<Vec<catalog_types::EventDefinition>> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("reading --service-events {}", file.display()))?;
    Ok(catalog_types::service_definitions(
        &text,
        &file.display().to_string(),
    )?)
}
