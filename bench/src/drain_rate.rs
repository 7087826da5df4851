//! `drain`: one relay draining a backlog, against the broker's ceiling measured in the
//! same run.
//!
//! First `ceiling` runs on this scenario's exchange and queue (`--events` envelopes, a
//! window of `--window`). Then `--events` events (realistic ticket payloads, 500 tenants,
//! `--keys` ordering keys) are written through the trigger, `VACUUM ANALYZE` runs, and one
//! in-process relay (`outbox_relay::run` with the defaults of `RelayConfig::new`) drains
//! them; the clock runs from its start until none is pending, and all must be delivered.
//! The figure of merit is the drain rate over the ceiling.

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::broker::{self, Broker};
use crate::harness::{self, BacklogArgs, DrainTiming};
use crate::{Server, ceiling};

/// Flags of `drain`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The backlog.
    #[command(flatten)]
    pub backlog: BacklogArgs,
    /// Unconfirmed messages at most per channel in the ceiling run (the relay's batch
    /// size).
    #[arg(long, default_value_t = 500)]
    pub window: usize,
    /// Publishing channels of the ceiling run, on one connection (the relay's batches in
    /// flight).
    #[arg(long, default_value_t = outbox_relay::foundation::config::DEFAULT_IN_FLIGHT_BATCHES as usize)]
    pub ceiling_channels: usize,
}

/// The result of `drain`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// The ceiling measured first.
    pub ceiling: ceiling::Report,
    /// Ordering keys.
    pub keys: i64,
    /// The relay's drain.
    pub drain: DrainTiming,
    /// `drain.events_per_second / ceiling.messages_per_second`.
    pub ratio_to_ceiling: f64,
    /// What the ratio should reach.
    pub target: f64,
}

/// The ratio the drain should reach (issue target).
pub const TARGET: f64 = 0.85;

/// Runs `drain` in a database, exchange and queue of its own.
pub async fn run(args: &Args, server: &Server, amqp_url: &str, keep: bool) -> Result<Report> {
    harness::with_scratch(server, "_drain", keep, async |scratch| {
        broker::with_broker(amqp_url, "drain", async |broker: &Broker| {
            let ceiling = ceiling::measure(&ceiling_args(args), amqp_url, broker).await?;
            let drain = harness::drain_fresh(
                scratch,
                amqp_url,
                broker,
                args.backlog.events,
                args.backlog.keys,
                1,
            )
            .await?;
            Ok(Report {
                ratio_to_ceiling: drain.events_per_second / ceiling.messages_per_second,
                ceiling,
                keys: args.backlog.keys,
                drain,
                target: TARGET,
            })
        })
        .await
    })
    .await
}

fn ceiling_args(args: &Args) -> ceiling::Args {
    ceiling::Args {
        messages: usize::try_from(args.backlog.events).unwrap_or(1).max(1),
        window: args.window,
        channels: args.ceiling_channels,
        keys: usize::try_from(args.backlog.keys).unwrap_or(1).max(1),
    }
}

/// The report as Markdown.
pub fn markdown(report: &Report) -> String {
    let c = &report.ceiling;
    let d = &report.drain;
    let caption = format!(
        "drain: {} events on {} keys, one in-process relay (defaults), against the ceiling of the same run ({} envelopes of {:.0} B, {} channel(s) of one connection with at most {} unconfirmed on each)",
        d.events, report.keys, c.messages, c.body_bytes, c.channels, c.window
    );
    let row = vec![
        format!("{:.0}", c.messages_per_second),
        format!("{:.2}", d.seconds),
        format!("{:.0}", d.events_per_second),
        format!(
            "{:.2} (target ≥ {:.2})",
            report.ratio_to_ceiling, report.target
        ),
    ];
    let header = [
        "ceiling msg/s",
        "drain s",
        "drain events/s",
        "ratio to the ceiling",
    ];
    harness::table(&caption, 0, &header, &[row])
}
