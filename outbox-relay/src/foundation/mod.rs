//! What every other layer stands on: settings, connecting to the database, start-up
//! errors, what a database error or a broker's refusal means, and small utilities.
//!
//! - [`config`]: every setting, its default as an exported constant, and
//!   [`RelayConfig::validate`](config::RelayConfig::validate).
//! - [`db`]: the one way to connect to the database, and deadlines on its work; a private
//!   module, `keepalive`, sets TCP keepalive and a user timeout on its connections.
//! - [`error`]: [`RelayError`](error::RelayError), why the relay refuses to start or
//!   stopped badly, and the refusals at first contact it carries.
//! - [`diagnosis`]: what a database error or a broker's refusal means for an operator, and
//!   whether it heals.
//! - [`backoff`]: named retry policies; [`pause`]: sleeps a shutdown cuts short;
//!   [`human_duration`]: `7d`-style durations; [`mask`]: URLs without their passwords;
//!   [`logging`]: log output, and repeated failures said once then summarised; [`table`]:
//!   the command line's text tables, long values cut with an ellipsis.
//!
//! This layer imports nothing from the rest of the crate. Within it, the order is
//! `mask`, `backoff`, `pause`, `human_duration`, `logging`, `table`, `diagnosis`, `keepalive`
//! (none imports another) → `config` → `error` → `db`: a module imports only modules before
//! it.

pub mod backoff;
pub mod config;
pub mod db;
pub mod diagnosis;
pub mod error;
pub mod human_duration;
mod keepalive;
pub mod logging;
pub mod mask;
pub mod pause;
pub mod table;
