//! Retention: delete delivered rows (and old inbox records) in small batches, so no statement
//! holds locks for long and the table is never rewritten. Dead rows are never purged here.

use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::telemetry;

use crate::store::purge::{self, Purgeable};

/// Rows deleted per statement.
pub const DEFAULT_BATCH: i64 = 1000;

/// Purges delivered and discarded events past `retention`, and the key locks of keys
/// with nothing left to deliver, every few minutes until cancelled (the relay's
/// `--retention`).
pub async fn purge_periodically(pool: PgPool, retention: Duration, cancel: CancellationToken) {
    let every = (retention / 10).clamp(Duration::from_secs(10), Duration::from_secs(600));
    loop {
        for what in [Purgeable::Delivered, Purgeable::Discarded] {
            match purge::purge(&pool, what, retention, DEFAULT_BATCH).await {
                Ok(0) => {}
                Ok(deleted) => {
                    metrics::counter!(telemetry::PURGED).increment(deleted);
                    info!(deleted, ?what, "purged events past retention");
                }
                Err(error) => warn!(%error, "retention purge failed"),
            }
        }
        if let Err(error) = purge::idle_key_locks(&pool, DEFAULT_BATCH).await {
            warn!(%error, "could not remove idle key locks");
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = cancel.cancelled() => return,
        }
    }
}
