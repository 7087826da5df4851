//! Declaring what a consumer reads: the exchange (as the relay declares it), its queues and
//! their bindings, and its dead-letter queue. Idempotent; a deployment step (the example
//! consumer's `setup`), not something [`crate::Consumer::run`] does by itself.

use lapin::types::{AMQPValue, FieldTable, ShortString};
use outbox_topology::{QueueType, declare_bound_queue, declare_exchange, declare_partitions};

use crate::config::Source;
use crate::connect::connect;
use crate::{ConsumerConfig, ConsumerError};

/// What [`declare`] binds the queues to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// The relay's exchange (`--exchange`).
    pub exchange: String,
    /// The relay's routing key template (`--routing-key`): partition queues are bound by
    /// its `{partition}` word; a plain queue is bound with `#` (every event).
    pub routing_key_template: String,
    /// The queues' type (quorum by default).
    pub queue_type: QueueType,
}

/// Declares the exchange, the consumer's queues bound to it and its dead-letter queue, on
/// the broker of `config`. Returns the queues declared (the dead-letter queue last).
pub async fn declare(
    config: &ConsumerConfig,
    topology: &Topology,
) -> Result<Vec<String>, ConsumerError> {
    config.validate()?;
    let connection = connect(config).await?;
    let outcome = declare_on(&connection, config, topology).await;
    // Bounded, as the consumer's own close: a close handshake the broker never answers
    // must not hang the caller once everything is declared.
    let _ =
        tokio::time::timeout(config.ack_timeout, connection.close(200, "declared".into())).await;
    outcome
}

async fn declare_on(
    connection: &lapin::Connection,
    config: &ConsumerConfig,
    topology: &Topology,
) -> Result<Vec<String>, ConsumerError> {
    let channel = connection
        .create_channel()
        .await
        .map_err(|e| ConsumerError::broker("opening a channel", e))?;
    declare_exchange(&channel, &topology.exchange)
        .await
        .map_err(|e| {
            ConsumerError::broker(format!("declaring exchange {:?}", topology.exchange), e)
        })?;
    let mut queues = match &config.source {
        Source::Partitions { prefix, partitions } => {
            declare_partitions(
                &channel,
                &topology.exchange,
                prefix,
                *partitions,
                &topology.routing_key_template,
                topology.queue_type,
            )
            .await?
        }
        Source::Queue(queue) => {
            declare_bound_queue(
                &channel,
                queue,
                queue_arguments(topology.queue_type),
                &topology.exchange,
                &["#"],
            )
            .await
            .map_err(|e| ConsumerError::broker(format!("declaring queue {queue:?}"), e))?;
            vec![queue.clone()]
        }
    };
    let dead = config.source.dead_letter_queue();
    declare_bound_queue(
        &channel,
        &dead,
        queue_arguments(topology.queue_type),
        "",
        &[],
    )
    .await
    .map_err(|e| ConsumerError::broker(format!("declaring queue {dead:?}"), e))?;
    queues.push(dead);
    Ok(queues)
}

fn queue_arguments(queue_type: QueueType) -> FieldTable {
    let mut arguments = FieldTable::default();
    if queue_type == QueueType::Quorum {
        arguments.insert(
            ShortString::from("x-queue-type"),
            AMQPValue::LongString("quorum".into()),
        );
    }
    arguments
}
