//! A consumer that applies each event exactly once: the inbox record and the effect (a row in
//! `demo_projection`) commit together, and the message is acked only after the commit.
//!
//! `consumer [--setup-only] [--reset] [--teardown] [--expect N] [--idle SECONDS] [--ledger]
//! [--no-inbox]` (`--reset` deletes the queue first, so a demo starts from an empty queue;
//! `--teardown` deletes the queue and the exchange and exits).
//!
//! `--ledger` also records every applied event (`consumer_ledger`: message id, ordering
//! key, when) and every duplicate the inbox absorbed (`consumer_skipped`), each in the
//! transaction of its inbox record, so a test can check exactly-once and per-key order from
//! the database even across kills of the consumer. `--no-inbox` skips the inbox check and
//! applies every delivery: what a consumer without an inbox does, to show the duplicates
//! the inbox prevents (never for real use).

use std::time::Duration;

use anyhow::{Context, Result};
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicQosOptions, ExchangeDeleteOptions,
    QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use outbox_core::InboxOutcome;
use outbox_relay::broker::topology;
use outbox_relay::foundation::config;

const CONSUMER: &str = "demo-projection";

/// The AMQP heartbeat asked of the broker unless the URL sets one: a link that goes silent
/// is dropped within twice this.
const HEARTBEAT_SECONDS: u16 = 5;

/// How often a consumer waiting for a delivery checks that its connection is still up. A
/// lost connection ends the consumer with an error (its supervisor starts another; the
/// unacked messages go to the new one), rather than a wait on a stream that may never
/// yield again.
const LINK_CHECK: Duration = Duration::from_secs(1);

/// How long an ack may take to leave before the connection is taken for lost.
const ACK_TIMEOUT: Duration = Duration::from_secs(10);

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let setup_only = args.iter().any(|a| a == "--setup-only");
    let ledger = args.iter().any(|a| a == "--ledger");
    let use_inbox = !args.iter().any(|a| a == "--no-inbox");
    let expect: usize = flag("--expect")
        .map(|v| v.parse())
        .transpose()
        .context("--expect takes a number")?
        .unwrap_or(usize::MAX);
    let idle = Duration::from_secs(
        flag("--idle")
            .map(|v| v.parse())
            .transpose()
            .context("--idle takes seconds")?
            .unwrap_or(10),
    );
    // The relay's own defaults, so the consumer finds what a relay started without flags uses.
    let setting =
        |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_owned());
    let database_url = setting("DATABASE_URL", config::DEFAULT_DATABASE_URL);
    let amqp_url = setting("AMQP_URL", config::DEFAULT_AMQP_URL);
    let exchange = setting("OUTBOX_EXCHANGE", config::DEFAULT_EXCHANGE);
    let queue = format!("{exchange}.{CONSUMER}");

    let mut uri: lapin::uri::AMQPUri = amqp_url
        .parse()
        .map_err(|error: String| anyhow::anyhow!("AMQP_URL: {error}"))?;
    uri.query.heartbeat.get_or_insert(HEARTBEAT_SECONDS);
    let connection = Connection::connect_uri(uri, ConnectionProperties::default()).await?;
    let channel = connection.create_channel().await?;
    if args.iter().any(|a| a == "--reset" || a == "--teardown") {
        channel
            .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
            .await?;
    }
    if args.iter().any(|a| a == "--teardown") {
        channel
            .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
            .await?;
        println!("queue {queue} and exchange {exchange} deleted");
        return Ok(());
    }
    topology::declare_exchange(&channel, &exchange).await?;
    topology::declare_bound_queue(&channel, &queue, FieldTable::default(), &exchange, &["#"])
        .await?;
    if setup_only {
        println!("queue {queue} bound to {exchange} with #");
        return Ok(());
    }

    let connect: sqlx::postgres::PgConnectOptions = database_url.parse()?;
    let pool = outbox_core::tcp_nodelay::pool_options(&connect)
        .max_connections(2)
        .connect_with(connect)
        .await?;
    sqlx::query("CREATE TABLE IF NOT EXISTS demo_projection (event_type text PRIMARY KEY, applied bigint NOT NULL)")
        .execute(&pool)
        .await?;
    if ledger {
        sqlx::raw_sql(
            "CREATE TABLE IF NOT EXISTS consumer_ledger (
                 n bigserial PRIMARY KEY, message_id text NOT NULL, ordering_key text,
                 applied_at timestamptz NOT NULL DEFAULT clock_timestamp());
             CREATE TABLE IF NOT EXISTS consumer_skipped (
                 n bigserial PRIMARY KEY, message_id text NOT NULL,
                 skipped_at timestamptz NOT NULL DEFAULT clock_timestamp());",
        )
        .execute(&pool)
        .await?;
    }
    channel.basic_qos(50, BasicQosOptions::default()).await?;
    let mut deliveries = channel
        .basic_consume(
            queue.as_str().into(),
            CONSUMER.into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let (mut applied, mut skipped) = (0usize, 0usize);
    let mut idle_for = Duration::ZERO;
    while applied + skipped < expect {
        let delivery = match tokio::time::timeout(LINK_CHECK, deliveries.next()).await {
            Ok(Some(delivery)) => delivery?,
            Ok(None) => break,
            Err(_) => {
                anyhow::ensure!(
                    connection.status().connected(),
                    "lost the broker connection"
                );
                idle_for += LINK_CHECK;
                if idle_for >= idle {
                    break;
                }
                continue;
            }
        };
        idle_for = Duration::ZERO;
        let message_id = delivery
            .properties
            .message_id()
            .as_ref()
            .map(|m| m.as_str().to_owned())
            .unwrap_or_default();
        let event_type = delivery
            .properties
            .kind()
            .as_ref()
            .map(|k| k.as_str().to_owned())
            .unwrap_or_default();
        let ordering_key = delivery
            .properties
            .headers()
            .as_ref()
            .and_then(|headers| headers.inner().get("x-ordering-key"))
            .and_then(|value| match value {
                lapin::types::AMQPValue::LongString(s) => {
                    Some(String::from_utf8_lossy(s.as_bytes()).into_owned())
                }
                lapin::types::AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
                _ => None,
            });
        let mut tx = pool.begin().await?;
        let outcome = if use_inbox {
            outbox_core::inbox::record(&mut tx, CONSUMER, &message_id).await?
        } else {
            InboxOutcome::Process
        };
        match outcome {
            InboxOutcome::Process => {
                if ledger {
                    sqlx::query(
                        "INSERT INTO consumer_ledger (message_id, ordering_key) VALUES ($1, $2)",
                    )
                    .bind(&message_id)
                    .bind(&ordering_key)
                    .execute(&mut *tx)
                    .await?;
                }
                sqlx::query(
                    "INSERT INTO demo_projection VALUES ($1, 1)
                     ON CONFLICT (event_type) DO UPDATE SET applied = demo_projection.applied + 1",
                )
                .bind(&event_type)
                .execute(&mut *tx)
                .await?;
                applied += 1;
                println!("applied   {event_type:<28} {message_id}");
            }
            InboxOutcome::AlreadyProcessed => {
                if ledger {
                    sqlx::query("INSERT INTO consumer_skipped (message_id) VALUES ($1)")
                        .bind(&message_id)
                        .execute(&mut *tx)
                        .await?;
                }
                skipped += 1;
                println!("duplicate {event_type:<28} {message_id} (already applied, skipped)");
            }
        }
        tx.commit().await?;
        // After the commit: a crash in between redelivers, and the inbox dedupes.
        tokio::time::timeout(ACK_TIMEOUT, delivery.ack(BasicAckOptions::default()))
            .await
            .context("the ack did not leave in time: broker connection lost")??;
    }
    println!("consumer {CONSUMER}: {applied} applied, {skipped} duplicates skipped");
    Ok(())
}
