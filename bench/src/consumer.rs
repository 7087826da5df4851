//! `consumer`: the consumer library (`outbox-consumer`) against the same consumer written by
//! hand with lapin, on the same backlog, the same machine, one run each.
//!
//! A relay publishes `--events` events on `--keys` keys to `--partitions` partitions; two
//! consumer groups' partition queues (quorum, single active consumer) each receive a copy.
//! Then each group is drained in turn, one process each, with the same handler (one insert
//! into an effects table) and the same per-message work: a transaction with the inbox row
//! and the effect, the commit, then the ack, the envelope decoded, the partitions side by
//! side, a prefetch of 64. The hand-written one has none of the library's retries,
//! dead-lettering, reconnection, metrics or bounded acks. The tables are emptied between the
//! two runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use futures_util::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions, QueueDeleteOptions};
use lapin::types::{AMQPValue, FieldTable};
use outbox_consumer::setup::{Topology, declare};
use outbox_consumer::topology::QueueType;
use outbox_consumer::{BoxError, Consumer, ConsumerConfig, Event, Handler, Source};
use outbox_core::InboxOutcome;
use outbox_relay::{Health, RelayConfig};
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgConnection, PgPool};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::broker::{self, Broker};
use crate::harness::{self, DRAIN_LIMIT};
use crate::{Scratch, Server};

/// The routing key the relay publishes with.
const TEMPLATE: &str = "{category}.{event_type}.{partition}";

/// Messages unacknowledged per partition queue, in both consumers (the library's default).
const PREFETCH: u16 = outbox_consumer::DEFAULT_PREFETCH;

/// Flags of `consumer`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Events each consumer applies.
    #[arg(long, default_value_t = 20_000)]
    pub events: i64,
    /// Ordering keys of those events.
    #[arg(long, default_value_t = 2_000)]
    pub keys: i64,
    /// Partitions (queues per consumer group).
    #[arg(long, default_value_t = 8)]
    pub partitions: u32,
}

/// One consumer's drain.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Timing {
    /// From the consumer's start to the last effect committed, seconds.
    pub seconds: f64,
    /// Events applied per second.
    pub events_per_second: f64,
}

/// The result of `consumer`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// Events applied by each consumer.
    pub events: i64,
    /// Partitions.
    pub partitions: u32,
    /// The library.
    pub library: Timing,
    /// The hand-written lapin consumer.
    pub hand_written: Timing,
    /// The library's rate over the hand-written one's.
    pub ratio: f64,
}

/// The shared handler: one effect row per event, counted.
#[derive(Clone)]
struct Effects {
    applied: Arc<AtomicI64>,
}

impl Effects {
    async fn apply(
        &self,
        tx: &mut PgConnection,
        id: Uuid,
        key: Option<&str>,
    ) -> Result<(), sqlx::Error> {
        sqlx::query("INSERT INTO bench_consumer_effects (event_id, ordering_key) VALUES ($1, $2)")
            .bind(id)
            .bind(key)
            .execute(&mut *tx)
            .await?;
        Ok(())
    }
}

impl Handler for Effects {
    async fn handle(&self, tx: &mut PgConnection, event: &Event) -> Result<(), BoxError> {
        self.apply(tx, event.id, event.ordering_key.as_deref())
            .await?;
        Ok(())
    }
}

/// Runs `consumer` in a database, exchange and queues of its own.
pub async fn run(args: &Args, server: &Server, amqp_url: &str, keep: bool) -> Result<Report> {
    ensure!(
        (1..=outbox_consumer::topology::MAX_PARTITIONS).contains(&args.partitions),
        "--partitions must be 1 to {}",
        outbox_consumer::topology::MAX_PARTITIONS
    );
    harness::with_scratch(server, "_consumer", keep, async |scratch| {
        broker::with_broker(amqp_url, "consumer", async |broker: &Broker| {
            let groups = ["library", "hand"].map(|group| {
                ConsumerConfig::new(
                    amqp_url,
                    format!("bench-{group}"),
                    Source::Partitions {
                        prefix: format!("{}.{group}", broker.queue),
                        partitions: args.partitions,
                    },
                )
            });
            let topology = Topology {
                exchange: broker.exchange.clone(),
                routing_key_template: TEMPLATE.to_owned(),
                queue_type: QueueType::Quorum,
            };
            let mut queues = Vec::new();
            let mut outcome = Ok(());
            for group in &groups {
                match declare(group, &topology).await {
                    Ok(declared) => queues.extend(declared),
                    Err(error) => {
                        outcome = Err(error.into());
                        break;
                    }
                }
            }
            let report = match outcome {
                Ok(()) => measure(args, scratch, amqp_url, broker, &groups).await,
                Err(error) => Err(error),
            };
            let deleted = delete_queues(amqp_url, &queues).await;
            let report = report?;
            deleted?;
            Ok(report)
        })
        .await
    })
    .await
}

async fn measure(
    args: &Args,
    scratch: &Scratch,
    amqp_url: &str,
    broker: &Broker,
    groups: &[ConsumerConfig; 2],
) -> Result<Report> {
    sqlx::query("CREATE TABLE bench_consumer_effects (event_id uuid NOT NULL, ordering_key text)")
        .execute(&scratch.pool)
        .await?;
    // Both groups' queues fill with the same events.
    let backlog = harness::fresh_backlog(scratch, args.events, args.keys).await?;
    let mut config = RelayConfig::new(scratch.url.clone(), amqp_url.to_owned());
    config.exchange = broker.exchange.clone();
    config.routing_key_template = TEMPLATE.to_owned();
    config.partitions = args.partitions;
    let cancel = CancellationToken::new();
    let relay = tokio::spawn(outbox_relay::run(
        config,
        cancel.clone().cancelled_owned(),
        Arc::new(Health::default()),
    ));
    let published =
        harness::wait_delivered(&scratch.pool, &backlog, Instant::now(), DRAIN_LIMIT).await;
    cancel.cancel();
    relay.await?.context("the relay failed")?;
    eprintln!("  published {} events in {:.1} s", args.events, published?);

    let pool = PgPoolOptions::new()
        .max_connections(args.partitions + 2)
        .connect(&scratch.url)
        .await?;
    let library = time_library(&groups[0], &pool, args.events).await?;
    eprintln!(
        "  library: {:.2} s = {:.0} events/s",
        library.seconds, library.events_per_second
    );
    empty_tables(&pool).await?;
    let hand_written = time_hand_written(&groups[1], &pool, args.events).await?;
    eprintln!(
        "  hand-written: {:.2} s = {:.0} events/s",
        hand_written.seconds, hand_written.events_per_second
    );
    pool.close().await;
    Ok(Report {
        events: args.events,
        partitions: args.partitions,
        library,
        hand_written,
        ratio: library.events_per_second / hand_written.events_per_second,
    })
}

async fn empty_tables(pool: &PgPool) -> Result<()> {
    sqlx::query("TRUNCATE bench_consumer_effects, outbox_inbox")
        .execute(pool)
        .await?;
    sqlx::query("VACUUM ANALYZE bench_consumer_effects")
        .execute(pool)
        .await?;
    Ok(())
}

/// Waits until `applied` reaches `events`; the seconds since `started`.
async fn until_applied(applied: &AtomicI64, events: i64, started: Instant) -> Result<Timing> {
    while applied.load(Ordering::Relaxed) < events {
        ensure!(
            started.elapsed() < DRAIN_LIMIT,
            "{} of {events} events applied after {DRAIN_LIMIT:?}",
            applied.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(Timing {
        seconds,
        events_per_second: events as f64 / seconds,
    })
}

/// The counting wrapper both consumers share: applied effects are counted after the ack.
async fn time_library(config: &ConsumerConfig, pool: &PgPool, events: i64) -> Result<Timing> {
    let applied = Arc::new(AtomicI64::new(0));
    let handler = Counted {
        effects: Effects {
            applied: applied.clone(),
        },
    };
    let consumer = Consumer::new(config.clone(), pool.clone(), handler)?;
    let stop = CancellationToken::new();
    let started = Instant::now();
    let running = tokio::spawn(consumer.run(stop.clone().cancelled_owned()));
    let timing = until_applied(&applied, events, started).await;
    stop.cancel();
    running.await??;
    timing
}

/// The library's handler, counting each effect (the count is read once all are applied).
struct Counted {
    effects: Effects,
}

impl Handler for Counted {
    async fn handle(&self, tx: &mut PgConnection, event: &Event) -> Result<(), BoxError> {
        self.effects.handle(tx, event).await?;
        self.effects.applied.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// The same consumer by hand: a channel per partition queue, the message id and envelope
/// decoded, then a transaction with the inbox row and the effect, the commit, the ack.
async fn time_hand_written(config: &ConsumerConfig, pool: &PgPool, events: i64) -> Result<Timing> {
    let applied = Arc::new(AtomicI64::new(0));
    let effects = Effects {
        applied: applied.clone(),
    };
    let started = Instant::now();
    let connection = broker::connect(&config.amqp_url).await?;
    let mut tasks = JoinSet::new();
    for queue in config.source.queues() {
        let channel = connection.create_channel().await?;
        channel
            .basic_qos(PREFETCH, BasicQosOptions::default())
            .await?;
        let deliveries = channel
            .basic_consume(
                queue.as_str().into(),
                "hand-written".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        tasks.spawn(hand_written_queue(
            channel,
            deliveries,
            pool.clone(),
            config.name.clone(),
            effects.clone(),
        ));
    }
    let timing = until_applied(&applied, events, started).await;
    tasks.abort_all();
    while let Some(joined) = tasks.join_next().await {
        if let Ok(Err(error)) = joined {
            return Err(error);
        }
    }
    let _ = connection.close(200, "done".into()).await;
    timing
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)] // decoded as a consumer would; the handler reads the id
struct Envelope {
    id: Uuid,
    event_type: String,
    payload: serde_json::Value,
}

async fn hand_written_queue(
    _channel: lapin::Channel,
    mut deliveries: lapin::Consumer,
    pool: PgPool,
    consumer: String,
    effects: Effects,
) -> Result<()> {
    while let Some(delivery) = deliveries.next().await {
        let delivery = delivery?;
        let message_id = delivery
            .properties
            .message_id()
            .as_ref()
            .map(|id| id.as_str().to_owned())
            .context("no message_id")?;
        let envelope: Envelope = serde_json::from_slice(&delivery.data)?;
        let key = delivery
            .properties
            .headers()
            .as_ref()
            .and_then(|headers| headers.inner().get("x-ordering-key"))
            .and_then(|value| match value {
                AMQPValue::LongString(s) => {
                    Some(String::from_utf8_lossy(s.as_bytes()).into_owned())
                }
                _ => None,
            });
        let mut tx = pool.begin().await?;
        if outbox_core::inbox::record(&mut tx, &consumer, &message_id).await?
            == InboxOutcome::Process
        {
            effects.apply(&mut tx, envelope.id, key.as_deref()).await?;
        }
        tx.commit().await?;
        delivery.ack(BasicAckOptions::default()).await?;
        effects.applied.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

async fn delete_queues(amqp_url: &str, queues: &[String]) -> Result<()> {
    if queues.is_empty() {
        return Ok(());
    }
    let connection = broker::connect(amqp_url).await?;
    let channel = connection.create_channel().await?;
    for queue in queues {
        channel
            .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
            .await
            .with_context(|| format!("deleting the queue {queue}"))?;
    }
    connection.close(200, "done".into()).await?;
    Ok(())
}

/// The report as Markdown.
pub fn markdown(report: &Report) -> String {
    let caption = format!(
        "consumer: {} events on {} partitions (quorum, single active consumer), one process, inbox row + one insert per event",
        report.events, report.partitions
    );
    let row = |name: &str, timing: &Timing, ratio: f64| {
        vec![
            name.to_owned(),
            format!("{:.2}", timing.seconds),
            format!("{:.0}", timing.events_per_second),
            format!("{ratio:.2}"),
        ]
    };
    let rows = vec![
        row("outbox-consumer", &report.library, report.ratio),
        row("hand-written lapin", &report.hand_written, 1.0),
    ];
    let header = ["consumer", "seconds", "events/s", "ratio to hand-written"];
    harness::table(&caption, 1, &header, &rows)
}
