//! `emit-cost`: what emitting an event costs the writer's own transaction, and what NOTIFY
//! costs on top.
//!
//! A `tickets` table (`--tickets` rows, primary key) stands for the domain. Every timed
//! transaction is `BEGIN; UPDATE tickets ... WHERE id = <random ticket>; [write]; COMMIT`
//! on its own connection, as fast as it can for `--seconds`, on N connections at once; the
//! writes compared are
//!
//! - (a) nothing (the domain update alone);
//! - (b) a plain `INSERT` of the event's row (id, tenant, type, key, payload) into a table
//!   with one index (its primary key): **the floor**, what appending any row costs;
//! - (c) one event through the library (`outbox_core::emit`);
//! - (d) one event by plain SQL, giving only what a producer in another language gives
//!   (`event_type`, `tenant_id`, `ordering_key`, `payload`; the insert trigger fills the rest);
//! - (e) ten events of the ticket in one `outbox_core::emit_batch`;
//!
//! (c) and (d) with the NOTIFY trigger on and off, the others in the database's default
//! wake-up mode (`outbox_wakeup_mode()` after migrating). Each cell is timed right after the
//! floor at the same connection count, and its cost ratio is the floor's tx/s divided by its
//! own (the median over `--rounds`): a machine whose load comes and goes skews a pair far
//! less than it skews cells timed a minute apart. A second table times (c) with NOTIFY off
//! and then on, at more connection counts.
//!
//! Payloads are the catalog's example events of five ticket event types (those
//! `load::Payloads::tickets` writes), each with the ticket's own tenant and id; the ordering
//! key is the ticket's (`ticket:<id>`). The key locks of every ticket exist beforehand (as they
//! do for tickets with recent events). Before every cell the event tables are truncated and
//! `tickets` vacuumed, so each cell starts from the same state; one `CHECKPOINT` before the
//! first cell keeps the run clear of timed checkpoints for five minutes.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use catalog_types::{
    CatalogEvent, TicketAssigned, TicketMessageAdded, TicketStatusChanged, TicketTimeEntryAdded,
    TicketUpdated,
};
use outbox_core::NewEvent;
use serde::Serialize;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

use crate::Scratch;
use crate::load::TENANTS;
use crate::summary::median;

/// Flags of `emit-cost`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Seconds each cell runs.
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    /// Connection counts of the emit-cost table (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1,8")]
    connections: Vec<usize>,
    /// Connection counts of the NOTIFY table (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1,8,32")]
    notify_connections: Vec<usize>,
    /// Rounds: every pair of cells runs once per round, and medians are reported.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// Rows of the `tickets` table.
    #[arg(long, default_value_t = 10_000)]
    tickets: i64,
    /// Events of one `emit_batch` in (e).
    #[arg(long, default_value_t = 10)]
    batch: usize,
}

/// What a timed transaction writes after its `UPDATE tickets`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Write {
    /// (a) Nothing.
    UpdateOnly,
    /// (b) A plain INSERT into a one-index table: the floor.
    PlainInsert,
    /// (c) One event by `outbox_core::emit`.
    Library,
    /// (d) One event by a plain-SQL `INSERT INTO outbox_events`.
    PlainSql,
    /// (e) `--batch` events by one `outbox_core::emit_batch`.
    Batch,
}

impl Write {
    fn label(self, batch: usize) -> String {
        match self {
            Write::UpdateOnly => "(a) `UPDATE tickets` alone".to_owned(),
            Write::PlainInsert => "(b) + plain INSERT into a one-index table (floor)".to_owned(),
            Write::Library => "(c) + one event, library (`emit`)".to_owned(),
            Write::PlainSql => "(d) + one event, plain SQL".to_owned(),
            Write::Batch => format!("(e) + {batch} events, one `emit_batch`"),
        }
    }
}

/// A cell to time: the write, the wake-up mode (`None`: the database's default) and the
/// number of connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Spec {
    write: Write,
    notify: Option<bool>,
    connections: usize,
}

/// One timed cell, over the rounds.
#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    /// What the transaction writes.
    pub write: Write,
    /// Its row label in the table.
    pub label: String,
    /// Wake-up mode during the cell: `notify` or `poll`.
    pub mode: String,
    /// Concurrent connections.
    pub connections: usize,
    /// Transactions per second, one per timing (the floor is timed before every other cell).
    pub samples: Vec<f64>,
    /// Median of the samples.
    pub tx_per_second: f64,
    /// Floor tx/s ÷ this cell's tx/s at the same connection count, the floor timed right
    /// before the cell; the median over the rounds (1.0 = as cheap as the floor; below 1 =
    /// cheaper).
    pub cost_ratio: f64,
}

/// NOTIFY on against off, one-event transactions by the library.
#[derive(Debug, Clone, Serialize)]
pub struct NotifyRow {
    /// Concurrent connections.
    pub connections: usize,
    /// Median tx/s with the NOTIFY trigger enabled.
    pub notify_tx_per_second: f64,
    /// Median tx/s with it disabled.
    pub poll_tx_per_second: f64,
    /// `poll / notify` tx/s, the two timed back to back; the median over the rounds: how
    /// many times more a writer pays with NOTIFY.
    pub notify_cost: f64,
}

/// Met or not, for one path.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    /// `library` or `plain_sql`.
    pub write: Write,
    /// Connections of the check.
    pub connections: usize,
    /// Cost ratio measured in the default mode.
    pub cost_ratio: f64,
    /// The limit.
    pub limit: f64,
    /// `cost_ratio <= limit`.
    pub met: bool,
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// PostgreSQL version.
    pub server: String,
    /// Seconds per cell.
    pub seconds: f64,
    /// Rounds.
    pub rounds: usize,
    /// Rows of `tickets`.
    pub tickets: i64,
    /// Events per `emit_batch` in (e).
    pub batch: usize,
    /// The database's wake-up mode after migrating.
    pub default_mode: String,
    /// Every cell of the emit-cost table.
    pub cells: Vec<Cell>,
    /// The NOTIFY table.
    pub notify: Vec<NotifyRow>,
    /// The target: one event ≤ 1.15 × the floor at 8 connections in the default mode.
    pub targets: Vec<Target>,
}

/// The cost limit of an emitted event relative to the floor.
const TARGET: f64 = 1.15;
/// Connections at which the target is checked.
const TARGET_CONNECTIONS: usize = 8;

const SETUP_SQL: &str = "
CREATE TABLE tickets (
    id         uuid PRIMARY KEY,
    tenant_id  uuid NOT NULL,
    title      text NOT NULL,
    status     text NOT NULL,
    priority   integer NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    version    bigint NOT NULL DEFAULT 0
);
CREATE TABLE plain_events (
    id           uuid PRIMARY KEY,
    tenant_id    uuid,
    event_type   text NOT NULL,
    ordering_key text,
    payload      jsonb NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);";

const UPDATE_SQL: &str =
    "UPDATE tickets SET status = $2, updated_at = now(), version = version + 1 WHERE id = $1";
const FLOOR_SQL: &str =
    "INSERT INTO plain_events (id, tenant_id, event_type, ordering_key, payload)
     VALUES ($1, $2, $3, $4, $5)";
const PLAIN_SQL: &str = "INSERT INTO outbox_events (event_type, tenant_id, ordering_key, payload)
     VALUES ($1, $2, $3, $4)";
const STATUSES: [&str; 4] = ["open", "in_progress", "waiting", "resolved"];

/// Runs every cell `--rounds` times in the scratch database.
pub async fn run(args: &Args, scratch: &Scratch) -> Result<Report> {
    ensure!(
        args.seconds > 0.0 && args.rounds >= 1 && args.tickets >= 1 && args.batch >= 1,
        "--seconds, --rounds, --tickets and --batch must be positive"
    );
    ensure!(
        args.connections
            .iter()
            .chain(&args.notify_connections)
            .all(|&n| (1..=90).contains(&n)),
        "connection counts must lie between 1 and 90"
    );
    let pool = &scratch.pool;
    let server: String = sqlx::query_scalar("SELECT current_setting('server_version')")
        .fetch_one(pool)
        .await?;
    let default_mode: String = sqlx::query_scalar("SELECT outbox_wakeup_mode()")
        .fetch_one(pool)
        .await
        .context("outbox_wakeup_mode() (is the database migrated?)")?;
    let tickets = Arc::new(setup(scratch, args.tickets).await?);

    let pairs = plan(args);
    // Writers connect as a library user does: a plain sqlx pool (which sets `TCP_NODELAY`
    // since 0.9.1), each on a connection of its own taken out of it.
    let options: PgConnectOptions = scratch.url.parse().context("the scratch database URL")?;
    let most = pairs
        .iter()
        .map(|p| p.measured.connections)
        .max()
        .unwrap_or(1);
    let writers = PgPoolOptions::new()
        .max_connections(u32::try_from(most)?)
        .connect_with(options)
        .await
        .context("connecting the writers")?;
    let mut conns = Vec::with_capacity(most);
    for _ in 0..most {
        conns.push(writers.acquire().await?.detach());
    }
    sqlx::query("CHECKPOINT").execute(pool).await?;
    // Warm-up (untimed): every statement prepared on every connection, pages in cache.
    for write in [
        Write::UpdateOnly,
        Write::PlainInsert,
        Write::Library,
        Write::PlainSql,
    ] {
        conns = time_cell(conns, write, args, &tickets, Duration::from_millis(300))
            .await?
            .0;
    }

    let mut measured = Measured::default();
    let duration = Duration::from_secs_f64(args.seconds);
    for round in 1..=args.rounds {
        for pair in &pairs {
            let mut rates = [0.0; 2];
            for (rate, spec) in rates.iter_mut().zip([pair.reference, pair.measured]) {
                let mode = match spec.notify {
                    Some(true) => "notify",
                    Some(false) => "poll",
                    None => default_mode.as_str(),
                };
                prepare_cell(scratch, mode).await?;
                let using = conns.split_off(conns.len() - spec.connections);
                let (back, tx_per_second) =
                    time_cell(using, spec.write, args, &tickets, duration).await?;
                conns.extend(back);
                eprintln!(
                    "round {round}: {:?}, {mode}, {} connection(s): {tx_per_second:.0} tx/s",
                    spec.write, spec.connections
                );
                measured
                    .samples
                    .entry(spec)
                    .or_default()
                    .push(tx_per_second);
                *rate = tx_per_second;
            }
            measured
                .ratios
                .entry((pair.measured, pair.reference))
                .or_default()
                .push(rates[0] / rates[1]);
        }
    }
    for conn in conns {
        conn.close().await?;
    }
    writers.close().await;
    sqlx::query("SELECT outbox_set_wakeup_mode($1)")
        .bind(&default_mode)
        .execute(pool)
        .await?;
    Ok(report(args, server, default_mode, &measured))
}

/// Two cells timed one right after the other, so that their ratio is not skewed by load
/// that comes and goes on the machine.
#[derive(Debug, Clone, Copy)]
struct Pair {
    reference: Spec,
    measured: Spec,
}

/// Every sample, and every ratio `reference tx/s ÷ measured tx/s` of a pair.
#[derive(Debug, Default)]
struct Measured {
    samples: BTreeMap<Spec, Vec<f64>>,
    ratios: BTreeMap<(Spec, Spec), Vec<f64>>,
}

impl Measured {
    fn rate(&self, spec: Spec) -> Option<f64> {
        self.samples.get(&spec).map(|s| median(s))
    }

    fn ratio(&self, measured: Spec, reference: Spec) -> Option<f64> {
        self.ratios.get(&(measured, reference)).map(|r| median(r))
    }
}

/// The pairs of one round: every cell of the emit-cost table after the floor at its
/// connection count, and for the NOTIFY table each `notify` cell after its `poll` cell.
fn plan(args: &Args) -> Vec<Pair> {
    let mut pairs = Vec::new();
    for &connections in &args.connections {
        let spec = |write, notify| Spec {
            write,
            notify,
            connections,
        };
        for (write, notify) in [
            (Write::UpdateOnly, None),
            (Write::Library, Some(false)),
            (Write::PlainSql, Some(false)),
            (Write::Library, Some(true)),
            (Write::PlainSql, Some(true)),
            (Write::Batch, None),
        ] {
            pairs.push(Pair {
                reference: spec(Write::PlainInsert, None),
                measured: spec(write, notify),
            });
        }
    }
    for &connections in &args.notify_connections {
        let spec = |notify| Spec {
            write: Write::Library,
            notify: Some(notify),
            connections,
        };
        pairs.push(Pair {
            reference: spec(false),
            measured: spec(true),
        });
    }
    pairs
}

/// A ticket row: its id and tenant.
struct Ticket {
    id: Uuid,
    tenant: Uuid,
}

/// Creates and fills `tickets`, the floor's table and every ticket's key lock.
async fn setup(scratch: &Scratch, count: i64) -> Result<Vec<Ticket>> {
    let pool = &scratch.pool;
    sqlx::raw_sql(SETUP_SQL).execute(pool).await?;
    sqlx::query(
        "INSERT INTO tickets (id, tenant_id, title, status, priority)
         SELECT md5('ticket:' || i)::uuid, md5('tenant:' || (i % $2))::uuid,
                'Ticket ' || i || ': printer offline on floor ' || (i % 7), 'open', i % 4
           FROM generate_series(1, $1::bigint) AS i",
    )
    .bind(count)
    .bind(TENANTS)
    .execute(pool)
    .await?;
    sqlx::query(
        "INSERT INTO outbox_key_locks (ordering_key) SELECT 'ticket:' || id FROM tickets
         ON CONFLICT DO NOTHING",
    )
    .execute(pool)
    .await?;
    for table in ["tickets", "outbox_key_locks"] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("VACUUM ANALYZE {table}")))
            .execute(pool)
            .await?;
    }
    let rows: Vec<(Uuid, Uuid)> = sqlx::query_as("SELECT id, tenant_id FROM tickets")
        .fetch_all(pool)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(id, tenant)| Ticket { id, tenant })
        .collect())
}

/// Sets the wake-up mode and brings the tables back to the same state.
async fn prepare_cell(scratch: &Scratch, mode: &str) -> Result<()> {
    let pool = &scratch.pool;
    sqlx::query("SELECT outbox_set_wakeup_mode($1)")
        .bind(mode)
        .execute(pool)
        .await?;
    sqlx::query("TRUNCATE outbox_events, plain_events")
        .execute(pool)
        .await?;
    sqlx::raw_sql("VACUUM tickets").execute(pool).await?;
    Ok(())
}

/// Runs `write` transactions on every connection until `duration` has passed; returns the
/// connections and the committed transactions per second.
async fn time_cell(
    conns: Vec<PgConnection>,
    write: Write,
    args: &Args,
    tickets: &Arc<Vec<Ticket>>,
    duration: Duration,
) -> Result<(Vec<PgConnection>, f64)> {
    let started = Instant::now();
    let deadline = started + duration;
    let mut workers = Vec::with_capacity(conns.len());
    for (n, conn) in conns.into_iter().enumerate() {
        let tickets = Arc::clone(tickets);
        let batch = args.batch;
        let seed = 0x9E37_79B9_7F4A_7C15_u64
            ^ ((n as u64 + 1) << 17)
            ^ started.elapsed().as_nanos() as u64;
        workers.push(tokio::spawn(async move {
            writer(conn, write, batch, &tickets, deadline, seed).await
        }));
    }
    let mut back = Vec::with_capacity(workers.len());
    let mut committed = 0u64;
    let mut failure = None;
    for worker in workers {
        match worker.await {
            Ok(Ok((conn, n))) => {
                committed += n;
                back.push(conn);
            }
            Ok(Err(e)) => failure = Some(e),
            Err(e) => failure = Some(e.into()),
        }
    }
    if let Some(e) = failure {
        return Err(e.context(format!("a {write:?} writer failed")));
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok((back, committed as f64 / seconds))
}

/// One connection's loop: a transaction after another until the deadline.
async fn writer(
    mut conn: PgConnection,
    write: Write,
    batch: usize,
    tickets: &[Ticket],
    deadline: Instant,
    seed: u64,
) -> Result<(PgConnection, u64)> {
    let mut random = XorShift(seed | 1);
    let mut committed = 0u64;
    while Instant::now() < deadline {
        let pick = random.next() as usize;
        let Some(ticket) = tickets.get(pick % tickets.len().max(1)) else {
            bail!("no tickets");
        };
        let kind = pick / tickets.len().max(1);
        let mut tx = conn.begin().await?;
        sqlx::query(UPDATE_SQL)
            .bind(ticket.id)
            .bind(STATUSES[kind % STATUSES.len()])
            .execute(&mut *tx)
            .await?;
        match write {
            Write::UpdateOnly => {}
            Write::PlainInsert => {
                let event = Sample::new(kind, ticket);
                sqlx::query(FLOOR_SQL)
                    .bind(Uuid::now_v7())
                    .bind(ticket.tenant)
                    .bind(event.event_type())
                    .bind(format!("ticket:{}", ticket.id))
                    .bind(event.payload()?)
                    .execute(&mut *tx)
                    .await?;
            }
            Write::Library => {
                Sample::new(kind, ticket).emit(&mut tx).await?;
            }
            Write::PlainSql => {
                let event = Sample::new(kind, ticket);
                sqlx::query(PLAIN_SQL)
                    .bind(event.event_type())
                    .bind(ticket.tenant)
                    .bind(format!("ticket:{}", ticket.id))
                    .bind(event.payload()?)
                    .execute(&mut *tx)
                    .await?;
            }
            Write::Batch => {
                let events = (0..batch)
                    .map(|i| Sample::new(kind + i, ticket).new_event())
                    .collect::<Result<Vec<NewEvent>>>()?;
                outbox_core::emit_batch(&mut tx, &events).await?;
            }
        }
        tx.commit().await?;
        committed += 1;
    }
    Ok((conn, committed))
}

/// A small, fast, good-enough generator for picking tickets.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x >> 11
    }
}

/// One of the five ticket events, about a given ticket.
enum Sample {
    Updated(TicketUpdated),
    Status(TicketStatusChanged),
    Assigned(TicketAssigned),
    Message(TicketMessageAdded),
    Time(TicketTimeEntryAdded),
}

/// Runs `$body` with `$event` bound to the typed event inside `$sample`.
macro_rules! each {
    ($sample:expr, $event:ident => $body:expr) => {
        match $sample {
            Sample::Updated($event) => $body,
            Sample::Status($event) => $body,
            Sample::Assigned($event) => $body,
            Sample::Message($event) => $body,
            Sample::Time($event) => $body,
        }
    };
}

impl Sample {
    /// The catalog's example of event type `kind % 5`, with the ticket's tenant and id.
    fn new(kind: usize, ticket: &Ticket) -> Sample {
        let (tenant_id, ticket_id) = (ticket.tenant, ticket.id);
        match kind % 5 {
            0 => Sample::Updated(TicketUpdated {
                tenant_id,
                ticket_id,
                ..TicketUpdated::example()
            }),
            1 => Sample::Status(TicketStatusChanged {
                tenant_id,
                ticket_id,
                ..TicketStatusChanged::example()
            }),
            2 => Sample::Assigned(TicketAssigned {
                tenant_id,
                ticket_id,
                ..TicketAssigned::example()
            }),
            3 => Sample::Message(TicketMessageAdded {
                tenant_id,
                ticket_id,
                ..TicketMessageAdded::example()
            }),
            _ => Sample::Time(TicketTimeEntryAdded {
                tenant_id,
                ticket_id,
                ..TicketTimeEntryAdded::example()
            }),
        }
    }

    fn event_type(&self) -> &'static str {
        fn of<E: CatalogEvent>(_: &E) -> &'static str {
            E::EVENT_TYPE
        }
        each!(self, e => of(e))
    }

    fn payload(&self) -> Result<serde_json::Value> {
        each!(self, e => Ok(serde_json::to_value(e)?))
    }

    fn new_event(&self) -> Result<NewEvent> {
        each!(self, e => Ok(NewEvent::new(e)?))
    }

    async fn emit(&self, conn: &mut PgConnection) -> Result<Uuid> {
        each!(self, e => Ok(outbox_core::emit(conn, e).await?))
    }
}

fn report(args: &Args, server: String, default_mode: String, measured: &Measured) -> Report {
    let mode_of = |notify: Option<bool>| match notify {
        Some(true) => "notify".to_owned(),
        Some(false) => "poll".to_owned(),
        None => default_mode.clone(),
    };
    let floor = |connections| Spec {
        write: Write::PlainInsert,
        notify: None,
        connections,
    };
    let mut cells = Vec::new();
    for (&spec, values) in &measured.samples {
        if !args.connections.contains(&spec.connections) {
            continue;
        }
        let cost_ratio = if spec.write == Write::PlainInsert {
            1.0
        } else {
            measured
                .ratio(spec, floor(spec.connections))
                .unwrap_or(f64::NAN)
        };
        cells.push(Cell {
            write: spec.write,
            label: spec.write.label(args.batch),
            mode: mode_of(spec.notify),
            connections: spec.connections,
            samples: values.clone(),
            tx_per_second: median(values),
            cost_ratio,
        });
    }
    let notify = args
        .notify_connections
        .iter()
        .filter_map(|&connections| {
            let spec = |notify| Spec {
                write: Write::Library,
                notify: Some(notify),
                connections,
            };
            Some(NotifyRow {
                connections,
                notify_tx_per_second: measured.rate(spec(true))?,
                poll_tx_per_second: measured.rate(spec(false))?,
                notify_cost: measured.ratio(spec(true), spec(false))?,
            })
        })
        .collect();
    let default_notify = Some(default_mode == "notify");
    let targets = [Write::Library, Write::PlainSql]
        .into_iter()
        .filter_map(|write| {
            let spec = Spec {
                write,
                notify: default_notify,
                connections: TARGET_CONNECTIONS,
            };
            let cost_ratio = measured.ratio(spec, floor(TARGET_CONNECTIONS))?;
            Some(Target {
                write,
                connections: TARGET_CONNECTIONS,
                cost_ratio,
                limit: TARGET,
                met: cost_ratio <= TARGET,
            })
        })
        .collect();
    Report {
        server,
        seconds: args.seconds,
        rounds: args.rounds,
        tickets: args.tickets,
        batch: args.batch,
        default_mode,
        cells,
        notify,
        targets,
    }
}

/// The report as Markdown.
pub fn markdown(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "emit-cost: one-row domain transactions (`UPDATE tickets` by primary key, {} tickets) \
         and what they write besides; {} s per cell, median of {} round(s); PostgreSQL {}; \
         default wake-up mode: {}\n",
        report.tickets, report.seconds, report.rounds, report.server, report.default_mode
    );
    let mut connections: Vec<usize> = report.cells.iter().map(|c| c.connections).collect();
    connections.sort_unstable();
    connections.dedup();
    let mut rows: Vec<(Write, &str, &str)> = Vec::new();
    for cell in &report.cells {
        if !rows
            .iter()
            .any(|(w, _, m)| *w == cell.write && *m == cell.mode)
        {
            rows.push((cell.write, cell.label.as_str(), cell.mode.as_str()));
        }
    }
    let _ = write!(out, "| transaction | wake-up mode |");
    for n in &connections {
        let _ = write!(out, " {n} conn: tx/s | × floor |");
    }
    let _ = write!(out, "\n| --- | --- |");
    for _ in &connections {
        let _ = write!(out, " ---: | ---: |");
    }
    out.push('\n');
    for (write, label, mode) in rows {
        let shown_mode = match write {
            Write::UpdateOnly | Write::PlainInsert => "—",
            _ => mode,
        };
        let _ = write!(out, "| {label} | {shown_mode} |");
        for &n in &connections {
            match report
                .cells
                .iter()
                .find(|c| c.write == write && c.mode == mode && c.connections == n)
            {
                Some(c) => {
                    let _ = write!(out, " {:.0} | {:.2} |", c.tx_per_second, c.cost_ratio);
                }
                None => {
                    let _ = write!(out, " — | — |");
                }
            }
        }
        out.push('\n');
    }
    if !report.notify.is_empty() {
        let _ = writeln!(
            out,
            "\nNOTIFY cost: one-event transactions (library), NOTIFY trigger on (`notify`) and off (`poll`)\n"
        );
        let _ = writeln!(
            out,
            "| connections | notify: tx/s | poll: tx/s | poll ÷ notify |"
        );
        let _ = writeln!(out, "| ---: | ---: | ---: | ---: |");
        for row in &report.notify {
            let _ = writeln!(
                out,
                "| {} | {:.0} | {:.0} | {:.2} |",
                row.connections, row.notify_tx_per_second, row.poll_tx_per_second, row.notify_cost
            );
        }
    }
    for target in &report.targets {
        let _ = writeln!(
            out,
            "\ntarget, {} at {} connections in the default mode ({}): {:.2} × the floor, limit {:.2}: {}",
            match target.write {
                Write::Library => "library path",
                _ => "plain-SQL path",
            },
            target.connections,
            report.default_mode,
            target.cost_ratio,
            target.limit,
            if target.met { "met" } else { "NOT met" }
        );
    }
    out
}
