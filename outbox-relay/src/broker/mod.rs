//! Everything AMQP: the broker connection, publishing on it, the wire format, and the
//! broker objects events travel through.
//!
//! - [`connection`]: the nodes, failover between them, the first contact, reconnecting;
//!   it hands out confirm-mode channels.
//! - [`publishing`]: a delivery loop's channel, waves of pipelined publishes, confirms and
//!   returns, typed publish failures.
//! - [`message`]: the wire format of an event (properties, headers, envelope, routing key).
//! - [`topology`]: the exchange and queue declarations the relay, the example consumer,
//!   the tests and the benchmarks share.
//!
//! This layer imports the foundation and the engine (the claimed event it publishes), never
//! the store or the service.

pub mod connection;
pub mod message;
pub mod publishing;
pub mod topology;
