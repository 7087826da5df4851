//! `run`: the relay itself, with its HTTP endpoints, until SIGTERM or SIGINT.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use outbox_relay::foundation::backoff::BackoffPolicy;
use outbox_relay::foundation::db::wait_until_reachable;
use outbox_relay::service::{http, telemetry};
use outbox_relay::{Health, RelayConfig, RelayError};

use crate::cli::RunArgs;

/// Runs the relay; exit code 1 when draining outlives `--shutdown-timeout`.
pub async fn run(args: RunArgs) -> Result<ExitCode> {
    let config = relay_config(&args)?;
    if args.migrate {
        // A sidecar may start before its database: wait for it, as `run` itself does.
        wait_until_reachable(&args.database.database_url, config.db_timeout).await;
        super::migrate::migrate(&args.database).await?;
    }
    let metrics = telemetry::install().context("installing the metrics recorder")?;
    let cancel = CancellationToken::new();
    let health = Arc::new(Health::default());
    http::serve(
        args.http_addr,
        health.clone(),
        Some(metrics),
        cancel.clone(),
    )
    .await
    .with_context(|| format!("binding --http-addr {}", args.http_addr))?;
    tokio::spawn(stop_on_signal(cancel.clone()));

    // The library enforces the shutdown bound; an overrun exits 1.
    match outbox_relay::run(config, cancel.cancelled_owned(), health).await {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(RelayError::ShutdownTimedOut(_)) => Ok(ExitCode::FAILURE),
        Err(error) => Err(error.into()),
    }
}

/// The relay's settings from the flags, checked by [`RelayConfig::validate`].
fn relay_config(args: &RunArgs) -> Result<RelayConfig> {
    let mut config = RelayConfig::new(&args.database.database_url, &args.amqp_url);
    config.amqp_ca_file = args.amqp_ca_file.clone();
    config.exchange = args.exchange.clone();
    config.routing_key_template = args.routing_key.clone();
    config.partitions = args.partitions;
    config.batch_size = args.batch_size;
    config.poll_interval = args.poll_interval.into();
    config.poll_min_interval = args.poll_min_interval.into();
    config.in_flight_batches = args.in_flight_batches;
    config.listen = !args.no_listen;
    config.ownership = !args.no_ownership;
    config.max_attempts = args.max_attempts;
    config.retry = BackoffPolicy {
        base: args.retry_base.into(),
        factor: args.retry_factor,
        cap: args.retry_cap.into(),
    };
    config.lease = args.lease.into();
    config.confirm_timeout = args.confirm_timeout.into();
    config.publish_timeout = args.publish_timeout.into();
    config.heartbeat = args.heartbeat.into();
    config.db_timeout = args.db_timeout.into();
    config.max_message_size = args.max_message_size;
    config.shutdown_timeout = args.shutdown_timeout.into();
    config.retention = args.retention.map(Into::into);
    config.gauge_interval = args.gauge_interval.into();
    if let Some(id) = &args.relay_id {
        config.relay_id = id.clone();
    }
    config.validate()?;
    Ok(config)
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

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    /// The flags' defaults are the library's: `run` without flags configures exactly what
    /// `RelayConfig::new` does.
    #[test]
    fn run_without_flags_is_the_library_default() {
        let Command::Run(args) = Cli::parse_from(["outbox-relay", "run"]).command else {
            panic!("`run` parsed as another command");
        };
        let config = relay_config(&args).unwrap();
        // The URLs may come from the environment (the test command sets them).
        let mut expected = RelayConfig::new(&args.database.database_url, &args.amqp_url);
        expected.relay_id = config.relay_id.clone();
        assert_eq!(config, expected);
        assert_eq!(args.http_addr, http::DEFAULT_ADDR);
    }
}
