//! The one way the relay and its operator commands connect to the database.

use std::time::Duration;

use sqlx::{Connection as _, PgConnection, PgPool};

use crate::foundation::backoff::BackoffPolicy;
use crate::foundation::config::{ConfigError, connect_options};
use crate::foundation::diagnosis::{self, refusal_heals};
use crate::foundation::error::{DatabaseRefused, RelayError};
use crate::foundation::keepalive;
use crate::foundation::mask::mask_url;

/// How long taking a connection may wait (the operator commands' first connection too).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A lazily connecting pool for `url`; a malformed URL is refused with the reason. Its
/// connections get TCP keepalive and a user timeout, so the kernel fails one whose link
/// is lost within about half a minute (a LISTEN connection too, which sends nothing while
/// it waits); sqlx sets `TCP_NODELAY` itself.
pub fn pool_for(url: &str, max_connections: u32) -> Result<PgPool, RelayError> {
    let options = connect_options(url).map_err(ConfigError)?;
    Ok(keepalive::pool_options(url, &options)
        .max_connections(max_connections)
        .acquire_timeout(CONNECT_TIMEOUT)
        .connect_lazy_with(options))
}

/// Runs `work` on a connection of its own from `pool`, all of it — taking the connection
/// included — within `deadline`.
///
/// The relay's answer to a database that stops answering without closing anything (a
/// network partition, a firewall dropping packets, a stuck proxy): the kernel keeps the
/// connection open, and a statement would wait for its answer for as long as TCP keeps
/// trying (about 15 minutes by default; see [`pool_for`] for the keepalive and user
/// timeout set on every connection, which do not help when something on the path still
/// acknowledges segments). Past the deadline the work is abandoned and
/// its connection **closed, not given back to the pool**: sqlx would otherwise test the
/// returned connection with a ping that waits on the same silent link, holding a pool slot
/// for as long. The server rolls back whatever transaction was open once it sees the
/// connection go (or at once, when it is the one that went away). The error is an I/O
/// `TimedOut` that says so.
pub async fn within_deadline<T>(
    pool: &PgPool,
    deadline: Duration,
    work: impl AsyncFnOnce(&mut PgConnection) -> Result<T, sqlx::Error>,
) -> Result<T, sqlx::Error> {
    let until = tokio::time::Instant::now() + deadline;
    let mut conn = tokio::time::timeout_at(until, pool.acquire())
        .await
        .map_err(|_| no_answer(deadline))??;
    let outcome = tokio::time::timeout_at(until, work(&mut conn)).await;
    match outcome {
        Ok(result) => result,
        Err(_) => {
            // Out of the pool and closed (the socket is dropped without a goodbye).
            drop(conn.detach());
            Err(no_answer(deadline))
        }
    }
}

fn no_answer(deadline: Duration) -> sqlx::Error {
    sqlx::Error::Io(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("no answer from the database within {deadline:?}; connection closed"),
    ))
}

/// Connects once, on a connection of its own (so a refused port answers at once instead
/// of after the pool's wait), and reads the outbox table, all within `deadline`. Fails only
/// when the answer is one no retry can change ([`refusal_heals`] says which). A server that
/// is down, unreachable, starting up or out of connection slots, and an outbox not migrated
/// yet (a migration job, or the service itself, may be about to do it), are left to the
/// relay's retries with a warning that says what to do. For a relay's start: retrying a
/// wrong password forever would only hide it.
pub async fn first_contact(database_url: &str, deadline: Duration) -> Result<(), DatabaseRefused> {
    let refused = |cause: String| DatabaseRefused {
        server: mask_url(database_url),
        cause,
    };
    let options = connect_options(database_url).map_err(refused)?;
    let attempt = async {
        let mut conn = PgConnection::connect_with(&options).await?;
        let read = sqlx::query("SELECT 1 FROM outbox_events LIMIT 0")
            .execute(&mut conn)
            .await
            .map(drop);
        let _ = conn.close().await;
        read
    };
    match within(deadline, attempt).await {
        Ok(()) => Ok(()),
        Err(error) if refusal_heals(&error) => {
            tracing::warn!(
                database = %mask_url(database_url),
                error = %diagnosis::database(&error),
                "database not usable at start; retrying"
            );
            Ok(())
        }
        Err(error) => Err(refused(diagnosis::database(&error))),
    }
}

/// Waits until the database at `database_url` accepts a connection, retrying (with a
/// warning each time) while the failure may heal ([`refusal_heals`]); returns at once on
/// any other answer, which the caller's own connection then reports. For `run --migrate`,
/// whose relay may start before its database.
pub async fn wait_until_reachable(database_url: &str, deadline: Duration) {
    let Ok(options) = connect_options(database_url) else {
        return;
    };
    let mut delays = BackoffPolicy::RECONNECT.delay_iter();
    loop {
        let connected = within(deadline, PgConnection::connect_with(&options)).await;
        match connected {
            Ok(conn) => {
                let _ = conn.close().await;
                return;
            }
            Err(error) if refusal_heals(&error) => {
                let delay = delays.next().unwrap_or(BackoffPolicy::RECONNECT.cap);
                tracing::warn!(
                    database = %mask_url(database_url),
                    error = %diagnosis::database(&error),
                    retry_in = %format_args!("{delay:.1?}"),
                    "database not reachable yet; waiting to migrate"
                );
                tokio::time::sleep(delay).await;
            }
            Err(_) => return,
        }
    }
}

/// `work` within `deadline`; past it, the I/O `TimedOut` error of [`within_deadline`].
async fn within<T>(
    deadline: Duration,
    work: impl Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, sqlx::Error> {
    tokio::time::timeout(deadline, work)
        .await
        .unwrap_or_else(|_| Err(no_answer(deadline)))
}
