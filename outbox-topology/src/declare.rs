//! The broker objects events travel through: the relay's durable topic exchange, the
//! durable queues consumers bind to it, and the partitioned topology's N queues. The relay,
//! the consumer library, the example consumer, the tests and the benchmarks all declare them
//! here, so they agree on their properties (a redeclaration with other properties is a
//! channel error).

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
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

/// The routing key placeholder that the relay replaces with the event's partition number
/// (`0` to N-1, in decimal).
pub const PARTITION_PLACEHOLDER: &str = "{partition}";

/// The queue type of a declared queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QueueType {
    /// A replicated quorum queue: the default, what a production broker cluster wants.
    #[default]
    Quorum,
    /// A classic queue (a single-node broker, tests).
    Classic,
}

/// Why partition queues cannot be declared.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    /// The routing key template has no `{partition}` word to bind partitions by.
    #[error(
        "the routing key template `{0}` has no `{{partition}}` word (between dots, e.g. `{{category}}.{{event_type}}.{{partition}}`): partition queues cannot be bound"
    )]
    NoPartitionWord(String),
    /// Two words of the template may hold dots (`{event_type}`), so a binding cannot tell
    /// where the partition word is.
    #[error(
        "the routing key template `{0}` has more than one word with `{{event_type}}`: a binding cannot locate the partition word"
    )]
    AmbiguousTemplate(String),
    /// The number of partitions is out of range.
    #[error("partitions must be 1 to {max}, got {got}", max = crate::MAX_PARTITIONS)]
    Partitions {
        /// What was asked.
        got: u32,
    },
    /// The broker refused a declaration.
    #[error("declaring the partition queues: {0}")]
    Broker(#[from] lapin::Error),
}

/// The arguments of a partition queue: its type and `x-single-active-consumer: true`, so the
/// broker delivers a partition to one consumer at a time and hands it to the next one
/// waiting when that consumer goes away.
pub fn partition_queue_arguments(queue_type: QueueType) -> FieldTable {
    let mut arguments = FieldTable::default();
    if queue_type == QueueType::Quorum {
        arguments.insert(
            ShortString::from("x-queue-type"),
            AMQPValue::LongString("quorum".into()),
        );
    }
    arguments.insert(
        ShortString::from("x-single-active-consumer"),
        AMQPValue::Boolean(true),
    );
    arguments
}

/// The name of partition `partition`'s queue of a consumer group whose queues are named
/// after `prefix`: `<prefix>.<partition>`.
pub fn partition_queue(prefix: &str, partition: u32) -> String {
    format!("{prefix}.{partition}")
}

/// The binding key that selects partition `partition`'s messages among the routing keys of
/// `template` (the relay's `--routing-key`): the `{partition}` word becomes the number, a
/// word holding `{event_type}` becomes `#` (an event type may hold dots), a word holding
/// another placeholder `*` (category slugs and tenant ids never hold dots), and a literal
/// word stays itself. `{category}.{event_type}.{partition}` gives `*.#.3` for partition 3.
pub fn partition_binding_key(template: &str, partition: u32) -> Result<String, TopologyError> {
    let words: Vec<&str> = template.split('.').collect();
    if !words.contains(&PARTITION_PLACEHOLDER) {
        return Err(TopologyError::NoPartitionWord(template.to_owned()));
    }
    if words.iter().filter(|w| w.contains("{event_type}")).count() > 1 {
        return Err(TopologyError::AmbiguousTemplate(template.to_owned()));
    }
    let bound: Vec<String> = words
        .iter()
        .map(|word| {
            if *word == PARTITION_PLACEHOLDER {
                partition.to_string()
            } else if word.contains("{event_type}") {
                "#".to_owned()
            } else if word.contains('{') {
                "*".to_owned()
            } else {
                (*word).to_owned()
            }
        })
        .collect();
    Ok(bound.join("."))
}

/// Declares the `partitions` queues of a consumer group (`<prefix>.0` to
/// `<prefix>.<partitions - 1>`, durable, of `queue_type`, single active consumer), each bound
/// to `exchange` with its partition's binding key under `template` (idempotent). Returns the
/// queue names in partition order.
pub async fn declare_partitions(
    channel: &Channel,
    exchange: &str,
    prefix: &str,
    partitions: u32,
    template: &str,
    queue_type: QueueType,
) -> Result<Vec<String>, TopologyError> {
    if !(1..=crate::MAX_PARTITIONS).contains(&partitions) {
        return Err(TopologyError::Partitions { got: partitions });
    }
    let mut queues = Vec::with_capacity(partitions as usize);
    for partition in 0..partitions {
        let key = partition_binding_key(template, partition)?;
        let queue = partition_queue(prefix, partition);
        declare_bound_queue(
            channel,
            &queue,
            partition_queue_arguments(queue_type),
            exchange,
            &[key.as_str()],
        )
        .await?;
        queues.push(queue);
    }
    Ok(queues)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binding_keys_select_the_partition_word() {
        let cases = [
            ("{category}.{event_type}.{partition}", 3, "*.#.3"),
            ("{partition}.{category}.{event_type}", 0, "0.*.#"),
            ("events.{tenant_id}.{partition}", 12, "events.*.12"),
            ("p.{partition}", 7, "p.7"),
        ];
        for (template, partition, key) in cases {
            assert_eq!(
                partition_binding_key(template, partition).unwrap(),
                key,
                "{template}"
            );
        }
        assert!(matches!(
            partition_binding_key("{category}.{event_type}", 1),
            Err(TopologyError::NoPartitionWord(_))
        ));
        assert!(matches!(
            partition_binding_key("{category}.p{partition}", 1),
            Err(TopologyError::NoPartitionWord(_))
        ));
        assert!(matches!(
            partition_binding_key("{event_type}.{partition}.{event_type}", 1),
            Err(TopologyError::AmbiguousTemplate(_))
        ));
    }

    #[test]
    fn partition_queues_are_single_active_consumer() {
        let arguments = partition_queue_arguments(QueueType::Quorum);
        let inner = arguments.inner();
        assert_eq!(
            inner.get("x-single-active-consumer"),
            Some(&AMQPValue::Boolean(true))
        );
        assert!(inner.contains_key("x-queue-type"));
        assert!(
            !partition_queue_arguments(QueueType::Classic)
                .inner()
                .contains_key("x-queue-type")
        );
        assert_eq!(partition_queue("billing", 5), "billing.5");
    }
}
