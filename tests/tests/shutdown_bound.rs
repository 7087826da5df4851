//! `outbox_relay::run` enforces the shutdown bound itself: asked to stop while its waves
//! wait for confirms that will not come (a silent broker), it returns
//! `RelayError::ShutdownTimedOut` after `shutdown_timeout`, not after the confirm timeout.
//! A caller that embeds the relay (a test, the bench, a service) gets the same bound as
//! the binary.
//!
//! A [`Proxy`] stands between the relay and RabbitMQ; freezing it plays the silent broker.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use integration_tests::proxy::Proxy;
use integration_tests::{emit_tickets, relay_config, wait_until, with_db_and_broker};
use outbox_relay::{Health, RelayError};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_stopped_while_its_confirms_hang_returns_within_the_shutdown_bound() -> Result<()> {
    with_db_and_broker(&["#"], async |db, broker| {
        let proxy = Proxy::to_broker().await?;
        let mut config = relay_config(db, broker);
        config.amqp_url = proxy.amqp_url()?;
        config.confirm_timeout = Duration::from_secs(30);
        config.lease = Duration::from_secs(60);
        config.shutdown_timeout = Duration::from_secs(2);
        let health = Arc::new(Health::default());
        let stop = CancellationToken::new();
        let relay = tokio::spawn(outbox_relay::run(
            config,
            stop.clone().cancelled_owned(),
            health.clone(),
        ));
        wait_until(Duration::from_secs(30), "the relay connects", || {
            let up = health.broker_ok() && health.database_ok();
            async move { Ok(up) }
        })
        .await?;

        // The broker goes silent; events are claimed and published, and their confirms hang.
        // A lease alone is not enough (the claim may still be reading, and a loop cancelled
        // before it publishes ends at once): wait for the publishes themselves, bytes the
        // relay sent into the frozen link, far more than a heartbeat's.
        proxy.freeze();
        let before = proxy.bytes_from_clients();
        emit_tickets(&db.pool, 50, 50).await?;
        wait_until(Duration::from_secs(30), "publishes in flight", || {
            let sent = proxy.bytes_from_clients() - before;
            async move { Ok(sent > 4_000) }
        })
        .await?;
        let leased: i64 =
            sqlx::query_scalar("SELECT count(*) FROM outbox_partitions WHERE token IS NOT NULL")
                .fetch_one(&db.pool)
                .await?;
        ensure!(leased > 0, "publishing without a lease");

        let stopping = Instant::now();
        stop.cancel();
        let ended = tokio::time::timeout(Duration::from_secs(20), relay).await??;
        let took = stopping.elapsed();
        eprintln!("stopped in {took:?}: {ended:?}");
        ensure!(
            matches!(ended, Err(RelayError::ShutdownTimedOut(bound)) if bound == Duration::from_secs(2)),
            "expected the shutdown bound to end the run, got {ended:?}"
        );
        // The bound plus closing the connection (bounded at 2 s), well before the 30 s confirm
        // timeout would have ended the waves.
        ensure!(took < Duration::from_secs(10), "stopping took {took:?}");
        proxy.cut();
        Ok(())
    })
    .await
}
