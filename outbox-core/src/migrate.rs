//! The embedded schema migrations and the catalog rows the database resolves events from.

use std::sync::LazyLock;

use catalog_types::registry;

use crate::DatabaseError;
use crate::driver::{SqlxPool, Statement};

/// The SQL migrations of `migrations/`, embedded at build time, as sqlx's migrator runs
/// them (history in `_sqlx_migrations`, an advisory lock against concurrent runs).
#[cfg(feature = "sqlx-0_9")]
pub static MIGRATOR: LazyLock<sqlx::migrate::Migrator> = LazyLock::new(|| {
    use sqlx::migrate::{Migration, MigrationType, Migrator};
    use sqlx::{AssertSqlSafe, SqlSafeStr};
    Migrator::with_migrations(
        MIGRATIONS
            .iter()
            .map(|&(version, description, sql)| {
                Migration::new(
                    version,
                    description.into(),
                    MigrationType::Simple,
                    AssertSqlSafe(sql).into_sql_str(),
                    no_transaction(sql),
                )
            })
            .collect(),
    )
});

/// The same migrations for sqlx 0.8's migrator. Both versions keep the history in the same
/// table, with the same checksums (SHA-384 of the text) and the same advisory lock, so a
/// database migrated through one is current for the other, and concurrent runs of the two
/// wait for each other (a test holds the two lists equal).
#[cfg(feature = "sqlx-0_8")]
pub(crate) static MIGRATOR_0_8: LazyLock<sqlx_0_8::migrate::Migrator> = LazyLock::new(|| {
    use sqlx_0_8::migrate::{Migration, MigrationType, Migrator};
    Migrator {
        migrations: MIGRATIONS
            .iter()
            .map(|&(version, description, sql)| {
                Migration::new(
                    version,
                    description.into(),
                    MigrationType::Simple,
                    sql.into(),
                    no_transaction(sql),
                )
            })
            .collect(),
        ..Migrator::DEFAULT
    }
});

/// Whether a migration runs outside a transaction, as sqlx's resolver reads it.
fn no_transaction(sql: &str) -> bool {
    sql.starts_with("-- no-transaction")
}

/// Every file of `migrations/`: its version and description (from its name, as
/// `sqlx migrate` reads them) and its text. (`outbox-core/migrations` is a symbolic link to
/// the repository's `migrations/`, so that the files ship in the crate's package.) Listed here rather than embedded by
/// `sqlx::migrate!`, whose macro compiles the whole PostgreSQL driver a second time for the
/// compiler (about a minute of CPU on a clean build); a test holds this list to the
/// directory, checksums included, so the two cannot drift.
const MIGRATIONS: [(i64, &str, &str); 16] = [
    (
        20260101000001,
        "outbox events",
        include_str!("../migrations/20260101000001_outbox_events.sql"),
    ),
    (
        20260101000002,
        "replay audit",
        include_str!("../migrations/20260101000002_replay_audit.sql"),
    ),
    (
        20260301000001,
        "delivery engine",
        include_str!("../migrations/20260301000001_delivery_engine.sql"),
    ),
    (
        20260401000001,
        "wakeup mode",
        include_str!("../migrations/20260401000001_wakeup_mode.sql"),
    ),
    (
        20260401000002,
        "wakeup mode switch",
        include_str!("../migrations/20260401000002_wakeup_mode_switch.sql"),
    ),
    (
        20260501000001,
        "audit session user",
        include_str!("../migrations/20260501000001_audit_session_user.sql"),
    ),
    (
        20261206000001,
        "producer proof rows and tenant scopes",
        include_str!("../migrations/20261206000001_producer_proof_rows_and_tenant_scopes.sql"),
    ),
    (
        20261206000002,
        "relay owners",
        include_str!("../migrations/20261206000002_relay_owners.sql"),
    ),
    (
        20261206000003,
        "discard times",
        include_str!("../migrations/20261206000003_discard_times.sql"),
    ),
    (
        20261206000004,
        "leases off the event row",
        include_str!("../migrations/20261206000004_leases_off_the_event_row.sql"),
    ),
    (
        20261206000005,
        "audit dry runs",
        include_str!("../migrations/20261206000005_audit_dry_runs.sql"),
    ),
    (
        20261206000006,
        "relay owned attempts",
        include_str!("../migrations/20261206000006_relay_owned_attempts.sql"),
    ),
    (
        20261206000007,
        "partitioned seq",
        include_str!("../migrations/20261206000007_partitioned_seq.sql"),
    ),
    (
        20261206000008,
        "partitioned feed",
        include_str!("../migrations/20261206000008_partitioned_feed.sql"),
    ),
    (
        20261207000001,
        "producer rows only",
        include_str!("../migrations/20261207000001_producer_rows_only.sql"),
    ),
    (
        20261207000002,
        "gap groups",
        include_str!("../migrations/20261207000002_gap_groups.sql"),
    ),
];

/// Why the schema could not be brought up to date.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// A migration failed or the applied history differs from the embedded one (the
    /// driver's error is a `MigrateError` of the pool's sqlx version).
    #[error("migration failed: {0}")]
    Migrate(DatabaseError),
    /// The catalog rows could not be written.
    #[error("catalog sync failed: {0}")]
    Database(DatabaseError),
}

/// Applies the pending migrations and upserts the catalog into `system_event_catalog`.
///
/// `pool` is a `PgPool` of sqlx 0.9 or 0.8 (see [`SqlxPool`]); both versions' migrators
/// read and write the same history. Safe to run concurrently from several processes (the
/// migrator holds an advisory lock) and idempotent: a second run changes nothing.
pub async fn migrate(pool: &impl SqlxPool) -> Result<(), MigrateError> {
    crate::driver::sealed::Pool::run_migrations(pool)
        .await
        .map_err(MigrateError::Migrate)?;
    sync_catalog(pool).await.map_err(MigrateError::Database)?;
    Ok(())
}

/// Upserts catalog rows (`$1`..`$6`: event types, names, descriptions, categories, payload
/// schemas, schema refs), rewriting a row only when something differs: the catalog's sync
/// and a service's registration of its own events.
pub(crate) const UPSERT_CATALOG_SQL: &str = "INSERT INTO system_event_catalog
             (event_type, name, description, category, payload_schema, payload_schema_ref)
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::jsonb[], $6::text[])
         ON CONFLICT (event_type) DO UPDATE
            SET name = EXCLUDED.name,
                description = EXCLUDED.description,
                category = EXCLUDED.category,
                payload_schema = EXCLUDED.payload_schema,
                payload_schema_ref = EXCLUDED.payload_schema_ref
          WHERE (system_event_catalog.name, system_event_catalog.description,
                 system_event_catalog.category, system_event_catalog.payload_schema,
                 system_event_catalog.payload_schema_ref)
                IS DISTINCT FROM
                (EXCLUDED.name, EXCLUDED.description, EXCLUDED.category,
                 EXCLUDED.payload_schema, EXCLUDED.payload_schema_ref)";

/// Upserts every catalog entry into `system_event_catalog`, in one statement.
pub async fn sync_catalog(pool: &impl SqlxPool) -> Result<u64, DatabaseError> {
    let entries = registry().entries();
    let event_types: Vec<&str> = entries.iter().map(|e| e.event_type).collect();
    let names: Vec<&str> = entries.iter().map(|e| e.name).collect();
    let descriptions: Vec<&str> = entries.iter().map(|e| e.description).collect();
    let categories: Vec<&str> = entries.iter().map(|e| e.category.name()).collect();
    let schemas: Vec<&serde_json::Value> = entries.iter().map(|e| &e.schema).collect();
    let refs: Vec<&str> = entries.iter().map(|e| e.schema_ref).collect();
    Statement::new(UPSERT_CATALOG_SQL)
        .bind(&event_types)
        .bind(&names)
        .bind(&descriptions)
        .bind(&categories)
        .bind(&schemas)
        .bind(&refs)
        .execute_on_pool(pool)
        .await
}

#[cfg(test)]
mod tests {
    /// The embedded list is the directory, as sqlx's own resolver reads it: same versions,
    /// descriptions, checksums and transaction mode, so databases migrated by an earlier
    /// build (through `sqlx::migrate!`) see no change. A new file fails this until listed.
    #[cfg(feature = "sqlx-0_9")]
    #[tokio::test]
    async fn the_embedded_migrations_are_the_directorys() {
        use sqlx::migrate::{Migration, MigrationType, Migrator};
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
        let on_disk = Migrator::new(dir.as_path()).await.unwrap();
        let describe = |m: &Migration| {
            (
                m.version,
                m.description.to_string(),
                m.checksum.to_vec(),
                m.no_tx,
                m.migration_type,
            )
        };
        let expected: Vec<_> = on_disk.iter().map(describe).collect();
        let embedded: Vec<_> = super::MIGRATOR.iter().map(describe).collect();
        let names = |list: &[(i64, String, Vec<u8>, bool, MigrationType)]| {
            list.iter()
                .map(|(version, description, ..)| format!("{version} {description}"))
                .collect::<Vec<_>>()
        };
        assert!(
            embedded == expected,
            "`MIGRATIONS` in outbox-core/src/migrate.rs is not the `migrations/` directory: \
             list every file there, in version order, with its version, its description (the \
             name after the version, `_` read as a space) and `include_str!` of its path, and \
             bump the array's length.\n  directory: {:?}\n  listed:    {:?}\n(a file listed \
             under the same name differs in text or transaction mode when the two agree)",
            names(&expected),
            names(&embedded),
        );
    }

    /// sqlx 0.8's migrator runs the very migrations 0.9's does, with the same checksums and
    /// transaction modes: a database migrated through one version is current for the other
    /// (`tests/tests/sqlx_versions.rs` shows it on a real database).
    #[cfg(all(feature = "sqlx-0_8", feature = "sqlx-0_9"))]
    #[test]
    fn both_sqlx_versions_embed_the_same_migrations() {
        use super::{MIGRATIONS, MIGRATOR, MIGRATOR_0_8};
        let of_0_9: Vec<_> = MIGRATOR
            .iter()
            .map(|m| {
                let kind = format!("{:?}", m.migration_type);
                (
                    m.version,
                    m.description.to_string(),
                    m.checksum.to_vec(),
                    m.no_tx,
                    kind,
                )
            })
            .collect();
        let of_0_8: Vec<_> = MIGRATOR_0_8
            .iter()
            .map(|m| {
                let kind = format!("{:?}", m.migration_type);
                (
                    m.version,
                    m.description.to_string(),
                    m.checksum.to_vec(),
                    m.no_tx,
                    kind,
                )
            })
            .collect();
        assert_eq!(of_0_8.len(), MIGRATIONS.len());
        assert!(of_0_8 == of_0_9, "sqlx 0.8's and 0.9's migrations differ");
    }

    /// The catalog table has one definition: the SQL export's statement is the migration's.
    #[test]
    fn the_first_migration_creates_the_catalog_table_as_the_sql_export_does() {
        let first = include_str!("../migrations/20260101000001_outbox_events.sql");
        assert!(
            first.contains(catalog_types::export::CATALOG_TABLE_DDL),
            "migrations/20260101000001_outbox_events.sql and catalog_types::export::CATALOG_TABLE_DDL differ"
        );
    }
}
