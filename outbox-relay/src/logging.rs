//! Log output: what an operator reads, and what must never reach it.
//!
//! `RUST_LOG` chooses the levels (default: the relay's own lines at `info`, the database and
//! broker clients only when something is wrong). Whatever it says, the AMQP client's
//! `trace` lines are never written: they print whole frames, and the frame that opens a
//! connection holds the broker password, while published frames hold event payloads.
//! Colour codes go only to a terminal.

use std::io::IsTerminal;

use tracing::{Level, Metadata};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::prelude::*;

/// The levels used when `RUST_LOG` is unset: the relay's own lines from `info`; the
/// database client's from `warn`; the AMQP client's only errors (the relay reports broker
/// trouble in its own lines, once per failure, with the event it concerns).
pub const DEFAULT_FILTER: &str = "info,sqlx=warn,lapin=error,amq_protocol=error";

/// Crates whose `trace` lines print protocol frames (credentials, payloads).
const FRAME_PRINTING: [&str; 4] = ["lapin", "amq_protocol", "amq_protocol_tcp", "io_loop"];

/// Whether a log line may be written whatever `RUST_LOG` says: not a frame-printing
/// crate's `trace` line.
pub fn may_be_written(metadata: &Metadata<'_>) -> bool {
    let frame_printing = FRAME_PRINTING.iter().any(|name| {
        metadata.target() == *name || metadata.target().starts_with(&format!("{name}::"))
    });
    !(frame_printing && *metadata.level() == Level::TRACE)
}

/// Installs the process-wide subscriber on standard error: text lines (coloured on a
/// terminal) or one JSON object per line.
pub fn init(json: bool) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let guard = filter_fn(may_be_written);
    let registry = tracing_subscriber::registry().with(filter);
    if json {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_writer(std::io::stderr)
                    .with_filter(guard),
            )
            .init();
    } else {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(std::io::stderr().is_terminal())
                    .with_writer(std::io::stderr)
                    .with_filter(guard),
            )
            .init();
    }
}
