//! The consumer's metrics, through the `metrics` facade (the service installs the recorder,
//! e.g. a Prometheus exporter). Every series carries the label `consumer`.

/// Events whose handler committed.
pub const HANDLED: &str = "outbox_consumer_handled_total";
/// Deliveries the inbox had already applied (redeliveries), acknowledged without effect.
pub const DUPLICATES: &str = "outbox_consumer_duplicates_skipped_total";
/// Failed handler attempts (each retry counts).
pub const FAILURES: &str = "outbox_consumer_failures_total";
/// Messages parked in the dead-letter queue.
pub const DEAD_LETTERED: &str = "outbox_consumer_dead_lettered_total";
/// Handler latency in seconds: inbox row, handler and commit.
pub const HANDLER_SECONDS: &str = "outbox_consumer_handler_seconds";

/// Describes the metrics and registers each counter at 0, so rates have data before the
/// first event.
pub(crate) fn register(consumer: &str) {
    metrics::describe_counter!(HANDLED, "events whose handler committed");
    metrics::describe_counter!(DUPLICATES, "redeliveries skipped by the inbox");
    metrics::describe_counter!(FAILURES, "failed handler attempts");
    metrics::describe_counter!(DEAD_LETTERED, "messages parked in the dead-letter queue");
    metrics::describe_histogram!(
        HANDLER_SECONDS,
        metrics::Unit::Seconds,
        "inbox row, handler and commit of one event"
    );
    for name in [HANDLED, DUPLICATES, FAILURES, DEAD_LETTERED] {
        metrics::counter!(name, "consumer" => consumer.to_owned()).increment(0);
    }
}
