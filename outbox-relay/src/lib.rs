//! The outbox relay: publishes committed outbox rows to RabbitMQ, and the operator commands
//! around it.
//!
//! [`relay::run`] is the whole delivery loop — wake up, claim, publish in waves with
//! publisher confirms, settle — and reads top to bottom in `relay.rs`. The other modules are
//! its parts: [`claim`] (the SQL), [`publisher`] (AMQP), [`message`] (the wire format),
//! [`wakeup`] (LISTEN/NOTIFY plus polling), [`http`] (health and metrics).

pub mod backoff;
pub mod claim;
pub mod config;
pub mod http;
pub mod mask;
pub mod message;
pub mod ops;
pub mod publisher;
pub mod relay;
pub mod retention;
pub mod telemetry;
pub mod wakeup;

pub use config::RelayConfig;
pub use relay::run;
