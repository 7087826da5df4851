//! PostgreSQL and RabbitMQ in containers, for machines with a Docker engine and no servers of
//! their own (feature `containers` of this crate).
//!
//! [`database_url`](crate::database_url) and [`amqp_url`](crate::amqp_url) ask [`servers`]
//! only when `DATABASE_URL` / `AMQP_URL` are unset. When a Docker engine answers, the first
//! test process starts two containers with fixed names ([`POSTGRES_CONTAINER`],
//! [`RABBITMQ_CONTAINER`]) and every later process reuses them: nextest runs each test in a
//! process of its own, and one server pair for the whole run keeps a parallel run as cheap as
//! against local servers. The containers stay up after the run (the next run starts at once);
//! `docker rm -f outbox-test-postgres outbox-test-rabbitmq` removes them. Without a Docker
//! engine [`servers`] returns `None` and the kit uses the local servers, as without the
//! feature.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use testcontainers::core::{IntoContainerPort, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{GenericImage, ImageExt, ReuseDirective};
use testcontainers_modules::postgres::Postgres;

/// Name of the reused PostgreSQL container.
pub const POSTGRES_CONTAINER: &str = "outbox-test-postgres";
/// Name of the reused RabbitMQ container.
pub const RABBITMQ_CONTAINER: &str = "outbox-test-rabbitmq";
/// PostgreSQL image tag (15 or later: the migrations use `NULLS NOT DISTINCT`).
pub const POSTGRES_TAG: &str = "17-alpine";
/// RabbitMQ image tag.
pub const RABBITMQ_TAG: &str = "4.1";

/// Where the containers listen, as URLs for the kit.
#[derive(Debug, Clone)]
pub struct Servers {
    /// `postgres://…/test` on the PostgreSQL container (user `postgres`, trust auth).
    pub database_url: String,
    /// `amqp://guest:guest@…/%2f` on the RabbitMQ container.
    pub amqp_url: String,
}

/// The containers' URLs, starting (or finding) the containers on first use; `None` when no
/// Docker engine is reachable. Panics when an engine is reachable but the containers cannot be
/// started or do not become ready: the test run would otherwise fail later, less clearly (set
/// `DATABASE_URL` and `AMQP_URL` to use other servers).
pub fn servers() -> Option<&'static Servers> {
    static SERVERS: OnceLock<Option<Servers>> = OnceLock::new();
    SERVERS
        .get_or_init(|| {
            if !docker_reachable() {
                return None;
            }
            // The kit's callers are sync and often inside a test's runtime: start on a thread
            // with a runtime of its own.
            let started = std::thread::spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .context("a runtime to start the containers")?
                    .block_on(start())
            })
            .join();
            match started {
                Ok(Ok(servers)) => Some(servers),
                Ok(Err(error)) => panic!(
                    "a Docker engine is reachable but the test containers did not start: {error:#} \
                     (set DATABASE_URL and AMQP_URL to use other servers)"
                ),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
        .as_ref()
}

/// Whether a Docker engine listens where `DOCKER_HOST` (or the default socket) says.
pub fn docker_reachable() -> bool {
    let host = std::env::var("DOCKER_HOST").unwrap_or_default();
    if let Some(address) = host
        .strip_prefix("tcp://")
        .or_else(|| host.strip_prefix("http://"))
        .or_else(|| host.strip_prefix("https://"))
    {
        use std::net::ToSocketAddrs;
        let Ok(addresses) = address.trim_end_matches('/').to_socket_addrs() else {
            return false;
        };
        return addresses
            .into_iter()
            .any(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok());
    }
    let socket = host
        .strip_prefix("unix://")
        .unwrap_or("/var/run/docker.sock");
    std::os::unix::net::UnixStream::connect(socket).is_ok()
}

async fn start() -> Result<Servers> {
    let postgres = start_reused(|| {
        Postgres::default()
            .with_host_auth()
            .with_db_name("test")
            .with_tag(POSTGRES_TAG)
            // The parallel suite opens more connections than the default 100.
            .with_cmd(["-c", "fsync=off", "-c", "max_connections=500"])
            .with_container_name(POSTGRES_CONTAINER)
            .with_reuse(ReuseDirective::Always)
            .start()
    })
    .await
    .context("start PostgreSQL")?;
    let rabbitmq = start_reused(|| {
        GenericImage::new("rabbitmq", RABBITMQ_TAG)
            .with_exposed_port(5672.tcp())
            .with_wait_for(WaitFor::message_on_stdout("Server startup complete"))
            .with_container_name(RABBITMQ_CONTAINER)
            .with_reuse(ReuseDirective::Always)
            .start()
    })
    .await
    .context("start RabbitMQ")?;

    let servers = Servers {
        database_url: format!(
            "postgres://postgres@{}:{}/test",
            postgres.get_host().await?,
            postgres.get_host_port_ipv4(5432).await?
        ),
        amqp_url: format!(
            "amqp://guest:guest@{}:{}/%2f",
            rabbitmq.get_host().await?,
            rabbitmq.get_host_port_ipv4(5672).await?
        ),
    };
    // A reused container is returned as soon as it runs, not when it is ready (another test
    // process may have created it a moment ago): wait until both servers answer.
    wait_ready(&servers).await?;
    Ok(servers)
}

/// Starts a reusable container; when several test processes create it at once, the losers'
/// create fails on the name and their second try finds the winner's container.
async fn start_reused<C, F>(mut start: impl FnMut() -> F) -> Result<C>
where
    F: Future<Output = testcontainers::core::error::Result<C>>,
{
    let mut tries = 0;
    loop {
        match start().await {
            Ok(container) => return Ok(container),
            Err(error) if tries < 5 => {
                tries += 1;
                eprintln!("starting a test container (try {tries}): {error}");
                tokio::time::sleep(Duration::from_millis(500 * tries)).await;
            }
            Err(error) => return Err(error.into()),
        }
    }
}

async fn wait_ready(servers: &Servers) -> Result<()> {
    use sqlx::{ConnectOptions, Connection};
    let deadline = Instant::now() + Duration::from_secs(90);
    let options: sqlx::postgres::PgConnectOptions = servers.database_url.parse()?;
    loop {
        let postgres = match options.connect().await {
            Ok(conn) => conn.close().await.map_err(anyhow::Error::from),
            Err(error) => Err(error.into()),
        };
        let rabbitmq = match lapin::Connection::connect(
            &servers.amqp_url,
            lapin::ConnectionProperties::default(),
        )
        .await
        {
            Ok(conn) => conn
                .close(200, "ready".into())
                .await
                .map_err(anyhow::Error::from),
            Err(error) => Err(error.into()),
        };
        match (postgres, rabbitmq) {
            (Ok(()), Ok(())) => return Ok(()),
            (postgres, rabbitmq) if Instant::now() > deadline => {
                bail!(
                    "the containers are not ready after 90 s: PostgreSQL {postgres:?}, RabbitMQ {rabbitmq:?}"
                )
            }
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}
