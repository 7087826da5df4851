//! The operator commands on the outbox table: `replay`, `discard`, `audit`, `status`,
//! `inspect`, `purge`.

use std::process::ExitCode;

use anyhow::{Result, bail};
use tracing::info;

use outbox_relay::engine::audit::AuditFilter;
use outbox_relay::engine::filter::parse_time;
use outbox_relay::foundation::human_duration::show;
use outbox_relay::ops::purge::PurgeTarget;
use outbox_relay::ops::replay::{ReplayReport, ReplayRequest};
use outbox_relay::ops::{EventFilter, ReplayableStatus};

use super::{connect, print_report};
use crate::cli::{
    AuditArgs, DiscardArgs, InspectArgs, PurgeArgs, ReplayArgs, SelectArgs, StatusArgs,
};

/// `replay`: the selected events back to `pending`, with their original ids; exit code
/// [`NOTHING_TO_DO_EXIT_CODE`](outbox_relay::ops::replay::NOTHING_TO_DO_EXIT_CODE) when none
/// matched.
pub async fn replay(args: ReplayArgs) -> Result<ExitCode> {
    change(args.select, args.status, false).await
}

/// `discard`: the selected dead events given up for good; exit code
/// [`NOTHING_TO_DO_EXIT_CODE`](outbox_relay::ops::replay::NOTHING_TO_DO_EXIT_CODE) when none
/// matched.
pub async fn discard(args: DiscardArgs) -> Result<ExitCode> {
    change(args.select, ReplayableStatus::Dead, true).await
}

async fn change(args: SelectArgs, status: ReplayableStatus, discard: bool) -> Result<ExitCode> {
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
    let db = connect(&args.database).await?;
    let report = if discard {
        outbox_relay::ops::replay::discard(&db.pool, &request, &actor, args.dry_run).await
    } else {
        outbox_relay::ops::replay::replay(&db.pool, &request, &actor, args.dry_run).await
    }
    .map_err(|e| db.explain(e))?;
    print_report(args.format, &db, &report, ReplayReport::to_text)?;
    Ok(ExitCode::from(report.exit_code()))
}

/// `audit`: the replay/discard audit records the flags select, newest first.
pub async fn audit(args: AuditArgs) -> Result<()> {
    let now = chrono::Utc::now();
    let mut events = EventFilter::default();
    if let Some(value) = &args.event_type {
        events = events.event_type(value)?;
    }
    if let Some(value) = &args.category {
        events = events.category(value)?;
    }
    if let Some(value) = &args.ordering_key {
        events = events.ordering_key(value)?;
    }
    events.tenant = args.tenant;
    let mut filter = AuditFilter {
        action: args.action,
        dry_run: match (args.changes_only, args.dry_runs_only) {
            (true, _) => Some(false),
            (false, true) => Some(true),
            (false, false) => None,
        },
        ids: args.ids.clone(),
        events,
        ..AuditFilter::default()
    };
    if let Some(value) = &args.actor {
        filter = filter.actor(value)?;
    }
    if let Some(value) = &args.role {
        filter = filter.role(value)?;
    }
    if let Some(value) = &args.since {
        filter.since = Some(parse_time("--since", value, now)?);
    }
    if let Some(value) = &args.until {
        filter.until = Some(parse_time("--until", value, now)?);
    }
    let db = connect(&args.database).await?;
    let report = outbox_relay::ops::audit::audit(&db.pool, &filter, args.limit)
        .await
        .map_err(|e| db.explain(e))?;
    print_report(args.format, &db, &report, |report| report.to_text())
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

/// The exit code of `status --max-lag` when the oldest pending event is older: distinct
/// from 1 (an error) and 2 (a usage error), so a cron job or CI step can tell them apart.
pub const LAG_EXIT_CODE: u8 = 3;

/// `status`: counts, backlog and blocked keys; with `--max-lag`, exit code
/// [`LAG_EXIT_CODE`] when the oldest pending event is older.
pub async fn status(args: StatusArgs) -> Result<ExitCode> {
    let db = connect(&args.database).await?;
    let report = outbox_relay::ops::status::status(&db.pool, args.top)
        .await
        .map_err(|e| db.explain(e))?;
    print_report(args.format, &db, &report, |report| report.to_text())?;
    if let Some(max_lag) = args.max_lag
        && let Some(age) = report.oldest_pending_age_seconds
        && age > max_lag.0.as_secs_f64()
    {
        eprintln!("ALERT: the oldest pending event is {age:.1}s old, over --max-lag {max_lag}");
        return Ok(ExitCode::from(LAG_EXIT_CODE));
    }
    Ok(ExitCode::SUCCESS)
}

/// `inspect`: one event's full row as JSON.
pub async fn inspect(args: InspectArgs) -> Result<()> {
    let db = connect(&args.database).await?;
    let row = outbox_relay::ops::inspect::inspect(&db.pool, args.id)
        .await
        .map_err(|e| db.explain(e))?;
    match row {
        Some(row) => super::write_stdout(&format!("{}\n", serde_json::to_string_pretty(&row)?))?,
        None => bail!("no event with id {} in {}", args.id, db.shown),
    }
    Ok(())
}

/// `purge`: delivered and discarded events (or inbox records) past an age, in batches.
pub async fn purge(args: PurgeArgs) -> Result<()> {
    let db = connect(&args.database).await?;
    let target = if args.inbox {
        PurgeTarget::Inbox
    } else {
        PurgeTarget::FinishedEvents
    };
    let report = outbox_relay::ops::purge::purge(
        &db.pool,
        target,
        args.older_than.0,
        args.batch_size,
        args.dry_run,
    )
    .await
    .map_err(|e| db.explain(e))?;
    if !report.dry_run {
        info!(deleted = report.count, ?target, older_than = %show(report.older_than), "purged");
    }
    print_report(args.format, &db, &report, |report| report.to_text())
}
