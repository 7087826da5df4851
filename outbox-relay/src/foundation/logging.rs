//! Log output: what an operator reads, and what must never reach it.
//!
//! `RUST_LOG` chooses the levels (default: the relay's own lines at `info`, the database
//! client only when something is wrong, the AMQP client not at all: every failure it
//! reports reaches the relay as an error, which the relay says in its own words). Whatever
//! `RUST_LOG` says, the AMQP client's `trace` lines are never written: they print whole
//! frames, and the frame that opens a connection holds the broker password, while published
//! frames hold event payloads. Nor are its lines that dump a frame or an error at other
//! levels (`Connection closed method=Close { reply_code: 530, reply_text: ShortString(…) }`,
//! on every refused attempt), nor its `warn` line for a returned message, which holds the
//! whole message body as bytes; the relay logs each refusal and each return itself, once,
//! in words. Colour codes go only to a terminal.
//!
//! [`Repeats`] keeps a failure that repeats from filling the log: said once, then summarised
//! ("… failed 18 times in the last 10 s").

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use tracing::{Level, Metadata};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::prelude::*;

/// The levels used when `RUST_LOG` is unset: the relay's own lines from `info`; the database
/// client's from `warn`; none of the AMQP client's (the relay reports broker trouble in its
/// own lines: a refusal once per change, an unreachable broker summarised, a failed publish
/// with the event it concerns).
pub const DEFAULT_FILTER: &str = "info,sqlx=warn,lapin=off,amq_protocol=off";

/// Crates whose `trace` lines print protocol frames (credentials, payloads).
const FRAME_PRINTING: [&str; 4] = ["lapin", "amq_protocol", "amq_protocol_tcp", "io_loop"];

/// Fields of the AMQP client's lines that hold a frame (`method`, `frame`) or an error with
/// the frame it came in (`error`, `err`: `AMQPError { kind: …, message: ShortString(…) }`).
const FRAME_FIELDS: [&str; 4] = ["method", "frame", "error", "err"];

/// The AMQP client's module that logs every returned message, body included, at `warn`.
const BODY_PRINTING: &str = "lapin::returned_messages";

/// Whether a log line may be written whatever `RUST_LOG` says: not a frame-printing
/// crate's `trace` line, nor one of its lines carrying a frame or an error dump at any
/// level, nor the AMQP client's dump of a returned message.
pub fn may_be_written(metadata: &Metadata<'_>) -> bool {
    let frame_printing = FRAME_PRINTING.iter().any(|name| {
        metadata.target() == *name || metadata.target().starts_with(&format!("{name}::"))
    });
    let body_printing = metadata.target() == BODY_PRINTING;
    let dumps = frame_printing
        && (*metadata.level() == Level::TRACE
            || FRAME_FIELDS
                .iter()
                .any(|field| metadata.fields().field(field).is_some()));
    !(body_printing || dumps)
}

/// How often a failure that keeps repeating is summarised in the log.
pub const SUMMARY_INTERVAL: Duration = Duration::from_secs(10);

/// What to write about a failure that may be a repeat ([`Repeats::failed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    /// A failure unlike the last one (or the first): write it in full.
    New,
    /// The same failure again, `times` times since the last line, written `over` ago:
    /// write one line that says so.
    Summary {
        /// Failures since the last line, this one included.
        times: u32,
        /// Time since the last line.
        over: Duration,
    },
    /// The same failure again, within [`SUMMARY_INTERVAL`] of the last line: write nothing.
    Quiet,
}

impl Report {
    /// The summary's words (`failed 18 times in the last 10 s`), for [`Report::Summary`].
    pub fn summary(&self) -> Option<String> {
        match self {
            Report::Summary { times, over } => Some(format!(
                "failed {times} times in the last {} s",
                over.as_secs_f64().round()
            )),
            Report::New | Report::Quiet => None,
        }
    }
}

/// Says a failure once, then summarises its repeats every [`SUMMARY_INTERVAL`] instead of
/// writing each: the log of a relay whose database is not migrated yet, or whose broker is
/// down, stays readable. A failure is "the same" when its key (its cause, in words) is.
#[derive(Debug, Default)]
pub struct Repeats {
    /// The key of the failure being repeated, if any.
    current: Option<String>,
    /// Repeats since the last line.
    unreported: u32,
    /// When the last line about it was written.
    written_at: Option<Instant>,
}

impl Repeats {
    /// Records a failure with `key` at `now`; says what to write.
    pub fn failed(&mut self, key: &str, now: Instant) -> Report {
        if self.current.as_deref() != Some(key) {
            self.current = Some(key.to_owned());
            self.unreported = 0;
            self.written_at = Some(now);
            return Report::New;
        }
        self.unreported += 1;
        let written_at = *self.written_at.get_or_insert(now);
        let over = now.saturating_duration_since(written_at);
        if over < SUMMARY_INTERVAL {
            return Report::Quiet;
        }
        let times = std::mem::take(&mut self.unreported);
        self.written_at = Some(now);
        Report::Summary { times, over }
    }

    /// Records a success: the next failure is new. Returns whether a failure was being
    /// repeated (the caller may say it is over).
    pub fn succeeded(&mut self) -> bool {
        self.unreported = 0;
        self.written_at = None;
        self.current.take().is_some()
    }
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

    /// The AMQP client's lines that dump a `Close` frame or an `AMQPError` (on every
    /// refused attempt, at `error` and `info`) are not written at any level; its lines
    /// without a dump are, when `RUST_LOG` asks for them.
    #[test]
    fn the_amqp_clients_close_frames_and_error_dumps_are_never_written() {
        let out = Captured::default();
        let subscriber = tracing_subscriber::registry()
            .with(EnvFilter::new("trace"))
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .with_writer(out.clone())
                    .with_filter(filter_fn(may_be_written)),
            );
        let method = "Close { reply_code: 530, reply_text: ShortString(\"NOT_ALLOWED\") }";
        tracing::subscriber::with_default(subscriber, || {
            tracing::error!(target: "lapin::channel", channel = 0, method = ?method, "Connection closed");
            tracing::info!(target: "lapin::channel", channel = 0, method = ?method, "Connection closed");
            tracing::error!(target: "lapin::channels", error = %"protocol error", "Connection error");
            tracing::error!(target: "lapin::io_loop", error = ?"Error { kind: IOError }", "error doing IO");
            tracing::error!(target: "lapin::heartbeat", "no heartbeat for too long");
            tracing::warn!(target: "outbox_relay::broker::connection", error = "refused", "the relay's own line");
        });
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        for dump in [
            "reply_code",
            "ShortString",
            "Close {",
            "Connection error",
            "error doing IO",
        ] {
            assert!(!text.contains(dump), "{dump}: {text}");
        }
        assert!(
            text.contains("no heartbeat for too long") && text.contains("the relay's own line"),
            "{text}"
        );
    }

    /// A failure is written once; its repeats are summarised every interval, counted since
    /// the last line; another failure is written at once; a success starts afresh.
    #[test]
    fn repeated_failures_are_written_once_then_summarised() {
        let start = Instant::now();
        let at = |seconds: u64| start + Duration::from_secs(seconds);
        let mut repeats = Repeats::default();
        assert_eq!(
            repeats.failed("relation does not exist", at(0)),
            Report::New
        );
        for second in 1..10 {
            assert_eq!(
                repeats.failed("relation does not exist", at(second)),
                Report::Quiet
            );
        }
        let summary = repeats.failed("relation does not exist", at(10));
        assert_eq!(
            summary,
            Report::Summary {
                times: 10,
                over: Duration::from_secs(10)
            }
        );
        assert_eq!(
            summary.summary().as_deref(),
            Some("failed 10 times in the last 10 s")
        );
        assert_eq!(
            repeats.failed("relation does not exist", at(11)),
            Report::Quiet
        );
        assert_eq!(repeats.failed("connection refused", at(12)), Report::New);
        assert!(repeats.succeeded());
        assert!(!repeats.succeeded(), "nothing was failing any more");
        assert_eq!(repeats.failed("connection refused", at(13)), Report::New);
    }
}
