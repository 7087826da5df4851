//! One process of the consumer fleet the scale-out test starts, stops and kills: the
//! consumer library reading the partition queues, with the kit's effects handler. Settings
//! from the environment: `DATABASE_URL`, `AMQP_URL`, `FLEET_PREFIX`, `FLEET_PARTITIONS`,
//! `FLEET_CONSUMER` (the inbox's consumer name), `FLEET_LABEL` (this process, in
//! `fleet_effects.applied_by`).

use std::time::Duration;

use anyhow::{Context, Result};
use integration_tests::fleet::EffectsHandler;
use outbox_consumer::{Consumer, ConsumerConfig, Source};
use sqlx::postgres::PgPoolOptions;

fn var(name: &str) -> Result<String> {
    std::env::var(name).with_context(|| format!("{name} is not set"))
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let partitions: u32 = var("FLEET_PARTITIONS")?.parse()?;
    let pool = PgPoolOptions::new()
        .max_connections(partitions + 2)
        .acquire_timeout(Duration::from_secs(30))
        .connect(&var("DATABASE_URL")?)
        .await?;
    let mut config = ConsumerConfig::new(
        var("AMQP_URL")?,
        var("FLEET_CONSUMER")?,
        Source::Partitions {
            prefix: var("FLEET_PREFIX")?,
            partitions,
        },
    );
    config.retry_base = Duration::from_millis(50);
    config.retry_cap = Duration::from_millis(500);
    let consumer = Consumer::new(config, pool, EffectsHandler::new(var("FLEET_LABEL")?))?;
    let shutdown = async {
        if let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            term.recv().await;
        }
    };
    consumer.run(shutdown).await?;
    Ok(())
}
