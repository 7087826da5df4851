//! The AMQP side: one connection, one confirm-mode channel, waves of pipelined publishes.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions};
use lapin::types::{FieldTable, ShortString};
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

/// A confirm-mode publisher that reconnects when the broker goes away.
pub struct Publisher {
    url: String,
    secrets: Vec<String>,
    exchange: String,
    confirm_timeout: Duration,
    publish_timeout: Duration,
    link: Option<(Connection, Channel)>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("url", &mask_url(&self.url))
            .field("exchange", &self.exchange)
            .field("connected", &self.is_connected())
            .finish()
    }
}

impl Publisher {
    /// A publisher for `exchange` on the broker at `url`; call [`Publisher::ensure_connected`].
    pub fn new(url: &str, exchange: &str, confirm_timeout: Duration) -> Self {
        Publisher {
            url: url.to_owned(),
            secrets: password_of(url).into_iter().collect(),
            exchange: exchange.to_owned(),
            confirm_timeout,
            publish_timeout: Duration::from_secs(5),
            link: None,
        }
    }

    /// Bounds how long handing one wave to the connection may take (default 5 s): a broker
    /// that stops reading (memory or disk alarm) cannot hold a wave past it.
    pub fn with_publish_timeout(mut self, timeout: Duration) -> Self {
        self.publish_timeout = timeout;
        self
    }

    /// The connection's negotiated `frame_max` (the broker default until connected; 0, which
    /// AMQP uses for "no limit", counts as the default too).
    pub fn frame_max(&self) -> usize {
        self.link
            .as_ref()
            .map(|(connection, _)| connection.configuration().frame_max() as usize)
            .filter(|&max| max > 0)
            .unwrap_or(crate::message::DEFAULT_FRAME_MAX)
    }

    /// Whether the channel is open and in confirm mode.
    pub fn is_connected(&self) -> bool {
        self.link.as_ref().is_some_and(|(connection, channel)| {
            connection.status().connected()
                && channel.status().connected()
                && channel.status().confirm()
        })
    }

    /// Connects (or reconnects), declares the exchange and enables confirms, retrying with
    /// backoff until it works or `cancel` fires. Returns whether it is connected.
    pub async fn ensure_connected(&mut self, cancel: &CancellationToken) -> bool {
        if self.is_connected() {
            return true;
        }
        if self.wait_for_recovery(cancel).await {
            return true;
        }
        self.disconnect().await;
        let mut delays = BackoffPolicy::RECONNECT.delay_iter();
        loop {
            match self.connect_once().await {
                Ok(link) => {
                    info!(url = %mask_url(&self.url), exchange = %self.exchange, "connected to the broker");
                    self.link = Some(link);
                    return true;
                }
                Err(error) => {
                    let delay = delays.next().unwrap_or(Duration::from_secs(10));
                    warn!(
                        url = %mask_url(&self.url),
                        error = %redact(&error.to_string(), &self.secrets),
                        retry_in = ?delay,
                        "broker unreachable"
                    );
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = cancel.cancelled() => return false,
                    }
                }
            }
        }
    }

    /// Gives lapin's own auto-recovery a short chance to restore the link.
    async fn wait_for_recovery(&self, cancel: &CancellationToken) -> bool {
        let Some((connection, _)) = &self.link else {
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
            if self.is_connected() {
                info!("broker link recovered");
                return true;
            }
        }
        false
    }

    /// One connection attempt: connect, open a channel, declare the exchange, enable confirms.
    pub async fn connect_once(&self) -> Result<(Connection, Channel), lapin::Error> {
        if self.exchange.len() > crate::message::SHORT_STRING_MAX {
            return Err(lapin::Error::from(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the exchange name is over 255 bytes",
            )));
        }
        let properties = ConnectionProperties::default()
            .with_connection_name("outbox-relay".into())
            .enable_auto_recover();
        let connection = tokio::time::timeout(
            Duration::from_secs(15),
            Connection::connect(&self.url, properties),
        )
        .await
        .map_err(|_| {
            lapin::Error::from(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "connect timed out",
            ))
        })??;
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
        Ok((connection, channel))
    }

    /// Closes the link (best effort) so the next publish reconnects.
    pub async fn disconnect(&mut self) {
        if let Some((connection, _)) = self.link.take() {
            let _ = tokio::time::timeout(
                Duration::from_secs(2),
                connection.close(200, "relay reconnecting".into()),
            )
            .await;
        }
    }

    /// Forgets the link at once and closes it in the background (bounded), so the next call
    /// reconnects without waiting for the old connection to say goodbye.
    fn drop_link(&mut self) {
        if let Some((connection, _)) = self.link.take() {
            tokio::spawn(async move {
                let _ = tokio::time::timeout(
                    Duration::from_secs(2),
                    connection.close(200, "relay reconnecting".into()),
                )
                .await;
            });
        }
    }

    /// Publishes `messages` back to back, then awaits all their confirms (bounded by the
    /// confirm timeout). The results are in input order. A broken channel is dropped so the
    /// next call reconnects.
    pub async fn publish_wave(&mut self, messages: &[&OutgoingMessage]) -> Vec<PublishResult> {
        let Some((_, channel)) = self.link.as_ref() else {
            return vec![PublishResult::NotSent; messages.len()];
        };
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
                    ShortString::from(self.exchange.as_str()),
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
                        redact(&error.to_string(), &self.secrets)
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
            self.drop_link();
        }
        results
    }
}
