//! The relay against the real Postgres and RabbitMQ: delivery, headers, per-key order with
//! several relays, dead-lettering of unroutable events, LISTEN latency.

#![allow(clippy::expect_used, clippy::unwrap_used)] // tests fail loudly by design

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::Result;
use catalog_types::{CatalogEvent, InvoiceGenerated, TicketUpdated};
use integration_tests::{
    RunningRelay, TestBroker, TestDb, count_status, emit_tickets, relay_config, wait_until,
};
use outbox_core::{EmitOptions, NewEvent};
use uuid::Uuid;

/// Emits `per_key` updates for each of `keys` tickets spread over `tenants` tenants, in
/// chunks of 1,000 per transaction; returns (event id -> (ordering key, index within key)).
async fn emit_ticket_updates(
    db: &TestDb,
    tenants: usize,
    keys: usize,
    per_key: usize,
) -> Result<HashMap<String, (String, usize)>> {
    let tenant_ids: Vec<Uuid> = (0..tenants).map(|_| Uuid::now_v7()).collect();
    let tickets: Vec<Uuid> = (0..keys).map(|_| Uuid::now_v7()).collect();
    let mut expected = HashMap::new();
    let mut pending = Vec::new();
    for round in 0..per_key {
        for (k, ticket) in tickets.iter().enumerate() {
            let event = TicketUpdated {
                tenant_id: tenant_ids[k % tenants],
                ticket_id: *ticket,
                ..TicketUpdated::example()
            };
            let new = NewEvent::new(&event)?;
            expected.insert(new.id().to_string(), (format!("ticket:{ticket}"), round));
            pending.push(new);
            if pending.len() == 1000 {
                let mut tx = db.pool.begin().await?;
                outbox_core::emit_batch(&mut tx, &pending).await?;
                tx.commit().await?;
                pending.clear();
            }
        }
    }
    if !pending.is_empty() {
        let mut tx = db.pool.begin().await?;
        outbox_core::emit_batch(&mut tx, &pending).await?;
        tx.commit().await?;
    }
    Ok(expected)
}

/// Emits one event and waits until a consumer receives it; returns how long that took.
async fn time_one_event(db: &TestDb, broker: &TestBroker) -> Result<Duration> {
    let started = Instant::now();
    emit_tickets(&db.pool, 1, 1).await?;
    let received = broker.collect(1, Duration::from_secs(10)).await?;
    assert_eq!(received.len(), 1, "the event did not arrive");
    Ok(started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_events_arrive_once_each_with_the_documented_message_format() -> Result<()> {
    let db = TestDb::new().await?;
    let broker = TestBroker::new(&["#"]).await?;
    let expected = emit_ticket_updates(&db, 37, 2_000, 5).await?;
    assert_eq!(expected.len(), 10_000);

    let started = Instant::now();
    let relay = RunningRelay::start(relay_config(&db, &broker));
    let received = broker.collect(10_000, Duration::from_secs(60)).await?;
    let elapsed = started.elapsed();
    eprintln!("10,000 events delivered in {elapsed:?}");

    assert_eq!(received.len(), 10_000);
    let ids: HashSet<&str> = received.iter().map(|m| m.message_id.as_str()).collect();
    assert_eq!(ids.len(), 10_000, "each event arrives once");
    for message in &received {
        let Some((key, _)) = expected.get(&message.message_id) else {
            panic!("unexpected message {}", message.message_id);
        };
        assert_eq!(message.kind, "TICKET_UPDATED");
        assert_eq!(message.content_type, "application/json");
        assert_eq!(message.delivery_mode, 2);
        assert!(message.timestamp.is_some());
        assert_eq!(message.routing_key, "tickets.ticket_updated");
        assert_eq!(
            message.headers.get("x-dedupe-key"),
            Some(&message.message_id)
        );
        assert_eq!(
            message.headers.get("x-schema-ref").map(String::as_str),
            Some("payload.TicketUpdated.v1")
        );
        assert_eq!(
            message.headers.get("x-category").map(String::as_str),
            Some("Tickets")
        );
        assert_eq!(message.headers.get("x-ordering-key"), Some(key));
        assert_eq!(
            message.headers.get("x-attempt").map(String::as_str),
            Some("1")
        );
        let tenant = message
            .headers
            .get("x-tenant-id")
            .cloned()
            .unwrap_or_default();
        assert_eq!(message.body["id"], serde_json::json!(message.message_id));
        assert_eq!(message.body["eventType"], "TICKET_UPDATED");
        assert_eq!(message.body["schemaRef"], "payload.TicketUpdated.v1");
        assert_eq!(message.body["tenantId"], serde_json::json!(tenant));
        assert_eq!(
            message.body["payload"]["tenantId"],
            serde_json::json!(tenant)
        );
        assert!(
            message.body["occurredAt"]
                .as_str()
                .is_some_and(|t| t.ends_with('Z'))
        );
    }
    wait_until(Duration::from_secs(10), "all rows delivered", || async {
        Ok(count_status(&db.pool, "delivered").await? == 10_000)
    })
    .await?;
    let leased: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM outbox_event_status WHERE status <> 'delivered')
              + (SELECT count(*) FROM outbox_partitions WHERE token IS NOT NULL)",
    )
    .fetch_one(&db.pool)
    .await?;
    assert_eq!(leased, 0);
    relay.stop().await?;
    broker.cleanup().await?;
    db.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_relays_keep_per_key_order_over_a_thousand_keys() -> Result<()> {
    let db = TestDb::new().await?;
    let broker = TestBroker::new(&["#"]).await?;
    let relays: Vec<RunningRelay> = (0..3)
        .map(|_| {
            let mut config = relay_config(&db, &broker);
            config.batch_size = 50;
            RunningRelay::start(config)
        })
        .collect();
    // Emit while the relays run, so claims interleave with commits: 1,000 cold keys with
    // two events each, and 20 hot keys whose 100 events each sit a few seqs apart, so
    // every batch holds runs of the same key that concurrent claims could split.
    let mut expected = emit_ticket_updates(&db, 10, 1_000, 2).await?;
    expected.extend(emit_ticket_updates(&db, 5, 20, 100).await?);
    let total = expected.len();
    let received = broker.collect(total, Duration::from_secs(60)).await?;
    assert_eq!(received.len(), total);

    let mut last_index: HashMap<String, usize> = HashMap::new();
    let mut seen = HashSet::new();
    let mut keys = HashSet::new();
    for message in &received {
        if !seen.insert(message.message_id.clone()) {
            continue; // a redelivery: consumers' inboxes drop it
        }
        let (key, index) = expected[&message.message_id].clone();
        keys.insert(key.clone());
        if let Some(previous) = last_index.insert(key.clone(), index) {
            assert!(
                previous < index,
                "key {key}: event #{index} arrived after #{previous}"
            );
        } else {
            assert_eq!(index, 0, "key {key}: first event seen was #{index}");
        }
    }
    assert_eq!(seen.len(), total);
    assert!(keys.len() >= 1_000);
    for relay in relays {
        relay.stop().await?;
    }
    broker.cleanup().await?;
    db.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unroutable_event_ends_dead_and_blocks_only_its_own_key() -> Result<()> {
    let db = TestDb::new().await?;
    // Only ticket events are routed; billing events are unroutable.
    let broker = TestBroker::new(&["tickets.#"]).await?;
    let tenant = Uuid::now_v7();
    let invoice = InvoiceGenerated {
        tenant_id: tenant,
        invoice_id: Uuid::now_v7(),
        ..InvoiceGenerated::example()
    };
    let mut conn = db.pool.acquire().await?;
    let dead_id = outbox_core::emit(&mut conn, &invoice).await?;
    let blocked_id = outbox_core::emit(&mut conn, &invoice).await?; // same key, later
    let mut ticket_ids = Vec::new();
    for _ in 0..20 {
        let ticket = TicketUpdated {
            tenant_id: tenant,
            ticket_id: Uuid::now_v7(),
            ..TicketUpdated::example()
        };
        ticket_ids.push(outbox_core::emit(&mut conn, &ticket).await?);
    }
    let unordered =
        outbox_core::emit_with(&mut conn, &invoice, EmitOptions::new().unordered()).await?;
    drop(conn);

    let mut config = relay_config(&db, &broker);
    config.max_attempts = 3;
    let relay = RunningRelay::start(config);

    let received = broker.collect(20, Duration::from_secs(20)).await?;
    assert_eq!(received.len(), 20, "events of other keys are delivered");
    wait_until(
        Duration::from_secs(30),
        "the unroutable event to die",
        || async {
            let status: String =
                sqlx::query_scalar("SELECT status FROM outbox_event_status WHERE id = $1")
                    .bind(dead_id)
                    .fetch_one(&db.pool)
                    .await?;
            Ok(status == "dead")
        },
    )
    .await?;
    let (attempts, last_error): (i32, Option<String>) =
        sqlx::query_as("SELECT attempts, last_error FROM outbox_event_status WHERE id = $1")
            .bind(dead_id)
            .fetch_one(&db.pool)
            .await?;
    assert_eq!(attempts, 3);
    assert!(last_error.unwrap_or_default().contains("unroutable"));

    // The unordered copy also fails on its own (not blocked by the dead head) ...
    let unordered_dead = wait_until(
        Duration::from_secs(30),
        "the unordered event to die too",
        || async {
            let status: String =
                sqlx::query_scalar("SELECT status FROM outbox_event_status WHERE id = $1")
                    .bind(unordered)
                    .fetch_one(&db.pool)
                    .await?;
            Ok(status == "dead")
        },
    )
    .await;
    if unordered_dead.is_err() {
        let row: serde_json::Value =
            sqlx::query_scalar("SELECT to_jsonb(e) - 'payload' FROM outbox_events e WHERE id = $1")
                .bind(unordered)
                .fetch_one(&db.pool)
                .await?;
        panic!("the unordered event did not die: {row}");
    }
    // ... while the later event of the dead event's key waits, never attempted.
    let (status, attempts): (String, i32) =
        sqlx::query_as("SELECT status, attempts FROM outbox_event_status WHERE id = $1")
            .bind(blocked_id)
            .fetch_one(&db.pool)
            .await?;
    assert_eq!((status.as_str(), attempts), ("pending", 0));
    assert_eq!(count_status(&db.pool, "delivered").await?, 20);
    relay.stop().await?;
    broker.cleanup().await?;
    db.cleanup().await
}

/// Wake-up mode `notify` (the default is `poll`): these tests are about LISTEN.
async fn notify_mode(db: &TestDb) -> Result<()> {
    let mode: String = sqlx::query_scalar("SELECT outbox_set_wakeup_mode('notify')")
        .fetch_one(&db.pool)
        .await?;
    assert_eq!(mode, "notify");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_publishes_an_event_long_before_the_poll_interval() -> Result<()> {
    let db = TestDb::new().await?;
    let broker = TestBroker::new(&["#"]).await?;
    notify_mode(&db).await?;
    let mut config = relay_config(&db, &broker);
    config.poll_interval = Duration::from_secs(10);
    let relay = RunningRelay::start(config);
    // Let the relay connect, scan once and start listening.
    wait_until(Duration::from_secs(10), "the relay to be ready", || async {
        Ok(relay.health.broker_ok() && relay.health.database_ok())
    })
    .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut worst = Duration::ZERO;
    for _ in 0..3 {
        worst = worst.max(time_one_event(&db, &broker).await?);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    eprintln!("worst commit-to-consume latency while idle: {worst:?}");
    assert!(
        worst < Duration::from_millis(500),
        "took {worst:?} with a 10 s poll interval"
    );
    relay.stop().await?;
    broker.cleanup().await?;
    db.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_listen_connection_is_replaced_and_events_still_flow_promptly() -> Result<()> {
    let db = TestDb::new().await?;
    let broker = TestBroker::new(&["#"]).await?;
    notify_mode(&db).await?;
    let mut config = relay_config(&db, &broker);
    config.poll_interval = Duration::from_secs(30);
    let relay = RunningRelay::start(config);
    wait_until(Duration::from_secs(10), "a LISTEN session", || async {
        let listeners: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query ILIKE 'LISTEN%'",
        )
        .fetch_one(&db.pool)
        .await?;
        Ok(listeners > 0)
    })
    .await?;
    let killed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
          WHERE datname = current_database() AND query ILIKE 'LISTEN%') AS t",
    )
    .fetch_one(&db.pool)
    .await?;
    assert!(killed > 0);

    for _ in 0..2 {
        let took = time_one_event(&db, &broker).await?;
        assert!(
            took < Duration::from_secs(5),
            "took {took:?} with a 30 s poll"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    relay.stop().await?;
    broker.cleanup().await?;
    db.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn returns_are_matched_to_their_own_messages_in_a_mixed_wave() -> Result<()> {
    // RabbitMQ acks several publishes at once and lapin hands a return to whichever confirm
    // it resolves first; a routable event must never be failed for another's return, nor an
    // unroutable one counted as delivered.
    let db = TestDb::new().await?;
    let broker = TestBroker::new(&["tickets.#"]).await?;
    let tenant = Uuid::now_v7();
    let mut batch = Vec::new();
    for i in 0..400 {
        let event = if i % 2 == 0 {
            NewEvent::new(&TicketUpdated {
                tenant_id: tenant,
                ticket_id: Uuid::now_v7(),
                ..TicketUpdated::example()
            })?
        } else {
            NewEvent::new(&InvoiceGenerated {
                tenant_id: tenant,
                invoice_id: Uuid::now_v7(),
                ..InvoiceGenerated::example()
            })?
        };
        batch.push(event);
    }
    let mut tx = db.pool.begin().await?;
    outbox_core::emit_batch(&mut tx, &batch).await?;
    tx.commit().await?;

    let mut config = relay_config(&db, &broker);
    config.max_attempts = 1;
    let relay = RunningRelay::start(config);
    wait_until(Duration::from_secs(30), "every event settled", || async {
        Ok(count_status(&db.pool, "pending").await? == 0)
    })
    .await?;
    let wrong: Vec<(String, String, i32)> = sqlx::query_as(
        "SELECT event_type, status, attempts FROM outbox_event_status
          WHERE (event_type = 'TICKET_UPDATED') <> (status = 'delivered')",
    )
    .fetch_all(&db.pool)
    .await?;
    assert!(
        wrong.is_empty(),
        "{} events settled wrongly, e.g. {:?}",
        wrong.len(),
        wrong.first()
    );
    let received = broker.collect(200, Duration::from_secs(5)).await?;
    assert_eq!(received.len(), 200);
    assert!(received.iter().all(|m| m.kind == "TICKET_UPDATED"));
    relay.stop().await?;
    broker.cleanup().await?;
    db.cleanup().await
}
