//! The consumer's inbox: apply each message once, even though the broker delivers at least once.
//!
//! Call [`record`] inside the same transaction that applies the message's effects. The
//! first delivery inserts `(consumer, message_id)` and gets [`InboxOutcome::Process`]; a
//! redelivery — even one racing in a concurrent transaction — gets
//! [`InboxOutcome::AlreadyProcessed`] and must skip the effects. If the transaction rolls
//! back, the record goes with it and the next delivery processes the message.

use crate::DatabaseError;
use crate::driver::{SqlxConnection, Statement};

/// What a consumer should do with a delivered message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InboxOutcome {
    /// First time this consumer sees the message: apply its effects, then commit.
    Process,
    /// The consumer already applied this message: acknowledge it and do nothing.
    AlreadyProcessed,
}

/// Why a message could not be recorded.
#[derive(Debug, thiserror::Error)]
pub enum InboxError {
    /// The message has no id (`message_id` property missing or empty): the inbox cannot tell
    /// it from any other id-less message. Reject it (dead-letter) rather than apply it; the
    /// relay always sets the id.
    #[error(
        "the message has no id: it cannot be applied exactly once (the inbox needs the AMQP message_id)"
    )]
    EmptyMessageId,
    /// The consumer name is empty: every consumer must have a stable name of its own.
    #[error("the consumer name is empty: give each consumer a stable name of its own")]
    EmptyConsumer,
    /// The database failed; the caller's transaction is aborted.
    #[error("database error while recording the message in the inbox: {0}")]
    Database(#[from] DatabaseError),
}

/// Records `message_id` for `consumer` in the caller's transaction (`&mut tx` or `&mut *tx`
/// of sqlx 0.9 or 0.8, see [`SqlxConnection`]).
///
/// A concurrent transaction recording the same id waits for this one to finish, then sees
/// [`InboxOutcome::AlreadyProcessed`] if this one committed. An empty id or consumer is
/// refused before any SQL runs, so the transaction stays usable.
pub async fn record(
    conn: &mut impl SqlxConnection,
    consumer: &str,
    message_id: &str,
) -> Result<InboxOutcome, InboxError> {
    if message_id.is_empty() {
        return Err(InboxError::EmptyMessageId);
    }
    if consumer.is_empty() {
        return Err(InboxError::EmptyConsumer);
    }
    let affected = Statement::new(
        "INSERT INTO outbox_inbox (consumer, message_id) VALUES ($1, $2)
         ON CONFLICT (consumer, message_id) DO NOTHING",
    )
    .bind(consumer)
    .bind(message_id)
    .execute(conn)
    .await?;
    Ok(if affected == 1 {
        InboxOutcome::Process
    } else {
        InboxOutcome::AlreadyProcessed
    })
}
