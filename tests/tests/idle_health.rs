//! An idle relay reports a lost broker, in both wake-up modes.
//!
//! With nothing to deliver, every delivery loop waits for work. It must still come back
//! every `--poll-interval` to look at its broker link, so that `Health::broker_ok` (and with
//! it `/readyz`) turns false soon after the broker goes away, whether the loops are woken by
//! notifications (mode `notify`) or poll for work (mode `poll`, the migrated default).
//!
//! The relay reaches RabbitMQ through a [`Proxy`], which the test cuts (listener and every
//! forwarded connection), so RabbitMQ itself is never touched.

use std::time::Duration;

use anyhow::Result;
use integration_tests::proxy::Proxy;
use integration_tests::{RunningRelay, relay_config, wait_until, with_db_and_broker};

const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// Generous on a busy machine: 30 poll intervals.
const NOTICE_WITHIN: Duration = Duration::from_secs(15);

/// Starts an idle relay in wake-up `mode`, cuts its broker link, and waits for
/// `broker_ok` to turn false.
async fn an_idle_relay_notices_the_lost_broker(mode: &str) -> Result<()> {
    with_db_and_broker(&["#"], async |db, broker| {
        let set: String = sqlx::query_scalar("SELECT outbox_set_wakeup_mode($1)")
            .bind(mode)
            .fetch_one(&db.pool)
            .await?;
        assert_eq!(set, mode);
        let proxy = Proxy::to_broker().await?;

        let mut config = relay_config(db, broker);
        config.amqp_url = proxy.amqp_url()?;
        config.poll_interval = POLL_INTERVAL;
        let relay = RunningRelay::start(config);
        wait_until(Duration::from_secs(30), "the relay connects", || async {
            Ok(relay.health.broker_ok() && relay.health.database_ok())
        })
        .await?;
        // Let every loop settle into waiting for work (several poll intervals).
        tokio::time::sleep(4 * POLL_INTERVAL).await;

        proxy.cut();
        wait_until(NOTICE_WITHIN, "broker_ok to turn false", || async {
            Ok(!relay.health.broker_ok())
        })
        .await
        .map_err(|error| {
            error.context(format!(
                "mode {mode}: an idle relay still reports its broker ok after the link was cut"
            ))
        })?;
        relay.stop().await
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_mode_notify_an_idle_relay_reports_the_lost_broker() -> Result<()> {
    an_idle_relay_notices_the_lost_broker("notify").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_mode_poll_an_idle_relay_reports_the_lost_broker() -> Result<()> {
    an_idle_relay_notices_the_lost_broker("poll").await
}
