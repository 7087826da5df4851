//! outbox-core on both supported sqlx versions: a service on sqlx 0.8 and a service on sqlx
//! 0.9 (`tests/services/`, one source built against each) migrate, emit in their own
//! transactions and record deliveries in the inbox against one real database, and the relay
//! delivers the events of both and nothing of what either rolled back.

#![allow(clippy::expect_used, clippy::unwrap_used)] // tests fail loudly by design

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::Result;
use integration_tests::{RunningRelay, TestBroker, TestDb, relay_config};
use outbox_core::{EmitError, InboxOutcome};
use uuid::Uuid;

#[tokio::test]
async fn services_on_sqlx_0_8_and_0_9_emit_in_their_own_transactions_and_the_relay_delivers_both()
-> Result<()> {
    let db = TestDb::empty().await?;
    let broker = TestBroker::new(&["#"]).await?;
    let on_0_8 = service_sqlx08::connect(&db.url()).await?;
    let on_0_9 = service_sqlx09::connect(&db.url()).await?;

    // sqlx 0.8 migrates an empty database; 0.9 then finds the same history, checksums
    // included, and has nothing to do (a differing checksum would fail its run).
    service_sqlx08::migrate(&on_0_8).await?;
    let applied = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM _sqlx_migrations")
            .fetch_one(&db.pool)
            .await
    };
    let after_0_8 = applied().await?;
    assert_eq!(after_0_8, outbox_core::MIGRATOR.iter().count() as i64);
    service_sqlx09::migrate(&on_0_9).await?;
    assert_eq!(applied().await?, after_0_8, "sqlx 0.9 re-ran a migration");

    let tenant = Uuid::now_v7();
    let mut committed = Vec::new();
    let mut rolled_back = Vec::new();
    for n in 0..2 {
        committed.push(
            service_sqlx08::open_ticket(&on_0_8, tenant, &format!("0.8 #{n}"), true)
                .await?
                .event_id,
        );
        committed.push(
            service_sqlx09::open_ticket(&on_0_9, tenant, &format!("0.9 #{n}"), true)
                .await?
                .event_id,
        );
    }
    let gone_0_8 = service_sqlx08::open_ticket(&on_0_8, tenant, "0.8 undone", false).await?;
    let gone_0_9 = service_sqlx09::open_ticket(&on_0_9, tenant, "0.9 undone", false).await?;
    rolled_back.extend([gone_0_8.event_id, gone_0_9.event_id]);

    // A batch with dedupe keys, retried through the other version, stores nothing new and
    // resolves to the ids stored the first time.
    let batch = service_sqlx08::emit_request_once(&on_0_8, tenant, "request-1").await?;
    assert_eq!(
        service_sqlx09::emit_request_once(&on_0_9, tenant, "request-1").await?,
        batch
    );
    let batch_0_9 = service_sqlx09::emit_request_once(&on_0_9, tenant, "request-2").await?;
    assert_eq!(
        service_sqlx08::emit_request_once(&on_0_8, tenant, "request-2").await?,
        batch_0_9
    );
    committed.extend(batch.iter().chain(&batch_0_9));

    // Each rollback took the service's row and its event together.
    let tickets: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM service_tickets")
        .fetch_all(&db.pool)
        .await?;
    assert_eq!(tickets.len(), 4, "{tickets:?}");
    assert!(!tickets.contains(&gone_0_8.ticket_id) && !tickets.contains(&gone_0_9.ticket_id));
    assert_eq!(db.count_events().await?, 8);

    let relay = RunningRelay::start(relay_config(&db, &broker));
    let received = broker.collect(8, Duration::from_secs(20)).await?;
    let ids: BTreeSet<String> = received.iter().map(|m| m.message_id.clone()).collect();
    let expected: BTreeSet<String> = committed.iter().map(Uuid::to_string).collect();
    assert_eq!(ids, expected, "delivered: {received:?}");
    for message in &received {
        assert_eq!(message.body["eventType"], "TICKET_CREATED");
        assert_eq!(message.body["tenantId"], serde_json::json!(tenant));
    }
    // Nothing more arrives: the rolled-back events never existed for the relay.
    let late = broker.collect(1, Duration::from_secs(2)).await?;
    assert!(late.is_empty(), "after the committed events: {late:?}");
    for id in &rolled_back {
        assert!(!ids.contains(&id.to_string()), "{id} was rolled back");
    }
    relay.stop().await?;

    // A delivery recorded through one version's transaction is a duplicate for the other's.
    let first = &received[0].message_id;
    assert_eq!(
        service_sqlx08::apply_once(&on_0_8, "billing", first).await?,
        InboxOutcome::Process
    );
    assert_eq!(
        service_sqlx09::apply_once(&on_0_9, "billing", first).await?,
        InboxOutcome::AlreadyProcessed
    );
    let second = &received[1].message_id;
    assert_eq!(
        service_sqlx09::apply_once(&on_0_9, "billing", second).await?,
        InboxOutcome::Process
    );
    assert_eq!(
        service_sqlx08::apply_once(&on_0_8, "billing", second).await?,
        InboxOutcome::AlreadyProcessed
    );

    on_0_8.close().await;
    on_0_9.close().await;
    broker.cleanup().await?;
    db.cleanup().await
}

/// A refusal of the database reaches the service as `EmitError::Database` whichever sqlx it
/// is on: with the SQLSTATE, the advice to migrate, and the driver's own error of that
/// version underneath.
#[tokio::test]
async fn a_database_refusal_carries_its_sqlstate_and_the_driver_error_of_either_version()
-> Result<()> {
    use outbox_core::catalog_types::{CatalogEvent, TicketCreated};
    let db = TestDb::empty().await?;
    let on_0_8 = service_sqlx08::connect(&db.url()).await?;

    let mut tx = on_0_8.begin().await?;
    let refused_0_8 = outbox_core::emit(&mut *tx, &TicketCreated::example()).await;
    drop(tx);
    let mut tx = db.pool.begin().await?;
    let refused_0_9 = outbox_core::emit(&mut tx, &TicketCreated::example()).await;
    drop(tx);

    for (version, refused) in [("0.8", refused_0_8), ("0.9", refused_0_9)] {
        let Err(EmitError::Database(error)) = &refused else {
            panic!("sqlx {version}: {refused:?}");
        };
        assert_eq!(error.code(), Some("42P01"), "sqlx {version}: {error:?}");
        assert!(
            error.message().contains("outbox_events") && error.message().contains("does not exist"),
            "sqlx {version}: {}",
            error.message()
        );
        let shown = refused.as_ref().unwrap_err().to_string();
        assert!(
            shown.contains("outbox_core::migrate"),
            "sqlx {version}: {shown}"
        );
        let driver = error.get_ref();
        let of_its_version = match version {
            "0.8" => driver
                .downcast_ref::<outbox_core::sqlx_0_8::Error>()
                .is_some(),
            _ => driver.downcast_ref::<outbox_core::sqlx::Error>().is_some(),
        };
        assert!(of_its_version, "sqlx {version}: {driver:?}");
    }
    on_0_8.close().await;
    db.cleanup().await
}
