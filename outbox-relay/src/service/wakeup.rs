//! When to look for work again after a claim found none.
//!
//! The database decides how writers announce events (`outbox_wakeup_mode()`, switched by
//! `outbox-relay wakeup notify|poll`):
//! - **notify**: a trigger sends `NOTIFY outbox_events` from every inserting transaction;
//!   the relay LISTENs and wakes at once, and polls every `poll_interval` as a safety net.
//!   Writers pay for it: a notifying commit holds a database-wide lock, so such commits
//!   cannot be flushed together.
//! - **poll**: writers send nothing; the relay polls adaptively. The first look comes
//!   `poll_min_interval` after an empty claim, and each empty look doubles the wait, up to
//!   `poll_interval`. A look is [`claim::work_waiting`], three index probes without locks.
//!
//! The relay reads the mode on start and every [`MODE_REFRESH`], so a switch needs no
//! restart. Polling also covers for a lost LISTEN connection and for `--no-listen`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::foundation::backoff::BackoffPolicy;
use crate::foundation::config::DEFAULT_DB_TIMEOUT;
use crate::foundation::db::within_deadline;
use crate::foundation::diagnosis;
use crate::foundation::logging::{Repeats, Report};
use crate::foundation::pause::sleep_unless_cancelled;
use crate::store::claim;

/// The channel the insert trigger notifies.
pub const CHANNEL: &str = "outbox_events";

/// How often the relay re-reads the database's wake-up mode.
pub const MODE_REFRESH: Duration = Duration::from_secs(10);

/// How writers announce new events (see the module's doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// The insert trigger sends `NOTIFY outbox_events`; relays LISTEN.
    Notify,
    /// No notification; relays poll adaptively.
    Poll,
}

impl Mode {
    /// The mode's name in SQL (`outbox_wakeup_mode()`, `outbox_set_wakeup_mode`).
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Notify => "notify",
            Mode::Poll => "poll",
        }
    }

    /// The database's current mode. A schema older than the wake-up mode always notifies.
    pub async fn read(db: impl sqlx::PgExecutor<'_>) -> Result<Mode, sqlx::Error> {
        match sqlx::query_scalar::<_, String>("SELECT outbox_wakeup_mode()")
            .fetch_one(db)
            .await
        {
            Ok(mode) if mode == "poll" => Ok(Mode::Poll),
            Ok(_) => Ok(Mode::Notify),
            Err(sqlx::Error::Database(error)) if error.code().as_deref() == Some("42883") => {
                Ok(Mode::Notify)
            }
            Err(error) => Err(error),
        }
    }
}

/// Wake-ups for the relay's delivery loops.
#[derive(Debug, Clone)]
pub struct Wakeup {
    notify: Arc<Notify>,
    /// Whether the database's mode is `notify`.
    mode_notify: Arc<AtomicBool>,
    /// Whether a LISTEN connection is up.
    listening: Arc<AtomicBool>,
    pool: PgPool,
    min_interval: Duration,
    max_interval: Duration,
    /// Bound on one look for work (see [`Wakeup::with_db_timeout`]).
    db_timeout: Duration,
}

impl Wakeup {
    /// Wake-ups by adaptive polling only (no LISTEN), between `min_interval` and
    /// `max_interval`.
    pub fn polling(pool: &PgPool, min_interval: Duration, max_interval: Duration) -> Self {
        Wakeup {
            notify: Arc::new(Notify::new()),
            mode_notify: Arc::new(AtomicBool::new(false)),
            listening: Arc::new(AtomicBool::new(false)),
            pool: pool.clone(),
            min_interval: min_interval.min(max_interval),
            max_interval,
            db_timeout: DEFAULT_DB_TIMEOUT,
        }
    }

    /// Bounds each look for work by `timeout` (default
    /// [`DEFAULT_DB_TIMEOUT`]): a look on a database that stopped answering
    /// then fails, its connection is closed, and the loop goes on to its claim (which
    /// reports the error) instead of waiting on the silent link.
    pub fn with_db_timeout(mut self, timeout: Duration) -> Self {
        self.db_timeout = timeout;
        self
    }

    /// Makes these wake-ups (and every clone of them) follow the database's mode: LISTEN
    /// (in a background task of `tasks` that reconnects by itself) while it is `notify`,
    /// adaptive polling otherwise. Call after [`Wakeup::with_db_timeout`]: the tasks take
    /// the deadline with them. The mode is logged once `announced` turns true (the relay
    /// said it started): before the outbox schema exists, the mode means nothing.
    pub fn follow_mode_in(
        &self,
        cancel: CancellationToken,
        announced: watch::Receiver<bool>,
        tasks: &mut tokio::task::JoinSet<()>,
    ) {
        tasks.spawn(self.clone().listen(cancel.clone()));
        tasks.spawn(self.clone().follow_mode(cancel, announced));
    }

    /// A delivery loop's polling state: starts at `poll_min_interval`.
    pub fn idle(&self) -> Idle {
        Idle {
            next: self.min_interval,
            min: self.min_interval,
            max: self.max_interval,
        }
    }

    /// Waits until there may be work — a notification, a look that finds work (or fails:
    /// the claim will report the error), cancellation — or until `poll_interval` has
    /// passed, so an idle loop still comes back to check its broker link. Each look waits
    /// twice as long as the one before, and `idle` carries that across calls until
    /// [`Idle::reset`]: a look that keeps finding work no claim can take (a key waiting for
    /// a writer to commit) slows down like an empty one.
    pub async fn wait(&self, cancel: &CancellationToken, idle: &mut Idle) {
        let mut waited = Duration::ZERO;
        while waited < self.max_interval {
            // Notifications can be relied on: mode `notify` and a LISTEN connection up.
            let relying_on_notify =
                self.mode_notify.load(Ordering::Relaxed) && self.listening.load(Ordering::Relaxed);
            let sleep = if relying_on_notify {
                self.max_interval
            } else {
                idle.advance()
            };
            tokio::select! {
                () = self.notify.notified() => return,
                () = tokio::time::sleep(sleep) => {}
                () = cancel.cancelled() => return,
            }
            if relying_on_notify {
                return;
            }
            waited += sleep;
            match claim::work_waiting_within(&self.pool, self.db_timeout).await {
                Ok(false) => {}
                Ok(true) | Err(_) => return,
            }
        }
    }

    /// Keeps a LISTEN connection and wakes a loop per notification.
    async fn listen(self, cancel: CancellationToken) {
        let mut delays = BackoffPolicy::RECONNECT.delay_iter();
        let mut repeats = Repeats::default();
        let mut listener: Option<PgListener> = None;
        loop {
            if cancel.is_cancelled() {
                return;
            }
            let Some(active) = listener.as_mut() else {
                match subscribe(&self.pool, self.db_timeout).await {
                    Ok(fresh) => {
                        delays = BackoffPolicy::RECONNECT.delay_iter();
                        repeats.succeeded();
                        listener = Some(fresh);
                        self.listening.store(true, Ordering::Relaxed);
                        // Notifications sent while we were away are lost: scan now.
                        self.notify.notify_one();
                    }
                    Err(error) => {
                        let delay = delays.next().unwrap_or(BackoffPolicy::RECONNECT.cap);
                        let error = diagnosis::database(&error);
                        match repeats.failed(&error, std::time::Instant::now()) {
                            Report::New => {
                                warn!(%error, retry_in = %format_args!("{delay:.1?}"), "LISTEN failed; polling until it works")
                            }
                            summary @ Report::Summary { .. } => warn!(
                                %error,
                                "LISTEN {}; polling until it works",
                                summary.summary().unwrap_or_default()
                            ),
                            Report::Quiet => {}
                        }
                        if !sleep_unless_cancelled(delay, &cancel).await {
                            return;
                        }
                    }
                }
                continue;
            };
            // Only cancellation interrupts a receive (a receive cut short could lose part of
            // a message); the mode is refreshed by its own task.
            let received = tokio::select! {
                received = active.try_recv() => received,
                () = cancel.cancelled() => return,
            };
            match received {
                Ok(Some(_)) => {
                    debug!("notified of new outbox rows");
                    self.notify.notify_one();
                }
                Ok(None) => {
                    info!("LISTEN connection was lost and re-established; scanning");
                    self.notify.notify_one();
                }
                Err(error) => {
                    let error = diagnosis::database(&error);
                    warn!(%error, "LISTEN connection failed");
                    listener = None;
                    self.listening.store(false, Ordering::Relaxed);
                    self.notify.notify_one();
                }
            }
        }
    }

    /// Re-reads the database's wake-up mode every [`MODE_REFRESH`], and logs it when it
    /// changes, once `announced` is true.
    async fn follow_mode(self, cancel: CancellationToken, mut announced: watch::Receiver<bool>) {
        let mut logged = None;
        loop {
            let read = within_deadline(&self.pool, self.db_timeout, async |conn| {
                Mode::read(conn).await
            });
            let known = match read.await {
                Ok(mode) => {
                    self.mode_notify
                        .store(mode == Mode::Notify, Ordering::Relaxed);
                    Some(mode)
                }
                Err(error) => {
                    debug!(%error, "cannot read the wake-up mode; polling meanwhile");
                    self.mode_notify.store(false, Ordering::Relaxed);
                    None
                }
            };
            let say = *announced.borrow_and_update() && !cancel.is_cancelled();
            if let Some(mode) = known
                && say
                && logged != Some(mode)
            {
                info!(mode = mode.as_str(), "wake-up mode");
                logged = Some(mode);
            }
            let waiting_to_say = !*announced.borrow();
            tokio::select! {
                () = tokio::time::sleep(MODE_REFRESH) => {}
                changed = announced.changed(), if waiting_to_say => {
                    if changed.is_err() {
                        // The relay is gone; the mode is no longer needed.
                        return;
                    }
                }
                () = cancel.cancelled() => return,
            }
        }
    }
}

/// One delivery loop's adaptive polling interval (see [`Wakeup::wait`]).
#[derive(Debug, Clone)]
pub struct Idle {
    next: Duration,
    min: Duration,
    max: Duration,
}

impl Idle {
    /// Back to the shortest interval: call after a claim that leased something.
    pub fn reset(&mut self) {
        self.next = self.min;
    }

    /// The interval to wait now; doubles the next one, up to the ceiling.
    fn advance(&mut self) -> Duration {
        let now = self.next;
        self.next = (self.next * 2).min(self.max);
        now
    }
}

/// A LISTEN connection, within `deadline` (a silent database fails it instead of holding
/// the task). Once subscribed, a connection whose link goes silent is failed by the
/// kernel's keepalive and user timeout (set on every connection of the relay's pool:
/// [`pool_for`](crate::foundation::db::pool_for)), and meanwhile the loops keep polling
/// every `--poll-interval`.
async fn subscribe(pool: &PgPool, deadline: Duration) -> Result<PgListener, sqlx::Error> {
    let subscribing = async {
        let mut listener = PgListener::connect_with(pool).await?;
        listener.ignore_pool_close_event(true);
        listener.listen(CHANNEL).await?;
        Ok(listener)
    };
    tokio::time::timeout(deadline, subscribing)
        .await
        .unwrap_or_else(|_| {
            Err(sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer from the database within {deadline:?} while subscribing"),
            )))
        })
}
