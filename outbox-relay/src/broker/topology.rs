//! The broker objects events travel through: the relay's durable topic exchange, and the
//! durable queues consumers bind to it. The relay, the example consumer, the tests and the
//! benchmarks all declare them here, so they agree on their properties (a redeclaration
//! with other properties is a channel error).

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Channel, ExchangeKind};

/// Declares `exchange` as a durable topic exchange (idempotent).
pub async fn declare_exchange(channel: &Channel, exchange: &str) -> Result<(), lapin::Error> {
    channel
        .exchange_declare(
            exchange.into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
}

/// Declares `queue` as a durable queue with `arguments` (e.g. `x-queue-type: quorum`) and
/// binds it to `exchange` with each of `binding_keys` (idempotent).
pub async fn declare_bound_queue(
    channel: &Channel,
    queue: &str,
    arguments: FieldTable,
    exchange: &str,
    binding_keys: &[&str],
) -> Result<(), lapin::Error> {
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            arguments,
        )
        .await?;
    for key in binding_keys {
        bind_queue(channel, queue, exchange, key).await?;
    }
    Ok(())
}

/// Binds `queue` to `exchange` with `binding_key` (idempotent).
pub async fn bind_queue(
    channel: &Channel,
    queue: &str,
    exchange: &str,
    binding_key: &str,
) -> Result<(), lapin::Error> {
    channel
        .queue_bind(
            queue.into(),
            exchange.into(),
            binding_key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
}
