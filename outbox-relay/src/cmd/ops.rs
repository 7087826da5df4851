//! The operator commands on the outbox table: `replay`, `discard`, `status`, `inspect`,
//! `purge`.

use std::process::ExitCode;

use anyhow::{Result, bail};
use tracing::info;

use outbox_relay::human_duration::show;
use outbox_relay::ops::filter::parse_time;
use outbox_relay::ops::purge::PurgeTarget;
use outbox_relay::ops::replay::{ReplayReport, ReplayRequest};
use outbox_relay::ops::{EventFilter, ReplayableStatus};

use super::{connect, print_report};
use crate::cli::{DiscardArgs, InspectArgs, PurgeArgs, ReplayArgs, SelectArgs, StatusArgs};

/// `replay`: the selected events back to `pending`, with their original ids.
pub async fn replay(args: ReplayArgs) -> Result<()> {
    change(args.select, args.status, false).await
}

/// `discard`: the selected dead events given up for good.
pub async fn discard(args: DiscardArgs) -> Result<()> {
    change(args.select, ReplayableStatus::Dead, true).await
}

async fn change(args: SelectArgs, status: ReplayableStatus, discard: bool) -> Result<()> {
    let request = ReplayRequest {
        status,
        filter: filter(&args)?,
        limit: args.limit,
        all: args.all,
    };
    let actor = args
        .actor
        .clone()
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "unknown".to_owned());
    let pool = connect(&args.database)?;
    let report = if discard {
        outbox_relay::ops::replay::discard(&pool, &request, &actor, args.dry_run).await?
    } else {
        outbox_relay::ops::replay::replay(&pool, &request, &actor, args.dry_run).await?
    };
    print_report(args.format, &report, ReplayReport::to_text)
}

/// The selection the flags describe; a malformed value is refused naming its flag.
fn filter(args: &SelectArgs) -> Result<EventFilter> {
    let now = chrono::Utc::now();
    let mut filter = EventFilter {
        ids: args.ids.clone(),
        tenant: args.tenant,
        ..EventFilter::default()
    };
    if let Some(value) = &args.event_type {
        filter = filter.event_type(value)?;
    }
    if let Some(value) = &args.category {
        filter = filter.category(value)?;
    }
    if let Some(value) = &args.ordering_key {
        filter = filter.ordering_key(value)?;
    }
    if let Some(value) = &args.since {
        filter.since = Some(parse_time("--since", value, now)?);
    }
    if let Some(value) = &args.until {
        filter.until = Some(parse_time("--until", value, now)?);
    }
    Ok(filter)
}

/// `status`: counts, backlog and blocked keys; with `--max-lag`, exit code 2 when the
/// oldest pending event is older.
pub async fn status(args: StatusArgs) -> Result<ExitCode> {
    let pool = connect(&args.database)?;
    let report = outbox_relay::ops::status::status(&pool, args.top).await?;
    print_report(args.format, &report, |report| report.to_text())?;
    if let Some(max_lag) = args.max_lag
        && report.oldest_pending_age_seconds > max_lag.0.as_secs_f64()
    {
        eprintln!(
            "ALERT: the oldest pending event is {:.1}s old, over --max-lag {max_lag}",
            report.oldest_pending_age_seconds
        );
        return Ok(ExitCode::from(2));
    }
    Ok(ExitCode::SUCCESS)
}

/// `inspect`: one event's full row as JSON.
pub async fn inspect(args: InspectArgs) -> Result<()> {
    let pool = connect(&args.database)?;
    match outbox_relay::ops::inspect::inspect(&pool, args.id).await? {
        Some(row) => println!("{}", serde_json::to_string_pretty(&row)?),
        None => bail!("no event with id {}", args.id),
    }
    Ok(())
}

/// `purge`: delivered and discarded events (or inbox records) past an age, in batches.
pub async fn purge(args: PurgeArgs) -> Result<()> {
    let pool = connect(&args.database)?;
    let target = if args.inbox {
        PurgeTarget::Inbox
    } else {
        PurgeTarget::FinishedEvents
    };
    let report = outbox_relay::ops::purge::purge(
        &pool,
        target,
        args.older_than.0,
        args.batch_size,
        args.dry_run,
    )
    .await?;
    if !report.dry_run {
        info!(deleted = report.count, ?target, older_than = %show(report.older_than), "purged");
    }
    print!("{}", report.to_text());
    Ok(())
}
