//! Publishing: each delivery loop's confirm-mode channel on the shared [`Broker`]
//! connection, and waves of pipelined publishes on it — every message handed over, then
//! every publisher confirm awaited, returns (unroutable messages) matched to their own
//! message. A broken channel is dropped, and its connection too when that stalled.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use lapin::Confirmation;
use lapin::options::BasicPublishOptions;
use lapin::types::ShortString;
use tokio_util::sync::CancellationToken;

use crate::broker::connection::{Broker, FRAME_MAX, OpenChannel};
use crate::broker::message::OutgoingMessage;
use crate::foundation::config::SHORT_STRING_MAX;
use crate::foundation::diagnosis::BrokerRefusal;
use crate::foundation::mask::redact;

/// The result of publishing one message.
#[derive(Debug, Clone, PartialEq)]
pub enum PublishResult {
    /// Routed and stored: the broker acked without returning the message.
    Confirmed,
    /// The attempt failed.
    Failed(PublishFailure),
    /// Never sent (the channel broke before its turn).
    NotSent,
}

/// Why a publish attempt failed. Its text is what `last_error` records; [`label`] is the
/// `reason` of `outbox_failed_attempts_total`.
///
/// [`label`]: PublishFailure::label
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PublishFailure {
    /// The broker returned the message: no queue is bound for its routing key.
    #[error("unroutable: returned by the broker{0}")]
    Unroutable(String),
    /// The broker refused to take responsibility for the message.
    #[error("nacked by the broker")]
    Nacked,
    /// No confirm arrived in time (a silent connection, or an overloaded broker).
    #[error("no publisher confirm within {0:?}")]
    ConfirmTimeout(Duration),
    /// The connection would not take the message in time (a broker blocking publishers on
    /// a memory or disk alarm).
    #[error("the broker did not take the message within {0:?} (blocked connection?)")]
    Blocked(Duration),
    /// The channel or the connection closed before the confirm (the text says how).
    #[error("{0}")]
    Lost(String),
}

impl PublishFailure {
    /// Every value [`PublishFailure::label`] returns (the failure counter starts at zero for
    /// each, so alerts see data before the first failure).
    pub const LABELS: [&'static str; 4] = ["unroutable", "nack", "timeout", "connection"];

    /// The metric label: `unroutable`, `nack`, `timeout` or `connection`.
    pub fn label(&self) -> &'static str {
        match self {
            PublishFailure::Unroutable(_) => "unroutable",
            PublishFailure::Nacked => "nack",
            PublishFailure::ConfirmTimeout(_) => "timeout",
            PublishFailure::Blocked(_) | PublishFailure::Lost(_) => "connection",
        }
    }

    /// Whether the channel's outstanding confirms can no longer be trusted: it must be
    /// replaced (a return or a nack is an answer; the channel is fine).
    pub fn breaks_channel(&self) -> bool {
        !matches!(self, PublishFailure::Unroutable(_) | PublishFailure::Nacked)
    }

    /// Whether the whole connection stopped answering or taking messages, for every
    /// channel on it: it must be replaced too.
    pub fn stalls_connection(&self) -> bool {
        matches!(
            self,
            PublishFailure::ConfirmTimeout(_) | PublishFailure::Blocked(_)
        )
    }
}

/// A confirm as awaited, before returns are matched to their messages.
enum Waited {
    Confirmed(Box<Confirmation>),
    Failed(PublishFailure),
    NotSent,
    /// The broker refused the relay's publishing itself (a missing write permission): not
    /// the message's failure.
    Refused(BrokerRefusal),
}

/// A delivery loop's confirm-mode channel on the shared [`Broker`] connection.
pub struct Publisher {
    broker: Arc<Broker>,
    confirm_timeout: Duration,
    publish_timeout: Duration,
    channel: Option<OpenChannel>,
    /// Whether the last wave was refused by the broker (see [`Publisher::take_refused`]).
    refused: bool,
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
            refused: false,
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

    /// Whether the broker refused the relay's publishes since the last call (a missing write
    /// permission: the messages count as not sent, not as failed attempts). The caller
    /// should pause before publishing again; the refusal itself is reported by the broker
    /// ([`Broker::refusals`]).
    pub fn take_refused(&mut self) -> bool {
        std::mem::take(&mut self.refused)
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

    /// Drops the channel, whose outstanding confirms can no longer be trusted, and its
    /// connection too when that is down or `stalled` (a connection that stopped taking
    /// messages or confirming them is so for every channel). Never waits.
    fn drop_link(&mut self, stalled: bool) {
        let Some(open) = self.channel.as_ref() else {
            return;
        };
        if stalled || !open.connection.status().connected() {
            self.broker.reset(open.generation);
        }
        self.close_channel();
    }

    /// Publishes `messages` back to back, then awaits all their confirms (bounded by the
    /// confirm timeout). The results are in input order. A broken channel is dropped so the
    /// next call reconnects.
    pub async fn publish_wave(&mut self, messages: &[&OutgoingMessage]) -> Vec<PublishResult> {
        let Some(OpenChannel { channel, .. }) = self.channel.as_ref() else {
            return vec![PublishResult::NotSent; messages.len()];
        };
        let exchange = self.broker.exchange();
        // Each message's confirm to await, or what became of it already.
        let mut pending: Vec<Result<lapin::PublisherConfirm, Waited>> =
            Vec::with_capacity(messages.len());
        let mut broken = false;
        let handed_over_by = tokio::time::Instant::now() + self.publish_timeout;
        for message in messages {
            if broken || message.routing_key.len() > SHORT_STRING_MAX {
                pending.push(Err(Waited::NotSent));
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
                Ok(Ok(confirm)) => pending.push(Ok(confirm)),
                Err(_) => {
                    broken = true;
                    pending.push(Err(Waited::Failed(PublishFailure::Blocked(
                        self.publish_timeout,
                    ))));
                }
                Ok(Err(error)) => {
                    broken = true;
                    pending.push(Err(match self.broker.publish_refusal(&error) {
                        Some(refusal) => Waited::Refused(refusal),
                        None => Waited::Failed(PublishFailure::Lost(format!(
                            "publish failed: {}",
                            redact(&error.to_string(), self.broker.secrets())
                        ))),
                    }));
                }
            }
        }
        let timeout = self.confirm_timeout;
        let broker = &self.broker;
        let waits = pending.into_iter().map(|slot| async move {
            match slot {
                Err(decided) => decided,
                Ok(confirm) => match tokio::time::timeout(timeout, confirm).await {
                    Err(_) => Waited::Failed(PublishFailure::ConfirmTimeout(timeout)),
                    Ok(Err(error)) => match broker.publish_refusal(&error) {
                        Some(refusal) => Waited::Refused(refusal),
                        None => Waited::Failed(PublishFailure::Lost(format!(
                            "connection lost before the confirm: {error}"
                        ))),
                    },
                    Ok(Ok(confirmation)) => Waited::Confirmed(Box::new(confirmation)),
                },
            }
        });
        let waited = join_all(waits).await;
        if let Some(refusal) = waited.iter().find_map(|outcome| match outcome {
            Waited::Refused(refusal) => Some(refusal.clone()),
            _ => None,
        }) {
            self.refused = true;
            self.broker.note_publish_refused(refusal);
        } else if waited
            .iter()
            .any(|outcome| matches!(outcome, Waited::Confirmed(_)))
        {
            self.broker.note_published();
        }

        // lapin hands each basic.return to whichever confirm it resolves next, and a
        // `multiple` ack resolves several at once in no set order: a return can ride on
        // another message's ack. Returns carry our message id, so match them by it.
        let mut returned: HashMap<String, PublishFailure> = HashMap::new();
        let mut unattributed_return = false;
        for outcome in &waited {
            if let Waited::Confirmed(confirmation) = outcome
                && let Confirmation::Ack(Some(message)) | Confirmation::Nack(Some(message)) =
                    confirmation.as_ref()
            {
                let reason = PublishFailure::Unroutable(format!(
                    " ({} {}): no queue is bound for routing key `{}`",
                    message.reply_code, message.reply_text, message.delivery.routing_key
                ));
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
                    Waited::NotSent | Waited::Refused(_) => return PublishResult::NotSent,
                    Waited::Failed(failure) => return PublishResult::Failed(failure),
                    Waited::Confirmed(confirmation) => *confirmation,
                };
                match confirmation {
                    Confirmation::Ack(carried) => {
                        if carried.is_some() && unattributed_return {
                            PublishResult::Failed(PublishFailure::Unroutable(String::new()))
                        } else {
                            PublishResult::Confirmed
                        }
                    }
                    Confirmation::Nack(_) => PublishResult::Failed(PublishFailure::Nacked),
                    Confirmation::NotRequested => PublishResult::Failed(PublishFailure::Lost(
                        "the channel is not in confirm mode".to_owned(),
                    )),
                }
            })
            .collect();
        let lost = results.iter().any(|r| match r {
            PublishResult::Failed(failure) => failure.breaks_channel(),
            PublishResult::NotSent => true,
            PublishResult::Confirmed => false,
        });
        let stalled = results
            .iter()
            .any(|r| matches!(r, PublishResult::Failed(failure) if failure.stalls_connection()));
        if lost || broken {
            // Start afresh; what is dropped closes in the background: a blocked broker may
            // take seconds to answer, and the wave's outcomes must be settled in time.
            self.drop_link(stalled);
        }
        results
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_failure_has_its_label_and_its_consequence() {
        let second = Duration::from_secs(1);
        let cases = [
            (
                PublishFailure::Unroutable(String::new()),
                "unroutable",
                false,
                false,
            ),
            (PublishFailure::Nacked, "nack", false, false),
            (
                PublishFailure::ConfirmTimeout(second),
                "timeout",
                true,
                true,
            ),
            (PublishFailure::Blocked(second), "connection", true, true),
            (
                PublishFailure::Lost("closed".to_owned()),
                "connection",
                true,
                false,
            ),
        ];
        for (failure, label, breaks, stalls) in cases {
            assert_eq!(failure.label(), label, "{failure}");
            assert_eq!(failure.breaks_channel(), breaks, "{failure}");
            assert_eq!(failure.stalls_connection(), stalls, "{failure}");
        }
    }

    #[test]
    fn the_recorded_text_names_the_cause() {
        let returned = PublishFailure::Unroutable(
            " (312 NO_ROUTE): no queue is bound for routing key `tickets.x`".to_owned(),
        );
        assert_eq!(
            returned.to_string(),
            "unroutable: returned by the broker (312 NO_ROUTE): no queue is bound for routing key `tickets.x`"
        );
        assert_eq!(
            PublishFailure::ConfirmTimeout(Duration::from_secs(15)).to_string(),
            "no publisher confirm within 15s"
        );
    }
}
