//! The delivery loop: wake up → claim → publish in waves → settle, until shutdown.

use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};
use uuid::Uuid;

use crate::broker::connection::Broker;
use crate::broker::message;
use crate::broker::publishing::{PublishFailure, PublishResult, Publisher};
use crate::engine::event::ClaimedEvent;
use crate::engine::waves;
use crate::foundation::backoff::BackoffPolicy;
use crate::foundation::config::{RelayConfig, SETTLE_RESERVE, mask_amqp_nodes};
use crate::foundation::db::{self, pool_for};
use crate::foundation::diagnosis::{self, BrokerRefusal};
use crate::foundation::error::RelayError;
use crate::foundation::logging::{Repeats, Report};
use crate::foundation::mask::mask_url;
use crate::foundation::pause::sleep_unless_cancelled;
use crate::service::health::Health;
use crate::service::ownership::Ownership;
use crate::service::wakeup::Wakeup;
use crate::service::{probe, retention, telemetry};
use crate::store::claim::{self, Claim};
use crate::store::settle::{self, Outcome, Settled};

/// How long a delivery loop waits before looking again when the relay does not hold its
/// ownership lock (at start, or while its session is re-established).
const OWNERSHIP_WAIT: std::time::Duration = std::time::Duration::from_millis(100);

/// Runs the relay until `shutdown` completes, then drains: the waves in flight finish,
/// unpublished rows are released, and the function returns — within
/// `config.shutdown_timeout`, or with [`RelayError::ShutdownTimedOut`] after abandoning
/// what is still outstanding (its leases expire and the rows go out again).
///
/// `in_flight_batches` delivery loops run side by side, each on a channel of its own on the
/// relay's broker connection: while one publishes, another claims and a third settles.
/// They need no coordination: a claim never takes an event whose key has an earlier event
/// leased (by this relay or another), so batches in flight never share a key.
///
/// The log tells the lifecycle as it is: "relay started" once the relay delivers (a claim
/// succeeded with the broker reached: the outbox schema exists), the wake-up mode only
/// after that, and "relay stopped" last (every task of the relay has ended by then).
pub async fn run(
    config: RelayConfig,
    shutdown: impl Future<Output = ()> + Send,
    health: Arc<Health>,
) -> Result<(), RelayError> {
    config.validate()?;
    tokio::pin!(shutdown);
    let cancel = CancellationToken::new();
    // A connection per loop (its claim or settle), one each for the listener, the database
    // probe, the mode refresh, the gauges, retention and the ownership session, and one
    // spare (a connection given up on a silent link may hold its slot while sqlx closes it).
    let pool = pool_for(&config.database_url, config.in_flight_batches + 7)?;
    let broker = Broker::for_config(&config)?;
    let background = cancel.child_token();
    // Every task beside the delivery loops: all have ended before the last line.
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(probe::probe_database(
        pool.clone(),
        health.clone(),
        config.db_timeout,
        background.clone(),
    ));
    tasks.spawn(follow_refusals(
        broker.refusals(),
        health.clone(),
        background.clone(),
    ));
    // Wrong credentials, an untrusted certificate, a database that does not exist, a vhost
    // or an exchange the broker refuses cannot heal: refuse to start, naming the server and
    // the cause, rather than retry forever. A server that is down is left to the reconnect
    // loops, as after a start; a shutdown meanwhile ends the wait. (The database's probe
    // already runs, so `/readyz` names the server at fault from the first second; the other
    // background tasks start after, so a refusal is the only thing said about it.) The
    // gauges are read once before the loops start (a scrape right after start sees them).
    let mut gauge_repeats = Repeats::default();
    let starting = async {
        tokio::try_join!(
            async { broker.first_contact().await.map_err(RelayError::from) },
            async {
                db::first_contact(&config.database_url, config.db_timeout)
                    .await
                    .map_err(RelayError::from)
            },
        )?;
        telemetry::refresh_gauges_once(&pool, config.db_timeout, &mut gauge_repeats).await;
        Ok::<(), RelayError>(())
    };
    tokio::select! {
        started = starting => {
            if let Err(refused) = started {
                cancel.cancel();
                end_tasks(&mut tasks).await;
                return Err(refused);
            }
        }
        () = &mut shutdown => {
            cancel.cancel();
            broker.close().await;
            end_tasks(&mut tasks).await;
            info!(relay_id = %config.relay_id, "relay stopped");
            return Ok(());
        }
    }
    let wakeup = Wakeup::polling(&pool, config.poll_min_interval, config.poll_interval)
        .with_db_timeout(config.db_timeout);
    // Wake-ups serve the delivery loops, and end with them; they say the mode only once
    // the relay has said it started.
    let (announce, announcement) = tokio::sync::watch::channel(false);
    if config.listen {
        wakeup.follow_mode_in(cancel.child_token(), announcement, &mut tasks);
    }
    tasks.spawn(telemetry::refresh_gauges(
        pool.clone(),
        config.gauge_interval,
        config.db_timeout,
        background.clone(),
        gauge_repeats,
    ));
    if let Some(retention) = config.retention {
        tasks.spawn(retention::purge_periodically(
            pool.clone(),
            retention,
            config.db_timeout,
            background.clone(),
        ));
    }

    // The session whose advisory lock the claim tokens name: the leases end with this
    // process. It must outlive the delivery loops' drain (their settles): ended only once
    // they are done — not by the shutdown, which cancels the loops and the background
    // tasks — or when this future is dropped.
    let ownership_ends = CancellationToken::new();
    let _ownership_guard = ownership_ends.clone().drop_guard();
    let ownership = if config.ownership {
        Ownership::start(
            pool.clone(),
            config.relay_id.clone(),
            config.db_timeout,
            ownership_ends.clone(),
            &mut tasks,
        )
    } else {
        Ownership::none()
    };

    let lane = Lane {
        broker,
        config: Arc::new(config),
        pool,
        wakeup,
        health,
        ownership,
        cancel,
        delivering: Arc::new(Delivering::default()),
        claim_failures: Arc::default(),
        settle_failures: Arc::default(),
    };
    let mut lanes = tokio::task::JoinSet::new();
    let mut index_of = std::collections::HashMap::new();
    for index in 0..lane.config.in_flight_batches as usize {
        index_of.insert(lanes.spawn(lane.clone().deliver(index)).id(), index);
    }
    let mut drain_by = None;
    let mut announced = false;
    let outcome = loop {
        tokio::select! {
            () = lane.delivering.notify.notified(), if !announced && drain_by.is_none() => {
                announced = true;
                let config = &lane.config;
                info!(
                    relay_id = %config.relay_id,
                    database = %mask_url(&config.database_url),
                    broker = %mask_amqp_nodes(&config.amqp_url),
                    exchange = %config.exchange,
                    batch_size = config.batch_size,
                    in_flight_batches = config.in_flight_batches,
                    "relay started"
                );
                announce.send_replace(true);
            }
            () = &mut shutdown, if drain_by.is_none() => {
                info!("shutting down: finishing the waves in flight");
                lane.cancel.cancel();
                drain_by = Some(tokio::time::Instant::now() + lane.config.shutdown_timeout);
            }
            () = sleep_until_some(drain_by) => {
                lanes.abort_all();
                warn!(
                    shutdown_timeout = ?lane.config.shutdown_timeout,
                    "shutdown bound reached with work outstanding; its leases will expire"
                );
                break Err(RelayError::ShutdownTimedOut(lane.config.shutdown_timeout));
            }
            ended = lanes.join_next() => match ended {
                None => break Ok(()),
                // A loop only returns on cancellation; a panic costs its batch (the lease
                // expires and the rows go out again), never the relay.
                Some(Err(error)) if !lane.cancel.is_cancelled() => {
                    let index = index_of.remove(&error.id()).unwrap_or_default();
                    error!(%error, lane = index, "a delivery loop failed; starting another");
                    lane.health.set_broker(index, false);
                    index_of.insert(lanes.spawn(lane.clone().deliver(index)).id(), index);
                }
                Some(_) => {}
            },
        }
    };
    // Aborted loops (the shutdown bound) are gone once the set is.
    lanes.shutdown().await;
    lane.cancel.cancel();
    ownership_ends.cancel();
    lane.broker.close().await;
    background.cancel();
    end_tasks(&mut tasks).await;
    info!(relay_id = %lane.config.relay_id, "relay stopped");
    outcome
}

/// How long the relay's tasks get to end on their own once cancelled (the ownership session
/// closes, a statement in flight returns) before they are aborted.
const TASKS_END_WITHIN: std::time::Duration = std::time::Duration::from_secs(2);

/// Waits (at most [`TASKS_END_WITHIN`]) for cancelled `tasks` to end, then aborts those
/// left: nothing of the relay runs, or logs, after its last line.
async fn end_tasks(tasks: &mut tokio::task::JoinSet<()>) {
    let ended = tokio::time::timeout(TASKS_END_WITHIN, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if ended.is_err() {
        tasks.shutdown().await;
    }
}

/// Copies the broker's refusal, as it changes, into `health` (`/readyz` names it).
async fn follow_refusals(
    mut refusals: tokio::sync::watch::Receiver<Option<BrokerRefusal>>,
    health: Arc<Health>,
    cancel: CancellationToken,
) {
    loop {
        let cause = refusals
            .borrow_and_update()
            .as_ref()
            .map(|refusal| refusal.cause.clone());
        health.set_broker_refusal(cause);
        tokio::select! {
            changed = refusals.changed() => if changed.is_err() { return },
            () = cancel.cancelled() => return,
        }
    }
}

/// Whether the relay delivers yet: set by the first delivery loop whose claim succeeded
/// with its broker link up; the relay then says it started.
#[derive(Debug, Default)]
struct Delivering {
    yes: std::sync::atomic::AtomicBool,
    notify: tokio::sync::Notify,
}

impl Delivering {
    /// Records that a loop delivers (the first call wakes the relay's announcement).
    fn now(&self) {
        if !self.yes.swap(true, std::sync::atomic::Ordering::Relaxed) {
            self.notify.notify_one();
        }
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until_some(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// What every delivery loop of a relay shares.
#[derive(Clone)]
struct Lane {
    config: Arc<RelayConfig>,
    pool: PgPool,
    broker: Arc<Broker>,
    wakeup: Wakeup,
    health: Arc<Health>,
    ownership: Ownership,
    cancel: CancellationToken,
    delivering: Arc<Delivering>,
    /// Claim failures, said once and summarised, across loops.
    claim_failures: Arc<std::sync::Mutex<Repeats>>,
    /// Settle failures, said once and summarised, across loops.
    settle_failures: Arc<std::sync::Mutex<Repeats>>,
}

/// Says `what` failed with `error` — once, then summarised ([`Repeats`]) — with the delay
/// before the next try.
fn warn_repeated(
    repeats: &std::sync::Mutex<Repeats>,
    what: &str,
    error: &str,
    delay: std::time::Duration,
) {
    let report = repeats
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .failed(error, Instant::now());
    match report {
        Report::New => {
            warn!(%error, retry_in = %format_args!("{delay:.1?}"), "{what} failed; retrying");
        }
        summary @ Report::Summary { .. } => {
            warn!(%error, "{what} {}; retrying", summary.summary().unwrap_or_default());
        }
        Report::Quiet => {}
    }
}

/// Records a success after failures counted in `repeats`.
fn succeeded(repeats: &std::sync::Mutex<Repeats>) {
    repeats
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .succeeded();
}

impl Lane {
    /// One delivery loop: claim → publish in waves → settle, until cancelled.
    async fn deliver(self, index: usize) {
        let Lane {
            config,
            pool,
            broker,
            wakeup,
            health,
            ownership,
            cancel,
            delivering,
            claim_failures,
            settle_failures,
        } = self;
        let mut publisher = Publisher::new(broker, config.confirm_timeout)
            .with_publish_timeout(config.publish_timeout);
        let mut db_retry = BackoffPolicy::RECONNECT.delay_iter();
        let mut refused_retry = BackoffPolicy::RECONNECT.delay_iter();
        let mut idle = wakeup.idle();
        // Claims in a row that leased a partition and found nothing to publish.
        let mut empty_in_a_row = 0_u32;
        // One claim serves many partitions, and the loops share them.
        let partitions_per_claim =
            crate::engine::feed_claim::partitions_per_claim(config.in_flight_batches);
        while !cancel.is_cancelled() {
            // 1. The broker first: claiming rows we cannot publish would only park them. (An
            //    idle loop learns here that its link dropped, and says so before reconnecting.)
            if !publisher.is_connected() {
                health.set_broker(index, false);
            }
            if !publisher.ensure_connected(&cancel).await {
                break;
            }
            health.set_broker(index, true);

            // 2. Claim the heads of keys and the runs behind them, under a fresh token that
            //    names this relay's ownership lock (no claim without it: the lease must end
            //    with this process). The lease is counted from before the claim: the
            //    database's deadline is later.
            let Ok(owner) = ownership.for_claim() else {
                sleep_unless_cancelled(OWNERSHIP_WAIT, &cancel).await;
                continue;
            };
            let claim_started = Instant::now();
            let lease_ends = claim_started + config.lease;
            let claim = match claim::claim_within(
                &pool,
                config.db_timeout,
                &config.relay_id,
                owner,
                config.batch_size,
                config.lease,
                partitions_per_claim,
            )
            .await
            {
                Ok(claim) => {
                    health.set_database(true);
                    succeeded(&claim_failures);
                    delivering.now();
                    claim
                }
                Err(error) => {
                    health.set_database(false);
                    if cancel.is_cancelled() {
                        // Shutting down: no retry to announce.
                        break;
                    }
                    let delay = db_retry.next().unwrap_or(BackoffPolicy::RECONNECT.cap);
                    let error = diagnosis::database(&error);
                    warn_repeated(&claim_failures, "claim", &error, delay);
                    sleep_unless_cancelled(delay, &cancel).await;
                    continue;
                }
            };
            if claim.is_empty() {
                // A partition leased with nothing to publish (its gaps resolved, its next
                // events scheduled for later): its settle still moves its frontier and ends
                // the lease; then look again at once.
                if claim.feed.is_some() {
                    settle_outcomes(&pool, &config, &claim, &[], &settle_failures, &cancel).await;
                    // A few in a row (a partition whose only work is what its claim cannot
                    // do yet) and the loop waits like an idle one, rather than spin.
                    empty_in_a_row += 1;
                    if empty_in_a_row < 3 {
                        continue;
                    }
                }
                empty_in_a_row = 0;
                wakeup.wait(&cancel, &mut idle).await;
                continue;
            }
            idle.reset();
            empty_in_a_row = 0;
            metrics::histogram!(telemetry::BATCH_SIZE).record(claim.len() as f64);
            let claimed_in = claim_started.elapsed();

            // 3. Publish in waves, awaiting confirms between waves, while the lease allows.
            let publish_started = Instant::now();
            let held = || ownership.still_holds(owner);
            let outcomes =
                publish_in_waves(&mut publisher, &config, &claim, lease_ends, &held, &cancel).await;
            health.set_broker(index, publisher.is_connected());
            let published_in = publish_started.elapsed();

            // 4. Settle the whole claim in one transaction.
            let settle_started = Instant::now();
            let settled =
                settle_outcomes(&pool, &config, &claim, &outcomes, &settle_failures, &cancel).await;
            debug!(
                lane = index,
                batch = claim.len(),
                claim_ms = claimed_in.as_secs_f64() * 1e3,
                publish_ms = published_in.as_secs_f64() * 1e3,
                settle_ms = settle_started.elapsed().as_secs_f64() * 1e3,
                "batch settled"
            );
            health.set_database(settled.is_some());
            if let Some(settled) = settled {
                db_retry = BackoffPolicy::RECONNECT.delay_iter();
                report(&settled);
            }
            // 5. The broker refused the relay's publishing (the events were released, not
            //    failed): wait before claiming them again, as for a refused connection.
            if publisher.take_refused() {
                let delay = refused_retry.next().unwrap_or(BackoffPolicy::RECONNECT.cap);
                sleep_unless_cancelled(delay, &cancel).await;
            } else {
                refused_retry = BackoffPolicy::RECONNECT.delay_iter();
            }
        }
        health.set_broker(index, false);
    }
}

/// Counts a settled claim in the metrics, and warns of what an operator should know.
fn report(settled: &Settled) {
    metrics::counter!(telemetry::PUBLISHED).increment(settled.delivered);
    metrics::counter!(telemetry::DEAD).increment(settled.dead);
    if settled.dead > 0 {
        warn!(
            dead = settled.dead,
            "events are now dead and block their keys (replay or discard them)"
        );
    }
    if settled.lost > 0 {
        warn!(
            rows = settled.lost,
            "these outcomes were not recorded: the events' lease ended before the settle (they will be published again) or the events were deleted meanwhile"
        );
    }
}

/// Publishes a claim so that no event goes out before the earlier events of its ordering
/// scope are confirmed, in the waves [`waves`] plans: wave *n* holds the *n*-th event of
/// every scope. An event that is not confirmed releases the rest of its scope unpublished. A
/// wave starts only while the lease has room for the worst case of a wave plus the settle,
/// and while `held` says the relay still holds the ownership lock its claim token names;
/// cancellation, a broken link, a lease running short or a lost ownership session releases
/// everything not yet sent.
async fn publish_in_waves(
    publisher: &mut Publisher,
    config: &RelayConfig,
    claim: &Claim,
    lease_ends: Instant,
    held: &(dyn Fn() -> bool + Sync),
    cancel: &CancellationToken,
) -> Vec<(Uuid, Outcome)> {
    let mut outcomes = Vec::with_capacity(claim.len());
    for unreadable in &claim.undecodable {
        metrics::counter!(telemetry::REJECTED).increment(1);
        warn!(event_id = %unreadable.id, error = %unreadable.error, "event cannot be read; it is now dead");
        outcomes.push((
            unreadable.id,
            Outcome::Rejected {
                error: unreadable.error.clone(),
            },
        ));
    }
    // An unreadable event is dead and blocks its scope: nothing after it there goes out.
    let unreadable: Vec<waves::Unreadable<'_>> = claim
        .undecodable
        .iter()
        .map(|u| waves::Unreadable {
            seq: u.seq,
            ordering_key: u.ordering_key.as_ref().map(Option::as_deref),
            tenant_id: u.tenant_id,
        })
        .collect();
    let (publishable, blocked) = waves::hold_back(&claim.events, &unreadable);
    outcomes.extend(blocked.iter().map(|event| (event.id, Outcome::Released)));
    let mut lanes = waves::lanes_by_scope(&publishable);
    loop {
        let wave = waves::next_wave(&mut lanes);
        if wave.is_empty() {
            break;
        }
        let lease_short = waves::lease_short(
            Instant::now(),
            config.worst_case_wave() + SETTLE_RESERVE,
            lease_ends,
        );
        let owned = held();
        if cancel.is_cancelled() || !publisher.is_connected() || lease_short || !owned {
            if lease_short {
                warn!(
                    unpublished = wave.len(),
                    "the lease is running short; releasing the rest of the batch"
                );
            } else if !owned {
                warn!(
                    unpublished = wave.len(),
                    "the relay's ownership session was lost (another relay may take these events over); releasing the rest of the batch"
                );
            }
            outcomes.extend(wave.iter().map(|(_, event)| (event.id, Outcome::Released)));
            released(&mut outcomes, waves::release_all(&mut lanes));
            break;
        }

        let limits = message::Limits {
            max_body: config.max_message_size,
            frame_max: publisher.frame_max(),
        };
        let mut messages = Vec::with_capacity(wave.len());
        let mut sendable = Vec::with_capacity(wave.len());
        for &(lane, event) in &wave {
            match message::build_partitioned(
                event,
                &config.routing_key_template,
                config.partitions,
                limits,
            ) {
                Ok(built) => {
                    messages.push(built);
                    sendable.push((lane, event));
                }
                Err(error) => {
                    metrics::counter!(telemetry::REJECTED).increment(1);
                    warn!(event_id = %event.id, event_type = %shorten(&event.event_type), attempt = event.attempts + 1, cause = error.to_string(), "event cannot be published; it is now dead");
                    outcomes.push((
                        event.id,
                        Outcome::Rejected {
                            error: format!("cannot be published: {error}"),
                        },
                    ));
                    released(&mut outcomes, waves::release_lane(&mut lanes, lane));
                }
            }
        }
        let started = Instant::now();
        let refs: Vec<&message::OutgoingMessage> = messages.iter().collect();
        let results = publisher.publish_wave(&refs).await;
        metrics::histogram!(telemetry::CONFIRM_LATENCY).record(started.elapsed().as_secs_f64());

        let now = Utc::now();
        for ((lane, event), result) in sendable.into_iter().zip(results) {
            match result {
                PublishResult::Confirmed => {
                    let lag = (now - event.created_at).to_std().unwrap_or_default();
                    metrics::histogram!(telemetry::END_TO_END_LAG).record(lag.as_secs_f64());
                    outcomes.push((event.id, Outcome::Delivered));
                    continue;
                }
                PublishResult::Failed(error) => {
                    metrics::counter!(telemetry::FAILED, "reason" => error.label()).increment(1);
                    outcomes.push((event.id, failure(config, event, &error)));
                }
                PublishResult::NotSent => {
                    outcomes.push((event.id, Outcome::Released));
                }
            }
            released(&mut outcomes, waves::release_lane(&mut lanes, lane));
        }
    }
    outcomes
}

/// Records `ids` as released unpublished.
fn released(outcomes: &mut Vec<(Uuid, Outcome)>, ids: Vec<Uuid>) {
    outcomes.extend(ids.into_iter().map(|id| (id, Outcome::Released)));
}

/// The first 80 characters of a value for a log line.
fn shorten(text: &str) -> String {
    text.chars().take(80).collect()
}

fn failure(config: &RelayConfig, event: &ClaimedEvent, error: &PublishFailure) -> Outcome {
    let attempt = u32::try_from(event.attempts).unwrap_or(0).saturating_add(1);
    let retry_in = config.retry.delay_for(attempt);
    // One line per failure: which event, which attempt, why, and what happens next. The
    // cause is a quoted string (it holds spaces and colons), so the fields after it parse.
    if attempt >= config.max_attempts {
        warn!(event_id = %event.id, event_type = %shorten(&event.event_type), attempt, max_attempts = config.max_attempts, cause = error.to_string(), "publish failed; the event is now dead");
    } else {
        warn!(event_id = %event.id, event_type = %shorten(&event.event_type), attempt, max_attempts = config.max_attempts, cause = error.to_string(), retry_in = %format_args!("{retry_in:.1?}"), "publish failed; retrying");
    }
    Outcome::Failed {
        error: error.to_string(),
        retry_in,
    }
}

/// Settles outcomes, retrying while the database is away. Gives up only during shutdown
/// (the leases then expire and the rows are published again: at least once, never lost).
async fn settle_outcomes(
    pool: &PgPool,
    config: &RelayConfig,
    claim: &Claim,
    outcomes: &[(Uuid, Outcome)],
    failures: &std::sync::Mutex<Repeats>,
    cancel: &CancellationToken,
) -> Option<Settled> {
    let mut delays = BackoffPolicy::SETTLE_RETRY.delay_iter();
    let mut tries = 0;
    loop {
        match settle::settle_within(
            pool,
            config.db_timeout,
            claim,
            config.max_attempts,
            outcomes,
        )
        .await
        {
            Ok(settled) => {
                succeeded(failures);
                return Some(settled);
            }
            Err(error) => {
                tries += 1;
                let error = diagnosis::database(&error);
                if cancel.is_cancelled() && tries >= 3 {
                    error!(%error, rows = outcomes.len(), "could not record outcomes before shutdown; leases will expire and the rows will be published again");
                    return None;
                }
                let delay = delays.next().unwrap_or(BackoffPolicy::SETTLE_RETRY.cap);
                warn_repeated(failures, "settle", &error, delay);
                tokio::time::sleep(delay).await;
            }
        }
    }
}
