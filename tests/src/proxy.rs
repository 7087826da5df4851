//! A TCP proxy for fault tests: it stands between a client (the relay) and a server
//! (RabbitMQ, or Postgres) and fails the link on demand, so a test can take a server away
//! from the relay without touching the server, which other tests share.
//!
//! - [`Proxy::freeze`] forwards nothing more in either direction and leaves new
//!   connections unanswered (a server that stopped answering, or a network partition);
//!   [`Proxy::thaw`] forwards again, what was held included.
//! - [`Proxy::cut`] stops listening and closes every forwarded connection for good (a server
//!   that went away). Dropping the proxy does the same.
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! use integration_tests::proxy::Proxy;
//! let proxy = Proxy::to_broker().await?;
//! let url = proxy.amqp_url()?; // give this to the relay instead of `amqp_url()`
//! proxy.freeze();
//! # Ok(())
//! # }
//! ```

use std::net::SocketAddr;

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// A loopback TCP proxy to one upstream address (see the module documentation).
pub struct Proxy {
    addr: SocketAddr,
    frozen: watch::Sender<bool>,
    cut: CancellationToken,
}

impl Proxy {
    /// Listens on a free loopback port and forwards every connection to `upstream`
    /// (`host:port`), connecting when the client connects.
    pub async fn start(upstream: impl Into<String>) -> Result<Proxy> {
        let upstream = upstream.into();
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (frozen, _) = watch::channel(false);
        let cut = CancellationToken::new();
        tokio::spawn(accept(listener, upstream, frozen.subscribe(), cut.clone()));
        Ok(Proxy { addr, frozen, cut })
    }

    /// A proxy to the broker of [`crate::amqp_url`].
    pub async fn to_broker() -> Result<Proxy> {
        let url = url::Url::parse(&crate::amqp_url()).context("AMQP_URL")?;
        let host = url.host_str().context("AMQP_URL has no host")?;
        Proxy::start(format!("{host}:{}", url.port().unwrap_or(5672))).await
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

    /// Stops forwarding, in both directions, and holds new connections unanswered.
    pub fn freeze(&self) {
        self.frozen.send_replace(true);
    }

    /// Forwards again, starting with what was held while frozen.
    pub fn thaw(&self) {
        self.frozen.send_replace(false);
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
    frozen: watch::Receiver<bool>,
    cut: CancellationToken,
) {
    loop {
        let client = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((client, _)) => client,
                Err(_) => continue,
            },
            () = cut.cancelled() => return,
        };
        let link = forward(client, upstream.clone(), frozen.clone());
        tokio::spawn(cut.clone().run_until_cancelled_owned(link));
    }
}

/// Connects to `upstream` (once not frozen) and forwards both ways until either side
/// closes.
async fn forward(client: TcpStream, upstream: String, mut frozen: watch::Receiver<bool>) {
    if frozen.wait_for(|frozen| !frozen).await.is_err() {
        return;
    }
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    tokio::join!(
        pump(client_read, server_write, frozen.clone()),
        pump(server_read, client_write, frozen),
    );
}

/// Copies `from` to `to`, holding what it read while frozen.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut frozen: watch::Receiver<bool>) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if frozen.wait_for(|frozen| !frozen).await.is_err() {
            break;
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}
