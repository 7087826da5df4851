//! The catalog as other systems consume it: SQL export into a real database, the CLI
//! export and schema commands, and a domain service emitting every category.

#![allow(clippy::expect_used, clippy::unwrap_used)] // tests fail loudly by design

use std::collections::HashSet;

use anyhow::Result;
use catalog_types::{Category, registry};
use integration_tests::{TestDb, relay_cli};
use uuid::Uuid;

#[tokio::test]
async fn the_sql_export_loads_into_a_fresh_database_twice() -> Result<()> {
    let db = TestDb::empty().await?;
    let script = catalog_types::export::sql(registry())?;
    for _ in 0..2 {
        sqlx::raw_sql(sqlx::AssertSqlSafe(script.clone()))
            .execute(&db.pool)
            .await?;
    }
    let (rows, with_schema, refs): (i64, i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE payload_schema IS NOT NULL AND payload_schema ? 'properties'),
                count(DISTINCT payload_schema_ref)
           FROM system_event_catalog",
    )
    .fetch_one(&db.pool)
    .await?;
    assert_eq!((rows, with_schema, refs), (134, 134, 134));
    let quoted: String = sqlx::query_scalar("SELECT description FROM system_event_catalog WHERE event_type = 'TICKET_RESPONSE_STATE_CHANGED'")
        .fetch_one(&db.pool)
        .await?;
    assert!(!quoted.is_empty());
    db.cleanup().await
}

#[tokio::test]
async fn the_catalog_commands_list_export_and_show_schemas() -> Result<()> {
    let db = TestDb::empty().await?;
    let (code, stdout, _) = relay_cli(&db, &["catalog", "export", "--format", "json"]).await?;
    assert_eq!(code, 0);
    let entries: Vec<serde_json::Value> = serde_json::from_str(&stdout)?;
    assert_eq!(entries.len(), 134);
    assert!(
        entries
            .iter()
            .all(|e| e["payloadSchema"]["properties"].is_object())
    );

    let (code, stdout, _) = relay_cli(&db, &["catalog", "list"]).await?;
    assert_eq!(code, 0);
    assert!(stdout.contains("TICKET_STATUS_CHANGED") && stdout.contains("134 events"));

    for name in ["TICKET_STATUS_CHANGED", "payload.TicketStatusChanged.v1"] {
        let (code, stdout, _) = relay_cli(&db, &["catalog", "schema", name]).await?;
        assert_eq!(code, 0);
        let schema: serde_json::Value = serde_json::from_str(&stdout)?;
        assert!(
            schema["required"]
                .as_array()
                .unwrap()
                .contains(&serde_json::json!("previousStatusId"))
        );
    }
    let (code, _, stderr) = relay_cli(&db, &["catalog", "schema", "NOPE"]).await?;
    assert_ne!(code, 0);
    assert!(stderr.contains("NOPE"));

    let (code, stdout, _) = relay_cli(&db, &["catalog", "export", "--format", "sql"]).await?;
    assert_eq!(code, 0);
    assert!(stdout.contains("ON CONFLICT (event_type) DO UPDATE"));
    db.cleanup().await
}

#[tokio::test]
async fn a_domain_service_emits_an_event_of_every_category() -> Result<()> {
    let db = TestDb::new().await?;
    let tenant = Uuid::now_v7();
    let mut tx = db.pool.begin().await?;
    outbox_examples::create_business_tables(&mut tx).await?;
    outbox_examples::open_ticket(&mut tx, tenant, "example").await?;
    let events = outbox_examples::one_of_every_category(tenant)?;
    outbox_core::emit_batch(&mut tx, &events).await?;
    tx.commit().await?;

    let stored: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT category FROM outbox_events WHERE tenant_id = $1")
            .bind(tenant)
            .fetch_all(&db.pool)
            .await?;
    let stored: HashSet<String> = stored.into_iter().collect();
    let all: HashSet<String> = Category::ALL.iter().map(|c| c.name().to_owned()).collect();
    assert_eq!(stored, all);
    db.cleanup().await
}
