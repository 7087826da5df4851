//! The producer side against the real Postgres: same-transaction emit, dedupe, batch,
//! NOTIFY, untyped validation, inbox and migrations.

#![allow(clippy::expect_used, clippy::unwrap_used)] // tests fail loudly by design

use std::time::Duration;

use anyhow::Result;
use catalog_types::{CatalogEvent, TicketCreated};
use integration_tests::TestDb;
use outbox_core::{EmitError, EmitOptions, InboxOutcome, NewEvent, inbox};
use serde_json::json;
use sqlx::postgres::PgListener;
use uuid::Uuid;

async fn business_table(db: &TestDb) -> Result<()> {
    sqlx::query("CREATE TABLE tickets (id uuid PRIMARY KEY, title text NOT NULL)")
        .execute(&db.pool)
        .await?;
    Ok(())
}

fn ticket(tenant: Uuid) -> TicketCreated {
    TicketCreated {
        tenant_id: tenant,
        ticket_id: Uuid::now_v7(),
        ..TicketCreated::example()
    }
}

/// Inserts the ticket row and emits its event in the caller's transaction.
async fn write_ticket_and_event(
    conn: &mut sqlx::PgConnection,
    event: &TicketCreated,
) -> Result<Uuid> {
    sqlx::query("INSERT INTO tickets VALUES ($1, 'printer on fire')")
        .bind(event.ticket_id)
        .execute(&mut *conn)
        .await?;
    Ok(outbox_core::emit(conn, event).await?)
}

async fn count_tickets(db: &TestDb) -> Result<i64> {
    Ok(sqlx::query_scalar("SELECT count(*) FROM tickets")
        .fetch_one(&db.pool)
        .await?)
}

#[tokio::test]
async fn commit_stores_the_business_row_and_the_event_together() -> Result<()> {
    let db = TestDb::new().await?;
    business_table(&db).await?;
    let event = ticket(Uuid::now_v7());

    let mut tx = db.pool.begin().await?;
    let id = write_ticket_and_event(&mut tx, &event).await?;
    tx.commit().await?;

    let (event_type, schema_ref, category, key, payload, status, tenant): (
        String,
        String,
        String,
        Option<String>,
        serde_json::Value,
        String,
        Option<Uuid>,
    ) = sqlx::query_as(
        "SELECT e.event_type, e.schema_ref, e.category, e.ordering_key, e.payload, s.status,
                e.tenant_id
           FROM outbox_events e JOIN outbox_event_status s ON s.id = e.id WHERE e.id = $1",
    )
    .bind(id)
    .fetch_one(&db.pool)
    .await?;
    assert_eq!(event_type, "TICKET_CREATED");
    assert_eq!(schema_ref, "payload.TicketCreated.v1");
    assert_eq!(category, "Tickets");
    assert_eq!(key, Some(format!("ticket:{}", event.ticket_id)));
    assert_eq!(payload, serde_json::to_value(&event)?);
    assert_eq!(status, "pending");
    assert_eq!(tenant, Some(event.tenant_id));
    assert_eq!(id.get_version_num(), 7, "library ids are UUIDv7");
    assert_eq!(count_tickets(&db).await?, 1);
    db.cleanup().await
}

#[tokio::test]
async fn rollback_stores_neither() -> Result<()> {
    let db = TestDb::new().await?;
    business_table(&db).await?;
    let event = ticket(Uuid::now_v7());

    let mut tx = db.pool.begin().await?;
    write_ticket_and_event(&mut tx, &event).await?;
    tx.rollback().await?;

    assert_eq!(db.count_events().await?, 0);
    assert_eq!(count_tickets(&db).await?, 0);
    db.cleanup().await
}

#[tokio::test]
async fn the_same_dedupe_key_stores_one_event_per_tenant() -> Result<()> {
    let db = TestDb::new().await?;
    let tenant_a = Uuid::now_v7();
    let tenant_b = Uuid::now_v7();
    let options = || EmitOptions::new().dedupe_key("invoice-42-sent");

    let mut conn = db.pool.acquire().await?;
    let first = outbox_core::emit_with(&mut conn, &ticket(tenant_a), options()).await?;
    let second = outbox_core::emit_with(&mut conn, &ticket(tenant_a), options()).await?;
    assert_eq!(first, second, "a repeated dedupe key returns the stored id");
    let other_tenant = outbox_core::emit_with(&mut conn, &ticket(tenant_b), options()).await?;
    assert_ne!(other_tenant, first);
    assert_eq!(db.count_events().await?, 2);

    // Within one batch too: the duplicate maps to the first row's id.
    let batch = vec![
        NewEvent::new(&ticket(tenant_a))?.with_options(EmitOptions::new().dedupe_key("k2")),
        NewEvent::new(&ticket(tenant_a))?.with_options(EmitOptions::new().dedupe_key("k2")),
        NewEvent::new(&ticket(tenant_a))?.with_options(options()),
    ];
    let ids = outbox_core::emit_batch(&mut conn, &batch).await?;
    assert_eq!(ids[0], ids[1]);
    assert_eq!(ids[2], first);
    assert_eq!(db.count_events().await?, 3);
    drop(conn);
    db.cleanup().await
}

#[tokio::test]
async fn a_dedupe_key_racing_in_two_transactions_stores_one_event() -> Result<()> {
    let db = TestDb::new().await?;
    let tenant = Uuid::now_v7();
    let mut tx1 = db.pool.begin().await?;
    let id1 = outbox_core::emit_with(
        &mut tx1,
        &ticket(tenant),
        EmitOptions::new().dedupe_key("race"),
    )
    .await?;
    let pool = db.pool.clone();
    let racer = tokio::spawn(async move {
        let mut tx2 = pool.begin().await?;
        let id = outbox_core::emit_with(
            &mut tx2,
            &ticket(tenant),
            EmitOptions::new().dedupe_key("race"),
        )
        .await?;
        tx2.commit().await?;
        anyhow::Ok(id)
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    tx1.commit().await?;
    let id2 = racer.await??;
    assert_eq!(id1, id2);
    assert_eq!(db.count_events().await?, 1);
    db.cleanup().await
}

#[tokio::test]
async fn a_batch_of_1000_events_is_one_statement() -> Result<()> {
    let db = TestDb::new().await?;
    let tenant = Uuid::now_v7();
    let events = (0..1000)
        .map(|_| NewEvent::new(&ticket(tenant)))
        .collect::<Result<Vec<_>, _>>()?;

    let mut conn = db.connect().await?;
    let ids = outbox_core::emit_batch(&mut conn, &events).await?;
    assert_eq!(ids.len(), 1000);
    assert_eq!(ids, events.iter().map(NewEvent::id).collect::<Vec<_>>());
    assert_eq!(db.count_events().await?, 1000);
    // The connection is in autocommit mode, so every statement is its own transaction:
    // rows sharing one transaction id were written by one statement.
    let xids: i64 = sqlx::query_scalar("SELECT count(DISTINCT xmin::text) FROM outbox_events")
        .fetch_one(&db.pool)
        .await?;
    assert_eq!(
        xids, 1,
        "all rows come from one implicit transaction, i.e. one statement"
    );
    drop(conn);
    db.cleanup().await
}

#[tokio::test]
async fn listeners_are_notified_on_commit_and_not_on_rollback() -> Result<()> {
    let db = TestDb::new().await?;
    // Wake-up mode `notify` (the default is `poll`: no notifications; see wakeup_mode.rs).
    sqlx::query("SELECT outbox_set_wakeup_mode('notify')")
        .execute(&db.pool)
        .await?;
    let mut listener = PgListener::connect(&db.url()).await?;
    listener.listen("outbox_events").await?;

    // Rollback: nothing arrives.
    let mut tx = db.pool.begin().await?;
    outbox_core::emit(&mut tx, &ticket(Uuid::now_v7())).await?;
    tx.rollback().await?;
    let nothing = tokio::time::timeout(Duration::from_millis(500), listener.recv()).await;
    assert!(nothing.is_err(), "a rolled-back insert must not notify");

    // Commit: a notification arrives.
    let mut tx = db.pool.begin().await?;
    outbox_core::emit(&mut tx, &ticket(Uuid::now_v7())).await?;
    let early = tokio::time::timeout(Duration::from_millis(300), listener.recv()).await;
    assert!(early.is_err(), "no notification before commit");
    tx.commit().await?;
    let note = tokio::time::timeout(Duration::from_secs(5), listener.recv()).await??;
    assert_eq!(note.channel(), "outbox_events");

    // Plain SQL from any language notifies too, and gets its defaults resolved.
    let tenant = Uuid::now_v7();
    let payload = serde_json::to_value(ticket(tenant))?;
    sqlx::query(
        "INSERT INTO outbox_events (event_type, payload, tenant_id, ordering_key)
         VALUES ('TICKET_CREATED', $1, $2, 'ticket:raw')",
    )
    .bind(&payload)
    .bind(tenant)
    .execute(&db.pool)
    .await?;
    let note = tokio::time::timeout(Duration::from_secs(5), listener.recv()).await??;
    assert_eq!(note.channel(), "outbox_events");
    let (id, schema_ref, category, dedupe_key, status): (Uuid, String, String, String, String) =
        sqlx::query_as(
            "SELECT e.id, e.schema_ref, e.category, e.dedupe_key, s.status
           FROM outbox_events e JOIN outbox_event_status s ON s.id = e.id
          WHERE e.ordering_key = 'ticket:raw'",
        )
        .fetch_one(&db.pool)
        .await?;
    assert_eq!(schema_ref, "payload.TicketCreated.v1");
    assert_eq!(category, "Tickets");
    assert_eq!(dedupe_key, id.to_string());
    assert_eq!(status, "pending");
    drop(listener);
    db.cleanup().await
}

#[tokio::test]
async fn a_raw_insert_of_an_unknown_event_type_is_refused_by_name() -> Result<()> {
    let db = TestDb::new().await?;
    let error = sqlx::query(
        "INSERT INTO outbox_events (event_type, payload) VALUES ('NOPE_HAPPENED', '{}')",
    )
    .execute(&db.pool)
    .await
    .expect_err("unknown type accepted");
    assert!(error.to_string().contains("NOPE_HAPPENED"), "{error}");
    db.cleanup().await
}

#[tokio::test]
async fn an_invalid_untyped_payload_is_refused_and_the_transaction_still_commits() -> Result<()> {
    let db = TestDb::new().await?;
    business_table(&db).await?;
    let tenant = Uuid::now_v7();
    let mut tx = db.pool.begin().await?;
    sqlx::query("INSERT INTO tickets VALUES ($1, 'kept')")
        .bind(Uuid::now_v7())
        .execute(&mut *tx)
        .await?;

    let bad = json!({ "tenantId": tenant, "ticketId": "not-a-uuid" });
    let error = outbox_core::emit_untyped(&mut tx, "TICKET_CREATED", bad, EmitOptions::new())
        .await
        .expect_err("invalid payload accepted");
    assert!(matches!(error, EmitError::InvalidPayload(_)), "{error:?}");
    assert!(error.to_string().contains("/ticketId"), "{error}");

    let missing = json!({ "tenantId": tenant });
    let error = outbox_core::emit_untyped(&mut tx, "TICKET_CREATED", missing, EmitOptions::new())
        .await
        .expect_err("missing field accepted");
    assert!(error.to_string().contains("ticketId"), "{error}");

    let unknown =
        outbox_core::emit_untyped(&mut tx, "NOT_AN_EVENT", json!({}), EmitOptions::new()).await;
    assert!(matches!(unknown, Err(EmitError::UnknownEventType(_))));

    let good = json!({ "tenantId": tenant, "ticketId": Uuid::now_v7() });
    let id = outbox_core::emit_untyped(&mut tx, "TICKET_CREATED", good, EmitOptions::new()).await?;
    tx.commit().await?;

    assert_eq!(db.count_events().await?, 1);
    let stored: Uuid = sqlx::query_scalar("SELECT id FROM outbox_events")
        .fetch_one(&db.pool)
        .await?;
    assert_eq!(stored, id);
    assert_eq!(count_tickets(&db).await?, 1);
    db.cleanup().await
}

#[tokio::test]
async fn options_set_the_ordering_key_delay_headers_and_trace_context() -> Result<()> {
    let db = TestDb::new().await?;
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let context = outbox_core::trace::TraceContext::new(traceparent, Some("vendor=x"))?;
    let mut conn = db.pool.acquire().await?;
    let options = EmitOptions::new()
        .ordering_key("custom:1")
        .delay(Duration::from_secs(3600))
        .header("x-source", "billing-service");
    let id = outbox_core::trace::scope(
        context,
        outbox_core::emit_with(&mut conn, &ticket(Uuid::now_v7()), options),
    )
    .await?;
    let (key, headers, delayed): (Option<String>, serde_json::Value, bool) = sqlx::query_as(
        "SELECT ordering_key, headers, available_at > now() + interval '50 minutes' FROM outbox_events WHERE id = $1",
    )
    .bind(id)
    .fetch_one(&mut *conn)
    .await?;
    assert_eq!(key.as_deref(), Some("custom:1"));
    assert!(delayed);
    assert_eq!(
        headers,
        json!({ "x-source": "billing-service", "traceparent": traceparent, "tracestate": "vendor=x" })
    );

    let unordered = outbox_core::emit_with(
        &mut conn,
        &ticket(Uuid::now_v7()),
        EmitOptions::new().unordered(),
    )
    .await?;
    let key: Option<String> =
        sqlx::query_scalar("SELECT ordering_key FROM outbox_events WHERE id = $1")
            .bind(unordered)
            .fetch_one(&mut *conn)
            .await?;
    assert_eq!(key, None);

    let bad = outbox_core::emit_with(
        &mut conn,
        &ticket(Uuid::now_v7()),
        EmitOptions::new().traceparent("nope"),
    )
    .await;
    assert!(matches!(bad, Err(EmitError::InvalidOption(_))));
    drop(conn);
    db.cleanup().await
}

#[tokio::test]
async fn the_inbox_processes_a_message_once() -> Result<()> {
    let db = TestDb::new().await?;
    let message_id = Uuid::now_v7().to_string();
    let mut tx = db.pool.begin().await?;
    assert_eq!(
        inbox::record(&mut tx, "billing", &message_id).await?,
        InboxOutcome::Process
    );
    assert_eq!(
        inbox::record(&mut tx, "billing", &message_id).await?,
        InboxOutcome::AlreadyProcessed
    );
    assert_eq!(
        inbox::record(&mut tx, "crm", &message_id).await?,
        InboxOutcome::Process,
        "consumers are independent"
    );
    tx.commit().await?;
    let mut tx = db.pool.begin().await?;
    assert_eq!(
        inbox::record(&mut tx, "billing", &message_id).await?,
        InboxOutcome::AlreadyProcessed
    );
    tx.rollback().await?;

    // A rolled-back record does not count.
    let other = Uuid::now_v7().to_string();
    let mut tx = db.pool.begin().await?;
    assert_eq!(
        inbox::record(&mut tx, "billing", &other).await?,
        InboxOutcome::Process
    );
    tx.rollback().await?;
    let mut tx = db.pool.begin().await?;
    assert_eq!(
        inbox::record(&mut tx, "billing", &other).await?,
        InboxOutcome::Process
    );
    tx.commit().await?;
    db.cleanup().await
}

#[tokio::test]
async fn concurrent_deliveries_of_one_message_are_processed_once() -> Result<()> {
    let db = TestDb::new().await?;
    sqlx::query("CREATE TABLE effects (n int)")
        .execute(&db.pool)
        .await?;
    let message_id = Uuid::now_v7().to_string();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let pool = db.pool.clone();
        let message_id = message_id.clone();
        tasks.push(tokio::spawn(async move {
            let mut tx = pool.begin().await?;
            let outcome = inbox::record(&mut tx, "ledger", &message_id).await?;
            if outcome == InboxOutcome::Process {
                sqlx::query("INSERT INTO effects VALUES (1)")
                    .execute(&mut *tx)
                    .await?;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            tx.commit().await?;
            anyhow::Ok(outcome)
        }));
    }
    let mut processed = 0;
    for task in tasks {
        if task.await?? == InboxOutcome::Process {
            processed += 1;
        }
    }
    assert_eq!(processed, 1);
    let effects: i64 = sqlx::query_scalar("SELECT count(*) FROM effects")
        .fetch_one(&db.pool)
        .await?;
    assert_eq!(effects, 1);
    db.cleanup().await
}

#[tokio::test]
async fn migrating_twice_is_a_no_op() -> Result<()> {
    let db = TestDb::empty().await?;
    outbox_core::migrate(&db.pool).await?;
    let snapshot = || async {
        let migrations: Vec<(i64, Vec<u8>)> =
            sqlx::query_as("SELECT version, checksum FROM _sqlx_migrations ORDER BY version")
                .fetch_all(&db.pool)
                .await?;
        let catalog: Vec<(String, String)> = sqlx::query_as(
            "SELECT event_type, payload_schema::text FROM system_event_catalog ORDER BY 1",
        )
        .fetch_all(&db.pool)
        .await?;
        anyhow::Ok((migrations, catalog))
    };
    let first = snapshot().await?;
    outbox_core::migrate(&db.pool).await?;
    assert_eq!(
        outbox_core::sync_catalog(&db.pool).await?,
        0,
        "second catalog sync writes nothing"
    );
    assert_eq!(snapshot().await?, first);
    assert!(!first.0.is_empty());
    assert_eq!(first.1.len(), catalog_types::registry().len());
    db.cleanup().await
}

#[tokio::test]
async fn oversized_keys_and_header_names_are_refused_before_any_sql() -> Result<()> {
    let db = TestDb::new().await?;
    business_table(&db).await?;
    let mut tx = db.pool.begin().await?;
    let long_key = "k".repeat(outbox_core::MAX_KEY_BYTES + 1);
    let refused = [
        outbox_core::emit_with(
            &mut tx,
            &ticket(Uuid::now_v7()),
            EmitOptions::default().ordering_key(long_key.clone()),
        )
        .await,
        outbox_core::emit_with(
            &mut tx,
            &ticket(Uuid::now_v7()),
            EmitOptions::default().dedupe_key(long_key.clone()),
        )
        .await,
        outbox_core::emit_with(
            &mut tx,
            &ticket(Uuid::now_v7()),
            EmitOptions::default().header("h".repeat(256), "v"),
        )
        .await,
    ];
    for result in refused {
        let error = result.expect_err("refused");
        assert!(matches!(error, EmitError::InvalidOption(_)), "{error}");
        assert!(error.to_string().contains("bytes"), "{error}");
    }
    // Nothing reached the database: the transaction still commits its own work.
    let id = write_ticket_and_event(&mut tx, &ticket(Uuid::now_v7())).await?;
    tx.commit().await?;
    assert_eq!(db.count_events().await?, 1);
    assert_eq!(count_tickets(&db).await?, 1);
    let _ = id;
    db.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batches_over_the_same_keys_in_opposite_orders_queue_instead_of_deadlocking() -> Result<()>
{
    let db = TestDb::new().await?;
    let keys: Vec<String> = (0..20).map(|i| format!("ticket:{i:02}")).collect();
    // One tenant: the ordering scope is (tenant, key).
    let tenant = Uuid::now_v7();
    let batch = |reversed: bool| {
        let mut keys = keys.clone();
        if reversed {
            keys.reverse();
        }
        keys.into_iter()
            .map(|key| {
                NewEvent::new(&ticket(tenant))
                    .map(|e| e.with_options(EmitOptions::default().ordering_key(key)))
            })
            .collect::<Result<Vec<_>, _>>()
    };
    let mut tasks = Vec::new();
    for round in 0..16 {
        let pool = db.pool.clone();
        let events = batch(round % 2 == 1)?;
        tasks.push(tokio::spawn(async move {
            let mut tx = pool.begin().await?;
            outbox_core::emit_batch(&mut tx, &events).await?;
            tokio::time::sleep(Duration::from_millis(5)).await;
            tx.commit().await?;
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    assert_eq!(db.count_events().await?, 16 * 20);
    // Every key's events lie in one partition of the feed (its scope's), each with a seq of
    // its own.
    let spread: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT ordering_key FROM outbox_events
                                WHERE ordering_key IS NOT NULL
                                GROUP BY ordering_key
                               HAVING count(DISTINCT seq % 16) > 1
                                   OR count(DISTINCT seq) <> count(*)) AS k",
    )
    .fetch_one(&db.pool)
    .await?;
    assert_eq!(
        spread, 0,
        "a key spread over partitions, or a seq drawn twice"
    );
    db.cleanup().await
}

/// `EmitOptions::delay` counts on the database's clock: the due time is the transaction's
/// `now()` plus the delay, to the microsecond, whatever the service's own clock says; an
/// absurd delay is capped, not an error.
#[tokio::test]
async fn a_delay_counts_on_the_databases_clock() -> Result<()> {
    let db = TestDb::new().await?;
    let mut tx = db.pool.begin().await?;
    let delayed = outbox_core::emit_with(
        &mut tx,
        &ticket(Uuid::now_v7()),
        EmitOptions::new().delay(Duration::from_millis(90_061_500)),
    )
    .await?;
    let capped = outbox_core::emit_with(
        &mut tx,
        &ticket(Uuid::now_v7()),
        EmitOptions::new().delay(Duration::MAX),
    )
    .await?;
    let exact: bool = sqlx::query_scalar(
        "SELECT available_at = now() + interval '1 day 1 hour 1 minute 1.5 seconds'
           FROM outbox_events WHERE id = $1",
    )
    .bind(delayed)
    .fetch_one(&mut *tx)
    .await?;
    assert!(exact, "the due time is the database's now() plus the delay");
    let years: f64 = sqlx::query_scalar(
        "SELECT (extract(epoch FROM available_at - now()) / (365 * 86400))::float8 FROM outbox_events WHERE id = $1",
    )
    .bind(capped)
    .fetch_one(&mut *tx)
    .await?;
    assert!((years - 100.0).abs() < 0.01, "capped at 100 years: {years}");
    tx.rollback().await?;
    db.cleanup().await
}
