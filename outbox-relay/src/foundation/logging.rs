//! Log output: what an operator reads, and what must never reach it.
//!
//! `RUST_LOG` chooses the levels (default: the relay's own lines at `info`, the database and
//! broker clients only when something is wrong). Whatever it says, the AMQP client's
//! `trace` lines are never written: they print whole frames, and the frame that opens a
//! connection holds the broker password, while published frames hold event payloads. Nor
//! is its `warn` line for a returned message, which holds the whole message body as bytes
//! (a `RUST_LOG=info` would otherwise let it through on every unroutable attempt); the
//! relay logs each return itself, with the event's id and type and without the body.
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

/// The AMQP client's module that logs every returned message, body included, at `warn`.
const BODY_PRINTING: &str = "lapin::returned_messages";

/// Whether a log line may be written whatever `RUST_LOG` says: not a frame-printing
/// crate's `trace` line, nor the AMQP client's dump of a returned message.
pub fn may_be_written(metadata: &Metadata<'_>) -> bool {
    let frame_printing = FRAME_PRINTING.iter().any(|name| {
        metadata.target() == *name || metadata.target().starts_with(&format!("{name}::"))
    });
    let body_printing = metadata.target() == BODY_PRINTING;
    !(body_printing || frame_printing && *metadata.level() == Level::TRACE)
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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A log sink the test reads back.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    /// Even with every level on (`RUST_LOG=trace`, or the `info` a deployment may set), the
    /// AMQP client's returned-message dump and frame traces are not written; its other
    /// warnings and the relay's own lines are.
    #[test]
    fn the_amqp_clients_body_and_frame_dumps_are_never_written() {
        let out = Captured::default();
        let subscriber = tracing_subscriber::registry()
            .with(EnvFilter::new("trace"))
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .with_writer(out.clone())
                    .with_filter(filter_fn(may_be_written)),
            );
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(target: "lapin::returned_messages", message = "data: [123, 34]", "Server returned us a message");
            tracing::trace!(target: "lapin::channel", "frame dump");
            tracing::warn!(target: "lapin::channel", "Channel closed");
            tracing::warn!(target: "outbox_relay::service::relay", "publish failed; retrying");
        });
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert!(
            !text.contains("123, 34") && !text.contains("returned us"),
            "{text}"
        );
        assert!(!text.contains("frame dump"), "{text}");
        assert!(
            text.contains("Channel closed") && text.contains("publish failed"),
            "{text}"
        );
    }
}
