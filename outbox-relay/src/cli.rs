//! Command-line interface: flags and their environment variables. Every default comes from
//! a constant of the library, the same one `RelayConfig::new` uses.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

use outbox_relay::engine::filter::Action;
use outbox_relay::foundation::backoff::BackoffPolicy;
use outbox_relay::foundation::config;
use outbox_relay::foundation::human_duration::HumanDuration;
use outbox_relay::ops::ReplayableStatus;
use outbox_relay::service::wakeup::Mode as WakeupMode;

/// The outbox relay: publishes outbox events to RabbitMQ, and the operator commands around it.
#[derive(Debug, Parser)]
// A flag given twice takes its last value, as in most command-line tools: a wrapper script
// or a container's `args` can override a default it was given.
#[command(name = "outbox-relay", version, about, long_about = None, args_override_self = true)]
pub struct Cli {
    /// Log format.
    #[arg(long, env = "OUTBOX_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The command line: [`Cli`]'s, with every environment variable shown in `--help` as
/// `[env: NAME]`. Clap would otherwise print the variable's current value there
/// (`[env: NAME=value]`: a password, a path), and a stray `=` when it is unset
/// (`[env: OUTBOX_LOG_FORMAT=]`). A flag added later is covered without a word of its own.
pub fn command() -> clap::Command {
    hide_env_values(Cli::command())
}

/// Parses the process's arguments as [`command`] describes them; a usage error, `--help`
/// and `--version` end the process as clap does (exit 2, 0, 0).
pub fn parse() -> Cli {
    let mut command = command();
    let matches = command.get_matches_mut();
    Cli::from_arg_matches(&matches).unwrap_or_else(|error| error.format(&mut command).exit())
}

fn hide_env_values(command: clap::Command) -> clap::Command {
    command
        .mut_args(|arg| {
            if arg.get_env().is_some() {
                arg.hide_env_values(true)
            } else {
                arg
            }
        })
        .mut_subcommands(hide_env_values)
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the relay: deliver pending events until SIGTERM/SIGINT.
    Run(Box<RunArgs>),
    /// Apply the database migrations and sync the catalog table (idempotent); register
    /// services' own event types with --service-events.
    Migrate(MigrateArgs),
    /// Inspect and export the event catalog.
    Catalog(CatalogArgs),
    /// Send dead (or delivered) events again, with their original ids.
    ///
    /// Exit code 3 when no event matched (nothing to replay; the first line says why), 1 on
    /// an error, 2 on a bad flag.
    Replay(ReplayArgs),
    /// Give up dead events for good (status `discarded`), so the later events of their keys
    /// flow again. Never automatic.
    ///
    /// Exit code 3 when no event matched (nothing to discard; the first line says why), 1 on
    /// an error, 2 on a bad flag.
    Discard(DiscardArgs),
    /// Who replayed or discarded which events, and when (dry runs included), newest first.
    ///
    /// Each record: its id, time, action, dry run or not, the actor (`--actor`), the
    /// database role (stamped by the database), how many events, the filter as flags, and
    /// the event ids (the table shows the first two; `--format json` all).
    Audit(AuditArgs),
    /// Counts by status and event type, backlog, oldest pending age; alerts with --max-lag.
    Status(StatusArgs),
    /// Print one event's full row (state, payload, headers, lease) as JSON.
    ///
    /// Its fields always come in this order (unset ones are null): id, status, attempts,
    /// lastError, availableAt, deliveredAt, discardedAt, eventType, schemaRef, category,
    /// tenantId, orderingKey, seq, dedupeKey, occurredAt, createdAt, parked, lockedBy,
    /// lockedUntil, claimToken, headers, payload.
    Inspect(InspectArgs),
    /// Delete delivered events (or inbox records) older than the retention, in small batches.
    Purge(PurgeArgs),
    /// Print how relays learn of new events, or switch it: `notify` (a trigger NOTIFYs from
    /// every inserting transaction; writers pay a database-wide lock at commit) or `poll`
    /// (writers pay nothing; relays poll adaptively).
    Wakeup(WakeupArgs),
}

/// Flags of `replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Take events with this status.
    #[arg(long, value_enum, default_value_t = ReplayableStatus::Dead)]
    pub status: ReplayableStatus,
    #[command(flatten)]
    pub select: SelectArgs,
}

/// Flags of `discard` (dead events only).
#[derive(Debug, Args)]
pub struct DiscardArgs {
    #[command(flatten)]
    pub select: SelectArgs,
}

/// Which events `replay` and `discard` act on, and how.
#[derive(Debug, Args)]
pub struct SelectArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// This event (repeatable).
    #[arg(long = "id", value_name = "UUID")]
    pub ids: Vec<uuid::Uuid>,
    /// Only this event type (the catalog's, or a service's own: `acme.WIDGET_CREATED`).
    #[arg(long)]
    pub event_type: Option<String>,
    /// Only this category (display name or slug).
    #[arg(long)]
    pub category: Option<String>,
    /// Only this tenant.
    #[arg(long, value_name = "UUID")]
    pub tenant: Option<uuid::Uuid>,
    /// Only this ordering key.
    #[arg(long)]
    pub ordering_key: Option<String>,
    /// Only events written at or after: RFC 3339 or an age like 2h / 7d.
    #[arg(long)]
    pub since: Option<String>,
    /// Only events written before: RFC 3339 or an age like 30m.
    #[arg(long)]
    pub until: Option<String>,
    /// At most this many events (oldest first).
    #[arg(long, allow_negative_numbers = true, value_parser = clap::value_parser!(i64).range(1..))]
    pub limit: Option<i64>,
    /// Allow acting without any filter.
    #[arg(long)]
    pub all: bool,
    /// Show what would change (count and a sample) and change nothing (the audit records
    /// the dry run).
    #[arg(long)]
    pub dry_run: bool,
    /// Who is acting, for the audit record (default: $USER).
    #[arg(long, env = "OUTBOX_ACTOR")]
    pub actor: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
}

/// Flags of `audit`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Only records made at or after: RFC 3339 or an age like 2h / 7d.
    #[arg(long)]
    pub since: Option<String>,
    /// Only records made before: RFC 3339 or an age like 30m.
    #[arg(long)]
    pub until: Option<String>,
    /// Only replays or only discards.
    #[arg(long, value_enum)]
    pub action: Option<Action>,
    /// Only records of this actor (the `--actor` of replay and discard).
    #[arg(long)]
    pub actor: Option<String>,
    /// Only records made by this database role (stamped by the database).
    #[arg(long)]
    pub role: Option<String>,
    /// Only records that touched this event (repeatable).
    #[arg(long = "id", value_name = "UUID")]
    pub ids: Vec<uuid::Uuid>,
    /// Only records that touched an event of this catalog type (among the events still in
    /// the table: a purged event is found by --id only).
    #[arg(long)]
    pub event_type: Option<String>,
    /// Only records that touched an event of this category (display name or slug).
    #[arg(long)]
    pub category: Option<String>,
    /// Only records that touched an event of this tenant.
    #[arg(long, value_name = "UUID")]
    pub tenant: Option<uuid::Uuid>,
    /// Only records that touched an event of this ordering key.
    #[arg(long)]
    pub ordering_key: Option<String>,
    /// Leave dry runs out: only changes.
    #[arg(long, conflicts_with = "dry_runs_only")]
    pub changes_only: bool,
    /// Only dry runs.
    #[arg(long)]
    pub dry_runs_only: bool,
    /// At most this many records (newest first).
    #[arg(long, allow_negative_numbers = true, default_value_t = outbox_relay::ops::audit::DEFAULT_LIMIT, value_parser = clap::value_parser!(i64).range(1..=outbox_relay::ops::audit::MAX_LIMIT))]
    pub limit: i64,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
}

/// Output formats of the operator commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Lines for a terminal.
    Text,
    /// JSON for scripts.
    Json,
}

/// Flags of `status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
    /// Event types listed.
    #[arg(long, allow_negative_numbers = true, default_value_t = outbox_relay::ops::status::DEFAULT_TOP, value_parser = clap::value_parser!(i64).range(1..=outbox_relay::ops::status::MAX_TOP))]
    pub top: i64,
    /// Exit with code 3 when the oldest pending event is older than this (an alert for cron or
    /// CI; 1 is an error, 2 a bad flag).
    #[arg(long, allow_hyphen_values = true)]
    pub max_lag: Option<HumanDuration>,
}

/// Flags of `inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// The event id.
    pub id: uuid::Uuid,
}

/// Flags of `purge`.
#[derive(Debug, Args)]
pub struct PurgeArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Delete what is older than this (delivered_at, or processed_at with --inbox).
    #[arg(long, allow_hyphen_values = true, visible_alias = "retention", default_value_t = HumanDuration(outbox_relay::ops::purge::DEFAULT_OLDER_THAN))]
    pub older_than: HumanDuration,
    /// Purge the consumer inbox table instead of delivered events.
    #[arg(long)]
    pub inbox: bool,
    /// Rows deleted per statement.
    #[arg(long, allow_negative_numbers = true, default_value_t = outbox_relay::store::purge::DEFAULT_BATCH, value_parser = clap::value_parser!(i64).range(1..=outbox_relay::store::purge::MAX_BATCH))]
    pub batch_size: i64,
    /// Count what would be deleted and delete nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
}

/// Flags of `wakeup`.
#[derive(Debug, Args)]
pub struct WakeupArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// The mode to switch to; without it, the current mode is printed.
    #[arg(value_enum)]
    pub mode: Option<WakeupMode>,
}

/// Where the database is.
#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// Postgres URL; `?options=-c search_path=<schema>` selects another schema.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = config::DEFAULT_DATABASE_URL,
        hide_env_values = true
    )]
    pub database_url: String,
}

/// Flags of `migrate`.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// A service's own event types to register in the catalog table (repeatable): the JSON
    /// catalog export of its registry (`catalog_types::export::json`). Its catalog events
    /// are skipped; a service event whose name or schema conflicts with a registered one is
    /// refused and nothing is registered.
    #[arg(long, value_name = "FILE")]
    pub service_events: Vec<PathBuf>,
}

/// Flags of `run`.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// AMQP URL (`amqp://` or `amqps://` for TLS); several nodes' URLs separated by commas
    /// fail over round-robin.
    #[arg(
        long,
        env = "AMQP_URL",
        default_value = config::DEFAULT_AMQP_URL,
        hide_env_values = true
    )]
    pub amqp_url: String,
    /// PEM file of CA certificates trusted for `amqps://` brokers besides the system's.
    #[arg(long, env = "OUTBOX_AMQP_CA_FILE")]
    pub amqp_ca_file: Option<PathBuf>,
    /// Durable topic exchange to publish to (declared on start).
    #[arg(long, env = "OUTBOX_EXCHANGE", default_value = config::DEFAULT_EXCHANGE)]
    pub exchange: String,
    /// Routing key template: `{category}` (slug), `{event_type}` (lower case), `{tenant_id}`,
    /// `{partition}` (the event's partition of --partitions, a word of its own).
    #[arg(long, env = "OUTBOX_ROUTING_KEY", default_value = config::DEFAULT_ROUTING_KEY)]
    pub routing_key: String,
    /// Partitions of the partitioned topology: `{partition}` in --routing-key is
    /// crc32(ordering scope) mod N, so each key's events reach one partition queue. Fixed per
    /// deployment (see the operating guide before changing it).
    #[arg(long, allow_negative_numbers = true, env = "OUTBOX_PARTITIONS", default_value_t = config::DEFAULT_PARTITIONS, value_parser = clap::value_parser!(u32).range(1..=i64::from(config::MAX_PARTITIONS)))]
    pub partitions: u32,
    /// Address of /healthz, /readyz and /metrics.
    #[arg(long, env = "OUTBOX_HTTP_ADDR", default_value_t = outbox_relay::service::http::DEFAULT_ADDR)]
    pub http_addr: SocketAddr,
    /// Events claimed per batch.
    #[arg(long, allow_negative_numbers = true, env = "OUTBOX_BATCH_SIZE", default_value_t = config::DEFAULT_BATCH_SIZE, value_parser = clap::value_parser!(u32).range(1..=i64::from(config::MAX_BATCH_SIZE)))]
    pub batch_size: u32,
    /// Longest wait between looks for work: the safety net in wake-up mode `notify`, the idle
    /// ceiling of adaptive polling in mode `poll` (see `outbox-relay wakeup`).
    #[arg(long, allow_hyphen_values = true, env = "OUTBOX_POLL_INTERVAL", default_value_t = HumanDuration(config::DEFAULT_POLL_INTERVAL))]
    pub poll_interval: HumanDuration,
    /// Shortest wait of adaptive polling: the first look after a claim found nothing (each
    /// empty look doubles it, up to --poll-interval).
    #[arg(long, allow_hyphen_values = true, env = "OUTBOX_POLL_MIN_INTERVAL", default_value_t = HumanDuration(config::DEFAULT_POLL_MIN_INTERVAL))]
    pub poll_min_interval: HumanDuration,
    /// Batches in flight at once (claimed, not yet settled), each on a channel of its own.
    #[arg(long, allow_negative_numbers = true, env = "OUTBOX_IN_FLIGHT_BATCHES", default_value_t = config::DEFAULT_IN_FLIGHT_BATCHES, value_parser = clap::value_parser!(u32).range(1..=i64::from(config::MAX_IN_FLIGHT_BATCHES)))]
    pub in_flight_batches: u32,
    /// Never LISTEN, poll adaptively (PgBouncer in transaction mode).
    #[arg(long, env = "OUTBOX_NO_LISTEN")]
    pub no_listen: bool,
    /// Hold no ownership session: claims end only with --lease, not with the relay's process
    /// (PgBouncer in transaction mode, where a session's advisory lock cannot be held).
    #[arg(long, env = "OUTBOX_NO_OWNERSHIP")]
    pub no_ownership: bool,
    /// Publish attempts before an event becomes dead.
    #[arg(long, allow_negative_numbers = true, env = "OUTBOX_MAX_ATTEMPTS", default_value_t = config::DEFAULT_MAX_ATTEMPTS, value_parser = clap::value_parser!(u32).range(1..=i64::from(config::MAX_MAX_ATTEMPTS)))]
    pub max_attempts: u32,
    /// First retry delay (doubles per attempt by default, with jitter).
    #[arg(long, allow_hyphen_values = true, env = "OUTBOX_RETRY_BASE", default_value_t = HumanDuration(BackoffPolicy::PUBLISH_RETRY.base))]
    pub retry_base: HumanDuration,
    /// Growth factor of retry delays.
    #[arg(long, allow_negative_numbers = true, env = "OUTBOX_RETRY_FACTOR", default_value_t = BackoffPolicy::PUBLISH_RETRY.factor)]
    pub retry_factor: f32,
    /// Longest retry delay.
    #[arg(long, allow_hyphen_values = true, env = "OUTBOX_RETRY_CAP", default_value_t = HumanDuration(BackoffPolicy::PUBLISH_RETRY.cap))]
    pub retry_cap: HumanDuration,
    /// Claim lease: how long a claim stays this relay's when its ownership session cannot
    /// tell (a vanished host, a cut-off link); a relay whose process ends loses its claims
    /// at once.
    #[arg(long, allow_hyphen_values = true, env = "OUTBOX_LEASE", default_value_t = HumanDuration(config::DEFAULT_LEASE))]
    pub lease: HumanDuration,
    /// How long to wait for a publisher confirm.
    #[arg(long, allow_hyphen_values = true, env = "OUTBOX_CONFIRM_TIMEOUT", default_value_t = HumanDuration(config::DEFAULT_CONFIRM_TIMEOUT))]
    pub confirm_timeout: HumanDuration,
    /// How long handing a wave to the broker may take (a broker blocking publishers on an
    /// alarm stops reading); the lease must exceed this plus --confirm-timeout plus 1s.
    #[arg(long, allow_hyphen_values = true, env = "OUTBOX_PUBLISH_TIMEOUT", default_value_t = HumanDuration(config::DEFAULT_PUBLISH_TIMEOUT))]
    pub publish_timeout: HumanDuration,
    /// AMQP heartbeat asked of the broker (whole seconds; a `heartbeat` in the URL wins): a
    /// broker link silent for twice as long is dropped and reconnected.
    #[arg(long, allow_hyphen_values = true, env = "OUTBOX_HEARTBEAT", default_value_t = HumanDuration(config::DEFAULT_HEARTBEAT))]
    pub heartbeat: HumanDuration,
    /// Longest wait on the database for one claim, settle or look for work; then the
    /// connection is closed and the step retried on a new one (a silent network path).
    #[arg(long, allow_hyphen_values = true, env = "OUTBOX_DB_TIMEOUT", default_value_t = HumanDuration(config::DEFAULT_DB_TIMEOUT))]
    pub db_timeout: HumanDuration,
    /// Largest message body published, in bytes; a larger event is dead at once (match the
    /// broker's max_message_size).
    #[arg(long, allow_negative_numbers = true, env = "OUTBOX_MAX_MESSAGE_SIZE", default_value_t = config::DEFAULT_MAX_MESSAGE_SIZE)]
    pub max_message_size: usize,
    /// Longest wait for outstanding confirms on SIGTERM.
    #[arg(long, allow_hyphen_values = true, env = "OUTBOX_SHUTDOWN_TIMEOUT", default_value_t = HumanDuration(config::DEFAULT_SHUTDOWN_TIMEOUT))]
    pub shutdown_timeout: HumanDuration,
    /// Delete delivered events older than this, periodically (off by default).
    #[arg(long, allow_hyphen_values = true, env = "OUTBOX_RETENTION")]
    pub retention: Option<HumanDuration>,
    /// How often the backlog gauges are refreshed from the database.
    #[arg(long, allow_hyphen_values = true, env = "OUTBOX_GAUGE_INTERVAL", default_value_t = HumanDuration(config::DEFAULT_GAUGE_INTERVAL))]
    pub gauge_interval: HumanDuration,
    /// Apply migrations before starting.
    #[arg(long, env = "OUTBOX_MIGRATE")]
    pub migrate: bool,
    /// This instance's name on its leases (default: host-pid-random).
    #[arg(long, env = "OUTBOX_RELAY_ID")]
    pub relay_id: Option<String>,
}

/// Flags of `catalog`.
#[derive(Debug, Args)]
pub struct CatalogArgs {
    /// What to show.
    #[command(subcommand)]
    pub command: CatalogCommand,
}

/// The catalog subcommands.
#[derive(Debug, Subcommand)]
pub enum CatalogCommand {
    /// A table of every event: type, category, name, schema ref.
    List,
    /// The whole catalog as JSON, idempotent SQL, a Markdown page, or TypeScript types.
    Export {
        /// Output format.
        #[arg(long, value_enum, default_value_t = ExportFormat::Json)]
        format: ExportFormat,
        /// With `--format sql`: the table the script upserts into.
        #[arg(long, value_enum)]
        table_shape: Option<TableShape>,
        /// Write to this file instead of standard output.
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// The JSON Schema of one event, by event type or schema ref.
    Schema {
        /// `TICKET_STATUS_CHANGED` or `payload.TicketStatusChanged.v1`.
        event: String,
    },
    /// Compare two JSON exports: list every breaking and compatible change per event; exit
    /// non-zero when a change breaks consumers without a schema ref version bump.
    Diff {
        /// The catalog consumers know (e.g. the released `docs/catalog.json`).
        old: PathBuf,
        /// The catalog to check (e.g. `catalog export --format json` of this build).
        new: PathBuf,
        /// Report format.
        #[arg(long, value_enum, default_value_t = DiffFormat::Text)]
        format: DiffFormat,
    },
}

/// The table shape of the SQL export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TableShape {
    /// The outbox's own `system_event_catalog`, keyed by `event_type` (the default).
    Outbox,
    /// The platform's `system_event_catalog`: `event_id uuid` (UUIDv5 of the event type)
    /// primary key, `event_type` unique, `created_at` / `updated_at`.
    Platform,
}

/// Report formats of `catalog diff`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DiffFormat {
    /// One line per change, grouped by event, and a verdict.
    Text,
    /// `{"breaking": bool, "events": [...]}`, for tools.
    Json,
}

/// Export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// Every entry with its payload schema.
    Json,
    /// Upserts into `system_event_catalog` (creates the table if absent); see `--table-shape`.
    Sql,
    /// The human-readable catalog page.
    Markdown,
    /// TypeScript declarations: an interface per payload and a union keyed by event type.
    Typescript,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every argument of `command` and of its subcommands, with the path to it.
    fn arguments(command: &clap::Command, path: &str, out: &mut Vec<(String, clap::Arg)>) {
        for arg in command.get_arguments() {
            out.push((format!("{path} --{}", arg.get_id()), arg.clone()));
        }
        for sub in command.get_subcommands() {
            arguments(sub, &format!("{path} {}", sub.get_name()), out);
        }
    }

    #[test]
    fn no_help_shows_the_value_of_an_environment_variable() {
        let mut all = Vec::new();
        arguments(&command(), "outbox-relay", &mut all);
        let with_env: Vec<_> = all
            .iter()
            .filter(|(_, arg)| arg.get_env().is_some())
            .collect();
        assert!(with_env.len() > 20, "{}", with_env.len());
        for (path, arg) in with_env {
            assert!(arg.is_hide_env_values_set(), "{path}");
        }
        command().debug_assert();
    }

    #[test]
    fn inspect_documents_its_field_order() {
        let about = command()
            .find_subcommand("inspect")
            .and_then(|sub| sub.get_long_about())
            .map(|about| {
                about
                    .to_string()
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default();
        let order = outbox_relay::ops::inspect::FIELDS.join(", ");
        assert!(about.contains(&format!("{order}.")), "{about}");
    }

    #[test]
    fn replay_and_discard_document_their_exit_code_for_nothing_to_do() {
        let code = outbox_relay::ops::replay::NOTHING_TO_DO_EXIT_CODE;
        let command = command();
        for name in ["replay", "discard"] {
            let about = command
                .find_subcommand(name)
                .and_then(|sub| sub.get_long_about())
                .map(ToString::to_string)
                .unwrap_or_default();
            assert!(
                about.contains(&format!("Exit code {code} when no event matched")),
                "{name}: {about}"
            );
        }
    }
}
