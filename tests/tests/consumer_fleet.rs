//! The consumer library (`outbox-consumer`) on the partitioned topology, against the real
//! servers: consumer processes join, are SIGKILLed and leave while 20,000 events flow, and
//! at the effects table every event is applied exactly once and each ordering scope's in
//! seq order; a failing handler holds its partition (its key's later events wait) while the
//! other partitions flow, and after the limit its event is parked in the dead-letter queue
//! with the error and the key proceeds.

#![allow(clippy::expect_used, clippy::unwrap_used)] // tests fail loudly by design

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use futures_util::FutureExt;
use integration_tests::fleet::{
    EFFECTS_TABLE, EffectsHandler, TEMPLATE, appliers, check_effects, delete_queues, effects,
    latest_applier, write_events,
};
use integration_tests::{
    RunningRelay, TestBroker, TestDb, amqp_url, log_path, relay_config, send_signal, wait_until,
    with_db_and_broker,
};
use lapin::options::BasicGetOptions;
use lapin::types::AMQPValue;
use lapin::{Connection, ConnectionProperties};
use outbox_consumer::setup::{Topology, declare};
use outbox_consumer::topology::QueueType;
use outbox_consumer::{Consumer, ConsumerConfig, Source};
use sqlx::PgPool;
use uuid::Uuid;

/// Declares the partition queues of `prefix` (and its dead-letter queue), runs `body`, and
/// deletes them whatever the outcome.
async fn with_partitions<T>(
    broker: &TestBroker,
    config: &ConsumerConfig,
    body: impl AsyncFnOnce() -> Result<T>,
) -> Result<T> {
    let topology = Topology {
        exchange: broker.exchange.clone(),
        routing_key_template: TEMPLATE.to_owned(),
        queue_type: QueueType::Quorum,
    };
    let queues = declare(config, &topology).await?;
    let outcome = std::panic::AssertUnwindSafe(body()).catch_unwind().await;
    let deleted = delete_queues(&queues).await;
    let value = outcome.unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
    deleted.context("deleting the partition queues")?;
    Ok(value)
}

/// A relay publishing to `partitions` partitions.
fn partitioned_relay(db: &TestDb, broker: &TestBroker, partitions: u32) -> RunningRelay {
    let mut config = relay_config(db, broker);
    config.partitions = partitions;
    config.routing_key_template = TEMPLATE.to_owned();
    config.poll_interval = Duration::from_millis(50);
    RunningRelay::start(config)
}

/// One `fleet-consumer` process.
struct Member {
    label: String,
    child: tokio::process::Child,
}

fn start_member(db: &TestDb, prefix: &str, partitions: u32, label: &str) -> Result<Member> {
    let log = std::fs::File::create(log_path(&format!("consumer_fleet-{label}")))?;
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_fleet-consumer"))
        .env("DATABASE_URL", db.url())
        .env("AMQP_URL", amqp_url())
        .env("FLEET_PREFIX", prefix)
        .env("FLEET_PARTITIONS", partitions.to_string())
        .env("FLEET_CONSUMER", "fleet")
        .env("FLEET_LABEL", label)
        .env("RUST_LOG", "info")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()?;
    Ok(Member {
        label: label.to_owned(),
        child,
    })
}

async fn kill(members: &mut [Member], label: &str) -> Result<()> {
    let member = members
        .iter_mut()
        .find(|m| m.label == label)
        .with_context(|| format!("no member {label}"))?;
    let pid = member.child.id().context("already exited")?;
    send_signal(pid, "KILL").await?;
    member.child.wait().await?;
    Ok(())
}

async fn wait_for_effects(pool: &PgPool, at_least: i64, timeout: Duration) -> Result<()> {
    wait_until(timeout, &format!("{at_least} effects"), || async {
        Ok(effects(pool).await? >= at_least)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_joining_and_sigkilled_apply_every_event_once_in_each_keys_order() -> Result<()> {
    const PARTITIONS: u32 = 8;
    with_db_and_broker(&[], async |db, broker| {
        sqlx::query(EFFECTS_TABLE).execute(&db.pool).await?;
        let prefix = format!("{}.fleet", broker.exchange);
        let config = ConsumerConfig::new(
            amqp_url(),
            "fleet",
            Source::Partitions {
                prefix: prefix.clone(),
                partitions: PARTITIONS,
            },
        );
        with_partitions(broker, &config, async || {
            let relay = partitioned_relay(db, broker, PARTITIONS);
            let mut members = Vec::new();
            for label in ["p1", "p2", "p3", "p4"] {
                members.push(start_member(db, &prefix, PARTITIONS, label)?);
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            // 20,000 events: 100 keys under 4 tenants and without one (500 scopes), 40 each.
            let started = Instant::now();
            let tenants = [
                Some(Uuid::now_v7()),
                Some(Uuid::now_v7()),
                Some(Uuid::now_v7()),
                Some(Uuid::now_v7()),
                None,
            ];
            let written = write_events(&db.pool, &tenants, 100, 40).await?;
            ensure!(written == 20_000);

            // Kill whichever process is applying events, twice, and add one.
            wait_for_effects(&db.pool, 3_000, Duration::from_secs(90)).await?;
            let first = latest_applier(&db.pool).await?.context("no effect yet")?;
            kill(&mut members, &first).await?;
            let killed_first_at = effects(&db.pool).await?;
            let second = {
                let deadline = Instant::now() + Duration::from_secs(90);
                loop {
                    let latest = latest_applier(&db.pool).await?;
                    if effects(&db.pool).await? >= killed_first_at + 3_000
                        && let Some(latest) = latest.filter(|l| *l != first)
                    {
                        break latest;
                    }
                    if Instant::now() > deadline {
                        bail!("no other process took the partitions over after {first} was killed");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            };
            kill(&mut members, &second).await?;
            members.push(start_member(db, &prefix, PARTITIONS, "p5")?);

            wait_for_effects(&db.pool, 20_000, Duration::from_secs(150)).await?;
            let elapsed = started.elapsed();
            // Redeliveries still in flight would show as extra effects: give them time.
            tokio::time::sleep(Duration::from_secs(1)).await;
            check_effects(&db.pool, &prefix, PARTITIONS, &[]).await?;
            let by = appliers(&db.pool).await?;
            eprintln!(
                "20,000 events applied in {elapsed:.1?}; killed {first} and {second}; effects per process: {by:?}"
            );
            ensure!(
                by.contains_key(&first) && by.contains_key(&second) && by.len() >= 3,
                "the partitions did not move between processes: {by:?}"
            );
            // The survivors drain and exit on SIGTERM.
            for member in &mut members {
                if let Some(pid) = member.child.id() {
                    send_signal(pid, "TERM").await?;
                    let status = tokio::time::timeout(Duration::from_secs(30), member.child.wait())
                        .await
                        .context("a consumer did not stop on SIGTERM")??;
                    ensure!(status.success(), "{} exited with {status}", member.label);
                }
            }
            relay.stop().await
        })
        .await
    })
    .await
}

/// Five events on each of 40 keys of one tenant; returns the victim (the second event of key
/// `ticket:7`) and that key's events in seq order.
async fn write_with_victim(pool: &PgPool) -> Result<(Uuid, Vec<Uuid>)> {
    write_events(pool, &[Some(Uuid::now_v7())], 40, 5).await?;
    let key_events: Vec<Uuid> = sqlx::query_scalar(
        "SELECT id FROM outbox_events WHERE ordering_key = 'ticket:7' ORDER BY seq",
    )
    .fetch_all(pool)
    .await?;
    ensure!(key_events.len() == 5);
    Ok((key_events[1], key_events))
}

async fn applied(pool: &PgPool, ids: &[Uuid]) -> Result<HashSet<Uuid>> {
    Ok(
        sqlx::query_scalar("SELECT event_id FROM fleet_effects WHERE event_id = ANY($1)")
            .bind(ids)
            .fetch_all(pool)
            .await?
            .into_iter()
            .collect(),
    )
}

/// Events of `outbox_events` routed to partitions other than `partition`.
async fn events_outside(pool: &PgPool, partition: u32, partitions: u32) -> Result<Vec<Uuid>> {
    let rows: Vec<(Uuid, Option<Uuid>, Option<String>)> =
        sqlx::query_as("SELECT id, tenant_id, ordering_key FROM outbox_events")
            .fetch_all(pool)
            .await?;
    Ok(rows
        .into_iter()
        .filter(|(id, tenant, key)| {
            outbox_topology::event_partition(*tenant, key.as_deref(), *id, partitions) != partition
        })
        .map(|(id, ..)| id)
        .collect())
}

fn failing_consumer(
    db: &TestDb,
    prefix: &str,
    partitions: u32,
    max_attempts: u32,
    victim: Uuid,
    broken: Arc<AtomicBool>,
    panics: bool,
) -> Result<Consumer<EffectsHandler>> {
    let mut config = ConsumerConfig::new(
        amqp_url(),
        "failing",
        Source::Partitions {
            prefix: prefix.to_owned(),
            partitions,
        },
    );
    config.max_attempts = max_attempts;
    config.retry_base = Duration::from_millis(20);
    config.retry_cap = Duration::from_millis(100);
    let handler = EffectsHandler {
        label: "in-process".to_owned(),
        failing: Some((vec![victim], broken)),
        panics,
    };
    Ok(Consumer::new(config, db.pool.clone(), handler)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_handler_holds_its_keys_later_events_while_other_partitions_flow() -> Result<()> {
    const PARTITIONS: u32 = 4;
    with_db_and_broker(&[], async |db, broker| {
        sqlx::query(EFFECTS_TABLE).execute(&db.pool).await?;
        let prefix = format!("{}.held", broker.exchange);
        let source = Source::Partitions {
            prefix: prefix.clone(),
            partitions: PARTITIONS,
        };
        let config = ConsumerConfig::new(amqp_url(), "failing", source);
        with_partitions(broker, &config, async || {
            let (victim, key_events) = write_with_victim(&db.pool).await?;
            let tenant: Option<Uuid> =
                sqlx::query_scalar("SELECT tenant_id FROM outbox_events WHERE id = $1")
                    .bind(victim)
                    .fetch_one(&db.pool)
                    .await?;
            let held =
                outbox_topology::event_partition(tenant, Some("ticket:7"), victim, PARTITIONS);
            let others = events_outside(&db.pool, held, PARTITIONS).await?;
            ensure!(!others.is_empty(), "every key landed in one partition");

            let broken = Arc::new(AtomicBool::new(true));
            let consumer = failing_consumer(
                db,
                &prefix,
                PARTITIONS,
                1_000,
                victim,
                broken.clone(),
                false,
            )?;
            let readiness = consumer.readiness();
            let stop = tokio_util::sync::CancellationToken::new();
            let running = tokio::spawn(consumer.run(stop.clone().cancelled_owned()));
            let relay = partitioned_relay(db, broker, PARTITIONS);

            // Every other partition's events are applied while the victim keeps failing.
            wait_until(
                Duration::from_secs(60),
                "the other partitions' events",
                || async { Ok(applied(&db.pool, &others).await?.len() == others.len()) },
            )
            .await?;
            ensure!(readiness.is_ready());
            tokio::time::sleep(Duration::from_secs(1)).await;
            let done = applied(&db.pool, &key_events).await?;
            ensure!(
                done == HashSet::from([key_events[0]]),
                "while its second event fails, only the key's first may be applied: {done:?}"
            );

            // Repaired: the victim, then the key's later events, in order.
            broken.store(false, Ordering::SeqCst);
            wait_for_effects(&db.pool, 200, Duration::from_secs(60)).await?;
            check_effects(&db.pool, &prefix, PARTITIONS, &[]).await?;
            stop.cancel();
            running.await??;
            relay.stop().await
        })
        .await
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_limit_a_failing_event_is_dead_lettered_with_its_error_and_its_key_proceeds()
-> Result<()> {
    dead_lettered_after_the_limit(false, "the test's handler refuses event").await
}

/// A handler that panics fails like one that returns an error: counted, retried, then
/// dead-lettered with the panic's message — never a partition stuck on a message whose count
/// starts again after every reconnect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_panics_is_retried_then_dead_lettered_and_its_key_proceeds() -> Result<()> {
    dead_lettered_after_the_limit(
        true,
        "the handler panicked: the test's handler refuses event",
    )
    .await
}

/// A handler failing (or panicking, `panics`) for one event, three attempts, then the
/// dead-letter queue with `expected_error` in `x-error`; the key's other events proceed.
async fn dead_lettered_after_the_limit(panics: bool, expected_error: &str) -> Result<()> {
    const PARTITIONS: u32 = 4;
    with_db_and_broker(&[], async |db, broker| {
        sqlx::query(EFFECTS_TABLE).execute(&db.pool).await?;
        let prefix = format!("{}.parked", broker.exchange);
        let source = Source::Partitions {
            prefix: prefix.clone(),
            partitions: PARTITIONS,
        };
        let config = ConsumerConfig::new(amqp_url(), "failing", source.clone());
        with_partitions(broker, &config, async || {
            let (victim, key_events) = write_with_victim(&db.pool).await?;
            let broken = Arc::new(AtomicBool::new(true));
            let consumer = failing_consumer(db, &prefix, PARTITIONS, 3, victim, broken, panics)?;
            let stop = tokio_util::sync::CancellationToken::new();
            let running = tokio::spawn(consumer.run(stop.clone().cancelled_owned()));
            let relay = partitioned_relay(db, broker, PARTITIONS);

            wait_for_effects(&db.pool, 199, Duration::from_secs(60)).await?;
            check_effects(&db.pool, &prefix, PARTITIONS, &[victim]).await?;
            let done = applied(&db.pool, &key_events).await?;
            ensure!(
                !done.contains(&victim) && done.len() == 4,
                "the key's other events proceed past the parked one: {done:?}"
            );

            // The parked message: the original, with the error and where it came from.
            let connection =
                Connection::connect(&amqp_url(), ConnectionProperties::default()).await?;
            let channel = connection.create_channel().await?;
            let message = channel
                .basic_get(
                    source.dead_letter_queue().as_str().into(),
                    BasicGetOptions { no_ack: true },
                )
                .await?
                .context("nothing in the dead-letter queue")?;
            let id = message.delivery.properties.message_id().clone().unwrap();
            ensure!(id.as_str() == victim.to_string());
            let headers = message.delivery.properties.headers().clone().unwrap();
            let header = |name: &str| headers.inner().get(name).cloned();
            let text = |value: Option<AMQPValue>| match value {
                Some(AMQPValue::LongString(s)) => {
                    String::from_utf8_lossy(s.as_bytes()).into_owned()
                }
                other => format!("{other:?}"),
            };
            ensure!(
                text(header("x-error")).contains(expected_error),
                "x-error: {:?}",
                header("x-error")
            );
            ensure!(header("x-handler-attempts") == Some(AMQPValue::LongLongInt(3)));
            ensure!(text(header("x-original-queue")).starts_with(&prefix));
            ensure!(text(header("x-ordering-key")) == "ticket:7");
            ensure!(
                channel
                    .basic_get(
                        source.dead_letter_queue().as_str().into(),
                        BasicGetOptions { no_ack: true }
                    )
                    .await?
                    .is_none(),
                "one message parked, not more"
            );
            let _ = connection.close(200, "done".into()).await;
            stop.cancel();
            running.await??;
            relay.stop().await
        })
        .await
    })
    .await
}
