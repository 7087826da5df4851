//! The database's own reachability probe, for `/readyz`.
//!
//! The delivery loops report what they see, but a loop that cannot reach the broker never
//! gets to the database, so its view of the database would stay unknown. This probe asks
//! the database alone, from the relay's first second and every [`PROBE_INTERVAL`] after,
//! so `/readyz` names the server at fault.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::foundation::db::within_deadline;
use crate::foundation::pause::sleep_unless_cancelled;
use crate::service::health::Health;

/// How often the database is probed.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(2);

/// Probes the database (`SELECT 1`, at most `deadline`) now and every [`PROBE_INTERVAL`]
/// until cancelled, recording the answer in `health`.
pub async fn probe_database(
    pool: PgPool,
    health: Arc<Health>,
    deadline: Duration,
    cancel: CancellationToken,
) {
    loop {
        // Within the deadline, on a connection closed rather than given back when the
        // database stops answering (see `within_deadline`).
        let answered = within_deadline(&pool, deadline, async |conn| {
            sqlx::query("SELECT 1").execute(conn).await
        })
        .await;
        let ok = answered.is_ok();
        if let Err(error) = &answered {
            debug!(%error, "database probe failed");
        }
        health.set_database(ok);
        if !sleep_unless_cancelled(PROBE_INTERVAL, &cancel).await {
            return;
        }
    }
}
