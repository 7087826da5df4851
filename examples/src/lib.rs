//! Shared pieces of the examples: a domain service that writes its rows and events in one
//! transaction, and the list of one event per catalog category.

use catalog_types::{
    AppointmentCreated, AssetCreated, CatalogEvent, ClientCreated, CompanyCreated,
    DocumentUploaded, FileUploaded, IntegrationSyncCompleted, InvoiceSent, NotificationSent,
    OutboundEmailQueued, ProjectTaskCreated, SurveySent, TagApplied, TicketCreated,
};
use sqlx::PgConnection;
use uuid::Uuid;

/// Creates the example's own business table (a stand-in for a real service's schema).
pub async fn create_business_tables(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS demo_tickets (
             id uuid PRIMARY KEY,
             tenant_id uuid NOT NULL,
             title text NOT NULL,
             created_at timestamptz NOT NULL DEFAULT now())",
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Opens a ticket: the row and its `TICKET_CREATED` event in the caller's transaction.
pub async fn open_ticket(
    conn: &mut PgConnection,
    tenant: Uuid,
    title: &str,
) -> Result<(Uuid, Uuid), outbox_core::EmitError> {
    let ticket_id = Uuid::now_v7();
    sqlx::query("INSERT INTO demo_tickets (id, tenant_id, title) VALUES ($1, $2, $3)")
        .bind(ticket_id)
        .bind(tenant)
        .bind(title)
        .execute(&mut *conn)
        .await?;
    let event = TicketCreated {
        tenant_id: tenant,
        ticket_id,
        created_by_user_id: Some(Uuid::now_v7()),
        created_at: Some(chrono::Utc::now()),
        updated_fields: None,
        changes: None,
    };
    let event_id = outbox_core::emit(conn, &event).await?;
    Ok((ticket_id, event_id))
}

fn for_tenant<E: CatalogEvent>(
    tenant: Uuid,
    set: impl FnOnce(&mut E, Uuid),
) -> Result<outbox_core::NewEvent, outbox_core::EmitError> {
    let mut event = E::example();
    set(&mut event, tenant);
    outbox_core::NewEvent::new(&event)
}

/// One realistic event of every catalog category, for `tenant`, with fresh aggregate ids.
pub fn one_of_every_category(
    tenant: Uuid,
) -> Result<Vec<outbox_core::NewEvent>, outbox_core::EmitError> {
    Ok(vec![
        for_tenant::<TicketCreated>(tenant, |e, t| {
            e.tenant_id = t;
            e.ticket_id = Uuid::now_v7();
        })?,
        for_tenant::<AppointmentCreated>(tenant, |e, t| {
            e.tenant_id = t;
            e.appointment_id = Uuid::now_v7();
        })?,
        for_tenant::<ProjectTaskCreated>(tenant, |e, t| {
            e.tenant_id = t;
            e.project_id = Uuid::now_v7();
        })?,
        for_tenant::<InvoiceSent>(tenant, |e, t| {
            e.tenant_id = t;
            e.invoice_id = Uuid::now_v7();
        })?,
        for_tenant::<ClientCreated>(tenant, |e, t| {
            e.tenant_id = t;
            e.client_id = Uuid::now_v7();
        })?,
        for_tenant::<TagApplied>(tenant, |e, t| {
            e.tenant_id = t;
            e.tag_id = Uuid::now_v7();
        })?,
        for_tenant::<DocumentUploaded>(tenant, |e, t| {
            e.tenant_id = t;
            e.document_id = Uuid::now_v7();
        })?,
        for_tenant::<OutboundEmailQueued>(tenant, |e, t| {
            e.tenant_id = t;
            e.message_id = format!("<{}@example.com>", Uuid::now_v7());
        })?,
        for_tenant::<NotificationSent>(tenant, |e, t| {
            e.tenant_id = t;
            e.notification_id = Uuid::now_v7();
        })?,
        for_tenant::<SurveySent>(tenant, |e, t| {
            e.tenant_id = t;
            e.survey_id = Uuid::now_v7();
        })?,
        for_tenant::<IntegrationSyncCompleted>(tenant, |e, t| {
            e.tenant_id = t;
            e.integration_id = Uuid::now_v7();
        })?,
        for_tenant::<AssetCreated>(tenant, |e, t| {
            e.tenant_id = t;
            e.asset_id = Uuid::now_v7();
        })?,
        for_tenant::<FileUploaded>(tenant, |e, t| {
            e.tenant_id = t;
            e.file_id = Uuid::now_v7();
        })?,
        for_tenant::<CompanyCreated>(tenant, |e, t| {
            e.tenant_id = t;
            e.company_id = Uuid::now_v7();
        })?,
    ])
}
