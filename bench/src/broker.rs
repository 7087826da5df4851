//! The broker side of a scenario: an exchange and a queue of its own, deleted at the end.
//!
//! Every scenario that talks to RabbitMQ declares a durable topic exchange (the kind the
//! relay declares) and a durable queue bound to it with `#`, both named
//! `outbox_bench.<scenario>.<random>`. They are deleted when the scenario ends; the names
//! are also kept in a process-wide list, so that `main` deletes whatever an error or a
//! Ctrl-C left behind ([`delete_leftovers`]).

use std::sync::{Mutex, PoisonError};

use anyhow::{Context, Result};
use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions, QueuePurgeOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties};
use outbox_relay::broker::topology;
use uuid::Uuid;

/// Exchanges and queues declared by this process and not deleted yet.
static DECLARED: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

fn declared() -> std::sync::MutexGuard<'static, Vec<(String, String)>> {
    DECLARED.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A connection to the broker with a scenario's exchange and queue.
pub struct Broker {
    connection: Connection,
    channel: Channel,
    /// The durable topic exchange (the relay's `--exchange`).
    pub exchange: String,
    /// The durable queue bound to it with `#`: every event is routable and stored.
    pub queue: String,
}

/// Opens a connection to `amqp_url` (the error names the broker).
pub async fn connect(amqp_url: &str) -> Result<Connection> {
    Connection::connect(amqp_url, ConnectionProperties::default())
        .await
        .context("connecting to RabbitMQ (--amqp-url)")
}

impl Broker {
    /// Declares `outbox_bench.<scenario>.<random>` as an exchange and a queue bound to it.
    pub async fn create(amqp_url: &str, scenario: &str) -> Result<Broker> {
        let connection = connect(amqp_url).await?;
        let channel = connection.create_channel().await?;
        let name = format!(
            "outbox_bench.{scenario}.{}",
            &Uuid::new_v4().simple().to_string()[..8]
        );
        let broker = Broker {
            connection,
            channel,
            exchange: format!("{name}.x"),
            queue: name,
        };
        declared().push((broker.exchange.clone(), broker.queue.clone()));
        declare(&broker.channel, &broker.exchange, &broker.queue)
            .await
            .with_context(|| format!("declaring the exchange and queue {}", broker.queue))?;
        eprintln!("exchange {} and queue {}", broker.exchange, broker.queue);
        Ok(broker)
    }

    /// A consumer of the queue on a channel of its own, acking nothing (`no_ack`), tagged
    /// `tag`; keep the channel as long as the consumer.
    pub async fn consume(&self, tag: &str) -> Result<(Channel, lapin::Consumer)> {
        let channel = self.connection.create_channel().await?;
        let deliveries = channel
            .basic_consume(
                self.queue.as_str().into(),
                tag.into(),
                lapin::options::BasicConsumeOptions {
                    no_ack: true,
                    ..lapin::options::BasicConsumeOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .context("consuming the benchmark queue")?;
        Ok((channel, deliveries))
    }

    /// Empties the queue (between runs of one scenario).
    pub async fn purge(&self) -> Result<()> {
        self.channel
            .queue_purge(self.queue.as_str().into(), QueuePurgeOptions::default())
            .await
            .context("purging the benchmark queue")?;
        Ok(())
    }

    /// Deletes the queue and the exchange and closes the connection.
    pub async fn delete(self) -> Result<()> {
        remove(&self.channel, &self.exchange, &self.queue).await?;
        declared().retain(|(exchange, _)| exchange != &self.exchange);
        self.connection.close(200, "done".into()).await?;
        Ok(())
    }
}

/// Runs `scenario` against a fresh [`Broker`] and deletes it afterwards, also on error.
pub async fn with_broker<T, F>(amqp_url: &str, scenario: &str, run: F) -> Result<T>
where
    F: AsyncFnOnce(&Broker) -> Result<T>,
{
    let broker = Broker::create(amqp_url, scenario).await?;
    let outcome = run(&broker).await;
    let deleted = broker.delete().await;
    let value = outcome?;
    deleted?;
    Ok(value)
}

async fn declare(channel: &Channel, exchange: &str, queue: &str) -> Result<()> {
    topology::declare_exchange(channel, exchange).await?;
    topology::declare_bound_queue(channel, queue, FieldTable::default(), exchange, &["#"]).await?;
    Ok(())
}

async fn remove(channel: &Channel, exchange: &str, queue: &str) -> Result<()> {
    channel
        .queue_delete(queue.into(), QueueDeleteOptions::default())
        .await
        .with_context(|| format!("deleting the queue {queue}"))?;
    channel
        .exchange_delete(exchange.into(), ExchangeDeleteOptions::default())
        .await
        .with_context(|| format!("deleting the exchange {exchange}"))?;
    Ok(())
}

/// Deletes every exchange and queue this process declared and did not delete (after an
/// error or an interruption).
pub async fn delete_leftovers(amqp_url: &str) -> Result<()> {
    let left: Vec<(String, String)> = declared().drain(..).collect();
    if left.is_empty() {
        return Ok(());
    }
    let connection = connect(amqp_url).await?;
    let channel = connection.create_channel().await?;
    for (exchange, queue) in &left {
        remove(&channel, exchange, queue).await?;
        eprintln!("deleted the exchange {exchange} and queue {queue}");
    }
    connection.close(200, "done".into()).await?;
    Ok(())
}
