//! `TCP_NODELAY` on Postgres connections, which sqlx 0.9.0 no longer sets, and TCP
//! keepalive with a user timeout, which sqlx never set.
//!
//! Without it, a statement written in more than one segment waits for the server's delayed
//! ACK (about 40 ms on Linux) before its last segment leaves: a batch of event ids, a large
//! payload, or a pipelined `Parse`/`Bind`/`Execute` can take 40 ms instead of 0.2 ms.
//! sqlx set the option until 0.8 and sets it again upstream (transact-rs/sqlx#4336,
//! merged after 0.9.0); **remove this module once the workspace requires an sqlx release
//! that contains that change**.
//!
//! **Keepalive and `TCP_USER_TIMEOUT`** (Linux): a connection whose network path is lost
//! without a reset (a partition, a peer host that died) would otherwise stay open for about
//! 15 minutes of retransmissions, or for ever while idle. With [`KEEPALIVE_IDLE`],
//! [`KEEPALIVE_INTERVAL`] × [`KEEPALIVE_PROBES`] and [`USER_TIMEOUT`], the kernel fails it
//! within about half a minute, and the statement waiting on it gets an error. This does not
//! help when something on the path still acknowledges segments (a proxy or a load balancer
//! that lost its upstream): only a client-side deadline does (the relay has one on each of
//! its database steps). These options stay when the `TCP_NODELAY` part goes.
//!
//! sqlx offers no hook on the socket it opens, so [`pool_options`] installs an
//! `after_connect` callback that finds the process's TCP sockets connected to the
//! database's address and sets the option on them. Setting it twice is harmless, so a
//! socket of another pool to the same server gets it too.
//!
//! ```no_run
//! # async fn demo() -> Result<(), sqlx::Error> {
//! let connect: sqlx::postgres::PgConnectOptions = "postgres://app@db:5432/app".parse()?;
//! let pool = outbox_core::tcp_nodelay::pool_options(&connect)
//!     .max_connections(8)
//!     .connect_with(connect)
//!     .await?;
//! # let _ = pool; Ok(()) }
//! ```

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tracing::debug;

/// Idle time before the first keepalive probe.
pub const KEEPALIVE_IDLE: Duration = Duration::from_secs(10);

/// Time between keepalive probes.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);

/// Unanswered keepalive probes before the kernel fails the connection.
pub const KEEPALIVE_PROBES: u32 = 3;

/// How long sent data may stay unacknowledged before the kernel fails the connection
/// (`TCP_USER_TIMEOUT`, Linux).
pub const USER_TIMEOUT: Duration = Duration::from_secs(30);

/// Pool options whose every new connection gets `TCP_NODELAY`, keepalive and a user
/// timeout (see the module's doc).
///
/// This sets the pool's `after_connect`; a caller that needs its own callback calls
/// [`set_for_peer`] from it instead.
pub fn pool_options(connect: &PgConnectOptions) -> PgPoolOptions {
    let host = connect.get_host().to_owned();
    let port = connect.get_port();
    let unix_socket = connect.get_socket().is_some() || host.starts_with('/');
    PgPoolOptions::new().after_connect(move |_conn, _meta| {
        let host = host.clone();
        Box::pin(async move {
            if !unix_socket {
                // A failure costs latency, never the connection.
                if let Err(error) = set_for_peer(&host, port).await {
                    debug!(%error, "could not set TCP_NODELAY on the database connection");
                }
            }
            Ok(())
        })
    })
}

/// Sets `TCP_NODELAY`, keepalive and the user timeout (see the module's doc) on every TCP
/// socket of this process connected to `host:port`; returns how many it found.
/// Unix-domain sockets need no such option.
pub async fn set_for_peer(host: &str, port: u16) -> std::io::Result<usize> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let peers: HashSet<SocketAddr> = tokio::net::lookup_host((host, port)).await?.collect();
    set_on_sockets_to(&peers)
}

fn set_on_sockets_to(peers: &HashSet<SocketAddr>) -> std::io::Result<usize> {
    let mut found = 0;
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(KEEPALIVE_INTERVAL)
        .with_retries(KEEPALIVE_PROBES);
    for_each_socket_to(peers, |socket| {
        if socket.set_tcp_nodelay(true).is_ok() {
            found += 1;
        }
        // Best effort, like the above: a failure costs the early detection, never the
        // connection.
        let _ = socket.set_tcp_keepalive(&keepalive);
        #[cfg(any(target_os = "linux", target_os = "android"))]
        let _ = socket.set_tcp_user_timeout(Some(USER_TIMEOUT));
    })?;
    Ok(found)
}

/// Calls `visit` with every TCP socket of this process whose peer is in `peers`.
#[cfg(unix)]
fn for_each_socket_to(
    peers: &HashSet<SocketAddr>,
    mut visit: impl FnMut(socket2::SockRef<'_>),
) -> std::io::Result<()> {
    use std::os::fd::{BorrowedFd, RawFd};

    let listing = std::fs::read_dir("/proc/self/fd").or_else(|_| std::fs::read_dir("/dev/fd"))?;
    for entry in listing.flatten() {
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<RawFd>().ok())
        else {
            continue;
        };
        // SAFETY: the descriptor is only borrowed for `getpeername`, `getsockopt` and
        // `setsockopt`, which cannot touch memory the process owns. Should another thread
        // close it meanwhile, they fail with EBADF; should its number be reused, the peer
        // check below sees the new socket, and the option only changes when that one goes
        // to the database too. Nothing is read, written or closed through it.
        #[allow(unsafe_code)]
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        let socket = socket2::SockRef::from(&borrowed);
        if socket
            .peer_addr()
            .ok()
            .and_then(|peer| peer.as_socket())
            .is_some_and(|peer| peers.contains(&peer))
        {
            visit(socket);
        }
    }
    Ok(())
}

#[cfg(not(unix))]
fn for_each_socket_to(
    _peers: &HashSet<SocketAddr>,
    _visit: impl FnMut(socket2::SockRef<'_>),
) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sets_the_option_on_sockets_to_the_peer_only() -> std::io::Result<()> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let other = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let to_peer = tokio::net::TcpStream::connect(listener.local_addr()?).await?;
        let to_other = tokio::net::TcpStream::connect(other.local_addr()?).await?;
        to_peer.set_nodelay(false)?;
        to_other.set_nodelay(false)?;

        let port = listener.local_addr()?.port();
        let found = set_for_peer("127.0.0.1", port).await?;

        assert_eq!(found, 1);
        assert!(to_peer.nodelay()?);
        assert!(!to_other.nodelay()?);
        let socket = socket2::SockRef::from(&to_peer);
        assert!(socket.keepalive()?);
        assert_eq!(socket.tcp_keepalive_time()?, KEEPALIVE_IDLE);
        assert_eq!(socket.tcp_keepalive_interval()?, KEEPALIVE_INTERVAL);
        assert_eq!(socket.tcp_keepalive_retries()?, KEEPALIVE_PROBES);
        #[cfg(any(target_os = "linux", target_os = "android"))]
        assert_eq!(socket.tcp_user_timeout()?, Some(USER_TIMEOUT));
        assert!(!socket2::SockRef::from(&to_other).keepalive()?);
        Ok(())
    }

    /// Against the real server: every connection of a pool made by [`pool_options`] has
    /// the option, and a plain sqlx pool's connections (0.9.0) do not.
    #[tokio::test]
    async fn pool_connections_get_the_option() -> Result<(), Box<dyn std::error::Error>> {
        let url = std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
        let connect: PgConnectOptions = url.parse()?;
        if connect.get_socket().is_some() || connect.get_host().starts_with('/') {
            return Ok(()); // a Unix-domain socket: nothing to set
        }
        let peers: HashSet<SocketAddr> =
            tokio::net::lookup_host((connect.get_host(), connect.get_port()))
                .await?
                .collect();
        let nodelay_of_all = || -> std::io::Result<Vec<bool>> {
            let mut flags = Vec::new();
            for_each_socket_to(&peers, |socket| {
                flags.push(socket.tcp_nodelay().unwrap_or(false));
            })?;
            Ok(flags)
        };

        let plain = PgPoolOptions::new()
            .max_connections(2)
            .connect_with(connect.clone())
            .await?;
        let held = (plain.acquire().await?, plain.acquire().await?);
        let flags = nodelay_of_all()?;
        assert_eq!(flags.len(), 2, "{flags:?}");
        // Documents the sqlx 0.9.0 behaviour this module works around; when it fails, sqlx
        // sets the option again and the module can go (see the module's doc).
        assert!(
            flags.iter().all(|on| !on),
            "sqlx sets TCP_NODELAY itself now: {flags:?}"
        );
        drop(held);
        plain.close().await;

        let tuned = pool_options(&connect)
            .max_connections(3)
            .connect_with(connect)
            .await?;
        let _connections = (
            tuned.acquire().await?,
            tuned.acquire().await?,
            tuned.acquire().await?,
        );
        let flags = nodelay_of_all()?;
        assert!(flags.len() >= 3 && flags.iter().all(|on| *on), "{flags:?}");
        Ok(())
    }
}
