//! TCP keepalive and `TCP_USER_TIMEOUT` on the relay's database connections: what sqlx
//! (0.9.1) does not set, has no option for, and gives no hook to set.
//!
//! A connection whose network path is lost without a reset (a partition, a peer host that
//! died) would otherwise stay open for about 15 minutes of retransmissions, or for ever
//! while idle — a LISTEN connection is idle most of the time. With [`KEEPALIVE_IDLE`],
//! [`KEEPALIVE_INTERVAL`] × [`KEEPALIVE_PROBES`] and [`USER_TIMEOUT`] (Linux) the kernel
//! fails it within about half a minute, and whatever waits on it gets an error. This does
//! not help when something on the path still acknowledges segments (a proxy or a load
//! balancer that lost its upstream): only a client-side deadline does, and the relay has
//! one on each of its database steps ([`super::db::within_deadline`]).
//!
//! `TCP_NODELAY` is not set here: sqlx sets it itself since 0.9.1 (transact-rs/sqlx#4336;
//! a test below checks a plain sqlx pool's sockets).
//!
//! **How, and the workspace's one `unsafe`.** sqlx opens the socket itself and keeps it
//! private, and the server-side `tcp_keepalives_*` settings guard only the server's end.
//! So [`pool_options`] installs an `after_connect` callback that lists this process's
//! descriptors (`/proc/self/fd`), borrows each by number (the `unsafe`: a descriptor number
//! cannot be borrowed otherwise) and, on every TCP socket connected to the database's
//! address whose keepalive is still off — the new connection's —, sets the options. A
//! socket that already has keepalive (set here before, or by its owner, with its own
//! timings) is left as it is. Remove this module when sqlx offers the options.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

/// Idle time before the first keepalive probe.
pub(crate) const KEEPALIVE_IDLE: Duration = Duration::from_secs(10);

/// Time between keepalive probes.
pub(crate) const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);

/// Unanswered keepalive probes before the kernel fails the connection.
pub(crate) const KEEPALIVE_PROBES: u32 = 3;

/// How long sent data may stay unacknowledged before the kernel fails the connection
/// (`TCP_USER_TIMEOUT`, Linux).
pub(crate) const USER_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the connections of `connect` (parsed from `url`) go: its Unix-domain socket, or
/// the TCP peer to look for.
#[derive(Debug, Clone)]
enum Peer {
    Local,
    /// sqlx connects to `hostaddr` when the URL (or `PGHOSTADDR`) gives one, else to what
    /// `host` resolves to.
    Tcp {
        host: String,
        hostaddr: Option<IpAddr>,
        port: u16,
    },
}

impl Peer {
    fn of(url: &str, connect: &PgConnectOptions) -> Peer {
        let host = connect.get_host();
        if connect.get_socket().is_some() || host.starts_with('/') {
            return Peer::Local;
        }
        let from_url = url::Url::parse(url).ok().and_then(|url| {
            url.query_pairs()
                .find(|(key, _)| key == "hostaddr")
                .map(|(_, value)| value.into_owned())
        });
        let hostaddr = from_url
            .or_else(|| std::env::var("PGHOSTADDR").ok())
            .and_then(|addr| addr.parse().ok());
        Peer::Tcp {
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            hostaddr,
            port: connect.get_port(),
        }
    }

    async fn addresses(&self) -> std::io::Result<HashSet<SocketAddr>> {
        match self {
            Peer::Local => Ok(HashSet::new()),
            Peer::Tcp {
                hostaddr: Some(addr),
                port,
                ..
            } => Ok(HashSet::from([SocketAddr::new(*addr, *port)])),
            Peer::Tcp { host, port, .. } => Ok(tokio::net::lookup_host((host.as_str(), *port))
                .await?
                .collect()),
        }
    }
}

/// Pool options whose every new connection gets keepalive and a user timeout (see the
/// module's doc); `connect` is `url` parsed.
pub(crate) fn pool_options(url: &str, connect: &PgConnectOptions) -> PgPoolOptions {
    let peer = Peer::of(url, connect);
    PgPoolOptions::new().after_connect(move |_conn, _meta| {
        let peer = peer.clone();
        Box::pin(async move {
            // A failure costs the early detection, never the connection.
            if let Err(error) = set_for_peer(&peer).await {
                tracing::debug!(%error, "could not set TCP keepalive on the database connection");
            }
            Ok(())
        })
    })
}

/// Sets keepalive and the user timeout on every TCP socket of this process connected to
/// `peer` whose keepalive is off; returns how many it set.
async fn set_for_peer(peer: &Peer) -> std::io::Result<usize> {
    let peers = peer.addresses().await?;
    if peers.is_empty() {
        return Ok(0);
    }
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(KEEPALIVE_INTERVAL)
        .with_retries(KEEPALIVE_PROBES);
    let mut set = 0;
    for_each_socket_to(&peers, |socket| {
        if socket.keepalive().unwrap_or(true) {
            return;
        }
        if socket.set_tcp_keepalive(&keepalive).is_ok() {
            set += 1;
        }
        #[cfg(any(target_os = "linux", target_os = "android"))]
        let _ = socket.set_tcp_user_timeout(Some(USER_TIMEOUT));
    })?;
    Ok(set)
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
        // SAFETY (the workspace's one `unsafe`, stated in its `Cargo.toml`): the descriptor
        // is only borrowed for `getpeername`, `getsockopt` and `setsockopt`, which cannot
        // touch memory the process owns. Should another thread close it meanwhile, they
        // fail with EBADF; should its number be reused, the peer check below sees the new
        // socket, and the options only change when that one goes to the database too.
        // Nothing is read, written or closed through it.
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
    use sqlx::PgConnection;

    fn peer(listener: &tokio::net::TcpListener) -> std::io::Result<Peer> {
        Ok(Peer::Tcp {
            host: "127.0.0.1".to_owned(),
            hostaddr: None,
            port: listener.local_addr()?.port(),
        })
    }

    #[tokio::test]
    async fn sets_the_options_on_new_sockets_to_the_peer_only() -> std::io::Result<()> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let other = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let to_peer = tokio::net::TcpStream::connect(listener.local_addr()?).await?;
        let to_other = tokio::net::TcpStream::connect(other.local_addr()?).await?;
        // A socket to the peer whose owner chose its own keepalive keeps it.
        let tuned = tokio::net::TcpStream::connect(listener.local_addr()?).await?;
        let own = socket2::TcpKeepalive::new().with_time(Duration::from_secs(600));
        socket2::SockRef::from(&tuned).set_tcp_keepalive(&own)?;

        assert_eq!(set_for_peer(&peer(&listener)?).await?, 1);
        let socket = socket2::SockRef::from(&to_peer);
        assert!(socket.keepalive()?);
        assert_eq!(socket.tcp_keepalive_time()?, KEEPALIVE_IDLE);
        assert_eq!(socket.tcp_keepalive_interval()?, KEEPALIVE_INTERVAL);
        assert_eq!(socket.tcp_keepalive_retries()?, KEEPALIVE_PROBES);
        #[cfg(any(target_os = "linux", target_os = "android"))]
        assert_eq!(socket.tcp_user_timeout()?, Some(USER_TIMEOUT));
        assert!(!socket2::SockRef::from(&to_other).keepalive()?);
        let tuned = socket2::SockRef::from(&tuned);
        assert_eq!(tuned.tcp_keepalive_time()?, Duration::from_secs(600));
        #[cfg(any(target_os = "linux", target_os = "android"))]
        assert_eq!(tuned.tcp_user_timeout()?, None);

        // Once set, a socket is not visited again.
        assert_eq!(set_for_peer(&peer(&listener)?).await?, 0);
        Ok(())
    }

    #[test]
    fn the_peer_is_the_hostaddr_when_the_url_gives_one() {
        let url = "postgres://app@db.internal:6432/app?hostaddr=10.1.2.3";
        let Ok(connect) = url.parse::<PgConnectOptions>() else {
            panic!("the URL parses");
        };
        let Peer::Tcp { hostaddr, port, .. } = Peer::of(url, &connect) else {
            panic!("a TCP peer");
        };
        assert_eq!((hostaddr, port), (Some(IpAddr::from([10, 1, 2, 3])), 6432));

        let url = "postgres://app@%2Fvar%2Frun%2Fpostgresql/app";
        let Ok(connect) = url.parse::<PgConnectOptions>() else {
            panic!("the URL parses");
        };
        assert!(matches!(Peer::of(url, &connect), Peer::Local));
    }

    /// The two tests against the server look at every socket to it, so they take turns.
    static SERVER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

    fn database_url() -> String {
        std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| crate::foundation::config::DEFAULT_DATABASE_URL.to_owned())
    }

    /// `(TCP_NODELAY, SO_KEEPALIVE, TCP_USER_TIMEOUT)` of the socket of `conn`: the one
    /// connected to `peers` from the port the server sees the session come from. `None`
    /// for a Unix-domain socket.
    async fn options_of(
        conn: &mut PgConnection,
        peers: &HashSet<SocketAddr>,
    ) -> Result<Option<(bool, bool, Option<Duration>)>, Box<dyn std::error::Error>> {
        let port: Option<i32> = sqlx::query_scalar("SELECT inet_client_port()")
            .fetch_one(&mut *conn)
            .await?;
        let Some(port) = port else {
            return Ok(None);
        };
        let mut found = Vec::new();
        for_each_socket_to(peers, |socket| {
            let local = socket.local_addr().ok().and_then(|addr| addr.as_socket());
            if local.is_some_and(|addr| i32::from(addr.port()) == port) {
                #[cfg(any(target_os = "linux", target_os = "android"))]
                let user_timeout = socket.tcp_user_timeout().ok().flatten();
                #[cfg(not(any(target_os = "linux", target_os = "android")))]
                let user_timeout = None;
                found.push((
                    socket.tcp_nodelay().unwrap_or(false),
                    socket.keepalive().unwrap_or(false),
                    user_timeout,
                ));
            }
        })?;
        assert_eq!(found.len(), 1, "the session's socket, once: {found:?}");
        Ok(found.pop())
    }

    /// Against the real server: sqlx 0.9.1 sets `TCP_NODELAY` on a plain pool's sockets
    /// (so nothing here does), and no keepalive (so this module still must; when that
    /// assertion fails, sqlx sets it and the module can go).
    #[tokio::test]
    async fn a_plain_sqlx_pool_sets_tcp_nodelay_but_no_keepalive()
    -> Result<(), Box<dyn std::error::Error>> {
        let _turn = SERVER.lock().await;
        let url = database_url();
        let connect: PgConnectOptions = url.parse()?;
        let peers = Peer::of(&url, &connect).addresses().await?;
        let plain = PgPoolOptions::new()
            .max_connections(2)
            .connect_with(connect)
            .await?;
        let mut held = [plain.acquire().await?, plain.acquire().await?];
        for conn in &mut held {
            let Some((nodelay, keepalive, _)) = options_of(conn, &peers).await? else {
                return Ok(()); // a Unix-domain socket: no TCP options
            };
            assert!(nodelay, "sqlx 0.9.1 sets TCP_NODELAY");
            assert!(!keepalive, "sqlx sets keepalive itself now");
        }
        drop(held);
        plain.close().await;
        Ok(())
    }

    /// Against the real server: every connection of the relay's pool has keepalive and the
    /// user timeout, and `TCP_NODELAY` from sqlx.
    #[tokio::test]
    async fn the_relays_pool_connections_have_keepalive_and_a_user_timeout()
    -> Result<(), Box<dyn std::error::Error>> {
        let _turn = SERVER.lock().await;
        let url = database_url();
        let connect: PgConnectOptions = url.parse()?;
        let peers = Peer::of(&url, &connect).addresses().await?;
        let pool = pool_options(&url, &connect)
            .max_connections(3)
            .connect_with(connect)
            .await?;
        let mut held = [
            pool.acquire().await?,
            pool.acquire().await?,
            pool.acquire().await?,
        ];
        for conn in &mut held {
            let Some((nodelay, keepalive, user_timeout)) = options_of(conn, &peers).await? else {
                return Ok(()); // a Unix-domain socket: no TCP options
            };
            assert!(nodelay && keepalive);
            if cfg!(any(target_os = "linux", target_os = "android")) {
                assert_eq!(user_timeout, Some(USER_TIMEOUT));
            }
        }
        drop(held);
        pool.close().await;
        Ok(())
    }
}
