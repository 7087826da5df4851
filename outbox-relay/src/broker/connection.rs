//! The broker connection: the nodes of a cluster, the one connection a relay holds at a
//! time, its first contact, and reconnecting (round-robin over the nodes, with backoff)
//! when it is lost. It hands each delivery loop's [`Publisher`] a confirm-mode channel on
//! that connection; publishing on it is [`crate::broker::publishing`]'s.
//!
//! [`Publisher`]: crate::broker::publishing::Publisher

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use lapin::options::ConfirmSelectOptions;
use lapin::tcp::OwnedTLSConfig;
use lapin::uri::AMQPUri;
use lapin::{Channel, Connection, ConnectionProperties, DefaultConnectionBuilder, ErrorKind};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::broker::topology;
use crate::foundation::backoff::BackoffPolicy;
use crate::foundation::config::{
    ConfigError, DEFAULT_HEARTBEAT, RelayConfig, SHORT_STRING_MAX, amqp_nodes,
};
use crate::foundation::error::{RelayError, Unhealable};
use crate::foundation::mask::{mask_url, password_of, redact};
use crate::foundation::pause::sleep_unless_cancelled;

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
///
/// [`Publisher::publish_wave`]: crate::broker::publishing::Publisher::publish_wave
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
    /// ([`DEFAULT_HEARTBEAT`]).
    pub fn new(url: &str, exchange: &str) -> Arc<Self> {
        Self::with_heartbeat(url, exchange, DEFAULT_HEARTBEAT)
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
    pub fn for_config(config: &RelayConfig) -> Result<Arc<Self>, RelayError> {
        let mut broker = Self::unshared(&config.amqp_url, &config.exchange, config.heartbeat);
        if let Some(path) = &config.amqp_ca_file {
            let pem = std::fs::read_to_string(path).map_err(|error| {
                ConfigError(format!("--amqp-ca-file {}: {error}", path.display()))
            })?;
            broker.tls.cert_chain = Some(pem);
        }
        Ok(Arc::new(broker))
    }

    /// The nodes' URLs, passwords masked, for logs and errors.
    pub fn masked_nodes(&self) -> Vec<String> {
        self.nodes.iter().map(|node| mask_url(node)).collect()
    }

    /// The exchange every message is published to.
    pub(super) fn exchange(&self) -> &str {
        &self.exchange
    }

    /// The nodes' passwords, to redact from the client library's error texts.
    pub(super) fn secrets(&self) -> &[String] {
        &self.secrets
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
        if self.exchange.len() > SHORT_STRING_MAX {
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
    pub(super) async fn open_channel(&self, cancel: &CancellationToken) -> Option<OpenChannel> {
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
        topology::declare_exchange(&channel, &self.exchange).await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok(channel)
    }

    /// Drops connection `generation` at once (if it is still the current one) and closes it
    /// in the background, bounded: the next channel comes from a fresh connection, to the
    /// next node (a lost connection moves the relay on, round-robin). Returns the node the
    /// connection went to.
    pub(super) fn reset(&self, generation: u64) -> usize {
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
pub(super) struct OpenChannel {
    pub(super) channel: Channel,
    /// The connection it is on, and that connection's generation.
    pub(super) connection: Arc<Connection>,
    pub(super) generation: u64,
    /// The connection's negotiated `frame_max`.
    pub(super) frame_max: usize,
}
