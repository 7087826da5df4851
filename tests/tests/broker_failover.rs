//! Broker nodes: `--amqp-url` takes several URLs, comma-separated; the relay moves on to the
//! next node when its connection is lost or a node is down, and delivers every event
//! exactly once at the queue (a duplicate only as the republish of an attempt whose confirm
//! was lost). What cannot heal (wrong credentials) ends the relay at start, non-zero.
//!
//! Each node is a [`Proxy`] in front of the local broker: dropping one is a node gone for
//! good (its port closed, its connections cut).

#![allow(clippy::expect_used, clippy::unwrap_used)] // tests fail loudly by design

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Result;
use integration_tests::proxy::Proxy;
use integration_tests::{
    RelayProcess, TestBroker, TestDb, amqp_url, count_status, emit_tickets, id_set, log_path,
    wait_until, with_db_and_broker,
};
use uuid::Uuid;

/// Every event of `ids` arrives; an id that arrives more than once must be an event the
/// relay published again after a failed attempt (attempts > 1): never a loss, never a
/// duplicate out of nowhere.
async fn assert_exactly_once(db: &TestDb, broker: &TestBroker, ids: &[Uuid]) -> Result<()> {
    let received = broker
        .collect(ids.len() * 2, Duration::from_secs(3))
        .await?;
    let mut copies: HashMap<String, usize> = HashMap::new();
    for message in &received {
        *copies.entry(message.message_id.clone()).or_default() += 1;
    }
    let seen: std::collections::HashSet<String> = copies.keys().cloned().collect();
    assert_eq!(seen, id_set(ids), "every event arrives, and only those");
    for (id, count) in copies.iter().filter(|(_, count)| **count > 1) {
        let attempts: i32 =
            sqlx::query_scalar("SELECT attempts FROM outbox_event_status WHERE id = $1")
                .bind(id.parse::<Uuid>()?)
                .fetch_one(&db.pool)
                .await?;
        assert!(
            attempts >= *count as i32,
            "event {id} arrived {count} times but was attempted {attempts} times"
        );
    }
    println!(
        "{} events, {} messages at the queue ({} republished)",
        ids.len(),
        received.len(),
        received.len() - ids.len()
    );
    Ok(())
}

fn log_of(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_moves_on_to_the_next_node_when_its_node_is_gone() -> Result<()> {
    with_db_and_broker(&["#"], async |db, broker| {
        let first = Proxy::to_broker().await?;
        let second = Proxy::to_broker().await?;
        let nodes = format!("{},{}", first.amqp_url()?, second.amqp_url()?);
        let log = log_path("failover");
        let mut relay = RelayProcess::start(db, broker, &["--amqp-url", &nodes], &log)?;

        let ids = emit_tickets(&db.pool, 3_000, 300).await?;
        wait_until(Duration::from_secs(30), "some deliveries", || async {
            Ok(count_status(&db.pool, "delivered").await? > 300)
        })
        .await?;
        assert_eq!(
            second.connections_accepted(),
            0,
            "the relay starts on the first node"
        );

        // The first node goes away for good, mid-run.
        drop(first);
        let gone = Instant::now();
        let probe = emit_tickets(&db.pool, 1, 1).await?;
        wait_until(
            Duration::from_secs(60),
            "an event emitted after the failover is delivered",
            || async {
                let status: String =
                    sqlx::query_scalar("SELECT status FROM outbox_event_status WHERE id = $1")
                        .bind(probe[0])
                        .fetch_one(&db.pool)
                        .await?;
                Ok(status == "delivered")
            },
        )
        .await?;
        let failover = gone.elapsed();
        println!("failover: first event delivered through the second node {failover:?} after the first node went away");
        assert!(second.connections_accepted() >= 1, "the relay moved on");

        let all: Vec<Uuid> = ids.iter().chain(&probe).copied().collect();
        integration_tests::wait_until_settled(&db.pool, &all, Duration::from_secs(60)).await?;
        assert_eq!(count_status(&db.pool, "delivered").await?, all.len() as i64);
        assert_exactly_once(db, broker, &all).await?;

        let text = log_of(&log);
        assert!(
            text.contains(&format!("127.0.0.1:{}", second.addr().port())),
            "the log names the node it moved to: {text}"
        );
        assert!(!text.contains("guest:guest"), "no password in the log");
        relay.signal("TERM").await?;
        relay.child.wait().await?;
        let _ = std::fs::remove_file(&log);
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_starts_on_the_next_node_when_the_first_is_down() -> Result<()> {
    with_db_and_broker(&["#"], async |db, broker| {
        let down = Proxy::to_broker().await?;
        let down_url = down.amqp_url()?;
        let down_port = down.addr().port();
        drop(down);
        let up = Proxy::to_broker().await?;
        let nodes = format!("{down_url},{}", up.amqp_url()?);
        let log = log_path("failover-first-down");
        let ids = emit_tickets(&db.pool, 500, 50).await?;
        let started = Instant::now();
        let mut relay = RelayProcess::start(db, broker, &["--amqp-url", &nodes], &log)?;
        integration_tests::wait_until_settled(&db.pool, &ids, Duration::from_secs(60)).await?;
        println!(
            "first node down: all delivered {:?} after start",
            started.elapsed()
        );
        assert_eq!(count_status(&db.pool, "delivered").await?, ids.len() as i64);
        assert_exactly_once(db, broker, &ids).await?;

        let text = log_of(&log);
        assert!(
            text.contains(&format!("guest:***@127.0.0.1:{down_port}")),
            "the log names the node that is down, masked: {text}"
        );
        assert!(!text.contains("guest:guest"), "no password in the log");
        relay.signal("TERM").await?;
        let status = relay.child.wait().await?;
        assert!(
            status.success(),
            "a node down at start is no reason to fail: {text}"
        );
        let _ = std::fs::remove_file(&log);
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_ends_the_relay_at_start_without_printing_it() -> Result<()> {
    with_db_and_broker(&["#"], async |db, broker| {
        let mut url = url::Url::parse(&amqp_url())?;
        url.set_password(Some("wrong-s3cret")).unwrap();
        let log = log_path("wrong-password");
        let started = Instant::now();
        let mut relay = RelayProcess::start(db, broker, &["--amqp-url", url.as_str()], &log)?;
        let status = tokio::time::timeout(Duration::from_secs(20), relay.child.wait())
            .await
            .map_err(|_| anyhow::anyhow!("the relay kept retrying: {}", log_of(&log)))??;
        let took = started.elapsed();
        let text = log_of(&log);
        println!("wrong password: exit {status:?} after {took:?}");
        assert!(!status.success(), "{text}");
        assert!(took < Duration::from_secs(10), "took {took:?}: {text}");
        assert!(text.contains("authentication failed"), "{text}");
        let port = url.port().unwrap_or(5672);
        assert!(
            text.contains(&format!("guest:***@{}:{port}", url.host_str().unwrap())),
            "names the broker, masked: {text}"
        );
        assert!(
            !text.contains("wrong-s3cret"),
            "no password printed: {text}"
        );
        let _ = std::fs::remove_file(&log);
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_successful_start_a_lost_broker_is_retried_not_fatal() -> Result<()> {
    with_db_and_broker(&["#"], async |db, broker| {
        let node = Proxy::to_broker().await?;
        let log = log_path("retry-after-start");
        let mut relay = RelayProcess::start(db, broker, &["--amqp-url", &node.amqp_url()?], &log)?;
        let ids = emit_tickets(&db.pool, 100, 10).await?;
        integration_tests::wait_until_settled(&db.pool, &ids, Duration::from_secs(30)).await?;
        // Every connection cut, twice: the relay keeps running and reconnects.
        node.reset();
        tokio::time::sleep(Duration::from_millis(500)).await;
        node.reset();
        let more = emit_tickets(&db.pool, 100, 10).await?;
        integration_tests::wait_until_settled(&db.pool, &more, Duration::from_secs(60)).await?;
        assert!(
            relay.child.try_wait()?.is_none(),
            "the relay is still running"
        );
        let all: Vec<Uuid> = ids.iter().chain(&more).copied().collect();
        assert_exactly_once(db, broker, &all).await?;
        relay.signal("TERM").await?;
        relay.child.wait().await?;
        let _ = std::fs::remove_file(&log);
        Ok(())
    })
    .await
}
