//! The consumer loop: a supervisor that (re)connects, and one task per queue that handles
//! its messages one at a time, in order.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use futures_util::{FutureExt as _, StreamExt};
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, Confirmation};
use outbox_core::InboxOutcome;
use sqlx::PgPool;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::connect::{broker_name, connect};
use crate::event::{Event, decode};
use crate::handler::{BoxError, Handler, Settled};
use crate::telemetry;
use crate::{ConsumerConfig, ConsumerError};

/// How often an idle queue task checks that its channel is still open.
const LINK_CHECK: Duration = Duration::from_secs(1);

/// The longest error text put in a dead-lettered message's `x-error`.
const MAX_ERROR_TEXT: usize = 1024;

/// Whether the consumer is connected and subscribed to all its queues. Cheap to clone; hand
/// it to the service's readiness endpoint.
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    /// True while connected and subscribed to every queue.
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Relaxed);
    }
}

/// Stops a running [`Consumer`] as its `shutdown` future completing would: the messages
/// being handled finish, the queues' tasks take no further message. Cheap to clone; give
/// one to the handler (e.g. to stop after N messages from [`Handler::settled`]) and hand it
/// to [`Consumer::with_stopper`].
#[derive(Debug, Clone, Default)]
pub struct Stopper(CancellationToken);

impl Stopper {
    /// A stopper that has not stopped anything yet.
    pub fn new() -> Self {
        Stopper::default()
    }

    /// Asks the consumer to stop. A queue's task checks it before taking its next message,
    /// so a call from [`Handler::settled`] stops that queue right after the settled message.
    pub fn stop(&self) {
        self.0.cancel();
    }

    /// Whether [`Stopper::stop`] was called.
    pub fn is_stopped(&self) -> bool {
        self.0.is_cancelled()
    }
}

/// A consumer: its settings, the database pool its transactions use, and its handler.
pub struct Consumer<H> {
    shared: Arc<Shared<H>>,
    stopper: Stopper,
}

struct Shared<H> {
    config: ConsumerConfig,
    pool: PgPool,
    handler: H,
    readiness: Readiness,
    broker: String,
}

/// Why a session (one connection) ended before shutdown.
#[derive(Debug)]
struct Lost(String);

/// Why one attempt at an event failed.
enum Failure {
    /// The handler (or the commit of its effects) failed: counts towards the limit.
    Handler(BoxError),
    /// Beginning the transaction or recording the inbox row failed (the database, not the
    /// event): retried without counting.
    Database(String),
}

impl<H: Handler> Consumer<H> {
    /// A consumer of `config`'s queues, applying events with `handler` in transactions of
    /// `pool` (give the pool at least as many connections as partitions handled at once).
    /// Refuses an invalid configuration; registers the metrics at 0.
    pub fn new(config: ConsumerConfig, pool: PgPool, handler: H) -> Result<Self, ConsumerError> {
        config.validate()?;
        telemetry::register(&config.name);
        let broker = broker_name(&config.amqp_url);
        if !config.inbox {
            warn!(consumer = %config.name, "the inbox is off: every redelivery is applied again");
        }
        Ok(Consumer {
            shared: Arc::new(Shared {
                config,
                pool,
                handler,
                readiness: Readiness::default(),
                broker,
            }),
            stopper: Stopper::new(),
        })
    }

    /// The consumer, stopped by `stopper` as well as by [`Consumer::run`]'s `shutdown`.
    pub fn with_stopper(mut self, stopper: Stopper) -> Self {
        self.stopper = stopper;
        self
    }

    /// The consumer's readiness flag.
    pub fn readiness(&self) -> Readiness {
        self.shared.readiness.clone()
    }

    /// Consumes until `shutdown` completes, reconnecting after every lost connection; then
    /// drains: the messages being handled finish (commit and acknowledgement) within
    /// [`ConsumerConfig::shutdown_timeout`], and the ones prefetched return to their queues.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), ConsumerError> {
        let stop = self.stopper.0.clone();
        let work = supervise(self.shared.clone(), stop.clone());
        tokio::pin!(work);
        tokio::select! {
            result = &mut work => return result,
            () = shutdown => {}
            () = stop.cancelled() => {}
        }
        info!(consumer = %self.shared.config.name, "shutting down: draining");
        stop.cancel();
        let bound = self.shared.config.shutdown_timeout;
        match tokio::time::timeout(bound, work).await {
            Ok(result) => result,
            Err(_) => {
                self.shared.readiness.set(false);
                Err(ConsumerError::ShutdownTimedOut(bound))
            }
        }
    }
}

/// Connects, consumes until the connection is lost, waits, reconnects; until `stop`.
async fn supervise<H: Handler>(
    shared: Arc<Shared<H>>,
    stop: CancellationToken,
) -> Result<(), ConsumerError> {
    let config = &shared.config;
    let mut delays = backoff(config.retry_base, config.retry_cap);
    while !stop.is_cancelled() {
        match session(&shared, &stop).await {
            Ok(()) => delays = backoff(config.retry_base, config.retry_cap),
            Err(Lost(reason)) => {
                let delay = delays.next().unwrap_or(config.retry_cap);
                warn!(
                    consumer = %config.name,
                    broker = %shared.broker,
                    %reason,
                    retry_in = ?delay,
                    "consumer connection lost; reconnecting"
                );
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = stop.cancelled() => {}
                }
            }
        }
    }
    Ok(())
}

/// An exponential backoff with jitter from `base` to `cap`, never ending.
fn backoff(base: Duration, cap: Duration) -> impl Iterator<Item = Duration> {
    ExponentialBuilder::new()
        .with_min_delay(base)
        .with_max_delay(cap)
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .build()
}

/// One connection: a channel and a task per queue, until shutdown (`Ok`) or a loss.
async fn session<H: Handler>(
    shared: &Arc<Shared<H>>,
    stop: &CancellationToken,
) -> Result<(), Lost> {
    let config = &shared.config;
    let connection = connect(config)
        .await
        .map_err(|error| Lost(error.to_string()))?;
    let lost = CancellationToken::new();
    let mut tasks = JoinSet::new();
    let mut outcome = Ok(());
    for queue in config.source.queues() {
        match subscribe(&connection, config, &queue).await {
            Ok((channel, deliveries)) => {
                tasks.spawn(queue_loop(
                    shared.clone(),
                    channel,
                    deliveries,
                    queue,
                    stop.clone(),
                    lost.clone(),
                ));
            }
            Err(error) => {
                outcome = Err(Lost(error.to_string()));
                lost.cancel();
                break;
            }
        }
    }
    if outcome.is_ok() {
        shared.readiness.set(true);
        info!(consumer = %config.name, broker = %shared.broker, queues = tasks.len(), "consuming");
    }
    while let Some(joined) = tasks.join_next().await {
        let failed = match joined {
            Ok(Ok(())) => None,
            Ok(Err(Lost(reason))) => Some(reason),
            Err(join_error) => Some(format!("a queue task failed: {join_error}")),
        };
        if let Some(reason) = failed {
            shared.readiness.set(false);
            if outcome.is_ok() {
                outcome = Err(Lost(reason));
            }
            lost.cancel();
        }
    }
    shared.readiness.set(false);
    // Unacknowledged messages return to their queues with the connection.
    let _ = tokio::time::timeout(config.ack_timeout, connection.close(200, "bye".into())).await;
    outcome
}

/// Opens `queue`'s channel (prefetch, publisher confirms for dead-lettering) and subscribes.
async fn subscribe(
    connection: &lapin::Connection,
    config: &ConsumerConfig,
    queue: &str,
) -> Result<(Channel, lapin::Consumer), ConsumerError> {
    let failed = |what: &str| {
        let what = format!("{what} on queue {queue:?}");
        move |error| ConsumerError::broker(what, error)
    };
    let channel = connection
        .create_channel()
        .await
        .map_err(failed("opening a channel"))?;
    channel
        .basic_qos(config.prefetch, BasicQosOptions::default())
        .await
        .map_err(failed("setting the prefetch"))?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(failed("enabling publisher confirms"))?;
    let tag: String = format!("{}.{}.{queue}", config.name, std::process::id())
        .chars()
        .take(250)
        .collect();
    let deliveries = channel
        .basic_consume(
            ShortString::from(queue),
            ShortString::from(tag.as_str()),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(failed("consuming"))?;
    Ok((channel, deliveries))
}

/// Handles `queue`'s messages one at a time until shutdown or a loss.
async fn queue_loop<H: Handler>(
    shared: Arc<Shared<H>>,
    channel: Channel,
    mut deliveries: lapin::Consumer,
    queue: String,
    stop: CancellationToken,
    lost: CancellationToken,
) -> Result<(), Lost> {
    loop {
        let delivery = tokio::select! {
            biased;
            () = stop.cancelled() => return Ok(()),
            () = lost.cancelled() => return Ok(()),
            next = tokio::time::timeout(LINK_CHECK, deliveries.next()) => match next {
                Err(_) => {
                    if !channel.status().connected() {
                        return Err(Lost(format!("the channel of queue {queue:?} closed")));
                    }
                    continue;
                }
                Ok(None) => return Err(Lost(format!("the broker ended the consumer of queue {queue:?}"))),
                Ok(Some(Err(error))) => return Err(Lost(format!("receiving from queue {queue:?}: {error}"))),
                Ok(Some(Ok(delivery))) => delivery,
            },
        };
        handle_delivery(&shared, &channel, &queue, delivery, &stop, &lost).await?;
    }
}

/// One message: decode, apply (retrying), or dead-letter; then acknowledge. Returns without
/// acknowledging when shutdown or a loss interrupts a retry (the message returns to its
/// queue, ahead of the partition's later ones).
async fn handle_delivery<H: Handler>(
    shared: &Shared<H>,
    channel: &Channel,
    queue: &str,
    delivery: Delivery,
    stop: &CancellationToken,
    lost: &CancellationToken,
) -> Result<(), Lost> {
    let config = &shared.config;
    let name = config.name.as_str();
    let event = match decode(&delivery, queue) {
        Ok(event) => event,
        Err(reason) => {
            warn!(consumer = %name, queue, %reason, "not an outbox event: dead-lettering it");
            let reason = reason.to_string();
            dead_letter(shared, channel, queue, &delivery, &reason, 0).await?;
            ack(shared, &delivery).await?;
            shared.handler.settled(Settled::DeadLettered {
                event: None,
                reason: &reason,
            });
            return Ok(());
        }
    };
    let mut delays = backoff(config.retry_base, config.retry_cap);
    let mut attempts = 0u32;
    let mut dead_lettered = None;
    let settled = loop {
        let started = Instant::now();
        let failure = match apply(shared, &event).await {
            Ok(InboxOutcome::Process) => {
                metrics::histogram!(telemetry::HANDLER_SECONDS, "consumer" => name.to_owned())
                    .record(started.elapsed().as_secs_f64());
                metrics::counter!(telemetry::HANDLED, "consumer" => name.to_owned()).increment(1);
                break InboxOutcome::Process;
            }
            Ok(InboxOutcome::AlreadyProcessed) => {
                metrics::counter!(telemetry::DUPLICATES, "consumer" => name.to_owned())
                    .increment(1);
                debug!(consumer = %name, event_id = %event.id, "already applied: skipped");
                break InboxOutcome::AlreadyProcessed;
            }
            Err(failure) => failure,
        };
        match failure {
            Failure::Handler(error) => {
                attempts += 1;
                metrics::counter!(telemetry::FAILURES, "consumer" => name.to_owned()).increment(1);
                if attempts >= config.max_attempts {
                    let text = error.to_string();
                    error!(
                        consumer = %name, queue, event_id = %event.id, event_type = %event.event_type,
                        attempts, error = %text,
                        "handler failed; dead-lettering the event (its key's later events proceed)"
                    );
                    dead_letter(shared, channel, queue, &delivery, &text, attempts).await?;
                    metrics::counter!(telemetry::DEAD_LETTERED, "consumer" => name.to_owned())
                        .increment(1);
                    dead_lettered = Some(text);
                    break InboxOutcome::Process;
                }
                warn!(
                    consumer = %name, queue, event_id = %event.id, event_type = %event.event_type,
                    attempts, max_attempts = config.max_attempts, error = %error,
                    "handler failed; retrying (the partition's later events wait)"
                );
            }
            Failure::Database(error) => {
                warn!(consumer = %name, queue, event_id = %event.id, %error,
                      "the database failed; retrying");
            }
        }
        let delay = delays.next().unwrap_or(config.retry_cap);
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = stop.cancelled() => return Ok(()),
            () = lost.cancelled() => return Ok(()),
        }
        if !channel.status().connected() {
            return Err(Lost(format!("the channel of queue {queue:?} closed")));
        }
    };
    ack(shared, &delivery).await?;
    shared.handler.settled(match (&dead_lettered, settled) {
        (Some(reason), _) => Settled::DeadLettered {
            event: Some(&event),
            reason,
        },
        (None, InboxOutcome::Process) => Settled::Applied(&event),
        (None, InboxOutcome::AlreadyProcessed) => Settled::Duplicate(&event),
    });
    Ok(())
}

/// The inbox row, the handler (or, for a duplicate, [`Handler::on_duplicate`]) and the
/// commit, in one transaction.
async fn apply<H: Handler>(shared: &Shared<H>, event: &Event) -> Result<InboxOutcome, Failure> {
    let database = |error: &dyn std::fmt::Display| Failure::Database(error.to_string());
    let mut tx = shared.pool.begin().await.map_err(|e| database(&e))?;
    let outcome = if shared.config.inbox {
        outbox_core::inbox::record(&mut tx, &shared.config.name, &event.id.to_string())
            .await
            .map_err(|e| database(&e))?
    } else {
        InboxOutcome::Process
    };
    let handled = match outcome {
        InboxOutcome::Process => unwound(shared.handler.handle(&mut tx, event)).await,
        InboxOutcome::AlreadyProcessed => {
            unwound(shared.handler.on_duplicate(&mut tx, event)).await
        }
    };
    handled.map_err(failure)?;
    tx.commit()
        .await
        .map_err(|error| failure(Box::new(error)))?;
    Ok(outcome)
}

/// A handler that panics fails like one that returns an error: counted, retried, then
/// dead-lettered. Uncaught, the panic would end the queue's task, the session would reconnect
/// every partition, and the message would come back with its count at zero, forever.
async fn unwound(handled: impl Future<Output = Result<(), BoxError>>) -> Result<(), BoxError> {
    std::panic::AssertUnwindSafe(handled)
        .catch_unwind()
        .await
        .unwrap_or_else(|panic| Err(panicked(&*panic).into()))
}

/// The message of a handler's panic, as its failure.
fn panicked(payload: &(dyn std::any::Any + Send)) -> String {
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned());
    format!("the handler panicked: {message}")
}

/// A handler's (or its commit's) error: the database link failing is no fault of the event
/// and is retried without counting towards the limit; anything else counts.
fn failure(error: BoxError) -> Failure {
    if database_link_failed(&*error) {
        Failure::Database(error.to_string())
    } else {
        Failure::Handler(error)
    }
}

/// Whether `error`, or an error it wraps, is a sqlx error of the database link: the network,
/// TLS, the pool, or the server ending the session (SQLSTATE class 08, 57P0x).
fn database_link_failed(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(sqlx_error) = error.downcast_ref::<sqlx::Error>() {
            return match sqlx_error {
                sqlx::Error::Io(_)
                | sqlx::Error::Tls(_)
                | sqlx::Error::Protocol(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::WorkerCrashed => true,
                sqlx::Error::Database(db) => db
                    .code()
                    .is_some_and(|code| code.starts_with("08") || code.starts_with("57P0")),
                _ => false,
            };
        }
        current = error.source();
    }
    false
}

/// Acknowledges, bounded by the ack timeout: a late or failed one is a lost connection
/// (the message is redelivered, and the inbox skips it).
async fn ack<H>(shared: &Shared<H>, delivery: &Delivery) -> Result<(), Lost> {
    match tokio::time::timeout(
        shared.config.ack_timeout,
        delivery.ack(BasicAckOptions::default()),
    )
    .await
    {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) => Err(Lost(format!("acknowledging: {error}"))),
        Err(_) => Err(Lost(format!(
            "an acknowledgement took over {:?}",
            shared.config.ack_timeout
        ))),
    }
}

/// Publishes the delivery, unchanged but for headers saying why, to the dead-letter queue,
/// and waits for the broker's confirm (bounded). A missing dead-letter queue (the message
/// comes back) is a loss: the message is not acknowledged and is tried again.
async fn dead_letter<H>(
    shared: &Shared<H>,
    channel: &Channel,
    queue: &str,
    delivery: &Delivery,
    error: &str,
    attempts: u32,
) -> Result<(), Lost> {
    let config = &shared.config;
    let dead = config.source.dead_letter_queue();
    let text = |value: &str| AMQPValue::LongString(LongString::from(value.as_bytes().to_vec()));
    let mut headers = delivery.properties.headers().clone().unwrap_or_default();
    let error: String = error.chars().take(MAX_ERROR_TEXT).collect();
    headers.insert("x-error".into(), text(&error));
    headers.insert("x-consumer".into(), text(&config.name));
    headers.insert("x-original-queue".into(), text(queue));
    headers.insert(
        "x-original-routing-key".into(),
        text(delivery.routing_key.as_str()),
    );
    headers.insert(
        "x-handler-attempts".into(),
        AMQPValue::LongLongInt(i64::from(attempts)),
    );
    let properties = delivery.properties.clone().with_headers(headers);
    let bound = config.ack_timeout;
    let published = tokio::time::timeout(
        bound,
        channel.basic_publish(
            ShortString::from(""),
            ShortString::from(dead.as_str()),
            BasicPublishOptions {
                mandatory: true,
                ..BasicPublishOptions::default()
            },
            &delivery.data,
            properties,
        ),
    )
    .await
    .map_err(|_| Lost(format!("publishing to {dead:?} took over {bound:?}")))?
    .map_err(|e| Lost(format!("publishing to {dead:?}: {e}")))?;
    let confirmation = tokio::time::timeout(bound, published)
        .await
        .map_err(|_| Lost(format!("the confirm from {dead:?} took over {bound:?}")))?
        .map_err(|e| Lost(format!("publishing to {dead:?}: {e}")))?;
    match confirmation {
        Confirmation::Ack(None) => Ok(()),
        Confirmation::Ack(Some(_)) => {
            error!(
                consumer = %config.name,
                dead_letter_queue = %dead,
                "the dead-letter queue does not exist: declare it (outbox_consumer::setup::declare); the message stays in its queue"
            );
            Err(Lost(format!(
                "the dead-letter queue {dead:?} does not exist"
            )))
        }
        Confirmation::Nack(_) | Confirmation::NotRequested => Err(Lost(format!(
            "the broker did not take the message into {dead:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("applying the event")]
    struct Wrapped(#[source] sqlx::Error);

    #[test]
    fn a_failing_database_link_does_not_count_as_a_handler_failure() {
        let link: BoxError = Box::new(sqlx::Error::Io(std::io::ErrorKind::ConnectionReset.into()));
        assert!(matches!(failure(link), Failure::Database(_)));
        let wrapped: BoxError = Box::new(Wrapped(sqlx::Error::PoolTimedOut));
        assert!(matches!(failure(wrapped), Failure::Database(_)));
        let not_found: BoxError = Box::new(sqlx::Error::RowNotFound);
        assert!(matches!(failure(not_found), Failure::Handler(_)));
        let other: BoxError = "the payload is wrong".into();
        assert!(matches!(failure(other), Failure::Handler(_)));
    }
}
