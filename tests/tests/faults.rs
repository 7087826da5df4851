//! Broker and database restarts under a running relay. These tests stop shared services,
//! so the test command runs them alone, after the parallel tests.

#![allow(clippy::expect_used, clippy::unwrap_used)] // tests fail loudly by design

use std::collections::HashSet;
use std::time::Duration;

use anyhow::{Context, Result};
use integration_tests::{
    RunningRelay, TestBroker, TestDb, count_status, emit_tickets, postgres_version, relay_config,
    run_command, wait_until,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_recovers_from_a_broker_restart_and_loses_nothing() -> Result<()> {
    let db = TestDb::new().await?;
    let broker = TestBroker::new(&["#"]).await?;
    let mut ids = emit_tickets(&db.pool, 5_000, 500).await?;
    let mut config = relay_config(&db, &broker);
    config.batch_size = 100;
    let relay = RunningRelay::start(config);
    wait_until(Duration::from_secs(30), "some deliveries", || async {
        Ok(count_status(&db.pool, "delivered").await? > 300)
    })
    .await?;

    run_command("rabbitmqctl", &["stop_app"]).await?;
    wait_until(Duration::from_secs(20), "the relay to notice", || async {
        Ok(!relay.health.broker_ok())
    })
    .await?;
    ids.extend(emit_tickets(&db.pool, 1_000, 100).await?); // producers keep working meanwhile
    tokio::time::sleep(Duration::from_secs(2)).await;
    run_command("rabbitmqctl", &["start_app"]).await?;
    run_command("rabbitmqctl", &["await_startup"]).await?;

    wait_until(Duration::from_secs(120), "every row delivered", || async {
        Ok(count_status(&db.pool, "delivered").await? == ids.len() as i64)
    })
    .await?;
    let received = broker
        .collect(ids.len() * 2, Duration::from_secs(3))
        .await?;
    let seen: HashSet<String> = received.iter().map(|m| m.message_id.clone()).collect();
    let expected: HashSet<String> = ids.iter().map(ToString::to_string).collect();
    assert_eq!(seen, expected, "nothing lost across the broker restart");
    eprintln!(
        "broker restart: {} messages for {} events",
        received.len(),
        ids.len()
    );
    relay.stop().await.context("stopping the relay")?;
    broker.cleanup().await.context("cleaning up the broker")?;
    db.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_recovers_from_a_postgres_restart_and_loses_nothing() -> Result<()> {
    let db = TestDb::new().await?;
    let broker = TestBroker::new(&["#"]).await?;
    let mut ids = emit_tickets(&db.pool, 5_000, 500).await?;
    let mut config = relay_config(&db, &broker);
    config.batch_size = 100;
    let relay = RunningRelay::start(config);
    wait_until(Duration::from_secs(30), "some deliveries", || async {
        Ok(count_status(&db.pool, "delivered").await? > 300)
    })
    .await?;

    let version = postgres_version()?;
    run_command(
        "pg_ctlcluster",
        &["--skip-systemctl-redirect", &version, "main", "restart"],
    )
    .await?;
    // The test's own pool reconnects too; retry the first statements while it does.
    wait_until(Duration::from_secs(30), "Postgres back", || async {
        Ok(sqlx::query("SELECT 1").execute(&db.pool).await.is_ok())
    })
    .await?;
    ids.extend(emit_tickets(&db.pool, 1_000, 100).await?);

    wait_until(Duration::from_secs(120), "every row delivered", || async {
        Ok(count_status(&db.pool, "delivered").await.unwrap_or(0) == ids.len() as i64)
    })
    .await?;
    let received = broker
        .collect(ids.len() * 2, Duration::from_secs(3))
        .await?;
    let seen: HashSet<String> = received.iter().map(|m| m.message_id.clone()).collect();
    let expected: HashSet<String> = ids.iter().map(ToString::to_string).collect();
    assert_eq!(seen, expected, "nothing lost across the database restart");
    eprintln!(
        "postgres restart: {} messages for {} events",
        received.len(),
        ids.len()
    );
    relay.stop().await?;
    broker.cleanup().await?;
    db.cleanup().await
}
