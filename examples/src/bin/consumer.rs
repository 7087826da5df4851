//! A consumer that applies each event exactly once: the inbox record and the effect (a row in
//! `demo_projection`) commit together, and the message is acked only after the commit.
//!
//! It has no defaults for where it works: every command needs the broker (`--amqp-url`), the
//! queue (`--queue`) and, to apply events, the database (`--database-url`), as flags or
//! environment variables, and without them it stops before connecting anywhere. It creates
//! only what it is told to, and says what it created:
//!
//! - `consumer setup` declares the queue, binds it to the relay's exchange (declared when
//!   absent, as the relay declares it) and creates the projection table (`--ledger`: the
//!   ledger tables too). Idempotent; `--reset` deletes the queue first.
//! - `consumer run` consumes from a queue that exists, into tables that exist; it creates
//!   nothing unless given `--setup` (the same work as `setup`, first).
//! - `consumer teardown` deletes the queue, and on request the exchange (only when no other
//!   queue is bound to it, `--delete-exchange`) and the tables (`--drop-tables`).
//!
//! `--ledger` also records every applied event (`consumer_ledger`: message id, ordering
//! key, when) and every duplicate the inbox absorbed (`consumer_skipped`), each in the
//! transaction of its inbox record, so a test can check exactly-once and per-key order from
//! the database even across kills of the consumer. `--no-inbox` skips the inbox check and
//! applies every delivery: what a consumer without an inbox does, to show the duplicates
//! the inbox prevents (never for real use).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicQosOptions, BasicRejectOptions,
    ExchangeDeclareOptions, ExchangeDeleteOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection, ConnectionProperties, ErrorKind, ExchangeKind};
use outbox_core::InboxOutcome;
use outbox_relay::broker::topology;
use outbox_relay::foundation::config::connect_options;
use outbox_relay::foundation::diagnosis;
use outbox_relay::foundation::mask::{mask_url, password_of, redact};
use sqlx::PgPool;

/// The AMQP heartbeat asked of the broker unless the URL sets one: a link that goes silent
/// is dropped within twice this.
const HEARTBEAT_SECONDS: u16 = 5;

/// How long connecting to the broker or the database may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How often a consumer waiting for a delivery checks that its connection is still up. A
/// lost connection ends the consumer with an error (its supervisor starts another; the
/// unacked messages go to the new one), rather than a wait on a stream that may never
/// yield again.
const LINK_CHECK: Duration = Duration::from_secs(1);

/// How long an ack may take to leave before the connection is taken for lost.
const ACK_TIMEOUT: Duration = Duration::from_secs(10);

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
    /// Create what `run` needs, each only if absent, and say what was created: the queue,
    /// its bindings to the relay's exchange (declared as a durable topic exchange when
    /// absent, as the relay declares it) and the projection table (with --ledger, the ledger
    /// tables).
    Setup(SetupArgs),
    /// Consume from the queue and apply each event once, until --expect messages came or
    /// none came for --idle seconds. Creates nothing unless given --setup.
    Run(RunArgs),
    /// Delete the queue and, when asked, the exchange (only if no other queue is bound to
    /// it) and the tables `setup` creates.
    Teardown(TeardownArgs),
}

/// Where the messages come from.
#[derive(Debug, Args)]
struct BrokerArgs {
    /// RabbitMQ URL (amqp:// or amqps://), e.g. amqp://user:password@host:5672/%2f.
    #[arg(long, env = "AMQP_URL", value_name = "URL", hide_env_values = true)]
    amqp_url: String,
    /// The consumer's queue (one per logical consumer; replicas share it).
    #[arg(
        long,
        env = "CONSUMER_QUEUE",
        value_name = "NAME",
        hide_env_values = true
    )]
    queue: String,
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
    /// Binding key (repeatable).
    #[arg(long = "binding", value_name = "KEY", default_value = "#")]
    bindings: Vec<String>,
    /// The queue's type when it is created (default: the broker's `default_queue_type`).
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
    /// With --setup: binding key (repeatable).
    #[arg(long = "binding", value_name = "KEY", default_value = "#")]
    bindings: Vec<String>,
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
    /// Unacknowledged messages the broker may send ahead (basic.qos).
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
    /// Delete the queue even while a consumer reads it or messages wait in it (they are
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
    queue: &'a str,
    exchange: &'a str,
    bindings: &'a [String],
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
    let pool = connect_database(&args.database.database_url, connect).await?;
    let layout = Layout {
        queue: &args.broker.queue,
        exchange: &args.exchange,
        bindings: &args.bindings,
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
    let broker = Broker::connect(&args.broker.amqp_url, uri).await?;
    let pool = connect_database(&args.database.database_url, connect).await?;
    let queue = args.broker.queue.as_str();
    if args.setup {
        let exchange = args
            .exchange
            .as_deref()
            .context("--setup needs --exchange (or OUTBOX_EXCHANGE)")?;
        let layout = Layout {
            queue,
            exchange,
            bindings: &args.bindings,
            queue_type: args.queue_type,
            ledger: args.ledger,
            reset: false,
        };
        create(&broker, &pool, &layout).await?;
    }

    // Everything it uses must exist: it creates nothing it was not told to.
    if !broker.queue_exists(queue).await? {
        bail!(
            "queue {queue:?} does not exist on the broker {}: create it with `consumer setup \
             --queue {queue} --exchange <the relay's exchange>` (or `consumer run --setup`), \
             or fix --queue",
            broker.masked
        );
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

    let options = ConsumeOptions {
        consumer: &args.consumer_name,
        expect: args.expect.unwrap_or(usize::MAX),
        idle: Duration::from_secs(args.idle),
        prefetch: args.prefetch,
        ledger: args.ledger,
        use_inbox: !args.no_inbox,
    };
    let outcome = consume(&broker, &pool, queue, &options).await;
    broker.close().await;
    let (applied, skipped) = outcome?;
    println!(
        "consumer {}: {applied} applied, {skipped} duplicates skipped",
        args.consumer_name
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
        Some((url, connect)) => Some(connect_database(url, connect).await?),
        None => None,
    };

    let queue = args.broker.queue.as_str();
    if broker.queue_exists(queue).await? {
        let channel = broker.channel().await?;
        let options = QueueDeleteOptions {
            if_unused: !args.force,
            if_empty: !args.force,
            ..QueueDeleteOptions::default()
        };
        let dropped = match channel.queue_delete(queue.into(), options).await {
            Ok(dropped) => dropped,
            Err(error) if reply_code(&error) == Some(406) => {
                broker.close().await;
                bail!(
                    "queue {queue:?} was kept: a consumer reads it or messages wait in it; \
                     stop the consumer and let it drain, or pass --force to delete it anyway \
                     (its messages are lost)"
                );
            }
            Err(error) => {
                return Err(broker.error(&format!("deleting queue {queue:?}"), &error));
            }
        };
        println!("deleted queue {queue} ({dropped} messages in it dropped)");
    } else {
        println!("queue {queue} does not exist: nothing to delete");
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
                    .map_err(|e| anyhow!("dropping table {table}: {}", diagnosis::database(&e)))?;
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

/// Creates what `layout` names, each only if absent, and says which it created.
async fn create(broker: &Broker, pool: &PgPool, layout: &Layout<'_>) -> Result<()> {
    let queue = layout.queue;
    if layout.reset && broker.queue_exists(queue).await? {
        let channel = broker.channel().await?;
        let dropped = channel
            .queue_delete(queue.into(), QueueDeleteOptions::default())
            .await
            .map_err(|e| broker.error(&format!("deleting queue {queue:?}"), &e))?;
        println!("deleted queue {queue} (--reset; {dropped} messages in it dropped)");
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

    let existed = broker.queue_exists(queue).await?;
    let mut arguments = FieldTable::default();
    if let Some(kind) = layout.queue_type {
        let kind = match kind {
            QueueType::Classic => "classic",
            QueueType::Quorum => "quorum",
        };
        arguments.insert("x-queue-type".into(), AMQPValue::LongString(kind.into()));
    }
    // Declared even when it exists: a queue of another type or with other arguments is
    // refused here, not later.
    let declare = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    channel
        .queue_declare(queue.into(), declare, arguments)
        .await
        .map_err(|e| broker.error(&format!("declaring queue {queue:?}"), &e))?;
    if existed {
        println!("queue {queue} exists");
    } else {
        println!("created queue {queue} (durable)");
    }
    for key in layout.bindings {
        topology::bind_queue(&channel, queue, exchange, key)
            .await
            .map_err(|e| broker.error(&format!("binding queue {queue:?} with {key:?}"), &e))?;
        println!("bound queue {queue} to exchange {exchange} with {key}");
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
            .map_err(|e| anyhow!("creating table {table}: {}", diagnosis::database(&e)))?;
        println!("created table {table}");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Consuming
// ---------------------------------------------------------------------------------------

struct ConsumeOptions<'a> {
    consumer: &'a str,
    expect: usize,
    idle: Duration,
    prefetch: u16,
    ledger: bool,
    use_inbox: bool,
}

/// Applies deliveries until `expect` came or none came for `idle`: (applied, skipped).
async fn consume(
    broker: &Broker,
    pool: &PgPool,
    queue: &str,
    options: &ConsumeOptions<'_>,
) -> Result<(usize, usize)> {
    let channel = broker.channel().await?;
    channel
        .basic_qos(options.prefetch, BasicQosOptions::default())
        .await
        .map_err(|e| broker.error("setting the prefetch", &e))?;
    let mut deliveries = channel
        .basic_consume(
            queue.into(),
            options.consumer.into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| broker.error(&format!("consuming from queue {queue:?}"), &e))?;
    let (mut applied, mut skipped) = (0usize, 0usize);
    let mut idle_for = Duration::ZERO;
    while applied + skipped < options.expect {
        let delivery = match tokio::time::timeout(LINK_CHECK, deliveries.next()).await {
            Ok(Some(delivery)) => delivery.map_err(|e| broker.error("receiving", &e))?,
            Ok(None) => break,
            Err(_) => {
                if !broker.connection.status().connected() {
                    bail!("lost the connection to the broker {}", broker.masked);
                }
                idle_for += LINK_CHECK;
                if idle_for >= options.idle {
                    break;
                }
                continue;
            }
        };
        idle_for = Duration::ZERO;
        let message_id = delivery
            .properties
            .message_id()
            .as_ref()
            .map(|m| m.as_str().to_owned())
            .filter(|m| !m.is_empty());
        let event_type = delivery
            .properties
            .kind()
            .as_ref()
            .map(|k| k.as_str().to_owned())
            .unwrap_or_default();
        let Some(message_id) = message_id else {
            // Not from the relay: the inbox cannot apply it once. Refused (to the queue's
            // dead-letter exchange, if it has one), not applied.
            delivery
                .reject(BasicRejectOptions { requeue: false })
                .await
                .map_err(|e| broker.error("rejecting a message", &e))?;
            println!("rejected  {event_type:<28} (no message_id: not from the outbox)");
            continue;
        };
        let ordering_key = delivery
            .properties
            .headers()
            .as_ref()
            .and_then(|headers| headers.inner().get("x-ordering-key"))
            .and_then(|value| match value {
                AMQPValue::LongString(s) => {
                    Some(String::from_utf8_lossy(s.as_bytes()).into_owned())
                }
                AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
                _ => None,
            });
        let outcome = apply(
            pool,
            options,
            &message_id,
            &event_type,
            ordering_key.as_deref(),
        )
        .await
        .map_err(|e| match e.downcast_ref::<sqlx::Error>() {
            Some(db) => anyhow!("applying {message_id}: {}", diagnosis::database(db)),
            None => e.context(format!("applying {message_id}")),
        })?;
        match outcome {
            InboxOutcome::Process => {
                applied += 1;
                println!("applied   {event_type:<28} {message_id}");
            }
            InboxOutcome::AlreadyProcessed => {
                skipped += 1;
                println!("duplicate {event_type:<28} {message_id} (already applied, skipped)");
            }
        }
        // After the commit: a crash in between redelivers, and the inbox dedupes.
        tokio::time::timeout(ACK_TIMEOUT, delivery.ack(BasicAckOptions::default()))
            .await
            .map_err(|_| anyhow!("the ack did not leave in time: broker connection lost"))?
            .map_err(|e| broker.error("acknowledging", &e))?;
    }
    Ok((applied, skipped))
}

/// The inbox record and the effect, in one transaction.
async fn apply(
    pool: &PgPool,
    options: &ConsumeOptions<'_>,
    message_id: &str,
    event_type: &str,
    ordering_key: Option<&str>,
) -> Result<InboxOutcome> {
    let mut tx = pool.begin().await?;
    let outcome = if options.use_inbox {
        outbox_core::inbox::record(&mut tx, options.consumer, message_id).await?
    } else {
        InboxOutcome::Process
    };
    match outcome {
        InboxOutcome::Process => {
            if options.ledger {
                sqlx::query(
                    "INSERT INTO consumer_ledger (message_id, ordering_key) VALUES ($1, $2)",
                )
                .bind(message_id)
                .bind(ordering_key)
                .execute(&mut *tx)
                .await?;
            }
            sqlx::query(
                "INSERT INTO demo_projection VALUES ($1, 1)
                 ON CONFLICT (event_type) DO UPDATE SET applied = demo_projection.applied + 1",
            )
            .bind(event_type)
            .execute(&mut *tx)
            .await?;
        }
        InboxOutcome::AlreadyProcessed => {
            if options.ledger {
                sqlx::query("INSERT INTO consumer_skipped (message_id) VALUES ($1)")
                    .bind(message_id)
                    .execute(&mut *tx)
                    .await?;
            }
        }
    }
    tx.commit().await?;
    Ok(outcome)
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

/// A checked `--database-url` (the relay's own check: the error names the flag, with the
/// password masked).
fn database_options(url: &str) -> Result<sqlx::postgres::PgConnectOptions> {
    connect_options(url).map_err(|reason| anyhow!(reason))
}

async fn connect_database(url: &str, options: sqlx::postgres::PgConnectOptions) -> Result<PgPool> {
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
        .map_err(|error| refused(diagnosis::database(&error)))?;
    let _ = first.close().await;
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(CONNECT_TIMEOUT)
        .connect_with(options)
        .await
        .map_err(|error| refused(diagnosis::database(&error)))
}

async fn table_exists(pool: &PgPool, table: &str) -> Result<bool> {
    sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(table)
        .fetch_one(pool)
        .await
        .map_err(|e| anyhow!("looking for table {table}: {}", diagnosis::database(&e)))
}

/// The broker connection, and the broker's URL with its password masked for messages.
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
