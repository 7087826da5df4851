//! A delivery loop settles within its lease when the broker stops answering.
//!
//! The relay's delivery loops share one broker connection. When the broker goes silent
//! (no answer, no error: a blocked broker or a network partition), every loop's confirms
//! time out; the first loop to notice drops the connection and starts reconnecting. The
//! other loops must still settle their waves at once, without waiting on that connection
//! attempt (up to the connect timeout) or on anything else that needs the broker: a wave
//! starts only while its lease covers the publish and confirm timeouts plus a second for
//! the settle, so its claim is settled before the lease runs out ("Leases cannot overrun"
//! in the README). And a relay stopped while the broker is still silent stops promptly and
//! leaves nothing leased.
//!
//! A [`Proxy`] stands between the relay and RabbitMQ; freezing it plays the silent broker
//! without touching RabbitMQ.

use std::time::{Duration, Instant};

use anyhow::Result;
use integration_tests::proxy::Proxy;
use integration_tests::{
    RunningRelay, count_status, emit_tickets, relay_config, wait_until, with_db_and_broker,
};

/// How long a claim may stay unsettled past its lease before the test calls it an overrun:
/// the settle itself (a short transaction) on a busy machine. Waiting for a connection
/// attempt overran by up to the 15 s connect timeout.
const SETTLE_SLACK: Duration = Duration::from_secs(3);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_loop_settles_within_its_lease_when_the_broker_stops_answering() -> Result<()> {
    with_db_and_broker(&["#"], async |db, broker| {
        // Enough keys and events that every loop is mid-wave when the broker goes silent.
        emit_tickets(&db.pool, 30_000, 3_000).await?;
        let proxy = Proxy::to_broker().await?;

        let mut config = relay_config(db, broker);
        config.amqp_url = proxy.amqp_url()?;
        config.batch_size = 20;
        config.in_flight_batches = 8;
        config.publish_timeout = Duration::from_secs(1);
        config.confirm_timeout = Duration::from_secs(3);
        // The shortest lease the relay accepts (publish + confirm + 1 s) plus one second.
        config.lease = Duration::from_secs(6);
        let relay = RunningRelay::start(config);

        wait_until(Duration::from_secs(120), "500 events delivered", || async {
            Ok(count_status(&db.pool, "delivered").await? >= 500)
        })
        .await?;
        proxy.freeze();
        let frozen_at = Instant::now();

        // For four leases, watch for claims held past their lease: neither settled nor
        // reaped (this relay is the only one, and it cannot claim anew without its broker).
        let mut worst = Duration::ZERO;
        while frozen_at.elapsed() < Duration::from_secs(25) {
            let overrun_ms: Option<f64> = sqlx::query_scalar(
                "SELECT (extract(epoch FROM max(clock_timestamp() - leased_until)) * 1000)::float8
                   FROM outbox_partitions
                  WHERE token IS NOT NULL AND leased_until < clock_timestamp()",
            )
            .fetch_one(&db.pool)
            .await?;
            if let Some(ms) = overrun_ms {
                worst = worst.max(Duration::from_secs_f64(ms / 1000.0));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        // Stop while the broker is still silent (`stop` allows 30 s for the drain).
        let stopping = Instant::now();
        let stopped = relay.stop().await;
        let stop_took = stopping.elapsed();
        let still_leased: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox_leased_events")
            .fetch_one(&db.pool)
            .await?;
        eprintln!(
            "longest a claim stayed unsettled past its lease: {worst:?}; stop (broker silent) \
             took {stop_took:?}; rows still leased after it: {still_leased}"
        );

        assert!(
            worst <= SETTLE_SLACK,
            "a delivery loop held its claim {worst:?} past the lease before settling"
        );
        stopped.map_err(|error| error.context("stopping the relay while the broker is silent"))?;
        assert_eq!(still_leased, 0, "the stopped relay left rows leased");
        Ok(())
    })
    .await
}
