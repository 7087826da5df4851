//! `blocked-drain`: how fast in-process relays drain a backlog, without and with a dead
//! head that has `--blocked` events waiting behind it.
//!
//! Each run starts from empty tables. With a blocked key, its head is written and made dead
//! (the relay's claim and settle), then `--blocked` events are written behind it, so they are
//! the oldest rows. Then `--events` events on `--keys` keys are written, `VACUUM ANALYZE`
//! runs, and `--relays` relays start (`outbox_relay::run`, the defaults of
//! `RelayConfig::new`: batch 500, LISTEN on); the clock runs from their start until none of
//! the events is pending any more (polled every 10 ms), and all must then be `delivered`.
//!
//! `--stale-stats` analyzes before the events to drain are written instead: the statistics
//! then know only the blocked key, as after an `ANALYZE` taken while it was all the table held.

use std::fmt::Write as _;

use anyhow::{Result, bail, ensure};
use serde::Serialize;

use crate::Scratch;
use crate::broker::{self, Broker};
use crate::harness;
use crate::load::{self, Head, KeyPlan, Payloads, Written};
use crate::summary::median;

/// Flags of `blocked-drain`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Events to drain.
    #[arg(long, default_value_t = 20_000)]
    events: i64,
    /// Ordering keys of those events.
    #[arg(long, default_value_t = 2_000)]
    keys: i64,
    /// Events waiting behind one dead head (written first) in the second run.
    #[arg(long, default_value_t = 200_000)]
    blocked: i64,
    /// In-process relays.
    #[arg(long, default_value_t = 2)]
    relays: usize,
    /// Rounds, each one run without and one with the blocked key; medians are reported.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Run `VACUUM ANALYZE` before writing the events to drain (statistics that know only the
    /// blocked key) instead of after.
    #[arg(long)]
    stale_stats: bool,
}

/// One drain.
#[derive(Debug, Clone, Serialize)]
pub struct DrainRun {
    /// Events waiting behind the dead head.
    pub blocked: i64,
    /// Writing the blocked events (through the trigger).
    pub blocked_written: Written,
    /// Writing the events to drain (one transaction).
    pub written: Written,
    /// From the relays' start to the last event delivered, seconds.
    pub drain_seconds: f64,
    /// Events per second.
    pub events_per_second: f64,
}

/// One round.
#[derive(Debug, Clone, Serialize)]
pub struct Round {
    /// Without a blocked key.
    pub clear: DrainRun,
    /// With `--blocked` events behind a dead head.
    pub blocked: DrainRun,
    /// `blocked.events_per_second / clear.events_per_second`.
    pub ratio: f64,
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Events drained per run.
    pub events: i64,
    /// Their keys.
    pub keys: i64,
    /// Events behind the dead head in the blocked runs.
    pub blocked: i64,
    /// Relays.
    pub relays: usize,
    /// Per round.
    pub rounds: Vec<Round>,
    /// Median rate without a blocked key.
    pub clear_median: f64,
    /// Median rate with it.
    pub blocked_median: f64,
    /// `blocked_median / clear_median`.
    pub ratio_of_medians: f64,
    /// Target for the ratio.
    pub target: f64,
    /// Whether the statistics were taken before the events to drain were written.
    pub stale_stats: bool,
}

/// Runs the rounds against an exchange and a queue of this run's own.
pub async fn run(args: &Args, scratch: &Scratch, amqp_url: &str) -> Result<Report> {
    ensure!(
        args.events >= 1 && args.keys >= 1 && args.relays >= 1 && args.rounds >= 1,
        "--events, --keys, --relays and --rounds must be at least 1"
    );
    broker::with_broker(amqp_url, "blocked-drain", async |broker: &Broker| {
        rounds(args, scratch, amqp_url, broker).await
    })
    .await
}

async fn rounds(args: &Args, scratch: &Scratch, amqp_url: &str, broker: &Broker) -> Result<Report> {
    let payloads = Payloads::tickets()?;
    let mut rounds = Vec::with_capacity(args.rounds);
    for round in 1..=args.rounds {
        let mut runs = Vec::with_capacity(2);
        for blocked in [0, args.blocked] {
            broker.purge().await?;
            let run = drain_once(
                args,
                scratch,
                amqp_url,
                &broker.exchange,
                &payloads,
                blocked,
            )
            .await?;
            eprintln!(
                "round {round}, {} blocked: {} events in {:.2} s = {:.0} events/s",
                blocked, args.events, run.drain_seconds, run.events_per_second
            );
            runs.push(run);
        }
        let (Some(blocked), Some(clear)) = (runs.pop(), runs.pop()) else {
            bail!("a round lost its runs");
        };
        let ratio = blocked.events_per_second / clear.events_per_second;
        rounds.push(Round {
            clear,
            blocked,
            ratio,
        });
    }
    load::truncate(&scratch.pool).await?;
    let clear: Vec<f64> = rounds.iter().map(|r| r.clear.events_per_second).collect();
    let blocked: Vec<f64> = rounds.iter().map(|r| r.blocked.events_per_second).collect();
    let clear_median = median(&clear);
    let blocked_median = median(&blocked);
    Ok(Report {
        events: args.events,
        keys: args.keys,
        blocked: args.blocked,
        relays: args.relays,
        rounds,
        clear_median,
        blocked_median,
        ratio_of_medians: blocked_median / clear_median,
        target: 0.70,
        stale_stats: args.stale_stats,
    })
}

async fn drain_once(
    args: &Args,
    scratch: &Scratch,
    amqp_url: &str,
    exchange: &str,
    payloads: &Payloads,
    blocked: i64,
) -> Result<DrainRun> {
    let pool = &scratch.pool;
    load::truncate(pool).await?;
    let mut next = 0;
    let mut blocked_written = Written::default();
    if blocked > 0 {
        load::blocked_head(pool, payloads, Head::Dead).await?;
        blocked_written =
            load::insert_range(pool, payloads, 1, blocked, KeyPlan::blocked()).await?;
        next = blocked + 1;
    }
    if args.stale_stats {
        load::vacuum_analyze(pool).await?;
    }
    // Keys 0.. of the spread plan: never the blocked key (-1).
    let backlog = harness::write_backlog(pool, payloads, next, args.events, args.keys).await?;
    if !args.stale_stats {
        load::vacuum_analyze(pool).await?;
    }
    let timing = harness::drain(scratch, amqp_url, exchange, &backlog, args.relays).await?;
    Ok(DrainRun {
        blocked,
        blocked_written,
        written: backlog.written,
        drain_seconds: timing.seconds,
        events_per_second: timing.events_per_second,
    })
}

/// The report as Markdown.
pub fn markdown(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "blocked-drain: {} events on {} keys, {} relay(s), batch 500; blocked runs add {} events behind one dead head; VACUUM ANALYZE {}\n",
        report.events,
        report.keys,
        report.relays,
        report.blocked,
        if report.stale_stats {
            "before the events to drain were written (--stale-stats)"
        } else {
            "after every row was written"
        }
    );
    let _ = writeln!(
        out,
        "| round | without: events/s (s) | with {} blocked: events/s (s) | ratio |",
        report.blocked
    );
    let _ = writeln!(out, "| --- | ---: | ---: | ---: |");
    for (n, r) in report.rounds.iter().enumerate() {
        let _ = writeln!(
            out,
            "| {} | {:.0} ({:.2}) | {:.0} ({:.2}) | {:.2} |",
            n + 1,
            r.clear.events_per_second,
            r.clear.drain_seconds,
            r.blocked.events_per_second,
            r.blocked.drain_seconds,
            r.ratio
        );
    }
    let _ = writeln!(
        out,
        "| median | {:.0} | {:.0} | {:.2} (target ≥ {:.2}) |",
        report.clear_median, report.blocked_median, report.ratio_of_medians, report.target
    );
    if let Some(r) = report.rounds.first() {
        let _ = writeln!(
            out,
            "\nwriting through the trigger: {} blocked events in {:.1} s ({:.0} rows/s); {} events in one transaction in {:.2} s",
            r.blocked.blocked_written.rows,
            r.blocked.blocked_written.seconds,
            r.blocked.blocked_written.rate(),
            r.clear.written.rows,
            r.clear.written.seconds
        );
    }
    out
}
