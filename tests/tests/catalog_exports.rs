//! The catalog exports for the rest of the platform: the TypeScript declarations compile
//! under `tsc --strict` and type every example payload, and the platform-shaped SQL upserts
//! into a real PostgreSQL table with stable ids.

#![allow(clippy::expect_used, clippy::unwrap_used)] // tests fail loudly by design

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use catalog_types::{export, registry};
use integration_tests::{TestDb, unique_suffix};
use uuid::Uuid;

/// Scratch space under the cargo target directory.
fn scratch() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
}

fn runs(program: &Path, arg: &str) -> bool {
    Command::new(program)
        .arg(arg)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The TypeScript compiler: `tsc` from the PATH, else one installed with npm under the
/// target directory (once). `None` only when Node is not installed.
fn typescript_compiler() -> Result<Option<PathBuf>> {
    if runs(Path::new("tsc"), "--version") {
        return Ok(Some(PathBuf::from("tsc")));
    }
    if !runs(Path::new("node"), "--version") {
        return Ok(None);
    }
    let home = scratch().join("typescript-5");
    let tsc = home.join("node_modules/.bin/tsc");
    if runs(&tsc, "--version") {
        return Ok(Some(tsc));
    }
    // Install beside, then move into place: a run that is interrupted leaves no half install.
    let staging = scratch().join(format!("typescript-staging-{}", unique_suffix()));
    std::fs::create_dir_all(&staging)?;
    let output = Command::new("npm")
        .args([
            "install",
            "--no-audit",
            "--no-fund",
            "--no-save",
            "--prefix",
        ])
        .arg(&staging)
        .arg("typescript@5")
        .output()
        .context("running npm (Node is installed, so npm should be)")?;
    if !output.status.success() {
        bail!(
            "npm install typescript@5 failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    if std::fs::rename(&staging, &home).is_err() {
        // Another run installed it first.
        let _ = std::fs::remove_dir_all(&staging);
    }
    if !runs(&tsc, "--version") {
        bail!("{} does not run after installing typescript", tsc.display());
    }
    Ok(Some(tsc))
}

/// A program that uses the declarations the way a consumer would. Every `@ts-expect-error`
/// line must be an error, or `tsc` fails: the types refuse what the schemas refuse.
fn usage_program() -> Result<String> {
    let mut program = String::from(
        "import type { CatalogEvent, CatalogEventType, CatalogPayloads, CatalogSchemaRefs, OutboxMessage,\n\
         \x20 TicketMessageVisibility, TicketCreated, InboundEmailReceived } from \"./catalog\";\n\n\
         // Every example payload of the catalog is a value of its event's type (object literals:\n\
         // a field the type does not know is an error too).\n\
         export const examples: { [K in CatalogEventType]: CatalogPayloads[K] } = {\n",
    );
    for entry in registry().entries() {
        program.push_str(&format!(
            "  {}: {},\n",
            entry.event_type,
            serde_json::to_string(&entry.example())?
        ));
    }
    program.push_str(
        r#"};

// Narrowing on eventType gives the payload type.
export function ticketOf(event: CatalogEvent): string | undefined {
  switch (event.eventType) {
    case "TICKET_CREATED":
      return event.payload.ticketId;
    case "INBOUND_EMAIL_RECEIVED":
      return event.payload.emailData.from.email;
    default:
      return undefined;
  }
}

export function describe(message: OutboxMessage): string {
  const ref: CatalogSchemaRefs["TICKET_CREATED"] = "payload.TicketCreated.v1";
  return `${message.id} ${message.occurredAt} ${message.tenantId ?? "no tenant"} ${ref}`;
}

// Optional fields may be omitted, and nullable ones may be null.
export const minimal: TicketCreated = { tenantId: "t", ticketId: "x", createdAt: null };
export const email: InboundEmailReceived = {
  tenantId: "t", providerId: "p",
  emailData: { id: "m", from: { email: "a@example.com" }, to: [], subject: "s", body: {} },
};

// @ts-expect-error a required field is missing
export const missing: TicketCreated = { tenantId: "t" };
// @ts-expect-error a field the schema does not have
export const extra: TicketCreated = { tenantId: "t", ticketId: "x", colour: "red" };
// @ts-expect-error not a value of the enumeration
export const visibility: TicketMessageVisibility = "secret";
// @ts-expect-error a number where the schema wants a uuid string
export const wrongType: TicketCreated = { tenantId: 1, ticketId: "x" };
// @ts-expect-error the payload of another event
export const mismatched: CatalogEvent = { eventType: "TICKET_CREATED", schemaRef: "payload.TicketCreated.v1", payload: examples.INVOICE_GENERATED };
// @ts-expect-error a required field may not be null
export const nullRequired: TicketCreated = { tenantId: null, ticketId: "x" };
// @ts-expect-error an event type the catalog does not have
export const unknownType: CatalogEventType = "TICKET_EXPLODED";
"#,
    );
    Ok(program)
}

#[test]
fn the_typescript_export_compiles_under_strict_and_types_every_example() -> Result<()> {
    let Some(tsc) = typescript_compiler()? else {
        println!(
            "SKIPPED: Node is not installed, so the TypeScript export cannot be compiled here \
             (install Node to run this test)"
        );
        return Ok(());
    };
    let dir = scratch().join(format!("catalog-ts-{}", unique_suffix()));
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("catalog.ts"), export::typescript(registry())?)?;
    std::fs::write(dir.join("usage.ts"), usage_program()?)?;
    let output = Command::new(&tsc)
        .current_dir(&dir)
        .args([
            "--strict",
            "--noEmit",
            "--exactOptionalPropertyTypes",
            "--noUncheckedIndexedAccess",
            "--target",
            "es2020",
            "--module",
            "commonjs",
            "catalog.ts",
            "usage.ts",
        ])
        .output()
        .with_context(|| format!("running {}", tsc.display()))?;
    let report = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "tsc --strict refused the declarations (files in {}):\n{report}",
        dir.display()
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

/// Runs `test` on a fresh empty database and drops it afterwards, also when `test` fails.
async fn with_empty_db(test: impl AsyncFnOnce(&TestDb) -> Result<()>) -> Result<()> {
    use futures_util::FutureExt;
    let db = TestDb::empty().await?;
    let outcome = std::panic::AssertUnwindSafe(test(&db)).catch_unwind().await;
    db.cleanup().await?;
    match outcome {
        Ok(result) => result,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

type Row = (
    String,
    Uuid,
    String,
    chrono::DateTime<chrono::Utc>,
    chrono::DateTime<chrono::Utc>,
);

async fn rows(db: &TestDb) -> Result<Vec<Row>> {
    Ok(sqlx::query_as(
        "SELECT event_type, event_id, description, created_at, updated_at
           FROM system_event_catalog ORDER BY event_type",
    )
    .fetch_all(&db.pool)
    .await?)
}

async fn run_script(db: &TestDb, script: &str) -> Result<()> {
    sqlx::raw_sql(sqlx::AssertSqlSafe(script.to_owned()))
        .execute(&db.pool)
        .await?;
    Ok(())
}

#[tokio::test]
async fn the_platform_sql_upserts_into_the_platform_table_with_stable_ids() -> Result<()> {
    with_empty_db(async |db| {
        // The platform's table as it exists there, with one row it already had (an id it
        // chose itself, an old description, created long ago).
        sqlx::raw_sql(
            "CREATE TABLE system_event_catalog (
                 event_id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
                 event_type text NOT NULL UNIQUE,
                 name text NOT NULL,
                 description text,
                 category text,
                 payload_schema jsonb,
                 payload_schema_ref text,
                 created_at timestamptz NOT NULL DEFAULT now(),
                 updated_at timestamptz NOT NULL DEFAULT now());
             INSERT INTO system_event_catalog (event_id, event_type, name, description, created_at, updated_at)
             VALUES ('00000000-0000-4000-8000-000000000001', 'TICKET_CREATED', 'Ticket Created', 'old text',
                     '2024-01-01T00:00:00Z', '2024-01-01T00:00:00Z');",
        )
        .execute(&db.pool)
        .await?;
        let script = export::platform_sql(registry())?;

        run_script(db, &script).await?;
        let first = rows(db).await?;
        assert_eq!(first.len(), 134);
        for (event_type, event_id, description, created_at, updated_at) in &first {
            if event_type == "TICKET_CREATED" {
                // The existing row is updated in place: its id and created_at stay.
                assert_eq!(event_id.to_string(), "00000000-0000-4000-8000-000000000001");
                assert_eq!(created_at.to_rfc3339(), "2024-01-01T00:00:00+00:00");
                assert!(updated_at > created_at, "updated_at is bumped");
                assert_eq!(
                    Some(description.as_str()),
                    registry().by_event_type(event_type).map(|e| e.description)
                );
            } else {
                assert_eq!(*event_id, export::platform_event_id(event_type), "{event_type}");
            }
        }

        // Again: nothing duplicated, nothing rewritten.
        run_script(db, &script).await?;
        let second = rows(db).await?;
        assert_eq!(second, first, "a second run changes no row");

        // A definition that changed since: updated, id and created_at kept, updated_at bumped.
        sqlx::query(
            "UPDATE system_event_catalog SET description = 'stale', updated_at = '2025-01-01T00:00:00Z'
              WHERE event_type = 'TICKET_CLOSED'",
        )
        .execute(&db.pool)
        .await?;
        run_script(db, &script).await?;
        let third = rows(db).await?;
        assert_eq!(third.len(), 134);
        let before = first.iter().find(|r| r.0 == "TICKET_CLOSED").unwrap();
        let after = third.iter().find(|r| r.0 == "TICKET_CLOSED").unwrap();
        assert_eq!((after.1, after.3), (before.1, before.3), "id and created_at kept");
        assert_ne!(after.2, "stale");
        assert!(after.4.to_rfc3339().as_str() > "2025-01-01T00:00:00+00:00");
        let (schemas, refs): (i64, i64) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE payload_schema ? 'properties'), count(DISTINCT payload_schema_ref)
               FROM system_event_catalog",
        )
        .fetch_one(&db.pool)
        .await?;
        assert_eq!((schemas, refs), (134, 134));
        Ok(())
    })
    .await
}

#[tokio::test]
async fn the_platform_sql_creates_the_table_when_absent() -> Result<()> {
    with_empty_db(async |db| {
        let script = export::platform_sql(registry())?;
        run_script(db, &script).await?;
        run_script(db, &script).await?;
        let ids: Vec<(String, Uuid)> =
            sqlx::query_as("SELECT event_type, event_id FROM system_event_catalog")
                .fetch_all(&db.pool)
                .await?;
        assert_eq!(ids.len(), 134);
        assert!(
            ids.iter()
                .all(|(event_type, id)| *id == export::platform_event_id(event_type))
        );
        Ok(())
    })
    .await
}

#[tokio::test]
async fn the_platform_sql_refuses_a_table_of_the_outbox_shape() -> Result<()> {
    with_empty_db(async |db| {
        run_script(db, &export::sql(registry())?).await?;
        let error = run_script(db, &export::platform_sql(registry())?)
            .await
            .err()
            .map(|e| format!("{e:#}"))
            .unwrap_or_default();
        assert!(
            error.contains("system_event_catalog is not of the platform shape: no column event_id, created_at, updated_at"),
            "{error}"
        );
        Ok(())
    })
    .await
}

/// Runs `outbox-relay <args>` and returns (exit code, stdout, stderr).
fn relay(args: &[&str]) -> Result<(i32, String, String)> {
    integration_tests::relay_offline(args)
}

#[test]
fn the_cli_exports_typescript_and_platform_sql() -> Result<()> {
    let (code, stdout, stderr) = relay(&["catalog", "export", "--format", "typescript"])?;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, export::typescript(registry())?);

    let (code, stdout, stderr) = relay(&[
        "catalog",
        "export",
        "--format",
        "sql",
        "--table-shape",
        "platform",
    ])?;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, export::platform_sql(registry())?);

    // The default shape stays the outbox's own table.
    let (code, stdout, _) = relay(&["catalog", "export", "--format", "sql"])?;
    assert_eq!(code, 0);
    assert_eq!(stdout, export::sql(registry())?);

    let (code, _, stderr) = relay(&[
        "catalog",
        "export",
        "--format",
        "json",
        "--table-shape",
        "platform",
    ])?;
    assert_ne!(code, 0);
    assert!(stderr.contains("--table-shape"), "{stderr}");
    Ok(())
}
