//! Chaos: producers, three relay processes and a consumer with an inbox, while relays are
//! killed, the broker and the database restart or drop sessions, the consumer is killed, and
//! links go silent. At the end every committed event must have been applied exactly once,
//! nothing of a rolled-back transaction, each ordering key in `seq` order, nothing leased,
//! nothing pending.
//!
//! Everything runs on a private PostgreSQL cluster and a private RabbitMQ node
//! ([`integration_tests::servers`]), which this test restarts; the shared servers are never
//! touched. Each relay reaches both servers through [`Proxy`]s of its own (so one relay's
//! links can be blackholed), and so does the consumer's broker link. The fault schedule
//! comes from a seeded generator: the seed is printed, and `CHAOS_SEED=<seed>` replays the
//! same schedule (the machine's timing still varies).
//!
//! The second test runs the consumer without its inbox under faults that force redelivery
//! and checks that the same checker reports the duplicates: the first test's checks can
//! fail.
//!
//! The test command runs this binary alone, after the parallel suite (it takes a few
//! minutes and both cores).

#![allow(clippy::expect_used, clippy::unwrap_used)] // tests fail loudly by design

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use catalog_types::CatalogEvent;
use integration_tests::proxy::Proxy;
use integration_tests::servers::{PrivatePostgres, PrivateRabbit, StopMode};
use integration_tests::{free_local_addr, log_path, relay_binary, unique_suffix};
use sqlx::PgPool;
use tokio::process::{Child, Command};
use uuid::Uuid;

/// AMQP heartbeat of the relays: a silent broker link is dropped within twice this.
const HEARTBEAT: Duration = Duration::from_secs(2);
/// Database deadline of the relays.
const DB_TIMEOUT: Duration = Duration::from_secs(4);
/// Lease of the relays: a killed relay's rows come back after it.
const LEASE: Duration = Duration::from_secs(10);

/// A small seeded generator (SplitMix64): the schedule replays from the seed alone.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// True with probability `p` percent.
    fn percent(&mut self, p: u64) -> bool {
        self.below(100) < p
    }

    fn millis(&mut self, from: u64, to: u64) -> Duration {
        Duration::from_millis(from + self.below(to - from + 1))
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

fn seed() -> u64 {
    std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(42)
        })
}

/// One relay process and its two proxies (kept across restarts).
struct RelaySlot {
    name: String,
    db: Proxy,
    broker: Proxy,
    child: Option<Child>,
    log: PathBuf,
}

/// The private servers, the relays and the consumer of one run.
struct World {
    pg: PrivatePostgres,
    rabbit: PrivateRabbit,
    db_name: String,
    pool: PgPool,
    exchange: String,
    relays: Vec<RelaySlot>,
    consumer_proxy: Proxy,
    consumer: Arc<ConsumerSupervisor>,
}

impl World {
    async fn start(relays: usize, inbox: bool) -> Result<World> {
        let (pg, rabbit) = tokio::try_join!(PrivatePostgres::start(), PrivateRabbit::start())?;
        let db_name = "chaos".to_owned();
        let url = pg.create_database(&db_name).await?;
        let connect: sqlx::postgres::PgConnectOptions = url.parse()?;
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(60))
            .connect_with(connect)
            .await?;
        outbox_core::migrate(&pool).await?;
        let exchange = format!("outbox.chaos.{}", unique_suffix());
        let pg_upstream = format!("127.0.0.1:{}", pg.port());
        let rabbit_upstream = format!("127.0.0.1:{}", rabbit.port());
        let mut slots = Vec::new();
        for n in 0..relays {
            slots.push(RelaySlot {
                name: format!("outbox-relay-{n}"),
                db: Proxy::start(pg_upstream.clone()).await?,
                broker: Proxy::start(rabbit_upstream.clone()).await?,
                child: None,
                log: log_path(&format!("chaos-relay-{n}")),
            });
        }
        let consumer_proxy = Proxy::start(rabbit_upstream).await?;
        let consumer = Arc::new(ConsumerSupervisor {
            binary: relay_binary()?.with_file_name("consumer"),
            database_url: url.clone(),
            amqp_url: consumer_proxy.redirect(&rabbit.amqp_url())?,
            exchange: exchange.clone(),
            inbox,
            pid: Mutex::new(None),
            kills: AtomicUsize::new(0),
            exits: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            log: log_path("chaos-consumer"),
        });
        // The queue first: a relay publishing before it exists gets its events returned.
        consumer.setup().await?;
        let mut world = World {
            pg,
            rabbit,
            db_name,
            pool,
            exchange,
            relays: slots,
            consumer_proxy,
            consumer,
        };
        for n in 0..relays {
            world.start_relay(n)?;
        }
        eprintln!(
            "chaos: postgres on port {}, rabbitmq node {} on port {}; relay logs {:?}; consumer log {:?}",
            world.pg.port(),
            world.rabbit.node(),
            world.rabbit.port(),
            world.relays.iter().map(|r| &r.log).collect::<Vec<_>>(),
            world.consumer.log
        );
        Ok(world)
    }

    fn start_relay(&mut self, n: usize) -> Result<()> {
        let slot = &mut self.relays[n];
        let database_url = format!(
            "{}?application_name={}",
            slot.db.redirect(&self.pg.url(&self.db_name))?,
            slot.name
        );
        let amqp_url = slot.broker.redirect(&self.rabbit.amqp_url())?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&slot.log)?;
        let child = Command::new(relay_binary()?)
            .arg("run")
            .args(["--database-url", &database_url])
            .args(["--amqp-url", &amqp_url])
            .args(["--exchange", &self.exchange])
            .args(["--http-addr", &free_local_addr()?.to_string()])
            .args(["--relay-id", &slot.name])
            .args(["--batch-size", "100"])
            .args(["--poll-interval", "200ms", "--gauge-interval", "2s"])
            .args(["--retry-base", "100ms", "--retry-cap", "1s"])
            .args(["--max-attempts", "1000"])
            .args(["--lease", &format!("{}s", LEASE.as_secs())])
            .args(["--confirm-timeout", "4s", "--publish-timeout", "2s"])
            .args(["--heartbeat", &format!("{}s", HEARTBEAT.as_secs())])
            .args(["--db-timeout", &format!("{}s", DB_TIMEOUT.as_secs())])
            .env_remove("DATABASE_URL")
            .env_remove("AMQP_URL")
            .env("RUST_LOG", "warn")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .context("start outbox-relay")?;
        slot.child = Some(child);
        Ok(())
    }

    /// SIGKILLs relay `n` and starts it again after `pause`.
    async fn kill_relay(&mut self, n: usize, pause: Duration) -> Result<()> {
        if let Some(mut child) = self.relays[n].child.take() {
            if let Some(status) = child.try_wait()? {
                bail!("{} had exited by itself ({status})", self.relays[n].name);
            }
            child.start_kill()?;
            child.wait().await?;
        }
        tokio::time::sleep(pause).await;
        self.start_relay(n)
    }

    /// SIGTERMs every relay and waits for them to drain; fails if one exited earlier.
    async fn stop_relays(&mut self) -> Result<()> {
        for slot in &mut self.relays {
            let Some(mut child) = slot.child.take() else {
                continue;
            };
            if let Some(status) = child.try_wait()? {
                bail!("{} had exited by itself ({status})", slot.name);
            }
            let pid = child.id().context("relay pid")?;
            integration_tests::send_signal(pid, "TERM").await?;
            let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
                .await
                .context("a relay did not stop within 60 s of SIGTERM")??;
            if !status.success() {
                bail!("{} stopped with {status}", slot.name);
            }
        }
        Ok(())
    }
}

/// Keeps one consumer process running: restarts it whenever it exits (a kill, or an error
/// such as its broker or database going away), like a service manager would.
struct ConsumerSupervisor {
    binary: PathBuf,
    database_url: String,
    amqp_url: String,
    exchange: String,
    inbox: bool,
    pid: Mutex<Option<u32>>,
    kills: AtomicUsize,
    exits: AtomicUsize,
    stop: AtomicBool,
    log: PathBuf,
}

impl ConsumerSupervisor {
    fn command(&self) -> Result<Command> {
        let mut command = Command::new(&self.binary);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        command
            .env("DATABASE_URL", &self.database_url)
            .env("AMQP_URL", &self.amqp_url)
            .env("OUTBOX_EXCHANGE", &self.exchange)
            .env(
                "CONSUMER_QUEUE",
                format!("{}.demo-projection", self.exchange),
            )
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .kill_on_drop(true);
        Ok(command)
    }

    async fn setup(&self) -> Result<()> {
        let status = self.command()?.args(["setup", "--ledger"]).status().await?;
        anyhow::ensure!(status.success(), "consumer setup --ledger failed");
        Ok(())
    }

    /// Runs until [`ConsumerSupervisor::stop`] is set.
    async fn supervise(self: Arc<Self>) -> Result<()> {
        while !self.stop.load(Ordering::Relaxed) {
            let mut command = self.command()?;
            command.args(["run", "--ledger", "--idle", "100000"]);
            if !self.inbox {
                command.arg("--no-inbox");
            }
            let mut child = command.spawn().context("start the consumer")?;
            *self.pid.lock().unwrap() = child.id();
            loop {
                tokio::select! {
                    _ = child.wait() => break,
                    () = tokio::time::sleep(Duration::from_millis(100)) => {
                        if self.stop.load(Ordering::Relaxed) {
                            let _ = child.start_kill();
                            let _ = child.wait().await;
                            return Ok(());
                        }
                    }
                }
            }
            *self.pid.lock().unwrap() = None;
            self.exits.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        Ok(())
    }

    async fn kill(&self) -> Result<bool> {
        let pid = *self.pid.lock().unwrap();
        let Some(pid) = pid else {
            return Ok(false);
        };
        integration_tests::send_signal(pid, "KILL").await?;
        self.kills.fetch_add(1, Ordering::Relaxed);
        Ok(true)
    }
}

/// What the producers wrote, by outcome.
#[derive(Default)]
struct Written {
    committed: Vec<Uuid>,
    rolled_back: Vec<Uuid>,
    /// The commit's outcome is unknown (the connection failed during it).
    uncertain: Vec<Uuid>,
    transactions: u64,
    errors: u64,
}

/// Writers on `keys` ordering keys of `tenants` tenants until `target` events committed,
/// paced over `spread`. A third of the transactions include one of the ten hot keys, which
/// every writer shares; transactions stay open a few milliseconds after their emit, so
/// writers of a key overlap; one in twenty rolls back.
async fn produce(
    pool: PgPool,
    writers: usize,
    target: u64,
    spread: Duration,
    tenants: usize,
    keys_per_tenant: usize,
    seed: u64,
) -> Result<Written> {
    let keys: Arc<Vec<(Uuid, Uuid)>> = Arc::new(
        (0..tenants)
            .flat_map(|_| {
                let tenant = Uuid::now_v7();
                (0..keys_per_tenant).map(move |_| (tenant, Uuid::now_v7()))
            })
            .collect(),
    );
    let committed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..writers {
        let (pool, keys, committed) = (pool.clone(), keys.clone(), committed.clone());
        tasks.spawn(async move {
            let mut rng = Rng(seed ^ (w as u64 + 1).wrapping_mul(0xA24B_AED4_963E_E407));
            let mut written = Written::default();
            while committed.load(Ordering::Relaxed) < target {
                // Pace: no more than the share of the target due by now.
                let due = target as f64 * started.elapsed().as_secs_f64() / spread.as_secs_f64();
                if committed.load(Ordering::Relaxed) as f64 > due {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
                let n = 1 + rng.below(4) as usize;
                let mut events = Vec::with_capacity(n);
                for i in 0..n {
                    let index = if i == 0 && rng.percent(33) {
                        rng.below(10) as usize
                    } else {
                        rng.below(keys.len() as u64) as usize
                    };
                    let (tenant_id, ticket_id) = keys[index];
                    let event = catalog_types::TicketUpdated {
                        tenant_id,
                        ticket_id,
                        ..catalog_types::TicketUpdated::example()
                    };
                    events.push(outbox_core::NewEvent::new(&event)?);
                }
                let rollback = rng.percent(5);
                let hold = rng.millis(0, 6);
                written.transactions += 1;
                let outcome: Result<Vec<Uuid>, (Vec<Uuid>, bool)> = async {
                    let mut tx = pool.begin().await.map_err(|_| (Vec::new(), false))?;
                    let ids = outbox_core::emit_batch(&mut tx, &events)
                        .await
                        .map_err(|_| (Vec::new(), false))?;
                    tokio::time::sleep(hold).await;
                    if rollback {
                        tx.rollback().await.map_err(|_| (ids.clone(), false))?;
                        return Err((ids, false));
                    }
                    // A failure here leaves the outcome unknown.
                    tx.commit().await.map_err(|_| (ids.clone(), true))?;
                    Ok(ids)
                }
                .await;
                match outcome {
                    Ok(ids) => {
                        committed.fetch_add(ids.len() as u64, Ordering::Relaxed);
                        written.committed.extend(ids);
                    }
                    Err((ids, false)) if rollback => written.rolled_back.extend(ids),
                    Err((ids, uncertain)) => {
                        written.errors += 1;
                        if uncertain {
                            written.uncertain.extend(ids);
                        } else {
                            written.rolled_back.extend(ids);
                        }
                        // The server is restarting, or dropped us: try again shortly.
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
            anyhow::Ok(written)
        });
    }
    let mut all = Written::default();
    while let Some(done) = tasks.join_next().await {
        let part = done??;
        all.committed.extend(part.committed);
        all.rolled_back.extend(part.rolled_back);
        all.uncertain.extend(part.uncertain);
        all.transactions += part.transactions;
        all.errors += part.errors;
    }
    Ok(all)
}

/// The kinds of fault the schedule injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    /// SIGKILL a relay, start it again.
    KillRelay,
    /// `stop_app` / `start_app` on the broker node.
    RestartBroker,
    /// `pg_ctl restart -m immediate`: a crash and recovery.
    CrashPostgres,
    /// `pg_terminate_backend` on every relay session.
    TerminateRelaySessions,
    /// SIGKILL the consumer (its supervisor starts it again).
    KillConsumer,
    /// Blackhole one relay's broker link past its heartbeat detection.
    BlackholeRelayBroker,
    /// Blackhole one relay's database link past its deadline.
    BlackholeRelayDatabase,
    /// Blackhole the consumer's broker link, then reset it: its acks are lost and
    /// everything it applied meanwhile is redelivered.
    CutConsumerAcks,
}

async fn inject(world: &mut World, fault: Fault, rng: &mut Rng) -> Result<String> {
    let relay = rng.below(world.relays.len() as u64) as usize;
    Ok(match fault {
        Fault::KillRelay => {
            let pause = rng.millis(0, 2_000);
            world.kill_relay(relay, pause).await?;
            format!("relay {relay} killed, restarted after {pause:?}")
        }
        Fault::RestartBroker => {
            world.rabbit.restart_app().await?;
            "broker restarted".to_owned()
        }
        Fault::CrashPostgres => {
            world.pg.restart(StopMode::Immediate).await?;
            "postgres crashed and recovered".to_owned()
        }
        Fault::TerminateRelaySessions => {
            let ended = world.pg.terminate_sessions("outbox-relay").await?;
            format!("{ended} relay sessions terminated")
        }
        Fault::KillConsumer => {
            let killed = world.consumer.kill().await?;
            format!("consumer killed: {killed}")
        }
        Fault::BlackholeRelayBroker => {
            let hold = HEARTBEAT * 2 + rng.millis(2_000, 4_000);
            world.relays[relay].broker.blackhole();
            tokio::time::sleep(hold).await;
            world.relays[relay].broker.restore();
            format!("relay {relay}'s broker link blackholed for {hold:?}")
        }
        Fault::BlackholeRelayDatabase => {
            let hold = DB_TIMEOUT + rng.millis(2_000, 5_000);
            world.relays[relay].db.blackhole();
            tokio::time::sleep(hold).await;
            world.relays[relay].db.restore();
            format!("relay {relay}'s database link blackholed for {hold:?}")
        }
        Fault::CutConsumerAcks => {
            let hold = rng.millis(1_000, 2_000);
            world.consumer_proxy.blackhole();
            tokio::time::sleep(hold).await;
            world.consumer_proxy.reset();
            world.consumer_proxy.restore();
            format!("consumer's broker link blackholed for {hold:?}, then reset")
        }
    })
}

/// Runs `faults` in a seeded order with seeded gaps; returns the count per kind.
async fn run_schedule(
    world: &mut World,
    mut faults: Vec<Fault>,
    rng: &mut Rng,
    gap: (u64, u64),
) -> Result<BTreeMap<String, usize>> {
    rng.shuffle(&mut faults);
    let started = Instant::now();
    let mut done = BTreeMap::new();
    for fault in faults {
        tokio::time::sleep(rng.millis(gap.0, gap.1)).await;
        let what = inject(world, fault, rng)
            .await
            .with_context(|| format!("injecting {fault:?}"))?;
        eprintln!(
            "chaos {:>6.1}s  {fault:?}: {what}",
            started.elapsed().as_secs_f64()
        );
        *done.entry(format!("{fault:?}")).or_insert(0) += 1;
    }
    Ok(done)
}

/// What the checker found.
#[derive(Debug, Default)]
struct Verdict {
    committed: usize,
    applied_rows: i64,
    /// Events applied more than once, and the extra applications.
    duplicated_events: i64,
    extra_applications: i64,
    missing: usize,
    from_rolled_back: usize,
    unknown_applied: i64,
    order_violations: i64,
    leased: i64,
    pending: i64,
    dead: i64,
    absorbed_by_inbox: i64,
    max_lag: f64,
    uncertain_committed: usize,
    phantom_rows: usize,
}

impl Verdict {
    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut check = |bad: bool, text: String| {
            if bad {
                problems.push(text);
            }
        };
        check(
            self.duplicated_events > 0,
            format!(
                "{} events applied more than once ({} extra applications)",
                self.duplicated_events, self.extra_applications
            ),
        );
        check(
            self.missing > 0,
            format!("{} committed events never applied", self.missing),
        );
        check(
            self.from_rolled_back > 0,
            format!(
                "{} events of rolled-back transactions applied",
                self.from_rolled_back
            ),
        );
        check(
            self.unknown_applied > 0,
            format!(
                "{} applied events no producer committed",
                self.unknown_applied
            ),
        );
        check(
            self.phantom_rows > 0,
            format!("{} outbox rows no producer wrote", self.phantom_rows),
        );
        check(
            self.order_violations > 0,
            format!(
                "{} events applied after a later event of their key",
                self.order_violations
            ),
        );
        check(self.leased > 0, format!("{} rows left leased", self.leased));
        check(
            self.pending > 0 || self.dead > 0,
            format!("backlog {} pending, {} dead", self.pending, self.dead),
        );
        problems
    }
}

/// Compares what the producers committed with the outbox and the consumer's ledger.
async fn check(pool: &PgPool, written: &Written) -> Result<Verdict> {
    let rows: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM outbox_events")
        .fetch_all(pool)
        .await?;
    let rows: HashSet<Uuid> = rows.into_iter().collect();
    let uncertain_committed: Vec<Uuid> = written
        .uncertain
        .iter()
        .filter(|id| rows.contains(id))
        .copied()
        .collect();
    let committed: HashSet<Uuid> = written
        .committed
        .iter()
        .chain(&uncertain_committed)
        .copied()
        .collect();
    let rolled_back: HashSet<Uuid> = written.rolled_back.iter().copied().collect();
    let lost_commits = committed.iter().filter(|id| !rows.contains(id)).count();
    anyhow::ensure!(
        lost_commits == 0,
        "{lost_commits} events whose commit succeeded are not in the outbox"
    );
    let phantom_rows = rows.iter().filter(|id| !committed.contains(id)).count();

    let applied: Vec<(String, i64)> =
        sqlx::query_as("SELECT message_id, count(*) FROM consumer_ledger GROUP BY message_id")
            .fetch_all(pool)
            .await?;
    let mut verdict = Verdict {
        committed: committed.len(),
        uncertain_committed: uncertain_committed.len(),
        phantom_rows,
        ..Verdict::default()
    };
    let mut applied_ids = HashSet::new();
    for (message_id, count) in &applied {
        verdict.applied_rows += count;
        if *count > 1 {
            verdict.duplicated_events += 1;
            verdict.extra_applications += count - 1;
        }
        match message_id.parse::<Uuid>() {
            Ok(id) if committed.contains(&id) => {
                applied_ids.insert(id);
            }
            Ok(id) if rolled_back.contains(&id) => verdict.from_rolled_back += 1,
            _ => verdict.unknown_applied += 1,
        }
    }
    verdict.missing = committed.len() - applied_ids.len();
    // Per key, the applications in ledger order must follow `seq`.
    verdict.order_violations = sqlx::query_scalar(
        "SELECT count(*) FROM (
             SELECT e.seq, lag(e.seq) OVER (PARTITION BY l.ordering_key ORDER BY l.n) AS previous
               FROM consumer_ledger l JOIN outbox_events e ON e.id::text = l.message_id) s
          WHERE previous >= seq",
    )
    .fetch_one(pool)
    .await?;
    (verdict.leased, verdict.pending, verdict.dead) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM outbox_leased_events),
                count(*) FILTER (WHERE status = 'pending'),
                count(*) FILTER (WHERE status = 'dead')
           FROM outbox_event_status",
    )
    .fetch_one(pool)
    .await?;
    verdict.absorbed_by_inbox = sqlx::query_scalar("SELECT count(*) FROM consumer_skipped")
        .fetch_one(pool)
        .await?;
    verdict.max_lag = sqlx::query_scalar(
        "SELECT coalesce(extract(epoch FROM max(first - e.created_at)), 0)::float8
           FROM (SELECT message_id, min(applied_at) AS first FROM consumer_ledger
                  GROUP BY message_id) l
           JOIN outbox_events e ON e.id::text = l.message_id",
    )
    .fetch_one(pool)
    .await?;
    Ok(verdict)
}

/// Waits until nothing is pending and the consumer applied every committed event at least
/// once (or `timeout` passes: the checker then says what is missing).
async fn drain(pool: &PgPool, committed_at_least: usize, timeout: Duration) -> Result<Duration> {
    let started = Instant::now();
    while started.elapsed() < timeout {
        let (pending, applied): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM outbox_event_status WHERE status = 'pending'),
                    (SELECT count(DISTINCT message_id) FROM consumer_ledger)",
        )
        .fetch_one(pool)
        .await
        .unwrap_or((-1, -1));
        if pending == 0 && applied >= committed_at_least as i64 {
            return Ok(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_committed_event_is_applied_once_and_in_order_through_chaos() -> Result<()> {
    let seed = seed();
    eprintln!("chaos seed {seed} (replay with CHAOS_SEED={seed})");
    let mut rng = Rng(seed);
    let mut world = World::start(3, true).await?;
    let supervisor = tokio::spawn(world.consumer.clone().supervise());

    let target = 50_000;
    let producing = tokio::spawn(produce(
        world.pool.clone(),
        8,
        target,
        Duration::from_secs(80),
        25,
        20,
        seed,
    ));
    let mut faults = vec![Fault::KillRelay; 10];
    faults.extend([Fault::RestartBroker; 2]);
    faults.extend([Fault::CrashPostgres, Fault::TerminateRelaySessions]);
    faults.push(if rng.percent(50) {
        Fault::CrashPostgres
    } else {
        Fault::TerminateRelaySessions
    });
    faults.extend([Fault::KillConsumer; 2]);
    faults.extend([
        Fault::BlackholeRelayBroker,
        Fault::BlackholeRelayDatabase,
        Fault::CutConsumerAcks,
        Fault::CutConsumerAcks,
    ]);
    let schedule = run_schedule(&mut world, faults, &mut rng, (500, 2_500)).await;
    let written = producing.await??;
    let injected = schedule?;

    let committed_known = written.committed.len();
    let drained = drain(&world.pool, committed_known, Duration::from_secs(240)).await?;
    world.stop_relays().await?;
    world.consumer.stop.store(true, Ordering::Relaxed);
    supervisor.await??;
    let verdict = check(&world.pool, &written).await?;

    eprintln!("chaos summary (seed {seed}):");
    eprintln!(
        "  events: {} committed ({} of them after an uncertain commit), {} rolled back, {} transactions, {} producer errors",
        verdict.committed,
        verdict.uncertain_committed,
        written.rolled_back.len(),
        written.transactions,
        written.errors
    );
    eprintln!("  faults: {injected:?}");
    eprintln!(
        "  consumer: {} applications, {} duplicates absorbed by the inbox, {} restarts ({} killed)",
        verdict.applied_rows,
        verdict.absorbed_by_inbox,
        world.consumer.exits.load(Ordering::Relaxed),
        world.consumer.kills.load(Ordering::Relaxed)
    );
    eprintln!(
        "  max lag commit → applied: {:.1} s; drained {drained:?} after the producers stopped",
        verdict.max_lag
    );
    eprintln!("  verdict: {verdict:?}");

    assert!(
        verdict.committed >= 50_000,
        "{} committed",
        verdict.committed
    );
    assert!(
        !written.rolled_back.is_empty(),
        "some transactions rolled back"
    );
    assert!(injected.get("KillRelay").copied().unwrap_or(0) >= 10);
    let problems = verdict.problems();
    assert!(problems.is_empty(), "chaos seed {seed}: {problems:#?}");
    Ok(())
}

/// The same checker catches duplicates: without the inbox, redeliveries are applied again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_inbox_the_checker_reports_duplicates() -> Result<()> {
    let seed = seed();
    eprintln!("chaos (no inbox) seed {seed} (replay with CHAOS_SEED={seed})");
    let mut rng = Rng(seed);
    let mut world = World::start(1, false).await?;
    let supervisor = tokio::spawn(world.consumer.clone().supervise());
    let producing = tokio::spawn(produce(
        world.pool.clone(),
        4,
        6_000,
        Duration::from_secs(20),
        5,
        20,
        seed,
    ));
    // Only faults that force redelivery: acks lost, a consumer killed, a relay killed.
    let faults = vec![
        Fault::CutConsumerAcks,
        Fault::CutConsumerAcks,
        Fault::CutConsumerAcks,
        Fault::KillConsumer,
        Fault::KillRelay,
    ];
    let injected = run_schedule(&mut world, faults, &mut rng, (1_500, 3_000)).await?;
    let written = producing.await??;
    drain(
        &world.pool,
        written.committed.len(),
        Duration::from_secs(120),
    )
    .await?;
    world.stop_relays().await?;
    world.consumer.stop.store(true, Ordering::Relaxed);
    supervisor.await??;
    let verdict = check(&world.pool, &written).await?;
    let problems = verdict.problems();
    eprintln!("no inbox: faults {injected:?}; problems found: {problems:#?}");
    assert!(
        verdict.duplicated_events > 0,
        "redeliveries without the inbox must show as duplicates: {verdict:?}"
    );
    assert!(!problems.is_empty(), "the checker must fail this run");
    assert_eq!(
        verdict.missing, 0,
        "nothing is lost, inbox or not: {verdict:?}"
    );
    Ok(())
}

/// The private servers start, survive a crash and a broker restart, and leave nothing
/// behind when dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_servers_restart_and_clean_up() -> Result<()> {
    let pg = PrivatePostgres::start().await?;
    let url = pg.create_database("probe").await?;
    let pool = PgPool::connect(&url).await?;
    sqlx::query("CREATE TABLE t (n int)").execute(&pool).await?;
    sqlx::query("INSERT INTO t VALUES (1)")
        .execute(&pool)
        .await?;
    pg.restart(StopMode::Immediate).await?;
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM t")
        .fetch_one(&pool)
        .await?;
    assert_eq!(n, 1, "a committed row survives a crash");
    let held = pool.acquire().await?;
    assert!(pg.terminate_sessions_of("probe").await? >= 1);
    drop(held);
    pool.close().await;

    let rabbit = PrivateRabbit::start().await?;
    let connect = async || {
        lapin::Connection::connect(&rabbit.amqp_url(), lapin::ConnectionProperties::default()).await
    };
    let connection = connect().await?;
    rabbit.restart_app().await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !connection.status().connected(),
        "a broker restart drops connections"
    );
    connect().await?.close(200, "done".into()).await?;

    let port = (pg.port(), rabbit.port());
    drop(pg);
    drop(rabbit);
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", port.0))
            .await
            .is_err(),
        "postgres stopped on drop"
    );
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", port.1))
            .await
            .is_err(),
        "rabbitmq stopped on drop"
    );
    Ok(())
}
