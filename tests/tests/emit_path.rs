//! The cheaper write path of the wake-up-mode migration: plain-SQL rows get time-ordered
//! ids, and a single `emit` (one plain `INSERT`) stores exactly what `emit_batch` stores.

#![allow(clippy::expect_used, clippy::unwrap_used)] // tests fail loudly by design

use anyhow::Result;
use catalog_types::{CatalogEvent, TicketUpdated};
use integration_tests::TestDb;
use outbox_core::{EmitOptions, NewEvent};
use uuid::Uuid;

/// The columns compared.
#[derive(Debug, Clone, PartialEq)]
struct Row {
    id: Uuid,
    event_type: String,
    schema_ref: String,
    category: String,
    ordering_key: Option<String>,
    payload: serde_json::Value,
    headers: serde_json::Value,
    dedupe_key: String,
    tenant_id: Option<Uuid>,
}

impl sqlx::FromRow<'_, sqlx::postgres::PgRow> for Row {
    fn from_row(row: &sqlx::postgres::PgRow) -> Result<Self, sqlx::Error> {
        use sqlx::Row as _;
        Ok(Self {
            id: row.try_get("id")?,
            event_type: row.try_get("event_type")?,
            schema_ref: row.try_get("schema_ref")?,
            category: row.try_get("category")?,
            ordering_key: row.try_get("ordering_key")?,
            payload: row.try_get("payload")?,
            headers: row.try_get("headers")?,
            dedupe_key: row.try_get("dedupe_key")?,
            tenant_id: row.try_get("tenant_id")?,
        })
    }
}

fn event(ticket: Uuid) -> TicketUpdated {
    TicketUpdated {
        tenant_id: Uuid::now_v7(),
        ticket_id: ticket,
        ..TicketUpdated::example()
    }
}

#[tokio::test]
async fn plain_sql_rows_get_uuidv7_ids_in_time_order() -> Result<()> {
    let db = TestDb::new().await?;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let e = event(Uuid::now_v7());
        let id: Uuid = sqlx::query_scalar(
            "INSERT INTO outbox_events (event_type, tenant_id, ordering_key, payload)
             VALUES ('TICKET_UPDATED', $1, $2, $3) RETURNING id",
        )
        .bind(e.tenant_id)
        .bind(e.ordering_key())
        .bind(serde_json::to_value(&e)?)
        .fetch_one(&db.pool)
        .await?;
        ids.push(id);
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    }
    for id in &ids {
        assert_eq!(id.get_version_num(), 7, "{id}");
        assert_eq!(id.get_variant(), uuid::Variant::RFC4122, "{id}");
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    // Within a few seconds of the database clock.
    let (seconds, _) = ids[0]
        .get_timestamp()
        .expect("a v7 id has a timestamp")
        .to_unix();
    let now: f64 = sqlx::query_scalar("SELECT extract(epoch FROM now())::float8")
        .fetch_one(&db.pool)
        .await?;
    assert!((now - seconds as f64).abs() < 60.0, "{seconds} vs {now}");
    db.cleanup().await
}

#[tokio::test]
async fn one_emit_stores_what_a_batch_stores() -> Result<()> {
    let db = TestDb::new().await?;
    let ticket = Uuid::now_v7();
    let single = event(ticket);
    let batched = TicketUpdated {
        tenant_id: single.tenant_id,
        ..single.clone()
    };
    let mut tx = db.pool.begin().await?;
    let single_id = outbox_core::emit_with(
        &mut tx,
        &single,
        EmitOptions::new().header("x-origin", "test"),
    )
    .await?;
    let batch_event =
        NewEvent::new(&batched)?.with_options(EmitOptions::new().header("x-origin", "test"));
    let batch_id = outbox_core::emit_batch(&mut tx, &[batch_event]).await?[0];
    tx.commit().await?;

    // Every column but the id, the dedupe key (the id), the clocks and seq is the same.
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT id, event_type, schema_ref, category, ordering_key, payload, headers,
                dedupe_key, tenant_id
           FROM outbox_events ORDER BY seq",
    )
    .fetch_all(&db.pool)
    .await?;
    assert_eq!(rows.len(), 2);
    assert_eq!((rows[0].id, rows[1].id), (single_id, batch_id));
    assert_eq!(rows[0].dedupe_key, single_id.to_string());
    assert_eq!(rows[1].dedupe_key, batch_id.to_string());
    let same = |r: &Row| Row {
        id: Uuid::nil(),
        dedupe_key: String::new(),
        ..r.clone()
    };
    assert_eq!(same(&rows[0]), same(&rows[1]));
    // (In seq order the single emit comes first: one key, one partition, drawn in order.)

    // Emitting again with a dedupe key still returns the stored id.
    let mut tx = db.pool.begin().await?;
    let first =
        outbox_core::emit_with(&mut tx, &single, EmitOptions::new().dedupe_key("once")).await?;
    let again =
        outbox_core::emit_with(&mut tx, &single, EmitOptions::new().dedupe_key("once")).await?;
    tx.commit().await?;
    assert_eq!(first, again);
    assert_eq!(db.count_events().await?, 3);
    db.cleanup().await
}
