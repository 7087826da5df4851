//! The relay's ownership session: one database connection, held for as long as the relay
//! runs, holding the advisory lock its claim tokens name ([`crate::engine::lease`]).
//!
//! A relay that dies (SIGKILL, the OOM killer, a lost node) loses this session when the
//! kernel closes its socket; the lock goes with it, and the next claim of another relay
//! reaps its leases at once instead of after `--lease`. While the relay cannot confirm that
//! it holds the lock (the session failed a heartbeat, or is being re-established), its
//! delivery loops claim nothing and start no new wave: another relay may be taking its rows
//! over. A relay that is alive but cut off from the database keeps its wall-clock lease:
//! its session stays on the server until the server's TCP keepalive gives up on it, and
//! the relay itself stops publishing when its own lease runs short, as before.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::{Connection as _, PgPool, Postgres};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use uuid::Uuid;

use crate::engine::lease::{OWNER_LOCK_CLASS, owner_lock_key};
use crate::foundation::backoff::BackoffPolicy;
use crate::foundation::diagnosis;
use crate::foundation::logging::{Repeats, Report};
use crate::foundation::pause::sleep_unless_cancelled;

/// How often the session is checked: the longest a relay whose session ended keeps
/// starting waves before it notices.
pub const HEARTBEAT: Duration = Duration::from_millis(500);

/// The ownership a relay's loops read: who this relay is, and whether it is sure of it.
#[derive(Debug, Clone, Default)]
pub struct Ownership {
    state: Arc<State>,
}

#[derive(Debug, Default)]
struct State {
    owner: AtomicU32,
    held: AtomicBool,
    disabled: AtomicBool,
}

/// The relay does not hold its ownership lock right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotHeld;

impl Ownership {
    /// The owner id to put in claim tokens, while this relay holds its lock.
    pub fn current(&self) -> Option<u32> {
        self.state
            .held
            .load(Ordering::Acquire)
            .then(|| self.state.owner.load(Ordering::Acquire))
    }

    /// Whether the lock of `owner` is still held by this relay (a batch claimed as `owner`
    /// may start another wave).
    pub fn still(&self, owner: u32) -> bool {
        self.current() == Some(owner)
    }

    /// Keeps a session holding an owner lock from `pool` until `cancel`, registered in
    /// `outbox_relay_owners` under `relay_id`, re-establishing it (under a new owner id: the
    /// old one may still be held by a session the server has not ended yet) whenever it
    /// fails. Returns at once; the work runs in a task of `tasks`.
    pub fn start(
        pool: PgPool,
        relay_id: String,
        db_timeout: Duration,
        cancel: CancellationToken,
        tasks: &mut tokio::task::JoinSet<()>,
    ) -> Ownership {
        let ownership = Ownership::default();
        tasks.spawn(hold(ownership.clone(), pool, relay_id, db_timeout, cancel));
        ownership
    }

    /// An ownership that never holds a lock's session: claims carry no owner and end only
    /// with their lease (`--no-ownership`).
    pub fn none() -> Ownership {
        let ownership = Ownership::default();
        ownership.state.held.store(true, Ordering::Release);
        ownership.state.disabled.store(true, Ordering::Release);
        ownership
    }

    /// The owner id to put in claim tokens: `Ok(None)` without an ownership session, `Err`
    /// while the session is not held (claim nothing then).
    pub fn for_claim(&self) -> Result<Option<u32>, NotHeld> {
        if self.state.disabled.load(Ordering::Acquire) {
            return Ok(None);
        }
        self.current().map(Some).ok_or(NotHeld)
    }

    /// Whether a batch claimed as `owner` may start another wave: the relay still holds the
    /// lock of `owner` (always, for a claim without an owner).
    pub fn still_holds(&self, owner: Option<u32>) -> bool {
        match owner {
            None => true,
            Some(owner) => self.still(owner),
        }
    }

    fn set(&self, owner: Option<u32>) {
        if let Some(owner) = owner {
            self.state.owner.store(owner, Ordering::Release);
        }
        self.state.held.store(owner.is_some(), Ordering::Release);
    }
}

async fn hold(
    ownership: Ownership,
    pool: PgPool,
    relay_id: String,
    db_timeout: Duration,
    cancel: CancellationToken,
) {
    let deadline = db_timeout.min(Duration::from_secs(5));
    let mut delays = BackoffPolicy::RECONNECT.delay_iter();
    let mut repeats = Repeats::default();
    while !cancel.is_cancelled() {
        let (mut conn, owner) = match lock_a_session(&pool, &relay_id, deadline).await {
            Ok(held) => held,
            Err(error) => {
                match repeats.failed(&error, std::time::Instant::now()) {
                    Report::New => {
                        warn!(%error, "cannot take the relay's ownership lock; retrying")
                    }
                    summary @ Report::Summary { .. } => warn!(
                        %error,
                        "taking the relay's ownership lock {}; retrying",
                        summary.summary().unwrap_or_default()
                    ),
                    Report::Quiet => {}
                }
                let delay = delays.next().unwrap_or(BackoffPolicy::RECONNECT.cap);
                sleep_unless_cancelled(delay, &cancel).await;
                continue;
            }
        };
        delays = BackoffPolicy::RECONNECT.delay_iter();
        repeats.succeeded();
        ownership.set(Some(owner));
        info!(owner = %format_args!("{owner:08x}"), "holding the relay's ownership lock");
        let lost = loop {
            if !sleep_unless_cancelled(HEARTBEAT, &cancel).await {
                break None;
            }
            // The lock itself, on this very session (a pooler that moved the session, or a
            // lock released behind the relay's back, is a lost ownership too), and the
            // registration, restored if something removed it (claims reap only the leases
            // of registered owners).
            let beat = tokio::time::timeout(
                deadline,
                sqlx::query_scalar::<_, bool>(HEARTBEAT_SQL)
                    .bind(OWNER_LOCK_CLASS)
                    .bind(owner_lock_key(owner))
                    .bind(&relay_id)
                    .fetch_one(&mut *conn),
            )
            .await;
            match beat {
                Ok(Ok(true)) => {}
                Ok(Ok(false)) => break Some("the session no longer holds the lock".to_owned()),
                Ok(Err(error)) => break Some(diagnosis::database(&error)),
                Err(_) => break Some(format!("no answer within {deadline:?}")),
            }
        };
        ownership.set(None);
        // Out of the pool before anything that could be cut short: the session may hold the
        // lock, and must end, never serve another statement.
        let conn = conn.detach();
        match lost {
            // Shutdown: closing the session releases the lock. The registration stays: a
            // relay that stopped with leases left (its shutdown bound reached) has them
            // reaped by the next claim, as a crashed one's; one that left none is simply
            // forgotten then.
            None => {
                let _ = tokio::time::timeout(deadline, conn.close()).await;
            }
            Some(error) => {
                warn!(%error, owner = %format_args!("{owner:08x}"), "the relay's ownership session failed; no new batch until it is back");
                drop(conn);
            }
        }
    }
    ownership.set(None);
}

/// Re-registers owner `$2` of relay `$3` if its row is gone, and answers whether this
/// session holds the owner lock `($1, $2)`.
const HEARTBEAT_SQL: &str = "WITH registered AS (
             INSERT INTO outbox_relay_owners (owner, relay_id) VALUES ($2, $3)
             ON CONFLICT (owner) DO NOTHING)
         SELECT EXISTS (SELECT 1 FROM pg_locks
                         WHERE pid = pg_backend_pid() AND locktype = 'advisory'
                           AND classid = $1::int4::oid AND objid = $2::int4::oid
                           AND objsubid = 2 AND granted)";

/// A pooled session holding a fresh owner's lock, registered under `relay_id`, and the
/// owner; each step within `deadline`. A session that fails or runs out of time on the way
/// is closed, never given back to the pool (it may hold the lock).
async fn lock_a_session(
    pool: &PgPool,
    relay_id: &str,
    deadline: Duration,
) -> Result<(PoolConnection<Postgres>, u32), String> {
    let mut conn = tokio::time::timeout(deadline, pool.acquire())
        .await
        .map_err(|_| format!("no connection within {deadline:?}"))?
        .map_err(|error| diagnosis::database(&error))?;
    let taken = tokio::time::timeout(deadline, async {
        // The session lives as long as the relay: no statement or idle timeout of the
        // database may end it.
        sqlx::query(
            "SELECT set_config('statement_timeout', '0', false),
                    set_config('idle_session_timeout', '0', false),
                    set_config('idle_in_transaction_session_timeout', '0', false)",
        )
        .execute(&mut *conn)
        .await?;
        loop {
            let owner = Uuid::new_v4().as_u128() as u32;
            let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, $2)")
                .bind(OWNER_LOCK_CLASS)
                .bind(owner_lock_key(owner))
                .fetch_one(&mut *conn)
                .await?;
            if !locked {
                continue;
            }
            // A row left by a dead relay under the same id (one chance in 2^32) is not
            // adopted: its leases must still be reaped. Another id then.
            let registered = sqlx::query(
                "INSERT INTO outbox_relay_owners (owner, relay_id) VALUES ($1, $2)
                 ON CONFLICT (owner) DO NOTHING",
            )
            .bind(owner_lock_key(owner))
            .bind(relay_id)
            .execute(&mut *conn)
            .await?
            .rows_affected();
            if registered == 0 {
                sqlx::query("SELECT pg_advisory_unlock($1, $2)")
                    .bind(OWNER_LOCK_CLASS)
                    .bind(owner_lock_key(owner))
                    .execute(&mut *conn)
                    .await?;
                continue;
            }
            return Ok::<u32, sqlx::Error>(owner);
        }
    })
    .await;
    match taken {
        Ok(Ok(owner)) => Ok((conn, owner)),
        Ok(Err(error)) => {
            drop(conn.detach());
            Err(diagnosis::database(&error))
        }
        Err(_) => {
            drop(conn.detach());
            Err(format!("no answer within {deadline:?}"))
        }
    }
}
