//! The outbox relay: publishes committed outbox rows to RabbitMQ, and the operator commands
//! around it.
//!
//! [`run`] is the whole delivery loop — wake up, claim, publish in waves with publisher
//! confirms, settle — and reads top to bottom in `service/relay.rs`.
//!
//! # Layers
//!
//! Each folder is a layer, listed here from the bottom up. A layer imports only the layers
//! below it, never one above, and no two source files import each other, directly or
//! through others (`tests/module_graph.rs` checks both).
//!
//! | folder | what | may import |
//! | --- | --- | --- |
//! | [`foundation`] | settings ([`RelayConfig`] and their checks), connecting to the database ([`pool_for`]), start-up errors ([`RelayError`]), what a database error or a broker's refusal means, retry policies, sleeps a shutdown cuts short, durations, password masking, log output, text tables | nothing of the crate |
//! | [`engine`] | pure decisions over plain data: the claimed event and its ordering scope, and how a claim is published in waves | nothing of the crate |
//! | [`store`] | every statement on the outbox table, and its state machine | foundation, engine |
//! | [`broker`] | AMQP: the connection and its failover, publishing with confirms, the wire format, the topology | foundation, engine |
//! | [`service`] | the running relay: the delivery loops ([`run`]), wake-ups, health and its probe, the HTTP endpoints, metrics, retention | foundation, engine, store, broker |
//! | [`ops`] | the operator commands' reports (replay, discard, audit, status, inspect, purge, wake-up mode, the catalog's table) | foundation, engine, store, service |
//!
//! The binary (`main.rs`, `cli.rs`, `cmd/`) sits on top and uses the library through its
//! public paths. One import still points up: `store/operator.rs` selects events by
//! [`ops::EventFilter`].
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

pub mod broker;
pub mod engine;
pub mod foundation;
pub mod ops;
pub mod service;
pub mod store;

pub use foundation::config::RelayConfig;
pub use foundation::db::pool_for;
pub use foundation::error::RelayError;
pub use service::health::Health;
pub use service::relay::run;
