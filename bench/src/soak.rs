//! `soak`: a production-like run of `--minutes`, relay processes killed on a schedule.
//!
//! `--relays` `outbox-relay run` processes (the binary `resources` uses, `--retention` and
//! `--lease` passed through, JSON logs) publish to this scenario's exchange; a consumer
//! (auto-ack) reads the queue bound to it with `#` and notes every message's id and
//! arrival. `--producers` tasks, each on a connection of its own, write through the library:
//! one-event transactions (`outbox_core::emit`) and three-event ones (`emit_batch`: status
//! changed, assigned, message added), half each, every event on a ticket drawn from `--keys`
//! keys or, for `--hot-share` of the events, from `--hot-keys` hot ones; a key always has the
//! same tenant, so the ordering scope is (tenant, key). `--rollback-share` of the
//! transactions are rolled back after their events were written. The load follows a fixed
//! schedule (from `--seed`), as in `latency`: events are written at `--rate / (1 -
//! --rollback-share)` per second, so that `--rate` of them per second are committed, and a
//! late transaction is taken at once by whichever producer is free. A producer notes each
//! committed event's id, key, commit time and `seq` (read just after the commit), and the ids
//! of the rolled-back ones.
//!
//! Every `--kill-every`, starting half an interval in (so that kills fall between the
//! minute-end samples), one relay process, each in turn, gets SIGKILL, and a replacement
//! with the same flags starts at once. A relay that exits on its own is restarted too and
//! reported. At the end of every minute the pending events, the database's size and the
//! resident set of a relay not killed during that minute are sampled.
//!
//! After the producers stop, the backlog is awaited (`--drain-limit`), then the receipts are
//! checked: committed events never received (lost), rolled-back events received, per-scope
//! order among first deliveries (an event first received after an event of the same scope
//! with a higher `seq`), duplicates. Any loss, delivered rollback or order violation makes
//! `outbox-bench soak` exit non-zero, after printing its report. Linux only (`/proc`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use catalog_types::{CatalogEvent, TicketAssigned, TicketMessageAdded, TicketStatusChanged};
use futures_util::StreamExt;
use outbox_core::{EmitError, NewEvent};
use outbox_relay::foundation::config::DEFAULT_LEASE;
use outbox_relay::foundation::human_duration::HumanDuration;
use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgConnection, PgPool};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::broker::{self, Broker};
use crate::harness;
use crate::latency::Percentiles;
use crate::load::TENANTS;
use crate::resources::{self, LineSink, RelayProcess};
use crate::{Scratch, Server};

/// Flags of `soak`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// How long the producers run, minutes (a row of the report each).
    #[arg(long, default_value_t = 10)]
    pub minutes: u32,
    /// Committed events per second (rolled-back ones come on top).
    #[arg(long, default_value_t = 360.0)]
    pub rate: f64,
    /// Relay processes.
    #[arg(long, default_value_t = 2)]
    pub relays: usize,
    /// SIGKILL one relay process, each in turn, this often (the first half an interval in)
    /// and start a replacement at once; `0s`: never.
    #[arg(long, default_value = "60s")]
    pub kill_every: HumanDuration,
    /// The relays' `--retention`.
    #[arg(long, default_value = "1m")]
    pub retention: HumanDuration,
    /// The relays' `--lease` (default: the relay's own).
    #[arg(long)]
    pub lease: Option<HumanDuration>,
    /// Producer tasks, each on a connection of its own.
    #[arg(long, default_value_t = 4)]
    pub producers: usize,
    /// Ordering keys (tickets), spread over 500 tenants.
    #[arg(long, default_value_t = 2_000)]
    pub keys: usize,
    /// Hot keys, besides `--keys`.
    #[arg(long, default_value_t = 10)]
    pub hot_keys: usize,
    /// Share of the events on the hot keys.
    #[arg(long, default_value_t = 0.2)]
    pub hot_share: f64,
    /// Share of the transactions rolled back.
    #[arg(long, default_value_t = 0.1)]
    pub rollback_share: f64,
    /// Longest wait for the backlog after the producers stop.
    #[arg(long, default_value = "2m")]
    pub drain_limit: HumanDuration,
    /// Seed of the load's plan (transaction sizes, keys, rollbacks).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The relay binary (default: `outbox-relay` next to this program).
    #[arg(long)]
    pub relay_binary: Option<PathBuf>,
}

/// One minute of the run (events by commit time; samples at the minute's end).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Minute {
    /// 1 for the first minute.
    pub minute: u32,
    /// Events committed.
    pub committed: usize,
    /// Events rolled back.
    pub rolled_back: usize,
    /// Of `committed`, events received at least once.
    pub received: usize,
    /// Commit returned → first receipt, ms.
    pub latency_ms: Percentiles,
    /// Events pending at the minute's end (`outbox_event_status`).
    pub pending_at_end: i64,
    /// Rows of `outbox_events` at the minute's end (what `--retention` leaves).
    pub rows_at_end: i64,
    /// Rows of `outbox_key_locks` at the minute's end.
    pub key_locks_at_end: i64,
    /// `pg_database_size` at the minute's end, MiB.
    pub database_mib: f64,
    /// `VmRSS` of `rss_relay` at the minute's end, MiB.
    pub rss_mib: Option<f64>,
    /// The relay sampled: one not killed during the minute when there is one.
    pub rss_relay: String,
    /// Relay processes killed during the minute.
    pub kills: usize,
    /// Of `committed`, events received more than once.
    pub redelivered: usize,
    /// How late a producer started a transaction due in this minute, at worst, ms.
    pub max_schedule_lag_ms: f64,
}

/// One SIGKILL.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Kill {
    /// Seconds into the run.
    pub at_seconds: f64,
    /// The relay slot (`relay-1`, …).
    pub relay: String,
    /// The killed process.
    pub pid: u32,
    /// How it ended.
    pub status: String,
    /// The replacement started at once.
    pub replacement_pid: u32,
}

/// A relay process that ended without being killed (restarted at once).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Exit {
    /// Seconds into the run.
    pub at_seconds: f64,
    /// The relay slot.
    pub relay: String,
    /// The process that ended.
    pub pid: u32,
    /// How it ended.
    pub status: String,
    /// Its last log lines.
    pub log_tail: Vec<String>,
    /// The replacement.
    pub replacement_pid: u32,
}

/// An event first received after a later event of its scope was.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Violation {
    /// The scope's tenant.
    pub tenant_id: Uuid,
    /// The scope's ordering key.
    pub ordering_key: String,
    /// The event first received too late.
    pub id: Uuid,
    /// Its `seq`.
    pub seq: i64,
    /// The later event first received before it.
    pub overtaken_by: Uuid,
    /// That event's `seq`.
    pub overtaken_by_seq: i64,
}

/// Lines the relays logged with the same level and message.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogEntry {
    /// `INFO`, `WARN`, `ERROR`, … (`TEXT` for a line that is not JSON: a panic).
    pub level: String,
    /// The message, without its fields.
    pub message: String,
    /// How many lines.
    pub count: u64,
    /// The first such line, whole, after the relay slot and pid.
    pub example: String,
}

/// The checks after the drain.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Totals {
    /// Events committed.
    pub committed: usize,
    /// Committed events per second, first due time to the last commit.
    pub achieved_rate: f64,
    /// Scheduled transactions the producers had not started when they were stopped,
    /// [`PRODUCER_GRACE`] after their schedule ended (the database could not take the rate).
    #[serde(default)]
    pub unwritten_transactions: usize,
    /// Events rolled back.
    pub rolled_back: usize,
    /// Committed events received at least once.
    pub received: usize,
    /// Messages received in all (warm-up excluded).
    pub receipts: usize,
    /// Committed events never received.
    pub lost: usize,
    /// Rolled-back events received (must be 0).
    pub rolled_back_delivered: usize,
    /// Events first received after a higher-`seq` event of their scope.
    pub order_violations: usize,
    /// Receipts beyond the first of an event.
    pub duplicates: usize,
    /// Events received more than once.
    pub redelivered_events: usize,
    /// Messages whose id is no event of this run.
    pub unknown_messages: usize,
    /// Messages without a message id.
    pub messages_without_id: usize,
    /// Committed events whose `seq` could not be read after the commit (left out of the
    /// order check).
    pub seq_unknown: usize,
    /// Whether every committed event was received and nothing was pending within the limit.
    pub drained: bool,
    /// From the producers' end to the drain, seconds.
    pub drain_seconds: f64,
    /// `pending` rows after the drain.
    pub pending_after_drain: i64,
    /// `dead` rows after the drain.
    pub dead_after_drain: i64,
    /// SIGKILLs sent.
    pub kills: usize,
    /// Relay processes that ended on their own.
    pub unexpected_exits: usize,
    /// `WARN` lines of the relays.
    pub relay_warnings: u64,
    /// `ERROR` lines (and lines that are not JSON) of the relays.
    pub relay_errors: u64,
}

/// The result of `soak`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// Minutes of load.
    pub minutes: u32,
    /// Committed events per second asked for.
    pub target_rate: f64,
    /// Relay processes.
    pub relays: usize,
    /// `--kill-every` (`0s`: none).
    pub kill_every: String,
    /// The relays' `--retention`.
    pub retention: String,
    /// The relays' `--lease`.
    pub lease: String,
    /// Producer connections.
    pub producers: usize,
    /// Ordering keys besides the hot ones.
    pub keys: usize,
    /// Hot keys.
    pub hot_keys: usize,
    /// Share of the events on hot keys.
    pub hot_share: f64,
    /// Share of the transactions rolled back.
    pub rollback_share: f64,
    /// The relay binary.
    pub relay_binary: String,
    /// One row per minute.
    pub per_minute: Vec<Minute>,
    /// The SIGKILLs.
    pub kills: Vec<Kill>,
    /// Relays that ended on their own.
    pub unexpected_exits: Vec<Exit>,
    /// The checks after the drain.
    pub totals: Totals,
    /// The first order violations.
    pub order_violation_examples: Vec<Violation>,
    /// How each relay left at the end (SIGTERM).
    pub relay_stops: Vec<String>,
    /// What the relays logged, by level and message, most frequent first.
    pub relay_log: Vec<LogEntry>,
}

/// Runs `soak` in a database, exchange and queue of its own.
pub async fn run(args: &Args, server: &Server, amqp_url: &str, keep: bool) -> Result<Report> {
    ensure!(
        args.minutes >= 1 && args.rate > 0.0 && args.relays >= 1 && args.producers >= 1,
        "--minutes, --rate, --relays and --producers must be above zero"
    );
    ensure!(
        args.keys >= 1 && (args.hot_keys >= 1 || args.hot_share == 0.0),
        "--keys must be at least 1, and --hot-keys too unless --hot-share is 0"
    );
    ensure!(
        (0.0..=1.0).contains(&args.hot_share) && (0.0..1.0).contains(&args.rollback_share),
        "--hot-share must be within 0..=1 and --rollback-share within 0..1"
    );
    let binary = match &args.relay_binary {
        Some(path) => path.clone(),
        None => resources::relay_binary()?,
    };
    harness::with_scratch(server, "_soak", keep, async |scratch| {
        broker::with_broker(amqp_url, "soak", async |broker: &Broker| {
            measure(args, scratch, amqp_url, broker, &binary).await
        })
        .await
    })
    .await
}

/// Fails (exit status non-zero) when the run lost an event, delivered a rolled-back one or
/// broke a scope's order, or its producers could not keep to the schedule.
pub fn verdict(report: &Report) -> Result<()> {
    let t = &report.totals;
    ensure!(
        t.unwritten_transactions == 0,
        "soak failed: the producers fell behind; {} scheduled transactions were not written \
         {PRODUCER_GRACE:?} after the schedule ended (the report above shows where it slowed)",
        t.unwritten_transactions
    );
    ensure!(
        t.lost == 0 && t.rolled_back_delivered == 0 && t.order_violations == 0,
        "soak failed: {} committed events lost, {} rolled-back events delivered, {} order violations",
        t.lost,
        t.rolled_back_delivered,
        t.order_violations
    );
    Ok(())
}

/// Warm-up events (relays connected, consumer receiving), not counted.
const WARM_UP: usize = 10;

/// How long the warm-up may take.
const WARM_UP_LIMIT: Duration = Duration::from_secs(60);

/// How far behind their schedule the producers may finish: then they stop, and what they
/// had not written counts against the run (the report is still made).
const PRODUCER_GRACE: Duration = Duration::from_secs(120);

/// How long the receipts are still collected after the drain (late duplicates).
const QUIET: Duration = Duration::from_secs(2);

/// How often the relays are checked for an exit of their own.
const TICK: Duration = Duration::from_millis(250);

/// The longest one monitoring query may take.
const QUERY_LIMIT: Duration = Duration::from_secs(15);

/// Relay processes that may end on their own before the run gives up (a crash loop).
const MAX_UNEXPECTED_EXITS: usize = 20;

async fn measure(
    args: &Args,
    scratch: &Scratch,
    amqp_url: &str,
    broker: &Broker,
    binary: &Path,
) -> Result<Report> {
    let (_channel, deliveries) = broker.consume("outbox-bench-soak").await?;
    let receipts: Receipts = Arc::new(Mutex::new(Vec::new()));
    let stop = CancellationToken::new();
    let consumer = tokio::spawn(consume(deliveries, Arc::clone(&receipts), stop.clone()));

    let mut flags = resources::relay_args(&scratch.url, amqp_url, &broker.exchange);
    flags.extend(["--log-format".to_owned(), "json".to_owned()]);
    flags.extend(["--retention".to_owned(), args.retention.to_string()]);
    if let Some(lease) = args.lease {
        flags.extend(["--lease".to_owned(), lease.to_string()]);
    }
    eprintln!(
        "  relays: {} × {} {}",
        args.relays,
        binary.display(),
        flags.join(" ")
    );
    // The guard: every relay process is killed when `fleet` is dropped (kill_on_drop), also
    // when this future is (an error above us, Ctrl-C); here they get SIGTERM first.
    let mut fleet = Fleet::start(binary, flags, args.relays)?;
    let outcome = drive(args, scratch, &mut fleet, &receipts, &consumer).await;
    stop.cancel();
    let relay_stops = fleet.stop_all().await;
    let consumed = consumer.await;
    let run = outcome?;
    let without_id = consumed??;
    let receipts = std::mem::take(&mut *receipts.lock().unwrap_or_else(PoisonError::into_inner));
    let relay_log = fleet
        .log
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .entries();
    let report = analyse(
        args,
        binary,
        run,
        &receipts,
        without_id,
        relay_stops,
        relay_log,
    );
    let t = &report.totals;
    eprintln!(
        "  soak: {} committed ({:.0}/s), {} rolled back; {} lost, {} rolled back delivered, {} order violations, {} duplicates; {} kills, {} unexpected exits",
        t.committed,
        t.achieved_rate,
        t.rolled_back,
        t.lost,
        t.rolled_back_delivered,
        t.order_violations,
        t.duplicates,
        t.kills,
        t.unexpected_exits
    );
    Ok(report)
}

/// What the run hands to the analysis.
struct RunData {
    start: Instant,
    committed: Vec<Committed>,
    rolled_back: Vec<(Uuid, Instant)>,
    lag_ms: Vec<f64>,
    samples: Vec<Sample>,
    kills: Vec<(u32, Kill)>,
    exits: Vec<Exit>,
    warm_up: HashSet<Uuid>,
    keys: Arc<Keys>,
    drained: bool,
    drain_seconds: f64,
    pending_after_drain: i64,
    dead_after_drain: i64,
    elapsed: f64,
    unwritten: usize,
}

/// A minute-end sample.
struct Sample {
    pending: i64,
    rows: i64,
    key_locks: i64,
    database_bytes: i64,
    rss_kib: Option<u64>,
    relay: String,
}

async fn drive(
    args: &Args,
    scratch: &Scratch,
    fleet: &mut Fleet,
    receipts: &Receipts,
    consumer: &JoinHandle<Result<usize>>,
) -> Result<RunData> {
    let options: PgConnectOptions = scratch.url.parse().context("the scratch database's URL")?;
    let mut pools = Vec::with_capacity(args.producers);
    for _ in 0..args.producers {
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .connect_with(options.clone())
            .await
            .context("connecting a producer")?;
        pools.push(pool);
    }
    let first = pools.first().context("no producer")?.clone();
    let mut rng = Rng(args.seed);
    let keys = Arc::new(Keys::new(args.keys, args.hot_keys, &mut rng));
    let warm_up = warm_up(&first, fleet, receipts).await?;

    let plan = plan(args, &mut rng);
    eprintln!(
        "  {} transactions planned over {} min; warm-up done",
        plan.len(),
        args.minutes
    );
    let start = tokio::time::Instant::now() + Duration::from_millis(100);
    let start_std = start.into_std();
    let stop_at = start + Duration::from_secs(60) * args.minutes + PRODUCER_GRACE;
    let shared = Arc::new(Shared {
        plan,
        keys: Arc::clone(&keys),
        start,
        stop_at,
        minutes: args.minutes,
        next: AtomicUsize::new(0),
        skipped: AtomicUsize::new(0),
    });
    let mut producers: Vec<Option<JoinHandle<Result<Record>>>> = pools
        .into_iter()
        .map(|pool| {
            let shared = Arc::clone(&shared);
            Some(tokio::spawn(async move {
                let record = producer(&pool, &shared).await;
                pool.close().await;
                record
            }))
        })
        .collect();

    let minute = Duration::from_secs(60);
    let end = start + minute * args.minutes;
    let kill_every = args.kill_every.0;
    let mut next_kill = (!kill_every.is_zero()).then(|| start + kill_every / 2);
    let mut victim = 0;
    let mut samples = Vec::new();
    let mut kills: Vec<(u32, Kill)> = Vec::new();
    let mut exits = Vec::new();
    let mut records = Vec::new();
    loop {
        let now = tokio::time::Instant::now();
        let sample_at = (samples.len() < args.minutes as usize)
            .then(|| start + minute * (samples.len() as u32 + 1));
        let wake = [Some(now + TICK), next_kill, sample_at]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(now + TICK);
        tokio::time::sleep_until(wake).await;
        exits.extend(fleet.restart_exited(start_std)?);
        ensure!(
            !consumer.is_finished(),
            "the consumer stopped during the run"
        );
        let now = tokio::time::Instant::now();
        if let Some(at) = next_kill.filter(|at| now >= *at) {
            if at < end {
                let minute_of = ((at - start).as_secs() / 60) as u32;
                let kill = fleet.kill_and_replace(victim, start_std).await?;
                eprintln!(
                    "  {:.0} s: SIGKILL {} (pid {}), replaced by pid {}",
                    kill.at_seconds, kill.relay, kill.pid, kill.replacement_pid
                );
                kills.push((minute_of, kill));
                victim = (victim + 1) % fleet.slots.len();
                next_kill = Some(at + kill_every);
            } else {
                next_kill = None;
            }
        }
        if let Some(at) = sample_at.filter(|at| now >= *at) {
            let m = samples.len() as u32;
            let killed: HashSet<&str> = kills
                .iter()
                .filter(|(k, _)| *k == m)
                .map(|(_, kill)| kill.relay.as_str())
                .collect();
            let sample = sample(&scratch.pool, fleet, &killed).await?;
            eprintln!(
                "  minute {}: {} pending, {} rows, {} key locks, database {:.1} MiB, {} RSS {} (sampled {:.1} s late)",
                m + 1,
                sample.pending,
                sample.rows,
                sample.key_locks,
                sample.database_bytes as f64 / MIB,
                sample.relay,
                sample.rss_kib.map_or("?".to_owned(), |kib| format!(
                    "{:.1} MiB",
                    kib as f64 / 1024.0
                )),
                (tokio::time::Instant::now() - at).as_secs_f64()
            );
            samples.push(sample);
        }
        for slot in &mut producers {
            if slot.as_ref().is_some_and(JoinHandle::is_finished)
                && let Some(handle) = slot.take()
            {
                records.push(handle.await.context("a producer panicked")??);
            }
        }
        if samples.len() == args.minutes as usize && producers.iter().all(Option::is_none) {
            break;
        }
    }
    let unwritten = shared
        .plan
        .len()
        .saturating_sub(shared.next.load(Ordering::Relaxed))
        + shared.skipped.load(Ordering::Relaxed);
    if unwritten > 0 {
        eprintln!(
            "  the producers fell behind: {unwritten} scheduled transactions not written {PRODUCER_GRACE:?} after the schedule ended"
        );
    }

    let mut committed = Vec::new();
    let mut rolled_back = Vec::new();
    let mut lag_ms = vec![0.0_f64; args.minutes as usize];
    for record in records {
        committed.extend(record.committed);
        rolled_back.extend(record.rolled_back);
        for (worst, lag) in lag_ms.iter_mut().zip(record.lag_ms) {
            *worst = worst.max(lag);
        }
    }
    let elapsed = committed
        .iter()
        .map(|c| c.at)
        .max()
        .map(|last| last.saturating_duration_since(start_std).as_secs_f64())
        .unwrap_or_default();

    // The drain: every committed event received and nothing pending, or the limit.
    eprintln!("  producers done; waiting for the backlog");
    let drain_started = Instant::now();
    let mut missing: HashSet<Uuid> = committed.iter().map(|c| c.id).collect();
    let mut cursor = 0;
    let drained = loop {
        {
            let seen = receipts.lock().unwrap_or_else(PoisonError::into_inner);
            for (id, _) in seen.get(cursor..).unwrap_or_default() {
                missing.remove(id);
            }
            cursor = seen.len();
        }
        if missing.is_empty() && count_status(&scratch.pool, "pending").await? == 0 {
            break true;
        }
        if drain_started.elapsed() >= args.drain_limit.0 {
            break false;
        }
        exits.extend(fleet.restart_exited(start_std)?);
        tokio::time::sleep(TICK).await;
    };
    let drain_seconds = drain_started.elapsed().as_secs_f64();
    tokio::time::sleep(QUIET).await;
    let pending_after_drain = count_status(&scratch.pool, "pending").await?;
    let dead_after_drain = count_status(&scratch.pool, "dead").await?;
    eprintln!(
        "  {} after {drain_seconds:.1} s: {} committed events not received, {pending_after_drain} pending, {dead_after_drain} dead",
        if drained { "drained" } else { "not drained" },
        missing.len()
    );
    Ok(RunData {
        start: start_std,
        committed,
        rolled_back,
        lag_ms,
        samples,
        kills,
        exits,
        warm_up,
        keys,
        drained,
        drain_seconds,
        pending_after_drain,
        dead_after_drain,
        elapsed,
        unwritten,
    })
}

/// Emits [`WARM_UP`] events on a ticket of their own and waits until all are received.
async fn warm_up(pool: &PgPool, fleet: &mut Fleet, receipts: &Receipts) -> Result<HashSet<Uuid>> {
    let (tenant, ticket) = (Uuid::new_v4(), Uuid::new_v4());
    let mut ids = HashSet::new();
    for _ in 0..WARM_UP {
        let mut tx = pool.begin().await?;
        ids.insert(emit_one(&mut tx, 0, tenant, ticket).await?);
        tx.commit().await?;
    }
    let deadline = Instant::now() + WARM_UP_LIMIT;
    loop {
        if let Some(exit) = fleet.exited()? {
            bail!("a relay exited during the warm-up: {exit}");
        }
        let received = {
            let seen = receipts.lock().unwrap_or_else(PoisonError::into_inner);
            seen.iter().filter(|(id, _)| ids.contains(id)).count()
        };
        if received >= WARM_UP {
            return Ok(ids);
        }
        ensure!(
            Instant::now() < deadline,
            "the consumer received {received} of {WARM_UP} warm-up events in {WARM_UP_LIMIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The minute-end sample: pending rows, database size, the RSS of a relay not in `killed`
/// (else of the one running longest).
async fn sample(pool: &PgPool, fleet: &Fleet, killed: &HashSet<&str>) -> Result<Sample> {
    let pending = count_status(pool, "pending").await?;
    let (rows, key_locks, database_bytes): (i64, i64, i64) = tokio::time::timeout(
        QUERY_LIMIT,
        sqlx::query_as(
            "SELECT (SELECT count(*) FROM outbox_events), (SELECT count(*) FROM outbox_key_locks),
                    pg_database_size(current_database())",
        )
        .fetch_one(pool),
    )
    .await
    .context("sampling the database took too long")??;
    let slot = fleet
        .slots
        .iter()
        .find(|slot| !killed.contains(slot.name.as_str()))
        .or_else(|| fleet.slots.iter().min_by_key(|slot| slot.started))
        .context("no relay")?;
    let restarted = if killed.contains(slot.name.as_str()) {
        ", restarted this minute"
    } else {
        ""
    };
    Ok(Sample {
        pending,
        rows,
        key_locks,
        database_bytes,
        rss_kib: resources::status_kib(slot.process.pid, "VmRSS:").ok(),
        relay: format!("{} (pid {}{restarted})", slot.name, slot.process.pid),
    })
}

/// `count(*)` of the rows in `status`.
async fn count_status(pool: &PgPool, status: &str) -> Result<i64> {
    tokio::time::timeout(
        QUERY_LIMIT,
        sqlx::query_scalar("SELECT count(*) FROM outbox_event_status WHERE status = $1")
            .bind(status)
            .fetch_one(pool),
    )
    .await
    .with_context(|| format!("counting the {status} events took too long"))?
    .with_context(|| format!("counting the {status} events"))
}

// ---------------------------------------------------------------------------------------
// The load.

/// A small deterministic generator (SplitMix64): the plan is the same for the same seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..1`.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1_u64 << 53) as f64
    }

    /// Uniform in `0..n` (`n` ≥ 1).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn uuid(&mut self) -> Uuid {
        Uuid::from_u64_pair(self.next(), self.next())
    }
}

/// The tickets: the ordinary keys, then the hot ones; each with its tenant for good.
struct Keys {
    tickets: Vec<(Uuid, Uuid)>,
}

impl Keys {
    fn new(ordinary: usize, hot: usize, rng: &mut Rng) -> Keys {
        let tenants: Vec<Uuid> = (0..TENANTS).map(|_| rng.uuid()).collect();
        let tickets = (0..ordinary + hot)
            .map(|k| {
                let tenant = tenants.get(k % tenants.len()).copied().unwrap_or_default();
                (tenant, rng.uuid())
            })
            .collect();
        Keys { tickets }
    }

    /// (tenant, ticket) of key `k`.
    fn get(&self, k: u32) -> (Uuid, Uuid) {
        self.tickets.get(k as usize).copied().unwrap_or_default()
    }
}

/// A key of `ordinary + hot` (the hot ones last), a hot one with probability `hot_share`.
fn pick(rng: &mut Rng, ordinary: usize, hot: usize, hot_share: f64) -> u32 {
    let k = if hot > 0 && rng.unit() < hot_share {
        ordinary + rng.below(hot)
    } else {
        rng.below(ordinary)
    };
    k as u32
}

/// One planned transaction.
#[derive(Debug, Clone, Copy)]
struct Planned {
    /// Due this long after the start.
    due: Duration,
    /// The events' keys (`len` of them).
    keys: [u32; 3],
    len: u8,
    /// Of a one-event transaction: which event type.
    kind: u8,
    rollback: bool,
}

/// Transactions over `--minutes`, written events at `rate / (1 - rollback_share)` per
/// second: transaction *n* is due when the events before it are.
fn plan(args: &Args, rng: &mut Rng) -> Vec<Planned> {
    let seconds = f64::from(args.minutes) * 60.0;
    let written_rate = args.rate / (1.0 - args.rollback_share);
    let mut written = 0_u64;
    let mut plan = Vec::new();
    loop {
        let due = written as f64 / written_rate;
        if due >= seconds {
            return plan;
        }
        let len: u8 = if rng.unit() < 0.5 { 1 } else { 3 };
        let rollback = rng.unit() < args.rollback_share;
        let mut chosen = [0_u32; 3];
        for key in chosen.iter_mut().take(len.into()) {
            *key = pick(rng, args.keys, args.hot_keys, args.hot_share);
        }
        plan.push(Planned {
            due: Duration::from_secs_f64(due),
            keys: chosen,
            len,
            kind: rng.below(3) as u8,
            rollback,
        });
        written += u64::from(len);
    }
}

/// What the producers share.
struct Shared {
    plan: Vec<Planned>,
    keys: Arc<Keys>,
    start: tokio::time::Instant,
    /// When the producers stop, written or not ([`PRODUCER_GRACE`] after the schedule).
    stop_at: tokio::time::Instant,
    minutes: u32,
    next: AtomicUsize,
    /// Transactions taken from the plan but not written (the producer was stopped).
    skipped: AtomicUsize,
}

/// A committed event.
#[derive(Debug, Clone, Copy)]
struct Committed {
    id: Uuid,
    key: u32,
    seq: Option<i64>,
    at: Instant,
}

/// One producer's notes.
#[derive(Default)]
struct Record {
    committed: Vec<Committed>,
    rolled_back: Vec<(Uuid, Instant)>,
    /// Worst lag behind the schedule per minute, ms.
    lag_ms: Vec<f64>,
}

async fn producer(pool: &PgPool, shared: &Shared) -> Result<Record> {
    let mut record = Record {
        lag_ms: vec![0.0; shared.minutes as usize],
        ..Record::default()
    };
    loop {
        let n = shared.next.fetch_add(1, Ordering::Relaxed);
        let Some(planned) = shared.plan.get(n) else {
            return Ok(record);
        };
        if tokio::time::Instant::now() >= shared.stop_at {
            shared.skipped.fetch_add(1, Ordering::Relaxed);
            return Ok(record);
        }
        let due = shared.start + planned.due;
        tokio::time::sleep_until(due).await;
        let minute = ((planned.due.as_secs() / 60) as usize).min(record.lag_ms.len() - 1);
        if let Some(worst) = record.lag_ms.get_mut(minute) {
            *worst = worst.max(due.elapsed().as_secs_f64() * 1e3);
        }
        let keys = planned.keys.get(..planned.len.into()).unwrap_or_default();
        let mut tx = pool.begin().await?;
        let ids = if let [key] = keys {
            let (tenant, ticket) = shared.keys.get(*key);
            vec![emit_one(&mut tx, planned.kind, tenant, ticket).await?]
        } else {
            let events = keys
                .iter()
                .enumerate()
                .map(|(kind, key)| {
                    let (tenant, ticket) = shared.keys.get(*key);
                    new_event(kind as u8, tenant, ticket)
                })
                .collect::<Result<Vec<_>, _>>()?;
            outbox_core::emit_batch(&mut tx, &events)
                .await
                .context("emitting a batch")?
        };
        if planned.rollback {
            tx.rollback().await?;
            let at = Instant::now();
            record
                .rolled_back
                .extend(ids.into_iter().map(|id| (id, at)));
            continue;
        }
        tx.commit().await?;
        let at = Instant::now();
        let seqs: HashMap<Uuid, i64> =
            sqlx::query_as("SELECT id, seq FROM outbox_events WHERE id = ANY($1)")
                .bind(&ids)
                .fetch_all(pool)
                .await
                .context("reading the seq of committed events")?
                .into_iter()
                .collect();
        record
            .committed
            .extend(ids.iter().zip(keys).map(|(id, key)| Committed {
                id: *id,
                key: *key,
                seq: seqs.get(id).copied(),
                at,
            }));
    }
}

fn status_changed(tenant_id: Uuid, ticket_id: Uuid) -> TicketStatusChanged {
    TicketStatusChanged {
        tenant_id,
        ticket_id,
        changed_at: chrono::Utc::now(),
        ..TicketStatusChanged::example()
    }
}

fn assigned(tenant_id: Uuid, ticket_id: Uuid) -> TicketAssigned {
    TicketAssigned {
        tenant_id,
        ticket_id,
        assigned_at: chrono::Utc::now(),
        ..TicketAssigned::example()
    }
}

fn message_added(tenant_id: Uuid, ticket_id: Uuid) -> TicketMessageAdded {
    TicketMessageAdded {
        tenant_id,
        ticket_id,
        message_id: Uuid::new_v4(),
        created_at: chrono::Utc::now(),
        ..TicketMessageAdded::example()
    }
}

/// One event of type `kind` (status changed, assigned, message added) through `emit`.
async fn emit_one(conn: &mut PgConnection, kind: u8, tenant: Uuid, ticket: Uuid) -> Result<Uuid> {
    let id = match kind % 3 {
        0 => outbox_core::emit(conn, &status_changed(tenant, ticket)).await,
        1 => outbox_core::emit(conn, &assigned(tenant, ticket)).await,
        _ => outbox_core::emit(conn, &message_added(tenant, ticket)).await,
    };
    id.context("emitting an event")
}

/// An event of type `kind` for `emit_batch`.
fn new_event(kind: u8, tenant: Uuid, ticket: Uuid) -> Result<NewEvent, EmitError> {
    match kind % 3 {
        0 => NewEvent::new(&status_changed(tenant, ticket)),
        1 => NewEvent::new(&assigned(tenant, ticket)),
        _ => NewEvent::new(&message_added(tenant, ticket)),
    }
}

// ---------------------------------------------------------------------------------------
// The consumer.

/// (message id, arrival) in arrival order.
type Receipts = Arc<Mutex<Vec<(Uuid, Instant)>>>;

/// Receives until `stop`, noting every message by its id; returns how many had none.
async fn consume(
    mut deliveries: lapin::Consumer,
    receipts: Receipts,
    stop: CancellationToken,
) -> Result<usize> {
    let mut without_id = 0;
    loop {
        let delivery = tokio::select! {
            delivery = deliveries.next() => delivery,
            () = stop.cancelled() => return Ok(without_id),
        };
        let Some(delivery) = delivery else {
            bail!("the benchmark queue's consumer was cancelled")
        };
        let delivery = delivery.context("receiving from the benchmark queue")?;
        let at = Instant::now();
        match delivery
            .properties
            .message_id()
            .as_ref()
            .and_then(|id| Uuid::parse_str(id.as_str()).ok())
        {
            Some(id) => receipts
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push((id, at)),
            None => without_id += 1,
        }
    }
}

// ---------------------------------------------------------------------------------------
// The relay processes.

/// One relay slot: its current process.
struct Slot {
    name: String,
    process: RelayProcess,
    started: Instant,
}

/// The relay processes, all killed when dropped.
struct Fleet {
    binary: PathBuf,
    flags: Vec<String>,
    slots: Vec<Slot>,
    log: Arc<Mutex<RelayLog>>,
    unexpected: usize,
}

impl Fleet {
    fn start(binary: &Path, flags: Vec<String>, count: usize) -> Result<Fleet> {
        let mut fleet = Fleet {
            binary: binary.to_owned(),
            flags,
            slots: Vec::with_capacity(count),
            log: Arc::new(Mutex::new(RelayLog::default())),
            unexpected: 0,
        };
        for n in 1..=count {
            let name = format!("relay-{n}");
            let process = fleet.spawn(&name)?;
            fleet.slots.push(Slot {
                name,
                process,
                started: Instant::now(),
            });
        }
        Ok(fleet)
    }

    fn spawn(&self, name: &str) -> Result<RelayProcess> {
        let log = Arc::clone(&self.log);
        let label = Arc::new(Mutex::new(String::new()));
        let sink_label = Arc::clone(&label);
        let sink: LineSink = Arc::new(move |line: &str| {
            let label = sink_label.lock().unwrap_or_else(PoisonError::into_inner);
            log.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .record(&label, line);
        });
        let process = RelayProcess::spawn(&self.binary, &self.flags, Some(sink))?;
        *label.lock().unwrap_or_else(PoisonError::into_inner) =
            format!("{name} pid {}", process.pid);
        Ok(process)
    }

    /// The first relay that has exited, described with its log (for the warm-up).
    fn exited(&mut self) -> Result<Option<String>> {
        for slot in &mut self.slots {
            if let Some(status) = slot.process.child.try_wait()? {
                return Ok(Some(format!(
                    "{} (pid {}) {status}; its last log lines:\n{}",
                    slot.name,
                    slot.process.pid,
                    slot.process.log_tail().join("\n")
                )));
            }
        }
        Ok(None)
    }

    /// Restarts every relay that has exited on its own.
    fn restart_exited(&mut self, start: Instant) -> Result<Vec<Exit>> {
        let mut exits = Vec::new();
        for i in 0..self.slots.len() {
            let Some(slot) = self.slots.get_mut(i) else {
                continue;
            };
            let Some(status) = slot.process.child.try_wait()? else {
                continue;
            };
            let (name, pid, log_tail) =
                (slot.name.clone(), slot.process.pid, slot.process.log_tail());
            self.unexpected += 1;
            ensure!(
                self.unexpected <= MAX_UNEXPECTED_EXITS,
                "{} relay processes ended on their own; the last, {name} (pid {pid}), {status}:\n{}",
                self.unexpected,
                log_tail.join("\n")
            );
            let replacement = self.spawn(&name)?;
            let replacement_pid = replacement.pid;
            if let Some(slot) = self.slots.get_mut(i) {
                slot.process = replacement;
                slot.started = Instant::now();
            }
            eprintln!(
                "  {name} (pid {pid}) ended on its own: {status}; restarted as pid {replacement_pid}"
            );
            exits.push(Exit {
                at_seconds: start.elapsed().as_secs_f64(),
                relay: name,
                pid,
                status: status.to_string(),
                log_tail,
                replacement_pid,
            });
        }
        Ok(exits)
    }

    /// SIGKILL to slot `i`'s process, and a replacement started at once.
    async fn kill_and_replace(&mut self, i: usize, start: Instant) -> Result<Kill> {
        let slot = self.slots.get_mut(i).context("no such relay")?;
        let (name, pid) = (slot.name.clone(), slot.process.pid);
        let at_seconds = start.elapsed().as_secs_f64();
        let status = slot.process.kill().await?;
        let replacement = self.spawn(&name)?;
        let replacement_pid = replacement.pid;
        let slot = self.slots.get_mut(i).context("no such relay")?;
        slot.process = replacement;
        slot.started = Instant::now();
        Ok(Kill {
            at_seconds,
            relay: name,
            pid,
            status: status.to_string(),
            replacement_pid,
        })
    }

    /// SIGTERM to every relay at once; how each left.
    async fn stop_all(&mut self) -> Vec<String> {
        let stops = self.slots.iter_mut().map(|slot| async move {
            let (name, pid) = (slot.name.clone(), slot.process.pid);
            match slot.process.stop().await {
                Ok(()) => format!("{name} (pid {pid}): clean exit after SIGTERM"),
                Err(error) => {
                    let error = slot.process.explain(error);
                    eprintln!("  {name} (pid {pid}) did not stop cleanly: {error:#}");
                    format!("{name} (pid {pid}): {error:#}")
                }
            }
        });
        futures_util::future::join_all(stops).await
    }
}

/// What the relays logged, by level and message.
#[derive(Default)]
struct RelayLog {
    entries: BTreeMap<(String, String), LogEntry>,
    overflow: u64,
}

/// Distinct (level, message) pairs kept; the others are only counted.
const LOG_ENTRIES: usize = 200;

impl RelayLog {
    fn record(&mut self, label: &str, line: &str) {
        let (level, message) = match serde_json::from_str::<serde_json::Value>(line) {
            Ok(value) => {
                let text = |key: &str| value.get(key).and_then(|v| v.as_str()).map(str::to_owned);
                (
                    text("level").unwrap_or_else(|| "?".to_owned()),
                    text("message")
                        .or_else(|| {
                            value
                                .pointer("/fields/message")
                                .and_then(|v| v.as_str())
                                .map(str::to_owned)
                        })
                        .unwrap_or_default(),
                )
            }
            Err(_) => ("TEXT".to_owned(), line.chars().take(160).collect()),
        };
        let key = (level, message);
        if let Some(entry) = self.entries.get_mut(&key) {
            entry.count += 1;
        } else if self.entries.len() < LOG_ENTRIES {
            let example: String = format!("{label}: {line}").chars().take(800).collect();
            let (level, message) = key.clone();
            self.entries.insert(
                key,
                LogEntry {
                    level,
                    message,
                    count: 1,
                    example,
                },
            );
        } else {
            self.overflow += 1;
        }
    }

    /// Most frequent first.
    fn entries(&self) -> Vec<LogEntry> {
        let mut entries: Vec<LogEntry> = self.entries.values().cloned().collect();
        if self.overflow > 0 {
            entries.push(LogEntry {
                level: "?".to_owned(),
                message: "(other messages, not told apart)".to_owned(),
                count: self.overflow,
                example: String::new(),
            });
        }
        entries.sort_by_key(|e| std::cmp::Reverse(e.count));
        entries
    }
}

fn is_error(level: &str) -> bool {
    matches!(level, "ERROR" | "TEXT")
}

// ---------------------------------------------------------------------------------------
// The analysis.

const MIB: f64 = 1024.0 * 1024.0;

/// Order violations kept as examples.
const EXAMPLES: usize = 10;

fn analyse(
    args: &Args,
    binary: &Path,
    run: RunData,
    receipts: &[(Uuid, Instant)],
    without_id: usize,
    relay_stops: Vec<String>,
    relay_log: Vec<LogEntry>,
) -> Report {
    // First receipt (position, time) and number of receipts per id.
    let mut first: HashMap<Uuid, (usize, Instant)> = HashMap::with_capacity(receipts.len());
    let mut copies: HashMap<Uuid, usize> = HashMap::with_capacity(receipts.len());
    for (position, (id, at)) in receipts.iter().enumerate() {
        first.entry(*id).or_insert((position, *at));
        *copies.entry(*id).or_insert(0) += 1;
    }
    let minutes = run.samples.len().max(1);
    let minute_of = |at: Instant| {
        ((at.saturating_duration_since(run.start).as_secs() / 60) as usize).min(minutes - 1)
    };

    let mut committed = vec![0_usize; minutes];
    let mut received = vec![0_usize; minutes];
    let mut redelivered = vec![0_usize; minutes];
    let mut latencies: Vec<Vec<f64>> = vec![Vec::new(); minutes];
    let mut rolled_back = vec![0_usize; minutes];
    let mut scopes: HashMap<u32, Vec<(i64, usize, Uuid)>> = HashMap::new();
    let (mut lost, mut duplicates, mut redelivered_events, mut seq_unknown) = (0, 0, 0, 0);
    for event in &run.committed {
        let m = minute_of(event.at);
        if let Some(n) = committed.get_mut(m) {
            *n += 1;
        }
        let Some((position, at)) = first.get(&event.id) else {
            lost += 1;
            continue;
        };
        if let Some(n) = received.get_mut(m) {
            *n += 1;
        }
        if let Some(samples) = latencies.get_mut(m) {
            samples.push(at.saturating_duration_since(event.at).as_secs_f64() * 1e3);
        }
        let count = copies.get(&event.id).copied().unwrap_or(1);
        if count > 1 {
            duplicates += count - 1;
            redelivered_events += 1;
            if let Some(n) = redelivered.get_mut(m) {
                *n += 1;
            }
        }
        match event.seq {
            Some(seq) => scopes
                .entry(event.key)
                .or_default()
                .push((seq, *position, event.id)),
            None => seq_unknown += 1,
        }
    }
    let rolled_back_ids: HashSet<Uuid> = run.rolled_back.iter().map(|(id, _)| *id).collect();
    for (_, at) in &run.rolled_back {
        if let Some(n) = rolled_back.get_mut(minute_of(*at)) {
            *n += 1;
        }
    }
    let rolled_back_delivered = rolled_back_ids
        .iter()
        .filter(|id| first.contains_key(id))
        .count();
    let committed_ids: HashSet<Uuid> = run.committed.iter().map(|c| c.id).collect();
    let unknown_messages = first
        .keys()
        .filter(|id| {
            !committed_ids.contains(id)
                && !rolled_back_ids.contains(id)
                && !run.warm_up.contains(id)
        })
        .count();
    let receipts_counted = receipts
        .iter()
        .filter(|(id, _)| !run.warm_up.contains(id))
        .count();

    // Order: walking a scope from its highest seq down, an event whose first receipt comes
    // after the earliest first receipt of the events above it was overtaken.
    let mut order_violations = 0;
    let mut examples = Vec::new();
    for (key, mut events) in scopes {
        events.sort_unstable();
        let mut earliest_later: Option<(i64, usize, Uuid)> = None;
        for &(seq, position, id) in events.iter().rev() {
            match earliest_later {
                Some((later_seq, later_position, later_id)) if later_position < position => {
                    order_violations += 1;
                    if examples.len() < EXAMPLES {
                        let (tenant_id, ticket) = run.keys.get(key);
                        examples.push(Violation {
                            tenant_id,
                            ordering_key: format!("ticket:{ticket}"),
                            id,
                            seq,
                            overtaken_by: later_id,
                            overtaken_by_seq: later_seq,
                        });
                    }
                }
                _ => earliest_later = Some((seq, position, id)),
            }
        }
    }

    let kills_in = |m: usize| run.kills.iter().filter(|(k, _)| *k as usize == m).count();
    let per_minute = run
        .samples
        .iter()
        .enumerate()
        .map(|(m, sample)| Minute {
            minute: m as u32 + 1,
            committed: committed.get(m).copied().unwrap_or(0),
            rolled_back: rolled_back.get(m).copied().unwrap_or(0),
            received: received.get(m).copied().unwrap_or(0),
            latency_ms: Percentiles::of(latencies.get(m).cloned().unwrap_or_default()),
            pending_at_end: sample.pending,
            rows_at_end: sample.rows,
            key_locks_at_end: sample.key_locks,
            database_mib: sample.database_bytes as f64 / MIB,
            rss_mib: sample.rss_kib.map(|kib| kib as f64 / 1024.0),
            rss_relay: sample.relay.clone(),
            kills: kills_in(m),
            redelivered: redelivered.get(m).copied().unwrap_or(0),
            max_schedule_lag_ms: run.lag_ms.get(m).copied().unwrap_or(0.0),
        })
        .collect();
    let relay_warnings = relay_log
        .iter()
        .filter(|e| e.level == "WARN")
        .map(|e| e.count)
        .sum();
    let relay_errors = relay_log
        .iter()
        .filter(|e| is_error(&e.level))
        .map(|e| e.count)
        .sum();
    let totals = Totals {
        committed: run.committed.len(),
        achieved_rate: if run.elapsed > 0.0 {
            run.committed.len() as f64 / run.elapsed
        } else {
            0.0
        },
        unwritten_transactions: run.unwritten,
        rolled_back: run.rolled_back.len(),
        received: run.committed.len() - lost,
        receipts: receipts_counted,
        lost,
        rolled_back_delivered,
        order_violations,
        duplicates,
        redelivered_events,
        unknown_messages,
        messages_without_id: without_id,
        seq_unknown,
        drained: run.drained,
        drain_seconds: run.drain_seconds,
        pending_after_drain: run.pending_after_drain,
        dead_after_drain: run.dead_after_drain,
        kills: run.kills.len(),
        unexpected_exits: run.exits.len(),
        relay_warnings,
        relay_errors,
    };
    Report {
        minutes: args.minutes,
        target_rate: args.rate,
        relays: args.relays,
        kill_every: args.kill_every.to_string(),
        retention: args.retention.to_string(),
        lease: match args.lease {
            Some(lease) => lease.to_string(),
            None => format!("{} (the relay's default)", HumanDuration(DEFAULT_LEASE)),
        },
        producers: args.producers,
        keys: args.keys,
        hot_keys: args.hot_keys,
        hot_share: args.hot_share,
        rollback_share: args.rollback_share,
        relay_binary: binary.display().to_string(),
        per_minute,
        kills: run.kills.into_iter().map(|(_, kill)| kill).collect(),
        unexpected_exits: run.exits,
        totals,
        order_violation_examples: examples,
        relay_stops,
        relay_log,
    }
}

// ---------------------------------------------------------------------------------------
// The report.

/// The report as Markdown.
pub fn markdown(report: &Report) -> String {
    let caption = format!(
        "soak: {} min at {:.0} committed events/s (one- and three-event transactions through `outbox_core::emit` / `emit_batch`, half each, {:.0} % rolled back) on {} keys + {} hot keys ({:.0} % of the events), {} producer connections; {} `outbox-relay` processes (`--retention {}`, `--lease {}`), one SIGKILLed every {} in turn and replaced at once; latency: commit returned → first receipt",
        report.minutes,
        report.target_rate,
        report.rollback_share * 100.0,
        report.keys,
        report.hot_keys,
        report.hot_share * 100.0,
        report.producers,
        report.relays,
        report.retention,
        report.lease,
        report.kill_every,
    );
    let rows: Vec<Vec<String>> = report
        .per_minute
        .iter()
        .map(|m| {
            vec![
                m.minute.to_string(),
                m.committed.to_string(),
                format!("{:.1}", m.latency_ms.p50),
                format!("{:.1}", m.latency_ms.p99),
                format!("{:.1}", m.latency_ms.max),
                m.pending_at_end.to_string(),
                m.rows_at_end.to_string(),
                format!("{:.1}", m.database_mib),
                match m.rss_mib {
                    Some(mib) => format!("{mib:.1} {}", m.rss_relay),
                    None => format!("? {}", m.rss_relay),
                },
                m.kills.to_string(),
                m.redelivered.to_string(),
                format!("{:.0}", m.max_schedule_lag_ms),
            ]
        })
        .collect();
    let header = [
        "minute",
        "committed",
        "p50 ms",
        "p99 ms",
        "max ms",
        "pending at end",
        "rows at end",
        "database MiB",
        "relay RSS MiB (not killed that minute)",
        "kills",
        "redelivered",
        "worst schedule lag ms",
    ];
    let mut out = harness::table(&caption, 0, &header, &rows);
    out.push('\n');

    let t = &report.totals;
    let checks = vec![
        t.committed.to_string(),
        format!("{:.0}", t.achieved_rate),
        mark(t.unwritten_transactions),
        t.rolled_back.to_string(),
        t.received.to_string(),
        mark(t.lost),
        mark(t.rolled_back_delivered),
        mark(t.order_violations),
        format!("{} ({} events)", t.duplicates, t.redelivered_events),
        format!(
            "{} in {:.1} s",
            if t.drained { "yes" } else { "NO" },
            t.drain_seconds
        ),
        format!("{} / {}", t.pending_after_drain, t.dead_after_drain),
        t.unknown_messages.to_string(),
    ];
    let header = [
        "committed",
        "achieved/s",
        "transactions not written",
        "rolled back",
        "received",
        "lost",
        "rolled back delivered",
        "order violations",
        "duplicates",
        "drained",
        "pending / dead after",
        "unknown messages",
    ];
    out.push_str(&harness::table(
        "After the drain (lost, rolled back delivered and order violations must be 0):",
        0,
        &header,
        &[checks],
    ));

    let mut notes = Vec::new();
    if !report.kills.is_empty() {
        let kills: Vec<String> = report
            .kills
            .iter()
            .map(|k| {
                format!(
                    "{:.0} s {} pid {} → {}",
                    k.at_seconds, k.relay, k.pid, k.replacement_pid
                )
            })
            .collect();
        notes.push(format!("Kills: {}.", kills.join("; ")));
    }
    for exit in &report.unexpected_exits {
        notes.push(format!(
            "**{} (pid {}) ended on its own** at {:.0} s: {}; restarted as pid {}. Last log lines:\n\n```\n{}\n```",
            exit.relay,
            exit.pid,
            exit.at_seconds,
            exit.status,
            exit.replacement_pid,
            exit.log_tail.join("\n")
        ));
    }
    for v in &report.order_violation_examples {
        notes.push(format!(
            "Order violation: tenant {} `{}`: {} (seq {}) first received after {} (seq {}).",
            v.tenant_id, v.ordering_key, v.id, v.seq, v.overtaken_by, v.overtaken_by_seq
        ));
    }
    if t.messages_without_id > 0 {
        notes.push(format!(
            "{} messages had no message id.",
            t.messages_without_id
        ));
    }
    if t.seq_unknown > 0 {
        notes.push(format!(
            "{} committed events had no row right after their commit (left out of the order check).",
            t.seq_unknown
        ));
    }
    notes.push(format!(
        "Relay log: {} WARN, {} ERROR lines.",
        t.relay_warnings, t.relay_errors
    ));
    for entry in report
        .relay_log
        .iter()
        .filter(|e| e.level == "WARN" || is_error(&e.level))
        .take(10)
    {
        notes.push(format!(
            "- {} × {} `{}`, e.g. `{}`",
            entry.count, entry.level, entry.message, entry.example
        ));
    }
    notes.push(format!("At the end: {}.", report.relay_stops.join("; ")));
    out.push('\n');
    out.push_str(&notes.join("\n"));
    out.push('\n');
    out
}

/// A count that must be zero, in bold when it is not.
fn mark(count: usize) -> String {
    if count == 0 {
        "0".to_owned()
    } else {
        format!("**{count}**")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> Args {
        Args {
            minutes: 1,
            rate: 100.0,
            relays: 2,
            kill_every: HumanDuration(Duration::from_secs(60)),
            retention: HumanDuration(Duration::from_secs(60)),
            lease: None,
            producers: 4,
            keys: 20,
            hot_keys: 2,
            hot_share: 0.2,
            rollback_share: 0.1,
            drain_limit: HumanDuration(Duration::from_secs(120)),
            seed: 7,
            relay_binary: None,
        }
    }

    #[test]
    fn the_plan_commits_the_rate_over_the_run() {
        let plan = plan(&args(), &mut Rng(7));
        let committed: u64 = plan
            .iter()
            .filter(|t| !t.rollback)
            .map(|t| u64::from(t.len))
            .sum();
        // 6,000 committed events expected; the draw varies by a few percent.
        assert!((5_400..=6_600).contains(&committed), "{committed}");
        assert!(plan.iter().all(|t| t.due < Duration::from_secs(60)));
        let hot = plan
            .iter()
            .flat_map(|t| t.keys.iter().take(t.len.into()))
            .filter(|k| **k >= 20)
            .count();
        let events: usize = plan.iter().map(|t| usize::from(t.len)).sum();
        let share = hot as f64 / events as f64;
        assert!((0.15..0.25).contains(&share), "{share}");
    }

    #[test]
    fn a_key_keeps_its_tenant() {
        let keys = Keys::new(20, 2, &mut Rng(1));
        assert_eq!(keys.get(3), keys.get(3));
        assert_ne!(keys.get(3).1, keys.get(4).1);
    }
}
