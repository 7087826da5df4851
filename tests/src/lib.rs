//! Test kit: every test gets its own Postgres database and its own RabbitMQ names, so the
//! suite runs in parallel against the real servers and leaves nothing behind.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures_util::StreamExt;
use lapin::options::{BasicConsumeOptions, ExchangeDeleteOptions, QueueDeleteOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection, ConnectionProperties};
use outbox_relay::broker::topology;
use outbox_relay::foundation::config;
use outbox_relay::{Health, RelayConfig, RelayError};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection as _, PgConnection, PgPool};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub mod proxy;
pub mod servers;
pub mod tls;

#[cfg(feature = "containers")]
pub mod containers;
pub mod fleet;
pub mod guides;
pub mod upgrade_kit;

/// `DATABASE_URL`, or (feature `containers`, a Docker engine reachable) the PostgreSQL
/// container's, or the relay's default.
pub fn database_url() -> String {
    server_url(Server::Database)
}

/// `AMQP_URL`, or (feature `containers`, a Docker engine reachable) the RabbitMQ container's,
/// or the relay's default.
pub fn amqp_url() -> String {
    server_url(Server::Broker)
}

/// The two servers the tests talk to.
#[derive(Clone, Copy)]
enum Server {
    Database,
    Broker,
}

/// The server's URL: its environment variable, else the container's (feature
/// `containers`), else the relay's own default.
fn server_url(server: Server) -> String {
    let (variable, default) = match server {
        Server::Database => ("DATABASE_URL", config::DEFAULT_DATABASE_URL),
        Server::Broker => ("AMQP_URL", config::DEFAULT_AMQP_URL),
    };
    std::env::var(variable).unwrap_or_else(|_| {
        #[cfg(feature = "containers")]
        if let Some(servers) = containers::servers() {
            return match server {
                Server::Database => servers.database_url.clone(),
                Server::Broker => servers.amqp_url.clone(),
            };
        }
        default.to_owned()
    })
}

/// A short unique suffix for database, exchange and queue names.
pub fn unique_suffix() -> String {
    Uuid::new_v4().simple().to_string()[..12].to_owned()
}

/// Prefix of every database the kit creates (the test script drops leftovers by it).
pub const DB_PREFIX: &str = "outbox_t_";

/// A fresh database with the outbox schema migrated. Dropped with the value (or earlier,
/// checking for errors, by [`TestDb::cleanup`]), also when the test fails.
pub struct TestDb {
    /// Pool on the test database.
    pub pool: PgPool,
    /// The database's name.
    pub name: String,
    /// Connect options of the test database.
    pub options: PgConnectOptions,
    dropped: bool,
}

impl TestDb {
    /// Creates and migrates a new database.
    pub async fn new() -> Result<Self> {
        let db = Self::empty().await?;
        outbox_core::migrate(&db.pool).await.context("migrate")?;
        Ok(db)
    }

    /// Creates a new database without migrating it.
    pub async fn empty() -> Result<Self> {
        let admin: PgConnectOptions = database_url().parse().context("DATABASE_URL")?;
        let name = format!("{DB_PREFIX}{}", unique_suffix());
        let mut conn = admin.connect().await.context("connect to Postgres")?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await?;
        conn.close().await?;
        let options = admin.database(&name);
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.clone())
            .await?;
        Ok(TestDb {
            pool,
            name,
            options,
            dropped: false,
        })
    }

    /// A URL of the test database (for the relay binary or a listener).
    pub fn url(&self) -> String {
        let mut url = url::Url::parse(&database_url()).unwrap_or_else(|_| {
            url::Url::parse(config::DEFAULT_DATABASE_URL).unwrap_or_else(|e| panic!("{e}"))
        });
        url.set_path(&self.name);
        url.to_string()
    }

    /// A dedicated connection (outside the pool).
    pub async fn connect(&self) -> Result<PgConnection> {
        Ok(self.options.connect().await?)
    }

    /// Drops the database now, reporting a failure (dropping the value would too, silently).
    pub async fn cleanup(mut self) -> Result<()> {
        self.pool.close().await;
        self.dropped = true;
        drop_database(&self.name).await
    }

    /// Number of rows in `outbox_events`.
    pub async fn count_events(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT count(*) FROM outbox_events")
            .fetch_one(&self.pool)
            .await?)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if !self.dropped {
            let name = self.name.clone();
            finish_in_drop(async move { drop_database(&name).await });
        }
    }
}

async fn drop_database(name: &str) -> Result<()> {
    let admin: PgConnectOptions = database_url().parse()?;
    let mut conn = admin.connect().await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut conn)
    .await?;
    Ok(())
}

/// Runs a cleanup to its end from a `drop`, which cannot await and may run inside the
/// test's runtime: on a thread of its own, with a runtime of its own, for at most 30 s.
/// A failure is printed; the test command also removes leftovers by their prefix.
fn finish_in_drop(cleanup: impl Future<Output = Result<()>> + Send + 'static) {
    let worker = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async {
            tokio::time::timeout(Duration::from_secs(30), cleanup)
                .await
                .context("cleanup timed out")?
        })
    });
    match worker.join() {
        Ok(Ok(())) => {}
        Ok(Err(error)) => eprintln!("test cleanup failed: {error:#}"),
        Err(_) => eprintln!("test cleanup panicked"),
    }
}

/// Runs `test` with a fresh [`TestDb`] and a fresh [`TestBroker`] (its queue bound with
/// `binding_keys`), then drops the database, the queue and the exchange whatever the outcome:
/// an error or a panic (a failed assertion) of `test` is passed on after the cleanup.
pub async fn with_db_and_broker<T>(
    binding_keys: &[&str],
    test: impl AsyncFnOnce(&TestDb, &TestBroker) -> Result<T>,
) -> Result<T> {
    use futures_util::FutureExt;
    let db = TestDb::new().await?;
    let broker = match TestBroker::new(binding_keys).await {
        Ok(broker) => broker,
        Err(error) => {
            let _ = db.cleanup().await;
            return Err(error);
        }
    };
    let outcome = std::panic::AssertUnwindSafe(test(&db, &broker))
        .catch_unwind()
        .await;
    let broker_cleaned = broker.cleanup().await;
    let db_cleaned = db.cleanup().await;
    let value = outcome.unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
    broker_cleaned.context("delete the test's queue and exchange")?;
    db_cleaned.context("drop the test database")?;
    Ok(value)
}

/// Polls `check` every 50 ms until it returns true, failing after `timeout`.
pub async fn wait_until<F, Fut>(timeout: Duration, what: &str, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await? {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Counts events per status (as `outbox_event_status` names it).
pub async fn count_status(pool: &PgPool, status: &str) -> Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM outbox_event_status WHERE status = $1")
            .bind(status)
            .fetch_one(pool)
            .await?,
    )
}

/// Makes events dead as the relay does when their attempts run out — `attempts` failures,
/// the last with `error` — whatever stores that (the tests that need a dead event without
/// a broker refusing it, so they do not restate the storage).
pub async fn make_dead(
    pool: &PgPool,
    ids: &[Uuid],
    attempts: i32,
    error: Option<&str>,
) -> Result<()> {
    let mut tx = pool.begin().await?;
    let feed: bool = sqlx::query_scalar("SELECT to_regclass('outbox_held') IS NOT NULL")
        .fetch_one(&mut *tx)
        .await?;
    if feed {
        // Engine v3 from step 4b: the event's scope is held at it, dead.
        sqlx::query(
            "INSERT INTO outbox_held AS h (scope, part, head_seq, due_at)
             SELECT COALESCE(outbox_scope(e.tenant_id, e.ordering_key), '#' || e.id::text),
                    CASE WHEN e.ordering_key IS NULL THEN (e.seq % 16)::integer
                         ELSE (hashtextextended(outbox_scope(e.tenant_id, e.ordering_key), 0)
                               & 15)::integer END,
                    e.seq, NULL
               FROM outbox_events e WHERE e.id = ANY($1)
             ON CONFLICT (scope) DO UPDATE SET head_seq = EXCLUDED.head_seq, due_at = NULL",
        )
        .bind(ids)
        .execute(&mut *tx)
        .await?;
    } else {
        sqlx::query(
            "UPDATE outbox_events SET status = 'pending', parked = true WHERE id = ANY($1)",
        )
        .bind(ids)
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query(
        "INSERT INTO outbox_attempts (event_id, failures, last_error, dead_at)
         SELECT unnest($1::uuid[]), $2, $3, now()
         ON CONFLICT (event_id) DO UPDATE
            SET failures = EXCLUDED.failures, last_error = EXCLUDED.last_error,
                next_attempt_at = NULL, dead_at = EXCLUDED.dead_at",
    )
    .bind(ids)
    .bind(attempts)
    .bind(error)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// `n` ordering keys (`<prefix>:<i>`) whose scopes with `tenant` share one partition of the
/// feed (`seq % 16`): a claim takes one partition, so events on them come in one claim.
pub async fn keys_in_one_partition(
    pool: &PgPool,
    tenant: Option<Uuid>,
    prefix: &str,
    n: usize,
) -> Result<Vec<String>> {
    let keys: Vec<String> = sqlx::query_scalar(
        "WITH k AS (SELECT $2 || ':' || g AS key,
                           hashtextextended(outbox_scope($1, $2 || ':' || g), 0) & 15 AS part
                      FROM generate_series(1, 100 * $3) g)
         SELECT key FROM k
          WHERE part = (SELECT part FROM k GROUP BY part ORDER BY count(*) DESC, part LIMIT 1)
          LIMIT $3",
    )
    .bind(tenant)
    .bind(prefix)
    .bind(i64::try_from(n)?)
    .fetch_all(pool)
    .await?;
    anyhow::ensure!(
        keys.len() == n,
        "{} keys in one partition, not {n}",
        keys.len()
    );
    Ok(keys)
}

/// Makes events delivered as the relay leaves them (engine v3: at or below their
/// partition's frontier, not held): `ids`, or every event when empty — with every earlier
/// event of their partitions. With `age`, they were written that long ago (retention
/// counts from `created_at`).
pub async fn mark_delivered(pool: &PgPool, ids: &[Uuid], age: Option<Duration>) -> Result<()> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "UPDATE outbox_partitions p SET frontier = GREATEST(p.frontier, m.last)
           FROM (SELECT (seq % 16)::integer AS part, max(seq) AS last FROM outbox_events
                  WHERE cardinality($1::uuid[]) = 0 OR id = ANY($1)
                  GROUP BY 1) AS m
          WHERE p.part = m.part",
    )
    .bind(ids)
    .execute(&mut *tx)
    .await?;
    if let Some(age) = age {
        sqlx::query(
            "UPDATE outbox_events SET created_at = now() - make_interval(secs => $2)
              WHERE cardinality($1::uuid[]) = 0 OR id = ANY($1)",
        )
        .bind(ids)
        .bind(age.as_secs_f64())
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// One message as a consumer saw it.
#[derive(Debug, Clone)]
pub struct Received {
    /// AMQP `message_id`.
    pub message_id: String,
    /// AMQP `type`.
    pub kind: String,
    /// AMQP `content_type`.
    pub content_type: String,
    /// AMQP `delivery_mode`.
    pub delivery_mode: u8,
    /// AMQP `timestamp`.
    pub timestamp: Option<u64>,
    /// Routing key it was published with.
    pub routing_key: String,
    /// String and integer headers, as text.
    pub headers: BTreeMap<String, String>,
    /// The JSON envelope.
    pub body: serde_json::Value,
}

/// A durable topic exchange and queue of the test's own, on the real broker.
pub struct TestBroker {
    /// Exchange name (unique per test).
    pub exchange: String,
    /// Queue name (unique per test).
    pub queue: String,
    connection: Connection,
    channel: Channel,
    deleted: bool,
}

/// Runs a service-control command (used by the fault tests), failing with its output.
pub async fn run_command(program: &str, args: &[&str]) -> Result<()> {
    let output = tokio::process::Command::new(program)
        .args(args)
        .output()
        .await?;
    if !output.status.success() {
        bail!(
            "{program} {args:?} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// The local Postgres cluster's version directory (as `pg_ctlcluster` wants it).
pub fn postgres_version() -> Result<String> {
    let mut versions: Vec<String> = std::fs::read_dir("/etc/postgresql")?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    versions.sort();
    versions.pop().context("no cluster under /etc/postgresql")
}

impl TestBroker {
    /// Declares an exchange and a queue bound with each of `binding_keys`.
    pub async fn new(binding_keys: &[&str]) -> Result<Self> {
        let suffix = unique_suffix();
        let connection = Connection::connect(&amqp_url(), ConnectionProperties::default())
            .await
            .context("connect to RabbitMQ")?;
        let channel = connection.create_channel().await?;
        let broker = TestBroker {
            exchange: format!("outbox.test.{suffix}"),
            queue: format!("outbox.test.{suffix}.q"),
            connection,
            channel,
            deleted: false,
        };
        topology::declare_exchange(&broker.channel, &broker.exchange).await?;
        topology::declare_bound_queue(
            &broker.channel,
            &broker.queue,
            FieldTable::default(),
            &broker.exchange,
            binding_keys,
        )
        .await?;
        Ok(broker)
    }

    /// Binds the queue to the exchange with `key`.
    pub async fn bind(&self, key: &str) -> Result<()> {
        Ok(topology::bind_queue(&self.channel, &self.queue, &self.exchange, key).await?)
    }

    /// Consumes (and acks) messages until `count` arrived or none arrived for `idle`.
    pub async fn collect(&self, count: usize, idle: Duration) -> Result<Vec<Received>> {
        Ok(self
            .collect_timed(count, idle)
            .await?
            .into_iter()
            .map(|(message, _)| message)
            .collect())
    }

    /// [`TestBroker::collect`], each message with the wall-clock time it arrived (to check
    /// that an event went out no earlier than it was due).
    pub async fn collect_timed(
        &self,
        count: usize,
        idle: Duration,
    ) -> Result<Vec<(Received, chrono::DateTime<chrono::Utc>)>> {
        let connection = Connection::connect(&amqp_url(), ConnectionProperties::default()).await?;
        let channel = connection.create_channel().await?;
        let mut consumer = channel
            .basic_consume(
                self.queue.as_str().into(),
                format!("collector-{}", unique_suffix()).as_str().into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        let mut received = Vec::with_capacity(count);
        while received.len() < count {
            match tokio::time::timeout(idle, consumer.next()).await {
                Err(_) | Ok(None) => break,
                Ok(Some(delivery)) => {
                    received.push((to_received(&delivery?)?, chrono::Utc::now()));
                }
            }
        }
        let _ = connection.close(200, "done".into()).await;
        Ok(received)
    }

    /// Consumes until `at_least` messages arrived (or `idle` passes without one) and
    /// returns the distinct message ids with the number of messages (duplicates included).
    pub async fn received_ids(
        &self,
        at_least: usize,
        idle: Duration,
    ) -> Result<(HashSet<String>, usize)> {
        let received = self.collect(at_least, idle).await?;
        let count = received.len();
        Ok((received.into_iter().map(|m| m.message_id).collect(), count))
    }

    /// Deletes the queue and the exchange now, reporting a failure (dropping the value
    /// would too, silently).
    pub async fn cleanup(mut self) -> Result<()> {
        // A fresh connection: the test may have restarted the broker under the old one.
        if self.connection.status().connected() {
            let _ = self.connection.close(200, "done".into()).await;
        }
        self.deleted = true;
        delete_exchange_and_queue(&self.exchange, &self.queue).await
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        if !self.deleted {
            let (exchange, queue) = (self.exchange.clone(), self.queue.clone());
            finish_in_drop(async move { delete_exchange_and_queue(&exchange, &queue).await });
        }
    }
}

async fn delete_exchange_and_queue(exchange: &str, queue: &str) -> Result<()> {
    let connection = Connection::connect(&amqp_url(), ConnectionProperties::default()).await?;
    let channel = connection.create_channel().await?;
    channel
        .queue_delete(queue.into(), QueueDeleteOptions::default())
        .await?;
    channel
        .exchange_delete(exchange.into(), ExchangeDeleteOptions::default())
        .await?;
    let _ = connection.close(200, "done".into()).await;
    Ok(())
}

fn text_of(value: &AMQPValue) -> String {
    match value {
        AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        AMQPValue::ShortString(s) => s.as_str().to_owned(),
        AMQPValue::LongInt(n) => n.to_string(),
        AMQPValue::LongLongInt(n) => n.to_string(),
        AMQPValue::ShortInt(n) => n.to_string(),
        other => format!("{other:?}"),
    }
}

fn to_received(delivery: &lapin::message::Delivery) -> Result<Received> {
    let properties = &delivery.properties;
    let headers = properties
        .headers()
        .as_ref()
        .map(|table| {
            table
                .inner()
                .iter()
                .map(|(k, v)| (k.as_str().to_owned(), text_of(v)))
                .collect()
        })
        .unwrap_or_default();
    Ok(Received {
        message_id: properties
            .message_id()
            .as_ref()
            .map(|s| s.as_str().to_owned())
            .unwrap_or_default(),
        kind: properties
            .kind()
            .as_ref()
            .map(|s| s.as_str().to_owned())
            .unwrap_or_default(),
        content_type: properties
            .content_type()
            .as_ref()
            .map(|s| s.as_str().to_owned())
            .unwrap_or_default(),
        delivery_mode: properties.delivery_mode().unwrap_or_default(),
        timestamp: *properties.timestamp(),
        routing_key: delivery.routing_key.as_str().to_owned(),
        headers,
        body: serde_json::from_slice(&delivery.data)?,
    })
}

/// Relay settings for tests: fast polling and retries, this test's database and exchange.
pub fn relay_config(db: &TestDb, broker: &TestBroker) -> RelayConfig {
    let mut config = RelayConfig::new(db.url(), amqp_url());
    config.exchange = broker.exchange.clone();
    config.poll_interval = Duration::from_millis(200);
    config.retry.base = Duration::from_millis(50);
    config.retry.cap = Duration::from_millis(500);
    config.lease = Duration::from_secs(20);
    config.confirm_timeout = Duration::from_secs(10);
    config.publish_timeout = Duration::from_secs(2);
    config.gauge_interval = Duration::from_millis(500);
    config
}

/// A relay running in this process. Dropping it (a test that failed half-way) asks it to
/// stop without waiting.
pub struct RunningRelay {
    cancel: tokio_util::sync::DropGuard,
    handle: JoinHandle<Result<(), RelayError>>,
    /// Its health flags.
    pub health: Arc<Health>,
}

impl RunningRelay {
    /// Starts a relay task.
    pub fn start(config: RelayConfig) -> Self {
        let cancel = CancellationToken::new();
        let health = Arc::new(Health::default());
        let handle = tokio::spawn(outbox_relay::run(
            config,
            cancel.clone().cancelled_owned(),
            health.clone(),
        ));
        RunningRelay {
            cancel: cancel.drop_guard(),
            handle,
            health,
        }
    }

    /// Requests shutdown and waits for the relay to drain.
    pub async fn stop(self) -> Result<()> {
        drop(self.cancel);
        tokio::time::timeout(Duration::from_secs(30), self.handle).await???;
        Ok(())
    }
}

/// The `outbox-relay` binary next to the test executable (built by `cargo build`).
pub fn relay_binary() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .context("test executable has no target directory")?;
    let binary = dir.join("outbox-relay");
    if !binary.exists() {
        bail!(
            "{} is missing: run `cargo build -p outbox-relay` first",
            binary.display()
        );
    }
    Ok(binary)
}

/// An `outbox-relay run` child process on the test's database and exchange.
pub struct RelayProcess {
    /// The child.
    pub child: tokio::process::Child,
    /// Where its HTTP endpoints listen.
    pub http_addr: std::net::SocketAddr,
}

impl RelayProcess {
    /// Starts `outbox-relay run` with fast test settings plus `extra` flags, logging at
    /// `info`; its stderr goes to `log` (a file the test may read).
    pub fn start(
        db: &TestDb,
        broker: &TestBroker,
        extra: &[&str],
        log: &std::path::Path,
    ) -> Result<Self> {
        Self::spawn(db, broker, extra, log, Some("info"))
    }

    /// As [`RelayProcess::start`], with `RUST_LOG` unset: the log an operator gets by
    /// default.
    pub fn start_at_default_log_level(
        db: &TestDb,
        broker: &TestBroker,
        extra: &[&str],
        log: &std::path::Path,
    ) -> Result<Self> {
        Self::spawn(db, broker, extra, log, None)
    }

    /// As [`RelayProcess::start`], reaching the broker at `amqp_url` (a [`proxy::Proxy`]'s,
    /// say) instead of the test broker's own URL.
    pub fn start_via(
        db: &TestDb,
        broker: &TestBroker,
        amqp_url: &str,
        extra: &[&str],
        log: &std::path::Path,
    ) -> Result<Self> {
        Self::spawn_with(db, broker, amqp_url, extra, log, Some("info"))
    }

    fn spawn(
        db: &TestDb,
        broker: &TestBroker,
        extra: &[&str],
        log: &std::path::Path,
        rust_log: Option<&str>,
    ) -> Result<Self> {
        Self::spawn_with(db, broker, &amqp_url(), extra, log, rust_log)
    }

    fn spawn_with(
        db: &TestDb,
        broker: &TestBroker,
        amqp_url: &str,
        extra: &[&str],
        log: &std::path::Path,
        rust_log: Option<&str>,
    ) -> Result<Self> {
        let http_addr = free_local_addr()?;
        let stderr = std::fs::File::create(log)?;
        let mut command = tokio::process::Command::new(relay_binary()?);
        match rust_log {
            Some(filter) => command.env("RUST_LOG", filter),
            None => command.env_remove("RUST_LOG"),
        };
        let child = command
            .arg("run")
            .args(["--database-url", &db.url()])
            .args(["--amqp-url", amqp_url])
            .args(["--exchange", &broker.exchange])
            .args(["--http-addr", &http_addr.to_string()])
            .args([
                "--poll-interval",
                "200ms",
                "--retry-base",
                "50ms",
                "--retry-cap",
                "500ms",
            ])
            .args(["--gauge-interval", "200ms"])
            .args(extra)
            .env_remove("DATABASE_URL")
            .env_remove("AMQP_URL")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()?;
        Ok(RelayProcess { child, http_addr })
    }

    /// Sends a signal (`TERM`, `KILL`, ...) to the relay.
    pub async fn signal(&self, name: &str) -> Result<()> {
        let pid = self.child.id().context("the relay already exited")?;
        send_signal(pid, name).await
    }

    /// GETs `path` from the relay's HTTP server; returns (status code, body).
    pub async fn get(&self, path: &str) -> Result<(u16, String)> {
        http_get(self.http_addr, path).await
    }

    /// Waits until `/readyz` answers 200, failing early if the relay exits.
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("the relay exited ({status}) before it was ready");
            }
            if matches!(self.get("/readyz").await, Ok((200, _))) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the relay was not ready within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> Result<bool> {
        Ok(self.child.try_wait()?.is_none())
    }
}

/// Sends signal `name` (`TERM`, `KILL`, ...) to process `pid` with the system's `kill`,
/// spelled `kill -s NAME -- PID`. Every test signals processes through here: procps-ng
/// 4.0.2 reads `kill -KILL -PGID` as `kill(-1, SIGKILL)`, which kills every process the
/// user may signal, so the spelling matters, and pids 0 and 1 are refused outright.
pub async fn send_signal(pid: u32, name: &str) -> Result<()> {
    if pid <= 1 {
        bail!("refusing to signal pid {pid}");
    }
    let status = tokio::process::Command::new("kill")
        .args(["-s", name, "--", &pid.to_string()])
        .status()
        .await?;
    if !status.success() {
        bail!("kill -s {name} -- {pid} failed");
    }
    Ok(())
}

/// A loopback address with a port nobody listens on right now.
pub fn free_local_addr() -> Result<std::net::SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?)
}

/// A minimal HTTP/1.1 GET (the relay's endpoints are plain text).
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .context("malformed HTTP response")?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// The value of an unlabelled Prometheus sample in `text`.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (metric, value) = line.rsplit_once(' ')?;
            (metric == name).then(|| value.parse().ok()).flatten()
        })
}

/// Emits `n` ticket events on `keys` tickets (round-robin) in chunks of 1,000; returns the ids.
pub async fn emit_tickets(pool: &PgPool, n: usize, keys: usize) -> Result<Vec<Uuid>> {
    use catalog_types::CatalogEvent;
    let tenant = Uuid::now_v7();
    let tickets: Vec<Uuid> = (0..keys.max(1)).map(|_| Uuid::now_v7()).collect();
    let mut ids = Vec::with_capacity(n);
    let mut chunk = Vec::new();
    for i in 0..n {
        let event = catalog_types::TicketUpdated {
            tenant_id: tenant,
            ticket_id: tickets[i % tickets.len()],
            ..catalog_types::TicketUpdated::example()
        };
        chunk.push(outbox_core::NewEvent::new(&event)?);
        if chunk.len() == 1000 || i + 1 == n {
            let mut tx = pool.begin().await?;
            ids.extend(outbox_core::emit_batch(&mut tx, &chunk).await?);
            tx.commit().await?;
            chunk.clear();
        }
    }
    Ok(ids)
}

/// The tenant of [`emit_ticket`]'s events: one for all, so events of one ticket share an
/// ordering scope (tenant, key).
pub const TEST_TENANT: Uuid = Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001);

/// Emits one `TicketUpdated` event of `ticket` (its ordering key, tenant [`TEST_TENANT`]),
/// with `options`, in a transaction of its own; returns its id.
pub async fn emit_ticket(
    pool: &PgPool,
    ticket: Uuid,
    options: outbox_core::EmitOptions,
) -> Result<Uuid> {
    use catalog_types::CatalogEvent;
    let event = catalog_types::TicketUpdated {
        tenant_id: TEST_TENANT,
        ticket_id: ticket,
        ..catalog_types::TicketUpdated::example()
    };
    let mut tx = pool.begin().await?;
    let id = outbox_core::emit_with(&mut tx, &event, options).await?;
    tx.commit().await?;
    Ok(id)
}

/// Where one event stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventState {
    /// `status`: pending, delivered, dead, ...
    pub status: String,
    /// Publish attempts made.
    pub attempts: i32,
    /// The reason of the last failed attempt.
    pub last_error: Option<String>,
}

/// The state of event `id`.
pub async fn event_state(pool: &PgPool, id: Uuid) -> Result<EventState> {
    let (status, attempts, last_error) = sqlx::query_as(
        "SELECT status, attempts, last_error FROM outbox_event_status WHERE id = $1",
    )
    .bind(id)
    .fetch_one(pool)
    .await
    .with_context(|| format!("event {id}"))?;
    Ok(EventState {
        status,
        attempts,
        last_error,
    })
}

/// Waits until none of the events `ids` is `pending` any more.
pub async fn wait_until_settled(pool: &PgPool, ids: &[Uuid], timeout: Duration) -> Result<()> {
    wait_until(timeout, "the events are settled", || async {
        let pending: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM outbox_event_status WHERE id = ANY($1) AND status = 'pending'",
        )
        .bind(ids)
        .fetch_one(pool)
        .await?;
        Ok(pending == 0)
    })
    .await
}

/// Event ids as the message ids a consumer sees.
pub fn id_set(ids: &[Uuid]) -> HashSet<String> {
    ids.iter().map(ToString::to_string).collect()
}

/// A scratch file path for a test's logs.
pub fn log_path(test: &str) -> PathBuf {
    std::env::temp_dir().join(format!("outbox-{test}-{}.log", unique_suffix()))
}

/// Runs `outbox-relay <args>` without a database (the catalog commands) and returns (exit
/// code, stdout, stderr).
pub fn relay_offline<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Result<(i32, String, String)> {
    let output = std::process::Command::new(relay_binary()?)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()?;
    Ok((
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    ))
}

/// Runs `outbox-relay <args>` against `db` and returns (exit code, stdout, stderr).
pub async fn relay_cli(db: &TestDb, args: &[&str]) -> Result<(i32, String, String)> {
    let mut command = tokio::process::Command::new(relay_binary()?);
    command
        .args(args)
        .env("DATABASE_URL", db.url())
        .env_remove("AMQP_URL")
        .env("RUST_LOG", "warn")
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(120), command.output())
        .await
        .map_err(|_| anyhow::anyhow!("outbox-relay {args:?} did not finish"))??;
    Ok((
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    ))
}

/// Every row of `outbox_events` as text, in seq order (to prove a command changed nothing).
pub async fn snapshot(pool: &PgPool) -> Result<Vec<String>> {
    Ok(
        sqlx::query_scalar("SELECT to_jsonb(e)::text FROM outbox_events e ORDER BY seq")
            .fetch_all(pool)
            .await?,
    )
}

/// The repository README's examples, compiled as doctests so they stay true (here, not in
/// `outbox-core`, whose published package does not hold the README).
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeExamples;
