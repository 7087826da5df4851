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
//! `register_events` (or `outbox-relay migrate --service-events`) and emitted like the
//! catalog's (README, "Events of a service's own").
//!
//! **Validation.** An untyped payload (`emit_untyped`, `emit_untyped_in`) is checked against
//! its event's schema by `catalog_types`' own validator, then read as the event's Rust type,
//! before any SQL runs; a refusal names the event type and each field path. The producer
//! compiles no JSON Schema engine and no schema generator: the catalog's schemas are
//! embedded. The feature `schemars` gives the catalog's types `schemars::JsonSchema`, for a
//! service whose own events' payloads hold them.
//!
//! **sqlx versions.** The connection is the service's own, of sqlx 0.9 (feature `sqlx-0_9`,
//! the default) or sqlx 0.8 (feature `sqlx-0_8`, with `default-features = false`): the
//! functions take any [`SqlxConnection`] (a `PgConnection`, `Transaction` or
//! `PoolConnection` of either version) and [`SqlxPool`]; both features may be on at once.

mod driver;
mod emit;
mod error;
pub mod inbox;
mod migrate;
mod options;
// Registration writes through sqlx 0.9; a service on sqlx 0.8 registers its events with
// `outbox-relay migrate --service-events` (emitting them works on either version).
#[cfg(feature = "sqlx-0_9")]
mod service_events;
mod text;
pub mod trace;

pub use driver::{SqlxConnection, SqlxPool};
pub use emit::{
    MAX_KEY_BYTES, NewEvent, emit, emit_batch, emit_untyped, emit_untyped_in, emit_with,
};
pub use error::{DatabaseError, EmitError};
pub use inbox::{InboxError, InboxOutcome};
#[cfg(feature = "sqlx-0_9")]
pub use migrate::MIGRATOR;
pub use migrate::{MigrateError, migrate, sync_catalog};
pub use options::EmitOptions;
#[cfg(feature = "sqlx-0_9")]
pub use service_events::{
    Conflict, RegisterError, Registration, register_definitions, register_events,
};

/// Re-exported so callers name the same catalog types the outbox stores.
pub use catalog_types;

/// Re-exported (feature `sqlx-0_9`, the default): sqlx 0.9, so a service's pools and
/// transactions are the very types `emit` takes, whatever other sqlx the service may use.
#[cfg(feature = "sqlx-0_9")]
pub use sqlx;

/// Re-exported (feature `sqlx-0_8`): sqlx 0.8, for a service that stays on it; `emit`,
/// `inbox::record` and `migrate` take its connections and pools too.
#[cfg(feature = "sqlx-0_8")]
pub use sqlx_0_8;

#[cfg(not(any(feature = "sqlx-0_9", feature = "sqlx-0_8")))]
compile_error!(
    "outbox-core writes through sqlx: enable its feature `sqlx-0_9` (the default) or `sqlx-0_8`"
);
