//! A consumer that applies each event exactly once, built on the `outbox-consumer` library:
//! the library records the inbox row, runs this consumer's handler (a row in
//! `demo_projection`) in the same transaction, commits, then acknowledges; it retries a
//! failing handler, parks what cannot be applied in the dead-letter queue (`<queue>.dead`),
//! and reconnects. This file is the command line around it: settings, setup and teardown.
//!
//! It has no defaults for where it works: every command needs the broker (`--amqp-url`), the
//! queue (`--queue`) and, to apply events, the database (`--database-url`), as flags or
//! environment variables, and without them it stops before connecting anywhere. It creates
//! only what it is told to, and says what it created:
//!
//! - `consumer setup` declares the queue and its dead-letter queue, binds the queue to the
//!   relay's exchange (declared when absent, as the relay declares it) and creates the
//!   projection table (`--ledger`: the ledger tables too). Idempotent; `--reset` deletes the
//!   queues first. With `--partitions N` the queue is the partitioned topology's N queues
//!   `<queue>.0` to `<queue>.<N-1>` (single active consumer, each bound to its partition by
//!   the relay's `--routing-key`), so any number of `consumer run` processes keep each key's
//!   order.
//! - `consumer run` consumes from a queue that exists, into tables that exist; it creates
//!   nothing unless given `--setup` (the same work as `setup`, first).
//! - `consumer teardown` deletes the queues, and on request the exchange (only when no other
//!   queue is bound to it, `--delete-exchange`) and the tables (`--drop-tables`).
//!
//! `--ledger` also records every applied event (`consumer_ledger`: message id, ordering
//! key, when) and every duplicate the inbox absorbed (`consumer_skipped`, through the
//! library's `Handler::on_duplicate`), each in the transaction of its inbox record, so a test
//! can check exactly-once and per-key order from the database even across kills of the
//! consumer. `--no-inbox` skips the inbox check (the library's `ConsumerConfig::inbox`) and
//! applies every delivery: what a consumer without an inbox does, to show the duplicates the
//! inbox prevents (never for real use).

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use lapin::options::{
    ExchangeDeclareOptions, ExchangeDeleteOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection, ConnectionProperties, ErrorKind, ExchangeKind};
use outbox_consumer::topology;
use outbox_consumer::{
    BoxError, Consumer, ConsumerConfig, Event, Handler, Settled, Source, Stopper,
};
use sqlx::{PgConnection, PgPool};

/// The AMQP heartbeat asked of the broker unless the URL sets one: a link that goes silent
/// is dropped within twice this.
const HEARTBEAT_SECONDS: u16 = 5;

/// How long connecting to the broker or the database may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How often `run` checks whether it has been idle for `--idle`.
const IDLE_CHECK: Duration = Duration::from_millis(250);

/// The effect: one row per event type, counting the events applied.
const PROJECTION_TABLE: &str = "demo_projection";
/// `--ledger`: every applied event, and every duplicate the inbox absorbed.
const LEDGER_TABLES: [&str; 2] = ["consumer_ledger", "consumer_skipped"];
/// The inbox, created by the outbox's migrations (`outbox-relay migrate`).
const INBOX_TABLE: &str = "outbox_inbox";

/// The environment variables of the settings without which nothing starts (the message for
/// a missing one names them).
const REQUIRED_VARIABLES: &str = "DATABASE_URL, AMQP_URL, CONSUMER_QUEUE and, for `setup` \
     and `run --setup`, OUTBOX_EXCHANGE";

/// The example consumer of the outbox: applies each event once through the inbox.
#[derive(Debug, Parser)]
#[command(
    name = "consumer",
    version,
    about,
    long_about = "The example consumer of the outbox: applies each event exactly once (the inbox \
                  record and the effect commit together; the ack follows the commit).\n\n\
                  It has no defaults for where it works and creates only what it is told to: \
                  `setup` creates the queue, its bindings and the tables and says which it \
                  created; `run` consumes from a queue and into tables that exist; `teardown` \
                  removes them on request.",
    args_override_self = true
)]
struct Cli {
    /// What to do.
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create what `run` needs, each only if absent, and say what was created: the queue (or
    /// the --partitions queues) and its dead-letter queue, its bindings to the relay's
    /// exchange (declared as a durable topic exchange when absent, as the relay declares it)
    /// and the projection table (with --ledger, the ledger tables).
    Setup(SetupArgs),
    /// Consume from the queue and apply each event once, until --expect messages came or
    /// none came for --idle seconds. Creates nothing unless given --setup.
    Run(RunArgs),
    /// Delete the queues and, when asked, the exchange (only if no other queue is bound to
    /// it) and the tables `setup` creates.
    Teardown(TeardownArgs),
}

/// Where the messages come from.
#[derive(Debug, Args)]
struct BrokerArgs {
    /// RabbitMQ URL (amqp:// or amqps://), e.g. amqp://user:password@host:5672/%2f.
    #[arg(long, env = "AMQP_URL", value_name = "URL", hide_env_values = true)]
    amqp_url: String,
    /// The consumer's queue (one per logical consumer; replicas share it). With
    /// --partitions, the partition queues' prefix: `<NAME>.0` to `<NAME>.<N-1>`. Its
    /// dead-letter queue is `<NAME>.dead`.
    #[arg(
        long,
        env = "CONSUMER_QUEUE",
        value_name = "NAME",
        hide_env_values = true
    )]
    queue: String,
    /// Read the partitioned topology's N queues (the relay's --partitions) instead of one
    /// queue: each key's order then holds across any number of consumer processes.
    #[arg(long, env = "CONSUMER_PARTITIONS", value_name = "N", value_parser = clap::value_parser!(u32).range(1..=i64::from(topology::MAX_PARTITIONS)))]
    partitions: Option<u32>,
}

impl BrokerArgs {
    /// The queues read: the plain queue or the partition queues.
    fn source(&self) -> Source {
        match self.partitions {
            Some(partitions) => Source::Partitions {
                prefix: self.queue.clone(),
                partitions,
            },
            None => Source::Queue(self.queue.clone()),
        }
    }
}

/// Where the effects go.
#[derive(Debug, Args)]
struct DatabaseArgs {
    /// PostgreSQL URL of the consumer's database (holding the inbox: `outbox-relay migrate`).
    #[arg(long, env = "DATABASE_URL", value_name = "URL", hide_env_values = true)]
    database_url: String,
}

/// Queue types a consumer can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum QueueType {
    /// A classic queue: one node (fine on a development broker).
    Classic,
    /// A quorum queue: replicated, for production.
    Quorum,
}

/// Flags of `setup`.
#[derive(Debug, Args)]
struct SetupArgs {
    #[command(flatten)]
    database: DatabaseArgs,
    #[command(flatten)]
    broker: BrokerArgs,
    /// The relay's exchange to bind the queue to.
    #[arg(
        long,
        env = "OUTBOX_EXCHANGE",
        value_name = "NAME",
        hide_env_values = true
    )]
    exchange: String,
    /// Binding key of the plain queue (repeatable).
    #[arg(long = "binding", value_name = "KEY", default_value = "#")]
    bindings: Vec<String>,
    /// With --partitions: the relay's routing key template (its --routing-key), whose
    /// `{partition}` word binds each partition queue.
    #[arg(
        long,
        env = "OUTBOX_ROUTING_KEY",
        value_name = "TEMPLATE",
        hide_env_values = true
    )]
    routing_key: Option<String>,
    /// The queues' type when they are created (default: the broker's `default_queue_type`;
    /// quorum for partition queues).
    #[arg(long, value_enum)]
    queue_type: Option<QueueType>,
    /// Also create the ledger tables (`consumer_ledger`, `consumer_skipped`).
    #[arg(long)]
    ledger: bool,
    /// Delete the queue first (its messages are lost), so it starts empty.
    #[arg(long)]
    reset: bool,
}

/// Flags of `run`.
#[derive(Debug, Args)]
struct RunArgs {
    #[command(flatten)]
    database: DatabaseArgs,
    #[command(flatten)]
    broker: BrokerArgs,
    /// Do `setup`'s work first (needs --exchange).
    #[arg(long, requires = "exchange")]
    setup: bool,
    /// With --setup: the relay's exchange to bind the queue to.
    #[arg(
        long,
        env = "OUTBOX_EXCHANGE",
        value_name = "NAME",
        hide_env_values = true
    )]
    exchange: Option<String>,
    /// With --setup: binding key of the plain queue (repeatable).
    #[arg(long = "binding", value_name = "KEY", default_value = "#")]
    bindings: Vec<String>,
    /// With --setup and --partitions: the relay's routing key template.
    #[arg(
        long,
        env = "OUTBOX_ROUTING_KEY",
        value_name = "TEMPLATE",
        hide_env_values = true
    )]
    routing_key: Option<String>,
    /// With --setup: the queue's type when it is created.
    #[arg(long, value_enum, requires = "setup")]
    queue_type: Option<QueueType>,
    /// The consumer's name in the inbox: a redelivery is recognised per name.
    #[arg(
        long,
        env = "CONSUMER_NAME",
        value_name = "NAME",
        hide_env_values = true,
        default_value = "demo-projection"
    )]
    consumer_name: String,
    /// Stop after this many messages (default: no limit).
    #[arg(long, value_name = "N")]
    expect: Option<usize>,
    /// Stop after this many seconds without a message.
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    idle: u64,
    /// Unacknowledged messages the broker may send ahead, per queue (basic.qos).
    #[arg(long, value_name = "N", default_value_t = 50, value_parser = clap::value_parser!(u16).range(1..))]
    prefetch: u16,
    /// Record every applied event and every absorbed duplicate in the ledger tables.
    #[arg(long)]
    ledger: bool,
    /// Apply every delivery without the inbox check, to show the duplicates the inbox
    /// prevents. Never for real use.
    #[arg(long)]
    no_inbox: bool,
}

/// Flags of `teardown`.
#[derive(Debug, Args)]
struct TeardownArgs {
    #[command(flatten)]
    broker: BrokerArgs,
    /// Also delete this exchange, if no other queue is bound to it.
    #[arg(long, value_name = "NAME")]
    delete_exchange: Option<String>,
    /// Delete the queues even while a consumer reads them or messages wait in them (they are
    /// lost). Without it, such a queue is kept and `teardown` fails saying why.
    #[arg(long)]
    force: bool,
    /// Also drop the tables `setup` creates (needs --database-url).
    #[arg(long, requires = "database_url")]
    drop_tables: bool,
    /// PostgreSQL URL of the consumer's database (for --drop-tables).
    #[arg(long, env = "DATABASE_URL", value_name = "URL", hide_env_values = true)]
    database_url: Option<String>,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let missing = error.kind() == clap::error::ErrorKind::MissingRequiredArgument;
            // Help and version go to stdout with 0; bad flags to stderr with 2.
            let _ = error.print();
            if missing {
                eprintln!(
                    "The consumer has no defaults for where it works: give each setting as a \
                     flag or its environment variable ({REQUIRED_VARIABLES}). Nothing was \
                     connected to or created."
                );
            }
            return ExitCode::from(u8::try_from(error.exit_code()).unwrap_or(2));
        }
    };
    // The library's warnings (a lost connection, a failing handler), never a URL.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::new("outbox_consumer=warn"))
        .init();
    let urls = cli.command.urls();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("consumer: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli.command.execute()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!(
                "consumer: {}",
                without_passwords(&format!("{error:#}"), &urls)
            );
            ExitCode::FAILURE
        }
    }
}

/// `message` with the passwords of `urls` hidden: the messages name the URLs masked already,
/// and client libraries sometimes echo what they were given. The masked URLs are kept as they
/// are (a user name that is also the password stays readable there).
fn without_passwords(message: &str, urls: &[String]) -> String {
    let masked: Vec<String> = urls.iter().map(|url| mask_url(url)).collect();
    let mut text = message.to_owned();
    for (index, url) in masked.iter().enumerate() {
        text = text.replace(url.as_str(), &format!("\u{0}{index}\u{0}"));
    }
    let secrets: Vec<String> = urls.iter().filter_map(|url| password_of(url)).collect();
    let mut text = redact(&text, &secrets);
    for (index, url) in masked.iter().enumerate() {
        text = text.replace(&format!("\u{0}{index}\u{0}"), url);
    }
    text
}

impl Command {
    /// The URLs given, whose passwords no message may show.
    fn urls(&self) -> Vec<String> {
        match self {
            Command::Setup(args) => vec![
                args.broker.amqp_url.clone(),
                args.database.database_url.clone(),
            ],
            Command::Run(args) => vec![
                args.broker.amqp_url.clone(),
                args.database.database_url.clone(),
            ],
            Command::Teardown(args) => {
                let mut urls = vec![args.broker.amqp_url.clone()];
                urls.extend(args.database_url.clone());
                urls
            }
        }
    }

    async fn execute(self) -> Result<()> {
        match self {
            Command::Setup(args) => setup(args).await,
            Command::Run(args) => run(args).await,
            Command::Teardown(args) => teardown(args).await,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------------------

/// What `setup` (and `run --setup`) creates.
struct Layout<'a> {
    source: Source,
    exchange: &'a str,
    bindings: &'a [String],
    routing_key: Option<&'a str>,
    queue_type: Option<QueueType>,
    ledger: bool,
    reset: bool,
}

async fn setup(args: SetupArgs) -> Result<()> {
    // Both settings checked before connecting to either, both connections made before
    // anything is created.
    let uri = amqp_uri(&args.broker.amqp_url)?;
    let connect = database_options(&args.database.database_url)?;
    let broker = Broker::connect(&args.broker.amqp_url, uri).await?;
    let pool = connect_database(&args.database.database_url, connect, 2).await?;
    let layout = Layout {
        source: args.broker.source(),
        exchange: &args.exchange,
        bindings: &args.bindings,
        routing_key: args.routing_key.as_deref(),
        queue_type: args.queue_type,
        ledger: args.ledger,
        reset: args.reset,
    };
    create(&broker, &pool, &layout).await?;
    if !table_exists(&pool, INBOX_TABLE).await? {
        println!(
            "note: the inbox table {INBOX_TABLE} does not exist yet; `outbox-relay migrate` creates it"
        );
    }
    broker.close().await;
    Ok(())
}

async fn run(args: RunArgs) -> Result<()> {
    let uri = amqp_uri(&args.broker.amqp_url)?;
    let connect = database_options(&args.database.database_url)?;
    let source = args.broker.source();
    let queues = source.queues();
    let broker = Broker::connect(&args.broker.amqp_url, uri).await?;
    // A connection per queue handled at once, and one to spare.
    let connections = u32::try_from(queues.len())
        .unwrap_or(u32::MAX)
        .saturating_add(1);
    let pool = connect_database(&args.database.database_url, connect, connections).await?;
    if args.setup {
        let exchange = args
            .exchange
            .as_deref()
            .context("--setup needs --exchange (or OUTBOX_EXCHANGE)")?;
        let layout = Layout {
            source: source.clone(),
            exchange,
            bindings: &args.bindings,
            routing_key: args.routing_key.as_deref(),
            queue_type: args.queue_type,
            ledger: args.ledger,
            reset: false,
        };
        create(&broker, &pool, &layout).await?;
    }

    // Everything it uses must exist: it creates nothing it was not told to.
    let partitions = args
        .broker
        .partitions
        .map(|n| format!(" --partitions {n} --routing-key <the relay's template>"))
        .unwrap_or_default();
    for queue in &queues {
        if !broker.queue_exists(queue).await? {
            bail!(
                "queue {queue:?} does not exist on the broker {}: create it with `consumer setup \
                 --queue {}{partitions} --exchange <the relay's exchange>` (or `consumer run \
                 --setup`), or fix --queue",
                broker.masked,
                args.broker.queue
            );
        }
    }
    let mut tables = vec![PROJECTION_TABLE];
    if args.ledger {
        tables.extend(LEDGER_TABLES);
    }
    for table in tables {
        if !table_exists(&pool, table).await? {
            bail!(
                "table {table} does not exist in the database {}: `consumer setup{}` creates it",
                mask_url(&args.database.database_url),
                if args.ledger { " --ledger" } else { "" }
            );
        }
    }
    if !args.no_inbox && !table_exists(&pool, INBOX_TABLE).await? {
        bail!(
            "the inbox table {INBOX_TABLE} does not exist in the database {}: run `outbox-relay \
             migrate` on it (or call `outbox_core::migrate`)",
            mask_url(&args.database.database_url)
        );
    }
    let dead = source.dead_letter_queue();
    if !broker.queue_exists(&dead).await? {
        bail!(
            "the dead-letter queue {dead:?} does not exist on the broker {}: `consumer setup \
             --queue {}{partitions}` creates it (what cannot be applied is parked there)",
            broker.masked,
            args.broker.queue
        );
    }
    broker.close().await;

    let mut config = ConsumerConfig::new(
        args.broker.amqp_url.clone(),
        args.consumer_name.clone(),
        source,
    );
    config.prefetch = args.prefetch;
    config.heartbeat = HEARTBEAT_SECONDS;
    config.connect_timeout = CONNECT_TIMEOUT;
    config.inbox = !args.no_inbox;
    let stopper = Stopper::new();
    let progress = Arc::new(Progress {
        expect: args.expect.unwrap_or(usize::MAX),
        applied: AtomicUsize::new(0),
        skipped: AtomicUsize::new(0),
        dead_lettered: AtomicUsize::new(0),
        last: Mutex::new(Instant::now()),
        stopper: stopper.clone(),
    });
    let handler = Projection {
        ledger: args.ledger,
        progress: progress.clone(),
    };
    let consumer = Consumer::new(config, pool, handler)
        .map_err(|error| anyhow!(error))?
        .with_stopper(stopper.clone());
    let idle = tokio::spawn(stop_when_idle(
        progress.clone(),
        Duration::from_secs(args.idle),
    ));
    let outcome = consumer.run(terminated()).await;
    idle.abort();
    outcome.map_err(|error| anyhow!(error))?;
    let dead_lettered = progress.dead_lettered.load(Ordering::Relaxed);
    println!(
        "consumer {}: {} applied, {} duplicates skipped{}",
        args.consumer_name,
        progress.applied.load(Ordering::Relaxed),
        progress.skipped.load(Ordering::Relaxed),
        if dead_lettered > 0 {
            format!(", {dead_lettered} dead-lettered")
        } else {
            String::new()
        }
    );
    Ok(())
}

async fn teardown(args: TeardownArgs) -> Result<()> {
    let uri = amqp_uri(&args.broker.amqp_url)?;
    let database = match (&args.database_url, args.drop_tables) {
        (Some(url), true) => Some((url.as_str(), database_options(url)?)),
        _ => None,
    };
    let broker = Broker::connect(&args.broker.amqp_url, uri).await?;
    let pool = match database {
        Some((url, connect)) => Some(connect_database(url, connect, 2).await?),
        None => None,
    };

    let source = args.broker.source();
    let dead = source.dead_letter_queue();
    let mut kept_queues = Vec::new();
    for queue in source.queues().into_iter().chain([dead.clone()]) {
        if queue == dead && !kept_queues.is_empty() {
            // Its queue stays, and may still park messages there.
            println!("kept queue {dead}: the queue it serves is kept");
            break;
        }
        if !broker.queue_exists(&queue).await? {
            println!("queue {queue} does not exist: nothing to delete");
            continue;
        }
        let channel = broker.channel().await?;
        let options = QueueDeleteOptions {
            if_unused: !args.force,
            if_empty: !args.force,
            ..QueueDeleteOptions::default()
        };
        match channel.queue_delete(queue.as_str().into(), options).await {
            Ok(dropped) => println!("deleted queue {queue} ({dropped} messages in it dropped)"),
            Err(error) if reply_code(&error) == Some(406) => {
                println!("kept queue {queue}: a consumer reads it or messages wait in it");
                kept_queues.push(queue);
            }
            Err(error) => {
                return Err(broker.error(&format!("deleting queue {queue:?}"), &error));
            }
        }
    }
    if !kept_queues.is_empty() {
        broker.close().await;
        bail!(
            "queue {} was kept: a consumer reads it or messages wait in it; stop the consumer \
             and let it drain, or pass --force to delete it anyway (its messages are lost)",
            kept_queues
                .iter()
                .map(|q| format!("{q:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }

    let mut kept = None;
    if let Some(exchange) = args.delete_exchange.as_deref() {
        if broker.exchange_exists(exchange).await? {
            let channel = broker.channel().await?;
            let options = ExchangeDeleteOptions {
                if_unused: true,
                ..ExchangeDeleteOptions::default()
            };
            match channel.exchange_delete(exchange.into(), options).await {
                Ok(()) => println!("deleted exchange {exchange}"),
                Err(error) if reply_code(&error) == Some(406) => {
                    println!("kept exchange {exchange}: other queues are bound to it");
                    kept = Some(exchange);
                }
                Err(error) => {
                    return Err(broker.error(&format!("deleting exchange {exchange:?}"), &error));
                }
            }
        } else {
            println!("exchange {exchange} does not exist: nothing to delete");
        }
    }

    if let Some(pool) = &pool {
        for table in [PROJECTION_TABLE].into_iter().chain(LEDGER_TABLES) {
            if table_exists(pool, table).await? {
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP TABLE {table}")))
                    .execute(pool)
                    .await
                    .map_err(|e| anyhow!("dropping table {table}: {}", database_error(&e)))?;
                println!("dropped table {table}");
            }
        }
    }
    broker.close().await;
    if let Some(exchange) = kept {
        bail!(
            "exchange {exchange:?} is still in use (other queues are bound to it), so it was \
             kept; delete those queues first"
        );
    }
    Ok(())
}

/// The `x-queue-type` argument of `queue_type` (none: the broker's default type).
fn queue_arguments(queue_type: Option<QueueType>) -> FieldTable {
    let mut arguments = FieldTable::default();
    if let Some(kind) = queue_type {
        let kind = match kind {
            QueueType::Classic => "classic",
            QueueType::Quorum => "quorum",
        };
        arguments.insert("x-queue-type".into(), AMQPValue::LongString(kind.into()));
    }
    arguments
}

/// Creates what `layout` names, each only if absent, and says which it created. The
/// declarations are `outbox-topology`'s, the ones the relay and the consumer library use.
async fn create(broker: &Broker, pool: &PgPool, layout: &Layout<'_>) -> Result<()> {
    let queues = layout.source.queues();
    let dead = layout.source.dead_letter_queue();
    if layout.reset {
        for queue in queues.iter().chain([&dead]) {
            if broker.queue_exists(queue).await? {
                let channel = broker.channel().await?;
                let dropped = channel
                    .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                    .await
                    .map_err(|e| broker.error(&format!("deleting queue {queue:?}"), &e))?;
                println!("deleted queue {queue} (--reset; {dropped} messages in it dropped)");
            }
        }
    }

    let exchange = layout.exchange;
    let existed = broker.exchange_exists(exchange).await?;
    let channel = broker.channel().await?;
    topology::declare_exchange(&channel, exchange)
        .await
        .map_err(|e| {
            broker.error(
                &format!("declaring exchange {exchange:?} (durable topic, as the relay's)"),
                &e,
            )
        })?;
    if existed {
        println!("exchange {exchange} exists");
    } else {
        println!("created exchange {exchange} (durable topic)");
    }

    let mut existed = Vec::with_capacity(queues.len());
    for queue in &queues {
        existed.push(broker.queue_exists(queue).await?);
    }
    // Declared even when they exist: a queue of another type or with other arguments is
    // refused here, not later.
    let bound: Vec<Vec<String>> = match &layout.source {
        Source::Queue(queue) => {
            topology::declare_bound_queue(
                &channel,
                queue,
                queue_arguments(layout.queue_type),
                exchange,
                &[],
            )
            .await
            .map_err(|e| broker.error(&format!("declaring queue {queue:?}"), &e))?;
            for key in layout.bindings {
                topology::bind_queue(&channel, queue, exchange, key)
                    .await
                    .map_err(|e| {
                        broker.error(&format!("binding queue {queue:?} with {key:?}"), &e)
                    })?;
            }
            vec![layout.bindings.to_vec()]
        }
        Source::Partitions { prefix, partitions } => {
            let template = layout.routing_key.context(
                "--partitions needs --routing-key (or OUTBOX_ROUTING_KEY): the relay's routing \
                 key template, with a {partition} word, binds each partition queue",
            )?;
            let queue_type = match layout.queue_type {
                Some(QueueType::Classic) => topology::QueueType::Classic,
                Some(QueueType::Quorum) | None => topology::QueueType::Quorum,
            };
            topology::declare_partitions(
                &channel,
                exchange,
                prefix,
                *partitions,
                template,
                queue_type,
            )
            .await
            .map_err(|error| match error {
                topology::TopologyError::Broker(e) => {
                    broker.error(&format!("declaring the partition queues {prefix}.*"), &e)
                }
                other => anyhow!(other),
            })?;
            (0..*partitions)
                .map(|partition| {
                    topology::partition_binding_key(template, partition).map(|key| vec![key])
                })
                .collect::<Result<_, _>>()?
        }
    };
    for ((queue, existed), keys) in queues.iter().zip(existed).zip(bound) {
        if existed {
            println!("queue {queue} exists");
        } else {
            println!("created queue {queue} (durable)");
        }
        for key in keys {
            println!("bound queue {queue} to exchange {exchange} with {key}");
        }
    }

    let existed = broker.queue_exists(&dead).await?;
    topology::declare_bound_queue(&channel, &dead, queue_arguments(layout.queue_type), "", &[])
        .await
        .map_err(|e| broker.error(&format!("declaring queue {dead:?}"), &e))?;
    if existed {
        println!("queue {dead} exists");
    } else {
        println!("created queue {dead} (durable; dead letters)");
    }
    let _ = channel.close(200, "done".into()).await;

    let mut tables = vec![(
        PROJECTION_TABLE,
        "CREATE TABLE demo_projection (event_type text PRIMARY KEY, applied bigint NOT NULL)",
    )];
    if layout.ledger {
        tables.push((
            "consumer_ledger",
            "CREATE TABLE consumer_ledger (
                 n bigserial PRIMARY KEY, message_id text NOT NULL, ordering_key text,
                 applied_at timestamptz NOT NULL DEFAULT clock_timestamp())",
        ));
        tables.push((
            "consumer_skipped",
            "CREATE TABLE consumer_skipped (
                 n bigserial PRIMARY KEY, message_id text NOT NULL,
                 skipped_at timestamptz NOT NULL DEFAULT clock_timestamp())",
        ));
    }
    for (table, statement) in tables {
        if table_exists(pool, table).await? {
            println!("table {table} exists");
            continue;
        }
        sqlx::raw_sql(statement)
            .execute(pool)
            .await
            .map_err(|e| anyhow!("creating table {table}: {}", database_error(&e)))?;
        println!("created table {table}");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Consuming: the handler the library calls
// ---------------------------------------------------------------------------------------

/// What `run` has seen, and when it last saw a message.
struct Progress {
    /// Stop once this many events were applied or skipped as duplicates.
    expect: usize,
    applied: AtomicUsize,
    skipped: AtomicUsize,
    dead_lettered: AtomicUsize,
    last: Mutex<Instant>,
    stopper: Stopper,
}

impl Progress {
    fn seen(&self) {
        if let Ok(mut last) = self.last.lock() {
            *last = Instant::now();
        }
    }

    fn idle_for(&self) -> Duration {
        self.last
            .lock()
            .map_or(Duration::ZERO, |last| last.elapsed())
    }
}

/// The effect: `demo_projection` counts the events applied per type; with `--ledger`, every
/// applied event and every absorbed duplicate gets a row, in the inbox's transaction.
struct Projection {
    ledger: bool,
    progress: Arc<Progress>,
}

impl Handler for Projection {
    async fn handle(&self, tx: &mut PgConnection, event: &Event) -> Result<(), BoxError> {
        if self.ledger {
            sqlx::query("INSERT INTO consumer_ledger (message_id, ordering_key) VALUES ($1, $2)")
                .bind(event.id.to_string())
                .bind(event.ordering_key.as_deref())
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "INSERT INTO demo_projection VALUES ($1, 1)
             ON CONFLICT (event_type) DO UPDATE SET applied = demo_projection.applied + 1",
        )
        .bind(&event.event_type)
        .execute(&mut *tx)
        .await?;
        Ok(())
    }

    async fn on_duplicate(&self, tx: &mut PgConnection, event: &Event) -> Result<(), BoxError> {
        if self.ledger {
            sqlx::query("INSERT INTO consumer_skipped (message_id) VALUES ($1)")
                .bind(event.id.to_string())
                .execute(&mut *tx)
                .await?;
        }
        Ok(())
    }

    fn settled(&self, settled: Settled<'_>) {
        let progress = &self.progress;
        progress.seen();
        let counted = match settled {
            Settled::Applied(event) => {
                println!("applied   {:<28} {}", event.event_type, event.id);
                &progress.applied
            }
            Settled::Duplicate(event) => {
                println!(
                    "duplicate {:<28} {} (already applied, skipped)",
                    event.event_type, event.id
                );
                &progress.skipped
            }
            Settled::DeadLettered { event, reason } => {
                match event {
                    Some(event) => {
                        println!("dead-lettered {} {}: {reason}", event.event_type, event.id)
                    }
                    None => println!("dead-lettered a message: {reason}"),
                }
                progress.dead_lettered.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        counted.fetch_add(1, Ordering::Relaxed);
        let seen =
            progress.applied.load(Ordering::Relaxed) + progress.skipped.load(Ordering::Relaxed);
        if seen >= progress.expect {
            progress.stopper.stop();
        }
    }
}

/// Stops the consumer once no message came for `idle`.
async fn stop_when_idle(progress: Arc<Progress>, idle: Duration) {
    while !progress.stopper.is_stopped() {
        tokio::time::sleep(IDLE_CHECK).await;
        if progress.idle_for() >= idle {
            progress.stopper.stop();
        }
    }
}

/// Completes on SIGTERM or Ctrl-C: the consumer drains (the messages being handled commit
/// and are acknowledged) and exits.
async fn terminated() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = term => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

// ---------------------------------------------------------------------------------------
// Connections
// ---------------------------------------------------------------------------------------

/// A checked `--amqp-url`: one amqp:// or amqps:// URL; the error names the flag, with the
/// password masked.
fn amqp_uri(url: &str) -> Result<lapin::uri::AMQPUri> {
    let masked = mask_url(url);
    if !(url.starts_with("amqp://") || url.starts_with("amqps://")) {
        bail!("--amqp-url {masked}: expected an amqp:// or amqps:// URL");
    }
    let mut uri: lapin::uri::AMQPUri = url.parse().map_err(|error: String| {
        let secrets: Vec<String> = password_of(url).into_iter().collect();
        anyhow!("--amqp-url {masked}: {}", redact(&error, &secrets))
    })?;
    uri.query.heartbeat.get_or_insert(HEARTBEAT_SECONDS);
    Ok(uri)
}

/// A checked `--database-url`: the error names the flag, with the password masked.
fn database_options(url: &str) -> Result<sqlx::postgres::PgConnectOptions> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        bail!(
            "--database-url {}: expected a postgres:// or postgresql:// URL",
            mask_url(url)
        );
    }
    let secrets: Vec<String> = password_of(url).into_iter().collect();
    url.parse().map_err(|error: sqlx::Error| {
        anyhow!(
            "--database-url {}: {}",
            mask_url(url),
            redact(&error.to_string(), &secrets)
        )
    })
}

async fn connect_database(
    url: &str,
    options: sqlx::postgres::PgConnectOptions,
    connections: u32,
) -> Result<PgPool> {
    use sqlx::Connection as _;
    let refused = |cause: String| anyhow!("cannot use the database {}: {cause}", mask_url(url));
    // One connection first, on its own: a pool would retry a refusal until its timeout and
    // report only that it timed out.
    let first = tokio::time::timeout(CONNECT_TIMEOUT, sqlx::PgConnection::connect_with(&options))
        .await
        .map_err(|_| {
            refused(format!(
                "no answer within {CONNECT_TIMEOUT:?} (is the host reachable?)"
            ))
        })?
        .map_err(|error| refused(database_error(&error)))?;
    let _ = first.close().await;
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(connections)
        .acquire_timeout(CONNECT_TIMEOUT)
        .connect_with(options)
        .await
        .map_err(|error| refused(database_error(&error)))
}

/// A database error in a few words, with what to do where that is clear.
fn database_error(error: &sqlx::Error) -> String {
    match error {
        sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            "connection refused: is PostgreSQL running and listening at that host and port?"
                .to_owned()
        }
        sqlx::Error::Io(io) => format!("network error: {io}"),
        sqlx::Error::Database(db) => {
            let message = db.message();
            match db.code().as_deref() {
                Some("3D000") => {
                    format!("{message}: create it, or fix the database name in the URL")
                }
                Some("28P01" | "28000") => format!("{message}: check the user and password"),
                Some("42501") => format!("{message}: the role lacks a grant"),
                _ => message.to_owned(),
            }
        }
        other => other.to_string(),
    }
}

async fn table_exists(pool: &PgPool, table: &str) -> Result<bool> {
    sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(table)
        .fetch_one(pool)
        .await
        .map_err(|e| anyhow!("looking for table {table}: {}", database_error(&e)))
}

/// The broker connection of `setup`, `teardown` and `run`'s checks (the library makes its
/// own), and the broker's URL with its password masked for messages.
struct Broker {
    connection: Connection,
    masked: String,
}

impl Broker {
    async fn connect(url: &str, uri: lapin::uri::AMQPUri) -> Result<Self> {
        let masked = mask_url(url);
        let connection = tokio::time::timeout(
            CONNECT_TIMEOUT,
            Connection::connect_uri(uri, ConnectionProperties::default()),
        )
        .await
        .map_err(|_| {
            anyhow!(
                "cannot connect to the broker {masked}: no answer within {CONNECT_TIMEOUT:?} \
                 (is the host reachable?)"
            )
        })?
        .map_err(|error| {
            let cause = match reply_code(&error) {
                Some(403) => "access refused: check the user name and password".to_owned(),
                Some(530) => format!(
                    "{}: check the virtual host in the URL (the path; %2f is `/`)",
                    protocol_message(&error)
                ),
                _ => protocol_message(&error),
            };
            anyhow!("cannot connect to the broker {masked}: {cause}")
        })?;
        Ok(Broker { connection, masked })
    }

    async fn channel(&self) -> Result<Channel> {
        self.connection
            .create_channel()
            .await
            .map_err(|e| self.error("opening a channel", &e))
    }

    /// Whether `queue` exists (a passive declare, on a channel of its own: a missing queue
    /// closes the channel).
    async fn queue_exists(&self, queue: &str) -> Result<bool> {
        let channel = self.channel().await?;
        let passive = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        let outcome = channel
            .queue_declare(queue.into(), passive, FieldTable::default())
            .await;
        self.existence(channel, outcome.map(|_| ()), &format!("queue {queue:?}"))
            .await
    }

    /// Whether `exchange` exists (a passive declare, as [`Broker::queue_exists`]).
    async fn exchange_exists(&self, exchange: &str) -> Result<bool> {
        let channel = self.channel().await?;
        let passive = ExchangeDeclareOptions {
            passive: true,
            ..ExchangeDeclareOptions::default()
        };
        let outcome = channel
            .exchange_declare(
                exchange.into(),
                ExchangeKind::Topic,
                passive,
                FieldTable::default(),
            )
            .await;
        self.existence(channel, outcome, &format!("exchange {exchange:?}"))
            .await
    }

    async fn existence(
        &self,
        channel: Channel,
        outcome: Result<(), lapin::Error>,
        what: &str,
    ) -> Result<bool> {
        match outcome {
            Ok(()) => {
                let _ = channel.close(200, "done".into()).await;
                Ok(true)
            }
            Err(error) if reply_code(&error) == Some(404) => Ok(false),
            Err(error) => Err(self.error(&format!("looking for {what}"), &error)),
        }
    }

    /// A broker error in words: what was being done, the broker, the broker's reply.
    fn error(&self, doing: &str, error: &lapin::Error) -> anyhow::Error {
        let reply = protocol_message(error);
        let hint = match reply_code(error) {
            Some(406) => {
                ": it exists with other properties (type, durability or arguments); \
                          delete it or use another name"
            }
            Some(403) => ": the user lacks the permission (configure, write or read) for it",
            _ => "",
        };
        anyhow!("{doing} on the broker {}: {reply}{hint}", self.masked)
    }

    async fn close(self) {
        let _ = self.connection.close(200, "done".into()).await;
    }
}

/// The AMQP reply code of a broker refusal (404 not found, 406 precondition failed, ...).
fn reply_code(error: &lapin::Error) -> Option<u16> {
    match error.kind() {
        ErrorKind::ProtocolError(amqp) => Some(amqp.get_id()),
        _ => None,
    }
}

/// The broker's own words for a refusal (`NOT_FOUND - no queue 'x' in vhost '/'`), or the
/// client's error; never a frame dump.
fn protocol_message(error: &lapin::Error) -> String {
    match error.kind() {
        ErrorKind::ProtocolError(amqp) => amqp.get_message().as_str().to_owned(),
        _ => error.to_string(),
    }
}

// ---------------------------------------------------------------------------------------
// Passwords out of messages
// ---------------------------------------------------------------------------------------

/// The user-info of `url` (between `://` and the last `@` before the query), as a range: a
/// password holding an unencoded `@` or `/` is taken whole.
fn userinfo(url: &str) -> Option<(usize, usize)> {
    let start = url.find("://")? + 3;
    let end = url[start..]
        .find(['?', '#'])
        .map_or(url.len(), |i| start + i);
    url[start..end].rfind('@').map(|at| (start, start + at))
}

/// `url` with its password (in the user-info or a `password=` query parameter) shown as
/// `***`; the rest as given.
fn mask_url(url: &str) -> String {
    let mut masked = match userinfo(url) {
        Some((start, at)) => match url[start..at].find(':') {
            Some(colon) => format!("{}:***{}", &url[..start + colon], &url[at..]),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    };
    if let Some(query_start) = masked.find('?') {
        let query: Vec<String> = masked[query_start + 1..]
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
                _ => pair.to_owned(),
            })
            .collect();
        masked = format!("{}?{}", &masked[..query_start], query.join("&"));
    }
    masked
}

/// The password of `url` as given and percent-decoded, for [`redact`].
fn password_of(url: &str) -> Option<String> {
    let from_userinfo = userinfo(url).and_then(|(start, at)| {
        url[start..at]
            .split_once(':')
            .map(|(_, password)| password.to_owned())
    });
    from_userinfo
        .or_else(|| {
            let query = &url[url.find('?')? + 1..];
            query.split('&').find_map(|pair| {
                pair.split_once('=')
                    .filter(|(key, _)| key.eq_ignore_ascii_case("password"))
                    .map(|(_, value)| value.to_owned())
            })
        })
        .filter(|password| !password.is_empty())
}

/// `text` with every occurrence of each secret (as given, and percent-decoded) replaced by
/// `***`: client libraries sometimes echo the URL they were given.
fn redact(text: &str, secrets: &[String]) -> String {
    let mut text = text.to_owned();
    for secret in secrets {
        let decoded = url::form_urlencoded::parse(format!("x={secret}").as_bytes())
            .next()
            .map(|(_, value)| value.into_owned());
        for form in [Some(secret.clone()), decoded].into_iter().flatten() {
            if form.len() >= 3 {
                text = text.replace(form.as_str(), "***");
            }
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_masked_in_every_form() {
        assert_eq!(
            mask_url("amqp://guest:s3cret@127.0.0.1:5672/%2f"),
            "amqp://guest:***@127.0.0.1:5672/%2f"
        );
        assert_eq!(
            mask_url("http://guest:s3cr3tpw@mq/"),
            "http://guest:***@mq/"
        );
        assert_eq!(
            mask_url("postgres://postgres@127.0.0.1/test"),
            "postgres://postgres@127.0.0.1/test"
        );
        let odd = "amqp://u:S3c@ret/Pw@127.0.0.1:5672/v";
        assert_eq!(mask_url(odd), "amqp://u:***@127.0.0.1:5672/v");
        assert_eq!(password_of(odd).as_deref(), Some("S3c@ret/Pw"));
        let query = mask_url("postgres://db/main?user=app&password=hunter2&sslmode=require");
        assert_eq!(
            query,
            "postgres://db/main?user=app&password=***&sslmode=require"
        );
        let secret = password_of("postgres://app:pa%40ss@db/main").unwrap_or_default();
        assert_eq!(
            redact("auth failed for pa@ss (pa%40ss)", &[secret]),
            "auth failed for *** (***)"
        );
    }
}
