//! `latency`: commit → consumer receive, with a producer holding a fixed rate.
//!
//! One in-process relay (defaults of `RelayConfig::new`) publishes to this scenario's
//! exchange; a consumer (auto-ack) reads the queue bound to it. Producers on
//! `--connections` connections commit one-event transactions through the library (`BEGIN`,
//! `outbox_core::emit` of a `TICKET_STATUS_CHANGED` on one of `--keys` tickets, `COMMIT`)
//! on a fixed schedule: event *n* is due at `start + n / --rate`, taken by whichever
//! producer is free, at once when it is late — so the rate is held whenever the producers
//! can keep up, and the achieved rate says when they could not. Each producer notes an
//! `Instant` per event id just after its commit returns; the consumer notes one per
//! `message_id` on receipt. A short warm-up (relay connected, consumer receiving) precedes
//! the timed events and is not counted.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use catalog_types::{CatalogEvent, TicketStatusChanged};
use futures_util::StreamExt;
use futures_util::future::try_join_all;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::broker::{self, Broker};
use crate::harness::{self, Relays};
use crate::load::TENANTS;
use crate::summary::percentile;
use crate::{Scratch, Server};

/// Flags of `latency`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// One-event transactions per second.
    #[arg(long, default_value_t = 1_000.0)]
    pub rate: f64,
    /// How long the producers run, seconds.
    #[arg(long, default_value_t = 30.0)]
    pub seconds: f64,
    /// Producer connections (a late event is taken by whichever is free, so more of them
    /// hold the rate on a busy machine without changing it).
    #[arg(long, default_value_t = 8)]
    pub connections: u32,
    /// Tickets (ordering keys) the events are spread over.
    #[arg(long, default_value_t = 2_000)]
    pub keys: usize,
    /// Events of a transaction left open for the whole run (written before the timed
    /// events, rolled back after them), as a backfill still running would: its seqs are
    /// gaps below every partition's frontier while the timed events go out. 0: none.
    #[arg(long, default_value_t = 0)]
    pub open_transaction_events: i64,
}

/// Order statistics of a set of durations, milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 95th percentile (nearest rank).
    pub p95: f64,
    /// 99th percentile (nearest rank).
    pub p99: f64,
    /// Largest.
    pub max: f64,
    /// Mean.
    pub mean: f64,
}

impl Percentiles {
    /// The statistics of `samples` (all zero when there are none).
    pub fn of(mut samples: Vec<f64>) -> Percentiles {
        samples.sort_by(f64::total_cmp);
        let mean = if samples.is_empty() {
            0.0
        } else {
            samples.iter().sum::<f64>() / samples.len() as f64
        };
        Percentiles {
            p50: percentile(&samples, 0.50),
            p95: percentile(&samples, 0.95),
            p99: percentile(&samples, 0.99),
            max: samples.last().copied().unwrap_or(0.0),
            mean,
        }
    }
}

/// The result of `latency`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// The rate asked for, transactions per second.
    pub target_rate: f64,
    /// How long the producers were to run, seconds.
    pub seconds: f64,
    /// Producer connections.
    pub connections: u32,
    /// Ordering keys.
    pub keys: usize,
    /// Events committed.
    pub events: usize,
    /// Events committed per second, first due time to last commit.
    pub achieved_rate: f64,
    /// Events the consumer received (of `events`).
    pub received: usize,
    /// Commit returned → consumer received, ms.
    pub latency_ms: Percentiles,
    /// `BEGIN` to the end of `COMMIT` of one producer transaction, ms.
    pub transaction_ms: Percentiles,
    /// How late the producers started an event after its due time, at worst, ms.
    pub max_schedule_lag_ms: f64,
    /// Events received before their producer saw the commit return (counted as 0 ms).
    pub received_before_commit_returned: usize,
    /// The p99 it should stay under, ms (issue target, at 1,000 events/s).
    pub target_p99_ms: f64,
    /// Events of the transaction left open during the run (0: none).
    #[serde(default)]
    pub open_transaction_events: i64,
}

/// Runs `latency` in a database, exchange and queue of its own.
pub async fn run(args: &Args, server: &Server, amqp_url: &str, keep: bool) -> Result<Report> {
    ensure!(
        args.rate > 0.0 && args.seconds > 0.0 && args.connections >= 1 && args.keys >= 1,
        "--rate, --seconds, --connections and --keys must be above zero"
    );
    harness::with_scratch(server, "_latency", keep, async |scratch| {
        broker::with_broker(amqp_url, "latency", async |broker: &Broker| {
            measure(args, scratch, amqp_url, broker).await
        })
        .await
    })
    .await
}

/// Events emitted (and awaited) before the timed ones.
const WARM_UP: usize = 20;

/// How long the consumer may take to receive the last events after the producers stop.
const RECEIVE_LIMIT: Duration = Duration::from_secs(30);

async fn measure(
    args: &Args,
    scratch: &Scratch,
    amqp_url: &str,
    broker: &Broker,
) -> Result<Report> {
    let (_channel, deliveries) = broker.consume("outbox-bench-latency").await?;
    let stop = CancellationToken::new();
    let count = Arc::new(AtomicUsize::new(0));
    let consumer = tokio::spawn(receive(deliveries, Arc::clone(&count), stop.clone()));
    let relays = Relays::start(scratch, amqp_url, &broker.exchange, 1);
    let open = match args.open_transaction_events {
        0 => None,
        events => Some(open_transaction(scratch, events).await),
    };
    let outcome = match open {
        Some(Err(error)) => Err(error),
        Some(Ok(mut conn)) => {
            let outcome = produce_and_wait(args, scratch, &count).await;
            let rolled_back = sqlx::raw_sql("ROLLBACK").execute(&mut conn).await;
            outcome.and_then(|o| {
                rolled_back
                    .map(|_| o)
                    .context("rolling back the open transaction")
            })
        }
        None => produce_and_wait(args, scratch, &count).await,
    };
    stop.cancel();
    let stopped = relays.stop().await;
    let received = consumer.await?;
    let (commits, transactions, max_lag, elapsed) = outcome?;
    stopped?;
    let received = received?;
    report(args, &commits, &received, transactions, max_lag, elapsed)
}

/// A connection whose transaction wrote `events` unkeyed events and stays open (the caller
/// rolls it back).
async fn open_transaction(scratch: &Scratch, events: i64) -> Result<sqlx::PgConnection> {
    use sqlx::Connection as _;
    let mut conn = sqlx::PgConnection::connect(&scratch.url)
        .await
        .context("connecting the open transaction")?;
    let started = Instant::now();
    sqlx::raw_sql("BEGIN").execute(&mut conn).await?;
    sqlx::query(
        "INSERT INTO outbox_events (event_type, payload)
         SELECT 'TICKET_UPDATED', jsonb_build_object('ticketId', gen_random_uuid(),
                                                     'updatedFields', jsonb_build_array('status'))
           FROM generate_series(1, $1)",
    )
    .bind(events)
    .execute(&mut conn)
    .await
    .context("writing the open transaction's events")?;
    eprintln!(
        "  a transaction of {events} events written in {:.1} s, left open for the run",
        started.elapsed().as_secs_f64()
    );
    Ok(conn)
}

/// What the producers hand back: (event id, commit returned) per event, transaction ms per
/// event, worst lag behind the schedule, seconds from the first due time to the last commit.
type Produced = (Vec<(Uuid, Instant)>, Vec<f64>, Duration, f64);

async fn produce_and_wait(args: &Args, scratch: &Scratch, count: &AtomicUsize) -> Result<Produced> {
    let options: PgConnectOptions = scratch.url.parse().context("the scratch database's URL")?;
    let pool = PgPoolOptions::new()
        .max_connections(args.connections)
        .min_connections(args.connections)
        .connect_with(options)
        .await
        .context("connecting the producers")?;
    let events = Arc::new(Events::new(args.keys));
    // Warm-up: the relay is connected and the consumer receives.
    for n in 0..WARM_UP {
        emit_one(&pool, &events, n).await?;
    }
    wait_for(count, WARM_UP, Duration::from_secs(60)).await?;

    let total = (args.rate * args.seconds).round().max(1.0) as u64;
    let schedule = Arc::new(Schedule {
        start: tokio::time::Instant::now() + Duration::from_millis(50),
        rate: args.rate,
        total,
        next: AtomicU64::new(0),
    });
    let producers: Vec<JoinHandle<Result<Producer>>> = (0..args.connections)
        .map(|_| {
            let pool = pool.clone();
            let events = Arc::clone(&events);
            let schedule = Arc::clone(&schedule);
            tokio::spawn(async move { producer(&pool, &events, &schedule).await })
        })
        .collect();
    let done = try_join_all(producers).await?;
    let mut commits = Vec::new();
    let mut transactions = Vec::new();
    let mut max_lag = Duration::ZERO;
    for producer in done {
        let producer = producer?;
        commits.extend(producer.commits);
        transactions.extend(producer.transaction_ms);
        max_lag = max_lag.max(producer.max_lag);
    }
    let last = commits.iter().map(|(_, at)| *at).max();
    let elapsed = last
        .map(|last| last.saturating_duration_since(schedule.start.into_std()))
        .unwrap_or_default()
        .as_secs_f64();
    // Not an error when some never arrive: the report says how many did.
    let _ = wait_for(count, WARM_UP + commits.len(), RECEIVE_LIMIT).await;
    pool.close().await;
    Ok((commits, transactions, max_lag, elapsed))
}

/// The events the producers emit, one per ticket in turn.
struct Events {
    tickets: Vec<(Uuid, Uuid)>,
}

impl Events {
    fn new(keys: usize) -> Events {
        let tenants: Vec<Uuid> = (0..TENANTS).map(|_| Uuid::new_v4()).collect();
        let tickets = (0..keys)
            .map(|k| {
                let tenant = tenants.get(k % tenants.len()).copied().unwrap_or_default();
                (tenant, Uuid::new_v4())
            })
            .collect();
        Events { tickets }
    }

    fn nth(&self, n: usize) -> TicketStatusChanged {
        let (tenant_id, ticket_id) = self
            .tickets
            .get(n % self.tickets.len().max(1))
            .copied()
            .unwrap_or_default();
        TicketStatusChanged {
            tenant_id,
            ticket_id,
            changed_at: chrono::Utc::now(),
            ..TicketStatusChanged::example()
        }
    }
}

/// Event `n` in a transaction of its own; returns its id.
async fn emit_one(pool: &PgPool, events: &Events, n: usize) -> Result<Uuid> {
    let mut tx = pool.begin().await?;
    let id = outbox_core::emit(&mut tx, &events.nth(n))
        .await
        .context("emitting an event")?;
    tx.commit().await?;
    Ok(id)
}

/// Event `n` is due at `start + n / rate`; `next` is the first not yet taken.
struct Schedule {
    start: tokio::time::Instant,
    rate: f64,
    total: u64,
    next: AtomicU64,
}

/// One producer's record.
#[derive(Default)]
struct Producer {
    commits: Vec<(Uuid, Instant)>,
    transaction_ms: Vec<f64>,
    max_lag: Duration,
}

async fn producer(pool: &PgPool, events: &Events, schedule: &Schedule) -> Result<Producer> {
    let mut record = Producer::default();
    loop {
        let n = schedule.next.fetch_add(1, Ordering::Relaxed);
        if n >= schedule.total {
            return Ok(record);
        }
        let due = schedule.start + Duration::from_secs_f64(n as f64 / schedule.rate);
        tokio::time::sleep_until(due).await;
        record.max_lag = record.max_lag.max(due.elapsed());
        let began = Instant::now();
        let id = emit_one(pool, events, WARM_UP + n as usize).await?;
        let committed = Instant::now();
        record.commits.push((id, committed));
        record
            .transaction_ms
            .push((committed - began).as_secs_f64() * 1e3);
    }
}

/// Receives until `stop`, noting the arrival of every message by its id.
async fn receive(
    mut deliveries: lapin::Consumer,
    count: Arc<AtomicUsize>,
    stop: CancellationToken,
) -> Result<Vec<(Uuid, Instant)>> {
    let mut received = Vec::new();
    loop {
        let delivery = tokio::select! {
            delivery = deliveries.next() => delivery,
            () = stop.cancelled() => break,
        };
        let Some(delivery) = delivery else { break };
        let delivery = delivery.context("receiving from the benchmark queue")?;
        let at = Instant::now();
        if let Some(id) = delivery
            .properties
            .message_id()
            .as_ref()
            .and_then(|id| Uuid::parse_str(id.as_str()).ok())
        {
            received.push((id, at));
        }
        count.fetch_add(1, Ordering::Relaxed);
    }
    Ok(received)
}

/// Waits until `count` reaches `target` or `limit` passes (an error then).
async fn wait_for(count: &AtomicUsize, target: usize, limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    while count.load(Ordering::Relaxed) < target {
        ensure!(
            Instant::now() < deadline,
            "the consumer received {} of {target} messages in {limit:?}",
            count.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

fn report(
    args: &Args,
    commits: &[(Uuid, Instant)],
    received: &[(Uuid, Instant)],
    transactions: Vec<f64>,
    max_lag: Duration,
    elapsed: f64,
) -> Result<Report> {
    let committed: HashMap<Uuid, Instant> = commits.iter().copied().collect();
    let mut early = 0;
    let latencies: Vec<f64> = received
        .iter()
        .filter_map(|(id, at)| {
            let commit = committed.get(id)?;
            if at < commit {
                early += 1;
            }
            Some(at.saturating_duration_since(*commit).as_secs_f64() * 1e3)
        })
        .collect();
    let report = Report {
        target_rate: args.rate,
        seconds: args.seconds,
        connections: args.connections,
        keys: args.keys,
        events: commits.len(),
        achieved_rate: if elapsed > 0.0 {
            commits.len() as f64 / elapsed
        } else {
            0.0
        },
        received: latencies.len(),
        latency_ms: Percentiles::of(latencies),
        transaction_ms: Percentiles::of(transactions),
        max_schedule_lag_ms: max_lag.as_secs_f64() * 1e3,
        received_before_commit_returned: early,
        target_p99_ms: 10.0,
        open_transaction_events: args.open_transaction_events,
    };
    let l = &report.latency_ms;
    eprintln!(
        "  latency: {} events at {:.0}/s (asked {:.0}/s), {} received; p50 {:.1} ms, p95 {:.1}, p99 {:.1}, max {:.1}",
        report.events,
        report.achieved_rate,
        report.target_rate,
        report.received,
        l.p50,
        l.p95,
        l.p99,
        l.max
    );
    Ok(report)
}

/// The report as Markdown.
pub fn markdown(report: &Report) -> String {
    let open = match report.open_transaction_events {
        0 => String::new(),
        n => format!(", while a transaction of {n} events stays open"),
    };
    let caption = format!(
        "latency: one-event transactions (`outbox_core::emit`) at {:.0}/s for {:.0} s on {} connections, {} keys{open}; one in-process relay (defaults); commit returned → consumer received",
        report.target_rate, report.seconds, report.connections, report.keys
    );
    let l = &report.latency_ms;
    let t = &report.transaction_ms;
    let row = vec![
        report.events.to_string(),
        format!("{:.0}", report.achieved_rate),
        report.received.to_string(),
        format!("{:.1}", l.p50),
        format!("{:.1}", l.p95),
        format!("{:.1} (target ≤ {:.0})", l.p99, report.target_p99_ms),
        format!("{:.1}", l.max),
        format!("{:.1} / {:.1}", t.p50, t.p99),
        format!("{:.1}", report.max_schedule_lag_ms),
    ];
    let header = [
        "events",
        "achieved/s",
        "received",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "max ms",
        "transaction p50 / p99 ms",
        "worst schedule lag ms",
    ];
    harness::table(&caption, 0, &header, &[row])
}
