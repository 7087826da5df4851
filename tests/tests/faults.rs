//! Broker and database restarts under a running relay. These tests stop shared services,
//! so the test command runs them alone, after the parallel tests.

#![allow(clippy::expect_used, clippy::unwrap_used)] // tests fail loudly by design

use std::time::Duration;

use anyhow::{Context, Result};
use integration_tests::{
    RunningRelay, TestBroker, TestDb, count_status, emit_tickets, id_set, postgres_version,
    relay_config, run_command, wait_until,
};

/// What to do to the relay's surroundings mid-run.
#[derive(Debug, Clone, Copy)]
enum Disruption {
    /// `rabbitmqctl stop_app`, emit more events meanwhile, `start_app`.
    BrokerRestart,
    /// `pg_ctlcluster ... restart`, then emit more events.
    PostgresRestart,
}

/// Runs a relay over 5,000 events, applies `disruption` once some are delivered, emits
/// 1,000 more, and checks every event reaches the queue (duplicates only as redeliveries).
async fn delivers_everything_across(disruption: Disruption) -> Result<()> {
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

    match disruption {
        Disruption::BrokerRestart => {
            run_command("rabbitmqctl", &["stop_app"]).await?;
            wait_until(Duration::from_secs(20), "the relay to notice", || async {
                Ok(!relay.health.broker_ok())
            })
            .await?;
            ids.extend(emit_tickets(&db.pool, 1_000, 100).await?); // producers keep working meanwhile
            tokio::time::sleep(Duration::from_secs(2)).await;
            run_command("rabbitmqctl", &["start_app"]).await?;
            run_command("rabbitmqctl", &["await_startup"]).await?;
        }
        Disruption::PostgresRestart => {
            let version = postgres_version()?;
            run_command(
                "pg_ctlcluster",
                &["--skip-systemctl-redirect", &version, "main", "restart"],
            )
            .await?;
            // The test's own pool reconnects too; retry until it does.
            wait_until(Duration::from_secs(30), "Postgres back", || async {
                Ok(sqlx::query("SELECT 1").execute(&db.pool).await.is_ok())
            })
            .await?;
            ids.extend(emit_tickets(&db.pool, 1_000, 100).await?);
        }
    }

    wait_until(Duration::from_secs(120), "every row delivered", || async {
        Ok(count_status(&db.pool, "delivered").await.unwrap_or(0) == ids.len() as i64)
    })
    .await?;
    let (seen, messages) = broker
        .received_ids(ids.len() * 2, Duration::from_secs(3))
        .await?;
    assert_eq!(seen, id_set(&ids), "nothing lost across {disruption:?}");
    eprintln!(
        "{disruption:?}: {messages} messages for {} events",
        ids.len()
    );
    relay.stop().await.context("stopping the relay")?;
    broker.cleanup().await.context("cleaning up the broker")?;
    db.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_recovers_from_a_broker_restart_and_loses_nothing() -> Result<()> {
    delivers_everything_across(Disruption::BrokerRestart).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_recovers_from_a_postgres_restart_and_loses_nothing() -> Result<()> {
    delivers_everything_across(Disruption::PostgresRestart).await
}

/// Puts the broker's memory watermark back when dropped, whatever the test did.
struct WatermarkGuard(String);

impl Drop for WatermarkGuard {
    fn drop(&mut self) {
        let _ = std::process::Command::new("rabbitmqctl")
            .args(["set_vm_memory_high_watermark", &self.0])
            .output();
    }
}

/// A broker that blocks publishers (a memory alarm: it stops reading from publishing
/// connections) must not hold a wave past its lease: every publish and every confirm wait is
/// bounded, failed waves are settled before their lease runs out, and delivery resumes once
/// the alarm clears.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_blocking_publishers_cannot_hold_a_wave_past_its_lease() -> Result<()> {
    let db = TestDb::new().await?;
    let broker = TestBroker::new(&["#"]).await?;
    let output = tokio::process::Command::new("rabbitmqctl")
        .args(["eval", "vm_memory_monitor:get_vm_memory_high_watermark()."])
        .output()
        .await?;
    let watermark = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let watermark = if watermark.parse::<f64>().is_ok() {
        watermark
    } else {
        "0.4".to_owned()
    };
    let guard = WatermarkGuard(watermark.clone());

    let mut config = relay_config(&db, &broker);
    config.lease = Duration::from_secs(4);
    config.publish_timeout = Duration::from_secs(1);
    config.confirm_timeout = Duration::from_secs(1);
    config.max_attempts = 1_000;
    let relay = RunningRelay::start(config);
    wait_until(Duration::from_secs(20), "the relay connected", || async {
        Ok(relay.health.broker_ok())
    })
    .await?;

    run_command("rabbitmqctl", &["set_vm_memory_high_watermark", "0"]).await?;
    let ids = emit_tickets(&db.pool, 200, 20).await?;
    // Two leases' worth of blocked broker: no lease may outlive its deadline unsettled.
    let blocked_until = std::time::Instant::now() + Duration::from_secs(9);
    let mut overdue_seen = 0;
    while std::time::Instant::now() < blocked_until {
        let overdue: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM outbox_leased_events WHERE leased_until < clock_timestamp()",
        )
        .fetch_one(&db.pool)
        .await?;
        overdue_seen = overdue_seen.max(overdue);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (delivered_while_blocked, attempted): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM outbox_event_status WHERE status = 'delivered'),
                (SELECT count(*) FROM outbox_attempts WHERE failures > 0)",
    )
    .fetch_one(&db.pool)
    .await?;

    run_command("rabbitmqctl", &["set_vm_memory_high_watermark", &watermark]).await?;
    drop(guard);
    wait_until(Duration::from_secs(60), "every row delivered", || async {
        Ok(count_status(&db.pool, "delivered").await? == ids.len() as i64)
    })
    .await?;
    eprintln!(
        "blocked broker: {delivered_while_blocked} delivered, {attempted} events attempted, \
         {overdue_seen} leases seen overdue"
    );
    assert_eq!(
        overdue_seen, 0,
        "a lease ran out while its wave was still waiting on the blocked broker"
    );
    assert!(attempted > 0, "the blocked waves ended as failed attempts");
    relay.stop().await?;
    broker.cleanup().await?;
    db.cleanup().await
}
