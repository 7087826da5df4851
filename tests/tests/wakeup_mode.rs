//! Wake-up modes: `outbox_wakeup_mode()` / `outbox_set_wakeup_mode()` and the operator's
//! `outbox-relay wakeup`, checked through a real LISTEN connection: in mode `poll` a
//! committed insert sends no notification, in mode `notify` it does.

#![allow(clippy::expect_used, clippy::unwrap_used)] // tests fail loudly by design

use std::time::Duration;

use anyhow::Result;
use catalog_types::{CatalogEvent, TicketCreated};
use integration_tests::{TestDb, relay_cli};
use sqlx::postgres::PgListener;
use uuid::Uuid;

fn ticket() -> TicketCreated {
    TicketCreated {
        tenant_id: integration_tests::TEST_TENANT, // one scope per ticket
        ticket_id: Uuid::now_v7(),
        ..TicketCreated::example()
    }
}

async fn mode(db: &TestDb) -> Result<String> {
    Ok(sqlx::query_scalar("SELECT outbox_wakeup_mode()")
        .fetch_one(&db.pool)
        .await?)
}

/// Commits one event by the library and one by plain SQL; returns whether a notification
/// arrived on the listener (it is drained first, so an earlier one does not count).
async fn insert_and_listen(db: &TestDb, listener: &mut PgListener) -> Result<bool> {
    while tokio::time::timeout(Duration::from_millis(100), listener.recv())
        .await
        .is_ok()
    {}
    let mut tx = db.pool.begin().await?;
    outbox_core::emit(&mut tx, &ticket()).await?;
    tx.commit().await?;
    let event = ticket();
    sqlx::query(
        "INSERT INTO outbox_events (event_type, tenant_id, ordering_key, payload)
         VALUES ('TICKET_CREATED', $1, $2, $3)",
    )
    .bind(event.tenant_id)
    .bind(event.ordering_key())
    .bind(serde_json::to_value(&event)?)
    .execute(&db.pool)
    .await?;
    match tokio::time::timeout(Duration::from_secs(2), listener.recv()).await {
        Ok(note) => {
            assert_eq!(note?.channel(), "outbox_events");
            Ok(true)
        }
        Err(_) => Ok(false),
    }
}

#[tokio::test]
async fn the_mode_decides_whether_an_insert_notifies() -> Result<()> {
    let db = TestDb::new().await?;
    let mut listener = PgListener::connect(&db.url()).await?;
    listener.listen("outbox_events").await?;

    // The default after migrating.
    assert_eq!(mode(&db).await?, "poll");
    assert!(
        !insert_and_listen(&db, &mut listener).await?,
        "mode poll: an insert must not notify"
    );

    let set: String = sqlx::query_scalar("SELECT outbox_set_wakeup_mode('notify')")
        .fetch_one(&db.pool)
        .await?;
    assert_eq!(set, "notify");
    assert_eq!(mode(&db).await?, "notify");
    assert!(
        insert_and_listen(&db, &mut listener).await?,
        "mode notify: a committed insert notifies"
    );

    let set: String = sqlx::query_scalar("SELECT outbox_set_wakeup_mode('poll')")
        .fetch_one(&db.pool)
        .await?;
    assert_eq!(set, "poll");
    assert!(
        !insert_and_listen(&db, &mut listener).await?,
        "back to poll: no notification"
    );
    assert_eq!(db.count_events().await?, 6);

    // Anything else is refused, naming the valid modes, and changes nothing.
    for bad in ["Notify", "", "listen"] {
        let error = sqlx::query_scalar::<_, String>("SELECT outbox_set_wakeup_mode($1)")
            .bind(bad)
            .fetch_one(&db.pool)
            .await
            .unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("unknown wake-up mode") && message.contains("'notify' or 'poll'"),
            "{message}"
        );
    }
    let error = sqlx::query_scalar::<_, String>("SELECT outbox_set_wakeup_mode(NULL)")
        .fetch_one(&db.pool)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("unknown wake-up mode NULL"));
    assert_eq!(mode(&db).await?, "poll");

    drop(listener);
    db.cleanup().await
}

#[tokio::test]
async fn the_operator_command_prints_and_switches_the_mode() -> Result<()> {
    let db = TestDb::new().await?;
    let mut listener = PgListener::connect(&db.url()).await?;
    listener.listen("outbox_events").await?;

    let (code, stdout, stderr) = relay_cli(&db, &["wakeup"]).await?;
    assert_eq!((code, stdout.as_str()), (0, "poll\n"), "{stderr}");

    let (code, stdout, stderr) = relay_cli(&db, &["wakeup", "notify"]).await?;
    assert_eq!((code, stdout.as_str()), (0, "notify\n"), "{stderr}");
    assert_eq!(mode(&db).await?, "notify");
    assert!(insert_and_listen(&db, &mut listener).await?);

    let (code, stdout, stderr) = relay_cli(&db, &["wakeup"]).await?;
    assert_eq!((code, stdout.as_str()), (0, "notify\n"), "{stderr}");

    let (code, stdout, stderr) = relay_cli(&db, &["wakeup", "poll"]).await?;
    assert_eq!((code, stdout.as_str()), (0, "poll\n"), "{stderr}");
    assert!(!insert_and_listen(&db, &mut listener).await?);

    // A mode that does not exist is refused before anything is touched.
    let (code, stdout, stderr) = relay_cli(&db, &["wakeup", "sometimes"]).await?;
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(
        stderr.contains("notify") && stderr.contains("poll"),
        "{stderr}"
    );
    assert_eq!(mode(&db).await?, "poll");

    // A database without the schema: a clear error, not a panic.
    let empty = TestDb::empty().await?;
    let (code, _, stderr) = relay_cli(&empty, &["wakeup"]).await?;
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("outbox-relay migrate"), "{stderr}");
    empty.cleanup().await?;

    drop(listener);
    db.cleanup().await
}
