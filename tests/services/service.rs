//! A service that writes its rows and its events in one transaction of its own sqlx.
//!
//! The same source is built twice: by `service-sqlx08`, whose `sqlx` is 0.8 (and which
//! takes `outbox-core` with `default-features = false, features = ["sqlx-0_8"]`), and by
//! `service-sqlx09`, whose `sqlx` is 0.9 (outbox-core's default). It is what a service on
//! either version writes; `tests/tests/sqlx_versions.rs` runs both against one database and
//! a relay.

use outbox_core::catalog_types::TicketCreated;
use outbox_core::{EmitOptions, InboxOutcome, NewEvent, inbox};
use sqlx::postgres::{PgPool, PgPoolOptions};
use uuid::Uuid;

/// What one open ticket wrote (or would have written, had it committed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opened {
    /// The service's own row.
    pub ticket_id: Uuid,
    /// Its `TICKET_CREATED` event.
    pub event_id: Uuid,
}

/// A pool of this service's sqlx on `url`.
pub async fn connect(url: &str) -> Result<PgPool, sqlx::Error> {
    PgPoolOptions::new().max_connections(2).connect(url).await
}

/// Brings the outbox schema up to date through this service's sqlx, and creates the
/// service's own table.
pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    outbox_core::migrate(pool).await?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS service_tickets (
             id uuid PRIMARY KEY,
             tenant_id uuid NOT NULL,
             title text NOT NULL)",
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// Opens a ticket: its row and its event in one transaction, committed when `commit`, else
/// rolled back (then neither exists).
pub async fn open_ticket(
    pool: &PgPool,
    tenant_id: Uuid,
    title: &str,
    commit: bool,
) -> anyhow::Result<Opened> {
    let ticket_id = Uuid::now_v7();
    let mut tx = pool.begin().await?;
    sqlx::query("INSERT INTO service_tickets (id, tenant_id, title) VALUES ($1, $2, $3)")
        .bind(ticket_id)
        .bind(tenant_id)
        .bind(title)
        .execute(&mut *tx)
        .await?;
    let event = TicketCreated {
        tenant_id,
        ticket_id,
        created_by_user_id: None,
        created_at: Some(chrono::Utc::now()),
        updated_fields: None,
        changes: None,
    };
    let event_id = outbox_core::emit(&mut *tx, &event).await?;
    if commit {
        tx.commit().await?;
    } else {
        tx.rollback().await?;
    }
    Ok(Opened {
        ticket_id,
        event_id,
    })
}

/// Emits two tickets' events for `request` in one statement (`emit_batch`) and commits:
/// a request retried stores nothing new and gets the ids stored the first time (the dedupe
/// keys are `<request>/1` and `<request>/2`).
pub async fn emit_request_once(
    pool: &PgPool,
    tenant_id: Uuid,
    request: &str,
) -> anyhow::Result<Vec<Uuid>> {
    let events = (1..=2)
        .map(|n| {
            let event = TicketCreated {
                tenant_id,
                ticket_id: Uuid::now_v7(),
                created_by_user_id: None,
                created_at: None,
                updated_fields: None,
                changes: None,
            };
            Ok(NewEvent::new(&event)?
                .with_options(EmitOptions::new().dedupe_key(format!("{request}/{n}"))))
        })
        .collect::<Result<Vec<_>, outbox_core::EmitError>>()?;
    let mut tx = pool.begin().await?;
    let ids = outbox_core::emit_batch(&mut *tx, &events).await?;
    tx.commit().await?;
    Ok(ids)
}

/// Records a delivered message for `consumer` in a transaction of this service's sqlx.
pub async fn apply_once(
    pool: &PgPool,
    consumer: &str,
    message_id: &str,
) -> anyhow::Result<InboxOutcome> {
    let mut tx = pool.begin().await?;
    let outcome = inbox::record(&mut tx, consumer, message_id).await?;
    tx.commit().await?;
    Ok(outcome)
}
