//! Everything the relay loop needs to know, independent of how it was configured: the
//! settings, each default as an exported constant (the binary's flags show the same ones),
//! and [`RelayConfig::validate`], which refuses what the relay cannot honour before it
//! connects to anything — the routing key template and AMQP's short-string limit
//! ([`check_routing_key_template`], [`SHORT_STRING_MAX`]) included, which the wire format
//! (`broker/message.rs`) then relies on.

use std::str::FromStr;
use std::time::Duration;

use catalog_types::Category;
use sqlx::postgres::PgConnectOptions;

use crate::foundation::backoff::BackoffPolicy;
use crate::foundation::mask::{mask_url, password_of, redact};

/// The relay's settings; the binary fills them from flags and environment.
#[derive(Debug, Clone, PartialEq)]
pub struct RelayConfig {
    /// Postgres URL (may carry a password: never log it unmasked).
    pub database_url: String,
    /// AMQP URL (`amqp://` or `amqps://`), or several nodes' URLs separated by commas (see
    /// [`amqp_nodes`]): the relay holds one connection, and moves on to the next node,
    /// round-robin, when it is lost or a connection attempt fails.
    pub amqp_url: String,
    /// A PEM file of CA certificates trusted for `amqps://` brokers besides the system's (a
    /// private CA, as most internal brokers use); `None` trusts the system's alone.
    pub amqp_ca_file: Option<std::path::PathBuf>,
    /// The durable topic exchange events are published to (declared on start).
    pub exchange: String,
    /// Routing key template; `{category}` and `{event_type}` are replaced by the category
    /// slug and the lower-case event type, `{tenant_id}` by the tenant (or `none`),
    /// `{partition}` by the event's partition (of [`RelayConfig::partitions`]).
    pub routing_key_template: String,
    /// The number of partitions of the partitioned topology (`{partition}` in the routing
    /// key is `0` to `partitions - 1`, by `outbox_topology::event_partition`); 1 without it.
    /// Fixed per deployment: changing it moves scopes to other partitions (the consuming
    /// guide says how to switch safely).
    pub partitions: u32,
    /// Rows claimed per batch.
    pub batch_size: u32,
    /// The longest wait between looks for work: the safety net while notifications arrive,
    /// the idle ceiling of adaptive polling otherwise (see [`crate::service::wakeup`]).
    pub poll_interval: Duration,
    /// The shortest wait of adaptive polling: the first look after a claim found nothing.
    pub poll_min_interval: Duration,
    /// Batches in flight at once (claimed and not yet settled), each on a channel of its own
    /// on the one broker connection: one is claimed while another publishes and a third
    /// settles.
    pub in_flight_batches: u32,
    /// Whether to LISTEN for insert notifications (off behind PgBouncer in transaction mode).
    pub listen: bool,
    /// Whether to hold an ownership session, so this relay's leases end with its process
    /// (off behind PgBouncer in transaction mode: claims then end only with the lease).
    pub ownership: bool,
    /// Publish attempts before a row becomes `dead`.
    pub max_attempts: u32,
    /// Retry delays between failed attempts.
    pub retry: BackoffPolicy,
    /// How long a claim lease lasts when the claiming relay's ownership session cannot end
    /// it sooner (see `crate::engine::lease`).
    pub lease: Duration,
    /// How long to wait for a publisher confirm before counting the attempt as failed.
    pub confirm_timeout: Duration,
    /// How long handing one message to the broker connection may take (a broker that blocks
    /// publishers on a memory or disk alarm stops reading): the link is then dropped.
    pub publish_timeout: Duration,
    /// The largest message body published; a larger event is dead at once (RabbitMQ's own
    /// `max_message_size` refuses it and closes the channel).
    pub max_message_size: usize,
    /// How long shutdown may wait for outstanding confirms.
    pub shutdown_timeout: Duration,
    /// Delete delivered rows older than this, periodically (off when `None`).
    pub retention: Option<Duration>,
    /// How often to refresh the backlog gauges.
    pub gauge_interval: Duration,
    /// This instance's name on its leases (`outbox_partitions.relay_id`).
    pub relay_id: String,
    /// The AMQP heartbeat the relay asks for (whole seconds, 1 to 65,535; the URL's own
    /// `heartbeat` wins). A broker link that stays silent for twice as long is dropped and
    /// reconnected, also while the relay is idle; without it RabbitMQ's 60 s would apply.
    pub heartbeat: Duration,
    /// The longest a claim, a settle or a look for work may take, taking a connection
    /// included: a database that stops answering (a partition: nothing is closed) is then
    /// given up on, and the connection closed, not reused. Well above a claim's lock wait.
    pub db_timeout: Duration,
}

impl RelayConfig {
    /// The documented defaults (the constants below, which the CLI shows as its defaults),
    /// with the given servers.
    pub fn new(database_url: impl Into<String>, amqp_url: impl Into<String>) -> Self {
        RelayConfig {
            database_url: database_url.into(),
            amqp_url: amqp_url.into(),
            amqp_ca_file: None,
            exchange: DEFAULT_EXCHANGE.to_owned(),
            routing_key_template: DEFAULT_ROUTING_KEY.to_owned(),
            partitions: DEFAULT_PARTITIONS,
            batch_size: DEFAULT_BATCH_SIZE,
            poll_interval: DEFAULT_POLL_INTERVAL,
            poll_min_interval: DEFAULT_POLL_MIN_INTERVAL,
            in_flight_batches: DEFAULT_IN_FLIGHT_BATCHES,
            listen: true,
            ownership: true,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            retry: BackoffPolicy::PUBLISH_RETRY,
            lease: DEFAULT_LEASE,
            confirm_timeout: DEFAULT_CONFIRM_TIMEOUT,
            publish_timeout: DEFAULT_PUBLISH_TIMEOUT,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            retention: None,
            gauge_interval: DEFAULT_GAUGE_INTERVAL,
            relay_id: default_relay_id(),
            heartbeat: DEFAULT_HEARTBEAT,
            db_timeout: DEFAULT_DB_TIMEOUT,
        }
    }
}

/// The local development database (what `scripts/demo` and the tests start).
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// AMQP 0-9-1's smallest frame (`frame-min-size`): a broker refuses a connection that
/// asks for less.
pub const AMQP_FRAME_MIN: u32 = 4096;

/// The local development broker.
pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// The connect options of a `--database-url`; a malformed URL is refused naming the flag,
/// with the password masked. Also what [`RelayConfig::validate`] checks, so `run`
/// refuses such a URL before it starts anything.
pub fn connect_options(url: &str) -> Result<PgConnectOptions, String> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(format!(
            "--database-url {}: expected a postgres:// or postgresql:// URL",
            mask_url(url)
        ));
    }
    PgConnectOptions::from_str(url).map_err(|e| format!("--database-url {}: {e}", mask_url(url)))
}

/// The nodes of an AMQP URL list: the comma-separated URLs, trimmed, empty items left out
/// (a comma inside a password must be percent-encoded, `%2C`, as any URL's reserved
/// character).
pub fn amqp_nodes(list: &str) -> Vec<&str> {
    list.split(',')
        .map(str::trim)
        .filter(|node| !node.is_empty())
        .collect()
}

/// An AMQP URL list with every node's password masked, for logs and errors
/// ([`mask_url`] per node: masking the list as one URL would miss the later
/// nodes' passwords).
pub fn mask_amqp_nodes(list: &str) -> String {
    amqp_nodes(list)
        .into_iter()
        .map(mask_url)
        .collect::<Vec<_>>()
        .join(",")
}

/// The durable topic exchange events go to.
pub const DEFAULT_EXCHANGE: &str = "outbox.events";

/// `<category slug>.<event type lower case>`, e.g. `tickets.ticket_status_changed`.
pub const DEFAULT_ROUTING_KEY: &str = "{category}.{event_type}";

/// AMQP short strings (type, header names, routing key) hold at most this many bytes.
pub const SHORT_STRING_MAX: usize = 255;

/// The placeholders a routing key template may use.
pub const ROUTING_KEY_PLACEHOLDERS: [&str; 4] = [
    "{category}",
    "{event_type}",
    "{tenant_id}",
    outbox_topology::PARTITION_PLACEHOLDER,
];

/// One partition: the topology is not partitioned.
pub const DEFAULT_PARTITIONS: u32 = 1;

/// The most partitions (`outbox_topology::MAX_PARTITIONS`).
pub const MAX_PARTITIONS: u32 = outbox_topology::MAX_PARTITIONS;

/// Checks a routing key template before the relay starts, so a typo cannot make every
/// event unroutable or dead: it must not be empty, may use only
/// [`ROUTING_KEY_PLACEHOLDERS`] in braces, must hold no control characters, and must stay
/// within AMQP's 255 bytes for every catalog event (the longest category slug and event
/// type, a tenant id, the largest partition number). The error says what is wrong, without
/// the flag's name.
pub fn check_routing_key_template(template: &str) -> Result<(), String> {
    if template.is_empty() {
        return Err(
            "is empty: every event would be published with an empty routing key".to_owned(),
        );
    }
    if let Some(c) = template.chars().find(|c| c.is_control()) {
        return Err(format!(
            "holds the control character {}",
            c.escape_unicode()
        ));
    }
    let mut rest = template;
    while let Some(open) = rest.find(['{', '}']) {
        if rest[open..].starts_with('}') {
            return Err("has a `}` without its `{`".to_owned());
        }
        let Some(close) = rest[open..].find('}') else {
            return Err("has a `{` without its `}`".to_owned());
        };
        let placeholder = &rest[open..open + close + 1];
        if !ROUTING_KEY_PLACEHOLDERS.contains(&placeholder) {
            return Err(format!(
                "uses the unknown placeholder `{}`: the placeholders are {}",
                placeholder.chars().take(40).collect::<String>(),
                ROUTING_KEY_PLACEHOLDERS.join(", ")
            ));
        }
        rest = &rest[open + close + 1..];
    }
    let longest = |names: Vec<String>| names.into_iter().max_by_key(String::len);
    let registry = catalog_types::registry();
    let slug = longest(Category::ALL.iter().map(|c| c.slug().to_owned()).collect());
    let event_type = longest(
        registry
            .entries()
            .iter()
            .map(|e| e.event_type.to_ascii_lowercase())
            .collect(),
    );
    let expanded = template
        .replace("{category}", &slug.unwrap_or_default())
        .replace("{event_type}", &event_type.unwrap_or_default())
        .replace("{tenant_id}", &uuid::Uuid::nil().to_string())
        .replace(
            outbox_topology::PARTITION_PLACEHOLDER,
            &(MAX_PARTITIONS - 1).to_string(),
        );
    if expanded.len() > SHORT_STRING_MAX {
        return Err(format!(
            "expands to up to {} bytes, over AMQP's {SHORT_STRING_MAX}-byte routing key",
            expanded.len()
        ));
    }
    Ok(())
}

/// Events claimed per batch: large enough to amortise a claim, small enough to publish well
/// within a lease.
pub const DEFAULT_BATCH_SIZE: u32 = 500;

/// The most events one batch may claim.
pub const MAX_BATCH_SIZE: u32 = 10_000;

/// The longest wait between looks for work.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// The first look for work after an empty claim, when polling.
pub const DEFAULT_POLL_MIN_INTERVAL: Duration = Duration::from_millis(2);

/// Batches in flight by default: enough to keep claiming, publishing and settling all busy.
pub const DEFAULT_IN_FLIGHT_BATCHES: u32 = 3;

/// The most batches in flight: each holds a broker channel and a database connection.
pub const MAX_IN_FLIGHT_BATCHES: u32 = 16;

/// Publish attempts before an event becomes dead.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 10;

/// The most publish attempts that may be configured.
pub const MAX_MAX_ATTEMPTS: u32 = 1_000;

/// How long a claim lease lasts.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(60);

/// How long a publisher confirm may take.
pub const DEFAULT_CONFIRM_TIMEOUT: Duration = Duration::from_secs(15);

/// How long handing a wave to the broker may take.
pub const DEFAULT_PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);

/// The AMQP heartbeat asked for: a silent broker link is noticed within twice this.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(10);

/// How long one claim, settle or look for work may wait on the database.
pub const DEFAULT_DB_TIMEOUT: Duration = Duration::from_secs(15);

/// RabbitMQ's default `max_message_size` since 4.0 (16 MiB).
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 16 * 1024 * 1024;

/// How long shutdown may wait for outstanding confirms.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// How often the backlog gauges are refreshed.
pub const DEFAULT_GAUGE_INTERVAL: Duration = Duration::from_secs(5);

/// Time a lease keeps in reserve after the last wave, for the settle statement.
pub const SETTLE_RESERVE: Duration = Duration::from_secs(1);

/// Why a configuration is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(pub String);

impl RelayConfig {
    /// The longest one wave can take: every message handed over, then every confirm
    /// awaited. A wave starts only while this much of the lease (plus [`SETTLE_RESERVE`])
    /// remains, so no event is published after its lease has run out.
    pub fn worst_case_wave(&self) -> Duration {
        self.publish_timeout + self.confirm_timeout
    }

    /// Refuses settings the relay cannot honour, naming the flag.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |text: String| Err(ConfigError(text));
        // A malformed database URL is refused here, before `run` serves or connects anything.
        if let Err(reason) = connect_options(&self.database_url) {
            return bad(reason);
        }
        let nodes = amqp_nodes(&self.amqp_url);
        if nodes.is_empty() {
            return bad("--amqp-url is empty: give one or more amqp:// or amqps:// URLs, separated by commas".to_owned());
        }
        for (index, node) in nodes.iter().enumerate() {
            let name = if nodes.len() > 1 {
                format!(
                    "--amqp-url node {} of {} ({})",
                    index + 1,
                    nodes.len(),
                    mask_url(node)
                )
            } else {
                format!("--amqp-url {}", mask_url(node))
            };
            if !(node.starts_with("amqp://") || node.starts_with("amqps://")) {
                return bad(format!("{name}: expected an amqp:// or amqps:// URL"));
            }
            let uri = match node.parse::<lapin::uri::AMQPUri>() {
                Ok(uri) => uri,
                Err(error) => {
                    let secrets: Vec<String> = password_of(node).into_iter().collect();
                    return bad(format!("{name}: {}", redact(&error, &secrets)));
                }
            };
            // The broker would refuse these (a frame below AMQP's minimum resets the
            // connection; too few channels starve the delivery loops): say so now.
            if let Some(frame_max) = uri.query.frame_max
                && frame_max != 0
                && frame_max < AMQP_FRAME_MIN
            {
                return bad(format!(
                    "{name}: frame_max={frame_max} is below AMQP's minimum frame size, {AMQP_FRAME_MIN}"
                ));
            }
            if let Some(channel_max) = uri.query.channel_max
                && channel_max != 0
                && u32::from(channel_max) < self.in_flight_batches
            {
                return bad(format!(
                    "{name}: channel_max={channel_max} is below the {} channels the relay opens (one per --in-flight-batches)",
                    self.in_flight_batches
                ));
            }
        }
        if let Some(path) = &self.amqp_ca_file {
            match std::fs::read_to_string(path) {
                Err(error) => {
                    return bad(format!(
                        "--amqp-ca-file {}: cannot be read: {error}",
                        path.display()
                    ));
                }
                Ok(pem) if !pem.contains("-----BEGIN CERTIFICATE-----") => {
                    return bad(format!(
                        "--amqp-ca-file {}: holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                        path.display()
                    ));
                }
                Ok(_) => {}
            }
        }
        if self.exchange.is_empty()
            || self.exchange.len() > 255
            || self.exchange.chars().any(char::is_control)
        {
            return bad(format!(
                "--exchange must be 1 to 255 bytes without control characters (the empty name is the broker's default exchange, which cannot be declared or bound), got `{}`",
                self.exchange.escape_debug()
            ));
        }
        if let Err(reason) = check_routing_key_template(&self.routing_key_template) {
            return bad(format!(
                "--routing-key `{}` {reason}",
                self.routing_key_template.escape_debug()
            ));
        }
        if !(1..=MAX_PARTITIONS).contains(&self.partitions) {
            return bad(format!(
                "--partitions must be 1 to {MAX_PARTITIONS}, got {}",
                self.partitions
            ));
        }
        let partitioned = self
            .routing_key_template
            .contains(outbox_topology::PARTITION_PLACEHOLDER);
        if self.partitions > 1 && !partitioned {
            return bad(format!(
                "--partitions {} needs `{{partition}}` in --routing-key (e.g. `{{category}}.{{event_type}}.{{partition}}`), got `{}`: without it every partition queue would receive nothing",
                self.partitions,
                self.routing_key_template.escape_debug()
            ));
        }
        if partitioned
            && let Err(error) =
                outbox_topology::partition_binding_key(&self.routing_key_template, 0)
        {
            return bad(format!("--routing-key: {error}"));
        }
        if !(self.retry.factor >= 1.0 && self.retry.factor.is_finite()) {
            return bad(format!(
                "--retry-factor must be a number >= 1, got {}",
                self.retry.factor
            ));
        }
        if !(1..=MAX_BATCH_SIZE).contains(&self.batch_size) {
            return bad(format!("--batch-size must be 1 to {MAX_BATCH_SIZE}"));
        }
        if !(1..=MAX_IN_FLIGHT_BATCHES).contains(&self.in_flight_batches) {
            return bad(format!(
                "--in-flight-batches must be 1 to {MAX_IN_FLIGHT_BATCHES}"
            ));
        }
        if self.poll_interval.is_zero() || self.poll_min_interval.is_zero() {
            return bad(
                "--poll-interval and --poll-min-interval must be above zero (a relay polling without pause takes a core)"
                    .to_owned(),
            );
        }
        if self.poll_min_interval > self.poll_interval {
            return bad(format!(
                "--poll-min-interval ({:?}) must not exceed --poll-interval ({:?})",
                self.poll_min_interval, self.poll_interval
            ));
        }
        if !(1..=MAX_MAX_ATTEMPTS).contains(&self.max_attempts) {
            return bad(format!("--max-attempts must be 1 to {MAX_MAX_ATTEMPTS}"));
        }
        if self.publish_timeout.is_zero() || self.confirm_timeout.is_zero() {
            return bad("--publish-timeout and --confirm-timeout must be above zero".to_owned());
        }
        let needed = self.worst_case_wave() + SETTLE_RESERVE;
        if self.lease <= needed {
            return bad(format!(
                "--lease ({:?}) must be longer than --publish-timeout + --confirm-timeout + {:?} for the settle ({:?}): a wave could outlive its lease, and another relay publish the same events meanwhile",
                self.lease, SETTLE_RESERVE, needed
            ));
        }
        if self.max_message_size < 1024 {
            return bad(format!(
                "--max-message-size ({}) must be at least 1024 bytes",
                self.max_message_size
            ));
        }
        if !(1..=u64::from(u16::MAX)).contains(&self.heartbeat.as_secs())
            || self.heartbeat.subsec_nanos() != 0
        {
            return bad(format!(
                "--heartbeat must be whole seconds from 1s to {}s, got {:?}",
                u16::MAX,
                self.heartbeat
            ));
        }
        if self.db_timeout < Duration::from_secs(1) {
            return bad(format!(
                "--db-timeout must be at least 1s, got {:?}",
                self.db_timeout
            ));
        }
        if self.relay_id.is_empty() || self.relay_id.len() > 200 {
            return bad("--relay-id must be 1 to 200 bytes".to_owned());
        }
        Ok(())
    }
}

/// `<host>-<pid>-<random>`: unique per process, readable on its leases.
pub fn default_relay_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "relay".to_owned());
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}-{}-{}", std::process::id(), &random[..6])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> RelayConfig {
        RelayConfig::new("postgres://localhost/db", "amqp://localhost")
    }

    #[test]
    fn the_defaults_are_valid() {
        assert_eq!(config().validate(), Ok(()));
    }

    #[test]
    fn a_lease_shorter_than_the_worst_wave_is_refused_by_name() {
        let mut short = config();
        short.lease = Duration::from_secs(20);
        short.confirm_timeout = Duration::from_secs(15);
        short.publish_timeout = Duration::from_secs(5);
        let error = short.validate().unwrap_err();
        assert!(error.0.contains("--lease"), "{error}");
        assert!(error.0.contains("--confirm-timeout"), "{error}");
        short.lease = Duration::from_secs(22);
        assert_eq!(short.validate(), Ok(()));
    }

    #[test]
    fn other_impossible_settings_are_refused() {
        let mut c = config();
        c.batch_size = 0;
        assert!(c.validate().is_err());
        let mut c = config();
        c.publish_timeout = Duration::ZERO;
        assert!(c.validate().is_err());
        let mut c = config();
        c.max_message_size = 10;
        assert!(c.validate().is_err());
        let mut c = config();
        c.relay_id = String::new();
        assert!(c.validate().is_err());
        let mut c = config();
        c.amqp_url = "http://guest:secret@localhost".to_owned();
        let error = c.validate().unwrap_err().0;
        assert!(
            error.contains("--amqp-url") && !error.contains("secret"),
            "{error}"
        );
        let mut c = config();
        c.retry.factor = 0.5;
        assert!(c.validate().unwrap_err().0.contains("--retry-factor"));
        let mut c = config();
        c.in_flight_batches = 0;
        assert!(c.validate().is_err());
        c.in_flight_batches = MAX_IN_FLIGHT_BATCHES + 1;
        assert!(c.validate().is_err());
        let mut c = config();
        c.poll_interval = Duration::ZERO;
        assert!(c.validate().unwrap_err().0.contains("--poll-interval"));
        let mut c = config();
        c.exchange = String::new();
        assert!(c.validate().unwrap_err().0.contains("--exchange"));
        let mut c = config();
        c.routing_key_template = "{category}.{type}".to_owned();
        assert!(c.validate().unwrap_err().0.contains("--routing-key"));
        let mut c = config();
        c.poll_min_interval = Duration::from_secs(2);
        assert!(c.validate().unwrap_err().0.contains("--poll-min-interval"));
    }

    #[test]
    fn partitions_need_a_partition_word_in_the_routing_key() {
        let mut c = config();
        c.partitions = 8;
        assert!(c.validate().unwrap_err().0.contains("needs `{partition}`"));
        c.routing_key_template = "{category}.{event_type}.{partition}".to_owned();
        assert_eq!(c.validate(), Ok(()));
        c.routing_key_template = "{category}.{event_type}.p{partition}".to_owned();
        assert!(
            c.validate()
                .unwrap_err()
                .0
                .contains("no `{partition}` word")
        );
        c.routing_key_template = "{category}.{event_type}.{partition}".to_owned();
        c.partitions = 0;
        assert!(c.validate().unwrap_err().0.contains("--partitions"));
        c.partitions = MAX_PARTITIONS + 1;
        assert!(c.validate().unwrap_err().0.contains("--partitions"));
        // The largest partition number counts towards the 255 bytes.
        let long = format!("{}.{{partition}}", "k".repeat(251));
        assert!(
            check_routing_key_template(&long)
                .unwrap_err()
                .contains("over AMQP")
        );
        let fits = format!("{}.{{partition}}", "k".repeat(250));
        assert_eq!(check_routing_key_template(&fits), Ok(()));
    }

    #[test]
    fn a_frame_or_channel_limit_the_broker_would_refuse_is_refused_by_name() {
        let mut c = config();
        c.amqp_url = "amqp://guest:s3cret@a:5672/%2f?frame_max=1000".to_owned();
        let error = c.validate().unwrap_err().0;
        assert!(
            error.contains("frame_max=1000 is below AMQP's minimum frame size, 4096")
                && error.contains("--amqp-url amqp://guest:***@a")
                && !error.contains("s3cret"),
            "{error}"
        );
        c.amqp_url = "amqp://guest:s3cret@a:5672/%2f?channel_max=2".to_owned();
        let error = c.validate().unwrap_err().0;
        assert!(
            error.contains("channel_max=2 is below the 3 channels the relay opens"),
            "{error}"
        );
        c.in_flight_batches = 2;
        c.validate().unwrap();
        c.amqp_url = "amqp://guest:s3cret@a:5672/%2f?frame_max=4096&channel_max=0".to_owned();
        c.validate().unwrap();
    }

    #[test]
    fn every_node_of_an_amqp_url_list_is_checked_by_name_with_its_password_masked() {
        let mut c = config();
        c.amqp_url =
            " amqp://guest:s3cret@a:5672/%2f , amqps://guest:s3cret@b:5671/%2f,".to_owned();
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(
            amqp_nodes(&c.amqp_url),
            [
                "amqp://guest:s3cret@a:5672/%2f",
                "amqps://guest:s3cret@b:5671/%2f"
            ]
        );
        assert_eq!(
            mask_amqp_nodes(&c.amqp_url),
            "amqp://guest:***@a:5672/%2f,amqps://guest:***@b:5671/%2f"
        );
        c.amqp_url = "amqp://guest:s3cret@a:5672/%2f,http://guest:s3cret@b/".to_owned();
        let error = c.validate().unwrap_err().0;
        assert!(
            error.contains("node 2 of 2") && error.contains("b/"),
            "{error}"
        );
        assert!(!error.contains("s3cret"), "{error}");
        c.amqp_url = " , ".to_owned();
        assert!(c.validate().unwrap_err().0.contains("--amqp-url is empty"));
    }

    #[test]
    fn a_missing_or_empty_ca_file_is_refused_by_name() {
        let mut c = config();
        let missing = std::env::temp_dir().join(format!("no-such-ca-{}.pem", std::process::id()));
        c.amqp_ca_file = Some(missing.clone());
        let error = c.validate().unwrap_err().0;
        assert!(
            error.contains("--amqp-ca-file") && error.contains(&missing.display().to_string()),
            "{error}"
        );
        let empty = std::env::temp_dir().join(format!("empty-ca-{}.pem", uuid::Uuid::new_v4()));
        std::fs::write(&empty, "not a certificate").unwrap();
        c.amqp_ca_file = Some(empty.clone());
        let error = c.validate().unwrap_err().0;
        let _ = std::fs::remove_file(&empty);
        assert!(error.contains("no PEM certificate"), "{error}");
    }

    #[test]
    fn routing_key_templates_are_checked_before_the_relay_starts() {
        for good in [
            "{category}.{event_type}",
            "{tenant_id}.{category}.{event_type}",
            "all-events",
            "évènements.{event_type}",
        ] {
            assert_eq!(check_routing_key_template(good), Ok(()), "{good}");
        }
        for (bad, says) in [
            ("", "empty"),
            (
                "{category}.{eventtype}",
                "unknown placeholder `{eventtype}`",
            ),
            ("{category", "without its `}`"),
            ("category}", "without its `{`"),
            ("a\nb", "control character"),
            (&"k".repeat(256), "over AMQP"),
            (&format!("{}{{event_type}}", "k".repeat(230)), "over AMQP"),
        ] {
            let error = check_routing_key_template(bad).unwrap_err();
            assert!(error.contains(says), "{bad:?}: {error}");
        }
    }
}
