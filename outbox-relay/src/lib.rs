//! The outbox relay: publishes committed outbox rows to RabbitMQ, and the operator commands
//! around it.
//!
//! [`relay::run`] is the whole delivery loop — wake up, claim, publish in waves with
//! publisher confirms, settle — and reads top to bottom in `relay.rs`. The other modules are
//! its parts: [`config`] (every setting, its default as a constant the binary's flags show,
//! and [`RelayConfig::validate`]), [`store`] (every statement on the outbox table, and its
//! state machine), [`publisher`] (AMQP: one connection, a channel per batch in flight, typed
//! publish failures), [`topology`] (the exchange and queue declarations), [`message`] (the
//! wire format), [`wakeup`] (LISTEN or adaptive polling, by the database's wake-up mode),
//! [`health`] (what `/readyz` reports), [`probe`] (the database's own readiness probe),
//! [`db`] (connecting), [`error`] (why `run` refuses or stops badly), [`http`] (health and
//! metrics endpoints), [`telemetry`] (metric names and the recorder), [`logging`] (log
//! output), [`diagnosis`] (what a database error means for an operator), [`retention`]
//! (periodic purge), [`backoff`] (named retry policies), [`pause`] (sleeps a shutdown cuts
//! short), [`human_duration`] (`7d`-style durations), [`mask`] (URLs without their
//! passwords); [`ops`] holds the operator commands' reports.
//!
//! Nothing a row holds may stop the relay, so the library denies panicking shortcuts.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod backoff;
pub mod config;
pub mod db;
pub mod diagnosis;
pub mod error;
pub mod health;
pub mod http;
pub mod human_duration;
pub mod logging;
pub mod mask;
pub mod message;
pub mod ops;
pub mod pause;
pub mod probe;
pub mod publisher;
pub mod relay;
pub mod retention;
pub mod store;
pub mod telemetry;
pub mod topology;
pub mod wakeup;

pub use config::RelayConfig;
pub use db::pool_for;
pub use error::RelayError;
pub use health::Health;
pub use relay::run;
