//! The consumer side of the outbox: read the relay's events and apply each one exactly once,
//! in its key's order, from any number of consumer processes.
//!
//! Give a [`Consumer`] a database pool, a broker URL, a consumer name and a [`Handler`]; it
//! reads the partitioned topology's queues (each with a single active consumer, so one
//! process at a time handles a partition, and the broker hands it to another process when
//! that one goes away) or one plain queue, and for each message, in order:
//!
//! 1. begins a transaction and records the event in the inbox (`outbox_core::inbox`): a
//!    redelivery of an event already applied is acknowledged and skipped;
//! 2. runs the handler in that transaction, then commits, then acknowledges (each
//!    acknowledgement bounded by [`ConsumerConfig::ack_timeout`]);
//! 3. retries a failing handler with backoff, holding the partition's later messages behind
//!    it (they are not delivered to the handler until this one is settled), and after
//!    [`ConsumerConfig::max_attempts`] publishes it to the dead-letter queue with the error
//!    (`x-error`) and acknowledges it: **the key's later events then proceed**; the parked
//!    event is applied out of order if it is ever replayed. A failure of the database link
//!    (network, pool, the server ending the session) is retried without counting.
//!
//! The handler may also write in a duplicate's transaction ([`Handler::on_duplicate`], e.g.
//! an audit row) and hear of each settled message ([`Handler::settled`], e.g. progress);
//! a [`Stopper`] stops the consumer from inside, e.g. after N messages.
//!
//! It reconnects after a lost connection (heartbeats notice a silent one), drains on
//! shutdown, records metrics ([`telemetry`]) and exposes readiness ([`Readiness`]).
//! [`setup::declare`] declares the queues; the partition function is `outbox_topology`'s.
//!
//! ```no_run
//! use outbox_consumer::sqlx::{PgConnection, PgPool};
//! use outbox_consumer::{BoxError, Consumer, ConsumerConfig, Event, Handler, Source};
//!
//! /// The effect: one row per ticket event, written in the inbox's transaction.
//! struct TicketLog;
//!
//! impl Handler for TicketLog {
//!     async fn handle(&self, tx: &mut PgConnection, event: &Event) -> Result<(), BoxError> {
//!         outbox_consumer::sqlx::query("INSERT INTO ticket_log (event_id) VALUES ($1)")
//!             .bind(event.id)
//!             .execute(&mut *tx)
//!             .await?;
//!         Ok(())
//!     }
//! }
//!
//! # async fn consume(pool: PgPool) -> Result<(), Box<dyn std::error::Error>> {
//! // The relay runs with `--partitions 8 --routing-key '{category}.{event_type}.{partition}'`.
//! let source = Source::Partitions { prefix: "billing".to_owned(), partitions: 8 };
//! let config = ConsumerConfig::new("amqp://billing@broker.internal/%2f", "billing", source);
//! let consumer = Consumer::new(config, pool, TicketLog)?;
//! let ready = consumer.readiness(); // for a readiness endpoint
//! consumer
//!     .run(async {
//!         let _ = tokio::signal::ctrl_c().await;
//!     })
//!     .await?;
//! # let _ = ready; Ok(()) }
//! ```

mod config;
mod connect;
mod error;
mod event;
mod handler;
mod run;
pub mod setup;
pub mod telemetry;

pub use config::{
    ConsumerConfig, DEFAULT_ACK_TIMEOUT, DEFAULT_CONNECT_TIMEOUT, DEFAULT_HEARTBEAT,
    DEFAULT_MAX_ATTEMPTS, DEFAULT_PREFETCH, DEFAULT_RETRY_BASE, DEFAULT_RETRY_CAP,
    DEFAULT_SHUTDOWN_TIMEOUT, Source,
};
pub use error::ConsumerError;
pub use event::{DecodeError, Event};
pub use handler::{BoxError, Handler, Settled};
pub use run::{Consumer, Readiness, Stopper};

/// Re-exported: the topology (partition function, queue declarations) consumers share with
/// the relay.
pub use outbox_topology as topology;

/// Re-exported: the sqlx (0.9) of the handler's transaction.
pub use sqlx;
