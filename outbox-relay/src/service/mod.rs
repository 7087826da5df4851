//! The running relay: the delivery loops and what runs beside them.
//!
//! - [`relay`]: [`run`](relay::run), the claim → publish in waves → settle loop; the I/O
//!   shell around the engine's decisions.
//! - [`wakeup`]: LISTEN or adaptive polling, by the database's wake-up mode.
//! - [`health`]: what `/readyz` reports; [`probe`]: the database's own readiness probe.
//! - [`http`]: the health and metrics endpoints; [`telemetry`]: metric names, the
//!   recorder and the backlog gauges.
//! - [`retention`]: the periodic purge of `--retention`.
//! - [`ownership`]: the session holding the advisory lock the relay's claim tokens name, so
//!   its leases end with the relay.
//!
//! This layer may import every layer below it: foundation, engine, store and broker.

pub mod health;
pub mod http;
pub mod ownership;
pub mod probe;
pub mod relay;
pub mod retention;
pub mod telemetry;
pub mod wakeup;
