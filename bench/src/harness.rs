//! What the drain scenarios share: a scratch database per scenario, a backlog written
//! through the trigger, relays running in this process, and the clock that stops when the
//! backlog is delivered.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use chrono::{DateTime, Utc};
use outbox_relay::Health;
use outbox_relay::RelayConfig;
use serde::Serialize;
use sqlx::PgPool;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::broker::Broker;
use crate::load::{self, KeyPlan, Payloads, Written};
use crate::{Scratch, Server};

/// Runs `scenario` in a fresh database `<prefix><suffix>` and drops it afterwards (unless
/// `keep`), also when the scenario fails.
pub async fn with_scratch<T, F>(server: &Server, suffix: &str, keep: bool, scenario: F) -> Result<T>
where
    F: AsyncFnOnce(&Scratch) -> Result<T>,
{
    let scratch = server.create(suffix).await?;
    let outcome = scenario(&scratch).await;
    server.drop(scratch, keep).await?;
    outcome
}

/// A report as Markdown (`markdown`) or, with `--json`, as one pretty JSON document.
pub fn output<T: Serialize>(json: bool, report: &T, markdown: fn(&T) -> String) -> Result<String> {
    Ok(if json {
        serde_json::to_string_pretty(report)? + "\n"
    } else {
        markdown(report)
    })
}

/// A Markdown table after a `caption` paragraph (none when empty): the first `left`
/// columns left-aligned (text), the others right-aligned (numbers).
pub fn table(caption: &str, left: usize, header: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = String::new();
    if !caption.is_empty() {
        out.push_str(caption);
        out.push_str("\n\n");
    }
    let line = |cells: &[String]| format!("| {} |\n", cells.join(" | "));
    out.push_str(&line(
        &header.iter().map(|h| (*h).to_owned()).collect::<Vec<_>>(),
    ));
    let rule: Vec<String> = (0..header.len())
        .map(|i| if i < left { "---" } else { "---:" }.to_owned())
        .collect();
    out.push_str(&line(&rule));
    for row in rows {
        out.push_str(&line(row));
    }
    out
}

/// The backlog flags of `drain` and `scale-out`.
#[derive(Debug, Clone, clap::Args)]
pub struct BacklogArgs {
    /// Events to drain per run (and messages of the ceiling run).
    #[arg(long, default_value_t = 50_000)]
    pub events: i64,
    /// Ordering keys of those events.
    #[arg(long, default_value_t = 2_000)]
    pub keys: i64,
}

/// Events written for a drain: every one of them was written after `threshold`
/// (`created_at`; seq says an event's partition, not when it was written).
#[derive(Debug, Clone, Copy)]
pub struct Backlog {
    /// The database's clock just before the events were written.
    pub threshold: DateTime<Utc>,
    /// How many.
    pub events: i64,
    /// Writing them (through the trigger, 100,000 rows per transaction).
    pub written: Written,
}

/// Writes rows `first..first + events` on `keys` keys (never the blocked key) behind
/// whatever the table already holds.
pub async fn write_backlog(
    pool: &PgPool,
    payloads: &Payloads,
    first: i64,
    events: i64,
    keys: i64,
) -> Result<Backlog> {
    let threshold: DateTime<Utc> = sqlx::query_scalar("SELECT clock_timestamp()")
        .fetch_one(pool)
        .await?;
    let written = load::insert_range(
        pool,
        payloads,
        first,
        first + events - 1,
        KeyPlan::spread(keys),
    )
    .await?;
    Ok(Backlog {
        threshold,
        events,
        written,
    })
}

/// Empties the tables and writes `events` events on `keys` keys, then `VACUUM ANALYZE`: the
/// starting point of every drain but `blocked-drain`'s.
pub async fn fresh_backlog(scratch: &Scratch, events: i64, keys: i64) -> Result<Backlog> {
    ensure!(
        events >= 1 && keys >= 1,
        "events and keys must be at least 1"
    );
    let pool = &scratch.pool;
    load::truncate(pool).await?;
    let backlog = write_backlog(pool, &Payloads::tickets()?, 0, events, keys).await?;
    load::vacuum_analyze(pool).await?;
    eprintln!(
        "  wrote {events} events on {keys} keys in {:.1} s",
        backlog.written.seconds
    );
    Ok(backlog)
}

/// Waits until none of `backlog` is pending (a cheap probe of the pending index every
/// 10 ms), then checks every event was delivered. Returns the seconds since `started`.
pub async fn wait_delivered(
    pool: &PgPool,
    backlog: &Backlog,
    started: Instant,
    limit: Duration,
) -> Result<f64> {
    let deadline = started + limit;
    // A count of delivered rows every 10 ms would take a good part of a core by the end of
    // the run; index probes answer this at once: nothing after any partition's frontier,
    // no held scope due to go again (a dead one stays), no gap.
    loop {
        let waiting: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM outbox_partitions p
                             WHERE EXISTS (SELECT 1 FROM outbox_events e
                                            WHERE e.seq % 16 = p.part AND e.seq > p.frontier))
                 OR EXISTS (SELECT 1 FROM outbox_held WHERE due_at IS NOT NULL)
                 OR EXISTS (SELECT 1 FROM outbox_gaps)",
        )
        .fetch_one(pool)
        .await?;
        if !waiting {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "the events were not all delivered after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let delivered: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM outbox_event_status WHERE status = 'delivered' AND created_at > $1",
    )
    .bind(backlog.threshold)
    .fetch_one(pool)
    .await?;
    ensure!(
        delivered == backlog.events,
        "{delivered} of {} events delivered (the others failed)",
        backlog.events
    );
    Ok(seconds)
}

/// The longest a drain may take before the scenario gives up.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(600);

/// Relays running in this process (`outbox_relay::run`, the defaults of
/// `RelayConfig::new`), named `bench-relay-<n>`.
pub struct Relays {
    cancel: CancellationToken,
    handles: Vec<JoinHandle<Result<(), outbox_relay::RelayError>>>,
}

impl Relays {
    /// Starts `count` relays on `scratch`'s database, publishing to `exchange`.
    pub fn start(scratch: &Scratch, amqp_url: &str, exchange: &str, count: usize) -> Relays {
        let cancel = CancellationToken::new();
        let handles = (0..count)
            .map(|n| {
                let mut config = RelayConfig::new(scratch.url.clone(), amqp_url.to_owned());
                config.exchange = exchange.to_owned();
                config.relay_id = format!("bench-relay-{n}");
                tokio::spawn(outbox_relay::run(
                    config,
                    cancel.clone().cancelled_owned(),
                    Arc::new(Health::default()),
                ))
            })
            .collect();
        Relays { cancel, handles }
    }

    /// Stops them (each drains its wave in flight) and reports the first error.
    pub async fn stop(self) -> Result<()> {
        self.cancel.cancel();
        for handle in self.handles {
            handle.await?.context("a relay failed")?;
        }
        Ok(())
    }
}

/// One timed drain.
#[derive(Debug, Clone, Copy, Serialize, serde::Deserialize)]
pub struct DrainTiming {
    /// Events drained.
    pub events: i64,
    /// In-process relays.
    pub relays: usize,
    /// From the relays' start to the last event delivered, seconds.
    pub seconds: f64,
    /// Events per second.
    pub events_per_second: f64,
}

/// Starts `relays` relays on `backlog` and times them until it is all delivered.
pub async fn drain(
    scratch: &Scratch,
    amqp_url: &str,
    exchange: &str,
    backlog: &Backlog,
    relays: usize,
) -> Result<DrainTiming> {
    let started = Instant::now();
    let running = Relays::start(scratch, amqp_url, exchange, relays);
    let outcome = wait_delivered(&scratch.pool, backlog, started, DRAIN_LIMIT).await;
    let stopped = running.stop().await;
    let seconds = outcome?;
    stopped?;
    Ok(DrainTiming {
        events: backlog.events,
        relays,
        seconds,
        events_per_second: backlog.events as f64 / seconds,
    })
}

/// Empties the queue and the tables, writes a fresh backlog of `events` events on `keys`
/// keys and times `relays` in-process relays draining it.
pub async fn drain_fresh(
    scratch: &Scratch,
    amqp_url: &str,
    broker: &Broker,
    events: i64,
    keys: i64,
    relays: usize,
) -> Result<DrainTiming> {
    broker.purge().await?;
    let backlog = fresh_backlog(scratch, events, keys).await?;
    let timing = drain(scratch, amqp_url, &broker.exchange, &backlog, relays).await?;
    eprintln!(
        "  {relays} relay(s): {events} events in {:.2} s = {:.0} events/s",
        timing.seconds, timing.events_per_second
    );
    Ok(timing)
}
