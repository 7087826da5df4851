//! The producer and consumer halves of the transactional outbox.
//!
//! Domain code writes its own rows and its catalog events in **one** Postgres transaction:
//!
//! ```no_run
//! # async fn demo(pool: sqlx::PgPool, event: catalog_types::TicketCreated) -> Result<(), Box<dyn std::error::Error>> {
//! let mut tx = pool.begin().await?;
//! // ... insert the ticket row with `&mut *tx` ...
//! let event_id = outbox_core::emit(&mut *tx, &event).await?;
//! tx.commit().await?; // the ticket and its event exist together, or neither does
//! # let _ = event_id; Ok(()) }
//! ```
//!
//! A relay later publishes the row; a consumer applies each message once with [`inbox`].
//!
//! A service's own event types, beside the catalog's, are registered with
//! [`register_events`] and emitted like the catalog's (README, "Events of a service's own").

mod emit;
mod error;
pub mod inbox;
mod migrate;
mod options;
mod service_events;
mod text;
pub mod trace;

pub use emit::{MAX_KEY_BYTES, NewEvent, emit, emit_batch, emit_untyped, emit_with};
pub use error::EmitError;
pub use inbox::{InboxError, InboxOutcome};
pub use migrate::{MIGRATOR, MigrateError, migrate, sync_catalog};
pub use options::EmitOptions;
pub use service_events::{
    Conflict, RegisterError, Registration, emit_untyped_in, register_definitions, register_events,
};

/// Re-exported so callers name the same catalog types the outbox stores.
pub use catalog_types;

/// Re-exported: the sqlx (0.9) the outbox is built on, so a service's pools and
/// transactions are the very types `emit` takes, whatever other sqlx the service may use.
pub use sqlx;

/// The README's examples, compiled as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeExamples;
