//! `scale-out`: the same backlog drained by 1, 2 and 3 relays.
//!
//! Each run starts from empty tables and an empty queue, writes `--events` events on
//! `--keys` keys through the trigger, runs `VACUUM ANALYZE`, and times `n` in-process
//! relays (defaults of `RelayConfig::new`) until every event is delivered. Relays share the
//! claim lock, so this shows whether more of them help or get in each other's way.

use anyhow::{Result, ensure};
use serde::{Deserialize, Serialize};

use crate::Server;
use crate::broker::{self, Broker};
use crate::harness::{self, BacklogArgs, DrainTiming};

/// Flags of `scale-out`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The backlog of every run.
    #[command(flatten)]
    pub backlog: BacklogArgs,
    /// Relay counts to run, in order (the first is the reference of the ratios).
    #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
    pub relays: Vec<usize>,
}

/// The result of `scale-out`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// Ordering keys.
    pub keys: i64,
    /// One drain per relay count.
    pub runs: Vec<DrainTiming>,
    /// Each run's rate over the first run's.
    pub ratios: Vec<f64>,
}

/// Runs `scale-out` in a database, exchange and queue of its own.
pub async fn run(args: &Args, server: &Server, amqp_url: &str, keep: bool) -> Result<Report> {
    ensure!(
        !args.relays.is_empty() && args.relays.iter().all(|&n| n >= 1),
        "--relays must list relay counts of at least 1"
    );
    harness::with_scratch(server, "_scale_out", keep, async |scratch| {
        broker::with_broker(amqp_url, "scale-out", async |broker: &Broker| {
            let mut runs = Vec::with_capacity(args.relays.len());
            for &relays in &args.relays {
                runs.push(
                    harness::drain_fresh(
                        scratch,
                        amqp_url,
                        broker,
                        args.backlog.events,
                        args.backlog.keys,
                        relays,
                    )
                    .await?,
                );
            }
            let reference = runs.first().map_or(1.0, |r| r.events_per_second);
            let ratios = runs
                .iter()
                .map(|r| r.events_per_second / reference)
                .collect();
            Ok(Report {
                keys: args.backlog.keys,
                runs,
                ratios,
            })
        })
        .await
    })
    .await
}

/// The report as Markdown.
pub fn markdown(report: &Report) -> String {
    let events = report.runs.first().map_or(0, |r| r.events);
    let caption = format!(
        "scale-out: {events} events on {} keys, drained by in-process relays (defaults)",
        report.keys
    );
    let rows: Vec<Vec<String>> = report
        .runs
        .iter()
        .zip(&report.ratios)
        .map(|(run, ratio)| {
            vec![
                run.relays.to_string(),
                format!("{:.2}", run.seconds),
                format!("{:.0}", run.events_per_second),
                format!("{ratio:.2}"),
            ]
        })
        .collect();
    let header = ["relays", "seconds", "events/s", "ratio to the first"];
    harness::table(&caption, 0, &header, &rows)
}
