//! The consumer's settings, each default an exported constant.

use std::time::Duration;

use outbox_topology::{MAX_PARTITIONS, partition_queue};

use crate::ConsumerError;

/// Where a consumer takes its events from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The partitioned topology: the queues `<prefix>.0` to `<prefix>.<partitions - 1>`,
    /// each with a single active consumer. Per-key order holds across any number of
    /// consumer processes.
    Partitions {
        /// The queues' common prefix (a consumer group's name, e.g. `billing`).
        prefix: String,
        /// How many (the relay's `--partitions`).
        partitions: u32,
    },
    /// One plain queue. Per-key order holds only while one consumer process reads it.
    Queue(String),
}

impl Source {
    /// The queues consumed, in partition order.
    pub fn queues(&self) -> Vec<String> {
        match self {
            Source::Partitions { prefix, partitions } => (0..*partitions)
                .map(|partition| partition_queue(prefix, partition))
                .collect(),
            Source::Queue(queue) => vec![queue.clone()],
        }
    }

    /// The dead-letter queue: `<prefix>.dead` or `<queue>.dead`.
    pub fn dead_letter_queue(&self) -> String {
        match self {
            Source::Partitions { prefix, .. } => format!("{prefix}.dead"),
            Source::Queue(queue) => format!("{queue}.dead"),
        }
    }
}

/// Messages each queue's channel may hold unacknowledged (handled one at a time, in order).
pub const DEFAULT_PREFETCH: u16 = 64;

/// Handler attempts before a message is dead-lettered.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;

/// The first retry delay of a failing handler (doubling, with jitter, up to the cap).
pub const DEFAULT_RETRY_BASE: Duration = Duration::from_millis(200);

/// The longest retry delay of a failing handler, and of reconnecting.
pub const DEFAULT_RETRY_CAP: Duration = Duration::from_secs(10);

/// How long an acknowledgement (or a dead-letter publish's confirm) may take before the
/// connection is taken as lost and replaced.
pub const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_secs(10);

/// The AMQP heartbeat asked for (unless the URL sets `heartbeat`): a silent broker link is
/// noticed within twice this.
pub const DEFAULT_HEARTBEAT: u16 = 10;

/// How long connecting to the broker may take.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long shutdown waits for the messages being handled.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// A consumer's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsumerConfig {
    /// The broker's AMQP URL (may carry a password: the library never logs it).
    pub amqp_url: String,
    /// The consumer's stable name: its inbox rows' `consumer`, its consumer tags' prefix.
    pub name: String,
    /// The queues it reads.
    pub source: Source,
    /// Unacknowledged messages per queue.
    pub prefetch: u16,
    /// Handler attempts before dead-lettering (1: no retry).
    pub max_attempts: u32,
    /// First retry delay.
    pub retry_base: Duration,
    /// Longest retry delay (also of reconnecting).
    pub retry_cap: Duration,
    /// Bound of each acknowledgement and dead-letter confirm.
    pub ack_timeout: Duration,
    /// AMQP heartbeat in seconds, unless the URL sets one.
    pub heartbeat: u16,
    /// Bound of connecting to the broker.
    pub connect_timeout: Duration,
    /// Bound of draining on shutdown.
    pub shutdown_timeout: Duration,
    /// Whether each event is recorded in the inbox before its handler runs (the default).
    /// `false` applies every delivery, redeliveries included: only to show what the inbox
    /// prevents (the example consumer's `--no-inbox`), never in a real consumer.
    pub inbox: bool,
}

impl ConsumerConfig {
    /// The defaults, for consumer `name` reading `source` on the broker at `amqp_url`.
    pub fn new(amqp_url: impl Into<String>, name: impl Into<String>, source: Source) -> Self {
        ConsumerConfig {
            amqp_url: amqp_url.into(),
            name: name.into(),
            source,
            prefetch: DEFAULT_PREFETCH,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            retry_base: DEFAULT_RETRY_BASE,
            retry_cap: DEFAULT_RETRY_CAP,
            ack_timeout: DEFAULT_ACK_TIMEOUT,
            heartbeat: DEFAULT_HEARTBEAT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            inbox: true,
        }
    }

    /// Refuses settings the consumer cannot honour.
    pub fn validate(&self) -> Result<(), ConsumerError> {
        let bad = |text: String| Err(ConsumerError::Config(text));
        if self.name.is_empty() || self.name.len() > 200 {
            return bad("the consumer name must be 1 to 200 bytes".to_owned());
        }
        match &self.source {
            Source::Partitions { prefix, partitions } => {
                if prefix.is_empty() || prefix.len() > 200 {
                    return bad("the partition queues' prefix must be 1 to 200 bytes".to_owned());
                }
                if !(1..=MAX_PARTITIONS).contains(partitions) {
                    return bad(format!(
                        "partitions must be 1 to {MAX_PARTITIONS}, got {partitions}"
                    ));
                }
            }
            Source::Queue(queue) => {
                if queue.is_empty() || queue.len() > 200 {
                    return bad("the queue name must be 1 to 200 bytes".to_owned());
                }
            }
        }
        if self.prefetch == 0 {
            return bad("prefetch must be at least 1".to_owned());
        }
        if self.max_attempts == 0 {
            return bad("max_attempts must be at least 1".to_owned());
        }
        if self.ack_timeout.is_zero() || self.connect_timeout.is_zero() {
            return bad("ack_timeout and connect_timeout must be above zero".to_owned());
        }
        if self.heartbeat == 0 {
            return bad("heartbeat must be at least 1 second".to_owned());
        }
        if !(self.amqp_url.starts_with("amqp://") || self.amqp_url.starts_with("amqps://")) {
            return bad("the broker URL must be an amqp:// or amqps:// URL".to_owned());
        }
        if self.amqp_url.parse::<lapin::uri::AMQPUri>().is_err() {
            return bad("the broker URL does not parse as an AMQP URL".to_owned());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_name_their_queues() {
        let source = Source::Partitions {
            prefix: "billing".to_owned(),
            partitions: 3,
        };
        assert_eq!(source.queues(), ["billing.0", "billing.1", "billing.2"]);
        assert_eq!(source.dead_letter_queue(), "billing.dead");
        assert_eq!(Source::Queue("q".to_owned()).queues(), ["q"]);
    }

    #[test]
    fn impossible_settings_are_refused() {
        let good = ConsumerConfig::new("amqp://localhost", "c", Source::Queue("q".to_owned()));
        assert!(good.validate().is_ok());
        let mut c = good.clone();
        c.name = String::new();
        assert!(c.validate().is_err());
        let mut c = good.clone();
        c.source = Source::Partitions {
            prefix: "p".to_owned(),
            partitions: 0,
        };
        assert!(c.validate().is_err());
        let mut c = good.clone();
        c.amqp_url = "http://user:secret@x".to_owned();
        let error = c.validate().unwrap_err().to_string();
        assert!(!error.contains("secret"), "{error}");
        let mut c = good;
        c.max_attempts = 0;
        assert!(c.validate().is_err());
    }
}
