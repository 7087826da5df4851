//! The relay's `--retention`: every few minutes, delete finished events (delivered and
//! discarded) past the age, through [`purge`]'s batch-delete loop. Pending and
//! dead events, and the consumers' inbox records, are never purged here (`outbox-relay purge
//! --inbox` does the inbox).

use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::foundation::diagnosis;
use crate::foundation::pause::sleep_unless_cancelled;
use crate::service::telemetry;
use crate::store::purge;

/// Purges delivered and discarded events past `retention`, and the key locks of keys
/// with nothing left to deliver, every few minutes until cancelled (the relay's
/// `--retention`). Each statement runs within `deadline` (`--db-timeout`), so a silent
/// database fails a round instead of holding it, and a connection, for ever.
pub async fn purge_periodically(
    pool: PgPool,
    retention: Duration,
    deadline: Duration,
    cancel: CancellationToken,
) {
    let every = (retention / 10).clamp(Duration::from_secs(10), Duration::from_secs(600));
    loop {
        match purge::finished_events_within(&pool, retention, purge::DEFAULT_BATCH, deadline).await
        {
            Ok(0) => {}
            Ok(deleted) => {
                metrics::counter!(telemetry::PURGED).increment(deleted);
                info!(deleted, "purged events past retention");
            }
            Err(error) => {
                let error = diagnosis::database(&error);
                warn!(%error, "retention purge failed");
            }
        }
        if !sleep_unless_cancelled(every, &cancel).await {
            return;
        }
    }
}
