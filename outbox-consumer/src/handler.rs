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

    /// Called instead of [`Handler::handle`] for a redelivery the inbox has already
    /// applied, in a transaction of its own that the library commits before acknowledging:
    /// write here what a duplicate should leave behind (an audit row, a counter), or nothing
    /// (the default). An error rolls it back and is retried like a handler's.
    fn on_duplicate(
        &self,
        tx: &mut PgConnection,
        event: &Event,
    ) -> impl Future<Output = Result<(), BoxError>> + Send {
        let _ = (tx, event);
        async { Ok(()) }
    }

    /// Called once a message is settled: acknowledged after its transaction committed, or
    /// parked in the dead-letter queue. Runs on the queue's task before its next message,
    /// so keep it short (progress output, counters, a [`crate::Stopper`] to stop after N
    /// messages). The default does nothing.
    fn settled(&self, settled: Settled<'_>) {
        let _ = settled;
    }
}

/// How a message was settled (see [`Handler::settled`]).
#[derive(Debug, Clone, Copy)]
pub enum Settled<'a> {
    /// Its handler's effects committed, then it was acknowledged.
    Applied(&'a Event),
    /// The inbox had applied it already: skipped (with [`Handler::on_duplicate`]'s writes
    /// committed), then acknowledged.
    Duplicate(&'a Event),
    /// Parked in the dead-letter queue, then acknowledged: its handler failed
    /// [`crate::ConsumerConfig::max_attempts`] times, or (`event: None`) it is not an
    /// outbox event (no or a malformed message id, a body that is not the envelope).
    DeadLettered {
        /// The event, when the message decoded as one.
        event: Option<&'a Event>,
        /// Why: the handler's last error, or the decoding error.
        reason: &'a str,
    },
}
