//! The AMQP side: one connection per relay, a confirm-mode channel per delivery loop, waves
//! of pipelined publishes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions};
use lapin::types::{FieldTable, ShortString};
use lapin::uri::AMQPUri;
use lapin::{Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::backoff::BackoffPolicy;
use crate::mask::{mask_url, password_of, redact};
use crate::message::OutgoingMessage;

/// The result of publishing one message.
#[derive(Debug, Clone, PartialEq)]
pub enum PublishResult {
    /// Routed and stored: the broker acked without returning the message.
    Confirmed,
    /// The attempt failed (nack, unroutable, confirm timeout, connection lost).
    Failed(String),
    /// Never sent (the channel broke before its turn).
    NotSent,
}

/// A confirm as awaited, before returns are matched to their messages.
enum Waited {
    Confirmed(Box<Confirmation>),
    Failed(String),
    NotSent,
}

/// The frame size the relay asks for, unless the AMQP URL sets `frame_max`. lapin keeps
/// two buffers of 32 frames per connection, so RabbitMQ's default (128 KiB) would cost
/// 8 MiB; message bodies of any size are split into frames, and properties (headers) must
/// fit in one.
pub const FRAME_MAX: u32 = 32 * 1024;

/// The relay's connection to the broker, shared by its delivery loops (each publishes on a
/// channel of its own). Reconnects when the broker goes away.
pub struct Broker {
    url: String,
    secrets: Vec<String>,
    exchange: String,
    link: tokio::sync::Mutex<Link>,
}

/// The current connection, and how many were opened before it.
#[derive(Default)]
struct Link {
    connection: Option<Connection>,
    generation: u64,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("url", &mask_url(&self.url))
            .field("exchange", &self.exchange)
            .finish()
    }
}

impl Broker {
    /// The broker at `url`, publishing to `exchange`; connects on first use.
    pub fn new(url: &str, exchange: &str) -> Arc<Self> {
        Arc::new(Broker {
            url: url.to_owned(),
            secrets: password_of(url).into_iter().collect(),
            exchange: exchange.to_owned(),
            link: tokio::sync::Mutex::new(Link::default()),
        })
    }

    /// One connection attempt, with the relay's frame size unless the URL sets one.
    pub async fn connect_once(&self) -> Result<Connection, lapin::Error> {
        if self.exchange.len() > crate::message::SHORT_STRING_MAX {
            return Err(lapin::Error::from(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the exchange name is over 255 bytes",
            )));
        }
        let mut uri: AMQPUri = self.url.parse().map_err(|error: String| {
            lapin::Error::from(std::io::Error::new(std::io::ErrorKind::InvalidInput, error))
        })?;
        uri.query.frame_max.get_or_insert(FRAME_MAX);
        let properties = ConnectionProperties::default()
            .with_connection_name("outbox-relay".into())
            .enable_auto_recover();
        tokio::time::timeout(
            Duration::from_secs(15),
            Connection::connect_uri(uri, properties),
        )
        .await
        .map_err(|_| {
            lapin::Error::from(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "connect timed out",
            ))
        })?
    }

    /// A confirm-mode channel with the exchange declared, connecting (or reconnecting) with
    /// backoff until it works; `None` once `cancel` fires.
    async fn open_channel(&self, cancel: &CancellationToken) -> Option<OpenChannel> {
        let mut delays = BackoffPolicy::RECONNECT.delay_iter();
        loop {
            let mut link = tokio::select! {
                link = self.link.lock() => link,
                () = cancel.cancelled() => return None,
            };
            if !link.usable(cancel).await {
                match self.connect_once().await {
                    Ok(connection) => {
                        info!(url = %mask_url(&self.url), exchange = %self.exchange, "connected to the broker");
                        link.connection = Some(connection);
                        link.generation += 1;
                    }
                    Err(error) => {
                        drop(link);
                        if !self.pause_after(&error, &mut delays, cancel).await {
                            return None;
                        }
                        continue;
                    }
                }
            }
            let opened = match link.connection.as_ref() {
                Some(connection) => self
                    .prepare_channel(connection)
                    .await
                    .map(|channel| (channel, connection.configuration().frame_max() as usize)),
                None => continue,
            };
            match opened {
                Ok((channel, frame_max)) => {
                    return Some(OpenChannel {
                        channel,
                        generation: link.generation,
                        frame_max,
                    });
                }
                Err(error) => {
                    // A connection that cannot open a channel is no use: start afresh.
                    link.close_in_background();
                    drop(link);
                    if !self.pause_after(&error, &mut delays, cancel).await {
                        return None;
                    }
                }
            }
        }
    }

    /// Logs a failed connection attempt and waits the next backoff delay; `false` once
    /// `cancel` fires.
    async fn pause_after(
        &self,
        error: &lapin::Error,
        delays: &mut impl Iterator<Item = Duration>,
        cancel: &CancellationToken,
    ) -> bool {
        let delay = delays.next().unwrap_or(Duration::from_secs(10));
        warn!(
            url = %mask_url(&self.url),
            error = %redact(&error.to_string(), &self.secrets),
            retry_in = ?delay,
            "broker unreachable"
        );
        tokio::select! {
            () = tokio::time::sleep(delay) => true,
            () = cancel.cancelled() => false,
        }
    }

    async fn prepare_channel(&self, connection: &Connection) -> Result<Channel, lapin::Error> {
        let channel = connection.create_channel().await?;
        channel
            .exchange_declare(
                ShortString::from(self.exchange.as_str()),
                ExchangeKind::Topic,
                ExchangeDeclareOptions {
                    durable: true,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok(channel)
    }

    /// Drops connection `generation` (if it is still the current one) so the next channel
    /// comes from a fresh connection: its channels can no longer be trusted.
    async fn reset(&self, generation: u64) {
        let mut link = self.link.lock().await;
        if link.generation == generation {
            link.close_in_background();
        }
    }

    /// Closes the connection (best effort, bounded).
    pub async fn close(&self) {
        let taken = self.link.lock().await.connection.take();
        if let Some(connection) = taken {
            let _ = tokio::time::timeout(
                Duration::from_secs(2),
                connection.close(200, "relay stopping".into()),
            )
            .await;
        }
    }
}

impl Link {
    /// Whether the connection is up, after giving lapin's own auto-recovery a short chance;
    /// one that is not is closed.
    async fn usable(&mut self, cancel: &CancellationToken) -> bool {
        let Some(connection) = self.connection.as_ref() else {
            return false;
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline
            && (connection.status().reconnecting() || connection.status().connecting())
        {
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
                () = cancel.cancelled() => return false,
            }
        }
        if connection.status().connected() {
            return true;
        }
        self.close_in_background();
        false
    }

    /// Forgets the connection at once and closes it in the background (bounded): a blocked
    /// broker may take seconds to answer, and a wave's outcomes must be settled in time.
    fn close_in_background(&mut self) {
        if let Some(connection) = self.connection.take() {
            tokio::spawn(async move {
                let _ = tokio::time::timeout(
                    Duration::from_secs(2),
                    connection.close(200, "relay reconnecting".into()),
                )
                .await;
            });
        }
    }
}

/// A channel as opened, with what the publisher needs to know of its connection.
struct OpenChannel {
    channel: Channel,
    /// The generation of the connection it is on.
    generation: u64,
    /// The connection's negotiated `frame_max`.
    frame_max: usize,
}

/// A delivery loop's confirm-mode channel on the shared [`Broker`] connection.
pub struct Publisher {
    broker: Arc<Broker>,
    confirm_timeout: Duration,
    publish_timeout: Duration,
    channel: Option<OpenChannel>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("broker", &self.broker)
            .field("connected", &self.is_connected())
            .finish()
    }
}

impl Publisher {
    /// A publisher on `broker`; call [`Publisher::ensure_connected`].
    pub fn new(broker: Arc<Broker>, confirm_timeout: Duration) -> Self {
        Publisher {
            broker,
            confirm_timeout,
            publish_timeout: Duration::from_secs(5),
            channel: None,
        }
    }

    /// Bounds how long handing one wave to the connection may take (default 5 s): a broker
    /// that stops reading (memory or disk alarm) cannot hold a wave past it.
    pub fn with_publish_timeout(mut self, timeout: Duration) -> Self {
        self.publish_timeout = timeout;
        self
    }

    /// The connection's negotiated `frame_max` ([`FRAME_MAX`] until connected; 0, which
    /// AMQP uses for "no limit", counts as the default too).
    pub fn frame_max(&self) -> usize {
        self.channel
            .as_ref()
            .map(|open| open.frame_max)
            .filter(|&max| max > 0)
            .unwrap_or(FRAME_MAX as usize)
    }

    /// Whether the channel is open and in confirm mode.
    pub fn is_connected(&self) -> bool {
        self.channel.as_ref().is_some_and(|open| {
            open.channel.status().connected() && open.channel.status().confirm()
        })
    }

    /// Opens a channel (connecting if need be), retrying with backoff until it works or
    /// `cancel` fires. Returns whether it is connected.
    pub async fn ensure_connected(&mut self, cancel: &CancellationToken) -> bool {
        if self.is_connected() {
            return true;
        }
        self.close_channel();
        self.channel = self.broker.open_channel(cancel).await;
        self.channel.is_some()
    }

    /// Closes the channel in the background; the next publish opens another.
    fn close_channel(&mut self) {
        if let Some(OpenChannel { channel, .. }) = self.channel.take() {
            tokio::spawn(async move {
                let _ = tokio::time::timeout(
                    Duration::from_secs(2),
                    channel.close(200, "relay reopening".into()),
                )
                .await;
            });
        }
    }

    /// Drops the channel, and its connection with it: outstanding confirms on it can no
    /// longer be trusted, and a connection that stopped taking messages is blocked for
    /// every channel.
    async fn drop_link(&mut self) {
        if let Some(open) = self.channel.take() {
            self.broker.reset(open.generation).await;
        }
    }

    /// Publishes `messages` back to back, then awaits all their confirms (bounded by the
    /// confirm timeout). The results are in input order. A broken channel is dropped so the
    /// next call reconnects.
    pub async fn publish_wave(&mut self, messages: &[&OutgoingMessage]) -> Vec<PublishResult> {
        let Some(OpenChannel { channel, .. }) = self.channel.as_ref() else {
            return vec![PublishResult::NotSent; messages.len()];
        };
        let exchange = self.broker.exchange.as_str();
        let mut pending = Vec::with_capacity(messages.len());
        let mut broken = None;
        let handed_over_by = tokio::time::Instant::now() + self.publish_timeout;
        for message in messages {
            if broken.is_some() || message.routing_key.len() > crate::message::SHORT_STRING_MAX {
                pending.push(None);
                continue;
            }
            let sent = tokio::time::timeout_at(
                handed_over_by,
                channel.basic_publish(
                    ShortString::from(exchange),
                    ShortString::from(message.routing_key.as_str()),
                    BasicPublishOptions {
                        mandatory: true,
                        ..BasicPublishOptions::default()
                    },
                    &message.body,
                    message.properties.clone(),
                ),
            )
            .await;
            match sent {
                Ok(Ok(confirm)) => pending.push(Some(Ok(confirm))),
                Err(_) => {
                    let text = format!(
                        "the broker did not take the message within {:?} (blocked connection?)",
                        self.publish_timeout
                    );
                    broken = Some(text.clone());
                    pending.push(Some(Err(text)));
                }
                Ok(Err(error)) => {
                    let text = format!(
                        "publish failed: {}",
                        redact(&error.to_string(), &self.broker.secrets)
                    );
                    broken = Some(text.clone());
                    pending.push(Some(Err(text)));
                }
            }
        }
        let timeout = self.confirm_timeout;
        let waits = pending.into_iter().map(|slot| async move {
            match slot {
                None => Waited::NotSent,
                Some(Err(text)) => Waited::Failed(text),
                Some(Ok(confirm)) => match tokio::time::timeout(timeout, confirm).await {
                    Err(_) => Waited::Failed(format!("no publisher confirm within {timeout:?}")),
                    Ok(Err(error)) => {
                        Waited::Failed(format!("connection lost before the confirm: {error}"))
                    }
                    Ok(Ok(confirmation)) => Waited::Confirmed(Box::new(confirmation)),
                },
            }
        });
        let waited = join_all(waits).await;

        // lapin hands each basic.return to whichever confirm it resolves next, and a
        // `multiple` ack resolves several at once in no set order: a return can ride on
        // another message's ack. Returns carry our message id, so match them by it.
        let mut returned: HashMap<String, String> = HashMap::new();
        let mut unattributed_return = false;
        for outcome in &waited {
            if let Waited::Confirmed(confirmation) = outcome
                && let Confirmation::Ack(Some(message)) | Confirmation::Nack(Some(message)) =
                    confirmation.as_ref()
            {
                let reason = format!(
                    "unroutable: returned by the broker ({} {}): no queue is bound for routing key `{}`",
                    message.reply_code, message.reply_text, message.delivery.routing_key
                );
                match message.delivery.properties.message_id() {
                    Some(id) => {
                        returned.insert(id.as_str().to_owned(), reason);
                    }
                    None => unattributed_return = true,
                }
            }
        }
        let results: Vec<PublishResult> = waited
            .into_iter()
            .zip(messages)
            .map(|(outcome, message)| {
                let id = message
                    .properties
                    .message_id()
                    .as_ref()
                    .map(|id| id.as_str().to_owned());
                if let Some(reason) = id.as_ref().and_then(|id| returned.get(id)) {
                    return PublishResult::Failed(reason.clone());
                }
                let confirmation = match outcome {
                    Waited::NotSent => return PublishResult::NotSent,
                    Waited::Failed(text) => return PublishResult::Failed(text),
                    Waited::Confirmed(confirmation) => *confirmation,
                };
                match confirmation {
                    Confirmation::Ack(carried) => {
                        if carried.is_some() && unattributed_return {
                            PublishResult::Failed("unroutable: returned by the broker".to_owned())
                        } else {
                            PublishResult::Confirmed
                        }
                    }
                    Confirmation::Nack(_) => {
                        PublishResult::Failed("nacked by the broker".to_owned())
                    }
                    Confirmation::NotRequested => {
                        PublishResult::Failed("the channel is not in confirm mode".to_owned())
                    }
                }
            })
            .collect();
        let lost = results.iter().any(|r| match r {
            PublishResult::Failed(text) => {
                !text.starts_with("unroutable") && !text.starts_with("nacked")
            }
            PublishResult::NotSent => true,
            PublishResult::Confirmed => false,
        });
        if lost || broken.is_some() {
            // Outstanding confirms on this channel can no longer be trusted: start afresh.
            // The old link closes in the background: a blocked broker may take seconds to
            // answer, and the wave's outcomes must be settled within its lease.
            self.drop_link().await;
        }
        results
    }
}
