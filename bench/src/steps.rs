//! A claim timed step by step, from the client.
//!
//! `claim::claim` cannot be timed inside, so this replica runs the same statements (the
//! `pub const`s of `outbox_relay::store::claim`, so the same prepared statements on the same
//! connection) in the same order and transaction, with the same decisions between them, and
//! times each round trip. Only the table of per-step medians comes from it; the claim times
//! reported per shape are those of `claim::claim` itself.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use outbox_relay::store::claim::{LEASE_SQL, READY_SQL, REAP_SQL, RUNS_SQL};
use serde::Serialize;
use sqlx::PgPool;
use sqlx::postgres::PgRow;
use uuid::Uuid;

use outbox_relay::store::CLAIM_LOCK;

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

/// Runs one claim of up to `limit` rows step by step. Returns its times, its token and the
/// ids it leased (to be released).
pub async fn claim_in_steps(
    pool: &PgPool,
    relay_id: &str,
    limit: u32,
    lease: Duration,
) -> Result<(Steps, Uuid, Vec<Uuid>)> {
    let limit = usize::try_from(limit.max(1))?;
    let mut steps = Steps::default();
    let started = Instant::now();
    let mut at = Instant::now();

    let mut tx = pool
        .begin_with("BEGIN ISOLATION LEVEL READ COMMITTED")
        .await?;
    sqlx::query("SELECT set_config('jit', 'off', true), pg_advisory_xact_lock($1)::text")
        .bind(CLAIM_LOCK)
        .execute(&mut *tx)
        .await?;
    steps.begin_lock = lap(&mut at);

    let (_, recheck): (i64, bool) = sqlx::query_as(REAP_SQL).fetch_one(&mut *tx).await?;
    steps.reap = lap(&mut at);
    if recheck {
        bail!("a key waits for a re-check: the step-by-step claim does not replicate step 2");
    }

    let candidates: Vec<(Uuid, i64, Option<String>, Option<i64>)> = sqlx::query_as(READY_SQL)
        .bind(i64::try_from(limit)?)
        .fetch_all(&mut *tx)
        .await?;
    steps.ready = lap(&mut at);
    let (heads, behind): (Vec<_>, Vec<_>) = candidates.into_iter().partition(|c| c.3.is_none());
    let to_park: Vec<Uuid> = behind.iter().map(|c| c.0).collect();
    let mut chosen: Vec<Uuid> = heads.iter().map(|c| c.0).collect();
    let keyed: Vec<_> = heads.iter().filter(|c| c.2.is_some()).collect();
    let room = limit.saturating_sub(chosen.len());
    if room > 0 && !keyed.is_empty() {
        let share = i32::try_from(room.div_ceil(keyed.len()))?;
        let keys: Vec<&str> = keyed.iter().filter_map(|c| c.2.as_deref()).collect();
        let seqs: Vec<i64> = keyed.iter().map(|c| c.1).collect();
        let rows: Vec<(String, Uuid, bool)> = sqlx::query_as(RUNS_SQL)
            .bind(&keys)
            .bind(&seqs)
            .bind(share)
            .fetch_all(&mut *tx)
            .await?;
        let mut stopped: HashMap<String, bool> = HashMap::new();
        let mut run = Vec::new();
        for (key, id, ready) in rows {
            let stop = stopped.entry(key).or_insert(false);
            if *stop || !ready {
                *stop = true;
                continue;
            }
            run.push(id);
        }
        chosen.extend(run.into_iter().take(room));
        steps.runs = lap(&mut at);
    } else {
        at = Instant::now();
    }
    let in_claim: std::collections::HashSet<&Uuid> = chosen.iter().collect();
    let to_park: Vec<Uuid> = to_park
        .into_iter()
        .filter(|id| !in_claim.contains(id))
        .collect();

    let token = Uuid::now_v7();
    let rows: Vec<PgRow> = sqlx::query(LEASE_SQL)
        .bind(&chosen)
        .bind(token)
        .bind(relay_id)
        .bind(lease.as_secs_f64())
        .bind(&to_park)
        .fetch_all(&mut *tx)
        .await?;
    steps.lease = lap(&mut at);
    tx.commit().await?;
    steps.commit = lap(&mut at);
    steps.total = started.elapsed().as_secs_f64() * 1e3;
    let leased = rows
        .iter()
        .map(|row| sqlx::Row::try_get::<Uuid, _>(row, "id"))
        .collect::<Result<Vec<Uuid>, _>>()?;
    Ok((steps, token, leased))
}

/// Milliseconds since `at`, which moves to now.
fn lap(at: &mut Instant) -> f64 {
    let ms = at.elapsed().as_secs_f64() * 1e3;
    *at = Instant::now();
    ms
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
