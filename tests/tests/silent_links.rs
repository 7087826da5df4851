//! The relay against a bad network, one fault per test: latency, reset connections, a
//! blackholed broker link and a blackholed database link. Each test puts a [`Proxy`]
//! between the relay and both servers (the servers themselves are the shared ones and are
//! never touched), prints how long the relay took to notice the fault and to recover, and
//! checks that every event reached the queue and nothing stayed leased.
//!
//! A blackhole is the hard case: nothing is closed, and the relay's kernel sees its
//! segments acknowledged by the proxy, so TCP keepalive cannot tell. The broker link is
//! caught by AMQP heartbeats (`RelayConfig::heartbeat`: lapin drops a connection that heard
//! nothing for twice the heartbeat) and, while publishing, by confirm timeouts; the
//! database link by the client-side deadline on each claim, settle and look for work
//! (`RelayConfig::db_timeout`), after which the stuck connection is closed, not reused.

#![allow(clippy::expect_used, clippy::unwrap_used)] // tests fail loudly by design

use std::time::{Duration, Instant};

use anyhow::Result;
use integration_tests::proxy::Proxy;
use integration_tests::{
    RunningRelay, TestBroker, TestDb, count_status, emit_tickets, id_set, relay_config, wait_until,
    with_db_and_broker,
};
use outbox_relay::RelayConfig;

/// The heartbeat the tests ask for: a silent broker link is dropped after twice this.
const HEARTBEAT: Duration = Duration::from_secs(2);

/// The database deadline of the tests.
const DB_TIMEOUT: Duration = Duration::from_secs(3);

/// Scheduling slack on a busy 2-core machine, on top of each bound.
const SLACK: Duration = Duration::from_secs(5);

/// The relay's settings with both links through the proxies.
fn config_through(
    db: &TestDb,
    broker: &TestBroker,
    db_proxy: &Proxy,
    broker_proxy: &Proxy,
) -> Result<RelayConfig> {
    let mut config = relay_config(db, broker);
    config.database_url = db_proxy.redirect(&db.url())?;
    config.amqp_url = broker_proxy.amqp_url()?;
    config.heartbeat = HEARTBEAT;
    config.db_timeout = DB_TIMEOUT;
    config.batch_size = 100;
    Ok(config)
}

/// Waits until every event is delivered, stops the relay, and checks that the queue holds
/// exactly the events (duplicates allowed) and that nothing is leased.
async fn everything_arrived(
    db: &TestDb,
    broker: &TestBroker,
    relay: RunningRelay,
    ids: &[uuid::Uuid],
) -> Result<usize> {
    wait_until(
        Duration::from_secs(180),
        "every event delivered",
        || async { Ok(count_status(&db.pool, "delivered").await? == ids.len() as i64) },
    )
    .await?;
    relay.stop().await?;
    let leased: i64 =
        sqlx::query_scalar("SELECT count(*) FROM outbox_partitions WHERE token IS NOT NULL")
            .fetch_one(&db.pool)
            .await?;
    assert_eq!(leased, 0, "rows left leased");
    let (seen, messages) = broker
        .received_ids(ids.len() * 3, Duration::from_secs(3))
        .await?;
    assert_eq!(seen, id_set(ids), "every event reached the queue");
    Ok(messages)
}

/// Polls `check` every 20 ms until it holds; returns how long that took.
async fn time_until(
    limit: Duration,
    what: &str,
    mut check: impl FnMut() -> bool,
) -> Result<Duration> {
    let started = Instant::now();
    while !check() {
        if started.elapsed() > limit {
            anyhow::bail!("{what} did not happen within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(started.elapsed())
}

/// Latency on both links, well below every deadline, is no fault: nothing times out, no
/// attempt fails, and everything is delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_slows_the_relay_without_false_alarms() -> Result<()> {
    with_db_and_broker(&["#"], async |db, broker| {
        let (db_proxy, broker_proxy) = (Proxy::to_database().await?, Proxy::to_broker().await?);
        let latency = Duration::from_millis(50);
        db_proxy.set_latency(latency);
        broker_proxy.set_latency(latency);
        let ids = emit_tickets(&db.pool, 2_000, 200).await?;
        let started = Instant::now();
        let relay = RunningRelay::start(config_through(db, broker, &db_proxy, &broker_proxy)?);
        wait_until(
            Duration::from_secs(180),
            "every event delivered",
            || async { Ok(count_status(&db.pool, "delivered").await? == ids.len() as i64) },
        )
        .await?;
        let took = started.elapsed();
        // A delivery counts as one attempt; more, or an error recorded, is a failed one.
        let failed: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM outbox_event_status WHERE attempts > 1 OR last_error IS NOT NULL",
        )
        .fetch_one(&db.pool)
        .await?;
        let messages = everything_arrived(db, broker, relay, &ids).await?;
        eprintln!(
            "latency {latency:?} each way on both links: {} events in {took:?}, {failed} failed \
             attempts, {messages} messages",
            ids.len()
        );
        assert_eq!(
            failed, 0,
            "latency under the deadlines caused failed attempts"
        );
        Ok(())
    })
    .await
}

/// Connections reset (RST) under load, three times on both links: the relay sees the
/// error at once, reconnects, and loses nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_connections_are_noticed_at_once_and_reconnected() -> Result<()> {
    with_db_and_broker(&["#"], async |db, broker| {
        let (db_proxy, broker_proxy) = (Proxy::to_database().await?, Proxy::to_broker().await?);
        let mut ids = emit_tickets(&db.pool, 6_000, 600).await?;
        let mut config = config_through(db, broker, &db_proxy, &broker_proxy)?;
        config.batch_size = 50;
        let relay = RunningRelay::start(config);
        let mut reconnects = Vec::new();
        for round in 1..=3 {
            let before = count_status(&db.pool, "delivered").await?;
            wait_until(Duration::from_secs(60), "deliveries under way", || async {
                Ok(count_status(&db.pool, "delivered").await? > before + 200)
            })
            .await?;
            let (db_opened, broker_opened) = (
                db_proxy.connections_accepted(),
                broker_proxy.connections_accepted(),
            );
            let at_reset = count_status(&db.pool, "delivered").await?;
            db_proxy.reset();
            broker_proxy.reset();
            let reset_at = Instant::now();
            let (mut broker_back, mut db_back, mut resumed) = (None, None, None);
            while resumed.is_none() || broker_back.is_none() || db_back.is_none() {
                let elapsed = reset_at.elapsed();
                anyhow::ensure!(
                    elapsed < Duration::from_secs(60),
                    "no recovery from reset {round}"
                );
                if broker_back.is_none() && broker_proxy.connections_accepted() > broker_opened {
                    broker_back = Some(elapsed);
                }
                if db_back.is_none() && db_proxy.connections_accepted() > db_opened {
                    db_back = Some(elapsed);
                }
                // Settles in flight at the reset may still land: count a few batches more.
                if resumed.is_none() && count_status(&db.pool, "delivered").await? > at_reset + 200
                {
                    resumed = Some(elapsed);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let (broker_back, db_back, resumed) = (
                broker_back.unwrap_or_default(),
                db_back.unwrap_or_default(),
                resumed.unwrap_or_default(),
            );
            reconnects.push((broker_back, db_back));
            ids.extend(emit_tickets(&db.pool, 500, 50).await?);
            eprintln!(
                "reset {round}: {} connections aborted so far; broker reconnected after \
                 {broker_back:?}, database after {db_back:?}, deliveries resumed after {resumed:?}",
                db_proxy.connections_reset() + broker_proxy.connections_reset()
            );
        }
        let messages = everything_arrived(db, broker, relay, &ids).await?;
        eprintln!(
            "resets: {} events, {messages} messages (duplicates are redeliveries)",
            ids.len()
        );
        assert!(
            db_proxy.connections_reset() >= 3 && broker_proxy.connections_reset() >= 3,
            "the resets hit live connections"
        );
        for (broker_back, db_back) in reconnects {
            assert!(
                broker_back < Duration::from_secs(10) + SLACK,
                "{broker_back:?}"
            );
            assert!(db_back < Duration::from_secs(10) + SLACK, "{db_back:?}");
        }
        Ok(())
    })
    .await
}

/// An idle relay whose broker link goes silent notices through heartbeats alone, within
/// twice the heartbeat, keeps trying while the blackhole lasts, and delivers what was
/// written meanwhile once the path returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blackholed_broker_link_is_noticed_by_heartbeats() -> Result<()> {
    with_db_and_broker(&["#"], async |db, broker| {
        let (db_proxy, broker_proxy) = (Proxy::to_database().await?, Proxy::to_broker().await?);
        let mut ids = emit_tickets(&db.pool, 200, 20).await?;
        let relay = RunningRelay::start(config_through(db, broker, &db_proxy, &broker_proxy)?);
        wait_until(
            Duration::from_secs(60),
            "the first events delivered",
            || async { Ok(count_status(&db.pool, "delivered").await? == ids.len() as i64) },
        )
        .await?;
        // Idle now: only heartbeats cross the link.
        tokio::time::sleep(HEARTBEAT).await;
        broker_proxy.blackhole();
        let detected = time_until(
            HEARTBEAT * 2 + SLACK + Duration::from_secs(5),
            "the relay noticing the silent broker",
            || !relay.health.broker_ok(),
        )
        .await?;
        ids.extend(emit_tickets(&db.pool, 300, 30).await?);
        // Longer than the detection, so the relay retries into the blackhole too.
        tokio::time::sleep(HEARTBEAT * 4).await;
        let delivered_while_silent = count_status(&db.pool, "delivered").await?;
        broker_proxy.restore();
        let restored = Instant::now();
        wait_until(
            Duration::from_secs(90),
            "deliveries after the path returns",
            || async { Ok(count_status(&db.pool, "delivered").await? == ids.len() as i64) },
        )
        .await?;
        let recovered = restored.elapsed();
        let messages = everything_arrived(db, broker, relay, &ids).await?;
        eprintln!(
            "broker blackhole (heartbeat {HEARTBEAT:?}): noticed after {detected:?}; \
             {delivered_while_silent} delivered before the path returned; all {} delivered \
             {recovered:?} after it returned; {messages} messages",
            ids.len()
        );
        assert!(
            detected <= HEARTBEAT * 2 + SLACK,
            "the silent broker went unnoticed for {detected:?}"
        );
        assert_eq!(
            delivered_while_silent, 200,
            "nothing counts as delivered while the broker is silent"
        );
        Ok(())
    })
    .await
}

/// A relay whose database link goes silent while events flow gives up on each step at its
/// deadline, closes the stuck connection, retries, and delivers everything once the path
/// returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blackholed_database_link_is_noticed_by_deadlines() -> Result<()> {
    with_db_and_broker(&["#"], async |db, broker| {
        let (db_proxy, broker_proxy) = (Proxy::to_database().await?, Proxy::to_broker().await?);
        let mut ids = emit_tickets(&db.pool, 3_000, 300).await?;
        let mut config = config_through(db, broker, &db_proxy, &broker_proxy)?;
        config.batch_size = 20;
        let relay = RunningRelay::start(config);
        wait_until(Duration::from_secs(60), "deliveries under way", || async {
            Ok(count_status(&db.pool, "delivered").await? > 300)
        })
        .await?;
        let opened = db_proxy.connections_accepted();
        db_proxy.blackhole();
        let detected = time_until(
            DB_TIMEOUT * 2 + SLACK + Duration::from_secs(5),
            "the relay noticing the silent database",
            || !relay.health.database_ok(),
        )
        .await?;
        // Writers are not behind the proxy: they go on.
        ids.extend(emit_tickets(&db.pool, 500, 50).await?);
        tokio::time::sleep(DB_TIMEOUT * 3).await;
        let retried = db_proxy.connections_accepted() - opened;
        db_proxy.restore();
        let restored = Instant::now();
        let before = count_status(&db.pool, "delivered").await?;
        wait_until(Duration::from_secs(60), "deliveries resuming", || async {
            Ok(count_status(&db.pool, "delivered").await? > before)
        })
        .await?;
        let resumed = restored.elapsed();
        let messages = everything_arrived(db, broker, relay, &ids).await?;
        eprintln!(
            "database blackhole (deadline {DB_TIMEOUT:?}): noticed after {detected:?}; {retried} \
             new connections tried during it; deliveries resumed {resumed:?} after the path \
             returned; {} events, {messages} messages",
            ids.len()
        );
        assert!(
            detected <= DB_TIMEOUT + SLACK,
            "the silent database went unnoticed for {detected:?}"
        );
        assert!(
            retried >= 1,
            "the stuck connections were replaced by new ones"
        );
        Ok(())
    })
    .await
}
