//! A TCP proxy for fault tests: it stands between a client (the relay) and a server
//! (RabbitMQ, or Postgres) and fails the link on demand, so a test can take a server away
//! from the relay without touching the server, which other tests share.
//!
//! - [`Proxy::blackhole`] (also [`Proxy::freeze`]) forwards nothing more in either
//!   direction and leaves new connections unanswered, without closing anything: a server
//!   that stopped answering, or a network partition. The client's kernel still sees its
//!   segments acknowledged (by the proxy), so TCP keepalive cannot notice it: only the
//!   client's own deadlines and heartbeats can. [`Proxy::restore`] (also [`Proxy::thaw`])
//!   forwards again, what was held included, as a healed partition would.
//! - [`Proxy::set_latency`] delays every chunk by that much in each direction (order and
//!   throughput kept): a slow network.
//! - [`Proxy::reset`] aborts every connection forwarded so far with a TCP RST on both sides
//!   (`SO_LINGER` 0, then close) and keeps listening: a middlebox or a server that dropped
//!   its connections.
//! - [`Proxy::cut`] stops listening and closes every forwarded connection for good (a server
//!   that went away). Dropping the proxy does the same.
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! use integration_tests::proxy::Proxy;
//! let proxy = Proxy::to_broker().await?;
//! let url = proxy.amqp_url()?; // give this to the relay instead of `amqp_url()`
//! proxy.blackhole();
//! proxy.restore();
//! proxy.set_latency(std::time::Duration::from_millis(100));
//! proxy.reset();
//! # Ok(())
//! # }
//! ```

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use std::{net::SocketAddr, sync::PoisonError};

use anyhow::{Context, Result};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// What the proxy does to the bytes it forwards right now.
#[derive(Debug, Clone, Copy, Default)]
struct Faults {
    /// Hold everything (a blackhole).
    frozen: bool,
    /// Added to every chunk, per direction.
    latency: Duration,
}

/// A loopback TCP proxy to one upstream address (see the module documentation).
pub struct Proxy {
    addr: SocketAddr,
    faults: watch::Sender<Faults>,
    /// Cancelled by [`Proxy::reset`] and replaced: every link started before holds it.
    reset: Arc<Mutex<CancellationToken>>,
    cut: CancellationToken,
    resets: Arc<AtomicUsize>,
    accepted: Arc<AtomicUsize>,
    /// Bytes read from clients so far, forwarded or held.
    from_clients: Arc<AtomicUsize>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards every connection to `upstream`
    /// (`host:port`), connecting when the client connects.
    pub async fn start(upstream: impl Into<String>) -> Result<Proxy> {
        let upstream = upstream.into();
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (faults, _) = watch::channel(Faults::default());
        let cut = CancellationToken::new();
        let reset = Arc::new(Mutex::new(CancellationToken::new()));
        let resets = Arc::new(AtomicUsize::new(0));
        let accepted = Arc::new(AtomicUsize::new(0));
        let from_clients = Arc::new(AtomicUsize::new(0));
        tokio::spawn(accept(
            listener,
            upstream,
            faults.subscribe(),
            reset.clone(),
            cut.clone(),
            [resets.clone(), accepted.clone(), from_clients.clone()],
        ));
        Ok(Proxy {
            addr,
            faults,
            reset,
            cut,
            resets,
            accepted,
            from_clients,
        })
    }

    /// A proxy to the broker of [`crate::amqp_url`].
    pub async fn to_broker() -> Result<Proxy> {
        Proxy::to_url_of(&crate::amqp_url(), 5672).await
    }

    /// A proxy to the database server of [`crate::database_url`].
    pub async fn to_database() -> Result<Proxy> {
        Proxy::to_url_of(&crate::database_url(), 5432).await
    }

    /// A proxy to the host and port of `url` (`default_port` when it names none).
    pub async fn to_url_of(url: &str, default_port: u16) -> Result<Proxy> {
        let url = url::Url::parse(url).context("a server URL")?;
        let host = url.host_str().context("the URL has no host")?;
        Proxy::start(format!("{host}:{}", url.port().unwrap_or(default_port))).await
    }

    /// Where the proxy listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `url` with its host and port replaced by the proxy's (credentials, path and query
    /// kept).
    pub fn redirect(&self, url: &str) -> Result<String> {
        let mut url = url::Url::parse(url)?;
        url.set_ip_host(self.addr.ip())
            .map_err(|()| anyhow::anyhow!("{url} cannot take a host"))?;
        url.set_port(Some(self.addr.port()))
            .map_err(|()| anyhow::anyhow!("{url} cannot take a port"))?;
        Ok(url.to_string())
    }

    /// [`crate::amqp_url`] through the proxy.
    pub fn amqp_url(&self) -> Result<String> {
        self.redirect(&crate::amqp_url())
    }

    /// Stops forwarding, in both directions, and holds new connections unanswered; nothing
    /// is closed (see the module documentation).
    pub fn blackhole(&self) {
        self.faults.send_modify(|faults| faults.frozen = true);
    }

    /// Forwards again, starting with what was held during [`Proxy::blackhole`].
    pub fn restore(&self) {
        self.faults.send_modify(|faults| faults.frozen = false);
    }

    /// The same as [`Proxy::blackhole`].
    pub fn freeze(&self) {
        self.blackhole();
    }

    /// The same as [`Proxy::restore`].
    pub fn thaw(&self) {
        self.restore();
    }

    /// Delays every chunk read from now on by `latency` before it is forwarded, in each
    /// direction (so a round trip gains twice as much). `Duration::ZERO` ends it.
    pub fn set_latency(&self, latency: Duration) {
        self.faults.send_modify(|faults| faults.latency = latency);
    }

    /// Aborts every connection forwarded so far with a TCP RST to the client and to the
    /// server (`SO_LINGER` 0, then close), dropping whatever was in flight; new connections
    /// are forwarded as usual.
    pub fn reset(&self) {
        let fresh = CancellationToken::new();
        let old = std::mem::replace(
            &mut *self.reset.lock().unwrap_or_else(PoisonError::into_inner),
            fresh,
        );
        old.cancel();
    }

    /// How many connections [`Proxy::reset`] has aborted so far.
    pub fn connections_reset(&self) -> usize {
        self.resets.load(Ordering::Relaxed)
    }

    /// How many connections clients have opened through the proxy so far (a test sees a
    /// client reconnect when this grows).
    pub fn connections_accepted(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
    }

    /// How many bytes clients have sent through the proxy so far, those held while frozen
    /// included: a test sees a client write (publish, query) into a silent server when
    /// this grows by more than a heartbeat's few bytes.
    pub fn bytes_from_clients(&self) -> usize {
        self.from_clients.load(Ordering::Relaxed)
    }

    /// Stops listening and closes every connection it forwarded, for good.
    pub fn cut(&self) {
        self.cut.cancel();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
    }
}

async fn accept(
    listener: TcpListener,
    upstream: String,
    faults: watch::Receiver<Faults>,
    reset: Arc<Mutex<CancellationToken>>,
    cut: CancellationToken,
    [resets, accepted, from_clients]: [Arc<AtomicUsize>; 3],
) {
    loop {
        let client = tokio::select! {
            incoming = listener.accept() => match incoming {
                Ok((client, _)) => client,
                Err(_) => continue,
            },
            () = cut.cancelled() => return,
        };
        accepted.fetch_add(1, Ordering::Relaxed);
        let reset_token = reset.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let link = forward(
            client,
            upstream.clone(),
            faults.clone(),
            reset_token,
            resets.clone(),
            from_clients.clone(),
        );
        tokio::spawn(cut.clone().run_until_cancelled_owned(link));
    }
}

/// Connects to `upstream` (once not frozen) and forwards both ways until either side
/// closes, or aborts both connections when `reset` fires.
async fn forward(
    mut client: TcpStream,
    upstream: String,
    mut faults: watch::Receiver<Faults>,
    reset: CancellationToken,
    resets: Arc<AtomicUsize>,
    from_clients: Arc<AtomicUsize>,
) {
    let connected = tokio::select! {
        ready = faults.wait_for(|faults| !faults.frozen) => ready.is_ok(),
        () = reset.cancelled() => false,
    };
    if !connected {
        abort(&client);
        return;
    }
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = server.set_nodelay(true);
    let _ = client.set_nodelay(true);
    let aborted = {
        let (client_read, client_write) = client.split();
        let (server_read, server_write) = server.split();
        let both = async {
            tokio::join!(
                pump(
                    client_read,
                    server_write,
                    faults.clone(),
                    Some(from_clients)
                ),
                pump(server_read, client_write, faults.clone(), None),
            )
        };
        tokio::select! {
            _ = both => false,
            () = reset.cancelled() => true,
        }
    };
    if aborted {
        resets.fetch_add(1, Ordering::Relaxed);
        abort(&client);
        abort(&server);
    }
}

/// Makes the close of `stream` (when it is dropped) a TCP RST.
fn abort(stream: &TcpStream) {
    let _ = stream.set_zero_linger();
}

/// Copies `from` to `to`: each chunk is due `latency` after it was read, and held while
/// frozen. Reading goes on meanwhile (up to a bound), as a network would buffer. Bytes read
/// are added to `counted`, if given.
async fn pump(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    faults: watch::Receiver<Faults>,
    counted: Option<Arc<AtomicUsize>>,
) {
    let (chunks, mut due) = mpsc::channel::<(Instant, Vec<u8>)>(256);
    let read = {
        let faults = faults.clone();
        async move {
            let mut buffer = vec![0u8; 64 * 1024];
            loop {
                let n = match from.read(&mut buffer).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                if let Some(counted) = &counted {
                    counted.fetch_add(n, Ordering::Relaxed);
                }
                let at = Instant::now() + faults.borrow().latency;
                let chunk = buffer.get(..n).unwrap_or_default().to_vec();
                if chunks.send((at, chunk)).await.is_err() {
                    break;
                }
            }
            // Dropping `chunks` tells the writer the stream ended.
        }
    };
    let write = async move {
        let mut faults = faults;
        while let Some((at, chunk)) = due.recv().await {
            tokio::time::sleep_until(at).await;
            if faults.wait_for(|faults| !faults.frozen).await.is_err() {
                return;
            }
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        // The close is held too: across a partition the other side never learns of it.
        if faults.wait_for(|faults| !faults.frozen).await.is_err() {
            return;
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(read, write);
}
