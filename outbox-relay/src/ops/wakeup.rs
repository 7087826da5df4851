//! `wakeup`: read or switch the database's wake-up mode (see [`crate::service::wakeup`]).

use std::time::{Duration, Instant};

use sqlx::PgPool;

use crate::service::wakeup::Mode;

/// How long a switch keeps retrying while writers keep the table busy. Each attempt holds
/// writers back for at most the SQL function's 200 ms lock timeout.
pub const SWITCH_PATIENCE: Duration = Duration::from_secs(10);

/// Why the mode could not be read or switched, with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum WakeupError {
    /// The schema predates wake-up modes or was never migrated.
    #[error("the schema is not migrated: run `outbox-relay migrate` ({0})")]
    NotMigrated(#[source] sqlx::Error),
    /// Switching recreates the trigger, which only the table's owner may do.
    #[error("switching needs the owner of the table outbox_events ({0})")]
    NotOwner(#[source] sqlx::Error),
    /// Writers held the table for the whole [`SWITCH_PATIENCE`].
    #[error(
        "writers kept the table outbox_events busy for 10 s: retry when their transactions end ({0})"
    )]
    Busy(#[source] sqlx::Error),
    /// Any other database failure.
    #[error("{0}")]
    Database(#[source] sqlx::Error),
}

impl From<sqlx::Error> for WakeupError {
    fn from(error: sqlx::Error) -> Self {
        let code = match &error {
            sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
            _ => None,
        };
        match code.as_deref() {
            Some("42883" | "42P01") => WakeupError::NotMigrated(error),
            Some("42501") => WakeupError::NotOwner(error),
            Some("55P03") => WakeupError::Busy(error),
            _ => WakeupError::Database(error),
        }
    }
}

/// The database's wake-up mode, as `outbox_wakeup_mode()` reports it.
pub async fn current(pool: &PgPool) -> Result<String, WakeupError> {
    Ok(sqlx::query_scalar("SELECT outbox_wakeup_mode()")
        .fetch_one(pool)
        .await?)
}

/// Switches to `mode` (running relays follow within [`crate::service::wakeup::MODE_REFRESH`]) and
/// returns the mode now set, retrying for [`SWITCH_PATIENCE`] while writers keep the table
/// busy.
pub async fn switch(pool: &PgPool, mode: Mode) -> Result<String, WakeupError> {
    let give_up = Instant::now() + SWITCH_PATIENCE;
    loop {
        let switched = sqlx::query_scalar("SELECT outbox_set_wakeup_mode($1)")
            .bind(mode.as_str())
            .fetch_one(pool)
            .await;
        match switched.map_err(WakeupError::from) {
            Err(WakeupError::Busy(_)) if Instant::now() < give_up => {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            other => return other,
        }
    }
}
