//! Per-event options of an emit.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

/// How one event is written: dedupe key, ordering key, delay, extra headers.
///
/// The defaults suit most events: the dedupe key is the event id (every emit is a new
/// event), the ordering key is the event's aggregate, delivery is immediate.
#[derive(Debug, Clone, Default)]
pub struct EmitOptions {
    pub(crate) dedupe_key: Option<String>,
    pub(crate) ordering_key: Option<Option<String>>,
    pub(crate) available_at: Option<DateTime<Utc>>,
    /// Seconds after the database's `now()` (set by [`EmitOptions::delay`]); ignored when
    /// `available_at` is set.
    pub(crate) delay_seconds: Option<f64>,
    pub(crate) occurred_at: Option<DateTime<Utc>>,
    pub(crate) headers: Map<String, Value>,
    pub(crate) traceparent: Option<String>,
    pub(crate) tracestate: Option<String>,
}

impl EmitOptions {
    /// Default options.
    pub fn new() -> Self {
        Self::default()
    }

    /// A business key that identifies the event (per tenant): emitting the same key again
    /// stores nothing and returns the id stored the first time.
    pub fn dedupe_key(mut self, key: impl Into<String>) -> Self {
        self.dedupe_key = Some(key.into());
        self
    }

    /// Overrides the default ordering key (the event's aggregate).
    pub fn ordering_key(mut self, key: impl Into<String>) -> Self {
        self.ordering_key = Some(Some(key.into()));
        self
    }

    /// No ordering: the event may be delivered before or after any other.
    pub fn unordered(mut self) -> Self {
        self.ordering_key = Some(None);
        self
    }

    /// Deliver no earlier than `delay` after the writer's transaction began, on the
    /// **database's** clock (its `now()`), so a service whose clock is off delays by what it
    /// asked. (A transaction open longer than `delay` makes the event due at its commit.)
    /// Delays beyond [`EmitOptions::MAX_DELAY`] are that long.
    pub fn delay(mut self, delay: std::time::Duration) -> Self {
        self.delay_seconds = Some(delay.min(Self::MAX_DELAY).as_secs_f64());
        self.available_at = None;
        self
    }

    /// The longest [`EmitOptions::delay`]: 100 years (a due time must stay within the years
    /// the database and every client represent).
    pub const MAX_DELAY: std::time::Duration = std::time::Duration::from_secs(100 * 365 * 86_400);

    /// Deliver no earlier than `at` (an absolute time; replaces a [`EmitOptions::delay`]).
    pub fn available_at(mut self, at: DateTime<Utc>) -> Self {
        self.available_at = Some(at);
        self.delay_seconds = None;
        self
    }

    /// When the business fact happened (default: the database's `now()`).
    pub fn occurred_at(mut self, at: DateTime<Utc>) -> Self {
        self.occurred_at = Some(at);
        self
    }

    /// An extra string header carried to the AMQP message.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers
            .insert(name.into(), Value::String(value.into()));
        self
    }

    /// An explicit W3C trace context, overriding the ambient one of [`crate::trace`].
    pub fn traceparent(mut self, traceparent: impl Into<String>) -> Self {
        self.traceparent = Some(traceparent.into());
        self
    }

    /// The W3C `tracestate` that goes with [`EmitOptions::traceparent`].
    pub fn tracestate(mut self, tracestate: impl Into<String>) -> Self {
        self.tracestate = Some(tracestate.into());
        self
    }
}
