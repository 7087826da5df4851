//! Benchmarks of the delivery engine, each in a database (and exchange) of its own that is
//! dropped at the end, also after an error or Ctrl-C.
//!
//! - `claim-shapes`: the cost of one claim on five backlog shapes of `--rows` pending rows,
//!   optionally with `EXPLAIN (ANALYZE, BUFFERS)` of every statement the claim runs;
//! - `blocked-drain`: the drain rate of in-process relays, without and with a dead head that
//!   has `--blocked` events waiting behind it;
//! - `ceiling`, `drain`, `scale-out`, `resources`, `latency`: what the broker takes without a
//!   database, the relay's drain against it, several relays, the relay process's memory and
//!   CPU, and commit → consumer latency at a fixed rate;
//! - `consumer`: the consumer library against the same consumer hand-written with lapin;
//! - `soak`: minutes of production-like load with relay processes killed on a schedule:
//!   latency, backlog, database size and relay memory per minute, then loss, order and
//!   duplicates (not part of `all`);
//! - `all`: every scenario, one report; `render`: its plots and the generated part of
//!   `docs/benchmarks.md` (`scripts/bench-report` does both).
//!
//! `cargo run --release -p outbox-bench -- claim-shapes --explain`; results and their
//! reading are in `docs/benchmarks.md`.

mod all;
mod broker;
mod ceiling;
mod consumer;
mod drain;
mod drain_rate;
mod emit_cost;
mod harness;
mod latency;
mod load;
mod machine;
mod render;
mod resources;
mod scale_out;
mod shapes;
mod soak;
mod steps;
mod summary;

use std::io::Write as _;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use clap::{Parser, Subcommand};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};
use uuid::Uuid;

/// Benchmarks of the outbox delivery engine (claim cost per backlog shape, drain rate).
#[derive(Debug, Parser)]
#[command(name = "outbox-bench", version)]
struct Cli {
    /// Server on which the benchmark creates (and drops) a database of its own.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = outbox_relay::foundation::config::DEFAULT_DATABASE_URL,
        global = true
    )]
    database_url: String,
    /// Broker on which `blocked-drain` creates (and deletes) an exchange and a queue.
    #[arg(
        long,
        env = "AMQP_URL",
        default_value = outbox_relay::foundation::config::DEFAULT_AMQP_URL,
        global = true
    )]
    amqp_url: String,
    /// Print one JSON document on stdout instead of Markdown tables (progress goes to stderr).
    #[arg(long, global = true)]
    json: bool,
    /// Keep the benchmark database afterwards (its name is printed) instead of dropping it.
    #[arg(long, global = true)]
    keep_database: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Time `claim` on five backlog shapes (hot keys, dead head, leased head, one key per
    /// row, retrying head).
    ClaimShapes(shapes::Args),
    /// Drain rate of in-process relays, without and with a dead head holding `--blocked`
    /// events behind it.
    BlockedDrain(drain::Args),
    /// Confirmed publishes of envelope-sized messages, no database: the broker's ceiling.
    Ceiling(ceiling::Args),
    /// One relay draining a backlog, as a ratio of the ceiling measured in the same run.
    Drain(drain_rate::Args),
    /// The drain with 1, 2 and 3 relays.
    ScaleOut(scale_out::Args),
    /// Peak RSS and CPU of the relay process (the release binary) draining a backlog.
    Resources(resources::Args),
    /// Commit → consumer latency of one-event transactions at a fixed rate.
    Latency(latency::Args),
    /// Minutes of production-like load, relay processes SIGKILLed on a schedule: per-minute
    /// latency, backlog, database size, relay RSS; then loss, rollbacks, order, duplicates
    /// (exits non-zero on a loss, a delivered rollback or an order violation).
    Soak(soak::Args),
    /// Every scenario with its defaults, one report (claim-shapes at fewer rows).
    All(all::Args),
    /// SVG plots and the generated part of `docs/benchmarks.md` from `all --json`.
    Render(render::Args),
    /// The consumer library's throughput against the same consumer hand-written with lapin
    /// (same handler, partitions, prefetch; one run each).
    Consumer(consumer::Args),
    /// What an emitted event costs a one-row domain transaction (library, plain SQL, batch)
    /// against a plain INSERT, and what NOTIFY costs on top.
    EmitCost(emit_cost::Args),
}

/// A database of the benchmark's own, migrated.
pub struct Scratch {
    /// The database's name.
    pub name: String,
    /// Its URL (for relays, which build their own pools).
    pub url: String,
    /// A pool on it.
    pub pool: PgPool,
}

/// Where the benchmark's databases are made, and the prefix of their names.
pub struct Server {
    admin_url: String,
    admin: PgConnectOptions,
    /// `outbox_bench_<random>`: every database of this run starts with it.
    pub prefix: String,
}

impl Server {
    fn new(admin_url: &str) -> Result<Server> {
        Ok(Server {
            admin_url: admin_url.to_owned(),
            admin: admin_url.parse().context("--database-url")?,
            prefix: format!("outbox_bench_{}", &Uuid::new_v4().simple().to_string()[..8]),
        })
    }

    /// Creates and migrates the database `<prefix><suffix>`.
    pub async fn create(&self, suffix: &str) -> Result<Scratch> {
        let name = format!("{}{suffix}", self.prefix);
        let mut conn = self
            .admin
            .connect()
            .await
            .context("connecting to Postgres")?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await?;
        conn.close().await?;
        eprintln!("database {name}");
        let options = self.admin.clone().database(&name);
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(60))
            .connect_with(options)
            .await?;
        outbox_core::migrate(&pool).await?;
        Ok(Scratch {
            url: url_for(&self.admin_url, &name)?,
            name,
            pool,
        })
    }

    /// Closes `scratch`'s pool and drops its database (unless `keep`).
    pub async fn drop(&self, scratch: Scratch, keep: bool) -> Result<()> {
        scratch.pool.close().await;
        if keep {
            eprintln!("kept database {}", scratch.name);
            return Ok(());
        }
        self.drop_database(&scratch.name).await
    }

    async fn drop_database(&self, name: &str) -> Result<()> {
        let mut conn = self.admin.connect().await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&mut conn)
        .await?;
        conn.close().await?;
        Ok(())
    }

    /// Drops every database of this run still there (after an error or an interruption).
    async fn drop_leftovers(&self) -> Result<()> {
        let mut conn = self.admin.connect().await?;
        let names: Vec<String> =
            sqlx::query_scalar("SELECT datname FROM pg_database WHERE starts_with(datname, $1)")
                .bind(&self.prefix)
                .fetch_all(&mut conn)
                .await?;
        conn.close().await?;
        for name in names {
            self.drop_database(&name).await?;
        }
        Ok(())
    }
}

fn url_for(admin_url: &str, database: &str) -> Result<String> {
    let mut url = url::Url::parse(admin_url).context("--database-url")?;
    url.set_path(database);
    Ok(url.to_string())
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    if let Command::Render(args) = &cli.command {
        return render::run(args);
    }
    let server = Server::new(&cli.database_url)?;
    let outcome = tokio::select! {
        outcome = run(&cli, &server) => outcome,
        _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
    };
    let cleaned = if cli.keep_database {
        Ok(())
    } else {
        server.drop_leftovers().await
    };
    let deleted = broker::delete_leftovers(&cli.amqp_url).await;
    outcome?;
    cleaned?;
    deleted
}

async fn run(cli: &Cli, server: &Server) -> Result<()> {
    let (amqp, keep) = (cli.amqp_url.as_str(), cli.keep_database);
    // A scenario in a database and on an exchange of its own, printed as asked.
    macro_rules! scenario {
        ($module:ident, $args:expr) => {
            harness::output(
                cli.json,
                &$module::run($args, server, amqp, keep).await?,
                $module::markdown,
            )?
        };
    }
    let text = match &cli.command {
        Command::ClaimShapes(args) => {
            let report = shapes::run(args, server, cli.keep_database).await?;
            if cli.json {
                serde_json::to_string_pretty(&report)? + "\n"
            } else {
                shapes::markdown(&report)
            }
        }
        Command::BlockedDrain(args) => {
            let scratch = server.create("").await?;
            let report = drain::run(args, &scratch, &cli.amqp_url).await;
            server.drop(scratch, cli.keep_database).await?;
            let report = report?;
            if cli.json {
                serde_json::to_string_pretty(&report)? + "\n"
            } else {
                drain::markdown(&report)
            }
        }
        Command::EmitCost(args) => {
            let scratch = server.create("").await?;
            let report = emit_cost::run(args, &scratch).await;
            server.drop(scratch, cli.keep_database).await?;
            let report = report?;
            if cli.json {
                serde_json::to_string_pretty(&report)? + "\n"
            } else {
                emit_cost::markdown(&report)
            }
        }
        Command::Ceiling(args) => {
            let report = ceiling::run(args, amqp).await?;
            harness::output(cli.json, &report, ceiling::markdown)?
        }
        Command::Drain(args) => scenario!(drain_rate, args),
        Command::ScaleOut(args) => scenario!(scale_out, args),
        Command::Resources(args) => scenario!(resources, args),
        Command::Latency(args) => scenario!(latency, args),
        Command::Consumer(args) => scenario!(consumer, args),
        Command::All(args) => {
            let report = all::run(args, server, (&cli.database_url, amqp), keep).await?;
            harness::output(cli.json, &report, |r| all::markdown(r, None))?
        }
        Command::Soak(args) => {
            let report = soak::run(args, server, amqp, keep).await?;
            print(&harness::output(cli.json, &report, soak::markdown)?)?;
            return soak::verdict(&report);
        }
        Command::Render(args) => {
            render::run(args)?;
            String::new()
        }
    };
    print(&text)
}

/// Writes `text` on stdout: an error (a closed pipe), not a panic, so that the databases are
/// still dropped.
fn print(text: &str) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()?;
    Ok(())
}
