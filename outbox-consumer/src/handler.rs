//! What the service supplies: the effect of one event, inside the transaction the library
//! opens, records the inbox row in, and commits.

use std::future::Future;

use sqlx::PgConnection;

use crate::Event;

/// A handler's error, kept as text for the logs and the dead-letter queue's `x-error`.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Applies one event's effects.
///
/// `tx` is a connection inside the transaction that already holds the event's inbox row:
/// write the effects with it (`.execute(&mut *tx)`) and return; the library commits, then
/// acknowledges. Return an error to roll everything back (the inbox row too): the library
/// retries with backoff, keeping the partition's later events behind this one, and after
/// [`crate::ConsumerConfig::max_attempts`] parks the message in the dead-letter queue.
///
/// ```no_run
/// use outbox_consumer::{BoxError, Event, Handler};
/// use outbox_consumer::sqlx::PgConnection;
///
/// struct Projection;
///
/// impl Handler for Projection {
///     async fn handle(&self, tx: &mut PgConnection, event: &Event) -> Result<(), BoxError> {
///         if let Some(created) = event.payload_as::<catalog_types::TicketCreated>()? {
///             outbox_consumer::sqlx::query("INSERT INTO open_tickets (id) VALUES ($1)")
///                 .bind(created.ticket_id)
///                 .execute(&mut *tx)
///                 .await?;
///         }
///         Ok(())
///     }
/// }
/// ```
pub trait Handler: Send + Sync + 'static {
    /// Applies `event` inside the library's transaction.
    fn handle(
        &self,
        tx: &mut PgConnection,
        event: &Event,
    ) -> impl Future<Output = Result<(), BoxError>> + Send;
}
