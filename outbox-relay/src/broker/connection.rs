//! The broker connection: the nodes of a cluster, the one connection a relay holds at a
//! time, its first contact, and reconnecting (round-robin over the nodes, with backoff)
//! when it is lost. It hands each delivery loop's [`Publisher`] a confirm-mode channel on
//! that connection; publishing on it is [`crate::broker::publishing`]'s.
//!
//! Every failure is told apart by [`refusal_of`]: a broker that cannot be reached is retried
//! (said once, then summarised), a broker that refuses the relay (its login, its vhost, its
//! exchange, its permissions, its limits) is named in words ([`BrokerRefusal`]). At start a
//! refusal no retry heals ends the relay; after start it is retried, said once per change,
//! and shown by [`Broker::refusals`] (which `/readyz` follows).
//!
//! [`Publisher`]: crate::broker::publishing::Publisher

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use lapin::options::ConfirmSelectOptions;
use lapin::tcp::OwnedTLSConfig;
use lapin::uri::AMQPUri;
use lapin::{Channel, Connection, ConnectionProperties, DefaultConnectionBuilder, ErrorKind};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::broker::topology;
use crate::foundation::backoff::BackoffPolicy;
use crate::foundation::config::{
    ConfigError, DEFAULT_HEARTBEAT, DEFAULT_IN_FLIGHT_BATCHES, RelayConfig, SHORT_STRING_MAX,
    amqp_nodes,
};
use crate::foundation::diagnosis::{self, BrokerIdentity, BrokerRefusal, BrokerStep};
use crate::foundation::error::{RelayError, Unhealable};
use crate::foundation::logging::{Repeats, Report};
use crate::foundation::mask::{mask_url, password_of, redact};
use crate::foundation::pause::sleep_unless_cancelled;

/// The frame size the relay asks for, unless the AMQP URL sets `frame_max`. lapin keeps
/// two buffers of 32 frames per connection, so RabbitMQ's default (128 KiB) would cost
/// 8 MiB; message bodies of any size are split into frames, and properties (headers) must
/// fit in one.
pub const FRAME_MAX: u32 = 32 * 1024;

/// How long opening and preparing a channel may take before the connection counts as
/// unusable.
/// How often lapin itself retries a failed TCP connect or TLS handshake before it gives
/// up (200 ms doubling to 2 s: about 3 s in all; see `connect_to`).
const LAPIN_RETRIES: usize = 4;

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
    /// How many channels the relay opens on its connection (one per delivery loop).
    channels_needed: u32,
    /// What went wrong last, for saying each change once.
    trouble: std::sync::Mutex<Trouble>,
    /// The refusal standing, if any (see [`Broker::refusals`]).
    refused: watch::Sender<Option<BrokerRefusal>>,
}

/// What the relay last heard from the broker when something went wrong.
#[derive(Default)]
struct Trouble {
    /// The refusal standing, and the step it came at.
    refused: Option<(BrokerStep, BrokerRefusal)>,
    /// Failures to reach the broker, said once and then summarised.
    unreachable: Repeats,
}

/// The current connection, the node it goes to, and how many were opened before it.
#[derive(Default)]
struct Link {
    connection: Option<Arc<Connection>>,
    node: usize,
    generation: u64,
}

/// What a failed step with the broker means: the refusal in words, or `None` when it is no
/// refusal (the broker is down, unreachable, restarting, or closed the connection): those
/// heal by retrying. A refusal is read from the AMQP reply code the broker closed the
/// channel or connection with, at the `step` it came ([`diagnosis::broker_refusal`]); two
/// have no reply code: too few channels on the connection (`allowed` of them, against the
/// `needed` the relay opens), and a TLS handshake that failed on the certificate.
pub fn refusal_of(
    error: &lapin::Error,
    step: BrokerStep,
    who: BrokerIdentity<'_>,
    allowed: u16,
    needed: u32,
) -> Option<BrokerRefusal> {
    match error.kind() {
        ErrorKind::ProtocolError(amqp) => {
            diagnosis::broker_refusal(step, amqp.get_id(), amqp.get_message().as_str(), who)
        }
        ErrorKind::ChannelsLimitReached => Some(diagnosis::channel_limit(allowed, needed)),
        ErrorKind::IOError(io) => {
            // rustls's refusal of the certificate reaches lapin as an I/O error; no reply
            // code exists for it, so its text is all there is.
            let text = io.to_string();
            let lower = text.to_lowercase();
            if lower.contains("certificate") || lower.contains("unknownissuer") {
                Some(diagnosis::tls_untrusted(&text))
            } else if lower.contains("invalidcontenttype") || lower.contains("corrupt message") {
                // rustls read a reply that is no TLS record: a plain AMQP port.
                Some(diagnosis::tls_not_spoken(&text))
            } else if step == BrokerStep::Connect
                && matches!(io.kind(), std::io::ErrorKind::InvalidData)
            {
                // The greeting was answered with something that is not AMQP.
                Some(diagnosis::not_amqp(&text))
            } else {
                None
            }
        }
        _ => None,
    }
}

/// The user and the vhost of an AMQP URL (the defaults, `guest` and `/`, when it names
/// none).
fn identity_of(url: &str) -> (String, String) {
    match url.parse::<AMQPUri>() {
        Ok(uri) => (uri.authority.userinfo.username, uri.vhost),
        Err(_) => ("guest".to_owned(), "/".to_owned()),
    }
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
            channels_needed: DEFAULT_IN_FLIGHT_BATCHES,
            trouble: std::sync::Mutex::new(Trouble::default()),
            refused: watch::Sender::new(None),
        }
    }

    /// The broker of `config`: its nodes, exchange and heartbeat, trusting the CA
    /// certificates of `amqp_ca_file` (read now) for `amqps://` nodes besides the system's.
    pub fn for_config(config: &RelayConfig) -> Result<Arc<Self>, RelayError> {
        let mut broker = Self::unshared(&config.amqp_url, &config.exchange, config.heartbeat);
        broker.channels_needed = config.in_flight_batches;
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

    /// The refusal standing, as it changes: `Some` while the broker refuses the relay (its
    /// login, vhost, exchange, permissions or limits), `None` once it accepts it again or
    /// when the trouble is only that it cannot be reached. `/readyz` follows it.
    pub fn refusals(&self) -> watch::Receiver<Option<BrokerRefusal>> {
        self.refused.subscribe()
    }

    /// What `error` at `step` on node `node` means ([`refusal_of`]), for that node's user
    /// and vhost.
    fn refusal_at(
        &self,
        node: usize,
        step: BrokerStep,
        error: &lapin::Error,
        allowed: u16,
    ) -> Option<BrokerRefusal> {
        let (user, vhost) = identity_of(self.node_url(node));
        let who = BrokerIdentity {
            user: &user,
            vhost: &vhost,
            exchange: &self.exchange,
        };
        refusal_of(error, step, who, allowed, self.channels_needed)
    }

    fn trouble(&self) -> std::sync::MutexGuard<'_, Trouble> {
        self.trouble
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records that the broker refuses the relay at `step`: said once (not again while the
    /// same refusal stands), and shown by [`Broker::refusals`].
    pub(super) fn note_refusal(&self, node: usize, step: BrokerStep, refusal: BrokerRefusal) {
        let mut trouble = self.trouble();
        trouble.unreachable.succeeded();
        if trouble.refused.as_ref().map(|(_, standing)| standing) == Some(&refusal) {
            return;
        }
        warn!(
            node = %self.masked(node),
            cause = %refusal.cause,
            remedy = %refusal.remedy,
            "the broker refuses the relay; retrying until it accepts it"
        );
        trouble.refused = Some((step, refusal.clone()));
        self.refused.send_replace(Some(refusal));
    }

    /// What a failed publish on the current connection means, if it is the broker refusing
    /// the relay's publishing itself (a missing write permission on the exchange).
    pub(super) fn publish_refusal(&self, error: &lapin::Error) -> Option<BrokerRefusal> {
        self.refusal_at(self.current_node(), BrokerStep::Publish, error, 0)
    }

    /// Records that the broker refused a publish ([`Broker::publish_refusal`]).
    pub(super) fn note_publish_refused(&self, refusal: BrokerRefusal) {
        self.note_refusal(self.current_node(), BrokerStep::Publish, refusal);
    }

    /// Records that the broker confirmed a publish: a refusal of publishing is over.
    pub(super) fn note_published(&self) {
        self.note_accepted(&[BrokerStep::Publish]);
    }

    /// Ends a refusal that came at one of `steps` (a channel was prepared: the login, the
    /// vhost and the exchange are fine; a message was confirmed: publishing is too), saying
    /// so once.
    pub(super) fn note_accepted(&self, steps: &[BrokerStep]) {
        let mut trouble = self.trouble();
        trouble.unreachable.succeeded();
        let ended = matches!(&trouble.refused, Some((step, _)) if steps.contains(step));
        if ended {
            if let Some((_, refusal)) = trouble.refused.take() {
                info!(was = %refusal.cause, "the broker accepts the relay again");
            }
            self.refused.send_replace(None);
        }
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

    /// Tries every node once, in order, until one accepts the relay: a connection, a
    /// channel on it with the exchange declared (then closed again). Fails only when none
    /// did and one of them refused the relay in a way no retry heals ([`refusal_of`],
    /// [`BrokerRefusal::heals`]): wrong credentials, a vhost that does not exist or is not
    /// the user's, an exchange of another type, a missing permission, too few channels, an
    /// untrusted certificate. Everything else (a node down, unreachable, a connection limit
    /// reached) is left to the reconnect loop. For a relay's start: retrying such a refusal
    /// forever would only hide it. (Write permission on the exchange shows only when
    /// publishing: a refusal then is retried, and shown by [`Broker::refusals`].)
    pub async fn first_contact(&self) -> Result<(), Unhealable> {
        let mut refused: Vec<(usize, BrokerRefusal)> = Vec::new();
        for node in 0..self.nodes.len() {
            match self.try_node(node).await {
                Ok(()) => {
                    self.next_node.store(node, Ordering::Relaxed);
                    // Other nodes' refusals matter once the relay fails over to them.
                    for (node, refusal) in refused {
                        warn!(
                            node = %self.masked(node),
                            cause = %refusal.cause,
                            remedy = %refusal.remedy,
                            "a broker node refuses the relay; it uses the other nodes"
                        );
                    }
                    return Ok(());
                }
                Err((step, error, allowed)) => match self.refusal_at(node, step, &error, allowed) {
                    Some(refusal) if refusal.heals() => {
                        self.note_refusal(node, step, refusal);
                    }
                    Some(refusal) => refused.push((node, refusal)),
                    None => {
                        let text = redact(&error.to_string(), &self.secrets);
                        warn!(node = %self.masked(node), error = %text, "broker unreachable");
                    }
                },
            }
        }
        match refused.into_iter().next() {
            None => Ok(()),
            Some((node, refusal)) => Err(Unhealable {
                node: self.masked(node),
                refusal,
            }),
        }
    }

    /// One look at node `node`: connects, checks the channels it allows, declares the
    /// exchange on a channel, and closes again. The error says at which step it failed, and
    /// how many channels the connection allowed.
    async fn try_node(&self, node: usize) -> Result<(), (BrokerStep, lapin::Error, u16)> {
        let connection = self
            .connect_to(node, false)
            .await
            .map_err(|error| (BrokerStep::Connect, error, 0))?;
        let allowed = connection.configuration().channel_max();
        let checked = async {
            if allowed != 0 && u32::from(allowed) < self.channels_needed {
                return Err(lapin::Error::from(ErrorKind::ChannelsLimitReached));
            }
            let channel = connection.create_channel().await?;
            topology::declare_exchange(&channel, &self.exchange).await
        };
        let checked = tokio::time::timeout(CHANNEL_SETUP_TIMEOUT, checked)
            .await
            .unwrap_or_else(|_| Err(timed_out("opening a channel timed out")));
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            connection.close(200, "first contact".into()),
        )
        .await;
        checked.map_err(|error| (BrokerStep::Declare, error, allowed))
    }

    /// One connection attempt to node `node`; with `tcp_retries`, lapin retries a failed
    /// TCP connect or TLS handshake itself ([`LAPIN_RETRIES`] times, about 3 s in all). A
    /// lost connection is not recovered by lapin: the relay replaces it.
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
        // No lapin auto-recovery: the relay reconnects itself (a lost connection is reset
        // and replaced, its batches released or retried). With it, every connect the
        // broker refused at `connection.open` (a vhost deleted under a running relay) left
        // its I/O thread and socket recovering in the background, where nothing can stop
        // them: a thread more per attempt, for minutes. lapin still retries a failed TCP
        // connect or TLS handshake on the same node a few times ([`LAPIN_RETRIES`], about
        // 3 s); with other nodes to go to, or to learn at start what each node answers, it
        // fails at once (the relay's own loop paces the attempts).
        let retries = if tcp_retries { LAPIN_RETRIES } else { 0 };
        let properties = ConnectionProperties::default()
            .with_connection_name("outbox-relay".into())
            .configure_backoff(|backoff| {
                backoff
                    .with_min_delay(Duration::from_millis(200))
                    .with_max_delay(Duration::from_secs(2))
                    .with_max_times(retries)
            });
        let builder = DefaultConnectionBuilder::new()?
            .with_uri(uri)
            .with_properties(properties)
            .with_tls_config(self.tls.clone());
        tokio::time::timeout(Duration::from_secs(15), builder.connect())
            .await
            .map_err(|_| timed_out("connect timed out"))?
    }

    /// The node of the current (or last) connection.
    fn current_node(&self) -> usize {
        self.link
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .node
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
            let Some((connection, generation)) = self.usable_connection() else {
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
                        self.trouble().unreachable.succeeded();
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
                        let refusal = self.refusal_at(node, BrokerStep::Connect, &error, 0);
                        let step = BrokerStep::Connect;
                        if !self
                            .pause_after(node, step, &error, refusal, &mut delays, cancel)
                            .await
                        {
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
                    self.note_accepted(&[BrokerStep::Connect, BrokerStep::Declare]);
                    return Some(OpenChannel {
                        channel,
                        frame_max: connection.configuration().frame_max() as usize,
                        connection,
                        generation,
                    });
                }
                Err(error) => {
                    // A connection that cannot open a channel is no use: start afresh. One
                    // that is still up and only refused the channel (an exchange of another
                    // type, a missing permission) is kept, and the channel tried again
                    // after the pause.
                    let step = BrokerStep::Declare;
                    let allowed = connection.configuration().channel_max();
                    let refusal = self.refusal_at(self.current_node(), step, &error, allowed);
                    let node = if refusal.is_some() && connection.status().connected() {
                        self.current_node()
                    } else {
                        self.reset(generation)
                    };
                    if !self
                        .pause_after(node, step, &error, refusal, &mut delays, cancel)
                        .await
                    {
                        return None;
                    }
                }
            }
        }
    }

    /// The current connection if it is up; one that is not is dropped (lapin does not
    /// recover it: the relay connects afresh, see `connect_to`).
    fn usable_connection(&self) -> Option<(Arc<Connection>, u64)> {
        let (connection, generation) = self.current()?;
        if connection.status().connected() {
            return Some((connection, generation));
        }
        self.reset(generation);
        None
    }

    /// Reports a failed attempt at `step` on `node` (`refusal`: what it means, if it is a
    /// refusal) — a refusal once per change, an unreachable broker once and then
    /// summarised — and waits the next backoff delay; `false` once `cancel` fires.
    async fn pause_after(
        &self,
        node: usize,
        step: BrokerStep,
        error: &lapin::Error,
        refusal: Option<BrokerRefusal>,
        delays: &mut impl Iterator<Item = Duration>,
        cancel: &CancellationToken,
    ) -> bool {
        let delay = delays.next().unwrap_or(BackoffPolicy::RECONNECT.cap);
        match refusal {
            Some(refusal) => self.note_refusal(node, step, refusal),
            None => self.note_unreachable(node, error, delay),
        }
        sleep_unless_cancelled(delay, cancel).await
    }

    /// Says that `node` could not be reached (`error`), unless it said the same moments
    /// ago: repeats are summarised every [`SUMMARY_INTERVAL`]. A refusal that stood is over
    /// (the broker no longer answers at all).
    ///
    /// [`SUMMARY_INTERVAL`]: crate::foundation::logging::SUMMARY_INTERVAL
    fn note_unreachable(&self, node: usize, error: &lapin::Error, delay: Duration) {
        let error = redact(&error.to_string(), &self.secrets);
        let mut trouble = self.trouble();
        if trouble.refused.take().is_some() {
            self.refused.send_replace(None);
        }
        let several = self.nodes.len() > 1;
        let key = if several {
            format!("{node}: {error}")
        } else {
            error.clone()
        };
        let report = trouble.unreachable.failed(&key, Instant::now());
        drop(trouble);
        let next = self.node_due();
        match (report, several) {
            (Report::Quiet, _) => {}
            (Report::New, true) => warn!(
                node = %self.masked(node),
                %error,
                next_node = %self.masked(next),
                retry_in = %format_args!("{delay:.1?}"),
                "broker node unreachable; trying the next node"
            ),
            (Report::New, false) => warn!(
                node = %self.masked(0),
                %error,
                retry_in = %format_args!("{delay:.1?}"),
                "broker unreachable"
            ),
            (summary @ Report::Summary { .. }, _) => warn!(
                node = %self.masked(node),
                %error,
                "broker unreachable: connecting {}; retrying",
                summary.summary().unwrap_or_default()
            ),
        }
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
