//! The server's side of a silent link. A relay whose database link goes silent gives up on
//! its statement at `--db-timeout` and closes its connection, but the server cannot see that
//! close (nothing crosses the link): the session stays, with whatever its transaction holds.
//! A claim or settle transaction holds the claim lock (and writers' key locks), so without a
//! bound on the server side every other relay would wait for it — until the server's TCP
//! keepalive fails the connection, two hours by default. These tests put one relay behind
//! the test kit's fault proxy, which keeps the server's side of each link open, as a
//! partition does.

#![allow(clippy::expect_used, clippy::unwrap_used)] // tests fail loudly by design

use std::time::{Duration, Instant};

use anyhow::Result;
use integration_tests::proxy::Proxy;
use integration_tests::{
    RunningRelay, TestDb, count_status, emit_tickets, relay_config, wait_until, with_db_and_broker,
};
use outbox_relay::store::IDLE_IN_TRANSACTION_TIMEOUT;

/// The database deadline of the relays here.
const DB_TIMEOUT: Duration = Duration::from_secs(3);

/// Scheduling slack on a busy 2-core machine (CI runs this beside 249 other tests). The
/// point is minutes against hours: without the idle bound, B waits as long as the silence.
const SLACK: Duration = Duration::from_secs(20);

/// [`IDLE_IN_TRANSACTION_TIMEOUT`] (whole seconds, as PostgreSQL reads `10s`).
fn idle_timeout() -> Duration {
    let seconds = IDLE_IN_TRANSACTION_TIMEOUT.strip_suffix('s').unwrap();
    Duration::from_secs(seconds.parse().unwrap())
}

/// Advisory locks granted to sessions of `application`, and those sessions' states.
async fn advisory_locks_of(db: &TestDb, application: &str) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT l.mode || ' held by a session ' || a.state || ' for '
                || to_char(now() - a.state_change, 'SS.MS') || ' s'
           FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
          WHERE l.locktype = 'advisory' AND l.granted AND a.application_name = $1",
    )
    .bind(application)
    .fetch_all(&db.pool)
    .await?)
}

/// Relay A reaches the database through a proxy, with latency, so that it is almost always
/// inside a claim or a settle; relay B is direct. When A's link goes silent while A holds
/// the claim lock, B must go on delivering once the server has ended A's idle transactions
/// (`IDLE_IN_TRANSACTION_TIMEOUT` each: A's other loops may be queued on the lock behind
/// the first, and each holds it in turn until its own transaction is ended), not wait as
/// long as the silence lasts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_whose_database_link_goes_silent_does_not_stall_the_others() -> Result<()> {
    with_db_and_broker(&["#"], async |db, broker| {
        let proxy = Proxy::to_database().await?;
        proxy.set_latency(Duration::from_millis(40));
        let application = format!("silent_{}", integration_tests::unique_suffix());
        let mut url = url::Url::parse(&proxy.redirect(&db.url())?)?;
        url.query_pairs_mut()
            .append_pair("application_name", &application);
        let mut a = relay_config(db, broker);
        a.database_url = url.to_string();
        a.db_timeout = DB_TIMEOUT;
        a.batch_size = 5;
        a.relay_id = "silent-a".to_owned();
        let mut b = relay_config(db, broker);
        b.db_timeout = DB_TIMEOUT;
        b.batch_size = 5;
        b.relay_id = "direct-b".to_owned();
        let ids = emit_tickets(&db.pool, 1_200, 300).await?;
        let relay_a = RunningRelay::start(a);
        let relay_b = RunningRelay::start(b);
        wait_until(Duration::from_secs(60), "deliveries under way", || async {
            Ok(count_status(&db.pool, "delivered").await? > 100)
        })
        .await?;

        // Silence A's link at a moment its session holds the claim lock.
        let mut held = Vec::new();
        for _ in 0..10 {
            proxy.blackhole();
            tokio::time::sleep(Duration::from_millis(500)).await;
            held = advisory_locks_of(db, &application).await?;
            if !held.is_empty() {
                break;
            }
            proxy.restore();
            tokio::time::sleep(Duration::from_millis(700)).await;
        }
        anyhow::ensure!(
            !held.is_empty(),
            "A never held the claim lock when silenced"
        );
        let silenced = Instant::now();
        let before = count_status(&db.pool, "delivered").await?;
        println!("A silenced holding {held:?}; {before} delivered so far");
        // New work on new keys, so there is something for B to deliver even when the first
        // events are all out by now (a fast machine drains them before the silence takes).
        let mut ids = ids;
        ids.extend(emit_tickets(&db.pool, 200, 50).await?);

        // A cannot settle through the silent link: what is delivered from now on is B's.
        let in_flight = relay_config(db, broker).in_flight_batches;
        let bound = idle_timeout() * in_flight + DB_TIMEOUT + SLACK;
        let resumed = loop {
            if count_status(&db.pool, "delivered").await? > before + 20 {
                break Some(silenced.elapsed());
            }
            if silenced.elapsed() > bound + Duration::from_secs(10) {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let still_held = advisory_locks_of(db, &application).await?;
        println!("B resumed after {resumed:?} (bound {bound:?}); A's locks now: {still_held:?}");
        proxy.restore();
        let resumed = resumed.unwrap_or_else(|| {
            panic!("B delivered nothing while A's link was silent: A's session kept {held:?}")
        });
        assert!(
            resumed <= bound,
            "B waited {resumed:?} for A's silent session"
        );

        wait_until(
            Duration::from_secs(120),
            "every event delivered",
            || async { Ok(count_status(&db.pool, "delivered").await? == ids.len() as i64) },
        )
        .await?;
        relay_a.stop().await?;
        relay_b.stop().await?;
        let leased: i64 =
            sqlx::query_scalar("SELECT count(*) FROM outbox_partitions WHERE token IS NOT NULL")
                .fetch_one(&db.pool)
                .await?;
        assert_eq!(leased, 0, "rows left leased");
        let (seen, _) = broker
            .received_ids(ids.len() * 3, Duration::from_secs(3))
            .await?;
        assert_eq!(seen, integration_tests::id_set(&ids), "every event arrived");
        Ok(())
    })
    .await
}

/// The relay's `--retention` runs each statement within its deadline: a purge whose link
/// goes silent mid-statement fails at the deadline instead of hanging (and holding its
/// connection) for as long as the silence lasts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_gives_up_on_a_silent_link_at_its_deadline() -> Result<()> {
    let db = TestDb::new().await?;
    let ids = emit_tickets(&db.pool, 50, 5).await?;
    integration_tests::mark_delivered(&db.pool, &[], Some(Duration::from_secs(2 * 86_400))).await?;
    let proxy = Proxy::to_database().await?;
    let pool = outbox_relay::pool_for(&proxy.redirect(&db.url())?, 2)?;
    sqlx::query("SELECT 1").execute(&pool).await?; // a connection is open and idle

    // The purge's first statement waits on the server for a lock the test holds; the link
    // goes silent meanwhile, and the server's answer never reaches the purge.
    let mut lock = db.pool.begin().await?;
    sqlx::query("LOCK TABLE outbox_events IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await?;
    let deadline = Duration::from_secs(2);
    let purge = tokio::spawn({
        let pool = pool.clone();
        async move {
            let started = Instant::now();
            let outcome = outbox_relay::store::purge::finished_events_within(
                &pool,
                Duration::from_secs(3600),
                1000,
                deadline,
            )
            .await;
            (outcome, started.elapsed())
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    proxy.blackhole();
    lock.rollback().await?;
    let (outcome, took) = tokio::time::timeout(deadline + SLACK, purge)
        .await
        .expect("the purge hung on the silent link")?;
    println!("purge on a silent link: {outcome:?} after {took:?}");
    assert!(outcome.is_err(), "{outcome:?}");
    assert!(took < deadline + SLACK, "{took:?}");

    // Once the link is back, the next round purges.
    proxy.restore();
    let purged = outbox_relay::store::purge::finished_events_within(
        &pool,
        Duration::from_secs(3600),
        1000,
        deadline,
    )
    .await?;
    let left = count_status(&db.pool, "delivered").await?;
    println!(
        "after the link returned: {purged} purged, {left} left of {}",
        ids.len()
    );
    assert_eq!(left, 0);
    pool.close().await;
    db.cleanup().await
}

/// The fault proxy's blackhole holds a client's close as it holds its bytes: the server
/// learns of it only when the path returns (a partition loses the FIN too). Otherwise a
/// client that gives up at its deadline would end its server session through the
/// blackhole, and the tests above would not see what a partition leaves behind.
#[tokio::test]
async fn the_fault_proxy_holds_a_close_while_blackholed() -> Result<()> {
    use tokio::io::AsyncReadExt;
    let server = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let proxy = Proxy::start(server.local_addr()?.to_string()).await?;
    let client = tokio::net::TcpStream::connect(proxy.addr()).await?;
    let (mut upstream, _) = server.accept().await?;
    proxy.blackhole();
    drop(client);
    let mut byte = [0u8; 1];
    let early = tokio::time::timeout(Duration::from_secs(1), upstream.read(&mut byte)).await;
    assert!(early.is_err(), "the close crossed the blackhole: {early:?}");
    proxy.restore();
    let late = tokio::time::timeout(Duration::from_secs(5), upstream.read(&mut byte)).await;
    assert!(
        matches!(late, Ok(Ok(0))),
        "the close arrives once restored: {late:?}"
    );
    Ok(())
}
