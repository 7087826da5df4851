//! A single emit without a dedupe key takes a one-row `INSERT`; it must store exactly what
//! `emit_batch` stores, for every option, and refuse the same input with the same errors.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::Duration;

use anyhow::Result;
use catalog_types::{CatalogEvent, TicketUpdated};
use chrono::TimeZone;
use integration_tests::TestDb;
use outbox_core::{EmitOptions, NewEvent};
use uuid::Uuid;

/// Every stored event as text, in the order written (each in its own transaction; `seq`
/// orders a scope's events, not events of different partitions).
async fn rows(db: &TestDb) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT concat_ws(' | ', tenant_id, event_type, schema_ref, category,
                 coalesce(ordering_key, '<none>'), payload::text, headers::text,
                 CASE WHEN dedupe_key = id::text THEN '<id>' ELSE dedupe_key END,
                 CASE WHEN occurred_at = created_at THEN 'now' ELSE occurred_at::text END,
                 CASE WHEN available_at = created_at THEN 'now'
                      WHEN available_at > created_at
                      THEN 'now + ' || (available_at - created_at)::text
                      ELSE available_at::text END)
           FROM outbox_events ORDER BY created_at, id",
    )
    .fetch_all(&db.pool)
    .await?)
}

#[tokio::test]
async fn emit_one_matches_emit_batch_for_every_option() -> Result<()> {
    let single = TestDb::new().await?;
    let batch = TestDb::new().await?;
    let tenant = Uuid::now_v7();
    let ticket = Uuid::now_v7();
    let event = TicketUpdated {
        tenant_id: tenant,
        ticket_id: ticket,
        ..TicketUpdated::example()
    };
    let at = chrono::Utc.with_ymd_and_hms(2020, 1, 2, 3, 4, 5).unwrap();
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let combos: Vec<(&str, EmitOptions)> = vec![
        ("default", EmitOptions::new()),
        (
            "ordering override",
            EmitOptions::new().ordering_key("custom-key"),
        ),
        ("unordered", EmitOptions::new().unordered()),
        ("delay", EmitOptions::new().delay(Duration::from_secs(3600))),
        ("available_at past", EmitOptions::new().available_at(at)),
        ("occurred_at", EmitOptions::new().occurred_at(at)),
        (
            "headers",
            EmitOptions::new().header("x-a", "1").header("x-b", "two"),
        ),
        (
            "trace",
            EmitOptions::new().traceparent(tp).tracestate("k=v"),
        ),
        ("tracestate alone", EmitOptions::new().tracestate("k=v")),
        (
            "all",
            EmitOptions::new()
                .ordering_key("custom-key")
                .delay(Duration::from_secs(60))
                .occurred_at(at)
                .header("x-a", "1")
                .traceparent(tp),
        ),
        ("dedupe", EmitOptions::new().dedupe_key("d-1")),
        ("dedupe again", EmitOptions::new().dedupe_key("d-1")),
        (
            "dedupe+unordered",
            EmitOptions::new().dedupe_key("d-2").unordered(),
        ),
        ("default again", EmitOptions::new()),
    ];
    for (what, options) in &combos {
        // Single path.
        let mut tx = single.pool.begin().await?;
        let id1 = outbox_core::emit_with(&mut tx, &event, options.clone()).await?;
        tx.commit().await?;
        let stored: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM outbox_events WHERE id = $1)")
                .bind(id1)
                .fetch_one(&single.pool)
                .await?;
        assert!(stored, "{what}: returned id not stored");
        // Untyped single path, into the same db as well (checked below against batch twice).
        // Batch path.
        let mut tx = batch.pool.begin().await?;
        let ids = outbox_core::emit_batch(
            &mut tx,
            &[NewEvent::new(&event)?.with_options(options.clone())],
        )
        .await?;
        tx.commit().await?;
        assert_eq!(ids.len(), 1);
        let a = rows(&single).await?;
        let b = rows(&batch).await?;
        assert_eq!(a, b, "after `{what}`");
    }
    // Untyped vs batch-untyped.
    let payload = serde_json::to_value(&event)?;
    for (what, options) in &combos {
        let mut tx = single.pool.begin().await?;
        outbox_core::emit_untyped(
            &mut tx,
            TicketUpdated::EVENT_TYPE,
            payload.clone(),
            options.clone(),
        )
        .await?;
        tx.commit().await?;
        let mut tx = batch.pool.begin().await?;
        outbox_core::emit_batch(
            &mut tx,
            &[
                NewEvent::untyped(TicketUpdated::EVENT_TYPE, payload.clone())?
                    .with_options(options.clone()),
            ],
        )
        .await?;
        tx.commit().await?;
        assert_eq!(
            rows(&single).await?,
            rows(&batch).await?,
            "untyped `{what}`"
        );
    }
    // Errors: an invalid traceparent and an over-long ordering key are refused the same way.
    for options in [
        EmitOptions::new().traceparent("nope"),
        EmitOptions::new().ordering_key("k".repeat(600)),
        EmitOptions::new().header("", "x"),
    ] {
        let mut tx = single.pool.begin().await?;
        let e1 = outbox_core::emit_with(&mut tx, &event, options.clone())
            .await
            .unwrap_err()
            .to_string();
        drop(tx);
        let mut tx = batch.pool.begin().await?;
        let e2 = outbox_core::emit_batch(&mut tx, &[NewEvent::new(&event)?.with_options(options)])
            .await
            .unwrap_err()
            .to_string();
        drop(tx);
        assert_eq!(e1, e2);
    }
    eprintln!("{}", rows(&single).await?.join("\n"));
    single.cleanup().await?;
    batch.cleanup().await
}

/// Two transactions emit the same dedupe key at once: the second waits for the first and
/// returns its id (commit), or stores its own (rollback).
#[tokio::test]
async fn dedupe_race_returns_the_first_id() -> Result<()> {
    let db = TestDb::new().await?;
    for commit_first in [true, false] {
        let key = format!("race-{commit_first}");
        let event = TicketUpdated {
            tenant_id: Uuid::now_v7(),
            ticket_id: Uuid::now_v7(),
            ..TicketUpdated::example()
        };
        let mut a = db.connect().await?;
        let mut tx_a = sqlx::Connection::begin(&mut a).await?;
        let id_a = outbox_core::emit_with(
            &mut tx_a,
            &event,
            EmitOptions::new().dedupe_key(key.clone()),
        )
        .await?;
        let url = db.options.clone();
        let ev = event.clone();
        let k2 = key.clone();
        let b = tokio::spawn(async move {
            let mut b = sqlx::ConnectOptions::connect(&url).await?;
            let mut tx_b = sqlx::Connection::begin(&mut b).await?;
            let id =
                outbox_core::emit_with(&mut tx_b, &ev, EmitOptions::new().dedupe_key(k2)).await?;
            tx_b.commit().await?;
            anyhow::Ok(id)
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(!b.is_finished(), "the second writer must wait on the first");
        if commit_first {
            tx_a.commit().await?;
        } else {
            tx_a.rollback().await?;
        }
        let id_b = b.await??;
        let stored: Vec<Uuid> =
            sqlx::query_scalar("SELECT id FROM outbox_events WHERE dedupe_key = $1")
                .bind(&key)
                .fetch_all(&db.pool)
                .await?;
        assert_eq!(stored.len(), 1);
        if commit_first {
            assert_eq!(id_b, id_a);
        } else {
            assert_ne!(id_b, id_a);
        }
        assert_eq!(stored[0], id_b);
    }
    db.cleanup().await
}
