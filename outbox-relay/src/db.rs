//! The one way the relay and its operator commands connect to the database.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::{PgConnection, PgPool};

use crate::error::RelayError;
use crate::mask::mask_url;

/// The connect options of a `--database-url`; a malformed URL is refused naming the flag,
/// with the password masked. Also what [`crate::RelayConfig::validate`] checks, so `run`
/// refuses such a URL before it starts anything.
pub fn connect_options(url: &str) -> Result<PgConnectOptions, String> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(format!(
            "--database-url {}: expected a postgres:// or postgresql:// URL",
            mask_url(url)
        ));
    }
    PgConnectOptions::from_str(url).map_err(|e| format!("--database-url {}: {e}", mask_url(url)))
}

/// How long taking a connection may wait (the operator commands' first connection too).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A lazily connecting pool for `url`; a malformed URL is refused with the reason.
pub fn pool_for(url: &str, max_connections: u32) -> Result<PgPool, RelayError> {
    let options = connect_options(url).map_err(crate::config::ConfigError)?;
    Ok(outbox_core::tcp_nodelay::pool_options(&options)
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
/// trying (about 15 minutes by default; see `outbox_core::tcp_nodelay` for the keepalive
/// and user timeout set on every connection). Past the deadline the work is abandoned and
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

/// The database refused the relay at its first contact in a way no retry heals: wrong
/// credentials, no such database, a schema not migrated, a missing grant, a certificate
/// not trusted. Its text names the server (password masked), the cause and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("database {server}: {cause}")]
pub struct DatabaseRefused {
    /// The server's URL, password masked.
    pub server: String,
    /// The cause and what to do about it ([`crate::diagnosis::database`]).
    pub cause: String,
}

/// Connects once and reads the outbox table, within `deadline`. Fails only when the answer
/// is one no retry can change ([`refusal_heals`] says which); a server that is down,
/// unreachable, starting up or out of connection slots is left to the relay's retries, as
/// after a start. For a relay's start: retrying a wrong password forever would only hide it.
pub async fn first_contact(
    pool: &PgPool,
    database_url: &str,
    deadline: Duration,
) -> Result<(), DatabaseRefused> {
    let outcome = within_deadline(pool, deadline, async |conn| {
        sqlx::query("SELECT 1 FROM outbox_events LIMIT 0")
            .execute(&mut *conn)
            .await
            .map(drop)
    })
    .await;
    match outcome {
        Ok(()) => Ok(()),
        Err(error) if refusal_heals(&error) => {
            tracing::warn!(
                database = %mask_url(database_url),
                error = %crate::diagnosis::database(&error),
                "database unreachable at start; retrying"
            );
            Ok(())
        }
        Err(error) => Err(DatabaseRefused {
            server: mask_url(database_url),
            cause: crate::diagnosis::database(&error),
        }),
    }
}

/// Whether a failed first contact may heal by itself: the network, a server starting up or
/// shutting down, no free connection slot. Authentication, a missing database or table, a
/// missing grant, TLS and malformed settings do not.
pub fn refusal_heals(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => !matches!(
            db.code().as_deref(),
            Some("28P01" | "28000" | "3D000" | "42P01" | "42501")
        ),
        sqlx::Error::Tls(_) | sqlx::Error::Configuration(_) => false,
        _ => true,
    }
}
