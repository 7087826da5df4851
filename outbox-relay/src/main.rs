//! `outbox-relay`: run the relay, or operate the outbox (migrate, catalog, ...).

mod cli;

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::Parser;
use metrics_exporter_prometheus::PrometheusBuilder;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use cli::{
    CatalogCommand, Cli, Command, DatabaseArgs, ExportFormat, InspectArgs, LogFormat, OutputFormat,
    PurgeArgs, ReplayStatus, RunArgs, SelectArgs, StatusArgs,
};
use outbox_relay::backoff::BackoffPolicy;
use outbox_relay::mask::mask_url;
use outbox_relay::ops::filter::parse_time;
use outbox_relay::ops::replay::ReplayRequest;
use outbox_relay::ops::{EventFilter, ReplayableStatus};
use outbox_relay::store::purge::{self, Purgeable};
use outbox_relay::{Health, pool_for};
use outbox_relay::{RelayConfig, http, telemetry};

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    // One thread: the relay waits on its servers far more than it computes (0.4 CPU
    // seconds per 10,000 events), and every extra thread costs a malloc arena (RSS).
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn,lapin=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

async fn dispatch(command: Command) -> Result<ExitCode> {
    match command {
        Command::Run(args) => run(*args).await,
        Command::Migrate(args) => migrate(&args).await.map(|()| ExitCode::SUCCESS),
        Command::Catalog(args) => catalog(args.command).map(|()| ExitCode::SUCCESS),
        Command::Replay(args) => {
            let status = match args.status {
                ReplayStatus::Dead => ReplayableStatus::Dead,
                ReplayStatus::Delivered => ReplayableStatus::Delivered,
                ReplayStatus::Discarded => ReplayableStatus::Discarded,
            };
            change(args.select, status, false)
                .await
                .map(|()| ExitCode::SUCCESS)
        }
        Command::Discard(args) => change(args.select, ReplayableStatus::Dead, true)
            .await
            .map(|()| ExitCode::SUCCESS),
        Command::Status(args) => status(args).await,
        Command::Inspect(args) => inspect(args).await.map(|()| ExitCode::SUCCESS),
        Command::Purge(args) => purge(args).await.map(|()| ExitCode::SUCCESS),
        Command::Wakeup(args) => wakeup(args).await.map(|()| ExitCode::SUCCESS),
    }
}

/// `wakeup [notify|poll]`: prints the database's wake-up mode, or switches it (running relays
/// follow within seconds) and prints the new one.
async fn wakeup(args: cli::WakeupArgs) -> Result<()> {
    let pool = pool_for(&args.database.database_url, 1)?;
    let mode = match args.mode {
        None => {
            sqlx::query_scalar("SELECT outbox_wakeup_mode()")
                .fetch_one(&pool)
                .await
        }
        Some(mode) => switch_wakeup_mode(&pool, mode.as_str()).await,
    };
    pool.close().await;
    let database = mask_url(&args.database.database_url);
    let mode = mode.map_err(|error| {
        let code = match &error {
            sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
            _ => None,
        };
        let hint = match code.as_deref() {
            Some("42883" | "42P01") => "the schema is not migrated: run `outbox-relay migrate`",
            Some("42501") => "switching needs the owner of the table outbox_events",
            Some("55P03") => {
                "writers kept the table outbox_events busy for 10 s: retry when their transactions end"
            }
            _ => "see the error",
        };
        anyhow::anyhow!("wake-up mode of {database}: {hint} ({error})")
    })?;
    if args.mode.is_some() {
        info!(mode, "wake-up mode set");
    }
    println!("{mode}");
    Ok(())
}

/// Switches the wake-up mode. Each attempt holds writers back for at most the function's
/// 200 ms lock timeout; attempts repeat for up to 10 s while writers keep the table busy.
async fn switch_wakeup_mode(pool: &sqlx::PgPool, mode: &str) -> Result<String, sqlx::Error> {
    let give_up = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let switched = sqlx::query_scalar("SELECT outbox_set_wakeup_mode($1)")
            .bind(mode)
            .fetch_one(pool)
            .await;
        match switched {
            Err(sqlx::Error::Database(error))
                if error.code().as_deref() == Some("55P03")
                    && std::time::Instant::now() < give_up =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            }
            other => return other,
        }
    }
}

/// `replay` (or, with `discard`, `discard`) of the events `args` select.
async fn change(args: SelectArgs, status: ReplayableStatus, discard: bool) -> Result<()> {
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
    let request = ReplayRequest {
        status,
        filter,
        limit: args.limit,
        all: args.all,
    };
    let actor = args
        .actor
        .clone()
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "unknown".to_owned());
    let pool = pool_for(&args.database.database_url, 2)?;
    let report = if discard {
        outbox_relay::ops::replay::discard(&pool, &request, &actor, args.dry_run).await?
    } else {
        outbox_relay::ops::replay::replay(&pool, &request, &actor, args.dry_run).await?
    };
    match args.format {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        OutputFormat::Text => {
            let verb = match (report.dry_run, discard) {
                (true, false) => "would replay",
                (false, false) => "replayed",
                (true, true) => "would discard",
                (false, true) => "discarded",
            };
            println!("{verb} {} event(s)", report.count);
            if let Some(audit) = report.audit_id {
                println!("audit record {audit}");
            }
            for event in &report.sample {
                println!(
                    "  {}  {}  {}  key={}  attempts={}",
                    event.id,
                    event.created_at.to_rfc3339(),
                    event.event_type,
                    event.ordering_key.as_deref().unwrap_or("-"),
                    event.attempts
                );
            }
            if report.count > report.sample.len() {
                println!("  ... and {} more", report.count - report.sample.len());
            }
        }
    }
    Ok(())
}

async fn status(args: StatusArgs) -> Result<ExitCode> {
    let pool = pool_for(&args.database.database_url, 2)?;
    let report = outbox_relay::ops::status::status(&pool, args.top).await?;
    match args.format {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        OutputFormat::Text => print!("{}", report.to_text()),
    }
    if let Some(max_lag) = args.max_lag
        && report.oldest_pending_age_seconds > max_lag.as_secs_f64()
    {
        eprintln!(
            "ALERT: the oldest pending event is {:.1}s old, over --max-lag {:?}",
            report.oldest_pending_age_seconds, max_lag
        );
        return Ok(ExitCode::from(2));
    }
    Ok(ExitCode::SUCCESS)
}

async fn inspect(args: InspectArgs) -> Result<()> {
    let pool = pool_for(&args.database.database_url, 2)?;
    match outbox_relay::ops::inspect::inspect(&pool, args.id).await? {
        Some(row) => println!("{}", serde_json::to_string_pretty(&row)?),
        None => bail!("no event with id {}", args.id),
    }
    Ok(())
}

async fn purge(args: PurgeArgs) -> Result<()> {
    let pool = pool_for(&args.database.database_url, 2)?;
    let (what, kinds): (&str, &[Purgeable]) = if args.inbox {
        ("inbox records", &[Purgeable::Inbox])
    } else {
        (
            "delivered and discarded events",
            &[Purgeable::Delivered, Purgeable::Discarded],
        )
    };
    if args.dry_run {
        let mut count = 0;
        for kind in kinds {
            count += purge::count(&pool, *kind, args.older_than).await?;
        }
        println!(
            "would delete {count} {what} older than {:?}",
            args.older_than
        );
        return Ok(());
    }
    let started = std::time::Instant::now();
    let mut deleted = 0;
    for kind in kinds {
        deleted += purge::purge(&pool, *kind, args.older_than, args.batch_size).await?;
    }
    if !args.inbox {
        while purge::idle_key_locks(&pool, args.batch_size).await?
            >= u64::try_from(args.batch_size).unwrap_or(u64::MAX)
        {}
    }
    info!(deleted, what, "purged");
    println!(
        "deleted {deleted} {what} older than {:?} in {:.1?}",
        args.older_than,
        started.elapsed()
    );
    Ok(())
}

async fn migrate(args: &DatabaseArgs) -> Result<()> {
    let pool = pool_for(&args.database_url, 2)?;
    outbox_core::migrate(&pool)
        .await
        .with_context(|| format!("migrating {}", mask_url(&args.database_url)))?;
    info!(database = %mask_url(&args.database_url), "migrations applied and catalog synced");
    pool.close().await;
    Ok(())
}

fn catalog(command: CatalogCommand) -> Result<()> {
    use std::io::Write;
    let registry = catalog_types::registry();
    let text = match command {
        CatalogCommand::List => catalog_types::export::table(registry),
        CatalogCommand::Schema { event } => {
            let Some(entry) = registry.find(&event) else {
                bail!(
                    "`{event}` is neither an event type nor a schema ref of the catalog (see `outbox-relay catalog list`)"
                );
            };
            serde_json::to_string_pretty(&entry.schema)? + "\n"
        }
        CatalogCommand::Export { format, output } => {
            let text = match format {
                ExportFormat::Json => catalog_types::export::json(registry)?,
                ExportFormat::Sql => catalog_types::export::sql(registry)?,
                ExportFormat::Markdown => catalog_types::export::markdown(registry),
            };
            if let Some(path) = output {
                std::fs::write(&path, text)
                    .with_context(|| format!("writing {}", path.display()))?;
                return Ok(());
            }
            text
        }
    };
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(())
}

fn relay_config(args: &RunArgs) -> Result<RelayConfig> {
    let mut config = RelayConfig::new(&args.database.database_url, &args.amqp_url);
    config.exchange = args.exchange.clone();
    config.routing_key_template = args.routing_key.clone();
    config.batch_size = args.batch_size;
    config.poll_interval = args.poll_interval;
    config.poll_min_interval = args.poll_min_interval;
    config.in_flight_batches = args.in_flight_batches;
    config.listen = !args.no_listen;
    config.max_attempts = args.max_attempts;
    config.retry = BackoffPolicy {
        base: args.retry_base,
        factor: args.retry_factor,
        cap: args.retry_cap,
    };
    config.lease = args.lease;
    config.confirm_timeout = args.confirm_timeout;
    config.publish_timeout = args.publish_timeout;
    config.max_message_size = args.max_message_size;
    config.shutdown_timeout = args.shutdown_timeout;
    config.retention = args.retention;
    config.gauge_interval = args.gauge_interval;
    if let Some(id) = &args.relay_id {
        config.relay_id = id.clone();
    }
    config.validate()?;
    Ok(config)
}

async fn run(args: RunArgs) -> Result<ExitCode> {
    let config = relay_config(&args)?;
    if args.migrate {
        migrate(&args.database).await?;
    }
    let metrics = PrometheusBuilder::new()
        .set_buckets(&[
            0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
        ])
        .context("metric buckets")?
        .install_recorder()
        .context("installing the metrics recorder")?;
    telemetry::describe();

    let cancel = CancellationToken::new();
    let health = Arc::new(Health::default());
    let listener = tokio::net::TcpListener::bind(args.http_addr)
        .await
        .with_context(|| format!("binding --http-addr {}", args.http_addr))?;
    let router = http::router(health.clone(), Some(metrics));
    let http_cancel = cancel.clone();
    tokio::spawn(async move {
        info!(addr = %args.http_addr, "serving /healthz, /readyz and /metrics");
        if let Err(e) = axum::serve(listener, router)
            .with_graceful_shutdown(async move { http_cancel.cancelled().await })
            .await
        {
            error!(error = %e, "HTTP server failed");
        }
    });
    tokio::spawn(stop_on_signal(cancel.clone()));

    // The library enforces the shutdown bound; an overrun exits 1.
    match outbox_relay::run(config, cancel.clone().cancelled_owned(), health).await {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(outbox_relay::RelayError::ShutdownTimedOut(_)) => Ok(ExitCode::FAILURE),
        Err(error) => Err(error.into()),
    }
}

/// Cancels on the first SIGTERM or SIGINT.
async fn stop_on_signal(cancel: CancellationToken) {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = terminate => info!("SIGTERM: draining"),
        _ = tokio::signal::ctrl_c() => info!("SIGINT: draining"),
    }
    cancel.cancel();
}
