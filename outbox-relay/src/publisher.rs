//! The AMQP side: one connection per relay, a confirm-mode channel per delivery loop, waves
//! of pipelined publishes. The broker may be several nodes (a cluster): the relay holds one
//! connection at a time and moves on to the next node, round-robin, when it is lost.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::tcp::OwnedTLSConfig;
use lapin::types::ShortString;
use lapin::uri::AMQPUri;
use lapin::{
    Channel, Confirmation, Connection, ConnectionProperties, DefaultConnectionBuilder, ErrorKind,
};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::backoff::BackoffPolicy;
use crate::config::{RelayConfig, amqp_nodes};
use crate::mask::{mask_url, password_of, redact};
use crate::message::OutgoingMessage;
use crate::pause::sleep_unless_cancelled;

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
}

/// The frame size the relay asks for, unless the AMQP URL sets `frame_max`. lapin keeps
/// two buffers of 32 frames per connection, so RabbitMQ's default (128 KiB) would cost
/// 8 MiB; message bodies of any size are split into frames, and properties (headers) must
/// fit in one.
pub const FRAME_MAX: u32 = 32 * 1024;

/// How long opening and preparing a channel may take before the connection counts as
/// unusable.
const CHANNEL_SETUP_TIMEOUT: Duration = Duration::from_secs(10);

/// The relay's connection to the broker, shared by its delivery loops (each publishes on a
/// channel of its own). Reconnects when the broker goes away.
///
/// The current connection sits behind a plain mutex that is never held across an `.await`:
/// a loop that must drop a broken connection ([`Publisher::publish_wave`]) does so at once,
/// whatever other loops are doing, so its settle is never held up (its lease could run out).
/// Connection attempts are serialised by a second, async lock, taken only to connect.
pub struct Broker {
    /// The nodes' URLs, in the order given (at least one).
    nodes: Vec<String>,
    /// The node the next connection attempt goes to (an index into `nodes`).
    next_node: AtomicUsize,
    /// Extra trust anchors (PEM) for `amqps://` nodes, besides the system's.
    tls: OwnedTLSConfig,
    secrets: Vec<String>,
    exchange: String,
    /// The heartbeat asked for, in seconds, unless the URL sets one.
    heartbeat: u16,
    link: std::sync::Mutex<Link>,
    connecting: tokio::sync::Mutex<()>,
    /// Connections being closed in the background, awaited by [`Broker::close`].
    closing: std::sync::Mutex<tokio::task::JoinSet<()>>,
}

/// The current connection, the node it goes to, and how many were opened before it.
#[derive(Default)]
struct Link {
    connection: Option<Arc<Connection>>,
    node: usize,
    generation: u64,
}

/// Why the relay's first contact with the broker failed in a way no retry can heal (see
/// [`Broker::first_contact`]). Its text names the node (password masked) and the cause.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("broker {node}: {cause}: {detail}")]
pub struct Unhealable {
    /// The node's URL, password masked.
    pub node: String,
    /// `authentication failed` or `TLS certificate not trusted`.
    pub cause: &'static str,
    /// The client library's error (redacted) and what to check.
    pub detail: String,
}

/// Whether a failed connection attempt is one that retrying cannot heal, and why: the
/// broker refused the credentials (`ACCESS_REFUSED`, 403), or the TLS handshake failed on
/// the certificate (not signed by a trusted CA, wrong name, expired). `None` for everything
/// else (refused, unreachable, timed out, reset): those heal when the broker is back.
pub fn unhealable_cause(error: &lapin::Error) -> Option<&'static str> {
    if let ErrorKind::ProtocolError(amqp) = error.kind()
        && amqp.get_id() == 403
    {
        return Some("authentication failed");
    }
    let text = error.to_string().to_lowercase();
    if text.contains("access_refused") || text.contains("access-refused") {
        return Some("authentication failed");
    }
    if text.contains("certificate") || text.contains("unknownissuer") {
        return Some("TLS certificate not trusted");
    }
    None
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field(
                "nodes",
                &self.nodes.iter().map(|n| mask_url(n)).collect::<Vec<_>>(),
            )
            .field("exchange", &self.exchange)
            .finish()
    }
}

impl Broker {
    /// The broker at `url` (one URL, or several nodes' URLs separated by commas), publishing
    /// to `exchange`; connects on first use. Asks for the default heartbeat
    /// ([`crate::config::DEFAULT_HEARTBEAT`]).
    pub fn new(url: &str, exchange: &str) -> Arc<Self> {
        Self::with_heartbeat(url, exchange, crate::config::DEFAULT_HEARTBEAT)
    }

    /// [`Broker::new`], asking for an AMQP heartbeat of `heartbeat` (whole seconds, at
    /// least one) unless the URL sets `heartbeat` itself. lapin sends heartbeats at twice
    /// that pace and closes a connection that received nothing for twice the heartbeat
    /// (`MissingHeartbeatError`): that is how an idle relay notices a silent broker link,
    /// which confirm timeouts only catch while publishing. RabbitMQ's own proposal (60 s)
    /// would take two minutes.
    pub fn with_heartbeat(url: &str, exchange: &str, heartbeat: Duration) -> Arc<Self> {
        Arc::new(Self::unshared(url, exchange, heartbeat))
    }

    fn unshared(url: &str, exchange: &str, heartbeat: Duration) -> Self {
        let heartbeat = u16::try_from(heartbeat.as_secs().max(1)).unwrap_or(u16::MAX);
        let mut nodes: Vec<String> = amqp_nodes(url).into_iter().map(str::to_owned).collect();
        if nodes.is_empty() {
            // Refused by `RelayConfig::validate`; connecting then says why.
            nodes.push(url.to_owned());
        }
        Broker {
            secrets: nodes.iter().filter_map(|node| password_of(node)).collect(),
            nodes,
            next_node: AtomicUsize::new(0),
            tls: OwnedTLSConfig::default(),
            exchange: exchange.to_owned(),
            heartbeat,
            link: std::sync::Mutex::new(Link::default()),
            connecting: tokio::sync::Mutex::new(()),
            closing: std::sync::Mutex::new(tokio::task::JoinSet::new()),
        }
    }

    /// The broker of `config`: its nodes, exchange and heartbeat, trusting the CA
    /// certificates of `amqp_ca_file` (read now) for `amqps://` nodes besides the system's.
    pub fn for_config(config: &RelayConfig) -> Result<Arc<Self>, crate::RelayError> {
        let mut broker = Self::unshared(&config.amqp_url, &config.exchange, config.heartbeat);
        if let Some(path) = &config.amqp_ca_file {
            let pem = std::fs::read_to_string(path).map_err(|error| {
                crate::config::ConfigError(format!("--amqp-ca-file {}: {error}", path.display()))
            })?;
            broker.tls.cert_chain = Some(pem);
        }
        Ok(Arc::new(broker))
    }

    /// The nodes' URLs, passwords masked, for logs and errors.
    pub fn masked_nodes(&self) -> Vec<String> {
        self.nodes.iter().map(|node| mask_url(node)).collect()
    }

    /// One connection attempt to the node whose turn it is, with the relay's frame size
    /// unless the URL sets one.
    pub async fn connect_once(&self) -> Result<Connection, lapin::Error> {
        self.connect_to(self.node_due(), self.nodes.len() == 1)
            .await
    }

    /// The URL of node `node` (counted round the list).
    fn node_url(&self, node: usize) -> &str {
        self.nodes
            .get(node % self.nodes.len().max(1))
            .map_or("", String::as_str)
    }

    /// The URL of node `node`, password masked.
    fn masked(&self, node: usize) -> String {
        mask_url(self.node_url(node))
    }

    /// The node whose turn it is.
    fn node_due(&self) -> usize {
        self.next_node.load(Ordering::Relaxed) % self.nodes.len().max(1)
    }

    /// Moves the turn on from `node` to the next one (round-robin).
    fn move_on_from(&self, node: usize) {
        self.next_node
            .store((node + 1) % self.nodes.len().max(1), Ordering::Relaxed);
    }

    /// Tries every node once, in order, until one accepts a connection (closed again at
    /// once). Fails only when none did and one of them refused in a way no retry heals
    /// ([`unhealable_cause`]): wrong credentials or an untrusted certificate. Everything
    /// else (a node down, unreachable) is left to the reconnect loop. For a relay's start:
    /// retrying such a refusal forever would only hide it.
    pub async fn first_contact(&self) -> Result<(), Unhealable> {
        let mut refused = None;
        for node in 0..self.nodes.len() {
            match self.connect_to(node, false).await {
                Ok(connection) => {
                    self.next_node.store(node, Ordering::Relaxed);
                    let _ = tokio::time::timeout(
                        Duration::from_secs(2),
                        connection.close(200, "first contact".into()),
                    )
                    .await;
                    return Ok(());
                }
                Err(error) => {
                    let text = redact(&error.to_string(), &self.secrets);
                    let cause = unhealable_cause(&error);
                    match cause {
                        Some(cause) => {
                            warn!(node = %self.masked(node), error = %text, "broker refused the relay: {cause}")
                        }
                        None => {
                            warn!(node = %self.masked(node), error = %text, "broker unreachable")
                        }
                    }
                    if let Some(cause) = cause {
                        refused.get_or_insert(Unhealable {
                            node: self.masked(node),
                            cause,
                            detail: match cause {
                                "authentication failed" => format!(
                                    "{text} (check the user and password of --amqp-url, and the user's permissions on the virtual host)"
                                ),
                                _ => format!(
                                    "{text} (check --amqp-ca-file: it must hold the CA that signed the broker's certificate, and the host name must match it)"
                                ),
                            },
                        });
                    }
                }
            }
        }
        refused.map_or(Ok(()), Err)
    }

    /// One connection attempt to node `node`; with `tcp_retries`, lapin retries a failed
    /// TCP connect or TLS handshake itself (16 times, with backoff, within the connect
    /// timeout), and reconnects a lost connection to the same node.
    async fn connect_to(&self, node: usize, tcp_retries: bool) -> Result<Connection, lapin::Error> {
        if self.exchange.len() > crate::message::SHORT_STRING_MAX {
            return Err(lapin::Error::from(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the exchange name is over 255 bytes",
            )));
        }
        let url = self.node_url(node);
        let mut uri: AMQPUri = url.parse().map_err(|error: String| {
            lapin::Error::from(std::io::Error::new(std::io::ErrorKind::InvalidInput, error))
        })?;
        uri.query.frame_max.get_or_insert(FRAME_MAX);
        uri.query.heartbeat.get_or_insert(self.heartbeat);
        let mut properties = ConnectionProperties::default()
            .with_connection_name("outbox-relay".into())
            .enable_auto_recover();
        if !tcp_retries {
            // lapin retries a refused TCP connect (and the reconnect of a lost connection)
            // on the same node 16 times with backoff: a node that is down would hold every
            // attempt until the connect timeout. With other nodes to go to, or to learn at
            // start what each node answers, fail at once (the relay's own loop paces the
            // attempts).
            properties = properties.configure_backoff(|backoff| backoff.with_max_times(0));
        }
        let builder = DefaultConnectionBuilder::new()?
            .with_uri(uri)
            .with_properties(properties)
            .with_tls_config(self.tls.clone());
        tokio::time::timeout(Duration::from_secs(15), builder.connect())
            .await
            .map_err(|_| timed_out("connect timed out"))?
    }

    /// The current connection and its generation, if any (no waiting).
    fn current(&self) -> Option<(Arc<Connection>, u64)> {
        let link = self
            .link
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        link.connection
            .clone()
            .map(|connection| (connection, link.generation))
    }

    /// A confirm-mode channel with the exchange declared, connecting (or reconnecting) with
    /// backoff until it works; `None` once `cancel` fires.
    async fn open_channel(&self, cancel: &CancellationToken) -> Option<OpenChannel> {
        let mut delays = BackoffPolicy::RECONNECT.delay_iter();
        loop {
            let Some((connection, generation)) = self.usable_connection(cancel).await? else {
                // None usable: connect, one loop at a time (the others then find it).
                let _turn = cancel.run_until_cancelled(self.connecting.lock()).await?;
                if self.current().is_some() {
                    continue;
                }
                let node = self.node_due();
                let attempt = cancel
                    .run_until_cancelled(self.connect_to(node, self.nodes.len() == 1))
                    .await?;
                match attempt {
                    Ok(connection) => {
                        info!(node = %self.masked(node), exchange = %self.exchange, "connected to the broker");
                        let mut link = self
                            .link
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner);
                        link.connection = Some(Arc::new(connection));
                        link.node = node;
                        link.generation += 1;
                    }
                    Err(error) => {
                        // The next attempt goes to the next node (after the backoff).
                        self.move_on_from(node);
                        if !self.pause_after(node, &error, &mut delays, cancel).await {
                            return None;
                        }
                    }
                }
                continue;
            };
            let prepared = cancel
                .run_until_cancelled(tokio::time::timeout(
                    CHANNEL_SETUP_TIMEOUT,
                    self.prepare_channel(&connection),
                ))
                .await?
                .unwrap_or_else(|_| Err(timed_out("opening a channel timed out")));
            match prepared {
                Ok(channel) => {
                    return Some(OpenChannel {
                        channel,
                        frame_max: connection.configuration().frame_max() as usize,
                        connection,
                        generation,
                    });
                }
                Err(error) => {
                    // A connection that cannot open a channel is no use: start afresh.
                    let node = self.reset(generation);
                    if !self.pause_after(node, &error, &mut delays, cancel).await {
                        return None;
                    }
                }
            }
        }
    }

    /// The current connection if it is up, after giving lapin's own auto-recovery a short
    /// chance (none when there are other nodes); one that is not is dropped. `None`
    /// (outer) once `cancel` fires.
    async fn usable_connection(
        &self,
        cancel: &CancellationToken,
    ) -> Option<Option<(Arc<Connection>, u64)>> {
        let Some((connection, generation)) = self.current() else {
            return Some(None);
        };
        // With other nodes to go to, moving on beats waiting for this one to come back.
        let recovery = if self.nodes.len() > 1 {
            Duration::ZERO
        } else {
            Duration::from_secs(5)
        };
        let deadline = Instant::now() + recovery;
        while Instant::now() < deadline
            && (connection.status().reconnecting() || connection.status().connecting())
        {
            if !sleep_unless_cancelled(Duration::from_millis(100), cancel).await {
                return None;
            }
        }
        if connection.status().connected() {
            return Some(Some((connection, generation)));
        }
        self.reset(generation);
        Some(None)
    }

    /// Logs a failed connection attempt to `node` and waits the next backoff delay; `false`
    /// once `cancel` fires.
    async fn pause_after(
        &self,
        node: usize,
        error: &lapin::Error,
        delays: &mut impl Iterator<Item = Duration>,
        cancel: &CancellationToken,
    ) -> bool {
        let delay = delays.next().unwrap_or(BackoffPolicy::RECONNECT.cap);
        let next = self.node_due();
        if self.nodes.len() > 1 {
            warn!(
                node = %self.masked(node),
                error = %redact(&error.to_string(), &self.secrets),
                next_node = %self.masked(next),
                retry_in = %format_args!("{delay:.1?}"),
                "broker node unreachable; trying the next node"
            );
        } else {
            warn!(
                node = %self.masked(0),
                error = %redact(&error.to_string(), &self.secrets),
                retry_in = %format_args!("{delay:.1?}"),
                "broker unreachable"
            );
        }
        sleep_unless_cancelled(delay, cancel).await
    }

    async fn prepare_channel(&self, connection: &Connection) -> Result<Channel, lapin::Error> {
        let channel = connection.create_channel().await?;
        crate::topology::declare_exchange(&channel, &self.exchange).await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok(channel)
    }

    /// Drops connection `generation` at once (if it is still the current one) and closes it
    /// in the background, bounded: the next channel comes from a fresh connection, to the
    /// next node (a lost connection moves the relay on, round-robin). Returns the node the
    /// connection went to.
    fn reset(&self, generation: u64) -> usize {
        let (taken, node) = {
            let mut link = self
                .link
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if link.generation == generation {
                (link.connection.take(), link.node)
            } else {
                (None, link.node)
            }
        };
        if let Some(connection) = taken {
            self.move_on_from(node);
            if self.nodes.len() > 1 {
                warn!(
                    node = %self.masked(node),
                    next_node = %self.masked(self.node_due()),
                    "broker connection lost; moving on to the next node"
                );
            }
            self.close_in_background(connection, "relay reconnecting");
        }
        node
    }

    fn close_in_background(&self, connection: Arc<Connection>, reason: &'static str) {
        let mut closing = self
            .closing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        closing.spawn(async move {
            let _ =
                tokio::time::timeout(Duration::from_secs(2), connection.close(200, reason.into()))
                    .await;
        });
    }

    /// Closes the connection, and waits for those closing in the background (bounded).
    pub async fn close(&self) {
        let taken = self
            .link
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .connection
            .take();
        if let Some(connection) = taken {
            self.close_in_background(connection, "relay stopping");
        }
        let mut closing = std::mem::take(
            &mut *self
                .closing
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        while closing.join_next().await.is_some() {}
    }
}

fn timed_out(what: &str) -> lapin::Error {
    lapin::Error::from(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        what.to_owned(),
    ))
}

/// A channel as opened, with what the publisher needs to know of its connection.
struct OpenChannel {
    channel: Channel,
    /// The connection it is on, and that connection's generation.
    connection: Arc<Connection>,
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
        let exchange = self.broker.exchange.as_str();
        let mut pending = Vec::with_capacity(messages.len());
        let mut broken = false;
        let handed_over_by = tokio::time::Instant::now() + self.publish_timeout;
        for message in messages {
            if broken || message.routing_key.len() > crate::message::SHORT_STRING_MAX {
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
                    broken = true;
                    pending.push(Some(Err(PublishFailure::Blocked(self.publish_timeout))));
                }
                Ok(Err(error)) => {
                    broken = true;
                    pending.push(Some(Err(PublishFailure::Lost(format!(
                        "publish failed: {}",
                        redact(&error.to_string(), &self.broker.secrets)
                    )))));
                }
            }
        }
        let timeout = self.confirm_timeout;
        let waits = pending.into_iter().map(|slot| async move {
            match slot {
                None => Waited::NotSent,
                Some(Err(failure)) => Waited::Failed(failure),
                Some(Ok(confirm)) => match tokio::time::timeout(timeout, confirm).await {
                    Err(_) => Waited::Failed(PublishFailure::ConfirmTimeout(timeout)),
                    Ok(Err(error)) => Waited::Failed(PublishFailure::Lost(format!(
                        "connection lost before the confirm: {error}"
                    ))),
                    Ok(Ok(confirmation)) => Waited::Confirmed(Box::new(confirmation)),
                },
            }
        });
        let waited = join_all(waits).await;

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
                    Waited::NotSent => return PublishResult::NotSent,
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
