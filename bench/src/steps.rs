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
    /// The partition's lease (its own short transaction).
    pub acquire: f64,
    /// The partition read in one snapshot (segment, gaps, held scopes, walks, replays).
    pub read: f64,
    /// The plan and the rows decoded.
    pub plan: f64,
    /// All of it.
    pub total: f64,
}

impl From<ClaimSteps> for Steps {
    fn from(steps: ClaimSteps) -> Steps {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        Steps {
            acquire: ms(steps.acquire),
            read: ms(steps.read),
            plan: ms(steps.plan),
            total: ms(steps.acquire + steps.read + steps.plan),
        }
    }
}

/// Ends the partition leases `relay_id` holds without moving their frontiers (a bench that
/// times claims of one shape again and again: the next claim reads the same events).
/// Leases of other relays stay.
pub async fn end_leases(pool: &PgPool, relay_id: &str) -> Result<()> {
    sqlx::query(
        "UPDATE outbox_partitions SET token = NULL, owner = NULL, relay_id = NULL,
                leased_until = NULL, claimed = 0
          WHERE relay_id = $1",
    )
    .bind(relay_id)
    .execute(pool)
    .await?;
    Ok(())
}

/// Runs one claim of up to `limit` rows, from as many partitions as a relay with the
/// default delivery loops leases per claim, and times its steps. Returns its times, its
/// token and the ids it leased (to be released).
pub async fn claim_in_steps(
    pool: &PgPool,
    relay_id: &str,
    limit: u32,
    lease: Duration,
) -> Result<(Steps, Uuid, Vec<Uuid>)> {
    let (claim, steps) = claim_timed(pool, relay_id, limit, lease, partitions_per_claim()).await?;
    let leased = claim
        .events
        .iter()
        .map(|event| event.id)
        .chain(claim.undecodable.iter().map(|row| row.id))
        .collect();
    Ok((steps.into(), claim.token, leased))
}

/// How many partitions a relay with the default delivery loops leases per claim.
pub fn partitions_per_claim() -> u32 {
    outbox_relay::engine::feed_claim::partitions_per_claim(
        outbox_relay::foundation::config::DEFAULT_IN_FLIGHT_BATCHES,
    )
}

/// Per-step medians.
pub fn medians(all: &[Steps]) -> Steps {
    let of = |f: fn(&Steps) -> f64| crate::summary::median(&all.iter().map(f).collect::<Vec<_>>());
    Steps {
        acquire: of(|s| s.acquire),
        read: of(|s| s.read),
        plan: of(|s| s.plan),
        total: of(|s| s.total),
    }
}
