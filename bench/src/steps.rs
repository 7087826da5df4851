//! A claim timed step by step: `claim::claim_timed`, the relay's own claim, reports how
//! long each of its round trips took; this keeps them in milliseconds for the reports.

use std::time::Duration;

use anyhow::Result;
use outbox_relay::store::claim::{ClaimSteps, claim_timed};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

/// Milliseconds per step of one claim.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Steps {
    /// `BEGIN` and the claim lock (with `jit = off`).
    pub begin_lock: f64,
    /// Step 1, the reap.
    pub reap: f64,
    /// Step 3, the ready scan with its head probe.
    pub ready: f64,
    /// Step 4, the run extension (0 when the heads fill the batch).
    pub runs: f64,
    /// Step 5, the lease (`RETURNING` the leased rows).
    pub lease: f64,
    /// `COMMIT`.
    pub commit: f64,
    /// All of it.
    pub total: f64,
}

impl From<ClaimSteps> for Steps {
    fn from(steps: ClaimSteps) -> Steps {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        Steps {
            begin_lock: ms(steps.begin_lock),
            // The shapes never leave a key waiting for a re-check; counted with the reap.
            reap: ms(steps.reap + steps.recheck),
            ready: ms(steps.ready),
            runs: ms(steps.runs),
            lease: ms(steps.lease),
            commit: ms(steps.commit),
            total: ms(steps.begin_lock
                + steps.reap
                + steps.recheck
                + steps.ready
                + steps.runs
                + steps.lease
                + steps.commit),
        }
    }
}

/// Runs one claim of up to `limit` rows and times its steps. Returns its times, its token
/// and the ids it leased (to be released).
pub async fn claim_in_steps(
    pool: &PgPool,
    relay_id: &str,
    limit: u32,
    lease: Duration,
) -> Result<(Steps, Uuid, Vec<Uuid>)> {
    let (claim, steps) = claim_timed(pool, relay_id, limit, lease).await?;
    let leased = claim
        .events
        .iter()
        .map(|event| event.id)
        .chain(claim.undecodable.iter().map(|row| row.id))
        .collect();
    Ok((steps.into(), claim.token, leased))
}

/// Per-step medians.
pub fn medians(all: &[Steps]) -> Steps {
    let of = |f: fn(&Steps) -> f64| crate::summary::median(&all.iter().map(f).collect::<Vec<_>>());
    Steps {
        begin_lock: of(|s| s.begin_lock),
        reap: of(|s| s.reap),
        ready: of(|s| s.ready),
        runs: of(|s| s.runs),
        lease: of(|s| s.lease),
        commit: of(|s| s.commit),
        total: of(|s| s.total),
    }
}
