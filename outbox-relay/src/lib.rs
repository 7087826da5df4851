//! The outbox relay: publishes committed outbox rows to RabbitMQ, and the operator commands
//! around it. Most people run the binary (`outbox-relay run`, README "Configuration"); this
//! library embeds the same relay in a process of your own:
//!
//! ```no_run
//! use std::sync::Arc;
//!
//! use outbox_relay::{Health, RelayConfig};
//!
//! # async fn embed() -> Result<(), outbox_relay::RelayError> {
//! let mut config = RelayConfig::new(
//!     "postgres://relay@db.internal/app",
//!     "amqps://relay@broker.internal/%2f",
//! );
//! config.relay_id = "billing-relay-1".to_owned();
//! // `health` says whether the database and the broker are reachable (what `/readyz` says).
//! let health = Arc::new(Health::default());
//! let shutdown = async {
//!     let _ = tokio::signal::ctrl_c().await;
//! };
//! // Claims, publishes with confirms and settles until `shutdown` completes, then drains.
//! outbox_relay::run(config, shutdown, health).await
//! # }
//! ```
//!
//! # What is public
//!
//! [`run`] (the whole delivery loop — wake up, claim, publish in waves with publisher
//! confirms, settle), its settings [`RelayConfig`] (checked by [`RelayConfig::validate`]),
//! its readiness [`Health`], its start-up errors [`RelayError`] and [`pool_for`] (a pool
//! with the relay's connection settings). That is the API this crate's version number
//! covers (README, "Versioning and releases").
//!
//! The layers below are public only so that this repository's tests and benchmarks can drive
//! the claim, the settle and the operator statements directly; they are hidden from the docs
//! (`#[doc(hidden)]`), are **not** part of the API, and change in any release. The broker
//! topology a consumer needs lives in the `outbox-topology` crate, the consumer loop in
//! `outbox-consumer`.
//!
//! # Layers
//!
//! Each folder is a layer, listed here from the bottom up. A layer imports only the layers
//! below it, never one above, and no two source files import each other, directly or
//! through others (`tests/module_graph.rs` checks both).
//!
//! | folder | what | may import |
//! | --- | --- | --- |
//! | `foundation` | settings ([`RelayConfig`] and their checks), connecting to the database ([`pool_for`]), start-up errors ([`RelayError`]), what a database error or a broker's refusal means, retry policies, sleeps a shutdown cuts short, durations, password masking, log output, text tables | nothing of the crate |
//! | `engine` | pure decisions over plain data: the claimed event and its ordering scope, and how a claim is published in waves | nothing of the crate |
//! | `store` | every statement on the outbox table, and its state machine | foundation, engine |
//! | `broker` | AMQP: the connection and its failover, publishing with confirms, the wire format, the topology | foundation, engine |
//! | `service` | the running relay: the delivery loops ([`run`]), wake-ups, health and its probe, the HTTP endpoints, metrics, retention | foundation, engine, store, broker |
//! | `ops` | the operator commands' reports (replay, discard, audit, status, inspect, purge, wake-up mode, the catalog's table) | foundation, engine, store, service |
//!
//! The binary (`main.rs`, `cli.rs`, `cmd/`) sits on top and uses the library through its
//! public paths. One import still points up: `store/operator.rs` selects events by
//! `ops::EventFilter`.
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

#[doc(hidden)]
pub mod broker;
#[doc(hidden)]
pub mod engine;
#[doc(hidden)]
pub mod foundation;
#[doc(hidden)]
pub mod ops;
#[doc(hidden)]
pub mod service;
#[doc(hidden)]
pub mod store;

pub use foundation::config::RelayConfig;
pub use foundation::db::pool_for;
pub use foundation::error::RelayError;
pub use service::health::Health;
pub use service::relay::run;
