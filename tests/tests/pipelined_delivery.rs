//! Batches in flight side by side (`in_flight_batches`), and the wake-up modes seen from
//! the relay: several claims really are leased at once, and still every event arrives
//! once, in `seq` order within its key; in wake-up mode `poll` events arrive without any
//! notification.

#![allow(clippy::expect_used, clippy::unwrap_used)] // tests fail loudly by design

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use anyhow::{Result, ensure};
use integration_tests::{
    RunningRelay, TestBroker, TestDb, count_status, emit_tickets, relay_config, wait_until,
};

/// The seq of every event, by id (as the consumer sees ids).
async fn seq_by_id(db: &TestDb) -> Result<HashMap<String, (Option<String>, i64)>> {
    let rows: Vec<(uuid::Uuid, Option<String>, i64)> =
        sqlx::query_as("SELECT id, ordering_key, seq FROM outbox_events")
            .fetch_all(&db.pool)
            .await?;
    Ok(rows
        .into_iter()
        .map(|(id, key, seq)| (id.to_string(), (key, seq)))
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_in_flight_deliver_every_event_once_in_key_order() -> Result<()> {
    let db = TestDb::new().await?;
    let broker = TestBroker::new(&["#"]).await?;
    const EVENTS: usize = 3_000;
    let ids = emit_tickets(&db.pool, EVENTS, 300).await?;

    // Small batches and several loops per relay, two relays: many claims in flight.
    let relays: Vec<RunningRelay> = (0..2)
        .map(|n| {
            let mut config = relay_config(&db, &broker);
            config.batch_size = 25;
            config.in_flight_batches = 4;
            config.relay_id = format!("pipelined-{n}");
            RunningRelay::start(config)
        })
        .collect();

    // Meanwhile, the most claims one relay held at one moment.
    let most_in_flight = Arc::new(AtomicI64::new(0));
    let sampler = {
        let pool = db.pool.clone();
        let most = most_in_flight.clone();
        tokio::spawn(async move {
            loop {
                let tokens: Result<i64, _> = sqlx::query_scalar(
                    "SELECT coalesce(max(tokens), 0) FROM (
                         SELECT count(DISTINCT token) AS tokens FROM outbox_partitions
                          WHERE token IS NOT NULL
                          GROUP BY relay_id) AS per_relay",
                )
                .fetch_one(&pool)
                .await;
                if let Ok(tokens) = tokens {
                    most.fetch_max(tokens, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
        })
    };

    let received = broker.collect(EVENTS, Duration::from_secs(20)).await?;
    sampler.abort();
    for relay in relays {
        relay.stop().await?;
    }

    let seqs = seq_by_id(&db).await?;
    let mut seen = HashMap::new();
    let mut last_seq_of_key: HashMap<String, i64> = HashMap::new();
    for message in &received {
        *seen.entry(message.message_id.clone()).or_insert(0) += 1;
        let (key, seq) = seqs
            .get(&message.message_id)
            .cloned()
            .expect("every message is an event of this test");
        let key = key.expect("ticket events have a key");
        let previous = last_seq_of_key.insert(key.clone(), seq);
        ensure!(
            previous.is_none_or(|previous| previous < seq),
            "key {key}: seq {seq} arrived after {previous:?}"
        );
    }
    ensure!(
        seen.len() == EVENTS && seen.values().all(|&n| n == 1),
        "{} distinct of {EVENTS} events, {} messages",
        seen.len(),
        received.len()
    );
    assert!(ids.iter().all(|id| seen.contains_key(&id.to_string())));
    assert_eq!(count_status(&db.pool, "delivered").await?, EVENTS as i64);
    let most = most_in_flight.load(Ordering::Relaxed);
    ensure!(
        most >= 2,
        "a relay never held more than {most} claim(s) at once: its batches did not overlap"
    );

    broker.cleanup().await?;
    db.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_wake_up_mode_poll_events_arrive_without_notifications() -> Result<()> {
    let db = TestDb::new().await?;
    let broker = TestBroker::new(&["#"]).await?;
    let mode: String = sqlx::query_scalar("SELECT outbox_set_wakeup_mode('poll')")
        .fetch_one(&db.pool)
        .await?;
    assert_eq!(mode, "poll");

    let mut config = relay_config(&db, &broker);
    config.poll_interval = Duration::from_millis(300);
    let relay = RunningRelay::start(config);
    wait_until(Duration::from_secs(20), "the relay connects", || {
        let healthy = relay.health.broker_ok() && relay.health.database_ok();
        async move { Ok(healthy) }
    })
    .await?;
    // Idle long enough for the adaptive interval to reach its ceiling.
    tokio::time::sleep(Duration::from_secs(1)).await;

    for round in 0..3 {
        let ids = emit_tickets(&db.pool, 50, 5).await?;
        let (seen, _) = broker
            .received_ids(ids.len(), Duration::from_secs(10))
            .await?;
        ensure!(
            ids.iter().all(|id| seen.contains(&id.to_string())),
            "round {round}: {} of {} events arrived",
            seen.len(),
            ids.len()
        );
    }

    relay.stop().await?;
    broker.cleanup().await?;
    db.cleanup().await
}
